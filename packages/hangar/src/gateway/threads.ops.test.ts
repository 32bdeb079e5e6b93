import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS, startTestServer, type TestServer } from '../testing/index.ts';

const marker = defineAgent({
  name: 'marker',
  input: z.object({ mark: z.string(), fail: z.boolean().optional() }),
  async run(ctx, input) {
    ctx.state.update({ [input.mark]: true });
    await ctx.step('commit', async () => input.mark);
    if (input.fail === true) throw new Error('asked to fail');
    return { marked: input.mark };
  },
});

describe.each(STORE_KINDS)('thread count, prune, checkpoint state and run listing (%s)', (kind) => {
  let server: TestServer;
  let client: Client;

  beforeAll(async () => {
    server = await startTestServer(kind, [marker], { worker: { pollMs: 50 } });
    client = new Client({ apiUrl: server.apiUrl });
  });
  afterAll(async () => {
    await server?.stop();
  });

  /** A thread with runs that marked `marks`, one after the other. */
  const threadWith = async (tag: string, marks: string[]) => {
    const thread = await client.threads.create({ metadata: { tag } });
    for (const mark of marks) {
      const run = await client.runs.create(thread.thread_id, 'marker', { input: { mark } });
      await client.runs.join(thread.thread_id, run.run_id);
    }
    return thread;
  };

  it('counts threads by metadata, values and status', async () => {
    const tag = `count-${kind}`;
    await threadWith(tag, ['a']);
    await threadWith(tag, ['a', 'b']);
    await client.threads.create({ metadata: { tag } });
    expect(await client.threads.count({ metadata: { tag } })).toBe(3);
    expect(await client.threads.count({ metadata: { tag }, values: { b: true } })).toBe(1);
    expect(await client.threads.count({ metadata: { tag }, status: 'idle' })).toBe(3);
    expect(await client.threads.count({ metadata: { tag }, status: 'busy' })).toBe(0);
  });

  it('prunes by deleting threads, skipping unknown ids; keep_latest keeps only the last checkpoint', async () => {
    const gone = await threadWith(`prune-${kind}`, ['a']);
    const kept = await threadWith(`prune-${kind}`, ['a', 'b', 'c']);
    const unknown = '00000000-0000-4000-8000-0000000000f1';
    expect(await client.threads.prune([gone.thread_id, unknown])).toEqual({ pruned_count: 1 });
    expect((await fetch(`${server.apiUrl}/threads/${gone.thread_id}`)).status).toBe(404);

    expect((await client.threads.getHistory(kept.thread_id, { limit: 10 })).length).toBe(3);
    expect(await client.threads.prune([kept.thread_id], { strategy: 'keep_latest' })).toEqual({
      pruned_count: 1,
    });
    const history = await client.threads.getHistory(kept.thread_id, { limit: 10 });
    expect(history.map((h) => h.values)).toEqual([{ a: true, b: true, c: true }]);
    expect((await client.threads.getState(kept.thread_id)).values).toEqual({ a: true, b: true, c: true });
  });

  it('prune skips a thread whose run is queued or active', async () => {
    const thread = await client.threads.create();
    // A run with no worker able to take it would stay pending: use a thread whose run we keep queued.
    await server.store.db.query(
      `INSERT INTO runs (run_id, tenant_id, thread_id, assistant_id, agent, status, available_at)
       VALUES (gen_random_uuid(), 'default', $1, gen_random_uuid(), 'nobody', 'pending', 'infinity')`,
      [thread.thread_id],
    );
    expect(await client.threads.prune([thread.thread_id])).toEqual({ pruned_count: 0 });
    expect((await client.threads.get(thread.thread_id)).thread_id).toBe(thread.thread_id);
  });

  it('reads the state at a checkpoint given as an object, and patches the latest checkpoint metadata', async () => {
    const thread = await threadWith(`state-${kind}`, ['a', 'b']);
    const [latest, first] = await client.threads.getHistory(thread.thread_id, { limit: 10 });
    const at = await client.threads.getState(thread.thread_id, {
      checkpoint_id: first?.checkpoint.checkpoint_id ?? '',
      thread_id: thread.thread_id,
      checkpoint_ns: '',
      checkpoint_map: null,
    });
    expect(at.values).toEqual({ a: true });
    expect(at.checkpoint.checkpoint_id).toBe(first?.checkpoint.checkpoint_id);

    await client.threads.patchState(thread.thread_id, { reviewed_by: 'ada' });
    const state = await client.threads.getState(thread.thread_id);
    expect(state.checkpoint.checkpoint_id).toBe(latest?.checkpoint.checkpoint_id);
    expect(state.metadata).toMatchObject({ reviewed_by: 'ada' });
    // Only the latest checkpoint changed.
    const [, older] = await client.threads.getHistory(thread.thread_id, { limit: 10 });
    expect(older?.metadata).not.toHaveProperty('reviewed_by');

    const missing = await fetch(`${server.apiUrl}/threads/${thread.thread_id}/state/checkpoint`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ checkpoint: { checkpoint_id: '00000000-0000-4000-8000-0000000000f2' } }),
    });
    expect(missing.status).toBe(404);
    const empty = await client.threads.create();
    const noCheckpoint = await fetch(`${server.apiUrl}/threads/${empty.thread_id}/state`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ metadata: { x: 1 } }),
    });
    expect(noCheckpoint.status).toBe(404);
    const bad = await fetch(`${server.apiUrl}/threads/${empty.thread_id}/state`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ metadata: 'nope' }),
    });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      error: 'invalid_request',
      message: expect.stringContaining('metadata'),
    });
  });

  it('lists runs newest first with limit, offset and status', async () => {
    const thread = await threadWith(`list-${kind}`, ['a', 'b', 'c']);
    const failing = await client.runs.create(thread.thread_id, 'marker', {
      input: { mark: 'd', fail: true },
    });
    await client.runs.join(thread.thread_id, failing.run_id);
    const all = await client.runs.list(thread.thread_id, { limit: 10 });
    expect(all).toHaveLength(4);
    expect(all[0]?.run_id).toBe(failing.run_id);
    const page = await client.runs.list(thread.thread_id, { limit: 2, offset: 1 });
    expect(page.map((r) => r.run_id)).toEqual(all.slice(1, 3).map((r) => r.run_id));
    const errors = await client.runs.list(thread.thread_id, { status: 'error' });
    expect(errors.map((r) => r.run_id)).toEqual([failing.run_id]);
    const bad = await fetch(`${server.apiUrl}/threads/${thread.thread_id}/runs?status=bogus`);
    expect(bad.status).toBe(400);
  });
});
