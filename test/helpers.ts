/**
 * Helpers for the end-to-end tests: real `hangar` processes, real Postgres
 * schemas, bounded polling. Every process and schema a test makes is
 * registered with a `Cleanup`, which the test's `afterEach` runs even when the
 * test failed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type HangarProcess, spawnHangar, type TestStore } from 'hangar/testing';
import { type SseFrame, sseFrames } from '../packages/hangar/src/cli/run.ts';
import { openStore } from '../packages/hangar/src/runtime/store.ts';
import { migrate } from '../packages/hangar/src/store/migrate.ts';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const FIXTURE_CONFIG = join(FIXTURES, 'hangar.config.ts');

/** Undo actions for one test, run newest first; every action runs even if an earlier one fails. */
export class Cleanup {
  private actions: Array<() => Promise<unknown> | unknown> = [];

  add(action: () => Promise<unknown> | unknown): void {
    this.actions.push(action);
  }

  async run(): Promise<void> {
    const actions = this.actions.reverse();
    this.actions = [];
    const errors: unknown[] = [];
    for (const action of actions) {
      try {
        await action();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  }

  /** Spawns `hangar …`; the process is SIGKILLed at cleanup if still alive. */
  spawn(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): HangarProcess {
    const proc = spawnHangar(args, { cwd: options.cwd ?? REPO_ROOT, env: options.env ?? {} });
    this.add(() => proc.kill('SIGKILL'));
    return proc;
  }

  /** A temporary directory, removed at cleanup. */
  tmpDir(prefix = 'hangar-e2e-'): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.add(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  /** Registers a test store so its schema is dropped at cleanup (after the processes using it died). */
  store<T extends TestStore>(store: T): T {
    this.add(() => store.dispose());
    return store;
  }
}

const PGLITE_PACKAGE = join(REPO_ROOT, 'node_modules', '@electric-sql', 'pglite', 'package.json');
const MIGRATIONS = fileURLToPath(new URL('../packages/hangar/src/store/migrations/', import.meta.url));

/**
 * A `--data-dir` whose embedded database is already created and migrated,
 * copied from a template made once per machine and migration set: PGlite's
 * initdb costs seconds of CPU per fresh directory. (The greeter test still
 * starts from an empty directory, as a new user would.)
 */
export async function seededDataDir(cleanup: Cleanup): Promise<string> {
  // Keyed by the PGlite build too: its on-disk format is its own.
  const hash = createHash('sha256').update(readFileSync(PGLITE_PACKAGE));
  for (const name of readdirSync(MIGRATIONS).sort()) {
    hash.update(name).update(readFileSync(join(MIGRATIONS, name)));
  }
  const template = join(tmpdir(), `hangar-e2e-template-${hash.digest('hex').slice(0, 16)}`);
  if (!existsSync(template)) {
    // Built aside and renamed into place, so concurrent test files never see half a template.
    const building = `${template}.${process.pid}.${randomBytes(4).toString('hex')}`;
    try {
      const db = await openStore({ kind: 'pglite', dataDir: building });
      await migrate(db);
      await db.close();
      renameSync(building, template);
    } catch (err) {
      if (!existsSync(template)) throw err;
    } finally {
      rmSync(building, { recursive: true, force: true });
    }
  }
  const dataDir = join(cleanup.tmpDir('hangar-e2e-data-'), 'data');
  cpSync(template, dataDir, { recursive: true });
  return dataDir;
}

/** How long a process may take to come up (PGlite's initdb alone takes seconds on a busy machine). */
export const STARTUP_MS = 60_000;

export interface Server {
  proc: HangarProcess;
  url: string;
}

/** `hangar dev` on a free port with the fixture agents; resolves once it serves. */
export async function startDev(
  cleanup: Cleanup,
  options: { dataDir: string; env?: NodeJS.ProcessEnv; config?: string },
): Promise<Server> {
  const proc = cleanup.spawn(
    [
      'dev',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--data-dir',
      options.dataDir,
      '--config',
      options.config ?? FIXTURE_CONFIG,
    ],
    { env: options.env ?? {} },
  );
  const match = await proc.waitFor(/hangar dev: serving .* at (http:\/\/\S+)/, STARTUP_MS);
  return { proc, url: String(match[1]) };
}

/** The environment a Postgres-backed child needs for the test's own schema. */
export function pgEnv(store: TestStore, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  if (store.url === undefined || store.schema === undefined) throw new Error('not a Postgres test store');
  return { DATABASE_URL: store.url, HANGAR_SCHEMA: store.schema, ...extra };
}

/** `hangar gateway` on a free port against the test's schema. */
export async function startGateway(cleanup: Cleanup, store: TestStore): Promise<Server> {
  const proc = cleanup.spawn(
    ['gateway', '--port', '0', '--host', '127.0.0.1', '--auth', 'none', '--config', FIXTURE_CONFIG],
    {
      env: pgEnv(store),
    },
  );
  const match = await proc.waitFor(/Server listening at (http:\/\/[^\s"]+)/, STARTUP_MS);
  return { proc, url: String(match[1]) };
}

/** `hangar worker` against the test's schema; resolves once it claims work. */
export async function startWorker(
  cleanup: Cleanup,
  store: TestStore,
  env: NodeJS.ProcessEnv = {},
): Promise<HangarProcess> {
  const proc = cleanup.spawn(['worker', '--config', FIXTURE_CONFIG], { env: pgEnv(store, env) });
  await proc.waitFor(/worker started/, STARTUP_MS);
  return proc;
}

/**
 * Calls `probe` every `intervalMs` until it returns something other than
 * `undefined`, or fails after `timeoutMs` saying what it waited for.
 */
export async function poll<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  { timeoutMs = 20_000, intervalMs = 100 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const cause = lastError === undefined ? '' : ` (last error: ${String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export interface ApiResponse<T = Record<string, unknown>> {
  status: number;
  body: T;
  text: string;
}

/** One HTTP request; the body is parsed as JSON when it is JSON. */
export async function api<T = Record<string, unknown>>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<ApiResponse<T>> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: the test sees the text.
  }
  return { status: res.status, body: parsed as T, text };
}

export interface RunView {
  run_id: string;
  thread_id: string;
  status: string;
  attempt: number;
  output: unknown;
  error: { code: string; type: string; message: string; details?: unknown } | null;
  finished_at: string | null;
}

/** POST /runs (or /threads/:id/runs) and returns the created run; fails the test on a non-200. */
export async function createRun(
  base: string,
  agent: string,
  input: unknown,
  threadId?: string,
): Promise<RunView> {
  const path = threadId === undefined ? '/runs' : `/threads/${threadId}/runs`;
  const res = await api<RunView>(base, 'POST', path, { assistant_id: agent, input });
  if (res.status !== 200) throw new Error(`POST ${path} answered ${res.status}: ${res.text}`);
  return res.body;
}

export function getRun(base: string, run: { thread_id: string; run_id: string }): Promise<RunView> {
  return api<RunView>(base, 'GET', `/threads/${run.thread_id}/runs/${run.run_id}`).then((r) => {
    if (r.status !== 200) throw new Error(`GET run answered ${r.status}: ${r.text}`);
    return r.body;
  });
}

const TERMINAL = new Set(['success', 'error', 'cancelled', 'timeout', 'dead']);

/** Polls the API until the run is terminal. */
export function waitForTerminal(
  base: string,
  run: { thread_id: string; run_id: string },
  timeoutMs = 20_000,
): Promise<RunView> {
  return poll(
    `run ${run.run_id} to finish`,
    async () => {
      const view = await getRun(base, run);
      return TERMINAL.has(view.status) ? view : undefined;
    },
    { timeoutMs, intervalMs: 100 },
  );
}

/** The lines of a side-effect file (empty when it does not exist yet). */
export function lines(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean);
}

/** How many lines equal `line`. */
export function count(file: string, line: string): number {
  return lines(file).filter((l) => l === line).length;
}

/** The pid in a worker id / `runs.lease_owner` (`<hostname>:<pid>:<rand>`). */
export function ownerPid(leaseOwner: string): number {
  const parts = leaseOwner.split(':');
  return Number(parts[parts.length - 2]);
}

/**
 * Reads a run's SSE stream until it ends, or until `stopAfter` frames with an
 * id were received (then the connection is dropped, as a client losing its network would).
 */
export async function readStream(
  base: string,
  run: { thread_id: string; run_id: string },
  options: {
    lastEventId?: string;
    stopAfter?: number;
    timeoutMs?: number;
    /** Return what arrived when the server goes away (it is being killed) instead of failing. */
    tolerateDrop?: boolean;
  } = {},
): Promise<SseFrame[]> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error('stream read timed out')),
    options.timeoutMs ?? 20_000,
  );
  const frames: SseFrame[] = [];
  let dropped = false;
  try {
    const res = await fetch(`${base}/threads/${run.thread_id}/runs/${run.run_id}/stream`, {
      headers: options.lastEventId === undefined ? {} : { 'last-event-id': options.lastEventId },
      signal: controller.signal,
    });
    if (res.status !== 200 || res.body === null) throw new Error(`stream answered ${res.status}`);
    let withId = 0;
    for await (const frame of sseFrames(res.body)) {
      frames.push(frame);
      if (frame.id !== undefined) withId++;
      if (options.stopAfter !== undefined && withId >= options.stopAfter) {
        dropped = true;
        controller.abort();
        break;
      }
    }
  } catch (err) {
    if (!dropped && !(options.tolerateDrop === true && !controller.signal.aborted)) throw err;
  } finally {
    clearTimeout(timer);
  }
  return frames;
}

/** Adds what the processes printed to a failure, so a timeout in CI explains itself. */
export async function explained<T>(promise: Promise<T>, ...procs: HangarProcess[]): Promise<T> {
  try {
    return await promise;
  } catch (err) {
    const logs = procs.map((p) => `--- pid ${p.child.pid}:\n${p.output().split('\n').slice(-30).join('\n')}`);
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${logs.join('\n')}`, {
      cause: err,
    });
  }
}
