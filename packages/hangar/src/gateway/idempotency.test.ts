import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createRunIdempotent, fingerprint } from '../runs/idempotency.ts';
import type { RunningHangar } from '../runtime/start.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS, startTestServer, type TestServer, type TestStore } from '../testing/index.ts';

const echo = defineAgent({
  name: 'echo',
  input: z.object({ text: z.string() }),
  async run(_ctx, input) {
    return { echoed: input.text };
  },
});

describe.each(STORE_KINDS)('idempotent run create (%s)', (kind) => {
  let server: TestServer;
  let store: TestStore;
  let hangar: RunningHangar;
  let apiUrl: string;

  beforeAll(async () => {
    // No worker: runs stay pending, so nothing but the create path touches them.
    server = await startTestServer(kind, [echo], { worker: false, gateway: { idempotencySweepMs: 100 } });
    ({ store, hangar, apiUrl } = server);
  });

  afterAll(async () => {
    await server?.stop();
  });

  const post = (path: string, body: unknown, key?: string) =>
    fetch(`${apiUrl}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(key === undefined ? {} : { 'idempotency-key': key }),
      },
      body: JSON.stringify(body),
    });

  const countRuns = async (where: string, params: unknown[]) =>
    Number(
      (await store.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM runs WHERE ${where}`, params))
        .rows[0]?.n,
    );

  const keyRow = async (key: string) =>
    (
      await store.db.query<{ run_id: string; fingerprint: string }>(
        'SELECT run_id, fingerprint FROM idempotency_keys WHERE key = $1',
        [key],
      )
    ).rows[0];

  it('answers the same run for the same key and body, and keeps one run row', async () => {
    const key = `k-${randomUUID()}`;
    const body = { assistant_id: 'echo', input: { text: 'hi' }, metadata: { key } };
    const first = await post('/runs', body, key);
    expect(first.status).toBe(200);
    const created = (await first.json()) as { run_id: string };
    // Same body with its keys in another order: the fingerprint is of canonical JSON.
    const second = await post(
      '/runs',
      { metadata: { key }, input: { text: 'hi' }, assistant_id: 'echo' },
      key,
    );
    expect(second.status).toBe(200);
    expect(await second.json()).toEqual(created);
    expect(await countRuns(`metadata->>'key' = $1`, [key])).toBe(1);
    expect((await keyRow(key))?.run_id).toBe(created.run_id);
  });

  it('answers 422 idempotency_key_reused for the same key with another body or route', async () => {
    const key = `k-${randomUUID()}`;
    const tag = randomUUID();
    expect(
      (await post('/runs', { assistant_id: 'echo', input: { text: 'a' }, metadata: { tag } }, key)).status,
    ).toBe(200);
    const reused = await post(
      '/runs',
      { assistant_id: 'echo', input: { text: 'b' }, metadata: { tag } },
      key,
    );
    expect(reused.status).toBe(422);
    expect(((await reused.json()) as { error: string }).error).toBe('idempotency_key_reused');
    const thread = (await (
      await fetch(`${apiUrl}/threads`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      })
    ).json()) as {
      thread_id: string;
    };
    const otherRoute = await post(
      `/threads/${thread.thread_id}/runs`,
      { assistant_id: 'echo', input: { text: 'a' }, metadata: { tag } },
      key,
    );
    expect(otherRoute.status).toBe(422);
    expect(await countRuns(`metadata->>'tag' = $1`, [tag])).toBe(1);
  });

  it('answers 400 naming the header for a bad key', async () => {
    for (const bad of ['x'.repeat(201), 'tab\there']) {
      const res = await post('/runs', { assistant_id: 'echo', input: { text: 'x' } }, bad);
      expect(res.status).toBe(400);
      const err = (await res.json()) as { error: string; message: string };
      expect(err.error).toBe('invalid_request');
      expect(err.message).toContain('idempotency-key');
    }
    expect(
      (await post('/runs', { assistant_id: 'echo', input: { text: 'x' } }, 'x'.repeat(200))).status,
    ).toBe(200);
  });

  it('answers the existing run for a repeated client run_id with the same body, 409 with another', async () => {
    const runId = randomUUID();
    const body = { assistant_id: 'echo', input: { text: 'same' }, run_id: runId, metadata: { n: 1 } };
    const first = await post('/runs', body);
    expect(first.status).toBe(200);
    const again = await post('/runs', body);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(await first.json());
    const different = await post('/runs', { ...body, input: { text: 'other' } });
    expect(different.status).toBe(409);
    const err = (await different.json()) as { error: string; details: { run_id: string } };
    expect(err.error).toBe('conflict');
    expect(err.details.run_id).toBe(runId);
    expect(await countRuns('run_id = $1', [runId])).toBe(1);
  });

  it('takes over an expired key, and the sweeper deletes expired keys', async () => {
    const key = `k-${randomUUID()}`;
    const tag = randomUUID();
    const first = (await (
      await post('/runs', { assistant_id: 'echo', input: { text: '1' }, metadata: { tag } }, key)
    ).json()) as {
      run_id: string;
    };
    // Expired but possibly not swept yet: a different body is a new request, not a reuse.
    await store.db.query(
      `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = $1`,
      [key],
    );
    const second = await post(
      '/runs',
      { assistant_id: 'echo', input: { text: '2' }, metadata: { tag } },
      key,
    );
    expect(second.status).toBe(200);
    const secondRun = (await second.json()) as { run_id: string };
    expect(secondRun.run_id).not.toBe(first.run_id);
    expect(await countRuns(`metadata->>'tag' = $1`, [tag])).toBe(2);

    await store.db.query(
      `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = $1`,
      [key],
    );
    const live = `k-${randomUUID()}`;
    expect((await post('/runs', { assistant_id: 'echo', input: { text: 'live' } }, live)).status).toBe(200);
    const deadline = Date.now() + 5_000;
    while ((await keyRow(key)) !== undefined && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(await keyRow(key)).toBeUndefined();
    expect(await keyRow(live)).toBeDefined();
  });

  it('scopes keys by tenant', async () => {
    await store.db.query(`INSERT INTO tenants (tenant_id, name) VALUES ('other', 'Other tenant')`);
    const key = `k-${randomUUID()}`;
    const tag = randomUUID();
    const create = (tenantId: string) =>
      createRunIdempotent(
        store.db,
        {
          tenantId,
          agent: 'echo',
          assistantId: hangar.registry.resolve('echo').assistantId,
          input: { text: 't' },
          metadata: { tag },
          runId: randomUUID(),
        },
        { key, fingerprint: fingerprint({ tag }), ttlMs: 60_000 },
      );
    const a = await create('default');
    const b = await create('other');
    expect(a.replayed).toBe(false);
    expect(b.replayed).toBe(false);
    expect(b.run.run_id).not.toBe(a.run.run_id);
    const again = await create('default');
    expect(again).toMatchObject({ replayed: true, run: { run_id: a.run.run_id } });
    expect(await countRuns(`metadata->>'tag' = $1`, [tag])).toBe(2);
  });

  if (kind === 'postgres') {
    it('creates exactly one run for 20 concurrent requests with one key', async () => {
      const key = `k-${randomUUID()}`;
      const tag = randomUUID();
      const body = { assistant_id: 'echo', input: { text: 'race' }, metadata: { tag } };
      const responses = await Promise.all(Array.from({ length: 20 }, () => post('/runs', body, key)));
      const statuses = responses.map((r) => r.status);
      expect(statuses.every((s) => s === 200 || s === 409)).toBe(true);
      const runIds = new Set<string>();
      for (const res of responses) {
        if (res.status === 200) runIds.add(((await res.json()) as { run_id: string }).run_id);
      }
      expect(runIds.size).toBe(1);
      expect(await countRuns(`metadata->>'tag' = $1`, [tag])).toBe(1);
    });

    it('answers 409 while the request holding the key is still in its transaction', async () => {
      const key = `k-${randomUUID()}`;
      const body = { assistant_id: 'echo', input: { text: 'slow' } };
      await store.db
        .transaction(async (tx) => {
          // An open transaction holding the key, as a slow original request would.
          await tx.query(
            `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, run_id, expires_at)
           VALUES ('default', $1, 'x', $2, now() + interval '1 hour')`,
            [key, randomUUID()],
          );
          const res = await post('/runs', body, key);
          expect(res.status).toBe(409);
          const err = (await res.json()) as { error: string; details: { idempotency_key: string } };
          expect(err.error).toBe('conflict');
          expect(err.details.idempotency_key).toBe(key);
          throw new Rollback();
        })
        .catch((err: unknown) => {
          if (!(err instanceof Rollback)) throw err;
        });
      // Rolled back: the key is free again.
      expect((await post('/runs', body, key)).status).toBe(200);
    });
  }
});

class Rollback extends Error {}
