import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { uuidv5 } from '../../packages/hangar/src/assistants/registry.ts';
import { createRun } from '../../packages/hangar/src/runs/repository.ts';
import { migrate } from '../../packages/hangar/src/store/migrate.ts';
import { openPostgres, type PostgresClient } from '../../packages/hangar/src/store/postgres.ts';
import type { SqlClient } from '../../packages/hangar/src/store/sql.ts';

export interface BenchDatabase {
  url: string;
  schema: string;
  /** The bench's own pool (run creation, polling, reports); workers get pools of their own. */
  db: PostgresClient;
  /** Another pool on the bench schema; close it when done (dispose closes any left open). */
  open(max: number): Promise<PostgresClient>;
  /** A plain `pg.Client` on the bench schema (the raw baselines). */
  client(): Promise<pg.Client>;
  dispose(): Promise<void>;
}

/** A migrated schema of the bench's own, dropped by `dispose` (also after a failed run). */
export async function createBenchDatabase(url: string): Promise<BenchDatabase> {
  const schema = `hangar_bench_${randomBytes(5).toString('hex')}`;
  const pools: PostgresClient[] = [];
  const clients: pg.Client[] = [];
  const open = async (max: number) => {
    const client = await openPostgres({
      connectionString: url,
      schema,
      max,
      applicationName: 'hangar-bench',
    });
    pools.push(client);
    return client;
  };
  const db = await open(10);
  try {
    await migrate(db);
  } catch (err) {
    await db.close();
    await dropSchema(url, schema);
    throw err;
  }
  return {
    url,
    schema,
    db,
    open,
    async client() {
      const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` });
      client.on('error', () => {});
      await client.connect();
      clients.push(client);
      return client;
    },
    async dispose() {
      // Pools a phase already closed reject a second close; that is fine here.
      await Promise.allSettled([...pools.map((p) => p.close()), ...clients.map((c) => c.end())]);
      await dropSchema(url, schema);
    },
  };
}

async function dropSchema(url: string, schema: string): Promise<void> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await admin.end();
  }
}

/** Empties the run tables so every throughput phase starts from the same state. */
export async function resetRuns(db: SqlClient): Promise<void> {
  await db.query('TRUNCATE threads, runs, steps, events, thread_states CASCADE');
}

/**
 * Creates `count` runs through the engine's own `createRun` (one transaction
 * each, `parallel` at a time), then holds them back (`available_at` in the
 * future) so that workers can start first and the drain is timed from one
 * release instant.
 */
export async function createHeldRuns(
  db: SqlClient,
  count: number,
  agent: string,
  input: unknown,
  parallel = 8,
): Promise<void> {
  let next = 0;
  const assistantId = uuidv5(agent);
  const lane = async () => {
    while (next < count) {
      next++;
      await createRun(db, { tenantId: 'default', agent, assistantId, input });
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  await db.query(`UPDATE runs SET available_at = now() + interval '1 day' WHERE status = 'pending'`);
}

/** Makes the held runs claimable now; returns the release instant (database clock). */
export async function releaseRuns(db: SqlClient): Promise<Date> {
  const res = await db.query<{ at: Date }>(
    `UPDATE runs SET available_at = statement_timestamp() WHERE status = 'pending'
     RETURNING statement_timestamp() AS at`,
  );
  const at = res.rows[0]?.at;
  if (at === undefined) throw new Error('no held runs to release');
  return at;
}

/** Polls until `count` runs are terminal; throws after `timeoutMs` (the bench never hangs). */
export async function waitForTerminal(db: SqlClient, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM runs WHERE status IN ('success', 'error', 'cancelled', 'timeout', 'dead')`,
    );
    const done = res.rows[0]?.n ?? 0;
    if (done >= count) return;
    if (Date.now() > deadline) throw new Error(`only ${done} of ${count} runs finished in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface DrainTimes {
  statuses: Record<string, number>;
  /** From the release instant to the last finished_at, by the database clock. */
  drainMs: number;
  /** available_at (= release; the runs' enqueue instant) → finished_at, per run. */
  enqueueToFinishMs: number[];
  /** created_at → finished_at, per run (includes the time the bench held the runs back). */
  createdToFinishMs: number[];
  /** started_at → finished_at, per run: execution only, without queueing. */
  executionMs: number[];
}

export async function drainTimes(db: SqlClient, releasedAt: Date): Promise<DrainTimes> {
  const statuses = await db.query<{ status: string; n: number }>(
    'SELECT status, count(*)::int AS n FROM runs GROUP BY status',
  );
  const rows = await db.query<{ q: number; c: number; e: number; f: Date }>(
    `SELECT extract(epoch FROM finished_at - available_at) * 1000 AS q,
            extract(epoch FROM finished_at - created_at) * 1000 AS c,
            extract(epoch FROM finished_at - started_at) * 1000 AS e, finished_at AS f
     FROM runs WHERE finished_at IS NOT NULL`,
  );
  let last = releasedAt.getTime();
  for (const r of rows.rows) last = Math.max(last, r.f.getTime());
  return {
    statuses: Object.fromEntries(statuses.rows.map((r) => [r.status, r.n])),
    drainMs: last - releasedAt.getTime(),
    enqueueToFinishMs: rows.rows.map((r) => Number(r.q)),
    createdToFinishMs: rows.rows.map((r) => Number(r.c)),
    executionMs: rows.rows.map((r) => Number(r.e)),
  };
}

export interface Integrity {
  /** Runs whose step rows, event rows or thread differ from a clean 3-step run. */
  runs_with_wrong_steps: number;
  threads_with_seq_gaps: number;
  threads_still_held: number;
  /** Runs that needed more than one attempt (a lease expired under load and another claim resumed them). */
  runs_retried: number;
  events_per_run: number;
}

/**
 * Checks what every drained run left behind: 3 step rows, a gap-free event log
 * on its thread, the thread freed. Guards the prototype's claim to write what
 * the engine writes, and the engine's own numbers against silent shortcuts.
 */
export async function checkIntegrity(db: SqlClient): Promise<Integrity> {
  const res = await db.query<{ wrong: number; gaps: number; held: number; retried: number; events: number }>(
    `SELECT
       (SELECT count(*)::int FROM runs r WHERE (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id) <> 3) AS wrong,
       (SELECT count(*)::int FROM (SELECT thread_id FROM events GROUP BY thread_id
          HAVING max(seq) <> count(*) OR min(seq) <> 1) g) AS gaps,
       (SELECT count(*)::int FROM threads WHERE active_run_id IS NOT NULL) AS held,
       (SELECT count(*)::int FROM runs WHERE attempt > 1) AS retried,
       (SELECT count(*)::float / greatest(1, (SELECT count(*) FROM runs)) FROM events) AS events`,
  );
  const row = res.rows[0];
  return {
    runs_with_wrong_steps: row?.wrong ?? -1,
    threads_with_seq_gaps: row?.gaps ?? -1,
    threads_still_held: row?.held ?? -1,
    runs_retried: row?.retried ?? -1,
    events_per_run: Number(row?.events ?? NaN),
  };
}
