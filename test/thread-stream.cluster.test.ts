/**
 * The thread WebSocket at fan-out on the local cluster (bench/cluster): 1,000
 * concurrent subscribers spread over two gateways, 20 per thread, while 50
 * runs stream on two workers. Every subscriber's sequence must be complete
 * (the run's start, each of its custom events, its end) and ordered, and the
 * same for every subscriber of a thread, whichever gateway it reached. Then a
 * gateway is stopped mid-run: its subscribers get `4000 reconnect` and resume
 * on the other gateway from their last position, missing and repeating nothing.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Cluster, startCluster } from '../bench/cluster/cluster.ts';
import { api, FIXTURES, poll } from './helpers.ts';
import { StreamClient, strictlyIncreasing } from './thread-stream-client.ts';

const CLUSTER_CONFIG = join(FIXTURES, 'cluster.config.ts');
const RUNS = 50;
const PER_RUN = 20;
const TICKS = 8;

let cluster: Cluster | undefined;

beforeAll(async () => {
  cluster = await startCluster({ gateways: 2, workers: 2, config: CLUSTER_CONFIG });
}, 120_000);

afterAll(async () => {
  await cluster?.stop({ graceMs: 0 });
});

it(`${RUNS * PER_RUN} WebSocket subscribers over two gateways each get their run's events, complete and in order`, async () => {
  const c = cluster as Cluster;
  const gateways = c.gateways.map((g) => g.url as string);
  const threads = await Promise.all(
    Array.from({ length: RUNS }, async () => {
      const res = await api<{ thread_id: string }>(c.url, 'POST', '/threads', {});
      expect(res.status, res.text).toBe(200);
      return res.body.thread_id;
    }),
  );
  // Subscribers in batches (a burst of 1,000 upgrades at once is a different test), alternating gateways.
  const subscribers: Array<{ thread: string; client: StreamClient }> = [];
  for (let batch = 0; batch < PER_RUN; batch++) {
    const opened = await Promise.all(
      threads.map(async (thread, i) => {
        const client = await StreamClient.open(gateways[(batch + i) % gateways.length] as string, thread);
        await client.subscribe({ channels: ['lifecycle', 'custom'] });
        return { thread, client };
      }),
    );
    subscribers.push(...opened);
  }
  expect(subscribers).toHaveLength(RUNS * PER_RUN);

  const runs = new Map<string, string>();
  await Promise.all(
    threads.map(async (thread) => {
      const res = await api<{ run_id: string }>(c.url, 'POST', `/threads/${thread}/runs`, {
        assistant_id: 'chatty',
        input: { count: TICKS, gapMs: 20 },
      });
      expect(res.status, res.text).toBe(200);
      runs.set(thread, res.body.run_id);
    }),
  );
  const ended = (s: { thread: string; client: StreamClient }) =>
    s.client.events.some((e) => e.runId === runs.get(s.thread) && e.params.data.terminal === true);
  await poll('every subscriber to see its run end', () => (subscribers.every(ended) ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 200,
  }).catch((err: unknown) => {
    const missing = subscribers.filter((s) => !ended(s)).length;
    throw new Error(`${missing} subscribers did not see their run end\n${c.logs(20)}`, { cause: err });
  });

  const byThread = new Map<string, number[]>();
  for (const { thread, client } of subscribers) {
    const events = client.events;
    expect(events.every((e) => e.runId === runs.get(thread))).toBe(true);
    expect(strictlyIncreasing(events)).toBe(true);
    expect(events.map((e) => e.params.data.event ?? (e.params.data.payload as { i: number }).i)).toEqual([
      'started',
      ...Array.from({ length: TICKS }, (_, i) => i),
      'completed',
    ]);
    const seqs = events.map((e) => e.seq);
    const first = byThread.get(thread);
    if (first === undefined) byThread.set(thread, seqs);
    else expect(seqs).toEqual(first);
    client.close();
  }
}, 120_000);

it('a gateway stopping (SIGTERM) sends its subscribers to the other one, where they resume exactly once', async () => {
  const c = cluster as Cluster;
  const [leaving, staying] = c.gateways.map((g) => g.url as string) as [string, string];
  const thread = (await api<{ thread_id: string }>(staying, 'POST', '/threads', {})).body.thread_id;
  const clients = await Promise.all(Array.from({ length: 20 }, () => StreamClient.open(leaving, thread)));
  const subs = await Promise.all(
    clients.map((client) => client.subscribe({ channels: ['lifecycle', 'custom'] })),
  );
  const run = (
    await api<{ run_id: string }>(staying, 'POST', `/threads/${thread}/runs`, {
      assistant_id: 'chatty',
      input: { count: 40, gapMs: 50 },
    })
  ).body;
  await clients[0]?.waitForEvent('the run to be under way', (e) => e.method === 'custom');
  const exited = c.killGateway(0, 'SIGTERM');
  const codes = await Promise.all(clients.map((client) => client.waitForClose()));
  expect(codes).toEqual(Array(20).fill(4000));
  expect((await exited).code).toBe(0);

  const resumed = await Promise.all(
    clients.map(async (client, i) => {
      const again = await StreamClient.open(staying, thread);
      const last = client.events.at(-1);
      const res = await again.command('subscription.reconnect', {
        runId: run.run_id,
        subscriptions: [subs[i]?.id],
        ...(last === undefined ? {} : { lastEventId: last.eventId }),
      });
      expect(res).toMatchObject({ type: 'success', result: { restored: true } });
      await again.waitForEnd(run.run_id, 60_000);
      again.close();
      return [...client.events, ...again.events];
    }),
  );
  for (const events of resumed) {
    expect(strictlyIncreasing(events)).toBe(true);
    expect(events.map((e) => e.params.data.event ?? (e.params.data.payload as { i: number }).i)).toEqual([
      'started',
      ...Array.from({ length: 40 }, (_, i) => i),
      'completed',
    ]);
  }
}, 120_000);
