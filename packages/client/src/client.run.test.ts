import { defineAgent } from 'hangar';
import { scriptedModel, startTestServer, type TestServer } from 'hangar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  HangarApiError,
  HangarClient,
  isRunEnd,
  type StreamEvent,
  type StreamItem,
  VisibleOutput,
} from './index.ts';
import { startProxy, type TcpProxy } from './testing/proxy.ts';

/**
 * The client against a real gateway and worker (in this process, on a
 * Postgres schema of its own), with a TCP proxy between them that the tests
 * cut, rewrite or make lose answers.
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

const TOKENS = ['The ', 'tide ', 'turns', '.'];
const writer = defineAgent({
  name: 'writer',
  input: z.object({ topic: z.string() }),
  async run(ctx, input) {
    const { text } = await ctx.llm.generate('draft', { prompt: input.topic });
    return { text };
  },
});

/** Tries per run: the first try of `flaky`'s step fails after streaming partial output. */
const tries = new Map<string, number>();
const flaky = defineAgent({
  name: 'flaky',
  input: z.object({}),
  async run(ctx) {
    await ctx.step('setup', async () => 'ready');
    const words = await ctx.step(
      'draft',
      async () => {
        const n = (tries.get(ctx.runId) ?? 0) + 1;
        tries.set(ctx.runId, n);
        const words = n === 1 ? ['wrong', 'words'] : ['right', 'words', 'here'];
        for (const word of words) await ctx.emit('custom', { word, try: n });
        if (n === 1) throw new Error('the model hiccupped');
        return words;
      },
      { retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 20 } },
    );
    return { words };
  },
});

/** Fast reconnects: the tests cut connections on purpose. */
const RECONNECT = { initialDelayMs: 20, maxDelayMs: 200 };

async function collect(stream: AsyncIterable<StreamItem>, onEvent?: (e: StreamEvent, n: number) => void) {
  const items: StreamItem[] = [];
  for await (const item of stream) {
    items.push(item);
    if (item.type === 'event') onEvent?.(item, items.length);
  }
  return items;
}

const seqs = (items: StreamItem[]) => items.flatMap((i) => (i.type === 'event' ? [i.seq] : []));

