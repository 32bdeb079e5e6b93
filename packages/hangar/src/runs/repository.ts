import { randomUUID } from 'node:crypto';
import { HangarError, type RunErrorRecord } from '../errors.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import { type StepHistoryRow, toStepRecord } from '../steps/repository.ts';
import {
  canonicalJson,
  GENERIC_PLAN,
  iso,
  json,
  type Queryable,
  type SqlClient,
  sqlState,
  UNIQUE_VIOLATION,
} from '../store/sql.ts';
import { enqueueWebhook } from '../webhooks/repository.ts';
import { type CancelRequest, type CancelRequestRow, cancelRun, requestFromRow } from './cancel.ts';
import {
  type ClaimPolicy,
  claimParameters,
  claimSql,
  defaultPolicy,
  releaseParkedRuns,
  unparkFreeKeys,
} from './concurrency.ts';
import type { MultitaskStrategy, RunStatus } from './status.ts';
import type { ClaimedRun, Lease, Run } from './types.ts';

export type RunRow = {
  run_id: string;
  thread_id: string;
  assistant_id: string;
  tenant_id: string;
  agent: string;
  status: RunStatus;
  input: unknown;
  output: unknown;
  error: RunErrorRecord | null;
  config: Record<string, unknown>;
  metadata: Record<string, unknown>;
  kwargs: Record<string, unknown>;
  multitask_strategy: MultitaskStrategy;
  attempt: number;
  lease_epoch: number;
  lease_owner: string | null;
  base_values: Record<string, unknown> | null;
  created_at: Date;
  updated_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
};

export const RUN_COLUMNS = `run_id, thread_id, assistant_id, tenant_id, agent, status, input, output, error, config,
  metadata, kwargs, multitask_strategy, attempt, lease_epoch, lease_owner, base_values, created_at, updated_at,
  started_at, finished_at`;

export function toRun(row: RunRow): Run {
  return {
    run_id: row.run_id,
    thread_id: row.thread_id,
    assistant_id: row.assistant_id,
    tenant_id: row.tenant_id,
    agent: row.agent,
    status: row.status,
    input: row.input,
    output: row.output,
    error: row.error,
    config: row.config,
    metadata: row.metadata,
    kwargs: row.kwargs,
    multitask_strategy: row.multitask_strategy,
    attempt: Number(row.attempt),
    created_at: iso(row.created_at) ?? '',
    updated_at: iso(row.updated_at) ?? '',
    started_at: iso(row.started_at),
    finished_at: iso(row.finished_at),
  };
}

export interface CreateRunInput {
  tenantId: string;
  agent: string;
  assistantId: string;
  input: unknown;
  /** Omit for a stateless run: a thread is created for it in the same transaction. */
  threadId?: string;
  /** A client-supplied run id (idempotent create). */
  runId?: string;
  config?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  kwargs?: Record<string, unknown>;
  multitaskStrategy?: MultitaskStrategy;
  priority?: number;
  /** The key the run is counted by and how many of that key may run at once (runs/concurrency.ts). */
  concurrency?: { key: string; limit: number };
  /** Create the thread if it does not exist (`if_not_exists: 'create'`). */
  createThread?: boolean;
  /** POSTed the run when it ends (webhooks/): the delivery is recorded in this transaction. */
  webhook?: string;
  /**
   * Filled by a create whose multitask strategy (interrupt, rollback)
   * cancelled the thread's runs: events to publish and runs whose worker to
   * notify, once the transaction has committed.
   */
  effects?: CreateEffects;
}

export interface CreateEffects {
  events: EventEnvelope[];
  cancelRequested: string[];
}

/**
 * Creates a run and enqueues it in one transaction: the row *is* the queue
 * entry, so there is no dual write to lose.
 */
export async function createRun(db: SqlClient, input: CreateRunInput): Promise<Run> {
  try {
    return await db.transaction((tx) => createRunInTx(tx, input));
  } catch (err) {
    if (input.runId === undefined || sqlState(err) !== UNIQUE_VIOLATION) throw err;
    return existingRun(db, input, input.runId, err);
  }
}

/**
 * A client-supplied `run_id` that already exists: the same request again
 * answers the existing run; anything else is `conflict` naming the run id
 * (also when another tenant holds it, without saying so).
 */
