import { APICallError } from '@ai-sdk/provider';
import { MockLanguageModelV3 } from 'ai/test';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { NonRetryableError, RetryAfterError } from '../errors.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { scriptedModel } from '../testing/llm.ts';
import { createTestEngine, eventually, gate, type TestEngine, untilAborted } from './engine.harness.ts';

/** Fast backoffs: the policy is exercised, the suite stays quick. */
const FAST = { maxAttempts: 3, initialDelayMs: 20, maxDelayMs: 50 };

function lifecycle(events: readonly EventEnvelope[], event: string): EventEnvelope[] {
  return events.filter((e) => e.channel === 'lifecycle' && (e.data as { event?: string }).event === event);
}

/** Checks a marker against the contract: the events it discards are exactly `partial`. */
function discarded(events: readonly EventEnvelope[], marker: EventEnvelope): EventEnvelope[] {
  const after = (marker.data as { after_seq: number }).after_seq;
  return events.filter((e) => e.seq > after && e.seq < marker.seq && e.channel !== 'lifecycle');
}

describe.each(STORE_KINDS)('step retries (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('retries a failing step with durable backoff until it succeeds, fencing each failed try', async () => {
    let tries = 0;
    const agent = defineAgent({
      name: 'flaky',
      input: z.object({}),
      retry: FAST,
      async run(ctx) {
        await ctx.step('first', () => 'one');
        return ctx.step('flaky', async () => {
          tries++;
          await ctx.emit('custom', { partial: tries });
          if (tries < 3) throw new Error(`boom ${tries}`);
          return 'finally';
        });
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toBe('finally');
    expect(tries).toBe(3);
    expect(done.attempt).toBe(1);

    const events = await engine.runEvents(run);
    const waits = lifecycle(events, 'run.waiting').map((e) => e.data as Record<string, unknown>);
    expect(
      waits.map((w) => [w.reason, w.step, w.step_attempt, (w.error as { message: string }).message]),
    ).toEqual([
      ['retry', 'flaky', 1, 'boom 1'],
      ['retry', 'flaky', 2, 'boom 2'],
    ]);
    // Each failed try's output is fenced off by one marker; the last try's output is kept.
    const markers = lifecycle(events, 'output.discarded');
    expect(markers).toHaveLength(2);
    const firstDone = events.find((e) => e.channel === 'updates');
    expect(markers[0]?.data).toMatchObject({ after_seq: firstDone?.seq });
    for (const [i, marker] of markers.entries()) {
      expect(marker.data).toMatchObject({ run_id: run.run_id, reason: 'retry', attempt: 1, step: 'flaky' });
      expect(discarded(events, marker).map((e) => e.data)).toEqual([{ partial: i + 1 }]);
    }
    const kept = events.filter((e) => e.channel === 'custom' && e.seq > (markers[1]?.seq ?? 0));
    expect(kept.map((e) => e.data)).toEqual([{ partial: 3 }]);
    const steps = await engine.steps(run.run_id);
    expect(steps.map((s) => [s.name, s.status])).toEqual([
      ['first', 'completed'],
      ['flaky', 'completed'],
    ]);
  });

  it('a NonRetryableError ends the run in error at once', async () => {
    let tries = 0;
    const agent = defineAgent({
      name: 'hopeless',
      input: z.object({}),
      retry: FAST,
      async run(ctx) {
        return ctx.step('lookup', () => {
          tries++;
          throw new NonRetryableError('repository acme/x does not exist');
        });
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error).toEqual({
      code: 'agent_error',
      type: 'NonRetryableError',
      message: 'repository acme/x does not exist',
    });
    expect(tries).toBe(1);
    const events = await engine.runEvents(run);
    expect(lifecycle(events, 'run.waiting')).toEqual([]);
    expect(lifecycle(events, 'output.discarded')).toEqual([]);
  });

  it('exhausted retries end the run dead with retries_exhausted, the step row keeping the failure', async () => {
    let tries = 0;
    const agent = defineAgent({
      name: 'always-fails',
      input: z.object({}),
      retry: FAST,
      async run(ctx) {
        return ctx.step('call', () => {
          tries++;
          throw new TypeError(`fetch failed (${tries})`);
        });
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('dead');
    expect(tries).toBe(3);
    expect(done.error).toMatchObject({
      code: 'retries_exhausted',
      details: {
        step: 'call',
        step_index: 0,
        attempts: 3,
        last_error: { code: 'agent_error', type: 'TypeError', message: 'fetch failed (3)' },
      },
    });
    expect(done.error?.message).toContain('step "call" failed 3 times');
    const [step] = await engine.steps(run.run_id);
    expect(step).toMatchObject({ name: 'call', status: 'failed', attempt: 3 });
    const row = await engine.db.query<{ error: unknown }>('SELECT error FROM steps WHERE run_id = $1', [
      run.run_id,
    ]);
    expect(row.rows[0]?.error).toEqual({
      code: 'agent_error',
      type: 'TypeError',
      message: 'fetch failed (3)',
    });
    const last = (await engine.runEvents(run)).at(-1);
    expect(last?.data).toMatchObject({ event: 'run.completed', status: 'dead', terminal: true });
  });
});

// Engine logic on one store (the SQL these use is covered on both above).
describe('step retries (postgres)', () => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine('postgres');
  });
  afterEach(async () => {
    await engine.dispose();
  });

  async function availableAt(runId: string): Promise<{ status: string; at: number }> {
    const res = await engine.db.query<{ status: string; available_at: Date }>(
      'SELECT status, available_at FROM runs WHERE run_id = $1',
      [runId],
    );
    const row = res.rows[0];
    return { status: row?.status ?? 'missing', at: new Date(row?.available_at ?? 0).getTime() };
  }

  it('a RetryAfterError waits at least its delay, holding no worker slot meanwhile', async () => {
    let thrownAt = 0;
    let tries = 0;
    const limited = defineAgent({
      name: 'rate-limited',
      input: z.object({}),
      retry: FAST,
      async run(ctx) {
        return ctx.step('call', () => {
          tries++;
          if (tries === 1) {
            thrownAt = Date.now();
            throw new RetryAfterError(1_500, 'HTTP 429');
          }
          return 'served';
        });
      },
    });
    const quick = defineAgent({
      name: 'quick',
      input: z.object({}),
      async run(ctx) {
        return ctx.step('only', () => 'done');
      },
    });
    engine.startWorker([limited, quick], { concurrency: 1 });
    const run = await engine.createRun(limited, {});
    const waiting = await eventually('the run to wait for its retry', async () => {
      const state = await availableAt(run.run_id);
      return state.status === 'waiting' ? state : undefined;
    });
    expect(waiting.at).toBeGreaterThanOrEqual(thrownAt + 1_500 - 5);
    // The one slot is free: another run completes while the first waits.
    const other = await engine.createRun(quick, {});
    expect((await engine.waitForRun(other.run_id)).status).toBe('success');
    expect((await availableAt(run.run_id)).status).toBe('waiting');
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toBe('served');
    expect(tries).toBe(2);
  });

  it('a step over its timeout is aborted and retried', async () => {
    let tries = 0;
    const agent = defineAgent({
      name: 'slow-once',
      input: z.object({}),
      retry: FAST,
      async run(ctx) {
        return ctx.step(
          'slow',
          async ({ signal }) => {
            tries++;
            if (tries === 1) await untilAborted(signal);
            return 'in time';
          },
          { timeout: '200ms' },
        );
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toBe('in time');
    const [wait] = lifecycle(await engine.runEvents(run), 'run.waiting');
    expect(wait?.data).toMatchObject({
      reason: 'retry',
      error: { code: 'step_timeout', details: { step: 'slow', timeout_ms: 200 } },
    });
  });

  it("the agent's stepTimeout applies to steps that set none", async () => {
    const agent = defineAgent({
      name: 'agent-timeout',
      input: z.object({}),
      retry: { maxAttempts: 1 },
      stepTimeout: '150ms',
      async run(ctx) {
        return ctx.step('hangs', ({ signal }) => untilAborted(signal));
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error?.code).toBe('step_timeout');
  });

  it('a run resumed after a lease takeover fences the partial output of its lost attempt', async () => {
    const inSlow = gate();
    let executions = 0;
    const agent = defineAgent({
      name: 'resumed',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('first', () => 'one');
        await ctx.emit('custom', { between: true });
        return ctx.step('slow', async ({ signal }) => {
          executions++;
          await ctx.emit('custom', { partial: executions });
          if (executions > 1) return 'fresh';
          inSlow.open();
          return untilAborted(signal);
        });
      },
    });
    engine.startWorker(agent, { concurrency: 1, heartbeatMs: 100 });
    const run = await engine.createRun(agent, {});
    await inSlow.promise;
    await eventually('the partial output to be logged', async () =>
      (await engine.runEvents(run)).some((e) => (e.data as { partial?: number }).partial === 1),
    );
    // What the sweeper does to a run whose worker is gone.
    await engine.db.query(
      `UPDATE runs SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, available_at = now()
       WHERE run_id = $1`,
      [run.run_id],
    );
    engine.bus.notifyWork();
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toBe('fresh');
    expect(done.attempt).toBe(2);

    const events = await engine.runEvents(run);
    const markers = lifecycle(events, 'output.discarded');
    expect(markers).toHaveLength(1);
    const marker = markers[0] as EventEnvelope;
    expect(marker.data).toMatchObject({ run_id: run.run_id, reason: 'resume', attempt: 2 });
    // The emit between the steps is not redone (a replay does not log it again): it stays.
    const between = events.find((e) => (e.data as { between?: boolean }).between === true);
    expect((marker.data as { after_seq: number }).after_seq).toBe(between?.seq);
    expect(discarded(events, marker).map((e) => e.data)).toEqual([{ partial: 1 }]);
    // The marker comes before anything the redo emitted.
    const redo = events.find((e) => (e.data as { partial?: number }).partial === 2);
    expect(marker.seq).toBeLessThan(redo?.seq ?? 0);
  });

  it('a clean run, and a run woken from a sleep, log no marker', async () => {
    const agent = defineAgent({
      name: 'clean',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('a', async () => {
          await ctx.emit('custom', { in: 'a' });
          return 1;
        });
        await ctx.sleep('50ms');
        return ctx.step('b', () => 2);
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    expect((await engine.waitForRun(run.run_id)).status).toBe('success');
    expect(lifecycle(await engine.runEvents(run), 'output.discarded')).toEqual([]);
  });

  it('ctx.llm: a provider 429 waits for its Retry-After, with no retry inside the provider SDK', async () => {
    let calls = 0;
    let failedAt = 0;
    const good = scriptedModel(['fine']);
    const model = new MockLanguageModelV3({
      doStream: async (options) => {
        calls++;
        if (calls === 1) {
          failedAt = Date.now();
          throw new APICallError({
            message: 'Rate limit reached',
            url: 'https://api.example.test/v1/chat',
            requestBodyValues: {},
            statusCode: 429,
            responseHeaders: { 'retry-after': '1' },
            isRetryable: true,
          });
        }
        return good.doStream(options);
      },
    });
    const agent = defineAgent({
      name: 'llm-429',
      input: z.object({}),
      retry: FAST,
      async run(ctx) {
        return (await ctx.llm.generate('answer', { prompt: 'q' })).text;
      },
    });
    engine.startWorker(agent, { llm: { model } });
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toBe('fine');
    expect(calls).toBe(2);
    const [wait] = lifecycle(await engine.runEvents(run), 'run.waiting');
    const until = Date.parse((wait?.data as { until?: string } | undefined)?.until ?? '');
    expect(until).toBeGreaterThanOrEqual(failedAt + 1_000 - 5);
    expect(wait?.data).toMatchObject({ error: { type: 'RetryAfterError' } });
  });

  it('ctx.llm: a provider 400 fails the run at once', async () => {
    let calls = 0;
    const model = new MockLanguageModelV3({
      doStream: async () => {
        calls++;
        throw new APICallError({
          message: 'Invalid model parameter',
          url: 'https://api.example.test/v1/chat',
          requestBodyValues: {},
          statusCode: 400,
        });
      },
    });
    const agent = defineAgent({
      name: 'llm-400',
      input: z.object({}),
      retry: FAST,
      async run(ctx) {
        return (await ctx.llm.generate('answer', { prompt: 'q' })).text;
      },
    });
    engine.startWorker(agent, { llm: { model } });
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error).toMatchObject({
      type: 'NonRetryableError',
      message: 'Invalid model parameter (HTTP 400)',
    });
    expect(calls).toBe(1);
  });
});
