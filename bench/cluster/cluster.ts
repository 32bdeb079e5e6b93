/**
 * The local cluster: Hangar's production topology as processes on one
 * machine. N `hangar gateway`s behind HAProxy (round robin), M `hangar
 * worker`s, all on one Postgres schema of their own (migrated with `hangar
 * migrate`). Used by `npm run cluster`, the cluster tests (test/cluster.*)
 * and the benchmarks in bench/control.
 *
 * @example
 * const cluster = await startCluster({ gateways: 2, workers: 2, config: 'test/fixtures/cluster.config.ts' });
 * try {
 *   const client = new Client({ apiUrl: cluster.url });
 *   // …
 *   await cluster.killWorker(0); // SIGKILL
 *   await cluster.restartWorker(0);
 * } finally {
 *   await cluster.stop(); // every process, HAProxy, and the schema
 * }
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { HANGAR_BIN } from '../../packages/hangar/src/testing/processes.ts';
import { type Backend, ensureHaproxy, haproxyConfig, PIN_HEADER } from './haproxy.ts';
import { type ChildExit, type SupervisedProcess, spawnSupervised, terminate } from './process.ts';

export { PIN_HEADER };

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
/** How long one process may take to come up on a loaded two-core machine. */
const STARTUP_MS = 60_000;

export interface ClusterOptions {
  /** Gateway processes (default 2). */
  gateways?: number;
  /** Worker processes (default 2). */
  workers?: number;
  /** The hangar.config.ts every process loads. */
  config: string;
  /** The proxy's port; 0 (the default) picks a free one. */
  port?: number;
  /** Where the proxy listens (default 127.0.0.1). */
  host?: string;
  /** Default: $DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres. */
  databaseUrl?: string;
  /** The Postgres schema (default: a fresh `hangar_cluster_<random>`, dropped by `stop()`). */
  schema?: string;
  /** Drop the schema in `stop()` (default: only when the schema was generated). */
  dropSchema?: boolean;
  /**
   * `none` (default): gateways run with `--auth none` (allowed because they
   * bind 127.0.0.1), every request acts for tenant "default". `keys`: an admin
   * key for tenant "default" is created with `hangar keys create` and returned
   * as `apiKey`.
   */
  auth?: 'none' | 'keys';
  /** Restart a gateway or worker that exits on its own (not through kill*() / stop()). */
  restart?: boolean;
  /**
   * Run the event plane on Redis: every process gets REDIS_URL and a key
   * prefix (default: a fresh random one, so clusters sharing a Redis don't hear each other).
   */
  redis?: { url: string; prefix?: string };
  /** Extra environment for every hangar process (e.g. HANGAR_LEASE_MS). REDIS_URL etc. pass through. */
  env?: NodeJS.ProcessEnv;
  /** LOG_LEVEL of the hangar processes (default info). */
  logLevel?: string;
  /** Where the process logs and haproxy.cfg go (default: a temp dir, removed by `stop()`). */
  workDir?: string;
  /** Supervision reports: a process that died, one that was restarted. */
  onEvent?: (event: ClusterEvent) => void;
}

export type ClusterEvent =
  | { type: 'exited'; name: string; pid: number; code: number | null; signal: NodeJS.Signals | null }
  | { type: 'restarted'; name: string; pid: number; previousPid: number }
  | { type: 'restart-failed'; name: string; error: string };

export interface ClusterMember {
  role: 'gateway' | 'worker';
  index: number;
  /** `gateway-0`, `worker-1`. */
  name: string;
  /** The current process (replaced by a restart). */
  proc: SupervisedProcess;
  readonly pid: number;
  /** Gateways: the HAProxy server name (`g0`), the port and the direct URL (bypassing the proxy). */
  server?: string;
  port?: number;
  url?: string;
}

