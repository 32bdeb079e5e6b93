import { randomUUID } from 'node:crypto';
import { HangarError } from '../errors.ts';
import { THREAD_INTERRUPTS_SQL } from '../hitl/repository.ts';
import { iso, json, type Queryable, type SqlClient } from '../store/sql.ts';

export type ThreadStatus = 'idle' | 'busy' | 'interrupted' | 'error';

/** A thread as the API shows it: the SDK's `Thread` (never the tenant). */
export interface Thread {
  thread_id: string;
  status: ThreadStatus;
  metadata: Record<string, unknown>;
  values: Record<string, unknown>;
  /** Pending interrupts by task (here: by run id), as `[{ id, value }]` (`ctx.interrupt`'s id and payload). */
  interrupts: Record<string, Array<{ id: string; value: unknown }>>;
  created_at: string;
  updated_at: string;
}

type ThreadRow = Omit<Thread, 'created_at' | 'updated_at'> & {
  created_at: Date;
  updated_at: Date;
};

// Pending interrupts by run (hitl/): LangGraph's `Thread.interrupts`.
const THREAD_COLUMNS = `thread_id, status, metadata, "values", created_at, updated_at,
  ${THREAD_INTERRUPTS_SQL} AS interrupts`;

function toThread(row: ThreadRow): Thread {
  return {
    thread_id: row.thread_id,
    status: row.status,
    metadata: row.metadata,
    values: row.values,
    interrupts: row.interrupts ?? {},
    created_at: iso(row.created_at) ?? '',
    updated_at: iso(row.updated_at) ?? '',
  };
}

function firstRow<R>(rows: R[]): R {
  const row = rows[0];
  if (row === undefined) throw new Error('INSERT … RETURNING returned no row');
  return row;
}

function notFound(threadId: string): HangarError {
  return new HangarError('not_found', `thread ${threadId} not found`, { details: { thread_id: threadId } });
}

export async function createThread(
  db: Queryable,
  input: { tenantId: string; threadId?: string; metadata?: Record<string, unknown> },
): Promise<Thread> {
  const res = await db.query<ThreadRow>(
    `INSERT INTO threads (thread_id, tenant_id, metadata) VALUES ($1, $2, $3::jsonb) RETURNING ${THREAD_COLUMNS}`,
    [input.threadId ?? randomUUID(), input.tenantId, json(input.metadata ?? {})],
  );
  return toThread(firstRow(res.rows));
}

export async function getThread(db: Queryable, tenantId: string, threadId: string): Promise<Thread | null> {
  const res = await db.query<ThreadRow>(
    `SELECT ${THREAD_COLUMNS} FROM threads WHERE thread_id = $1 AND tenant_id = $2`,
    [threadId, tenantId],
  );
  const row = res.rows[0];
  return row === undefined ? null : toThread(row);
}

/**
 * The seq of the thread's last logged event, or null when the thread does not
 * exist. A reader that takes it before checking a run's status and then
 * follows the log after it cannot miss the run's terminal event.
 */
export async function threadLastSeq(
  db: Queryable,
  tenantId: string,
  threadId: string,
): Promise<number | null> {
  const res = await db.query<{ last_seq: number | string }>(
    'SELECT last_seq FROM threads WHERE thread_id = $1 AND tenant_id = $2',
    [threadId, tenantId],
  );
  const row = res.rows[0];
  return row === undefined ? null : Number(row.last_seq);
}

/** One checkpoint of a thread's state, as stored. */
export interface ThreadStateSnapshot {
  checkpoint_id: string;
  parent_checkpoint_id: string | null;
  run_id: string | null;
  values: Record<string, unknown>;
  /** The stored metadata; a run's checkpoint also shows `source: 'loop'` and its `run_id`. */
  metadata: Record<string, unknown>;
  created_at: string;
}

type SnapshotRow = Omit<ThreadStateSnapshot, 'created_at'> & { created_at: Date };

const CHECKPOINT_METADATA = `(CASE WHEN s.run_id IS NULL THEN s.metadata
  ELSE jsonb_build_object('source', 'loop', 'run_id', s.run_id) || s.metadata END)`;
const SNAPSHOT_COLUMNS = `s.checkpoint_id, s.parent_checkpoint_id, s.run_id, s."values",
  ${CHECKPOINT_METADATA} AS metadata, s.created_at`;

function toSnapshot(row: SnapshotRow): ThreadStateSnapshot {
  return { ...row, created_at: iso(row.created_at) ?? '' };
}

export interface HistoryQuery {
  limit: number;
  /** Only checkpoints older than this one (none when it is not the thread's). */
  before?: string;
  /** JSON containment on the checkpoint metadata. */
  metadata?: Record<string, unknown>;
}

/**
 * The thread's checkpoints, newest first; empty when the thread is not the tenant's.
 *
 * @example
 * await threadHistory(db, 'default', threadId, { limit: 5, metadata: { source: 'update' } });
 */
