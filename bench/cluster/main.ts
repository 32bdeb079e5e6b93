/**
 * `npm run cluster` — the production topology as local processes: N gateways
 * behind HAProxy (round robin), M workers, on the local Postgres. Prints the
 * proxy URL and the process ids, reports a process that dies (`--restart`
 * starts it again), and stops everything on Ctrl-C / SIGTERM.
 *
 *   npm run cluster -- --gateways 2 --workers 3 --config hangar.config.ts --port 8123
 *
 * Flags: --gateways N (2), --workers M (2), --config <file> (./hangar.config.ts),
 * --port <proxy port> (8123; 0 picks one), --auth none|keys (none), --restart,
 * --schema <name> (hangar_cluster, kept between runs; --drop-schema drops it at exit).
 * DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), REDIS_URL and
 * every HANGAR_* variable are passed to the processes.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type Cluster, startCluster } from './cluster.ts';

const USAGE =
  'usage: npm run cluster -- [--gateways N] [--workers M] [--config hangar.config.ts] [--port 8123] ' +
  '[--auth none|keys] [--restart] [--schema hangar_cluster] [--drop-schema]';

function int(raw: string | undefined, name: string, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min)
    throw new Error(`--${name} must be an integer ≥ ${min}; ${USAGE}`);
  return value;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      gateways: { type: 'string' },
      workers: { type: 'string' },
      config: { type: 'string' },
      port: { type: 'string' },
      auth: { type: 'string' },
      restart: { type: 'boolean', default: false },
      schema: { type: 'string' },
      'drop-schema': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    console.log(USAGE);
    return 0;
  }
  const auth = values.auth ?? 'none';
  if (auth !== 'none' && auth !== 'keys') throw new Error(`--auth must be none or keys; ${USAGE}`);
  const schema = values.schema ?? 'hangar_cluster';
  const workDir = resolve('.hangar-cluster', schema);
  mkdirSync(workDir, { recursive: true });
  const log = (msg: string) => console.log(`[cluster] ${msg}`);

  log('starting (hangar migrate, gateways, workers, haproxy)…');
  let cluster: Cluster | undefined;
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log(`${why}: stopping every process…`);
    await cluster?.stop({ graceMs: 10_000 });
    log('stopped');
  };
  // A signal during startup stops what has started once startCluster returns or fails.
  let signalled: string | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (cluster === undefined) {
      signalled = signal;
      return;
    }
    void stop(signal).then(() => process.exit(0));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  cluster = await startCluster({
    gateways: int(values.gateways, 'gateways', 2, 1),
    workers: int(values.workers, 'workers', 2, 0),
    config: values.config ?? './hangar.config.ts',
    port: int(values.port, 'port', 8123, 0),
    auth,
    restart: values.restart === true,
    schema,
    dropSchema: values['drop-schema'] === true,
    workDir,
    onEvent(event) {
      if (event.type === 'exited') {
        log(
          `${event.name} (pid ${event.pid}) exited (${event.signal ?? `code ${event.code}`})` +
            (values.restart === true ? '; restarting in 1 s' : '; not restarting (pass --restart)'),
        );
      } else if (event.type === 'restarted') {
        log(`${event.name} restarted: pid ${event.pid} (was ${event.previousPid})`);
      } else {
        log(`${event.name} could not be restarted: ${event.error}`);
      }
    },
  });
  if (signalled !== undefined) {
    await stop(signalled);
    return 0;
  }

  const lines = [
    `proxy:   ${cluster.url}   (HAProxy pid ${cluster.proxyPid}, round robin)`,
    ...cluster.gateways.map((g) => `gateway: ${g.name} pid ${g.pid} at ${g.url} (proxy server ${g.server})`),
    ...cluster.workers.map((w) => `worker:  ${w.name} pid ${w.pid}`),
    `database: ${cluster.databaseUrl} schema ${cluster.schema}${values['drop-schema'] === true ? ' (dropped at exit)' : ''}`,
    cluster.apiKey === undefined
      ? 'auth:    none (gateways bind 127.0.0.1; every request acts for tenant "default")'
      : `auth:    API key for tenant "default" (admin): ${cluster.apiKey}`,
    process.env.REDIS_URL === undefined
      ? 'redis:   REDIS_URL not set (no process uses Redis yet: the Redis event plane is not built)'
      : `redis:   REDIS_URL=${process.env.REDIS_URL} passed through (no process uses it yet: the Redis event plane is not built)`,
    `logs:    ${join(workDir, '<name>.log')}`,
    `try:     npx hangar run <agent> --input '{}' --follow --url ${cluster.url}${cluster.apiKey === undefined ? '' : ' --api-key <key>'}`,
    'Ctrl-C stops everything.',
  ];
  for (const line of lines) console.log(line);
  // Until a signal (the timer keeps the event loop alive even if every child is gone).
  setInterval(() => {}, 1 << 30);
  await new Promise(() => {});
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`[cluster] ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
