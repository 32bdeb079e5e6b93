import { parseArgs } from 'node:util';
import { ConfigError } from '../config/load.ts';
import { APPROVALS_HELP, runApprovalsCommand } from './approvals.ts';
import { DEAD_LETTERS_HELP, runDeadLettersCommand } from './dead-letters.ts';
import { KEYS_HELP, runKeysCommand } from './keys.ts';
import { runClientCommand } from './run.ts';
import { runServerCommand } from './serve.ts';

const HELP = `hangar — durable runtime for long-running AI agents

Usage:
  hangar dev      [--port 8123] [--host 127.0.0.1] [--data-dir ./.hangar] [--config ./hangar.config.ts]
                  [--auth none|keys]
                  One process: API + worker on embedded Postgres (PGlite) and an in-process bus.
                  Without API keys (the default on localhost) only on 127.0.0.1, ::1 or localhost.
  hangar worker   [--config ./hangar.config.ts] [--concurrency N]      (needs DATABASE_URL)
  hangar gateway  [--port 8123] [--host 0.0.0.0] [--config ./hangar.config.ts]   (needs DATABASE_URL)
                  Requires API keys (--auth none is accepted on localhost only).
  hangar migrate                                                        (needs DATABASE_URL)
  hangar run <agent> --input '<json>' [--follow] [--thread <id>] [--url http://127.0.0.1:8123]
      [--api-key <key>]   (or HANGAR_API_KEY; needed by a gateway that requires keys)
                  Submits a run to a server and prints it (with --follow, its events until it ends).
${KEYS_HELP}
${APPROVALS_HELP}
${DEAD_LETTERS_HELP}

Environment: DATABASE_URL, HANGAR_SCHEMA, HANGAR_MODEL, HANGAR_LLM_BASE_URL, HANGAR_LLM_API_KEY,
OPENAI_API_KEY, ANTHROPIC_API_KEY, HANGAR_LEASE_MS, HANGAR_WORKER_CONCURRENCY, HANGAR_IDEMPOTENCY_TTL_HOURS,
HANGAR_AUTH, HANGAR_KEY_CACHE_SECONDS, HANGAR_MAX_PENDING_RUNS_PER_TENANT, HANGAR_MAX_PENDING_RUNS,
HANGAR_KEY_RATE_LIMIT, HANGAR_KEY_RATE_BURST, HANGAR_MAX_STREAMS_PER_KEY, HANGAR_MAX_RUN_ATTEMPTS, LOG_LEVEL.
`;

/** The CLI. Returns the exit code; user errors print one line, never a stack. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'dev':
      case 'worker':
      case 'gateway':
      case 'migrate':
        return await runServerCommand(command, parseFlags(rest));
      case 'run':
        return await runClientCommand(parseFlags(rest));
      case 'keys':
        return await runKeysCommand(parseFlags(rest));
      case 'approvals':
      case 'approve':
      case 'reject':
        return await runApprovalsCommand(command, parseFlags(rest));
      case 'dead-letters':
        return await runDeadLettersCommand(parseFlags(rest));
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(HELP);
        return command === undefined ? 1 : 0;
      default:
        process.stderr.write(`hangar: unknown command "${command}"\n\n${HELP}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError) {
      process.stderr.write(`hangar: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`hangar: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface Flags {
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
}

function parseFlags(args: string[]): Flags {
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        'data-dir': { type: 'string' },
        config: { type: 'string' },
        concurrency: { type: 'string' },
        input: { type: 'string' },
        follow: { type: 'boolean', short: 'f' },
        thread: { type: 'string' },
        url: { type: 'string' },
        'api-key': { type: 'string' },
        auth: { type: 'string' },
        tenant: { type: 'string' },
        name: { type: 'string' },
        scopes: { type: 'string' },
        'database-url': { type: 'string' },
        json: { type: 'boolean' },
        status: { type: 'string' },
        agent: { type: 'string' },
        data: { type: 'string' },
        comment: { type: 'string' },
        state: { type: 'string' },
      },
    });
    return { positionals, values };
  } catch (err) {
    throw new UsageError(`${err instanceof Error ? err.message : String(err)} (see hangar --help)`);
  }
}

export function intFlag(flags: Flags, name: string, fallback: number, min: number, max: number): number {
  const raw = flags.values[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (typeof raw !== 'string' || !Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${String(raw)}"`);
  }
  return value;
}
