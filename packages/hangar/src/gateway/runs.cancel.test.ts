import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS, startTestServer, type TestServer } from '../testing/index.ts';

/** Runs whose in-flight step saw its abort signal fire, with the reason. */
const aborted = new Map<string, unknown>();
/** Runs that reached their blocking step. */
const blocked = new Set<string>();

/**
 * Records `mark` in the thread state (checkpointed by step `commit`), then
 * blocks in a step until its signal aborts — an in-flight call a cancel must reach.
 */
const blocker = defineAgent({
  name: 'blocker',
  input: z.object({ mark: z.string().optional(), sleep: z.boolean().optional() }),
  async run(ctx, input) {
    if (input.mark !== undefined) {
      ctx.state.update({ [input.mark]: true });
      await ctx.step('commit', async () => input.mark);
    }
    if (input.sleep === true) await ctx.sleep('1h');
    await ctx.step('block', ({ signal }) => {
      blocked.add(ctx.runId);
      return new Promise<never>((_resolve, reject) => {
        signal.addEventListener('abort', () => {
          aborted.set(ctx.runId, signal.reason);
          reject(signal.reason);
        });
      });
    });
    return { unreachable: true };
  },
});

/** Records a mark in the thread state and finishes. */
const marker = defineAgent({
  name: 'marker',
  input: z.object({ mark: z.string() }),
  async run(ctx, input) {
    ctx.state.update({ [input.mark]: true });
    await ctx.step('commit', async () => input.mark);
    return { marked: input.mark };
  },
});

