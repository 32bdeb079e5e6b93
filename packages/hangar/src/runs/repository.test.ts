import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ErrorCode, HangarError } from '../errors.ts';
import { readEvents } from '../events/log.ts';
import { loadSteps } from '../steps/repository.ts';
import { createTestStore, STORE_KINDS, type TestStore } from '../testing/db.ts';
import { createThread, getThread } from '../threads/repository.ts';
import { writeCheckpoint } from './checkpoint.ts';
import {
  type CreateRunInput,
  claimRun,
  claimRuns,
  createRun,
  getRun,
  heartbeat,
  releaseRun,
  requeueAllRunning,
  requeueExpiredLeases,
} from './repository.ts';
import type { ClaimedRun, Lease, Run } from './types.ts';

const TENANT = 'default';
const LEASE_MS = 60_000;

async function expectHangarError(promise: Promise<unknown>, code: ErrorCode): Promise<HangarError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HangarError);
  expect((err as HangarError).code).toBe(code);
  return err as HangarError;
}

describe.each(STORE_KINDS)('runs repository on %s', (kind) => {
  // One store per suite (PGlite takes seconds to boot); each test isolates itself
  // with its own agent name, so claims never see another test's runs.
  let store: TestStore;

  beforeAll(async () => {
    store = await createTestStore(kind);
  });

  afterAll(async () => {
    await store?.dispose();
  });

  function newAgent(): string {
    return `agent-${randomUUID()}`;
  }

  function runInput(agent: string, extra: Partial<CreateRunInput> = {}): CreateRunInput {
    return { tenantId: TENANT, agent, assistantId: randomUUID(), input: { n: 1 }, ...extra };
  }

  function claim(agent: string | string[], owner = 'worker-a'): Promise<ClaimedRun | null> {
    return claimRun(store.db, {
      owner,
      leaseMs: LEASE_MS,
      agents: typeof agent === 'string' ? [agent] : agent,
    });
  }

  async function claimOrFail(agent: string, owner = 'worker-a'): Promise<ClaimedRun> {
    const claimed = await claim(agent, owner);
    if (claimed === null) throw new Error(`expected a claimable run for ${agent}`);
    return claimed;
  }

  function finish(lease: Lease, status: 'success' | 'error' = 'success'): Promise<void> {
    return writeCheckpoint(
      store.db,
      lease,
      { attempt: 1 },
      {
        events: [],
        end:
          status === 'success'
            ? { status, output: { done: true } }
            : { status, error: { code: 'agent_error', type: 'Error', message: 'failed' } },
      },
    ).then(() => undefined);
  }

  /** A write with nothing in it: just the fence. */
  function touch(lease: Lease): Promise<unknown> {
    return writeCheckpoint(store.db, lease, { attempt: 1 }, { events: [] });
  }

  function suspend(lease: Lease, until: Date): Promise<unknown> {
    return writeCheckpoint(
      store.db,
      lease,
      { attempt: 1 },
      { events: [], end: { status: 'waiting', until } },
    );
  }

  async function runRow(runId: string) {
    const res = await store.db.query<{
      status: string;
      attempt: number;
      lease_epoch: number;
      lease_owner: string | null;
    }>('SELECT status, attempt, lease_epoch, lease_owner FROM runs WHERE run_id = $1', [runId]);
    const row = res.rows[0];
    if (row === undefined) throw new Error(`run ${runId} not found`);
    return { ...row, attempt: Number(row.attempt), lease_epoch: Number(row.lease_epoch) };
  }

  async function expireLease(runId: string): Promise<void> {
    const res = await store.db.query(
      `UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE run_id = $1 AND status = 'running'`,
      [runId],
    );
    expect(res.rowCount).toBe(1);
  }

  describe('createRun', () => {
    it('creates a thread for a stateless run, in the same transaction', async () => {
      const run = await createRun(store.db, runInput(newAgent()));
      expect(run.status).toBe('pending');
      expect(run.attempt).toBe(0);
      expect(run.input).toEqual({ n: 1 });
      const thread = await getThread(store.db, TENANT, run.thread_id);
      expect(thread?.metadata).toEqual({ stateless: true });
      expect(await getRun(store.db, TENANT, run.run_id)).toEqual(run);
    });

    it('creates a run on an existing thread, with a client-supplied run id', async () => {
      const thread = await createThread(store.db, { tenantId: TENANT });
      const runId = randomUUID();
      const run = await createRun(store.db, runInput(newAgent(), { threadId: thread.thread_id, runId }));
      expect(run.run_id).toBe(runId);
      expect(run.thread_id).toBe(thread.thread_id);
    });

    it('rejects an unknown thread with not_found and writes nothing', async () => {
      const threadId = randomUUID();
      const err = await expectHangarError(
        createRun(store.db, runInput(newAgent(), { threadId })),
        'not_found',
      );
      expect(err.details).toEqual({ thread_id: threadId });
      const runs = await store.db.query('SELECT 1 FROM runs WHERE thread_id = $1', [threadId]);
      expect(runs.rowCount).toBe(0);
    });

    it("treats another tenant's thread as unknown", async () => {
      await store.db.query(
        `INSERT INTO tenants (tenant_id, name) VALUES ($1, 'other') ON CONFLICT DO NOTHING`,
        ['other-tenant'],
      );
      const thread = await createThread(store.db, { tenantId: TENANT });
      await expectHangarError(
        createRun(store.db, runInput(newAgent(), { tenantId: 'other-tenant', threadId: thread.thread_id })),
        'not_found',
      );
    });

    it('creates a missing thread when asked to', async () => {
      const threadId = randomUUID();
      const run = await createRun(store.db, runInput(newAgent(), { threadId, createThread: true }));
      expect(run.thread_id).toBe(threadId);
      expect(await getThread(store.db, TENANT, threadId)).not.toBeNull();
    });

    it("rejects a second run on a busy thread with conflict under 'reject'", async () => {
      const agent = newAgent();
      const first = await createRun(store.db, runInput(agent));
      await expectHangarError(
        createRun(store.db, runInput(agent, { threadId: first.thread_id, multitaskStrategy: 'reject' })),
        'conflict',
      );
      // Still busy while the first run is running.
      const claimed = await claimOrFail(agent);
      await expectHangarError(
        createRun(store.db, runInput(agent, { threadId: first.thread_id })),
        'conflict',
      );
      // Free again once it finished.
      await finish(claimed.lease);
      const next = await createRun(store.db, runInput(agent, { threadId: first.thread_id }));
      expect(next.status).toBe('pending');
    });

    it("enqueues a second run on a busy thread under 'enqueue'", async () => {
      const agent = newAgent();
      const first = await createRun(store.db, runInput(agent));
      const second = await createRun(
        store.db,
        runInput(agent, { threadId: first.thread_id, multitaskStrategy: 'enqueue' }),
      );
      expect(second.thread_id).toBe(first.thread_id);
      expect(second.status).toBe('pending');
      expect(second.multitask_strategy).toBe('enqueue');
    });
  });

  describe('claimRuns (batch)', () => {
    it('claims up to the limit in one call, one run per thread, each with its step history', async () => {
      const agent = newAgent();
      const a1 = await createRun(store.db, runInput(agent));
      await createRun(store.db, runInput(agent, { threadId: a1.thread_id, multitaskStrategy: 'enqueue' }));
      const b = await createRun(store.db, runInput(agent));
      const c = await createRun(store.db, runInput(agent));
      await store.db.query(
        `INSERT INTO steps (run_id, step_index, name, kind, status, result, attempt)
         VALUES ($1, 0, 'first', 'step', 'completed', '{"v": 1}', 1)`,
        [b.run_id],
      );

      const claimed = await claimRuns(store.db, { owner: 'w', leaseMs: 5_000, agents: [agent], limit: 10 });
      // The second run of a1's thread waits for the first.
      expect(claimed.map((x) => x.run.run_id).sort()).toEqual([a1.run_id, b.run_id, c.run_id].sort());
      expect(new Set(claimed.map((x) => x.run.thread_id)).size).toBe(3);
      const withHistory = claimed.find((x) => x.run.run_id === b.run_id);
      expect(withHistory?.history).toEqual([
        expect.objectContaining({
          index: 0,
          name: 'first',
          kind: 'step',
          status: 'completed',
          result: { v: 1 },
        }),
      ]);
      expect(claimed.find((x) => x.run.run_id === c.run_id)?.history).toEqual([]);
      expect(claimed.every((x) => x.run.status === 'running' && x.lease.epoch === 1)).toBe(true);

      const limited = await claimRuns(store.db, { owner: 'w', leaseMs: 5_000, agents: [agent], limit: 1 });
      expect(limited).toEqual([]);
    });

    it('never claims more than the limit', async () => {
      const agent = newAgent();
      for (let i = 0; i < 5; i++) await createRun(store.db, runInput(agent));
      const first = await claimRuns(store.db, { owner: 'w', leaseMs: 5_000, agents: [agent], limit: 2 });
      const rest = await claimRuns(store.db, { owner: 'w', leaseMs: 5_000, agents: [agent], limit: 10 });
      expect(first).toHaveLength(2);
      expect(rest).toHaveLength(3);
    });
  });

  describe('claimRun', () => {
    it('returns null when nothing is claimable', async () => {
      expect(await claim(newAgent())).toBeNull();
    });

    it('claims by priority, then age', async () => {
      const agent = newAgent();
      const created = [];
      for (const priority of [0, 5, 0, 5, 1]) {
        created.push(await createRun(store.db, runInput(agent, { priority })));
      }
      const ids = created.map((r) => r.run_id);
      const order = [];
      for (let i = 0; i < created.length; i++) order.push((await claimOrFail(agent)).run.run_id);
      expect(order).toEqual([ids[1], ids[3], ids[4], ids[0], ids[2]]);
      expect(await claim(agent)).toBeNull();
    });

    it('only claims runs of the listed agents', async () => {
      const mine = newAgent();
      const theirs = newAgent();
      const other = await createRun(store.db, runInput(theirs, { priority: 10 }));
      const run = await createRun(store.db, runInput(mine));
      const claimed = await claimOrFail(mine);
      expect(claimed.run.run_id).toBe(run.run_id);
      expect(await claim(mine)).toBeNull();
      expect((await runRow(other.run_id)).status).toBe('pending');
      expect((await claim([mine, theirs]))?.run.run_id).toBe(other.run_id);
    });

    it('sets the lease and starts the attempt', async () => {
      const agent = newAgent();
      const run = await createRun(store.db, runInput(agent));
      const claimed = await claimOrFail(agent, 'worker-x');
      expect(claimed.run.status).toBe('running');
      expect(claimed.run.attempt).toBe(1);
      expect(claimed.run.started_at).not.toBeNull();
      expect(claimed.lease).toEqual({
        runId: run.run_id,
        threadId: run.thread_id,
        tenantId: TENANT,
        owner: 'worker-x',
        epoch: 1,
      });
      expect(claimed.baseValues).toEqual({});
      expect(await runRow(run.run_id)).toMatchObject({ status: 'running', lease_owner: 'worker-x' });
      expect((await getThread(store.db, TENANT, run.thread_id))?.status).toBe('busy');
    });

    it('never hands one run to two concurrent claimers', async () => {
      const agent = newAgent();
      const runs = [];
      for (let i = 0; i < 20; i++) runs.push(await createRun(store.db, runInput(agent)));
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => claim(agent, `worker-${i}`)));
      const claimed = results.flatMap((r) => (r === null ? [] : [r]));
      // Whatever a racing claimer skipped is still there for a later claim.
      for (let c = await claim(agent); c !== null; c = await claim(agent)) claimed.push(c);
      const ids = claimed.map((c) => c.run.run_id);
      expect(new Set(ids).size).toBe(ids.length);
      expect([...ids].sort()).toEqual(runs.map((r) => r.run_id).sort());
      for (const run of runs) {
        expect(await runRow(run.run_id)).toMatchObject({ status: 'running', attempt: 1, lease_epoch: 1 });
      }
    });

    it('never runs two runs of one thread at the same time, even with concurrent claimers', async () => {
      const agent = newAgent();
      const threads: { first: string; second: string }[] = [];
      for (let i = 0; i < 8; i++) {
        const first = await createRun(store.db, runInput(agent));
        const second = await createRun(
          store.db,
          runInput(agent, { threadId: first.thread_id, multitaskStrategy: 'enqueue' }),
        );
        threads.push({ first: first.run_id, second: second.run_id });
      }
      const results = await Promise.all(Array.from({ length: 32 }, (_, i) => claim(agent, `worker-${i}`)));
      const claimed = results.flatMap((r) => (r === null ? [] : [r]));
      for (let c = await claim(agent); c !== null; c = await claim(agent)) claimed.push(c);
      // One run per thread, and it is the thread's older run: a claimer that skipped
      // the older run (locked by another claimer) must not start the younger one.
      expect(claimed.map((c) => c.run.run_id).sort()).toEqual(threads.map((t) => t.first).sort());
      for (const t of threads) expect((await runRow(t.second)).status).toBe('pending');

      // A thread's next run is claimable only once the first has finished.
      const [done, ...rest] = claimed;
      if (done === undefined) throw new Error('no claim');
      await finish(done.lease);
      const next = await claimOrFail(agent);
      expect(next.run.thread_id).toBe(done.run.thread_id);
      expect(next.run.run_id).toBe(threads.find((t) => t.first === done.run.run_id)?.second);
      expect(await claim(agent)).toBeNull();
      for (const c of rest) await finish(c.lease);
    });

    it('starts the runs enqueued on one thread in creation order', async () => {
      const agent = newAgent();
      const first = await createRun(store.db, runInput(agent));
      const second = await createRun(
        store.db,
        runInput(agent, { threadId: first.thread_id, multitaskStrategy: 'enqueue' }),
      );
      const a = await claimOrFail(agent);
      expect(a.run.run_id).toBe(first.run_id);
      expect(await claim(agent)).toBeNull();
      await finish(a.lease, 'error');
      const b = await claimOrFail(agent);
      expect(b.run.run_id).toBe(second.run_id);
      await finish(b.lease);
      expect(await claim(agent)).toBeNull();
      expect((await getThread(store.db, TENANT, first.thread_id))?.status).toBe('idle');
    });

    it("starts a thread's oldest queued run first, whatever the priorities", async () => {
      // The runs of a thread build on each other's state: a later, higher-priority run
      // must not overtake an earlier one (it still wins over other threads' runs).
      const agent = newAgent();
      const first = await createRun(store.db, runInput(agent));
      const urgent = await createRun(
        store.db,
        runInput(agent, { threadId: first.thread_id, multitaskStrategy: 'enqueue', priority: 10 }),
      );
      const a = await claimOrFail(agent);
      expect(a.run.run_id).toBe(first.run_id);
      await finish(a.lease);
      expect((await claimOrFail(agent)).run.run_id).toBe(urgent.run_id);
    });

    it('gives the run the thread state it started from', async () => {
      const agent = newAgent();
      const thread = await createThread(store.db, { tenantId: TENANT });
      await store.db.query(`UPDATE threads SET "values" = $2::jsonb WHERE thread_id = $1`, [
        thread.thread_id,
        JSON.stringify({ messages: ['hi'] }),
      ]);
      await createRun(store.db, runInput(agent, { threadId: thread.thread_id }));
      const claimed = await claimOrFail(agent);
      expect(claimed.baseValues).toEqual({ messages: ['hi'] });
    });
  });

  describe('leases', () => {
    it('increments the lease epoch on every claim', async () => {
      const agent = newAgent();
      const run = await createRun(store.db, runInput(agent));
      const epochs = [];
      for (let i = 0; i < 3; i++) {
        const claimed = await claimOrFail(agent);
        expect(claimed.run.run_id).toBe(run.run_id);
        epochs.push(claimed.lease.epoch);
        expect(await releaseRun(store.db, claimed.lease)).toBe(true);
      }
      expect(epochs).toEqual([1, 2, 3]);
    });

    it('fences writes: the current epoch passes, a stale one throws lease_lost', async () => {
      const agent = newAgent();
      await createRun(store.db, runInput(agent));
      const first = await claimOrFail(agent);
      await touch(first.lease);
      expect(await releaseRun(store.db, first.lease)).toBe(true);
      const second = await claimOrFail(agent);
      await touch(second.lease);
      const err = await expectHangarError(touch(first.lease), 'lease_lost');
      expect(err.details).toEqual({ run_id: first.lease.runId, epoch: 1 });
    });

    it('fences a finished run', async () => {
      const agent = newAgent();
      await createRun(store.db, runInput(agent));
      const claimed = await claimOrFail(agent);
      await finish(claimed.lease);
      await expectHangarError(touch(claimed.lease), 'lease_lost');
      await expectHangarError(finish(claimed.lease), 'lease_lost');
      expect(await heartbeat(store.db, claimed.lease, LEASE_MS)).toBe(false);
    });

    it('heartbeats extend a held lease and report false once it was taken over', async () => {
      const agent = newAgent();
      await createRun(store.db, runInput(agent));
      const first = await claimOrFail(agent, 'worker-a');
      expect(await heartbeat(store.db, first.lease, LEASE_MS)).toBe(true);
      await expireLease(first.run.run_id);
      expect(await heartbeat(store.db, first.lease, LEASE_MS)).toBe(true);
      // A heartbeat renewed the lease, so the sweeper leaves it alone.
      expect(await requeueExpiredLeases(store.db)).not.toContain(first.run.run_id);
      await expireLease(first.run.run_id);
      expect(await requeueExpiredLeases(store.db)).toContain(first.run.run_id);
      // Swept but not yet reclaimed: the lease is already gone.
      expect(await heartbeat(store.db, first.lease, LEASE_MS)).toBe(false);
      const second = await claimOrFail(agent, 'worker-b');
      expect(second.run.run_id).toBe(first.run.run_id);
      expect(await heartbeat(store.db, first.lease, LEASE_MS)).toBe(false);
      expect(await heartbeat(store.db, second.lease, LEASE_MS)).toBe(true);
    });

    it('re-queues only running runs whose lease expired', async () => {
      // Sweep anything an earlier test left behind, so the assertion below is exact.
      await requeueExpiredLeases(store.db);
      const agent = newAgent();
      const runs: Run[] = [];
      for (let i = 0; i < 4; i++) runs.push(await createRun(store.db, runInput(agent)));
      const expired = await claimOrFail(agent);
      const live = await claimOrFail(agent);
      const finished = await claimOrFail(agent);
      await expireLease(expired.run.run_id);
      await expireLease(finished.run.run_id);
      await finish(finished.lease);
      const pending = runs[3];
      if (pending === undefined) throw new Error('unreachable');

      // Only this test's runs: an earlier test's lease may expire while this one runs.
      const ours = (ids: string[]) => ids.filter((id) => runs.some((r) => r.run_id === id));
      expect(ours(await requeueExpiredLeases(store.db))).toEqual([expired.run.run_id]);
      expect(await runRow(expired.run.run_id)).toMatchObject({ status: 'pending', lease_owner: null });
      expect(await runRow(live.run.run_id)).toMatchObject({ status: 'running', lease_owner: 'worker-a' });
      expect((await runRow(finished.run.run_id)).status).toBe('success');
      expect((await runRow(pending.run_id)).status).toBe('pending');
      expect(ours(await requeueExpiredLeases(store.db))).toEqual([]);
    });

    it('re-queues a run at once when the session lock its worker stamped on it is no longer held', async () => {
      const agent = newAgent();
      const runs = [await createRun(store.db, runInput(agent)), await createRun(store.db, runInput(agent))];
      const ours = (ids: string[]) => ids.filter((id) => runs.some((r) => r.run_id === id));
      // A key no session holds: its worker is gone, though the lease has a minute left.
      const dead = await claimRun(store.db, {
        owner: 'dead',
        leaseMs: LEASE_MS,
        agents: [agent],
        livenessKey: '4242',
      });
      if (dead === null) throw new Error('no run claimed');
      let liveKey: string | null = null;
      let release = async () => {};
      if (kind === 'postgres' && store.url !== undefined) {
        // A live worker: a session of its own holds its key.
        const { default: pg } = await import('pg');
        const session = new pg.Client({ connectionString: store.url });
        await session.connect();
        liveKey = '4243';
        await session.query('SELECT pg_advisory_lock($1::bigint)', [liveKey]);
        release = () => session.end();
      }
      const live = await claimRun(store.db, {
        owner: 'live',
        leaseMs: LEASE_MS,
        agents: [agent],
        livenessKey: liveKey,
      });
      if (live === null) throw new Error('no run claimed');
      try {
        expect(ours(await requeueExpiredLeases(store.db))).toEqual([dead.run.run_id]);
        expect(await runRow(dead.run.run_id)).toMatchObject({ status: 'pending', lease_owner: null });
        expect(await runRow(live.run.run_id)).toMatchObject({ status: 'running', lease_owner: 'live' });
      } finally {
        await release();
      }
      if (kind === 'postgres') {
        // The live worker's session ends (its process died): its run goes back too. The session's
        // end is asynchronous on the server, so look a few times.
        let requeued: string[] = [];
        for (let i = 0; i < 50 && !requeued.includes(live.run.run_id); i++) {
          requeued = ours(await requeueExpiredLeases(store.db));
          if (!requeued.includes(live.run.run_id)) await new Promise((r) => setTimeout(r, 50));
        }
        expect(requeued).toContain(live.run.run_id);
        expect((await runRow(live.run.run_id)).status).toBe('pending');
      }
    });

    it('requeueAllRunning re-queues running runs even with a live lease, and nothing else', async () => {
      const agent = newAgent();
      await createRun(store.db, runInput(agent));
      await createRun(store.db, runInput(agent));
      const running = await claimOrFail(agent);
      const finished = await claimOrFail(agent);
      await finish(finished.lease);

      const requeued = await requeueAllRunning(store.db);
      expect(requeued).toContain(running.run.run_id);
      expect(requeued).not.toContain(finished.run.run_id);
      expect(await runRow(running.run.run_id)).toMatchObject({ status: 'pending', lease_owner: null });
      expect((await runRow(finished.run.run_id)).status).toBe('success');
      // The old holder is fenced out.
      expect(await heartbeat(store.db, running.lease, 1_000)).toBe(false);
    });

    it('resumes a swept run before any other run of its thread', async () => {
      const agent = newAgent();
      const first = await createRun(store.db, runInput(agent));
      const claimed = await claimOrFail(agent);
      const queued = await createRun(
        store.db,
        runInput(agent, { threadId: first.thread_id, multitaskStrategy: 'enqueue' }),
      );
      await expireLease(first.run_id);
      expect(await requeueExpiredLeases(store.db)).toContain(first.run_id);
      const resumed = await claimOrFail(agent, 'worker-b');
      expect(resumed.run.run_id).toBe(first.run_id);
      expect(resumed.run.attempt).toBe(2);
      expect(resumed.lease.epoch).toBe(claimed.lease.epoch + 1);
      expect((await runRow(queued.run_id)).status).toBe('pending');
    });

    it('makes a waiting run claimable once available_at has passed, still holding its thread', async () => {
      const agent = newAgent();
      const run = await createRun(store.db, runInput(agent));
      const claimed = await claimOrFail(agent);
      const queued = await createRun(
        store.db,
        runInput(agent, { threadId: run.thread_id, multitaskStrategy: 'enqueue' }),
      );
      await suspend(claimed.lease, new Date(Date.now() + 3_600_000));
      expect(await runRow(run.run_id)).toMatchObject({ status: 'waiting', lease_owner: null });
      // Neither the sleeping run nor the next run of its thread can start yet.
      expect(await claim(agent)).toBeNull();
      expect(await heartbeat(store.db, claimed.lease, LEASE_MS)).toBe(false);

      await store.db.query(`UPDATE runs SET available_at = now() - interval '1 second' WHERE run_id = $1`, [
        run.run_id,
      ]);
      const woken = await claimOrFail(agent, 'worker-b');
      expect(woken.run.run_id).toBe(run.run_id);
      expect(woken.lease.epoch).toBe(claimed.lease.epoch + 1);
      // Waking from a sleep is not a new attempt.
      expect(woken.run.attempt).toBe(claimed.run.attempt);
      expect((await runRow(queued.run_id)).status).toBe('pending');
    });

    it('hands a released run back without counting the attempt', async () => {
      const agent = newAgent();
      const run = await createRun(store.db, runInput(agent));
      const claimed = await claimOrFail(agent);
      expect(claimed.run.attempt).toBe(1);
      expect(await releaseRun(store.db, claimed.lease)).toBe(true);
      expect(await runRow(run.run_id)).toMatchObject({ status: 'pending', attempt: 0, lease_owner: null });
      // A stale lease cannot release (or otherwise touch) the run again.
      expect(await releaseRun(store.db, claimed.lease)).toBe(false);
      const again = await claimOrFail(agent);
      expect(again.run.attempt).toBe(1);
      expect(again.lease.epoch).toBe(2);
      expect(await releaseRun(store.db, claimed.lease)).toBe(false);
      expect(await runRow(run.run_id)).toMatchObject({ status: 'running', attempt: 1, lease_epoch: 2 });
    });
  });

  describe('fencing a worker whose lease was taken over', () => {
    /** worker-a claims, its lease expires, the sweeper re-queues, worker-b reclaims. */
    async function takeover(): Promise<{ stale: Lease; current: Lease }> {
      const agent = newAgent();
      await createRun(store.db, runInput(agent));
      const a = await claimOrFail(agent, 'worker-a');
      await expireLease(a.run.run_id);
      expect(await requeueExpiredLeases(store.db)).toContain(a.run.run_id);
      const b = await claimOrFail(agent, 'worker-b');
      expect(b.run.run_id).toBe(a.run.run_id);
      return { stale: a.lease, current: b.lease };
    }

    async function lastSeq(threadId: string): Promise<number> {
      const res = await store.db.query<{ last_seq: number }>(
        'SELECT last_seq FROM threads WHERE thread_id = $1',
        [threadId],
      );
      return Number(res.rows[0]?.last_seq);
    }

    /** A step checkpoint as the engine writes it: step row, event, optionally the run's end. */
    async function checkpoint(lease: Lease, kind: 'step' | 'final') {
      return writeCheckpoint(
        store.db,
        lease,
        { attempt: lease.epoch },
        {
          step: {
            index: 0,
            name: `step-of-${lease.owner}`,
            kind: 'step',
            status: 'completed',
            result: { by: lease.owner },
            attempt: lease.epoch,
            startedAt: new Date(),
          },
          values: { by: lease.owner },
          events: [{ channel: 'custom', data: { by: lease.owner } }],
          ...(kind === 'final' ? { end: { status: 'success' as const, output: { by: lease.owner } } } : {}),
        },
      );
    }

    it.each(['step', 'final'] as const)(
      'the old worker commits neither a checkpoint, nor state, nor an event (%s write)',
      async (kind) => {
        const { stale, current } = await takeover();
        await expectHangarError(checkpoint(stale, kind), 'lease_lost');
        expect((await getThread(store.db, TENANT, stale.threadId))?.values).toEqual({});

        expect(await loadSteps(store.db, stale.runId)).toEqual([]);
        expect(await readEvents(store.db, TENANT, stale.threadId, { afterSeq: 0, limit: 100 })).toEqual([]);
        expect(await lastSeq(stale.threadId)).toBe(0);
        expect(await runRow(stale.runId)).toMatchObject({
          status: 'running',
          lease_owner: 'worker-b',
          lease_epoch: current.epoch,
        });

        // The new owner commits normally, and the failed attempt burned no seq.
        const written = await checkpoint(current, 'step');
        expect(written.map((e) => e.seq)).toEqual([1]);
        const steps = await loadSteps(store.db, current.runId);
        expect(steps.map((s) => s.result)).toEqual([{ by: 'worker-b' }]);
        const events = await readEvents(store.db, TENANT, current.threadId, { afterSeq: 0, limit: 100 });
        expect(events.map((e) => [e.seq, e.data])).toEqual([[1, { by: 'worker-b' }]]);
      },
    );

    it('the old worker cannot suspend, release or finish the run', async () => {
      const { stale, current } = await takeover();
      await expectHangarError(suspend(stale, new Date()), 'lease_lost');
      expect(await releaseRun(store.db, stale)).toBe(false);
      await expectHangarError(finish(stale, 'error'), 'lease_lost');
      expect(await runRow(current.runId)).toMatchObject({
        status: 'running',
        attempt: 2,
        lease_owner: 'worker-b',
        lease_epoch: 2,
      });
      expect((await getThread(store.db, TENANT, current.threadId))?.status).toBe('busy');
    });
  });
});
