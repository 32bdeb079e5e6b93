import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../sdk/agent.ts';
import { json } from '../store/sql.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { createThread, getThread, threadHistory } from '../threads/repository.ts';
import {
  createTestEngine,
  eventShape,
  gate,
  TENANT,
  type TestEngine,
  untilAborted,
} from './engine.harness.ts';

describe.each(STORE_KINDS)('thread state (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('is carried from one run to the next on the same thread, with values events and history rows', async () => {
    const agent = defineAgent({
      name: 'visitor',
      input: z.object({ who: z.string(), updateLate: z.boolean() }),
      async run(ctx, input) {
        const seen = ctx.state.get();
        const visits = typeof seen.visits === 'number' ? seen.visits : 0;
        // Run 1 changes state before its step (saved with the step's checkpoint); run 2 after its
        // last step (saved with the run's final commit).
        if (!input.updateLate) ctx.state.update({ visits: visits + 1, last: input.who });
        await ctx.step('visit', () => input.who);
        if (input.updateLate) ctx.state.update({ visits: visits + 1, last: input.who });
        return { seen };
      },
    });
    engine.startWorker(agent);
    const thread = await createThread(engine.db, { tenantId: TENANT });

    const run1 = await engine.createRun(
      agent,
      { who: 'ada', updateLate: false },
      { threadId: thread.thread_id },
    );
    const done1 = await engine.waitForRun(run1.run_id);
    expect(done1.status).toBe('success');
    expect(done1.output).toEqual({ seen: {} });
    expect((await getThread(engine.db, TENANT, thread.thread_id))?.values).toEqual({
      visits: 1,
      last: 'ada',
    });

    const run2 = await engine.createRun(
      agent,
      { who: 'bob', updateLate: true },
      { threadId: thread.thread_id },
    );
    const done2 = await engine.waitForRun(run2.run_id);
    expect(done2.status).toBe('success');
    expect(done2.output).toEqual({ seen: { visits: 1, last: 'ada' } });
    expect((await getThread(engine.db, TENANT, thread.thread_id))?.values).toEqual({
      visits: 2,
      last: 'bob',
    });

    const events1 = await engine.runEvents(run1);
    expect(eventShape(events1)).toEqual([
      'lifecycle:run.started',
      'updates',
      'values',
      'lifecycle:run.completed',
    ]);
    expect(events1[2]?.data).toEqual({ visits: 1, last: 'ada' });
    const events2 = await engine.runEvents(run2);
    expect(eventShape(events2)).toEqual([
      'lifecycle:run.started',
      'updates',
      'values',
      'lifecycle:run.completed',
    ]);
    expect(events2[2]?.data).toEqual({ visits: 2, last: 'bob' });

    const history = await threadHistory(engine.db, TENANT, thread.thread_id);
    expect(history.map((h) => [h.run_id, h.values])).toEqual([
      [run2.run_id, { visits: 2, last: 'bob' }],
      [run1.run_id, { visits: 1, last: 'ada' }],
    ]);
    expect(history[0]?.parent_checkpoint_id).toBe(history[1]?.checkpoint_id);
    expect(history[1]?.parent_checkpoint_id).toBeNull();
  });

  it('does not apply a state update twice when the run is replayed after an interruption', async () => {
    const holding = gate();
    let cRuns = 0;
    const agent = defineAgent({
      name: 'counter',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('a', () => 'a');
        const { counter } = ctx.state.get() as { counter: number };
        ctx.state.update({ counter: counter + 1 });
        await ctx.step('b', () => 'b');
        await ctx.step('c', async ({ signal }) => {
          cRuns++;
          if (cRuns === 1) {
            holding.open();
            await untilAborted(signal);
          }
        });
        return ctx.state.get();
      },
    });
    const thread = await createThread(engine.db, { tenantId: TENANT });
    await engine.db.query(`UPDATE threads SET "values" = $2::jsonb WHERE thread_id = $1`, [
      thread.thread_id,
      json({ counter: 5 }),
    ]);
    const first = engine.startWorker(agent);
    const run = await engine.createRun(agent, {}, { threadId: thread.thread_id });
    await holding.promise;
    // The increment was saved with step b's checkpoint before the interruption.
    expect((await getThread(engine.db, TENANT, thread.thread_id))?.values).toEqual({ counter: 6 });
    await first.stop();

    engine.startWorker(agent);
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toEqual({ counter: 6 });
    expect((await getThread(engine.db, TENANT, thread.thread_id))?.values).toEqual({ counter: 6 });
    for (const snapshot of await threadHistory(engine.db, TENANT, thread.thread_id)) {
      expect(snapshot.values).toEqual({ counter: 6 });
    }
  });

  it('rejects a state change made inside a step, which a replay would silently lose', async () => {
    const agent = defineAgent({
      name: 'state-in-step',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('remember', () => {
          ctx.state.update({ remembered: true });
          return 1;
        });
        return ctx.state.get();
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error?.code).toBe('invalid_agent_call');
    expect(done.error?.message).toContain('inside step "remember"');
    expect((await getThread(engine.db, TENANT, run.thread_id))?.values).toEqual({});
  });
});

// These cases exercise the engine's logic, not store-specific SQL (the suites above cover both stores).
describe('thread state (postgres)', () => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine('postgres');
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('rejects state values that are not a plain JSON object', async () => {
    const agent = defineAgent({
      name: 'bad-state',
      input: z.object({}),
      async run(ctx) {
        ctx.state.set([] as unknown as Record<string, unknown>);
        return 'unreachable';
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error?.code).toBe('invalid_agent_call');
    expect(done.error?.message).toContain('plain object');
  });
});
