import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { createTestEngine, eventually, gate, type TestEngine, untilAborted } from './engine.harness.ts';

describe.each(STORE_KINDS)('the determinism guard (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  /** Runs version A (steps a, b, then a step that holds) and stops the worker: history = [a, b]. */
  async function recordHistoryAB(): Promise<{ runId: string; threadId: string }> {
    const holding = gate();
    const versionA = defineAgent({
      name: 'evolving',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('a', () => 'A');
        await ctx.step('b', () => 'B');
        await ctx.step('c', async ({ signal }) => {
          holding.open();
          await untilAborted(signal);
        });
        return 'A-done';
      },
    });
    const worker = engine.startWorker(versionA);
    const run = await engine.createRun(versionA, {});
    await holding.promise;
    await worker.stop();
    expect((await engine.steps(run.run_id)).map((s) => s.name)).toEqual(['a', 'b']);
    return { runId: run.run_id, threadId: run.thread_id };
  }

  it('fails the run with nondeterminism when the step order differs from the history', async () => {
    const { runId } = await recordHistoryAB();
    let ran = 0;
    const versionB = defineAgent({
      name: 'evolving',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('b', () => {
          ran++;
          return 'B';
        });
        await ctx.step('a', () => {
          ran++;
          return 'A';
        });
        return 'B-done';
      },
    });
    engine.startWorker(versionB);
    const done = await engine.waitForRun(runId);
    expect(done.status).toBe('error');
    expect(done.error?.code).toBe('nondeterminism');
    expect(done.error?.message).toContain('step #0');
    expect(done.error?.message).toContain('step "b"');
    expect(done.error?.message).toContain('recorded step "a"');
    expect(done.error?.details).toEqual({ step_index: 0, expected: 'a', actual: 'b' });
    expect(ran).toBe(0);
    // The history is left as it was: nothing from the diverged code was recorded.
    expect((await engine.steps(runId)).map((s) => [s.name, s.result])).toEqual([
      ['a', { v: 'A' }],
      ['b', { v: 'B' }],
    ]);
  });

  it('fails the run with nondeterminism when the code finishes without reaching a recorded step', async () => {
    const { runId } = await recordHistoryAB();
    const versionC = defineAgent({
      name: 'evolving',
      input: z.object({}),
      async run(ctx) {
        return ctx.step('a', () => 'A');
      },
    });
    engine.startWorker(versionC);
    const done = await engine.waitForRun(runId);
    expect(done.status).toBe('error');
    expect(done.output).toBeNull();
    expect(done.error?.code).toBe('nondeterminism');
    expect(done.error?.message).toContain('finished without reaching step "b"');
    expect(done.error?.details).toEqual({ step_index: 1, expected: 'b', actual: null });
  });

  it('notices a recorded step the code no longer reaches, even after a gap left by parallel steps', async () => {
    // History: #1 "fast" completed while #0 "slow" was still running when the worker stopped.
    const fastDone = gate();
    const parallel = defineAgent({
      name: 'evolving',
      input: z.object({}),
      async run(ctx) {
        return Promise.all([
          ctx.step('slow', async ({ signal }) => {
            await fastDone.promise;
            await untilAborted(signal);
          }),
          ctx.step('fast', () => 'F'),
        ]);
      },
    });
    const worker = engine.startWorker(parallel);
    const run = await engine.createRun(parallel, {});
    await eventually(
      'the fast step to be checkpointed',
      async () => (await engine.steps(run.run_id)).length === 1,
    );
    fastDone.open();
    await worker.stop();

    const sequential = defineAgent({
      name: 'evolving',
      input: z.object({}),
      async run(ctx) {
        return ctx.step('slow', () => 'S');
      },
    });
    engine.startWorker(sequential);
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error?.code).toBe('nondeterminism');
    expect(done.error?.message).toContain('finished without reaching step "fast"');
    expect(done.error?.details).toEqual({ step_index: 1, expected: 'fast', actual: null });
  });

  it('accepts the same code again (the guard does not fire on a faithful replay)', async () => {
    const { runId } = await recordHistoryAB();
    const again = defineAgent({
      name: 'evolving',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('a', () => 'A');
        await ctx.step('b', () => 'B');
        await ctx.step('c', () => undefined);
        return 'A-done';
      },
    });
    engine.startWorker(again);
    const done = await engine.waitForRun(runId);
    expect(done.error).toBeNull();
    expect(done.status).toBe('success');
    expect(done.output).toBe('A-done');
  });
});