describe('client run streams and creates against a real gateway', () => {
  let server: TestServer;
  let direct: HangarClient;
  const proxies: TcpProxy[] = [];
  const proxy = async (options?: Parameters<typeof startProxy>[1]) => {
    const p = await startProxy(server.apiUrl, options);
    proxies.push(p);
    return { proxy: p, client: new HangarClient({ baseUrl: p.url, reconnect: RECONNECT }) };
  };

  beforeAll(async () => {
    server = await startTestServer('postgres', [chatty, writer, flaky], {
      worker: { pollMs: 50 },
      llm: { model: scriptedModel(TOKENS) },
    });
    direct = new HangarClient({ baseUrl: server.apiUrl });
  });

  afterAll(async () => {
    for (const p of proxies) await p.close();
    await server?.stop();
  });

  /** The run's events as a fresh stream reads them from the log once it has ended. */
  const logSeqs = async (threadId: string, runId: string) =>
    seqs(await collect(direct.streamRun(threadId, runId)));

  it('streams a run to its terminal event, in order, and ends', async () => {
    const thread = await direct.createThread();
    const run = await direct.createRun(thread.thread_id, {
      assistant_id: 'writer',
      input: { topic: 'tides' },
    });
    const view = new VisibleOutput();
    const items = await collect(direct.streamRun(run.thread_id, run.run_id), (e) => view.apply(e));
    const events = items.filter((i): i is StreamEvent => i.type === 'event');
    expect(events.length).toBeGreaterThan(3);
    expect(events.every((e) => e.runId === run.run_id)).toBe(true);
    const s = seqs(items);
    expect(s).toEqual([...s].sort((a, b) => a - b));
    expect(new Set(s).size).toBe(s.length);
    expect(isRunEnd(events.at(-1) as StreamEvent)).toBe(true);
    expect(events.at(-1)?.data).toMatchObject({ status: 'success', terminal: true });
    expect(view.text(run.run_id)).toBe(TOKENS.join(''));
    expect((await direct.getRun(run.thread_id, run.run_id)).status).toBe('success');
  });

  it('reconnects after the connection is cut mid-stream and resumes: every event exactly once, in order', async () => {
    const { proxy: p, client } = await proxy();
    const thread = await direct.createThread();
    const run = await direct.createRun(thread.thread_id, {
      assistant_id: 'chatty',
      input: { count: 30, gapMs: 20 },
    });
    const stream = client.streamRun(run.thread_id, run.run_id);
    let cuts = 0;
    const items = await collect(stream, (_e, n) => {
      // Twice, while the run is still going: the client must resume where it was each time.
      if (n === 8 || n === 20) {
        cuts++;
        p.cut();
      }
    });
    expect(cuts).toBe(2);
    expect(stream.stats.connections).toBeGreaterThanOrEqual(3);
    expect(p.requests.slice(1).every((r) => /last-event-id: \d+/i.test(r))).toBe(true);
    const expected = await logSeqs(run.thread_id, run.run_id);
    expect(seqs(items)).toEqual(expected);
    const custom = items.flatMap((i) => (i.type === 'event' && i.channel === 'custom' ? [i.data] : []));
    expect(custom).toEqual(Array.from({ length: 30 }, (_, i) => ({ i })));
  });

  it('drops events the server sends again after a reconnect (dedupe by seq)', async () => {
    // Every reconnect asks for 5 events before where the client is: the server re-sends them.
    const { proxy: p, client } = await proxy({
      rewriteRequest: (head, n) =>
        n === 1
          ? head
          : head.replace(/last-event-id: (\d+)/i, (_m, seq) => `last-event-id: ${Number(seq) - 5}`),
    });
    const thread = await direct.createThread();
    const run = await direct.createRun(thread.thread_id, {
      assistant_id: 'chatty',
      input: { count: 20, gapMs: 20 },
    });
    const stream = client.streamRun(run.thread_id, run.run_id);
    const items = await collect(stream, (_e, n) => {
      if (n === 10) p.cut();
    });
    expect(p.requests[1]).toMatch(/last-event-id: \d+/i);
    expect(stream.stats.duplicatesDropped).toBe(5);
    expect(seqs(items)).toEqual(await logSeqs(run.thread_id, run.run_id));
  });

  it('reconnects a connection that went silent (half-open) once nothing arrived for idleTimeoutMs', async () => {
    const { proxy: p, client } = await proxy();
    const thread = await direct.createThread();
    const run = await direct.createRun(thread.thread_id, {
      assistant_id: 'chatty',
      input: { count: 20, gapMs: 40 },
    });
    const stream = client.streamRun(run.thread_id, run.run_id, { idleTimeoutMs: 400 });
    const items = await collect(stream, (_e, n) => {
      if (n === 5) p.freeze();
    });
    expect(stream.stats.connections).toBe(2);
    expect(seqs(items)).toEqual(await logSeqs(run.thread_id, run.run_id));
  });

  it('ends, without reconnecting forever, when resuming after the end of a finished run', async () => {
    const thread = await direct.createThread();
    const run = await direct.createRun(thread.thread_id, {
      assistant_id: 'chatty',
      input: { count: 2, gapMs: 0 },
    });
    const all = await logSeqs(run.thread_id, run.run_id);
    const stream = direct.streamRun(run.thread_id, run.run_id, { after: all.at(-1) as number });
    expect(await collect(stream)).toEqual([]);
    expect(stream.stats.connections).toBe(1);
    const tail = await collect(direct.streamRun(run.thread_id, run.run_id, { after: all.at(-3) as number }));
    expect(seqs(tail)).toEqual(all.slice(-2));
  });

  it('retries a create whose answer was lost with the same Idempotency-Key: one run', async () => {
    // The first request reaches the gateway and creates the run; its answer never reaches the client.
    const { proxy: p, client } = await proxy({ swallowResponses: (n) => n === 1 });
    const thread = await direct.createThread();
    const run = await client.createRun(thread.thread_id, {
      assistant_id: 'chatty',
      input: { count: 1, gapMs: 0 },
    });
    expect(p.connections).toBe(2);
    const keys = p.requests.map((r) => /idempotency-key: (\S+)/i.exec(r)?.[1]);
    expect(keys[0]).toBeDefined();
    expect(keys[1]).toBe(keys[0]);
    const runs = await direct.http.json<Array<{ run_id: string }>>(
      'GET',
      `/threads/${thread.thread_id}/runs`,
    );
    expect(runs.map((r) => r.run_id)).toEqual([run.run_id]);
  });

  it('throws a 4xx at once: a key reused for another request, an unknown run', async () => {
    const thread = await direct.createThread();
    const key = `reuse-${Date.now()}`;
    await direct.createRun(
      thread.thread_id,
      { assistant_id: 'chatty', input: { count: 1, gapMs: 0 } },
      { idempotencyKey: key },
    );
    const reused = await direct
      .createRun(
        thread.thread_id,
        { assistant_id: 'chatty', input: { count: 2, gapMs: 0 } },
        { idempotencyKey: key },
      )
      .catch((e: unknown) => e);
    expect(reused).toBeInstanceOf(HangarApiError);
    expect(reused).toMatchObject({ status: 422, code: 'idempotency_key_reused' });
    const missing = collect(direct.streamRun(thread.thread_id, '00000000-0000-4000-8000-000000000000'));
    await expect(missing).rejects.toMatchObject({ status: 404, code: 'not_found' });
  });

  it("VisibleOutput drops a failed attempt's messages: a real run's events, redone after a synthetic marker", async () => {
    const thread = await direct.createThread();
    const run = await direct.createRun(thread.thread_id, {
      assistant_id: 'writer',
      input: { topic: 'tides' },
    });
    const events = (await collect(direct.streamRun(run.thread_id, run.run_id))).filter(
      (i): i is StreamEvent => i.type === 'event',
    );
    const started = events.find(
      (e) => e.channel === 'lifecycle' && (e.data as { event?: string }).event === 'run.started',
    );
    const messages = events.filter((e) => e.channel === 'messages');
    const end = events.at(-1) as StreamEvent;
    expect(started).toBeDefined();
    expect(messages.length).toBeGreaterThan(3);
    // The attempt streamed its message, then was redone: the marker, the same message again, the end.
    const last = end.seq;
    const marker: StreamEvent = {
      ...end,
      seq: last + 1,
      data: {
        event: 'output.discarded',
        run_id: run.run_id,
        after_seq: started?.seq,
        reason: 'resume',
        attempt: 2,
      },
    };
    const redo = messages.map((e, i) => ({ ...e, seq: last + 2 + i }));
    const replayed = [...events.slice(0, -1), marker, ...redo, { ...end, seq: last + 2 + redo.length }];

    const naive = new VisibleOutput();
    for (const e of [...events.slice(0, -1), ...redo]) naive.apply(e);
    expect(naive.text(run.run_id)).toBe(TOKENS.join('').repeat(2));

    const view = new VisibleOutput();
    const dropped = replayed.map((e) => view.apply(e).discarded);
    expect(dropped[events.length - 1]).toBe(messages.length);
    expect(view.text(run.run_id)).toBe(TOKENS.join(''));
    expect(view.messages(run.run_id)).toHaveLength(1);
    expect(view.messages(run.run_id)[0]).toMatchObject({ role: 'ai', finished: true });
    // Lifecycle events stay: the run's start and end are not partial output.
    expect(view.events(run.run_id).filter((e) => e.channel === 'lifecycle')).toHaveLength(3);
  });

  it('a step retried after streaming partial output: the marker from the engine removes it', async () => {
    const thread = await direct.createThread();
    const run = await direct.createRun(thread.thread_id, { assistant_id: 'flaky', input: {} });
    const view = new VisibleOutput();
    const items = await collect(direct.streamRun(run.thread_id, run.run_id), (e) => view.apply(e));
    const events = items.filter((i): i is StreamEvent => i.type === 'event');
    const words = (list: readonly StreamEvent[]) =>
      list.flatMap((e) => (e.channel === 'custom' ? [(e.data as { word: string }).word] : []));
    // The log (and so the stream) has both tries' output, and the marker between them.
    expect(words(events)).toEqual(['wrong', 'words', 'right', 'words', 'here']);
    const marker = events.find((e) => (e.data as { event?: string }).event === 'output.discarded');
    expect(marker?.data).toMatchObject({ run_id: run.run_id, reason: 'retry', step: 'draft' });
    // What a UI shows: only the try that succeeded.
    expect(words(view.events(run.run_id))).toEqual(['right', 'words', 'here']);
    expect(events.at(-1)?.data).toMatchObject({ status: 'success' });
  });

  it('cancels a run', async () => {
    const thread = await direct.createThread();
    const run = await direct.createRun(thread.thread_id, {
      assistant_id: 'chatty',
      input: { count: 100, gapMs: 50 },
    });
    await direct.cancelRun(run.thread_id, run.run_id, { wait: true });
    expect((await direct.getRun(run.thread_id, run.run_id)).status).toBe('cancelled');
    const items = await collect(direct.streamRun(run.thread_id, run.run_id));
    expect(items.at(-1)).toMatchObject({
      channel: 'lifecycle',
      data: { terminal: true, status: 'cancelled' },
    });
  });
});