async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.each(STORE_KINDS)('run cancel, delete, batch and multitask strategies (%s)', (kind) => {
  let server: TestServer;
  let client: Client;

  beforeAll(async () => {
    // Heartbeats far apart: a cancel that lands quickly came through the bus, not a heartbeat.
    server = await startTestServer(kind, [blocker, marker], {
      worker: { pollMs: 50, heartbeatMs: 10_000, leaseMs: 30_000 },
    });
    client = new Client({ apiUrl: server.apiUrl });
  });

  afterAll(async () => {
    await server?.stop();
  });

  const blockedRun = async (threadId: string, input: Record<string, unknown> = {}) => {
    const run = await client.runs.create(threadId, 'blocker', { input });
    await until(`run ${run.run_id} to block`, () => blocked.has(run.run_id));
    return run;
  };

  it('cancels a running run: the in-flight step is aborted and the run ends cancelled, recording why and by whom', async () => {
    const thread = await client.threads.create();
    const run = await blockedRun(thread.thread_id);
    const started = Date.now();
    await client.runs.cancel(thread.thread_id, run.run_id, true);
    // wait=true returns once the run has ended, well before a heartbeat could have carried the cancel.
    expect(Date.now() - started).toBeLessThan(5_000);
    const ended = await client.runs.get(thread.thread_id, run.run_id);
    expect(ended.status).toBe('cancelled');
    expect(aborted.get(run.run_id)).toMatchObject({ code: 'cancelled' });
    expect((ended as unknown as { error: unknown }).error).toMatchObject({
      code: 'cancelled',
      details: { action: 'interrupt', reason: 'api', by: 'anonymous' },
    });
    const after = await client.threads.get(thread.thread_id);
    expect(after.status).toBe('idle');
    // The stream of a cancelled run replays to its end: an error event naming the cancel, then end.
    const events: string[] = [];
    for await (const part of client.runs.joinStream(thread.thread_id, run.run_id, { streamMode: 'values' })) {
      events.push(part.event);
    }
    expect(events.slice(-2)).toEqual(['error', 'end']);
  });

  it('cancels a pending run at once, and the thread goes on with the next queued run', async () => {
    const thread = await client.threads.create();
    const first = await blockedRun(thread.thread_id);
    const queued = await client.runs.create(thread.thread_id, 'marker', {
      input: { mark: 'queued' },
      multitaskStrategy: 'enqueue',
    });
    const third = await client.runs.create(thread.thread_id, 'marker', {
      input: { mark: 'third' },
      multitaskStrategy: 'enqueue',
    });
    await client.runs.cancel(thread.thread_id, queued.run_id);
    expect((await client.runs.get(thread.thread_id, queued.run_id)).status).toBe('cancelled');
    // The first run still holds the thread; cancelling it hands the thread to `third`.
    expect((await client.runs.get(thread.thread_id, first.run_id)).status).toBe('running');
    await client.runs.cancel(thread.thread_id, first.run_id, true);
    await client.runs.join(thread.thread_id, third.run_id);
    expect((await client.runs.get(thread.thread_id, third.run_id)).status).toBe('success');
    const state = await client.threads.getState(thread.thread_id);
    expect(state.values).toEqual({ third: true });
  });

  it('cancels a sleeping run without waiting for it to wake', async () => {
    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, 'blocker', { input: { sleep: true } });
    await until('the run to sleep', async () => {
      const current = await client.runs.get(thread.thread_id, run.run_id);
      return current.status === ('waiting' as string);
    });
    const res = await fetch(`${server.apiUrl}/threads/${thread.thread_id}/runs/${run.run_id}/cancel`, {
      method: 'POST',
    });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ outcome: 'cancelled' });
    expect((await client.runs.get(thread.thread_id, run.run_id)).status).toBe('cancelled');
    expect((await client.threads.get(thread.thread_id)).status).toBe('idle');
  });

  it('answers a cancel of a finished run without changing it', async () => {
    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, 'marker', { input: { mark: 'done' } });
    await client.runs.join(thread.thread_id, run.run_id);
    const res = await fetch(`${server.apiUrl}/threads/${thread.thread_id}/runs/${run.run_id}/cancel`, {
      method: 'POST',
    });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ outcome: 'finished' });
    expect((await client.runs.get(thread.thread_id, run.run_id)).status).toBe('success');
  });

  it('rollback restores the state the run started from and deletes the run', async () => {
    const thread = await client.threads.create();
    const before = await client.runs.create(thread.thread_id, 'marker', { input: { mark: 'kept' } });
    await client.runs.join(thread.thread_id, before.run_id);
    const run = await blockedRun(thread.thread_id, { mark: 'undone' });
    expect((await client.threads.getState(thread.thread_id)).values).toEqual({ kept: true, undone: true });
    await client.runs.cancel(thread.thread_id, run.run_id, true, 'rollback');
    expect((await client.threads.getState(thread.thread_id)).values).toEqual({ kept: true });
    const gone = await fetch(`${server.apiUrl}/threads/${thread.thread_id}/runs/${run.run_id}`);
    expect(gone.status).toBe(404);
    // Its checkpoints went with it: the history holds only the kept run's state.
    const history = await client.threads.getHistory(thread.thread_id);
    expect(history.map((h) => h.values)).toEqual([{ kept: true }]);
    expect((await client.threads.get(thread.thread_id)).status).toBe('idle');
  });

  it('multitask interrupt: a new run cancels the one in flight and then runs', async () => {
    const thread = await client.threads.create();
    const first = await blockedRun(thread.thread_id, { mark: 'first' });
    const second = await client.runs.create(thread.thread_id, 'marker', {
      input: { mark: 'second' },
      multitaskStrategy: 'interrupt',
    });
    await client.runs.join(thread.thread_id, second.run_id);
    const interrupted = await client.runs.get(thread.thread_id, first.run_id);
    expect(interrupted.status).toBe('cancelled');
    expect((interrupted as unknown as { error: unknown }).error).toMatchObject({
      details: { action: 'interrupt', reason: 'multitask', by: `run:${second.run_id}` },
    });
    expect(aborted.has(first.run_id)).toBe(true);
    expect((await client.runs.get(thread.thread_id, second.run_id)).status).toBe('success');
    // interrupt keeps what the first run checkpointed.
    expect((await client.threads.getState(thread.thread_id)).values).toEqual({ first: true, second: true });
  });

  it('multitask rollback: the run in flight is undone and deleted before the new one starts', async () => {
    const thread = await client.threads.create();
    const first = await blockedRun(thread.thread_id, { mark: 'first' });
    const second = await client.runs.create(thread.thread_id, 'marker', {
      input: { mark: 'second' },
      multitaskStrategy: 'rollback',
    });
    await client.runs.join(thread.thread_id, second.run_id);
    expect((await fetch(`${server.apiUrl}/threads/${thread.thread_id}/runs/${first.run_id}`)).status).toBe(
      404,
    );
    expect((await client.threads.getState(thread.thread_id)).values).toEqual({ second: true });
  });

  it('multitask reject refuses a second run with 409; enqueue runs them in order', async () => {
    const thread = await client.threads.create();
    const first = await blockedRun(thread.thread_id);
    const res = await fetch(`${server.apiUrl}/threads/${thread.thread_id}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: 'marker', input: { mark: 'x' }, multitask_strategy: 'reject' }),
    });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: 'conflict' });
    const a = await client.runs.create(thread.thread_id, 'marker', {
      input: { mark: 'a' },
      multitaskStrategy: 'enqueue',
    });
    const b = await client.runs.create(thread.thread_id, 'marker', {
      input: { mark: 'b' },
      multitaskStrategy: 'enqueue',
    });
    expect((await client.runs.get(thread.thread_id, a.run_id)).status).toBe('pending');
    await client.runs.cancel(thread.thread_id, first.run_id);
    await client.runs.join(thread.thread_id, b.run_id);
    const [ra, rb] = await Promise.all([
      client.runs.get(thread.thread_id, a.run_id),
      client.runs.get(thread.thread_id, b.run_id),
    ]);
    expect(ra.status).toBe('success');
    expect(rb.status).toBe('success');
    expect(Date.parse(ra.updated_at)).toBeLessThanOrEqual(Date.parse(rb.updated_at));
  });

  it('cancelMany cancels the named runs, or every active run of a thread', async () => {
    const t1 = await client.threads.create();
    const t2 = await client.threads.create();
    const r1 = await blockedRun(t1.thread_id);
    const r2 = await blockedRun(t2.thread_id);
    await client.runs.cancelMany({ runIds: [r1.run_id] });
    await until(
      'r1 to be cancelled',
      async () => ((await client.runs.get(t1.thread_id, r1.run_id)).status as string) === 'cancelled',
    );
    expect((await client.runs.get(t2.thread_id, r2.run_id)).status).toBe('running');
    await client.runs.cancelMany({ threadId: t2.thread_id });
    await until(
      'r2 to be cancelled',
      async () => ((await client.runs.get(t2.thread_id, r2.run_id)).status as string) === 'cancelled',
    );
    const unknown = await fetch(`${server.apiUrl}/runs/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ run_ids: ['00000000-0000-4000-8000-00000000abcd'] }),
    });
    expect(unknown.status).toBe(404);
    const empty = await fetch(`${server.apiUrl}/runs/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(empty.status).toBe(400);
    expect(await empty.json()).toMatchObject({
      error: 'invalid_request',
      message: expect.stringContaining('run_ids'),
    });
  });

  it('deletes a finished run; an active run must be cancelled first', async () => {
    const thread = await client.threads.create();
    const done = await client.runs.create(thread.thread_id, 'marker', { input: { mark: 'x' } });
    await client.runs.join(thread.thread_id, done.run_id);
    await client.runs.delete(thread.thread_id, done.run_id);
    expect((await fetch(`${server.apiUrl}/threads/${thread.thread_id}/runs/${done.run_id}`)).status).toBe(
      404,
    );
    const active = await blockedRun(thread.thread_id);
    const res = await fetch(`${server.apiUrl}/threads/${thread.thread_id}/runs/${active.run_id}`, {
      method: 'DELETE',
    });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: 'conflict', details: { status: 'running' } });
    await client.runs.cancel(thread.thread_id, active.run_id, true);
  });

  it('creates a batch of stateless runs, all or none', async () => {
    const runs = await client.runs.createBatch([
      { assistantId: 'marker', input: { mark: 'b1' } },
      { assistantId: 'marker', input: { mark: 'b2' } },
    ]);
    expect(runs).toHaveLength(2);
    for (const run of runs) {
      await client.runs.join(run.thread_id, run.run_id);
      expect((await client.runs.get(run.thread_id, run.run_id)).status).toBe('success');
    }
    const before = await server.store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM runs');
    const bad = await fetch(`${server.apiUrl}/runs/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([
        { assistant_id: 'marker', input: { mark: 'ok' } },
        { assistant_id: 'marker', input: { mark: 7 } },
      ]),
    });
    expect(bad.status).toBe(422);
    expect(await bad.json()).toMatchObject({
      error: 'input_invalid',
      message: expect.stringContaining('[1].input.mark'),
    });
    const after = await server.store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM runs');
    expect(after.rows[0]?.n).toBe(before.rows[0]?.n);
    const tooMany = await fetch(`${server.apiUrl}/runs/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(
        Array.from({ length: 101 }, () => ({ assistant_id: 'marker', input: { mark: 'x' } })),
      ),
    });
    expect(tooMany.status).toBe(400);
  });

  it('on_disconnect cancel: a streaming client that goes away cancels its run; continue leaves it running', async () => {
    const thread = await client.threads.create();
    const controller = new AbortController();
    let runId: string | undefined;
    const stream = client.runs.stream(thread.thread_id, 'blocker', {
      input: {},
      onDisconnect: 'cancel',
      signal: controller.signal,
      onRunCreated: (meta) => {
        runId = meta.run_id;
      },
    });
    try {
      // The first part (metadata) proves the run exists; leaving the loop closes the connection.
      for await (const _part of stream) break;
    } catch {
      // the abort below may surface here
    }
    controller.abort();
    const id = await until('run id', () => runId);
    await until(
      'the run to be cancelled',
      async () => ((await client.runs.get(thread.thread_id, id)).status as string) === 'cancelled',
    );
    const run = await client.runs.get(thread.thread_id, id);
    expect((run as unknown as { error: unknown }).error).toMatchObject({
      details: { reason: 'client_disconnected' },
    });

    // continue (the default): the run outlives its client.
    const thread2 = await client.threads.create();
    const controller2 = new AbortController();
    let runId2: string | undefined;
    try {
      for await (const _part of client.runs.stream(thread2.thread_id, 'blocker', {
        input: {},
        signal: controller2.signal,
        onRunCreated: (meta) => {
          runId2 = meta.run_id;
        },
      })) {
        break;
      }
    } catch {
      // aborted
    }
    controller2.abort();
    const id2 = await until('run id', () => runId2);
    await until('block', () => blocked.has(id2));
    await new Promise((r) => setTimeout(r, 300));
    expect((await client.runs.get(thread2.thread_id, id2)).status).toBe('running');
    await client.runs.cancel(thread2.thread_id, id2, true);
  });
});
