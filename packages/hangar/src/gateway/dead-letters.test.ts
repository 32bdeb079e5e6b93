/**
 * The dead-letter API over HTTP, with API keys: list (tenant-scoped, filtered,
 * paginated), inspect, redrive (input checked against the agent's schema,
 * exactly once, the run resumes from its checkpoint on a worker) and discard.
 * Runs die here the way the sweeper kills them (claimed, lease expired, cap
 * reached); test/dead-letters.workers.test.ts kills real worker processes.
 */
import { randomUUID } from 'node:crypto';
import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createApiKey } from '../auth/repository.ts';
import { MemoryBus } from '../bus/memory.ts';
import { writeCheckpoint } from '../runs/checkpoint.ts';
import { claimRun, requeueExpiredLeases } from '../runs/repository.ts';
import { type Agent, defineAgent } from '../sdk/agent.ts';
import { testLogger } from '../testing/logger.ts';
import { startTestServer, type TestServer } from '../testing/server.ts';
import { WORKER_DEFAULTS, Worker } from '../worker/worker.ts';

const executions = { fetch: 0, parse: 0 };
const pipeline = defineAgent({
  name: 'pipeline',
  input: z.object({ items: z.array(z.string()).min(1) }),
  async run(ctx, input) {
    const fetched = await ctx.step('fetch', () => {
      executions.fetch++;
      return input.items.length;
    });
    const parsed = await ctx.step('parse', () => {
      executions.parse++;
      return input.items.join(',');
    });
    return { fetched, parsed, note: ctx.state.get().note ?? null };
  },
});

/** Its `call` step fails while `upstream.broken`: two tries, then the run is dead (`retries_exhausted`). */
const upstream = { broken: true, loads: 0, calls: 0 };
const flaky = defineAgent({
  name: 'flaky',
  input: z.object({}),
  retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 20 },
  async run(ctx) {
    const loaded = await ctx.step('load', () => ++upstream.loads);
    const answer = await ctx.step('call', () => {
      upstream.calls++;
      if (upstream.broken) throw new Error('upstream is down');
      return 'ok';
    });
    return { loaded, answer };
  },
});

