import { APICallError } from '@ai-sdk/provider';
import { describe, expect, it } from 'vitest';
import { NonRetryableError, RetryAfterError } from '../errors.ts';
import { providerFailure } from './llm.ts';

function apiError(statusCode: number | undefined, responseHeaders?: Record<string, string>): APICallError {
  return new APICallError({
    message: 'provider said no',
    url: 'https://api.example.test/v1/chat',
    requestBodyValues: {},
    ...(statusCode === undefined ? {} : { statusCode }),
    ...(responseHeaders === undefined ? {} : { responseHeaders }),
  });
}

describe('provider failures', () => {
  it('maps a 429 to RetryAfterError from retry-after-ms, retry-after seconds or an HTTP date', () => {
    const now = Date.now();
    const ms = providerFailure(apiError(429, { 'retry-after-ms': '2500' }));
    expect(ms).toBeInstanceOf(RetryAfterError);
    expect((ms as RetryAfterError).notBefore.getTime()).toBeGreaterThanOrEqual(now + 2_500);
    const seconds = providerFailure(apiError(429, { 'Retry-After': '3' })) as RetryAfterError;
    expect(seconds.notBefore.getTime()).toBeGreaterThanOrEqual(now + 3_000);
    const date = new Date(Math.ceil((now + 60_000) / 1000) * 1000);
    const dated = providerFailure(apiError(429, { 'retry-after': date.toUTCString() })) as RetryAfterError;
    expect(dated.notBefore.getTime()).toBe(date.getTime());
    expect(seconds.message).toBe('provider said no (HTTP 429)');
  });

  it('leaves a 429 without a usable header to the backoff, and maps 4xx, 408, 5xx and network errors', () => {
    const bare = apiError(429);
    expect(providerFailure(bare)).toBe(bare);
    expect(providerFailure(apiError(429, { 'retry-after': 'soon' }))).not.toBeInstanceOf(RetryAfterError);
    expect(providerFailure(apiError(400))).toBeInstanceOf(NonRetryableError);
    expect(providerFailure(apiError(401))).toBeInstanceOf(NonRetryableError);
    const timeout = apiError(408);
    expect(providerFailure(timeout)).toBe(timeout);
    const server = apiError(503);
    expect(providerFailure(server)).toBe(server);
    const network = apiError(undefined);
    expect(providerFailure(network)).toBe(network);
    const plain = new TypeError('fetch failed');
    expect(providerFailure(plain)).toBe(plain);
  });
});
