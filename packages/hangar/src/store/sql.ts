/**
 * The store port: the narrowest SQL capability Hangar needs. Both adapters
 * (Postgres over `pg`, embedded PGlite) implement it, and every repository in
 * `runs/`, `steps/`, `events/` is written once against it.
 */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

export interface SqlClient extends Queryable {
  readonly dialect: 'postgres' | 'pglite';
  /** Runs `fn` in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * Put at the start of a statement's text, asks for Postgres's generic plan
 * (planned once per connection) instead of a custom plan per execution.
 * Postgres's default keeps re-planning a statement whose generic plan it
 * estimates as dearer than the custom ones, and for the claim (a large
 * statement over a small, fast-changing queue) the planning costs more than
 * the execution: about 3 ms against 1.2 ms (bench/engine). The Postgres adapter sends such statements
 * to connections of its own with `plan_cache_mode = force_generic_plan`;
 * inside a transaction, and on PGlite, the marker is only a comment.
 */
export const GENERIC_PLAN = '/* hangar: generic plan */';

/** Postgres's SQLSTATE for a unique violation. */
export const UNIQUE_VIOLATION = '23505';

export function sqlState(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code;
  return undefined;
}

/** Serializes a JSON parameter; pass it with a `::jsonb` cast. */
export function json(value: unknown): string | null {
  return value === undefined ? null : JSON.stringify(value);
}

/** JSON with object keys sorted at every depth: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value)) ?? 'null';
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value === 'object' && value !== null) {
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort())
      sorted[key] = sortKeys((value as Record<string, unknown>)[key]);
    return sorted;
  }
  return value;
}

/** Timestamps come back as `Date` from both adapters; the API speaks ISO strings. */
export function iso(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  return new Date(String(value)).toISOString();
}
