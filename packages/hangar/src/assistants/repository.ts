import { HangarError } from '../errors.ts';
import { iso, json, type Queryable, type SqlClient } from '../store/sql.ts';

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

/** One recorded state of an assistant (the SDK's `AssistantVersion`). */
export type AssistantVersion = Omit<Assistant, 'updated_at'>;

type Timestamps<T, K extends keyof T> = Omit<T, K> & { [P in K]: Date };
type AssistantRow = Timestamps<Assistant, 'created_at' | 'updated_at'>;
type VersionRow = Timestamps<AssistantVersion, 'created_at'>;

const ASSISTANT_COLUMNS =
  'assistant_id, graph_id, name, description, config, context, metadata, version, created_at, updated_at';
const VERSION_COLUMNS =
  'assistant_id, version, graph_id, name, description, config, context, metadata, created_at';

export const ASSISTANT_SORT_COLUMNS = [
  'assistant_id',
  'graph_id',
  'name',
  'created_at',
  'updated_at',
] as const;
export type AssistantSortBy = (typeof ASSISTANT_SORT_COLUMNS)[number];

export interface AssistantFilter {
  graphId?: string;
  name?: string;
  /** Matches assistants whose metadata contains this object (jsonb `@>`). */
  metadata?: Record<string, unknown>;
}

export interface AssistantSearch extends AssistantFilter {
  limit: number;
  offset: number;
  sortBy?: AssistantSortBy;
  sortOrder?: 'asc' | 'desc';
}

