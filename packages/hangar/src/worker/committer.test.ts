import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../sdk/agent.ts';
import { createTestEngine, eventually, gate, type TestEngine } from './engine.harness.ts';

/**
 * Group commit (worker/committer.ts): an emit is committed without waiting
 * for `flushMs` or a checkpoint, and emits that arrive during a commit share
 * the next one. Events written by one commit share the transaction id that
 * inserted them (`xmin`), which is how these tests tell commits apart.
 */
describe('RunCommitter group commit', () => {
  let engine: TestEngine;

  /** The inserting transaction of each of the run's events, by seq. */
  async function commitOf(runId: string): Promise<Map<number, string>> {
    const res = await engine.db.query<{ seq: number; tx: string }>(
      'SELECT seq, xmin::text AS tx FROM events WHERE run_id = $1',
      [runId],
    );
    return new Map(res.rows.map((r) => [Number(r.seq), r.tx]));
  }

  beforeEach(async () => {
    engine = await createTestEngine('postgres');
  });

  afterEach(async () => {
    await engine.dispose();
  });

  it('commits an emit at once, and the emits made during that commit together in the next', async () => {
    const release = gate();
    const agent = defineAgent({
      name: 'emitter',
      input: z.object({}),
      async run(ctx) {
        await ctx.emit('custom', { n: 'a' });
        // The commit of `a` has started (it was queued first); `b` and `c` arrive while it is in flight.
        await new Promise((resolve) => setImmediate(resolve));
        void ctx.emit('custom', { n: 'b' });
        void ctx.emit('custom', { n: 'c' });
        await release.promise;
        return 'ok';
      },
    });
    // A flush window far longer than the test: only group commit can write the events in time.
    engine.startWorker(agent, { flushMs: 600_000 });
    const run = await engine.createRun(agent, {});
    try {
      const events = await eventually('the three emits in the log', async () => {
        const logged = (await engine.runEvents(run)).filter((e) => e.channel === 'custom');
        return logged.length === 3 ? logged : undefined;
      });
      const [a, b, c] = events.map((e) => e.seq);
      expect(events.map((e) => e.data)).toEqual([{ n: 'a' }, { n: 'b' }, { n: 'c' }]);
      const tx = await commitOf(run.run_id);
      expect(tx.get(b ?? 0)).not.toBe(tx.get(a ?? 0));
      expect(tx.get(c ?? 0)).toBe(tx.get(b ?? 0));
    } finally {
      release.open();
    }
    expect((await engine.waitForRun(run.run_id)).status).toBe('success');
  });

  it('adds no commit to a step: the run start is committed with the first checkpoint', async () => {
    const agent = defineAgent({
      name: 'three-steps',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('a', () => 1);
        await ctx.step('b', () => 2);
        return 'ok';
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    expect((await engine.waitForRun(run.run_id)).status).toBe('success');
    const [started, firstStep] = await engine.runEvents(run);
    expect(started?.data).toMatchObject({ event: 'run.started' });
    expect(firstStep?.channel).toBe('updates');
    const tx = await commitOf(run.run_id);
    expect(tx.get(firstStep?.seq ?? 0)).toBe(tx.get(started?.seq ?? -1));
  });
});
