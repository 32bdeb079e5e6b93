/**
 * The errors the client throws. A gateway refusal keeps the API's error body
 * (`{ error, message, details }`, docs/errors.md) so callers can branch on
 * `code`; `retryable` says whether repeating the same request may succeed,
 * which is what the reconnect and create-retry loops go by.
 */

/** A gateway answered with an error status. */
export class HangarApiError extends Error {
  override readonly name = 'HangarApiError';
  /** The HTTP status. */
  readonly status: number;
  /** The API's error code (`not_found`, `idempotency_key_reused`, …), or `http_<status>` for a non-JSON body. */
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;
  /** From `Retry-After`, when the gateway sent one. */
  readonly retryAfterMs: number | undefined;

  constructor(
    status: number,
    code: string,
    message: string,
    details?: Record<string, unknown>,
    retryAfterMs?: number,
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfterMs = retryAfterMs;
  }

  /** 5xx, 408 and 429 may succeed when repeated; any other 4xx will not. */
  get retryable(): boolean {
    return isRetryableStatus(this.status);
  }
}

/**
 * A stream ended in a way that reconnecting cannot fix (a terminal close
 * code, a refused command), or the reconnect budget ran out.
 */
export class StreamError extends Error {
  override readonly name = 'StreamError';
  /** The WebSocket / SSE close code when the server gave one. */
  readonly closeCode: number | undefined;
  readonly retryable: boolean;

  constructor(message: string, options: { closeCode?: number; retryable: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.closeCode = options.closeCode;
    this.retryable = options.retryable;
  }
}

/** 5xx, 408 (timeout) and 429 (rate limited) are worth repeating; other statuses are the caller's to fix. */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

/** Whether a failure may go away by trying again: network errors do, API errors by status. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof HangarApiError || err instanceof StreamError) return err.retryable;
  if (isAbort(err)) return false;
  // fetch rejects with a TypeError on network failures (refused, reset, DNS); a body read fails likewise.
  return true;
}

export function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError');
}
