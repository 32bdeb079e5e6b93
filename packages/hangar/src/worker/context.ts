import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { HangarError, isHangarError } from '../errors.ts';
import { CHANNEL_PATTERN, type PendingEvent } from '../events/envelope.ts';
import type { InterruptWrite } from '../runs/checkpoint.ts';
import type { Lease } from '../runs/types.ts';
import type {
  InterruptOptions,
  LlmClient,
  RunContext,
  StepContext,
  StepOptions,
  ThreadState,
  WaitForEventOptions,
} from '../sdk/context.ts';
import {
  type LlmRequest,
  type LlmResult,
  type LlmSettings,
  modelName,
  resolveModel,
  streamCompletion,
} from '../sdk/llm.ts';
import type { StepKind, StepRecord, StepWrite } from '../steps/repository.ts';
import { checkpointValue, jsonRoundTrip } from '../steps/serialize.ts';
import { type Duration, toMs } from '../util/duration.ts';
import type { BreakerRegistry } from './breakers.ts';
import type { RunBudget } from './budgets.ts';
import type { CommitRequest, RunCommitter } from './committer.ts';
import { type RetryPolicy, resolveRetry } from './retry.ts';
import { runTry, type TryHost } from './tries.ts';

/**
 * Thrown through the agent's code when the run suspends itself (a durable
 * sleep until `until`, or an interrupt until it is answered: `until` null):
 * the attempt ends here and the run continues later on any worker. Agent code
 * that catches it can't keep going: every later ctx call rethrows.
 */
export class SuspendSignal extends Error {
  override readonly name = 'SuspendSignal';
  constructor(
    readonly until: Date | null,
    readonly interruptId?: string,
  ) {
    super(until === null ? `run interrupted (${interruptId})` : `run suspended until ${until.toISOString()}`);
  }
}

/**
 * How an attempt suspended itself: a sleep until a time, interrupts until
 * every one is resolved (`interruptId` is the first of `interruptIds`), or a
 * wait for an event (until a time, or null: only the event).
 */
export type Suspension =
  | { until: Date }
  | { interruptId: string; interruptIds: string[] }
  | { event: string; until: Date | null };

/**
 * A suspending operation (an interrupt, a sleep, a wait for an event) raised
 * by the agent's code, waiting for the attempt to go quiet: its step row, its
 * own events, and how it suspends the run. `park` never settles its promise
 * unless the suspension's write fails.
 */
interface Parked {
  step: StepCheckpoint;
  /** An interrupt: its row and the events announcing it. */
  interrupt?: { write: InterruptWrite; requested: PendingEvent };
  /** A sleep (until set) or a wait for an event (event set; until its timeout or null). */
  until?: Date | null;
  event?: string;
  fail: (err: unknown) => void;
}

const currentStep = new AsyncLocalStorage<{ name: string }>();

export interface ContextOptions {
  lease: Lease;
  agent: string;
  attempt: number;
  history: StepRecord[];
  baseValues: Record<string, unknown>;
  committer: RunCommitter;
  signal: AbortSignal;
  logger: Logger;
  llm: LlmSettings;
  coalesceMs: number;
  /** Aborted when the worker drains (SIGTERM): the attempt ends at the next durable operation. */
  draining?: AbortSignal;
  /** The agent's retry policy (a step's own overrides it) and default step timeout. */
  retry?: Partial<RetryPolicy>;
  stepTimeout?: Duration;
  budget: RunBudget;
  breakers: BreakerRegistry;
  /** Told once when the run goes over a budget (execute.ts ends the attempt with the error). */
  budgetExceeded: (err: HangarError) => void;
  /** Reads where the run's partial output starts (runs/checkpoint.ts readDiscardBoundary). */
  discardBoundary: () => Promise<{ afterSeq: number; discard: boolean }>;
}

/**
 * Thrown at a durable operation while the worker drains: the steps before it
 * are checkpointed, so the attempt stops here and the run is handed back.
 */
export class DrainSignal extends Error {
  constructor() {
    super('the worker is draining; the run is handed back at this step boundary');
  }
}

/** What a ctx call returns once the run is over budget: the attempt is ending, the agent waits for it. */
function parked(): Promise<never> {
  return new Promise<never>(() => {});
}

/** Step results are stored wrapped, so `undefined` replays as `undefined`. */
type Stored = { v?: unknown };

/** A step as the context checkpoints it: its result stored wrapped. */
type StepCheckpoint = Omit<StepWrite, 'result'> & { result?: Stored };

