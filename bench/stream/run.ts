/**
 * The streaming benchmark (`npm run bench:stream`), on the local cluster with
 * the Redis event plane (2 gateways behind HAProxy, 2 workers, the local
 * Postgres and Redis, a schema and key prefix of its own):
 *
 *   1. latency: worker emit → client receive through a gateway other than
 *      the one that took the create, at 1k and 10k events/s (10 runs each
 *      emitting a tenth; each event carries its emit time; same machine);
 *   2. fan-out: events/s one gateway process delivers to SSE subscribers
 *      (runs × subscribers on one gateway) of the run stream (the target's
 *      figure) and of the thread stream, beside raw Redis `XADD` throughput
 *      measured in the same run;
 *   3. reconnect: SIGKILL the gateway a client streams from; time from the
 *      client's reconnect to caught up (the first event emitted after the
 *      reconnect began has arrived, so everything before it has too, in order);
 *   4. idle WebSocket memory: gateway RSS growth per idle subscribed socket;
 *   5. where the latency goes at 10k events/s: emit → commit start → Redis
 *      publish → client (a second 10k run with a Redis subscriber listening).
 *
 * Writes bench/results/stream.{json,md}. Flags: --quick (shorter phases),
 * --kills N (default 10), --sockets N (default 10000).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { sseFrames } from '../../packages/hangar/src/cli/run.ts';
import { type Cluster, PIN_HEADER, startCluster } from '../cluster/cluster.ts';
import { type LatencySummary, round, summarize } from '../engine/stats.ts';

const CONFIG = fileURLToPath(new URL('./hangar.config.ts', import.meta.url));
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** The cluster's key prefix, known here so the stage breakdown can hear its publishes. */
const REDIS_PREFIX = `hangar:bench-stream:${randomBytes(4).toString('hex')}:`;
const TARGETS = {
  p99At10kMs: 15,
  catchUpP99Ms: 250,
  bytesPerIdleSocket: 16 * 1024,
  eventsPerGateway: 50_000,
};

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    kills: { type: 'string', default: '10' },
    sockets: { type: 'string', default: '10000' },
  },
});
const quick = flags.quick === true;
const SECONDS = quick ? 4 : 10;

interface RunRef {
  run_id: string;
  thread_id: string;
}

