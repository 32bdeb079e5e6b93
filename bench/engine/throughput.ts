/** Phase 3: draining a queue of 3-step runs, with in-process Workers, `hangar worker` processes, or the prototype. */
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import pino from 'pino';
import { MemoryBus } from '../../packages/hangar/src/bus/memory.ts';
import type { SqlClient } from '../../packages/hangar/src/store/sql.ts';
import { type HangarProcess, spawnHangar } from '../../packages/hangar/src/testing/processes.ts';
import { WORKER_DEFAULTS, Worker } from '../../packages/hangar/src/worker/worker.ts';
import { stepTimings, threeStep } from './agents.ts';
import { OwnCpu } from './cpu.ts';
import {
  type BenchDatabase,
  checkIntegrity,
  createHeldRuns,
  drainTimes,
  type Integrity,
  releaseRuns,
  resetRuns,
  waitForTerminal,
} from './db.ts';
import { CountingBus, CountingSqlClient, type RoundTripProfile, roundTripProfile } from './profile.ts';
import { leanDrain } from './prototype.ts';
import { type LatencySummary, round, summarize } from './stats.ts';

const CONFIG = fileURLToPath(new URL('./hangar.config.ts', import.meta.url));

export type Mode = 'in-process' | 'processes' | 'prototype';

export interface DrainOptions {
  mode: Mode;
  workers: number;
  concurrency: number;
  /** Pool size per worker (in-process and prototype only: `hangar worker` uses its default of 10). */
  poolMax: number;
  runs: number;
  timeoutMs: number;
  /** In-process only: count and time every statement (slower; kept out of the headline numbers). */
  profile?: boolean;
  /** Prototype only: named (prepared) statements; claims one at a time per worker like the engine. */
  prepared?: boolean;
  serialClaims?: boolean;
  /** Processes only: LOG_LEVEL of the workers (default info, as deployed). */
  logLevel?: string;
  repetition?: number;
}

export interface DrainResult {
  label: string;
  /** Which repetition of this configuration (targets are judged on the mean of all). */
  repetition: number;
  /** 1-minute load average when the drain began: the machine is shared, so this flags noisy rows. */
  loadavg_1m_at_start: number;
  mode: Mode;
  workers: number;
  concurrency_per_worker: number;
  pool_max_per_worker: number | 'default (10)';
  runs: number;
  statuses: Record<string, number>;
  drain_ms: number;
  runs_per_second: number;
  steps_per_second: number;
  /** Enqueue (release of the held queue) → finished_at: mostly time spent waiting in the queue. */
  enqueue_to_finish: LatencySummary;
  /** created_at → finished_at, as asked; includes the seconds the bench held the runs back before release. */
  created_to_finish: LatencySummary;
  /** started_at → finished_at: one run's execution once claimed. */
  execution: LatencySummary;
  /** ctx.step call → resolve while the queue drains (in-process only). */
  step_under_load?: LatencySummary;
  /** CPU of the bench's Node process (in-process workers run in it), ms per run. */
  node_cpu_ms_per_run?: number;
  /** Whole machine CPU busy during the drain (Postgres + workers + bench), percent of all cores. */
  machine_cpu_busy_percent: number;
  /** Whole machine CPU time per run (all processes, Postgres included; other tenants too), ms. */
  machine_cpu_ms_per_run: number;
  /**
   * CPU time per run spent for this drain only: its worker processes (or the
   * bench process) and the Postgres backends serving their connections, ms.
   */
  own_cpu_ms_per_run: { workers: number; postgres: number; total: number };
  /** cores × 1000 / own CPU ms per run: the rate CPU alone would allow on this machine, were it idle. */
  cpu_bound_ceiling_runs_per_second: number;
  profile?: RoundTripProfile;
  /** What the runs left behind (3 steps each, gap-free logs, threads freed). */
  integrity: Integrity;
}

function machineCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

