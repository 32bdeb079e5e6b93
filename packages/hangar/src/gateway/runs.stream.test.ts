import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type SseFrame, sseFrames } from '../cli/run.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS, scriptedModel, startTestServer, type TestServer } from '../testing/index.ts';

const TOKENS = ['Hello', ', ', 'wor', 'ld'];

/** A language model that streams TOKENS; the only stand-in here, the rest is the real server. */
function mockModel() {
  return scriptedModel(TOKENS, { inputTokens: 7 });
}

const steps = defineAgent({
  name: 'steps',
  input: z.object({ n: z.number() }),
  async run(ctx, input) {
    const one = await ctx.step('one', async () => input.n + 1);
    await ctx.emit('custom', { progress: 'half' });
    const two = await ctx.step('two', async () => one * 2);
    ctx.state.update({ total: two });
    return { total: two };
  },
});

const echo = defineAgent({
  name: 'echo',
  input: z.object({ text: z.string() }),
  async run(_ctx, input) {
    return { echoed: input.text };
  },
});

const counter = defineAgent({
  name: 'counter',
  input: z.object({ who: z.string() }),
  async run(ctx, input) {
    const seen = ctx.state.get();
    const visits = typeof seen.visits === 'number' ? seen.visits : 0;
    ctx.state.update({ visits: visits + 1, last: input.who });
    return null;
  },
});

const failing = defineAgent({
  name: 'failing',
  input: z.object({}),
  async run() {
    throw new TypeError('boom');
  },
});

const slow = defineAgent({
  name: 'slow',
  input: z.object({ ms: z.number().int().min(0) }),
  async run(ctx, input) {
    await ctx.step('nap', async () => {
      await new Promise((resolve) => setTimeout(resolve, input.ms));
      return 'rested';
    });
    return { rested: true };
  },
});

const asker = defineAgent({
  name: 'asker',
  input: z.object({ question: z.string() }),
  async run(ctx, input) {
    const { text } = await ctx.llm.generate('answer', { prompt: input.question });
    return { text };
  },
});

const AGENTS = [steps, echo, counter, failing, slow, asker];

interface Chunk {
  event: string;
  data: unknown;
}

async function collect(stream: AsyncIterable<{ event: string; data: unknown }>): Promise<Chunk[]> {
  const chunks: Chunk[] = [];
  for await (const chunk of stream) chunks.push({ event: chunk.event, data: chunk.data });
  return chunks;
}

