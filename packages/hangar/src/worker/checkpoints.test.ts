import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresBus } from '../bus/postgres.ts';
import { HangarError } from '../errors.ts';
import type { PendingEvent } from '../events/envelope.ts';
import { readEvents } from '../events/log.ts';
import { type CheckpointRequest, writeCheckpoints } from '../runs/checkpoint.ts';
import { claimRuns, createRun } from '../runs/repository.ts';
import type { ClaimedRun } from '../runs/types.ts';
import { loadSteps, type StepWrite } from '../steps/repository.ts';
import type { Queryable } from '../store/sql.ts';
import { createTestStore, STORE_KINDS, type TestStore } from '../testing/db.ts';
import { testLogger } from '../testing/logger.ts';
import { createThread } from '../threads/repository.ts';
import { CheckpointBatcher } from './checkpoints.ts';

const TENANT = 'default';

function step(index: number, result: unknown): StepWrite {
  return {
    index,
    name: `s${index}`,
    kind: 'step',
    status: 'completed',
    result,
    attempt: 1,
    startedAt: new Date(),
  };
}

function update(data: unknown): PendingEvent {
  return { channel: 'updates', data };
}

/** Counts the statements a client is sent (each is one round trip and one commit). */
class Counting implements Queryable {
  statements = 0;
  constructor(private readonly inner: Queryable) {}
  query<R>(sql: string, params?: readonly unknown[]) {
    this.statements++;
    return this.inner.query<R>(sql, params);
  }
}

/** `n` runs of a fresh agent, each on its own thread, claimed; `perThread` runs queued on each thread. */
async function claimRunsOn(store: TestStore, n: number, perThread: number): Promise<ClaimedRun[]> {
  const agent = `agent-${randomUUID()}`;
  for (let i = 0; i < n; i++) {
    const thread = await createThread(store.db, { tenantId: TENANT });
    for (let j = 0; j < perThread; j++)
      await createRun(store.db, {
        tenantId: TENANT,
        agent,
        assistantId: randomUUID(),
        input: { i },
        threadId: thread.thread_id,
        multitaskStrategy: 'enqueue',
      });
  }
  const runs = await claimRuns(store.db, { owner: 'w', leaseMs: 60_000, agents: [agent], limit: n });
  expect(runs).toHaveLength(n);
  return runs;
}

function request(run: ClaimedRun, write: CheckpointRequest['write']): CheckpointRequest {
  return { lease: run.lease, attempt: run.run.attempt, write };
}

