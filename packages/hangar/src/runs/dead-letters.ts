/**
 * Dead letters: runs that ended `dead` — a step exhausted its retries
 * (`retries_exhausted`, worker/), or the run's worker died in every attempt up
 * to the crash-loop cap (`attempts_exhausted`, the sweeper in
 * runs/repository.ts). Nothing retries them on its own: someone looks
 * (inspect), fixes what killed them, and redrives them — or discards them.
 *
 * A redrive sends the run back to the queue as a resume, not a restart: its
 * completed steps keep their checkpoints and return their recorded results,
 * the step that failed runs again with a fresh retry budget (its failed
 * record is dropped), the run's attempts start again from zero, and what the
 * dead attempts streamed past their last checkpoint is fenced off with the
 * `output.discarded` marker (docs/streaming.md). It can
 * patch the input and merge a patch into the state the run resumes from. A
 * discard acknowledges the run: it leaves the list, is kept for audit, and
 * can no longer be redriven. Both are compare-and-set on the run row, so of
 * two concurrent redrives exactly one wins.
 */
import { randomUUID } from 'node:crypto';
import { HangarError, type RunErrorRecord } from '../errors.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import { appendEvents } from '../events/log.ts';
import { iso, json, type Queryable, type SqlClient } from '../store/sql.ts';
import { mergeThreadValues } from '../threads/repository.ts';
import { readDiscardBoundary } from './checkpoint.ts';
import { RUN_COLUMNS, type RunRow, toRun } from './repository.ts';
import type { RunStatus } from './status.ts';
import type { Run } from './types.ts';

/** A dead run as the dead-letter API shows it: the run, and whether it was discarded (who, when). */
export interface DeadLetter extends Run {
  discarded_at: string | null;
  discarded_by: string | null;
}

/** One step of a dead letter's history, with its attempts and its last error. */
export interface DeadLetterStep {
  index: number;
  name: string;
  kind: string;
  status: string;
  attempt: number;
  error: unknown;
  started_at: string | null;
  finished_at: string | null;
}

/** A redrive as recorded: who, when, what was patched, and what the run had died of. */
export interface Redrive {
  redrive_id: string;
  run_id: string;
  redriven_by: string;
  redriven_at: string;
  /** Whether the redrive replaced the input, and with what (null when it was kept). */
  input_changed: boolean;
  input: unknown;
  /** The patch merged into the state, or null. */
  state: Record<string, unknown> | null;
  previous_error: RunErrorRecord | null;
  previous_attempts: number;
  /** Queued behind another run of its thread instead of going straight to the queue. */
  queued: boolean;
}

/** `GET /dead-letters/{run_id}`: everything needed to decide between a redrive and a discard. */
export interface DeadLetterDetail {
  run: DeadLetter;
  error: RunErrorRecord | null;
  attempts: number;
  steps: DeadLetterStep[];
  /** The last state checkpoint the run wrote (what a redrive resumes from), or null. */
  checkpoint: { checkpoint_id: string; values: unknown; created_at: string | null } | null;
  /** Earlier redrives of this run, oldest first. */
  redrives: Redrive[];
}

export interface DeadLetterQuery {
  agent?: string;
  threadId?: string;
  /** Also list discarded ones (default: only those still waiting for someone). */
  includeDiscarded?: boolean;
  limit: number;
  offset: number;
}

type DeadLetterRow = RunRow & { discarded_at: Date | null; discarded_by: string | null };

const COLUMNS = `${RUN_COLUMNS}, discarded_at, discarded_by`;

function toDeadLetter(row: DeadLetterRow): DeadLetter {
  return { ...toRun(row), discarded_at: iso(row.discarded_at), discarded_by: row.discarded_by };
}

