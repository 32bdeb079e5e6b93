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