describe.each(STORE_KINDS)('group commit of checkpoints on %s', (kind) => {
  let store: TestStore;

  beforeAll(async () => {
    store = await createTestStore(kind);
  });

  afterAll(async () => {
    await store?.dispose();
  });

  const claimed = (n: number, perThread = 1) => claimRunsOn(store, n, perThread);

  it('writes several runs in one statement, each with its own seqs, steps and answer', async () => {
    const runs = await claimed(3);
    const results = await writeCheckpoints(
      store.db,
      runs.map((r, i) => request(r, { step: step(0, { i }), events: [update({ i }), update({ again: i })] })),
    );
    for (const [i, run] of runs.entries()) {
      const result = results[i];
      if (result === undefined || result instanceof Error) throw new Error(`write ${i} failed`);
      // Each thread's log goes on from its own last seq (the claim logged nothing): 1 and 2.
      expect(result.events.map((e) => [e.seq, e.thread_id, e.data])).toEqual([
        [1, run.run.thread_id, { i }],
        [2, run.run.thread_id, { again: i }],
      ]);
      const logged = await readEvents(store.db, TENANT, run.run.thread_id, { afterSeq: 0, limit: 10 });
      expect(logged.map((e) => e.data)).toEqual([{ i }, { again: i }]);
      expect((await loadSteps(store.db, run.run.run_id)).map((s) => s.result)).toEqual([{ i }]);
    }
  });

  it('fails only the write whose lease is lost; the others of its statement commit', async () => {
    const [a, b, c] = await claimed(3);
    if (a === undefined || b === undefined || c === undefined) throw new Error('three runs expected');
    const stale = { ...b.lease, epoch: b.lease.epoch - 1 };
    const results = await writeCheckpoints(store.db, [
      request(a, { step: step(0, 'a'), events: [update('a')] }),
      { lease: stale, attempt: 1, write: { step: step(0, 'b'), events: [update('b')] } },
      request(c, { events: [update('c')], end: { status: 'success', output: null } }),
    ]);
    expect(results[1]).toBeInstanceOf(HangarError);
    expect((results[1] as HangarError).code).toBe('lease_lost');
    expect(results[0]).not.toBeInstanceOf(Error);
    expect(results[2]).not.toBeInstanceOf(Error);
    // The lost write left nothing: no step, no event.
    expect(await loadSteps(store.db, b.run.run_id)).toEqual([]);
    expect(await readEvents(store.db, TENANT, b.run.thread_id, { afterSeq: 0, limit: 10 })).toEqual([]);
    // A JSON null output stays JSON null (not SQL NULL) through the batch.
    const ended = await store.db.query<{ status: string; output_is_json_null: boolean }>(
      `SELECT status, output = 'null'::jsonb AS output_is_json_null FROM runs WHERE run_id = $1`,
      [c.run.run_id],
    );
    expect(ended.rows[0]).toEqual({ status: 'success', output_is_json_null: true });
  });

  it("says how many queued runs an ending released (the thread's next run)", async () => {
    const [holder] = await claimed(1, 2);
    if (holder === undefined) throw new Error('a run expected');
    const [ended] = await writeCheckpoints(store.db, [
      request(holder, { events: [], end: { status: 'success', output: { ok: true } } }),
    ]);
    if (ended === undefined || ended instanceof Error) throw new Error('the ending failed');
    expect(ended.released).toBe(1);
  });

  it('coalesces concurrent writes of many runs into a few statements, one write per thread each', async () => {
    const runs = await claimed(12);
    const counting = new Counting(store.db);
    const batcher = new CheckpointBatcher(counting, { maxInFlight: 1 });
    const written = await Promise.all(
      runs.map((r, i) => batcher.write(request(r, { step: step(0, i), events: [update(i)] }))),
    );
    expect(written.map((w) => w.events[0]?.data)).toEqual(runs.map((_, i) => i));
    // One statement for all twelve (they arrived in one turn of the event loop).
    expect(counting.statements).toBe(1);

    // Two writes of one thread (a stale attempt's and the live one's) never share a statement.
    const [run] = runs;
    if (run === undefined) throw new Error('a run expected');
    const before = counting.statements;
    const stale = batcher.write({
      lease: { ...run.lease, epoch: run.lease.epoch - 1 },
      attempt: 1,
      write: { step: step(1, 'stale'), events: [update('stale')] },
    });
    const live = batcher.write(request(run, { step: step(1, 'live'), events: [update('live')] }));
    await expect(stale).rejects.toMatchObject({ code: 'lease_lost' });
    expect((await live).events.map((e) => e.data)).toEqual(['live']);
    expect(counting.statements - before).toBe(2);
  });

  it('tries each write of a failed statement on its own: one bad write fails alone', async () => {
    const [a, b, c] = await claimed(3);
    if (a === undefined || b === undefined || c === undefined) throw new Error('three runs expected');
    // Two interrupts with one id: the second breaks the statement's unique key.
    const interruptId = randomUUID();
    const interrupted = (run: ClaimedRun): CheckpointRequest['write'] => ({
      events: [],
      end: {
        status: 'interrupted',
        interrupts: [{ id: interruptId, stepIndex: 0, agent: run.run.agent, payload: { q: 1 } }],
      },
    });
    const counting = new Counting(store.db);
    const batcher = new CheckpointBatcher(counting, { maxInFlight: 1 });
    const results = await Promise.allSettled([
      batcher.write(request(a, interrupted(a))),
      batcher.write(request(b, interrupted(b))),
      batcher.write(request(c, { step: step(0, 'c'), events: [update('c')] })),
    ]);
    // The retries run side by side: whichever of a and b inserts the id first wins, the other fails.
    const [ra, rb, rc] = results.map((r) => r.status);
    expect([ra, rb].sort()).toEqual(['fulfilled', 'rejected']);
    expect(rc).toBe('fulfilled');
    // The batch, then each write alone.
    expect(counting.statements).toBe(4);
    const statuses = await store.db.query<{ run_id: string; status: string }>(
      'SELECT run_id, status FROM runs WHERE run_id = ANY($1::uuid[])',
      [[a.run.run_id, b.run.run_id, c.run.run_id]],
    );
    const winner = ra === 'fulfilled' ? a : b;
    const loser = ra === 'fulfilled' ? b : a;
    expect(Object.fromEntries(statuses.rows.map((r) => [r.run_id, r.status]))).toEqual({
      [winner.run.run_id]: 'interrupted',
      [loser.run.run_id]: 'running',
      [c.run.run_id]: 'running',
    });
    expect((await loadSteps(store.db, c.run.run_id)).map((s) => s.result)).toEqual(['c']);
  });
});

