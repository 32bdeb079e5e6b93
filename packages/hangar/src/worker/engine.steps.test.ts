import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { MemoryBus } from '../bus/memory.ts';
import { readEvents } from '../events/log.ts';
import { createRun, getRun } from '../runs/repository.ts';
import { startHangar } from '../runtime/start.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS, type TestStore } from '../testing/db.ts';
import { testLogger } from '../testing/logger.ts';
import {
  createEngineStore,
  createTestEngine,
  eventShape,
  eventually,
  gate,
  TENANT,
  type TestEngine,
  untilAborted,
} from './engine.harness.ts';

const greeter = defineAgent({
  name: 'greeter',
  input: z.object({ name: z.string() }),
  output: z.object({ greeting: z.string() }),
  async run(ctx, input) {
    const greeting = await ctx.step('greet', async () => `Hello, ${input.name}`);
    await ctx.emit('custom', { greeting });
    return { greeting };
  },
});

describe.each(STORE_KINDS)('a greeter run through startHangar (%s)', (kind) => {
  let store: TestStore;
  let stop: (() => Promise<void>) | undefined;

  beforeEach(async () => {
    store = await createEngineStore(kind);
  });
  afterEach(async () => {
    await stop?.();
    await store.dispose();
  });

  it('succeeds, stores the output and logs started → updates → custom → completed', async () => {
    const hangar = await startHangar({
      db: store.db,
      bus: new MemoryBus(),
      agents: new Map([[greeter.name, greeter]]),
      logger: testLogger(),
      worker: { leaseMs: 2_000, pollMs: 100, sweepMs: 200 },
    });
    stop = hangar.stop;
    const run = await createRun(store.db, {
      tenantId: TENANT,
      agent: greeter.name,
      assistantId: hangar.registry.defaultAssistantId(greeter.name),
      input: { name: 'Ada' },
    });
    const done = await eventually('greeter run to finish', async () => {
      const r = await getRun(store.db, TENANT, run.run_id);
      return r?.status === 'success' || r?.status === 'error' ? r : undefined;
    });
    expect(done.status).toBe('success');
    expect(done.output).toEqual({ greeting: 'Hello, Ada' });
    expect(done.error).toBeNull();
    expect(done.attempt).toBe(1);

    const events = await readEvents(store.db, TENANT, run.thread_id, { afterSeq: 0, limit: 100 });
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(events.map((e) => [e.channel, e.data])).toEqual([
      ['lifecycle', { event: 'run.started', status: 'running', attempt: 1 }],
      ['updates', { greet: 'Hello, Ada' }],
      ['custom', { greeting: 'Hello, Ada' }],
      [
        'lifecycle',
        { event: 'run.completed', status: 'success', terminal: true, output: { greeting: 'Hello, Ada' } },
      ],
    ]);
    expect(new Set(events.map((e) => e.run_id))).toEqual(new Set([run.run_id]));
    expect(new Set(events.map((e) => e.attempt))).toEqual(new Set([1]));
  });
});

