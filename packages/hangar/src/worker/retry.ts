import { ExponentialBackoff, fullJitterGenerator } from 'cockatiel';
import { HangarError, isHangarError, NonRetryableError, RetryAfterError } from '../errors.ts';

/**
 * How a durable operation (`ctx.step`, `ctx.llm.generate`) is retried when it
 * throws. Retries are durable: the failed try is checkpointed with its count,
 * the run goes `waiting` until the backoff has passed and any worker picks it
 * up, so a run waiting for a retry holds no worker slot and survives crashes.
 * That is why the loop is the engine's (one try per execution) while the
 * delays come from cockatiel's exponential backoff with full jitter.
 */
export interface RetryPolicy {
  /** Tries in all, the first included. 1: never retry (a failure ends the run in `error` at once). */
  maxAttempts: number;
  /** Upper bound of the first backoff (full jitter: the delay is uniform in [0, bound)). */
  initialDelayMs: number;
  /** Cap of every backoff bound (bounds double per failure up to this). */
  maxDelayMs: number;
}

export const RETRY_DEFAULTS: RetryPolicy = { maxAttempts: 3, initialDelayMs: 1_000, maxDelayMs: 60_000 };

/** Per-step over per-agent over the defaults, checked (a bad policy is the agent author's mistake). */
export function resolveRetry(...layers: Array<Partial<RetryPolicy> | undefined>): RetryPolicy {
  const policy = { ...RETRY_DEFAULTS };
  for (const layer of layers) {
    if (layer === undefined) continue;
    if (typeof layer !== 'object' || layer === null) {
      throw new HangarError(
        'invalid_agent_call',
        'retry must be { maxAttempts, initialDelayMs, maxDelayMs }',
      );
    }
    for (const key of ['maxAttempts', 'initialDelayMs', 'maxDelayMs'] as const) {
      const value = layer[key];
      if (value === undefined) continue;
      if (typeof value !== 'number' || !Number.isFinite(value) || value < (key === 'maxAttempts' ? 1 : 0)) {
        throw new HangarError(
          'invalid_agent_call',
          `retry.${key} must be a ${key === 'maxAttempts' ? 'number ≥ 1' : 'non-negative number of ms'}`,
          { details: { field: `retry.${key}` } },
        );
      }
      policy[key] = key === 'maxAttempts' ? Math.floor(value) : value;
    }
  }
  return policy;
}

/** Whether a failure is worth another try, and not before when. */
export type Verdict = { retryable: false } | { retryable: true; notBefore?: Date };

/**
 * Error classification: `NonRetryableError` never, `RetryAfterError` not
 * before its time, a `HangarError` by its code's retry meaning (errors.ts:
 * `step_timeout` yes, `step_not_serializable` no, …), anything else an agent
 * or a library threw yes.
 */
export function classify(err: unknown): Verdict {
  if (err instanceof NonRetryableError) return { retryable: false };
  if (err instanceof RetryAfterError) return { retryable: true, notBefore: err.notBefore };
  if (isHangarError(err)) return err.retryable ? { retryable: true } : { retryable: false };
  return { retryable: true };
}

/** The backoff before try `failures + 1` (after `failures` failures, ≥ 1): cockatiel's full jitter. */
export function backoffMs(policy: RetryPolicy, failures: number): number {
  let backoff = new ExponentialBackoff({
    generator: fullJitterGenerator,
    initialDelay: policy.initialDelayMs,
    maxDelay: policy.maxDelayMs,
  }).next();
  for (let i = 1; i < failures; i++) backoff = backoff.next(undefined);
  return backoff.duration;
}

/**
 * Postgres cannot store U+0000 in text or `jsonb`: an error message carrying one (a
 * decoded binary, a provider's raw response) would fail the final commit on every
 * attempt, and the run would never end.
 */
export function storable<T>(value: T): T {
  return JSON.parse(
    JSON.stringify(value, (_key, v: unknown) =>
      typeof v === 'string' ? v.replaceAll('\u0000', '\uFFFD') : v,
    ),
  ) as T;
}
