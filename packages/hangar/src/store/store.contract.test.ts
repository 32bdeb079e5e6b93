import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropSchema, STORE_KINDS, TEST_DATABASE_URL } from '../testing/db.ts';
import { loadMigrations, migrate } from './migrate.ts';
import { openPGlite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import { json, type SqlClient, sqlState, UNIQUE_VIOLATION } from './sql.ts';

/**
 * The contract every SqlClient adapter passes (STYLE.md, "Ports and adapters"):
 * the repositories are written once against the port, so the two adapters must
 * agree on parameters, types, transactions and isolation.
 *
 * This suite opens *unmigrated* stores (a fresh schema on Postgres, a fresh
 * in-memory PGlite): the migration test needs an empty database, and the other
 * tests only use scratch tables of their own.
 */
type Kind = (typeof STORE_KINDS)[number];

async function openEmptyStore(kind: Kind): Promise<{ db: SqlClient; dispose(): Promise<void> }> {
  if (kind === 'pglite') {
    const db = await openPGlite();
    return { db, dispose: () => db.close() };
  }
  const schema = `hangar_test_${randomBytes(6).toString('hex')}`;
  const db = await openPostgres({ connectionString: TEST_DATABASE_URL, schema, max: 10 });
  return {
    db,
    async dispose() {
      await db.close();
      await dropSchema(schema);
    },
  };
}

/** Resolves when `resolve` is called: lets a test hold a transaction open at a known point. */
function gate(): { promise: Promise<void>; open(): void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

let tableCounter = 0;

describe.each(STORE_KINDS)('SqlClient contract: %s', (kind) => {
  let db: SqlClient;
  let dispose: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const store = await openEmptyStore(kind);
    db = store.db;
    dispose = store.dispose;
  });

  afterAll(async () => {
    await dispose?.();
  });

  /** A scratch table of the test's own. */
  async function scratchTable(): Promise<string> {
    const name = `contract_${++tableCounter}`;
    await db.query(`CREATE TABLE ${name} (k text PRIMARY KEY, v jsonb, n bigint)`);
    return name;
  }

  async function keys(table: string): Promise<string[]> {
    const res = await db.query<{ k: string }>(`SELECT k FROM ${table} ORDER BY k`);
    return res.rows.map((r) => r.k);
  }

  it('reports its dialect', () => {
    expect(db.dialect).toBe(kind);
  });

  it('binds positional parameters and round-trips jsonb, bigint, null and timestamps', async () => {
    const value = {
      text: 'héllo "quoted" \\ backslash 🚀',
      nested: { list: [1, 2.5, -3, null, true, false], empty: {}, none: [] },
      big: 9_007_199_254_740_991,
    };
    const res = await db.query<{ j: unknown; b: number; t: string; z: unknown; ts: Date; s: unknown }>(
      `SELECT $1::jsonb AS j, $2::bigint AS b, $3::text AS t, $4::text AS z, now() AS ts,
         $5::jsonb AS s`,
      [json(value), 42, 'plain', null, json('just a string')],
    );
    expect(res.rowCount).toBe(1);
    const row = res.rows[0];
    expect(row?.j).toEqual(value);
    // int8 columns (seq, counters) come back as numbers from both adapters.
    expect(row?.b).toBe(42);
    expect(row?.t).toBe('plain');
    expect(row?.z).toBeNull();
    // iso() in sql.ts relies on both adapters returning Date for timestamptz.
    expect(row?.ts).toBeInstanceOf(Date);
    expect(row?.s).toBe('just a string');
  });

  it('reports rowCount for SELECT, INSERT, UPDATE and DELETE', async () => {
    const table = await scratchTable();
    const insert = await db.query(`INSERT INTO ${table} (k, n) VALUES ('a', 1), ('b', 2), ('c', 3)`);
    expect(insert.rowCount).toBe(3);
    expect((await db.query(`SELECT * FROM ${table} WHERE n >= 2`)).rowCount).toBe(2);
    expect((await db.query(`SELECT * FROM ${table} WHERE n > 100`)).rowCount).toBe(0);
    expect((await db.query(`UPDATE ${table} SET n = n + 1 WHERE k <> 'a'`)).rowCount).toBe(2);
    expect((await db.query(`UPDATE ${table} SET n = 0 WHERE k = 'nope'`)).rowCount).toBe(0);
    const returning = await db.query<{ k: string }>(`DELETE FROM ${table} WHERE k = 'b' RETURNING k`);
    expect(returning.rowCount).toBe(1);
    expect(returning.rows).toEqual([{ k: 'b' }]);
  });

  it('surfaces the SQLSTATE of a failed statement', async () => {
    const table = await scratchTable();
    await db.query(`INSERT INTO ${table} (k) VALUES ('dup')`);
    const err = await db.query(`INSERT INTO ${table} (k) VALUES ('dup')`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeDefined();
    expect(sqlState(err)).toBe(UNIQUE_VIOLATION);
  });

  it('commits a transaction when its function resolves, and returns its result', async () => {
    const table = await scratchTable();
    const result = await db.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${table} (k, v) VALUES ($1, $2::jsonb)`, ['one', json({ a: 1 })]);
      await tx.query(`INSERT INTO ${table} (k) VALUES ($1)`, ['two']);
      const inside = await tx.query(`SELECT k FROM ${table}`);
      return inside.rowCount;
    });
    expect(result).toBe(2);
    expect(await keys(table)).toEqual(['one', 'two']);
  });

  it('rolls back every statement when the function throws, and rethrows the same error', async () => {
    const table = await scratchTable();
    await db.query(`INSERT INTO ${table} (k, n) VALUES ('kept', 1)`);
    const boom = new Error('boom');
    const outcome = db.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${table} (k) VALUES ('lost')`);
      await tx.query(`UPDATE ${table} SET n = 99 WHERE k = 'kept'`);
      throw boom;
    });
    await expect(outcome).rejects.toBe(boom);
    expect(await keys(table)).toEqual(['kept']);
    const kept = await db.query<{ n: number }>(`SELECT n FROM ${table} WHERE k = 'kept'`);
    expect(kept.rows[0]?.n).toBe(1);
    // The store is usable afterwards (the connection went back clean).
    await db.transaction((tx) => tx.query(`INSERT INTO ${table} (k) VALUES ('after')`));
    expect(await keys(table)).toEqual(['after', 'kept']);
  });

  it('rolls back when a statement inside the transaction fails', async () => {
    const table = await scratchTable();
    await db.query(`INSERT INTO ${table} (k) VALUES ('dup')`);
    const outcome = db.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${table} (k) VALUES ('first')`);
      await tx.query(`INSERT INTO ${table} (k) VALUES ('dup')`);
    });
    await expect(outcome).rejects.toSatisfy((err) => sqlState(err) === UNIQUE_VIOLATION);
    expect(await keys(table)).toEqual(['dup']);
  });

  it('never runs a concurrent query inside an open transaction', async () => {
    // On PGlite (one connection) a query that slipped in between a transaction's
    // statements would be rolled back with it; on Postgres it has its own connection.
    const table = await scratchTable();
    const inside = gate();
    const issued = gate();
    const failing = db.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${table} (k) VALUES ('tx')`);
      inside.open();
      await issued.promise;
      throw new Error('roll back');
    });
    await inside.promise;
    const outside = db.query(`INSERT INTO ${table} (k) VALUES ('outside')`);
    issued.open();
    await expect(failing).rejects.toThrow('roll back');
    await outside;
    expect(await keys(table)).toEqual(['outside']);
  });

  it('never lets one transaction see or commit another one’s uncommitted writes', async () => {
    const table = await scratchTable();
    const bInside = gate();
    const aRead = gate();
    const b = db.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${table} (k) VALUES ('b')`);
      bInside.open();
      await aRead.promise;
      throw new Error('b rolls back');
    });
    // On PGlite B holds the only connection until it ends, so A starts afterwards;
    // on Postgres A runs while B is open. Either way A must not see 'b'.
    await bInside.promise;
    const a = db.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${table} (k) VALUES ('a')`);
      const seen = await tx.query<{ k: string }>(`SELECT k FROM ${table} ORDER BY k`);
      return seen.rows.map((r) => r.k);
    });
    aRead.open();
    await expect(b).rejects.toThrow('b rolls back');
    expect(await a).toEqual(['a']);
    expect(await keys(table)).toEqual(['a']);
  });

  it('keeps many concurrent transactions atomic and isolated', async () => {
    const table = await scratchTable();
    await db.query(`INSERT INTO ${table} (k, n) VALUES ('counter', 0)`);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 24 }, (_, i) =>
        db.transaction(async (tx) => {
          await tx.query(`INSERT INTO ${table} (k) VALUES ($1)`, [`row-${i}-a`]);
          // Yield to the event loop so other transactions get a chance to interleave.
          await new Promise((resolve) => setImmediate(resolve));
          await tx.query(`UPDATE ${table} SET n = n + 1 WHERE k = 'counter'`);
          await tx.query(`INSERT INTO ${table} (k) VALUES ($1)`, [`row-${i}-b`]);
          if (i % 3 === 0) throw new Error(`tx ${i} fails`);
        }),
      ),
    );
    const committed = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [i] : []));
    expect(committed).toHaveLength(16);
    const counter = await db.query<{ n: number }>(`SELECT n FROM ${table} WHERE k = 'counter'`);
    expect(counter.rows[0]?.n).toBe(16);
    const expected = committed.flatMap((i) => [`row-${i}-a`, `row-${i}-b`]).concat('counter');
    expect((await keys(table)).sort()).toEqual(expected.sort());
  });

  it('applies every migration once, even to concurrent migrators, and nothing the second time', async () => {
    const versions = (await loadMigrations()).map((m) => m.version);
    expect(versions.length).toBeGreaterThan(0);
    const [first, second] = await Promise.all([migrate(db), migrate(db)]);
    // Exactly one of the two concurrent migrators applied each migration.
    expect([...(first ?? []), ...(second ?? [])].sort((a, b) => a - b)).toEqual(versions);
    expect(await migrate(db)).toEqual([]);
    const recorded = await db.query<{ version: number }>(
      'SELECT version FROM schema_migrations ORDER BY version',
    );
    expect(recorded.rows.map((r) => r.version)).toEqual(versions);
    // The schema is really there (and seeded once).
    const tenants = await db.query<{ tenant_id: string }>('SELECT tenant_id FROM tenants');
    expect(tenants.rows).toEqual([{ tenant_id: 'default' }]);
  });
});
