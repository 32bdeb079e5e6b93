import type { Logger } from 'pino';
import { HangarError, isHangarError, toRunError } from '../errors.ts';
import type { PendingEvent } from '../events/envelope.ts';
import type { StepWrite } from '../steps/repository.ts';
import type { BreakerChange, BreakerRegistry } from './breakers.ts';
import type { RunCommitter } from './committer.ts';
import { backoffMs, classify, type RetryPolicy, storable } from './retry.ts';

/**
 * One try of a durable operation (`ctx.step`, `ctx.llm.generate`) and what
 * happens when it fails: the try runs through its circuit breaker, bounded
 * by its timeout, and a failure is either the operation's error, the end of
 * its retries (`retries_exhausted`: the run goes `dead`), or a durable wait
 * for the next try (worker/retry.ts) with the failed try's output fenced off.
 */
export interface OpTry {
  index: number;
  name: string;
  kind: 'step' | 'llm';
  /** Failed tries recorded before this one (the step row's `attempt` when it is `failed`). */
  failures: number;
  policy: RetryPolicy;
  timeoutMs: number | undefined;
  breaker: string | undefined;
  startedAt: Date;
}

/** What a try needs of the run attempt it belongs to (worker/context.ts). */
export interface TryHost {
  readonly runId: string;
  readonly attempt: number;
  /** The attempt's signal: cancelled, lease lost, over budget, shutting down. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly committer: RunCommitter;
  readonly breakers: BreakerRegistry;
  discardBoundary(): Promise<{ afterSeq: number; discard: boolean }>;
  /** Whether the attempt already suspended itself (a parallel operation did). */
  suspended(): boolean;
  /** Records that the attempt waits until `until` and throws its suspension signal. */
  suspend(until: Date): never;
}

/** The failed step row a `retries_exhausted` error ends the run with (execute.ts records it). */
export const exhaustedSteps = new WeakMap<HangarError, StepWrite>();

export async function runTry<T>(
  host: TryHost,
  op: OpTry,
  body: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(host.signal.reason);
  host.signal.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const once = (): Promise<T> => {
    const execution = body(controller.signal);
    const ms = op.timeoutMs;
    if (ms === undefined) return execution;
    return Promise.race([
      execution,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const err = new HangarError('step_timeout', `step "${op.name}" timed out after ${ms} ms`, {
            details: { step: op.name, timeout_ms: ms },
          });
          controller.abort(err);
          reject(err);
        }, ms);
      }),
    ]);
  };
  try {
    if (op.breaker === undefined) return await once();
    // The timeout is inside the breaker: a try that timed out counts as a failure of the provider.
    return await host.breakers.execute(op.breaker, once, (change) => breakerChanged(host, change));
  } catch (err) {
    return await retryOrFail(host, op, err);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    host.signal.removeEventListener('abort', onAbort);
  }
}

/**
 * A try failed. Not retried: a run that is stopping (cancel, lost lease,
 * budget, shutdown), a non-retryable error, a policy of one attempt (the
 * error ends the run in `error`). Out of attempts: `retries_exhausted`, the
 * run ends `dead`. Otherwise the failure is checkpointed with its try count
 * and the run waits durably for the backoff (no worker slot held); the try's
 * partial output is fenced off by an `output.discarded` marker, in the same
 * write.
 */
async function retryOrFail(host: TryHost, op: OpTry, err: unknown): Promise<never> {
  if (host.signal.aborted || host.suspended() || isHangarError(err, 'lease_lost')) throw err;
  const verdict = classify(err);
  if (!verdict.retryable || op.policy.maxAttempts <= 1) throw err;
  const tries = op.failures + 1;
  const error = storable(toRunError(err));
  const failed: StepWrite = {
    index: op.index,
    name: op.name,
    kind: op.kind,
    status: 'failed',
    // The checkpoint statement stores this in the step's error column (runs/checkpoint.ts).
    result: { error },
    attempt: tries,
    startedAt: op.startedAt,
  };
  if (tries >= op.policy.maxAttempts) {
    const exhausted = new HangarError(
      'retries_exhausted',
      `step "${op.name}" failed ${tries} times (retry.maxAttempts ${op.policy.maxAttempts}); last error: ${error.message}`,
      { cause: err, details: { step: op.name, step_index: op.index, attempts: tries, last_error: error } },
    );
    exhaustedSteps.set(exhausted, failed);
    throw exhausted;
  }
  const backoff = backoffMs(op.policy, tries);
  const wakeAt = new Date(Math.max(Date.now() + backoff, verdict.notBefore?.getTime() ?? 0));
  // What the failed try emitted is logged first, so the marker can say where it starts.
  await host.committer.flush();
  const boundary = await host.discardBoundary();
  const events: PendingEvent[] = [];
  if (boundary.discard) events.push(discardMarker(host, boundary.afterSeq, 'retry', op.name));
  events.push({
    channel: 'lifecycle',
    data: {
      event: 'run.waiting',
      status: 'waiting',
      until: wakeAt.toISOString(),
      reason: 'retry',
      step: op.name,
      step_attempt: tries,
      error,
    },
  });
  host.log.warn(
    { err, step: op.name, step_attempt: tries, retry_at: wakeAt.toISOString() },
    'step failed; retrying after a durable backoff',
  );
  // Thread state is not saved here: the replay recomputes it and the next checkpoint saves it.
  await host.committer.commit({ step: failed, events, end: { status: 'waiting', until: wakeAt } });
  return host.suspend(wakeAt);
}

/**
 * The attempt-fencing marker (docs/streaming.md): clients drop the run's
 * non-lifecycle events between `afterSeq` and the marker.
 */
export function discardMarker(
  run: { runId: string; attempt: number },
  afterSeq: number,
  reason: 'retry' | 'resume',
  step?: string,
): PendingEvent {
  return {
    channel: 'lifecycle',
    data: {
      event: 'output.discarded',
      run_id: run.runId,
      after_seq: afterSeq,
      reason,
      attempt: run.attempt,
      ...(step === undefined ? {} : { step }),
    },
  };
}

/** A breaker this try opened or closed: in the worker's log and the run's events. */
function breakerChanged(host: TryHost, change: BreakerChange): void {
  if (change.event === 'breaker.opened') host.log.warn({ breaker: change.breaker }, 'circuit breaker opened');
  else host.log.info({ breaker: change.breaker }, 'circuit breaker closed');
  host.committer.emit({ channel: 'lifecycle', data: change }).catch(() => {});
}
