import { createHash } from 'node:crypto';
import { HangarError } from '../errors.ts';
import { canonicalJson, type Queryable, type SqlClient, sqlState } from '../store/sql.ts';
import { type CreateRunInput, createRunInTx, getRun } from './repository.ts';
import type { Run } from './types.ts';

/** Default retention of an `Idempotency-Key` (72 h). */
export const DEFAULT_IDEMPOTENCY_TTL_MS = 72 * 60 * 60 * 1000;

/** How long a repeated request waits for the original one's transaction before answering 409. */
export const IN_FLIGHT_WAIT_MS = 2_000;

/** Postgres's SQLSTATE when `lock_timeout` expires. */
const LOCK_NOT_AVAILABLE = '55P03';

/** 1–200 printable ASCII characters (space to `~`). */
const KEY_PATTERN = /^[\x20-\x7e]{1,200}$/;

export interface IdempotencyKey {
  key: string;
  /** sha256 of the request (see `fingerprint`). */
  fingerprint: string;
  ttlMs: number;
  /** How long to wait on a concurrent request holding the same key (default `IN_FLIGHT_WAIT_MS`). */
  waitMs?: number;
}

/**
 * The `Idempotency-Key` header, checked: undefined when absent, else 1–200
 * printable ASCII characters or `invalid_request` naming the header.
 */
export function parseIdempotencyKey(header: unknown): string | undefined {
  if (header === undefined) return undefined;
  if (typeof header !== 'string' || !KEY_PATTERN.test(header)) {
    throw new HangarError(
      'invalid_request',
      'invalid request: header.idempotency-key: must be 1–200 printable ASCII characters',
      {
        details: {
          issues: [{ path: 'header.idempotency-key', message: '1–200 printable ASCII characters' }],
        },
      },
    );
  }
  return header;
}

/** sha256 (hex) of the canonical JSON of a request: its route, thread and body. */
export function fingerprint(request: unknown): string {
  return createHash('sha256').update(canonicalJson(request)).digest('hex');
}

/**
 * Creates a run under an idempotency key, in one transaction: the key's row
 * and the run commit together or not at all. A repeat of the same request
 * answers the run the key created; the key with another request is
 * `idempotency_key_reused` (422).
 *
 * A repeat that arrives while the original's transaction is still open blocks
 * on the original's uncommitted key row; it waits up to `waitMs`
 * (`lock_timeout`), then answers `conflict` (409). That is the only way to see
 * a request "in flight": once committed, the key's run is always visible.
 * An expired key not yet swept counts as absent.
 *
 * @returns the run, and whether it was created by an earlier request.
 */
export async function createRunIdempotent(
  db: SqlClient,
  input: CreateRunInput & { runId: string },
  idem: IdempotencyKey,
): Promise<{ run: Run; replayed: boolean }> {
  let created: Run | null;
  try {
    created = await db.transaction(async (tx) => {
      await tx.query(`SELECT set_config('lock_timeout', $1, true)`, [
        `${idem.waitMs ?? IN_FLIGHT_WAIT_MS}ms`,
      ]);
      if (!(await claimKey(tx, input, idem))) return null;
      await tx.query(`SELECT set_config('lock_timeout', '0', true)`);
      return createRunInTx(tx, input);
    });
  } catch (err) {
    if (sqlState(err) !== LOCK_NOT_AVAILABLE) throw err;
    throw new HangarError('conflict', 'a request with this Idempotency-Key is still in flight; retry later', {
      details: { idempotency_key: idem.key },
      retryable: true,
    });
  }
  if (created !== null) return { run: created, replayed: false };

  const res = await db.query<{ fingerprint: string; run_id: string | null }>(
    'SELECT fingerprint, run_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2',
    [input.tenantId, idem.key],
  );
  const row = res.rows[0];
  if (row !== undefined && row.fingerprint !== idem.fingerprint) {
    throw new HangarError(
      'idempotency_key_reused',
      'this Idempotency-Key was already used with a different request',
      { details: { idempotency_key: idem.key } },
    );
  }
  const run = row?.run_id == null ? null : await getRun(db, input.tenantId, row.run_id);
  if (run === null) {
    // The key's run is gone (its thread was deleted) or the key expired between the two reads.
    throw new HangarError('conflict', 'the run created with this Idempotency-Key no longer exists', {
      details: { idempotency_key: idem.key, run_id: row?.run_id ?? null },
    });
  }
  return { run, replayed: true };
}

/** Inserts the key's row; false when a live row holds the key. An expired row is taken over. */
async function claimKey(tx: Queryable, input: CreateRunInput & { runId: string }, idem: IdempotencyKey) {
  const res = await tx.query(
    `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, run_id, expires_at)
     VALUES ($1, $2, $3, $4, now() + ($5::bigint * interval '1 millisecond'))
     ON CONFLICT (tenant_id, key) DO UPDATE
       SET fingerprint = EXCLUDED.fingerprint, run_id = EXCLUDED.run_id, response = NULL,
         created_at = now(), expires_at = EXCLUDED.expires_at
       WHERE idempotency_keys.expires_at <= now()
     RETURNING key`,
    [input.tenantId, idem.key, idem.fingerprint, input.runId, Math.round(idem.ttlMs)],
  );
  return res.rowCount > 0;
}

/**
 * Deletes up to `limit` expired keys (oldest first); returns how many. Cheap
 * and bounded: it walks the expiry index, and `SKIP LOCKED` lets several
 * gateways sweep at once without waiting on each other.
 */
export async function sweepExpiredKeys(db: Queryable, limit = 1000): Promise<number> {
  const res = await db.query(
    `DELETE FROM idempotency_keys WHERE (tenant_id, key) IN (
       SELECT tenant_id, key FROM idempotency_keys WHERE expires_at <= now()
       ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)`,
    [limit],
  );
  return res.rowCount;
}