export class WorkerRunContext implements RunContext {
  readonly runId: string;
  readonly threadId: string;
  readonly agent: string;
  readonly attempt: number;
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly state: ThreadState;
  readonly llm: LlmClient;

  private nextIndex = 0;
  private emitsSinceOp = 0;
  private values: Record<string, unknown>;
  private valuesDirty = false;
  private suspension: Suspension | undefined;
  /**
   * Parallel suspensions (issue 6): suspending operations wait in `parked`
   * while durable operations are `inFlight`; once none is and a macrotask
   * turn passed (every branch of a Promise.all reached its operation), all
   * parked ones are written in ONE ending checkpoint (`suspending`).
   */
  private parked: Parked[] = [];
  private inFlight = 0;
  private settleScheduled = false;
  private suspending: Promise<void> | undefined;
  /** The agent's code ended (execute.ts `settle`): nothing parked after this suspends the run. */
  private closed = false;
  /**
   * By operation index, not array position: steps run in parallel complete out of order, so
   * the history of an interrupted attempt can have gaps (step #1 recorded, #0 still running).
   */
  private readonly recorded: ReadonlyMap<number, StepRecord>;

  /** Set when a durable operation refused to start because the worker drains (agent code may catch the signal). */
  drained = false;
  /**
   * Set when the run went over a budget (agent code may catch the error; the
   * run still ends with it).
   */
  budgetError: HangarError | undefined;
  /** What the retry machinery (tries.ts) needs of this attempt. */
  private readonly host: TryHost;

  constructor(private readonly options: ContextOptions) {
    this.recorded = new Map(options.history.map((r) => [r.index, r]));
    this.runId = options.lease.runId;
    this.threadId = options.lease.threadId;
    this.agent = options.agent;
    this.attempt = options.attempt;
    this.signal = options.signal;
    this.log = options.logger;
    this.values = structuredClone(options.baseValues);
    this.state = {
      get: () => structuredClone(this.values),
      set: (values) => this.setValues(values),
      update: (patch) => this.setValues({ ...this.values, ...patch }),
    };
    this.llm = { generate: (name, request) => this.generate(name, request) };
    this.host = {
      runId: this.runId,
      attempt: this.attempt,
      signal: this.signal,
      log: this.log,
      committer: options.committer,
      breakers: options.breakers,
      discardBoundary: options.discardBoundary,
      suspended: () => this.suspension !== undefined,
      suspend: (until) => {
        this.suspension = { until };
        throw new SuspendSignal(until);
      },
    };
  }

  /** Set when the run suspended itself during this attempt. */
  get suspended(): Suspension | undefined {
    return this.suspension;
  }

  /** How many durable operations the code reached (for the determinism check at the end). */
  get operationsReached(): number {
    return this.nextIndex;
  }

  /**
   * The run went over a budget: the attempt ends with `err` (execute.ts races
   * it against the agent). Agent code that catches the error cannot go on:
   * its next ctx call never settles (a loop that swallowed errors would
   * otherwise spin on rejected calls and starve the process).
   */
  exceedBudget(err: HangarError): void {
    if (this.budgetError !== undefined) return;
    this.budgetError = err;
    this.options.budgetExceeded(err);
  }

  async step<T>(
    name: string,
    fn: (step: StepContext) => T | Promise<T>,
    options: StepOptions = {},
  ): Promise<T> {
    if (this.budgetError !== undefined) return parked();
    const { index, record } = this.claim(name, 'step');
    if (record?.status === 'completed') return (record.result as Stored).v as T;
    return this.track(() => this.runStep(index, record, name, fn, options));
  }

  private async runStep<T>(
    index: number,
    record: StepRecord | undefined,
    name: string,
    fn: (step: StepContext) => T | Promise<T>,
    options: StepOptions,
  ): Promise<T> {
    const timeout = options.timeout ?? this.options.stepTimeout;
    const startedAt = new Date();
    const value = await runTry(
      this.host,
      {
        index,
        name,
        kind: 'step',
        failures: record?.status === 'failed' ? record.attempt : 0,
        policy: resolveRetry(this.options.retry, options.retry),
        timeoutMs: timeout === undefined ? undefined : toMs(timeout, `step "${name}" timeout`),
        breaker: options.breaker,
        startedAt,
      },
      (signal) =>
        currentStep.run({ name }, async () =>
          fn({ signal, attempt: this.attempt, idempotencyKey: `${this.runId}:${index}` }),
        ),
    );
    this.throwIfSuspended();
    const stored = checkpointValue(name, value);
    await this.checkpoint(
      {
        index,
        name,
        kind: 'step',
        status: 'completed',
        result: { v: stored },
        attempt: this.attempt,
        startedAt,
      },
      [{ channel: 'updates', data: { [name]: stored ?? null } }],
    );
    return stored as T;
  }

