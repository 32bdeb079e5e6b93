import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../events/envelope.ts';
import { TEST_DATABASE_URL } from '../testing/db.ts';
import { testLogger } from '../testing/logger.ts';
import type { Bus, ThreadMessage } from './bus.ts';
import { MemoryBus } from './memory.ts';
import { PostgresBus } from './postgres.ts';
import { RedisBus } from './redis.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Two processes' buses on one deployment (`publisher` and `subscriber`; the
 * same object for the in-process bus). `crossEvents`: another process hears
 * the events themselves, not only hints.
 */
interface Deployment {
  publisher: Bus;
  subscriber: Bus;
  crossEvents: boolean;
  dispose(): Promise<void>;
}

const prefix = () => `hangar:test:${randomBytes(6).toString('hex')}:`;

const FACTORIES: Record<string, () => Promise<Deployment>> = {
  memory: async () => {
    const bus = new MemoryBus();
    return { publisher: bus, subscriber: bus, crossEvents: true, dispose: () => bus.close() };
  },
  postgres: async () => {
    const schema = `bus_contract_${randomBytes(5).toString('hex')}`;
    const make = async () => {
      const bus = new PostgresBus({ connectionString: TEST_DATABASE_URL, schema, logger: testLogger() });
      await bus.start();
      return bus;
    };
    const [publisher, subscriber] = await Promise.all([make(), make()]);
    return {
      publisher,
      subscriber,
      crossEvents: false,
      dispose: async () => {
        await Promise.all([publisher.close(), subscriber.close()]);
      },
    };
  },
  redis: async () => {
    const keys = prefix();
    const make = async () => {
      const bus = new RedisBus({ url: REDIS_URL, prefix: keys, logger: testLogger() });
      await bus.start();
      return bus;
    };
    const [publisher, subscriber] = await Promise.all([make(), make()]);
    return {
      publisher,
      subscriber,
      crossEvents: true,
      dispose: async () => {
        await Promise.all([publisher.close(), subscriber.close()]);
        await deleteKeys(keys);
      },
    };
  },
};

/** Removes a test's keys (never anything else on the shared Redis). */
async function deleteKeys(keys: string): Promise<void> {
  const admin = new Redis(REDIS_URL);
  try {
    const found = await admin.keys(`${keys}*`);
    if (found.length > 0) await admin.del(...found);
  } finally {
    admin.disconnect();
  }
}

function envelopes(
  threadId: string,
  from: number,
  count: number,
  runId: string | null = null,
): EventEnvelope[] {
  return Array.from({ length: count }, (_, i) => ({
    seq: from + i,
    event_id: randomUUID(),
    thread_id: threadId,
    run_id: runId,
    attempt: 1,
    ts: new Date().toISOString(),
    channel: 'custom',
    namespace: [],
    data: { n: from + i },
  }));
}

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What a subscriber heard: the seqs of events received, and the highest seq hinted. */
class Ear {
  readonly messages: ThreadMessage[] = [];
  readonly handler = (message: ThreadMessage) => this.messages.push(message);
  get seqs(): number[] {
    return this.messages.flatMap((m) => (m.kind === 'events' ? m.events.map((e) => e.seq) : []));
  }
  get hinted(): number {
    return Math.max(0, ...this.messages.flatMap((m) => (m.kind === 'hint' ? [m.lastSeq] : [])));
  }
  /** Knows of seq `n`: got it, or a hint that the log reached it. */
  knows(n: number): boolean {
    return this.seqs.includes(n) || this.hinted >= n;
  }
}

/**
 * Subscribes and waits until the subscription is live: a bus whose first
 * subscription to a thread takes effect later says so with a hint (then
 * forgotten, so the ear holds only what was published).
 */
async function listen(bus: Bus, threadId: string, ear: Ear, options: { first: boolean } = { first: true }) {
  const unsubscribe = bus.subscribeThread(threadId, ear.handler);
  if (bus instanceof RedisBus && options.first) {
    await until(() => ear.hinted > 0, 'the subscription to become active');
    ear.messages.length = 0;
  }
  return unsubscribe;
}

