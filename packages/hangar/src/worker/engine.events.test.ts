import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sendSignal } from '../hitl/signals.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { createTestEngine, TENANT, type TestEngine } from './engine.harness.ts';

/** Waits for `payment` events of its order, counting executions of the step before the wait. */
function payer(executions: { before: number }, timeout?: number) {
  return defineAgent({
    name: 'payer',
    input: z.object({ order: z.string() }),
    async run(ctx, input) {
      await ctx.step('before', () => {
        executions.before++;
        return true;
      });
      const first = await ctx.waitForEvent<{ order: string; n: number }>('payment', {
        match: { order: input.order },
        ...(timeout === undefined ? {} : { timeout }),
      });
      const second = await ctx.waitForEvent<{ order: string; n: number }>('payment', {
        match: { order: input.order },
        ...(timeout === undefined ? {} : { timeout }),
      });
      return { first: first?.n ?? null, second: second?.n ?? null };
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

describe.each(STORE_KINDS)('ctx.waitForEvent (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  const send = async (threadId: string, payload: unknown) => {
    const sent = await sendSignal(engine.db, TENANT, threadId, { name: 'payment', payload });
    engine.bus.notifyWork();
    return sent;
  };

  it('frees the slot while waiting; matches by name and payload; consumes each event once', async () => {
    const executions = { before: 0 };
    const agent = payer(executions);
    const worker = engine.startWorker([agent, quick], { concurrency: 1 });
    const run = await engine.createRun(agent, { order: 'o-1' }, { threadId: crypto.randomUUID() });
    await engine.waitForRun(run.run_id, (r) => r.status === 'waiting');
    // One slot: only a freed one lets the quick run finish.
    const other = await engine.createRun(quick, {});
    expect((await engine.waitForRun(other.run_id)).status).toBe('success');
    expect(worker.activeRuns).toBe(0);

    // Another order's payment does not match; it is kept, unconsumed.
    const stranger = await send(run.thread_id, { order: 'o-2', n: 0 });
    expect(stranger.consumed_by).toBeNull();
    const firstSent = await send(run.thread_id, { order: 'o-1', n: 1 });
    expect(firstSent.consumed_by).toBe(run.run_id);
    // The run goes on to its second wait; the first event is not matched again.
    await waitForSteps(engine, run.run_id, 3);
    expect((await engine.waitForRun(run.run_id, () => true)).status).not.toBe('success');
    await send(run.thread_id, { order: 'o-1', n: 2 });
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toEqual({ first: 1, second: 2 });
    expect(executions.before).toBe(1);
    const left = await engine.db.query<{ consumed_by: string | null }>(
      'SELECT consumed_by FROM thread_signals WHERE signal_id = $1',
      [stranger.signal_id],
    );
    expect(left.rows[0]?.consumed_by).toBeNull();
  });

  it('matches events sent before the wait was registered', async () => {
    const agent = payer({ before: 0 });
    const threadId = crypto.randomUUID();
    await engine.db.query('INSERT INTO threads (thread_id, tenant_id) VALUES ($1, $2)', [threadId, TENANT]);
    // Both events exist before the run does.
    await send(threadId, { order: 'o-9', n: 1 });
    await send(threadId, { order: 'o-9', n: 2 });
    const run = await engine.createRun(agent, { order: 'o-9' }, { threadId });
    engine.startWorker(agent);
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toEqual({ first: 1, second: 2 });
  });

  it('returns null after the timeout', async () => {
    const agent = payer({ before: 0 }, 300);
    engine.startWorker(agent);
    const run = await engine.createRun(agent, { order: 'o-3' }, { threadId: crypto.randomUUID() });
    await engine.waitForRun(run.run_id, (r) => r.status === 'waiting');
    await send(run.thread_id, { order: 'o-3', n: 7 });
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toEqual({ first: 7, second: null });
  });

  it('refuses an event for a thread of another tenant', async () => {
    await expect(
      sendSignal(engine.db, 'someone-else', crypto.randomUUID(), { name: 'payment', payload: null }),
    ).rejects.toMatchObject({ code: 'not_found' });
  });
});

async function waitForSteps(engine: TestEngine, runId: string, n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await engine.steps(runId)).length < n) {
    if (Date.now() > deadline) throw new Error(`run ${runId} did not reach ${n} steps`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
