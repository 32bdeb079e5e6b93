import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { createTestEngine, eventShape, eventually, type TestEngine, untilAborted } from './engine.harness.ts';

class QuotaExceeded extends Error {
  override name = 'QuotaExceeded';
}

/** Values a step may not return, each named by what the error message should say. */
const UNSERIALIZABLE: Array<[string, () => unknown, string]> = [
  ['a function', () => ({ callback: () => 1 }), 'a function at $.callback'],
  ['a Map', () => ({ index: new Map([['k', 1]]) }), 'a Map object at $.index'],
  ['a BigInt', () => ({ big: 10n }), 'a bigint at $.big'],
  [
    'a cycle',
    () => {
      const node: Record<string, unknown> = { name: 'loop' };
      node.self = node;
      return node;
    },
    'a circular reference at $.self',
  ],
];

describe.each(STORE_KINDS)('run errors (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('an agent that throws ends in error with code, type and message, and no stack', async () => {
    const agent = defineAgent({
      name: 'thrower',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('fine', () => 'ok');
        throw new QuotaExceeded('monthly quota of 100 runs exceeded');
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.output).toBeNull();
    expect(done.error).toEqual({
      code: 'agent_error',
      type: 'QuotaExceeded',
      message: 'monthly quota of 100 runs exceeded',
    });
    const events = await engine.runEvents(run);
    expect(eventShape(events)).toEqual(['lifecycle:run.started', 'updates', 'lifecycle:run.completed']);
    expect(events.at(-1)?.data).toEqual({
      event: 'run.completed',
      status: 'error',
      terminal: true,
      error: done.error,
    });
    // The stack (file paths, code) stays in the worker's logs, never in what clients read.
    expect(JSON.stringify(done.error)).not.toContain('engine.errors.test');
    expect(JSON.stringify(events)).not.toContain('engine.errors.test');
  });

  it('an output that fails the output schema ends in output_invalid with the failing path', async () => {
    const agent = defineAgent({
      name: 'bad-output',
      input: z.object({}),
      output: z.object({ score: z.number() }),
      async run() {
        return { score: 'high' as unknown as number };
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.output).toBeNull();
    expect(done.error?.code).toBe('output_invalid');
    expect(done.error?.message).toContain('"bad-output"');
    expect(done.error?.details).toEqual({
      issues: [{ path: 'score', message: expect.stringContaining('number') }],
    });
  });

  it('a step over its timeout fails with step_timeout and its signal is aborted', async () => {
    const seen: { aborted?: boolean; reason?: unknown } = {};
    const agent = defineAgent({
      name: 'slowpoke',
      input: z.object({}),
      // No retries: the timeout's own error ends the run (engine.retry.test.ts covers retried timeouts).
      retry: { maxAttempts: 1 },
      async run(ctx) {
        await ctx.step(
          'slow',
          async ({ signal }) => {
            try {
              await untilAborted(signal);
            } finally {
              seen.aborted = signal.aborted;
              seen.reason = signal.reason;
            }
          },
          { timeout: '300ms' },
        );
        return 'unreachable';
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error).toEqual({
      code: 'step_timeout',
      type: 'HangarError',
      message: 'step "slow" timed out after 300 ms',
      details: { step: 'slow', timeout_ms: 300 },
    });
    await eventually('the step to observe its abort', () => seen.aborted === true, 2_000);
    expect((seen.reason as { code?: string }).code).toBe('step_timeout');
    expect(await engine.steps(run.run_id)).toEqual([]);
  });
  // Postgres (and PGlite) cannot store U+0000 in jsonb or text. Before these checks such a value failed
  // the checkpoint on every attempt: the step re-ran every lease period and the run never ended.
  it('a step result containing U+0000 ends the run with step_not_serializable after one execution', async () => {
    let executions = 0;
    const agent = defineAgent({
      name: 'nul-result',
      input: z.object({}),
      async run(ctx) {
        return ctx.step('download', () => {
          executions++;
          return { body: 'PK\u0003\u0004\u0000\u0000' };
        });
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error?.code).toBe('step_not_serializable');
    expect(done.error?.message).toContain('step "download"');
    expect(done.error?.message).toContain('NUL character');
    expect(done.attempt).toBe(1);
    expect(executions).toBe(1);
  });

  it('an error message containing U+0000 is stored with U+FFFD in its place', async () => {
    const agent = defineAgent({
      name: 'nul-error',
      input: z.object({}),
      async run() {
        throw new Error('unexpected byte \u0000 in response');
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error).toEqual({
      code: 'agent_error',
      type: 'Error',
      message: 'unexpected byte \uFFFD in response',
    });
    expect(done.attempt).toBe(1);
    const last = (await engine.runEvents(run)).at(-1);
    expect(last?.data).toMatchObject({ event: 'run.completed', error: done.error });
  });

  it('an emit containing U+0000 fails the run with step_not_serializable', async () => {
    const agent = defineAgent({
      name: 'nul-emit',
      input: z.object({}),
      async run(ctx) {
        await ctx.emit('custom', { raw: '\u0000' });
        return 'unreachable';
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.error?.code).toBe('step_not_serializable');
    expect(done.error?.message).toContain("ctx.emit('custom')");
    expect(done.attempt).toBe(1);
  });
});

// These cases exercise the engine's logic, not store-specific SQL (the suites above cover both stores).
describe('run errors (postgres)', () => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine('postgres');
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('a non-Error thrown value is recorded as an agent_error too', async () => {
    const agent = defineAgent({
      name: 'string-thrower',
      input: z.object({}),
      async run() {
        throw 'plain string';
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.error).toEqual({ code: 'agent_error', type: 'string', message: 'plain string' });
  });

  it.each(UNSERIALIZABLE)(
    'a step that returns %s fails the run with step_not_serializable',
    async (_, make, problem) => {
      let after = 0;
      const agent = defineAgent({
        name: 'unserializable',
        input: z.object({}),
        async run(ctx) {
          await ctx.step('make', make);
          after++;
          return 'unreachable';
        },
      });
      engine.startWorker(agent);
      const run = await engine.createRun(agent, {});
      const done = await engine.waitForRun(run.run_id);
      expect(done.status).toBe('error');
      expect(done.error?.code).toBe('step_not_serializable');
      expect(done.error?.message).toContain('step "make"');
      expect(done.error?.message).toContain(problem);
      expect(done.error?.details).toEqual({ step: 'make' });
      expect(after).toBe(0);
      expect(await engine.steps(run.run_id)).toEqual([]);
    },
  );

  it('an output schema that transforms stores the parsed output', async () => {
    const agent = defineAgent({
      name: 'parsed-output',
      input: z.object({}),
      output: z.object({ n: z.coerce.number() }),
      async run() {
        return { n: '42' as unknown as number, extra: 'dropped' };
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toEqual({ n: 42 });
  });

  it('a step inside a step fails the run with invalid_agent_call', async () => {
    let innerRan = 0;
    const agent = defineAgent({
      name: 'nested',
      input: z.object({}),
      async run(ctx) {
        return ctx.step('outer', async () => {
          await ctx.step('inner', () => {
            innerRan++;
            return 1;
          });
          return 2;
        });
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error?.code).toBe('invalid_agent_call');
    expect(done.error?.message).toContain('"inner" (step) was called inside step "outer"');
    expect(innerRan).toBe(0);
    expect(await engine.steps(run.run_id)).toEqual([]);
  });

  it('an emit on an invalid channel fails the run with invalid_agent_call', async () => {
    const agent = defineAgent({
      name: 'bad-channel',
      input: z.object({}),
      async run(ctx) {
        await ctx.emit('Not A Channel!', {});
        return 'unreachable';
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.error?.code).toBe('invalid_agent_call');
    expect(done.error?.message).toContain('"Not A Channel!"');
  });

  it('a step that finishes within its timeout is unaffected by it', async () => {
    const agent = defineAgent({
      name: 'prompt',
      input: z.object({}),
      async run(ctx) {
        return ctx.step('quick', () => 'in time', { timeout: '5s' });
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toBe('in time');
  });

  it('input that no longer matches the agent schema fails with input_invalid', async () => {
    const agent = defineAgent({
      name: 'strict-input',
      input: z.object({ count: z.number() }),
      async run(_ctx, input) {
        return input.count;
      },
    });
    engine.startWorker(agent);
    // The gateway validates on create; a run created by older code (or by hand) can still disagree.
    const run = await engine.createRun(agent, { count: 'three' });
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error?.code).toBe('input_invalid');
    expect(done.error?.message).toContain('"strict-input"');
  });
});
