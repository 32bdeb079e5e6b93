import { defineAgent } from 'hangar';
import { startTestServer, type TestServer } from 'hangar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { z } from 'zod';
import {
  HangarClient,
  type StreamEvent,
  type StreamItem,
  type StreamReset,
  type WebSocketConstructor,
} from './index.ts';
import { startProxy, type TcpProxy } from './testing/proxy.ts';

/**
 * The thread stream (Agent Protocol, docs/streaming.md "Transports") through
 * the client, over WebSocket (`ws`: Node 20 has no global one) and SSE,
 * against a real gateway and worker, with a TCP proxy the tests cut.
 */
const chatty = defineAgent({
  name: 'chatty',
  input: z.object({ count: z.number().int().min(1).max(200), gapMs: z.number().int().min(0).max(1000) }),
  async run(ctx, input) {
    for (let i = 0; i < input.count; i++) {
      await ctx.step(`tick-${i}`, async () => {
        await ctx.emit('custom', { i });
        await new Promise((r) => setTimeout(r, input.gapMs));
        return i;
      });
    }
    return { ticks: input.count };
  },
});

const RECONNECT = { initialDelayMs: 20, maxDelayMs: 200 };
const WS = WebSocket as unknown as WebSocketConstructor;
const TRANSPORTS = ['websocket', 'sse'] as const;

const isEnd = (e: StreamEvent, runId: string) =>
  e.runId === runId && e.channel === 'lifecycle' && (e.data as { terminal?: boolean }).terminal === true;

describe('client thread stream against a real gateway', () => {
  let server: TestServer;
  let direct: HangarClient;
  const proxies: TcpProxy[] = [];

  beforeAll(async () => {
    server = await startTestServer('postgres', [chatty], { worker: { pollMs: 50 } });
    direct = new HangarClient({ baseUrl: server.apiUrl, WebSocket: WS, reconnect: RECONNECT });
  });

  afterAll(async () => {
    for (const p of proxies) await p.close();
    await server?.stop();
  });

  /** The run's events on these channels, read from the log once the run has ended. */
  const logOf = async (threadId: string, runId: string, channels: string[]) => {
    const seqs: number[] = [];
    for await (const item of direct.streamRun(threadId, runId)) {
      if (item.type === 'event' && channels.includes(item.channel)) seqs.push(item.seq);
    }
    return seqs;
  };

  it.each(TRANSPORTS)(
    '%s: follows a run on the thread, cut twice: every event once, in order',
    async (transport) => {
      const proxy = await startProxy(server.apiUrl);
      proxies.push(proxy);
      const client = new HangarClient({ baseUrl: proxy.url, WebSocket: WS, reconnect: RECONNECT });
      const thread = await direct.createThread();
      // From the thread's start (0): the subscription sees the run whatever the timing.
      const stream = client.streamThread(thread.thread_id, {
        channels: ['custom', 'lifecycle'],
        since: 0,
        transport,
      });
      const run = await direct.createRun(thread.thread_id, {
        assistant_id: 'chatty',
        input: { count: 25, gapMs: 20 },
      });
      const events: StreamEvent[] = [];
      for await (const item of stream) {
        expect(item.type).toBe('event');
        const event = item as StreamEvent;
        events.push(event);
        if (events.length === 6 || events.length === 16) proxy.cut();
        if (isEnd(event, run.run_id)) break;
      }
      expect(stream.stats.connections).toBeGreaterThanOrEqual(3);
      expect(events.map((e) => e.seq)).toEqual(
        await logOf(thread.thread_id, run.run_id, ['custom', 'lifecycle']),
      );
      expect(events.filter((e) => e.channel === 'custom').map((e) => e.data)).toEqual(
        Array.from({ length: 25 }, (_, i) => ({ payload: { i } })),
      );
      expect(events.every((e) => e.runId === run.run_id && Array.isArray(e.namespace))).toBe(true);
    },
  );

  it.each(TRANSPORTS)(
    '%s: a position beyond the log is a reset, surfaced, then the stream goes on',
    async (transport) => {
      const thread = await direct.createThread();
      const first = await direct.createRun(thread.thread_id, {
        assistant_id: 'chatty',
        input: { count: 1, gapMs: 0 },
      });
      await logOf(thread.thread_id, first.run_id, []); // until it ends
      const resets: StreamReset[] = [];
      const events: StreamEvent[] = [];
      let second: string | undefined;
      const done = new Promise<void>((resolve, reject) => {
        const unsubscribe = direct.subscribe(
          direct.streamThread(thread.thread_id, { channels: ['lifecycle'], since: 1_000_000, transport }),
          {
            onReset: (reset) => {
              resets.push(reset);
              // After the reset the stream is live again: a new run's events arrive.
              direct
                .createRun(thread.thread_id, { assistant_id: 'chatty', input: { count: 1, gapMs: 0 } })
                .then((run) => {
                  second = run.run_id;
                }, reject);
            },
            onEvent: (event) => {
              events.push(event);
              if (second !== undefined && isEnd(event, second)) {
                unsubscribe();
                resolve();
              }
            },
            onError: reject,
          },
        );
      });
      await done;
      expect(resets).toHaveLength(1);
      expect(resets[0]).toMatchObject({ type: 'reset', recovered: false, from: 1_000_000 });
      expect(events.every((e) => e.runId === second)).toBe(true);
      expect(events[0]?.data).toMatchObject({ event: 'started' });
    },
  );

  it('a refused subscription ends the stream with the error, without retrying forever', async () => {
    const missing = direct.streamThread('00000000-0000-4000-8000-000000000000', {
      channels: ['lifecycle'],
      transport: 'websocket',
    });
    const items: StreamItem[] = [];
    const failure = await (async () => {
      for await (const item of missing) items.push(item);
    })().catch((e: unknown) => e);
    expect(failure).toMatchObject({ status: 404, code: 'not_found' });
    expect(items).toEqual([]);
  });
});
