import type { Logger } from 'pino';
import type { Bus } from '../bus/bus.ts';
import { HangarError, isHangarError, toRunError } from '../errors.ts';
import type { LifecycleData } from '../events/envelope.ts';
import { matchSignals } from '../hitl/signals.ts';
import { type CancelRequest, cancelledError, cancelledEvent, deleteRolledBack } from '../runs/cancel.ts';
import { readDiscardBoundary } from '../runs/checkpoint.ts';
import { releaseRun, renewLease } from '../runs/repository.ts';
import type { ClaimedRun } from '../runs/types.ts';
import type { Agent } from '../sdk/agent.ts';
import type { LlmSettings } from '../sdk/llm.ts';
import { jsonRoundTrip } from '../steps/serialize.ts';
import type { SqlClient } from '../store/sql.ts';
import { type BreakerRegistry, processBreakers } from './breakers.ts';
import { budgetStatus, RunBudget, runLimits } from './budgets.ts';
import { type CheckpointWriter, directCheckpoints } from './checkpoints.ts';
import { RunCommitter } from './committer.ts';
import { SuspendSignal, WorkerRunContext } from './context.ts';
import { storable } from './retry.ts';
import { discardMarker, exhaustedSteps } from './tries.ts';

export interface ExecuteDeps {
  db: SqlClient;
  bus: Bus;
  logger: Logger;
  leaseMs: number;
  heartbeatMs: number;
  flushMs: number;
  coalesceMs: number;
  maxBufferedEvents: number;
  llm: LlmSettings;
  /**
   * Where the worker finds a running attempt's "look for a cancel now" hook
   * (called on a bus cancel hint); the attempt adds itself while it runs.
   */
  cancelChecks?: Map<string, () => void>;
  /** The worker's drain signal (SIGTERM): attempts stop at their next durable operation and hand the run back. */
  draining?: AbortSignal;
  /** Circuit breakers (default: the process's, worker/breakers.ts). */
  breakers?: BreakerRegistry;
  /** The worker's group commit of checkpoints (default: one statement per write). */
  checkpoints?: CheckpointWriter;
}

/** Thrown into the attempt's await when the run is cancelled: the attempt stops waiting for the agent. */
class CancelSignal extends Error {
  constructor(readonly request: CancelRequest) {
    super('run cancelled');
  }
}

/**
 * How an attempt ended. `finished`: the run reached a terminal status.
 * `suspended`: it sleeps until `until`. `lost`: another worker owns it now.
 * `abandoned`: this worker could not write (database down, shutdown); the
 * lease will expire and the sweeper re-queues the run.
 */
export type ExecuteOutcome =
  | { kind: 'finished'; status: 'success' | 'error' | 'cancelled' | 'dead' | 'timeout' }
  | { kind: 'suspended'; until: Date }
  | { kind: 'interrupted'; interruptIds: string[] }
  | { kind: 'awaiting'; event: string }
  | { kind: 'lost' }
  | { kind: 'abandoned'; error: unknown }
  /** Handed back to the queue by a draining worker, at a step boundary. */
  | { kind: 'released' };

