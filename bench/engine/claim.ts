/**
 * The claim statement's cost on a deep queue (runs/concurrency.ts):
 * `npx tsx bench/engine/claim.ts [--runs 100000]`. One tenant has 100,000
 * pending runs, another has 10; each sample claims up to 10 runs in a
 * transaction that is rolled back, so every sample sees the same queue.
 * Prints the median and p90 wall time (round trip included) of the plain
 * claim, of a claim under a tenant cap and agent cap, and of one with a
 * browser resource, and the plan's execution time from EXPLAIN ANALYZE.
 * A third tenant has a burst of 1,000 runs on one concurrency key (limit 1),
 * parked by the warm-up: out of the other cases' way. Then a fourth tenant
 * queues a burst on one key and the claims that park it, 128 runs each, are
 * timed (`parking`, committed: a parked run leaves the queue).
 */
import { parseArgs } from 'node:util';
import { type ClaimPolicy, claimParameters, claimSql } from '../../packages/hangar/src/runs/concurrency.ts';
import { claimRunsWithPolicy, RUN_COLUMNS } from '../../packages/hangar/src/runs/repository.ts';
import type { Queryable } from '../../packages/hangar/src/store/sql.ts';
import { createBenchDatabase } from './db.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '100000' } } });
const RUNS = Number(values.runs);
const SAMPLES = 60;
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

const bench = await createBenchDatabase(url);

/** Claims as the worker does: again while the claim parks runs behind full keys. */
async function claimAll(db: Queryable, options: Parameters<typeof claimRunsWithPolicy>[1]): Promise<void> {
  for (let i = 0; i < 20; i++) {
    const result = await claimRunsWithPolicy(db, options);
    if (result.parked === 0 && !result.countersCreated) return;
  }
}
class Rollback extends Error {}

