/**
 * Durable sleeps survive the process, and thread state carries across runs,
 * both observed through a real `hangar dev` over HTTP.
 */
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import {
  api,
  Cleanup,
  count,
  createRun,
  explained,
  getRun,
  poll,
  readStream,
  seededDataDir,
  startDev,
  waitForTerminal,
} from './helpers.ts';

const cleanup = new Cleanup();
/** Several `hangar dev` starts (PGlite in WebAssembly) can take a while on a loaded two-core machine. */
const SLOW = { timeout: 90_000 };
afterEach(() => cleanup.run());

for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
  test(
    `a run sleeping when hangar dev gets ${signal} wakes after a restart, steps not repeated`,
    SLOW,
    async () => {
      const tmp = cleanup.tmpDir();
      const dataDir = await seededDataDir(cleanup);
      const file = join(tmp, 'effects.log');
      const env = { HANGAR_LEASE_MS: '2000' };

      const first = await startDev(cleanup, { dataDir, env });
      const run = await createRun(first.url, 'sleeper', { file, sleep: '2s' });
      await explained(
        poll('the run to be sleeping', async () =>
          (await getRun(first.url, run)).status === 'waiting' ? true : undefined,
        ),
        first.proc,
      );
      expect(count(file, `${run.run_id}:before:done`)).toBe(1);
      const exitCode = await first.proc.kill(signal);
      if (signal === 'SIGTERM') expect(exitCode, first.proc.output()).toBe(0);

      const second = await startDev(cleanup, { dataDir, env });
      const view = await explained(waitForTerminal(second.url, run, 20_000), first.proc, second.proc);
      expect(view.status, JSON.stringify(view.error)).toBe('success');
      const output = view.output as { before: number; after: number };

      const frames = await readStream(second.url, run);
      const waiting = frames
        .filter((f) => f.event === 'lifecycle')
        .map((f) => JSON.parse(f.data) as { event: string; until?: string })
        .find((d) => d.event === 'run.waiting');
      if (waiting?.until === undefined) throw new Error('no run.waiting event in the stream');
      expect(output.after).toBeGreaterThanOrEqual(Date.parse(waiting.until));
      expect(Date.parse(waiting.until) - output.before).toBeGreaterThanOrEqual(2_000);

      expect(count(file, `${run.run_id}:before:done`)).toBe(1);
      expect(count(file, `${run.run_id}:after:done`)).toBe(1);
    },
  );
}

test('thread state set by one run is seen by the next run on the thread and by GET /state', async () => {
  const server = await startDev(cleanup, { dataDir: await seededDataDir(cleanup) });
  const thread = await api<{ thread_id: string }>(server.url, 'POST', '/threads', {});
  expect(thread.status).toBe(200);
  const threadId = thread.body.thread_id;

  const first = await createRun(server.url, 'counter', { tag: 'a' }, threadId);
  expect(first.thread_id).toBe(threadId);
  const firstView = await waitForTerminal(server.url, first);
  expect(firstView.status).toBe('success');
  expect(firstView.output).toEqual({ seen: {}, count: 1 });

  const second = await createRun(server.url, 'counter', { tag: 'b' }, threadId);
  const secondView = await waitForTerminal(server.url, second);
  expect(secondView.status).toBe('success');
  expect(secondView.output).toEqual({ seen: { count: 1, tags: ['a'] }, count: 2 });

  const state = await api<{ values: unknown; checkpoint: { thread_id: string } }>(
    server.url,
    'GET',
    `/threads/${threadId}/state`,
  );
  expect(state.status).toBe(200);
  expect(state.body.values).toEqual({ count: 2, tags: ['a', 'b'] });
  expect(state.body.checkpoint.thread_id).toBe(threadId);

  // Each run's stream is its own contiguous slice of the thread's log, and resuming a finished
  // run's stream at its end ends at once even though the thread has later events.
  const firstIds = (await readStream(server.url, first)).flatMap((f) =>
    f.id === undefined ? [] : [Number(f.id)],
  );
  const secondIds = (await readStream(server.url, second)).flatMap((f) =>
    f.id === undefined ? [] : [Number(f.id)],
  );
  expect(firstIds[0]).toBe(1);
  expect(secondIds[0]).toBe((firstIds[firstIds.length - 1] ?? 0) + 1);
  const resumedAtEnd = await readStream(server.url, first, {
    lastEventId: String(firstIds[firstIds.length - 1]),
    timeoutMs: 5_000,
  });
  expect(resumedAtEnd.filter((f) => f.id !== undefined)).toEqual([]);
});
