import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { isHangarError } from '../errors.ts';
import { claimRun, requeueExpiredLeases } from '../runs/repository.ts';
import type { ClaimedRun } from '../runs/types.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { testLogger } from '../testing/logger.ts';
import {
  createTestEngine,
  eventShape,
  eventually,
  gate,
  TEST_WORKER_SETTINGS,
  type TestEngine,
  untilAborted,
} from './engine.harness.ts';
import { executeRun } from './execute.ts';

describe.each(STORE_KINDS)('lease fencing in the engine (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  /** What another worker does to a run whose lease it believes expired: sweep it and claim it. */
  async function stealLease(runId: string, agentName: string): Promise<ClaimedRun> {
    await engine.db.query(
      `UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE run_id = $1`,
      [runId],
    );
    await requeueExpiredLeases(engine.db);
    // A long lease: the old worker's sweeper must not take the run back while the test inspects it.
    const stolen = await claimRun(engine.db, { owner: 'thief', leaseMs: 30_000, agents: [agentName] });
    if (stolen === null) throw new Error('the thief could not claim the run');
    expect(stolen.run.run_id).toBe(runId);
    return stolen;
  }

  /** The new owner executes its attempt with the engine's own code path. */
  function executeAsNewOwner(claimed: ClaimedRun, agent: Parameters<typeof executeRun>[2]) {
    return executeRun(
      { ...TEST_WORKER_SETTINGS, db: engine.db, bus: engine.bus, logger: testLogger(), llm: {} },
      claimed,
      agent,
      new AbortController().signal,
    );
  }

  async function lastSeq(threadId: string): Promise<number> {
    const events = await engine.threadEvents(threadId);
    return events.at(-1)?.seq ?? 0;
  }

  it('an attempt that lost its lease mid-step cannot checkpoint or log anything afterwards', async () => {
    const inSlow = gate();
    const release = gate();
    const executions: number[] = [];
    const agent = defineAgent({
      name: 'fenced',
      input: z.object({}),
      async run(ctx) {
        await ctx.step('first', () => 'one');
        const value = await ctx.step('slow', async () => {
          executions.push(ctx.attempt);
          if (executions.length > 1) return 'fresh';
          inSlow.open();
          // A long GC pause or a partition: this attempt does not notice it lost the run.
          await release.promise;
          await ctx.emit('custom', { late: true });
          return 'stale';
        });
        await ctx.emit('custom', { after: value });
        return value;
      },
    });
    // No heartbeat within the test, so only the fence can stop the old attempt.
    const worker = engine.startWorker(agent, { concurrency: 1, heartbeatMs: 60_000, leaseMs: 30_000 });
    const run = await engine.createRun(agent, {});
    await inSlow.promise;
    await eventually(
      'the first step to be checkpointed',
      async () => (await engine.steps(run.run_id)).length === 1,
    );

    const stolen = await stealLease(run.run_id, agent.name);
    expect(stolen.run.attempt).toBe(2);
    const takeoverSeq = await lastSeq(run.thread_id);

    release.open();
    await eventually('the old attempt to end', () => worker.activeRuns === 0);
    expect((await engine.steps(run.run_id)).map((s) => s.name)).toEqual(['first']);
    expect(await lastSeq(run.thread_id)).toBe(takeoverSeq);

    const outcome = await executeAsNewOwner(stolen, agent);
    expect(outcome).toEqual({ kind: 'finished', status: 'success' });
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toBe('fresh');
    expect(executions).toEqual([1, 2]);

    const steps = await engine.steps(run.run_id);
    expect(steps.map((s) => [s.name, s.attempt, s.result])).toEqual([
      ['first', 1, { v: 'one' }],
      ['slow', 2, { v: 'fresh' }],
    ]);
    const events = await engine.runEvents(run);
    for (const e of events.filter((e) => e.attempt === 1)) expect(e.seq).toBeLessThanOrEqual(takeoverSeq);
    expect(events.filter((e) => e.channel === 'custom').map((e) => e.data)).toEqual([{ after: 'fresh' }]);
    expect(eventShape(events).filter((s) => s === 'lifecycle:run.completed')).toHaveLength(1);
    expect(events.at(-1)?.attempt).toBe(2);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
  });

  it("the old attempt's heartbeat notices the takeover and aborts the running step", async () => {
    const inSlow = gate();
    let reason: unknown;
    let executions = 0;
    const agent = defineAgent({
      name: 'heartbeat-fenced',
      input: z.object({}),
      async run(ctx) {
        return ctx.step('slow', async ({ signal }) => {
          executions++;
          if (executions > 1) return 'fresh';
          inSlow.open();
          try {
            await untilAborted(signal);
          } catch (err) {
            reason = err;
            throw err;
          }
        });
      },
    });
    const worker = engine.startWorker(agent, { concurrency: 1, heartbeatMs: 100, leaseMs: 5_000 });
    const run = await engine.createRun(agent, {});
    await inSlow.promise;
    // The run's start is committed at once (group commit): let that commit land first, or the
    // sweeper in stealLease skips the row it holds locked.
    await eventually('the run start to be logged', async () => (await lastSeq(run.thread_id)) >= 1);
    const stolen = await stealLease(run.run_id, agent.name);
    const takeoverSeq = await lastSeq(run.thread_id);

    await eventually('the old attempt to be aborted', () => reason !== undefined, 5_000);
    expect(isHangarError(reason, 'lease_lost')).toBe(true);
    await eventually('the old attempt to end', () => worker.activeRuns === 0);
    expect(await engine.steps(run.run_id)).toEqual([]);
    expect(await lastSeq(run.thread_id)).toBe(takeoverSeq);
    // The old attempt wrote no terminal status either: the run is still the new owner's.
    const held = await engine.waitForRun(run.run_id, () => true);
    expect(held.status).toBe('running');

    expect(await executeAsNewOwner(stolen, agent)).toEqual({ kind: 'finished', status: 'success' });
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toBe('fresh');
    const completions = (await engine.runEvents(run)).filter(
      (e) => (e.data as { event?: string }).event === 'run.completed',
    );
    expect(completions).toHaveLength(1);
    expect(completions[0]?.attempt).toBe(2);
  });

  it('a worker that stops heartbeating loses the run to the sweeper; another worker resumes it', async () => {
    const inB = gate();
    const unfreeze = gate();
    const executions = { a: 0, b: 0 };
    const agent = defineAgent({
      name: 'frozen',
      input: z.object({}),
      async run(ctx) {
        const a = await ctx.step('a', () => {
          executions.a++;
          return 'A';
        });
        const b = await ctx.step('b', async () => {
          executions.b++;
          if (executions.b === 1) {
            inB.open();
            await unfreeze.promise; // a frozen process: no heartbeats, ignores its signal
            return 'stale';
          }
          return 'B';
        });
        return `${a}${b}`;
      },
    });
    const run = await engine.createRun(agent, {});
    const claimed = await claimRun(engine.db, { owner: 'frozen-worker', leaseMs: 600, agents: [agent.name] });
    if (claimed === null) throw new Error('could not claim the run');
    const frozen = executeRun(
      {
        ...TEST_WORKER_SETTINGS,
        leaseMs: 600,
        heartbeatMs: 60_000,
        db: engine.db,
        bus: engine.bus,
        logger: testLogger(),
        llm: {},
      },
      claimed,
      agent,
      new AbortController().signal,
    );
    await inB.promise;

    engine.startWorker(agent);
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toBe('AB');
    expect(done.attempt).toBe(2);
    expect(executions).toEqual({ a: 1, b: 2 });

    unfreeze.open();
    expect(await frozen).toEqual({ kind: 'lost' });
    const steps = await engine.steps(run.run_id);
    expect(steps.map((s) => [s.name, s.attempt, s.result])).toEqual([
      ['a', 1, { v: 'A' }],
      ['b', 2, { v: 'B' }],
    ]);
    const after = await engine.waitForRun(run.run_id, () => true);
    expect(after.output).toBe('AB');
    const events = await engine.runEvents(run);
    expect(eventShape(events).filter((e) => e === 'lifecycle:run.completed')).toHaveLength(1);
    expect(events.at(-1)?.attempt).toBe(2);
  });
});