describe('checkpoint hints on the Postgres bus', () => {
  let store: TestStore;

  beforeAll(async () => {
    store = await createTestStore('postgres');
  });

  afterAll(async () => {
    await store?.dispose();
  });

  it("NOTIFYs each thread's new last seq at commit, in the statement, when given the bus's channel", async () => {
    const bus = new PostgresBus({
      connectionString: store.url ?? '',
      schema: store.schema ?? 'public',
      logger: testLogger(),
    });
    await bus.start();
    try {
      const runs = await claimRunsOn(store, 2, 1);
      const heard = new Map<string, number[]>();
      for (const r of runs) {
        bus.subscribeThread(r.run.thread_id, (m) => {
          if (m.kind === 'hint')
            heard.set(r.run.thread_id, [...(heard.get(r.run.thread_id) ?? []), m.lastSeq]);
        });
      }
      const counting = new Counting(store.db);
      const batcher = new CheckpointBatcher(counting, { hintChannel: bus.hintChannel });
      expect(batcher.hints).toBe(true);
      await Promise.all(
        runs.map((r) => batcher.write(request(r, { events: [update(1), update(2), update(3)] }))),
      );
      expect(counting.statements).toBe(1);
      const deadline = Date.now() + 5_000;
      while (runs.some((r) => !heard.get(r.run.thread_id)?.includes(3)) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 20));
      for (const r of runs) expect(heard.get(r.run.thread_id)).toEqual([3]);
    } finally {
      await bus.close();
    }
  });

  it('starts listening when it first follows a thread, and tells its subscribers to read then', async () => {
    const options = {
      connectionString: store.url ?? '',
      schema: store.schema ?? 'public',
      logger: testLogger(),
    };
    const worker = new PostgresBus({ ...options, threadHints: false });
    const publisher = new PostgresBus(options);
    await Promise.all([worker.start(), publisher.start()]);
    try {
      const thread = randomUUID();
      const heard: number[] = [];
      worker.subscribeThread(thread, (m) => {
        if (m.kind === 'hint') heard.push(m.lastSeq);
      });
      const until = async (check: () => boolean) => {
        const deadline = Date.now() + 5_000;
        while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
        expect(check()).toBe(true);
      };
      // The subscription takes effect a round trip later: the subscriber is told to read the log.
      await until(() => heard.length > 0);
      expect(heard[0]).toBe(Number.MAX_SAFE_INTEGER);
      publisher.publishEvents(thread, [
        {
          seq: 7,
          event_id: randomUUID(),
          thread_id: thread,
          run_id: randomUUID(),
          attempt: 1,
          ts: new Date().toISOString(),
          channel: 'custom',
          namespace: [],
          data: null,
        },
      ]);
      await until(() => heard.includes(7));
    } finally {
      await Promise.all([worker.close(), publisher.close()]);
    }
  });
});
