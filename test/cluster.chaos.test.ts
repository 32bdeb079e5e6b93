/**
 * The local cluster (bench/cluster): two `hangar gateway`s behind HAProxy and
 * two `hangar worker`s on a Postgres schema of this file's own. One cluster
 * serves the whole file (starting five processes costs seconds of CPU on a
 * two-core machine); a test that kills a process leaves it down and the
 * `afterEach` brings it back, so every test starts from a whole cluster.
 *
 * Side channel: the `slow-steps` fixture appends
 * `<run>:<step>:started|done|aborted:<pid>:<ms>` to a file per test, so the
 * tests see which process ran each step, how often, and whether it saw its abort.
 */
import { join } from 'node:path';
import { Client } from '@langchain/langgraph-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { type Cluster, PIN_HEADER, startCluster } from '../bench/cluster/cluster.ts';
import { type SseFrame, sseFrames } from '../packages/hangar/src/cli/run.ts';
import { openPostgres, type PostgresClient } from '../packages/hangar/src/store/postgres.ts';
import { api, Cleanup, FIXTURES, lines, ownerPid, poll, type RunView, waitForTerminal } from './helpers.ts';

const CLUSTER_CONFIG = join(FIXTURES, 'cluster.config.ts');
/** Shorter than the default 5 s so a crash test resumes in CI time (bench/control measures the default). */
const LEASE_MS = 2_000;

let cluster: Cluster | undefined;
let db: PostgresClient | undefined;
const cleanup = new Cleanup();

function live(): { cluster: Cluster; db: PostgresClient } {
  if (cluster === undefined || db === undefined) throw new Error('the cluster did not start');
  return { cluster, db };
}

/** One side-channel line of the slow-steps fixture. */
interface Mark {
  run: string;
  step: number;
  what: 'started' | 'done' | 'aborted';
  pid: number;
  at: number;
}

function marks(file: string): Mark[] {
  return lines(file).map((line) => {
    const [run, step, what, pid, at] = line.split(':');
    return {
      run: String(run),
      step: Number(step),
      what: what as Mark['what'],
      pid: Number(pid),
      at: Number(at),
    };
  });
}

