import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { answerInterrupt, getApproval, listApprovals } from '../hitl/repository.ts';
import { type Agent, defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { getThread } from '../threads/repository.ts';
import { createTestEngine, eventShape, eventually, TENANT, type TestEngine } from './engine.harness.ts';

const quick = defineAgent({
  name: 'quick',
  input: z.object({}),
  async run(ctx) {
    return ctx.step('only', () => 'quick');
  },
});

/** The run's pending interrupts, in call order. */
async function pending(engine: TestEngine, runId: string) {
  return listApprovals(engine.db, TENANT, { runId, status: 'pending', limit: 10, offset: 0 });
}

async function runRow(engine: TestEngine, runId: string) {
  const res = await engine.db.query<{ status: string; available_at: string }>(
    `SELECT status, available_at::text FROM runs WHERE run_id = $1`,
    [runId],
  );
  return res.rows[0];
}

describe.each(STORE_KINDS)('parallel ctx.interrupt (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  /**
   * Runs an agent that raises two interrupts, the first with a short timeout:
   * waits for it to expire (the run still waits for the other), answers the
   * second with 'B', and returns the finished run.
   */
  async function expireFirstAnswerSecond(agent: Agent) {
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    await engine.waitForRun(run.run_id, (r) => r.status === 'interrupted');
    const [expiring, open] = await pending(engine, run.run_id);
    await eventually(
      'the first interrupt to expire',
      async () => (await getApproval(engine.db, TENANT, expiring?.interrupt_id ?? ''))?.status === 'expired',
    );
    expect((await runRow(engine, run.run_id))?.status).toBe('interrupted');
    const answered = await answerInterrupt(engine.db, TENANT, open?.interrupt_id ?? '', {
      value: 'B',
      by: 't',
    });
    expect(answered.resumed).toBe(true);
    engine.bus.notifyWork();
    return engine.waitForRun(run.run_id);
  }

  it('registers a Promise.all of interrupts in one write and resumes once the last is answered', async () => {
    const executions = { before: 0, after: 0 };
    const agent = defineAgent({
      name: 'two-questions',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('before', () => ++executions.before);
        const [a, b] = await Promise.all([
          ctx.interrupt<string>({ q: 'a' }),
          ctx.interrupt<string>({ q: 'b' }),
        ]);
        await ctx.step('after', () => ++executions.after);
        return [a, b];
      },
    });
    const worker = engine.startWorker([agent, quick], { concurrency: 1 });
    const run = await engine.createRun(agent, {});
    await engine.waitForRun(run.run_id, (r) => r.status === 'interrupted');

    // Both pending, in call order, on the thread and in the approvals queue.
    const [first, second] = await pending(engine, run.run_id);
    expect([first?.payload, second?.payload]).toEqual([{ q: 'a' }, { q: 'b' }]);
    expect([first?.step_index, second?.step_index]).toEqual([1, 2]);
    const ids = [first?.interrupt_id ?? '', second?.interrupt_id ?? ''];
    expect((await getThread(engine.db, TENANT, run.thread_id))?.interrupts).toEqual({
      [run.run_id]: [
        { id: ids[0], value: { q: 'a' } },
        { id: ids[1], value: { q: 'b' } },
      ],
    });

    // ONE checkpoint: one `__interrupt__` update listing both, their requests, one run.interrupted,
    // all logged by the same statement (one timestamp).
    const events = await engine.runEvents(run);
    expect(eventShape(events)).toEqual([
      'lifecycle:run.started',
      'updates',
      'updates',
      'input',
      'input',
      'lifecycle:run.interrupted',
    ]);
    expect(events[2]?.data).toEqual({
      __interrupt__: [
        { id: ids[0], value: { q: 'a' } },
        { id: ids[1], value: { q: 'b' } },
      ],
    });
    expect(events.slice(3, 5).map((e) => (e.data as { interruptId: string }).interruptId)).toEqual(ids);
    expect(events[5]?.data).toMatchObject({ interrupt_id: ids[0], interrupt_ids: ids });
    expect(new Set(events.slice(2).map((e) => e.ts)).size).toBe(1);

    // Interrupted with two pending, the run holds no slot: a one-slot worker runs another run.
    const other = await engine.createRun(quick, {});
    expect((await engine.waitForRun(other.run_id)).status).toBe('success');
    expect(worker.activeRuns).toBe(0);

    // Answering one (the second) leaves the run interrupted and unclaimable, the other still pending.
    const one = await answerInterrupt(engine.db, TENANT, ids[1] ?? '', { value: 'B', by: 'key:bob' });
    expect(one.resumed).toBe(false);
    engine.bus.notifyWork();
    const barrier = await engine.createRun(quick, {});
    expect((await engine.waitForRun(barrier.run_id)).status).toBe('success');
    expect(await runRow(engine, run.run_id)).toEqual({ status: 'interrupted', available_at: 'infinity' });
    expect((await pending(engine, run.run_id)).map((p) => p.interrupt_id)).toEqual([ids[0]]);
    expect((await getThread(engine.db, TENANT, run.thread_id))?.interrupts).toEqual({
      [run.run_id]: [{ id: ids[0], value: { q: 'a' } }],
    });

    const last = await answerInterrupt(engine.db, TENANT, ids[0] ?? '', { value: 'A', by: 'key:ann' });
    expect(last.resumed).toBe(true);
    engine.bus.notifyWork();
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    // Each ctx.interrupt returns its own answer; nothing before them ran twice.
    expect(done.output).toEqual(['A', 'B']);
    expect(executions).toEqual({ before: 1, after: 1 });
    expect(done.attempt).toBe(1);
    const log = eventShape(await engine.runEvents(run));
    expect(log.filter((e) => e === 'lifecycle:run.started')).toHaveLength(2);
    expect(log.filter((e) => e === 'lifecycle:run.interrupted')).toHaveLength(1);
  });

  it('suspends once every concurrent branch reached its operation: a racing step completes first', async () => {
    let slowRuns = 0;
    const agent = defineAgent({
      name: 'branches',
      input: z.object({}),
      async run(ctx) {
        return Promise.all([
          ctx.interrupt<string>({ q: 'now' }),
          (async () => {
            const n = await ctx.step('slow', async () => {
              await new Promise((r) => setTimeout(r, 300));
              return ++slowRuns;
            });
            return ctx.interrupt<string>({ q: 'after', n });
          })(),
        ]);
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    await engine.waitForRun(run.run_id, (r) => r.status === 'interrupted');
    // The step in flight was checkpointed, and the branch's interrupt joined the same suspension.
    expect((await engine.steps(run.run_id)).map((s) => [s.index, s.kind, s.status])).toEqual([
      [0, 'interrupt', 'interrupted'],
      [1, 'step', 'completed'],
      [2, 'interrupt', 'interrupted'],
    ]);
    const ids = (await pending(engine, run.run_id)).map((p) => p.interrupt_id);
    expect(ids).toHaveLength(2);
    expect(
      eventShape(await engine.runEvents(run)).filter((e) => e === 'lifecycle:run.interrupted'),
    ).toHaveLength(1);
    for (const [i, id] of ids.entries()) {
      await answerInterrupt(engine.db, TENANT, id, { value: `answer ${i}`, by: 't' });
    }
    engine.bus.notifyWork();
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toEqual(['answer 0', 'answer 1']);
    expect(slowRuns).toBe(1);
  });

  it('a sleep racing an interrupt: resumed by the answer, the run then sleeps out the rest', async () => {
    const agent = defineAgent({
      name: 'nap-or-ask',
      input: z.object({}),
      async run(ctx) {
        const [, answer] = await Promise.all([ctx.sleep(1500), ctx.interrupt<string>({ q: 'x' })]);
        return answer;
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    await engine.waitForRun(run.run_id, (r) => r.status === 'interrupted');
    expect((await engine.steps(run.run_id)).map((s) => [s.kind, s.status])).toEqual([
      ['sleep', 'sleeping'],
      ['interrupt', 'interrupted'],
    ]);
    const [only] = await pending(engine, run.run_id);
    await answerInterrupt(engine.db, TENANT, only?.interrupt_id ?? '', { value: 'yes', by: 't' });
    engine.bus.notifyWork();
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toBe('yes');
    // Answered before the sleep was due: the resumed run suspended again until it, then finished.
    expect(eventShape(await engine.runEvents(run)).filter((e) => e.startsWith('lifecycle:'))).toEqual([
      'lifecycle:run.started',
      'lifecycle:run.interrupted',
      'lifecycle:run.started',
      'lifecycle:run.waiting',
      'lifecycle:run.started',
      'lifecycle:run.completed',
    ]);
  });

  it('parallel sleeps without an interrupt: the run waits until the earliest is due', async () => {
    const agent = defineAgent({
      name: 'two-naps',
      input: z.object({}),
      async run(ctx) {
        await Promise.all([ctx.sleep(300), ctx.sleep(900)]);
        return 'rested';
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toBe('rested');
    const [short, long] = await engine.steps(run.run_id);
    expect([short?.status, long?.status]).toEqual(['completed', 'completed']);
    const waits = (await engine.runEvents(run)).filter(
      (e) => (e.data as { event?: string }).event === 'run.waiting',
    );
    expect(waits[0]?.data).toMatchObject({ until: short?.wakeAt?.toISOString() });
  });

  it('one of two expiring with a default: the run waits for the other, then gets both', async () => {
    const agent = defineAgent({
      name: 'one-expires',
      input: z.object({}),
      async run(ctx) {
        return Promise.all([
          ctx.interrupt<string>({ q: 'quick' }, { timeout: 200, onTimeout: { resume: 'default' } }),
          ctx.interrupt<string>({ q: 'slow' }),
        ]);
      },
    });
    const done = await expireFirstAnswerSecond(agent);
    expect(done.output).toEqual(['default', 'B']);
  });

  it('one of two expiring without a default: the other is still answered, then that call throws', async () => {
    const agent = defineAgent({
      name: 'one-fails',
      input: z.object({}),
      async run(ctx) {
        const [late, answered] = await Promise.allSettled([
          ctx.interrupt<string>({ q: 'quick' }, { timeout: 200 }),
          ctx.interrupt<string>({ q: 'slow' }),
        ]);
        return {
          late: late.status === 'rejected' ? (late.reason as { code?: string }).code : late.value,
          answered: answered.status === 'fulfilled' ? answered.value : null,
        };
      },
    });
    const done = await expireFirstAnswerSecond(agent);
    expect(done.output).toEqual({ late: 'interrupt_expired', answered: 'B' });
  });
});
