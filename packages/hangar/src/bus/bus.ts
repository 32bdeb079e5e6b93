import type { EventEnvelope } from '../events/envelope.ts';

/**
 * What a subscriber of a thread hears: the events themselves (in-process fast
 * path) or only a hint that the log has grown to `lastSeq` (cross-process).
 * Either way the log stays the truth: a reader that sees a gap reads the log.
 */
export type ThreadMessage = { kind: 'events'; events: EventEnvelope[] } | { kind: 'hint'; lastSeq: number };

export type Unsubscribe = () => void;

/**
 * The bus port: latency hints between Hangar's processes. Nothing on the bus is
 * the only copy of anything; a lost message costs latency (a poll finds it),
 * never data.
 */
export interface Bus {
  /** Called after the events' transaction committed, in seq order per thread. */
  publishEvents(threadId: string, events: readonly EventEnvelope[]): void;
  subscribeThread(threadId: string, handler: (message: ThreadMessage) => void): Unsubscribe;
  /** New or re-queued work exists: idle workers should try to claim. */
  notifyWork(): void;
  onWork(handler: () => void): Unsubscribe;
  /** A run was asked to cancel: the worker holding it should look now rather than at its next heartbeat. */
  notifyCancel(runId: string): void;
  onCancel(handler: (runId: string) => void): Unsubscribe;
  close(): Promise<void>;
}
