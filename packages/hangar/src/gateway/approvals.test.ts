/**
 * Human in the loop over HTTP: an agent's `ctx.interrupt` seen and answered
 * through the LangGraph SDK (`command: { resume }`, thread interrupts and
 * state tasks, the `updates` stream's `__interrupt__`) and through Hangar's
 * approvals API (exactly once, who answered).
 */
import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createApiKey } from '../auth/repository.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { startTestServer, type TestServer } from '../testing/server.ts';

let executions = 0;
const refund = defineAgent({
  name: 'refund',
  input: z.object({ amount: z.number() }),
  async run(ctx, input) {
    const quoted = await ctx.step('quote', () => {
      executions++;
      return input.amount;
    });
    const answer = await ctx.interrupt({ question: `refund ${quoted}?` });
    return { answer };
  },
});

const waiter = defineAgent({
  name: 'waiter',
  input: z.object({ order: z.string() }),
  async run(ctx, input) {
    return { paid: await ctx.waitForEvent('payment', { match: { order: input.order } }) };
  },
});

let pairSteps = 0;
/** Asks two questions at once (parallel interrupts); `hold` keeps it running before it asks. */
let hold: Promise<void> = Promise.resolve();
const pair = defineAgent({
  name: 'pair',
  input: z.object({}),
  async run(ctx) {
    await ctx.step('prepare', async () => {
      await hold;
      return ++pairSteps;
    });
    return Promise.all([ctx.interrupt({ q: 'first?' }), ctx.interrupt({ q: 'second?' })]);
  },
});

