/**
 * The Agent Protocol thread stream end to end (docs/streaming.md,
 * "Transports"): a real gateway (API keys on) and a real worker on Postgres,
 * `ws` as the WebSocket client and fetch for SSE. Subscriptions, run.start,
 * ordering, resume from a position exactly once, filtering, bad commands
 * answered without closing the socket, authentication by header and by
 * subprotocol, and another tenant's thread refused.
 */
import type { Socket } from 'node:net';
import { createTestPostgres, type HangarProcess } from 'hangar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../packages/hangar/src/auth/repository.ts';
import { sseFrames } from '../packages/hangar/src/cli/run.ts';
import { api, Cleanup, explained, FIXTURE_CONFIG, pgEnv, poll, STARTUP_MS } from './helpers.ts';
import { StreamClient, strictlyIncreasing, type WireEvent } from './thread-stream-client.ts';

const cleanup = new Cleanup();
/** Open streams per key and gateway (WebSockets and SSE together). */
const MAX_STREAMS = 8;
/** Pings and SSE comments this often; a WebSocket peer missing 2 pings in a row is dropped. */
const HEARTBEAT_MS = 400;
let base = '';
let keyA = '';
let keyB = '';
let readOnlyA = '';
let gateway: HangarProcess;
let worker: HangarProcess;

const as = (key: string) => ({ 'x-api-key': key });
const newThread = async (key = keyA): Promise<string> => {
  const res = await api<{ thread_id: string }>(base, 'POST', '/threads', {}, as(key));
  if (res.status !== 200) throw new Error(`POST /threads: ${res.status} ${res.text}`);
  return res.body.thread_id;
};
const open = (threadId: string, key = keyA) => StreamClient.open(base, threadId, { headers: as(key) });
const ofRun = (client: StreamClient, runId: string): WireEvent[] =>
  client.events.filter((e) => e.runId === runId);

