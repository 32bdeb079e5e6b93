/**
 * The control-plane benchmark (`npm run bench:control`): on the local cluster
 * (2 gateways behind HAProxy, 3 workers, a Postgres schema of its own that is
 * dropped at the end), with the default worker settings (lease 5 s, heartbeat
 * 1 s, sweep 1 s, claim poll 1 s):
 *   1. crash → resume: SIGKILL the worker executing a run → the step starting
 *      again in another worker process (≥ 20 kills);
 *   2. cancel → cancelled across processes (≥ 50 cancels),
 * then writes bench/results/control.{json,md} and prints the tables.
 *
 * Flags: --quick (5 kills, 10 cancels: a smoke run), --kills N, --cancels N.
 * DATABASE_URL overrides the Postgres (default 127.0.0.1:5432, user postgres).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openPostgres } from '../../packages/hangar/src/store/postgres.ts';
import { WORKER_DEFAULTS } from '../../packages/hangar/src/worker/worker.ts';
import { type Cluster, startCluster } from '../cluster/cluster.ts';
import type { Target } from '../engine/report.ts';
import { round, summarize } from '../engine/stats.ts';
import { type CrashSample, measureCancel, measureCrashResume } from './measure.ts';
import { type ControlReport, type CrashSeries, writeReport } from './report.ts';

const TARGETS = { crashResumeP99Ms: 5_000, cancelP99Ms: 1_000 };
const CONFIG = fileURLToPath(new URL('./hangar.config.ts', import.meta.url));

/** The lease of the comparison series. */
const SHORT_LEASE_MS = 2_000;

