import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pino from 'pino';
import type { Bus } from '../bus/bus.ts';
import { MemoryBus } from '../bus/memory.ts';
import { PostgresBus } from '../bus/postgres.ts';
import { RedisBus } from '../bus/redis.ts';
import { parseEnv } from '../config/env.ts';
import { loadConfig } from '../config/load.ts';
import { DEFAULT_BODY_LIMIT } from '../gateway/app.ts';
import { startMetricsServer } from '../metrics/metrics.ts';
import { breakerMetrics, gatewayMetrics, redisBusMetrics, workerMetrics } from '../metrics/sources.ts';
import { parseAmounts, TENANT_NAME } from '../runs/concurrency.ts';
import { startHangar } from '../runtime/start.ts';
import { openStore } from '../runtime/store.ts';
import type { LlmSettings } from '../sdk/llm.ts';
import { migrate } from '../store/migrate.ts';
import type { WebhookSettings } from '../webhooks/dispatcher.ts';
import { devWebhookSecret } from '../webhooks/secret.ts';
import { processBreakers } from '../worker/breakers.ts';
import { gatewaySecurity } from './keys.ts';
import { type Flags, intFlag, UsageError } from './main.ts';

type ServerCommand = 'dev' | 'worker' | 'gateway' | 'migrate';

