/**
 * Dead letters at the repository level, on both stores: the sweeper's
 * crash-loop cap ends a run `dead` as any terminal write would, and the
 * redrive / discard compare-and-sets settle it exactly once.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ErrorCode, HangarError } from '../errors.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import { appendEvents, readEvents } from '../events/log.ts';
import { createTestStore, STORE_KINDS, type TestStore } from '../testing/db.ts';
import { createThread, getThread } from '../threads/repository.ts';
import { claimDeliveries } from '../webhooks/repository.ts';
import { writeCheckpoint } from './checkpoint.ts';
import { discardRun, getDeadLetter, listDeadLetters, redriveRun } from './dead-letters.ts';
import {
  type CreateRunInput,
  claimRun,
  createRun,
  getRun,
  releaseRun,
  requeueAllRunning,
  requeueExpiredLeases,
} from './repository.ts';
import type { ClaimedRun, Run } from './types.ts';

const TENANT = 'default';

async function expectHangarError(promise: Promise<unknown>, code: ErrorCode): Promise<HangarError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HangarError);
  expect((err as HangarError).code).toBe(code);
  return err as HangarError;
}

describe.each(STORE_KINDS)('dead letters on %s', (kind) => {
  let store: TestStore;

  beforeAll(async () => {
    store = await createTestStore(kind);
  });

  afterAll(async () => {
    await store?.dispose();
  });

  const newAgent = () => `agent-${randomUUID()}`;
  const input = (agent: string, extra: Partial<CreateRunInput> = {}): CreateRunInput => ({
    tenantId: TENANT,
    agent,
    assistantId: randomUUID(),
    input: { n: 1 },
    ...extra,
  });

  async function claim(agent: string): Promise<ClaimedRun> {
    const claimed = await claimRun(store.db, { owner: 'worker-a', leaseMs: 60_000, agents: [agent] });
    if (claimed === null) throw new Error(`expected a claimable run for ${agent}`);
    return claimed;
  }

  /** The worker holding the run dies: its lease runs out, and the sweeper looks. */
  async function dieAndSweep(runId: string, maxAttempts: number) {
    await store.db.query(
      `UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE run_id = $1 AND status = 'running'`,
      [runId],
    );
    const effects = { dead: [] as string[], events: [] as EventEnvelope[] };
    const requeued = await requeueExpiredLeases(store.db, 100, { maxAttempts, effects });
    return { requeued, effects };
  }

  /** A run on a thread of its own that completed step 0, had step 1 fail, and died in its only attempt. */
  async function deadRun(agent = newAgent(), extra: Partial<CreateRunInput> = {}) {
    const thread = await createThread(store.db, { tenantId: TENANT });
    const run = await createRun(store.db, input(agent, { threadId: thread.thread_id, ...extra }));
    const claimed = await claim(agent);
    await writeCheckpoint(
      store.db,
      claimed.lease,
      { attempt: 1 },
      {
        step: {
          index: 0,
          name: 'fetch',
          kind: 'step',
          status: 'completed',
          result: { v: 'page' },
          attempt: 1,
          startedAt: new Date(),
        },
        values: { fetched: true, note: 'old' },
        // The step's commit, marked as the engine marks it: what a resume keeps.
        events: [{ channel: 'updates', data: { fetch: 'page' }, opKey: `ckpt:0:${claimed.lease.epoch}` }],
      },
    );
    // Then step 1 streamed partial output, failed its tries, and the worker died.
    await appendEvents(
      store.db,
      { tenantId: TENANT, threadId: thread.thread_id, runId: run.run_id, attempt: 1 },
      [{ channel: 'messages', data: { token: 'half a sent' } }],
    );
    await store.db.query(
      `INSERT INTO steps (run_id, step_index, name, kind, status, attempt, error)
       VALUES ($1, 1, 'parse', 'step', 'failed', 3, '{"message":"boom"}'::jsonb)`,
      [run.run_id],
    );
    const { effects } = await dieAndSweep(run.run_id, 1);
    expect(effects.dead).toEqual([run.run_id]);
    return { agent, threadId: thread.thread_id, run };
  }

  it('ends a run dead once its worker died in every attempt up to the cap, as a terminal write', async () => {
    const agent = newAgent();
    const thread = await createThread(store.db, { tenantId: TENANT });
    const run = await createRun(
      store.db,
      input(agent, { threadId: thread.thread_id, webhook: 'https://x.test/h' }),
    );
    const next = await createRun(
      store.db,
      input(agent, { threadId: thread.thread_id, multitaskStrategy: 'enqueue' }),
    );
    // A drain hand-back gives its attempt back: it never counts toward the cap.
    for (let i = 0; i < 3; i++) await releaseRun(store.db, (await claim(agent)).lease);
    for (let attempt = 1; attempt < 3; attempt++) {
      const claimed = await claim(agent);
      expect(claimed.run.attempt).toBe(attempt);
      const swept = await dieAndSweep(run.run_id, 3);
      expect(swept.requeued).toContain(run.run_id);
      expect(swept.effects.dead).toEqual([]);
    }
    const last = await claim(agent);
    expect(last.run.run_id).toBe(run.run_id);
    expect(last.run.attempt).toBe(3);
    const { requeued, effects } = await dieAndSweep(run.run_id, 3);
    expect(requeued).not.toContain(run.run_id);
    expect(effects.dead).toEqual([run.run_id]);

    const dead = await getRun(store.db, TENANT, run.run_id);
    expect(dead).toMatchObject({ status: 'dead', attempt: 3 });
    expect(dead?.finished_at).not.toBeNull();
    expect(dead?.error).toMatchObject({
      code: 'attempts_exhausted',
      details: { attempts: 3, max_attempts: 3 },
    });
    // The terminal event is in the log (and handed back to publish), last of the run.
    const log = await readEvents(store.db, TENANT, thread.thread_id, { afterSeq: 0, limit: 100 });
    const terminal = log.at(-1);
    expect(terminal).toMatchObject({
      run_id: run.run_id,
      channel: 'lifecycle',
      data: { event: 'run.completed', status: 'dead', terminal: true, error: { code: 'attempts_exhausted' } },
    });
    expect(effects.events).toEqual([terminal]);
    // The thread is freed and handed to its queued run; the webhook is due.
    expect((await getThread(store.db, TENANT, thread.thread_id))?.status).toBe('error');
    const successor = await claim(agent);
    expect(successor.run.run_id).toBe(next.run_id);
    const deliveries = await claimDeliveries(store.db, { limit: 100, leaseMs: 60_000, maxAttempts: 10 });
    expect(deliveries.map((d) => d.runId)).toContain(run.run_id);
    await writeCheckpoint(
      store.db,
      successor.lease,
      { attempt: 1 },
      { events: [], end: { status: 'success', output: null } },
    );
  });

  it('inspects a dead letter: error, attempts, steps with their last error, last checkpoint', async () => {
    const { run, agent, threadId } = await deadRun();
    const detail = await getDeadLetter(store.db, TENANT, run.run_id);
    expect(detail.run).toMatchObject({ run_id: run.run_id, status: 'dead', discarded_at: null });
    expect(detail.error?.code).toBe('attempts_exhausted');
    expect(detail.attempts).toBe(1);
    expect(detail.steps.map((s) => [s.index, s.name, s.status, s.attempt, s.error])).toEqual([
      [0, 'fetch', 'completed', 1, null],
      [1, 'parse', 'failed', 3, { message: 'boom' }],
    ]);
    expect(detail.checkpoint?.values).toEqual({ fetched: true, note: 'old' });
    expect(detail.redrives).toEqual([]);
    const listed = await listDeadLetters(store.db, TENANT, { agent, limit: 10, offset: 0 });
    expect(listed.map((l) => l.run_id)).toEqual([run.run_id]);
    expect(await listDeadLetters(store.db, TENANT, { threadId, limit: 10, offset: 0 })).toHaveLength(1);
    // Tenant-scoped; a run that never died is not a dead letter.
    await expectHangarError(getDeadLetter(store.db, 'other', run.run_id), 'not_found');
    expect(await listDeadLetters(store.db, 'other', { agent, limit: 10, offset: 0 })).toEqual([]);
    const alive = await createRun(store.db, input(newAgent()));
    const err = await expectHangarError(getDeadLetter(store.db, TENANT, alive.run_id), 'not_found');
    expect(err.message).toContain('not a dead letter (status pending)');
  });

  it('redrives a dead run: completed steps kept, failed step dropped, attempts reset, patches recorded', async () => {
    const { run, agent, threadId } = await deadRun(newAgent(), { webhook: 'https://x.test/h' });
    // Its "dead" webhook went out already.
    await store.db.query(
      `UPDATE webhook_deliveries SET status = 'delivered', attempts = 1 WHERE run_id = $1`,
      [run.run_id],
    );
    const before = await readEvents(store.db, TENANT, threadId, { afterSeq: 0, limit: 100 });
    const {
      run: redriven,
      redrive,
      events,
    } = await redriveRun(store.db, TENANT, run.run_id, {
      input: { n: 2 },
      state: { note: 'fixed' },
      by: 'key:ops',
    });
    expect(redriven).toMatchObject({ status: 'pending', attempt: 0, error: null, input: { n: 2 } });
    expect(redrive).toMatchObject({
      run_id: run.run_id,
      redriven_by: 'key:ops',
      input_changed: true,
      input: { n: 2 },
      state: { note: 'fixed' },
      previous_error: { code: 'attempts_exhausted' },
      previous_attempts: 1,
      queued: false,
    });
    // The dead attempt's partial output (after the step 0 commit) is fenced off with the marker.
    const committed = before.find((e) => e.channel === 'updates');
    const partial = before.find((e) => e.channel === 'messages');
    expect(events).toEqual([
      expect.objectContaining({
        seq: Number(before.at(-1)?.seq) + 1,
        channel: 'lifecycle',
        data: {
          event: 'output.discarded',
          run_id: run.run_id,
          after_seq: committed?.seq,
          reason: 'resume',
          attempt: 1,
        },
      }),
    ]);
    expect(Number(committed?.seq)).toBeLessThan(Number(partial?.seq));
    const after = await readEvents(store.db, TENANT, threadId, { afterSeq: 0, limit: 100 });
    expect(after.at(-1)).toEqual(events[0]);
    // The thread was free: its values show the patch now.
    expect((await getThread(store.db, TENANT, threadId))?.values).toMatchObject({ note: 'fixed' });
    expect(await listDeadLetters(store.db, TENANT, { agent, limit: 10, offset: 0 })).toEqual([]);

    // The next attempt resumes: step 0 from its checkpoint, no failed step, the patched state as its base.
    const resumed = await claim(agent);
    expect(resumed.run.run_id).toBe(run.run_id);
    expect(resumed.run.attempt).toBe(1);
    expect(resumed.history.map((s) => [s.index, s.status])).toEqual([[0, 'completed']]);
    expect(resumed.baseValues).toMatchObject({ note: 'fixed' });
    await writeCheckpoint(
      store.db,
      resumed.lease,
      { attempt: 1 },
      { events: [], end: { status: 'success', output: 'ok' } },
    );
    // The webhook goes out again, for the redrive's outcome.
    const deliveries = await claimDeliveries(store.db, { limit: 100, leaseMs: 60_000, maxAttempts: 10 });
    expect(deliveries.filter((d) => d.runId === run.run_id).map((d) => d.attempt)).toEqual([1]);
    // The audit trail stays readable after the run succeeded.
    const detail = await getDeadLetter(store.db, TENANT, run.run_id);
    expect(detail.run.status).toBe('success');
    expect(detail.redrives).toHaveLength(1);
    // Not dead any more: a second redrive names the status.
    const again = await expectHangarError(
      redriveRun(store.db, TENANT, run.run_id, { by: 'key:ops' }),
      'conflict',
    );
    expect(again.message).toContain('is success, not dead');
  });

  it('exactly one of concurrent redrives wins', async () => {
    const { run } = await deadRun();
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) => redriveRun(store.db, TENANT, run.run_id, { by: `key:${i}` })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((r) => r.status === 'rejected')) {
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'conflict' });
      expect(String((r as PromiseRejectedResult).reason.message)).toContain('is pending, not dead');
    }
    expect((await getDeadLetter(store.db, TENANT, run.run_id)).redrives).toHaveLength(1);
    // One marker, by the winner.
    const log = await readEvents(store.db, TENANT, run.thread_id, { afterSeq: 0, limit: 100 });
    expect(log.filter((e) => (e.data as { event?: string }).event === 'output.discarded')).toHaveLength(1);
  });

  it('a redrive on a busy thread queues behind the thread’s run', async () => {
    const { run, agent, threadId } = await deadRun();
    const other = await createRun(store.db, input(agent, { threadId }));
    const { redrive } = await redriveRun(store.db, TENANT, run.run_id, { state: { x: 1 }, by: 'key:ops' });
    expect(redrive.queued).toBe(true);
    // Busy thread: its values are left to the running run; the patch waits in the run's base.
    expect((await getThread(store.db, TENANT, threadId))?.values).not.toHaveProperty('x');
    const first = await claim(agent);
    expect(first.run.run_id).toBe(other.run_id);
    expect(await claimRun(store.db, { owner: 'w', leaseMs: 60_000, agents: [agent] })).toBeNull();
    await writeCheckpoint(
      store.db,
      first.lease,
      { attempt: 1 },
      { events: [], end: { status: 'success', output: 1 } },
    );
    const second = await claim(agent);
    expect(second.run.run_id).toBe(run.run_id);
    expect(second.baseValues).toMatchObject({ x: 1 });
    await writeCheckpoint(
      store.db,
      second.lease,
      { attempt: 1 },
      { events: [], end: { status: 'success', output: 2 } },
    );
  });

  it('discards a dead letter: gone from the list, kept for audit, no longer redrivable', async () => {
    const { run, agent } = await deadRun();
    const discarded = await discardRun(store.db, TENANT, run.run_id, 'key:ops');
    expect(discarded).toMatchObject({ status: 'dead', discarded_by: 'key:ops' });
    expect(discarded.discarded_at).not.toBeNull();
    expect(await listDeadLetters(store.db, TENANT, { agent, limit: 10, offset: 0 })).toEqual([]);
    const all = await listDeadLetters(store.db, TENANT, {
      agent,
      includeDiscarded: true,
      limit: 10,
      offset: 0,
    });
    expect(all.map((l: Run) => l.run_id)).toEqual([run.run_id]);
    expect((await getDeadLetter(store.db, TENANT, run.run_id)).run.discarded_by).toBe('key:ops');
    const redrive = await expectHangarError(
      redriveRun(store.db, TENANT, run.run_id, { by: 'x' }),
      'conflict',
    );
    expect(redrive.message).toContain('was discarded by key:ops');
    await expectHangarError(discardRun(store.db, TENANT, run.run_id, 'x'), 'conflict');
    await expectHangarError(discardRun(store.db, 'other', run.run_id, 'x'), 'not_found');
    const alive = await createRun(store.db, input(newAgent()));
    const err = await expectHangarError(discardRun(store.db, TENANT, alive.run_id, 'x'), 'conflict');
    expect(err.message).toContain('is pending, not dead');
  });
  it('a restarting `hangar dev` (requeueAllRunning) re-queues what its dead process ran, up to the same cap', async () => {
    const agent = newAgent();
    const fresh = await createRun(store.db, input(agent));
    const worn = await createRun(store.db, input(agent));
    await claim(agent);
    await claim(agent);
    // `worn` has died with the process in every attempt up to the cap; `fresh` only once.
    await store.db.query('UPDATE runs SET attempt = 4 WHERE run_id = $1', [worn.run_id]);
    const effects = { dead: [] as string[], events: [] as EventEnvelope[] };
    const requeued = await requeueAllRunning(store.db, { maxAttempts: 4, effects });
    expect(requeued).toContain(fresh.run_id);
    expect(requeued).not.toContain(worn.run_id);
    expect(effects.dead).toEqual([worn.run_id]);
    expect(await getRun(store.db, TENANT, fresh.run_id)).toMatchObject({ status: 'pending' });
    expect(await getRun(store.db, TENANT, worn.run_id)).toMatchObject({
      status: 'dead',
      error: { code: 'attempts_exhausted' },
    });
    expect(effects.events).toEqual([
      expect.objectContaining({ run_id: worn.run_id, data: expect.objectContaining({ status: 'dead' }) }),
    ]);
  });
});