async function existingRun(
  db: Queryable,
  input: CreateRunInput,
  runId: string,
  cause: unknown,
): Promise<Run> {
  const run = await getRun(db, input.tenantId, runId);
  if (run !== null && sameRequest(run, input)) return run;
  const taken =
    run !== null || (await db.query('SELECT 1 FROM runs WHERE run_id = $1', [runId])).rowCount > 0;
  if (!taken) throw cause; // Not the run id: another unique key (e.g. a thread created concurrently).
  throw new HangarError('conflict', `run ${runId} already exists with a different request`, {
    details: { run_id: runId },
  });
}

/** Whether an existing run was created from this input (priority is not compared: runs don't expose it). */
function sameRequest(run: Run, input: CreateRunInput): boolean {
  const same = (a: unknown, b: unknown) => canonicalJson(a) === canonicalJson(b);
  return (
    run.agent === input.agent &&
    run.assistant_id === input.assistantId &&
    (input.threadId === undefined || run.thread_id === input.threadId) &&
    run.multitask_strategy === (input.multitaskStrategy ?? 'reject') &&
    same(run.input, input.input ?? null) &&
    same(run.config, input.config ?? {}) &&
    same(run.metadata, input.metadata ?? {}) &&
    same(run.kwargs, input.kwargs ?? {})
  );
}

export async function createRunInTx(tx: Queryable, input: CreateRunInput): Promise<Run> {
  const runId = input.runId ?? randomUUID();
  const strategy = input.multitaskStrategy ?? 'reject';
  let threadId = input.threadId;
  let queued = false;
  let supersede: string[] = [];
  if (threadId === undefined) {
    threadId = randomUUID();
    await tx.query(`INSERT INTO threads (thread_id, tenant_id, metadata) VALUES ($1, $2, $3::jsonb)`, [
      threadId,
      input.tenantId,
      json({ stateless: true }),
    ]);
  } else {
    // Lock the thread row: concurrent creates on one thread see each other's runs.
    const thread = await tx.query<{ active_run_id: string | null }>(
      'SELECT active_run_id FROM threads WHERE thread_id = $1 AND tenant_id = $2 FOR UPDATE',
      [threadId, input.tenantId],
    );
    if (thread.rowCount === 0) {
      if (!input.createThread) {
        throw new HangarError('not_found', `thread ${threadId} not found`, {
          details: { thread_id: threadId },
        });
      }
      await tx.query('INSERT INTO threads (thread_id, tenant_id) VALUES ($1, $2)', [
        threadId,
        input.tenantId,
      ]);
    } else {
      const busy = await tx.query<{ run_id: string }>(
        `SELECT run_id FROM runs WHERE thread_id = $1 AND status IN ('pending', 'running', 'waiting', 'interrupted')
         ORDER BY created_at`,
        [threadId],
      );
      if (busy.rowCount > 0 && strategy === 'reject') {
        throw new HangarError('conflict', `thread ${threadId} is busy with another run`, {
          details: { thread_id: threadId, multitask_strategy: 'reject' },
        });
      }
      // Queued behind the thread's current run: not claimable until that run ends and the
      // ending write releases the thread's oldest queued run (runs/checkpoint.ts).
      queued = busy.rowCount > 0;
      // interrupt / rollback: the new run replaces every run in flight or queued on the thread.
      if (strategy === 'interrupt' || strategy === 'rollback') supersede = busy.rows.map((r) => r.run_id);
    }
  }
  const res = await tx.query<RunRow>(
    `INSERT INTO runs (run_id, tenant_id, thread_id, assistant_id, agent, input, config, metadata, kwargs,
       multitask_strategy, priority, available_at, concurrency_key, concurrency_limit)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9::jsonb, $10, $11,
       CASE WHEN $12::boolean THEN 'infinity'::timestamptz ELSE now() END, $13, $14)
     RETURNING ${RUN_COLUMNS}`,
    [
      runId,
      input.tenantId,
      threadId,
      input.assistantId,
      input.agent,
      json(input.input ?? null),
      json(input.config ?? {}),
      json(input.metadata ?? {}),
      json(input.kwargs ?? {}),
      strategy,
      input.priority ?? 0,
      queued,
      input.concurrency?.key ?? null,
      input.concurrency?.limit ?? null,
    ],
  );
  const row = res.rows[0];
  if (row === undefined) throw new Error('INSERT … RETURNING returned no row');
  if (input.webhook !== undefined) {
    await enqueueWebhook(tx, { tenantId: input.tenantId, runId, url: input.webhook });
  }
  // Cancelled after the insert: cancelling the run that is next in line releases the new one.
  for (const previous of supersede) {
    const result = await cancelRun(tx, input.tenantId, previous, {
      action: strategy === 'rollback' ? 'rollback' : 'interrupt',
      reason: 'multitask',
      by: `run:${runId}`,
    });
    input.effects?.events.push(...result.events);
    if (result.outcome === 'requested') input.effects?.cancelRequested.push(previous);
  }
  return toRun(row);
}

