/**
 * Interrupts and their answers (human in the loop, issue 6).
 *
 * A run's `ctx.interrupt` inserts its interrupt row in the run's fenced ending
 * write (runs/checkpoint.ts). Everything here resolves one: an answer, an
 * expiry, all in ONE statement each — a compare-and-set on the row
 * (`pending` → `answered` | `expired`) whose other CTEs record the answer as
 * the interrupt step's result and make the run claimable again (`interrupted`
 * → `pending`, available now) once none of its interrupts is left pending.
 * Two answers racing: the row lock serializes them and the second finds the
 * row no longer `pending`, so it changes nothing. The caller wakes the
 * workers (`bus.notifyWork()`) after a resolution that resumed a run.
 */
import { HangarError } from '../errors.ts';
import { iso, json, type Queryable } from '../store/sql.ts';

export type InterruptStatus = 'pending' | 'answered' | 'expired' | 'cancelled';

/** An interrupt as the approvals API shows it. */
export interface Approval {
  interrupt_id: string;
  run_id: string;
  thread_id: string;
  agent: string;
  step_index: number;
  /** What the agent passed to `ctx.interrupt`. */
  payload: unknown;
  status: InterruptStatus;
  /** The value `ctx.interrupt` returned (null while pending; an expiry's default, if any). */
  answer: unknown;
  decision: string | null;
  comment: string | null;
  /** The principal that answered (`key:<prefix>`, `anonymous`), or `timeout` for an expiry. */
  answered_by: string | null;
  answered_at: string | null;
  expires_at: string | null;
  created_at: string;
}

type ApprovalRow = Omit<Approval, 'answered_at' | 'expires_at' | 'created_at'> & {
  answered_at: Date | null;
  expires_at: Date | null;
  created_at: Date;
};

const COLUMNS = `interrupt_id, run_id, thread_id, agent, step_index, payload, status, answer, decision, comment,
  answered_by, answered_at, expires_at, created_at`;

function toApproval(row: ApprovalRow): Approval {
  return {
    ...row,
    step_index: Number(row.step_index),
    answered_at: iso(row.answered_at),
    expires_at: iso(row.expires_at),
    created_at: iso(row.created_at) ?? '',
  };
}

/**
 * One statement around `target`, a data-modifying query that resolves
 * interrupts and returns, per resolved one, `interrupt_id, run_id, thread_id,
 * step_index, step_status, step_result`: the step's new status and result, and
 * the run resumed when it has no pending interrupt left. The NOT EXISTS sees
 * the statement's snapshot (the resolved rows still pending), hence the
 * exclusion of the ones just resolved.
 */
function resolveSql(target: string): string {
  return `
WITH resolved AS (${target}), step AS (
  UPDATE steps s SET status = r.step_status, result = r.step_result, finished_at = now()
  FROM resolved r WHERE s.run_id = r.run_id AND s.step_index = r.step_index AND s.status = 'interrupted'
  RETURNING s.run_id
), resumed AS (
  UPDATE runs u SET status = 'pending', available_at = now(), updated_at = now()
  WHERE u.run_id IN (SELECT run_id FROM resolved) AND u.status = 'interrupted'
    AND NOT EXISTS (SELECT 1 FROM interrupts o WHERE o.run_id = u.run_id AND o.status = 'pending'
      AND o.interrupt_id NOT IN (SELECT interrupt_id FROM resolved))
  RETURNING u.run_id, u.thread_id
), thread AS (
  UPDATE threads t SET status = 'busy', updated_at = now()
  FROM resumed r WHERE t.thread_id = r.thread_id AND t.active_run_id = r.run_id
  RETURNING t.thread_id
)
SELECT r.interrupt_id, r.run_id, r.thread_id,
  EXISTS (SELECT 1 FROM resumed x WHERE x.run_id = r.run_id) AS resumed
FROM resolved r`;
}

/** $1 interrupt, $2 tenant, $3 answer, $4 decision, $5 comment, $6 who. */
const ANSWER_SQL = resolveSql(`
  UPDATE interrupts SET status = 'answered', answer = $3::jsonb, decision = $4::text, comment = $5::text,
    answered_by = $6::text, answered_at = now()
  WHERE interrupt_id = $1 AND tenant_id = $2 AND status = 'pending'
  RETURNING interrupt_id, run_id, thread_id, step_index, 'completed'::text AS step_status,
    jsonb_build_object('v', $3::jsonb) AS step_result`);