export function drainLabel(o: DrainOptions): string {
  const kind = {
    'in-process': o.workers > 1 ? 'in-process Workers' : 'in-process Worker',
    processes: o.workers > 1 ? '`hangar worker` processes' : '`hangar worker` process',
    prototype: `prototype fused-SQL worker${o.workers > 1 ? 's' : ''}`,
  }[o.mode];
  const extras = [`concurrency ${o.concurrency}`];
  if (o.mode !== 'processes') extras.push(`pool ${o.poolMax}`);
  if (o.mode === 'processes' && o.logLevel !== undefined) extras.push(`LOG_LEVEL=${o.logLevel}`);
  if (o.mode === 'prototype') {
    extras.push(o.prepared === true ? 'prepared statements' : 'unnamed statements');
    if (o.serialClaims === true) extras.push('one claim at a time');
  }
  return `${o.workers} × ${kind} (${extras.join(', ')})${o.profile === true ? ' [instrumented]' : ''}`;
}

/** Creates `runs` held runs, starts the workers, releases the queue and times the drain. */
export async function drain(bench: BenchDatabase, o: DrainOptions): Promise<DrainResult> {
  const load1 = round(loadavg()[0] ?? NaN, 2);
  await resetRuns(bench.db);
  await createHeldRuns(bench.db, o.runs, threeStep.name, {});
  const stops: Array<() => Promise<void>> = [];
  const childPids: number[] = [];
  const ownCpu = new OwnCpu(bench.db, () => [process.pid, ...childPids]);
  let counting: { db: CountingSqlClient; bus: CountingBus } | undefined;
  try {
    let wake: () => Promise<void>;
    let pools: pg.Pool[] = [];
    if (o.mode === 'in-process') {
      const workers: Worker[] = [];
      for (let w = 0; w < o.workers; w++) {
        const pool = await bench.open(o.poolMax);
        stops.push(() => pool.close());
        let db: SqlClient = pool;
        let bus = new MemoryBus() as MemoryBus | CountingBus;
        if (o.profile === true) {
          counting = { db: new CountingSqlClient(db), bus: new CountingBus(bus) };
          db = counting.db;
          bus = counting.bus;
        }
        const worker = new Worker({
          ...WORKER_DEFAULTS,
          concurrency: o.concurrency,
          db,
          bus,
          agents: new Map([[threeStep.name, threeStep]]),
          logger: pino({ level: 'info' }, pino.destination('/dev/null')),
          llm: {},
        });
        worker.start();
        workers.push(worker);
        // Workers stop before their pools close (stops run in reverse order).
        stops.push(() => worker.stop(5_000));
      }
      wake = async () => {
        for (const w of workers) w.wake();
      };
    } else if (o.mode === 'processes') {
      const procs = await spawnWorkers(bench, o.workers, o.concurrency, o.logLevel ?? 'info');
      stops.push(() => stopProcesses(procs));
      for (const p of procs) if (p.child.pid !== undefined) childPids.push(p.child.pid);
      // The workers LISTEN on this channel (PostgresBus); the poll would find the runs within 1 s anyway.
      wake = async () => {
        await bench.db.query('SELECT pg_notify($1, $2)', [`hangar_${bench.schema}_work`, '']);
      };
    } else {
      pools = Array.from(
        { length: o.workers },
        () =>
          new pg.Pool({
            connectionString: bench.url,
            max: o.poolMax,
            application_name: 'hangar-bench-prototype',
            options: `-c search_path=${bench.schema}`,
          }),
      );
      const opened = pools;
      stops.push(async () => {
        await Promise.allSettled(opened.map((p) => p.end()));
      });
      wake = async () => {};
    }
    // Let the workers' first (empty) claim and the processes' LISTEN settle before the clock starts.
    await new Promise((r) => setTimeout(r, 200));
    counting?.db.reset();
    stepTimings.samples = [];
    stepTimings.enabled = o.mode === 'in-process';
    const cpu0 = machineCpu();
    const node0 = process.cpuUsage();
    const own0 = await ownCpu.sample();
    const releasedAt = await releaseRuns(bench.db);
    await wake();
    if (o.mode === 'prototype') {
      const deadline = Date.now() + o.timeoutMs;
      await Promise.all(
        pools.map((pool, w) =>
          leanDrain(pool, {
            agent: threeStep.name,
            concurrency: o.concurrency,
            leaseMs: 5_000,
            owner: `lean-${w}`,
            deadline,
            prepared: o.prepared === true,
            serialClaims: o.serialClaims === true,
          }),
        ),
      );
    }
    await waitForTerminal(bench.db, o.runs, o.timeoutMs);
    const own = OwnCpu.diff(own0, await ownCpu.sample());
    const node = process.cpuUsage(node0);
    const cpu1 = machineCpu();
    const ownTotal = (own.workersMs + own.postgresMs) / o.runs;
    stepTimings.enabled = false;
    const times = await drainTimes(bench.db, releasedAt);
    const result: DrainResult = {
      label: drainLabel(o),
      repetition: o.repetition ?? 1,
      loadavg_1m_at_start: load1,
      mode: o.mode,
      workers: o.workers,
      concurrency_per_worker: o.concurrency,
      pool_max_per_worker: o.mode === 'processes' ? 'default (10)' : o.poolMax,
      runs: o.runs,
      statuses: times.statuses,
      drain_ms: round(times.drainMs, 1),
      runs_per_second: round((o.runs / times.drainMs) * 1000, 1),
      steps_per_second: round(((3 * o.runs) / times.drainMs) * 1000, 1),
      enqueue_to_finish: summarize(times.enqueueToFinishMs),
      created_to_finish: summarize(times.createdToFinishMs),
      execution: summarize(times.executionMs),
      machine_cpu_busy_percent: round(
        (100 * (cpu1.busy - cpu0.busy)) / Math.max(1, cpu1.total - cpu0.total),
        1,
      ),
      // /proc/stat counts USER_HZ ticks (100 per second on Linux).
      machine_cpu_ms_per_run: round(((cpu1.busy - cpu0.busy) * 10) / o.runs, 2),
      own_cpu_ms_per_run: {
        workers: round(own.workersMs / o.runs, 2),
        postgres: round(own.postgresMs / o.runs, 2),
        total: round(ownTotal, 2),
      },
      cpu_bound_ceiling_runs_per_second: round((cpus().length * 1000) / ownTotal, 0),
      integrity: await checkIntegrity(bench.db),
    };
    if (o.mode === 'in-process') {
      result.step_under_load = summarize(stepTimings.samples);
      result.node_cpu_ms_per_run = round((node.user + node.system) / 1000 / o.runs);
    }
    if (counting !== undefined) result.profile = roundTripProfile(counting.db, counting.bus, o.runs);
    return result;
  } finally {
    stepTimings.enabled = false;
    for (const stop of stops.reverse()) await stop().catch(() => {});
  }
}

