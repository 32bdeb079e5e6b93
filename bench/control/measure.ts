/**
 * The two control-plane timings of issue 5, measured on the local cluster
 * (real `hangar gateway` / `hangar worker` processes behind HAProxy):
 *
 * - crash → resume: SIGKILL the worker executing a run, then the time until
 *   the run's next step starts in another worker process;
 * - cancel → cancelled: `POST …/cancel?wait=1` through a gateway other than
 *   the one that created the run, until the gateway answers 204 (the run has
 *   ended), and until the worker's step saw its abort signal.
 *
 * Both read the slow-steps fixture's side channel
 * (`<run>:<step>:started|done|aborted:<pid>:<epoch ms>`), written by the worker
 * processes on this machine's clock.
 */
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import type { PostgresClient } from '../../packages/hangar/src/store/postgres.ts';
import type { Cluster } from '../cluster/cluster.ts';
import { PIN_HEADER } from '../cluster/cluster.ts';
import { round } from '../engine/stats.ts';

export interface Mark {
  run: string;
  step: number;
  what: 'started' | 'done' | 'aborted';
  pid: number;
  at: number;
}

export function readMarks(file: string): Mark[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
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

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  everyMs = 10,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

interface RunRef {
  run_id: string;
  thread_id: string;
}

async function createRun(
  cluster: Cluster,
  input: unknown,
  headers: Record<string, string> = {},
): Promise<RunRef> {
  const res = await fetch(`${cluster.url}/runs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ assistant_id: 'slow-steps', input }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`create answered ${res.status}: ${text}`);
  return JSON.parse(text) as RunRef;
}

async function runStatus(cluster: Cluster, run: RunRef): Promise<string> {
  const res = await fetch(`${cluster.url}/threads/${run.thread_id}/runs/${run.run_id}`);
  const body = (await res.json()) as { status: string };
  return body.status;
}

const TERMINAL = new Set(['success', 'error', 'cancelled', 'timeout', 'dead']);

export interface CrashSample {
  run_id: string;
  victim_pid: number;
  resumed_pid: number;
  /** SIGKILL → the interrupted step started again in another process. */
  kill_to_resume_ms: number;
  /** What was left of the victim's lease when it died (lease_expires_at − now, database clock). */
  lease_left_at_kill_ms: number;
  /** Lease expiry → resume: the sweeper's interval, the claim and the replay of completed steps. */
  expiry_to_resume_ms: number;
  final_status: string;
  loadavg_1m: number;
}

/**
 * `kills` times: a 2-step run (steps of `stepMs`), the worker holding it is
 * SIGKILLed a random 0–`killWindowMs` ms into step 1 (step 0 checkpointed), the time to
 * step 1 starting elsewhere is recorded, the victim is restarted, and the run
 * must finish `success` before the next kill.
 */
export async function measureCrashResume(
  cluster: Cluster,
  db: PostgresClient,
  options: { kills: number; file: string; stepMs: number; killWindowMs: number; log: (msg: string) => void },
): Promise<CrashSample[]> {
  const samples: CrashSample[] = [];
  for (let k = 0; k < options.kills; k++) {
    const run = await createRun(cluster, { file: options.file, steps: 2, stepMs: options.stepMs });
    await until(
      'step 1 to start',
      () =>
        readMarks(options.file).some((m) => m.run === run.run_id && m.step === 1 && m.what === 'started')
          ? true
          : undefined,
      30_000,
    );
    // Uniform over one heartbeat period, so the kill lands at any point of the lease's renewal cycle.
    await new Promise((r) => setTimeout(r, Math.random() * options.killWindowMs));
    const lease = await db.query<{ lease_owner: string | null; left_ms: number }>(
      `SELECT lease_owner, extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000 AS left_ms
       FROM runs WHERE run_id = $1`,
      [run.run_id],
    );
    const owner = lease.rows[0]?.lease_owner;
    if (owner == null) throw new Error(`run ${run.run_id} has no lease owner`);
    const parts = owner.split(':');
    const victimPid = Number(parts[parts.length - 2]);
    const victim = cluster.workerByPid(victimPid);
    if (victim === undefined) throw new Error(`lease owner ${owner} is not a cluster worker`);
    const killedAt = Date.now();
    await cluster.killWorker(victim.index, 'SIGKILL');
    // Brought back while the run waits for its lease to expire (it may be the one that resumes it:
    // a new process, so still "another worker").
    const restarted = cluster.restartWorker(victim.index);
    const resumed = await until(
      'the run to resume in another process',
      () =>
        readMarks(options.file).find(
          (m) => m.run === run.run_id && m.step === 1 && m.what === 'started' && m.pid !== victimPid,
        ),
      60_000,
    );
    await restarted;
    const status = await until(
      'the resumed run to finish',
      async () => {
        const s = await runStatus(cluster, run);
        return TERMINAL.has(s) ? s : undefined;
      },
      60_000,
      50,
    );
    const leaseLeft = Number(lease.rows[0]?.left_ms);
    const sample: CrashSample = {
      run_id: run.run_id,
      victim_pid: victimPid,
      resumed_pid: resumed.pid,
      kill_to_resume_ms: resumed.at - killedAt,
      lease_left_at_kill_ms: round(leaseLeft, 1),
      expiry_to_resume_ms: round(resumed.at - killedAt - leaseLeft, 1),
      final_status: status,
      loadavg_1m: round(loadavg()[0] ?? Number.NaN, 2),
    };
    samples.push(sample);
    options.log(
      `   kill ${k + 1}/${options.kills}: resumed after ${sample.kill_to_resume_ms} ms ` +
        `(lease left ${Math.round(leaseLeft)} ms), run ${status}`,
    );
  }
  return samples;
}

export interface CancelSample {
  run_id: string;
  created_via: string | null;
  cancelled_via: string | null;
  /** Request sent → 204 (the gateway answers once the run has ended). */
  request_to_cancelled_ms: number;
  /** Request sent → the step's `signal` fired in the worker process. */
  request_to_abort_ms: number;
  status: string;
  loadavg_1m: number;
}

/**
 * `cancels` times: a run is created through gateway 0, and once its (30 s)
 * step is running on a worker it is cancelled with `?wait=1` through gateway 1.
 */
export async function measureCancel(
  cluster: Cluster,
  options: { cancels: number; file: string; log: (msg: string) => void },
): Promise<CancelSample[]> {
  const samples: CancelSample[] = [];
  for (let i = 0; i < options.cancels; i++) {
    const createRes = await fetch(`${cluster.url}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...cluster.pinTo(0) },
      body: JSON.stringify({
        assistant_id: 'slow-steps',
        input: { file: options.file, steps: 1, stepMs: 30_000 },
      }),
    });
    const createdText = await createRes.text();
    if (createRes.status !== 200) throw new Error(`create answered ${createRes.status}: ${createdText}`);
    const run = JSON.parse(createdText) as RunRef;
    await until(
      'the step to start',
      () =>
        readMarks(options.file).some((m) => m.run === run.run_id && m.what === 'started') ? true : undefined,
      30_000,
    );
    const sent = Date.now();
    const t0 = performance.now();
    const res = await fetch(`${cluster.url}/threads/${run.thread_id}/runs/${run.run_id}/cancel?wait=1`, {
      method: 'POST',
      headers: cluster.pinTo(1),
    });
    await res.arrayBuffer();
    const elapsed = performance.now() - t0;
    if (res.status !== 204) throw new Error(`cancel answered ${res.status}`);
    const aborted = await until(
      'the step to see its abort',
      () => readMarks(options.file).find((m) => m.run === run.run_id && m.what === 'aborted'),
      10_000,
    );
    const status = await runStatus(cluster, run);
    samples.push({
      run_id: run.run_id,
      created_via: createRes.headers.get(PIN_HEADER),
      cancelled_via: res.headers.get(PIN_HEADER),
      request_to_cancelled_ms: round(elapsed, 1),
      request_to_abort_ms: aborted.at - sent,
      status,
      loadavg_1m: round(loadavg()[0] ?? Number.NaN, 2),
    });
    if ((i + 1) % 10 === 0) options.log(`   ${i + 1}/${options.cancels} cancels`);
  }
  return samples;
}