describe('dead letters over HTTP (postgres)', () => {
  const bus = new MemoryBus();
  let server: TestServer;
  let client: Client;
  let key = '';
  let prefix = '';

  const http = async (method: string, path: string, body?: unknown, apiKey = key) => {
    const res = await fetch(`${server.apiUrl}${path}`, {
      method,
      headers: { 'x-api-key': apiKey, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> & unknown[] };
  };

  /**
   * A pipeline run whose worker completed `fetch` (recorded as a worker would) and then died in
   * its only attempt; the sweeper's cap of 1 makes it a dead letter.
   */
  const deadRun = async (items: string[] = ['a']) => {
    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, 'pipeline', { input: { items } });
    const claimed = await claimRun(server.store.db, {
      owner: 'doomed',
      leaseMs: 60_000,
      agents: ['pipeline'],
    });
    expect(claimed?.run.run_id).toBe(run.run_id);
    if (claimed === null) throw new Error('no run claimed');
    await writeCheckpoint(
      server.store.db,
      claimed.lease,
      { attempt: 1 },
      {
        step: {
          index: 0,
          name: 'fetch',
          kind: 'step',
          status: 'completed',
          result: { v: items.length },
          attempt: 1,
          startedAt: new Date(),
        },
        events: [],
      },
    );
    await server.store.db.query(
      `UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE run_id = $1`,
      [run.run_id],
    );
    await requeueExpiredLeases(server.store.db, 100, { maxAttempts: 1 });
    expect((await client.runs.get(thread.thread_id, run.run_id)).status).toBe('dead');
    return { threadId: thread.thread_id, runId: run.run_id };
  };

  const startWorker = () => {
    const worker = new Worker({
      ...WORKER_DEFAULTS,
      pollMs: 50,
      db: server.store.db,
      bus,
      agents: new Map<string, Agent>([
        ['pipeline', pipeline],
        ['flaky', flaky],
      ]),
      logger: testLogger(),
      llm: {},
    });
    worker.start();
    return worker;
  };

  beforeAll(async () => {
    // No worker in the server: runs die as above, and a worker is started when one should resume.
    server = await startTestServer('postgres', [pipeline, flaky], {
      worker: false,
      bus,
      gateway: { auth: 'keys' },
    });
    const created = await createApiKey(server.store.db, {
      tenantId: 'ops',
      name: 'oncall',
      scopes: ['runs:read', 'runs:write'],
    });
    key = created.key;
    prefix = created.prefix;
    client = new Client({ apiUrl: server.apiUrl, apiKey: key, callerOptions: { maxRetries: 0 } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('lists and inspects dead letters, tenant-scoped, filtered and paginated', async () => {
    const first = await deadRun();
    const second = await deadRun();
    const listed = await http('GET', '/dead-letters');
    expect(listed.status).toBe(200);
    const ids = listed.body.map((l) => (l as { run_id: string }).run_id);
    expect(ids).toEqual(expect.arrayContaining([first.runId, second.runId]));
    const byThread = await http('GET', `/dead-letters?thread_id=${first.threadId}`);
    expect(byThread.body.map((l) => (l as { run_id: string }).run_id)).toEqual([first.runId]);
    expect((await http('GET', '/dead-letters?agent=nobody')).body).toEqual([]);
    const page = await http('GET', '/dead-letters?limit=1&offset=1');
    expect(page.body).toHaveLength(1);
    expect((page.body[0] as { run_id: string }).run_id).toBe(ids[1]);
    const bad = await http('GET', '/dead-letters?limit=0');
    expect(bad.status).toBe(400);
    expect(bad.body.message).toContain('query.limit');

    const detail = await http('GET', `/dead-letters/${first.runId}`);
    expect(detail.status).toBe(200);
    expect(detail.body).toMatchObject({
      run: { run_id: first.runId, status: 'dead', agent: 'pipeline', discarded_at: null },
      error: { code: 'attempts_exhausted', details: { attempts: 1, max_attempts: 1 } },
      attempts: 1,
      steps: [{ index: 0, name: 'fetch', status: 'completed', attempt: 1, error: null }],
      redrives: [],
    });

    // Another tenant sees nothing of it.
    const other = await createApiKey(server.store.db, {
      tenantId: 'rival',
      name: 'x',
      scopes: ['runs:read', 'runs:write'],
    });
    expect((await http('GET', '/dead-letters', undefined, other.key)).body).toEqual([]);
    const stranger = await http('GET', `/dead-letters/${first.runId}`, undefined, other.key);
    expect(stranger.status).toBe(404);
    expect(JSON.stringify(stranger.body)).not.toContain('pipeline');
    expect((await http('GET', `/dead-letters/${randomUUID()}`)).status).toBe(404);
    expect((await http('GET', '/dead-letters/not-a-uuid')).status).toBe(400);
  });

  it('redrives with a fixed input: checked against the schema, exactly once, resumes from the checkpoint', async () => {
    const { threadId, runId } = await deadRun(['poison']);
    const invalid = await http('POST', `/dead-letters/${runId}/redrive`, { input: { items: [] } });
    expect(invalid.status).toBe(422);
    expect(invalid.body).toMatchObject({ error: 'input_invalid' });
    expect(invalid.body.message).toContain('input.items');
    const badState = await http('POST', `/dead-letters/${runId}/redrive`, { state: [1] });
    expect(badState.status).toBe(400);
    expect(badState.body.message).toContain('state');
    const unknown = await http('POST', `/dead-letters/${runId}/redrive`, { inputs: {} });
    expect(unknown.status).toBe(400);
    expect(unknown.body.message).toContain('inputs');
    expect((await client.runs.get(threadId, runId)).status).toBe('dead');

    // Concurrent redrives: one wins, the others are told the run is pending now.
    const answers = await Promise.all(
      [1, 2, 3].map(() =>
        http('POST', `/dead-letters/${runId}/redrive`, {
          input: { items: ['x', 'y'] },
          state: { note: 'fixed' },
        }),
      ),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409, 409]);
    const won = answers.find((a) => a.status === 200)?.body;
    expect(won?.run).toMatchObject({ status: 'pending', attempt: 0 });
    expect(won?.redrive).toMatchObject({
      redriven_by: `key:${prefix}`,
      input_changed: true,
      input: { items: ['x', 'y'] },
      state: { note: 'fixed' },
      previous_attempts: 1,
    });
    const lost = answers.find((a) => a.status === 409);
    expect(lost?.body).toMatchObject({ error: 'conflict', details: { status: 'pending' } });

    // A worker resumes it: `fetch` returns its recorded result (never re-runs), `parse` runs once.
    const before = { ...executions };
    const worker = startWorker();
    try {
      // join answers the thread's state: the patch merged into it, kept by the resumed run.
      expect(await client.runs.join(threadId, runId)).toEqual({ note: 'fixed' });
    } finally {
      await worker.stop();
    }
    const finished = await http('GET', `/threads/${threadId}/runs/${runId}`);
    expect(finished.body).toMatchObject({
      status: 'success',
      attempt: 1,
      output: { fetched: 1, parsed: 'x,y', note: 'fixed' },
    });
    expect(executions.fetch).toBe(before.fetch);
    expect(executions.parse).toBe(before.parse + 1);
    const audit = await http('GET', `/dead-letters/${runId}`);
    expect(audit.body).toMatchObject({
      run: { status: 'success' },
      redrives: [{ redriven_by: `key:${prefix}` }],
    });
    const again = await http('POST', `/dead-letters/${runId}/redrive`, {});
    expect(again.status).toBe(409);
    expect(again.body.message).toContain('is success, not dead');
  });

  it('a run dead of exhausted retries: redriven after the fix, the failed step gets a fresh budget', async () => {
    const worker = startWorker();
    try {
      const thread = await client.threads.create();
      const run = await client.runs.create(thread.thread_id, 'flaky', { input: {} });
      await client.runs.join(thread.thread_id, run.run_id);
      const dead = await http('GET', `/dead-letters/${run.run_id}`);
      expect(dead.body).toMatchObject({
        run: { status: 'dead' },
        error: { code: 'retries_exhausted', details: { step: 'call', attempts: 2 } },
        steps: [
          { name: 'load', status: 'completed' },
          { name: 'call', status: 'failed', attempt: 2, error: { message: 'upstream is down' } },
        ],
      });
      expect(upstream).toMatchObject({ loads: 1, calls: 2 });

      upstream.broken = false;
      const redriven = await http('POST', `/dead-letters/${run.run_id}/redrive`);
      expect(redriven.status).toBe(200);
      await client.runs.join(thread.thread_id, run.run_id);
      const done = await http('GET', `/threads/${thread.thread_id}/runs/${run.run_id}`);
      expect(done.body).toMatchObject({ status: 'success', output: { loaded: 1, answer: 'ok' } });
      // `load` kept its checkpoint; `call` ran once more, on a budget of its own.
      expect(upstream).toMatchObject({ loads: 1, calls: 3 });
      const audit = await http('GET', `/dead-letters/${run.run_id}`);
      expect(audit.body).toMatchObject({
        steps: [
          { name: 'load', status: 'completed' },
          { name: 'call', status: 'completed', attempt: 1 },
        ],
        redrives: [{ previous_error: { code: 'retries_exhausted' }, previous_attempts: 1 }],
      });
    } finally {
      await worker.stop();
    }
  });

  it('discards a dead letter: acknowledged, kept for audit, no longer redrivable', async () => {
    const { runId } = await deadRun();
    const discarded = await http('POST', `/dead-letters/${runId}/discard`);
    expect(discarded.status).toBe(200);
    expect(discarded.body).toMatchObject({ run_id: runId, status: 'dead', discarded_by: `key:${prefix}` });
    const open = await http('GET', '/dead-letters');
    expect(open.body.map((l) => (l as { run_id: string }).run_id)).not.toContain(runId);
    const all = await http('GET', '/dead-letters?include_discarded=true');
    expect(all.body.map((l) => (l as { run_id: string }).run_id)).toContain(runId);
    const redrive = await http('POST', `/dead-letters/${runId}/redrive`);
    expect(redrive.status).toBe(409);
    expect(redrive.body.message).toContain(`was discarded by key:${prefix}`);
    expect((await http('POST', `/dead-letters/${runId}/discard`)).status).toBe(409);
    expect((await http('POST', `/dead-letters/${randomUUID()}/discard`)).status).toBe(404);
  });
});
