import { Client } from '@langchain/langgraph-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { PostgresBus } from '../bus/postgres.ts';
import { claimRuns } from '../runs/repository.ts';
import { type RunningHangar, startHangar } from '../runtime/start.ts';
import { defineAgent } from '../sdk/agent.ts';
import { createTestPostgres, type TestStore, testLogger } from '../testing/index.ts';

const executed = new Set<string>();
const aborted = new Set<string>();

const blocker = defineAgent({
  name: 'blocker',
  input: z.object({}),
  async run(ctx) {
    executed.add(ctx.runId);
    await ctx.step('block', ({ signal }) => {
      return new Promise<never>((_resolve, reject) => {
        signal.addEventListener('abort', () => {
          aborted.add(ctx.runId);
          reject(signal.reason);
        });
      });
    });
    return {};
  },
});

async function until(what: string, check: () => Promise<boolean> | boolean, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A gateway and a worker as two Hangars on one Postgres schema, each with its
 * own Postgres bus: a cancel reaches the worker only through LISTEN/NOTIFY
 * (or, much later, a heartbeat).
 */
describe('cancel across processes (postgres bus)', () => {
  let store: TestStore;
  const started: RunningHangar[] = [];
  const buses: PostgresBus[] = [];

  afterEach(async () => {
    for (const hangar of started.splice(0).reverse()) await hangar.stop();
    for (const b of buses.splice(0)) await b.close();
    await store?.dispose();
  });

  async function bus(): Promise<PostgresBus> {
    const b = new PostgresBus({
      connectionString: store.url ?? '',
      schema: store.schema ?? '',
      logger: testLogger(),
    });
    await b.start();
    buses.push(b);
    return b;
  }

  async function gateway(): Promise<{ hangar: RunningHangar; client: Client }> {
    const hangar = await startHangar({
      db: store.db,
      bus: await bus(),
      agents: new Map([['blocker', blocker]]),
      logger: testLogger(),
      gateway: { port: 0, host: '127.0.0.1', auth: 'none' },
    });
    started.push(hangar);
    return { hangar, client: new Client({ apiUrl: hangar.url ?? '' }) };
  }

  async function worker(settings: { sweepMs?: number } = {}): Promise<RunningHangar> {
    const hangar = await startHangar({
      db: store.db,
      bus: await bus(),
      agents: new Map([['blocker', blocker]]),
      logger: testLogger(),
      migrate: false,
      // Heartbeats 20 s apart: only the bus can carry the cancel within the test's bound.
      worker: { pollMs: 50, heartbeatMs: 20_000, leaseMs: 60_000, ...settings },
    });
    started.push(hangar);
    return hangar;
  }

  it('a cancel on one gateway aborts the in-flight call on the worker holding the run, in well under a heartbeat', async () => {
    store = await createTestPostgres();
    const { client } = await gateway();
    await worker();
    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, 'blocker', { input: {} });
    await until('the run to start', () => executed.has(run.run_id));
    const asked = Date.now();
    await client.runs.cancel(thread.thread_id, run.run_id, true);
    const took = Date.now() - asked;
    expect(aborted.has(run.run_id)).toBe(true);
    expect((await client.runs.get(thread.thread_id, run.run_id)).status).toBe('cancelled');
    expect(took).toBeLessThan(5_000); // a heartbeat would have taken 20 s
  });

  it('a run whose worker died after a cancel request ends cancelled on the next worker, without running again', async () => {
    store = await createTestPostgres();
    const { client } = await gateway();
    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, 'blocker', { input: {} });
    // A worker that claims the run and dies at once: its lease is live but nobody will heartbeat it.
    const [ghost] = await claimRuns(store.db, {
      owner: 'ghost',
      leaseMs: 1_500,
      agents: ['blocker'],
      limit: 1,
    });
    expect(ghost?.run.run_id).toBe(run.run_id);
    await client.runs.cancel(thread.thread_id, run.run_id);
    expect((await client.runs.get(thread.thread_id, run.run_id)).status).toBe('running');
    await worker({ sweepMs: 200 });
    await until(
      'the run to be cancelled',
      async () => ((await client.runs.get(thread.thread_id, run.run_id)).status as string) === 'cancelled',
    );
    expect(executed.has(run.run_id)).toBe(false);
    expect((await client.threads.get(thread.thread_id)).status).toBe('idle');
  });
});
