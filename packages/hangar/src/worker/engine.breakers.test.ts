import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { NonRetryableError } from '../errors.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import { defineAgent } from '../sdk/agent.ts';
import { BreakerRegistry } from './breakers.ts';
import { createTestEngine, type TestEngine } from './engine.harness.ts';

function breakerEvents(events: readonly EventEnvelope[]): unknown[] {
  return events
    .filter(
      (e) => e.channel === 'lifecycle' && String((e.data as { event?: string }).event).startsWith('breaker.'),
    )
    .map((e) => e.data);
}

// Breakers are per worker process: engine logic, on one store.
describe('circuit breakers (postgres)', () => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine('postgres');
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('opens after N failures, fails fast while open, and closes after a successful half-open call', async () => {
    const breakers = new BreakerRegistry({ threshold: 2, halfOpenAfterMs: 600 });
    const api = { down: true, calls: 0 };
    const caller = (name: string, retry: { maxAttempts: number; initialDelayMs?: number }) =>
      defineAgent({
        name,
        input: z.object({}),
        retry,
        async run(ctx) {
          return ctx.step(
            'call-api',
            () => {
              api.calls++;
              if (api.down) throw new Error('503 from the API');
              return 'ok';
            },
            { breaker: 'status-api' },
          );
        },
      });
    const once = caller('once', { maxAttempts: 1 });
    const patient = caller('patient', { maxAttempts: 3, initialDelayMs: 10 });
    engine.startWorker([once, patient], { breakers });

    const first = await engine.waitForRun((await engine.createRun(once, {})).run_id);
    expect(first.error?.message).toBe('503 from the API');
    expect(breakers.state('status-api')).toBe('closed');
    const second = await engine.waitForRun((await engine.createRun(once, {})).run_id);
    expect(breakers.state('status-api')).toBe('open');
    expect(breakerEvents(await engine.runEvents(second))).toEqual([
      { event: 'breaker.opened', breaker: 'status-api' },
    ]);

    // Open: refused without calling the API, with a clear error.
    const refused = await engine.waitForRun((await engine.createRun(once, {})).run_id);
    expect(api.calls).toBe(2);
    expect(refused.error).toMatchObject({ code: 'circuit_open', details: { breaker: 'status-api' } });
    expect(refused.error?.message).toContain('circuit breaker "status-api" is open');

    // A run with retries waits durably until the breaker half-opens; the API has recovered by then.
    const waiting = await engine.createRun(patient, {});
    api.down = false;
    const done = await engine.waitForRun(waiting.run_id);
    expect(done.output).toBe('ok');
    expect(api.calls).toBe(3);
    expect(breakers.state('status-api')).toBe('closed');
    const events = await engine.runEvents(waiting);
    const wait = events.find((e) => (e.data as { event?: string }).event === 'run.waiting');
    expect(wait?.data).toMatchObject({ error: { code: 'circuit_open' } });
    expect(breakerEvents(events)).toEqual([{ event: 'breaker.closed', breaker: 'status-api' }]);
  });

  it('a non-retryable failure does not count toward opening the breaker', async () => {
    const breakers = new BreakerRegistry({ threshold: 1, halfOpenAfterMs: 60_000 });
    const agent = defineAgent({
      name: 'bad-request',
      input: z.object({}),
      async run(ctx) {
        return ctx.step(
          'call',
          () => {
            throw new NonRetryableError('400: missing field');
          },
          { breaker: 'strict-api' },
        );
      },
    });
    engine.startWorker(agent, { breakers });
    const done = await engine.waitForRun((await engine.createRun(agent, {})).run_id);
    expect(done.status).toBe('error');
    expect(breakers.state('strict-api')).toBe('closed');
  });
});