async function spawnWorkers(
  bench: BenchDatabase,
  count: number,
  concurrency: number,
  logLevel: string,
): Promise<HangarProcess[]> {
  const procs: HangarProcess[] = [];
  try {
    for (let i = 0; i < count; i++) {
      procs.push(
        spawnHangar(['worker', '--config', CONFIG, '--concurrency', String(concurrency)], {
          env: { DATABASE_URL: bench.url, HANGAR_SCHEMA: bench.schema, LOG_LEVEL: logLevel },
        }),
      );
    }
    // Below info the worker prints nothing on start: wait for its LISTEN connection instead.
    if (logLevel === 'info') await Promise.all(procs.map((p) => p.waitFor(/worker started/, 30_000)));
    else await waitForListeners(bench, count, 30_000);
    return procs;
  } catch (err) {
    await stopProcesses(procs);
    throw err;
  }
}

/** Waits until `count` bus listeners (one per worker process) are connected to the bench schema's work channel. */
async function waitForListeners(bench: BenchDatabase, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // A listener's last statement is one of its LISTENs (events, work, cancel: whichever came last).
    const res = await bench.db.query<{ n: number }>(
      'SELECT count(DISTINCT pid)::int AS n FROM pg_stat_activity WHERE query LIKE $1',
      [`LISTEN hangar\\_${bench.schema.replaceAll('_', '\\_')}\\_%`],
    );
    if ((res.rows[0]?.n ?? 0) >= count) {
      // The listener connects before the worker starts claiming; give startHangar a moment more.
      await new Promise((r) => setTimeout(r, 1_000));
      return;
    }
    if (Date.now() > deadline) throw new Error(`worker processes did not start within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGTERM, then SIGKILL whatever has not exited within 5 s. */
export async function stopProcesses(procs: readonly HangarProcess[]): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      let timer: NodeJS.Timeout | undefined;
      const killed = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          p.child.kill('SIGKILL');
          resolve();
        }, 5_000);
      });
      await Promise.race([p.kill('SIGTERM'), killed]);
      clearTimeout(timer);
    }),
  );
}