/**
 * $1 batch size. An expired interrupt with a default (`on_timeout = { resume }`)
 * completes its step with it; without one its step fails with an `expired`
 * marker, which `ctx.interrupt` turns into `interrupt_expired` on resume.
 */
const EXPIRE_SQL = resolveSql(`
  UPDATE interrupts i SET status = 'expired', answer = i.on_timeout->'resume', answered_by = 'timeout',
    answered_at = now()
  WHERE i.interrupt_id IN (
    SELECT interrupt_id FROM interrupts WHERE status = 'pending' AND expires_at <= now()
    ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) AND i.status = 'pending'
  RETURNING i.interrupt_id, i.run_id, i.thread_id, i.step_index,
    CASE WHEN i.on_timeout IS NULL THEN 'failed' ELSE 'completed' END AS step_status,
    CASE WHEN i.on_timeout IS NULL
      THEN jsonb_build_object('expired', jsonb_build_object('interrupt_id', i.interrupt_id, 'expires_at', i.expires_at))
      ELSE jsonb_build_object('v', i.on_timeout->'resume') END AS step_result`);

type ResolvedRow = { interrupt_id: string; run_id: string; thread_id: string; resumed: boolean };

export interface Answer {
  /** What `ctx.interrupt` returns. */
  value: unknown;
  decision?: string | null;
  comment?: string | null;
  /** The principal answering (recorded with the answer). */
  by: string;
}

export interface Answered {
  approval: Approval;
  /** The run became claimable (no other interrupt of it is pending): wake the workers. */
  resumed: boolean;
}

/**
 * Answers a pending interrupt of the tenant, exactly once. A second answer
 * (or one to an expired or cancelled interrupt) is `conflict` with the
 * interrupt as it is (the first answer) in `details`; an unknown id (or
 * another tenant's) is `not_found`.
 */
export async function answerInterrupt(
  db: Queryable,
  tenantId: string,
  interruptId: string,
  answer: Answer,
): Promise<Answered> {
  const res = await db.query<ResolvedRow>(ANSWER_SQL, [
    interruptId,
    tenantId,
    json(answer.value ?? null),
    answer.decision ?? null,
    answer.comment ?? null,
    answer.by,
  ]);
  const resolved = res.rows[0];
  const approval = await getApproval(db, tenantId, interruptId);
  if (approval === null) throw interruptNotFound(interruptId);
  if (resolved === undefined) throw alreadyResolved(approval);
  return { approval, resumed: resolved.resumed };
}

function interruptNotFound(interruptId: string): HangarError {
  return new HangarError('not_found', `interrupt ${interruptId} not found`, {
    details: { interrupt_id: interruptId },
  });
}

/** The 409 of an answer that came too late: says what happened to the interrupt, and the first answer. */
export function alreadyResolved(approval: Approval): HangarError {
  const why =
    approval.status === 'answered'
      ? `was already answered by ${approval.answered_by} at ${approval.answered_at}`
      : approval.status === 'expired'
        ? `expired at ${approval.expires_at}`
        : approval.status === 'cancelled'
          ? 'was cancelled with its run'
          : 'is not pending';
  return new HangarError('conflict', `interrupt ${approval.interrupt_id} ${why}`, {
    details: {
      interrupt_id: approval.interrupt_id,
      status: approval.status,
      answer: approval.answer,
      decision: approval.decision,
      comment: approval.comment,
      answered_by: approval.answered_by,
      answered_at: approval.answered_at,
    },
  });
}

/**
 * Expires due pending interrupts (at most `limit`), each exactly once: run by
 * every worker's sweeper, `SKIP LOCKED` keeps them apart. Returns the runs it
 * made claimable.
 */
export async function expireInterrupts(db: Queryable, limit = 100): Promise<string[]> {
  const res = await db.query<ResolvedRow>(EXPIRE_SQL, [limit]);
  return res.rows.filter((r) => r.resumed).map((r) => r.run_id);
}

