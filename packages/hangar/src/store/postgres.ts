import { createHash } from 'node:crypto';
import pg from 'pg';
import { GENERIC_PLAN, type Queryable, type QueryResult, type SqlClient } from './sql.ts';

// int8 (seq, counters) fits comfortably in a double for any realistic log.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export interface PostgresOptions {
  connectionString: string;
  /** Schema to use (created if missing); tests use one per suite. Defaults to `public`. */
  schema?: string;
  /** Pool size. */
  max?: number;
  applicationName?: string;
  /**
   * Use named (server-side prepared) statements for parameterized queries
   * (default true): Postgres parses and plans each once per connection. Turn
   * off behind a pooler that can't track them (PgBouncer in transaction mode
   * before 1.21, or without `max_prepared_statements`).
   */
  preparedStatements?: boolean;
}

const statementNames = new Map<string, string>();

/**
 * A parameterized query as `pg` takes it, named by a hash of its text when
 * prepared statements are on: the same text always maps to the same name, so
 * each connection prepares it once.
 */
function toQueryConfig(
  sql: string,
  params: readonly unknown[] | undefined,
  prepared: boolean,
): pg.QueryConfig {
  if (!prepared || params === undefined || params.length === 0)
    return { text: sql, values: params as unknown[] };
  let name = statementNames.get(sql);
  if (name === undefined) {
    name = `hangar_${createHash('sha1').update(sql).digest('hex').slice(0, 20)}`;
    if (statementNames.size < 10_000) statementNames.set(sql, name);
  }
  return { name, text: sql, values: params as unknown[] };
}

class PoolClientQueryable implements Queryable {
  constructor(
    private readonly client: pg.PoolClient,
    private readonly prepared: boolean,
  ) {}
  async query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    const res = await this.client.query(toQueryConfig(sql, params, this.prepared));
    return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
  }
}

export class PostgresClient implements SqlClient {
  readonly dialect = 'postgres' as const;
  readonly pool: pg.Pool;
  readonly schema: string;
  private readonly prepared: boolean;
  /** Connections for GENERIC_PLAN statements, opened on first use. */
  private genericPool: pg.Pool | undefined;
  private readonly poolConfig: pg.PoolConfig;

  constructor(options: PostgresOptions) {
    this.schema = options.schema ?? 'public';
    this.prepared = options.preparedStatements ?? true;
    if (!/^[a-z_][a-z0-9_]*$/.test(this.schema)) throw new Error(`invalid schema name "${this.schema}"`);
    this.poolConfig = {
      connectionString: options.connectionString,
      max: options.max ?? 10,
      application_name: options.applicationName ?? 'hangar',
      // JIT off: Hangar's statements are short and many; compiling one (the claim's plan can cost
      // enough to trigger it) takes far longer than running it.
      options: `-c search_path=${this.schema} -c jit=off`,
    };
    this.pool = new pg.Pool(this.poolConfig);
    // An idle client that loses its connection must not crash the process; the pool replaces it.
    this.pool.on('error', () => {});
  }

  async query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    const pool = this.prepared && sql.startsWith(GENERIC_PLAN) ? this.generic() : this.pool;
    const res = await pool.query(toQueryConfig(sql, params, this.prepared));
    return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
  }

  private generic(): pg.Pool {
    if (this.genericPool === undefined) {
      this.genericPool = new pg.Pool({
        ...this.poolConfig,
        max: 2,
        options: `${this.poolConfig.options} -c plan_cache_mode=force_generic_plan`,
      });
      this.genericPool.on('error', () => {});
    }
    return this.genericPool;
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(new PoolClientQueryable(client, this.prepared));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.end(), this.genericPool?.end()]);
  }
}

export async function openPostgres(options: PostgresOptions): Promise<PostgresClient> {
  const client = new PostgresClient(options);
  if (client.schema !== 'public') await client.query(`CREATE SCHEMA IF NOT EXISTS ${client.schema}`);
  return client;
}