/** POST /runs through the proxy (optionally pinned to a gateway); returns the run and who served it. */
async function create(
  input: unknown,
  agent = 'slow-steps',
  headers: Record<string, string> = {},
): Promise<{ run: RunView; servedBy: string | null }> {
  const { cluster: c } = live();
  // POST /runs (a thread is made for the run): one request per run, so round robin alternates creates.
  const res = await fetch(`${c.url}/runs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ assistant_id: agent, input }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`create answered ${res.status}: ${text}`);
  return { run: JSON.parse(text) as RunView, servedBy: res.headers.get(PIN_HEADER) };
}

async function leaseOwnerPid(runId: string): Promise<number> {
  const res = await live().db.query<{ lease_owner: string | null }>(
    'SELECT lease_owner FROM runs WHERE run_id = $1',
    [runId],
  );
  const owner = res.rows[0]?.lease_owner;
  if (owner == null) throw new Error(`run ${runId} has no lease owner`);
  return ownerPid(owner);
}

async function explain<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`${message}\n${cluster?.logs(15) ?? ''}`, { cause: err });
  }
}

describe('local cluster: gateways behind HAProxy, workers, one Postgres schema', () => {
  beforeAll(async () => {
    cluster = await startCluster({
      gateways: 2,
      workers: 2,
      config: CLUSTER_CONFIG,
      env: { HANGAR_LEASE_MS: String(LEASE_MS) },
    });
    db = await openPostgres({ connectionString: cluster.databaseUrl, schema: cluster.schema, max: 2 });
  }, 120_000);

  afterAll(async () => {
    await db?.close();
    // SIGKILL: nothing in this schema needs a graceful drain, and the schema is dropped next.
    await cluster?.stop({ graceMs: 0 });
  });

  // Bring back whatever a test killed (also when it failed half way).
  afterEach(async () => {
    await cleanup.run();
    const c = cluster;
    if (c === undefined) return;
    await Promise.all([
      ...c.gateways.filter((g) => !g.proc.isRunning()).map((g) => c.restartGateway(g.index)),
      ...c.workers.filter((w) => !w.proc.isRunning()).map((w) => c.restartWorker(w.index)),
    ]);
  }, 90_000);

  test('runs created through the proxy are executed by the worker processes', async () => {
    const { cluster: c } = live();
    const file = join(cleanup.tmpDir(), 'marks.log');
    const created = [];
    for (let i = 0; i < 6; i++) created.push(await create({ file, steps: 2, stepMs: 50 }));
    // Round robin: consecutive creates landed on both gateways.
    expect(new Set(created.map((c) => c.servedBy))).toEqual(new Set(['g0', 'g1']));

    for (const { run } of created) {
      const view = await explain(waitForTerminal(c.url, run, 30_000));
      expect(view.status, JSON.stringify(view.error)).toBe('success');
      expect(view.output).toEqual({ results: [0, 10] });
    }
    const workerPids = new Set(c.workers.map((w) => w.pid));
    const gatewayPids = c.gateways.map((g) => g.pid);
    const all = marks(file);
    expect(all).toHaveLength(created.length * 2 * 2); // 2 steps × (started + done) per run
    for (const mark of all) {
      expect(workerPids.has(mark.pid), `step ran in pid ${mark.pid}`).toBe(true);
      expect(gatewayPids).not.toContain(mark.pid);
    }
  });

  test('a SIGKILLed worker’s run completes on the other worker; no completed step runs twice', async () => {
    const { cluster: c, db: pool } = live();
    const file = join(cleanup.tmpDir(), 'marks.log');
    const STEPS = 3;
    const { run } = await create({ file, steps: STEPS, stepMs: 1_500 });

    // Step 0 is checkpointed and step 1 is in flight.
    await explain(
      poll('the run to be inside step 1', () =>
        marks(file).some((m) => m.run === run.run_id && m.step === 1 && m.what === 'started')
          ? true
          : undefined,
      ),
    );
    const victimPid = await leaseOwnerPid(run.run_id);
    const victim = c.workerByPid(victimPid);
    if (victim === undefined) throw new Error(`lease owner pid ${victimPid} is not a cluster worker`);
    await c.killWorker(victim.index);
    const completed = await pool.query<{ step_index: number }>(
      `SELECT step_index FROM steps WHERE run_id = $1 AND status = 'completed'`,
      [run.run_id],
    );
    const completedAtKill = new Set(completed.rows.map((r) => Number(r.step_index)));
    expect(completedAtKill.has(0)).toBe(true);
    // The step the kill interrupted (step 1, unless a slow machine let it finish first).
    const inFlight = [...Array(STEPS).keys()].find((i) => !completedAtKill.has(i));
    if (inFlight === undefined) throw new Error('the run finished before the kill');

    const view = await explain(waitForTerminal(c.url, run, 40_000));
    expect(view.status, JSON.stringify(view.error)).toBe('success');
    expect(view.output).toEqual({ results: [0, 10, 20] });

    const mine = marks(file).filter((m) => m.run === run.run_id);
    const survivorPids = new Set(mine.filter((m) => m.pid !== victimPid).map((m) => m.pid));
    expect(survivorPids.size).toBe(1);
    const [survivorPid] = [...survivorPids];
    expect(c.workers.map((w) => w.pid)).toContain(survivorPid);
    for (let step = 0; step < STEPS; step++) {
      const starts = mine.filter((m) => m.step === step && m.what === 'started');
      if (completedAtKill.has(step)) {
        // Checkpointed before the kill: never executed again.
        expect(
          starts.map((m) => m.pid),
          `step ${step}`,
        ).toEqual([victimPid]);
      } else if (step === inFlight) {
        // In flight at the kill (started on the victim, unless it died between two steps): re-run once by the survivor.
        const onVictim = step === 1 || starts.some((m) => m.pid === victimPid);
        expect(
          starts.map((m) => m.pid),
          `step ${step}`,
        ).toEqual(onVictim ? [victimPid, survivorPid] : [survivorPid]);
      } else {
        expect(
          starts.map((m) => m.pid),
          `step ${step}`,
        ).toEqual([survivorPid]);
      }
      expect(mine.filter((m) => m.step === step && m.what === 'done' && m.pid === survivorPid).length).toBe(
        completedAtKill.has(step) ? 0 : 1,
      );
    }
    const attempt = await pool.query<{ attempt: number }>('SELECT attempt FROM runs WHERE run_id = $1', [
      run.run_id,
    ]);
    expect(Number(attempt.rows[0]?.attempt)).toBe(2);
  });

  test('a cancel sent to another gateway aborts the step running on a worker process', async () => {
    const { cluster: c } = live();
    const file = join(cleanup.tmpDir(), 'marks.log');
    const { run, servedBy } = await create({ file, steps: 3, stepMs: 20_000 }, 'slow-steps', c.pinTo(0));
    expect(servedBy).toBe('g0');
    await explain(
      poll('step 0 to start on a worker', () =>
        marks(file).some((m) => m.run === run.run_id && m.what === 'started') ? true : undefined,
      ),
    );
    const workerPid = await leaseOwnerPid(run.run_id);

    const sent = Date.now();
    const res = await fetch(`${c.url}/threads/${run.thread_id}/runs/${run.run_id}/cancel?wait=1`, {
      method: 'POST',
      headers: c.pinTo(1),
    });
    await res.arrayBuffer();
    const elapsed = Date.now() - sent;
    expect(res.status).toBe(204);
    expect(res.headers.get(PIN_HEADER)).toBe('g1');
    // Far below the 20 s step: the worker was told, not left to finish.
    expect(elapsed).toBeLessThan(5_000);

    const view = await api<RunView>(c.url, 'GET', `/threads/${run.thread_id}/runs/${run.run_id}`);
    expect(view.body.status).toBe('cancelled');
    const mine = marks(file).filter((m) => m.run === run.run_id);
    expect(mine.map((m) => `${m.step}:${m.what}:${m.pid}`)).toEqual([
      `0:started:${workerPid}`,
      `0:aborted:${workerPid}`,
    ]);
  });

  test('a client streaming through the proxy survives a SIGKILL of its gateway: every event once, in order', async () => {
    const { cluster: c } = live();
    const COUNT = 40;
    // Created with stream_mode so the stream carries `Location` (the SDK only reconnects with one).
    const pinned = new Client({ apiUrl: c.url, defaultHeaders: c.pinTo(0) });
    const thread = await pinned.threads.create();
    const run = await pinned.runs.create(thread.thread_id, 'chatty', {
      input: { count: COUNT, gapMs: 100 },
      streamMode: ['custom'],
    });

    // Two clients follow the run through the proxy, both pinned to gateway 0 until it dies: the
    // reference SDK (it reconnects by itself with Last-Event-ID) and a plain fetch client that
    // reconnects by hand, so the server's resume is checked without the SDK in between.
    const sdkEvents: Array<{ id: string | undefined; data: unknown }> = [];
    const sdkStop = new AbortController();
    const sdkDone = (async () => {
      for await (const part of pinned.runs.joinStream(thread.thread_id, run.run_id, {
        streamMode: ['custom'],
        signal: sdkStop.signal,
      })) {
        if (part.event === 'custom') sdkEvents.push({ id: part.id, data: part.data });
      }
    })();
    const raw = followByHand(c.url, thread.thread_id, run.run_id, c.pinTo(0));
    const settled = Promise.allSettled([sdkDone, raw.done]);

    try {
      await explain(
        poll('both clients to have events from gateway 0', () =>
          sdkEvents.length >= 5 && raw.custom().length >= 5 ? true : undefined,
        ),
      );
      expect(raw.servedBy[0]).toBe('g0');
      await c.killGateway(0);
    } finally {
      // Never leave the readers running (a failure above would otherwise hang the file).
      const timer = setTimeout(() => {
        raw.abort();
        sdkStop.abort();
      }, 30_000);
      await settled;
      clearTimeout(timer);
    }
    const [sdkResult, rawResult] = await settled;
    if (sdkResult.status === 'rejected') throw sdkResult.reason;
    if (rawResult.status === 'rejected') throw rawResult.reason;

    const expected = Array.from({ length: COUNT }, (_, i) => ({ i }));
    // The fetch client: reconnected through the proxy to the other gateway, resumed after its last id.
    expect(raw.servedBy.length).toBeGreaterThanOrEqual(2);
    expect(raw.servedBy.slice(1).every((s) => s === 'g1')).toBe(true);
    expect(raw.custom().map((f) => JSON.parse(f.data))).toEqual(expected);
    const ids = raw.frames.filter((f) => f.id !== undefined).map((f) => Number(f.id));
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1] ?? 0);
    // The SDK client: same events, same order, none twice.
    expect(sdkEvents.map((e) => e.data)).toEqual(expected);
    const sdkIds = sdkEvents.map((e) => Number(e.id));
    for (let i = 1; i < sdkIds.length; i++) expect(sdkIds[i]).toBeGreaterThan(sdkIds[i - 1] ?? 0);
    const final = await waitForTerminal(c.url, run, 20_000);
    expect(final.status).toBe('success');
  });
});

/**
 * Reads a run's SSE stream through the proxy; when the connection drops before
 * the stream's end, reconnects (up to 5 times) with `Last-Event-ID` set to the
 * last id received, as a browser's EventSource would.
 */
function followByHand(base: string, threadId: string, runId: string, headers: Record<string, string>) {
  const frames: SseFrame[] = [];
  const servedBy: string[] = [];
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
        servedBy.push(res.headers.get(PIN_HEADER) ?? '?');
        for await (const frame of sseFrames(res.body)) {
          frames.push(frame);
          if (frame.id !== undefined) lastId = frame.id;
        }
        // The server ended the stream: done if the run is over (a proxy may close cleanly when a gateway dies).
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
    servedBy,
    done,
    custom: () => frames.filter((f) => f.event === 'custom'),
    abort: () => controller.abort(),
  };
}
