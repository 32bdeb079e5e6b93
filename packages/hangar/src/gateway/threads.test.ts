import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS, startTestServer, type TestServer, type TestStore } from '../testing/index.ts';

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

/** A gate the test opens: a run of `held` stays running until then. */
let releaseHeld: () => void = () => {};
let heldStarted: () => void = () => {};
const held = defineAgent({
  name: 'held',
  input: z.object({}),
  async run(ctx) {
    await ctx.step('hold', async () => {
      heldStarted();
      await new Promise<void>((resolve) => {
        releaseHeld = resolve;
      });
      return 1;
    });
    return { done: true };
  },
});

const OTHER_THREAD = '00000000-0000-4000-8000-0000000000c3';
const UNKNOWN_THREAD = '00000000-0000-4000-8000-0000000000d4';
const ISO = expect.stringMatching(/^\d{4}-\d\d-\d\dT/);

describe.each(STORE_KINDS)('thread endpoints (%s)', (kind) => {
  let server: TestServer;
  let store: TestStore;
  let apiUrl: string;
  let client: Client;

  beforeAll(async () => {
    server = await startTestServer(kind, [counter, held], { worker: { pollMs: 50 } });
    ({ store, apiUrl } = server);
    client = new Client({ apiUrl });
    await store.db.query(`INSERT INTO tenants (tenant_id, name) VALUES ('other', 'Other tenant')`);
    await store.db.query(
      `INSERT INTO threads (thread_id, tenant_id, metadata, "values") VALUES ($1, 'other', '{"suite":"threads"}', '{"secret":1}')`,
      [OTHER_THREAD],
    );
  });

  afterAll(async () => {
    releaseHeld();
    await server?.stop();
  });

  const call = (method: string, path: string, body?: unknown) =>
    fetch(`${apiUrl}${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });

  it('creates and gets a thread in the SDK shape, without the tenant', async () => {
    const created = await client.threads.create({ metadata: { suite: 'threads', n: 1 } });
    const expected = {
      thread_id: created.thread_id,
      status: 'idle',
      metadata: { suite: 'threads', n: 1 },
      values: {},
      interrupts: {},
      created_at: ISO,
      updated_at: ISO,
    };
    expect(created).toEqual(expected);
    expect(await client.threads.get(created.thread_id)).toEqual(expected);
  });

  it('searches by metadata, values, status and ids, with paging and sorting', async () => {
    const a = await client.threads.create({ metadata: { search: 's1', color: 'red' } });
    const b = await client.threads.create({ metadata: { search: 's1', color: 'blue' } });
    const c = await client.threads.create({ metadata: { search: 's1', color: 'red' } });
    await client.threads.updateState(b.thread_id, { values: { topic: 'cats', n: 1 } });

    const red = await client.threads.search({ metadata: { search: 's1', color: 'red' }, sortOrder: 'asc' });
    expect(red.map((t) => t.thread_id)).toEqual([a.thread_id, c.thread_id]);
    expect(red[0]).toEqual(await client.threads.get(a.thread_id));

    const byValues = await client.threads.search({ values: { topic: 'cats' } });
    expect(byValues.map((t) => t.thread_id)).toEqual([b.thread_id]);

    const byIds = await client.threads.search({ ids: [a.thread_id, b.thread_id], sortBy: 'thread_id' });
    expect(byIds.map((t) => t.thread_id)).toEqual([a.thread_id, b.thread_id].sort().reverse());

    const all = await client.threads.search({
      metadata: { search: 's1' },
      sortBy: 'created_at',
      sortOrder: 'asc',
    });
    expect(all.map((t) => t.thread_id)).toEqual([a.thread_id, b.thread_id, c.thread_id]);
    const page = await client.threads.search({
      metadata: { search: 's1' },
      limit: 1,
      offset: 1,
      sortOrder: 'asc',
    });
    expect(page.map((t) => t.thread_id)).toEqual([b.thread_id]);
    // Default order is newest first.
    const newest = await client.threads.search({ metadata: { search: 's1' }, limit: 1 });
    expect(newest.map((t) => t.thread_id)).toEqual([c.thread_id]);

    expect(await client.threads.search({ metadata: { search: 's1' }, status: 'busy' })).toEqual([]);
    expect((await client.threads.search({ metadata: { search: 's1' }, status: 'idle' })).length).toBe(3);
  });

  it('never shows or touches another tenant’s thread', async () => {
    const found = await client.threads.search({ metadata: { suite: 'threads' }, limit: 1000 });
    expect(found.length).toBeGreaterThan(0);
    expect(found.map((t) => t.thread_id)).not.toContain(OTHER_THREAD);
    expect(await client.threads.search({ ids: [OTHER_THREAD] })).toEqual([]);

    for (const [method, path, body] of [
      ['GET', `/threads/${OTHER_THREAD}`, undefined],
      ['PATCH', `/threads/${OTHER_THREAD}`, { metadata: { x: 1 } }],
      ['DELETE', `/threads/${OTHER_THREAD}`, undefined],
      ['POST', `/threads/${OTHER_THREAD}/state`, { values: { x: 1 } }],
      ['POST', `/threads/${OTHER_THREAD}/copy`, undefined],
    ] as const) {
      expect((await call(method, path, body)).status, `${method} ${path}`).toBe(404);
    }
    const other = await store.db.query(`SELECT metadata, "values" FROM threads WHERE thread_id = $1`, [
      OTHER_THREAD,
    ]);
    expect(other.rows).toEqual([{ metadata: { suite: 'threads' }, values: { secret: 1 } }]);
  });

  it('merges metadata on update', async () => {
    const thread = await client.threads.create({ metadata: { keep: 1, change: 'old' } });
    const updated = await client.threads.update(thread.thread_id, { metadata: { change: 'new', add: true } });
    expect(updated.metadata).toEqual({ keep: 1, change: 'new', add: true });
    expect(updated.thread_id).toBe(thread.thread_id);
    expect(updated.updated_at >= thread.updated_at).toBe(true);
    expect((await client.threads.get(thread.thread_id)).metadata).toEqual(updated.metadata);
  });

  it('updates state by merging per key and records a checkpoint', async () => {
    const thread = await client.threads.create();
    const first = await client.threads.updateState(thread.thread_id, { values: { a: 1, b: { x: 1 } } });
    const second = await client.threads.updateState(thread.thread_id, {
      values: { b: { y: 2 }, c: 3 },
      asNode: 'editor',
    });
    expect(second).toEqual({
      checkpoint: { thread_id: thread.thread_id, checkpoint_ns: '', checkpoint_id: expect.any(String) },
    });
    const firstId = (first as { checkpoint: { checkpoint_id: string } }).checkpoint.checkpoint_id;
    const secondId = (second as { checkpoint: { checkpoint_id: string } }).checkpoint.checkpoint_id;
    expect(secondId).not.toBe(firstId);

    const state = await client.threads.getState(thread.thread_id);
    expect(state.values).toEqual({ a: 1, b: { y: 2 }, c: 3 });
    expect(state.checkpoint.checkpoint_id).toBe(secondId);
    expect(state.parent_checkpoint?.checkpoint_id).toBe(firstId);
    expect((await client.threads.get(thread.thread_id)).values).toEqual({ a: 1, b: { y: 2 }, c: 3 });
  });

  it('copies a thread with its metadata, values and history under new ids', async () => {
    const source = await client.threads.create({ metadata: { origin: 'copy-test' } });
    await client.runs.wait(source.thread_id, 'counter', { input: { who: 'ada' } });
    await client.threads.updateState(source.thread_id, { values: { note: 'edited' } });

    const copy = await client.threads.copy(source.thread_id);
    expect(copy.thread_id).not.toBe(source.thread_id);
    expect(copy).toEqual({
      thread_id: expect.any(String),
      status: 'idle',
      metadata: { origin: 'copy-test' },
      values: { visits: 1, last: 'ada', note: 'edited' },
      interrupts: {},
      created_at: ISO,
      updated_at: ISO,
    });

    const before = await client.threads.getHistory(source.thread_id);
    const after = await client.threads.getHistory(copy.thread_id);
    expect(before).toHaveLength(2);
    expect(after.map((s) => s.values)).toEqual(before.map((s) => s.values));
    expect(after.map((s) => s.metadata)).toEqual(before.map((s) => s.metadata));
    const sourceIds = new Set(before.map((s) => s.checkpoint.checkpoint_id));
    for (const s of after) {
      expect(s.checkpoint.thread_id).toBe(copy.thread_id);
      expect(sourceIds.has(s.checkpoint.checkpoint_id)).toBe(false);
    }
    // Parent links point into the copy's own history.
    expect(after[0]?.parent_checkpoint?.checkpoint_id).toBe(after[1]?.checkpoint.checkpoint_id);

    // The copy is independent of its source.
    await client.threads.updateState(copy.thread_id, { values: { note: 'copy only' } });
    expect((await client.threads.get(source.thread_id)).values).toMatchObject({ note: 'edited' });
  });

  it('deletes an idle thread with its runs, events and states', async () => {
    const thread = await client.threads.create();
    const finished = await client.runs.create(thread.thread_id, 'counter', { input: { who: 'bob' } });
    await client.runs.join(thread.thread_id, finished.run_id);
    await client.threads.delete(thread.thread_id);

    const res = await call('GET', `/threads/${thread.thread_id}`);
    expect(res.status).toBe(404);
    for (const table of ['runs', 'events', 'thread_states']) {
      const rows = await store.db.query(`SELECT 1 FROM ${table} WHERE thread_id = $1`, [thread.thread_id]);
      expect(rows.rowCount, table).toBe(0);
    }
    expect((await call('DELETE', `/threads/${thread.thread_id}`)).status).toBe(404);
  });

  it('refuses to delete or update the state of a thread with a running run (409)', async () => {
    const thread = await client.threads.create();
    const started = new Promise<void>((resolve) => {
      heldStarted = resolve;
    });
    const run = await client.runs.create(thread.thread_id, 'held', { input: {} });
    await started;

    const del = await call('DELETE', `/threads/${thread.thread_id}`);
    expect(del.status).toBe(409);
    const delBody = (await del.json()) as {
      error: string;
      message: string;
      details: Record<string, unknown>;
    };
    expect(delBody).toEqual({
      error: 'conflict',
      message: expect.stringContaining(`run ${run.run_id} is running`),
      details: { thread_id: thread.thread_id, run_id: run.run_id, run_status: 'running' },
    });

    const update = await call('POST', `/threads/${thread.thread_id}/state`, { values: { a: 1 } });
    expect(update.status).toBe(409);
    expect(((await update.json()) as { error: string }).error).toBe('conflict');

    releaseHeld();
    await client.runs.join(thread.thread_id, run.run_id);
    await client.threads.delete(thread.thread_id);
    expect((await call('GET', `/threads/${thread.thread_id}`)).status).toBe(404);
  });

  it('answers unknown threads with 404 in the error shape', async () => {
    for (const [method, path, body] of [
      ['PATCH', `/threads/${UNKNOWN_THREAD}`, { metadata: {} }],
      ['DELETE', `/threads/${UNKNOWN_THREAD}`, undefined],
      ['POST', `/threads/${UNKNOWN_THREAD}/state`, { values: {} }],
      ['POST', `/threads/${UNKNOWN_THREAD}/copy`, undefined],
    ] as const) {
      const res = await call(method, path, body);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(await res.json()).toEqual({
        error: 'not_found',
        message: `thread ${UNKNOWN_THREAD} not found`,
        details: { thread_id: UNKNOWN_THREAD },
      });
    }
  });

  it('answers a malformed thread id with 400 naming the field', async () => {
    for (const [method, path, body] of [
      ['PATCH', '/threads/not-a-uuid', { metadata: {} }],
      ['DELETE', '/threads/not-a-uuid', undefined],
      ['POST', '/threads/not-a-uuid/state', { values: {} }],
      ['POST', '/threads/not-a-uuid/copy', undefined],
    ] as const) {
      const res = await call(method, path, body);
      expect(res.status, `${method} ${path}`).toBe(400);
      const error = (await res.json()) as { error: string; message: string };
      expect(error.error).toBe('invalid_request');
      expect(error.message).toContain('path.thread_id');
    }
  });

  it('answers invalid bodies with 400 naming the field', async () => {
    const thread = await client.threads.create();
    for (const [method, path, body, field] of [
      ['POST', '/threads/search', { limit: 0 }, 'limit'],
      ['POST', '/threads/search', { offset: -1 }, 'offset'],
      ['POST', '/threads/search', { status: 'sleeping' }, 'status'],
      ['POST', '/threads/search', { sort_by: 'name' }, 'sort_by'],
      ['POST', '/threads/search', { ids: ['nope'] }, 'ids.0'],
      ['POST', '/threads/search', { metadata: 'x' }, 'metadata'],
      ['PATCH', `/threads/${thread.thread_id}`, { metadata: [1] }, 'metadata'],
      ['POST', `/threads/${thread.thread_id}/state`, {}, 'values'],
      ['POST', `/threads/${thread.thread_id}/state`, { values: 1 }, 'values'],
    ] as const) {
      const res = await call(method, path, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const error = (await res.json()) as { error: string; details: { issues: { path: string }[] } };
      expect(error.error).toBe('invalid_request');
      expect(error.details.issues[0]?.path).toBe(field);
    }
  });
});