describe.each(STORE_KINDS)('durable steps (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('records each completed step with its result and the updates event', async () => {
    const agent = defineAgent({
      name: 'two-steps',
      input: z.object({}),
      async run(ctx) {
        const a = await ctx.step('a', () => ({ n: 1 }));
        const b = await ctx.step('b', () => undefined);
        return { a, b: b ?? 'undefined' };
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toEqual({ a: { n: 1 }, b: 'undefined' });
    const steps = await engine.steps(run.run_id);
    expect(steps.map((s) => [s.index, s.name, s.kind, s.status, s.result])).toEqual([
      [0, 'a', 'step', 'completed', { v: { n: 1 } }],
      [1, 'b', 'step', 'completed', {}],
    ]);
    const updates = (await engine.runEvents(run)).filter((e) => e.channel === 'updates');
    expect(updates.map((e) => e.data)).toEqual([{ a: { n: 1 } }, { b: null }]);
  });

  it('resumes on a new worker without re-running completed steps or repeating emits outside steps', async () => {
    const executions = { a: 0, b: 0 };
    const bCalls: Array<{ idempotencyKey: string; attempt: number }> = [];
    const bStarted = gate();
    const agent = defineAgent({
      name: 'resumable',
      input: z.object({ x: z.number() }),
      async run(ctx, input) {
        const a = await ctx.step('a', () => {
          executions.a++;
          return input.x * 2;
        });
        await ctx.emit('custom', { between: a });
        const b = await ctx.step('b', async ({ signal, idempotencyKey, attempt }) => {
          executions.b++;
          bCalls.push({ idempotencyKey, attempt });
          if (executions.b === 1) {
            bStarted.open();
            await untilAborted(signal);
          }
          return a + 1;
        });
        return { a, b };
      },
    });
    const first = engine.startWorker(agent);
    const run = await engine.createRun(agent, { x: 20 });
    await bStarted.promise;
    // The emit outside a step is durable (flushed) before the worker lets go.
    await eventually('the emit between steps to be logged', async () =>
      (await engine.runEvents(run)).some((e) => e.channel === 'custom'),
    );
    await first.stop();
    expect(first.activeRuns).toBe(0);
    const released = await engine.waitForRun(run.run_id, (r) => r.status === 'pending', 2_000);
    expect(released.status).toBe('pending');
    expect(await engine.steps(run.run_id)).toHaveLength(1);

    engine.startWorker(agent);
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toEqual({ a: 40, b: 41 });
    expect(executions).toEqual({ a: 1, b: 2 });
    // The re-executed step gets the same idempotency key; a hand-back on shutdown is not a new attempt.
    expect(bCalls).toEqual([
      { idempotencyKey: `${run.run_id}:1`, attempt: 1 },
      { idempotencyKey: `${run.run_id}:1`, attempt: 1 },
    ]);
    expect(done.attempt).toBe(1);

    const events = await engine.runEvents(run);
    expect(events.filter((e) => e.channel === 'custom').map((e) => e.data)).toEqual([{ between: 40 }]);
    expect(events.filter((e) => e.channel === 'updates').map((e) => e.data)).toEqual([{ a: 40 }, { b: 41 }]);
    expect(eventShape(events)).toEqual([
      'lifecycle:run.started',
      'updates',
      'custom',
      'lifecycle:run.started',
      'updates',
      'lifecycle:run.completed',
    ]);
    const seqs = events.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    const steps = await engine.steps(run.run_id);
    expect(steps.map((s) => [s.name, s.result])).toEqual([
      ['a', { v: 40 }],
      ['b', { v: 41 }],
    ]);
  });

  it('replays steps run in parallel by their call order, whichever finished first', async () => {
    const executions = { slow: 0, fast: 0 };
    const fastDone = gate();
    const agent = defineAgent({
      name: 'parallel',
      input: z.object({}),
      async run(ctx) {
        const [slow, fast] = await Promise.all([
          ctx.step('slow', async ({ signal }) => {
            executions.slow++;
            if (executions.slow === 1) {
              await fastDone.promise;
              await untilAborted(signal);
            }
            return 'S';
          }),
          ctx.step('fast', () => {
            executions.fast++;
            return 'F';
          }),
        ]);
        return { slow, fast };
      },
    });
    const first = engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    await eventually('the fast step to be checkpointed', async () => {
      const steps = await engine.steps(run.run_id);
      return steps.length === 1 && steps[0]?.name === 'fast';
    });
    fastDone.open();
    await first.stop();
    expect((await engine.steps(run.run_id)).map((s) => [s.index, s.name])).toEqual([[1, 'fast']]);

    engine.startWorker(agent);
    const done = await engine.waitForRun(run.run_id);
    expect(done.error).toBeNull();
    expect(done.status).toBe('success');
    expect(done.output).toEqual({ slow: 'S', fast: 'F' });
    expect(executions).toEqual({ slow: 2, fast: 1 });
    expect((await engine.steps(run.run_id)).map((s) => [s.index, s.name])).toEqual([
      [0, 'slow'],
      [1, 'fast'],
    ]);
  });

  it('does not start a new step once the run has been aborted', async () => {
    const reachedGap = gate();
    let afterRan = 0;
    const agent = defineAgent({
      name: 'abort-between-steps',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('first', () => 1);
        // Code between steps that does not watch ctx.signal; the worker stops meanwhile.
        reachedGap.open();
        await eventually('the run signal to abort', () => ctx.signal.aborted, 5_000);
        await ctx.step('after', () => {
          afterRan++;
          return 2;
        });
        return 'done';
      },
    });
    const worker = engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    await reachedGap.promise;
    await worker.stop();
    expect(afterRan).toBe(0);
    const released = await engine.waitForRun(run.run_id, (r) => r.status === 'pending', 2_000);
    expect(released.status).toBe('pending');
    expect((await engine.steps(run.run_id)).map((s) => s.name)).toEqual(['first']);
  });
});

// Buffering is the committer's logic, not store-specific SQL (the suites above cover both stores).
describe('event buffering (postgres)', () => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine('postgres');
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it("logs a step's own emits before its updates event, in emit order", async () => {
    const agent = defineAgent({
      name: 'chatty-step',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('work', async () => {
          await ctx.emit('custom', { progress: 1 });
          await ctx.emit('progress', { progress: 2 });
          return 'done';
        });
        return 'ok';
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    expect((await engine.waitForRun(run.run_id)).status).toBe('success');
    const events = await engine.runEvents(run);
    expect(events.map((e) => [e.channel, e.data])).toEqual([
      ['lifecycle', { event: 'run.started', status: 'running', attempt: 1 }],
      ['custom', { progress: 1 }],
      ['progress', { progress: 2 }],
      ['updates', { work: 'done' }],
      ['lifecycle', { event: 'run.completed', status: 'success', terminal: true, output: 'ok' }],
    ]);
  });

  it('flushes when the buffer is full and loses nothing from a chatty agent', async () => {
    const agent = defineAgent({
      name: 'chatty',
      input: z.object({}),
      async run(ctx) {
        for (let i = 0; i < 25; i++) await ctx.emit('custom', { i });
        return 'ok';
      },
    });
    // A long flush interval: only the buffer limit and the final commit write the events.
    engine.startWorker(agent, { maxBufferedEvents: 4, flushMs: 60_000 });
    const run = await engine.createRun(agent, {});
    expect((await engine.waitForRun(run.run_id)).status).toBe('success');
    const events = await engine.runEvents(run);
    expect(events.filter((e) => e.channel === 'custom').map((e) => e.data)).toEqual(
      Array.from({ length: 25 }, (_, i) => ({ i })),
    );
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.at(-1)?.data).toMatchObject({ event: 'run.completed' });
  });
});
