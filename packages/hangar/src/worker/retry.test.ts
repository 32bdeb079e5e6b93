import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { HangarError, NonRetryableError, RetryAfterError } from '../errors.ts';
import { defineAgent } from '../sdk/agent.ts';
import { backoffMs, classify, RETRY_DEFAULTS, resolveRetry } from './retry.ts';

describe('retry policy', () => {
  it('backs off exponentially with full jitter, capped', () => {
    const policy = { maxAttempts: 10, initialDelayMs: 100, maxDelayMs: 1_000 };
    for (const [failures, bound] of [
      [1, 100],
      [2, 200],
      [3, 400],
      [4, 800],
      [5, 1_000],
      [9, 1_000],
    ] as const) {
      const delays = Array.from({ length: 200 }, () => backoffMs(policy, failures));
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...delays)).toBeLessThan(bound);
      // Full jitter spreads over the whole range, not around the bound.
      expect(Math.min(...delays)).toBeLessThan(bound / 4);
      expect(Math.max(...delays)).toBeGreaterThan(bound / 2);
    }
  });

  it('classifies failures by their retry meaning', () => {
    expect(classify(new Error('socket hang up'))).toEqual({ retryable: true });
    expect(classify(new NonRetryableError('no such repo'))).toEqual({ retryable: false });
    const at = new Date(Date.now() + 5_000);
    expect(classify(new RetryAfterError(at))).toEqual({ retryable: true, notBefore: at });
    expect(classify(new HangarError('step_timeout', 'slow'))).toEqual({ retryable: true });
    expect(classify(new HangarError('step_not_serializable', 'bad value'))).toEqual({ retryable: false });
    expect(classify('a string')).toEqual({ retryable: true });
  });

  it('layers step over agent over defaults and rejects a bad policy naming the field', () => {
    expect(resolveRetry()).toEqual(RETRY_DEFAULTS);
    expect(resolveRetry({ maxAttempts: 5 }, { initialDelayMs: 10 })).toEqual({
      maxAttempts: 5,
      initialDelayMs: 10,
      maxDelayMs: RETRY_DEFAULTS.maxDelayMs,
    });
    expect(() => resolveRetry({ maxAttempts: 0 })).toThrow('retry.maxAttempts');
    expect(() => resolveRetry({ maxDelayMs: -1 })).toThrow('retry.maxDelayMs');
    expect(() =>
      defineAgent({ name: 'bad-retry', input: z.object({}), retry: { maxAttempts: 0 }, run: async () => 1 }),
    ).toThrow('agent "bad-retry": retry.maxAttempts');
    expect(() =>
      defineAgent({ name: 'bad-limit', input: z.object({}), limits: { maxSteps: -3 }, run: async () => 1 }),
    ).toThrow('limits.maxSteps');
  });
});
