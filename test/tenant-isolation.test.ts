/**
 * Tenant isolation, as an attack: tenant A owns an assistant, threads with
 * state and history, a finished run and a live one, and a store item; tenant
 * B, with its own valid key (every scope), tries every route of the API on
 * A's ids. Each attempt must answer exactly what it answers for ids that
 * exist nowhere (a 404 for an object, an empty list for a search), never a
 * 403, never a 5xx, never a byte of A's data; and A's objects are unchanged
 * afterwards.
 *
 * The suite reads the routes the gateway registered and fails when one has no
 * case below: a new route must say how it keeps tenants apart.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Client } from '@langchain/langgraph-sdk';
import { defineAgent } from 'hangar';
import { STORE_KINDS, startTestServer, type TestServer } from 'hangar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createApiKey } from '../packages/hangar/src/auth/repository.ts';

/** Appears in every piece of A's data: any response to B that contains it leaks. */
const MARKER = `a-secret-${randomBytes(6).toString('hex')}`;

const notes = defineAgent({
  name: 'notes',
  input: z.object({ text: z.string() }),
  async run(ctx, input) {
    const text = await ctx.step('note', async () => input.text);
    ctx.state.update({ note: text, secret: MARKER });
    return { noted: text, secret: MARKER };
  },
});
/** A run that stays live (waiting) for the whole suite. */
const sleeper = defineAgent({
  name: 'sleeper',
  input: z.object({}),
  async run(ctx) {
    await ctx.sleep('1h');
    return { woke: true };
  },
});

/** A run that waits on an interrupt (human in the loop) for the whole suite. */
const asker = defineAgent({
  name: 'asker',
  input: z.object({}),
  async run(ctx) {
    return ctx.interrupt({ question: MARKER });
  },
});

/** The ids an attack uses: A's real ones, or ones that exist nowhere. */
interface Ids {
  assistant: string;
  thread: string;
  liveThread: string;
  run: string;
  liveRun: string;
  checkpoint: string;
  namespace: string[];
  key: string;
  /** A pending interrupt of A's (on `askThread`). */
  interrupt: string;
  askThread: string;
  /** A dead letter of A's (a run whose worker kept dying). */
  deadRun: string;
}

interface Attack {
  method: string;
  path: string;
  body?: unknown;
}

interface Case {
  /** `METHOD /registered/:url`, as Fastify registered it. */
  route: string;
  attack: (ids: Ids) => Attack;
  /**
   * `404` (the default): not found, as for an id that exists nowhere.
   * `list`: 200 with nothing of A's. `ghost`: whatever an id that exists nowhere gets.
   * A number other than 404: that status (ids are global: a create with A's id can't succeed).
   */
  expect?: 404 | 'list' | 'ghost' | number;
  /** Creates something for B: runs after every other case, and is not compared with ghost ids. */
  creates?: boolean;
}

const run = (text: string, extra: Record<string, unknown> = {}) => ({
  assistant_id: 'notes',
  input: { text },
  ...extra,
});

