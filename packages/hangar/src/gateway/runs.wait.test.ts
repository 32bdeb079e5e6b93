import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { ThreadMessage, Unsubscribe } from '../bus/bus.ts';
import { MemoryBus } from '../bus/memory.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS, startTestServer, type TestServer } from '../testing/index.ts';

const SLOW_MS = 400;

const echo = defineAgent({
  name: 'echo',
  input: z.object({ text: z.string() }),
  async run(_ctx, input) {
    return { echoed: input.text };
  },
});

const shout = defineAgent({
  name: 'shout',
  input: z.object({ text: z.string() }),
  async run(_ctx, input) {
    return input.text.toUpperCase();
  },
});

const counter = defineAgent({
  name: 'counter',
  input: z.object({ who: z.string() }),
  async run(ctx, input) {
    const seen = ctx.state.get();
    const visits = typeof seen.visits === 'number' ? seen.visits : 0;
    ctx.state.update({ visits: visits + 1, last: input.who });
    return { ignored: true };
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
    const finishedAt = await ctx.step('nap', async () => {
      await new Promise((resolve) => setTimeout(resolve, input.ms));
      return Date.now();
    });
    return { finishedAt };
  },
});

/** Counts live thread subscriptions: a wait holds one while it follows the log. */
class CountingBus extends MemoryBus {
  following = 0;
  override subscribeThread(threadId: string, handler: (message: ThreadMessage) => void): Unsubscribe {
    this.following++;
    const unsubscribe = super.subscribeThread(threadId, handler);
    return () => {
      this.following--;
      unsubscribe();
    };
  }
}

const AGENTS = [echo, shout, counter, failing, slow];

