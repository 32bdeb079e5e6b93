import type { Bus, ThreadMessage } from '../bus/bus.ts';
import { type EventEnvelope, isTerminalEvent } from '../events/envelope.ts';
import { readEvents, readLastSeq } from '../events/log.ts';
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
  /** Re-read the log this often when the bus is silent (a lost message costs latency, never events). */
  pollMs?: number;
  /**
   * Asked when the bus has been quiet for `pollMs` (with `runId`): true when
   * the run has ended. The stream then ends after a last read of the log, even
   * if the client's position was already past the run's terminal event.
   */
  runEnded?: () => Promise<boolean>;
  /** Live messages held while the reader is busy; past this the log is re-read instead. */
  maxQueued?: number;
  /**
   * Check the position first: one the log cannot serve makes the stream throw
   * a `FollowReset` before any event (the transports answer `reset` /
   * `recovered: false`). Without it such a position waits for the log to reach it.
   */
  signalReset?: boolean;
  /**
   * End the stream once it is caught up (the catch-up confirmed by the log and
   * no live message waiting) instead of waiting for more: the reader then
   * takes the thread's shared feed (streaming/feed.ts).
   */
  untilCaughtUp?: boolean;
}

/**
 * The client's position cannot be served: it is beyond the end of the
 * thread's log (a position from another thread or deployment, or made up).
 * The log is append-only and never pruned, so an old position is always
 * served; a client that gets this starts over from the position it is told.
 */
export class FollowReset extends Error {
  readonly reason = 'ahead_of_log' as const;
  constructor(
    /** The position the client asked for. */
    readonly position: number,
    /** The log's last seq now: a valid position to restart from (0: from the beginning). */
    readonly lastSeq: number,
  ) {
    super(`position ${position} is beyond the end of the thread's log (last seq ${lastSeq})`);
    this.name = 'FollowReset';
  }
}

/**
 * Follows a thread's event log from a position, with no gap and no duplicate
 * (docs/streaming.md, "Read path"): subscribe to the bus first; catch up from
 * the bus's tail (the Redis stream) where it continues the position, else from
 * the Postgres log in pages, and end the catch-up with a read of the log (the
 * authority); then go live. Live events are merged by seq: an old one is
 * dropped, one that does not continue the sequence (a gap) or a hint sends the
 * reader back to the tail and the log. The bus being lost, flushed or
 * restarted costs latency: the poll reads the log.
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
  /** The tail's generation when last read: a new one means Redis lost it, so its end proves nothing. */
  let generation: string | null | undefined;
  /**
   * The bus knows threads, not tenants: what it carries is used only once
   * the thread is known to be the tenant's (the log reads filter by tenant).
   */
  let owned = false;
  const wanted = (event: EventEnvelope) => runId === undefined || event.run_id === runId;

  /**
   * The next events after `last`: the tail's, when its first continues the
   * position (up to its first hole); else a page of the log. `done` says the
   * source had nothing more after them.
   */
  async function nextPage(
    fromTail: boolean,
  ): Promise<{ events: EventEnvelope[]; done: boolean; source: 'tail' | 'log' }> {
    if (fromTail && owned && bus.readTail !== undefined) {
      const tail = await bus.readTail(threadId, last, pageSize);
      if (tail !== undefined) {
        const sameGeneration = generation === undefined || generation === tail.generation;
        generation = tail.generation;
        let run = 0;
        while (run < tail.events.length && tail.events[run]?.seq === last + run + 1) run++;
        if (run > 0) return { events: tail.events.slice(0, run), done: false, source: 'tail' };
        if (tail.events.length === 0 && tail.lastSeq >= last && sameGeneration) {
          return { events: [], done: true, source: 'tail' };
        }
      }
    }
    const page = await readEvents(db, tenantId, threadId, { afterSeq: last, limit: pageSize });
    return { events: page, done: page.length < pageSize, source: 'log' };
  }

  try {
    const logEnd = await readLastSeq(db, tenantId, threadId);
    owned = logEnd !== null;
    if (options.signalReset === true && last > (logEnd ?? 0)) throw new FollowReset(last, logEnd ?? 0);
    /** 'confirm': the catch-up ends only when the log itself has nothing more (connect, poll). */
    let read: 'none' | 'refill' | 'confirm' = 'confirm';
    let finalRead = false;
    while (!signal.aborted) {
      if (overflowed) {
        overflowed = false;
        if (read === 'none') read = 'refill';
      }
      if (read !== 'none') {
        const confirm = read === 'confirm';
        read = 'none';
        let fromTail = true;
        for (;;) {
          const { events, done, source } = await nextPage(fromTail);
          for (const event of events) {
            last = event.seq;
            if (!wanted(event)) continue;
            yield event;
            if (runId !== undefined && isTerminalEvent(event)) return;
          }
          if (signal.aborted) break;
          if (!done) continue;
          // The tail says "nothing more"; when it must be sure, the log says so too.
          if (source === 'tail' && confirm) {
            fromTail = false;
            continue;
          }
          break;
        }
        if (finalRead) return;
        continue;
      }
      const message = queue.shift();
      if (message === undefined) {
        if (options.untilCaughtUp === true) return;
        const timedOut = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(true), pollMs);
          wakeUp = () => {
            clearTimeout(timer);
            resolve(false);
          };
        });
        wakeUp = undefined;
        if (timedOut) {
          read = 'confirm';
          if (options.runEnded !== undefined && (await options.runEnded())) finalRead = true;
        }
        continue;
      }
      if (message.kind === 'hint' || !owned) {
        if (message.kind === 'events' || message.lastSeq > last) read = 'refill';
        continue;
      }
      for (const event of message.events) {
        if (event.seq <= last) continue;
        if (event.seq !== last + 1) {
          read = 'refill';
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