  emit(channel: string, data: unknown): Promise<void> {
    if (this.budgetError !== undefined) return parked();
    this.throwIfSuspended();
    if (typeof channel !== 'string' || !CHANNEL_PATTERN.test(channel)) {
      return Promise.reject(
        new HangarError(
          'invalid_agent_call',
          `ctx.emit: channel ${JSON.stringify(channel)} is not a valid name`,
        ),
      );
    }
    let payload: unknown;
    try {
      payload = jsonRoundTrip(`ctx.emit('${channel}') was given`, data, { channel });
    } catch (err) {
      return Promise.reject(err);
    }
    const inStep = currentStep.getStore() !== undefined;
    // Outside a step the same emit runs again on replay; its op key lets the log drop the repeat.
    const event: PendingEvent = inStep
      ? { channel, data: payload ?? null }
      : { channel, data: payload ?? null, opKey: `${this.nextIndex}.${this.emitsSinceOp++}` };
    return this.options.committer.emit(event);
  }

  async sleep(duration: Duration): Promise<void> {
    if (this.budgetError !== undefined) return parked();
    const ms = toMs(duration, 'ctx.sleep duration');
    const { index, record } = this.claim('sleep', 'sleep');
    if (record?.status === 'completed') return;
    const startedAt = new Date();
    const wakeAt = record?.wakeAt ?? new Date(Date.now() + ms);
    if (wakeAt.getTime() <= Date.now()) {
      await this.track(() =>
        this.checkpoint({
          index,
          name: 'sleep',
          kind: 'sleep',
          status: 'completed',
          attempt: this.attempt,
          startedAt,
          wakeAt,
        }),
      );
      return;
    }
    return this.park({
      step: {
        index,
        name: 'sleep',
        kind: 'sleep',
        status: 'sleeping',
        attempt: this.attempt,
        startedAt,
        wakeAt,
      },
      until: wakeAt,
    });
  }

  async waitForEvent<T = unknown>(name: string, options: WaitForEventOptions = {}): Promise<T | null> {
    if (this.budgetError !== undefined) return parked();
    const timeoutMs =
      options.timeout === undefined ? undefined : toMs(options.timeout, 'ctx.waitForEvent timeout');
    const match = options.match;
    if (match !== undefined && (typeof match !== 'object' || match === null || Array.isArray(match))) {
      throw new HangarError('invalid_agent_call', 'ctx.waitForEvent: match must be a plain object');
    }
    const { index, record } = this.claim(name, 'wait_event');
    if (record?.status === 'completed') return ((record.result as Stored).v ?? null) as T | null;
    const startedAt = new Date();
    // A wait resumed before its event (a hand-back) keeps its deadline.
    const wakeAt = record?.wakeAt ?? (timeoutMs === undefined ? undefined : new Date(Date.now() + timeoutMs));
    if (wakeAt !== undefined && wakeAt.getTime() <= Date.now()) {
      // Timed out: claims and signal matches both lock the run, so no event can complete it now.
      await this.track(() =>
        this.checkpoint({
          index,
          name,
          kind: 'wait_event',
          status: 'completed',
          result: { v: null },
          attempt: this.attempt,
          startedAt,
          wakeAt,
        }),
      );
      return null;
    }
    const wait = { name, match: jsonRoundTrip('ctx.waitForEvent match was given', match) ?? null };
    return this.park({
      step: {
        index,
        name,
        kind: 'wait_event',
        status: 'sleeping',
        // What hitl/signals.ts matches events against.
        result: { wait } as Stored,
        attempt: this.attempt,
        startedAt,
        ...(wakeAt === undefined ? {} : { wakeAt }),
      },
      event: name,
      until: wakeAt ?? null,
    });
  }

