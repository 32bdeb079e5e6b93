import { PGlite, type Results, type Transaction } from '@electric-sql/pglite';
import type { Queryable, QueryResult, SqlClient } from './sql.ts';

/**
 * Embedded Postgres (PGlite, WebAssembly) for `hangar dev` and tests: the same
 * SQL as production, persisted in a directory, no server to run.
 *
 * PGlite has one connection. Queries and transactions are serialized through
 * one lock, so a transaction never interleaves with another caller's query.
 */
export class PGliteClient implements SqlClient {
  readonly dialect = 'pglite' as const;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(readonly db: PGlite) {}

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => {});
    return run;
  }

  query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.exclusive(async () => {
      const res = await this.db.query<R>(sql, params as unknown[] | undefined);
      return toResult(res);
    });
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.exclusive(() =>
      this.db.transaction(async (tx: Transaction) => {
        const queryable: Queryable = {
          async query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
            const res = await tx.query<R>(sql, params as unknown[] | undefined);
            return toResult(res);
          },
        };
        return fn(queryable);
      }),
    );
  }

  async close(): Promise<void> {
    await this.exclusive(() => this.db.close());
  }
}

/**
 * PGlite reports `affectedRows: 0` for a SELECT; `pg`'s rowCount is the
 * number of rows returned. Statements that return rows count their rows.
 */
function toResult<R>(res: Results<R>): QueryResult<R> {
  return { rows: res.rows, rowCount: res.fields.length > 0 ? res.rows.length : (res.affectedRows ?? 0) };
}

/** Opens (creating if needed) an embedded database in `dataDir`; in memory when omitted. */
export async function openPGlite(dataDir?: string): Promise<PGliteClient> {
  const db = dataDir === undefined ? new PGlite() : new PGlite(dataDir);
  await db.waitReady;
  return new PGliteClient(db);
}