describe.each(STORE_KINDS)('runs stream (%s)', (kind) => {
  let server: TestServer;
  let apiUrl: string;
  let client: Client;

  beforeAll(async () => {
    server = await startTestServer(kind, AGENTS, { worker: { pollMs: 50 }, llm: { model: mockModel() } });
    ({ apiUrl } = server);
    client = new Client({ apiUrl });
  });

  afterAll(async () => {
    await server?.stop();
  });

  const readSse = async (res: Response): Promise<SseFrame[]> => {
    expect(res.status).toBe(200);
    const frames: SseFrame[] = [];
    for await (const frame of sseFrames(res.body as ReadableStream<Uint8Array>)) frames.push(frame);
    return frames;
  };

  // `attempt` is the run's as created: 0 until a worker claims it.
  it('streams metadata, updates per step, custom and values in order, then ends', async () => {
    let created: { run_id: string; thread_id?: string } | undefined;
    const chunks = await collect(
      client.runs.stream(null, 'steps', {
        input: { n: 2 },
        streamMode: ['values', 'updates', 'custom'],
        onRunCreated: (meta) => {
          created = meta;
        },
      }),
    );
    expect(chunks.map((c) => c.event)).toEqual(['metadata', 'updates', 'custom', 'updates', 'values', 'end']);
    expect(chunks[0]?.data).toMatchObject({
      run_id: created?.run_id,
      thread_id: created?.thread_id,
      attempt: 0,
    });
    expect(chunks.slice(1).map((c) => c.data)).toEqual([
      { one: 3 },
      { progress: 'half' },
      { two: 6 },
      { total: 6 },
      { run_id: created?.run_id, status: 'success' },
    ]);
    const run = await client.runs.get(created?.thread_id ?? '', created?.run_id ?? '');
    expect(run.status).toBe('success');
  });

  it('streams only the modes asked for, values by default with the output as the final value', async () => {
    const updatesOnly = await collect(
      client.runs.stream(null, 'steps', { input: { n: 0 }, streamMode: 'updates' }),
    );
    expect(updatesOnly.map((c) => c.event)).toEqual(['metadata', 'updates', 'updates', 'end']);
    const byDefault = await collect(client.runs.stream(null, 'echo', { input: { text: 'hi' } }));
    expect(byDefault.map((c) => c.event)).toEqual(['metadata', 'values', 'end']);
    expect(byDefault[1]?.data).toEqual({ echoed: 'hi' });
  });

  it('streams a run on a thread, with only that run’s events', async () => {
    const thread = await client.threads.create();
    const first = await collect(client.runs.stream(thread.thread_id, 'counter', { input: { who: 'ada' } }));
    expect(first.slice(1).map((c) => c.data)).toEqual([
      { visits: 1, last: 'ada' },
      expect.objectContaining({ status: 'success' }),
    ]);
    const second = await collect(client.runs.stream(thread.thread_id, 'counter', { input: { who: 'bob' } }));
    expect(second.map((c) => c.event)).toEqual(['metadata', 'values', 'end']);
    expect(second[1]?.data).toEqual({ visits: 2, last: 'bob' });
    expect(second[0]?.data).toMatchObject({ thread_id: thread.thread_id });
  });

  it('yields an error event when the agent throws', async () => {
    const chunks = await collect(client.runs.stream(null, 'failing', { input: {}, streamMode: ['values'] }));
    expect(chunks.map((c) => c.event)).toEqual(['metadata', 'error', 'end']);
    expect(chunks[1]?.data).toEqual({ error: 'TypeError', message: 'boom' });
  });

  it('streams model text as messages-tuple chunks', async () => {
    const chunks = await collect(
      client.runs.stream(null, 'asker', { input: { question: 'hi?' }, streamMode: 'messages-tuple' }),
    );
    const messages = chunks.filter((c) => c.event === 'messages');
    expect(messages.length).toBeGreaterThanOrEqual(2);
    const parts = messages.map((c) => c.data as [{ type: string; content: string; id: string }, unknown]);
    expect(parts.map(([m]) => m.content).join('')).toBe(TOKENS.join(''));
    expect(new Set(parts.map(([m]) => m.type))).toEqual(new Set(['AIMessageChunk']));
    expect(parts.at(-1)?.[0]).toMatchObject({
      content: '',
      usage_metadata: { input_tokens: 7, output_tokens: 4, total_tokens: 11 },
    });
    expect(chunks.at(-1)?.event).toBe('end');
  });

  it('joins a run with the modes it was created with, or the ones asked for', async () => {
    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, 'slow', {
      input: { ms: 300 },
      streamMode: ['updates'],
    });
    const [stored, asked] = await Promise.all([
      collect(client.runs.joinStream(thread.thread_id, run.run_id)),
      collect(client.runs.joinStream(thread.thread_id, run.run_id, { streamMode: ['values'] })),
    ]);
    expect(stored.map((c) => c.event)).toEqual(['metadata', 'updates', 'end']);
    expect(stored[1]?.data).toEqual({ nap: 'rested' });
    expect(asked.map((c) => c.event)).toEqual(['metadata', 'values', 'end']);
    expect(asked[1]?.data).toEqual({ rested: true });
  });

  it('resumes after Last-Event-ID without repeats, in the modes of the run', async () => {
    const res = await fetch(`${apiUrl}/runs/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        assistant_id: 'steps',
        input: { n: 1 },
        stream_mode: ['updates', 'custom', 'values'],
      }),
    });
    const location = res.headers.get('content-location') ?? '';
    expect(location).toMatch(/^\/threads\/[0-9a-f-]{36}\/runs\/[0-9a-f-]{36}$/);
    expect(res.headers.get('location')).toBe(`${location}/stream`);
    const all = await readSse(res);
    expect(all.map((f) => f.event)).toEqual(['metadata', 'updates', 'custom', 'updates', 'values', 'end']);
    const ids = all.slice(1).map((f) => Number(f.id));
    expect(ids.every((id, i) => i === 0 || id > (ids[i - 1] ?? 0))).toBe(true);
    const cut = all[2]?.id ?? '';
    const resumed = await readSse(
      await fetch(`${apiUrl}${location}/stream`, { headers: { 'last-event-id': cut } }),
    );
    expect(resumed).toEqual(all.slice(3));
    // After the agent's values: the resumed stream knows it saw them and sends no output as a final value.
    const afterValues = all[4]?.id ?? '';
    const tail = await readSse(
      await fetch(`${apiUrl}${location}/stream`, { headers: { 'last-event-id': afterValues } }),
    );
    expect(tail.map((f) => f.event)).toEqual(['end']);
  });

  it('keeps the raw channels for a run created without stream_mode, and refuses unknown modes', async () => {
    const run = await client.runs.create(null, 'echo', { input: { text: 'raw' } });
    const frames = await readSse(await fetch(`${apiUrl}/threads/${run.thread_id}/runs/${run.run_id}/stream`));
    expect(frames.map((f) => f.event)).toEqual(['metadata', 'lifecycle', 'lifecycle']);
    const bad = await fetch(`${apiUrl}/runs/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: 'echo', input: { text: 'x' }, stream_mode: 'debug' }),
    });
    expect(bad.status).toBe(400);
    const badJoin = await fetch(
      `${apiUrl}/threads/${run.thread_id}/runs/${run.run_id}/stream?stream_mode=nope`,
    );
    expect(badJoin.status).toBe(400);
  });
});
