/**
 * Crash → resume across processes: two `hangar worker`s and a `hangar gateway`
 * on one Postgres schema; the worker holding a run is SIGKILLed in the middle
 * of a step, and the other worker must finish the run from its checkpoints.
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
  readStream,
  startGateway,
  startWorker,
  waitForTerminal,
} from './helpers.ts';

const LEASE_MS = 2_000;
/** Sweep + claim poll intervals (1 s each by default) plus a loaded CI machine. */
const SLACK_MS = 8_000;
const STEPS = 3;

const cleanup = new Cleanup();
/** Three processes start on a possibly loaded two-core machine. */
const SLOW = { timeout: 90_000 };
afterEach(() => cleanup.run());

test(
  'a SIGKILLed worker’s runs resume on the other worker; completed steps never run again',
  SLOW,
  async () => {
    const store = cleanup.store(await createTestPostgres());
    const file = join(cleanup.tmpDir(), 'effects.log');
    const gateway = await startGateway(cleanup, store);
    const env = { HANGAR_LEASE_MS: String(LEASE_MS) };
    const workerProcs = await Promise.all([
      startWorker(cleanup, store, env),
      startWorker(cleanup, store, env),
    ]);
    const workers = new Map(workerProcs.map((w) => [w.child.pid ?? -1, w]));

    const input = { file, steps: STEPS, stepMs: 1_500 };
    const runs = await Promise.all([1, 2, 3].map(() => createRun(gateway.url, 'steps', input)));
    const target = runs[0];
    if (target === undefined) throw new Error('no run');

    // A client follows the target run through the gateway across the crash. (The promise is
    // settled either way so a failure elsewhere does not also surface as an unhandled rejection.)
    const streamed = readStream(gateway.url, target, { timeoutMs: 40_000 }).then(
      (frames) => ({ frames }),
      (error: unknown) => ({ error }),
    );
    /** What the test saw, for failure messages. */
    const diagnose = async () => {
      const rows = await store.db.query('SELECT run_id, status, attempt, lease_owner, error FROM runs');
      const logs = [gateway.proc, ...workerProcs].map((p) => p.output().split('\n').slice(-15).join('\n'));
      return `runs: ${JSON.stringify(rows.rows)}\neffects:\n${lines(file).join('\n')}\n${logs.join('\n---\n')}`;
    };

    // Step 0 is checkpointed and step 1 is in flight (started, side effect not yet done).
    await poll('the target run to be inside step 1', () =>
      lines(file).some((l) => l.startsWith(`${target.run_id}:1:started:`)) ? true : undefined,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await diagnose()}`);
    });
    const owner = await store.db.query<{ lease_owner: string | null }>(
      'SELECT lease_owner FROM runs WHERE run_id = $1',
      [target.run_id],
    );
    const leaseOwner = owner.rows[0]?.lease_owner;
    if (leaseOwner == null) throw new Error('the running run has no lease owner');
    const victimPid = ownerPid(leaseOwner);
    const victim = workers.get(victimPid);
    const survivor = workerProcs.find((w) => w !== victim);
    if (victim === undefined || survivor === undefined) {
      throw new Error(
        `lease owner ${leaseOwner} is not one of the workers ${[...workers.keys()].join(', ')}`,
      );
    }
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    // The kill landed inside step 1's in-flight part: started on the victim, side effect not done.
    expect(count(file, `${target.run_id}:1:started:${victimPid}`)).toBe(1);
    expect(count(file, `${target.run_id}:1:done`)).toBe(0);

    // What was durably complete when the worker died: nothing it did later can commit.
    const completedAtKill = await store.db.query<{ run_id: string; step_index: number }>(
      `SELECT run_id, step_index FROM steps WHERE status = 'completed'`,
    );
    const completed = new Set(completedAtKill.rows.map((r) => `${r.run_id}:${r.step_index}`));
    expect(completed.has(`${target.run_id}:0`)).toBe(true);
    expect(completed.has(`${target.run_id}:1`)).toBe(false);
    const doneAtKill = new Set(lines(file).filter((l) => l.endsWith(':done')));

    // The survivor re-runs the interrupted step within the lease timeout + slack.
    await poll(
      'the surviving worker to resume the target run',
      () => (count(file, `${target.run_id}:1:started:${survivor.child.pid}`) === 1 ? true : undefined),
      { timeoutMs: LEASE_MS + SLACK_MS },
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await diagnose()}`);
    });
    expect(Date.now() - killedAt).toBeLessThan(LEASE_MS + SLACK_MS);

    for (const run of runs) {
      const view = await waitForTerminal(gateway.url, run, 30_000);
      expect(view.status, JSON.stringify(view.error)).toBe('success');
      expect(view.output).toEqual({ results: [0, 10, 20] });
    }

    // Exactly once for every step that had completed; the target's in-flight step ran twice but
    // its side effect (after the kill point) happened once.
    for (const run of runs) {
      for (let i = 0; i < STEPS; i++) {
        const key = `${run.run_id}:${i}`;
        const done = count(file, `${key}:done`);
        // A victim step killed between its side effect and its checkpoint may legitimately repeat it
        // (at-least-once outside a step's commit); every other step must have exactly one.
        const inCommitWindow = !completed.has(key) && doneAtKill.has(`${key}:done`);
        expect(done, `${key} side effect count`).toBe(inCommitWindow ? 2 : 1);
      }
    }
    const startedLines = lines(file).filter(
      (l) => l.startsWith(`${target.run_id}:`) && l.includes(':started:'),
    );
    expect(startedLines).toEqual([
      `${target.run_id}:0:started:${victimPid}`,
      `${target.run_id}:1:started:${victimPid}`,
      `${target.run_id}:1:started:${survivor.child.pid}`,
      `${target.run_id}:2:started:${survivor.child.pid}`,
    ]);
    const final = await store.db.query<{ attempt: number; lease_epoch: string }>(
      'SELECT attempt, lease_epoch FROM runs WHERE run_id = $1',
      [target.run_id],
    );
    expect(Number(final.rows[0]?.attempt)).toBe(2);

    // The gateway's stream spanned the crash: every seq once, in order, ending with success.
    const stream = await streamed;
    if ('error' in stream) throw stream.error;
    const frames = stream.frames;
    const ids = frames.filter((f) => f.id !== undefined).map((f) => Number(f.id));
    expect(ids.length).toBeGreaterThan(0);
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBe((ids[i - 1] ?? 0) + 1);
    const last = frames[frames.length - 1];
    expect(last?.event).toBe('lifecycle');
    expect(JSON.parse(last?.data ?? '{}')).toMatchObject({ status: 'success', terminal: true });
    const updates = frames.filter((f) => f.event === 'updates').map((f) => Object.keys(JSON.parse(f.data)));
    expect(updates).toEqual([['step-0'], ['step-1'], ['step-2']]);
  },
);