export interface Cluster {
  /** The proxy: every request goes to the gateways round robin. */
  url: string;
  schema: string;
  databaseUrl: string;
  /** The admin key of tenant "default" when `auth: 'keys'`. */
  apiKey?: string;
  workDir: string;
  proxyPid: number;
  gateways: ClusterMember[];
  workers: ClusterMember[];
  /** The environment a process on the cluster needs (DATABASE_URL, HANGAR_SCHEMA, and REDIS_URL + HANGAR_REDIS_PREFIX with `redis`). */
  env: NodeJS.ProcessEnv;
  /** Headers that send a request through the proxy to gateway `i` (while it is up). */
  pinTo(i: number): Record<string, string>;
  /** Signals gateway `i` (default SIGKILL) and waits for it to exit; it stays down until restarted. */
  killGateway(i: number, signal?: NodeJS.Signals): Promise<ChildExit>;
  killWorker(i: number, signal?: NodeJS.Signals): Promise<ChildExit>;
  /**
   * Starts gateway `i` again on its port (killing it first if it is running); resolves once the
   * proxy routes to it again.
   */
  restartGateway(i: number): Promise<ClusterMember>;
  /** Starts worker `i` again (killing it first if it is running); resolves once it claims work. */
  restartWorker(i: number): Promise<ClusterMember>;
  /** The worker whose process has this pid (a run's `lease_owner` is `<host>:<pid>:<rand>`). */
  workerByPid(pid: number): ClusterMember | undefined;
  /** The last lines of every process's output, for failure messages. */
  logs(lines?: number): string;
  /**
   * Stops everything: gateways and workers (SIGTERM, then SIGKILL after
   * `graceMs`; `graceMs: 0` SIGKILLs at once), HAProxy, then drops the schema
   * (when generated) and removes the temp work dir.
   */
  stop(options?: { graceMs?: number }): Promise<void>;
}

interface MemberSpec {
  role: 'gateway' | 'worker';
  index: number;
  args: string[];
  ready: RegExp;
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const gatewayCount = options.gateways ?? 2;
  const workerCount = options.workers ?? 2;
  if (gatewayCount < 1 || workerCount < 0) throw new Error('a cluster needs ≥ 1 gateway and ≥ 0 workers');
  const config = resolve(options.config);
  const databaseUrl = options.databaseUrl ?? process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
  const generatedSchema = options.schema === undefined;
  const schema = options.schema ?? `hangar_cluster_${randomBytes(5).toString('hex')}`;
  if (!/^[a-z_][a-z0-9_]*$/.test(schema))
    throw new Error(`schema must be a lower-case SQL identifier, got "${schema}"`);
  const dropSchemaOnStop = options.dropSchema ?? generatedSchema;
  const host = options.host ?? '127.0.0.1';
  const ownWorkDir = options.workDir === undefined;
  const workDir = options.workDir ?? mkdtempSync(join(tmpdir(), 'hangar-cluster-'));
  mkdirSync(workDir, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    LOG_LEVEL: options.logLevel ?? 'info',
    ...options.env,
    ...(options.redis === undefined
      ? {}
      : {
          REDIS_URL: options.redis.url,
          HANGAR_REDIS_PREFIX: options.redis.prefix ?? `hangar:${schema}:${randomBytes(4).toString('hex')}:`,
        }),
    DATABASE_URL: databaseUrl,
    HANGAR_SCHEMA: schema,
  };
  const report = options.onEvent ?? (() => {});

  const members: ClusterMember[] = [];
  const specs = new Map<ClusterMember, MemberSpec>();
  /** Processes being stopped on purpose: their exit is not reported or restarted. */
  const expected = new WeakSet<SupervisedProcess>();
  let proxy: SupervisedProcess | undefined;
  let stopping = false;
  const killAllNow = () => {
    for (const m of members) m.proc.child.kill('SIGKILL');
    proxy?.child.kill('SIGKILL');
  };
  // Belt and braces next to pdeathsig: a parent that exits without stop() still takes its children along.
  process.once('exit', killAllNow);

  const spawnHangar = (name: string, args: string[]) =>
    spawnSupervised(name, process.execPath, [HANGAR_BIN, ...args], {
      cwd: REPO_ROOT,
      env,
      logFile: join(workDir, `${name}.log`),
    });