export async function threadHistory(
  db: Queryable,
  tenantId: string,
  threadId: string,
  query: HistoryQuery = { limit: 10 },
): Promise<ThreadStateSnapshot[]> {
  const where = ['s.thread_id = $1', 't.tenant_id = $2'];
  const params: unknown[] = [threadId, tenantId];
  if (query.before !== undefined) {
    params.push(query.before);
    where.push(`(s.created_at, s.checkpoint_id) < (SELECT b.created_at, b.checkpoint_id FROM thread_states b
      WHERE b.thread_id = $1 AND b.checkpoint_id = $${params.length})`);
  }
  if (query.metadata !== undefined) {
    params.push(json(query.metadata));
    where.push(`${CHECKPOINT_METADATA} @> $${params.length}::jsonb`);
  }
  params.push(query.limit);
  const res = await db.query<SnapshotRow>(
    `SELECT ${SNAPSHOT_COLUMNS}
     FROM thread_states s JOIN threads t ON t.thread_id = s.thread_id
     WHERE ${where.join(' AND ')} ORDER BY s.created_at DESC, s.checkpoint_id DESC LIMIT $${params.length}`,
    params,
  );
  return res.rows.map(toSnapshot);
}

/** One checkpoint of the tenant's thread, or null. */
export async function threadCheckpoint(
  db: Queryable,
  tenantId: string,
  threadId: string,
  checkpointId: string,
): Promise<ThreadStateSnapshot | null> {
  const res = await db.query<SnapshotRow>(
    `SELECT ${SNAPSHOT_COLUMNS}
     FROM thread_states s JOIN threads t ON t.thread_id = s.thread_id
     WHERE s.thread_id = $1 AND t.tenant_id = $2 AND s.checkpoint_id = $3`,
    [threadId, tenantId, checkpointId],
  );
  const row = res.rows[0];
  return row === undefined ? null : toSnapshot(row);
}

export interface ThreadSearch {
  metadata?: Record<string, unknown>;
  values?: Record<string, unknown>;
  status?: ThreadStatus;
  ids?: string[];
  limit: number;
  offset: number;
  sortBy?: 'thread_id' | 'status' | 'created_at' | 'updated_at';
  sortOrder?: 'asc' | 'desc';
}

/**
 * The tenant's threads matching every given filter (`metadata` and `values`
 * by JSON containment), newest first unless sorted otherwise.
 *
 * @example
 * await searchThreads(db, 'default', { metadata: { user: 'ada' }, status: 'idle', limit: 10, offset: 0 });
 */
export async function searchThreads(db: Queryable, tenantId: string, query: ThreadSearch): Promise<Thread[]> {
  const where = ['tenant_id = $1'];
  const params: unknown[] = [tenantId];
  const filter = (value: unknown, clause: (placeholder: string) => string) => {
    params.push(value);
    where.push(clause(`$${params.length}`));
  };
  if (query.metadata !== undefined) filter(json(query.metadata), (p) => `metadata @> ${p}::jsonb`);
  if (query.values !== undefined) filter(json(query.values), (p) => `"values" @> ${p}::jsonb`);
  if (query.status !== undefined) filter(query.status, (p) => `status = ${p}`);
  // A JSON array rather than a uuid[] parameter: both adapters bind it the same way.
  if (query.ids !== undefined) {
    filter(json(query.ids), (p) => `thread_id IN (SELECT jsonb_array_elements_text(${p}::jsonb)::uuid)`);
  }
  // sortBy is one of a closed list of column names, so interpolating it is safe.
  const sortBy = query.sortBy ?? 'created_at';
  const order = query.sortOrder === 'asc' ? 'ASC' : 'DESC';
  params.push(query.limit, query.offset);
  const res = await db.query<ThreadRow>(
    `SELECT ${THREAD_COLUMNS} FROM threads WHERE ${where.join(' AND ')}
     ORDER BY ${sortBy} ${order}, thread_id ${order}
     LIMIT $${params.length - 1} OFFSET $${params.length}`,
    params,
  );
  return res.rows.map(toThread);
}

/** Shallow-merges `metadata` into the thread's metadata; null when the thread does not exist. */
export async function patchThreadMetadata(
  db: Queryable,
  tenantId: string,
  threadId: string,
  metadata: Record<string, unknown>,
): Promise<Thread | null> {
  const res = await db.query<ThreadRow>(
    `UPDATE threads SET metadata = metadata || $3::jsonb, updated_at = now()
     WHERE thread_id = $1 AND tenant_id = $2 RETURNING ${THREAD_COLUMNS}`,
    [threadId, tenantId, json(metadata)],
  );
  const row = res.rows[0];
  return row === undefined ? null : toThread(row);
}