/** The tenant's dead letters, most recently dead first. */
export async function listDeadLetters(
  db: Queryable,
  tenantId: string,
  query: DeadLetterQuery,
): Promise<DeadLetter[]> {
  const res = await db.query<DeadLetterRow>(
    `SELECT ${COLUMNS} FROM runs
     WHERE tenant_id = $1 AND status = 'dead' AND ($2::text IS NULL OR agent = $2::text)
       AND ($3::uuid IS NULL OR thread_id = $3::uuid) AND ($4::boolean OR discarded_at IS NULL)
     ORDER BY finished_at DESC, run_id LIMIT $5 OFFSET $6`,
    [
      tenantId,
      query.agent ?? null,
      query.threadId ?? null,
      query.includeDiscarded ?? false,
      query.limit,
      query.offset,
    ],
  );
  return res.rows.map(toDeadLetter);
}

/**
 * A dead letter with its step history, last checkpoint and redrives. Also
 * answers a run that was redriven (whatever its status now), so the audit
 * trail stays readable; any other run of the tenant is `not_found`.
 */
export async function getDeadLetter(
  db: Queryable,
  tenantId: string,
  runId: string,
): Promise<DeadLetterDetail> {
  const found = await db.query<DeadLetterRow>(
    `SELECT ${COLUMNS} FROM runs WHERE run_id = $1 AND tenant_id = $2`,
    [runId, tenantId],
  );
  const row = found.rows[0];
  if (row === undefined) throw notFound(runId);
  const redrives = await db.query<RedriveRow>(
    `SELECT ${REDRIVE_COLUMNS} FROM run_redrives WHERE run_id = $1 AND tenant_id = $2 ORDER BY redriven_at, redrive_id`,
    [runId, tenantId],
  );
  if (row.status !== 'dead' && redrives.rowCount === 0) {
    throw new HangarError('not_found', `run ${runId} is not a dead letter (status ${row.status})`, {
      details: { run_id: runId, status: row.status },
    });
  }
  const steps = await db.query<StepRow>(
    `SELECT step_index, name, kind, status, attempt, error, started_at, finished_at FROM steps
     WHERE run_id = $1 ORDER BY step_index`,
    [runId],
  );
  const checkpoint = await db.query<{ checkpoint_id: string; values: unknown; created_at: Date }>(
    `SELECT checkpoint_id, "values", created_at FROM thread_states
     WHERE thread_id = $1 AND run_id = $2 ORDER BY created_at DESC LIMIT 1`,
    [row.thread_id, runId],
  );
  const last = checkpoint.rows[0];
  return {
    run: toDeadLetter(row),
    error: row.error,
    attempts: Number(row.attempt),
    steps: steps.rows.map((s) => ({
      index: Number(s.step_index),
      name: s.name,
      kind: s.kind,
      status: s.status,
      attempt: Number(s.attempt),
      error: s.error,
      started_at: iso(s.started_at),
      finished_at: iso(s.finished_at),
    })),
    checkpoint:
      last === undefined
        ? null
        : { checkpoint_id: last.checkpoint_id, values: last.values, created_at: iso(last.created_at) },
    redrives: redrives.rows.map(toRedrive),
  };
}

export interface RedriveRequest {
  /** A new input (the caller validated it against the agent's schema); absent: the run keeps its input. */
  input?: unknown;
  /** Shallow-merged into the state the run resumes from (and into the thread's values if it is free). */
  state?: Record<string, unknown>;
  /** Who asked (an API key's principal), recorded with the redrive. */
  by: string;
}

/**
 * Sends a dead run back to the queue (see the module comment), answering the
 * run, the redrive record and the events it logged (to publish after the
 * commit). On a thread
 * busy with another run the redriven run queues behind it, as a new run on a
 * busy thread does, and the ending of that run releases it. The thread row
 * is locked first, as a run create locks it, so a concurrent create and a
 * redrive see each other. `not_found`, or `conflict` naming the run's status
 * when it is not a dead letter (any more), or was discarded.
 */
