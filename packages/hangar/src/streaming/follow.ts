import type { Bus, ThreadMessage } from '../bus/bus.ts';
import { type EventEnvelope, isTerminalEvent } from '../events/envelope.ts';
import { readEvents } from '../events/log.ts';
import type { Queryable } from '../store/sql.ts';

export interface FollowOptions {
  db: Queryable;
  bus: Bus;
  tenantId: string;
  threadId: string;
  /** The client's position: events with a greater seq are delivered. */
  afterSeq: number;
  /** Only this run's events; the stream ends after the run's terminal event. */
  runId?: string;
  signal: AbortSignal;
  pageSize?: number;
  /** Re-read the log this often when the bus is silent (a lost hint costs latency, never events). */
  pollMs?: number;
  /**
   * Asked when the bus has been quiet for `pollMs` (with `runId`): true when
   * the run has ended. The stream then ends after a last read of the log, even
   * if the client's position was already past the run's terminal event.
   */
  runEnded?: () => Promise<boolean>;
  /** Live messages held while the reader is busy; past this the log is re-read instead. */
  maxQueued?: number;
}

/**
 * Follows a thread's event log from a position, with no gap and no duplicate:
 * subscribe to the bus first, then read the log after the position in pages,
 * then go live; a live event that does not continue the sequence (a gap, or a
 * hint from another process) sends the reader back to the log.
 */
export async function* followThread(options: FollowOptions): AsyncGenerator<EventEnvelope> {
  const { db, bus, tenantId, threadId, runId, signal } = options;
  const pageSize = options.pageSize ?? 500;
  const pollMs = options.pollMs ?? 2_000;
  const maxQueued = options.maxQueued ?? 1_000;
  const queue: ThreadMessage[] = [];
  let overflowed = false;
  let wakeUp: (() => void) | undefined;
  const unsubscribe = bus.subscribeThread(threadId, (message) => {
    if (queue.length >= maxQueued) {
      // The log is the buffer: drop live messages and read them back from it.
      queue.length = 0;
      overflowed = true;
    } else {
      queue.push(message);
    }
    wakeUp?.();
  });
  const onAbort = () => wakeUp?.();
  signal.addEventListener('abort', onAbort);
  let last = options.afterSeq;
  const wanted = (event: EventEnvelope) => runId === undefined || event.run_id === runId;
  try {
    let readLog = true;
    let finalRead = false;
    while (!signal.aborted) {
      if (readLog || overflowed) {
        readLog = false;
        overflowed = false;
        for (;;) {
          const page = await readEvents(db, tenantId, threadId, { afterSeq: last, limit: pageSize });
          for (const event of page) {
            last = event.seq;
            if (!wanted(event)) continue;
            yield event;
            if (runId !== undefined && isTerminalEvent(event)) return;
          }
          if (page.length < pageSize || signal.aborted) break;
        }
        if (finalRead) return;
        continue;
      }
      const message = queue.shift();
      if (message === undefined) {
        const timedOut = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(true), pollMs);
          wakeUp = () => {
            clearTimeout(timer);
            resolve(false);
          };
        });
        wakeUp = undefined;
        if (timedOut) {
          readLog = true;
          if (options.runEnded !== undefined && (await options.runEnded())) finalRead = true;
        }
        continue;
      }
      if (message.kind === 'hint') {
        if (message.lastSeq > last) readLog = true;
        continue;
      }
      for (const event of message.events) {
        if (event.seq <= last) continue;
        if (event.seq !== last + 1) {
          readLog = true;
          break;
        }
        last = event.seq;
        if (!wanted(event)) continue;
        yield event;
        if (runId !== undefined && isTerminalEvent(event)) return;
      }
    }
  } finally {
    unsubscribe();
    signal.removeEventListener('abort', onAbort);
  }
}