async function create(cluster: Cluster, input: unknown, gateway = 0): Promise<RunRef> {
  const res = await fetch(`${cluster.url}/runs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...cluster.pinTo(gateway) },
    body: JSON.stringify({ assistant_id: 'emitter', input }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`create answered ${res.status}: ${text}`);
  return JSON.parse(text) as RunRef;
}

/** Opens the run's SSE stream (pinned to a gateway, or round robin) after a position. */
async function open(
  cluster: Cluster,
  run: RunRef,
  options: { gateway?: number; after?: string; signal?: AbortSignal },
): Promise<{ body: ReadableStream<Uint8Array>; servedBy: string | null }> {
  const res = await fetch(`${cluster.url}/threads/${run.thread_id}/runs/${run.run_id}/stream`, {
    headers: {
      ...(options.gateway === undefined ? {} : cluster.pinTo(options.gateway)),
      ...(options.after === undefined ? {} : { 'last-event-id': options.after }),
    },
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  if (res.status !== 200 || res.body === null) throw new Error(`stream answered ${res.status}`);
  return { body: res.body, servedBy: res.headers.get(PIN_HEADER) };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Phase 1: emit → receive latency at `rate` events/s over 10 runs, read through gateway 1. */
async function latency(cluster: Cluster, rate: number): Promise<LatencySummary & { delivered: number }> {
  const RUNS = 10;
  const samples: number[] = [];
  let delivered = 0;
  const perRun = rate / RUNS;
  const runs = await Promise.all(
    Array.from({ length: RUNS }, () => create(cluster, { rate: perRun, seconds: SECONDS, bytes: 64 }, 0)),
  );
  await Promise.all(
    runs.map(async (run) => {
      const { body } = await open(cluster, run, { gateway: 1 });
      for await (const frame of sseFrames(body)) {
        if (frame.event !== 'custom') continue;
        const received = Date.now();
        const data = JSON.parse(frame.data) as { i: number; t: number };
        delivered++;
        // The first half second is the stream catching up from the log, not live delivery.
        if (data.i >= perRun / 2) samples.push(received - data.t);
      }
    }),
  );
  return { ...summarize(samples), delivered };
}

/**
 * Where the latency goes at `rate` events/s: a Redis subscriber on the runs'
 * live channels (in a worker thread, so it neither waits for nor slows the
 * SSE readers) stamps each event when its publish is heard. Per event:
 * emit → commit start (the envelope's `ts`, set by the worker as it writes the
 * batch), emit → Redis publish heard, emit → SSE client receive (as phase 1).
 */
async function stages(
  cluster: Cluster,
  rate: number,
): Promise<{
  emit_to_commit: LatencySummary;
  emit_to_publish: LatencySummary;
  emit_to_client: LatencySummary;
}> {
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const { Redis } = require('ioredis');
     const sub = new Redis(workerData.url);
     const commit = [];
     const publish = [];
     sub.on('pmessage', (_pattern, _channel, message) => {
       const now = Date.now();
       for (const e of JSON.parse(message)) {
         if (e.channel !== 'custom' || e.data.i < workerData.skip) continue;
         commit.push(Date.parse(e.ts) - e.data.t);
         publish.push(now - e.data.t);
       }
     });
     sub.psubscribe(workerData.pattern).then(() => parentPort.postMessage('ready'));
     parentPort.on('message', () => {
       parentPort.postMessage({ commit, publish });
       sub.disconnect();
     });`,
    { eval: true, workerData: { url: REDIS_URL, pattern: `${REDIS_PREFIX}*:live`, skip: rate / 10 / 2 } },
  );
  await new Promise((resolve) => worker.once('message', resolve));
  const client = await latency(cluster, rate);
  const heard = new Promise<{ commit: number[]; publish: number[] }>((resolve) =>
    worker.once('message', resolve),
  );
  worker.postMessage('stop');
  const { commit, publish } = await heard;
  await worker.terminate();
  return { emit_to_commit: summarize(commit), emit_to_publish: summarize(publish), emit_to_client: client };
}

type FanOut = { offered_per_s: number; delivered_per_s: number; delivered: number; window_s: number };

/** Deliveries per second over the steady window: the first and last 10 % of deliveries (ramp-up and tail) dropped. */
function deliveryRate(stamps: number[], offeredPerS: number): FanOut {
  stamps.sort((a, b) => a - b);
  const from = stamps[Math.floor(stamps.length * 0.1)] ?? 0;
  const to = stamps[Math.floor(stamps.length * 0.9)] ?? 0;
  const inWindow = stamps.filter((t) => t >= from && t <= to).length;
  const windowS = Math.max(0.001, (to - from) / 1000);
  return {
    offered_per_s: offeredPerS,
    delivered_per_s: Math.round(inWindow / windowS),
    delivered: stamps.length,
    window_s: round(windowS, 2),
  };
}

/**
 * One gateway's fan-out: `runsCount` runs at `rate` each, `subscribers`
 * readers per run, all on gateway 1; `read` reads one run's stream and calls
 * `delivered` for each event it receives.
 */
async function fanOut(
  cluster: Cluster,
  runsCount: number,
  rate: number,
  subscribers: number,
  read: (run: RunRef, delivered: () => void) => Promise<void>,
): Promise<FanOut> {
  const runs = await Promise.all(
    Array.from({ length: runsCount }, () => create(cluster, { rate, seconds: SECONDS, bytes: 64 }, 0)),
  );
  const stamps: number[] = [];
  await Promise.all(
    runs.flatMap((run) =>
      Array.from({ length: subscribers }, () => read(run, () => stamps.push(Date.now()))),
    ),
  );
  return deliveryRate(stamps, runsCount * rate * subscribers);
}