export async function redriveRun(
  db: SqlClient,
  tenantId: string,
  runId: string,
  request: RedriveRequest,
): Promise<{ run: Run; redrive: Redrive; events: EventEnvelope[] }> {
  return db.transaction(async (tx) => {
    const found = await tx.query<{ thread_id: string }>(
      'SELECT thread_id FROM runs WHERE run_id = $1 AND tenant_id = $2',
      [runId, tenantId],
    );
    const threadId = found.rows[0]?.thread_id;
    if (threadId === undefined) throw notFound(runId);
    await tx.query('SELECT 1 FROM threads WHERE thread_id = $1 FOR UPDATE', [threadId]);
    const busy = await tx.query(
      `SELECT 1 FROM runs WHERE thread_id = $1 AND run_id <> $2
         AND status IN ('pending', 'running', 'waiting', 'interrupted') LIMIT 1`,
      [threadId, runId],
    );
    const queued = busy.rowCount > 0;
    const state = request.state === undefined ? null : json(request.state);
    // The compare-and-set: only a dead, undiscarded run goes back. Everything the attempts left
    // (error, lease, cancel request, finish time) is cleared; started_at too, so a run-time
    // budget counts from the redrive.
    const res = await tx.query<RunRow & { previous_error: RunErrorRecord | null; previous_attempts: number }>(
      `WITH previous AS (
         SELECT run_id, error AS previous_error, attempt AS previous_attempts FROM runs
         WHERE run_id = $1 AND tenant_id = $2 AND status = 'dead' AND discarded_at IS NULL FOR UPDATE
       )
       UPDATE runs r SET status = 'pending', attempt = 0, error = NULL, output = NULL,
         input = CASE WHEN $3::boolean THEN $4::jsonb ELSE r.input END,
         base_values = CASE WHEN $5::jsonb IS NULL THEN r.base_values ELSE COALESCE(r.base_values, '{}'::jsonb) || $5::jsonb END,
         available_at = CASE WHEN $6::boolean THEN 'infinity'::timestamptz ELSE now() END,
         lease_owner = NULL, lease_lock = NULL, lease_expires_at = NULL, cancel_requested_at = NULL,
         cancel_action = NULL, cancel_reason = NULL, cancelled_by = NULL, started_at = NULL, finished_at = NULL,
         updated_at = now()
       FROM previous p WHERE r.run_id = p.run_id
       RETURNING ${prefixed('r')}, p.previous_error, p.previous_attempts`,
      [runId, tenantId, request.input !== undefined, json(request.input ?? null), state, queued],
    );
    const row = res.rows[0];
    if (row === undefined) throw await notRedrivable(tx, tenantId, runId, 'redriven');
    // What the dead attempts streamed past their last checkpoint (a failed step's tokens) will be
    // redone: the marker clients apply (docs/streaming.md) fences it off now, so it is there
    // whatever the resumed attempt finds, and that attempt's own check then finds nothing left.
    const boundary = await readDiscardBoundary(tx, runId);
    const events = boundary.discard
      ? await appendEvents(tx, { tenantId, threadId, runId, attempt: 1 }, [
          {
            channel: 'lifecycle',
            data: {
              event: 'output.discarded',
              run_id: runId,
              after_seq: boundary.afterSeq,
              reason: 'resume',
              attempt: 1,
            },
          },
        ])
      : [];
    // The failed step runs again from a fresh retry budget; completed steps keep their checkpoints.
    await tx.query(`DELETE FROM steps WHERE run_id = $1 AND status = 'failed'`, [runId]);
    if (state !== null && !queued) {
      // The thread is free: its values show the patch now, as a state update would (a busy
      // thread gets it when the redriven run writes its first checkpoint).
      await mergeThreadValues(tx, threadId, request.state ?? {}, { source: 'update', redrive_of: runId });
    }
    // The run's completion webhook goes out again for the outcome of the redrive.
    await tx.query(
      `UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(),
         last_status_code = NULL, last_error = NULL, finished_at = NULL, updated_at = now()
       WHERE run_id = $1 AND status <> 'pending'`,
      [runId],
    );
    const recorded = await tx.query<RedriveRow>(
      `INSERT INTO run_redrives (redrive_id, tenant_id, run_id, redriven_by, input, state, previous_error,
         previous_attempts, queued)
       VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9)
       RETURNING ${REDRIVE_COLUMNS}`,
      [
        randomUUID(),
        tenantId,
        runId,
        request.by,
        request.input === undefined ? null : json({ v: request.input }),
        state,
        json(row.previous_error),
        Number(row.previous_attempts),
        queued,
      ],
    );
    const redrive = recorded.rows[0];
    if (redrive === undefined) throw new Error('INSERT … RETURNING returned no row');
    return { run: toRun(row), redrive: toRedrive(redrive), events };
  });
}

