import { iso, json, type Queryable } from '../store/sql.ts';

/** An assistant as the LangGraph API returns it (the SDK's `Assistant`). */
export interface Assistant {
  assistant_id: string;
  graph_id: string;
  name: string;
  description: string | null;
  config: Record<string, unknown>;
  context: Record<string, unknown>;
  metadata: Record<string, unknown>;
  version: number;
  created_at: string;
  updated_at: string;
}

type AssistantRow = Omit<Assistant, 'created_at' | 'updated_at'> & { created_at: Date; updated_at: Date };

const ASSISTANT_COLUMNS =
  'assistant_id, graph_id, name, description, config, context, metadata, version, created_at, updated_at';

export const ASSISTANT_SORT_COLUMNS = [
  'assistant_id',
  'graph_id',
  'name',
  'created_at',
  'updated_at',
] as const;
export type AssistantSortBy = (typeof ASSISTANT_SORT_COLUMNS)[number];

export interface AssistantSearch {
  graphId?: string;
  name?: string;
  /** Matches assistants whose metadata contains this object (jsonb `@>`). */
  metadata?: Record<string, unknown>;
  limit: number;
  offset: number;
  sortBy?: AssistantSortBy;
  sortOrder?: 'asc' | 'desc';
}

function toAssistant(row: AssistantRow): Assistant {
  return { ...row, created_at: iso(row.created_at) ?? '', updated_at: iso(row.updated_at) ?? '' };
}

export async function getAssistant(
  db: Queryable,
  tenantId: string,
  assistantId: string,
): Promise<Assistant | null> {
  const res = await db.query<AssistantRow>(
    `SELECT ${ASSISTANT_COLUMNS} FROM assistants WHERE tenant_id = $1 AND assistant_id = $2`,
    [tenantId, assistantId],
  );
  const row = res.rows[0];
  return row === undefined ? null : toAssistant(row);
}

/**
 * The tenant's assistants matching every given filter, newest first unless
 * `sortBy` says otherwise. `assistant_id` breaks ties so pages are stable.
 *
 * @example
 * await searchAssistants(db, 'default', { graphId: 'pr-review', metadata: { created_by: 'system' }, limit: 10, offset: 0 });
 */
export async function searchAssistants(
  db: Queryable,
  tenantId: string,
  query: AssistantSearch,
): Promise<Assistant[]> {
  const where = ['tenant_id = $1'];
  const params: unknown[] = [tenantId];
  if (query.graphId !== undefined) {
    params.push(query.graphId);
    where.push(`graph_id = $${params.length}`);
  }
  if (query.name !== undefined) {
    params.push(query.name);
    where.push(`name = $${params.length}`);
  }
  if (query.metadata !== undefined) {
    params.push(json(query.metadata));
    where.push(`metadata @> $${params.length}::jsonb`);
  }
  // sortBy is one of a closed list of column names, so interpolating it is safe.
  const sortBy = query.sortBy ?? 'created_at';
  const order = query.sortOrder === 'asc' ? 'ASC' : 'DESC';
  params.push(query.limit, query.offset);
  const res = await db.query<AssistantRow>(
    `SELECT ${ASSISTANT_COLUMNS} FROM assistants WHERE ${where.join(' AND ')}
     ORDER BY ${sortBy} ${order}, assistant_id ${order}
     LIMIT $${params.length - 1} OFFSET $${params.length}`,
    params,
  );
  return res.rows.map(toAssistant);
}
