import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createApiKey } from '../auth/repository.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS, startTestServer, type TestServer, type TestStore } from '../testing/index.ts';

const echo = defineAgent({ name: 'echo', input: z.object({ text: z.string() }), run: async (_c, i) => i });

/**
 * Admission control with low limits: no worker, so every run stays pending.
 * Tenant A may have 2 pending runs, all tenants together 3.
 */
describe.each(STORE_KINDS)('admission control (%s)', (kind) => {
  let server: TestServer;
  let store: TestStore;
  let apiUrl: string;
  const key = { a: '', b: '', rate: '', streams: '', streams2: '' };

  const post = (apiKey: string, path: string, body: unknown) =>
    fetch(`${apiUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': apiKey },
      body: JSON.stringify(body),
    });
  const runsOf = async (tenantId: string) =>
    Number(
      (
        await store.db.query<{ n: string | number }>('SELECT count(*) AS n FROM runs WHERE tenant_id = $1', [
          tenantId,
        ])
      ).rows[0]?.n,
    );

  beforeAll(async () => {
    server = await startTestServer(kind, [echo], {
      worker: false,
      gateway: {
        auth: 'keys',
        limits: {
          maxPendingRunsPerTenant: 2,
          maxPendingRuns: 3,
          pendingRetryAfterSeconds: 7,
          keyRequestsPerSecond: 1,
          keyBurst: 100,
          maxStreamsPerKey: 1,
        },
      },
    });
    ({ store, apiUrl } = server);
    const scopes = ['runs:read', 'runs:write'] as const;
    key.a = (await createApiKey(store.db, { tenantId: 'tenant-a', name: 'a', scopes: [...scopes] })).key;
    key.b = (await createApiKey(store.db, { tenantId: 'tenant-b', name: 'b', scopes: [...scopes] })).key;
    key.rate = (
      await createApiKey(store.db, { tenantId: 'tenant-c', name: 'rate', scopes: [...scopes] })
    ).key;
    key.streams = (
      await createApiKey(store.db, { tenantId: 'tenant-c', name: 's', scopes: [...scopes] })
    ).key;
    key.streams2 = (
      await createApiKey(store.db, { tenantId: 'tenant-c', name: 's2', scopes: [...scopes] })
    ).key;
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('refuses a run over the per-tenant, then the global pending limit: 429, Retry-After, no run', async () => {
    const a = new Client({ apiUrl, apiKey: key.a, callerOptions: { maxRetries: 0 } });
    await a.runs.create(null, 'echo', { input: { text: '1' } });
    await a.runs.create(null, 'echo', { input: { text: '2' } });
    const refusedRunId = '00000000-0000-4000-8000-00000000a003';
    const over = await post(key.a, '/runs', {
      assistant_id: 'echo',
      input: { text: '3' },
      run_id: refusedRunId,
    });
    expect(over.status).toBe(429);
    expect(over.headers.get('retry-after')).toBe('7');
    expect(await over.json()).toEqual({
      error: 'rate_limited',
      message: expect.stringContaining('pending runs'),
      details: { limit: 'pending_runs_per_tenant', max: 2, retry_after_s: 7 },
    });
    expect(await runsOf('tenant-a')).toBe(2);
    const refused = await store.db.query('SELECT 1 FROM runs WHERE run_id = $1', [refusedRunId]);
    expect(refused.rowCount).toBe(0);
    // The SDK sees the 429 too (with retries off).
    await expect(a.runs.create(null, 'echo', { input: { text: '4' } })).rejects.toMatchObject({
      status: 429,
    });

    // Tenant B has its own allowance, but the server's total is 3.
    const b = await post(key.b, '/runs', { assistant_id: 'echo', input: { text: 'b1' } });
    expect(b.status).toBe(200);
    const global = await post(key.b, '/runs/wait', { assistant_id: 'echo', input: { text: 'b2' } });
    expect(global.status).toBe(429);
    expect(global.headers.get('retry-after')).toBe('7');
    expect(((await global.json()) as { details: { limit: string } }).details.limit).toBe('pending_runs');
    expect(await runsOf('tenant-b')).toBe(1);

    // A run that ends frees its place.
    await store.db.query(`UPDATE runs SET status = 'success' WHERE tenant_id = 'tenant-b'`);
    expect((await post(key.b, '/runs', { assistant_id: 'echo', input: { text: 'b3' } })).status).toBe(200);
  });

  it('limits requests per key with a token bucket: 429 with Retry-After once the burst is spent', async () => {
    let sent = 0;
    let limited: Response | undefined;
    const started = Date.now();
    while (sent < 150) {
      const res = await post(key.rate, '/threads/search', {});
      sent += 1;
      if (res.status === 429) {
        limited = res;
        break;
      }
      expect(res.status).toBe(200);
    }
    // Burst 100, plus what 1/s refills while the requests go out.
    expect(sent).toBeGreaterThan(100);
    expect(sent).toBeLessThanOrEqual(101 + Math.ceil((Date.now() - started) / 1000));
    expect(limited?.headers.get('retry-after')).toBe('1');
    expect(await limited?.json()).toMatchObject({
      error: 'rate_limited',
      details: { limit: 'key_requests_per_second', max: 1 },
    });
    // Another key of the same tenant has its own bucket.
    expect((await post(key.streams, '/threads/search', {})).status).toBe(200);
  });

  it('limits open streams per key; a closed stream frees its place', async () => {
    await store.db.query(`UPDATE runs SET status = 'success'`);
    const created = (await (
      await post(key.streams, '/runs', { assistant_id: 'echo', input: { text: 's' } })
    ).json()) as { run_id: string; thread_id: string };
    const streamPath = `/threads/${created.thread_id}/runs/${created.run_id}/stream`;
    const open = (signal?: AbortSignal) =>
      fetch(`${apiUrl}${streamPath}`, {
        headers: { 'x-api-key': key.streams },
        ...(signal ? { signal } : {}),
      });

    const first = new AbortController();
    const held = await open(first.signal);
    expect(held.status).toBe(200);
    const second = await open();
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBe('1');
    expect(((await second.json()) as { details: { limit: string } }).details.limit).toBe('streams_per_key');
    // Another key (same tenant) has its own allowance.
    const other = new AbortController();
    const otherStream = await fetch(`${apiUrl}${streamPath}`, {
      headers: { 'x-api-key': key.streams2 },
      signal: other.signal,
    });
    expect(otherStream.status).toBe(200);
    other.abort();

    first.abort();
    let reopened: Response | undefined;
    for (let i = 0; i < 50 && reopened?.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const controller = new AbortController();
      reopened = await open(controller.signal);
      if (reopened.status === 200) controller.abort();
    }
    expect(reopened?.status).toBe(200);
  });
});
