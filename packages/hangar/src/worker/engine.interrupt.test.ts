import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { HangarError } from '../errors.ts';
import { answerInterrupt, getApproval, listApprovals } from '../hitl/repository.ts';
import { cancelRun } from '../runs/cancel.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { getThread } from '../threads/repository.ts';
import { createTestEngine, eventShape, gate, TENANT, type TestEngine } from './engine.harness.ts';

/** Asks for a decision between two steps; counts executions of each step. */
function approver(executions: { before: number; after: number }, options = {}) {
  return defineAgent({
    name: 'approver',
    input: z.object({ amount: z.number() }),
    async run(ctx, input) {
      const quote = await ctx.step('quote', () => {
        executions.before++;
        return { amount: input.amount };
      });
      ctx.state.update({ quoted: quote.amount });
      const answer = await ctx.interrupt<{ decision: string; data: unknown }>(
        { question: `refund ${quote.amount}?` },
        options,
      );
      const done = await ctx.step('act', () => {
        executions.after++;
        return answer.decision === 'approve' ? 'refunded' : 'kept';
      });
      return { answer, done };
    },
  });
}

const quick = defineAgent({
  name: 'quick',
  input: z.object({}),
  async run(ctx) {
    return ctx.step('only', () => 'quick');
  },
});

const pendingId = async (engine: TestEngine, runId: string): Promise<string> => {
  const [pending] = await listApprovals(engine.db, TENANT, {
    runId,
    status: 'pending',
    limit: 10,
    offset: 0,
  });
  if (pending === undefined) throw new Error(`run ${runId} has no pending interrupt`);
  return pending.interrupt_id;
};

