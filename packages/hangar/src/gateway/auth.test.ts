import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { uuidv5 } from '../assistants/registry.ts';
import { hashKey, type Scope } from '../auth/keys.ts';
import { createApiKey, revokeApiKey } from '../auth/repository.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS, startTestServer, type TestServer, type TestStore } from '../testing/index.ts';
import { routeAccess } from './auth.ts';

const echo = defineAgent({ name: 'echo', input: z.object({ text: z.string() }), run: async (_c, i) => i });
const KEY_CACHE_MS = 300;

describe('routeAccess: the one map from routes to scopes', () => {
  it('reads need runs:read, writes runs:write, /admin admin; health and docs are public', () => {
    expect(routeAccess('GET', '/threads/:thread_id/runs/:run_id')).toBe('runs:read');
    expect(routeAccess('HEAD', '/threads/:thread_id')).toBe('runs:read');
    expect(routeAccess('POST', '/threads/search')).toBe('runs:read');
    expect(routeAccess('POST', '/threads/:thread_id/history')).toBe('runs:read');
    expect(routeAccess('POST', '/assistants/:id/versions')).toBe('runs:read');
    expect(routeAccess('POST', '/threads/:thread_id/runs')).toBe('runs:write');
    expect(routeAccess('POST', '/threads/:thread_id/runs/:run_id/cancel')).toBe('runs:write');
    expect(routeAccess('DELETE', '/threads/:thread_id')).toBe('runs:write');
    expect(routeAccess('PUT', '/store/items')).toBe('runs:write');
    expect(routeAccess('POST', '/admin/dead-letter/redrive')).toBe('admin');
    expect(routeAccess('GET', '/admin/keys')).toBe('admin');
    expect(routeAccess('GET', '/ok')).toBe('public');
    expect(routeAccess('GET', '/info')).toBe('public');
    expect(routeAccess('GET', '/openapi.json')).toBe('public');
    expect(routeAccess('GET', '/docs/static/index.html')).toBe('public');
    expect(routeAccess('POST', '/ok')).toBe('runs:write');
    expect(routeAccess('GET', undefined)).toBe('authenticated');
  });
});

