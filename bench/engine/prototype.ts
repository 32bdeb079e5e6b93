/**
 * A prototype of the engine's write path with one round trip per durable
 * operation instead of five to seven: each is a single statement (data-
 * modifying CTEs) committed on its own. It writes the same rows as the engine
 * (runs, threads, steps, events, with the same fencing and seq allocation) so
 * its numbers show what the engine could reach with the same SQL fused. Used
 * only by the benchmark; see the report for the engine changes it argues for.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { PendingEvent } from '../../packages/hangar/src/events/envelope.ts';

export interface Queryer {
  query(config: pg.QueryConfig): Promise<pg.QueryResult>;
}

/**
 * `prepared`: named statements, parsed and planned once per connection
 * (node-postgres caches them); otherwise each call is parsed and planned again,
 * as the engine's queries are today.
 */
export interface LeanSqlOptions {
  prepared: boolean;
}

function statement(name: string, text: string, values: unknown[], o: LeanSqlOptions): pg.QueryConfig {
  return o.prepared ? { name, text, values } : { text, values };
}

export interface LeanLease {
  runId: string;
  epoch: number;
  attempt: number;
}

/**
 * Claim + lease + thread take + step history in one statement. `found` tells
 * an empty queue (no row) from a lost race for the thread (`run_id` null).
 */
const CLAIM_SQL = `
WITH candidate AS (
  SELECT r.run_id, r.thread_id FROM runs r JOIN threads t ON t.thread_id = r.thread_id
  WHERE r.status IN ('pending', 'waiting') AND r.available_at <= now() AND r.agent = ANY($1::text[])
    AND (t.active_run_id IS NULL OR t.active_run_id = r.run_id)
  ORDER BY r.priority DESC, r.available_at, r.created_at
  LIMIT 1
  FOR UPDATE OF r SKIP LOCKED
), thread AS (
  UPDATE threads t SET active_run_id = c.run_id, status = 'busy', updated_at = now()
  FROM candidate c
  WHERE t.thread_id = c.thread_id AND (t.active_run_id IS NULL OR t.active_run_id = c.run_id)
  RETURNING t.thread_id, t."values"
), claimed AS (
  UPDATE runs r SET status = 'running', lease_owner = $2, lease_epoch = r.lease_epoch + 1,
    lease_expires_at = now() + ($3::bigint * interval '1 millisecond'), attempt = r.attempt + 1,
    base_values = COALESCE(r.base_values, th."values"), started_at = COALESCE(r.started_at, now()),
    updated_at = now()
  FROM candidate c JOIN thread th ON th.thread_id = c.thread_id
  WHERE r.run_id = c.run_id
  RETURNING r.run_id, r.lease_epoch, r.attempt, r.input
)
SELECT c.run_id AS found, cl.run_id, cl.lease_epoch, cl.attempt, cl.input,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('i', s.step_index, 'name', s.name, 'result', s.result)
     ORDER BY s.step_index), '[]'::jsonb) FROM steps s WHERE s.run_id = c.run_id) AS history
FROM candidate c LEFT JOIN claimed cl ON true`;

/** Fence + step row + seq range + events in one statement; nothing is written when the fence fails. */
const CHECKPOINT_SQL = `
WITH fence AS (
  UPDATE runs SET lease_expires_at = now() + ($3::bigint * interval '1 millisecond'), updated_at = now()
  WHERE run_id = $1 AND lease_epoch = $2 AND status = 'running'
  RETURNING thread_id, tenant_id
), step AS (
  INSERT INTO steps (run_id, step_index, name, kind, status, result, attempt, started_at)
  SELECT $1, $4, $5, 'step', 'completed', $6::jsonb, $7, $8::timestamptz FROM fence
  ON CONFLICT (run_id, step_index) DO UPDATE SET status = EXCLUDED.status, result = EXCLUDED.result,
    attempt = EXCLUDED.attempt, finished_at = now()
  RETURNING step_index
), counter AS (
  UPDATE threads t SET last_seq = t.last_seq + $9::int FROM fence f WHERE t.thread_id = f.thread_id
  RETURNING t.thread_id, t.last_seq, f.tenant_id
), logged AS (
  INSERT INTO events (thread_id, seq, event_id, tenant_id, run_id, attempt, ts, channel, namespace, data)
  SELECT c.thread_id, c.last_seq - $9::int + e.i, e.event_id, c.tenant_id, $1, $7, $10::timestamptz,
    e.channel, e.namespace, e.data
  FROM counter c, jsonb_to_recordset($11::jsonb) AS e(i int, event_id uuid, channel text, namespace jsonb, data jsonb)
  RETURNING seq
)
SELECT (SELECT count(*) FROM fence)::int AS fenced, (SELECT count(*) FROM step)::int AS steps,
  (SELECT max(seq) FROM logged) AS last_seq`;

/**
 * Ends the run, frees its thread and logs the terminal events in one
 * statement. The finishing UPDATE is itself the fence; the thread is freed
 * only if this run holds it, while its seq counter always advances.
 */
