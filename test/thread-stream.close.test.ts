/**
 * Backpressure on the thread stream (docs/streaming.md, "Backpressure,
 * heartbeats and close codes"): a WebSocket client that reads nothing while
 * a run streams tens of megabytes. The gateway (a real process) must not
 * buffer the stream: its RSS stays under a bound well below the stream's
 * size; the client is closed with the `slow` code (4001) once it reads
 * again, and a reconnect from its last position gets every remaining event
 * exactly once. The SSE variant ends with a final `event: close`.
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { createTestPostgres, type HangarProcess } from 'hangar/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sseFrames } from '../packages/hangar/src/cli/run.ts';
import { api, Cleanup, explained, FIXTURES, pgEnv, poll, STARTUP_MS, waitForTerminal } from './helpers.ts';
import { StreamClient, strictlyIncreasing } from './thread-stream-client.ts';

const STREAM_CONFIG = join(FIXTURES, 'stream.config.ts');
/** The run: 320 events of 80 kB, ~26 MB, far more than the kernel's socket buffers hold. */
const COUNT = 320;
const BYTES = 80_000;
/** Gateway caps for the test: soft 256 kB, hard 2 MiB, a queue must drain within 8 s (longer than the run takes to emit everything: the whole stream passes while the client is paused). */
const STREAM_ENV = {
  HANGAR_STREAM_SOFT_CAP_BYTES: String(256 * 1024),
  HANGAR_STREAM_HARD_CAP_BYTES: String(2 * 1024 * 1024),
  HANGAR_STREAM_WRITE_TIMEOUT_MS: '8000',
};
/**
 * The documented bound (docs/streaming.md): a slow client costs the gateway
 * its hard cap plus one log page (100 events) and the follower's queue; the
 * RSS growth over the idle gateway stays under 12 MB + 100 events' size here
 * (20 MB), below the 26 MB stream it did not buffer.
 */
const RSS_GROWTH_BOUND = 20 * 1024 * 1024;

const cleanup = new Cleanup();
let base = '';
let gateway: HangarProcess;
let worker: HangarProcess;

const rssOf = (pid: number): number => {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? 0) * 1024;
};