/**
 * Locks the thread row and fails unless the thread exists and has no queued
 * or active run. Run creation locks the same row (runs/repository.ts), so a
 * run cannot slip in between this check and the caller's write.
 */
async function lockIdleThread(tx: Queryable, tenantId: string, threadId: string, action: string) {
  const thread = await tx.query('SELECT 1 FROM threads WHERE thread_id = $1 AND tenant_id = $2 FOR UPDATE', [
    threadId,
    tenantId,
  ]);
  if (thread.rowCount === 0) throw notFound(threadId);
  const active = await tx.query<{ run_id: string; status: string }>(
    `SELECT run_id, status FROM runs WHERE thread_id = $1 AND status IN ('pending', 'running', 'waiting', 'interrupted')
     ORDER BY created_at LIMIT 1`,
    [threadId],
  );
  const run = active.rows[0];
  if (run !== undefined) {
    throw new HangarError(
      'conflict',
      `cannot ${action} thread ${threadId}: run ${run.run_id} is ${run.status}; cancel it or wait for it to end`,
      { details: { thread_id: threadId, run_id: run.run_id, run_status: run.status } },
    );
  }
}

/** Deletes a thread with no queued or active run; its runs, events and states go with it (ON DELETE CASCADE). */
export async function deleteThread(db: SqlClient, tenantId: string, threadId: string): Promise<void> {
  await db.transaction(async (tx) => {
    await lockIdleThread(tx, tenantId, threadId, 'delete');
    await tx.query('DELETE FROM threads WHERE thread_id = $1 AND tenant_id = $2', [threadId, tenantId]);
  });
}

/**
 * Merges `values` per key into the thread's values and records the result as
 * a new checkpoint (a state update, or a redrive's state patch); the caller
 * holds the thread.
 */
export async function mergeThreadValues(
  tx: Queryable,
  threadId: string,
  values: Record<string, unknown>,
  metadata: Record<string, unknown>,
): Promise<{ checkpoint_id: string }> {
  const res = await tx.query<{ checkpoint_id: string }>(
    `WITH merged AS (
       UPDATE threads SET "values" = "values" || $2::jsonb, updated_at = now()
       WHERE thread_id = $1 RETURNING "values"
     )
     INSERT INTO thread_states (checkpoint_id, thread_id, parent_checkpoint_id, "values", metadata)
     SELECT $3, $1,
       (SELECT p.checkpoint_id FROM thread_states p WHERE p.thread_id = $1 ORDER BY p.created_at DESC LIMIT 1),
       m."values", $4::jsonb
     FROM merged m RETURNING checkpoint_id`,
    [threadId, json(values), randomUUID(), json(metadata)],
  );
  return firstRow(res.rows);
}

/**
 * Shallow-merges `values` into the thread's values, as LangGraph's
 * `update_state` does for a dict state, and records the result as a new
 * checkpoint. Refused while a run is queued or active: the run's checkpoints
 * write the whole state and would overwrite the update.
 */
export async function updateThreadState(
  db: SqlClient,
  tenantId: string,
  threadId: string,
  update: { values: Record<string, unknown>; asNode?: string },
): Promise<{ checkpoint_id: string }> {
  return db.transaction(async (tx) => {
    await lockIdleThread(tx, tenantId, threadId, 'update the state of');
    const metadata = { source: 'update', ...(update.asNode === undefined ? {} : { as_node: update.asNode }) };
    return mergeThreadValues(tx, threadId, update.values, metadata);
  });
}

/**
 * A new thread with the source's metadata, values and state history; each
 * checkpoint gets a new id and keeps its place (parent links and timestamps).
 */
export async function copyThread(db: SqlClient, tenantId: string, threadId: string): Promise<Thread> {
  return db.transaction(async (tx) => {
    const newId = randomUUID();
    const res = await tx.query<ThreadRow>(
      `INSERT INTO threads (thread_id, tenant_id, metadata, "values")
       SELECT $3, tenant_id, metadata, "values" FROM threads WHERE thread_id = $1 AND tenant_id = $2
       RETURNING ${THREAD_COLUMNS}`,
      [threadId, tenantId, newId],
    );
    const row = res.rows[0];
    if (row === undefined) throw notFound(threadId);
    await tx.query(
      `WITH ids AS MATERIALIZED (
         SELECT checkpoint_id, gen_random_uuid() AS new_id FROM thread_states WHERE thread_id = $1
       )
       INSERT INTO thread_states (checkpoint_id, thread_id, parent_checkpoint_id, run_id, "values", metadata, created_at)
       SELECT i.new_id, $2, p.new_id, s.run_id, s."values", s.metadata, s.created_at
       FROM thread_states s JOIN ids i ON i.checkpoint_id = s.checkpoint_id
       LEFT JOIN ids p ON p.checkpoint_id = s.parent_checkpoint_id
       WHERE s.thread_id = $1`,
      [threadId, newId],
    );
    return toThread(row);
  });
}
