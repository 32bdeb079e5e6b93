import { backoffDelay, type ReconnectOptions, reconnectPolicy, sleep } from './backoff.ts';
import { HangarApiError, isRetryable, StreamError } from './errors.ts';
import type { StreamEvent, StreamItem, StreamReset } from './events.ts';

/**
 * The transport-independent half of every stream: reconnect with backoff,
 * resume from the last `seq`, drop what was already delivered. A transport
 * only has to open one connection from a position and yield what it reads;
 * this loop decides when to open the next one.
 */

/** The server ended a connection and said whether to come back (SSE `event: close`, WebSocket close codes). */
export interface ConnectionClose {
  type: 'close';
  code: number;
  reason: string;
  reconnect: boolean;
}

/**
 * The server could not continue from the client's position. `restartsAfter`
 * is where it continues instead: absent when it goes on from the client's
 * position (the client must still resync: continuity was lost), `null` when
 * unknown (then nothing already seen can be told apart from new events).
 */
export interface ConnectionReset {
  type: 'reset';
  reason: string;
  restartsAfter?: number | null;
}

/** There is nothing more to stream (a run that ended before the position the stream resumes after). */
export interface ConnectionEnd {
  type: 'end';
}

export type ConnectionItem = StreamEvent | ConnectionReset | ConnectionClose | ConnectionEnd;

/**
 * Opens one connection that delivers events after `after` (everything the
 * server has for a fresh stream when undefined) and yields them; it returns
 * when the connection ends and throws when it fails (a `retryable: false`
 * error stops the stream).
 */
export type Connect = (after: number | undefined, signal: AbortSignal) => AsyncIterable<ConnectionItem>;

export interface ReconnectInfo {
  /** Consecutive failed connections so far (1 for the first reconnect). */
  attempt: number;
  delayMs: number;
  /** Why the last connection ended. */
  error: unknown;
  /** The position the next connection resumes after. */
  after: number | undefined;
}

export interface StreamOptions {
  reconnect?: ReconnectOptions;
  /**
   * SSE: reconnect when nothing, not even a heartbeat, arrived for this long
   * (a connection that died silently). Default 45 000 (the gateway beats every 15 s).
   */
  idleTimeoutMs?: number;
  /** Called before each reconnect, after the delay is chosen. */
  onReconnect?: (info: ReconnectInfo) => void;
  /** Aborting it closes the stream (as `close()`). */
  signal?: AbortSignal;
}

/** What a transport adds to the caller's options when it makes a stream. */
export interface EventStreamInit extends StreamOptions {
  /** Resume after this position; the server's default start when absent. */
  after?: number;
  /** Whether an event is the stream's last (a run's terminal event); a thread stream has none. */
  ends?: (event: StreamEvent) => boolean;
}

export interface StreamStats {
  /** Connections tried (the first one included). */
  connections: number;
  /** Events received again after a reconnect (seq not above the last delivered) and dropped. */
  duplicatesDropped: number;
  resets: number;
}

/**
 * A resumable stream of a thread's events: an async iterable (one consumer),
 * closed by `close()`, by breaking out of the loop, or by the `signal`.
 *
 * @example
 * const stream = client.streamRun(threadId, runId);
 * for await (const item of stream) {
 *   if (item.type === 'reset') resync();
 *   else render(item);
 * }
 */
export class EventStream<D = unknown> implements AsyncIterable<StreamItem<D>> {
  private readonly abort = new AbortController();
  private readonly options: EventStreamInit;
  private position: number | undefined;
  private iterated = false;
  readonly stats: StreamStats = { connections: 0, duplicatesDropped: 0, resets: 0 };

  /** `connect` opens one connection from a position; the stream decides when to call it again. */
  constructor(
    private readonly connect: Connect,
    options: EventStreamInit = {},
  ) {
    this.options = options;
    this.position = options.after;
    const outer = options.signal;
    if (outer !== undefined) {
      if (outer.aborted) this.abort.abort();
      const forward = () => this.abort.abort();
      outer.addEventListener('abort', forward, { once: true });
      this.abort.signal.addEventListener('abort', () => outer.removeEventListener('abort', forward), {
        once: true,
      });
    }
  }

  /** The seq of the last event delivered: where a new stream would resume. */
  get lastSeq(): number | undefined {
    return this.position;
  }