/** Executes one attempt of a claimed run, from its checkpoints. */
export async function executeRun(
  deps: ExecuteDeps,
  claimed: ClaimedRun,
  agent: Agent,
  stop: AbortSignal,
): Promise<ExecuteOutcome> {
  const { run, lease } = claimed;
  const log = deps.logger.child({
    run_id: run.run_id,
    thread_id: run.thread_id,
    agent: run.agent,
    attempt: run.attempt,
  });
  const controller = new AbortController();
  const onStop = () => controller.abort(new HangarError('unavailable', 'the worker is shutting down'));
  stop.addEventListener('abort', onStop, { once: true });
  const committer = new RunCommitter({
    writer: deps.checkpoints ?? directCheckpoints(deps.db),
    bus: deps.bus,
    lease,
    attempt: run.attempt,
    flushMs: deps.flushMs,
    maxBuffered: deps.maxBufferedEvents,
  });
  let lost = false;
  let lastBeat = Date.now();
  // A cancel seen by a heartbeat (or a bus hint, which triggers one at once) aborts ctx.signal and
  // rejects `cancelled`, which the attempt races against the agent: a step that ignores its signal
  // cannot hold the run; whatever it does later is fenced off by the run's new status.
  let cancel: CancelRequest | null = null;
  let rejectCancelled: (signal: CancelSignal) => void = () => {};
  const cancelled = new Promise<never>((_resolve, reject) => {
    rejectCancelled = reject;
  });
  cancelled.catch(() => {});
  const onCancel = (request: CancelRequest) => {
    if (cancel !== null) return;
    cancel = request;
    log.info({ cancel: request }, 'run cancelled; stopping the attempt');
    controller.abort(new HangarError('cancelled', `run ${run.run_id} was cancelled`));
    rejectCancelled(new CancelSignal(request));
  };
  let beating = false;
  const beatNow = () => {
    if (beating || lost) return;
    beating = true;
    renewLease(deps.db, lease, deps.leaseMs)
      .then(
        (renewed) => {
          if (renewed.held) {
            lastBeat = Date.now();
            if (renewed.cancel !== null) onCancel(renewed.cancel);
            return;
          }
          lost = true;
          controller.abort(
            new HangarError('lease_lost', `run ${run.run_id} was taken over by another worker`),
          );
        },
        (err: unknown) => {
          log.warn({ err }, 'heartbeat failed');
          // Past the lease the run may already be someone else's: stop touching the outside world.
          if (Date.now() - lastBeat > deps.leaseMs) {
            lost = true;
            controller.abort(new HangarError('lease_lost', 'heartbeats failed for longer than the lease'));
          }
        },
      )
      .finally(() => {
        beating = false;
      });
  };
  const beat = setInterval(beatNow, deps.heartbeatMs);
  beat.unref();
  deps.cancelChecks?.set(run.run_id, beatNow);

  const started = Date.now();
  let deadline: NodeJS.Timeout | undefined;
  try {
    const history = claimed.history;
    // maxDuration's timer, or a budget a ctx call found spent: the attempt ends with the budget error.
    let overBudget: (err: HangarError) => void = () => {};
    const budgetStop = new Promise<never>((_resolve, reject) => {
      overBudget = reject;
    });
    budgetStop.catch(() => {});
    // Limits are checked here too: an invalid run override ends the run before it does anything.
    let limitsError: unknown;
    let budget: RunBudget;
    try {
      budget = new RunBudget(
        runLimits(agent.limits, run.config),
        deps.llm.pricing ?? {},
        history,
        new Date(run.started_at ?? started),
      );
    } catch (err) {
      limitsError = err;
      budget = new RunBudget({}, {}, [], new Date(started));
    }
    const ctx = new WorkerRunContext({
      lease,
      agent: run.agent,
      attempt: run.attempt,
      history,
      baseValues: claimed.baseValues,
      committer,
      signal: controller.signal,
      logger: log,
      llm: deps.llm,
      coalesceMs: deps.coalesceMs,
      ...(deps.draining === undefined ? {} : { draining: deps.draining }),
      ...(agent.retry === undefined ? {} : { retry: agent.retry }),
      ...(agent.stepTimeout === undefined ? {} : { stepTimeout: agent.stepTimeout }),
      budget,
      breakers: deps.breakers ?? processBreakers,
      discardBoundary: () => readDiscardBoundary(deps.db, run.run_id),
      budgetExceeded: (err) => {
        controller.abort(err);
        overBudget(err);
      },
    });
    // A run resumed after a crash or a re-queue may have logged output it will now redo: where it
    // starts is read before this execution logs anything (its own start is an anchor).
    const boundary =
      history.length > 0 || run.attempt > 1 ? await readDiscardBoundary(deps.db, run.run_id) : undefined;
    const startEvent: LifecycleData = { event: 'run.started', status: 'running', attempt: run.attempt };
    await committer.emit({ channel: 'lifecycle', data: startEvent });
    if (boundary?.discard === true) {
      log.info({ after_seq: boundary.afterSeq }, 'resumed run: its partial output is discarded');
      await committer.emit(discardMarker(ctx, boundary.afterSeq, 'resume'));
    }
    // maxDuration: wall time since the run first started, across attempts and waits.
    if (budget.deadline !== undefined) {
      deadline = setTimeout(
        () => ctx.exceedBudget(budget.durationExceeded()),
        Math.max(0, budget.deadline.getTime() - Date.now()),
      );
    }

    let output: unknown;
    try {
      const parsed = agent.input.safeParse(run.input);
      if (!parsed.success) {
        throw new HangarError(
          'input_invalid',
          `input no longer matches agent "${agent.name}": ${parsed.error.message}`,
        );
      }
      if (claimed.cancel !== null) {
        // Asked to cancel while no worker held it (a dead worker's run, a sleeper): end it unrun.
        onCancel(claimed.cancel);
        throw new CancelSignal(claimed.cancel);
      }
      if (limitsError !== undefined) throw limitsError;
      budget.checkDuration();
      const running = agent.run(ctx, parsed.data);
      running.catch(() => {}); // After a cancel nobody awaits it; its writes are fenced.
      // A suspension being written (parallel interrupts) is waited for; operations parked after the
      // code ended are dropped.
      output = await Promise.race([running, cancelled, budgetStop]).finally(() => ctx.settle());
      // An agent that caught a budget error still ends with it.
      if (ctx.budgetError !== undefined) throw ctx.budgetError;
      if (ctx.suspended !== undefined) throw new SuspendSignal(null);
      if (agent.output !== undefined) {
        const checked = agent.output.safeParse(output);
        if (!checked.success) {
          throw new HangarError(
            'output_invalid',
            `agent "${agent.name}" returned output that fails its schema`,
            {
              details: {
                issues: checked.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
              },
            },
          );
        }
        output = checked.data;
      }
      output = jsonRoundTrip(`agent "${agent.name}" returned`, output);
      // By index, not by count: the history can have gaps (parallel steps completing out of order).
      const missing = history.find((s) => s.status === 'completed' && s.index >= ctx.operationsReached);
      if (missing !== undefined) {
        throw new HangarError(
          'nondeterminism',
          `step #${missing.index} diverged from the run's history: the code finished without reaching ` +
            `${missing.kind} "${missing.name}", which the history recorded`,
          { details: { step_index: missing.index, expected: missing.name, actual: null } },
        );
      }
    } catch (err) {
      if (cancel !== null && !lost && !stop.aborted) {
        if (committer.failed !== undefined) throw committer.failed;
        return await endCancelled(deps, committer, run.run_id, cancel, log);
      }
      // The suspension the context recorded, not the signal: agent code may have caught that one.
      const suspension = ctx.suspended;
      if (suspension !== undefined) {
        if ('interruptId' in suspension) {
          log.info({ interrupt_ids: suspension.interruptIds }, 'run interrupted; waiting for answers');
          return { kind: 'interrupted', interruptIds: suspension.interruptIds };
        }
        if ('event' in suspension) {
          // An event sent while the wait was being registered is matched now (hitl/signals.ts).
          // Failing that, every worker's sweep matches it within a sweep interval.
          const matched = await matchSignals(deps.db, run.thread_id).catch((err: unknown) => {
            log.warn({ err }, 'matching events after a wait failed; the sweep will');
            return [];
          });
          if (matched.length > 0) deps.bus.notifyWork();
          log.info(
            { event: suspension.event, until: suspension.until?.toISOString() },
            'run waits for an event',
          );
          if (suspension.until === null) return { kind: 'awaiting', event: suspension.event };
          return { kind: 'suspended', until: suspension.until };
        }
        log.info({ until: suspension.until.toISOString() }, 'run suspended');
        return { kind: 'suspended', until: suspension.until };
      }
      if (lost || isHangarError(err, 'lease_lost')) throw err;
      if (committer.failed !== undefined) throw committer.failed;
      if (ctx.drained && !stop.aborted) {
        // Drained at a step boundary: what was emitted since is written, then the run goes back to
        // the queue without counting the attempt, still holding its thread.
        await committer.flush();
        const released = await releaseRun(deps.db, lease);
        log.info({ released }, 'worker draining: run handed back at a step boundary');
        return { kind: 'released' };
      }
      if (stop.aborted) throw err;
      // A budget ends the run even when the agent's code caught its error (or a step's abort).
      const failure = ctx.budgetError ?? err;
      const error = storable(toRunError(failure));
      const status = isHangarError(failure, 'retries_exhausted')
        ? 'dead'
        : isHangarError(failure, 'budget_exceeded')
          ? budgetStatus(failure)
          : 'error';
      log.error({ err: failure, status, duration_ms: Date.now() - started }, 'run failed');
      const end: LifecycleData = { event: 'run.completed', status, terminal: true, error };
      const state = ctx.takeState();
      const exhausted = isHangarError(failure) ? exhaustedSteps.get(failure) : undefined;
      await committer.commit({
        events: [
          ...state.events,
          ...(isHangarError(failure, 'budget_exceeded')
            ? [{ channel: 'lifecycle', data: { event: 'budget.exceeded', ...failure.details } }]
            : []),
          { channel: 'lifecycle', data: end },
        ],
        ...(state.values === undefined ? {} : { values: state.values }),
        // The exhausted step's failure (and its try count) stays on its row for the dead-letter view.
        ...(exhausted === undefined ? {} : { step: exhausted }),
        end: { status, error },
      });
      return { kind: 'finished', status };
    }
    const end: LifecycleData = { event: 'run.completed', status: 'success', terminal: true, output };
    // Values events go before the terminal event: the terminal event is the last of the run.
    const state = ctx.takeState();
    await committer.commit({
      events: [...state.events, { channel: 'lifecycle', data: end }],
      ...(state.values === undefined ? {} : { values: state.values }),
      end: { status: 'success', output },
    });
    log.info({ duration_ms: Date.now() - started }, 'run succeeded');
    return { kind: 'finished', status: 'success' };
  } catch (err) {
    if (lost || isHangarError(err, 'lease_lost')) {
      log.warn({ err }, 'lease lost; another worker continues the run');
      return { kind: 'lost' };
    }
    log.error({ err }, 'run attempt abandoned; the lease will expire and the run resume elsewhere');
    return { kind: 'abandoned', error: err };
  } finally {
    clearInterval(beat);
    if (deadline !== undefined) clearTimeout(deadline);
    deps.cancelChecks?.delete(run.run_id);
    stop.removeEventListener('abort', onStop);
    committer.dispose();
    if (!controller.signal.aborted) controller.abort(new Error('run attempt ended'));
  }
}

/**
 * Ends a cancelled run: its terminal event and status in one fenced write
 * (events the attempt emitted go with it; state it had not checkpointed does
 * not). A rollback restores the thread's state in that same write; the run
 * row goes right after.
 */
async function endCancelled(
  deps: ExecuteDeps,
  committer: RunCommitter,
  runId: string,
  request: CancelRequest,
  log: Logger,
): Promise<ExecuteOutcome> {
  const error = cancelledError(request);
  await committer.commit({
    events: [{ channel: 'lifecycle', data: cancelledEvent(error) }],
    end: { status: 'cancelled', error },
  });
  if (request.action === 'rollback') await deleteRolledBack(deps.db, runId);
  log.info({ action: request.action, reason: request.reason }, 'run cancelled');
  return { kind: 'finished', status: 'cancelled' };
}
