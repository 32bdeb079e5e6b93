import { randomUUID } from 'node:crypto';
import { iso, json, type Queryable } from '../store/sql.ts';

export type ThreadStatus = 'idle' | 'busy' | 'interrupted' | 'error';

export interface Thread {
  thread_id: string;
  tenant_id: string;
  status: ThreadStatus;
  metadata: Record<string, unknown>;
  values: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

type ThreadRow = Omit<Thread, 'created_at' | 'updated_at'> & { created_at: Date; updated_at: Date };

const THREAD_COLUMNS = 'thread_id, tenant_id, status, metadata, "values", created_at, updated_at';

function toThread(row: ThreadRow): Thread {
  return { ...row, created_at: iso(row.created_at) ?? '', updated_at: iso(row.updated_at) ?? '' };
}

export async function createThread(
  db: Queryable,
  input: { tenantId: string; threadId?: string; metadata?: Record<string, unknown> },
): Promise<Thread> {
  const res = await db.query<ThreadRow>(
    `INSERT INTO threads (thread_id, tenant_id, metadata) VALUES ($1, $2, $3::jsonb) RETURNING ${THREAD_COLUMNS}`,
    [input.threadId ?? randomUUID(), input.tenantId, json(input.metadata ?? {})],
  );
  const row = res.rows[0];
  if (row === undefined) throw new Error('INSERT … RETURNING returned no row');
  return toThread(row);
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

export interface ThreadStateSnapshot {
  checkpoint_id: string;
  parent_checkpoint_id: string | null;
  run_id: string | null;
  values: Record<string, unknown>;
  created_at: string;
}

export async function threadHistory(
  db: Queryable,
  tenantId: string,
  threadId: string,
  limit = 10,
): Promise<ThreadStateSnapshot[]> {
  const res = await db.query<Omit<ThreadStateSnapshot, 'created_at'> & { created_at: Date }>(
    `SELECT s.checkpoint_id, s.parent_checkpoint_id, s.run_id, s."values", s.created_at
     FROM thread_states s JOIN threads t ON t.thread_id = s.thread_id
     WHERE s.thread_id = $1 AND t.tenant_id = $2 ORDER BY s.created_at DESC LIMIT $3`,
    [threadId, tenantId, limit],
  );
  return res.rows.map((r) => ({ ...r, created_at: iso(r.created_at) ?? '' }));
}