describe.each(STORE_KINDS)('ctx.interrupt (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('checkpoints the run as interrupted, frees the slot, and resumes with the answer exactly once', async () => {
    const executions = { before: 0, after: 0 };
    const agent = approver(executions);
    const worker = engine.startWorker([agent, quick], { concurrency: 1 });
    const run = await engine.createRun(agent, { amount: 120 });
    const interrupted = await engine.waitForRun(run.run_id, (r) => r.status === 'interrupted');
    // The attempt is given back while the run waits (as for a sleep): resuming is not a new attempt.
    expect(interrupted.attempt).toBe(0);

    // The run keeps its thread; the interrupt is recorded with its payload.
    const thread = await getThread(engine.db, TENANT, run.thread_id);
    expect(thread?.status).toBe('interrupted');
    const id = await pendingId(engine, run.run_id);
    expect(thread?.interrupts).toEqual({ [run.run_id]: [{ id, value: { question: 'refund 120?' } }] });
    const held = await engine.db.query<{ active_run_id: string }>(
      'SELECT active_run_id FROM threads WHERE thread_id = $1',
      [run.thread_id],
    );
    expect(held.rows[0]?.active_run_id).toBe(run.run_id);
    expect((await engine.steps(run.run_id)).map((s) => [s.name, s.kind, s.status])).toEqual([
      ['quote', 'step', 'completed'],
      ['interrupt', 'interrupt', 'interrupted'],
    ]);
    const events = await engine.runEvents(run);
    expect(eventShape(events)).toEqual([
      'lifecycle:run.started',
      'updates',
      'values',
      'updates',
      'input',
      'lifecycle:run.interrupted',
    ]);
    expect(events[3]?.data).toEqual({ __interrupt__: [{ id, value: { question: 'refund 120?' } }] });
    expect(events[4]?.data).toEqual({
      event: 'input.requested',
      interruptId: id,
      payload: { question: 'refund 120?' },
    });

    // One slot: another run can only finish if the interrupted one let go of it.
    const other = await engine.createRun(quick, {});
    expect((await engine.waitForRun(other.run_id)).status).toBe('success');
    expect((await engine.waitForRun(run.run_id, () => true)).status).toBe('interrupted');
    expect(worker.activeRuns).toBe(0);

    const answered = await answerInterrupt(engine.db, TENANT, id, {
      value: { decision: 'approve', data: { note: 'ok' }, comment: null },
      decision: 'approve',
      by: 'key:alice',
    });
    expect(answered.resumed).toBe(true);
    expect(answered.approval).toMatchObject({
      status: 'answered',
      decision: 'approve',
      answered_by: 'key:alice',
    });
    expect(answered.approval.answered_at).not.toBeNull();
    engine.bus.notifyWork();
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toEqual({
      answer: { decision: 'approve', data: { note: 'ok' }, comment: null },
      done: 'refunded',
    });
    expect(executions).toEqual({ before: 1, after: 1 });
    // Resuming is not a new attempt (as waking from a sleep).
    expect(done.attempt).toBe(1);
    expect((await getThread(engine.db, TENANT, run.thread_id))?.interrupts).toEqual({});
    expect((await getThread(engine.db, TENANT, run.thread_id))?.status).toBe('idle');
  });

  it('accepts one answer of two concurrent ones; the other is a conflict carrying the first', async () => {
    const agent = approver({ before: 0, after: 0 });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, { amount: 5 });
    await engine.waitForRun(run.run_id, (r) => r.status === 'interrupted');
    const id = await pendingId(engine, run.run_id);
    const answer = (decision: string, by: string) =>
      answerInterrupt(engine.db, TENANT, id, {
        value: { decision, data: null, comment: null },
        decision,
        by,
      });
    const results = await Promise.allSettled([answer('approve', 'key:a'), answer('reject', 'key:b')]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    const first = await getApproval(engine.db, TENANT, id);
    const error = lost[0]?.reason as HangarError;
    expect(error).toBeInstanceOf(HangarError);
    expect(error.code).toBe('conflict');
    expect(error.details).toMatchObject({
      status: 'answered',
      decision: first?.decision,
      answered_by: first?.answered_by,
      answer: first?.answer,
    });
    engine.bus.notifyWork();
    const done = await engine.waitForRun(run.run_id);
    expect((done.output as { answer: { decision: string } }).answer.decision).toBe(first?.decision);
  });

  it('gives each of sequential interrupts its own id, resumed by id', async () => {
    let asked = 0;
    const twice = defineAgent({
      name: 'twice',
      input: z.object({}),
      async run(ctx) {
        const first = await ctx.interrupt<string>({ n: 1 });
        await ctx.step('between', () => {
          asked++;
          return asked;
        });
        const second = await ctx.interrupt<string>({ n: 2 });
        return { first, second };
      },
    });
    engine.startWorker(twice);
    const run = await engine.createRun(twice, {});
    await engine.waitForRun(run.run_id, (r) => r.status === 'interrupted');
    const first = await pendingId(engine, run.run_id);
    await answerInterrupt(engine.db, TENANT, first, { value: 'one', by: 't' });
    engine.bus.notifyWork();
    const second = await eventuallyPending(engine, run.run_id, first);
    expect(second).not.toBe(first);
    expect((await getApproval(engine.db, TENANT, second))?.payload).toEqual({ n: 2 });
    await answerInterrupt(engine.db, TENANT, second, { value: 'two', by: 't' });
    engine.bus.notifyWork();
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toEqual({ first: 'one', second: 'two' });
    expect(asked).toBe(1);
    expect((await engine.steps(run.run_id)).map((s) => [s.kind, s.status])).toEqual([
      ['interrupt', 'completed'],
      ['step', 'completed'],
      ['interrupt', 'completed'],
    ]);
  });

  it('cancelling an interrupted run cancels its interrupt; a late answer is a conflict', async () => {
    const agent = approver({ before: 0, after: 0 });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, { amount: 1 });
    await engine.waitForRun(run.run_id, (r) => r.status === 'interrupted');
    const id = await pendingId(engine, run.run_id);
    const result = await cancelRun(engine.db, TENANT, run.run_id, {
      action: 'interrupt',
      reason: 'api',
      by: 'me',
    });
    expect(result.outcome).toBe('cancelled');
    expect((await engine.waitForRun(run.run_id)).status).toBe('cancelled');
    expect((await getApproval(engine.db, TENANT, id))?.status).toBe('cancelled');
    await expect(answerInterrupt(engine.db, TENANT, id, { value: 'late', by: 'me' })).rejects.toMatchObject({
      code: 'conflict',
      details: { status: 'cancelled' },
    });
    const thread = await getThread(engine.db, TENANT, run.thread_id);
    expect(thread?.status).toBe('idle');
    expect(thread?.interrupts).toEqual({});
  });

  it('a cancel requested while the run was reaching its interrupt ends it as cancelled', async () => {
    const reached = gate();
    const proceed = gate();
    const late = defineAgent({
      name: 'late',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('work', async () => {
          reached.open();
          await proceed.promise;
          return 1;
        });
        return ctx.interrupt({ q: 1 });
      },
    });
    // No heartbeat during the test: the worker does not hear of the cancel before its interrupt write.
    engine.startWorker(late, { leaseMs: 120_000, heartbeatMs: 60_000 });
    const run = await engine.createRun(late, {});
    await reached.promise;
    await engine.db.query(
      `UPDATE runs SET cancel_requested_at = now(), cancel_action = 'interrupt', cancel_reason = 'api',
         cancelled_by = 'me' WHERE run_id = $1`,
      [run.run_id],
    );
    proceed.open();
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('cancelled');
    const [closed] = await listApprovals(engine.db, TENANT, {
      runId: run.run_id,
      status: 'all',
      limit: 5,
      offset: 0,
    });
    expect(closed?.status).toBe('cancelled');
    expect((await getThread(engine.db, TENANT, run.thread_id))?.status).toBe('idle');
  });

  it('a rolled-back interrupted run takes its interrupt with it (404 afterwards)', async () => {
    const agent = approver({ before: 0, after: 0 });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, { amount: 1 });
    await engine.waitForRun(run.run_id, (r) => r.status === 'interrupted');
    const id = await pendingId(engine, run.run_id);
    await cancelRun(engine.db, TENANT, run.run_id, { action: 'rollback', reason: 'api', by: 'me' });
    await expect(answerInterrupt(engine.db, TENANT, id, { value: 'late', by: 'me' })).rejects.toMatchObject({
      code: 'not_found',
    });
  });

  it('an expired interrupt resumes with its onTimeout answer', async () => {
    const executions = { before: 0, after: 0 };
    const agent = approver(executions, {
      timeout: 300,
      onTimeout: { resume: { decision: 'reject', data: null } },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, { amount: 9 });
    await engine.waitForRun(run.run_id, (r) => r.status === 'interrupted');
    const id = await pendingId(engine, run.run_id);
    expect((await getApproval(engine.db, TENANT, id))?.expires_at).not.toBeNull();
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toEqual({ answer: { decision: 'reject', data: null }, done: 'kept' });
    expect(await getApproval(engine.db, TENANT, id)).toMatchObject({
      status: 'expired',
      answered_by: 'timeout',
    });
    await expect(answerInterrupt(engine.db, TENANT, id, { value: 'late', by: 'me' })).rejects.toMatchObject({
      code: 'conflict',
      details: { status: 'expired' },
    });
    expect(executions).toEqual({ before: 1, after: 1 });
  });

  it('an expired interrupt without a default ends the run with interrupt_expired', async () => {
    const agent = approver({ before: 0, after: 0 }, { timeout: 300 });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, { amount: 9 });
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error?.code).toBe('interrupt_expired');
    const [expired] = await listApprovals(engine.db, TENANT, {
      runId: run.run_id,
      status: 'expired',
      limit: 5,
      offset: 0,
    });
    expect(expired?.answer).toBeNull();
    expect(done.error?.details).toMatchObject({ interrupt_id: expired?.interrupt_id });
  });
});

async function eventuallyPending(engine: TestEngine, runId: string, not: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [pending] = await listApprovals(engine.db, TENANT, {
      runId,
      status: 'pending',
      limit: 10,
      offset: 0,
    });
    if (pending !== undefined && pending.interrupt_id !== not) return pending.interrupt_id;
    if (Date.now() > deadline) throw new Error('no second interrupt');
    await new Promise((r) => setTimeout(r, 20));
  }
}
