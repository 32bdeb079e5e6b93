import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { createTestEngine, eventShape, type TestEngine } from './engine.harness.ts';

const SLEEP_MS = 800;

function sleeper(executions: { before: number; after: number }) {
  return defineAgent({
    name: 'sleeper',
    input: z.object({}),
    async run(ctx) {
      const before = await ctx.step('before', () => {
        executions.before++;
        return Date.now();
      });
      await ctx.sleep(SLEEP_MS);
      const after = await ctx.step('after', ({ attempt }) => {
        executions.after++;
        return { at: Date.now(), attempt };
      });
      return { slept_ms: after.at - before, after_attempt: after.attempt, run_attempt: ctx.attempt };
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

describe.each(STORE_KINDS)('ctx.sleep (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('frees the worker slot while the run sleeps', async () => {
    const napper = defineAgent({
      name: 'napper',
      input: z.object({}),
      async run(ctx) {
        await ctx.sleep('1m');
        return 'rested';
      },
    });
    const worker = engine.startWorker([napper, quick], { concurrency: 1 });
    const napping = await engine.createRun(napper, {});
    await engine.waitForRun(napping.run_id, (r) => r.status === 'waiting');
    // One slot, and the napper sleeps far longer than this wait: the quick run can only finish if the
    // sleeping run let go of the slot.
    const other = await engine.createRun(quick, {});
    const otherDone = await engine.waitForRun(other.run_id);
    expect(otherDone.status).toBe('success');
    const stillNapping = await engine.waitForRun(napping.run_id, () => true);
    expect(stillNapping.status).toBe('waiting');
    expect(worker.activeRuns).toBe(0);
  });

  it('suspends the run as waiting and completes it after the time passes', async () => {
    const executions = { before: 0, after: 0 };
    const agent = sleeper(executions);
    const worker = engine.startWorker(agent);
    const sleeping = await engine.createRun(agent, {});
    const waiting = await engine.waitForRun(
      sleeping.run_id,
      (r) => r.status !== 'pending' && r.status !== 'running',
    );
    expect(waiting.status).toBe('waiting');
    expect(worker.activeRuns).toBe(0);
    const steps = await engine.steps(sleeping.run_id);
    expect(steps.map((s) => [s.name, s.kind, s.status])).toEqual([
      ['before', 'step', 'completed'],
      ['sleep', 'sleep', 'sleeping'],
    ]);
    const wakeAt = steps[1]?.wakeAt;
    expect(wakeAt).toBeInstanceOf(Date);

    const sleeperFinished = await engine.waitForRun(sleeping.run_id);
    expect(sleeperFinished.status).toBe('success');
    expect(executions).toEqual({ before: 1, after: 1 });
    const output = sleeperFinished.output as { slept_ms: number };
    expect(output.slept_ms).toBeGreaterThanOrEqual(SLEEP_MS);
    // Waking from a sleep is not a new attempt (attempts count lost workers, not sleeps).
    expect(output).toMatchObject({ after_attempt: 1, run_attempt: 1 });
    expect(sleeperFinished.attempt).toBe(1);
    const finalSteps = await engine.steps(sleeping.run_id);
    expect(finalSteps.map((s) => [s.name, s.status])).toEqual([
      ['before', 'completed'],
      ['sleep', 'completed'],
      ['after', 'completed'],
    ]);
    expect(finalSteps[1]?.wakeAt?.getTime()).toBe(wakeAt?.getTime());

    const events = await engine.runEvents(sleeping);
    expect(new Set(events.map((e) => e.attempt))).toEqual(new Set([1]));
    expect(eventShape(events)).toEqual([
      'lifecycle:run.started',
      'updates',
      'lifecycle:run.waiting',
      'lifecycle:run.started',
      'updates',
      'lifecycle:run.completed',
    ]);
    expect(events[2]?.data).toEqual({
      event: 'run.waiting',
      status: 'waiting',
      until: wakeAt?.toISOString(),
    });
  });

  it('survives a worker restart during the sleep', async () => {
    const executions = { before: 0, after: 0 };
    const agent = sleeper(executions);
    const first = engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const waiting = await engine.waitForRun(run.run_id, (r) => r.status === 'waiting');
    expect(waiting.status).toBe('waiting');
    await first.stop();
    // Nothing touches a sleeping run while no worker is up.
    expect((await engine.waitForRun(run.run_id, () => true)).status).toBe('waiting');

    engine.startWorker(agent);
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(executions).toEqual({ before: 1, after: 1 });
    expect((done.output as { slept_ms: number }).slept_ms).toBeGreaterThanOrEqual(SLEEP_MS);
  });

  it('a sleep that is already due completes without suspending the run again', async () => {
    // Two sleeps in a row: the second is reached only after the first wakes, on a fresh claim.
    const agent = defineAgent({
      name: 'double-sleeper',
      input: z.object({}),
      async run(ctx) {
        await ctx.sleep('300ms');
        await ctx.sleep(0);
        return 'awake';
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toBe('awake');
    const steps = await engine.steps(run.run_id);
    expect(steps.map((s) => [s.kind, s.status])).toEqual([
      ['sleep', 'completed'],
      ['sleep', 'completed'],
    ]);
    const waits = (await engine.runEvents(run)).filter(
      (e) => (e.data as { event?: string }).event === 'run.waiting',
    );
    expect(waits).toHaveLength(1);
  });
});
