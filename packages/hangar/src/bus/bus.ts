import type { EventEnvelope } from '../events/envelope.ts';

/**
 * What a subscriber of a thread hears: the events themselves (in-process, or
 * carried by Redis pub/sub) or only a hint that the log has grown to `lastSeq`
 * (Postgres NOTIFY, or a reconnect after which messages may have been missed).
 * Either way the log stays the truth: a reader that sees a gap reads the log.
 */
export type ThreadMessage = { kind: 'events'; events: EventEnvelope[] } | { kind: 'hint'; lastSeq: number };

export type Unsubscribe = () => void;

/**
 * Who published a batch: the run's lease epoch. A bus that holds events (Redis)
 * refuses a batch of a run for which a higher epoch already published, so a
 * worker that lost its lease cannot interleave late output with its successor's.
 */
export interface PublishFence {
  runId: string;
  epoch: number;
}

export interface PublishOptions {
  /** The committing statement already NOTIFYed the thread's hint (see `Bus.hintChannel`): don't send another. */
  hinted?: boolean;
}

/**
 * A read of the bus's hot tail of a thread (the Redis stream): events after a
 * position, in seq order, possibly with holes (a dropped publish) and never
 * the only copy (the Postgres log is the truth; positions are its seqs).
 */
export interface TailRead {
  /** Events with seq > the position asked for, ascending; at most the limit asked for. */
  events: EventEnvelope[];
  /** The highest seq the tail holds (0 when it holds nothing: lost, expired or never written). */
  lastSeq: number;
  /** Identifies this incarnation of the tail; it changes when the tail was lost and recreated. */
  generation: string | null;
}

/**
 * The bus port: fan-out between Hangar's processes. Nothing on the bus is the
 * only copy of anything; a lost message costs latency (a poll finds it), never
 * data.
 */
export interface Bus {
  /**
   * Called after the events' transaction committed, in seq order per thread.
   * Never blocks and never throws: the events are already durable.
   */
  publishEvents(
    threadId: string,
    events: readonly EventEnvelope[],
    fence?: PublishFence,
    options?: PublishOptions,
  ): void;
  /**
   * The Postgres NOTIFY channel this bus carries thread hints on, when it
   * carries them that way (PostgresBus): a writer may send a thread's hint
   * (`thread_id:last_seq`, one notice a thread) in the transaction
   * that logs the events, at no extra round trip, and publish with `hinted`.
   */
  readonly hintChannel?: string;
  /**
   * Live messages of a thread. A `hint` is also sent once a subscription that
   * was not yet active becomes active, so a reader that read before it knows
   * to read again.
   */
  subscribeThread(threadId: string, handler: (message: ThreadMessage) => void): Unsubscribe;
  /** The bus's recent events of a thread after a position, when it keeps any (undefined: it doesn't, or can't now). */
  readTail?(threadId: string, afterSeq: number, limit: number): Promise<TailRead | undefined>;
  /** New or re-queued work exists: idle workers should try to claim. */
  notifyWork(): void;
  onWork(handler: () => void): Unsubscribe;
  /** A run was asked to cancel: the worker holding it should look now rather than at its next heartbeat. */
  notifyCancel(runId: string): void;
  onCancel(handler: (runId: string) => void): Unsubscribe;
  close(): Promise<void>;
}
