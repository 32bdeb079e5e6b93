import type { RunErrorRecord } from '../errors.ts';
import { getRun } from '../runs/repository.ts';
import type { Run } from '../runs/types.ts';
import type { Queryable } from '../store/sql.ts';

/**
 * The body of a completion webhook: LangGraph's shape (its API server sends
 * the run plus `run_started_at`, `run_ended_at`, `webhook_sent_at`, the final
 * state as `values` and, for a failed run, `error` as a message string), so a
 * receiver written for LangGraph Platform works unchanged. Hangar adds
 * `error_details`, the run's full error record (code, type, message).
 */
export type WebhookPayload = Omit<Run, 'tenant_id' | 'error'> & {
  run_started_at: string | null;
  run_ended_at: string | null;
  webhook_sent_at: string;
  values: Record<string, unknown>;
  error?: string;
  error_details?: RunErrorRecord;
};

/**
 * Reads what a delivery sends: the run as it ended and its final state (the
 * last checkpoint the run wrote, else the state it started from). The state
 * is the run's own, not the thread's current one: a later run on the thread
 * may already have changed it. Null when the run is gone (deleted).
 */
export async function loadWebhookRun(
  db: Queryable,
  tenantId: string,
  runId: string,
): Promise<{ run: Run; values: Record<string, unknown> } | null> {
  const run = await getRun(db, tenantId, runId);
  if (run === null) return null;
  const res = await db.query<{ values: Record<string, unknown> | null }>(
    `SELECT COALESCE(
       (SELECT s."values" FROM thread_states s
        WHERE s.thread_id = r.thread_id AND s.run_id = r.run_id ORDER BY s.created_at DESC LIMIT 1),
       r.base_values) AS "values"
     FROM runs r WHERE r.run_id = $1 AND r.tenant_id = $2`,
    [runId, tenantId],
  );
  return { run, values: res.rows[0]?.values ?? {} };
}

export function webhookPayload(run: Run, values: Record<string, unknown>, sentAt: Date): WebhookPayload {
  const { tenant_id: _tenant, error, ...rest } = run;
  return {
    ...rest,
    run_started_at: run.started_at,
    run_ended_at: run.finished_at,
    webhook_sent_at: sentAt.toISOString(),
    values,
    ...(error === null ? {} : { error: error.message, error_details: error }),
  };
}