export async function runServerCommand(command: ServerCommand, flags: Flags): Promise<number> {
  const env = parseEnv(process.env);
  const logger = pino({ level: env.LOG_LEVEL, base: { pid: process.pid } });
  const schema = env.HANGAR_SCHEMA;

  if (command === 'migrate') {
    const url = requireDatabaseUrl(env.DATABASE_URL, command);
    const db = await openStore({
      kind: 'postgres',
      url,
      preparedStatements: env.HANGAR_PG_PREPARED === 'true',
      ...(schema === undefined ? {} : { schema }),
    });
    try {
      const applied = await migrate(db);
      process.stdout.write(
        applied.length === 0
          ? 'hangar: database is up to date\n'
          : `hangar: applied migrations ${applied.join(', ')}\n`,
      );
    } finally {
      await db.close();
    }
    return 0;
  }

  const loaded = await loadConfig(String(flags.values.config ?? './hangar.config.ts'));
  const llm: LlmSettings = {
    ...(loaded.config.llm?.model !== undefined
      ? { model: loaded.config.llm.model }
      : env.HANGAR_MODEL !== undefined
        ? { model: env.HANGAR_MODEL }
        : {}),
    ...((loaded.config.llm?.baseURL ?? env.HANGAR_LLM_BASE_URL) !== undefined
      ? { baseURL: loaded.config.llm?.baseURL ?? env.HANGAR_LLM_BASE_URL }
      : {}),
    ...(loaded.config.pricing === undefined ? {} : { pricing: loaded.config.pricing }),
    apiKeys: {
      openai: env.OPENAI_API_KEY,
      anthropic: env.ANTHROPIC_API_KEY,
      compatible: env.HANGAR_LLM_API_KEY,
    },
  };
  const worker = {
    ...(env.HANGAR_LEASE_MS === undefined ? {} : { leaseMs: env.HANGAR_LEASE_MS }),
    ...(env.HANGAR_MAX_RUN_ATTEMPTS === undefined ? {} : { maxRunAttempts: env.HANGAR_MAX_RUN_ATTEMPTS }),
    concurrency: intFlag(flags, 'concurrency', env.HANGAR_WORKER_CONCURRENCY ?? 10, 1, 1000),
    // A `hangar worker` being replaced (rolling deploy, scale-in) lets each run finish its step;
    // `hangar dev` stops at once (its runs resume when it starts again).
    drainMs: env.HANGAR_DRAIN_MS ?? (command === 'worker' ? 10_000 : 0),
    ...(env.HANGAR_TOKEN_COALESCE_MS === undefined ? {} : { coalesceMs: env.HANGAR_TOKEN_COALESCE_MS }),
    // Concurrency control (docs/operations.md, Concurrency).
    ...(env.HANGAR_WORKER_RESOURCES === undefined
      ? {}
      : { resources: parseAmounts(env.HANGAR_WORKER_RESOURCES, 'HANGAR_WORKER_RESOURCES') }),
    ...(env.HANGAR_WORKER_MAX_RSS_MB === undefined ? {} : { maxRssMb: env.HANGAR_WORKER_MAX_RSS_MB }),
    ...(env.HANGAR_CHECKPOINT_IN_FLIGHT === undefined
      ? {}
      : { checkpointsInFlight: env.HANGAR_CHECKPOINT_IN_FLIGHT }),
    ...(env.HANGAR_CHECKPOINT_BATCH === undefined ? {} : { checkpointBatch: env.HANGAR_CHECKPOINT_BATCH }),
    ...(env.HANGAR_CLAIM_GATHER_MS === undefined ? {} : { claimGatherMs: env.HANGAR_CLAIM_GATHER_MS }),
    tenantLimit: env.HANGAR_TENANT_CONCURRENCY ?? null,
    tenantLimits: parseAmounts(
      env.HANGAR_TENANT_CONCURRENCY_OVERRIDES ?? '',
      'HANGAR_TENANT_CONCURRENCY_OVERRIDES',
      TENANT_NAME,
    ),
  };
  const port = intFlag(flags, 'port', 8123, 0, 65535);
  const bodyLimitBytes = loaded.config.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;
  const idempotency =
    env.HANGAR_IDEMPOTENCY_TTL_HOURS === undefined
      ? {}
      : { idempotencyTtlMs: env.HANGAR_IDEMPOTENCY_TTL_HOURS * 60 * 60 * 1000 };
  const webhooks: WebhookSettings = {
    ...(env.HANGAR_WEBHOOK_SECRET === undefined ? {} : { secret: env.HANGAR_WEBHOOK_SECRET }),
    ...(env.HANGAR_WEBHOOK_MAX_ATTEMPTS === undefined
      ? {}
      : { maxAttempts: env.HANGAR_WEBHOOK_MAX_ATTEMPTS }),
    ...(env.HANGAR_WEBHOOK_TIMEOUT_MS === undefined ? {} : { timeoutMs: env.HANGAR_WEBHOOK_TIMEOUT_MS }),
    // A laptop's receiver is on localhost; a deployment's webhooks go out to the internet.
    allowPrivateNetworks:
      (env.HANGAR_WEBHOOK_ALLOW_PRIVATE ?? (command === 'dev' ? 'true' : 'false')) === 'true',
  };

  const host = String(flags.values.host ?? (command === 'gateway' ? '0.0.0.0' : '127.0.0.1'));
  const security =
    command === 'worker'
      ? undefined
      : gatewaySecurity(command, host, flags.values.auth ?? env.HANGAR_AUTH, env);
  let bus: Bus | undefined;
  let db: Awaited<ReturnType<typeof openStore>> | undefined;
  let unlock = () => {};
  let hangar: Awaited<ReturnType<typeof startHangar>>;
  /** A webhook secret `hangar dev` generated: said once the server is up (a failed start prints one line). */
  let secretPath: string | undefined;
  try {
    if (command === 'dev') {
      const dataDir = resolve(String(flags.values['data-dir'] ?? './.hangar'));
      unlock = lockDataDir(dataDir);
      if (webhooks.secret === undefined) {
        const generated = devWebhookSecret(dataDir);
        webhooks.secret = generated.secret;
        secretPath = generated.path;
      }
      db = await openStore({ kind: 'pglite', dataDir });
      bus = new MemoryBus();
    } else {
      const url = requireDatabaseUrl(env.DATABASE_URL, command);
      db = await openStore({
        kind: 'postgres',
        url,
        preparedStatements: env.HANGAR_PG_PREPARED === 'true',
        ...(schema === undefined ? {} : { schema }),
      });
      if (env.REDIS_URL !== undefined) {
        const redisBus = new RedisBus({
          url: env.REDIS_URL,
          prefix: env.HANGAR_REDIS_PREFIX ?? `hangar:${schema ?? 'public'}:`,
          logger,
          retention: {
            ...(env.HANGAR_STREAM_RETENTION_ENTRIES === undefined
              ? {}
              : { entries: env.HANGAR_STREAM_RETENTION_ENTRIES }),
            ...(env.HANGAR_STREAM_RETENTION_BYTES === undefined
              ? {}
              : { bytes: env.HANGAR_STREAM_RETENTION_BYTES }),
            ...(env.HANGAR_STREAM_RETENTION_SECONDS === undefined
              ? {}
              : { ms: env.HANGAR_STREAM_RETENTION_SECONDS * 1000 }),
          },
        });
        bus = redisBus;
        await redisBus.start();
      } else {
        const pgBus = new PostgresBus({
          connectionString: url,
          schema: schema ?? 'public',
          logger,
          // A worker process never follows a thread: Postgres need not deliver it every checkpoint's hint.
          threadHints: command !== 'worker',
        });
        bus = pgBus;
        await pgBus.start();
      }
    }
    hangar = await startHangar({
      db,
      bus,
      agents: loaded.agents,
      logger,
      llm,
      migrate: command === 'dev',
      recoverRunning: command === 'dev',
      webhooks,
      ...(command === 'worker'
        ? {}
        : { gateway: { port, host, bodyLimitBytes, ...idempotency, ...security } }),
      ...(command === 'gateway' ? {} : { worker }),
      // A worker process on Postgres proves it lives with a session lock: dead, its runs resume at once.
      ...(command === 'dev'
        ? {}
        : { liveness: { connectionString: requireDatabaseUrl(env.DATABASE_URL, command) } }),
    });
  } catch (err) {
    // Close what was opened, or the open database keeps the process alive after the error.
    await bus?.close().catch(() => {});
    await db?.close().catch(() => {});
    unlock();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new UsageError(
        `port ${port} on ${host} is already in use; pass --port <free port> (0 picks one)`,
      );
    }
    throw err;
  }

  if (secretPath !== undefined) {
    logger.info({ path: secretPath }, 'webhooks are signed with the secret in this file');
  }
  if (command === 'dev') {
    process.stdout.write(
      `hangar dev: serving ${[...loaded.agents.keys()].join(', ')} at ${hangar.url}\n` +
        `  data: ${resolve(String(flags.values['data-dir'] ?? './.hangar'))} (embedded Postgres)\n` +
        (security?.auth === 'none'
          ? '  auth: none, every request acts for tenant "default" (localhost only; --auth keys requires API keys)\n'
          : '  auth: API keys required (x-api-key or Authorization: Bearer)\n') +
        (llm.model === undefined ? '  llm: no model configured (set HANGAR_MODEL to use ctx.llm)\n' : '') +
        `  try: npx hangar run ${[...loaded.agents.keys()][0] ?? '<agent>'} --input '<json input>' --follow` +
        // Without --url, `hangar run` talks to the default address.
        `${hangar.url === 'http://127.0.0.1:8123' ? '' : ` --url ${hangar.url}`}\n`,
    );
  }

  const metrics =
    env.HANGAR_METRICS_PORT === undefined
      ? undefined
      : await startMetricsServer({
          port: env.HANGAR_METRICS_PORT,
          host: env.HANGAR_METRICS_HOST ?? '127.0.0.1',
          logger,
          sources: [
            breakerMetrics(processBreakers),
            ...(hangar.worker === undefined ? [] : [workerMetrics(hangar.worker)]),
            ...(hangar.gateway === undefined ? [] : [gatewayMetrics(hangar.gateway)]),
            ...(bus instanceof RedisBus ? [redisBusMetrics(bus)] : []),
          ],
        });

  if (security !== undefined) {
    logger[security.auth === 'none' ? 'warn' : 'info'](
      { auth: security.auth, host },
      security.auth === 'none'
        ? 'authentication is off: every request acts for tenant "default" (allowed on localhost only)'
        : 'API keys required',
    );
  }
  await new Promise<void>((resolveStop) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'shutting down');
      resolveStop();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  await metrics?.close();
  await hangar.stop();
  await bus.close();
  await db.close();
  unlock();
  return 0;
}

