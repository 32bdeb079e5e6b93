import { Client } from '@langchain/langgraph-sdk';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { MemoryBus } from '../bus/memory.ts';
import { type RunningHangar, type StartOptions, startHangar } from '../runtime/start.ts';
import { defineAgent } from '../sdk/agent.ts';
import { createTestStore, STORE_KINDS, type TestStore, testLogger } from '../testing/index.ts';
import type { WebhookSettings } from './dispatcher.ts';
import { claimDeliveries, getRunDelivery, recordOutcome } from './repository.ts';
import { verifyWebhookSignature } from './signature.ts';
import { eventually, startReceiver } from './test-receiver.ts';

const SECRET = 'test-webhook-secret-0123456789';
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

/**
 * Durability: the delivery lives in Postgres, not in the process that ran the
 * run. Each test ends a run where no process can deliver it, then brings up a
 * new dispatcher on the same store.
 */
describe.each(STORE_KINDS)('webhook delivery across restarts (%s)', (kind) => {
  let store: TestStore;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  const started: RunningHangar[] = [];
  const bus = new MemoryBus();

  const start = async (roles: Pick<StartOptions, 'gateway' | 'worker' | 'webhooks'>) => {
    const hangar = await startHangar({
      db: store.db,
      bus,
      agents: new Map([[noter.name, noter]]),
      logger: testLogger(),
      migrate: false,
      ...roles,
    });
    started.push(hangar);
    return hangar;
  };

  /**
   * A run with a webhook that ends while no dispatcher runs: a gateway that
   * accepts webhooks, and a worker whose process has no secret (so it sends
   * nothing). Both are stopped before the function returns.
   */
  const runEndedUndelivered = async () => {
    const gateway = await start({
      gateway: { port: 0, host: '127.0.0.1', auth: 'none' },
      webhooks: { secret: SECRET, allowPrivateNetworks: true },
    });
    const worker = await start({ worker: { pollMs: 50 } });
    const client = new Client({ apiUrl: gateway.url ?? '' });
    const run = await client.runs.create(null, 'noter', { input: { text: 'later' }, webhook: receiver.url });
    await client.runs.join(run.thread_id, run.run_id);
    expect((await client.runs.get(run.thread_id, run.run_id)).status).toBe('success');
    await gateway.stop();
    await worker.stop();
    const delivery = await getRunDelivery(store.db, 'default', run.run_id);
    expect(delivery).toMatchObject({ status: 'pending', attempts: 0 });
    return { run, deliveryId: delivery?.delivery_id };
  };

  // One store for the file (PGlite's initdb costs seconds); every test has its own run and receiver.
  beforeAll(async () => {
    store = await createTestStore(kind);
  });

  afterAll(async () => {
    await store?.dispose();
  });

  beforeEach(async () => {
    receiver = await startReceiver();
  });

  afterEach(async () => {
    for (const hangar of started.splice(0)) await hangar.stop();
    await receiver.close();
  });

  it('a run that ended while no process could deliver is delivered by the next process', async () => {
    const { run, deliveryId } = await runEndedUndelivered();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receiver.hooks).toHaveLength(0);

    await start({ worker: { pollMs: 50 }, webhooks: FAST });
    const hook = await eventually(() => receiver.hooks[0], 10_000, 'the webhook after the restart');
    expect(hook.headers['x-hangar-delivery']).toBe(deliveryId);
    expect(hook.json).toMatchObject({ run_id: run.run_id, status: 'success', values: { last: 'later' } });
    expect(
      verifyWebhookSignature({ secret: SECRET, header: hook.headers['x-hangar-signature'], body: hook.body }),
    ).toBe(true);
    await eventually(async () => {
      const d = await getRunDelivery(store.db, 'default', run.run_id);
      return d?.status === 'delivered' ? d : undefined;
    });
    expect(receiver.hooks).toHaveLength(1);
  });

  it('a dispatcher that died mid-POST: the delivery goes out again once its claim lapses, same id', async () => {
    const { run, deliveryId } = await runEndedUndelivered();
    // A dispatcher claims the delivery and dies before recording anything.
    const [dead] = await claimDeliveries(store.db, { limit: 10, leaseMs: 800, maxAttempts: 3 });
    expect(dead).toMatchObject({ deliveryId, runId: run.run_id, attempt: 1 });

    await start({ worker: { pollMs: 50 }, webhooks: FAST });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receiver.hooks).toHaveLength(0); // Still claimed by the dead dispatcher.

    const hook = await eventually(() => receiver.hooks[0], 10_000, 'the webhook after the claim lapsed');
    expect(hook.headers['x-hangar-delivery']).toBe(deliveryId);
    expect(hook.headers['x-hangar-attempt']).toBe('2');
    const delivered = await eventually(async () => {
      const d = await getRunDelivery(store.db, 'default', run.run_id);
      return d?.status === 'delivered' ? d : undefined;
    });
    expect(delivered.attempts).toBe(2);
    // The dead dispatcher coming back late writes nothing over the newer attempt.
    if (dead === undefined) throw new Error('no claim');
    expect(await recordOutcome(store.db, dead, { kind: 'failed', statusCode: null, error: 'late' })).toBe(
      false,
    );
    expect(await getRunDelivery(store.db, 'default', run.run_id)).toMatchObject({ status: 'delivered' });
  });

  it('a last attempt that died mid-POST is marked failed, not left pending', async () => {
    const { run } = await runEndedUndelivered();
    await claimDeliveries(store.db, { limit: 10, leaseMs: 300, maxAttempts: 1 });

    await start({ worker: { pollMs: 50 }, webhooks: { ...FAST, maxAttempts: 1 } });
    const failed = await eventually(async () => {
      const d = await getRunDelivery(store.db, 'default', run.run_id);
      return d?.status === 'failed' ? d : undefined;
    });
    expect(failed.attempts).toBe(1);
    expect(failed.last_error).toMatch(/interrupted/);
    expect(receiver.hooks).toHaveLength(0);
  });
});