/**
 * Acknowledges a dead letter: it leaves the list and can't be redriven; the
 * run stays, with who discarded it and when. `conflict` when it is not dead
 * or was discarded already.
 */
export async function discardRun(
  db: Queryable,
  tenantId: string,
  runId: string,
  by: string,
): Promise<DeadLetter> {
  const res = await db.query<DeadLetterRow>(
    `UPDATE runs SET discarded_at = now(), discarded_by = $3, updated_at = now()
     WHERE run_id = $1 AND tenant_id = $2 AND status = 'dead' AND discarded_at IS NULL
     RETURNING ${COLUMNS}`,
    [runId, tenantId, by],
  );
  const row = res.rows[0];
  if (row === undefined) throw await notRedrivable(db, tenantId, runId, 'discarded');
  return toDeadLetter(row);
}

/** Why a redrive or discard found nothing to change: no such run, not dead (naming the status), or discarded. */
async function notRedrivable(
  db: Queryable,
  tenantId: string,
  runId: string,
  verb: 'redriven' | 'discarded',
): Promise<HangarError> {
  const res = await db.query<{ status: RunStatus; discarded_at: Date | null; discarded_by: string | null }>(
    'SELECT status, discarded_at, discarded_by FROM runs WHERE run_id = $1 AND tenant_id = $2',
    [runId, tenantId],
  );
  const row = res.rows[0];
  if (row === undefined) return notFound(runId);
  if (row.status === 'dead') {
    return new HangarError(
      'conflict',
      `run ${runId} was discarded by ${row.discarded_by} at ${iso(row.discarded_at)}; it can't be ${verb}`,
      { details: { run_id: runId, status: row.status, discarded_at: iso(row.discarded_at) } },
    );
  }
  return new HangarError(
    'conflict',
    `run ${runId} is ${row.status}, not dead: only a dead letter can be ${verb}`,
    { details: { run_id: runId, status: row.status } },
  );
}

function notFound(runId: string): HangarError {
  return new HangarError('not_found', `run ${runId} not found`, { details: { run_id: runId } });
}

/** RUN_COLUMNS qualified by a table alias (an UPDATE … FROM returns both tables' columns). */
function prefixed(alias: string): string {
  return RUN_COLUMNS.split(',')
    .map((c) => `${alias}.${c.trim()}`)
    .join(', ');
}

type StepRow = {
  step_index: number;
  name: string;
  kind: string;
  status: string;
  attempt: number;
  error: unknown;
  started_at: Date | null;
  finished_at: Date | null;
};

type RedriveRow = {
  redrive_id: string;
  run_id: string;
  redriven_by: string;
  redriven_at: Date;
  input: { v: unknown } | null;
  state: Record<string, unknown> | null;
  previous_error: RunErrorRecord | null;
  previous_attempts: number;
  queued: boolean;
};

const REDRIVE_COLUMNS = `redrive_id, run_id, redriven_by, redriven_at, input, state, previous_error,
  previous_attempts, queued`;

function toRedrive(row: RedriveRow): Redrive {
  return {
    redrive_id: row.redrive_id,
    run_id: row.run_id,
    redriven_by: row.redriven_by,
    redriven_at: iso(row.redriven_at) ?? '',
    // Stored wrapped, so a new input of `null` is told apart from "kept".
    input_changed: row.input !== null,
    input: row.input === null ? null : row.input.v,
    state: row.state,
    previous_error: row.previous_error,
    previous_attempts: Number(row.previous_attempts),
    queued: row.queued,
  };
}
