import { randomUUID } from 'node:crypto';
import { TERMINAL_STATUSES } from '../runs/status.ts';
import { iso, json, type Queryable } from '../store/sql.ts';

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

/** A delivery as operators see it (the `webhook_deliveries` row). */
export interface WebhookDelivery {
  delivery_id: string;
  tenant_id: string;
  run_id: string;
  url: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: string;
  last_status_code: number | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
}

type DeliveryRow = Omit<WebhookDelivery, 'next_attempt_at' | 'created_at' | 'updated_at' | 'finished_at'> & {
  next_attempt_at: Date;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
};

function toDelivery(row: DeliveryRow): WebhookDelivery {
  return {
    ...row,
    attempts: Number(row.attempts),
    last_status_code: row.last_status_code === null ? null : Number(row.last_status_code),
    next_attempt_at: iso(row.next_attempt_at) ?? '',
    created_at: iso(row.created_at) ?? '',
    updated_at: iso(row.updated_at) ?? '',
    finished_at: iso(row.finished_at),
  };
}

/**
 * Records that the run must be POSTed to `url` when it ends. Called inside the
 * run's creation transaction: the run and its delivery commit together, so a
 * crash can never leave a run whose webhook was forgotten. Returns the
 * delivery id (the `X-Hangar-Delivery` header of every attempt).
 */
export async function enqueueWebhook(
  tx: Queryable,
  input: { tenantId: string; runId: string; url: string },
): Promise<string> {
  const deliveryId = randomUUID();
  await tx.query(
    'INSERT INTO webhook_deliveries (delivery_id, tenant_id, run_id, url) VALUES ($1, $2, $3, $4)',
    [deliveryId, input.tenantId, input.runId, input.url],
  );
  return deliveryId;
}

/** A delivery a dispatcher holds for one attempt. `attempt` fences every write about it. */
export interface DeliveryClaim {
  deliveryId: string;
  tenantId: string;
  runId: string;
  url: string;
  /** 1 for the first attempt. */
  attempt: number;
}

/**
 * Claims up to `limit` deliveries that are due and whose run has ended, in
 * one statement (`SKIP LOCKED`: dispatchers in many processes never wait on
 * each other). The claim counts the attempt and moves `next_attempt_at` past
 * `leaseMs`: if this process dies during the POST, the delivery becomes due
 * again then (at-least-once), under the same delivery id.
 */
export async function claimDeliveries(
  db: Queryable,
  options: { limit: number; leaseMs: number; maxAttempts: number },
): Promise<DeliveryClaim[]> {
  const res = await db.query<{
    delivery_id: string;
    tenant_id: string;
    run_id: string;
    url: string;
    attempts: number;
  }>(
    `WITH due AS (
       SELECT d.delivery_id FROM webhook_deliveries d
       JOIN runs r ON r.run_id = d.run_id AND r.tenant_id = d.tenant_id
       WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND d.attempts < $3
         AND r.status IN (SELECT jsonb_array_elements_text($4::jsonb))
       ORDER BY d.next_attempt_at
       LIMIT $1
       FOR UPDATE OF d SKIP LOCKED
     )
     UPDATE webhook_deliveries d SET attempts = d.attempts + 1,
       next_attempt_at = now() + ($2::bigint * interval '1 millisecond'), updated_at = now()
     FROM due WHERE d.delivery_id = due.delivery_id
     RETURNING d.delivery_id, d.tenant_id, d.run_id, d.url, d.attempts`,
    [options.limit, options.leaseMs, options.maxAttempts, json([...TERMINAL_STATUSES])],
  );
  return res.rows.map((row) => ({
    deliveryId: row.delivery_id,
    tenantId: row.tenant_id,
    runId: row.run_id,
    url: row.url,
    attempt: Number(row.attempts),
  }));
}

export type DeliveryOutcome =
  | { kind: 'delivered'; statusCode: number }
  | { kind: 'retry'; statusCode: number | null; error: string; delayMs: number }
  | { kind: 'failed'; statusCode: number | null; error: string }
  /** The dispatcher stopped mid-attempt: the attempt is given back and the delivery is due at once. */
  | { kind: 'released' };

