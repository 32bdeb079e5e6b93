import { resolve } from 'node:path';
import pino from 'pino';
import type { Bus } from '../bus/bus.ts';
import { MemoryBus } from '../bus/memory.ts';
import { PostgresBus } from '../bus/postgres.ts';
import { parseEnv } from '../config/env.ts';
import { loadConfig } from '../config/load.ts';
import { DEFAULT_BODY_LIMIT } from '../gateway/app.ts';
import { startHangar } from '../runtime/start.ts';
import { openStore } from '../runtime/store.ts';
import type { LlmSettings } from '../sdk/llm.ts';
import { migrate } from '../store/migrate.ts';
import { type Flags, intFlag, UsageError } from './main.ts';

type ServerCommand = 'dev' | 'worker' | 'gateway' | 'migrate';

export async function runServerCommand(command: ServerCommand, flags: Flags): Promise<number> {
  const env = parseEnv(process.env);
  const logger = pino({ level: env.LOG_LEVEL, base: { pid: process.pid } });
  const schema = env.HANGAR_SCHEMA;

  if (command === 'migrate') {
    const url = requireDatabaseUrl(env.DATABASE_URL, command);
    const db = await openStore({ kind: 'postgres', url, ...(schema === undefined ? {} : { schema }) });
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
    apiKeys: {
      openai: env.OPENAI_API_KEY,
      anthropic: env.ANTHROPIC_API_KEY,
      compatible: env.HANGAR_LLM_API_KEY,
    },
  };
  const worker = {
    ...(env.HANGAR_LEASE_MS === undefined ? {} : { leaseMs: env.HANGAR_LEASE_MS }),
    concurrency: intFlag(flags, 'concurrency', env.HANGAR_WORKER_CONCURRENCY ?? 10, 1, 1000),
  };
  const port = intFlag(flags, 'port', 8123, 0, 65535);
  const bodyLimitBytes = loaded.config.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;

  let bus: Bus;
  let db: Awaited<ReturnType<typeof openStore>>;
  if (command === 'dev') {
    const dataDir = resolve(String(flags.values['data-dir'] ?? './.hangar'));
    db = await openStore({ kind: 'pglite', dataDir });
    bus = new MemoryBus();
  } else {
    const url = requireDatabaseUrl(env.DATABASE_URL, command);
    db = await openStore({ kind: 'postgres', url, ...(schema === undefined ? {} : { schema }) });
    const pgBus = new PostgresBus({ connectionString: url, schema: schema ?? 'public', logger });
    await pgBus.start();
    bus = pgBus;
  }

  const host = String(flags.values.host ?? (command === 'gateway' ? '0.0.0.0' : '127.0.0.1'));
  const hangar = await startHangar({
    db,
    bus,
    agents: loaded.agents,
    logger,
    llm,
    migrate: command === 'dev',
    ...(command === 'worker' ? {} : { gateway: { port, host, bodyLimitBytes } }),
    ...(command === 'gateway' ? {} : { worker }),
  });

  if (command === 'dev') {
    process.stdout.write(
      `hangar dev: serving ${[...loaded.agents.keys()].join(', ')} at ${hangar.url}\n` +
        `  data: ${resolve(String(flags.values['data-dir'] ?? './.hangar'))} (embedded Postgres)\n` +
        (llm.model === undefined ? '  llm: no model configured (set HANGAR_MODEL to use ctx.llm)\n' : '') +
        `  try: npx hangar run ${[...loaded.agents.keys()][0] ?? '<agent>'} --input '{}' --follow\n`,
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
  await hangar.stop();
  await bus.close();
  await db.close();
  return 0;
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
