import { Client, type ThreadState } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS, startTestServer, type TestServer, type TestStore } from '../testing/index.ts';

/** Adds `n` to the thread's running total. */
const tally = defineAgent({
  name: 'tally',
  input: z.object({ n: z.number() }),
  async run(ctx, input) {
    const total = ctx.state.get().total;
    ctx.state.update({ total: (typeof total === 'number' ? total : 0) + input.n });
    return {};
  },
});

const OTHER_THREAD = '00000000-0000-4000-8000-0000000000e5';
const OTHER_CHECKPOINT = '00000000-0000-4000-8000-0000000000f6';
const UNKNOWN_ID = '00000000-0000-4000-8000-0000000000a7';
const ISO = expect.stringMatching(/^\d{4}-\d\d-\d\dT/);

describe.each(STORE_KINDS)('thread history and checkpoint state (%s)', (kind) => {
  let server: TestServer;
  let store: TestStore;
  let apiUrl: string;
  let client: Client;
  /** A thread with two tally runs (n = 2, then 3) and a state update, newest first. */
  let threadId: string;
  let runIds: string[];
  let history: ThreadState[];

  beforeAll(async () => {
    server = await startTestServer(kind, [tally], { worker: { pollMs: 50 } });
    ({ store, apiUrl } = server);
    client = new Client({ apiUrl });
    await store.db.query(`INSERT INTO tenants (tenant_id, name) VALUES ('other', 'Other tenant')`);
    await store.db.query(`INSERT INTO threads (thread_id, tenant_id) VALUES ($1, 'other')`, [OTHER_THREAD]);
    await store.db.query(
      `INSERT INTO thread_states (checkpoint_id, thread_id, "values") VALUES ($1, $2, '{"secret":1}')`,
      [OTHER_CHECKPOINT, OTHER_THREAD],
    );

    threadId = (await client.threads.create()).thread_id;
    runIds = [];
    for (const n of [2, 3]) {
      const run = await client.runs.create(threadId, 'tally', { input: { n } });
      await client.runs.join(threadId, run.run_id);
      runIds.push(run.run_id);
    }
    await client.threads.updateState(threadId, { values: { note: 'edited' }, asNode: 'editor' });
    history = await client.threads.getHistory(threadId);
  });

  afterAll(async () => {
    await server?.stop();
  });

  const call = (method: string, path: string, body?: unknown) =>
    fetch(`${apiUrl}${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
  const ids = (states: ThreadState[]) => states.map((s) => s.checkpoint.checkpoint_id);

  it('lists every checkpoint newest first as ThreadState', () => {
    const checkpoint = (checkpoint_id: unknown) => ({
      thread_id: threadId,
      checkpoint_ns: '',
      checkpoint_id,
    });
    expect(history).toEqual([
      {
        values: { total: 5, note: 'edited' },
        next: [],
        tasks: [],
        metadata: { source: 'update', as_node: 'editor' },
        created_at: ISO,
        checkpoint: checkpoint(expect.any(String)),
        parent_checkpoint: checkpoint(history[1]?.checkpoint.checkpoint_id),
      },
      {
        values: { total: 5 },
        next: [],
        tasks: [],
        metadata: { source: 'loop', run_id: runIds[1] },
        created_at: ISO,
        checkpoint: checkpoint(expect.any(String)),
        parent_checkpoint: checkpoint(history[2]?.checkpoint.checkpoint_id),
      },
      {
        values: { total: 2 },
        next: [],
        tasks: [],
        metadata: { source: 'loop', run_id: runIds[0] },
        created_at: ISO,
        checkpoint: checkpoint(expect.any(String)),
        parent_checkpoint: null,
      },
    ]);
    expect(new Set(ids(history)).size).toBe(3);
    const times = history.map((s) => s.created_at ?? '');
    expect([...times].sort().reverse()).toEqual(times);
  });

  it('honours limit and before', async () => {
    const [newest, middle, oldest] = ids(history);
    expect(ids(await client.threads.getHistory(threadId, { limit: 1 }))).toEqual([newest]);
    expect(ids(await client.threads.getHistory(threadId, { limit: 2 }))).toEqual([newest, middle]);
    expect(
      ids(await client.threads.getHistory(threadId, { before: { configurable: { checkpoint_id: newest } } })),
    ).toEqual([middle, oldest]);
    expect(
      ids(
        await client.threads.getHistory(threadId, {
          limit: 1,
          before: { configurable: { checkpoint_id: newest } },
        }),
      ),
    ).toEqual([middle]);

    // `before` as a bare checkpoint id or as {checkpoint_id}.
    const post = async (body: unknown) =>
      ids((await (await call('POST', `/threads/${threadId}/history`, body)).json()) as ThreadState[]);
    expect(await post({ before: middle })).toEqual([oldest]);
    expect(await post({ before: { checkpoint_id: oldest } })).toEqual([]);
    // A checkpoint of another thread bounds nothing: no state is older than it here.
    expect(await post({ before: OTHER_CHECKPOINT })).toEqual([]);
    expect(await post({})).toEqual([newest, middle, oldest]);
  });

  it('filters by checkpoint metadata containment', async () => {
    const [newest, middle, oldest] = ids(history);
    expect(ids(await client.threads.getHistory(threadId, { metadata: { source: 'update' } }))).toEqual([
      newest,
    ]);
    expect(ids(await client.threads.getHistory(threadId, { metadata: { source: 'loop' } }))).toEqual([
      middle,
      oldest,
    ]);
    expect(ids(await client.threads.getHistory(threadId, { metadata: { run_id: runIds[0] } }))).toEqual([
      oldest,
    ]);
    expect(await client.threads.getHistory(threadId, { metadata: { source: 'nope' } })).toEqual([]);
  });

  it('serves the same states on GET history, GET state and GET state/{checkpoint_id}', async () => {
    const viaGet = (await (
      await call('GET', `/threads/${threadId}/history?limit=2`)
    ).json()) as ThreadState[];
    expect(viaGet).toEqual(history.slice(0, 2));
    expect(await client.threads.getState(threadId)).toEqual(history[0]);
    for (const state of history) {
      expect(await client.threads.getState(threadId, state.checkpoint.checkpoint_id ?? '')).toEqual(state);
    }
  });

  it('shows a thread without checkpoints as an empty history and a null checkpoint', async () => {
    const thread = await client.threads.create();
    expect(await client.threads.getHistory(thread.thread_id)).toEqual([]);
    expect(await client.threads.getState(thread.thread_id)).toEqual({
      values: {},
      next: [],
      tasks: [],
      metadata: {},
      created_at: thread.created_at,
      checkpoint: { thread_id: thread.thread_id, checkpoint_ns: '', checkpoint_id: null },
      parent_checkpoint: null,
    });
  });

  it('answers unknown and other-tenant threads and checkpoints with 404', async () => {
    for (const thread of [UNKNOWN_ID, OTHER_THREAD]) {
      for (const [method, path, body] of [
        ['POST', `/threads/${thread}/history`, {}],
        ['GET', `/threads/${thread}/history`, undefined],
        ['GET', `/threads/${thread}/state`, undefined],
        ['GET', `/threads/${thread}/state/${OTHER_CHECKPOINT}`, undefined],
      ] as const) {
        const res = await call(method, path, body);
        expect(res.status, `${method} ${path}`).toBe(404);
        expect(await res.json()).toEqual({
          error: 'not_found',
          message: `thread ${thread} not found`,
          details: { thread_id: thread },
        });
      }
    }
    // A checkpoint that is unknown, or another thread's.
    for (const checkpoint of [UNKNOWN_ID, OTHER_CHECKPOINT]) {
      const res = await call('GET', `/threads/${threadId}/state/${checkpoint}`);
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({
        error: 'not_found',
        message: `checkpoint ${checkpoint} not found on thread ${threadId}`,
        details: { thread_id: threadId, checkpoint_id: checkpoint },
      });
    }
  });

  it('answers invalid requests with 400 naming the field', async () => {
    for (const [method, path, body, field] of [
      ['POST', `/threads/${threadId}/history`, { limit: 0 }, 'limit'],
      ['POST', `/threads/${threadId}/history`, { limit: 1001 }, 'limit'],
      ['POST', `/threads/${threadId}/history`, { limit: '5' }, 'limit'],
      ['POST', `/threads/${threadId}/history`, { before: 'nope' }, 'before'],
      ['POST', `/threads/${threadId}/history`, { before: { checkpoint_id: 'nope' } }, 'before.checkpoint_id'],
      ['POST', `/threads/${threadId}/history`, { metadata: 'x' }, 'metadata'],
      ['GET', `/threads/${threadId}/history?limit=0`, undefined, 'query.limit'],
      ['GET', `/threads/${threadId}/state/not-a-uuid`, undefined, 'path.checkpoint_id'],
      ['POST', '/threads/not-a-uuid/history', {}, 'path.thread_id'],
    ] as const) {
      const res = await call(method, path, body);
      expect(res.status, `${method} ${path} ${JSON.stringify(body)}`).toBe(400);
      const error = (await res.json()) as { error: string; details: { issues: { path: string }[] } };
      expect(error.error).toBe('invalid_request');
      expect(error.details.issues[0]?.path).toBe(field);
    }
  });
});