  const launch = async (member: ClusterMember, spec: MemberSpec): Promise<void> => {
    const proc = spawnHangar(member.name, spec.args);
    member.proc = proc;
    void proc.exited.then((exit) => {
      if (stopping || expected.has(proc)) return;
      report({ type: 'exited', name: member.name, pid: proc.pid, ...exit });
      if (options.restart === true) {
        setTimeout(() => {
          if (stopping || member.proc !== proc) return;
          launch(member, spec).then(
            () => report({ type: 'restarted', name: member.name, pid: member.pid, previousPid: proc.pid }),
            (err: unknown) => report({ type: 'restart-failed', name: member.name, error: String(err) }),
          );
        }, 1_000);
      }
    });
    const match = await proc.waitFor(spec.ready, STARTUP_MS);
    if (spec.role === 'gateway' && member.port === undefined) {
      member.url = String(match[1]);
      member.port = Number(new URL(member.url).port);
      // A restart binds the same port, so the proxy's configuration stays valid.
      spec.args = spec.args.map((a, i) => (spec.args[i - 1] === '--port' ? String(member.port) : a));
    }
  };

  const newMember = (spec: MemberSpec): ClusterMember => {
    const member: ClusterMember = {
      role: spec.role,
      index: spec.index,
      name: `${spec.role}-${spec.index}`,
      proc: undefined as unknown as SupervisedProcess,
      get pid() {
        return this.proc.pid;
      },
      ...(spec.role === 'gateway' ? { server: `g${spec.index}` } : {}),
    };
    members.push(member);
    specs.set(member, spec);
    return member;
  };

  const stop = async ({ graceMs = 10_000 }: { graceMs?: number } = {}) => {
    if (stopping) return;
    stopping = true;
    const errors: unknown[] = [];
    await Promise.all(
      members
        .filter((m) => m.proc !== undefined)
        .map((m) => (graceMs <= 0 ? m.proc.kill('SIGKILL') : terminate(m.proc, graceMs))),
    );
    if (proxy !== undefined) await terminate(proxy, 2_000);
    process.removeListener('exit', killAllNow);
    if (dropSchemaOnStop) {
      await dropSchema(databaseUrl, schema).catch((err: unknown) => errors.push(err));
    }
    if (ownWorkDir) rmSync(workDir, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, 'cluster stop failed');
  };

