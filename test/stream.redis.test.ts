/**
 * The Redis event plane on the local cluster (bench/cluster): two gateways
 * behind HAProxy and a worker, all on a private `redis-server` of this file's
 * own (the shared one is never flushed or restarted). While a run streams
 * through the proxy, that Redis is flushed, then killed and started again:
 * the run completes and the client still gets every event exactly once, in
 * order, with the ids of the Postgres log.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Cluster, startCluster } from '../bench/cluster/cluster.ts';
import type { ThreadMessage } from '../packages/hangar/src/bus/bus.ts';
import { RedisBus } from '../packages/hangar/src/bus/redis.ts';
import { type SseFrame, sseFrames } from '../packages/hangar/src/cli/run.ts';
import type { EventEnvelope } from '../packages/hangar/src/events/envelope.ts';
import { readEvents } from '../packages/hangar/src/events/log.ts';
import { openPostgres, type PostgresClient } from '../packages/hangar/src/store/postgres.ts';
import { testLogger } from '../packages/hangar/src/testing/logger.ts';
import { api, FIXTURES, poll, type RunView, waitForTerminal } from './helpers.ts';

const CLUSTER_CONFIG = join(FIXTURES, 'cluster.config.ts');

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

/** A redis-server of the test's own: no persistence, so a restart comes back empty. */
class PrivateRedis {
  private proc: ChildProcess | undefined;
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const proc = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    this.proc = proc;
    await poll(`redis-server on port ${this.port}`, async () => {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}`);
      const probe = new Redis(this.url, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      probe.on('error', () => {});
      try {
        await probe.connect();
        return (await probe.ping()) === 'PONG' ? true : undefined;
      } finally {
        probe.disconnect();
      }
    });
  }

  /** SIGKILL, and wait until it is gone. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  }
}

/**
 * Reads a run's SSE stream through the proxy, reconnecting with
 * `Last-Event-ID` if the connection drops before the run ended.
 */
function follow(base: string, threadId: string, runId: string, headers: Record<string, string>) {
  const frames: SseFrame[] = [];
  const controller = new AbortController();
  const done = (async () => {
    let lastId: string | undefined;
    for (let attempt = 0; attempt < 6; attempt++) {
      try {
        const res = await fetch(`${base}/threads/${threadId}/runs/${runId}/stream`, {
          headers: { ...headers, ...(lastId === undefined ? {} : { 'last-event-id': lastId }) },
          signal: controller.signal,
        });
        if (res.status !== 200 || res.body === null) throw new Error(`stream answered ${res.status}`);
        for await (const frame of sseFrames(res.body)) {
          frames.push(frame);
          if (frame.id !== undefined) lastId = frame.id;
        }
        const run = await api<RunView>(base, 'GET', `/threads/${threadId}/runs/${runId}`);
        if (!['pending', 'running'].includes(run.body.status)) return;
      } catch (err) {
        if (controller.signal.aborted) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    throw new Error('the stream did not end after 6 connections');
  })();
  return {
    frames,
    done,
    custom: () => frames.filter((f) => f.event === 'custom'),
    abort: () => controller.abort(),
  };
}

let redis: PrivateRedis | undefined;
let cluster: Cluster | undefined;
let db: PostgresClient | undefined;

describe('the Redis event plane on the local cluster', () => {
  beforeAll(async () => {
    redis = new PrivateRedis(await freePort());
    await redis.start();
    cluster = await startCluster({
      gateways: 2,
      workers: 1,
      config: CLUSTER_CONFIG,
      redis: { url: redis.url },
    });
    db = await openPostgres({ connectionString: cluster.databaseUrl, schema: cluster.schema, max: 2 });
  }, 120_000);

  afterAll(async () => {
    await db?.close();
    await cluster?.stop({ graceMs: 0 });
    await redis?.kill();
  });

  test('a run streams through the proxy while its Redis is flushed, then killed and restarted: every event once, in order', async () => {
    const c = cluster;
    const r = redis;
    if (c === undefined || r === undefined || db === undefined) throw new Error('the cluster did not start');
    const COUNT = 100;
    const created = await api<RunView>(c.url, 'POST', '/runs', {
      assistant_id: 'chatty',
      input: { count: COUNT, gapMs: 60 },
    });
    expect(created.status).toBe(200);
    const run = created.body;
    // Gateway A (g0) serves the stream while the worker writes.
    const client = follow(c.url, run.thread_id, run.run_id, c.pinTo(0));
    const watchdog = setTimeout(() => client.abort(), 90_000);
    const admin = new Redis(r.url, { maxRetriesPerRequest: 1 });
    admin.on('error', () => {});
    try {
      await poll('10 events at the client', () => (client.custom().length >= 10 ? true : undefined), {
        timeoutMs: 60_000,
      });
      // The events reached the client through Redis: the thread's stream is there.
      expect(await admin.keys(`*{${run.thread_id}}:s`)).toHaveLength(1);
      await admin.flushall();

      const seen = client.custom().length;
      await poll(
        'more events after the flush',
        () => (client.custom().length >= seen + 10 ? true : undefined),
        {
          timeoutMs: 60_000,
        },
      );
      admin.disconnect();
      await r.kill();
      const down = client.custom().length;
      // Redis is down: followers are served by the poll of the Postgres log.
      await poll('events while Redis is down', () => (client.custom().length > down ? true : undefined), {
        timeoutMs: 60_000,
      });
      await r.start();
      // Restarted mid-run: the worker's next events go to the new, empty Redis.
      expect(
        (await api<RunView>(c.url, 'GET', `/threads/${run.thread_id}/runs/${run.run_id}`)).body.status,
      ).toBe('running');
      await client.done;
    } finally {
      clearTimeout(watchdog);
      admin.disconnect();
    }

    const final = await waitForTerminal(c.url, run, 30_000);
    expect(final.status).toBe('success');
    const expected = Array.from({ length: COUNT }, (_, i) => ({ i }));
    expect(client.custom().map((f) => JSON.parse(f.data))).toEqual(expected);
    // The ids are the log's seqs: each event once, in order, as Postgres has them.
    const log = await readEvents(db, 'default', run.thread_id, {
      afterSeq: 0,
      limit: 1_000,
      runId: run.run_id,
    });
    const logged = log.filter((e) => e.channel === 'custom').map((e) => String(e.seq));
    expect(client.custom().map((f) => f.id)).toEqual(logged);
    const ids = client.frames.filter((f) => f.id !== undefined).map((f) => Number(f.id));
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1] ?? 0);

    // The restarted Redis is used again: a new run's events reach its stream.
    const next = await api<RunView>(c.url, 'POST', '/runs', {
      assistant_id: 'chatty',
      input: { count: 3, gapMs: 0 },
    });
    expect((await waitForTerminal(c.url, next.body, 30_000)).status).toBe('success');
    const check = new Redis(r.url);
    try {
      await poll('the new run in the restarted Redis', async () =>
        (await check.keys(`*{${next.body.thread_id}}:s`)).length === 1 ? true : undefined,
      );
    } finally {
      check.disconnect();
    }
  }, 180_000);

  test("a process's subscriptions come back after its Redis restarts, and what it missed is announced", async () => {
    const r = redis;
    if (r === undefined) throw new Error('redis did not start');
    const prefix = `hangar:restart:${randomUUID()}:`;
    const publisher = new RedisBus({ url: r.url, prefix, logger: testLogger() });
    const subscriber = new RedisBus({ url: r.url, prefix, logger: testLogger() });
    await Promise.all([publisher.start(), subscriber.start()]);
    try {
      const thread = randomUUID();
      const heard: ThreadMessage[] = [];
      let work = 0;
      subscriber.subscribeThread(thread, (m) => heard.push(m));
      subscriber.onWork(() => work++);
      const hints = () => heard.filter((m) => m.kind === 'hint').length;
      const seqs = () => heard.flatMap((m) => (m.kind === 'events' ? m.events.map((e) => e.seq) : []));
      await poll('the subscription to become active', () => (hints() === 1 ? true : undefined));
      publisher.publishEvents(thread, [envelope(thread, 1)]);
      await poll('seq 1', () => (seqs().includes(1) ? true : undefined));

      await r.kill();
      // Published while Redis is down: dropped (it is in the log), counted, never queued.
      publisher.publishEvents(thread, [envelope(thread, 2)]);
      // At once when the client already knows Redis is gone, else when the command fails.
      await poll('the publish to be dropped', () => (publisher.stats.dropped === 1 ? true : undefined));
      expect(publisher.stats.published).toBe(1);
      const workBefore = work;
      await r.start();
      // Back: every follower is told to re-read (it may have missed something), and workers to look for work.
      await poll('a hint after the reconnect', () => (hints() === 2 ? true : undefined), {
        timeoutMs: 30_000,
      });
      expect(work).toBeGreaterThan(workBefore);
      await poll('the publisher to reconnect', () => {
        publisher.publishEvents(thread, [envelope(thread, 3)]);
        return publisher.stats.published >= 2 ? true : undefined;
      });
      await poll('seq 3 through the new subscription', () => (seqs().includes(3) ? true : undefined));
      expect(seqs().filter((n) => n !== 3)).toEqual([1]);
    } finally {
      await Promise.all([publisher.close(), subscriber.close()]);
    }
  }, 60_000);
});

function envelope(threadId: string, seq: number): EventEnvelope {
  return {
    seq,
    event_id: randomUUID(),
    thread_id: threadId,
    run_id: null,
    attempt: 1,
    ts: new Date().toISOString(),
    channel: 'custom',
    namespace: [],
    data: { seq },
  };
}
