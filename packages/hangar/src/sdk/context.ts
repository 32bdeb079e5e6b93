import type { Logger } from 'pino';
import type { Duration } from '../util/duration.ts';
import type { RetryPolicy } from '../worker/retry.ts';
import type { LlmRequest, LlmResult } from './llm.ts';

/** What a step's function receives. */
export interface StepContext {
  /** Aborted when the run is cancelled, loses its lease, or the step times out. */
  signal: AbortSignal;
  /**
   * The run's attempt this execution belongs to (`RunContext.attempt`). A step
   * first executed after a lost worker's run resumed already sees more than 1,
   * so use `idempotencyKey`, not this number, to recognize a repeat.
   */
  attempt: number;
  /**
   * Stable across re-executions of this step (`run:step`): pass it to external
   * systems so a repeated call is recognized and not performed twice.
   */
  idempotencyKey: string;
}

export interface StepOptions {
  /**
   * Abort the step (via its signal) and fail it with `step_timeout` after this
   * long (a retryable failure). Default: the agent's `stepTimeout`, else none.
   */
  timeout?: Duration;
  /** This step's retry policy, over the agent's `retry` (see `RetryPolicy`). */
  retry?: Partial<RetryPolicy>;
  /**
   * Runs the step through the worker's circuit breaker of this name (e.g. the
   * tool it calls): after repeated failures the breaker opens and the step
   * fails fast with `circuit_open`, waiting durably until it half-opens.
   */
  breaker?: string;
}

/**
 * The thread's state, persisted across runs on the same thread. Change it
 * between steps, not inside one: a replay re-runs the code between steps but
 * not completed steps, so a change made inside a step would be lost (it throws
 * `invalid_agent_call`).
 */
export interface ThreadState<S extends Record<string, unknown> = Record<string, unknown>> {
  /** The current values (a copy). */
  get(): S;
  /** Replaces the values; saved with the next checkpoint. */
  set(values: S): void;
  /** Shallow-merges a patch into the values; saved with the next checkpoint. */
  update(patch: Partial<S>): void;
}

export interface LlmClient {
  /**
   * Calls the configured language model as a durable step named `name`: text
   * deltas stream to the `messages` channel, token usage is recorded with the
   * step, and on resume the recorded result is returned without a new call.
   */
  generate(name: string, request: LlmRequest): Promise<LlmResult>;
}

/** How long an interrupt waits, and what happens when nobody answers in time. */
export interface InterruptOptions<T = unknown> {
  /** After this long without an answer the interrupt expires (durably: a sweep on any worker). */
  timeout?: Duration;
  /**
   * What an expired interrupt does: `{ resume: value }` resumes the run with
   * `value` as the answer; `'error'` (the default) makes `ctx.interrupt` throw
   * a `HangarError` with code `interrupt_expired` (uncaught, the run ends in
   * error with that code).
   */
  onTimeout?: { resume: T } | 'error';
}

/** What `ctx.waitForEvent` waits for, and how long. */
export interface WaitForEventOptions {
  /**
   * Only an event whose payload contains this JSON (Postgres `@>`: every
   * field given, with the same value) matches. Without it, any event of the name.
   */
  match?: Record<string, unknown>;
  /** After this long without a matching event, `waitForEvent` returns `null`. */
  timeout?: Duration;
}

/**
 * The run context an agent's `run(ctx, input)` receives.
 *
 * @example
 * async run(ctx, input) {
 *   const page = await ctx.step('fetch', ({ signal }) => fetch(input.url, { signal }).then((r) => r.text()));
 *   await ctx.sleep('10m');                       // frees the worker; resumes on any worker
 *   const { text } = await ctx.llm.generate('summarize', { prompt: page.slice(0, 4000) });
 *   ctx.state.update({ lastSummary: text });      // thread state, kept across runs
 *   return { summary: text };
 * }
 */
export interface RunContext {
  readonly runId: string;
  readonly threadId: string;
  readonly agent: string;
  /**
   * The run's attempt number: 1 on first execution, +1 each time the run resumes
   * after a lost worker. Waking from a durable sleep or a retry's backoff, or
   * being handed back by a worker shutting down, keeps the number.
   */
  readonly attempt: number;
  /** Aborted when the run is cancelled or this worker loses the run. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly state: ThreadState;
  readonly llm: LlmClient;
  /**
   * Runs `fn` once per run: its result is checkpointed, and on resume the
   * recorded result is returned without calling `fn` again. The result must be
   * JSON-serializable.
   */
  step<T>(name: string, fn: (step: StepContext) => T | Promise<T>, options?: StepOptions): Promise<T>;
  /** Emits an event on a channel (`custom` for application data). */
  emit(channel: string, data: unknown): Promise<void>;
  /** Sleeps durably: the worker is freed and the run resumes on any worker when the time is up. */
  sleep(duration: Duration): Promise<void>;
  /**
   * Asks a human (or any client) for input: the run checkpoints as
   * `interrupted`, emits `input.requested` with the interrupt's id and
   * `payload`, and frees the worker. When the interrupt is answered (exactly
   * once: `POST /approvals/{id}`, or LangGraph's `command: { resume }` on a run
   * create) the run resumes on any worker and this call returns the answer:
   * the `resume` value as sent, or `{ decision, data, comment }` for an
   * approval. Like a step, it is a durable operation: code before it runs
   * again on resume, completed steps do not.
   *
   * @example
   * const answer = await ctx.interrupt<{ decision: string }>(
   *   { question: 'Refund $120 to order 1234?' },
   *   { timeout: '24h', onTimeout: { resume: { decision: 'reject' } } },
   * );
   * if (answer.decision === 'approve') await ctx.step('refund', () => refund(1234));
   */
  interrupt<T = unknown>(payload: unknown, options?: InterruptOptions<T>): Promise<T>;
  /**
   * Waits durably for an external event on the run's thread
   * (`POST /threads/{thread_id}/events` with `{ name, payload }`) and returns
   * its payload, or `null` after `timeout`. The worker is freed while it
   * waits. Events are kept until consumed: one sent before the run reaches
   * this call is matched when it does. Each event is consumed once.
   *
   * @example
   * const paid = await ctx.waitForEvent<{ order: string; amount: number }>('payment.settled', {
   *   match: { order: input.orderId },
   *   timeout: '2h',
   * });
   * if (paid === null) return { status: 'unpaid' };
   */
  waitForEvent<T = unknown>(name: string, options?: WaitForEventOptions): Promise<T | null>;
}
