/**
 * Worker-kill chaos on the local cluster (failure-handling issue): many runs
 * of a multi-step agent with simulated LLM latency and an idempotent tool
 * call per step, while workers are SIGKILLed at random and restarted. What it
 * checks, from evidence outside the engine:
 *
 * - every run ends `success` with the right output;
 * - no completed step is executed again: a step's `updates` event is written
 *   by its checkpoint commit and carries the run attempt that committed it,
 *   so a `started` mark (written by the step itself into a side file) from a
 *   later attempt means a completed step ran twice;
 * - no tool side effect is duplicated or lost: the tool applies each
 *   `Idempotency-Key` once, so a key that changed between attempts would show
 *   as more effects than steps, and a lost step as fewer.
 *
 * `test/chaos.workers.test.ts` runs a short variant in CI; `npm run
 * bench:chaos` runs the long one and writes bench/results/chaos.{json,md}.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openPostgres } from '../../packages/hangar/src/store/postgres.ts';
import { type Cluster, startCluster } from '../cluster/cluster.ts';

export const CHAOS_CONFIG = fileURLToPath(new URL('../../test/fixtures/chaos.config.ts', import.meta.url));

export interface ChaosOptions {
  runs: number;
  gateways?: number;
  workers?: number;
  /** Steps per run and the simulated LLM latency of each (± 50 %). */
  steps?: number;
  llmMs?: number;
  /** A random worker is SIGKILLed every `killEveryMs[0]`–`killEveryMs[1]` ms, then restarted. */
  killEveryMs?: [number, number];
  /** Give up waiting for the runs after this long. */
  deadlineMs?: number;
  /** HANGAR_LEASE_MS of the workers (default: the product default). */
  leaseMs?: number;
  /** Runs one worker executes at once. */
  concurrency?: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  runs: number;
  steps_per_run: number;
  workers: number;
  kills: number;
  duration_ms: number;
  statuses: Record<string, number>;
  /** Runs whose output was not `{ results: [1..steps] }`. */
  wrong_outputs: string[];
  /** `<run>:<step>` executed by an attempt after the one that committed it. */
  completed_steps_rerun: string[];
  /** Step executions that started but were cut off (by a kill) and ran again: expected, not a fault. */
  interrupted_executions: number;
  tool_requests: number;
  tool_effects: number;
  /**
   * Effects under a key that is not `<run>:<step>`: a step whose idempotency
   * key changed between attempts (the tool could not dedupe it) shows here.
   */
  unexpected_effects: string[];
  /** `<run>:<step>` of a successful run with no effect recorded. */
  missing_effects: string[];
  run_attempts: { max: number; mean: number };
}

/** The idempotent tool: applies each Idempotency-Key once (`applied` counts the requests per key). */
function startTool(): Promise<{
  server: Server;
  url: string;
  applied: Map<string, number>;
  requests: () => number;
}> {
  const applied = new Map<string, number>();
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    const key = req.headers['idempotency-key'];
    req.resume();
    req.on('end', () => {
      if (typeof key !== 'string' || key === '') {
        res.writeHead(400).end('idempotency-key required');
        return;
      }
      applied.set(key, (applied.get(key) ?? 0) + 1);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      resolve({ server, url: `http://127.0.0.1:${port}/tool`, applied, requests: () => requests });
    });
  });
}