/** Phase 2: the run stream (`GET …/runs/{run_id}/stream`, SSE), which follows per request. */
function readRunStream(cluster: Cluster) {
  return async (run: RunRef, delivered: () => void): Promise<void> => {
    const { body } = await open(cluster, run, { gateway: 1 });
    for await (const frame of sseFrames(body)) {
      if (frame.event === 'custom') delivered();
    }
  };
}

/**
 * Phase 2b: the Agent Protocol thread stream (`POST /threads/{id}/stream`,
 * SSE, channel `custom`, from seq 0), where the readers of a thread share the
 * gateway's feed (streaming/feed.ts) and each event is serialized once. A
 * thread stream outlives its run: a reader stops after the run's last event
 * (`total` of them).
 */
function readThreadStream(cluster: Cluster, total: number) {
  return async (run: RunRef, delivered: () => void): Promise<void> => {
    const signal = AbortSignal.timeout((SECONDS + 60) * 1000);
    const res = await fetch(`${cluster.url}/threads/${run.thread_id}/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...cluster.pinTo(1) },
      body: JSON.stringify({ channels: ['custom'], since: 0 }),
      signal,
    });
    if (res.status !== 200 || res.body === null) throw new Error(`thread stream answered ${res.status}`);
    let n = 0;
    for await (const frame of sseFrames(res.body)) {
      if (frame.event !== 'custom') continue;
      delivered();
      if (++n === total) break;
    }
    await res.body.cancel().catch(() => {});
  };
}

/** Raw Redis XADD throughput with the same payload size, pipelined (the ceiling of the event plane). */
async function rawXadd(seconds: number): Promise<number> {
  const redis = new Redis(REDIS_URL);
  const key = `bench:stream:${randomBytes(4).toString('hex')}`;
  const payload = JSON.stringify({ i: 0, t: Date.now(), pad: 'x'.repeat(64) });
  let n = 0;
  const end = Date.now() + seconds * 1000;
  try {
    while (Date.now() < end) {
      const pipeline = redis.pipeline();
      for (let i = 0; i < 500; i++) pipeline.xadd(key, 'MAXLEN', '~', '100000', '*', 'e', payload);
      await pipeline.exec();
      n += 500;
    }
  } finally {
    await redis.del(key);
    redis.disconnect();
  }
  return Math.round(n / seconds);
}

/** Phase 3: kill the gateway a client streams from, `kills` times; reconnect → caught up. */
async function reconnect(
  cluster: Cluster,
  kills: number,
): Promise<{ samples: number[]; lost: number; duplicated: number }> {
  const run = await create(cluster, { rate: 1000, seconds: kills * 8 + 10, bytes: 64 }, 0);
  const samples: number[] = [];
  let last = 0;
  let lost = 0;
  let duplicated = 0;
  let lastId: string | undefined;
  let servedBy: string | null = null;
  let reconnectStart: number | undefined;
  let done = false;
  let killsDone = 0;

  const reader = (async () => {
    while (!done) {
      let opened: Awaited<ReturnType<typeof open>>;
      try {
        opened = await open(cluster, run, { ...(lastId === undefined ? { gateway: 1 } : { after: lastId }) });
      } catch {
        await sleep(5);
        continue;
      }
      servedBy = opened.servedBy;
      try {
        for await (const frame of sseFrames(opened.body)) {
          if (frame.event !== 'custom') {
            if (frame.id !== undefined) lastId = frame.id;
            continue;
          }
          const data = JSON.parse(frame.data) as { i: number; t: number };
          if (data.i <= last && last > 0) duplicated++;
          else if (data.i > last + 1) lost += data.i - last - 1;
          last = Math.max(last, data.i);
          lastId = frame.id;
          if (reconnectStart !== undefined && data.t >= reconnectStart) {
            samples.push(Date.now() - reconnectStart);
            reconnectStart = undefined;
          }
        }
        done = true; // the run ended
      } catch {
        // The gateway died under us: reconnect at once (no backoff: this measures the server side).
        reconnectStart = Date.now();
      }
    }
  })();

  while (killsDone < kills && !done) {
    await sleep(2_000);
    const index = servedBy === 'g0' ? 0 : 1;
    await cluster.killGateway(index);
    killsDone++;
    await sleep(1_000);
    await cluster.restartGateway(index);
  }
  done = true;
  await Promise.race([reader, sleep(1_000)]);
  return { samples, lost, duplicated };
}

/** Phase 4: gateway RSS growth per idle, subscribed WebSocket. */
async function idleSockets(
  cluster: Cluster,
  count: number,
): Promise<{ bytes_per_socket: number; opened: number } | { skipped: string }> {
  const gateway = cluster.gateways[1];
  if (gateway === undefined) return { skipped: 'no gateway 1' };
  const rss = () => {
    const status = readFileSync(`/proc/${gateway.pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return Number(kb) * 1024;
  };
  const run = await create(cluster, { rate: 1, seconds: 0.1, bytes: 0 }, 0);
  const base = `ws://127.0.0.1:${gateway.port ?? 0}/threads/${run.thread_id}/stream`;
  const sockets: WebSocket[] = [];
  await sleep(500);
  const before = rss();
  let opened = 0;
  try {
    for (let batch = 0; batch < count; batch += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, count - batch) }, (_, k) => {
          return new Promise<void>((resolve, reject) => {
            const ws = new WebSocket(base, ['hangar.v1']);
            sockets.push(ws);
            ws.once('open', () => {
              ws.send(
                JSON.stringify({
                  id: batch + k + 1,
                  method: 'subscription.subscribe',
                  params: { channels: ['custom'] },
                }),
              );
              opened++;
              resolve();
            });
            ws.once('error', reject);
          });
        }),
      );
    }
    await sleep(2_000);
    const after = rss();
    return { bytes_per_socket: Math.round((after - before) / opened), opened };
  } catch (err) {
    return { skipped: `opened ${opened} sockets, then: ${String(err)}` };
  } finally {
    for (const ws of sockets) ws.terminate();
  }
}

