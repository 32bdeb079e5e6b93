import { resolve } from 'node:path';
import { isScope, SCOPES, type Scope } from '../auth/keys.ts';
import { type ApiKey, createApiKey, listApiKeys, revokeApiKey } from '../auth/repository.ts';
import type { Env } from '../config/env.ts';
import { parseEnv } from '../config/env.ts';
import type { AuthMode } from '../gateway/auth.ts';
import type { LimitSettings } from '../gateway/limits.ts';
import { openStore } from '../runtime/store.ts';
import { migrate } from '../store/migrate.ts';
import { type SqlClient, sqlState } from '../store/sql.ts';
import { type Flags, UsageError } from './main.ts';
import { lockDataDir } from './serve.ts';

export const KEYS_HELP = `  hangar keys create --tenant <id> --name <name> [--scopes runs:read,runs:write] [--json]
  hangar keys list   [--tenant <id>] [--json]
  hangar keys revoke <key_id | prefix>
                  API keys, against DATABASE_URL (or --database-url; --data-dir for a stopped
                  "hangar dev"'s embedded database). A new tenant is created with its first key.
                  Scopes: runs:read, runs:write, admin (admin includes the others).`;

/** `hangar keys create | list | revoke`. */
export async function runKeysCommand(flags: Flags): Promise<number> {
  const [sub, ...rest] = flags.positionals;
  if (sub !== 'create' && sub !== 'list' && sub !== 'revoke') {
    throw new UsageError(
      `${sub === undefined ? 'missing keys command' : `unknown keys command "${sub}"`}; ` +
        'use "hangar keys create | list | revoke" (see hangar --help)',
    );
  }
  const env = parseEnv(process.env);
  // Validate the flags before opening anything.
  const create =
    sub === 'create'
      ? {
          tenantId: requiredString(flags, 'tenant'),
          name: requiredString(flags, 'name'),
          scopes: parseScopes(flags.values.scopes),
        }
      : undefined;
  if (sub === 'revoke' && rest[0] === undefined) {
    throw new UsageError('"hangar keys revoke" needs the key id or prefix (see "hangar keys list")');
  }
  const tenantFilter = flags.values.tenant;
  const json = flags.values.json === true;

  const { db, close } = await openKeysStore(flags, env);
  try {
    if (create !== undefined) {
      const created = await createApiKey(db, create);
      if (json) {
        process.stdout.write(`${JSON.stringify(created)}\n`);
      } else {
        process.stdout.write(
          `hangar: created API key ${created.prefix} (${created.key_id}) "${created.name}" for tenant ` +
            `${created.tenant_id}${created.tenant_created ? ' (new tenant)' : ''}, scopes ${created.scopes.join(',')}\n` +
            `${created.key}\n` +
            'This is the only time the key is shown: store it now. Send it as x-api-key or Authorization: Bearer.\n',
        );
      }
    } else if (sub === 'list') {
      const keys = await listApiKeys(db, typeof tenantFilter === 'string' ? { tenantId: tenantFilter } : {});
      process.stdout.write(json ? `${JSON.stringify(keys)}\n` : formatKeys(keys));
    } else {
      const revoked = await revokeApiKey(db, String(rest[0]));
      process.stdout.write(
        `hangar: revoked API key ${revoked.prefix} (${revoked.key_id}) of tenant ${revoked.tenant_id}; ` +
          'gateways refuse it within their key cache time (HANGAR_KEY_CACHE_SECONDS, default 10 s)\n',
      );
    }
  } catch (err) {
    if (sqlState(err) === '42P01') {
      throw new UsageError('the database has no Hangar tables yet; run "hangar migrate" first');
    }
    throw err;
  } finally {
    await close();
  }
  return 0;
}

function requiredString(flags: Flags, name: string): string {
  const value = flags.values[name];
  if (typeof value !== 'string' || value.trim() === '') {
    throw new UsageError(`"hangar keys create" needs --${name} <${name === 'tenant' ? 'tenant id' : name}>`);
  }
  return value.trim();
}

/** `runs:read,runs:write` → the scopes; unknown names are a usage error. */
export function parseScopes(raw: unknown): Scope[] {
  if (raw === undefined) return ['runs:read', 'runs:write'];
  const names = String(raw)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (names.length === 0) throw new UsageError(`--scopes needs at least one of ${SCOPES.join(', ')}`);
  for (const name of names) {
    if (!isScope(name)) {
      throw new UsageError(`--scopes: unknown scope "${name}"; scopes are ${SCOPES.join(', ')}`);
    }
  }
  return [...new Set(names as Scope[])];
}