export async function getApproval(
  db: Queryable,
  tenantId: string,
  interruptId: string,
): Promise<Approval | null> {
  const res = await db.query<ApprovalRow>(
    `SELECT ${COLUMNS} FROM interrupts WHERE interrupt_id = $1 AND tenant_id = $2`,
    [interruptId, tenantId],
  );
  const row = res.rows[0];
  return row === undefined ? null : toApproval(row);
}

export interface ApprovalQuery {
  status?: InterruptStatus | 'all';
  agent?: string;
  threadId?: string;
  runId?: string;
  limit: number;
  offset: number;
}

/**
 * The tenant's interrupts, newest first (oldest first for `pending`: the queue
 * a human works through); interrupts raised together in call order.
 */
export async function listApprovals(
  db: Queryable,
  tenantId: string,
  query: ApprovalQuery,
): Promise<Approval[]> {
  const status = query.status ?? 'pending';
  const res = await db.query<ApprovalRow>(
    `SELECT ${COLUMNS} FROM interrupts
     WHERE tenant_id = $1 AND ($2::text = 'all' OR status = $2::text) AND ($3::text IS NULL OR agent = $3::text)
       AND ($4::uuid IS NULL OR thread_id = $4::uuid) AND ($5::uuid IS NULL OR run_id = $5::uuid)
     ORDER BY CASE WHEN $2::text = 'pending' THEN created_at END, created_at DESC, run_id, step_index
     LIMIT $6 OFFSET $7`,
    [
      tenantId,
      status,
      query.agent ?? null,
      query.threadId ?? null,
      query.runId ?? null,
      query.limit,
      query.offset,
    ],
  );
  return res.rows.map(toApproval);
}

/** The thread's pending interrupts, oldest first, in call order (what `command: { resume }` answers). */
export async function pendingInterrupts(
  db: Queryable,
  tenantId: string,
  threadId: string,
): Promise<Approval[]> {
  const res = await db.query<ApprovalRow>(
    `SELECT ${COLUMNS} FROM interrupts WHERE thread_id = $1 AND tenant_id = $2 AND status = 'pending'
     ORDER BY created_at, run_id, step_index`,
    [threadId, tenantId],
  );
  return res.rows.map(toApproval);
}

/** Interrupts of the thread among `ids` (any status), in call order: what a keyed resume names. */
export async function threadApprovals(
  db: Queryable,
  tenantId: string,
  threadId: string,
  ids: readonly string[],
): Promise<Approval[]> {
  const res = await db.query<ApprovalRow>(
    `SELECT ${COLUMNS} FROM interrupts
     WHERE thread_id = $1 AND tenant_id = $2 AND interrupt_id::text = ANY($3::text[])
     ORDER BY created_at, run_id, step_index`,
    [threadId, tenantId, ids],
  );
  return res.rows.map(toApproval);
}

/**
 * The run holding the thread and its status (null: none holds it), or
 * undefined when the tenant has no such thread: what a resume with nothing
 * pending is told.
 */
export async function threadHolder(
  db: Queryable,
  tenantId: string,
  threadId: string,
): Promise<{ run_id: string; status: string } | null | undefined> {
  const res = await db.query<{ run_id: string | null; status: string | null }>(
    `SELECT r.run_id, r.status FROM threads t LEFT JOIN runs r ON r.run_id = t.active_run_id
     WHERE t.thread_id = $1 AND t.tenant_id = $2`,
    [threadId, tenantId],
  );
  const row = res.rows[0];
  if (row === undefined) return undefined;
  return row.run_id === null || row.status === null ? null : { run_id: row.run_id, status: row.status };
}

/**
 * Pending interrupts as LangGraph shows them on a thread (`Thread.interrupts`:
 * by task, here the run): `{ [run_id]: [{ id, value }] }`, in call order. A
 * SQL expression for a query on `threads`.
 */
export const THREAD_INTERRUPTS_SQL = `(SELECT coalesce(jsonb_object_agg(x.run_id, x.list), '{}'::jsonb) FROM (
    SELECT i.run_id, jsonb_agg(jsonb_build_object('id', i.interrupt_id, 'value', i.payload)
      ORDER BY i.created_at, i.step_index) AS list
    FROM interrupts i WHERE i.thread_id = threads.thread_id AND i.status = 'pending' GROUP BY i.run_id) x)`;
