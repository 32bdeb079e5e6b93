/**
 * Fairness across tenants with a real `hangar worker` process on real
 * Postgres: tenant A queues a burst of 1,000 runs, then tenant B queues 10.
 * Claimed in creation order, B would wait for all of A's; claimed fairly
 * (runs/concurrency.ts: the tenant running least goes first), B's runs start
 * alongside A's. The documented bound: all ten of B's runs have started
 * before A's 30th run starts (a fair claim gets there near A's 10th).
 */
import { join } from 'node:path';
import { createTestPostgres } from 'hangar/testing';
import { afterEach, expect, test } from 'vitest';
import { RunCreateBatcher } from '../packages/hangar/src/runs/batcher.ts';
import { Cleanup, FIXTURES, pgEnv, poll, STARTUP_MS } from './helpers.ts';
import { occupancy } from './occupancy.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const CONFIG = join(FIXTURES, 'concurrency.config.ts');
const SLOTS = 4;

test("one tenant's burst of 1,000 runs does not starve another tenant's 10", {
  timeout: 90_000,
}, async () => {
  const store = cleanup.store(await createTestPostgres());
  const file = join(cleanup.tmpDir(), 'occupancy.log');
  await store.db.query(`INSERT INTO tenants (tenant_id, name) VALUES ('burst', 'burst'), ('small', 'small')`);
  const creates = new RunCreateBatcher(store.db);
  const create = (tenantId: string) =>
    creates.create({ tenantId, agent: 'light', assistantId: crypto.randomUUID(), input: { file, ms: 150 } });
  await Promise.all(Array.from({ length: 1_000 }, () => create('burst')));
  await Promise.all(Array.from({ length: 10 }, () => create('small')));

  const worker = cleanup.spawn(['worker', '--config', CONFIG], {
    env: pgEnv(store, { HANGAR_WORKER_CONCURRENCY: String(SLOTS) }),
  });
  await worker.waitFor(/worker started/, STARTUP_MS);
  await poll(
    "the small tenant's runs to have started",
    async () => {
      const res = await store.db.query<{ n: string }>(
        `SELECT count(*) AS n FROM runs WHERE tenant_id = 'small' AND started_at IS NOT NULL`,
      );
      return Number(res.rows[0]?.n) === 10 ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  // Runs claimed by one statement share its started_at: count A's runs that started strictly before
  // B's last one, plus those claimed together with it.
  const res = await store.db.query<{ before: string; with_last: string }>(
    `WITH last AS (SELECT max(started_at) AS at FROM runs WHERE tenant_id = 'small')
     SELECT count(*) FILTER (WHERE r.started_at < last.at) AS before,
       count(*) FILTER (WHERE r.started_at = last.at) AS with_last
     FROM runs r, last WHERE r.tenant_id = 'burst' AND r.started_at IS NOT NULL`,
  );
  const before = Number(res.rows[0]?.before);
  const withLast = Number(res.rows[0]?.with_last);
  console.log(
    `burst runs started before the small tenant's last run: ${before} (+${withLast} in the same claim)`,
  );
  expect(before + withLast).toBeLessThan(30);
  // The worker never ran more than its slots at once.
  const seen = occupancy(file);
  expect(Math.max(...seen.peak.values())).toBeLessThanOrEqual(SLOTS);
  await worker.kill('SIGKILL');
});