const CASES: Case[] = [
  // Assistants (A's own assistant: the default ones share their ids across tenants by design).
  {
    route: 'GET /assistants/:assistant_id',
    attack: (i) => ({ method: 'GET', path: `/assistants/${i.assistant}` }),
  },
  {
    route: 'GET /assistants/:assistant_id/schemas',
    attack: (i) => ({ method: 'GET', path: `/assistants/${i.assistant}/schemas` }),
  },
  {
    route: 'GET /assistants/:assistant_id/graph',
    attack: (i) => ({ method: 'GET', path: `/assistants/${i.assistant}/graph` }),
  },
  {
    route: 'GET /assistants/:assistant_id/subgraphs',
    attack: (i) => ({ method: 'GET', path: `/assistants/${i.assistant}/subgraphs` }),
  },
  {
    route: 'GET /assistants/:assistant_id/subgraphs/:namespace',
    attack: (i) => ({ method: 'GET', path: `/assistants/${i.assistant}/subgraphs/x` }),
  },
  {
    route: 'POST /assistants/:assistant_id/versions',
    attack: (i) => ({ method: 'POST', path: `/assistants/${i.assistant}/versions`, body: {} }),
  },
  {
    route: 'POST /assistants/:assistant_id/latest',
    attack: (i) => ({ method: 'POST', path: `/assistants/${i.assistant}/latest`, body: { version: 1 } }),
  },
  {
    route: 'PATCH /assistants/:assistant_id',
    attack: (i) => ({
      method: 'PATCH',
      path: `/assistants/${i.assistant}`,
      body: { metadata: { pwned: true } },
    }),
  },
  {
    route: 'DELETE /assistants/:assistant_id',
    attack: (i) => ({ method: 'DELETE', path: `/assistants/${i.assistant}` }),
  },
  {
    route: 'POST /assistants/search',
    attack: () => ({ method: 'POST', path: '/assistants/search', body: { limit: 1000 } }),
    expect: 'list',
  },
  {
    route: 'POST /assistants/count',
    attack: () => ({ method: 'POST', path: '/assistants/count', body: { metadata: { owner: MARKER } } }),
    expect: 'ghost',
  },
  {
    route: 'POST /agents/search',
    attack: () => ({ method: 'POST', path: '/agents/search', body: { limit: 1000 } }),
    expect: 'list',
  },
  { route: 'GET /agents/:agent_id', attack: (i) => ({ method: 'GET', path: `/agents/${i.assistant}` }) },
  {
    route: 'GET /agents/:agent_id/schemas',
    attack: (i) => ({ method: 'GET', path: `/agents/${i.assistant}/schemas` }),
  },

  // Threads.
  { route: 'GET /threads/:thread_id', attack: (i) => ({ method: 'GET', path: `/threads/${i.thread}` }) },
  {
    route: 'GET /threads/:thread_id/state',
    attack: (i) => ({ method: 'GET', path: `/threads/${i.thread}/state` }),
  },
  {
    route: 'GET /threads/:thread_id/state/:checkpoint_id',
    attack: (i) => ({ method: 'GET', path: `/threads/${i.thread}/state/${i.checkpoint}` }),
  },
  {
    route: 'GET /threads/:thread_id/history',
    attack: (i) => ({ method: 'GET', path: `/threads/${i.thread}/history` }),
  },
  {
    route: 'POST /threads/:thread_id/history',
    attack: (i) => ({ method: 'POST', path: `/threads/${i.thread}/history`, body: { limit: 10 } }),
  },
  {
    route: 'POST /threads/search',
    attack: (i) => ({ method: 'POST', path: '/threads/search', body: { ids: [i.thread, i.liveThread] } }),
    expect: 'list',
  },
  {
    route: 'POST /threads/count',
    attack: () => ({ method: 'POST', path: '/threads/count', body: { metadata: { owner: MARKER } } }),
    expect: 'ghost',
  },
  {
    route: 'POST /threads/prune',
    attack: (i) => ({
      method: 'POST',
      path: '/threads/prune',
      body: { thread_ids: [i.thread, i.liveThread] },
    }),
    expect: 'ghost',
  },
  {
    route: 'POST /threads/prune',
    attack: (i) => ({
      method: 'POST',
      path: '/threads/prune',
      body: { thread_ids: [i.thread, i.liveThread], strategy: 'keep_latest' },
    }),
    expect: 'ghost',
  },
  {
    route: 'POST /threads/:thread_id/state/checkpoint',
    attack: (i) => ({
      method: 'POST',
      path: `/threads/${i.thread}/state/checkpoint`,
      body: { checkpoint: { checkpoint_id: i.checkpoint } },
    }),
  },
  {
    route: 'PATCH /threads/:thread_id/state',
    attack: (i) => ({
      method: 'PATCH',
      path: `/threads/${i.thread}/state`,
      body: { metadata: { pwned: true } },
    }),
  },
  {
    route: 'PATCH /threads/:thread_id',
    attack: (i) => ({ method: 'PATCH', path: `/threads/${i.thread}`, body: { metadata: { pwned: true } } }),
  },
  {
    route: 'DELETE /threads/:thread_id',
    attack: (i) => ({ method: 'DELETE', path: `/threads/${i.thread}` }),
  },
  {
    route: 'POST /threads/:thread_id/state',
    attack: (i) => ({
      method: 'POST',
      path: `/threads/${i.thread}/state`,
      body: { values: { pwned: true } },
    }),
  },
  {
    route: 'POST /threads/:thread_id/copy',
    attack: (i) => ({ method: 'POST', path: `/threads/${i.thread}/copy`, body: {} }),
  },

  // Runs on A's threads.
  {
    route: 'POST /threads/:thread_id/runs',
    attack: (i) => ({ method: 'POST', path: `/threads/${i.thread}/runs`, body: run('b') }),
  },
  {
    route: 'POST /threads/:thread_id/runs/wait',
    attack: (i) => ({ method: 'POST', path: `/threads/${i.thread}/runs/wait`, body: run('b') }),
  },
  {
    route: 'POST /threads/:thread_id/runs/stream',
    attack: (i) => ({ method: 'POST', path: `/threads/${i.thread}/runs/stream`, body: run('b') }),
  },
  {
    // An empty list, as for a thread that exists nowhere.
    route: 'GET /threads/:thread_id/runs',
    attack: (i) => ({ method: 'GET', path: `/threads/${i.thread}/runs` }),
    expect: 'list',
  },
  {
    route: 'GET /threads/:thread_id/runs/:run_id',
    attack: (i) => ({ method: 'GET', path: `/threads/${i.thread}/runs/${i.run}` }),
  },
  {
    route: 'GET /threads/:thread_id/runs/:run_id/stream',
    attack: (i) => ({ method: 'GET', path: `/threads/${i.liveThread}/runs/${i.liveRun}/stream` }),
  },
  {
    route: 'GET /threads/:thread_id/runs/:run_id/join',
    attack: (i) => ({ method: 'GET', path: `/threads/${i.liveThread}/runs/${i.liveRun}/join` }),
  },
  {
    route: 'POST /threads/:thread_id/runs/:run_id/cancel',
    attack: (i) => ({ method: 'POST', path: `/threads/${i.liveThread}/runs/${i.liveRun}/cancel`, body: {} }),
  },
  {
    route: 'DELETE /threads/:thread_id/runs/:run_id',
    attack: (i) => ({ method: 'DELETE', path: `/threads/${i.thread}/runs/${i.run}` }),
  },
  {
    route: 'POST /runs/cancel',
    attack: (i) => ({ method: 'POST', path: '/runs/cancel', body: { run_ids: [i.liveRun] } }),
  },
  {
    route: 'GET /runs/:run_id/stream',
    attack: (i) => ({ method: 'GET', path: `/runs/${i.liveRun}/stream` }),
  },
  // The Agent Protocol thread stream: SSE, and the WebSocket's GET (refused before any upgrade).
  {
    route: 'POST /threads/:thread_id/stream',
    attack: (i) => ({
      method: 'POST',
      path: `/threads/${i.askThread}/stream`,
      body: { channels: ['lifecycle', 'input'], since: 0 },
    }),
  },
  {
    route: 'GET /threads/:thread_id/stream',
    attack: (i) => ({ method: 'GET', path: `/threads/${i.askThread}/stream` }),
  },

  {
    route: 'POST /threads/:thread_id/events',
    attack: (i) => ({
      method: 'POST',
      path: `/threads/${i.askThread}/events`,
      body: { name: 'payment', payload: { pwned: true } },
    }),
  },

  // Approvals (interrupts).
  {
    route: 'GET /approvals',
    attack: (i) => ({ method: 'GET', path: `/approvals?status=all&thread_id=${i.askThread}` }),
    expect: 'list',
  },
  {
    route: 'GET /approvals/:interrupt_id',
    attack: (i) => ({ method: 'GET', path: `/approvals/${i.interrupt}` }),
  },
  {
    route: 'POST /approvals/:interrupt_id',
    attack: (i) => ({
      method: 'POST',
      path: `/approvals/${i.interrupt}`,
      body: { decision: 'approve', data: { pwned: true } },
    }),
  },

  // Dead letters.
  {
    route: 'GET /dead-letters',
    attack: () => ({ method: 'GET', path: '/dead-letters?agent=notes&include_discarded=true' }),
    expect: 'list',
  },
  {
    route: 'GET /dead-letters/:run_id',
    attack: (i) => ({ method: 'GET', path: `/dead-letters/${i.deadRun}` }),
  },
  {
    route: 'POST /dead-letters/:run_id/redrive',
    attack: (i) => ({
      method: 'POST',
      path: `/dead-letters/${i.deadRun}/redrive`,
      body: { state: { pwned: true } },
    }),
  },
  {
    route: 'POST /dead-letters/:run_id/discard',
    attack: (i) => ({ method: 'POST', path: `/dead-letters/${i.deadRun}/discard` }),
  },

  // Store.
  {
    // A missing item is `null` (200), what the SDK's `getItem` expects; the same for A's.
    route: 'GET /store/items',
    attack: (i) => ({
      method: 'GET',
      path: `/store/items?namespace=${encodeURIComponent(i.namespace.join('.'))}&key=${i.key}`,
    }),
    expect: 'ghost',
  },
  {
    route: 'DELETE /store/items',
    attack: (i) => ({ method: 'DELETE', path: '/store/items', body: { namespace: i.namespace, key: i.key } }),
    expect: 'ghost',
  },
  {
    route: 'POST /store/items/search',
    attack: (i) => ({
      method: 'POST',
      path: '/store/items/search',
      body: { namespace_prefix: i.namespace.slice(0, 1) },
    }),
    expect: 'list',
  },
  {
    route: 'POST /store/namespaces',
    attack: () => ({ method: 'POST', path: '/store/namespaces', body: {} }),
    expect: 'list',
  },

  // Creates that name A's ids. Thread and run ids are global: B cannot take A's, and is told
  // only that the id is taken (409, no data). Assistant ids and store keys are per tenant: B
  // gets its own object, A's stays as it was.
  {
    route: 'POST /threads',
    attack: (i) => ({
      method: 'POST',
      path: '/threads',
      body: { thread_id: i.thread, if_exists: 'do_nothing' },
    }),
    expect: 409,
    creates: true,
  },
  {
    route: 'POST /runs',
    attack: (i) => ({ method: 'POST', path: '/runs', body: run('b', { run_id: i.run }) }),
    expect: 409,
    creates: true,
  },
  {
    route: 'POST /runs/wait',
    attack: (i) => ({ method: 'POST', path: '/runs/wait', body: run('b', { run_id: i.run }) }),
    expect: 409,
    creates: true,
  },
  {
    route: 'POST /runs/stream',
    attack: (i) => ({ method: 'POST', path: '/runs/stream', body: run('b', { run_id: i.run }) }),
    expect: 409,
    creates: true,
  },
  {
    route: 'POST /runs/batch',
    attack: (i) => ({ method: 'POST', path: '/runs/batch', body: [run('b', { run_id: i.liveRun })] }),
    expect: 409,
    creates: true,
  },
  {
    route: 'POST /assistants',
    attack: (i) => ({
      method: 'POST',
      path: '/assistants',
      body: { graph_id: 'notes', assistant_id: i.assistant, if_exists: 'do_nothing' },
    }),
    expect: 200,
    creates: true,
  },
  {
    route: 'PUT /store/items',
    attack: (i) => ({
      method: 'PUT',
      path: '/store/items',
      body: { namespace: i.namespace, key: i.key, value: { b: 1 } },
    }),
    expect: 204,
    creates: true,
  },
];

