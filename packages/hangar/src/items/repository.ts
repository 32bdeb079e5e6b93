import { iso, json, type Queryable } from '../store/sql.ts';
import { joinNamespace, namespaceCondition, SqlParams, splitNamespace } from './namespace.ts';

/**
 * The long-term store (LangGraph's `BaseStore` over HTTP): JSON documents
 * under a namespace and a key, per tenant. Every statement filters on
 * `tenant_id`. An item with a TTL is invisible once it expires, whether or
 * not the sweeper has deleted it yet.
 */

/** An item as the API shows it: the SDK's `Item` before it adds camelCase copies of the dates. */
export interface StoreItem {
  namespace: string[];
  key: string;
  value: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

interface ItemRow {
  namespace: string;
  key: string;
  value: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
}

const LIVE = '(expires_at IS NULL OR expires_at > now())';
const ITEM_COLUMNS = 'namespace, key, value, created_at, updated_at';
/** Newest first; namespace and key break ties so pages are stable. */
const ITEM_ORDER = 'updated_at DESC, namespace COLLATE "C", key COLLATE "C"';

function toItem(row: ItemRow): StoreItem {
  return {
    namespace: splitNamespace(row.namespace),
    key: row.key,
    value: row.value,
    created_at: iso(row.created_at) ?? '',
    updated_at: iso(row.updated_at) ?? '',
  };
}

/**
 * The refresh half of a read: pushes the expiry of the items the `hits` CTE
 * returned out by their TTL again, when `refresh` (a boolean placeholder) is true.
 */
function refreshCte(tenant: string, refresh: string): string {
  return `refreshed AS (
    UPDATE store_items s SET expires_at = now() + s.ttl_minutes * interval '1 minute'
    FROM hits h
    WHERE ${refresh}::boolean AND s.tenant_id = ${tenant} AND s.namespace = h.namespace
      AND s.key = h.key AND s.ttl_minutes IS NOT NULL)`;
}

/**
 * Creates or replaces an item. `ttlMinutes` (null: never expires) restarts
 * from now on every put; an overwrite without one clears the old expiry. An
 * item that had expired but not yet been swept is replaced as a new item.
 */
export async function putItem(
  db: Queryable,
  tenantId: string,
  input: {
    namespace: readonly string[];
    key: string;
    value: Record<string, unknown>;
    ttlMinutes: number | null;
  },
): Promise<void> {
  await db.query(
    `INSERT INTO store_items (tenant_id, namespace, key, value, ttl_minutes, expires_at)
     VALUES ($1, $2, $3, $4::jsonb, $5::double precision,
             now() + $5::double precision * interval '1 minute')
     ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET
       value = EXCLUDED.value,
       ttl_minutes = EXCLUDED.ttl_minutes,
       expires_at = EXCLUDED.expires_at,
       updated_at = now(),
       created_at = CASE WHEN store_items.expires_at <= now() THEN now() ELSE store_items.created_at END`,
    [tenantId, joinNamespace(input.namespace), input.key, json(input.value), input.ttlMinutes],
  );
}

/** The live item, or null. `refreshTtl` restarts its TTL (no effect on an item without one). */
export async function getItem(
  db: Queryable,
  tenantId: string,
  namespace: readonly string[],
  key: string,
  options: { refreshTtl: boolean },
): Promise<StoreItem | null> {
  const res = await db.query<ItemRow>(
    `WITH hits AS (
       SELECT ${ITEM_COLUMNS} FROM store_items
       WHERE tenant_id = $1 AND namespace = $2 AND key = $3 AND ${LIVE}),
     ${refreshCte('$1', '$4')}
     SELECT ${ITEM_COLUMNS} FROM hits`,
    [tenantId, joinNamespace(namespace), key, options.refreshTtl],
  );
  const row = res.rows[0];
  return row === undefined ? null : toItem(row);
}

/** Deletes an item; true when there was one. */
export async function deleteItem(
  db: Queryable,
  tenantId: string,
  namespace: readonly string[],
  key: string,
): Promise<boolean> {
  const res = await db.query('DELETE FROM store_items WHERE tenant_id = $1 AND namespace = $2 AND key = $3', [
    tenantId,
    joinNamespace(namespace),
    key,
  ]);
  return res.rowCount > 0;
}

export interface SearchItemsOptions {
  /** Labels the namespace starts with (`*` matches any one label); `[]`: every namespace. */
  namespacePrefix: readonly string[];
  /** Top-level value fields that must equal these JSON values exactly. */
  filter: Record<string, unknown>;
  limit: number;
  offset: number;
  refreshTtl: boolean;
}

/** Live items under a namespace prefix whose value matches `filter`, newest first. */
export async function searchItems(
  db: Queryable,
  tenantId: string,
  options: SearchItemsOptions,
): Promise<StoreItem[]> {
  const params = new SqlParams();
  const tenant = params.add(tenantId);
  const where = [
    `tenant_id = ${tenant}`,
    LIVE,
    namespaceCondition('namespace', options.namespacePrefix, 'prefix', params),
    ...Object.entries(options.filter).map(
      ([field, expected]) => `value -> ${params.add(field)}::text = ${params.add(json(expected))}::jsonb`,
    ),
  ];
  const limit = params.add(options.limit);
  const offset = params.add(options.offset);
  const refresh = params.add(options.refreshTtl);
  const res = await db.query<ItemRow>(
    `WITH hits AS (
       SELECT ${ITEM_COLUMNS} FROM store_items WHERE ${where.join(' AND ')}
       ORDER BY ${ITEM_ORDER} LIMIT ${limit} OFFSET ${offset}),
     ${refreshCte(tenant, refresh)}
     SELECT ${ITEM_COLUMNS} FROM hits ORDER BY ${ITEM_ORDER}`,
    params.values,
  );
  return res.rows.map(toItem);
}

export interface ListNamespacesOptions {
  prefix: readonly string[];
  suffix: readonly string[];
  /** Namespaces longer than this are cut to their first `maxDepth` labels (then deduplicated). */
  maxDepth?: number;
  limit: number;
  offset: number;
}

/**
 * The distinct namespaces that hold live items and match `prefix` and
 * `suffix` (matched on the full namespace, before `maxDepth` cuts it), in
 * label order.
 */
export async function listNamespaces(
  db: Queryable,
  tenantId: string,
  options: ListNamespacesOptions,
): Promise<string[][]> {
  const params = new SqlParams();
  const where = [
    `tenant_id = ${params.add(tenantId)}`,
    LIVE,
    namespaceCondition('namespace', options.prefix, 'prefix', params),
    namespaceCondition('namespace', options.suffix, 'suffix', params),
  ];
  const ns =
    options.maxDepth === undefined
      ? 'namespace'
      : `array_to_string((string_to_array(namespace, '.'))[1:${params.add(options.maxDepth)}::int], '.')`;
  const limit = params.add(options.limit);
  const offset = params.add(options.offset);
  const res = await db.query<{ ns: string }>(
    `SELECT ns FROM (SELECT DISTINCT ${ns} AS ns FROM store_items WHERE ${where.join(' AND ')}) d
     ORDER BY string_to_array(ns, '.') COLLATE "C" LIMIT ${limit} OFFSET ${offset}`,
    params.values,
  );
  return res.rows.map((row) => splitNamespace(row.ns));
}

/**
 * Deletes expired items in one bounded batch (every gateway sweeps; SKIP
 * LOCKED keeps concurrent sweepers off each other's rows). Returns how many.
 */
export async function sweepExpiredItems(db: Queryable, limit = 1000): Promise<number> {
  const res = await db.query(
    `DELETE FROM store_items WHERE (tenant_id, namespace, key) IN (
       SELECT tenant_id, namespace, key FROM store_items WHERE expires_at <= now()
       ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)`,
    [limit],
  );
  return res.rowCount;
}
