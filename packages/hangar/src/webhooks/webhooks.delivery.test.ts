import { randomUUID } from 'node:crypto';
import { Client } from '@langchain/langgraph-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { MemoryBus } from '../bus/memory.ts';
import { type RunningHangar, startHangar } from '../runtime/start.ts';
import { defineAgent } from '../sdk/agent.ts';
import { createTestStore, STORE_KINDS, type TestStore, testLogger } from '../testing/index.ts';
import type { WebhookSettings } from './dispatcher.ts';
import { getRunDelivery, type WebhookDelivery } from './repository.ts';
import { verifyWebhookSignature } from './signature.ts';
import { deadUrl, eventually, startReceiver } from './test-receiver.ts';

const SECRET = 'test-webhook-secret-0123456789';
/** Fast retries so the retry and give-up paths run in well under a second. */
const FAST: WebhookSettings = {
  secret: SECRET,
  maxAttempts: 3,
  baseDelayMs: 20,
  maxDelayMs: 60,
  pollMs: 100,
  timeoutMs: 2_000,
  // The test receivers listen on 127.0.0.1.
  allowPrivateNetworks: true,
};

const noter = defineAgent({
  name: 'noter',
  input: z.object({ text: z.string() }),
  async run(ctx, input) {
    ctx.state.update({ last: input.text });
    return { echoed: input.text };
  },
});

const failing = defineAgent({
  name: 'failing',
  input: z.object({}),
  async run() {
    throw new TypeError('boom');
  },
});

const AGENTS = new Map([noter, failing].map((a) => [a.name, a]));

