/**
 * Crash → restart on embedded Postgres: `hangar dev` is SIGKILLed in the
 * middle of a step and started again on the same data directory; the run
 * finishes from its checkpoints.
 */
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import type { SseFrame } from '../packages/hangar/src/cli/run.ts';
import {
  Cleanup,
  count,
  createRun,
  explained,
  FIXTURE_CONFIG,
  lines,
  poll,
  readStream,
  seededDataDir,
  startDev,
  waitForTerminal,
} from './helpers.ts';

const LEASE_MS = 2_000;
const cleanup = new Cleanup();
/** Several `hangar dev` starts (PGlite in WebAssembly) can take a while on a loaded two-core machine. */
const SLOW = { timeout: 90_000 };
afterEach(() => cleanup.run());

test('hangar dev killed mid-step resumes the run after a restart on the same data dir', SLOW, async () => {
  const tmp = cleanup.tmpDir();
  const dataDir = await seededDataDir(cleanup);
  const file = join(tmp, 'effects.log');
  const env = { HANGAR_LEASE_MS: String(LEASE_MS) };

  const first = await startDev(cleanup, { dataDir, env });
  const run = await createRun(first.url, 'steps', { file, steps: 3, stepMs: 1_500 });
  // A client following the run when the process dies keeps what it received.
  const beforeKill = readStream(first.url, run, { tolerateDrop: true, timeoutMs: 60_000 });
  await poll('the run to be inside step 1', () =>
    lines(file).some((l) => l.startsWith(`${run.run_id}:1:started:`)) ? true : undefined,
  );
  await first.proc.kill('SIGKILL');
  // Killed inside step 1's in-flight part: step 0 done, step 1 started but its side effect not done.
  expect(count(file, `${run.run_id}:0:done`)).toBe(1);
  expect(count(file, `${run.run_id}:1:done`)).toBe(0);
  const firstPid = first.proc.child.pid;

  // The killed process's lock on the data dir is stale and taken over…
  const second = await startDev(cleanup, { dataDir, env });
  const secondPid = second.proc.child.pid;
  // …but a live one is not: a second `hangar dev` on the same data dir refuses to start.
  const intruder = cleanup.spawn(['dev', '--port', '0', '--data-dir', dataDir, '--config', FIXTURE_CONFIG]);
  expect(await intruder.exited, intruder.output()).toBe(2);
  expect(intruder.output().trim()).toMatch(
    new RegExp(`^hangar: data directory .* is in use by another "hangar dev" \\(pid ${secondPid}\\)`),
  );

  const view = await explained(waitForTerminal(second.url, run, 30_000), first.proc, second.proc);
  expect(view.status, JSON.stringify(view.error)).toBe('success');
  expect(view.output).toEqual({ results: [0, 10, 20] });
  expect(view.attempt).toBe(2);

  for (let i = 0; i < 3; i++) expect(count(file, `${run.run_id}:${i}:done`), `step ${i}`).toBe(1);

  // Every event the client saw before the crash is still in the log, unchanged (it was
  // published only after its commit), and it resumes from its last id with no gap or repeat.
  const parsed = (frames: SseFrame[]) =>
    frames.filter((f) => f.id !== undefined).map((f) => ({ ...f, data: JSON.parse(f.data) as unknown }));
  const seen = parsed(await beforeKill);
  expect(seen.map((f) => f.event)).toEqual(['lifecycle', 'updates']);
  const replay = parsed(await readStream(second.url, run));
  expect(replay.slice(0, seen.length)).toEqual(seen);
  const resumed = parsed(
    await readStream(second.url, run, { lastEventId: String(seen[seen.length - 1]?.id) }),
  );
  expect([...seen, ...resumed]).toEqual(replay);
  expect(replay.map((f) => Number(f.id))).toEqual(replay.map((_, i) => i + 1));
  expect(replay[replay.length - 1]?.data).toMatchObject({ status: 'success', terminal: true });
  expect(lines(file).filter((l) => l.includes(':started:'))).toEqual([
    `${run.run_id}:0:started:${firstPid}`,
    `${run.run_id}:1:started:${firstPid}`,
    `${run.run_id}:1:started:${secondPid}`,
    `${run.run_id}:2:started:${secondPid}`,
  ]);
});