/** What an assistant is made of, as `POST /assistants` sets it. */
export interface AssistantFields {
  graphId: string;
  name: string;
  description: string | null;
  config: Record<string, unknown>;
  context: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

/**
 * What `PATCH /assistants/{id}` changes: given fields replace the current
 * ones, except `metadata`, which is merged into it (as LangGraph does).
 */
export type AssistantPatch = Partial<AssistantFields>;

function toAssistant(row: AssistantRow): Assistant {
  return {
    ...row,
    version: Number(row.version),
    created_at: iso(row.created_at) ?? '',
    updated_at: iso(row.updated_at) ?? '',
  };
}

function toVersion(row: VersionRow): AssistantVersion {
  return { ...row, version: Number(row.version), created_at: iso(row.created_at) ?? '' };
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

/** The WHERE clause (and its parameters, `$1` being the tenant) of a filter. */
function filterClause(tenantId: string, filter: AssistantFilter): { where: string; params: unknown[] } {
  const where = ['tenant_id = $1'];
  const params: unknown[] = [tenantId];
  if (filter.graphId !== undefined) {
    params.push(filter.graphId);
    where.push(`graph_id = $${params.length}`);
  }
  if (filter.name !== undefined) {
    params.push(filter.name);
    where.push(`name = $${params.length}`);
  }
  if (filter.metadata !== undefined) {
    params.push(json(filter.metadata));
    where.push(`metadata @> $${params.length}::jsonb`);
  }
  return { where: where.join(' AND '), params };
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
  const { where, params } = filterClause(tenantId, query);
  // sortBy is one of a closed list of column names, so interpolating it is safe.
  const sortBy = query.sortBy ?? 'created_at';
  const order = query.sortOrder === 'asc' ? 'ASC' : 'DESC';
  params.push(query.limit, query.offset);
  const res = await db.query<AssistantRow>(
    `SELECT ${ASSISTANT_COLUMNS} FROM assistants WHERE ${where}
     ORDER BY ${sortBy} ${order}, assistant_id ${order}
     LIMIT $${params.length - 1} OFFSET $${params.length}`,
    params,
  );
  return res.rows.map(toAssistant);
}

/** How many of the tenant's assistants match every given filter. */
export async function countAssistants(
  db: Queryable,
  tenantId: string,
  filter: AssistantFilter,
): Promise<number> {
  const { where, params } = filterClause(tenantId, filter);
  const res = await db.query<{ n: string | number }>(
    `SELECT count(*) AS n FROM assistants WHERE ${where}`,
    params,
  );
  return Number(res.rows[0]?.n ?? 0);
}

/**
 * Creates an assistant (version 1). When the id is taken in the tenant:
 * `ifExists: 'do_nothing'` answers the existing assistant unchanged,
 * `'raise'` throws `conflict`.
 *
 * @example
 * const { assistant } = await createAssistant(db, 'default', randomUUID(), fields, 'raise');
 */
export async function createAssistant(
  db: SqlClient,
  tenantId: string,
  assistantId: string,
  fields: AssistantFields,
  ifExists: 'raise' | 'do_nothing',
): Promise<{ assistant: Assistant; created: boolean }> {
  return db.transaction(async (tx) => {
    const res = await tx.query<AssistantRow>(
      `INSERT INTO assistants (tenant_id, assistant_id, graph_id, name, description, config, context, metadata)
       VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb)
       ON CONFLICT (tenant_id, assistant_id) DO NOTHING
       RETURNING ${ASSISTANT_COLUMNS}`,
      [
        tenantId,
        assistantId,
        fields.graphId,
        fields.name,
        fields.description,
        json(fields.config),
        json(fields.context),
        json(fields.metadata),
      ],
    );
    const row = res.rows[0];
    if (row !== undefined) return { assistant: toAssistant(row), created: true };
    const existing = await getAssistant(tx, tenantId, assistantId);
    if (existing !== null && ifExists === 'do_nothing') return { assistant: existing, created: false };
    throw new HangarError('conflict', `assistant ${assistantId} already exists`, {
      details: { assistant_id: assistantId },
    });
  });
}

/**
 * Records the assistant's current state as its version, if not yet recorded.
 * Only edits record versions (the state they supersede and the new one), so an
 * assistant never edited has no version rows, and a default assistant's
 * description follows the agent's code until then (`AgentRegistry.syncAssistants`).
 */
async function recordCurrentVersion(tx: Queryable, tenantId: string, assistantId: string): Promise<void> {
  await tx.query(
    `INSERT INTO assistant_versions
       (tenant_id, assistant_id, version, graph_id, name, description, config, context, metadata, created_at)
     SELECT tenant_id, assistant_id, version, graph_id, name, description, config, context, metadata, updated_at
     FROM assistants WHERE tenant_id = $1 AND assistant_id = $2
     ON CONFLICT (tenant_id, assistant_id, version) DO NOTHING`,
    [tenantId, assistantId],
  );
}

/** Locks the assistant's row for the rest of the transaction; null when the tenant has no such assistant. */
async function lockAssistant(
  tx: Queryable,
  tenantId: string,
  assistantId: string,
): Promise<Assistant | null> {
  const res = await tx.query<AssistantRow>(
    `SELECT ${ASSISTANT_COLUMNS} FROM assistants WHERE tenant_id = $1 AND assistant_id = $2 FOR UPDATE`,
    [tenantId, assistantId],
  );
  const row = res.rows[0];
  return row === undefined ? null : toAssistant(row);
}

/**
 * Applies a patch as a new version (the highest recorded version + 1, so a
 * patch after `setLatestVersion` back to 1 still gets a fresh number).
 * Null when the tenant has no such assistant.
 */
export async function updateAssistant(
  db: SqlClient,
  tenantId: string,
  assistantId: string,
  patch: AssistantPatch,
): Promise<Assistant | null> {
  return db.transaction(async (tx) => {
    const current = await lockAssistant(tx, tenantId, assistantId);
    if (current === null) return null;
    await recordCurrentVersion(tx, tenantId, assistantId);
    const next = await tx.query<{ version: number }>(
      `SELECT max(version) + 1 AS version FROM assistant_versions WHERE tenant_id = $1 AND assistant_id = $2`,
      [tenantId, assistantId],
    );
    const version = Number(next.rows[0]?.version ?? current.version + 1);
    const res = await tx.query<AssistantRow>(
      `UPDATE assistants SET graph_id = $3, name = $4, description = $5, config = $6::jsonb,
         context = $7::jsonb, metadata = $8::jsonb, version = $9, updated_at = now()
       WHERE tenant_id = $1 AND assistant_id = $2
       RETURNING ${ASSISTANT_COLUMNS}`,
      [
        tenantId,
        assistantId,
        patch.graphId ?? current.graph_id,
        patch.name ?? current.name,
        patch.description === undefined ? current.description : patch.description,
        json(patch.config ?? current.config),
        json(patch.context ?? current.context),
        json({ ...current.metadata, ...patch.metadata }),
        version,
      ],
    );
    const row = res.rows[0];
    if (row === undefined) throw new Error('UPDATE … RETURNING returned no row');
    await recordCurrentVersion(tx, tenantId, assistantId);
    return toAssistant(row);
  });
}

/**
 * Makes a recorded version the assistant's current state (every field, with
 * its version number). Null when the tenant has no such assistant;
 * `not_found` naming the version when the assistant has no such version.
 */
export async function setLatestVersion(
  db: SqlClient,
  tenantId: string,
  assistantId: string,
  version: number,
): Promise<Assistant | null> {
  return db.transaction(async (tx) => {
    const current = await lockAssistant(tx, tenantId, assistantId);
    if (current === null) return null;
    await recordCurrentVersion(tx, tenantId, assistantId);
    const res = await tx.query<AssistantRow>(
      `UPDATE assistants a SET graph_id = v.graph_id, name = v.name, description = v.description,
         config = v.config, context = v.context, metadata = v.metadata, version = v.version, updated_at = now()
       FROM assistant_versions v
       WHERE a.tenant_id = $1 AND a.assistant_id = $2
         AND v.tenant_id = a.tenant_id AND v.assistant_id = a.assistant_id AND v.version = $3
       RETURNING ${ASSISTANT_COLUMNS.split(', ')
         .map((c) => `a.${c}`)
         .join(', ')}`,
      [tenantId, assistantId, version],
    );
    const row = res.rows[0];
    if (row === undefined) {
      throw new HangarError('not_found', `assistant ${assistantId} has no version ${version}`, {
        details: { assistant_id: assistantId, version },
      });
    }
    return toAssistant(row);
  });
}

/** Deletes the assistant and its versions; false when the tenant has no such assistant. */
export async function deleteAssistant(
  db: Queryable,
  tenantId: string,
  assistantId: string,
): Promise<boolean> {
  const res = await db.query('DELETE FROM assistants WHERE tenant_id = $1 AND assistant_id = $2', [
    tenantId,
    assistantId,
  ]);
  return res.rowCount > 0;
}

/**
 * The assistant's versions, newest (highest number) first, optionally only
 * those whose metadata contains `metadata`. The current state counts as a
 * version even before an edit records it. Null when the tenant has no such assistant.
 */
export async function listAssistantVersions(
  db: Queryable,
  tenantId: string,
  assistantId: string,
  query: { metadata?: Record<string, unknown>; limit: number; offset: number },
): Promise<AssistantVersion[] | null> {
  if ((await getAssistant(db, tenantId, assistantId)) === null) return null;
  const res = await db.query<VersionRow>(
    `SELECT ${VERSION_COLUMNS} FROM (
       SELECT ${VERSION_COLUMNS} FROM assistant_versions WHERE tenant_id = $1 AND assistant_id = $2
       UNION ALL
       SELECT assistant_id, version, graph_id, name, description, config, context, metadata, updated_at
       FROM assistants a WHERE a.tenant_id = $1 AND a.assistant_id = $2
         AND NOT EXISTS (SELECT 1 FROM assistant_versions v
                         WHERE v.tenant_id = a.tenant_id AND v.assistant_id = a.assistant_id AND v.version = a.version)
     ) versions
     WHERE metadata @> $3::jsonb
     ORDER BY version DESC
     LIMIT $4 OFFSET $5`,
    [tenantId, assistantId, json(query.metadata ?? {}), query.limit, query.offset],
  );
  return res.rows.map(toVersion);
}