const TERMINAL = new Set(['success', 'error', 'cancelled', 'timeout', 'dead']);

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? (() => {});
  const steps = options.steps ?? 3;
  const workerCount = options.workers ?? 3;
  const [killMin, killMax] = options.killEveryMs ?? [1_500, 3_000];
  const dir = mkdtempSync(join(tmpdir(), 'hangar-chaos-'));
  const file = join(dir, 'marks.log');
  const tool = await startTool();
  let cluster: Cluster | undefined;
  let stopKilling = false;
  let kills = 0;
  try {
    cluster = await startCluster({
      gateways: options.gateways ?? 2,
      workers: workerCount,
      config: CHAOS_CONFIG,
      env: {
        // Workers here die for reasons unrelated to the runs (the killer), as on preemptible nodes: a run
        // that happens to be hit five times must not be dead-lettered by the crash-loop cap.
        HANGAR_MAX_RUN_ATTEMPTS: '50',
        ...(options.leaseMs === undefined ? {} : { HANGAR_LEASE_MS: String(options.leaseMs) }),
        ...(options.concurrency === undefined
          ? {}
          : { HANGAR_WORKER_CONCURRENCY: String(options.concurrency) }),
      },
    });
    const c = cluster;
    const db = await openPostgres({ connectionString: c.databaseUrl, schema: c.schema, max: 2 });
    try {
      const started = Date.now();
      const runs: Array<{ run_id: string; thread_id: string }> = [];
      const create = async () => {
        const res = await fetch(`${c.url}/runs`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            assistant_id: 'chaos-steps',
            input: { file, toolUrl: tool.url, steps, llmMs: options.llmMs ?? 200 },
          }),
        });
        const text = await res.text();
        if (res.status !== 200) throw new Error(`create answered ${res.status}: ${text}`);
        runs.push(JSON.parse(text) as { run_id: string; thread_id: string });
      };
      // Eight creates in flight: a burst, as a client fleet would send it.
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < options.runs) {
            next++;
            await create();
          }
        }),
      );
      log(`created ${runs.length} runs in ${Date.now() - started} ms`);

      // The killer: a random started worker, SIGKILL, restart (another may be down meanwhile: that's the
      // point). A worker still starting is left alone, and a restart that fails is tried again.
      const restarting = new Set<number>();
      const restart = async (index: number): Promise<void> => {
        restarting.add(index);
        try {
          for (let tries = 1; ; tries++) {
            try {
              await c.restartWorker(index);
              return;
            } catch (err) {
              log(`restart of worker ${index} failed (try ${tries}): ${String(err).split('\n')[0]}`);
              if (tries >= 5) throw err;
            }
          }
        } finally {
          restarting.delete(index);
        }
      };
      const restarts: Array<Promise<void>> = [];
      const killer = (async () => {
        while (!stopKilling) {
          await new Promise((r) => setTimeout(r, killMin + Math.random() * (killMax - killMin)));
          if (stopKilling) break;
          const alive = c.workers.filter((w) => w.proc.isRunning() && !restarting.has(w.index));
          const victim = alive[Math.floor(Math.random() * alive.length)];
          if (victim === undefined) continue;
          await c.killWorker(victim.index);
          kills++;
          log(`killed worker ${victim.index} (pid ${victim.pid}); ${kills} kills`);
          restarts.push(restart(victim.index));
        }
      })();

      const deadline = started + (options.deadlineMs ?? 120_000);
      const ids = runs.map((r) => r.run_id);
      let statuses = new Map<string, string>();
      for (;;) {
        const res = await db.query<{ run_id: string; status: string }>(
          `SELECT run_id, status FROM runs WHERE run_id IN (SELECT jsonb_array_elements_text($1::jsonb)::uuid)`,
          [JSON.stringify(ids)],
        );
        statuses = new Map(res.rows.map((r) => [r.run_id, r.status]));
        const open = ids.filter((id) => !TERMINAL.has(statuses.get(id) ?? ''));
        if (open.length === 0 || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      stopKilling = true;
      await killer;
      await Promise.allSettled(restarts);
      const duration = Date.now() - started;

      // Evidence: outputs and attempts from the runs, commit attempts from the step events, marks from the file.
      const rows = await db.query<{ run_id: string; status: string; output: unknown; attempt: number }>(
        `SELECT run_id, status, output, attempt FROM runs WHERE run_id IN (SELECT jsonb_array_elements_text($1::jsonb)::uuid)`,
        [JSON.stringify(ids)],
      );
      const expected = JSON.stringify({ results: Array.from({ length: steps }, (_, i) => i + 1) });
      const committedBy = new Map<string, number>();
      const events = await db.query<{ run_id: string; attempt: number; data: Record<string, unknown> }>(
        `SELECT run_id, attempt, data FROM events WHERE channel = 'updates'
           AND run_id IN (SELECT jsonb_array_elements_text($1::jsonb)::uuid)`,
        [JSON.stringify(ids)],
      );
      for (const e of events.rows) {
        for (const key of Object.keys(e.data ?? {})) {
          const m = /^step-(\d+)$/.exec(key);
          if (m !== null) committedBy.set(`${e.run_id}:${m[1]}`, Number(e.attempt));
        }
      }
      const marks = readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => {
          const [run, step, what, attempt] = l.split(':');
          return { key: `${run}:${step}`, what, attempt: Number(attempt) };
        });
      const rerun = new Set<string>();
      for (const m of marks) {
        const committed = committedBy.get(m.key);
        if (m.what === 'started' && committed !== undefined && m.attempt > committed) rerun.add(m.key);
      }
      const startedCount = marks.filter((m) => m.what === 'started').length;
      const statusCounts: Record<string, number> = {};
      const wrong: string[] = [];
      const missing: string[] = [];
      for (const r of rows.rows) {
        statusCounts[r.status] = (statusCounts[r.status] ?? 0) + 1;
        if (r.status === 'success' && JSON.stringify(r.output) !== expected) wrong.push(r.run_id);
        if (r.status !== 'success') continue;
        for (let s = 0; s < steps; s++) {
          if (!tool.applied.has(`${r.run_id}:${s}`)) missing.push(`${r.run_id}:${s}`);
        }
      }
      const expectedKeys = new Set(
        ids.flatMap((id) => Array.from({ length: steps }, (_, s) => `${id}:${s}`)),
      );
      const attempts = rows.rows.map((r) => Number(r.attempt));
      return {
        runs: ids.length,
        steps_per_run: steps,
        workers: workerCount,
        kills,
        duration_ms: duration,
        statuses: statusCounts,
        wrong_outputs: wrong,
        completed_steps_rerun: [...rerun],
        interrupted_executions: startedCount - committedBy.size,
        tool_requests: tool.requests(),
        tool_effects: tool.applied.size,
        unexpected_effects: [...tool.applied.keys()].filter((k) => !expectedKeys.has(k)),
        missing_effects: missing,
        run_attempts: {
          max: Math.max(0, ...attempts),
          mean: attempts.length === 0 ? 0 : attempts.reduce((a, b) => a + b, 0) / attempts.length,
        },
      };
    } finally {
      await db.close();
    }
  } finally {
    stopKilling = true;
    await cluster?.stop({ graceMs: 0 });
    tool.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
