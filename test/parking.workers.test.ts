/**
 * The PR-review scenario with a real `hangar worker` process on real
 * Postgres: an agent reviews one pull request of a repository at a time
 * (`concurrency: { key: repo, limit: 1 }`), a burst of 300 PRs lands on one
 * repository, then 5 on another. Read in order, the claim's 128-run window
 * would hold only the burst and the other repository would wait for most of
 * it; with runs parked behind the full key (runs/concurrency.ts), the other
 * repository's reviews all run while the burst goes on one at a time.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { createTestPostgres } from 'hangar/testing';
import { afterEach, expect, test } from 'vitest';
import { createRun } from '../packages/hangar/src/runs/repository.ts';
import { Cleanup, FIXTURES, lines, pgEnv, poll, STARTUP_MS } from './helpers.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const CONFIG = join(FIXTURES, 'concurrency.config.ts');

test("a burst of 300 runs on one key doesn't hold back the tenant's runs on another key", {
  timeout: 120_000,
}, async () => {
  const store = cleanup.store(await createTestPostgres());
  const file = join(cleanup.tmpDir(), 'occupancy.log');
  await store.db.query(`INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'acme')`);
  const keyOf = new Map<string, string>();
  const create = async (key: string, limit: number) => {
    const run = await createRun(store.db, {
      tenantId: 'acme',
      agent: 'light',
      assistantId: randomUUID(),
      input: { file, ms: 100 },
      concurrency: { key, limit },
    });
    keyOf.set(run.run_id, key);
  };
  for (let i = 0; i < 300; i++) await create('repo-a', 1);
  for (let i = 0; i < 5; i++) await create('repo-b', 5);

  const worker = cleanup.spawn(['worker', '--config', CONFIG], {
    env: pgEnv(store, { HANGAR_WORKER_CONCURRENCY: '4' }),
  });
  await worker.waitFor(/worker started/, STARTUP_MS);
  await poll(
    "repo-b's runs to have ended",
    async () => {
      const res = await store.db.query<{ n: string }>(
        `SELECT count(*) AS n FROM runs WHERE concurrency_key = 'repo-b' AND status = 'success'`,
      );
      return Number(res.rows[0]?.n) === 5 ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 100 },
  );
  const res = await store.db.query<{ n: string }>(
    `SELECT count(*) AS n FROM runs WHERE concurrency_key = 'repo-a' AND status = 'success'`,
  );
  const burstDone = Number(res.rows[0]?.n);
  console.log(`repo-a runs ended when repo-b's 5 had all ended: ${burstDone}`);
  // Behind the burst's first 128+ runs, repo-b would wait for ~170 of them (100 ms each, one at a time).
  expect(burstDone).toBeLessThan(40);
  // Let a few more of the burst go through: one at a time, each end releasing the next.
  await poll(
    'more of the burst to end',
    async () => {
      const more = await store.db.query<{ n: string }>(
        `SELECT count(*) AS n FROM runs WHERE concurrency_key = 'repo-a' AND status = 'success'`,
      );
      return Number(more.rows[0]?.n) >= burstDone + 10 ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 100 },
  );
  await worker.kill('SIGKILL');
  // Replay the start/end lines: never two repo-a runs at once; repo-b's ran side by side (limit 5, 3 free slots).
  const now = new Map<string, number>();
  const peak = new Map<string, number>();
  for (const line of lines(file)) {
    const [sign, , , runId = ''] = line.split(' ');
    const key = keyOf.get(runId) ?? '?';
    now.set(key, (now.get(key) ?? 0) + (sign === '+' ? 1 : -1));
    peak.set(key, Math.max(peak.get(key) ?? 0, now.get(key) ?? 0));
  }
  expect(peak.get('repo-a')).toBe(1);
  expect(peak.get('repo-b')).toBeGreaterThanOrEqual(2);
  expect([...peak.keys()].sort()).toEqual(['repo-a', 'repo-b']);
});