const started = Date.now();
const cluster = await startCluster({
  gateways: 2,
  workers: 2,
  config: CONFIG,
  redis: { url: REDIS_URL, prefix: REDIS_PREFIX },
});
const results: Record<string, unknown> = {};
try {
  console.log('[stream] latency at 1k events/s');
  const at1k = await latency(cluster, 1_000);
  console.log('[stream] latency at 10k events/s');
  const at10k = await latency(cluster, 10_000);
  console.log('[stream] latency stages at 10k events/s');
  const stages10k = await stages(cluster, 10_000);
  console.log('[stream] raw XADD');
  const xadd = await rawXadd(3);
  console.log('[stream] fan-out through one gateway');
  const fan = await fanOut(cluster, 5, 2_000, 5, readRunStream(cluster));
  console.log('[stream] fan-out through one gateway, thread stream (shared feeds)');
  const fanThread = await fanOut(
    cluster,
    5,
    2_000,
    5,
    readThreadStream(cluster, Math.round(2_000 * SECONDS)),
  );
  console.log('[stream] reconnect after gateway kills');
  const rec = await reconnect(cluster, quick ? 3 : Number(flags.kills));
  console.log('[stream] idle WebSockets');
  const idle = await idleSockets(cluster, quick ? 1_000 : Number(flags.sockets));
  Object.assign(results, {
    latency_1k: at1k,
    latency_10k: at10k,
    stages_10k: stages10k,
    raw_xadd_per_s: xadd,
    fan_out: fan,
    fan_out_thread_stream: fanThread,
    reconnect: { catch_up: summarize(rec.samples), lost: rec.lost, duplicated: rec.duplicated },
    idle_websockets: idle,
  });
} finally {
  await cluster.stop({ graceMs: 0 });
}

