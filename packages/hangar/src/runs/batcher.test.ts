import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isHangarError } from '../errors.ts';
import type { SqlClient } from '../store/sql.ts';
import { createTestStore, STORE_KINDS, type TestStore } from '../testing/index.ts';
import { RunCreateBatcher } from './batcher.ts';
import { type CreateRunInput, getRun } from './repository.ts';

const ASSISTANT = '00000000-0000-4000-8000-00000000a551';

/** Counts the statements a client runs: group commit means fewer statements than creates. */
function counting(db: SqlClient): { db: SqlClient; statements: () => number } {
  let statements = 0;
  const wrapped = new Proxy(db, {
    get(target, prop, receiver) {
      if (prop === 'query') {
        return (...args: Parameters<SqlClient['query']>) => {
          statements++;
          return target.query(...args);
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { db: wrapped, statements: () => statements };
}

const input = (n: number, extra: Partial<CreateRunInput> = {}): CreateRunInput => ({
  tenantId: 'default',
  agent: 'echo',
  assistantId: ASSISTANT,
  input: { n },
  metadata: { n },
  ...extra,
});

describe.each(STORE_KINDS)('group commit of stateless creates (%s)', (kind) => {
  let store: TestStore;

  beforeAll(async () => {
    store = await createTestStore(kind);
  });
  afterAll(async () => {
    await store?.dispose();
  });

  it('writes concurrent creates in shared statements, each run with its own new thread', async () => {
    const { db, statements } = counting(store.db);
    const batcher = new RunCreateBatcher(db, { maxInFlight: 1 });
    const runs = await Promise.all(Array.from({ length: 50 }, (_, n) => batcher.create(input(n))));
    expect(statements()).toBeLessThan(10);
    expect(new Set(runs.map((r) => r.run_id)).size).toBe(50);
    expect(new Set(runs.map((r) => r.thread_id)).size).toBe(50);
    for (const [n, run] of runs.entries()) {
      expect(run).toMatchObject({ status: 'pending', input: { n }, metadata: { n }, agent: 'echo' });
      expect(await getRun(store.db, 'default', run.run_id)).toMatchObject({ input: { n } });
    }
    const threads = await store.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM threads WHERE thread_id = ANY($1::uuid[]) AND metadata = '{"stateless": true}'`,
      [runs.map((r) => r.thread_id)],
    );
    expect(threads.rows[0]?.n).toBe(50);
  });

  it('gives every create of a spoiled batch its own answer', async () => {
    const batcher = new RunCreateBatcher(store.db, { maxInFlight: 1 });
    const taken = randomUUID();
    const first = await batcher.create(input(1, { runId: taken }));
    // The same run id again with a different request, amid good creates: only that one fails.
    const results = await Promise.allSettled([
      batcher.create(input(2)),
      batcher.create(input(3, { runId: taken })),
      batcher.create(input(4)),
      batcher.create(input(1, { runId: taken })), // the same request again: answers the first run
    ]);
    expect(results[0]).toMatchObject({ status: 'fulfilled', value: { input: { n: 2 } } });
    expect(results[2]).toMatchObject({ status: 'fulfilled', value: { input: { n: 4 } } });
    expect(results[1]?.status).toBe('rejected');
    expect(isHangarError((results[1] as PromiseRejectedResult).reason, 'conflict')).toBe(true);
    expect(results[3]).toMatchObject({ status: 'fulfilled', value: { run_id: first.run_id } });
  });

  it('takes only creates that write nothing but a run and its new thread', () => {
    expect(RunCreateBatcher.accepts(input(1))).toBe(true);
    expect(RunCreateBatcher.accepts(input(1, { threadId: randomUUID() }))).toBe(false);
    expect(RunCreateBatcher.accepts(input(1, { webhook: 'https://example.com/hook' }))).toBe(false);
  });
});