const FINISH_SQL = `
WITH fin AS (
  UPDATE runs SET status = $3, output = $4::jsonb, lease_owner = NULL, lease_expires_at = NULL,
    finished_at = now(), updated_at = now()
  WHERE run_id = $1 AND lease_epoch = $2 AND status = 'running'
  RETURNING thread_id, tenant_id
), counter AS (
  UPDATE threads t SET last_seq = t.last_seq + $5::int, updated_at = now(),
    active_run_id = CASE WHEN t.active_run_id = $1 THEN NULL ELSE t.active_run_id END,
    status = CASE WHEN t.active_run_id = $1 THEN 'idle' ELSE t.status END
  FROM fin f WHERE t.thread_id = f.thread_id
  RETURNING t.thread_id, t.last_seq, f.tenant_id
), logged AS (
  INSERT INTO events (thread_id, seq, event_id, tenant_id, run_id, attempt, ts, channel, namespace, data)
  SELECT c.thread_id, c.last_seq - $5::int + e.i, e.event_id, c.tenant_id, $1, $6, $7::timestamptz,
    e.channel, e.namespace, e.data
  FROM counter c, jsonb_to_recordset($8::jsonb) AS e(i int, event_id uuid, channel text, namespace jsonb, data jsonb)
  RETURNING seq
)
SELECT (SELECT count(*) FROM fin)::int AS fenced, (SELECT max(seq) FROM logged) AS last_seq`;

function eventsJson(events: readonly PendingEvent[]): string {
  return JSON.stringify(
    events.map((e, i) => ({
      i: i + 1,
      event_id: randomUUID(),
      channel: e.channel,
      namespace: e.namespace ?? [],
      data: e.data ?? null,
    })),
  );
}

export type LeanClaim = { kind: 'empty' } | { kind: 'raced' } | { kind: 'claimed'; lease: LeanLease };

export async function leanClaim(
  db: Queryer,
  agents: string[],
  owner: string,
  leaseMs: number,
  o: LeanSqlOptions,
): Promise<LeanClaim> {
  const res = await db.query(statement('lean_claim', CLAIM_SQL, [agents, owner, leaseMs], o));
  const row = res.rows[0] as { run_id: string | null; lease_epoch: number; attempt: number } | undefined;
  if (row === undefined) return { kind: 'empty' };
  if (row.run_id === null) return { kind: 'raced' };
  return {
    kind: 'claimed',
    lease: { runId: row.run_id, epoch: Number(row.lease_epoch), attempt: Number(row.attempt) },
  };
}

export async function leanCheckpoint(
  db: Queryer,
  lease: LeanLease,
  leaseMs: number,
  step: { index: number; name: string; result: unknown; startedAt: Date },
  events: readonly PendingEvent[],
  o: LeanSqlOptions = { prepared: false },
): Promise<void> {
  const values = [
    lease.runId,
    lease.epoch,
    leaseMs,
    step.index,
    step.name,
    JSON.stringify({ v: step.result }),
    lease.attempt,
    step.startedAt.toISOString(),
    events.length,
    new Date().toISOString(),
    eventsJson(events),
  ];
  const res = await db.query(statement('lean_checkpoint', CHECKPOINT_SQL, values, o));
  if (res.rows[0]?.fenced !== 1) throw new Error(`lease on run ${lease.runId} lost`);
}

export async function leanFinish(
  db: Queryer,
  lease: LeanLease,
  output: unknown,
  events: readonly PendingEvent[],
  o: LeanSqlOptions,
): Promise<void> {
  const values = [
    lease.runId,
    lease.epoch,
    'success',
    JSON.stringify(output),
    events.length,
    lease.attempt,
    new Date().toISOString(),
    eventsJson(events),
  ];
  const res = await db.query(statement('lean_finish', FINISH_SQL, values, o));
  if (res.rows[0]?.fenced !== 1) throw new Error(`lease on run ${lease.runId} lost`);
}

/**
 * A minimal worker over the fused statements: `concurrency` slots, each
 * claiming and running 3-step runs until the queue is empty. It has none of
 * the engine's other duties (heartbeats, bus, logging, schemas), so it is
 * the ceiling the SQL allows, not a like-for-like worker.
 */
export async function leanDrain(
  pool: Queryer,
  options: {
    agent: string;
    concurrency: number;
    leaseMs: number;
    owner: string;
    deadline: number;
    prepared: boolean;
    /** Claim one run at a time per worker, as the engine's claim loop does. */
    serialClaims: boolean;
  },
): Promise<void> {
  const sql = { prepared: options.prepared };
  let claiming: Promise<unknown> = Promise.resolve();
  const claimNext = (): Promise<LeanClaim> => {
    if (!options.serialClaims) return leanClaim(pool, [options.agent], options.owner, options.leaseMs, sql);
    const next = claiming.then(() => leanClaim(pool, [options.agent], options.owner, options.leaseMs, sql));
    claiming = next.catch(() => {});
    return next;
  };
  const slot = async () => {
    let raced = 0;
    while (Date.now() < options.deadline) {
      const claim = await claimNext();
      if (claim.kind === 'empty') return;
      if (claim.kind === 'raced') {
        if (++raced > 5) return;
        continue;
      }
      const { lease } = claim;
      const started: PendingEvent = {
        channel: 'lifecycle',
        data: { event: 'run.started', status: 'running', attempt: lease.attempt },
      };
      for (let index = 0; index < 3; index++) {
        const name = 'abc'[index] ?? 'x';
        const startedAt = new Date();
        const update: PendingEvent = { channel: 'updates', data: { [name]: 1 } };
        await leanCheckpoint(
          pool,
          lease,
          options.leaseMs,
          { index, name, result: 1, startedAt },
          index === 0 ? [started, update] : [update],
          sql,
        );
      }
      const output = { ok: true };
      await leanFinish(
        pool,
        lease,
        output,
        [
          {
            channel: 'lifecycle',
            data: { event: 'run.completed', status: 'success', terminal: true, output },
          },
        ],
        sql,
      );
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, slot));
}
