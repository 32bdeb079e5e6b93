import type { Bus } from '../bus/bus.ts';
import type { EventEnvelope, PendingEvent } from '../events/envelope.ts';
import { appendEvents } from '../events/log.ts';
import { fence } from '../runs/repository.ts';
import type { Lease } from '../runs/types.ts';
import type { Queryable, SqlClient } from '../store/sql.ts';

export interface CommitterOptions {
  db: SqlClient;
  bus: Bus;
  lease: Lease;
  attempt: number;
  leaseMs: number;
  /** How long emitted events may wait before they are written (coalescing window). */
  flushMs: number;
  /** Buffered events above which `emit` waits for a flush (backpressure on chatty agents). */
  maxBuffered: number;
}

/** Work done inside a commit's transaction; events it returns are appended after the others. */
export type CommitWork = (tx: Queryable) => Promise<readonly PendingEvent[] | undefined>;

/**
 * Every write a worker makes for one run attempt goes through here, one
 * transaction at a time, each fenced by the lease epoch. Emitted events wait in
 * a buffer until the next flush (at most `flushMs` later) or checkpoint,
 * whichever comes first, so an event is durable no later than the step's
 * checkpoint commit. Events are published to the bus only after their commit,
 * in seq order.
 */
export class RunCommitter {
  private buffer: PendingEvent[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private failure: unknown;

  constructor(private readonly options: CommitterOptions) {}

  /** The first error a background flush hit (lease lost, database down). */
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
    return this.commit(async () => undefined);
  }

  /**
   * Runs `work` in one fenced transaction together with every buffered event,
   * then `events`, then the events `work` returns. Resolves once committed and published.
   */
  commit(work: CommitWork, events: readonly PendingEvent[] = []): Promise<void> {
    const next = this.chain.then(() => this.commitNow(work, events));
    this.chain = next.catch(() => {});
    return next;
  }

  private async commitNow(work: CommitWork, events: readonly PendingEvent[]): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const pending = this.buffer.concat(events);
    this.buffer = [];
    const { db, lease, leaseMs, attempt } = this.options;
    let written: EventEnvelope[];
    try {
      written = await db.transaction(async (tx) => {
        await fence(tx, lease, leaseMs);
        const more = await work(tx);
        return appendEvents(
          tx,
          { tenantId: lease.tenantId, threadId: lease.threadId, runId: lease.runId, attempt },
          more ? pending.concat(more) : pending,
        );
      });
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