function crashSeries(samples: CrashSample[], leaseMs: number): CrashSeries {
  return {
    what:
      'One run at a time. Time from the SIGKILL (bench clock, just before kill(2)) to the interrupted step’s ' +
      '`started` mark written by another worker process (its clock: same machine).',
    lease_ms: leaseMs,
    kill_to_resume: summarize(samples.map((s) => s.kill_to_resume_ms)),
    lease_left_at_kill: summarize(samples.map((s) => s.lease_left_at_kill_ms)),
    expiry_to_resume: summarize(samples.map((s) => s.expiry_to_resume_ms)),
    statuses: countBy(samples, (s) => s.final_status),
    loadavg_1m: range(samples.map((s) => s.loadavg_1m)),
    samples,
  };
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

function range(values: number[]): { min: number; max: number } {
  return { min: Math.min(...values), max: Math.max(...values) };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      kills: { type: 'string' },
      cancels: { type: 'string' },
    },
  });
  const quick = values.quick === true;
  const kills = Number(values.kills ?? (quick ? 5 : 20));
  const cancels = Number(values.cancels ?? (quick ? 10 : 50));
  if (!Number.isInteger(kills) || kills < 1 || !Number.isInteger(cancels) || cancels < 1) {
    throw new Error('--kills and --cancels take integers ≥ 1');
  }
  const started = Date.now();
  const log = (msg: string) =>
    console.error(`[bench:control ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
  const work = mkdtempSync(join(tmpdir(), 'hangar-bench-control-'));
  const loadAtStart = loadavg().map((v) => round(v, 2));

  log('starting the cluster: 2 gateways behind HAProxy, 3 workers, default settings');
  // No HANGAR_LEASE_MS: the defaults are what is measured.
  const env = { ...process.env };
  delete env.HANGAR_LEASE_MS;
  // Ctrl-C / SIGTERM stops every cluster started so far (also one still starting) and drops its schema.
  const clusters: Cluster[] = [];
  let interrupted = false;
  const stopAll = () => Promise.allSettled(clusters.map((c) => c.stop({ graceMs: 0 })));
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log('interrupted; stopping the cluster');
    void stopAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const start = async (options: Parameters<typeof startCluster>[0]) => {
    const started = await startCluster(options);
    clusters.push(started);
    if (interrupted) {
      await stopAll();
      process.exit(130);
    }
    return started;
  };
  const cluster = await start({ gateways: 2, workers: 3, config: CONFIG, env, logLevel: 'info' });
  const db = await openPostgres({ connectionString: cluster.databaseUrl, schema: cluster.schema, max: 2 });
  try {
    const pg = await db.query<{ version: string }>('SELECT version()');
    const haproxy = spawnSync('haproxy', ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? 'haproxy';
    const machine = {
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model ?? 'unknown',
      memory_gb: round(totalmem() / 2 ** 30, 1),
      os: `${process.platform} ${release()}`,
      node: process.version,
      postgres: pg.rows[0]?.version.split(' on ')[0] ?? 'unknown',
      haproxy: haproxy.replace(/ - https.*$/, ''),
      loadavg_at_start: loadAtStart,
      topology:
        'one machine: 2 × hangar gateway, 3 × hangar worker, HAProxy, Postgres and the bench share its cores',
    };

    log(`1. crash → resume, ${kills} SIGKILLs`);
    const crash = await measureCrashResume(cluster, db, {
      kills,
      file: join(work, 'crash.log'),
      stepMs: 2_000,
      killWindowMs: WORKER_DEFAULTS.heartbeatMs,
      log,
    });
    log(`2. cancel → cancelled across gateways and workers, ${cancels} cancels`);
    const cancel = await measureCancel(cluster, { cancels, file: join(work, 'cancel.log'), log });

    // The same crash with a shorter lease (a second, small cluster): resume follows the lease.
    const shortKills = quick ? 3 : 10;
    log(`3. for comparison: crash → resume with HANGAR_LEASE_MS=${SHORT_LEASE_MS}, ${shortKills} SIGKILLs`);
    const short = await start({
      gateways: 1,
      workers: 3,
      config: CONFIG,
      env: { ...env, HANGAR_LEASE_MS: String(SHORT_LEASE_MS) },
    });
    let crashShort: CrashSample[];
    try {
      const shortDb = await openPostgres({
        connectionString: short.databaseUrl,
        schema: short.schema,
        max: 2,
      });
      try {
        crashShort = await measureCrashResume(short, shortDb, {
          kills: shortKills,
          file: join(work, 'crash-short.log'),
          stepMs: 2_000,
          killWindowMs: WORKER_DEFAULTS.heartbeatMs,
          log,
        });
      } finally {
        await shortDb.close();
      }
    } finally {
      await short.stop({ graceMs: 0 });
    }

    const resume = summarize(crash.map((s) => s.kill_to_resume_ms));
    const cancelled = summarize(cancel.map((s) => s.request_to_cancelled_ms));
    const crashOk = crash.every((s) => s.final_status === 'success');
    const cancelOk = cancel.every((s) => s.status === 'cancelled');
    const targets: Target[] = [
      {
        name: `crash → resume p99 (${crash.length} SIGKILLs, default lease ${WORKER_DEFAULTS.leaseMs} ms)`,
        target: `≤ ${TARGETS.crashResumeP99Ms} ms`,
        measured: resume.p99,
        unit: 'ms',
        pass: resume.p99 <= TARGETS.crashResumeP99Ms && crashOk,
      },
      {
        name: `cancel request → cancelled p99 (${cancel.length} cancels, another gateway than the create's)`,
        target: `≤ ${TARGETS.cancelP99Ms} ms`,
        measured: cancelled.p99,
        unit: 'ms',
        pass: cancelled.p99 <= TARGETS.cancelP99Ms && cancelOk,
      },
    ];
    const report: ControlReport = {
      benchmark: 'control',
      command: `npm run bench:control${quick ? ' -- --quick' : ''}`,
      generated_at: new Date().toISOString(),
      duration_s: round((Date.now() - started) / 1000, 1),
      machine,
      settings: {
        worker: `WORKER_DEFAULTS: lease ${WORKER_DEFAULTS.leaseMs} ms, heartbeat ${WORKER_DEFAULTS.heartbeatMs} ms, sweep ${WORKER_DEFAULTS.sweepMs} ms, claim poll ${WORKER_DEFAULTS.pollMs} ms, concurrency ${WORKER_DEFAULTS.concurrency}`,
        bus: 'PostgresBus (LISTEN/NOTIFY) between processes; no Redis',
        proxy: 'HAProxy round robin (bench/cluster/haproxy.ts)',
        crash_run: `2 steps of 2000 ms; SIGKILL a random 0–${WORKER_DEFAULTS.heartbeatMs} ms into step 1 (any phase of the heartbeat); the victim is restarted at once`,
        cancel_run: '1 step of 30 s; created through gateway 0, cancelled with ?wait=1 through gateway 1',
        logging: 'LOG_LEVEL=info, to files',
      },
      crash_resume: crashSeries(crash, WORKER_DEFAULTS.leaseMs),
      crash_resume_short_lease: crashSeries(crashShort, SHORT_LEASE_MS),
      cancel: {
        what:
          'One run at a time, its step running on a worker. `request → 204`: the cancel with `?wait=1` answers ' +
          'once the run is terminal; `request → abort`: the step’s `signal` fired in the worker process.',
        request_to_cancelled: cancelled,
        request_to_abort: summarize(cancel.map((s) => s.request_to_abort_ms)),
        statuses: countBy(cancel, (s) => s.status),
        loadavg_1m: range(cancel.map((s) => s.loadavg_1m)),
        samples: cancel,
      },
      targets,
      notes: [
        'What bounds crash → resume: a worker holds a Postgres session lock for as long as it lives and stamps its ' +
          'key on the runs it claims (worker/liveness.ts). A SIGKILL closes its sockets, Postgres ends the session and ' +
          `drops the lock, and the next sweep (every ${WORKER_DEFAULTS.sweepMs} ms in every worker) re-queues the run; a ` +
          'worker claims it and replays the completed steps. So resume ≈ session end + up to one sweep interval + ' +
          `claim/replay, independent of the lease (${WORKER_DEFAULTS.leaseMs} ms by default, renewed every ` +
          `${WORKER_DEFAULTS.heartbeatMs} ms): the "lease left" row shows how much of it was still to run, and the ` +
          `HANGAR_LEASE_MS=${SHORT_LEASE_MS} series is the same. The lease remains the backstop for a machine that ` +
          'vanishes without closing its connections (not measured here: resume ≈ lease left + one sweep).',
        'Cancel: the gateway that receives it marks the run (Postgres) and publishes a hint on the bus ' +
          '(LISTEN/NOTIFY); the worker holding the run aborts the step’s signal, checkpoints `cancelled`, and the ' +
          'gateway’s `?wait=1` answers when it sees the terminal event.',
        'The machine is shared (other sessions run test suites on the same cores and Postgres): each sample records ' +
          'the 1-minute load average; a high load shows up in the tail, not in the design.',
      ],
    };
    const { json, md, markdown } = writeReport(report);
    console.log(markdown);
    log(`wrote ${json} and ${md}`);
    return 0;
  } finally {
    await db.close().catch(() => {});
    await cluster.stop({ graceMs: 0 });
    rmSync(work, { recursive: true, force: true });
    log(`stopped the cluster and dropped schema ${cluster.schema}`);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
