import { randomUUID } from 'node:crypto';
import { HangarError } from '../errors.ts';
import { iso, json, type Queryable, type SqlClient } from '../store/sql.ts';
import { generateKey, isScope, type Scope, TENANT_ID_PATTERN } from './keys.ts';

/** An API key as it is listed: never its secret or hash. */
export interface ApiKey {
  key_id: string;
  tenant_id: string;
  name: string;
  prefix: string;
  scopes: Scope[];
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

interface ApiKeyRow {
  key_id: string;
  tenant_id: string;
  name: string;
  prefix: string;
  scopes: unknown;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const KEY_COLUMNS = 'key_id, tenant_id, name, prefix, scopes, created_at, last_used_at, revoked_at';

function toApiKey(row: ApiKeyRow): ApiKey {
  return {
    key_id: row.key_id,
    tenant_id: row.tenant_id,
    name: row.name,
    prefix: row.prefix,
    scopes: Array.isArray(row.scopes) ? row.scopes.filter(isScope) : [],
    created_at: iso(row.created_at) ?? '',
    last_used_at: iso(row.last_used_at),
    revoked_at: iso(row.revoked_at),
  };
}

/** Creates the tenant if it does not exist; true when it was created now. */
export async function ensureTenant(db: Queryable, tenantId: string, name = tenantId): Promise<boolean> {
  if (!TENANT_ID_PATTERN.test(tenantId)) {
    throw new HangarError(
      'invalid_request',
      `tenant id "${tenantId}" is invalid: 1–63 letters, digits, "_", "." or "-", starting with a letter or digit`,
      { details: { tenant_id: tenantId } },
    );
  }
  const res = await db.query(
    'INSERT INTO tenants (tenant_id, name) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING',
    [tenantId, name],
  );
  return res.rowCount > 0;
}

export async function listTenantIds(db: Queryable): Promise<string[]> {
  const res = await db.query<{ tenant_id: string }>('SELECT tenant_id FROM tenants ORDER BY tenant_id');
  return res.rows.map((r) => r.tenant_id);
}

export interface CreatedApiKey extends ApiKey {
  /** The full key: shown once, never stored. */
  key: string;
  /** Whether the key's tenant was created with it. */
  tenant_created: boolean;
}

/**
 * Creates a key for a tenant, creating the tenant if it is new (in the same
 * transaction). The caller shows `key` once; only its hash is kept.
 */
export async function createApiKey(
  db: SqlClient,
  input: { tenantId: string; name: string; scopes: readonly Scope[] },
): Promise<CreatedApiKey> {
  if (input.scopes.length === 0) {
    throw new HangarError('invalid_request', 'a key needs at least one scope', {
      details: { scopes: input.scopes },
    });
  }
  const generated = generateKey();
  return db.transaction(async (tx) => {
    const tenantCreated = await ensureTenant(tx, input.tenantId);
    const res = await tx.query<ApiKeyRow>(
      `INSERT INTO api_keys (key_id, tenant_id, name, prefix, key_hash, scopes)
       VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING ${KEY_COLUMNS}`,
      [
        randomUUID(),
        input.tenantId,
        input.name,
        generated.prefix,
        generated.hash,
        json([...new Set(input.scopes)]),
      ],
    );
    const row = res.rows[0];
    if (row === undefined) throw new Error('INSERT … RETURNING returned no row');
    return { ...toApiKey(row), key: generated.secret, tenant_created: tenantCreated };
  });
}

export async function listApiKeys(db: Queryable, filter: { tenantId?: string } = {}): Promise<ApiKey[]> {
  const res =
    filter.tenantId === undefined
      ? await db.query<ApiKeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys ORDER BY tenant_id, created_at`)
      : await db.query<ApiKeyRow>(
          `SELECT ${KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at`,
          [filter.tenantId],
        );
  return res.rows.map(toApiKey);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Revokes a key named by its id or its display prefix. A prefix that names
 * several keys is refused (list them and use the id). Revoking a revoked key
 * keeps its first revocation time. Gateways stop accepting it within their
 * key-cache TTL.
 */
export async function revokeApiKey(db: Queryable, idOrPrefix: string): Promise<ApiKey> {
  const matches = await db.query<ApiKeyRow>(
    UUID.test(idOrPrefix)
      ? `SELECT ${KEY_COLUMNS} FROM api_keys WHERE key_id = $1`
      : `SELECT ${KEY_COLUMNS} FROM api_keys WHERE prefix = $1`,
    [idOrPrefix],
  );
  if (matches.rows.length > 1) {
    throw new HangarError(
      'conflict',
      `prefix ${idOrPrefix} names ${matches.rows.length} keys; revoke by key id (see "hangar keys list")`,
      { details: { key_ids: matches.rows.map((r) => r.key_id) } },
    );
  }
  const match = matches.rows[0];
  if (match === undefined) {
    throw new HangarError('not_found', `no API key with id or prefix "${idOrPrefix}"`, {
      details: { key: idOrPrefix },
    });
  }
  const res = await db.query<ApiKeyRow>(
    `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE key_id = $1 RETURNING ${KEY_COLUMNS}`,
    [match.key_id],
  );
  return toApiKey(res.rows[0] ?? match);
}

/** What the gateway needs to authenticate a request: the key's tenant, scopes and state. */
export interface KeyRecord {
  keyId: string;
  tenantId: string;
  prefix: string;
  scopes: Scope[];
  revoked: boolean;
}

export async function findKeyByHash(db: Queryable, hash: string): Promise<KeyRecord | null> {
  const res = await db.query<ApiKeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE key_hash = $1`, [hash]);
  const row = res.rows[0];
  if (row === undefined) return null;
  const key = toApiKey(row);
  return {
    keyId: key.key_id,
    tenantId: key.tenant_id,
    prefix: key.prefix,
    scopes: key.scopes,
    revoked: key.revoked_at !== null,
  };
}

export async function touchApiKey(db: Queryable, keyId: string): Promise<void> {
  await db.query('UPDATE api_keys SET last_used_at = now() WHERE key_id = $1', [keyId]);
}
