/**
 * Reconnect timing: exponential backoff with full jitter (a uniformly random
 * delay between 0 and the capped exponential), so that the clients of a
 * gateway that went away do not all come back in the same instant.
 */
export interface ReconnectOptions {
  /** The first delay's cap, in ms. Default 250. */
  initialDelayMs?: number;
  /** The largest delay, in ms. Default 10 000. */
  maxDelayMs?: number;
  /** Growth per failed attempt. Default 2. */
  multiplier?: number;
  /**
   * Consecutive failed attempts before the stream gives up with the last
   * error. Default Infinity; a connection that delivered an event resets the count.
   */
  maxAttempts?: number;
  /** A source of randomness in [0, 1); Math.random by default. */
  random?: () => number;
}

export type ReconnectPolicy = Required<ReconnectOptions>;

export function reconnectPolicy(options: ReconnectOptions = {}): ReconnectPolicy {
  const policy = {
    initialDelayMs: options.initialDelayMs ?? 250,
    maxDelayMs: options.maxDelayMs ?? 10_000,
    multiplier: options.multiplier ?? 2,
    maxAttempts: options.maxAttempts ?? Number.POSITIVE_INFINITY,
    random: options.random ?? Math.random,
  };
  if (!(policy.initialDelayMs >= 0) || !(policy.maxDelayMs >= policy.initialDelayMs)) {
    throw new RangeError('reconnect: need 0 <= initialDelayMs <= maxDelayMs');
  }
  if (!(policy.multiplier >= 1)) throw new RangeError('reconnect: multiplier must be >= 1');
  if (!(policy.maxAttempts >= 0)) throw new RangeError('reconnect: maxAttempts must be >= 0');
  return policy;
}

/**
 * The delay before reconnect attempt `attempt` (1 for the first retry), at
 * least `floorMs` (a server's Retry-After).
 *
 * @example
 * backoffDelay(reconnectPolicy({ random: () => 0.5 }), 3); // 0.5 × min(10 000, 250 × 2²) = 500
 */
export function backoffDelay(policy: ReconnectPolicy, attempt: number, floorMs = 0): number {
  const exponential = policy.initialDelayMs * policy.multiplier ** Math.max(0, attempt - 1);
  const cap = Math.min(policy.maxDelayMs, exponential);
  return Math.max(floorMs, Math.floor(policy.random() * cap));
}

/** Resolves after `ms`, or at once when `signal` aborts (the caller checks the signal). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
