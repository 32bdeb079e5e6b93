/**
 * The closed set of error codes Hangar reports, over HTTP and on runs.
 *
 * `api` codes answer HTTP requests with their status; `run` codes are the
 * `error.code` of a run that ended in `error` (an HTTP status only if one ever
 * surfaces through the API, which is then a bug: 500). Each says whether the
 * failure may be retried. `docs/errors.md` documents each one;
 * `errors.test.ts` keeps the two in sync.
 */
interface ErrorCodeInfo {
  kind: 'api' | 'run';
  http: number;
  retryable: boolean;
  summary: string;
}

const api = (http: number, retryable: boolean, summary: string): ErrorCodeInfo => ({
  kind: 'api',
  http,
  retryable,
  summary,
});
const run = (retryable: boolean, summary: string): ErrorCodeInfo => ({
  kind: 'run',
  http: 500,
  retryable,
  summary,
});

export const ERROR_CODES = {
  // Request errors (gateway).
  invalid_json: api(400, false, 'The request body is not valid JSON.'),
  invalid_request: api(400, false, 'A path, query or body field is missing or has the wrong type.'),
  unauthorized: api(401, false, 'No valid API key was presented.'),
  forbidden: api(403, false, 'The API key lacks the scope this operation needs.'),
  not_found: api(404, false, 'The object does not exist (or belongs to another tenant).'),
  agent_not_found: api(404, false, 'No agent with that name or assistant id is configured.'),
  conflict: api(409, false, 'The request conflicts with the current state of the object.'),
  body_too_large: api(413, false, 'The request body exceeds the configured limit.'),
  unsupported_media_type: api(415, false, 'The request body must be application/json.'),
  input_invalid: api(422, false, "The run input does not match the agent's input schema."),
  idempotency_key_reused: api(422, false, 'The Idempotency-Key was already used with a different request.'),
  rate_limited: api(429, true, 'Too many requests or too many pending runs; retry after the given delay.'),
  internal: api(500, true, 'An unexpected server error. This is a bug; please report it.'),
  unavailable: api(503, true, 'The server is shutting down or a dependency is unreachable.'),
  // Run errors: the `error.code` of a run that ended in `error`.
  agent_error: run(true, 'The agent code threw an error.'),
  output_invalid: run(false, "The agent's return value does not match its output schema."),
  step_not_serializable: run(false, 'A step returned a value that cannot be stored as JSON.'),
  nondeterminism: run(false, "The agent's step sequence differs from the run's recorded history."),
  llm_not_configured: run(false, 'The agent called ctx.llm but no model is configured.'),
  step_timeout: run(true, 'A step ran longer than its timeout and was aborted.'),
  retries_exhausted: run(
    false,
    'A step failed on every attempt its retry policy allows; the run is dead (redrive it from the dead-letter view).',
  ),
  budget_exceeded: run(
    false,
    'The run went over one of its limits (steps, tokens, cost or duration); details name the budget.',
  ),
  circuit_open: run(
    true,
    'A circuit breaker is open after repeated failures of a provider or tool; the step waits for it to half-open.',
  ),
  invalid_agent_call: run(
    false,
    'The agent used the SDK wrongly (a step inside a step, a bad channel name, …).',
  ),
  cancelled: run(
    false,
    'The run was cancelled: by an API request, a multitask strategy or a client that disconnected.',
  ),
  interrupt_expired: run(
    false,
    'A ctx.interrupt waited past its timeout without an answer and has no onTimeout default.',
  ),
  lease_lost: run(
    true,
    'The worker lost its lease on the run; another worker owns it now (never stored on a run).',
  ),
  attempts_exhausted: run(
    false,
    "The run's worker died in every attempt up to the crash-loop cap; the run is a dead letter.",
  ),
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface HangarErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
  /** Overrides the code's default retry meaning. */
  retryable?: boolean;
}

/**
 * The one error class Hangar throws on purpose. `code` is from the closed set
 * above; `details` is safe to show to API clients (no stack, no secrets).
 *
 * @example
 * throw new HangarError('not_found', `run ${runId} not found`, { details: { run_id: runId } });
 */
export class HangarError extends Error {
  override readonly name = 'HangarError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: HangarErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  /** The JSON error shape of the API: `{ error, message, details? }`. */
  toJSON(): { error: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { error: this.code, message: this.message }
      : { error: this.code, message: this.message, details: this.details };
  }
}

export function isHangarError(err: unknown, code?: ErrorCode): err is HangarError {
  return err instanceof HangarError && (code === undefined || err.code === code);
}

/** The error stored on a failed run: type and message, never a stack. */
export interface RunErrorRecord {
  code: ErrorCode;
  type: string;
  message: string;
  details?: Record<string, unknown>;
}

export function toRunError(err: unknown): RunErrorRecord {
  if (err instanceof CircuitOpenError) {
    return { code: 'circuit_open', type: err.name, message: err.message, details: { breaker: err.breaker } };
  }
  if (err instanceof HangarError) {
    const record: RunErrorRecord = { code: err.code, type: err.name, message: err.message };
    if (err.details !== undefined) record.details = err.details;
    return record;
  }
  if (err instanceof Error) {
    return { code: 'agent_error', type: err.name || err.constructor.name, message: err.message };
  }
  return { code: 'agent_error', type: typeof err, message: String(err) };
}

/**
 * Thrown by agent code (or mapped from a provider's 4xx) for a failure that
 * retrying cannot fix: the step fails at once and the run ends in `error`,
 * whatever the retry policy allows.
 *
 * @example
 * if (res.status === 404) throw new NonRetryableError(`repository ${repo} does not exist`);
 */
export class NonRetryableError extends Error {
  override readonly name: string = 'NonRetryableError';
}

/**
 * Thrown by agent code (or mapped from a provider's 429 `Retry-After`) to say
 * when the step may be tried again: the next try waits at least `delayMs` (or
 * until `Date`), durably, without holding a worker.
 *
 * @example
 * if (res.status === 429) throw new RetryAfterError(Number(res.headers.get('retry-after')) * 1000);
 */
export class RetryAfterError extends Error {
  override readonly name: string = 'RetryAfterError';
  /** The earliest time the next try may start. */
  readonly notBefore: Date;

  constructor(delay: number | Date, message?: string, options?: { cause?: unknown }) {
    const at = delay instanceof Date ? delay : new Date(Date.now() + Math.max(0, delay));
    super(message ?? `retry after ${at.toISOString()}`, options);
    this.notBefore = at;
  }
}

/** A call refused by an open circuit breaker (worker/breakers.ts): retryable once it half-opens. */
export class CircuitOpenError extends RetryAfterError {
  override readonly name = 'CircuitOpenError';
  constructor(
    readonly breaker: string,
    halfOpenAt: Date,
  ) {
    super(
      halfOpenAt,
      `circuit breaker "${breaker}" is open after repeated failures; the next call is allowed at ${halfOpenAt.toISOString()}`,
    );
  }
}