const rec = results.reconnect as { catch_up: LatencySummary; lost: number; duplicated: number };
const idle = results.idle_websockets as { bytes_per_socket?: number };
const fan = results.fan_out as { delivered_per_s: number };
const st = results.stages_10k as Record<
  'emit_to_commit' | 'emit_to_publish' | 'emit_to_client',
  LatencySummary
>;
const at10k = results.latency_10k as LatencySummary;
const targets = [
  {
    name: 'emit → receive p99 at 10k events/s',
    goal: `≤ ${TARGETS.p99At10kMs} ms`,
    measured: `${at10k.p99} ms`,
    pass: at10k.p99 <= TARGETS.p99At10kMs,
  },
  {
    name: 'reconnect → caught up p99',
    goal: `≤ ${TARGETS.catchUpP99Ms} ms`,
    measured: `${rec.catch_up.p99} ms`,
    pass: rec.catch_up.p99 <= TARGETS.catchUpP99Ms,
  },
  {
    name: 'memory per idle WebSocket',
    goal: `≤ ${TARGETS.bytesPerIdleSocket / 1024} KB`,
    measured:
      idle.bytes_per_socket === undefined
        ? 'not measured'
        : `${(idle.bytes_per_socket / 1024).toFixed(1)} KB`,
    pass: idle.bytes_per_socket !== undefined && idle.bytes_per_socket <= TARGETS.bytesPerIdleSocket,
  },
  {
    name: 'events/s delivered by one gateway',
    goal: `≥ ${TARGETS.eventsPerGateway}`,
    measured: `${fan.delivered_per_s}`,
    pass: fan.delivered_per_s >= TARGETS.eventsPerGateway,
  },
];
const report = {
  benchmark: 'stream',
  command: `npm run bench:stream -- ${process.argv.slice(2).join(' ')}`.trim(),
  generated_at: new Date().toISOString(),
  duration_s: Math.round((Date.now() - started) / 1000),
  machine: {
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model,
    node: process.version,
    loadavg_1m_end: loadavg()[0],
  },
  ...results,
  targets,
};
const dir = fileURLToPath(new URL('../results/', import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}stream.json`, `${JSON.stringify(report, null, 2)}\n`);
const l = (s: LatencySummary) => `${s.p50} | ${s.p90} | ${s.p99} | ${s.max} | ${s.samples}`;
const md = [
  '# Streaming benchmark (local cluster, Redis event plane)',
  '',
  `${report.generated_at} · \`${report.command}\` · ${report.machine.cpus} × ${String(report.machine.cpu_model)} · Node ${process.version} · ${report.duration_s} s`,
  '',
  '| target | goal | measured | result |',
  '|---|---|---|---|',
  ...targets.map((t) => `| ${t.name} | ${t.goal} | ${t.measured} | ${t.pass ? 'met' : 'not met'} |`),
  '',
  '| measurement (ms) | p50 | p90 | p99 | max | n |',
  '|---|---|---|---|---|---|',
  `| emit → receive at 1k events/s | ${l(results.latency_1k as LatencySummary)} |`,
  `| emit → receive at 10k events/s | ${l(at10k)} |`,
  `| reconnect → caught up | ${l(rec.catch_up)} |`,
  `| stages at 10k events/s (second run): emit → commit start | ${l(st.emit_to_commit)} |`,
  `| … emit → Redis publish heard (bench subscriber) | ${l(st.emit_to_publish)} |`,
  `| … emit → SSE client receive | ${l(st.emit_to_client)} |`,
  '',
  `Fan-out (run stream): ${JSON.stringify(results.fan_out)}; fan-out (thread stream): ${JSON.stringify(results.fan_out_thread_stream)}; raw XADD (pipelined, same payload): ${String(results.raw_xadd_per_s)}/s. ` +
    `Reconnects: ${rec.lost} events lost, ${rec.duplicated} duplicated. Idle WebSockets: ${JSON.stringify(results.idle_websockets)}.`,
  '',
].join('\n');
writeFileSync(`${dir}stream.md`, md);
console.log(md);