beforeAll(async () => {
  const store = cleanup.store(await createTestPostgres());
  gateway = cleanup.spawn(
    ['gateway', '--port', '0', '--host', '127.0.0.1', '--auth', 'none', '--config', STREAM_CONFIG],
    { env: pgEnv(store, STREAM_ENV) },
  );
  worker = cleanup.spawn(['worker', '--config', STREAM_CONFIG], { env: pgEnv(store) });
  base = String((await gateway.waitFor(/Server listening at (http:\/\/[^\s"]+)/, STARTUP_MS))[1]);
  await worker.waitFor(/worker started/, STARTUP_MS);
}, 120_000);

afterAll(() => cleanup.run());

const newThread = async () => (await api<{ thread_id: string }>(base, 'POST', '/threads', {})).body.thread_id;

it('a WebSocket client that reads nothing is closed `slow` with bounded gateway memory, then catches up', async () => {
  const threadId = await newThread();
  const client = await StreamClient.open(base, threadId);
  const sub = await client.subscribe({ channels: ['custom', 'lifecycle'] });
  const pid = gateway.child.pid as number;
  const idleRss = rssOf(pid);
  // Stop reading: the kernel buffers fill, then the gateway's send queue.
  (client.socket as unknown as { _socket: Socket })._socket.pause();
  const closedBefore = gateway.output().split('reason":"slow"').length;
  const run = (
    await api<{ run_id: string }>(base, 'POST', `/threads/${threadId}/runs`, {
      assistant_id: 'firehose',
      input: { count: COUNT, bytes: BYTES },
    })
  ).body;
  let peakRss = idleRss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, rssOf(pid));
  }, 50);
  try {
    await explained(
      waitForTerminal(base, { thread_id: threadId, run_id: run.run_id }, 60_000),
      gateway,
      worker,
    );
    await explained(
      poll('the gateway to close the slow client', () =>
        gateway.output().split('reason":"slow"').length > closedBefore ? true : undefined,
      ),
      gateway,
    );
  } finally {
    clearInterval(sampler);
  }
  expect(peakRss - idleRss, `peak ${peakRss} idle ${idleRss}`).toBeLessThan(RSS_GROWTH_BOUND);

  // Reading again, the client gets what was queued, then the slow close.
  (client.socket as unknown as { _socket: Socket })._socket.resume();
  expect(await client.waitForClose()).toBe(4001);
  expect(client.closeReason).toBe('slow');
  const seen = client.events.filter((e) => e.method === 'custom');
  expect(seen.length).toBeLessThan(COUNT);
  expect(strictlyIncreasing(client.events)).toBe(true);
  const last = client.events.at(-1);

  // Resume from the last position: every remaining event, once.
  const again = await StreamClient.open(base, threadId);
  const restored = await again.command('subscription.reconnect', {
    lastEventId: last?.eventId ?? '0',
    subscriptions: [sub.id],
  });
  expect(restored).toMatchObject({ type: 'success', result: { restored: true } });
  await again.waitForEnd(run.run_id, 60_000);
  const all = [...client.events, ...again.events];
  expect(strictlyIncreasing(all)).toBe(true);
  expect(
    all.filter((e) => e.method === 'custom').map((e) => (e.params.data.payload as { i: number }).i),
  ).toEqual(Array.from({ length: COUNT }, (_, i) => i));
  again.close();
}, 120_000);

it('an SSE client that reads nothing gets a final `close` event (slow) and resumes with Last-Event-ID', async () => {
  const threadId = await newThread();
  const closedBefore = gateway.output().split('reason":"slow"').length;
  const controller = new AbortController();
  const res = await fetch(`${base}/threads/${threadId}/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ channels: ['custom', 'lifecycle'] }),
    signal: controller.signal,
  });
  expect(res.status).toBe(200);
  // Not reading the body yet: fetch pulls a little, then the kernel buffers fill.
  const run = (
    await api<{ run_id: string }>(base, 'POST', `/threads/${threadId}/runs`, {
      assistant_id: 'firehose',
      input: { count: COUNT, bytes: BYTES },
    })
  ).body;
  await waitForTerminal(base, { thread_id: threadId, run_id: run.run_id }, 60_000);
  await explained(
    poll('the gateway to end the slow SSE stream', () =>
      gateway.output().split('reason":"slow"').length > closedBefore ? true : undefined,
    ),
    gateway,
  );
  const ids: number[] = [];
  let close: Record<string, unknown> | undefined;
  for await (const frame of sseFrames(res.body as ReadableStream<Uint8Array>)) {
    if (frame.event === 'close') close = JSON.parse(frame.data) as Record<string, unknown>;
    else if (frame.id !== undefined) ids.push(Number(frame.id));
  }
  expect(close).toEqual({ type: 'close', code: 4001, reason: 'slow', reconnect: true });
  expect(ids.length).toBeLessThan(COUNT + 1);

  const rest: number[] = [];
  const resumed = await fetch(`${base}/threads/${threadId}/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'last-event-id': String(ids.at(-1) ?? 0) },
    body: JSON.stringify({ channels: ['custom', 'lifecycle'] }),
    signal: controller.signal,
  });
  for await (const frame of sseFrames(resumed.body as ReadableStream<Uint8Array>)) {
    if (frame.id === undefined) continue;
    rest.push(Number(frame.id));
    if ((JSON.parse(frame.data) as { params: { data: { terminal?: boolean } } }).params.data.terminal) break;
  }
  controller.abort();
  const all = [...ids, ...rest];
  expect(new Set(all).size).toBe(all.length);
  expect(all).toEqual([...all].sort((a, b) => a - b));
  expect(all).toHaveLength(COUNT + 2); // every custom event, started and completed
}, 120_000);

it('SIGTERM: connected clients get the reconnect code (WebSocket 4000, SSE final close) and the gateway exits 0', async () => {
  const threadId = await newThread();
  const sockets = await Promise.all(Array.from({ length: 5 }, () => StreamClient.open(base, threadId)));
  for (const s of sockets) await s.subscribe({ channels: ['lifecycle'] });
  const res = await fetch(`${base}/threads/${threadId}/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ channels: ['lifecycle'] }),
  });
  expect(res.status).toBe(200);
  const frames = (async () => {
    const out: Array<{ event: string; data: string }> = [];
    for await (const frame of sseFrames(res.body as ReadableStream<Uint8Array>)) out.push(frame);
    return out;
  })();

  const exited = gateway.kill('SIGTERM');
  expect(await Promise.all(sockets.map((s) => s.waitForClose()))).toEqual([4000, 4000, 4000, 4000, 4000]);
  expect(sockets.map((s) => s.closeReason)).toEqual(Array(5).fill('reconnect'));
  const last = (await frames).at(-1);
  expect(last?.event).toBe('close');
  expect(JSON.parse(last?.data ?? '{}')).toEqual({
    type: 'close',
    code: 4000,
    reason: 'reconnect',
    reconnect: true,
  });
  expect(await explained(exited, gateway)).toBe(0);
}, 60_000);
