/**
 * The crash-loop cap and the redrive, with real processes: a step SIGKILLs
 * its `hangar worker` in every attempt (as an out-of-memory kill would); each
 * time a fresh worker is started, and its sweeper re-queues the run until the
 * run has used HANGAR_MAX_RUN_ATTEMPTS attempts, then makes it a dead letter
 * instead of feeding it to workers forever. Fixed (`hangar dead-letters
 * redrive` with a patched input), the run resumes from its checkpoint on the
 * surviving worker: the step before the poisoned one never runs again.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestPostgres } from 'hangar/testing';
import { afterEach, expect, test } from 'vitest';
import {
  Cleanup,
  count,
  createRun,
  FIXTURES,
  lines,
  pgEnv,
  poll,
  readStream,
  STARTUP_MS,
  waitForTerminal,
} from './helpers.ts';

const CONFIG = join(FIXTURES, 'dead-letters.config.ts');
const MAX_ATTEMPTS = 3;

const cleanup = new Cleanup();
/** Five processes start one after another on a possibly loaded two-core machine. */
const SLOW = { timeout: 120_000 };
afterEach(() => cleanup.run());

test(
  'a run that kills its worker every attempt becomes a dead letter at the cap; redriven, it completes',
  SLOW,
  async () => {
    const store = cleanup.store(await createTestPostgres());
    const dir = cleanup.tmpDir();
    const file = join(dir, 'effects.log');
    const flag = join(dir, 'poison.flag');
    writeFileSync(flag, 'kill the worker\n');

    const gatewayProc = cleanup.spawn(
      ['gateway', '--port', '0', '--host', '127.0.0.1', '--auth', 'none', '--config', CONFIG],
      { env: pgEnv(store) },
    );
    const url = String((await gatewayProc.waitFor(/Server listening at (http:\/\/[^\s"]+)/, STARTUP_MS))[1]);
    const workerEnv = pgEnv(store, {
      HANGAR_LEASE_MS: '2000',
      HANGAR_MAX_RUN_ATTEMPTS: String(MAX_ATTEMPTS),
    });
    const startWorker = async () => {
      const proc = cleanup.spawn(['worker', '--config', CONFIG], { env: workerEnv });
      await proc.waitFor(/worker started/, STARTUP_MS);
      return proc;
    };
    const cli = async (args: string[]) => {
      const proc = cleanup.spawn(['dead-letters', ...args, '--url', url]);
      const timer = setTimeout(() => void proc.kill('SIGKILL'), 30_000);
      const code = await proc.exited.finally(() => clearTimeout(timer));
      return { code, output: proc.output() };
    };

    const run = await createRun(url, 'poisoned', { file, flag });
    // A client follows the run through the crash loop: its stream ends with the dead-letter event.
    const streamed = readStream(url, run, { timeoutMs: 100_000 }).then(
      (frames) => ({ frames }),
      (error: unknown) => ({ error }),
    );
    const killed = `${run.run_id}:poison:killed:`;
    // Each worker claims the run (the later ones after their sweeper re-queued it) and dies in it.
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const worker = await startWorker();
      await poll(
        `worker ${attempt} to be killed by the poisoned step`,
        () => (worker.child.exitCode !== null || worker.child.signalCode !== null ? true : undefined),
        { timeoutMs: 30_000 },
      );
      expect(worker.child.signalCode).toBe('SIGKILL');
      expect(lines(file).filter((l) => l.startsWith(killed))).toHaveLength(attempt);
    }

    // The next worker's sweeper finds the cap reached: a dead letter, not a fourth kill.
    const survivor = await startWorker();
    const dead = await waitForTerminal(url, run, 30_000);
    expect(dead.status).toBe('dead');
    expect(dead.error).toMatchObject({
      code: 'attempts_exhausted',
      details: { attempts: MAX_ATTEMPTS, max_attempts: MAX_ATTEMPTS },
    });
    const terminal = await store.db.query<{ data: { status: string; terminal: boolean } }>(
      `SELECT data FROM events WHERE run_id = $1 AND channel = 'lifecycle' ORDER BY seq DESC LIMIT 1`,
      [run.run_id],
    );
    expect(terminal.rows[0]?.data).toMatchObject({ status: 'dead', terminal: true });
    const stream = await streamed;
    if ('error' in stream) throw stream.error;
    const last = stream.frames[stream.frames.length - 1];
    expect(last?.event).toBe('lifecycle');
    expect(JSON.parse(last?.data ?? '{}')).toMatchObject({
      event: 'run.completed',
      status: 'dead',
      terminal: true,
      error: { code: 'attempts_exhausted' },
    });

    const inspected = await cli(['inspect', run.run_id]);
    expect(inspected.code, inspected.output).toBe(0);
    expect(inspected.output).toContain('error: attempts_exhausted');
    expect(inspected.output).toContain(`attempts: ${MAX_ATTEMPTS}`);
    expect(inspected.output).toContain('#0 prepare  completed  attempt 1');

    // The fix: a patched input whose flag file does not exist; the run resumes on the survivor.
    const fixed = JSON.stringify({ file, flag: join(dir, 'no-such.flag') });
    const redriven = await cli(['redrive', run.run_id, '--input', fixed]);
    expect(redriven.code, redriven.output).toBe(0);
    expect(redriven.output).toContain(`redrove run ${run.run_id}`);
    const done = await waitForTerminal(url, run, 30_000);
    expect(done.status, JSON.stringify(done.error)).toBe('success');
    expect(done.output).toEqual({ prepared: 'prepared' });
    expect(survivor.child.exitCode).toBeNull();

    // `prepare` completed before the crash loop and never ran again; the rest ran once.
    expect(count(file, `${run.run_id}:prepare`)).toBe(1);
    expect(lines(file).filter((l) => l.startsWith(killed))).toHaveLength(MAX_ATTEMPTS);
    expect(count(file, `${run.run_id}:poison`)).toBe(1);
    expect(count(file, `${run.run_id}:finish`)).toBe(1);
    const attempts = await store.db.query<{ attempt: number }>('SELECT attempt FROM runs WHERE run_id = $1', [
      run.run_id,
    ]);
    expect(Number(attempts.rows[0]?.attempt)).toBe(1);
  },
);
