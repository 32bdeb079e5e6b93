import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { uuidv5 } from '../assistants/registry.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS, startTestServer, type TestServer, type TestStore } from '../testing/index.ts';

const greeter = defineAgent({
  name: 'greeter',
  description: 'Says hello',
  input: z.object({ name: z.string() }),
  output: z.object({ greeting: z.string() }),
  run: async (_ctx, input) => ({ greeting: `hello ${input.name}` }),
});
const counter = defineAgent({ name: 'counter', input: z.object({ n: z.number() }), run: async () => 1 });

const GREETER_ID = uuidv5('greeter');
const COUNTER_ID = uuidv5('counter');
/** An extra assistant of the default tenant, on the greeter graph, with its own metadata. */
const TEAM_ID = '00000000-0000-4000-8000-0000000000a1';
/** An assistant that exists only in another tenant. */
const OTHER_TENANT_ID = '00000000-0000-4000-8000-0000000000b2';

describe.each(STORE_KINDS)('assistant endpoints (%s)', (kind) => {
  let server: TestServer;
  let store: TestStore;
  let apiUrl: string;
  let client: Client;

  beforeAll(async () => {
    server = await startTestServer(kind, [greeter, counter], { worker: false });
    ({ store, apiUrl } = server);
    client = new Client({ apiUrl });
    await store.db.query(
      `INSERT INTO assistants (tenant_id, assistant_id, graph_id, name, metadata, created_at, updated_at)
       VALUES ('default', $1, 'greeter', 'greeter-team', '{"team":"a","created_by":"user"}', now() + interval '1 minute', now() + interval '1 minute')`,
      [TEAM_ID],
    );
    await store.db.query(`INSERT INTO tenants (tenant_id, name) VALUES ('other', 'Other tenant')`);
    await store.db.query(
      `INSERT INTO assistants (tenant_id, assistant_id, graph_id, name) VALUES ('other', $1, 'greeter', 'theirs')`,
      [OTHER_TENANT_ID],
    );
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

  it('gets the default assistant of an agent through the SDK', async () => {
    const assistant = await client.assistants.get(GREETER_ID);
    expect(assistant).toEqual({
      assistant_id: GREETER_ID,
      graph_id: 'greeter',
      name: 'greeter',
      description: 'Says hello',
      config: {},
      context: {},
      metadata: { created_by: 'system' },
      version: 1,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      updated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    expect((await client.assistants.get(COUNTER_ID)).description).toBeNull();
  });

  it('searches by graph id and metadata through the SDK', async () => {
    const byGraph = await client.assistants.search({ graphId: 'greeter', limit: 10 });
    // Newest first by default: the team assistant was created a minute "later".
    expect(byGraph.map((a) => a.assistant_id)).toEqual([TEAM_ID, GREETER_ID]);

    const byMetadata = await client.assistants.search({ metadata: { team: 'a' }, limit: 10 });
    expect(byMetadata.map((a) => a.assistant_id)).toEqual([TEAM_ID]);

    const system = await client.assistants.search({ metadata: { created_by: 'system' }, limit: 10 });
    expect(system.map((a) => a.assistant_id).sort()).toEqual([COUNTER_ID, GREETER_ID].sort());

    expect(await client.assistants.search({ graphId: 'nope' })).toEqual([]);
  });

  it('pages and sorts search results, never showing another tenant', async () => {
    const all = await client.assistants.search({ limit: 100, sortBy: 'name', sortOrder: 'asc' });
    expect(all.map((a) => a.name)).toEqual(['counter', 'greeter', 'greeter-team']);

    const page = await client.assistants.search({ limit: 1, offset: 1, sortBy: 'name', sortOrder: 'asc' });
    expect(page.map((a) => a.name)).toEqual(['greeter']);
  });

  it('returns the JSON Schemas of the agent behind an assistant through the SDK', async () => {
    const schemas = await client.assistants.getSchemas(GREETER_ID);
    expect(schemas).toEqual({
      graph_id: 'greeter',
      input_schema: expect.objectContaining({
        type: 'object',
        properties: { name: { type: 'string' } },
        required: ['name'],
      }),
      output_schema: expect.objectContaining({
        type: 'object',
        properties: { greeting: { type: 'string' } },
      }),
      state_schema: null,
      config_schema: null,
      context_schema: null,
    });
    expect((await client.assistants.getSchemas(COUNTER_ID)).output_schema).toBeNull();
  });

  it.each([
    ['an unknown id', '00000000-0000-4000-8000-000000000000'],
    ["another tenant's id", OTHER_TENANT_ID],
  ])('answers 404 not_found for %s', async (_, id) => {
    for (const path of [
      `/assistants/${id}`,
      `/assistants/${id}/schemas`,
      `/agents/${id}`,
      `/agents/${id}/schemas`,
    ]) {
      const res = await fetch(`${apiUrl}${path}`);
      expect(res.status, path).toBe(404);
      expect(await res.json(), path).toEqual({
        error: 'not_found',
        message: `assistant ${id} not found`,
        details: { assistant_id: id },
      });
    }
  });

  it('answers 400 invalid_request naming the path field for an id that is not a uuid', async () => {
    for (const [path, field] of [
      ['/assistants/not-a-uuid', 'path.assistant_id'],
      ['/assistants/not-a-uuid/schemas', 'path.assistant_id'],
      ['/agents/not-a-uuid', 'path.agent_id'],
      ['/agents/not-a-uuid/schemas', 'path.agent_id'],
    ] as const) {
      const res = await fetch(`${apiUrl}${path}`);
      expect(res.status, path).toBe(400);
      const body = (await res.json()) as {
        error: string;
        message: string;
        details: { issues: { path: string }[] };
      };
      expect(body.error, path).toBe('invalid_request');
      expect(body.message, path).toContain(field);
      expect(body.details.issues[0]?.path, path).toBe(field);
    }
  });

  it.each([
    ['/assistants/search', { limit: 0 }, 'limit'],
    ['/assistants/search', { limit: 1001 }, 'limit'],
    ['/assistants/search', { offset: -1 }, 'offset'],
    ['/assistants/search', { metadata: 'x' }, 'metadata'],
    ['/assistants/search', { graph_id: 7 }, 'graph_id'],
    ['/assistants/search', { sort_by: 'version' }, 'sort_by'],
    ['/assistants/search', { sort_order: 'up' }, 'sort_order'],
    ['/agents/search', { limit: 'ten' }, 'limit'],
    ['/agents/search', { name: 3 }, 'name'],
  ])('answers 400 for an invalid %s body %j, naming %s', async (path, body, field) => {
    const res = await post(path, body);
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: string; details: { issues: { path: string }[] } };
    expect(json.error).toBe('invalid_request');
    expect(json.details.issues[0]?.path).toBe(field);
  });

  it('ignores unknown search fields', async () => {
    const res = await post('/assistants/search', {
      graph_id: 'counter',
      select: ['assistant_id'],
      whatever: 1,
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { assistant_id: string }[]).map((a) => a.assistant_id)).toEqual([
      COUNTER_ID,
    ]);
  });

  it('serves Agent Protocol aliases over the same assistants', async () => {
    const agent = await fetch(`${apiUrl}/agents/${GREETER_ID}`);
    expect(agent.status).toBe(200);
    expect(await agent.json()).toEqual({
      agent_id: GREETER_ID,
      name: 'greeter',
      description: 'Says hello',
      metadata: { created_by: 'system' },
      capabilities: { 'ap.io.messages': false, 'ap.io.streaming': true },
    });
    // No description: the field is left out, as the spec types it as a string.
    expect(await (await fetch(`${apiUrl}/agents/${COUNTER_ID}`)).json()).not.toHaveProperty('description');

    const search = await post('/agents/search', { name: 'greeter-team' });
    expect(search.status).toBe(200);
    expect(((await search.json()) as { agent_id: string }[]).map((a) => a.agent_id)).toEqual([TEAM_ID]);

    const byMetadata = await post('/agents/search', {
      metadata: { created_by: 'system' },
      limit: 1,
      offset: 1,
    });
    expect(((await byMetadata.json()) as unknown[]).length).toBe(1);

    const schemas = await fetch(`${apiUrl}/agents/${COUNTER_ID}/schemas`);
    expect(schemas.status).toBe(200);
    expect(await schemas.json()).toEqual({
      agent_id: COUNTER_ID,
      input_schema: expect.objectContaining({ properties: { n: { type: 'number' } } }),
      // The spec requires an object: no output schema becomes the schema that accepts anything.
      output_schema: {},
    });
  });
});

/** The error a request got, as the SDK throws it (`HTTPError`: status and the raw body). */
async function sdkError(promise: Promise<unknown>): Promise<{ status: number; body: ErrorBody }> {
  const err = (await promise.then(
    () => {
      throw new Error('expected the request to fail');
    },
    (e: unknown) => e,
  )) as { status: number; text: string };
  return { status: err.status, body: JSON.parse(err.text) as ErrorBody };
}

interface ErrorBody {
  error: string;
  message: string;
  details?: { issues?: { path: string }[] } & Record<string, unknown>;
}

describe.each(STORE_KINDS)('assistant create, update, versions and delete (%s)', (kind) => {
  let server: TestServer;
  let store: TestStore;
  let apiUrl: string;
  let client: Client;
  /** An assistant of tenant `other`, written straight to the table. */
  const THEIRS = '00000000-0000-4000-8000-0000000000c3';

  beforeAll(async () => {
    server = await startTestServer(kind, [greeter, counter]);
    ({ store, apiUrl } = server);
    client = new Client({ apiUrl });
    await store.db.query(`INSERT INTO tenants (tenant_id, name) VALUES ('other', 'Other tenant')`);
    await store.db.query(
      `INSERT INTO assistants (tenant_id, assistant_id, graph_id, name, config)
       VALUES ('other', $1, 'greeter', 'theirs', '{"configurable":{"secret":"x"}}')`,
      [THEIRS],
    );
  });

  afterAll(async () => {
    await server?.stop();
  });

  const send = (method: string, path: string, body?: unknown) =>
    fetch(`${apiUrl}${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });

  it('creates an assistant with a generated id in the SDK shape, finds it, and counts it', async () => {
    const created = await client.assistants.create({
      graphId: 'greeter',
      name: 'formal greeter',
      description: 'Greets formally',
      config: { tags: ['formal'], configurable: { tone: 'formal' } },
      context: { locale: 'en-GB' },
      metadata: { team: 'docs' },
    });
    expect(created).toEqual({
      assistant_id: expect.stringMatching(
        /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      ),
      graph_id: 'greeter',
      name: 'formal greeter',
      description: 'Greets formally',
      config: { tags: ['formal'], configurable: { tone: 'formal' } },
      context: { locale: 'en-GB' },
      metadata: { team: 'docs' },
      version: 1,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      updated_at: created.created_at,
    });
    expect(await client.assistants.get(created.assistant_id)).toEqual(created);
    const found = await client.assistants.search({ metadata: { team: 'docs' } });
    expect(found).toEqual([created]);
    expect(await client.assistants.count({ graphId: 'greeter', metadata: { team: 'docs' } })).toBe(1);
    expect(await client.assistants.count({ graphId: 'counter', metadata: { team: 'docs' } })).toBe(0);

    // Name and description default to the graph id and null.
    const bare = await client.assistants.create({ graphId: 'counter' });
    expect(bare).toMatchObject({
      graph_id: 'counter',
      name: 'counter',
      description: null,
      config: {},
      context: {},
      metadata: {},
    });
  });

  it('takes a client-supplied id; a repeat raises 409 or, with ifExists do_nothing, answers the original', async () => {
    const id = '00000000-0000-4000-8000-0000000000d4';
    const first = await client.assistants.create({ graphId: 'greeter', assistantId: id, name: 'first' });
    expect(first).toMatchObject({ assistant_id: id, name: 'first', version: 1 });

    const raised = await sdkError(
      client.assistants.create({ graphId: 'greeter', assistantId: id, name: 'second' }),
    );
    expect(raised).toEqual({
      status: 409,
      body: { error: 'conflict', message: `assistant ${id} already exists`, details: { assistant_id: id } },
    });
    const kept = await client.assistants.create({
      graphId: 'counter',
      assistantId: id,
      name: 'second',
      ifExists: 'do_nothing',
    });
    expect(kept).toEqual(first);
    expect((await client.assistants.get(id)).name).toBe('first');
  });

  it('updates as a new version, lists versions newest first, and sets an older one as latest', async () => {
    const { assistant_id: id, created_at } = await client.assistants.create({
      graphId: 'greeter',
      name: 'v1',
      config: { configurable: { tone: 'dry' } },
      metadata: { stage: 'draft', owner: 'ana' },
    });
    const v2 = await client.assistants.update(id, {
      name: 'v2',
      config: { configurable: { tone: 'warm' } },
      metadata: { stage: 'live' },
      description: 'second take',
    });
    expect(v2).toMatchObject({
      assistant_id: id,
      graph_id: 'greeter',
      name: 'v2',
      description: 'second take',
      config: { configurable: { tone: 'warm' } },
      // Metadata is merged, as LangGraph does; the rest is replaced.
      metadata: { stage: 'live', owner: 'ana' },
      version: 2,
      created_at,
    });
    expect(v2.updated_at >= created_at).toBe(true);

    const versions = await client.assistants.getVersions(id);
    expect(versions.map((v) => [v.version, v.name, v.config])).toEqual([
      [2, 'v2', { configurable: { tone: 'warm' } }],
      [1, 'v1', { configurable: { tone: 'dry' } }],
    ]);
    // The SDK's AssistantVersion: no updated_at.
    expect(Object.keys(versions[1] ?? {}).sort()).toEqual(
      [
        'assistant_id',
        'config',
        'context',
        'created_at',
        'description',
        'graph_id',
        'metadata',
        'name',
        'version',
      ].sort(),
    );
    expect(
      (await client.assistants.getVersions(id, { metadata: { stage: 'draft' } })).map((v) => v.version),
    ).toEqual([1]);
    expect((await client.assistants.getVersions(id, { limit: 1, offset: 1 })).map((v) => v.version)).toEqual([
      1,
    ]);

    const back = await client.assistants.setLatest(id, 1);
    expect(back).toMatchObject({
      version: 1,
      name: 'v1',
      description: null,
      config: { configurable: { tone: 'dry' } },
      metadata: { stage: 'draft', owner: 'ana' },
    });
    expect(await client.assistants.get(id)).toEqual(back);

    // The next update gets a fresh number, not 2 again.
    expect((await client.assistants.update(id, { name: 'v3' })).version).toBe(3);
    expect((await client.assistants.getVersions(id)).map((v) => v.version)).toEqual([3, 2, 1]);

    const missing = await sdkError(client.assistants.setLatest(id, 9));
    expect(missing).toEqual({
      status: 404,
      body: {
        error: 'not_found',
        message: `assistant ${id} has no version 9`,
        details: { assistant_id: id, version: 9 },
      },
    });
  });

  it('deletes an assistant: then get, update, versions and runs answer 404', async () => {
    const { assistant_id: id } = await client.assistants.create({ graphId: 'greeter' });
    await client.assistants.update(id, { name: 'doomed' });
    expect(await client.assistants.delete(id)).toBeUndefined();

    const notFound = {
      error: 'not_found',
      message: `assistant ${id} not found`,
      details: { assistant_id: id },
    };
    expect(await sdkError(client.assistants.get(id))).toEqual({ status: 404, body: notFound });
    expect(await sdkError(client.assistants.update(id, { name: 'x' }))).toEqual({
      status: 404,
      body: notFound,
    });
    expect(await sdkError(client.assistants.getVersions(id))).toEqual({ status: 404, body: notFound });
    expect(await sdkError(client.assistants.delete(id))).toEqual({ status: 404, body: notFound });
    expect(await sdkError(client.runs.create(null, id, { input: { name: 'x' } }))).toEqual({
      status: 404,
      body: notFound,
    });
    const versions = await store.db.query('SELECT 1 FROM assistant_versions WHERE assistant_id = $1', [id]);
    expect(versions.rowCount).toBe(0);
  });

  it('runs a custom assistant: its agent, with its config under the run config', async () => {
    const { assistant_id: id } = await client.assistants.create({
      graphId: 'greeter',
      config: { tags: ['assistant'], recursion_limit: 5, configurable: { tone: 'warm', model: 'small' } },
    });
    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, id, {
      input: { name: 'Ada' },
      config: { tags: ['run'], configurable: { tone: 'dry' } },
    });
    expect(run.assistant_id).toBe(id);
    // The run wins key by key, and inside `configurable`.
    const merged = { tags: ['run'], recursion_limit: 5, configurable: { tone: 'dry', model: 'small' } };
    expect((run as unknown as { config: unknown }).config).toEqual(merged);
    expect(await client.runs.join(thread.thread_id, run.run_id)).toEqual({ greeting: 'hello Ada' });
    const done = await client.runs.get(thread.thread_id, run.run_id);
    expect(done).toMatchObject({ status: 'success', assistant_id: id });
    expect((done as unknown as { config: unknown }).config).toEqual(merged);

    // Stateless runs resolve the same way; an uppercase id is the same assistant.
    const res = await send('POST', '/runs/wait', { assistant_id: id.toUpperCase(), input: { name: 'Bo' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ greeting: 'hello Bo' });
  });

  it('keeps the default assistant: updatable (runs by agent name use its config), never deleted or moved', async () => {
    const updated = await client.assistants.update(COUNTER_ID, { config: { configurable: { step: 2 } } });
    expect(updated).toMatchObject({ assistant_id: COUNTER_ID, graph_id: 'counter', version: 2 });

    const byName = await client.runs.create(null, 'counter', { input: { n: 1 } });
    expect(byName.assistant_id).toBe(COUNTER_ID);
    expect((byName as unknown as { config: unknown }).config).toEqual({ configurable: { step: 2 } });

    const deleted = await sdkError(client.assistants.delete(COUNTER_ID));
    expect(deleted.status).toBe(409);
    expect(deleted.body).toMatchObject({
      error: 'conflict',
      details: { assistant_id: COUNTER_ID, graph_id: 'counter' },
    });
    const moved = await sdkError(client.assistants.update(COUNTER_ID, { graphId: 'greeter' }));
    expect(moved.status).toBe(409);
    expect(moved.body.message).toContain('graph_id cannot change');
    expect((await client.assistants.get(COUNTER_ID)).graph_id).toBe('counter');
    expect((await client.runs.create(null, 'counter', { input: { n: 2 } })).assistant_id).toBe(COUNTER_ID);
  });

  it('serves a start → agent → end graph and no subgraphs', async () => {
    const graph = await client.assistants.getGraph(GREETER_ID, { xray: true });
    expect(graph.nodes.map((n) => n.id)).toEqual(['__start__', 'greeter', '__end__']);
    expect(graph.edges).toEqual([
      { source: '__start__', target: 'greeter' },
      { source: 'greeter', target: '__end__' },
    ]);
    expect(await client.assistants.getSubgraphs(GREETER_ID)).toEqual({});
    expect(await client.assistants.getSubgraphs(GREETER_ID, { namespace: 'inner', recurse: true })).toEqual(
      {},
    );
    expect((await sdkError(client.assistants.getGraph(THEIRS))).status).toBe(404);
  });

  it("never shows, changes or deletes another tenant's assistant", async () => {
    const notFound = {
      status: 404,
      body: {
        error: 'not_found',
        message: `assistant ${THEIRS} not found`,
        details: { assistant_id: THEIRS },
      },
    };
    expect(await sdkError(client.assistants.get(THEIRS))).toEqual(notFound);
    expect(await sdkError(client.assistants.update(THEIRS, { name: 'mine now' }))).toEqual(notFound);
    expect(await sdkError(client.assistants.delete(THEIRS))).toEqual(notFound);
    expect(await sdkError(client.assistants.getVersions(THEIRS))).toEqual(notFound);
    expect(await sdkError(client.assistants.setLatest(THEIRS, 1))).toEqual(notFound);
    expect(await sdkError(client.runs.create(null, THEIRS, { input: { name: 'x' } }))).toEqual(notFound);
    expect((await client.assistants.search({ limit: 100 })).map((a) => a.assistant_id)).not.toContain(THEIRS);

    const row = await store.db.query<{ name: string; version: number }>(
      `SELECT name, version FROM assistants WHERE tenant_id = 'other' AND assistant_id = $1`,
      [THEIRS],
    );
    expect(row.rows).toEqual([{ name: 'theirs', version: 1 }]);
    const versions = await store.db.query('SELECT 1 FROM assistant_versions WHERE assistant_id = $1', [
      THEIRS,
    ]);
    expect(versions.rowCount).toBe(0);

    // The same id is free in this tenant: ids are per tenant, and creating it reveals nothing.
    const mine = await client.assistants.create({ graphId: 'counter', assistantId: THEIRS });
    expect(mine).toMatchObject({ assistant_id: THEIRS, graph_id: 'counter', name: 'counter', config: {} });
  });

  it('answers 404 agent_not_found naming graph_id for an agent that is not configured', async () => {
    for (const res of [
      await send('POST', '/assistants', { graph_id: 'nope' }),
      await send('PATCH', `/assistants/${GREETER_ID}`, { graph_id: 'nope' }),
    ]) {
      expect(res.status).toBe(404);
      const body = (await res.json()) as ErrorBody;
      expect(body).toMatchObject({
        error: 'agent_not_found',
        details: { graph_id: 'nope', known_agents: ['counter', 'greeter'] },
      });
      expect(body.message).toMatch(/^graph_id: no agent "nope"/);
    }
    expect((await client.assistants.get(GREETER_ID)).version).toBe(1);
  });

  const big = { blob: 'x'.repeat(70 * 1024) };
  it.each([
    ['POST', '/assistants', {}, 'graph_id'],
    ['POST', '/assistants', { graph_id: '' }, 'graph_id'],
    ['POST', '/assistants', { graph_id: 'greeter', assistant_id: 'not-a-uuid' }, 'assistant_id'],
    ['POST', '/assistants', { graph_id: 'greeter', assistant_id: COUNTER_ID }, 'assistant_id'],
    ['POST', '/assistants', { graph_id: 'greeter', name: 'n'.repeat(201) }, 'name'],
    ['POST', '/assistants', { graph_id: 'greeter', name: 'a\u0000b' }, 'name'],
    ['POST', '/assistants', { graph_id: 'greeter', description: 'd'.repeat(2001) }, 'description'],
    ['POST', '/assistants', { graph_id: 'greeter', metadata: big }, 'metadata'],
    [
      'POST',
      '/assistants',
      { graph_id: 'greeter', config: { configurable: { 'k\u0000': 1 } } },
      'config.configurable.k\u0000',
    ],
    ['POST', '/assistants', { graph_id: 'greeter', context: [1] }, 'context'],
    ['POST', '/assistants', { graph_id: 'greeter', if_exists: 'replace' }, 'if_exists'],
    ['PATCH', `/assistants/${GREETER_ID}`, { config: 'x' }, 'config'],
    ['PATCH', `/assistants/${GREETER_ID}`, { context: big }, 'context'],
    ['PATCH', '/assistants/not-a-uuid', {}, 'path.assistant_id'],
    ['DELETE', '/assistants/not-a-uuid', undefined, 'path.assistant_id'],
    ['DELETE', `/assistants/${GREETER_ID}?delete_threads=true`, undefined, 'query.delete_threads'],
    ['POST', `/assistants/${GREETER_ID}/versions`, { limit: 0 }, 'limit'],
    ['POST', `/assistants/${GREETER_ID}/versions`, { offset: -1 }, 'offset'],
    ['POST', `/assistants/${GREETER_ID}/versions`, { metadata: 'x' }, 'metadata'],
    ['POST', `/assistants/${GREETER_ID}/latest`, {}, 'version'],
    ['POST', `/assistants/${GREETER_ID}/latest`, { version: 0 }, 'version'],
    ['POST', `/assistants/${GREETER_ID}/latest`, { version: 1.5 }, 'version'],
    ['POST', '/assistants/count', { graph_id: 3 }, 'graph_id'],
  ] as const)('answers 400 for %s %s %j, naming %s', async (method, path, body, field) => {
    const res = await send(method, path, body);
    expect(res.status).toBe(400);
    const json = (await res.json()) as ErrorBody;
    expect(json.error).toBe('invalid_request');
    expect(json.details?.issues?.[0]?.path).toBe(field);
    expect(json.message).toContain(field);
  });
});
