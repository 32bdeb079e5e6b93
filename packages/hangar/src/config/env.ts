import { z } from 'zod';

/**
 * The environment, parsed once at the edge (the CLI). Library code receives
 * resolved options and never reads `process.env`.
 */
const EnvSchema = z.object({
  /** Postgres connection URL for `hangar worker | gateway | migrate`. */
  DATABASE_URL: z.string().min(1).optional(),
  /** Postgres schema holding Hangar's tables (default `public`). */
  HANGAR_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]*$/, 'a lower-case SQL identifier')
    .optional(),
  /** Named prepared statements on Postgres (default on); `false` behind a pooler that can't keep them. */
  HANGAR_PG_PREPARED: z.enum(['true', 'false']).default('true'),
  /** Default language model, e.g. `openai:gpt-4o-mini`. */
  HANGAR_MODEL: z.string().min(1).optional(),
  /** Base URL of an OpenAI-compatible server (for `compatible:<model>`). */
  HANGAR_LLM_BASE_URL: z.string().url().optional(),
  /** API key for the OpenAI-compatible server. */
  HANGAR_LLM_API_KEY: z.string().optional(),
  OPENAI_API_KEY: z.string().optional(),
  ANTHROPIC_API_KEY: z.string().optional(),
  /** pino level: fatal, error, warn, info, debug, trace, silent. */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Worker lease length in ms (crash → resume time is about this plus the sweep interval). */
  HANGAR_LEASE_MS: z.coerce.number().int().min(500).optional(),
  /** On SIGTERM, how long a `hangar worker` lets runs finish their current step before aborting them (default 10 s). */
  HANGAR_DRAIN_MS: z.coerce.number().int().min(0).max(3_600_000).optional(),
  /** How long the gateway remembers an `Idempotency-Key`, in hours (default 72). */
  HANGAR_IDEMPOTENCY_TTL_HOURS: z.coerce
    .number()
    .positive()
    .max(24 * 365)
    .optional(),
  /** Runs one worker executes at once. */
  HANGAR_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(1000).optional(),
  /**
   * HMAC-SHA256 key signing completion webhooks (`X-Hangar-Signature`). Set it on every gateway
   * and worker; unset, `webhook` is refused at create (`hangar dev` generates one per data dir).
   */
  HANGAR_WEBHOOK_SECRET: z.string().min(16, 'at least 16 characters').optional(),
  /** Attempts per webhook delivery before it is marked failed (default 10). */
  HANGAR_WEBHOOK_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).optional(),
  /** Timeout of one webhook POST in ms (default 10000). */
  HANGAR_WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).optional(),
  /**
   * Deliver webhooks to loopback and private-network addresses (default `false`; `hangar dev`
   * defaults to `true`). Off, a webhook URL that is or resolves to one is refused (SSRF guard).
   */
  HANGAR_WEBHOOK_ALLOW_PRIVATE: z.enum(['true', 'false']).optional(),
  /** Gateway authentication: `keys` or `none` (`none` only on localhost; default `keys`, `none` for `hangar dev` on localhost). */
  HANGAR_AUTH: z.enum(['keys', 'none']).optional(),
  /** How long a gateway caches an API key lookup, in seconds: a revoked key works at most this long (default 10). */
  HANGAR_KEY_CACHE_SECONDS: z.coerce.number().min(0).max(3600).optional(),
  /** Pending runs per tenant before creates get 429 (default 1000; 0 = no limit). */
  HANGAR_MAX_PENDING_RUNS_PER_TENANT: z.coerce.number().int().min(0).optional(),
  /** Pending runs over all tenants before creates get 429 (default 10000; 0 = no limit). */
  HANGAR_MAX_PENDING_RUNS: z.coerce.number().int().min(0).optional(),
  /** Requests per second per API key, per gateway replica (default 100; 0 = no limit). */
  HANGAR_KEY_RATE_LIMIT: z.coerce.number().min(0).optional(),
  /** Burst per API key above that rate (default 200). */
  HANGAR_KEY_RATE_BURST: z.coerce.number().int().min(1).optional(),
  /** Open streams / waits / joins per API key, per gateway replica (default 100; 0 = no limit). */
  HANGAR_MAX_STREAMS_PER_KEY: z.coerce.number().int().min(0).optional(),
});

export type Env = z.infer<typeof EnvSchema>;

export function parseEnv(source: NodeJS.ProcessEnv): Env {
  const parsed = EnvSchema.safeParse(source);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`environment variable ${String(issue?.path[0])} is invalid: ${issue?.message}`);
  }
  return parsed.data;
}