describe.each(STORE_KINDS)('API keys at the gateway (%s)', (kind) => {
  let server: TestServer;
  let store: TestStore;
  let apiUrl: string;
  const keys: Record<string, { key: string; key_id: string; prefix: string }> = {};

  const newKey = async (tenantId: string, name: string, scopes: Scope[]) => {
    const created = await createApiKey(store.db, { tenantId, name, scopes });
    keys[name] = created;
    return created;
  };
  /** The SDK as an application uses it; no retries so a refusal shows at once. */
  const sdk = (apiKey: string | null) => new Client({ apiUrl, apiKey, callerOptions: { maxRetries: 0 } });
  const call = (method: string, path: string, headers: Record<string, string> = {}, body?: unknown) =>
    fetch(`${apiUrl}${path}`, {
      method,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  beforeAll(async () => {
    server = await startTestServer(kind, [echo], {
      worker: false,
      gateway: { auth: 'keys', keyCacheTtlMs: KEY_CACHE_MS },
    });
    ({ store, apiUrl } = server);
    await newKey('acme', 'rw', ['runs:read', 'runs:write']);
    await newKey('acme', 'reader', ['runs:read']);
    await newKey('acme', 'writer', ['runs:write']);
    await newKey('globex', 'admin', ['admin']);
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('a valid key works through the SDK and acts for its tenant, whose assistants exist', async () => {
    const client = sdk(keys.rw?.key ?? '');
    // The tenant was created with its key (no agents loaded there); the gateway adds its assistants.
    const assistants = await client.assistants.search({ graphId: 'echo' });
    expect(assistants.map((a) => a.assistant_id)).toEqual([uuidv5('echo')]);
    const thread = await client.threads.create({ metadata: { by: 'rw' } });
    const run = await client.runs.create(thread.thread_id, 'echo', { input: { text: 'hi' } });
    expect(run.status).toBe('pending');
    const rows = await store.db.query<{ tenant_id: string }>(
      'SELECT tenant_id FROM runs WHERE run_id = $1 UNION ALL SELECT tenant_id FROM threads WHERE thread_id = $2',
      [run.run_id, thread.thread_id],
    );
    expect(rows.rows.map((r) => r.tenant_id)).toEqual(['acme', 'acme']);
    expect((await client.runs.get(thread.thread_id, run.run_id)).run_id).toBe(run.run_id);
  });

  it('accepts the key as Authorization: Bearer', async () => {
    const res = await call('POST', '/threads', { authorization: `Bearer ${keys.rw?.key}` }, {});
    expect(res.status).toBe(200);
    const thread = (await res.json()) as { thread_id: string };
    const row = await store.db.query<{ tenant_id: string }>(
      'SELECT tenant_id FROM threads WHERE thread_id = $1',
      [thread.thread_id],
    );
    expect(row.rows[0]?.tenant_id).toBe('acme');
  });

  it('answers 401 unauthorized without a key, with an unknown key and with a malformed one', async () => {
    const missing = await call('POST', '/threads/search', {}, {});
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(await missing.json()).toEqual({
      error: 'unauthorized',
      message: expect.stringContaining('x-api-key'),
    });
    // Well-formed but never issued (one character changed).
    const real = keys.rw?.key ?? '';
    const forged = `${real.slice(0, -1)}${real.endsWith('A') ? 'B' : 'A'}`;
    for (const bad of [forged, 'hgr_short', 'not-a-key']) {
      const res = await call('POST', '/threads/search', { 'x-api-key': bad }, {});
      expect(res.status, bad).toBe(401);
      expect(((await res.json()) as { error: string }).error).toBe('unauthorized');
    }
    const bearer = await call('POST', '/threads/search', { authorization: `Bearer ${forged}` }, {});
    expect(bearer.status).toBe(401);
    // The SDK surfaces the 401 (and does not retry it).
    await expect(sdk(forged).threads.search()).rejects.toMatchObject({ status: 401 });
    await expect(sdk(null).threads.search()).rejects.toMatchObject({ status: 401 });
  });

  it('answers 403 forbidden when the key lacks the scope; admin has every scope', async () => {
    const reader = sdk(keys.reader?.key ?? '');
    expect(Array.isArray(await reader.threads.search())).toBe(true);
    const denied = await call('POST', '/threads', { 'x-api-key': keys.reader?.key ?? '' }, {});
    expect(denied.status).toBe(403);
    expect(await denied.json()).toEqual({
      error: 'forbidden',
      message: expect.stringContaining('runs:write'),
      details: { required_scope: 'runs:write', key_scopes: ['runs:read'] },
    });
    await expect(reader.runs.create(null, 'echo', { input: { text: 'x' } })).rejects.toMatchObject({
      status: 403,
    });

    const writer = sdk(keys.writer?.key ?? '');
    const thread = await writer.threads.create();
    await expect(writer.threads.get(thread.thread_id)).rejects.toMatchObject({ status: 403 });

    const admin = sdk(keys.admin?.key ?? '');
    const own = await admin.threads.create();
    expect((await admin.threads.get(own.thread_id)).thread_id).toBe(own.thread_id);
  });

  it('serves health, info and unknown paths as documented', async () => {
    expect((await call('GET', '/ok')).status).toBe(200);
    expect((await call('GET', '/info')).status).toBe(200);
    // Unknown paths need a key too: strangers learn nothing about what exists.
    expect((await call('GET', '/nothing/here')).status).toBe(401);
    const known = await call('GET', '/nothing/here', { 'x-api-key': keys.reader?.key ?? '' });
    expect(known.status).toBe(404);
  });

  it('stores only a hash, and records use at most once a minute', async () => {
    const rows = await store.db.query<{ key_hash: string; prefix: string; last_used_at: Date | null }>(
      'SELECT key_hash, prefix, last_used_at FROM api_keys WHERE key_id = $1',
      [keys.rw?.key_id],
    );
    const row = rows.rows[0];
    expect(row?.key_hash).toBe(hashKey(keys.rw?.key ?? ''));
    expect(row?.key_hash).not.toContain(keys.rw?.key ?? '');
    expect(keys.rw?.key.startsWith(row?.prefix ?? 'none')).toBe(true);
    expect(row?.last_used_at).not.toBeNull();
    const first = new Date(row?.last_used_at ?? 0).getTime();
    await sdk(keys.rw?.key ?? '').threads.search();
    await new Promise((r) => setTimeout(r, 100));
    const again = await store.db.query<{ last_used_at: Date }>(
      'SELECT last_used_at FROM api_keys WHERE key_id = $1',
      [keys.rw?.key_id],
    );
    expect(new Date(again.rows[0]?.last_used_at ?? 0).getTime()).toBe(first);
  });

  it('refuses a revoked key within the key cache time', async () => {
    const victim = await newKey('acme', 'victim', ['runs:read']);
    const client = sdk(victim.key);
    expect(Array.isArray(await client.threads.search())).toBe(true);
    await revokeApiKey(store.db, victim.prefix);
    const revokedAt = Date.now();
    let refused: Response | undefined;
    while (Date.now() - revokedAt < KEY_CACHE_MS + 2_000) {
      const res = await call('POST', '/threads/search', { 'x-api-key': victim.key }, {});
      if (res.status === 401) {
        refused = res;
        break;
      }
      expect(res.status).toBe(200);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(refused?.status).toBe(401);
    // Within the cache TTL plus scheduling slack on a loaded machine.
    expect(Date.now() - revokedAt).toBeLessThan(KEY_CACHE_MS + 1_500);
    expect(await refused?.json()).toMatchObject({
      error: 'unauthorized',
      message: expect.stringContaining('revoked'),
    });
    await expect(client.threads.search()).rejects.toMatchObject({ status: 401 });
  });
});