describe.each(STORE_KINDS)('tenant isolation (%s)', (kind) => {
  let server: TestServer;
  let apiUrl: string;
  let a: Client;
  let keyB = '';
  let keyA = '';
  let ids: Ids;
  let before: unknown;

  const send = async (key: string, attack: Attack) => {
    const res = await fetch(`${apiUrl}${attack.path}`, {
      method: attack.method,
      headers: {
        'x-api-key': key,
        ...(attack.body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(attack.body === undefined ? {} : { body: JSON.stringify(attack.body) }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, text, error: (json as { error?: unknown } | undefined)?.error };
  };

  /** Everything of A's that B must never change, read through A's own key. */
  const snapshot = async () => ({
    assistant: await a.assistants.get(ids.assistant),
    versions: await a.assistants.getVersions(ids.assistant),
    thread: await a.threads.get(ids.thread),
    liveThread: await a.threads.get(ids.liveThread),
    state: await a.threads.getState(ids.thread),
    history: await a.threads.getHistory(ids.thread, { limit: 100 }),
    runs: await a.runs.list(ids.thread),
    liveRuns: await a.runs.list(ids.liveThread),
    item: await a.store.getItem(ids.namespace, ids.key),
    askThread: await a.threads.get(ids.askThread),
    approval: await (
      await fetch(`${apiUrl}/approvals/${ids.interrupt}`, { headers: { 'x-api-key': keyA } })
    ).json(),
    threads: await a.threads.search({ limit: 100 }),
    deadLetter: await (
      await fetch(`${apiUrl}/dead-letters/${ids.deadRun}`, { headers: { 'x-api-key': keyA } })
    ).json(),
  });

  beforeAll(async () => {
    server = await startTestServer(kind, [notes, sleeper, asker], {
      worker: { pollMs: 50 },
      gateway: { auth: 'keys', limits: { keyRequestsPerSecond: 0 } },
    });
    apiUrl = server.apiUrl;
    const db = server.store.db;
    const all = ['runs:read', 'runs:write', 'admin'] as const;
    keyA = (await createApiKey(db, { tenantId: 'tenant-a', name: 'a', scopes: [...all] })).key;
    keyB = (await createApiKey(db, { tenantId: 'tenant-b', name: 'b', scopes: [...all] })).key;
    a = new Client({ apiUrl, apiKey: keyA, callerOptions: { maxRetries: 0 } });

    const assistant = await a.assistants.create({
      graphId: 'notes',
      name: 'a-notes',
      metadata: { owner: MARKER },
    });
    const thread = await a.threads.create({ metadata: { owner: MARKER } });
    await a.runs.wait(thread.thread_id, 'notes', { input: { text: MARKER } });
    await a.threads.updateState(thread.thread_id, { values: { extra: MARKER } });
    const { checkpoint } = await a.threads.getState(thread.thread_id);
    const [done] = await a.runs.list(thread.thread_id);
    const liveThread = await a.threads.create({ metadata: { owner: MARKER } });
    const live = await a.runs.create(liveThread.thread_id, 'sleeper', { input: {} });
    await a.store.putItem(['mem', MARKER], 'k1', { secret: MARKER });
    // The live run settles into its sleep (`waiting`, a Hangar status the SDK's type lacks), so
    // nothing of A's moves during the attacks.
    const liveStatus = async () => String((await a.runs.get(liveThread.thread_id, live.run_id)).status);
    for (let i = 0; i < 200 && (await liveStatus()) !== 'waiting'; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await liveStatus()).toBe('waiting');
    const askThread = await a.threads.create({ metadata: { owner: MARKER } });
    const asking = await a.runs.create(askThread.thread_id, 'asker', { input: {} });
    for (
      let i = 0;
      i < 200 && (await a.runs.get(askThread.thread_id, asking.run_id)).status !== 'interrupted';
      i++
    ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const asked = (await a.threads.get(askThread.thread_id)).interrupts[asking.run_id]?.[0]?.id;
    if (asked === undefined) throw new Error('the asker run did not interrupt');
    // A dead letter of A's, as the sweeper's crash-loop cap leaves one.
    const deadThread = await a.threads.create({ metadata: { owner: MARKER } });
    const doomed = await a.runs.create(deadThread.thread_id, 'notes', { input: { text: MARKER } });
    await a.runs.join(deadThread.thread_id, doomed.run_id);
    await db.query(
      `UPDATE runs SET status = 'dead', error = '{"code": "attempts_exhausted", "type": "AttemptsExhausted",
         "message": "died", "details": {"attempts": 5, "max_attempts": 5}}'::jsonb WHERE run_id = $1`,
      [doomed.run_id],
    );
    ids = {
      interrupt: asked,
      askThread: askThread.thread_id,
      assistant: assistant.assistant_id,
      thread: thread.thread_id,
      liveThread: liveThread.thread_id,
      run: done?.run_id ?? '',
      liveRun: live.run_id,
      checkpoint: checkpoint.checkpoint_id ?? '',
      namespace: ['mem', MARKER],
      key: 'k1',
      deadRun: doomed.run_id,
    };
    before = await snapshot();
  });

  afterAll(async () => {
    await server?.stop();
  });

  const ghost = (): Ids => ({
    assistant: randomUUID(),
    thread: randomUUID(),
    liveThread: randomUUID(),
    run: randomUUID(),
    liveRun: randomUUID(),
    checkpoint: randomUUID(),
    namespace: ['mem', `ghost${randomBytes(4).toString('hex')}`],
    key: 'k1',
    interrupt: randomUUID(),
    askThread: randomUUID(),
    deadRun: randomUUID(),
  });

  it('has an isolation case for every route the gateway serves', () => {
    const routes = server.hangar.gateway?.auth.registeredRoutes() ?? [];
    expect(routes.length).toBeGreaterThan(10);
    const covered = new Set(CASES.map((c) => c.route));
    const missing = routes
      .filter((r) => r.method !== 'HEAD' && r.access !== 'public')
      .map((r) => `${r.method} ${r.url}`)
      .filter((route) => !covered.has(route));
    expect(missing, 'routes without a tenant-isolation case in test/tenant-isolation.test.ts').toEqual([]);
    // And no case for a route that is gone (a renamed route must move its case).
    const served = new Set(routes.map((r) => `${r.method} ${r.url}`));
    expect(CASES.map((c) => c.route).filter((route) => !served.has(route))).toEqual([]);
  });

  const ordered = [...CASES.filter((c) => c.creates !== true), ...CASES.filter((c) => c.creates === true)];
  for (const c of ordered) {
    it(`B on A's ids: ${c.route}`, async () => {
      const served = server.hangar.gateway?.auth.registeredRoutes() ?? [];
      if (!served.some((r) => `${r.method} ${r.url}` === c.route)) {
        throw new Error(`${c.route} is not served (yet): remove or rename its case`);
      }
      const attack = c.attack(ids);
      const res = await send(keyB, attack);
      const sent = JSON.stringify(attack);
      // Never A's data: no marker, and no id of A's that B did not send itself.
      expect(res.text).not.toContain(MARKER);
      for (const id of [
        ids.assistant,
        ids.thread,
        ids.liveThread,
        ids.run,
        ids.liveRun,
        ids.checkpoint,
        ids.interrupt,
        ids.askThread,
      ]) {
        if (!sent.includes(id)) expect(res.text, `leaks ${id}`).not.toContain(id);
      }
      expect(res.status, res.text).not.toBe(403);
      expect(res.status, res.text).toBeLessThan(500);
      const expected = c.expect ?? 404;
      if (expected === 'list') {
        expect(res.status, res.text).toBe(200);
      } else if (typeof expected === 'number') {
        expect(res.status, res.text).toBe(expected);
        if (expected === 404) expect(res.error).toBe('not_found');
      }
      if (c.creates !== true) {
        // Indistinguishable from ids that exist nowhere.
        const nowhere = await send(keyB, c.attack(ghost()));
        expect({ status: res.status, error: res.error }, nowhere.text).toEqual({
          status: nowhere.status,
          error: nowhere.error,
        });
      }
    });
  }

  it("B's SDK client gets 404s for A's objects", async () => {
    const b = new Client({ apiUrl, apiKey: keyB, callerOptions: { maxRetries: 0 } });
    const notFound = { status: 404 };
    await expect(b.threads.get(ids.thread)).rejects.toMatchObject(notFound);
    await expect(b.threads.getState(ids.thread)).rejects.toMatchObject(notFound);
    await expect(b.runs.get(ids.thread, ids.run)).rejects.toMatchObject(notFound);
    await expect(b.runs.join(ids.liveThread, ids.liveRun)).rejects.toMatchObject(notFound);
    await expect(b.runs.cancel(ids.liveThread, ids.liveRun)).rejects.toMatchObject(notFound);
    // LangGraph's resume of A's interrupted thread: as for a thread that exists nowhere.
    await expect(
      b.runs.create(ids.askThread, 'asker', { command: { resume: { pwned: true } } }),
    ).rejects.toMatchObject(notFound);
    expect(await b.assistants.search({ metadata: { owner: MARKER } })).toEqual([]);
    expect(await b.threads.search({ metadata: { owner: MARKER } })).toEqual([]);
    // B's own item (the PUT case above) under the same namespace and key; never A's value.
    const items = (await b.store.searchItems(['mem'])).items;
    expect(items.map((item) => item.value)).not.toContainEqual({ secret: MARKER });
  });

  it("leaves A's objects exactly as they were", async () => {
    expect(await snapshot()).toEqual(before);
    expect(String((await a.runs.get(ids.liveThread, ids.liveRun)).status)).toBe('waiting');
    expect(before).toMatchObject({
      deadLetter: { run: { status: 'dead', discarded_at: null }, redrives: [] },
    });
  });
});