describe.each(STORE_KINDS)('runs wait and join (%s)', (kind) => {
  let server: TestServer;
  let apiUrl: string;
  let client: Client;
  let bus: CountingBus;

  beforeAll(async () => {
    bus = new CountingBus();
    server = await startTestServer(kind, AGENTS, { worker: { pollMs: 50 }, bus });
    ({ apiUrl } = server);
    client = new Client({ apiUrl });
  });

  afterAll(async () => {
    await server?.stop();
  });

  const post = (path: string, body: unknown) =>
    fetch(`${apiUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it('answers a stateless wait with the run output and reports the created run', async () => {
    let created: { run_id: string; thread_id?: string } | undefined;
    const result = await client.runs.wait(null, 'echo', {
      input: { text: 'hi' },
      onRunCreated: (meta) => {
        created = meta;
      },
    });
    expect(result).toEqual({ echoed: 'hi' });
    expect(created?.run_id).toMatch(/^[0-9a-f-]{36}$/);
    const run = await client.runs.get(created?.thread_id ?? '', created?.run_id ?? '');
    expect(run.status).toBe('success');
  });

  it('wraps an output that is not an object as { output }', async () => {
    expect(await client.runs.wait(null, 'shout', { input: { text: 'hi' } })).toEqual({ output: 'HI' });
  });

  it('answers a wait on a thread with the thread values when the agent keeps state', async () => {
    const thread = await client.threads.create();
    const first = await client.runs.wait(thread.thread_id, 'counter', { input: { who: 'ada' } });
    expect(first).toEqual({ visits: 1, last: 'ada' });
    const second = await client.runs.wait(thread.thread_id, 'counter', { input: { who: 'bob' } });
    expect(second).toEqual({ visits: 2, last: 'bob' });
  });

  it('holds the request until a slow run ends', async () => {
    const started = Date.now();
    const result = (await client.runs.wait(null, 'slow', { input: { ms: SLOW_MS } })) as {
      finishedAt: number;
    };
    const answered = Date.now();
    expect(result.finishedAt).toBeGreaterThanOrEqual(started + SLOW_MS);
    expect(answered).toBeGreaterThanOrEqual(result.finishedAt);
  });

  it('answers a failed run with 200 and __error__, which the SDK raises', async () => {
    await expect(client.runs.wait(null, 'failing', { input: {} })).rejects.toThrow('TypeError: boom');
    const body = await client.runs.wait(null, 'failing', { input: {}, raiseError: false });
    expect(body).toEqual({ __error__: { error: 'TypeError', message: 'boom', code: 'agent_error' } });
    const res = await post('/runs/wait', { assistant_id: 'failing', input: {} });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-location')).toMatch(/^\/threads\/[0-9a-f-]{36}\/runs\/[0-9a-f-]{36}$/);
    expect(await res.json()).toEqual(body);
  });

  it('joins a background run while it runs and after it ended', async () => {
    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, 'slow', { input: { ms: SLOW_MS } });
    expect(run.status).toBe('pending');
    const joined = (await client.runs.join(thread.thread_id, run.run_id)) as { finishedAt: number };
    expect(typeof joined.finishedAt).toBe('number');
    expect((await client.runs.get(thread.thread_id, run.run_id)).status).toBe('success');
    expect(await client.runs.join(thread.thread_id, run.run_id)).toEqual(joined);
  });

  it('joins a failed run with __error__ (the SDK join does not raise)', async () => {
    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, 'failing', { input: {} });
    expect(await client.runs.join(thread.thread_id, run.run_id)).toEqual({
      __error__: { error: 'TypeError', message: 'boom', code: 'agent_error' },
    });
  });

  it('stops waiting when the client disconnects, and the run goes on', async () => {
    const thread = await client.threads.create();
    const abort = new AbortController();
    let runId: string | undefined;
    const waiting = client.runs.wait(thread.thread_id, 'slow', {
      input: { ms: 1_500 },
      signal: abort.signal,
      onRunCreated: (meta) => {
        runId = meta.run_id;
      },
    });
    // The wait answers only at the end, so the run id comes from the thread's run list.
    let runs = await client.runs.list(thread.thread_id);
    for (let i = 0; runs.length === 0 && i < 50; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      runs = await client.runs.list(thread.thread_id);
    }
    const id = runs[0]?.run_id ?? '';
    for (let i = 0; bus.following === 0 && i < 50; i++) await new Promise((r) => setTimeout(r, 20));
    expect(bus.following).toBe(1);
    abort.abort();
    await expect(waiting).rejects.toThrow();
    expect(runId).toBeUndefined();
    for (let i = 0; bus.following > 0 && i < 50; i++) await new Promise((r) => setTimeout(r, 20));
    expect(bus.following).toBe(0);
    // The gateway let go while the run was still going.
    expect(['pending', 'running']).toContain((await client.runs.get(thread.thread_id, id)).status);
    const joined = (await client.runs.join(thread.thread_id, id)) as { finishedAt: number };
    expect(typeof joined.finishedAt).toBe('number');
    expect((await client.runs.get(thread.thread_id, id)).status).toBe('success');
  });

  it('rejects an unknown agent with 404 listing the agents', async () => {
    const res = await post('/runs/wait', { assistant_id: 'nope', input: {} });
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: string; details: { known_agents: string[] } };
    expect(body.error).toBe('agent_not_found');
    expect(body.details.known_agents).toEqual(['counter', 'echo', 'failing', 'shout', 'slow']);
  });

  it('rejects input that fails the agent schema with 422 naming the field', async () => {
    const thread = await client.threads.create();
    const res = await post(`/threads/${thread.thread_id}/runs/wait`, {
      assistant_id: 'echo',
      input: { text: 5 },
    });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: string; details: { issues: { path: string }[] } };
    expect(body.error).toBe('input_invalid');
    expect(body.details.issues[0]?.path).toBe('input.text');
    expect(await client.runs.list(thread.thread_id)).toEqual([]);
  });

  it('answers 404 for a wait on an unknown thread and a join of an unknown run', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    const wait = await post(`/threads/${missing}/runs/wait`, { assistant_id: 'echo', input: { text: 'x' } });
    expect(wait.status).toBe(404);
    expect(((await wait.json()) as { error: string }).error).toBe('not_found');
    const thread = await client.threads.create();
    const join = await fetch(`${apiUrl}/threads/${thread.thread_id}/runs/${missing}/join`);
    expect(join.status).toBe(404);
    expect(((await join.json()) as { error: string }).error).toBe('not_found');
  });
});
