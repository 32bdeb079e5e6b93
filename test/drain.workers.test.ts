/**
 * Graceful drain with real processes: a `hangar worker` that gets SIGTERM in
 * the middle of a step lets that step finish and checkpoint, hands the run
 * back without counting the attempt, and exits 0; another worker continues
 * at the next step, and no step runs twice.
 */
import { join } from 'node:path';
import { createTestPostgres } from 'hangar/testing';
import { afterEach, expect, test } from 'vitest';
import {
  Cleanup,
  count,
  createRun,
  lines,
  ownerPid,
  poll,
  startGateway,
  startWorker,
  waitForTerminal,
} from './helpers.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const STEPS = 4;

test('SIGTERM: the step in flight finishes, the run is handed back at the step boundary, the worker exits 0', {
  timeout: 90_000,
}, async () => {
  const store = cleanup.store(await createTestPostgres());
  const file = join(cleanup.tmpDir(), 'effects.log');
  const gateway = await startGateway(cleanup, store);
  const workers = await Promise.all([startWorker(cleanup, store), startWorker(cleanup, store)]);
  const run = await createRun(gateway.url, 'steps', { file, steps: STEPS, stepMs: 2_000 });
  await poll('the run to be inside step 1', () =>
    lines(file).some((l) => l.startsWith(`${run.run_id}:1:started:`)) ? true : undefined,
  );
  const owner = await store.db.query<{ lease_owner: string }>(
    'SELECT lease_owner FROM runs WHERE run_id = $1',
    [run.run_id],
  );
  const drained = workers.find((w) => w.child.pid === ownerPid(owner.rows[0]?.lease_owner ?? ''));
  const other = workers.find((w) => w !== drained);
  if (drained === undefined || other === undefined) throw new Error('the lease owner is not a worker');

  const code = await drained.kill('SIGTERM');
  expect(code, drained.output()).toBe(0);
  expect(drained.output()).toMatch(/handed back at a step boundary/);

  const view = await waitForTerminal(gateway.url, run, 30_000);
  expect(view.status, JSON.stringify(view.error)).toBe('success');
  // Every step started once and finished once: the drained worker finished the step it was in
  // (the step it stopped after is its last), the other worker did the rest.
  const started = lines(file).filter((l) => l.startsWith(`${run.run_id}:`) && l.includes(':started:'));
  expect(started).toHaveLength(STEPS);
  const byDrained = started.filter((l) => l.endsWith(`:${drained.child.pid}`));
  const byOther = started.filter((l) => l.endsWith(`:${other.child.pid}`));
  expect(byDrained.length).toBeGreaterThanOrEqual(2);
  expect(byOther.length).toBeGreaterThanOrEqual(1);
  expect(started).toEqual([...byDrained, ...byOther]);
  for (let i = 0; i < STEPS; i++) expect(count(file, `${run.run_id}:${i}:done`)).toBe(1);
  // Handing back does not count an attempt: the run finished on its first.
  const final = await store.db.query<{ attempt: number }>('SELECT attempt FROM runs WHERE run_id = $1', [
    run.run_id,
  ]);
  expect(Number(final.rows[0]?.attempt)).toBe(1);
});