  get closed(): boolean {
    return this.abort.signal.aborted;
  }

  /** Ends the stream: the current connection is closed and iteration ends. */
  close(): void {
    this.abort.abort();
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamItem<D>> {
    if (this.iterated) throw new Error('an EventStream can be iterated once; open another stream');
    this.iterated = true;
    return this.drive();
  }

  private async *drive(): AsyncGenerator<StreamItem<D>> {
    const policy = reconnectPolicy(this.options.reconnect);
    const signal = this.abort.signal;
    const ends = this.options.ends;
    let failures = 0;
    try {
      while (!signal.aborted) {
        let error: unknown;
        let floorMs = 0;
        let lastHere: number | undefined;
        try {
          this.stats.connections++;
          for await (const item of this.connect(this.position, signal)) {
            if (item.type === 'end') return;
            if (item.type === 'close') {
              if (!item.reconnect) {
                throw new StreamError(`stream closed by the server: ${item.code} ${item.reason}`, {
                  closeCode: item.code,
                  retryable: false,
                });
              }
              error = new StreamError(`server asked to reconnect: ${item.code} ${item.reason}`, {
                closeCode: item.code,
                retryable: true,
              });
              break;
            }
            if (item.type === 'reset') {
              this.stats.resets++;
              const reset: StreamReset = {
                type: 'reset',
                recovered: false,
                from: this.position,
                reason: item.reason,
              };
              if (item.restartsAfter !== undefined) this.position = item.restartsAfter ?? undefined;
              yield reset;
              continue;
            }
            // Frames of one event share its seq (LangGraph modes map one event to several): a seq
            // equal to the last one is new only on the connection that delivered that one.
            const seen =
              this.position !== undefined &&
              (item.seq < this.position || (item.seq === this.position && item.seq !== lastHere));
            if (seen) {
              this.stats.duplicatesDropped++;
              continue;
            }
            this.position = item.seq;
            lastHere = item.seq;
            failures = 0;
            yield item as StreamEvent<D>;
            if (ends?.(item)) return;
          }
          error ??= new StreamError('the connection ended', { retryable: true });
        } catch (err) {
          if (signal.aborted) return;
          if (!isRetryable(err)) throw err;
          error = err;
          if (err instanceof HangarApiError && err.retryAfterMs !== undefined) floorMs = err.retryAfterMs;
        }
        if (signal.aborted) return;
        failures++;
        if (failures > policy.maxAttempts) {
          throw new StreamError(`gave up after ${failures} failed connection(s)`, {
            retryable: false,
            cause: error,
          });
        }
        const delayMs = backoffDelay(policy, failures, floorMs);
        this.options.onReconnect?.({ attempt: failures, delayMs, error, after: this.position });
        await sleep(delayMs, signal);
      }
    } finally {
      this.abort.abort();
    }
  }
}

export interface StreamHandlers<D = unknown> {
  onEvent(event: StreamEvent<D>): void;
  /**
   * A reset (events may be missing: resync); the stream goes on. Without this
   * handler a reset ends the stream with an error to `onError`: it is never skipped silently.
   */
  onReset?(reset: StreamReset): void;
  /** The stream failed for good (terminal close, refused, reconnects exhausted), or a handler threw. */
  onError?(error: unknown): void;
  /** The stream ended: the run's end reached, or unsubscribed. */
  onEnd?(): void;
}

/**
 * Drives a stream into callbacks; returns the unsubscribe function.
 *
 * @example
 * const unsubscribe = subscribe(client.streamThread(threadId, { channels: ['messages'] }), {
 *   onEvent: (event) => console.log(event.seq, event.data),
 *   onReset: () => reloadState(),
 *   onError: (err) => showOffline(err),
 * });
 */
export function subscribe<D>(stream: EventStream<D>, handlers: StreamHandlers<D>): () => void {
  const pump = async () => {
    try {
      for await (const item of stream) {
        if (item.type === 'event') handlers.onEvent(item);
        else if (handlers.onReset !== undefined) handlers.onReset(item);
        else
          throw new StreamError(`stream reset (${item.reason}): events may be missing`, { retryable: false });
      }
      handlers.onEnd?.();
    } catch (err) {
      // Without onError a failure has nowhere to go; the stream is closed either way.
      handlers.onError?.(err);
    }
  };
  void pump();
  return () => stream.close();
}