describe.each(STORE_KINDS)('approvals and command.resume (%s)', (kind) => {
  let server: TestServer;
  let client: Client;
  let key = '';
  let prefix = '';

  const http = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${server.apiUrl}${path}`, {
      method,
      headers: { 'x-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> & unknown[] };
  };

  /** Starts a refund run on a new thread and waits until it is interrupted. */
  const interrupted = async (amount: number) => {
    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, 'refund', { input: { amount } });
    for (let i = 0; i < 200; i++) {
      if ((await client.runs.get(thread.thread_id, run.run_id)).status === 'interrupted') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await client.runs.get(thread.thread_id, run.run_id)).status).toBe('interrupted');
    return { threadId: thread.thread_id, runId: run.run_id };
  };

  beforeAll(async () => {
    server = await startTestServer(kind, [refund, waiter, pair], { gateway: { auth: 'keys' } });
    const created = await createApiKey(server.store.db, {
      tenantId: 'shop',
      name: 'alice',
      scopes: ['runs:read', 'runs:write'],
    });
    key = created.key;
    prefix = created.prefix;
    client = new Client({ apiUrl: server.apiUrl, apiKey: key, callerOptions: { maxRetries: 0 } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('shows the interrupt on the thread and resumes with command.resume (the official SDK)', async () => {
    const before = executions;
    const { threadId, runId } = await interrupted(120);
    const thread = await client.threads.get(threadId);
    expect(thread.status).toBe('interrupted');
    const [pending] = thread.interrupts[runId] ?? [];
    expect(pending?.value).toEqual({ question: 'refund 120?' });
    const state = await client.threads.getState(threadId);
    expect(state.tasks).toEqual([
      expect.objectContaining({
        id: runId,
        interrupts: [{ id: pending?.id, value: { question: 'refund 120?' } }],
      }),
    ]);
    expect(state.next).toEqual(['interrupt']);

    const resumed = await client.runs.create(threadId, 'refund', { command: { resume: { ok: true } } });
    expect(resumed.run_id).toBe(runId);
    const result = await client.runs.join(threadId, runId);
    expect(result).toEqual({ answer: { ok: true } });
    expect(executions - before).toBe(1);
    expect((await client.threads.get(threadId)).interrupts).toEqual({});

    // The LangGraph stream shape: an `updates` chunk with `__interrupt__`.
    const updates: unknown[] = [];
    for await (const chunk of client.runs.joinStream(threadId, runId, { streamMode: 'updates' })) {
      if (chunk.event === 'updates') updates.push(chunk.data);
    }
    expect(updates).toContainEqual({
      __interrupt__: [{ id: pending?.id, value: { question: 'refund 120?' } }],
    });

    // Who answered, and when.
    const approval = await http('GET', `/approvals/${pending?.id}`);
    expect(approval.body).toMatchObject({
      status: 'answered',
      answer: { ok: true },
      answered_by: `key:${prefix}`,
    });

    // Nothing left to resume.
    const again = await http('POST', `/threads/${threadId}/runs`, {
      assistant_id: 'refund',
      command: { resume: 1 },
    });
    expect(again.status).toBe(409);
    expect(again.body.error).toBe('conflict');
  });

  it('wait, join and a LangGraph stream answer at the interrupt, as LangGraph does; a resume goes on to the end', async () => {
    const thread = await client.threads.create();
    // `wait` returns when the run pauses: the thread's values with `__interrupt__`, the run `interrupted`.
    const paused = (await client.runs.wait(thread.thread_id, 'refund', { input: { amount: 5 } })) as {
      __interrupt__?: Array<{ id: string; value: unknown }>;
    };
    const [interrupt] = paused.__interrupt__ ?? [];
    expect(interrupt?.value).toEqual({ question: 'refund 5?' });
    const [run] = await client.runs.list(thread.thread_id);
    expect(run?.status).toBe('interrupted');
    const runId = run?.run_id ?? '';
    // `join` on a paused run answers at once, the same way.
    expect(await client.runs.join(thread.thread_id, runId)).toEqual(paused);
    // A stream in LangGraph form ends at the interrupt (replayed from the start here).
    const chunks: Array<{ event: string; data: unknown }> = [];
    for await (const chunk of client.runs.joinStream(thread.thread_id, runId, { streamMode: 'updates' })) {
      chunks.push(chunk);
    }
    expect(chunks.at(-1)).toMatchObject({ event: 'updates', data: { __interrupt__: [interrupt] } });

    // A resume streamed: from the answer to the end, past the interrupt it answered.
    const resumed: Array<{ event: string; data: unknown }> = [];
    for await (const chunk of client.runs.stream(thread.thread_id, 'refund', {
      command: { resume: 'yes' },
      streamMode: 'values',
    })) {
      resumed.push(chunk);
    }
    // It ran to the end: the stream closes with `end`, not at an interrupt.
    expect(resumed.at(-1)).toMatchObject({ event: 'end' });
    expect((await client.runs.get(thread.thread_id, runId)).status).toBe('success');
    expect(await client.runs.join(thread.thread_id, runId)).toEqual({ answer: 'yes' });
    // Replaying the whole run now goes past the old interrupt to the end.
    const replay: string[] = [];
    for await (const chunk of client.runs.joinStream(thread.thread_id, runId, { streamMode: 'updates' })) {
      replay.push(chunk.event);
    }
    expect(replay.filter((e) => e === 'updates').length).toBeGreaterThan(1);
    expect(replay.at(-1)).not.toBe('error');
  });

  it('lists pending approvals and answers one exactly once', async () => {
    const { threadId, runId } = await interrupted(7);
    const list = await http('GET', `/approvals?status=pending&agent=refund&thread_id=${threadId}`);
    expect(list.status).toBe(200);
    expect(list.body).toHaveLength(1);
    const [item] = list.body as Array<{
      interrupt_id: string;
      run_id: string;
      payload: unknown;
      status: string;
    }>;
    expect(item).toMatchObject({ run_id: runId, payload: { question: 'refund 7?' }, status: 'pending' });
    const id = item?.interrupt_id ?? '';

    const first = await http('POST', `/approvals/${id}`, {
      decision: 'approve',
      data: { amount: 5 },
      comment: 'partial',
    });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      status: 'answered',
      decision: 'approve',
      answered_by: `key:${prefix}`,
    });
    const second = await http('POST', `/approvals/${id}`, { decision: 'reject' });
    expect(second.status).toBe(409);
    expect(second.body).toMatchObject({
      error: 'conflict',
      details: {
        status: 'answered',
        decision: 'approve',
        answer: { decision: 'approve', data: { amount: 5 }, comment: 'partial' },
      },
    });
    const result = await client.runs.join(threadId, runId);
    expect(result).toEqual({ answer: { decision: 'approve', data: { amount: 5 }, comment: 'partial' } });
    const pendingNow = await http('GET', `/approvals?thread_id=${threadId}`);
    expect(pendingNow.body).toEqual([]);
    const answered = await http('GET', `/approvals?status=answered&run_id=${runId}`);
    expect((answered.body as Array<{ interrupt_id: string }>).map((a) => a.interrupt_id)).toEqual([id]);
  });

  it('refuses bad answers with a 4xx naming the field', async () => {
    const { threadId } = await interrupted(1);
    const [pending] = (await http('GET', `/approvals?thread_id=${threadId}`)).body as Array<{
      interrupt_id: string;
    }>;
    const noDecision = await http('POST', `/approvals/${pending?.interrupt_id}`, { data: 1 });
    expect(noDecision.status).toBe(400);
    expect(JSON.stringify(noDecision.body)).toContain('decision');
    const badId = await http('POST', '/approvals/not-a-uuid', { decision: 'approve' });
    expect(badId.status).toBe(400);
    const unknown = await http('POST', '/approvals/00000000-0000-4000-8000-000000000000', {
      decision: 'approve',
    });
    expect(unknown.status).toBe(404);
    const badStatus = await http('GET', '/approvals?status=maybe');
    expect(badStatus.status).toBe(400);
    const goto = await http('POST', `/threads/${threadId}/runs`, {
      assistant_id: 'refund',
      command: { resume: 1, goto: 'somewhere' },
    });
    expect(goto.status).toBe(400);
    expect(JSON.stringify(goto.body)).toContain('command.goto');
    const stateless = await http('POST', '/runs', { assistant_id: 'refund', command: { resume: 1 } });
    expect(stateless.status).toBe(400);
    // The interrupt is still pending after all that.
    const still = await http('GET', `/approvals/${pending?.interrupt_id}`);
    expect(still.body.status).toBe('pending');
  });

  it('POST /threads/{id}/events resumes the run waiting for it, and keeps an event nobody waits for', async () => {
    const thread = await client.threads.create();
    const early = await http('POST', `/threads/${thread.thread_id}/events`, {
      name: 'payment',
      payload: { order: 'b', amount: 1 },
    });
    expect(early.status).toBe(200);
    expect(early.body.consumed_by).toBeNull();
    const run = await client.runs.create(thread.thread_id, 'waiter', { input: { order: 'a' } });
    const sent = await http('POST', `/threads/${thread.thread_id}/events`, {
      name: 'payment',
      payload: { order: 'a', amount: 30 },
    });
    expect(sent.status).toBe(200);
    expect(await client.runs.join(thread.thread_id, run.run_id)).toEqual({
      paid: { order: 'a', amount: 30 },
    });
    // The early event (another order) was kept for a later wait: a run for order b gets it at once.
    const next = await client.runs.create(thread.thread_id, 'waiter', { input: { order: 'b' } });
    expect(await client.runs.join(thread.thread_id, next.run_id)).toEqual({
      paid: { order: 'b', amount: 1 },
    });

    const noName = await http('POST', `/threads/${thread.thread_id}/events`, { payload: 1 });
    expect(noName.status).toBe(400);
    expect(JSON.stringify(noName.body)).toContain('name');
    const unknown = await http('POST', '/threads/00000000-0000-4000-8000-000000000000/events', { name: 'x' });
    expect(unknown.status).toBe(404);
  });

  it('parallel interrupts: both on the thread, one command.resume answers both, a second answer is a 409', async () => {
    const before = pairSteps;
    const thread = await client.threads.create();
    const paused = (await client.runs.wait(thread.thread_id, 'pair', { input: {} })) as {
      __interrupt__?: Array<{ id: string; value: unknown }>;
    };
    const [runRow] = await client.runs.list(thread.thread_id);
    const runId = runRow?.run_id ?? '';
    expect(runRow?.status).toBe('interrupted');
    const listed = (await client.threads.get(thread.thread_id)).interrupts[runId] ?? [];
    expect(listed.map((i) => i.value)).toEqual([{ q: 'first?' }, { q: 'second?' }]);
    expect(paused.__interrupt__).toEqual(listed);
    const state = await client.threads.getState(thread.thread_id);
    expect(state.tasks).toEqual([expect.objectContaining({ id: runId, interrupts: listed })]);
    const [a, b] = listed.map((i) => i.id as string);

    // A bare value can't say which one it answers.
    const bare = await http('POST', `/threads/${thread.thread_id}/runs`, {
      assistant_id: 'pair',
      command: { resume: 'yes' },
    });
    expect(bare.status).toBe(409);
    expect(bare.body.details).toEqual({ interrupt_ids: [a, b] });

    const resumed = await client.runs.create(thread.thread_id, 'pair', {
      command: { resume: { [a as string]: 'A', [b as string]: 'B' } },
    });
    expect(resumed.run_id).toBe(runId);
    expect(await client.runs.join(thread.thread_id, runId)).toEqual(['A', 'B']);
    expect(pairSteps - before).toBe(1);

    // Either one again: 409 with the first answer, by both routes.
    const again = await http('POST', `/threads/${thread.thread_id}/runs`, {
      assistant_id: 'pair',
      command: { resume: { [b as string]: 'other' } },
    });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ error: 'conflict', details: { interrupt_id: b, answer: 'B' } });
    const approval = await http('POST', `/approvals/${a}`, { decision: 'reject' });
    expect(approval.status).toBe(409);
    expect(approval.body).toMatchObject({ details: { status: 'answered', answer: 'A' } });
  });

  it('parallel interrupts answered one at a time: the run stays interrupted until the last', async () => {
    const thread = await client.threads.create();
    await client.runs.wait(thread.thread_id, 'pair', { input: {} });
    const [runRow] = await client.runs.list(thread.thread_id);
    const runId = runRow?.run_id ?? '';
    const [a, b] = ((await client.threads.get(thread.thread_id)).interrupts[runId] ?? []).map(
      (i) => i.id as string,
    );
    const partial = await client.runs.create(thread.thread_id, 'pair', {
      command: { resume: { [b as string]: 'B' } },
    });
    expect(partial.status).toBe('interrupted');
    expect((await client.threads.get(thread.thread_id)).interrupts).toEqual({
      [runId]: [{ id: a, value: { q: 'first?' } }],
    });
    const pendingNow = await http('GET', `/approvals?run_id=${runId}`);
    expect((pendingNow.body as Array<{ interrupt_id: string }>).map((p) => p.interrupt_id)).toEqual([a]);
    const last = await http('POST', `/approvals/${a}`, { decision: 'approve' });
    expect(last.status).toBe(200);
    expect(await client.runs.join(thread.thread_id, runId)).toEqual([
      { decision: 'approve', data: null, comment: null },
      'B',
    ]);
  });

  it('a resume sent while the run is still running is a 409 naming its state; the answer after it lands', async () => {
    let release = () => {};
    hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const thread = await client.threads.create();
      const run = await client.runs.create(thread.thread_id, 'pair', { input: {} });
      for (let i = 0; i < 200; i++) {
        if ((await client.runs.get(thread.thread_id, run.run_id)).status === 'running') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const early = await http('POST', `/threads/${thread.thread_id}/runs`, {
        assistant_id: 'pair',
        command: { resume: 'too soon' },
      });
      expect(early.status).toBe(409);
      expect(early.body).toMatchObject({
        error: 'conflict',
        details: { run_id: run.run_id, status: 'running' },
      });
      expect(String(early.body.message)).toContain('is running');
      release();
      const paused = (await client.runs.join(thread.thread_id, run.run_id)) as {
        __interrupt__?: Array<{ id: string }>;
      };
      const ids = (paused.__interrupt__ ?? []).map((i) => i.id);
      expect(ids).toHaveLength(2);
      await client.runs.create(thread.thread_id, 'pair', {
        command: { resume: Object.fromEntries(ids.map((id, n) => [id, n])) },
      });
      expect(await client.runs.join(thread.thread_id, run.run_id)).toEqual([0, 1]);
    } finally {
      release();
      hold = Promise.resolve();
    }
  });

  it('cancelling an interrupted run closes its interrupt; a later answer is a 409 saying so', async () => {
    const { threadId, runId } = await interrupted(3);
    const [pending] = (await http('GET', `/approvals?thread_id=${threadId}`)).body as Array<{
      interrupt_id: string;
    }>;
    await client.runs.cancel(threadId, runId, true);
    expect((await client.runs.get(threadId, runId)).status).toBe('cancelled');
    const late = await http('POST', `/approvals/${pending?.interrupt_id}`, { decision: 'approve' });
    expect(late.status).toBe(409);
    expect(late.body).toMatchObject({ error: 'conflict', details: { status: 'cancelled' } });
    expect((await client.threads.get(threadId)).status).toBe('idle');
  });
});