/** Waits a few dispatcher polls: long enough for a wrong extra attempt to show. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 400));

describe.each(STORE_KINDS)('completion webhooks (%s)', (kind) => {
  let store: TestStore;
  let hangar: RunningHangar;
  let client: Client;

  beforeAll(async () => {
    store = await createTestStore(kind);
    hangar = await startHangar({
      db: store.db,
      bus: new MemoryBus(),
      agents: AGENTS,
      logger: testLogger(),
      migrate: false,
      gateway: { port: 0, host: '127.0.0.1', auth: 'none' },
      worker: { pollMs: 50 },
      webhooks: FAST,
    });
    client = new Client({ apiUrl: hangar.url ?? '' });
  });

  afterAll(async () => {
    await hangar?.stop();
    await store?.dispose();
  });

  const delivery = (runId: string) => getRunDelivery(store.db, 'default', runId);
  const settled = (runId: string) =>
    eventually(
      async () => {
        const d = await delivery(runId);
        return d !== null && d.status !== 'pending' ? d : undefined;
      },
      10_000,
      `delivery of run ${runId} to settle`,
    );

  it('POSTs a run that ends once, signed, with the run and its final values', async () => {
    const receiver = await startReceiver();
    try {
      const run = await client.runs.create(null, 'noter', { input: { text: 'hi' }, webhook: receiver.url });
      await eventually(() => (receiver.hooks.length > 0 ? true : undefined), 10_000, 'the webhook');
      await settle();
      expect(receiver.hooks).toHaveLength(1);
      const [hook] = receiver.hooks;
      if (hook === undefined) throw new Error('no hook');

      expect(hook.headers['content-type']).toBe('application/json');
      expect(hook.headers['x-hangar-attempt']).toBe('1');
      expect(hook.headers['x-hangar-delivery']).toMatch(/^[0-9a-f-]{36}$/);
      expect(
        verifyWebhookSignature({
          secret: SECRET,
          header: hook.headers['x-hangar-signature'],
          body: hook.body,
        }),
      ).toBe(true);
      expect(
        verifyWebhookSignature({
          secret: `${SECRET}-other`,
          header: hook.headers['x-hangar-signature'],
          body: hook.body,
        }),
      ).toBe(false);

      // LangGraph's webhook body: the run, its times, and the final state as `values`.
      expect(hook.json).toMatchObject({
        run_id: run.run_id,
        thread_id: run.thread_id,
        assistant_id: run.assistant_id,
        status: 'success',
        output: { echoed: 'hi' },
        values: { last: 'hi' },
      });
      expect(typeof hook.json.run_started_at).toBe('string');
      expect(typeof hook.json.run_ended_at).toBe('string');
      expect(Date.parse(String(hook.json.webhook_sent_at))).toBeGreaterThanOrEqual(
        Date.parse(String(hook.json.run_ended_at)),
      );
      expect(hook.json).not.toHaveProperty('tenant_id');
      expect(hook.json).not.toHaveProperty('error');

      const recorded = await settled(run.run_id);
      expect(recorded).toMatchObject({
        delivery_id: String(hook.headers['x-hangar-delivery']),
        status: 'delivered',
        attempts: 1,
        last_status_code: 200,
        last_error: null,
      } satisfies Partial<WebhookDelivery>);
    } finally {
      await receiver.close();
    }
  });

  it('POSTs a failed run with its error', async () => {
    const receiver = await startReceiver();
    try {
      const run = await client.runs.create(null, 'failing', { input: {}, webhook: receiver.url });
      const hook = await eventually(() => receiver.hooks[0], 10_000, 'the webhook');
      expect(hook.json).toMatchObject({
        run_id: run.run_id,
        status: 'error',
        error: 'boom',
        error_details: { code: 'agent_error', type: 'TypeError', message: 'boom' },
      });
    } finally {
      await receiver.close();
    }
  });

  it('retries a 500 with backoff: delivered on the third attempt under one delivery id', async () => {
    const receiver = await startReceiver((n) => (n < 2 ? 500 : 200));
    try {
      const run = await client.runs.create(null, 'noter', {
        input: { text: 'retry' },
        webhook: receiver.url,
      });
      const recorded = await settled(run.run_id);
      await settle();
      expect(receiver.hooks.map((h) => h.answered)).toEqual([500, 500, 200]);
      expect(receiver.hooks.map((h) => h.headers['x-hangar-attempt'])).toEqual(['1', '2', '3']);
      const ids = new Set(receiver.hooks.map((h) => h.headers['x-hangar-delivery']));
      expect([...ids]).toEqual([recorded.delivery_id]);
      for (const hook of receiver.hooks) {
        expect(
          verifyWebhookSignature({
            secret: SECRET,
            header: hook.headers['x-hangar-signature'],
            body: hook.body,
          }),
        ).toBe(true);
      }
      expect(recorded).toMatchObject({ status: 'delivered', attempts: 3, last_status_code: 200 });
    } finally {
      await receiver.close();
    }
  });

  it('gives up on a receiver that is down after the bounded attempts', async () => {
    const url = await deadUrl();
    const run = await client.runs.create(null, 'noter', { input: { text: 'down' }, webhook: url });
    const recorded = await settled(run.run_id);
    expect(recorded.status).toBe('failed');
    expect(recorded.attempts).toBe(3);
    expect(recorded.last_status_code).toBeNull();
    expect(recorded.last_error).toMatch(/ECONNREFUSED.*gave up after 3 attempts/);
    await settle();
    expect((await delivery(run.run_id))?.attempts).toBe(3);
  });

  it('does not retry a 4xx: the receiver refused the delivery', async () => {
    const receiver = await startReceiver(() => 410);
    try {
      const run = await client.runs.create(null, 'noter', { input: { text: 'gone' }, webhook: receiver.url });
      const recorded = await settled(run.run_id);
      await settle();
      expect(receiver.hooks).toHaveLength(1);
      expect(recorded).toMatchObject({ status: 'failed', attempts: 1, last_status_code: 410 });
      expect(recorded.last_error).toMatch(/410 \(not retried\)/);
    } finally {
      await receiver.close();
    }
  });

  it.each([
    ['a non-http scheme', 'ftp://example.com/hook'],
    ['a relative URL', '/hooks/local'],
    ['not a URL', 'not a url'],
    ['credentials in the URL', 'https://user:pw@example.com/hook'],
    ['an over-long URL', `https://example.com/${'a'.repeat(2100)}`],
    ['a number', 42],
  ])('refuses %s with a 400 naming webhook, and creates no run', async (_what, webhook) => {
    const thread = await client.threads.create();
    for (const path of [`/threads/${thread.thread_id}/runs`, `/threads/${thread.thread_id}/runs/wait`]) {
      const res = await fetch(`${hangar.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ assistant_id: 'noter', input: { text: 'x' }, webhook }),
      });
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: string; message: string; details?: unknown };
      expect(body.error).toBe('invalid_request');
      expect(body.message).toContain('webhook');
      expect(JSON.stringify(body.details)).toContain('"path":"webhook"');
    }
    expect(await client.runs.list(thread.thread_id)).toEqual([]);
  });

  it('runs without a webhook record no delivery', async () => {
    const run = await client.runs.create(null, 'noter', { input: { text: 'plain' } });
    await client.runs.join(run.thread_id, run.run_id);
    expect(await delivery(run.run_id)).toBeNull();
  });
});

describe.each(STORE_KINDS)('webhooks without a secret (%s)', (kind) => {
  let store: TestStore;
  let hangar: RunningHangar;

  beforeAll(async () => {
    store = await createTestStore(kind);
    hangar = await startHangar({
      db: store.db,
      bus: new MemoryBus(),
      agents: AGENTS,
      logger: testLogger(),
      migrate: false,
      gateway: { port: 0, host: '127.0.0.1', auth: 'none' },
    });
  });

  afterAll(async () => {
    await hangar?.stop();
    await store?.dispose();
  });

  it('refuses a webhook with a 400 naming webhook instead of queueing an unsigned delivery', async () => {
    const runId = randomUUID();
    const res = await fetch(`${hangar.url}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        assistant_id: 'noter',
        input: { text: 'x' },
        run_id: runId,
        webhook: 'https://example.com/hook',
      }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.error).toBe('invalid_request');
    expect(body.message).toMatch(/webhook.*HANGAR_WEBHOOK_SECRET/);
    const runs = await store.db.query('SELECT 1 FROM runs WHERE run_id = $1', [runId]);
    expect(runs.rowCount).toBe(0);
  });
});

describe('webhooks with the private-network guard on (the default outside `hangar dev`)', () => {
  let store: TestStore;
  let hangar: RunningHangar;
  let client: Client;

  beforeAll(async () => {
    store = await createTestStore('postgres');
    hangar = await startHangar({
      db: store.db,
      bus: new MemoryBus(),
      agents: AGENTS,
      logger: testLogger(),
      migrate: false,
      gateway: { port: 0, host: '127.0.0.1', auth: 'none' },
      worker: { pollMs: 50 },
      webhooks: { ...FAST, allowPrivateNetworks: false },
    });
    client = new Client({ apiUrl: hangar.url ?? '' });
  });

  afterAll(async () => {
    await hangar?.stop();
    await store?.dispose();
  });

  it.each([
    ['the cloud metadata service', 'http://169.254.169.254/latest/meta-data/'],
    ['loopback', 'http://127.0.0.1:8123/hook'],
    ['an IPv6 loopback', 'http://[::1]/hook'],
    ['an IPv4-mapped private address', 'http://[::ffff:10.0.0.5]/hook'],
    ['a private network', 'https://192.168.1.10/hook'],
  ])('refuses %s at create with a 400 naming webhook', async (_what, webhook) => {
    const runId = randomUUID();
    const res = await fetch(`${hangar.url}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: 'noter', input: { text: 'x' }, run_id: runId, webhook }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { message: string; details?: unknown };
    expect(body.message).toMatch(
      /webhook: .* is a loopback or private address.*HANGAR_WEBHOOK_ALLOW_PRIVATE/,
    );
    expect(JSON.stringify(body.details)).toContain('"path":"webhook"');
    expect((await store.db.query('SELECT 1 FROM runs WHERE run_id = $1', [runId])).rowCount).toBe(0);
  });

  it('never connects to a DNS name that resolves to a private address, and fails the delivery saying why', async () => {
    const receiver = await startReceiver();
    try {
      // `localhost` passes the create-time check (it is a name) and resolves to loopback at delivery.
      const url = receiver.url.replace('127.0.0.1', 'localhost');
      const run = await client.runs.create(null, 'noter', { input: { text: 'inside' }, webhook: url });
      const recorded = await eventually(
        async () => {
          const d = await getRunDelivery(store.db, 'default', run.run_id);
          return d !== null && d.status !== 'pending' ? d : undefined;
        },
        10_000,
        'the delivery to settle',
      );
      expect(recorded).toMatchObject({ status: 'failed', attempts: 1, last_status_code: null });
      expect(recorded.last_error).toMatch(
        /blocked: localhost resolves only to private addresses.*not retried/,
      );
      expect(receiver.hooks).toHaveLength(0);
    } finally {
      await receiver.close();
    }
  });
});
