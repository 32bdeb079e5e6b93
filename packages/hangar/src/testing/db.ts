import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../store/migrate.ts';
import { openPGlite } from '../store/pglite.ts';
import { openPostgres } from '../store/postgres.ts';
import type { SqlClient } from '../store/sql.ts';

/** The Postgres the tests use (CI and dev machines run one on 127.0.0.1:5432, trust auth). */
export const TEST_DATABASE_URL =
  process.env.HANGAR_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestStore {
  kind: 'postgres' | 'pglite';
  db: SqlClient;
  /** For Postgres: the connection URL and the test's own schema (pass both to child processes). */
  url?: string;
  schema?: string;
  /** Closes the store and drops the test's schema. */
  dispose(): Promise<void>;
}

/** A migrated Postgres schema of its own, so parallel tests (and CI runs) never see each other's rows. */
export async function createTestPostgres(): Promise<TestStore> {
  const schema = `hangar_test_${randomBytes(6).toString('hex')}`;
  const db = await openPostgres({ connectionString: TEST_DATABASE_URL, schema, max: 10 });
  await migrate(db);
  return {
    kind: 'postgres',
    db,
    url: TEST_DATABASE_URL,
    schema,
    async dispose() {
      await db.close();
      await dropSchema(schema);
    },
  };
}

export async function dropSchema(schema: string): Promise<void> {
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await admin.end();
  }
}

/** A migrated in-memory PGlite database. */
export async function createTestPGlite(): Promise<TestStore> {
  const db = await openPGlite();
  await migrate(db);
  return { kind: 'pglite', db, dispose: () => db.close() };
}

export const STORE_KINDS = ['postgres', 'pglite'] as const;

export function createTestStore(kind: (typeof STORE_KINDS)[number]): Promise<TestStore> {
  return kind === 'postgres' ? createTestPostgres() : createTestPGlite();
}