/**
 * Deletes a run of the tenant (steps, tool calls and interrupts go with it by
 * cascade; its events stay in the thread's append-only log). The caller
 * checks the run has ended.
 */
export async function deleteRun(db: Queryable, tenantId: string, runId: string): Promise<boolean> {
  const res = await db.query('DELETE FROM runs WHERE run_id = $1 AND tenant_id = $2', [runId, tenantId]);
  return res.rowCount > 0;
}

/**
 * The runs a cancel-many request names: `all` are the ids that exist in the
 * tenant (to report unknown ones), `active` those still able to be cancelled.
 * At most 1,000 per request.
 */
export async function findRunsToCancel(
  db: Queryable,
  tenantId: string,
  filter: { threadId?: string; runIds?: readonly string[]; status?: 'pending' | 'running' | 'all' },
): Promise<{ all: string[]; active: string[] }> {
  const statuses =
    filter.status === 'pending'
      ? ['pending', 'waiting']
      : filter.status === 'running'
        ? ['running']
        : ['pending', 'running', 'waiting', 'interrupted'];
  const res = await db.query<{ run_id: string; active: boolean }>(
    `SELECT run_id, status = ANY($4::text[]) AS active FROM runs
     WHERE tenant_id = $1 AND ($2::uuid IS NULL OR thread_id = $2)
       AND ($3::uuid[] IS NULL OR run_id = ANY($3::uuid[]))
       AND ($3::uuid[] IS NOT NULL OR status = ANY($4::text[]))
     ORDER BY created_at LIMIT 1000`,
    [tenantId, filter.threadId ?? null, filter.runIds ?? null, statuses],
  );
  return {
    all: res.rows.map((r) => r.run_id),
    active: res.rows.filter((r) => r.active).map((r) => r.run_id),
  };
}

