import type { Bus } from '../bus/bus.ts';
import type { PendingEvent } from '../events/envelope.ts';
import type { CheckpointResult, CheckpointWrite } from '../runs/checkpoint.ts';
import type { Lease } from '../runs/types.ts';
import type { CheckpointWriter } from './checkpoints.ts';

export interface CommitterOptions {
  /** Where the writes go: the worker's group commit (worker/checkpoints.ts). */
  writer: CheckpointWriter;
  bus: Bus;
  lease: Lease;
  attempt: number;
  /**
   * The longest emitted events wait before a commit starts for them. In
   * practice they wait less: an emit with no commit in flight is committed
   * at once, and emits during a commit share the next one (group commit).
   */
  flushMs: number;
  /** Buffered events above which `emit` waits for a flush (backpressure on chatty agents). */
  maxBuffered: number;
}

/** A checkpoint as the attempt's code asks for it; buffered events are added in front of `events`. */
export type CommitRequest = Omit<CheckpointWrite, 'events'> & { events?: readonly PendingEvent[] };

/**
 * Every write a worker makes for one run attempt goes through here, one at a
 * time, each fenced by the lease epoch (runs/checkpoint.ts) and group-committed
 * with the writes of the worker's other runs (worker/checkpoints.ts).
 * Emitted events are group-committed: with no commit in flight, the emits of
 * the current turn of the event loop are committed at once; emits that arrive
 * while a commit is in flight share the commit that follows it. A checkpoint
 * takes whatever is buffered, so an event is durable no later than its step's
 * checkpoint commit. Events are published to the bus (with the lease epoch as
 * fence) only after their commit, in seq order.
 */
export class RunCommitter {
  private buffer: PendingEvent[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  /** Commits queued or running. */
  private inFlight = 0;
  /** A flush of the buffer is queued (at the next turn, behind the commit in flight, or at `flushMs`). */
  private flushQueued = false;
  private timer: NodeJS.Timeout | undefined;
  private failure: unknown;

  constructor(private readonly options: CommitterOptions) {}

  /** The first error a commit hit (lease lost, database down): the attempt can write nothing more. */
  get failed(): unknown {
    return this.failure;
  }

  emit(event: PendingEvent): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    this.buffer.push(event);
    if (this.buffer.length >= this.options.maxBuffered) return this.flush();
    if (!this.flushQueued) {
      this.flushQueued = true;
      // Idle: commit once this turn's emits are in. Busy: the commit in flight triggers the next.
      if (this.inFlight === 0) setImmediate(() => this.flushBuffered());
      this.timer = setTimeout(() => this.flushBuffered(), this.options.flushMs);
    }
    return Promise.resolve();
  }

  private flushBuffered(): void {
    if (!this.flushQueued) return;
    this.flushQueued = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.buffer.length > 0) this.flush().catch(() => {});
  }

  /** Writes buffered events now. */
  flush(): Promise<void> {
    return this.commit({});
  }

  /** Queues a checkpoint behind the ones before it; resolves once it is committed and published. */
  commit(request: CommitRequest): Promise<void> {
    this.inFlight++;
    const next = this.chain.then(() => this.commitNow(request));
    this.chain = next
      .catch(() => {})
      .finally(() => {
        this.inFlight--;
        // Emits that arrived during the commit(s) go out together now.
        if (this.inFlight === 0) this.flushBuffered();
      });
    return next;
  }

  private async commitNow(request: CommitRequest): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    const events = this.buffer.concat(request.events ?? []);
    this.buffer = [];
    const { step, values, end } = request;
    if (events.length === 0 && step === undefined && values === undefined && end === undefined) return;
    const { writer, lease, attempt } = this.options;
    let written: CheckpointResult;
    try {
      written = await writer.write({
        lease,
        attempt,
        write: {
          events,
          ...(step === undefined ? {} : { step }),
          ...(values === undefined ? {} : { values }),
          ...(end === undefined ? {} : { end }),
        },
      });
    } catch (err) {
      this.failure = err;
      throw err;
    }
    this.options.bus.publishEvents(
      lease.threadId,
      written.events,
      { runId: lease.runId, epoch: lease.epoch },
      { hinted: writer.hints },
    );
    // The thread's next run, or runs parked behind the run's concurrency key, can start now.
    if (written.released > 0) this.options.bus.notifyWork();
  }

  /** Stops the flush timer; buffered events are dropped (the attempt is being abandoned). */
  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.flushQueued = false;
    this.buffer = [];
  }
}
