import type { Queryable } from '../store/sql.ts';
import { RUN_COLUMNS, type RunRow, toRun } from './repository.ts';
import type { RunStatus } from './status.ts';
import type { Run } from './types.ts';

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
