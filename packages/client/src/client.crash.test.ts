import { createTestPostgres } from 'hangar/testing';
import { afterEach, expect, test } from 'vitest';
import WebSocket from 'ws';
import { Cleanup, startGateway, startWorker } from '../../../test/helpers.ts';
import { HangarClient, type StreamEvent, VisibleOutput, type WebSocketConstructor } from './index.ts';
import { startProxy } from './testing/proxy.ts';

/**
 * The client across real crashes: a `hangar gateway` and a `hangar worker`
 * (real processes, the test's own Postgres schema) are SIGKILLed while the
 * client streams a run through a TCP proxy. A new worker resumes the run
 * (redoing the step that was cut short, after an `output.discarded` marker)
 * and a new gateway serves the stream; the client must reconnect, resume
 * exactly once in order, and show each of the run's outputs once.
 */
const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const LEASE_MS = 2_000;
const STEPS = 4;

test('gateway and worker SIGKILLed mid-run: the client resumes, and the redone step shows once', {
  timeout: 90_000,
}, async () => {
  const store = cleanup.store(await createTestPostgres());
  const env = { HANGAR_LEASE_MS: String(LEASE_MS) };
  const [gateway, worker] = await Promise.all([
    startGateway(cleanup, store),
    startWorker(cleanup, store, env),
  ]);
  const proxy = await startProxy(gateway.url);
  cleanup.add(() => proxy.close());
  const client = new HangarClient({
    baseUrl: proxy.url,
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
  });
  const thread = await client.createThread();
  // Each step emits `{ i }`, then spends 1 s before its checkpoint: the kill lands inside step 1.
  const run = await client.createRun(thread.thread_id, {
    assistant_id: 'chatty',
    input: { count: STEPS, gapMs: 1_000 },
  });
  // A thread stream (WebSocket) follows alongside, through the same crash.
  const threadStream = client.streamThread(thread.thread_id, { channels: ['custom', 'lifecycle'], since: 0 });
  const threadSeen = (async () => {
    const seen: StreamEvent[] = [];
    for await (const item of threadStream) {
      if (item.type !== 'event') throw new Error(`unexpected ${item.type} on the thread stream`);
      seen.push(item);
      if ((item.data as { terminal?: boolean }).terminal === true) return seen;
    }
    return seen;
  })();

  const view = new VisibleOutput();
  const events: StreamEvent[] = [];
  let killed: Promise<unknown> | undefined;
  for await (const item of client.streamRun(run.thread_id, run.run_id)) {
    expect(item.type).toBe('event');
    const event = item as StreamEvent;
    events.push(event);
    view.apply(event);
    if (killed === undefined && event.channel === 'custom' && (event.data as { i: number }).i === 1) {
      killed = (async () => {
        await Promise.all([worker.kill('SIGKILL'), gateway.proc.kill('SIGKILL')]);
        const [next] = await Promise.all([startGateway(cleanup, store), startWorker(cleanup, store, env)]);
        proxy.retarget(next.url);
      })();
    }
  }
  await killed;

  const custom = (list: readonly StreamEvent[]) =>
    list.flatMap((e) => (e.channel === 'custom' ? [(e.data as { i: number }).i] : []));
  // The log has the cut-short step's output twice, the marker between; the view shows it once.
  expect(custom(events)).toEqual([0, 1, 1, 2, 3]);
  const marker = events.find((e) => (e.data as { event?: string }).event === 'output.discarded');
  expect(marker?.data).toMatchObject({ run_id: run.run_id, reason: 'resume' });
  expect(custom(view.events(run.run_id))).toEqual([0, 1, 2, 3]);
  expect(events.at(-1)?.data).toMatchObject({ status: 'success', terminal: true });

  // Exactly once, in order: the same events as a fresh read of the log through the new gateway.
  const fresh: number[] = [];
  for await (const item of client.streamRun(run.thread_id, run.run_id))
    if (item.type === 'event') fresh.push(item.seq);
  expect(events.map((e) => e.seq)).toEqual(fresh);

  const seen = await threadSeen;
  expect(threadStream.stats.connections).toBeGreaterThanOrEqual(2);
  expect(seen.map((e) => e.seq)).toEqual(
    events.filter((e) => e.channel === 'custom' || e.channel === 'lifecycle').map((e) => e.seq),
  );
});
