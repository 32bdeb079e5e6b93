import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
} from 'cockatiel';
import { CircuitOpenError } from '../errors.ts';
import { classify } from './retry.ts';

export interface BreakerSettings {
  /** Consecutive retryable failures that open a breaker. */
  threshold: number;
  /** How long an open breaker refuses calls before it lets one test call through (half-open). */
  halfOpenAfterMs: number;
}

export const BREAKER_DEFAULTS: BreakerSettings = { threshold: 5, halfOpenAfterMs: 30_000 };

/** A state change a call caused, for the run's `lifecycle` channel. */
export type BreakerChange = { event: 'breaker.opened' | 'breaker.closed'; breaker: string };

/**
 * Circuit breakers by name (`llm:<provider>:<model>` for each model ctx.llm
 * calls, and whatever name an agent gives `ctx.step(…, { breaker })` for a
 * tool), built on cockatiel. They live in one worker process: each worker
 * learns on its own that a provider is down (a few failed calls), which
 * keeps them free of shared state. Only retryable failures count (a 400 is
 * the caller's fault, not the provider's). An open breaker refuses calls at
 * once with `CircuitOpenError`, a `RetryAfterError` until its half-open time,
 * so the step waits durably instead of hammering the provider.
 */
export class BreakerRegistry {
  private readonly breakers = new Map<string, { policy: CircuitBreakerPolicy; openedAt: number }>();

  constructor(private readonly settings: BreakerSettings = BREAKER_DEFAULTS) {}

  /**
   * Runs `fn` through the named breaker; `onChange` hears the state change this
   * call caused (the caller logs it and writes it to its run's events).
   */
  async execute<T>(
    name: string,
    fn: () => Promise<T>,
    onChange: (change: BreakerChange) => void,
  ): Promise<T> {
    const entry = this.get(name);
    const before = entry.policy.state;
    try {
      return await entry.policy.execute(fn);
    } catch (err) {
      if (err instanceof BrokenCircuitError) {
        throw new CircuitOpenError(name, new Date(entry.openedAt + this.settings.halfOpenAfterMs));
      }
      throw err;
    } finally {
      const after = entry.policy.state;
      if (after !== before && after === CircuitState.Open)
        onChange({ event: 'breaker.opened', breaker: name });
      if (after !== before && after === CircuitState.Closed)
        onChange({ event: 'breaker.closed', breaker: name });
    }
  }

  /** The breaker's state (for tests and diagnostics). */
  state(name: string): 'closed' | 'open' | 'half_open' {
    const state = this.breakers.get(name)?.policy.state ?? CircuitState.Closed;
    if (state === CircuitState.Closed) return 'closed';
    return state === CircuitState.HalfOpen ? 'half_open' : 'open';
  }

  /** Every breaker this process has used, with its state (for metrics). */
  snapshot(): Array<{ name: string; state: 'closed' | 'open' | 'half_open' }> {
    return [...this.breakers.keys()].sort().map((name) => ({ name, state: this.state(name) }));
  }

  private get(name: string): { policy: CircuitBreakerPolicy; openedAt: number } {
    let entry = this.breakers.get(name);
    if (entry !== undefined) return entry;
    const policy = circuitBreaker(
      handleWhen((err) => classify(err).retryable),
      {
        halfOpenAfter: this.settings.halfOpenAfterMs,
        breaker: new ConsecutiveBreaker(this.settings.threshold),
      },
    );
    const created = { policy, openedAt: 0 };
    policy.onBreak(() => {
      created.openedAt = Date.now();
    });
    entry = created;
    this.breakers.set(name, entry);
    return entry;
  }
}

/** The worker process's breakers, shared by every run it executes (see BreakerRegistry). */
export const processBreakers = new BreakerRegistry();