test(
  'a SIGKILLed worker’s run resumes when its Postgres session ends, long before its lease would expire',
  SLOW,
  async () => {
    const store = cleanup.store(await createTestPostgres());
    const file = join(cleanup.tmpDir(), 'effects.log');
    const gateway = await startGateway(cleanup, store);
    // A lease of a minute: only the liveness lock can bring the run back within the bound below.
    const env = { HANGAR_LEASE_MS: '60000' };
    const workerProcs = await Promise.all([
      startWorker(cleanup, store, env),
      startWorker(cleanup, store, env),
    ]);
    const run = await createRun(gateway.url, 'steps', { file, steps: 2, stepMs: 1_500 });
    await poll('the run to be inside step 0', () =>
      lines(file).some((l) => l.startsWith(`${run.run_id}:0:started:`)) ? true : undefined,
    );
    const owner = await store.db.query<{ lease_owner: string | null; lease_lock: string | null }>(
      'SELECT lease_owner, lease_lock FROM runs WHERE run_id = $1',
      [run.run_id],
    );
    const row = owner.rows[0];
    expect(row?.lease_lock, 'the claim stamps the worker’s liveness key').not.toBeNull();
    const victim = workerProcs.find((w) => w.child.pid === ownerPid(row?.lease_owner ?? ''));
    const survivor = workerProcs.find((w) => w !== victim);
    if (victim === undefined || survivor === undefined) throw new Error('lease owner is not a worker');
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    await poll(
      'the surviving worker to resume the run',
      () => (count(file, `${run.run_id}:0:started:${survivor.child.pid}`) === 1 ? true : undefined),
      { timeoutMs: 20_000 },
    );
    // Sweeps run every second; the rest is the session ending and a loaded machine.
    expect(Date.now() - killedAt).toBeLessThan(20_000);
    const view = await waitForTerminal(gateway.url, run, 30_000);
    expect(view.status, JSON.stringify(view.error)).toBe('success');
  },
);
