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
  /** How long the gateway remembers an `Idempotency-Key`, in hours (default 72). */
  HANGAR_IDEMPOTENCY_TTL_HOURS: z.coerce
    .number()
    .positive()
    .max(24 * 365)
    .optional(),
  /** Runs one worker executes at once. */
  HANGAR_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(1000).optional(),
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
