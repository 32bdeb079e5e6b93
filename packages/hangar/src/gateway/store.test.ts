import { randomBytes } from 'node:crypto';
import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { STORE_LIMITS } from '../items/namespace.ts';
import { sweepExpiredItems } from '../items/repository.ts';
import { STORE_KINDS, startTestServer, type TestServer, type TestStore } from '../testing/index.ts';

const ISO = expect.stringMatching(/^\d{4}-\d\d-\d\dT/);

interface ApiError {
  error: string;
  message: string;
  details?: { issues?: { path: string; message: string }[] };
}

/** The status and error body of a call the SDK rejected. */
async function sdkError(call: Promise<unknown>): Promise<{ status: number; body: ApiError }> {
  const err = await call.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e as { status: number; text: string },
  );
  return { status: err.status, body: JSON.parse(err.text) as ApiError };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(STORE_KINDS)('store endpoints (%s)', (kind) => {
  let server: TestServer;
  let store: TestStore;
  let client: Client;

  /** A raw call, for what the SDK refuses to send (it checks labels itself) or cannot express. */
  async function call(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: unknown }> {
    const res = await fetch(`${server.apiUrl}${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    const text = await res.text();
    return { status: res.status, json: text === '' ? undefined : JSON.parse(text) };
  }

  /** Rows of the table itself, whatever the API shows. */
  async function rows(tenantId: string): Promise<{ namespace: string; key: string }[]> {
    const res = await store.db.query<{ namespace: string; key: string }>(
      'SELECT namespace, key FROM store_items WHERE tenant_id = $1 ORDER BY namespace, key',
      [tenantId],
    );
    return res.rows;
  }

  beforeAll(async () => {
    server = await startTestServer(kind, [], { worker: false, gateway: { auth: 'none' } });
    store = server.store;
    client = new Client({ apiUrl: server.apiUrl, callerOptions: { maxRetries: 0 } });
    await store.db.query(`INSERT INTO tenants (tenant_id, name) VALUES ('other', 'Other')`);
  });

  afterAll(async () => {
    await server?.stop();
  });

  beforeEach(async () => {
    await store.db.query('DELETE FROM store_items');
    // Another tenant's items under the very namespaces and keys the tests use.
    await store.db.query(
      `INSERT INTO store_items (tenant_id, namespace, key, value) VALUES
         ('other', 'users.u1', 'prefs', '{"theme":"secret","lang":"en"}'),
         ('other', 'users.u1.notes', 'n1', '{"secret":true}'),
         ('other', 'private.zone', 'k', '{"secret":true}')`,
    );
  });

  it('puts, gets, overwrites and deletes an item', async () => {
    expect(await client.store.getItem(['users', 'u1'], 'prefs')).toBeNull();

    await client.store.putItem(['users', 'u1'], 'prefs', { theme: 'dark', size: 14 });
    const first = await client.store.getItem(['users', 'u1'], 'prefs');
    expect(first).toEqual({
      namespace: ['users', 'u1'],
      key: 'prefs',
      value: { theme: 'dark', size: 14 },
      created_at: ISO,
      updated_at: ISO,
      createdAt: ISO,
      updatedAt: ISO,
    });

    await sleep(5);
    await client.store.putItem(['users', 'u1'], 'prefs', { theme: 'light' });
    const second = await client.store.getItem(['users', 'u1'], 'prefs');
    expect(second?.value).toEqual({ theme: 'light' });
    expect(second?.createdAt).toBe(first?.createdAt);
    expect(Date.parse(second?.updatedAt ?? '')).toBeGreaterThan(Date.parse(first?.updatedAt ?? ''));

    // Same key, other namespace: a different item.
    expect(await client.store.getItem(['users', 'u2'], 'prefs')).toBeNull();
    expect(await client.store.getItem(['users'], 'prefs')).toBeNull();

    await client.store.deleteItem(['users', 'u1'], 'prefs');
    expect(await client.store.getItem(['users', 'u1'], 'prefs')).toBeNull();
    // Deleting what is not there is not an error (LangGraph answers 204 too).
    await client.store.deleteItem(['users', 'u1'], 'prefs');

    const put = await call('PUT', '/store/items', { namespace: ['a'], key: 'k', value: {} });
    expect(put.status).toBe(204);
    const del = await call('DELETE', '/store/items', { namespace: ['a'], key: 'k' });
    expect(del.status).toBe(204);
  });

  it('keeps labels with LIKE and regex metacharacters literal', async () => {
    await client.store.putItem(['a%', 'b_c'], 'k', { v: 1 });
    await client.store.putItem(['ab', 'bxc'], 'k', { v: 2 });
    expect((await client.store.getItem(['a%', 'b_c'], 'k'))?.value).toEqual({ v: 1 });
    const hits = await client.store.searchItems(['a%']);
    expect(hits.items.map((i) => i.namespace)).toEqual([['a%', 'b_c']]);
    const listed = await client.store.listNamespaces({ suffix: ['b_c'] });
    expect(listed.namespaces).toEqual([['a%', 'b_c']]);
    const wild = await client.store.listNamespaces({ prefix: ['*', 'b_c'] });
    expect(wild.namespaces).toEqual([['a%', 'b_c']]);
  });

  describe('search', () => {
    beforeEach(async () => {
      // Oldest first, so the newest-first order is n5, n4, …
      const puts: [string[], string, Record<string, unknown>][] = [
        [['users', 'u1'], 'prefs', { theme: 'dark', tags: ['a'] }],
        [['users', 'u1', 'notes'], 'n1', { kind: 'note', n: 1 }],
        [['users', 'u1', 'notes'], 'n2', { kind: 'note', n: 2 }],
        [['users', 'u10'], 'prefs', { theme: 'dark' }],
        [['users', 'u2'], 'prefs', { theme: 'light', nested: { x: 1 } }],
      ];
      for (const [namespace, key, value] of puts) {
        await client.store.putItem(namespace, key, value);
        await sleep(3);
      }
    });

    it('matches a namespace prefix label by label, newest first', async () => {
      const u1 = await client.store.searchItems(['users', 'u1']);
      expect(u1.items.map((i) => [i.namespace.join('.'), i.key])).toEqual([
        ['users.u1.notes', 'n2'],
        ['users.u1.notes', 'n1'],
        ['users.u1', 'prefs'],
      ]);
      expect(u1.items[0]).toMatchObject({ value: { kind: 'note', n: 2 }, createdAt: ISO, updatedAt: ISO });

      const all = await client.store.searchItems([]);
      expect(all.items).toHaveLength(5);
      const users = await client.store.searchItems(['users']);
      expect(users.items).toHaveLength(5);
      expect((await client.store.searchItems(['use'])).items).toEqual([]);
      expect((await client.store.searchItems(['users', '*', 'notes'])).items.map((i) => i.key)).toEqual([
        'n2',
        'n1',
      ]);
    });

    it('filters on exact value fields', async () => {
      const dark = await client.store.searchItems(['users'], { filter: { theme: 'dark' } });
      expect(dark.items.map((i) => i.namespace.join('.'))).toEqual(['users.u10', 'users.u1']);
      const two = await client.store.searchItems(['users'], { filter: { kind: 'note', n: 2 } });
      expect(two.items.map((i) => i.key)).toEqual(['n2']);
      const nested = await client.store.searchItems([], { filter: { nested: { x: 1 } } });
      expect(nested.items.map((i) => i.namespace.join('.'))).toEqual(['users.u2']);
      // Exact, not containment: ['a'] matches ['a'], not ['a', 'b'] nor 'a'.
      expect((await client.store.searchItems([], { filter: { tags: ['a'] } })).items).toHaveLength(1);
      expect((await client.store.searchItems([], { filter: { tags: 'a' } })).items).toHaveLength(0);
      expect((await client.store.searchItems([], { filter: { n: '2' } })).items).toHaveLength(0);
      expect((await client.store.searchItems([], { filter: { missing: null } })).items).toHaveLength(0);
    });

    it('pages with limit and offset', async () => {
      const keys = async (limit: number, offset: number) =>
        (await client.store.searchItems(['users'], { limit, offset })).items.map(
          (i) => `${i.namespace.join('.')}/${i.key}`,
        );
      const all = await keys(100, 0);
      expect(all).toHaveLength(5);
      expect(await keys(2, 0)).toEqual(all.slice(0, 2));
      expect(await keys(2, 2)).toEqual(all.slice(2, 4));
      expect(await keys(2, 4)).toEqual(all.slice(4));
      expect(await keys(2, 6)).toEqual([]);
      // The SDK's default page is 10.
      expect((await client.store.searchItems([])).items).toHaveLength(5);
    });

    it('accepts a semantic `query` and ignores it', async () => {
      const res = await client.store.searchItems(['users', 'u1'], { query: 'what theme?' });
      expect(res.items).toHaveLength(3);
    });
  });

  describe('namespaces', () => {
    beforeEach(async () => {
      for (const namespace of [
        ['users', 'u1'],
        ['users', 'u1', 'notes'],
        ['users', 'u2', 'notes'],
        ['users', 'u2', 'notes', 'archive'],
        ['docs', 'notes'],
        ['docs'],
      ]) {
        await client.store.putItem(namespace, 'k', { x: 1 });
      }
    });

    it('lists distinct namespaces in label order', async () => {
      const res = await client.store.listNamespaces();
      expect(res).toEqual({
        namespaces: [
          ['docs'],
          ['docs', 'notes'],
          ['users', 'u1'],
          ['users', 'u1', 'notes'],
          ['users', 'u2', 'notes'],
          ['users', 'u2', 'notes', 'archive'],
        ],
      });
    });

    it('filters by prefix and suffix', async () => {
      expect((await client.store.listNamespaces({ prefix: ['users', 'u2'] })).namespaces).toEqual([
        ['users', 'u2', 'notes'],
        ['users', 'u2', 'notes', 'archive'],
      ]);
      expect((await client.store.listNamespaces({ suffix: ['notes'] })).namespaces).toEqual([
        ['docs', 'notes'],
        ['users', 'u1', 'notes'],
        ['users', 'u2', 'notes'],
      ]);
      expect(
        (await client.store.listNamespaces({ prefix: ['users'], suffix: ['notes'] })).namespaces,
      ).toEqual([
        ['users', 'u1', 'notes'],
        ['users', 'u2', 'notes'],
      ]);
      expect((await client.store.listNamespaces({ suffix: ['*', 'archive'] })).namespaces).toEqual([
        ['users', 'u2', 'notes', 'archive'],
      ]);
      expect((await client.store.listNamespaces({ prefix: ['user'] })).namespaces).toEqual([]);
    });

    it('cuts namespaces to max_depth and deduplicates them', async () => {
      expect((await client.store.listNamespaces({ maxDepth: 1 })).namespaces).toEqual([['docs'], ['users']]);
      expect((await client.store.listNamespaces({ maxDepth: 2, prefix: ['users'] })).namespaces).toEqual([
        ['users', 'u1'],
        ['users', 'u2'],
      ]);
      // The suffix is matched on the whole namespace, before the cut.
      expect((await client.store.listNamespaces({ maxDepth: 2, suffix: ['archive'] })).namespaces).toEqual([
        ['users', 'u2'],
      ]);
    });

    it('pages with limit and offset', async () => {
      const page = await client.store.listNamespaces({ limit: 2, offset: 1 });
      expect(page.namespaces).toEqual([
        ['docs', 'notes'],
        ['users', 'u1'],
      ]);
      expect((await client.store.listNamespaces({ limit: 10, offset: 6 })).namespaces).toEqual([]);
    });
  });

  describe('ttl', () => {
    /** Moves an item's expiry into the past, as if its ttl had run out. */
    const expire = (namespace: string, key: string) =>
      store.db.query(
        `UPDATE store_items SET expires_at = now() - interval '1 second'
         WHERE tenant_id = 'default' AND namespace = $1 AND key = $2`,
        [namespace, key],
      );

    it('hides an expired item everywhere and the sweeper deletes it', async () => {
      await client.store.putItem(['t'], 'short', { v: 1 }, { ttl: 0.005 }); // 300 ms
      await client.store.putItem(['t'], 'long', { v: 2 }, { ttl: 60 });
      await client.store.putItem(['t2'], 'plain', { v: 3 });

      await sleep(500);
      expect(await client.store.getItem(['t'], 'short')).toBeNull();
      expect((await client.store.getItem(['t'], 'long'))?.value).toEqual({ v: 2 });
      expect((await client.store.searchItems(['t'])).items.map((i) => i.key)).toEqual(['long']);
      expect((await client.store.searchItems([], { filter: { v: 1 } })).items).toEqual([]);

      // Still a row until swept; then gone, and only the expired one.
      expect((await rows('default')).map((r) => r.key)).toContain('short');
      expect(await sweepExpiredItems(store.db)).toBe(1);
      expect((await rows('default')).map((r) => r.key).sort()).toEqual(['long', 'plain']);
    });

    it('a namespace whose items all expired leaves the namespace list', async () => {
      await client.store.putItem(['gone', 'a'], 'k', { v: 1 }, { ttl: 60 });
      await client.store.putItem(['kept'], 'k', { v: 1 }, { ttl: 60 });
      expect((await client.store.listNamespaces()).namespaces).toEqual([['gone', 'a'], ['kept']]);
      await expire('gone.a', 'k');
      expect((await client.store.listNamespaces()).namespaces).toEqual([['kept']]);
      expect((await client.store.listNamespaces({ maxDepth: 1 })).namespaces).toEqual([['kept']]);
    });

    it('a put over an expired item starts a new item', async () => {
      await client.store.putItem(['t'], 'k', { v: 1 }, { ttl: 60 });
      const before = await client.store.getItem(['t'], 'k');
      expect(before?.value).toEqual({ v: 1 });
      await expire('t', 'k');
      expect(await client.store.getItem(['t'], 'k')).toBeNull();
      await sleep(5);
      await client.store.putItem(['t'], 'k', { v: 2 });
      const after = await client.store.getItem(['t'], 'k');
      expect(after?.value).toEqual({ v: 2 });
      expect(Date.parse(after?.createdAt ?? '')).toBeGreaterThan(Date.parse(before?.createdAt ?? ''));
    });

    it('reads refresh the ttl unless refresh_ttl is false', async () => {
      const expiresAt = async (key: string) => {
        const res = await store.db.query<{ left: number }>(
          `SELECT extract(epoch FROM expires_at - now())::float8 AS left FROM store_items
           WHERE tenant_id = 'default' AND namespace = 'r' AND key = $1`,
          [key],
        );
        const left = res.rows[0]?.left;
        return left === null || left === undefined ? null : Number(left);
      };
      const shorten = (key: string) =>
        store.db.query(
          `UPDATE store_items SET expires_at = now() + interval '5 seconds'
           WHERE tenant_id = 'default' AND namespace = 'r' AND key = $1`,
          [key],
        );
      await client.store.putItem(['r'], 'a', { v: 1 }, { ttl: 10 });
      await client.store.putItem(['r'], 'b', { v: 1 }, { ttl: 10 });
      expect(await expiresAt('a')).toBeGreaterThan(590);
      await shorten('a');
      await shorten('b');

      await client.store.getItem(['r'], 'a', { refreshTtl: false });
      await client.store.searchItems(['r'], { refreshTtl: false });
      expect(await expiresAt('a')).toBeLessThan(10);
      expect(await expiresAt('b')).toBeLessThan(10);

      await client.store.getItem(['r'], 'a'); // refresh is the default, as in LangGraph
      expect(await expiresAt('a')).toBeGreaterThan(590);
      expect(await expiresAt('b')).toBeLessThan(10);
      await client.store.searchItems(['r'], { filter: { v: 1 } });
      expect(await expiresAt('b')).toBeGreaterThan(590);

      // An overwrite without ttl clears the expiry.
      await client.store.putItem(['r'], 'a', { v: 2 });
      expect(await expiresAt('a')).toBeNull();
    });
  });

  describe('bad input', () => {
    const item = { namespace: ['users', 'u1'], key: 'k', value: { a: 1 } };

    it.each([
      ['namespace missing', { key: 'k', value: {} }, 'namespace'],
      ['namespace empty', { ...item, namespace: [] }, 'namespace'],
      ['namespace not an array', { ...item, namespace: 'users.u1' }, 'namespace'],
      ['label with a dot', { ...item, namespace: ['users', 'u.1'] }, 'namespace.1'],
      ['empty label', { ...item, namespace: ['users', ''] }, 'namespace.1'],
      ['label not a string', { ...item, namespace: ['users', 7] }, 'namespace.1'],
      [
        'label too long',
        { ...item, namespace: ['x'.repeat(STORE_LIMITS.maxLabelLength + 1)] },
        'namespace.0',
      ],
      ['namespace too deep', { ...item, namespace: Array(STORE_LIMITS.maxDepth + 1).fill('a') }, 'namespace'],
      ['label with NUL', { ...item, namespace: ['a\u0000b'] }, 'namespace.0'],
      ['key missing', { namespace: ['a'], value: {} }, 'key'],
      ['key empty', { ...item, key: '' }, 'key'],
      ['key too long', { ...item, key: 'k'.repeat(STORE_LIMITS.maxKeyBytes + 1) }, 'key'],
      ['key too many bytes', { ...item, key: 'é'.repeat(STORE_LIMITS.maxKeyBytes / 2 + 1) }, 'key'],
      [
        'namespace too many bytes',
        { ...item, namespace: ['é'.repeat(200), 'é'.repeat(200), 'é'.repeat(200)] },
        'namespace',
      ],
      ['value missing', { namespace: ['a'], key: 'k' }, 'value'],
      ['value an array', { ...item, value: [1, 2] }, 'value'],
      ['value a string', { ...item, value: 'text' }, 'value'],
      ['value null', { ...item, value: null }, 'value'],
      ['value with NUL', { ...item, value: { a: { b: 'x\u0000' } } }, 'value.a.b'],
      ['value with lone surrogate', { ...item, value: { s: '\ud800' } }, 'value.s'],
      ['value too large', { ...item, value: { big: 'x'.repeat(STORE_LIMITS.maxValueBytes) } }, 'value'],
      ['ttl zero', { ...item, ttl: 0 }, 'ttl'],
      ['ttl negative', { ...item, ttl: -1 }, 'ttl'],
      ['ttl a string', { ...item, ttl: '5' }, 'ttl'],
    ])('put: %s → 400 naming the field', async (_name, body, field) => {
      const res = await call('PUT', '/store/items', body);
      expect(res.status).toBe(400);
      const error = res.json as ApiError;
      expect(error.error).toBe('invalid_request');
      expect(error.details?.issues?.[0]?.path).toBe(field);
      expect(error.message).toContain(field);
      expect(await rows('default')).toEqual([]);
    });

    it('the largest namespace and key are stored, even as incompressible text', async () => {
      const random = (bytes: number) => randomBytes(bytes).toString('base64url').slice(0, bytes);
      const namespace = [random(255), random(255), random(255), random(256)]; // 1024 bytes joined
      const key = random(STORE_LIMITS.maxKeyBytes);
      const ok = await call('PUT', '/store/items', { namespace, key, value: { a: 1 } });
      expect(ok.status).toBe(204);
      expect((await client.store.getItem(namespace, key))?.value).toEqual({ a: 1 });
      expect((await client.store.searchItems(namespace)).items).toHaveLength(1);
      const over = await call('PUT', '/store/items', { namespace: [...namespace, 'x'], key, value: {} });
      expect(over.status).toBe(400);
    });

    it('put: a value nested too deep → 400, not a database error', async () => {
      // Deeper than the store allows, shallower than the gateway-wide body depth limit.
      const deep = `${'['.repeat(200)}1${']'.repeat(200)}`;
      const res = await fetch(`${server.apiUrl}/store/items`, {
        method: 'PUT',
        body: `{"namespace":["a"],"key":"k","value":{"deep":${deep}}}`,
        headers: { 'content-type': 'application/json' },
      });
      expect(res.status).toBe(400);
      const error = (await res.json()) as ApiError;
      expect(error.error).toBe('invalid_request');
      expect(error.message).toContain('value.deep.0.0');
      expect(error.message).toContain(`nests deeper than ${STORE_LIMITS.maxJsonDepth} levels`);
    });

    it('an invalid value through the SDK is a 400 too', async () => {
      const { status, body } = await sdkError(
        client.store.putItem(['a'], 'k', [1] as unknown as Record<string, unknown>),
      );
      expect(status).toBe(400);
      expect(body.details?.issues?.[0]?.path).toBe('value');
    });

    it.each([
      ['namespace missing', '?key=k', 'query.namespace'],
      ['key missing', '?namespace=a', 'query.key'],
      ['empty label', '?namespace=a..b&key=k', 'query.namespace.1'],
      ['empty namespace', '?namespace=&key=k', 'query.namespace.0'],
      ['key twice', '?namespace=a&key=k&key=j', 'query.key'],
      ['refresh_ttl not a boolean', '?namespace=a&key=k&refresh_ttl=yes', 'query.refresh_ttl'],
    ])('get: %s → 400 naming the field', async (_name, query, field) => {
      const res = await call('GET', `/store/items${query}`);
      expect(res.status).toBe(400);
      expect((res.json as ApiError).details?.issues?.[0]?.path).toBe(field);
    });

    it.each([
      ['label with a dot', { namespace: ['a.b'], key: 'k' }, 'namespace.0'],
      ['key missing', { namespace: ['a'] }, 'key'],
    ])('delete: %s → 400 naming the field', async (_name, body, field) => {
      const res = await call('DELETE', '/store/items', body);
      expect(res.status).toBe(400);
      expect((res.json as ApiError).details?.issues?.[0]?.path).toBe(field);
    });

    it.each([
      ['prefix label with a dot', { namespace_prefix: ['a.b'] }, 'namespace_prefix.0'],
      ['limit zero', { limit: 0 }, 'limit'],
      ['limit too big', { limit: STORE_LIMITS.maxPageSize + 1 }, 'limit'],
      ['offset negative', { offset: -1 }, 'offset'],
      ['limit not an integer', { limit: 1.5 }, 'limit'],
      ['filter not an object', { filter: [1] }, 'filter'],
      ['filter operator', { filter: { n: { $gt: 1 } } }, 'filter.n'],
      ['filter with NUL', { filter: { n: 'a\u0000' } }, 'filter.n'],
      ['query not a string', { query: 5 }, 'query'],
    ])('search: %s → 400 naming the field', async (_name, body, field) => {
      const res = await call('POST', '/store/items/search', body);
      expect(res.status).toBe(400);
      expect((res.json as ApiError).details?.issues?.[0]?.path).toBe(field);
    });

    it.each([
      ['prefix label with a dot', { prefix: ['a.b'] }, 'prefix.0'],
      ['suffix empty label', { suffix: [''] }, 'suffix.0'],
      ['max_depth zero', { max_depth: 0 }, 'max_depth'],
      ['max_depth too big', { max_depth: STORE_LIMITS.maxDepth + 1 }, 'max_depth'],
      ['limit zero', { limit: 0 }, 'limit'],
    ])('namespaces: %s → 400 naming the field', async (_name, body, field) => {
      const res = await call('POST', '/store/namespaces', body);
      expect(res.status).toBe(400);
      expect((res.json as ApiError).details?.issues?.[0]?.path).toBe(field);
    });

    it('a body that is not JSON is a 400 or 415, never a 5xx', async () => {
      const res = await fetch(`${server.apiUrl}/store/items`, {
        method: 'PUT',
        body: '{"namespace":',
        headers: { 'content-type': 'application/json' },
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as ApiError).error).toBe('invalid_json');
    });
  });

  describe('tenant scoping', () => {
    it("never returns another tenant's items or namespaces", async () => {
      expect(await client.store.getItem(['users', 'u1'], 'prefs')).toBeNull();
      expect((await client.store.searchItems([])).items).toEqual([]);
      expect((await client.store.searchItems(['users'], { filter: { theme: 'secret' } })).items).toEqual([]);
      expect((await client.store.listNamespaces()).namespaces).toEqual([]);

      await client.store.putItem(['users', 'u1'], 'prefs', { theme: 'mine' });
      expect((await client.store.getItem(['users', 'u1'], 'prefs'))?.value).toEqual({ theme: 'mine' });
      expect((await client.store.searchItems([])).items.map((i) => i.value)).toEqual([{ theme: 'mine' }]);
      expect((await client.store.listNamespaces()).namespaces).toEqual([['users', 'u1']]);

      // The other tenant's row under the same namespace and key is untouched by the put.
      const theirs = await store.db.query<{ value: unknown }>(
        `SELECT value FROM store_items WHERE tenant_id = 'other' AND namespace = 'users.u1' AND key = 'prefs'`,
      );
      expect(theirs.rows[0]?.value).toEqual({ theme: 'secret', lang: 'en' });
    });

    it("never deletes another tenant's items", async () => {
      await client.store.deleteItem(['users', 'u1'], 'prefs');
      await client.store.deleteItem(['private', 'zone'], 'k');
      expect(await rows('other')).toEqual([
        { namespace: 'private.zone', key: 'k' },
        { namespace: 'users.u1', key: 'prefs' },
        { namespace: 'users.u1.notes', key: 'n1' },
      ]);
    });

    it("the sweeper deletes only expired items, whoever's", async () => {
      await store.db.query(
        `UPDATE store_items SET expires_at = now() - interval '1 second' WHERE tenant_id = 'other' AND key = 'k'`,
      );
      expect(await sweepExpiredItems(store.db)).toBe(1);
      expect((await rows('other')).map((r) => r.key)).toEqual(['prefs', 'n1']);
    });
  });
});