/**
 * Takes the data directory for this process. PGlite does not lock its files,
 * and two processes on one directory would each run a worker and write the
 * same database files. A lock left by a process that died (SIGKILL, crash) is
 * taken over.
 */
export function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const lockPath = join(dataDir, 'hangar.pid');
  for (let tries = 0; tries < 3; tries++) {
    try {
      writeFileSync(lockPath, `${process.pid}\n`, { flag: 'wx' });
      return () => {
        try {
          if (readFileSync(lockPath, 'utf8').trim() === String(process.pid)) unlinkSync(lockPath);
        } catch {
          // Already gone.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = Number.NaN;
    try {
      holder = Number(readFileSync(lockPath, 'utf8').trim());
    } catch {
      continue; // Released between our attempt and this read.
    }
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isAlive(holder)) {
      throw new UsageError(
        `data directory ${dataDir} is in use by another "hangar dev" (pid ${holder}); stop it or pass ` +
          `another --data-dir (delete ${lockPath} if pid ${holder} is not hangar)`,
      );
    }
    try {
      unlinkSync(lockPath);
    } catch {
      // Another process took it over first; the next attempt sees its lock.
    }
  }
  throw new UsageError(`could not lock data directory ${dataDir} (${lockPath})`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function requireDatabaseUrl(url: string | undefined, command: string): string {
  if (url === undefined) {
    throw new UsageError(
      `"hangar ${command}" needs DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres); ` +
        'for a single process on embedded Postgres use "hangar dev"',
    );
  }
  return url;
}