  async interrupt<T = unknown>(payload: unknown, options: InterruptOptions<T> = {}): Promise<T> {
    if (this.budgetError !== undefined) return parked();
    const timeoutMs =
      options.timeout === undefined ? undefined : toMs(options.timeout, 'ctx.interrupt timeout');
    const onTimeout = options.onTimeout ?? 'error';
    if (
      onTimeout !== 'error' &&
      (typeof onTimeout !== 'object' || onTimeout === null || !('resume' in onTimeout))
    ) {
      throw new HangarError(
        'invalid_agent_call',
        "ctx.interrupt: onTimeout must be { resume: value } or 'error'",
      );
    }
    const { index, record } = this.claim('interrupt', 'interrupt');
    // Answered (or expired into its default): the answer is the step's recorded result.
    if (record?.status === 'completed') return (record.result as Stored).v as T;
    if (record?.status === 'failed') {
      const expired = (record.result as { expired?: { interrupt_id?: string; expires_at?: string } } | null)
        ?.expired;
      throw new HangarError(
        'interrupt_expired',
        `interrupt #${index} expired at ${expired?.expires_at ?? 'its timeout'} without an answer`,
        {
          details: {
            step_index: index,
            interrupt_id: expired?.interrupt_id,
            expires_at: expired?.expires_at,
          },
        },
      );
    }
    if (record !== undefined) {
      // A run is only claimable again once its interrupt is resolved (hitl/repository.ts): a bug.
      throw new HangarError('internal', `interrupt #${index} is still pending but the run was resumed`, {
        details: { step_index: index },
      });
    }
    const value = jsonRoundTrip('ctx.interrupt was given', payload) ?? null;
    const fallback =
      onTimeout === 'error'
        ? undefined
        : { resume: jsonRoundTrip('ctx.interrupt onTimeout was given', onTimeout.resume) ?? null };
    const id = randomUUID();
    const expiresAt = timeoutMs === undefined ? undefined : new Date(Date.now() + timeoutMs);
    return this.park({
      step: {
        index,
        name: 'interrupt',
        kind: 'interrupt',
        status: 'interrupted',
        attempt: this.attempt,
        startedAt: new Date(),
      },
      interrupt: {
        write: {
          id,
          stepIndex: index,
          agent: this.agent,
          payload: value,
          ...(expiresAt === undefined ? {} : { expiresAt }),
          ...(fallback === undefined ? {} : { onTimeout: fallback }),
        },
        // The Agent Protocol's request (LangGraph's `__interrupt__` update lists them all: suspendParked).
        requested: {
          channel: 'input',
          data: {
            event: 'input.requested',
            interruptId: id,
            payload: value,
            ...(expiresAt === undefined ? {} : { expires_at: expiresAt.toISOString() }),
          },
        },
      },
    });
  }

  /**
   * The agent's code ended (returned, threw, or lost the race to a cancel or a
   * budget): waits for a suspension being written, and drops operations
   * parked since, which no code waits for any more (a sibling branch of the
   * Promise.all failed first: the run ends with that failure instead).
   */
  async settle(): Promise<void> {
    this.closed = true;
    this.parked = [];
    await this.suspending?.catch(() => {});
  }