try {
  const { db } = bench;
  await db.query(`INSERT INTO tenants (tenant_id, name) VALUES ('big', 'big'), ('small', 'small')`);
  await db.query(
    `INSERT INTO threads (thread_id, tenant_id)
     SELECT gen_random_uuid(), CASE WHEN g <= $1 THEN 'big' ELSE 'small' END FROM generate_series(1, $1 + 10) g`,
    [RUNS],
  );
  await db.query(
    `INSERT INTO runs (run_id, tenant_id, thread_id, assistant_id, agent, created_at, available_at)
     SELECT gen_random_uuid(), t.tenant_id, t.thread_id, gen_random_uuid(),
       CASE WHEN random() < 0.2 THEN 'browse' ELSE 'bench' END,
       now() - interval '1 hour' + (row_number() OVER ()) * interval '1 ms', now() - interval '1 hour'
     FROM threads t`,
  );
  await db.query(`INSERT INTO tenants (tenant_id, name) VALUES ('keyed', 'keyed')`);
  await db.query(
    `INSERT INTO threads (thread_id, tenant_id) SELECT gen_random_uuid(), 'keyed' FROM generate_series(1, 1000)`,
  );
  await db.query(
    `INSERT INTO runs (run_id, tenant_id, thread_id, assistant_id, agent, created_at, available_at, concurrency_key,
       concurrency_limit)
     SELECT gen_random_uuid(), t.tenant_id, t.thread_id, gen_random_uuid(), 'bench',
       now() - interval '2 hours' + (row_number() OVER ()) * interval '1 ms', now() - interval '2 hours', 'repo', 1
     FROM threads t WHERE t.tenant_id = 'keyed'`,
  );
  await db.query('ANALYZE runs');

  const plain: ClaimPolicy = {
    agents: {
      bench: { limit: null, resources: { slots: 1 } },
      browse: { limit: null, resources: { slots: 1 } },
    },
    free: { slots: 10 },
  };
  const capped: ClaimPolicy = {
    ...plain,
    agents: { ...plain.agents, bench: { limit: 50, resources: { slots: 1 } } },
    tenantLimit: 100,
  };
  const weighted: ClaimPolicy = {
    ...plain,
    agents: { ...plain.agents, browse: { limit: null, resources: { slots: 1, browser: 1 } } },
    free: { slots: 10, browser: 2 },
  };

  const sample = async (policy: ClaimPolicy): Promise<number> => {
    let ms = 0;
    await db
      .transaction(async (tx: Queryable) => {
        const started = performance.now();
        const { runs } = await claimRunsWithPolicy(tx, {
          owner: 'bench',
          leaseMs: 60_000,
          agents: Object.keys(policy.agents),
          limit: 10,
          policy,
        });
        ms = performance.now() - started;
        if (runs.length === 0) throw new Error('the claim found nothing');
        throw new Rollback();
      })
      .catch((err: unknown) => {
        if (!(err instanceof Rollback)) throw err;
      });
    return ms;
  };

  const cases = { plain, capped, weighted };
  // Warm-up claims, committed: they create the cap rows (a rolled-back sample would not) and prepare the statement.
  for (const policy of Object.values(cases)) {
    for (let i = 0; i < 2; i++) {
      await claimRunsWithPolicy(db, {
        owner: 'warm-up',
        leaseMs: 60_000,
        agents: Object.keys(policy.agents),
        limit: 10,
        policy,
      });
    }
  }
  // The keyed burst parked, one claim of one run at a time (the caps of the capped case keep room).
  await claimAll(db, {
    owner: 'warm-up',
    leaseMs: 60_000,
    agents: Object.keys(plain.agents),
    limit: 1,
    policy: plain,
  });
  const times: Record<string, number[]> = { plain: [], capped: [], weighted: [] };
  // Interleaved, so load on a shared machine hits every case alike.
  for (let i = 0; i < SAMPLES; i++) {
    for (const [name, policy] of Object.entries(cases)) times[name]?.push(await sample(policy));
  }
  const at = (sorted: number[], p: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
  console.log(
    `claim of up to 10 runs, ${RUNS} pending for one tenant + 10 for another (${SAMPLES} samples each)`,
  );
  for (const [name, list] of Object.entries(times)) {
    const sorted = [...list].sort((a, b) => a - b);
    console.log(
      `  ${name.padEnd(9)} median ${at(sorted, 0.5).toFixed(2)} ms  p90 ${at(sorted, 0.9).toFixed(2)} ms`,
    );
  }

  const params = claimParameters(plain);
  await db
    .transaction(async (tx: Queryable) => {
      const plan = await tx.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN (ANALYZE, FORMAT TEXT) ${claimSql(RUN_COLUMNS)}`,
        [
          JSON.stringify(params.agents),
          'bench',
          60_000,
          10,
          null,
          null,
          '{}',
          JSON.stringify(params.free),
          Object.keys(params.agents),
        ],
      );
      const lines = plan.rows.map((r) => r['QUERY PLAN']);
      console.log(
        `  EXPLAIN ANALYZE (plain): ${lines.filter((l) => /Planning Time|Execution Time/.test(l)).join(', ')}`,
      );
      throw new Rollback();
    })
    .catch((err: unknown) => {
      if (!(err instanceof Rollback)) throw err;
    });

  // Parking: a burst on one key, parked 128 runs a claim (each claim also starts other tenants' runs).
  const burst = (SAMPLES + 25) * 128; // the warm-up parks up to 20 windows
  await db.query(`INSERT INTO tenants (tenant_id, name) VALUES ('burst', 'burst')`);
  await db.query(
    `INSERT INTO threads (thread_id, tenant_id) SELECT gen_random_uuid(), 'burst' FROM generate_series(1, $1)`,
    [burst],
  );
  await db.query(
    `INSERT INTO runs (run_id, tenant_id, thread_id, assistant_id, agent, concurrency_key, concurrency_limit)
     SELECT gen_random_uuid(), t.tenant_id, t.thread_id, gen_random_uuid(), 'bench', 'repo', 1
     FROM threads t WHERE t.tenant_id = 'burst'`,
  );
  await db.query('ANALYZE runs');
  const options = {
    owner: 'bench',
    leaseMs: 60_000,
    agents: Object.keys(plain.agents),
    limit: 10,
    policy: plain,
  };
  await claimAll(db, { ...options, limit: 1 }); // the key's counter row, and the burst's first run
  const parking: number[] = [];
  let parked = 0;
  for (let i = 0; i < SAMPLES; i++) {
    const started = performance.now();
    const result = await claimRunsWithPolicy(db, options);
    parking.push(performance.now() - started);
    parked += result.parked;
  }
  const sorted = [...parking].sort((a, b) => a - b);
  console.log(
    `  parking   median ${at(sorted, 0.5).toFixed(2)} ms  p90 ${at(sorted, 0.9).toFixed(2)} ms` +
      `  (${(parked / SAMPLES).toFixed(0)} runs parked per claim)`,
  );
} finally {
  await bench.dispose();
}
