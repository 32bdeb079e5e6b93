import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { openPGlite } from '../store/pglite.ts';
import { openPostgres } from '../store/postgres.ts';
import type { SqlClient } from '../store/sql.ts';

export type StoreTarget =
  | { kind: 'postgres'; url: string; schema?: string; preparedStatements?: boolean }
  | { kind: 'pglite'; dataDir?: string };

export async function openStore(target: StoreTarget): Promise<SqlClient> {
  if (target.kind === 'postgres') {
    return openPostgres({
      connectionString: target.url,
      ...(target.schema === undefined ? {} : { schema: target.schema }),
      ...(target.preparedStatements === undefined ? {} : { preparedStatements: target.preparedStatements }),
    });
  }
  if (target.dataDir === undefined) return openPGlite();
  const dir = resolve(target.dataDir, 'pgdata');
  mkdirSync(dir, { recursive: true });
  return openPGlite(dir);
}
