import { describe, expect, it } from 'vitest';
import { backoffDelay, reconnectPolicy } from './backoff.ts';
import { HangarApiError, StreamError } from './errors.ts';
import type { StreamEvent, StreamItem } from './events.ts';
import { type Connect, type ConnectionItem, EventStream } from './resumable.ts';
import { sseFrames } from './sse.ts';
import { closeItems } from './wire.ts';

/**
 * The transport-independent parts, on their own: the SSE parser on awkward
 * chunkings, the backoff bounds, and the reconnect loop's decisions (which
 * failures end a stream). The end-to-end behaviour against a real gateway is
 * in client.run.test.ts and client.thread.test.ts.
 */
function body(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
}

async function frames(chunks: string[]) {
  const out = [];
  for await (const frame of sseFrames(body(chunks))) out.push(frame);
  return out;
}

const event = (seq: number): StreamEvent => ({
  type: 'event',
  seq,
  channel: 'custom',
  runId: 'r',
  namespace: [],
  timestamp: undefined,
  data: { seq },
});

/** A stream over scripted connections; each entry is what one connection yields, or the error it throws. */
function scripted(connections: Array<ConnectionItem[] | Error>, maxAttempts = 5) {
  const afters: Array<number | undefined> = [];
  const connect: Connect = async function* (after) {
    afters.push(after);
    const next = connections.shift();
    if (next === undefined) throw new Error('no more connections scripted');
    if (next instanceof Error) throw next;
    yield* next;
  };
  const stream = new EventStream(connect, {
    reconnect: { initialDelayMs: 1, maxDelayMs: 2, maxAttempts },
    ends: (e) => (e.data as { seq: number }).seq === 99,
  });
  return { stream, afters };
}

async function drain(stream: EventStream) {
  const items: StreamItem[] = [];
  const error = await (async () => {
    for await (const item of stream) items.push(item);
  })().then(
    () => undefined,
    (err: unknown) => err,
  );
  return { items, error };
}

describe('sseFrames', () => {
  it('parses frames split anywhere, CRLF split across chunks, comments, multi-line data, a trailing partial frame', async () => {
    const text =
      ': heartbeat\r\nid: 7\r\nevent: custom\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: metadata\ndata: é\n\nid: 8\ndata: cut';
    const whole = await frames([text]);
    expect(whole).toEqual([
      { id: '7', event: 'custom', data: '{"a":\n1}' },
      { id: undefined, event: 'metadata', data: 'é' },
    ]);
    // Byte by byte (the é split in two) and on every CR/LF boundary: the same frames.
    const bytes = new TextEncoder().encode(text);
    const decoder = new TextDecoder();
    const single = Array.from(bytes, (b) => decoder.decode(new Uint8Array([b]), { stream: true }));
    expect(await frames(single.filter((c) => c !== ''))).toEqual(whole);
    expect(await frames(text.split(/(?<=\r)/))).toEqual(whole);
  });
});

describe('backoff', () => {
  it('is full jitter under a capped exponential, never below a Retry-After floor', () => {
    const policy = reconnectPolicy({ initialDelayMs: 100, maxDelayMs: 1_000, random: () => 0.999 });
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(policy, n))).toEqual([99, 199, 399, 799, 999, 999]);
    const low = reconnectPolicy({ initialDelayMs: 100, maxDelayMs: 1_000, random: () => 0 });
    expect(backoffDelay(low, 4)).toBe(0);
    expect(backoffDelay(low, 4, 2_000)).toBe(2_000);
    expect(() => reconnectPolicy({ initialDelayMs: 10, maxDelayMs: 5 })).toThrow(RangeError);
  });
});

describe('EventStream reconnect decisions', () => {
  it('resumes after the last seq, drops repeats, and ends at the end event', async () => {
    const { stream, afters } = scripted([
      [event(1), event(2)],
      new TypeError('fetch failed'),
      [event(2), event(3), event(99)],
    ]);
    const { items, error } = await drain(stream);
    expect(error).toBeUndefined();
    expect(items.map((i) => (i.type === 'event' ? i.seq : i.type))).toEqual([1, 2, 3, 99]);
    expect(afters).toEqual([undefined, 2, 2]);
    expect(stream.stats).toMatchObject({ connections: 3, duplicatesDropped: 1 });
  });

  it('stops on a 4xx other than 408/429, retries 408/429/5xx', async () => {
    const retried = scripted([
      new HangarApiError(503, 'unavailable', 'down'),
      new HangarApiError(429, 'rate_limited', 'busy', undefined, 5),
      new HangarApiError(408, 'timeout', 'slow'),
      [event(99)],
    ]);
    expect((await drain(retried.stream)).error).toBeUndefined();
    expect(retried.afters).toHaveLength(4);
    const refused = scripted([new HangarApiError(403, 'forbidden', 'no'), [event(99)]]);
    expect((await drain(refused.stream)).error).toMatchObject({ status: 403 });
    expect(refused.afters).toHaveLength(1);
  });

  it('stops on terminal close codes (1008 policy, 1009 too big), reconnects on 1006/4000/4001, resets on 4003', async () => {
    for (const code of [1008, 1009]) {
      const { stream, afters } = scripted([[event(1), ...closeItems(code, 'x')], [event(99)]]);
      const { error } = await drain(stream);
      expect(error).toBeInstanceOf(StreamError);
      expect(error).toMatchObject({ closeCode: code, retryable: false });
      expect(afters).toHaveLength(1);
    }
    const { stream } = scripted([
      [event(1), ...closeItems(1006, '')],
      [event(2), ...closeItems(4000, 'reconnect')],
      [event(3), ...closeItems(4001, 'slow')],
      [event(4), ...closeItems(4003, 'reset', { lastSeq: 2 })],
      [event(3), event(99)],
    ]);
    const { items, error } = await drain(stream);
    expect(error).toBeUndefined();
    expect(items.map((i) => (i.type === 'event' ? i.seq : `${i.type}:${i.from}`))).toEqual([
      1,
      2,
      3,
      4,
      'reset:4',
      3,
      99,
    ]);
  });

  it('gives up after maxAttempts consecutive failures; an event in between resets the count', async () => {
    const down = new TypeError('fetch failed');
    // The third connection delivers an event, then ends: that end is the first failure of a new count.
    const { stream, afters } = scripted([down, down, [event(1)], down, down, [event(99)]], 2);
    const { items, error } = await drain(stream);
    expect(items).toHaveLength(1);
    expect(error).toMatchObject({ name: 'StreamError', message: 'gave up after 3 failed connection(s)' });
    expect(afters).toEqual([undefined, undefined, undefined, 1, 1]);
  });
});
