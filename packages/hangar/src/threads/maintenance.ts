import { HangarError, isHangarError } from '../errors.ts';
import { json, type Queryable, type SqlClient } from '../store/sql.ts';
import { deleteThread, type ThreadStatus } from './repository.ts';

export interface ThreadCountFilter {
  metadata?: Record<string, unknown>;
  values?: Record<string, unknown>;
  status?: ThreadStatus;
}

/** How many of the tenant's threads match (`metadata` and `values` by JSON containment, as search does). */
export async function countThreads(
  db: Queryable,
  tenantId: string,
  filter: ThreadCountFilter,
): Promise<number> {
  const res = await db.query<{ n: number | string }>(
    `SELECT count(*) AS n FROM threads
     WHERE tenant_id = $1 AND ($2::jsonb IS NULL OR metadata @> $2::jsonb)
       AND ($3::jsonb IS NULL OR "values" @> $3::jsonb) AND ($4::text IS NULL OR status = $4)`,
    [
      tenantId,
      filter.metadata === undefined ? null : json(filter.metadata),
      filter.values === undefined ? null : json(filter.values),
      filter.status ?? null,
    ],
  );
  return Number(res.rows[0]?.n ?? 0);
}

/**
 * Prunes the tenant's threads among `threadIds`; returns how many were pruned.
 * `delete` deletes each thread that has no queued or active run (one
 * transaction each, locking the thread as run creation does, so no run is
 * created into a thread being deleted); busy and unknown ids are skipped.
 * `keep_latest` keeps the threads and drops every state checkpoint but the
 * latest of each.
 */
export async function pruneThreads(
  db: SqlClient,
  tenantId: string,
  threadIds: readonly string[],
  strategy: 'delete' | 'keep_latest',
): Promise<number> {
  if (strategy === 'keep_latest') {
    const res = await db.query<{ thread_id: string }>(
      `WITH targets AS (
         SELECT t.thread_id FROM threads t
         WHERE t.tenant_id = $1 AND t.thread_id IN (SELECT jsonb_array_elements_text($2::jsonb)::uuid)
       ), pruned AS (
         DELETE FROM thread_states s USING targets t
         WHERE s.thread_id = t.thread_id AND s.checkpoint_id <> (
           SELECT l.checkpoint_id FROM thread_states l WHERE l.thread_id = t.thread_id
           ORDER BY l.created_at DESC LIMIT 1)
         RETURNING s.thread_id
       )
       SELECT DISTINCT thread_id FROM pruned`,
      [tenantId, json(threadIds)],
    );
    return res.rowCount;
  }
  let pruned = 0;
  for (const threadId of new Set(threadIds)) {
    try {
      await deleteThread(db, tenantId, threadId);
      pruned++;
    } catch (err) {
      if (!isHangarError(err, 'not_found') && !isHangarError(err, 'conflict')) throw err;
    }
  }
  return pruned;
}

/**
 * Merges `metadata` into the metadata of the thread's latest checkpoint (the
 * SDK's `patchState`). `not_found` when the thread does not exist or has no
 * checkpoint yet.
 */
export async function patchLatestCheckpointMetadata(
  db: Queryable,
  tenantId: string,
  threadId: string,
  metadata: Record<string, unknown>,
): Promise<void> {
  const res = await db.query(
    `UPDATE thread_states s SET metadata = s.metadata || $3::jsonb
     WHERE s.checkpoint_id = (
       SELECT l.checkpoint_id FROM thread_states l JOIN threads t ON t.thread_id = l.thread_id
       WHERE l.thread_id = $1 AND t.tenant_id = $2 ORDER BY l.created_at DESC LIMIT 1)`,
    [threadId, tenantId, json(metadata)],
  );
  if (res.rowCount === 0) {
    throw new HangarError('not_found', `thread ${threadId} not found or has no checkpoint yet`, {
      details: { thread_id: threadId },
    });
  }
}
