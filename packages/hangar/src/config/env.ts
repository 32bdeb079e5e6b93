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
  /**
   * The crash-loop cap: a run whose worker died (killed, out of memory, lost) in this many attempts
   * ends `dead` (`attempts_exhausted`) instead of being re-queued again (default 5).
   */
  HANGAR_MAX_RUN_ATTEMPTS: z.coerce.number().int().min(1).max(1000).optional(),
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
   * A worker's capacity, `slots=10,browser=2`: a run takes its agent's `resources` (default one
   * slot) and a worker claims only what fits. `slots` defaults to the worker's concurrency.
   */
  HANGAR_WORKER_RESOURCES: z
    .string()
    .regex(
      /^\s*[a-z][a-z0-9_-]{0,31}\s*=\s*\d{1,6}\s*(,\s*[a-z][a-z0-9_-]{0,31}\s*=\s*\d{1,6}\s*)*$/,
      'name=amount,…',
    )
    .optional(),
  /** A worker stops claiming while its RSS is above this many MiB, and resumes below it (default: off). */
  HANGAR_WORKER_MAX_RSS_MB: z.coerce.number().int().min(64).max(1_048_576).optional(),
  /** Group commit of a worker's checkpoints: statements in flight at once (default 2) and most writes in one (default 64). */
  HANGAR_CHECKPOINT_IN_FLIGHT: z.coerce.number().int().min(1).max(32).optional(),
  HANGAR_CHECKPOINT_BATCH: z.coerce.number().int().min(1).max(1000).optional(),
  /** How long a busy worker with few free slots waits for more before it claims (ms, default 5; 0: at once). */
  HANGAR_CLAIM_GATHER_MS: z.coerce.number().int().min(0).max(1000).optional(),
  /** Runs of one tenant running at once across all workers (default: no cap). Set it on every worker. */
  HANGAR_TENANT_CONCURRENCY: z.coerce.number().int().min(1).max(100_000).optional(),
  /** Per-tenant caps overriding HANGAR_TENANT_CONCURRENCY: `acme=50,trial=2`. */
  HANGAR_TENANT_CONCURRENCY_OVERRIDES: z
    .string()
    .regex(/^\s*[^\s=,]{1,200}\s*=\s*\d{1,6}\s*(,\s*[^\s=,]{1,200}\s*=\s*\d{1,6}\s*)*$/, 'tenant=limit,…')
    .optional(),
  /** ctx.llm token deltas are coalesced into one event per this many ms (default 25; 0 = one event per delta). */
  HANGAR_TOKEN_COALESCE_MS: z.coerce.number().int().min(0).max(1000).optional(),
  /**
   * Redis for the event plane (cross-process fan-out and each thread's recent events), e.g.
   * `redis://127.0.0.1:6379`. Set it on every gateway and worker; unset, they use Postgres NOTIFY hints.
   */
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\/\S+$/, 'a redis:// or rediss:// URL')
    .optional(),
  /** Prefix of every Redis key and channel (default `hangar:<schema>:`): deployments sharing a Redis differ here. */
  HANGAR_REDIS_PREFIX: z.string().min(1).max(100).optional(),
  /** Events a thread's Redis stream keeps (approximately; default 10000). */
  HANGAR_STREAM_RETENTION_ENTRIES: z.coerce.number().int().min(1).max(1_000_000).optional(),
  /** Bytes of event JSON a thread's Redis stream keeps (estimated; default 8 MiB). */
  HANGAR_STREAM_RETENTION_BYTES: z.coerce.number().int().min(1024).max(1_073_741_824).optional(),
  /** A thread's Redis stream expires this many seconds after its last event (default 3600). */
  HANGAR_STREAM_RETENTION_SECONDS: z.coerce
    .number()
    .int()
    .min(1)
    .max(30 * 24 * 3600)
    .optional(),
  /**
   * HMAC-SHA256 key signing completion webhooks (`X-Hangar-Signature`). Set it on every gateway
   * and worker; unset, `webhook` is refused at create (`hangar dev` generates one per data dir).
   */
  HANGAR_WEBHOOK_SECRET: z.string().min(16, 'at least 16 characters').optional(),
  /** Attempts per webhook delivery before it is marked failed (default 10). */
  HANGAR_WEBHOOK_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).optional(),
  /** Timeout of one webhook POST in ms (default 10000). */
  HANGAR_WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).optional(),
  /** Port of the Prometheus metrics listener (`GET /metrics`); unset, none is opened. */
  HANGAR_METRICS_PORT: z.coerce.number().int().min(1).max(65535).optional(),
  /** Address the metrics listener binds (default 127.0.0.1; 0.0.0.0 for a scraper in the cluster). */
  HANGAR_METRICS_HOST: z.string().min(1).max(255).optional(),
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
