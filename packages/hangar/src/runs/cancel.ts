import type { RunErrorRecord } from '../errors.ts';
import type { EventEnvelope, LifecycleData } from '../events/envelope.ts';
import type { Queryable } from '../store/sql.ts';
import { cancelUnheldRun } from './checkpoint.ts';
import { isTerminal, type RunStatus } from './status.ts';

export type CancelAction = 'interrupt' | 'rollback';
/** Why a run was cancelled: a cancel request, another run's multitask strategy, or its streaming client left. */
export type CancelReason = 'api' | 'multitask' | 'client_disconnected';

export interface CancelRequest {
  /** `interrupt` keeps the thread state the run reached; `rollback` restores the state it started from and deletes the run. */
  action: CancelAction;
  reason: CancelReason;
  /** Who asked: an API key id, `run:<id>` for a multitask strategy, … (recorded on the run). */
  by: string;
}

/**
 * How a cancel request landed. `cancelled`: the run was not held by a live
 * worker and is cancelled now. `requested`: a worker holds it and will end it
 * (it hears of it through the bus at once, or its next heartbeat).
 * `finished`: it had already ended. `not_found`: no such run in the tenant.
 */
export type CancelOutcome = 'cancelled' | 'requested' | 'finished' | 'not_found';

export interface CancelResult {
  outcome: CancelOutcome;
  threadId?: string;
  /** Events logged by an immediate cancellation, to publish after the commit. */
  events: EventEnvelope[];
}

/** The `error` a cancelled run carries: what happened, why and who asked. */
export function cancelledError(request: CancelRequest): RunErrorRecord {
  return {
    code: 'cancelled',
    type: 'Cancelled',
    message: `run cancelled (${request.reason === 'api' ? 'cancel request' : request.reason}, action ${request.action})`,
    details: { action: request.action, reason: request.reason, by: request.by },
  };
}

/** The run's terminal event for a cancellation. */
export function cancelledEvent(error: RunErrorRecord): LifecycleData {
  return { event: 'run.completed', status: 'cancelled', terminal: true, error };
}

/**
 * Cancels one run, inside the caller's transaction or as its own statements.
 * A run no live worker holds is cancelled in one statement (terminal event,
 * thread freed or rolled back, next queued run released); a run a live
 * worker holds gets `cancel_requested_at` and the worker ends it — the
 * caller must then `bus.notifyCancel(runId)` after its commit. A state
 * change between the two (a worker took or released the run) is retried.
 */
export async function cancelRun(
  db: Queryable,
  tenantId: string,
  runId: string,
  request: CancelRequest,
): Promise<CancelResult> {
  const error = cancelledError(request);
  for (let tries = 0; tries < 5; tries++) {
    const found = await db.query<{ thread_id: string; status: RunStatus }>(
      'SELECT thread_id, status FROM runs WHERE run_id = $1 AND tenant_id = $2',
      [runId, tenantId],
    );
    const run = found.rows[0];
    if (run === undefined) return { outcome: 'not_found', events: [] };
    const base = { threadId: run.thread_id, events: [] };
    if (isTerminal(run.status)) {
      return { ...base, outcome: 'finished' };
    }
    const events = await cancelUnheldRun(
      db,
      { tenantId, runId, threadId: run.thread_id },
      {
        action: request.action,
        error,
        by: request.by,
        events: [{ channel: 'lifecycle', data: cancelledEvent(error) }],
      },
    );
    if (events !== null) {
      if (request.action === 'rollback') await deleteRolledBack(db, runId);
      return { ...base, outcome: 'cancelled', events };
    }
    const requested = await db.query(
      `UPDATE runs SET cancel_requested_at = COALESCE(cancel_requested_at, now()), cancel_action = $3,
         cancel_reason = $4, cancelled_by = $5, updated_at = now()
       WHERE run_id = $1 AND tenant_id = $2 AND status = 'running' AND lease_expires_at >= now()`,
      [runId, tenantId, request.action, request.reason, request.by],
    );
    if (requested.rowCount > 0) return { ...base, outcome: 'requested' };
  }
  // Five state changes in a row between two statements: report it as requested; the caller's wait sees the end.
  return { outcome: 'requested', events: [] };
}

/** A rolled-back run leaves nothing behind but its logged events (the log is append-only). */
export async function deleteRolledBack(db: Queryable, runId: string): Promise<void> {
  await db.query(
    `DELETE FROM runs WHERE run_id = $1 AND status = 'cancelled' AND cancel_action = 'rollback'`,
    [runId],
  );
}

/** What a worker learns from the run row about a cancel request. */
export interface CancelRequestRow {
  cancel_action: CancelAction | null;
  cancel_reason: string | null;
  cancelled_by: string | null;
}

/** The cancel request recorded on a run, as the worker ends it. */
export function requestFromRow(row: CancelRequestRow): CancelRequest {
  const reason = row.cancel_reason;
  return {
    action: row.cancel_action ?? 'interrupt',
    reason: reason === 'multitask' || reason === 'client_disconnected' ? reason : 'api',
    by: row.cancelled_by ?? 'unknown',
  };
}