  /** Runs a durable operation that is not a suspension: the run can't suspend while it is in flight. */
  private async track<T>(op: () => Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await op();
    } finally {
      this.inFlight--;
      this.scheduleSettle();
    }
  }

  /** Parks a suspending operation until the attempt goes quiet (see `parked`); its promise never resolves. */
  private park(entry: Omit<Parked, 'fail'>): Promise<never> {
    return new Promise<never>((_resolve, reject) => {
      this.parked.push({ ...entry, fail: reject });
      this.scheduleSettle();
    });
  }

  /**
   * After a macrotask turn every branch that was running microtasks has
   * reached its next operation: if none is in flight, the parked ones
   * suspend the run together.
   */
  private scheduleSettle(): void {
    if (this.settleScheduled || this.parked.length === 0 || this.inFlight > 0) return;
    this.settleScheduled = true;
    setImmediate(() => {
      this.settleScheduled = false;
      if (this.closed || this.suspending !== undefined || this.inFlight > 0 || this.parked.length === 0)
        return;
      const batch = this.parked;
      this.parked = [];
      this.suspending = this.suspendParked(batch);
      this.suspending.catch(() => {});
    });
  }

  /**
   * Writes the parked operations in ONE ending checkpoint (their steps, their
   * events, the interrupt rows), then fails each parked promise with the
   * SuspendSignal that ends the attempt. Any interrupt makes the run
   * `interrupted`: it is claimable again once every interrupt is resolved,
   * and sleeps and waits parked with them re-suspend then if not yet due.
   * Otherwise it waits until the earliest sleep or wait timeout (or only an
   * event: null).
   */
  private async suspendParked(batch: Parked[]): Promise<void> {
    const steps = batch.map((p) => p.step);
    const interrupts = batch.flatMap((p) => (p.interrupt === undefined ? [] : [p.interrupt]));
    const [first] = interrupts;
    let suspension: Suspension;
    try {
      if (first !== undefined) {
        const ids = interrupts.map((i) => i.write.id);
        await this.checkpoint(
          steps,
          [
            // LangGraph's shape (one `updates` event for the superstep), then the Agent Protocol's requests.
            {
              channel: 'updates',
              data: { __interrupt__: interrupts.map((i) => ({ id: i.write.id, value: i.write.payload })) },
            },
            ...interrupts.map((i) => i.requested),
            {
              channel: 'lifecycle',
              data: {
                event: 'run.interrupted',
                status: 'interrupted',
                interrupt_id: first.write.id,
                ...(ids.length > 1 ? { interrupt_ids: ids } : {}),
              },
            },
          ],
          { status: 'interrupted', interrupts: interrupts.map((i) => i.write) },
        );
        suspension = { interruptId: first.write.id, interruptIds: ids };
      } else {
        const untils = batch.map((p) => p.until ?? null);
        const due = untils.filter((u): u is Date => u !== null);
        const until = due.length === 0 ? null : new Date(Math.min(...due.map((d) => d.getTime())));
        const event = batch.find((p) => p.event !== undefined)?.event;
        await this.checkpoint(
          steps,
          [
            {
              channel: 'lifecycle',
              data: {
                event: 'run.waiting',
                status: 'waiting',
                ...(event === undefined ? {} : { for_event: event }),
                ...(until === null ? {} : { until: until.toISOString() }),
              },
            },
          ],
          { status: 'waiting', until },
        );
        if (event !== undefined) suspension = { event, until };
        else if (until !== null) suspension = { until };
        else throw new HangarError('internal', 'a suspension with neither a time nor an event');
      }
    } catch (err) {
      for (const p of batch) p.fail(err);
      throw err;
    }
    this.suspension = suspension;
    for (const p of batch) p.fail(this.suspendSignal());
  }

  private async generate(name: string, request: LlmRequest): Promise<LlmResult> {
    if (this.budgetError !== undefined) return parked();
    const { index, record } = this.claim(name, 'llm');
    if (record?.status === 'completed') return (record.result as Stored).v as LlmResult;
    return this.track(() => this.runGenerate(index, record, name, request));
  }

  private async runGenerate(
    index: number,
    record: StepRecord | undefined,
    name: string,
    request: LlmRequest,
  ): Promise<LlmResult> {
    const startedAt = new Date();
    const model = resolveModel(request.model ?? this.options.llm.model, this.options.llm);
    const timeout = this.options.stepTimeout;
    const epoch = this.options.lease.epoch;
    const result = await runTry(
      this.host,
      {
        index,
        name,
        kind: 'llm',
        failures: record?.status === 'failed' ? record.attempt : 0,
        policy: resolveRetry(this.options.retry),
        timeoutMs: timeout === undefined ? undefined : toMs(timeout, 'stepTimeout'),
        // One breaker per model: a provider's outage opens it for every run on this worker.
        breaker: `llm:${modelName(model)}`,
        startedAt,
      },
      (signal) =>
        currentStep.run({ name }, () =>
          streamCompletion(model, request, {
            signal,
            // The lease epoch, not the attempt: a run handed back on shutdown (or retried after a
            // backoff) keeps its attempt number, and the partial message of the interrupted execution
            // must not share its id with the new one.
            messageId: `${this.runId}:${index}:${epoch}`,
            coalesceMs: this.options.coalesceMs,
            sink: (data) => {
              // The finished message is output a redo does not repeat: the fencing marker's anchor.
              const opKey = data.event === 'message-finish' ? `llm:${index}:${epoch}` : undefined;
              this.options.committer
                .emit({ channel: 'messages', data, ...(opKey === undefined ? {} : { opKey }) })
                .catch(() => {});
            },
          }),
        ),
    );
    this.throwIfSuspended();
    this.options.budget.record({ ...result.usage, model: result.model });
    await this.checkpoint({
      index,
      name,
      kind: 'llm',
      status: 'completed',
      result: { v: result },
      attempt: this.attempt,
      startedAt,
      usage: { ...result.usage, model: result.model },
    });
    return result;
  }

  /**
   * The thread state to save with the next write, and its `values` event;
   * nothing when the state did not change since the last write.
   */
  takeState(): { values?: Record<string, unknown>; events: PendingEvent[] } {
    if (!this.valuesDirty) return { events: [] };
    this.valuesDirty = false;
    const values = structuredClone(this.values);
    return { values, events: [{ channel: 'values', data: values }] };
  }

  /**
   * Takes the next position in the run's sequence of durable operations and
   * checks it against the recorded history: code that reaches a different
   * operation at the same position has diverged, and continuing would pair
   * results with the wrong steps.
   */
  private claim(name: string, kind: StepKind): { index: number; record: StepRecord | undefined } {
    this.throwIfSuspended();
    // A run that was aborted (shutdown, lost lease) starts no new side effects: the attempt ends here.
    this.signal.throwIfAborted();
    // A draining worker finishes the operation in flight, not the next one.
    if (this.options.draining?.aborted === true) {
      this.drained = true;
      throw new DrainSignal();
    }
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) {
      throw new HangarError(
        'invalid_agent_call',
        `a ${kind} name must be a non-empty string of at most 200 characters`,
      );
    }
    const outer = currentStep.getStore();
    if (outer !== undefined) {
      throw new HangarError(
        'invalid_agent_call',
        `"${name}" (${kind}) was called inside step "${outer.name}": durable operations cannot be nested`,
      );
    }
    const index = this.nextIndex++;
    this.emitsSinceOp = 0;
    const record = this.recorded.get(index);
    if (record !== undefined && (record.name !== name || record.kind !== kind)) {
      throw new HangarError(
        'nondeterminism',
        `step #${index} diverged from the run's history: the code calls ${kind} "${name}" where the history ` +
          `recorded ${record.kind} "${record.name}". Code between steps must be deterministic; ` +
          'changing an agent while runs are in flight needs a new agent name or version.',
        { details: { step_index: index, expected: record.name, actual: name } },
      );
    }
    if (record?.status !== 'completed') {
      try {
        this.options.budget.check(index);
      } catch (err) {
        if (isHangarError(err, 'budget_exceeded')) this.exceedBudget(err);
        throw err;
      }
    }
    return { index, record };
  }

  /** Records a step (or a suspension's steps) with its events and any state change, in one fenced write. */
  private async checkpoint(
    step: StepCheckpoint | StepCheckpoint[],
    events: PendingEvent[] = [],
    end?: CommitRequest['end'],
  ): Promise<void> {
    const state = this.takeState();
    // A suspension's lifecycle event stays the last of the write; otherwise the step's events come first.
    const written = end === undefined ? [...events, ...state.events] : [...state.events, ...events];
    const last = written.at(-1);
    if (last !== undefined) {
      // The last event of a checkpoint is output a redo does not repeat: the fencing marker's anchor
      // (runs/checkpoint.ts readDiscardBoundary). The epoch keeps the key unique per write.
      const index = Array.isArray(step) ? step[0]?.index : step.index;
      written[written.length - 1] = { ...last, opKey: `ckpt:${index}:${this.options.lease.epoch}` };
    }
    await this.options.committer.commit({
      step,
      events: written,
      ...(state.values === undefined ? {} : { values: state.values }),
      ...(end === undefined ? {} : { end }),
    });
  }

  private setValues(values: Record<string, unknown>): void {
    this.throwIfSuspended();
    // A completed step is not re-executed on replay, so a change made inside it would be lost
    // there: the replayed run would see (and later save) state without it.
    const step = currentStep.getStore();
    if (step !== undefined) {
      throw new HangarError(
        'invalid_agent_call',
        `ctx.state was changed inside step "${step.name}": a replay does not re-run completed steps, ` +
          'so the change would be lost. Return the value from the step and update the state after it.',
        { details: { step: step.name } },
      );
    }
    if (typeof values !== 'object' || values === null || Array.isArray(values)) {
      throw new HangarError('invalid_agent_call', 'ctx.state values must be a plain object');
    }
    this.values = jsonRoundTrip('ctx.state was given', values) as Record<string, unknown>;
    this.valuesDirty = true;
  }

  private throwIfSuspended(): void {
    // A suspension being written: no operation starts after it (on resume, it runs again).
    if (this.suspension !== undefined || this.suspending !== undefined) throw this.suspendSignal();
  }

  private suspendSignal(): SuspendSignal {
    const s = this.suspension;
    if (s === undefined) return new SuspendSignal(null);
    return 'interruptId' in s ? new SuspendSignal(null, s.interruptId) : new SuspendSignal(s.until);
  }
}