export async function getRun(db: Queryable, tenantId: string, runId: string): Promise<Run | null> {
  const res = await db.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE run_id = $1 AND tenant_id = $2`, [
    runId,
    tenantId,
  ]);
  const row = res.rows[0];
  return row === undefined ? null : toRun(row);
}

/** A thread's runs of the tenant, newest first, optionally of one status (the SDK's `runs.list`). */
export async function listRuns(
  db: Queryable,
  tenantId: string,
  threadId: string,
  page: { limit: number; offset: number; status?: RunStatus },
): Promise<Run[]> {
  const res = await db.query<RunRow>(
    `SELECT ${RUN_COLUMNS} FROM runs
     WHERE thread_id = $1 AND tenant_id = $2 AND ($3::text IS NULL OR status = $3)
     ORDER BY created_at DESC, run_id DESC LIMIT $4 OFFSET $5`,
    [threadId, tenantId, page.status ?? null, page.limit, page.offset],
  );
  return res.rows.map(toRun);
}

export interface ClaimOptions {
  owner: string;
  leaseMs: number;
  /**
   * The advisory lock key the worker's session holds while it lives (see
   * worker/liveness.ts): stamped on the claimed runs, so the sweeper can tell
   * its death from its session ending. Omitted: the lease alone decides.
   */
  livenessKey?: string | null;
  /** Only claim runs of these agents (the worker's loaded agents). */
  agents: readonly string[];
  /**
   * Caps, resources and free capacity (runs/concurrency.ts). Omitted: one
   * slot per run, `limit` slots free, no caps.
   */
  policy?: ClaimPolicy;
}

export interface ClaimResult {
  runs: ClaimedRun[];
  /**
   * The claim met caps it had never counted before and created their rows:
   * runs held back by them are claimable at once (claim again).
   */
  countersCreated: boolean;
  /**
   * Runs the claim parked behind a full concurrency key: its window moved on
   * to the runs behind them (claim again).
   */
  parked: number;
}

/**
 * Claims up to `limit` claimable runs in one statement (runs/concurrency.ts
 * claimSql): tenants take turns, within a tenant highest priority then oldest,
 * within the caps and the worker's free capacity. Claimable means `pending`,
 * or `waiting` whose `available_at` has passed. Runs of one thread start one
 * at a time in creation order: a run created while its thread is busy waits
 * with `available_at = infinity` until the thread's run ends and its ending
 * write releases the oldest one. The conditional thread update is the safety
 * net that keeps two runs of one thread from running together: a run whose
 * thread is held by another is simply not claimed. `SKIP LOCKED` lets many
 * workers claim at once without waiting on each other's runs. Each claimed
 * run comes with its step history, so starting it costs no further query.
 */
export async function claimRuns(
  db: Queryable,
  options: ClaimOptions & { limit: number },
): Promise<ClaimedRun[]> {
  return (await claimRunsWithPolicy(db, options)).runs;
}

// A generic plan: re-planning the claim at every execution cost more than running it (store/postgres.ts).
const CLAIM_SQL = `${GENERIC_PLAN}\n${claimSql(RUN_COLUMNS)}`;

/** claimRuns, also saying whether the claim created cap rows (the worker claims again at once). */
export async function claimRunsWithPolicy(
  db: Queryable,
  options: ClaimOptions & { limit: number },
): Promise<ClaimResult> {
  type ClaimRow = RunRow &
    CancelRequestRow & {
      history: StepHistoryRow[];
      cancel_requested_at: Date | null;
      counters_created: string | number;
      parked: string | number;
    };
  const params = claimParameters(options.policy ?? defaultPolicy(options.agents, options.limit));
  // No agent fits what is free (a worker whose browsers are all taken, say): nothing to ask.
  if (Object.keys(params.agents).length === 0 || options.limit <= 0)
    return { runs: [], countersCreated: false, parked: 0 };
  const res = await db.query<ClaimRow>(CLAIM_SQL, [
    json(params.agents),
    options.owner,
    options.leaseMs,
    options.limit,
    options.livenessKey ?? null,
    params.tenantLimit,
    json(params.tenantLimits),
    json(params.free),
    Object.keys(params.agents),
  ]);
  const runs = res.rows
    .filter((row) => row.run_id !== null)
    .map((row) => {
      const run = toRun(row);
      return {
        run,
        lease: {
          runId: run.run_id,
          threadId: run.thread_id,
          tenantId: run.tenant_id,
          owner: options.owner,
          epoch: Number(row.lease_epoch),
        },
        baseValues: row.base_values ?? {},
        history: row.history.map(toStepRecord),
        cancel: row.cancel_requested_at === null ? null : requestFromRow(row),
      };
    });
  return {
    runs,
    countersCreated: Number(res.rows[0]?.counters_created ?? 0) > 0,
    parked: Number(res.rows[0]?.parked ?? 0),
  };
}

/** Claims one run (see claimRuns). */
export async function claimRun(db: Queryable, options: ClaimOptions): Promise<ClaimedRun | null> {
  const [claimed] = await claimRuns(db, { ...options, limit: 1 });
  return claimed ?? null;
}

/**
 * Extends the lease and reads whether the run was asked to cancel since. Not
 * held: the lease was lost.
 */
export async function renewLease(
  db: Queryable,
  lease: Lease,
  leaseMs: number,
): Promise<{ held: false } | { held: true; cancel: CancelRequest | null }> {
  const res = await db.query<CancelRequestRow & { cancel_requested: boolean }>(
    `UPDATE runs SET lease_expires_at = now() + ($3::bigint * interval '1 millisecond')
     WHERE run_id = $1 AND lease_epoch = $2 AND status = 'running'
     RETURNING cancel_requested_at IS NOT NULL AS cancel_requested, cancel_action, cancel_reason, cancelled_by`,
    [lease.runId, lease.epoch, leaseMs],
  );
  const row = res.rows[0];
  if (row === undefined) return { held: false };
  return { held: true, cancel: row.cancel_requested ? requestFromRow(row) : null };
}

/** Extends the lease; false when it was lost. */
export async function heartbeat(db: Queryable, lease: Lease, leaseMs: number): Promise<boolean> {
  return (await renewLease(db, lease, leaseMs)).held;
}

/** Hands a run back to the queue without counting the attempt (graceful drain). */
export async function releaseRun(db: Queryable, lease: Lease): Promise<boolean> {
  const res = await db.query<{ concurrency_key: string | null; concurrency_limit: number | null }>(
    `UPDATE runs SET status = 'pending', attempt = attempt - 1, lease_owner = NULL, lease_expires_at = NULL,
       available_at = now(), updated_at = now()
     WHERE run_id = $1 AND lease_epoch = $2 AND status = 'running'
     RETURNING concurrency_key, concurrency_limit`,
    [lease.runId, lease.epoch],
  );
  const row = res.rows[0];
  if (row === undefined) return false;
  // Its key's place is free again: the key's oldest parked run takes its turn (runs/concurrency.ts).
  if (row.concurrency_key !== null && row.concurrency_limit !== null) {
    const place = { tenantId: lease.tenantId, key: row.concurrency_key, limit: row.concurrency_limit };
    // Handed back already: a release that fails is left to the sweeper's un-park.
    await releaseParkedRuns(db, place).catch(() => []);
  }
  return true;
}

/**
 * The crash-loop cap: a run whose worker died in this many attempts in a row
 * (killed, OOM, lost) ends `dead` instead of being re-queued forever
 * (`HANGAR_MAX_RUN_ATTEMPTS`). Drain hand-backs and suspensions give their
 * attempt back, so they never count.
 */
export const DEFAULT_MAX_RUN_ATTEMPTS = 5;

export interface SweepOptions {
  /** Attempts a run may use before a dead worker's run ends `dead` (default DEFAULT_MAX_RUN_ATTEMPTS). */
  maxAttempts?: number;
  /**
   * Filled by the sweep with what it dead-lettered: the runs, and their
   * terminal events to publish once the statement has committed.
   */
  effects?: { dead: string[]; events: EventEnvelope[] };
}

/**
 * The sweeper: re-queues runs whose worker is gone — its lease expired (the
 * worker died or was partitioned), or the Postgres session that held its
 * liveness lock ended (the process died: its socket closed, so Postgres
 * dropped the session and the lock at once). The thread stays held by the
 * run, so it resumes before any other run of that thread. Returns the
 * re-queued run ids.
 *
 * A run that has used `maxAttempts` attempts is not re-queued: the same
 * statement ends it `dead` (`attempts_exhausted`) as any terminal write ends a
 * run — its terminal event logged, its thread freed and handed to the
 * thread's oldest queued run (its webhook then goes out, as for any ended
 * run). At most one run per thread is running, so each dead run bumps its own
 * thread's seq once.
 */
export async function requeueExpiredLeases(
  db: Queryable,
  limit = 100,
  options: SweepOptions = {},
): Promise<string[]> {
  type SweepRow = {
    kind: 'requeued' | 'dead' | 'place';
    run_id: string | null;
    thread_id: string | null;
    seq: string | number | null;
    event_id: string | null;
    attempt: number | null;
    ts: Date | string | null;
    data: unknown;
  };
  const res = await db.query<SweepRow>(
    `WITH held AS (
       -- Session advisory locks on a bigint key show as classid (high half), objid (low half), objsubid 1.
       SELECT (l.classid::bigint << 32) | l.objid::bigint AS k FROM pg_locks l
       WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     ), expired AS (
       SELECT run_id, attempt >= $2::int AS exhausted FROM runs WHERE status = 'running'
         AND (lease_expires_at < now() OR (lease_lock IS NOT NULL AND lease_lock NOT IN (SELECT k FROM held)))
       ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
     ), requeued AS (
       UPDATE runs r SET status = 'pending', lease_owner = NULL, lease_lock = NULL, lease_expires_at = NULL,
         available_at = now(), updated_at = now()
       FROM expired e WHERE r.run_id = e.run_id AND NOT e.exhausted
       RETURNING r.run_id, r.tenant_id, r.concurrency_key, r.concurrency_limit
     ), dead AS (
       UPDATE runs r SET status = 'dead', lease_owner = NULL, lease_lock = NULL, lease_expires_at = NULL,
         error = jsonb_build_object('code', 'attempts_exhausted', 'type', 'AttemptsExhausted',
           'message', format('the worker died in each of the run''s %s attempts (cap: %s)', r.attempt, $2::int),
           'details', jsonb_build_object('attempts', r.attempt, 'max_attempts', $2::int)),
         finished_at = now(), updated_at = now()
       FROM expired e WHERE r.run_id = e.run_id AND e.exhausted
       RETURNING r.run_id, r.thread_id, r.tenant_id, r.attempt, r.error, r.concurrency_key, r.concurrency_limit
     ), counter AS (
       UPDATE threads t SET last_seq = t.last_seq + 1,
         status = CASE WHEN t.active_run_id = d.run_id THEN 'error' ELSE t.status END,
         active_run_id = CASE WHEN t.active_run_id = d.run_id THEN NULL ELSE t.active_run_id END,
         updated_at = now()
       FROM dead d WHERE t.thread_id = d.thread_id
       RETURNING t.thread_id, t.last_seq, d.run_id, d.tenant_id, d.attempt, d.error
     ), released AS (
       -- The thread as it was before this statement: free, or held by the dead run.
       UPDATE runs q SET available_at = now(), updated_at = now()
       WHERE q.run_id IN (
         SELECT DISTINCT ON (o.thread_id) o.run_id FROM runs o JOIN dead d ON o.thread_id = d.thread_id
         WHERE o.status = 'pending' AND o.available_at = 'infinity' AND NOT o.key_parked AND o.run_id <> d.run_id
           AND COALESCE((SELECT h.active_run_id FROM threads h WHERE h.thread_id = d.thread_id), d.run_id) = d.run_id
         ORDER BY o.thread_id, o.created_at, o.run_id)
       RETURNING q.run_id
     ), logged AS (
       INSERT INTO events (thread_id, seq, event_id, tenant_id, run_id, attempt, ts, channel, namespace, data)
       SELECT c.thread_id, c.last_seq, gen_random_uuid(), c.tenant_id, c.run_id, c.attempt, now(), 'lifecycle',
         '[]'::jsonb, jsonb_build_object('event', 'run.completed', 'status', 'dead', 'terminal', true, 'error', c.error)
       FROM counter c
       RETURNING thread_id, seq, event_id, run_id, attempt, ts, data
     )
     SELECT 'requeued' AS kind, run_id, NULL::uuid AS thread_id, NULL::bigint AS seq, NULL::uuid AS event_id,
       NULL::int AS attempt, NULL::timestamptz AS ts, NULL::jsonb AS data FROM requeued
     UNION ALL
     SELECT 'dead', run_id, thread_id, seq, event_id, attempt, ts, data FROM logged
     UNION ALL
     -- The keys whose places the swept runs gave back, released below (the limit as attempt, [tenant, key] as data).
     SELECT DISTINCT 'place', NULL::uuid, NULL::uuid, NULL::bigint, NULL::uuid, concurrency_limit, NULL::timestamptz,
       jsonb_build_array(tenant_id, concurrency_key)
     FROM (SELECT tenant_id, concurrency_key, concurrency_limit FROM requeued
       UNION ALL SELECT tenant_id, concurrency_key, concurrency_limit FROM dead) k
     WHERE concurrency_limit IS NOT NULL`,
    [limit, options.maxAttempts ?? DEFAULT_MAX_RUN_ATTEMPTS],
  );
  const requeued: string[] = [];
  for (const row of res.rows) {
    if (row.kind === 'place') {
      const [tenantId, key] = row.data as [string, string];
      await releaseParkedRuns(db, { tenantId, key, limit: Number(row.attempt) });
      continue;
    }
    if (row.run_id === null) continue;
    if (row.kind === 'requeued') requeued.push(row.run_id);
    if (row.kind !== 'dead' || row.thread_id === null || row.event_id === null) continue;
    options.effects?.dead.push(row.run_id);
    options.effects?.events.push({
      seq: Number(row.seq),
      event_id: row.event_id,
      thread_id: row.thread_id,
      run_id: row.run_id,
      attempt: Number(row.attempt),
      ts: new Date(row.ts ?? Date.now()).toISOString(),
      channel: 'lifecycle',
      namespace: [],
      data: row.data,
    });
  }
  // The safety net: keys with room whose parked runs were never released (runs/concurrency.ts).
  await unparkFreeKeys(db);
  return requeued;
}

/**
 * Re-queues every running run at once, whatever its lease says. Only for a
 * process that knows it is the sole user of the database (`hangar dev` holds
 * its data directory's lock): the runs it finds running belonged to a process
 * that died, and waiting out their leases would only delay the restart.
 * Their leases are expired and the sweep does the rest, so the attempt cap
 * holds here too: a run that kills the whole process on every attempt ends
 * `dead` instead of looping across restarts.
 */
export async function requeueAllRunning(db: Queryable, options: SweepOptions = {}): Promise<string[]> {
  await db.query(`UPDATE runs SET lease_expires_at = '-infinity' WHERE status = 'running'`);
  const requeued: string[] = [];
  for (;;) {
    const effects = { dead: [] as string[], events: [] as EventEnvelope[] };
    const batch = await requeueExpiredLeases(db, 500, { ...options, effects });
    requeued.push(...batch);
    options.effects?.dead.push(...effects.dead);
    options.effects?.events.push(...effects.events);
    if (batch.length + effects.dead.length < 500) return requeued;
  }
}