describe.each(Object.keys(FACTORIES))('bus contract: %s', (kind) => {
  let deployment: Deployment;

  afterEach(async () => {
    await deployment?.dispose();
  });

  async function deploy(): Promise<Deployment> {
    deployment = await (FACTORIES[kind] as () => Promise<Deployment>)();
    return deployment;
  }

  it('delivers published events, in order, to the subscribers of that thread only', async () => {
    const { publisher, subscriber, crossEvents } = await deploy();
    const thread = randomUUID();
    const other = randomUUID();
    const ear = new Ear();
    const otherEar = new Ear();
    await listen(subscriber, thread, ear);
    await listen(subscriber, other, otherEar);
    const heardBefore = otherEar.messages.length;
    publisher.publishEvents(thread, envelopes(thread, 1, 3));
    publisher.publishEvents(thread, envelopes(thread, 4, 2));
    await until(() => ear.knows(5), 'seq 5');
    if (crossEvents) expect(ear.seqs).toEqual([1, 2, 3, 4, 5]);
    expect(otherEar.messages.slice(heardBefore)).toEqual([]);
  });

  it('stops delivering to a handler once it unsubscribed', async () => {
    const { publisher, subscriber } = await deploy();
    const thread = randomUUID();
    const gone = new Ear();
    const stays = new Ear();
    await listen(subscriber, thread, stays);
    const unsubscribe = await listen(subscriber, thread, gone, { first: false });
    publisher.publishEvents(thread, envelopes(thread, 1, 1));
    await until(() => gone.knows(1) && stays.knows(1), 'seq 1 at both');
    unsubscribe();
    const heard = gone.messages.length;
    publisher.publishEvents(thread, envelopes(thread, 2, 1));
    await until(() => stays.knows(2), 'seq 2');
    expect(gone.messages.length).toBe(heard);
  });

  it('carries work and cancel notices to every process', async () => {
    const { publisher, subscriber } = await deploy();
    let work = 0;
    const cancels: string[] = [];
    subscriber.onWork(() => work++);
    subscriber.onCancel((runId) => cancels.push(runId));
    const runId = randomUUID();
    // Notices are fire-and-forget hints: repeat until one lands (a subscription may still be settling).
    const deadline = Date.now() + 10_000;
    while ((work === 0 || !cancels.includes(runId)) && Date.now() < deadline) {
      publisher.notifyWork();
      publisher.notifyCancel(runId);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(work).toBeGreaterThan(0);
    expect(cancels).toContain(runId);
  });

  it('refuses a batch of a run from a lower lease epoch than one already published', async () => {
    const { publisher } = await deploy();
    // The publisher's own subscribers hear events (not only hints) on every bus.
    const thread = randomUUID();
    const run = randomUUID();
    const ear = new Ear();
    await listen(publisher, thread, ear);
    publisher.publishEvents(thread, envelopes(thread, 1, 2, run), { runId: run, epoch: 2 });
    publisher.publishEvents(thread, envelopes(thread, 3, 1, run), { runId: run, epoch: 1 });
    publisher.publishEvents(thread, envelopes(thread, 4, 1, run), { runId: run, epoch: 3 });
    // Another run's epochs are its own.
    publisher.publishEvents(thread, envelopes(thread, 5, 1), { runId: randomUUID(), epoch: 1 });
    await until(() => ear.seqs.includes(5), 'seq 5');
    expect(ear.seqs).toEqual([1, 2, 4, 5]);
  });
});

describe('RedisBus: the hot tail', () => {
  let bus: RedisBus;
  let keys: string;

  afterEach(async () => {
    await bus?.close();
    await deleteKeys(keys);
  });

  async function open(options: Partial<ConstructorParameters<typeof RedisBus>[0]> = {}): Promise<RedisBus> {
    keys = prefix();
    bus = new RedisBus({ url: REDIS_URL, prefix: keys, logger: testLogger(), ...options });
    await bus.start();
    return bus;
  }

  async function tailSeqs(threadId: string, after: number) {
    const tail = await bus.readTail(threadId, after, 1_000);
    if (tail === undefined) throw new Error('no tail');
    return { ...tail, seqs: tail.events.map((e) => e.seq) };
  }

  async function published(count: number) {
    await until(() => bus.stats.published + bus.stats.fenced >= count, `${count} events published`);
  }

  it('keeps events under their seqs; a re-publish or an older batch adds nothing', async () => {
    await open();
    const thread = randomUUID();
    const events = envelopes(thread, 1, 5);
    bus.publishEvents(thread, events.slice(0, 3));
    bus.publishEvents(thread, events.slice(1, 5)); // overlaps 2..3
    bus.publishEvents(thread, events.slice(0, 2)); // entirely old
    await published(9);
    const tail = await tailSeqs(thread, 0);
    expect(tail.seqs).toEqual([1, 2, 3, 4, 5]);
    expect(tail.events).toEqual(events);
    expect(tail.lastSeq).toBe(5);
    expect((await tailSeqs(thread, 3)).seqs).toEqual([4, 5]);
    expect((await tailSeqs(thread, 5)).seqs).toEqual([]);
  });

  it('trims by entries, expires after the last event, and tells a recreated stream by its generation', async () => {
    await open({ retention: { entries: 1, ms: 60_000 } });
    const thread = randomUUID();
    // 500 events in 5 batches: approximate trimming keeps about one node's worth, far fewer than 500.
    for (let i = 0; i < 5; i++) bus.publishEvents(thread, envelopes(thread, 1 + i * 100, 100));
    await published(500);
    const tail = await tailSeqs(thread, 0);
    expect(tail.lastSeq).toBe(500);
    expect(tail.seqs.length).toBeGreaterThan(0);
    expect(tail.seqs.length).toBeLessThan(500);
    expect(tail.seqs.at(-1)).toBe(500);
    const admin = new Redis(REDIS_URL);
    try {
      const streamKey = `${keys}{${thread}}:s`;
      const ttl = await admin.pttl(streamKey);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60_000);
      expect(await admin.pttl(`${keys}{${thread}}:g`)).toBeGreaterThan(0);
      // Lose the stream (an eviction, an expiry, a flush): the next publish starts a new generation.
      await admin.del(streamKey, `${keys}{${thread}}:g`);
      expect((await tailSeqs(thread, 0)).lastSeq).toBe(0);
      bus.publishEvents(thread, envelopes(thread, 501, 1));
      await published(501);
      const after = await tailSeqs(thread, 0);
      expect(after.seqs).toEqual([501]);
      expect(after.generation).not.toBeNull();
      expect(after.generation).not.toBe(tail.generation);
    } finally {
      admin.disconnect();
    }
  });

  it('trims by bytes when that bound is the tighter one', async () => {
    // ~150-byte events, 3000 bytes: about 20 entries (plus the approximate trim's slack), not 500.
    await open({ retention: { entries: 100_000, bytes: 3_000 } });
    const thread = randomUUID();
    for (let i = 0; i < 5; i++) bus.publishEvents(thread, envelopes(thread, 1 + i * 100, 100));
    await published(500);
    const tail = await tailSeqs(thread, 0);
    expect(tail.lastSeq).toBe(500);
    expect(tail.seqs.length).toBeLessThan(500);
    expect(tail.seqs).toEqual(Array.from({ length: tail.seqs.length }, (_, i) => 501 - tail.seqs.length + i));
  });

  it('drops and counts publishes while Redis is unreachable, without throwing or queueing', async () => {
    // A port nothing listens on.
    await open({ url: 'redis://127.0.0.1:1' });
    const thread = randomUUID();
    for (let i = 0; i < 100; i++) bus.publishEvents(thread, envelopes(thread, 1 + i * 10, 10));
    expect(bus.stats).toMatchObject({ dropped: 1000, published: 0 });
    expect(await bus.readTail(thread, 0, 10)).toBeUndefined();
  });
});