async function openKeysStore(flags: Flags, env: Env): Promise<{ db: SqlClient; close(): Promise<void> }> {
  const dataDir = flags.values['data-dir'];
  if (typeof dataDir === 'string') {
    // `hangar dev`'s embedded database: only while no `hangar dev` holds it.
    const dir = resolve(dataDir);
    const unlock = lockDataDir(dir);
    try {
      const db = await openStore({ kind: 'pglite', dataDir: dir });
      await migrate(db);
      return {
        db,
        async close() {
          await db.close();
          unlock();
        },
      };
    } catch (err) {
      unlock();
      throw err;
    }
  }
  const flagUrl = flags.values['database-url'];
  const url = typeof flagUrl === 'string' ? flagUrl : env.DATABASE_URL;
  if (url === undefined) {
    throw new UsageError(
      '"hangar keys" needs DATABASE_URL or --database-url (e.g. postgres://postgres@127.0.0.1:5432/postgres), ' +
        'or --data-dir <dir> for the embedded database of a stopped "hangar dev"',
    );
  }
  const db = await openStore({
    kind: 'postgres',
    url,
    preparedStatements: env.HANGAR_PG_PREPARED === 'true',
    ...(env.HANGAR_SCHEMA === undefined ? {} : { schema: env.HANGAR_SCHEMA }),
  });
  return { db, close: () => db.close() };
}

function formatKeys(keys: ApiKey[]): string {
  if (keys.length === 0) return 'hangar: no API keys\n';
  const rows = [
    ['KEY ID', 'TENANT', 'NAME', 'PREFIX', 'SCOPES', 'CREATED', 'LAST USED', 'STATUS'],
    ...keys.map((k) => [
      k.key_id,
      k.tenant_id,
      k.name,
      k.prefix,
      k.scopes.join(','),
      k.created_at,
      k.last_used_at ?? '-',
      k.revoked_at === null ? 'active' : `revoked ${k.revoked_at}`,
    ]),
  ];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return `${rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', '[::1]', 'localhost']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host.toLowerCase()) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The gateway's authentication and limits for `hangar dev | gateway`, from
 * `--auth` / `HANGAR_AUTH` and the limit variables. Serving without keys is
 * allowed on a loopback address only. `hangar dev` defaults to no keys (so
 * binding it elsewhere needs `--auth keys`); `hangar gateway` to keys.
 */
export function gatewaySecurity(
  command: 'dev' | 'gateway',
  host: string,
  requested: unknown,
  env: Env,
): { auth: AuthMode; keyCacheTtlMs?: number; limits: Partial<LimitSettings> } {
  if (requested !== undefined && requested !== 'keys' && requested !== 'none') {
    throw new UsageError(`--auth must be "keys" or "none", got "${String(requested)}"`);
  }
  // `hangar dev` without --auth means no keys, so on another address it is refused below.
  const auth: AuthMode = requested ?? (command === 'dev' ? 'none' : 'keys');
  if (auth === 'none' && !isLoopback(host)) {
    throw new UsageError(
      `refusing to serve on ${host} without authentication: without API keys "hangar ${command}" only binds to ` +
        'localhost (127.0.0.1, ::1). Bind to --host 127.0.0.1, or require keys with --auth keys ' +
        `(create one with "hangar keys create --tenant <id> --name <name>${command === 'dev' ? ' --data-dir <dir>' : ''}")`,
    );
  }
  const limits: Partial<LimitSettings> = {
    ...(env.HANGAR_MAX_PENDING_RUNS_PER_TENANT === undefined
      ? {}
      : { maxPendingRunsPerTenant: env.HANGAR_MAX_PENDING_RUNS_PER_TENANT }),
    ...(env.HANGAR_MAX_PENDING_RUNS === undefined ? {} : { maxPendingRuns: env.HANGAR_MAX_PENDING_RUNS }),
    ...(env.HANGAR_KEY_RATE_LIMIT === undefined ? {} : { keyRequestsPerSecond: env.HANGAR_KEY_RATE_LIMIT }),
    ...(env.HANGAR_KEY_RATE_BURST === undefined ? {} : { keyBurst: env.HANGAR_KEY_RATE_BURST }),
    ...(env.HANGAR_MAX_STREAMS_PER_KEY === undefined
      ? {}
      : { maxStreamsPerKey: env.HANGAR_MAX_STREAMS_PER_KEY }),
  };
  return {
    auth,
    ...(env.HANGAR_KEY_CACHE_SECONDS === undefined
      ? {}
      : { keyCacheTtlMs: env.HANGAR_KEY_CACHE_SECONDS * 1000 }),
    limits,
  };
}