  try {
    const haproxy = ensureHaproxy((msg) => process.stderr.write(`[cluster] ${msg}\n`));
    const migrate = spawnHangar('migrate', ['migrate']);
    const migrated = await migrate.exited;
    if (migrated.code !== 0) throw new Error(`hangar migrate failed:\n${migrate.output()}`);

    let apiKey: string | undefined;
    if (options.auth === 'keys') {
      const keys = spawnHangar('keys', [
        'keys',
        'create',
        '--tenant',
        'default',
        '--name',
        `cluster-${schema}`,
        '--scopes',
        'admin',
        '--json',
      ]);
      const created = await keys.exited;
      const line = keys
        .output()
        .split('\n')
        .find((l) => l.startsWith('{'));
      if (created.code !== 0 || line === undefined)
        throw new Error(`hangar keys create failed:\n${keys.output()}`);
      apiKey = String((JSON.parse(line) as { key: string }).key);
    }

    const auth = options.auth === 'keys' ? [] : ['--auth', 'none'];
    const gateways = Array.from({ length: gatewayCount }, (_, index) =>
      newMember({
        role: 'gateway',
        index,
        args: ['gateway', '--port', '0', '--host', '127.0.0.1', ...auth, '--config', config],
        ready: /Server listening at (http:\/\/[^\s"]+)/,
      }),
    );
    const workers = Array.from({ length: workerCount }, (_, index) =>
      newMember({ role: 'worker', index, args: ['worker', '--config', config], ready: /worker started/ }),
    );
    await Promise.all(members.map((m) => launch(m, specs.get(m) as MemberSpec)));

    const port = options.port === undefined || options.port === 0 ? await freePort(host) : options.port;
    const backends: Backend[] = gateways.map((g) => ({ name: g.server ?? '', port: g.port ?? 0 }));
    const cfg = join(workDir, 'haproxy.cfg');
    writeFileSync(cfg, haproxyConfig({ port, host, backends }));
    proxy = spawnSupervised('haproxy', haproxy, ['-db', '-f', cfg], {
      logFile: join(workDir, 'haproxy.log'),
      deathSignal: 'SIGTERM',
    });
    const proxyProc = proxy;
    void proxyProc.exited.then((exit) => {
      if (!stopping) report({ type: 'exited', name: 'haproxy', pid: proxyProc.pid, ...exit });
    });
    const url = `http://${host}:${port}`;
    await waitForProxy(url, proxyProc);

    const member = (list: ClusterMember[], i: number) => {
      const m = list[i];
      if (m === undefined) throw new Error(`no ${list[0]?.role ?? 'member'} ${i} (there are ${list.length})`);
      return m;
    };
    const kill = (m: ClusterMember, signal: NodeJS.Signals) => {
      expected.add(m.proc);
      return m.proc.kill(signal);
    };
    const restart = async (m: ClusterMember) => {
      if (m.proc.isRunning()) await kill(m, 'SIGKILL');
      await launch(m, specs.get(m) as MemberSpec);
      // A gateway is back once the proxy's health check has seen it (requests pinned to it reach it).
      if (m.server !== undefined) await waitForBackend(url, m.server);
      return m;
    };
    return {
      url,
      schema,
      databaseUrl,
      ...(apiKey === undefined ? {} : { apiKey }),
      workDir,
      proxyPid: proxyProc.pid,
      gateways,
      workers,
      env: {
        DATABASE_URL: databaseUrl,
        HANGAR_SCHEMA: schema,
        ...(env.REDIS_URL === undefined ? {} : { REDIS_URL: env.REDIS_URL }),
        ...(env.HANGAR_REDIS_PREFIX === undefined ? {} : { HANGAR_REDIS_PREFIX: env.HANGAR_REDIS_PREFIX }),
      },
      pinTo: (i) => ({ [PIN_HEADER]: member(gateways, i).server ?? '' }),
      killGateway: (i, signal = 'SIGKILL') => kill(member(gateways, i), signal),
      killWorker: (i, signal = 'SIGKILL') => kill(member(workers, i), signal),
      restartGateway: (i) => restart(member(gateways, i)),
      restartWorker: (i) => restart(member(workers, i)),
      workerByPid: (pid) => workers.find((w) => w.pid === pid),
      logs(lines = 20) {
        const all = [...members.map((m) => m.proc), proxyProc];
        return all
          .map((p) => `--- ${p.name} (pid ${p.pid}):\n${p.output().split('\n').slice(-lines).join('\n')}`)
          .join('\n');
      },
      stop,
    };
  } catch (err) {
    await stop({ graceMs: 0 }).catch(() => {});
    throw err;
  }
}

/** A port nobody listens on right now (the proxy binds it a moment later). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

async function waitForProxy(url: string, proxy: SupervisedProcess): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (!proxy.isRunning()) throw new Error(`haproxy exited:\n${proxy.output()}`);
    try {
      const res = await fetch(`${url}/ok`);
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`the proxy at ${url} did not answer /ok:\n${proxy.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function waitForBackend(url: string, server: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const res = await fetch(`${url}/ok`, { headers: { [PIN_HEADER]: server } });
      await res.arrayBuffer();
      if (res.status === 200 && res.headers.get(PIN_HEADER) === server) return;
    } catch {
      // The proxy answers; this gateway is not up in it yet.
    }
    if (Date.now() > deadline) throw new Error(`the proxy did not route to ${server} within 15 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function dropSchema(url: string, schema: string): Promise<void> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await admin.end();
  }
}
