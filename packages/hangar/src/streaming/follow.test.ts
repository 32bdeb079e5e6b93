import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RedisBus } from '../bus/redis.ts';
import type { EventEnvelope, LifecycleData, PendingEvent } from '../events/envelope.ts';
import { appendEvents, readEvents } from '../events/log.ts';
import type { Queryable, QueryResult } from '../store/sql.ts';
import { TrackingBus } from '../testing/bus.ts';
import { createTestPostgres, createTestStore, STORE_KINDS, type TestStore } from '../testing/db.ts';
import { testLogger } from '../testing/logger.ts';
import { createThread } from '../threads/repository.ts';
import { type FollowOptions, FollowReset, followThread } from './follow.ts';

const TENANT = 'default';
/** Long enough that no test is ever served by the poll: what arrives came from the bus or a gap refill. */
const NO_POLL_MS = 600_000;

/** The real store, counting the log reads the follower makes (to tell live delivery from a re-read). */
class CountingDb implements Queryable {
  logReads = 0;
  constructor(private readonly inner: Queryable) {}
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    if (/\bFROM events\b/.test(sql)) this.logReads++;
    return this.inner.query<R>(sql, params);
  }
}

/** The next item, or a failure after a bounded wait (never a timing assertion). */
async function nextWithin<T>(it: AsyncIterator<T>, ms = 5_000): Promise<IteratorResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`nothing from the stream within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([it.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function take(it: AsyncIterator<EventEnvelope>, count: number): Promise<EventEnvelope[]> {
  const out: EventEnvelope[] = [];
  while (out.length < count) {
    const next = await nextWithin(it);
    if (next.done) throw new Error(`stream ended after ${out.length} of ${count} events`);
    out.push(next.value);
  }
  return out;
}

const seqs = (events: readonly EventEnvelope[]) => events.map((e) => e.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe.each(STORE_KINDS)('followThread on %s', (kind) => {
  // One store per suite (PGlite takes seconds to boot); every test uses a thread of its own.
  let store: TestStore;
  let db: CountingDb;
  let bus: TrackingBus;
  let streams: { it: AsyncGenerator<EventEnvelope>; controller: AbortController }[];

  beforeAll(async () => {
    store = await createTestStore(kind);
  });

  afterAll(async () => {
    await store?.dispose();
  });

  beforeEach(() => {
    db = new CountingDb(store.db);
    bus = new TrackingBus();
    streams = [];
  });

  afterEach(async () => {
    for (const { it, controller } of streams) {
      controller.abort();
      await it.return(undefined);
    }
    await bus.close();
  });

  async function newThread(): Promise<string> {
    return (await createThread(store.db, { tenantId: TENANT })).thread_id;
  }

  function follow(
    threadId: string,
    afterSeq: number,
    options: Partial<Omit<FollowOptions, 'db' | 'bus' | 'signal'>> = {},
  ): { it: AsyncGenerator<EventEnvelope>; controller: AbortController } {
    const controller = new AbortController();
    const it = followThread({
      db,
      bus,
      tenantId: TENANT,
      threadId,
      afterSeq,
      signal: controller.signal,
      pollMs: NO_POLL_MS,
      ...options,
    });
    const stream = { it, controller };
    streams.push(stream);
    return stream;
  }

  /** Appends as a worker does (one transaction), then publishes after the commit unless told not to. */
  async function append(
    threadId: string,
    events: readonly PendingEvent[],
    options: { publish?: boolean; runId?: string } = {},
  ): Promise<EventEnvelope[]> {
    const written = await store.db.transaction((tx) =>
      appendEvents(tx, { tenantId: TENANT, threadId, runId: options.runId ?? null, attempt: 1 }, events),
    );
    if (options.publish !== false) bus.publishEvents(threadId, written);
    return written;
  }

  function custom(count: number, tag = 'e'): PendingEvent[] {
    return Array.from({ length: count }, (_, i) => ({ channel: 'custom', data: { tag, i } }));
  }

  function lifecycle(data: LifecycleData): PendingEvent {
    return { channel: 'lifecycle', data };
  }

  async function logOf(threadId: string): Promise<EventEnvelope[]> {
    return readEvents(store.db, TENANT, threadId, { afterSeq: 0, limit: 10_000 });
  }

  it('yields exactly the events after the position, in order, then the live ones', async () => {
    const thread = await newThread();
    await append(thread, custom(10), { publish: false });
    const log = await logOf(thread);
    const positions = [0, 1, 4, 9, 10];
    const followers = positions.map((p) => follow(thread, p, { pageSize: 3 }));
    for (const [i, p] of positions.entries()) {
      const follower = followers[i];
      if (follower === undefined) throw new Error('unreachable');
      expect(await take(follower.it, 10 - p)).toEqual(log.slice(p));
    }
    const live = await append(thread, custom(2, 'live'));
    for (const follower of followers) {
      // Continues at 11: nothing from the log is repeated, nothing skipped.
      expect(await take(follower.it, 2)).toEqual(live);
    }
  });

  it('delivers events appended while following live, without re-reading the log', async () => {
    const thread = await newThread();
    const { it } = follow(thread, 0);
    const pendingFirst = it.next(); // subscribes, reads the (empty) log, waits
    const [first] = await append(thread, custom(1, 'first'));
    expect((await pendingFirst).value).toEqual(first);

    const readsBefore = db.logReads;
    const batch1 = await append(thread, custom(2, 'b1'));
    const batch2 = await append(thread, custom(3, 'b2'));
    expect(await take(it, 5)).toEqual([...batch1, ...batch2]);
    expect(seqs([...batch1, ...batch2])).toEqual(range(2, 6));
    expect(db.logReads).toBe(readsBefore);
  });

  it('refills a skipped seq from the log, losing and repeating nothing', async () => {
    const thread = await newThread();
    const { it } = follow(thread, 0);
    const pendingFirst = it.next();
    await append(thread, custom(1, 'first'));
    expect((await pendingFirst).value?.seq).toBe(1);

    // The live message for seqs 2-3 is lost; the one for 4-5 arrives.
    const lost = await append(thread, custom(2, 'lost'), { publish: false });
    const seen = await append(thread, custom(2, 'seen'));
    const readsBefore = db.logReads;
    expect(await take(it, 4)).toEqual([...lost, ...seen]);
    expect(db.logReads).toBeGreaterThan(readsBefore);

    // A late duplicate of a delivered batch is dropped (without a log read); the stream continues at 6.
    const readsAfterRefill = db.logReads;
    bus.publishEvents(thread, seen);
    bus.publishEvents(thread, lost);
    const after = await append(thread, custom(1, 'after'));
    expect(await take(it, 1)).toEqual(after);
    expect(seqs(after)).toEqual([6]);
    expect(db.logReads).toBe(readsAfterRefill);
  });

  it('re-reads the log when more live messages arrive than it holds', async () => {
    const thread = await newThread();
    const { it } = follow(thread, 0, { maxQueued: 2 });
    const pendingFirst = it.next();
    await append(thread, custom(1, 'first'));
    expect((await pendingFirst).value?.seq).toBe(1);
    // While the consumer is busy, five messages arrive for a queue of two.
    const burst: EventEnvelope[] = [];
    for (let i = 0; i < 5; i++) burst.push(...(await append(thread, custom(1, `burst-${i}`))));
    expect(await take(it, 5)).toEqual(burst);
    const after = await append(thread, custom(1, 'after'));
    expect(await take(it, 1)).toEqual(after);
  });

  it('reads the log on a hint that the log grew, and ignores a stale hint', async () => {
    const thread = await newThread();
    const { it } = follow(thread, 0);
    const pendingFirst = it.next();
    await append(thread, custom(1, 'first'));
    expect((await pendingFirst).value?.seq).toBe(1);

    // Another process appended: only a hint crosses the bus.
    const remote = await append(thread, custom(2, 'remote'), { publish: false });
    let reads = db.logReads;
    bus.dispatchHint(thread, 3);
    expect(await take(it, 2)).toEqual(remote);
    expect(db.logReads).toBeGreaterThan(reads);

    // A hint the follower is already past costs no read.
    reads = db.logReads;
    bus.dispatchHint(thread, 2);
    const local = await append(thread, custom(1, 'local'));
    expect(await take(it, 1)).toEqual(local);
    expect(db.logReads).toBe(reads);

    // After a bus reconnect every follower re-reads.
    const missed = await append(thread, custom(1, 'missed'), { publish: false });
    bus.dispatchHintToAll();
    expect(await take(it, 1)).toEqual(missed);
  });

  it("ends after the run's terminal event read from the log, skipping other runs", async () => {
    const thread = await newThread();
    const runA = randomUUID();
    const runB = randomUUID();
    const a1 = await append(thread, [lifecycle({ event: 'run.started', status: 'running' })], {
      runId: runA,
    });
    await append(thread, custom(2, 'b'), { runId: runB });
    const a2 = await append(
      thread,
      [
        { channel: 'custom', data: 'a' },
        // A non-terminal lifecycle event does not end the stream.
        lifecycle({ event: 'run.waiting', status: 'waiting' }),
        lifecycle({ event: 'run.completed', status: 'success', terminal: true }),
      ],
      { runId: runA },
    );
    await append(thread, custom(2, 'after'), { runId: runA });

    const { it } = follow(thread, 0, { runId: runA, pageSize: 2 });
    expect(await take(it, 4)).toEqual([...a1, ...a2]);
    expect(await nextWithin(it)).toEqual({ done: true, value: undefined });
    expect(bus.open).toBe(0);
  });

  it('ends when the run has ended though the position was past its terminal event', async () => {
    const thread = await newThread();
    const run = randomUUID();
    const written = await append(
      thread,
      [lifecycle({ event: 'run.completed', status: 'success', terminal: true })],
      { runId: run },
    );
    let asked = 0;
    // A client that already saw the terminal event reconnects: nothing is left to send, and only
    // the run's status can tell the follower to stop.
    const { it } = follow(thread, written[0]?.seq ?? 0, {
      runId: run,
      pollMs: 50,
      runEnded: async () => {
        asked++;
        return asked >= 2;
      },
    });
    expect(await nextWithin(it)).toEqual({ done: true, value: undefined });
    expect(asked).toBe(2);
    expect(bus.open).toBe(0);
  });

  it("ends after the run's terminal event delivered live", async () => {
    const thread = await newThread();
    const run = randomUUID();
    const { it } = follow(thread, 0, { runId: run });
    const pendingFirst = it.next();
    const [started] = await append(thread, [lifecycle({ event: 'run.started', status: 'running' })], {
      runId: run,
    });
    expect((await pendingFirst).value).toEqual(started);

    await append(thread, custom(1, 'other run'), { runId: randomUUID() });
    const rest = await append(
      thread,
      [
        { channel: 'custom', data: 'x' },
        lifecycle({ event: 'run.completed', status: 'error', terminal: true }),
      ],
      { runId: run },
    );
    await append(thread, custom(1, 'late'), { runId: run });
    expect(await take(it, 2)).toEqual(rest);
    expect(await nextWithin(it)).toEqual({ done: true, value: undefined });
    expect(bus.open).toBe(0);
  });

  it('keeps following the thread past a terminal event when no run is given', async () => {
    const thread = await newThread();
    const run = randomUUID();
    const ended = await append(
      thread,
      [lifecycle({ event: 'run.completed', status: 'success', terminal: true })],
      { runId: run },
    );
    const { it } = follow(thread, 0);
    expect(await take(it, 1)).toEqual(ended);
    const next = await append(thread, custom(1, 'next run'), { runId: randomUUID() });
    expect(await take(it, 1)).toEqual(next);
  });

  it('signals a reset, before any event, for a position beyond the end of the log', async () => {
    const thread = await newThread();
    const written = await append(thread, custom(3));
    const { it } = follow(thread, 100, { signalReset: true });
    const failure = await it.next().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(FollowReset);
    expect(failure).toMatchObject({ reason: 'ahead_of_log', position: 100, lastSeq: 3 });
    expect(bus.open).toBe(0);
    // The log's end itself is a valid position: the follower waits there for what comes next.
    const atEnd = follow(thread, 3, { signalReset: true });
    const pending = atEnd.it.next();
    const next = await append(thread, custom(1, 'next'));
    expect((await pending).value).toEqual(next[0]);
    expect(seqs(written)).toEqual([1, 2, 3]);
  });

  it('ends, and unsubscribes, when aborted while waiting', async () => {
    const thread = await newThread();
    const { it, controller } = follow(thread, 0);
    const pending = it.next();
    await append(thread, custom(1));
    expect((await pending).value?.seq).toBe(1);
    const waiting = nextWithin(it);
    expect(bus.open).toBe(1);
    controller.abort();
    expect(await waiting).toEqual({ done: true, value: undefined });
    expect(bus.open).toBe(0);
  });
});

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('followThread on the Redis event plane', () => {
  let store: TestStore;
  let db: CountingDb;
  let bus: RedisBus;
  let prefix: string;
  let admin: Redis;
  let streams: AbortController[];

  beforeAll(async () => {
    store = await createTestPostgres();
    admin = new Redis(REDIS_URL);
  });

  afterAll(async () => {
    admin?.disconnect();
    await store?.dispose();
  });

  beforeEach(async () => {
    db = new CountingDb(store.db);
    prefix = `hangar:test:${randomBytes(6).toString('hex')}:`;
    bus = new RedisBus({ url: REDIS_URL, prefix, logger: testLogger() });
    await bus.start();
    streams = [];
  });

  afterEach(async () => {
    for (const controller of streams) controller.abort();
    await bus.close();
    await dropKeys();
  });

  /** Loses this test's Redis state, as a flush or a restart would (the shared Redis is never flushed). */
  async function dropKeys(): Promise<void> {
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
  }

  async function newThread(): Promise<string> {
    return (await createThread(store.db, { tenantId: TENANT })).thread_id;
  }

  function follow(threadId: string, afterSeq: number, options: Partial<FollowOptions> = {}) {
    const controller = new AbortController();
    streams.push(controller);
    return followThread({
      db,
      bus,
      tenantId: TENANT,
      threadId,
      afterSeq,
      signal: controller.signal,
      pollMs: NO_POLL_MS,
      ...options,
    });
  }

  /** Commits like a worker, then publishes unless told the publish was lost. */
  async function append(threadId: string, count: number, options: { publish?: boolean } = {}) {
    const written = await store.db.transaction((tx) =>
      appendEvents(
        tx,
        { tenantId: TENANT, threadId, runId: null, attempt: 1 },
        Array.from({ length: count }, (_, i) => ({ channel: 'custom', data: { i } })),
      ),
    );
    if (options.publish !== false) bus.publishEvents(threadId, written);
    return written;
  }

  /** Waits until Redis holds the thread's stream up to `seq` (publishing is asynchronous). */
  async function stored(threadId: string, seq: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (((await bus.readTail(threadId, 0, 1))?.lastSeq ?? 0) < seq) {
      if (Date.now() > deadline) throw new Error(`seq ${seq} never reached the Redis stream`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('catches up from the Postgres log where the Redis tail does not reach, then from the tail', async () => {
    const thread = await newThread();
    await append(thread, 5, { publish: false }); // older than the tail
    await append(thread, 5);
    await stored(thread, 10);
    const log = await readEvents(store.db, TENANT, thread, { afterSeq: 0, limit: 100 });

    const fromStart = follow(thread, 0, { pageSize: 3 });
    expect(await take(fromStart, 10)).toEqual(log);
    // Pages 1-3 and 4-6 came from the log, 7-10 from the tail.
    expect(db.logReads).toBe(2);

    const readsBefore = db.logReads;
    const fromTail = follow(thread, 6);
    expect(await take(fromTail, 4)).toEqual(log.slice(6));
    expect(db.logReads).toBe(readsBefore);

    const live = await append(thread, 2);
    expect(await take(fromStart, 2)).toEqual(live);
    expect(await take(fromTail, 2)).toEqual(live);
  });

  it('refills a gap in the live events from the log, delivering each event once, in order', async () => {
    const thread = await newThread();
    const it = follow(thread, 0);
    const first = it.next();
    const [one] = await append(thread, 1);
    expect((await first).value).toEqual(one);
    const lost = await append(thread, 2, { publish: false });
    const seen = await append(thread, 2);
    expect(seqs(await take(it, 4))).toEqual(range(2, 5));
    expect(seqs([...lost, ...seen])).toEqual(range(2, 5));
    const after = await append(thread, 1);
    expect(await take(it, 1)).toEqual(after);
  });

  it('delivers everything when the Redis state is lost mid-follow', async () => {
    const thread = await newThread();
    const it = follow(thread, 0);
    const first = it.next();
    await append(thread, 1);
    expect((await first).value?.seq).toBe(1);
    await append(thread, 3);
    await stored(thread, 4);
    await dropKeys();
    // A new stream generation starts at seq 6; seq 5's publish was lost with the old one.
    await append(thread, 1, { publish: false });
    await append(thread, 2);
    expect(seqs(await take(it, 6))).toEqual(range(2, 7));
    // A follower arriving now finds a tail that starts at 6, and reads the rest from the log.
    const late = follow(thread, 0);
    expect(seqs(await take(late, 7))).toEqual(range(1, 7));
  });

  it("serves nothing of another tenant's thread, neither from the tail nor live", async () => {
    const thread = await newThread();
    await append(thread, 3);
    await stored(thread, 3);
    const owner = follow(thread, 0);
    const foreign = follow(thread, 0, { tenantId: 'someone-else' });
    const foreignNext = foreign.next();
    expect(seqs(await take(owner, 3))).toEqual([1, 2, 3]);
    // Both followers are subscribed to the thread: a live batch reaches both handlers.
    const live = await append(thread, 2);
    expect(await take(owner, 2)).toEqual(live);
    streams.at(-1)?.abort();
    expect(await foreignNext).toEqual({ done: true, value: undefined });
  });

  it('serves a follower from the log alone while Redis is unreachable', async () => {
    const thread = await newThread();
    const written = await append(thread, 3, { publish: false });
    const down = new RedisBus({ url: 'redis://127.0.0.1:1', prefix, logger: testLogger() });
    await down.start();
    try {
      const controller = new AbortController();
      streams.push(controller);
      const it = followThread({
        db,
        bus: down,
        tenantId: TENANT,
        threadId: thread,
        afterSeq: 0,
        signal: controller.signal,
        pollMs: 100,
      });
      expect(await take(it, 3)).toEqual(written);
      // Nothing live can arrive: the poll of the log finds new events.
      const more = await store.db.transaction((tx) =>
        appendEvents(tx, { tenantId: TENANT, threadId: thread, runId: null, attempt: 1 }, [
          { channel: 'custom', data: 'polled' },
        ]),
      );
      expect(await take(it, 1)).toEqual(more);
    } finally {
      await down.close();
    }
  });
});