beforeAll(async () => {
  const store = cleanup.store(await createTestPostgres());
  const all = ['runs:read', 'runs:write', 'admin'] as const;
  keyA = (await createApiKey(store.db, { tenantId: 'tenant-a', name: 'a', scopes: [...all] })).key;
  keyB = (await createApiKey(store.db, { tenantId: 'tenant-b', name: 'b', scopes: [...all] })).key;
  readOnlyA = (await createApiKey(store.db, { tenantId: 'tenant-a', name: 'ro', scopes: ['runs:read'] })).key;
  gateway = cleanup.spawn(['gateway', '--port', '0', '--host', '127.0.0.1', '--config', FIXTURE_CONFIG], {
    env: pgEnv(store, {
      HANGAR_MAX_STREAMS_PER_KEY: String(MAX_STREAMS),
      HANGAR_STREAM_HEARTBEAT_MS: String(HEARTBEAT_MS),
    }),
  });
  worker = cleanup.spawn(['worker', '--config', FIXTURE_CONFIG], { env: pgEnv(store) });
  base = String((await gateway.waitFor(/Server listening at (http:\/\/[^\s"]+)/, STARTUP_MS))[1]);
  await worker.waitFor(/worker started/, STARTUP_MS);
}, 120_000);

afterAll(() => cleanup.run());

describe('WebSocket', () => {
  it('subscribes, starts a run and receives its events in order; resumes from a position exactly once', async () => {
    const threadId = await newThread();
    const client = await open(threadId);
    const sub = await client.subscribe({ channels: ['lifecycle', 'custom'] });
    expect(sub.id).toMatch(/^s1\./);
    const started = await client.command('run.start', {
      assistantId: 'chatty',
      input: { count: 12, gapMs: 5 },
    });
    expect(started.type, JSON.stringify(started)).toBe('success');
    const runId = String(started.result?.runId);
    await explained(client.waitForEnd(runId), gateway, worker);

    const events = ofRun(client, runId);
    expect(strictlyIncreasing(events)).toBe(true);
    expect(events.map((e) => e.eventId)).toEqual(events.map((e) => String(e.seq)));
    expect(events[0]?.params.data).toMatchObject({ event: 'started', runId });
    const ticks = events.filter((e) => e.method === 'custom').map((e) => e.params.data.payload);
    expect(ticks).toEqual(Array.from({ length: 12 }, (_, i) => ({ i })));
    expect(events.at(-1)?.params.data).toMatchObject({
      event: 'completed',
      status: 'success',
      terminal: true,
    });
    // Nothing but the subscribed channels (the run also wrote `updates`).
    expect(new Set(events.map((e) => e.method))).toEqual(new Set(['lifecycle', 'custom']));
    client.close();

    // A new socket restores the subscription by its id and gets exactly what came after a position.
    const cut = events[5] as WireEvent;
    const again = await open(threadId);
    const restored = await again.command('subscription.reconnect', {
      runId,
      lastEventId: cut.eventId,
      subscriptions: [sub.id],
    });
    expect(restored).toMatchObject({ type: 'success', result: { restored: true } });
    await again.waitForEnd(runId);
    expect(ofRun(again, runId).map((e) => e.seq)).toEqual(events.slice(6).map((e) => e.seq));
    expect(ofRun(again, runId)).toEqual(events.slice(6));
    again.close();
  });

  it('unsubscribe stops a subscription; subscribe with since replays without duplicates', async () => {
    const threadId = await newThread();
    const client = await open(threadId);
    const custom = await client.subscribe({ channels: ['custom'] });
    await client.subscribe({ channels: ['lifecycle'] });
    const first = await client.command('run.start', { assistantId: 'chatty', input: { count: 3, gapMs: 0 } });
    const firstRun = String(first.result?.runId);
    await client.waitForEnd(firstRun);
    expect(ofRun(client, firstRun).filter((e) => e.method === 'custom')).toHaveLength(3);

    expect(await client.command('subscription.unsubscribe', { subscriptionId: custom.id })).toMatchObject({
      type: 'success',
    });
    const again = await client.command('subscription.unsubscribe', { subscriptionId: custom.id });
    expect(again).toMatchObject({
      type: 'error',
      error: 'no_such_subscription',
      field: 'params.subscriptionId',
    });
    const second = await client.command('run.start', {
      assistantId: 'chatty',
      input: { count: 3, gapMs: 0 },
    });
    const secondRun = String(second.result?.runId);
    // Lifecycle events come in seq order on the socket: the terminal one is after every custom one.
    await client.waitForEnd(secondRun);
    expect(ofRun(client, secondRun).filter((e) => e.method === 'custom')).toEqual([]);

    // Subscribing again with since=0 replays the custom events of both runs (lifecycle ones already came).
    const before = client.events.length;
    await client.subscribe({ channels: ['custom', 'lifecycle'], since: 0 });
    await client.waitForEvent('the replay', () =>
      client.events
        .slice(before)
        .some(
          (e) =>
            e.runId === secondRun &&
            e.params.data.payload !== undefined &&
            (e.params.data.payload as { i: number }).i === 2,
        ),
    );
    const replayed = client.events.slice(before);
    expect(replayed.every((e) => e.method === 'custom')).toBe(true);
    expect(replayed.filter((e) => e.runId === firstRun)).toHaveLength(0); // already sent once
    expect(replayed.filter((e) => e.runId === secondRun)).toHaveLength(3);
    const seqs = client.events.map((e) => e.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    client.close();
  });

  it('answers bad commands with errors naming the field, and the socket stays open', async () => {
    const threadId = await newThread();
    const client = await open(threadId);
    expect(await client.raw('not json')).toMatchObject({
      type: 'error',
      id: null,
      error: 'invalid_argument',
      field: '(message)',
    });
    expect(await client.raw({ id: 7 }, 7)).toMatchObject({ type: 'error', id: 7, field: 'method' });
    expect(await client.command('no.such.method', {})).toMatchObject({
      error: 'unknown_command',
      field: 'method',
    });
    expect(await client.command('state.get', { namespace: [] })).toMatchObject({ error: 'not_supported' });
    expect(await client.command('subscription.subscribe', { channels: ['bogus'] })).toMatchObject({
      error: 'invalid_argument',
      field: 'params.channels.0',
    });
    expect(await client.command('subscription.subscribe', { channels: ['values'], depth: -1 })).toMatchObject(
      {
        error: 'invalid_argument',
        field: 'params.depth',
      },
    );
    expect(await client.command('subscription.reconnect', { subscriptions: ['s1.@@@'] })).toMatchObject({
      error: 'no_such_subscription',
    });
    expect(await client.command('run.start', { input: {} })).toMatchObject({
      error: 'invalid_argument',
      field: 'params.assistantId',
    });
    expect(await client.command('run.start', { assistantId: 'greeting', input: {} })).toMatchObject({
      error: 'invalid_argument',
      code: 'input_invalid',
      field: 'params.input.name',
    });
    expect(await client.command('run.start', { assistantId: 'nope', input: {} })).toMatchObject({
      error: 'invalid_argument',
      field: 'params.assistantId',
    });
    expect(
      await client.command('input.respond', { namespace: [], interruptId: crypto.randomUUID(), response: 1 }),
    ).toMatchObject({ error: 'no_such_interrupt', field: 'params.interruptId' });
    expect(
      await client.command('input.respond', {
        namespace: [],
        interruptId: crypto.randomUUID(),
        response: { note: 'a\u0000b' },
      }),
    ).toMatchObject({ error: 'invalid_argument', field: 'params.response.note' });
    expect(await client.command('subscription.reconnect', { runId: crypto.randomUUID() })).toMatchObject({
      error: 'no_such_run',
    });
    // A position beyond the end of the thread's log (another thread's, another deployment's).
    expect(
      await client.command('subscription.subscribe', { channels: ['values'], since: 10_000 }),
    ).toMatchObject({
      error: 'invalid_argument',
      field: 'params.since',
    });
    const sub = await client.subscribe({ channels: ['values'] });
    expect(
      await client.command('subscription.reconnect', { lastEventId: '10000', subscriptions: [sub.id] }),
    ).toMatchObject({ type: 'success', result: { restored: false }, meta: { appliedThroughSeq: sub.from } });
    // At most 32 subscriptions per socket (one is held above).
    for (let i = 1; i < 32; i++) await client.subscribe({ channels: ['values'] });
    expect(await client.command('subscription.subscribe', { channels: ['values'] })).toMatchObject({
      error: 'invalid_argument',
      code: 'rate_limited',
    });
    // Still open and working.
    const ok = await client.command('run.start', { assistantId: 'greeting', input: { name: 'ws' } });
    expect(ok.type).toBe('success');
    expect(client.closeCode).toBeUndefined();
    client.close();

    // A command over the 1 MiB message limit closes the socket with 1009.
    const big = await open(threadId);
    big.socket.send(JSON.stringify({ id: 1, method: 'run.start', params: { pad: 'x'.repeat(1024 * 1024) } }));
    expect(await big.waitForClose()).toBe(1009);
  });

  it('authenticates by header or subprotocol (never echoing the key); refuses other tenants and no key', async () => {
    const threadId = await newThread();
    const byProtocol = await StreamClient.open(base, threadId, {
      protocols: ['hangar.v1', `hangar.key.${keyA}`],
    });
    expect(byProtocol.socket.protocol).toBe('hangar.v1');
    await byProtocol.subscribe({ channels: ['lifecycle'] });
    const run = await byProtocol.command('run.start', { assistantId: 'greeting', input: { name: 'p' } });
    await byProtocol.waitForEnd(String(run.result?.runId));
    byProtocol.close();

    const bearer = await StreamClient.open(base, threadId, { headers: { authorization: `Bearer ${keyA}` } });
    expect((await bearer.subscribe({ channels: ['values'] })).id).toMatch(/^s1\./);
    bearer.close();

    await expect(StreamClient.open(base, threadId)).rejects.toThrow(/HTTP 401/);
    await expect(
      StreamClient.open(base, threadId, { path: `/threads/${threadId}/stream?api_key=${keyA}` }),
    ).rejects.toThrow(/HTTP 401/);
    await expect(
      StreamClient.open(base, threadId, { protocols: ['hangar.v1', 'hangar.key.hgr_wrong'] }),
    ).rejects.toThrow(/HTTP 401/);
    // Another tenant's thread is not found, exactly as one that exists nowhere.
    await expect(open(threadId, keyB)).rejects.toThrow(/HTTP 404: .*not_found/);
    await expect(open(crypto.randomUUID(), keyB)).rejects.toThrow(/HTTP 404: .*not_found/);
    // A read-only key streams but cannot start runs or answer interrupts.
    const reader = await open(threadId, readOnlyA);
    expect(
      await reader.command('run.start', { assistantId: 'greeting', input: { name: 'r' } }),
    ).toMatchObject({
      error: 'permission_denied',
      code: 'forbidden',
    });
    expect(
      await reader.command('input.respond', { namespace: [], interruptId: crypto.randomUUID(), response: 1 }),
    ).toMatchObject({ error: 'permission_denied' });
    reader.close();
    // A plain GET (no upgrade) says what the route is.
    const plain = await api(base, 'GET', `/threads/${threadId}/stream`, undefined, as(keyA));
    expect(plain.status).toBe(400);
    expect(plain.text).toContain('headers.upgrade');
    // The key, sent as a subprotocol or a header, is never logged.
    expect(gateway.output()).not.toContain(keyA.slice(4));
  });

  it('counts sockets against the per-key stream limit, and frees the place on close', async () => {
    const threadId = await newThread();
    const sockets = await Promise.all(Array.from({ length: MAX_STREAMS }, () => open(threadId, readOnlyA)));
    await expect(open(threadId, readOnlyA)).rejects.toThrow(/HTTP 429: .*streams_per_key/);
    sockets.pop()?.close();
    const reopened = await poll('a place to free up', () => open(threadId, readOnlyA).catch(() => undefined));
    for (const s of [...sockets, reopened]) s.close();
  });
});

describe('heartbeats', () => {
  it('drops a WebSocket peer that stops answering pings, and sends SSE comments', async () => {
    const threadId = await newThread();
    const client = await open(threadId);
    await client.subscribe({ channels: ['lifecycle'] });
    const dropsBefore = gateway.output().split('missed its pings').length;
    // Not reading: the pings are never seen, so never answered.
    (client.socket as unknown as { _socket: Socket })._socket.pause();
    await poll('the gateway to drop the silent peer', () =>
      gateway.output().split('missed its pings').length > dropsBefore ? true : undefined,
    );
    (client.socket as unknown as { _socket: Socket })._socket.resume();
    expect(await client.waitForClose()).toBe(1006);

    const controller = new AbortController();
    const res = await fetch(`${base}/threads/${threadId}/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...as(keyA) },
      body: JSON.stringify({ channels: ['lifecycle'] }),
      signal: controller.signal,
    });
    let text = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      if (text.split(': heartbeat\n\n').length > 2) break;
    }
    controller.abort();
    expect(text.startsWith(': heartbeat\n\n')).toBe(true);
  });
});

describe('SSE', () => {
  const sse = async (
    threadId: string,
    body: unknown,
    headers: Record<string, string> = {},
    until: (e: WireEvent[]) => boolean,
  ) => {
    const controller = new AbortController();
    const res = await fetch(`${base}/threads/${threadId}/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...as(keyA), ...headers },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    const events: WireEvent[] = [];
    const ids: string[] = [];
    try {
      for await (const frame of sseFrames(res.body as ReadableStream<Uint8Array>)) {
        if (frame.id === undefined) continue;
        const event = JSON.parse(frame.data) as WireEvent;
        expect(frame.event).toBe(event.method);
        ids.push(frame.id);
        events.push(event);
        if (until(events)) break;
      }
    } finally {
      controller.abort();
    }
    expect(ids).toEqual(events.map((e) => String(e.seq)));
    return events;
  };
  const ended = (events: WireEvent[]) => events.some((e) => e.params.data.terminal === true);

  it('filters channels, and resumes with since or Last-Event-ID exactly after the position', async () => {
    const threadId = await newThread();
    const created = await api<{ run_id: string }>(
      base,
      'POST',
      `/threads/${threadId}/runs`,
      { assistant_id: 'chatty', input: { count: 8, gapMs: 5 } },
      as(keyA),
    );
    const all = await sse(threadId, { channels: ['lifecycle', 'custom'], since: 0 }, {}, ended);
    expect(all.every((e) => e.runId === created.body.run_id)).toBe(true);
    expect(new Set(all.map((e) => e.method))).toEqual(new Set(['lifecycle', 'custom']));
    expect(all.filter((e) => e.method === 'custom')).toHaveLength(8);
    expect(strictlyIncreasing(all)).toBe(true);

    const onlyLifecycle = await sse(threadId, { channels: ['lifecycle'], since: 0 }, {}, ended);
    expect(onlyLifecycle.map((e) => e.params.data.event)).toEqual(['started', 'completed']);

    const cut = all[3] as WireEvent;
    const fromSince = await sse(threadId, { channels: ['lifecycle', 'custom'], since: cut.seq }, {}, ended);
    expect(fromSince).toEqual(all.slice(4));
    const fromHeader = await sse(
      threadId,
      { channels: ['lifecycle', 'custom'], since: 0 },
      { 'last-event-id': cut.eventId },
      ended,
    );
    expect(fromHeader).toEqual(all.slice(4));
  });

  it('ends a stream from a position beyond the log with a `reset` close naming where to restart', async () => {
    const threadId = await newThread();
    const res = await fetch(`${base}/threads/${threadId}/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'last-event-id': '500', ...as(keyA) },
      body: JSON.stringify({ channels: ['values'] }),
    });
    const frames = [];
    for await (const frame of sseFrames(res.body as ReadableStream<Uint8Array>)) frames.push(frame);
    expect(frames.map((f) => [f.event, JSON.parse(f.data)])).toEqual([
      ['close', { type: 'close', code: 4003, reason: 'reset', reconnect: true, lastSeq: 0 }],
    ]);
  });

  it('refuses a bad body naming the field, and another tenant with 404', async () => {
    const threadId = await newThread();
    const bad = await api(base, 'POST', `/threads/${threadId}/stream`, { channels: [] }, as(keyA));
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('channels');
    const other = await api(base, 'POST', `/threads/${threadId}/stream`, { channels: ['values'] }, as(keyB));
    expect(other.status).toBe(404);
  });
});
