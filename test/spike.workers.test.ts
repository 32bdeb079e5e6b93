/**
 * A traffic spike against real processes (seed field report 002: ten users at
 * once took a single pod down). A `hangar gateway` and two `hangar worker`s
 * on real Postgres take a spike of 10 and then 500 concurrent creates of
 * long-ish runs: every create is answered (latencies printed, not asserted),
 * every run completes, and no worker ever runs more than its slots (each run
 * records its start and end per worker pid; the DB's running count per
 * worker is sampled too). Then weighted slots: a worker with
 * `slots=6,browser=2` never runs more than two browser runs at once while
 * light runs fill its other slots.
 */
import { join } from 'node:path';
import { createTestPostgres, type TestStore } from 'hangar/testing';
import { afterEach, expect, test } from 'vitest';
import { RunCreateBatcher } from '../packages/hangar/src/runs/batcher.ts';
import { api, Cleanup, FIXTURES, pgEnv, poll, STARTUP_MS } from './helpers.ts';
import { occupancy } from './occupancy.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const CONFIG = join(FIXTURES, 'concurrency.config.ts');

function startWorker(store: TestStore, env: NodeJS.ProcessEnv) {
  const proc = cleanup.spawn(['worker', '--config', CONFIG], { env: pgEnv(store, env) });
  return proc.waitFor(/worker started/, STARTUP_MS).then(() => proc);
}

async function succeeded(store: TestStore): Promise<number> {
  const res = await store.db.query<{ n: string }>(`SELECT count(*) AS n FROM runs WHERE status = 'success'`);
  return Number(res.rows[0]?.n);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

test('a spike of 10 then 500 concurrent runs is accepted and completes; no worker exceeds its slots', {
  timeout: 120_000,
}, async () => {
  const store = cleanup.store(await createTestPostgres());
  const file = join(cleanup.tmpDir(), 'occupancy.log');
  const slots = 10;
  const gatewayProc = cleanup.spawn(
    ['gateway', '--port', '0', '--host', '127.0.0.1', '--auth', 'none', '--config', CONFIG],
    {
      env: pgEnv(store),
    },
  );
  const url = String((await gatewayProc.waitFor(/Server listening at (http:\/\/[^\s"]+)/, STARTUP_MS))[1]);
  await Promise.all([
    startWorker(store, { HANGAR_WORKER_CONCURRENCY: String(slots) }),
    startWorker(store, { HANGAR_WORKER_CONCURRENCY: String(slots) }),
  ]);

  // The DB's view: running runs per worker, sampled until the test ends.
  const samples: number[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const res = await store.db.query<{ n: string }>(
        `SELECT count(*) AS n FROM runs WHERE status = 'running' GROUP BY lease_owner`,
      );
      samples.push(...res.rows.map((r) => Number(r.n)));
      await new Promise((r) => setTimeout(r, 50));
    }
  })();

  const latencies: number[] = [];
  const statuses: number[] = [];
  const spike = (n: number) =>
    Promise.all(
      Array.from({ length: n }, async () => {
        const started = performance.now();
        const res = await api(url, 'POST', '/runs', { assistant_id: 'light', input: { file, ms: 300 } });
        latencies.push(performance.now() - started);
        statuses.push(res.status);
      }),
    );
  await spike(10);
  await spike(500);
  const sorted = [...latencies].sort((a, b) => a - b);
  console.log(
    `creates: ${latencies.length}, latency ms p50 ${percentile(sorted, 50).toFixed(0)} p95 ${percentile(sorted, 95).toFixed(0)} max ${percentile(sorted, 100).toFixed(0)}`,
  );
  expect(statuses.filter((s) => s !== 200)).toEqual([]);
  await poll('all 510 runs to succeed', async () => ((await succeeded(store)) === 510 ? true : undefined), {
    timeoutMs: 90_000,
    intervalMs: 250,
  });
  sampling = false;
  await sampler;

  const seen = occupancy(file);
  console.log(
    `peak runs at once per worker pid: ${JSON.stringify([...seen.peak])}; DB samples max ${Math.max(...samples)}`,
  );
  expect(seen.started).toBe(510);
  expect(seen.peak.size).toBe(2);
  for (const peak of seen.peak.values()) expect(peak).toBeLessThanOrEqual(slots);
  expect(Math.max(...samples)).toBeLessThanOrEqual(slots);
  // The spike did fill the workers (the caps were tested, not idle).
  expect(Math.max(...seen.peak.values())).toBe(slots);
});

test('weighted slots: browser runs stay within the browser capacity while light runs fill the other slots', {
  timeout: 90_000,
}, async () => {
  const store = cleanup.store(await createTestPostgres());
  const file = join(cleanup.tmpDir(), 'occupancy.log');
  const creates = new RunCreateBatcher(store.db);
  const create = (agent: string) =>
    creates.create({
      tenantId: 'default',
      agent,
      assistantId: crypto.randomUUID(),
      input: { file, ms: 300 },
    });
  // The browser runs are queued first: a claim in creation order would pick only them.
  await Promise.all(Array.from({ length: 12 }, () => create('browser')));
  await Promise.all(Array.from({ length: 24 }, () => create('light')));
  await startWorker(store, { HANGAR_WORKER_RESOURCES: 'slots=6,browser=2' });
  await poll('all 36 runs to succeed', async () => ((await succeeded(store)) === 36 ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 250,
  });
  const seen = occupancy(file);
  const [pid] = [...seen.peak.keys()];
  const byAgent = seen.peakByAgent.get(pid ?? -1);
  console.log(`peaks: ${JSON.stringify([...seen.peak])}, by agent ${JSON.stringify([...(byAgent ?? [])])}`);
  expect(byAgent?.get('browser')).toBe(2);
  expect(seen.peak.get(pid ?? -1)).toBeLessThanOrEqual(6);
  expect(seen.together('browser', 'light')).toBe(true);
});