/**
 * Records the outcome of a claimed attempt. Fenced on the attempt number: a
 * dispatcher whose claim lapsed and was taken over writes nothing (false).
 */
export async function recordOutcome(
  db: Queryable,
  claim: DeliveryClaim,
  outcome: DeliveryOutcome,
): Promise<boolean> {
  const fence = 'WHERE delivery_id = $1 AND tenant_id = $2 AND attempts = $3 AND status = $4';
  const key = [claim.deliveryId, claim.tenantId, claim.attempt, 'pending'];
  let res: { rowCount: number };
  switch (outcome.kind) {
    case 'delivered':
      res = await db.query(
        `UPDATE webhook_deliveries SET status = 'delivered', last_status_code = $5, last_error = NULL,
           finished_at = now(), updated_at = now() ${fence}`,
        [...key, outcome.statusCode],
      );
      break;
    case 'retry':
      res = await db.query(
        `UPDATE webhook_deliveries SET last_status_code = $5, last_error = $6,
           next_attempt_at = now() + ($7::bigint * interval '1 millisecond'), updated_at = now() ${fence}`,
        [...key, outcome.statusCode, outcome.error, Math.round(outcome.delayMs)],
      );
      break;
    case 'failed':
      res = await db.query(
        `UPDATE webhook_deliveries SET status = 'failed', last_status_code = $5, last_error = $6,
           finished_at = now(), updated_at = now() ${fence}`,
        [...key, outcome.statusCode, outcome.error],
      );
      break;
    case 'released':
      res = await db.query(
        `UPDATE webhook_deliveries SET attempts = attempts - 1, next_attempt_at = now(), updated_at = now() ${fence}`,
        key,
      );
      break;
  }
  return res.rowCount > 0;
}

/**
 * Fails deliveries whose last allowed attempt was claimed but never recorded
 * (the dispatcher died mid-POST) once that claim has lapsed: no attempt is
 * left, and without this they would stay `pending` forever. Returns them.
 */
export async function failAbandoned(
  db: Queryable,
  maxAttempts: number,
  limit = 100,
): Promise<Array<{ delivery_id: string; run_id: string; tenant_id: string }>> {
  const res = await db.query<{ delivery_id: string; run_id: string; tenant_id: string }>(
    `UPDATE webhook_deliveries SET status = 'failed',
       last_error = 'attempt ' || attempts || ' was interrupted (its dispatcher stopped); no attempts left',
       finished_at = now(), updated_at = now()
     WHERE delivery_id IN (
       SELECT delivery_id FROM webhook_deliveries
       WHERE status = 'pending' AND attempts >= $1 AND next_attempt_at <= now()
       ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
     RETURNING delivery_id, run_id, tenant_id`,
    [maxAttempts, limit],
  );
  return res.rows;
}

const DELIVERY_COLUMNS = `delivery_id, tenant_id, run_id, url, status, attempts, next_attempt_at, last_status_code,
  last_error, created_at, updated_at, finished_at`;

/** The webhook delivery of a run, if it was created with one. */
export async function getRunDelivery(
  db: Queryable,
  tenantId: string,
  runId: string,
): Promise<WebhookDelivery | null> {
  const res = await db.query<DeliveryRow>(
    `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE run_id = $1 AND tenant_id = $2`,
    [runId, tenantId],
  );
  const row = res.rows[0];
  return row === undefined ? null : toDelivery(row);
}

/** A tenant's deliveries, newest first, optionally of one status (`failed`: what needs a look). */
export async function listDeliveries(
  db: Queryable,
  tenantId: string,
  options: { status?: DeliveryStatus; limit?: number } = {},
): Promise<WebhookDelivery[]> {
  const res = await db.query<DeliveryRow>(
    `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries
     WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2::text)
     ORDER BY created_at DESC LIMIT $3`,
    [tenantId, options.status ?? null, options.limit ?? 100],
  );
  return res.rows.map(toDelivery);
}
