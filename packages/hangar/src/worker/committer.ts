import type { Bus } from '../bus/bus.ts';
import type { EventEnvelope, PendingEvent } from '../events/envelope.ts';
import { type CheckpointWrite, writeCheckpoint } from '../runs/checkpoint.ts';
import type { Lease } from '../runs/types.ts';
import type { SqlClient } from '../store/sql.ts';

export interface CommitterOptions {
  db: SqlClient;
  bus: Bus;
  lease: Lease;
  attempt: number;
  /** How long emitted events may wait before they are written (coalescing window). */
  flushMs: number;
  /** Buffered events above which `emit` waits for a flush (backpressure on chatty agents). */
  maxBuffered: number;
}

/** A checkpoint as the attempt's code asks for it; buffered events are added in front of `events`. */
export type CommitRequest = Omit<CheckpointWrite, 'events'> & { events?: readonly PendingEvent[] };

/**
 * Every write a worker makes for one run attempt goes through here, one at a
 * time, each a single statement fenced by the lease epoch (runs/checkpoint.ts).
 * Emitted events wait in a buffer until the next flush (at most `flushMs`
 * later) or checkpoint, whichever comes first, so an event is durable no later
 * than the step's checkpoint commit. Events are published to the bus only
 * after their commit, in seq order.
 */
export class RunCommitter {
  private buffer: PendingEvent[] = [];
  private chain: Promise<unknown> = Promise.resolve();
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
    if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flush().catch(() => {});
      }, this.options.flushMs);
    }
    return Promise.resolve();
  }

  /** Writes buffered events now. */
  flush(): Promise<void> {
    return this.commit({});
  }

  /** Queues a checkpoint behind the ones before it; resolves once it is committed and published. */
  commit(request: CommitRequest): Promise<void> {
    const next = this.chain.then(() => this.commitNow(request));
    this.chain = next.catch(() => {});
    return next;
  }

  private async commitNow(request: CommitRequest): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const events = this.buffer.concat(request.events ?? []);
    this.buffer = [];
    const { step, values, end } = request;
    if (events.length === 0 && step === undefined && values === undefined && end === undefined) return;
    const { db, lease, attempt } = this.options;
    let written: EventEnvelope[];
    try {
      written = await writeCheckpoint(
        db,
        lease,
        { attempt },
        {
          events,
          ...(step === undefined ? {} : { step }),
          ...(values === undefined ? {} : { values }),
          ...(end === undefined ? {} : { end }),
        },
      );
    } catch (err) {
      this.failure = err;
      throw err;
    }
    this.options.bus.publishEvents(lease.threadId, written);
  }

  /** Stops the flush timer; buffered events are dropped (the attempt is being abandoned). */
  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.buffer = [];
  }
}
