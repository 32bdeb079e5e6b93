import { backoffDelay, type ReconnectOptions, reconnectPolicy, sleep } from './backoff.ts';
import { HangarApiError, isAbort, isRetryable } from './errors.ts';
import { isRunEnd } from './events.ts';
import { Http, type HttpOptions } from './http.ts';
import { EventStream, type StreamHandlers, type StreamOptions, subscribe } from './resumable.ts';
import { runSseConnect } from './run-stream.ts';
import { newIdempotencyKey, type Run, type RunCreate, type Thread } from './runs.ts';
import { type ThreadFilter, threadSseConnect, threadWebSocketConnect } from './thread-stream.ts';
import type { WebSocketConstructor } from './websocket.ts';

export interface HangarClientOptions extends HttpOptions {
  /** The WebSocket class; the global one when there is one. Node 20 has none: pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect timing for every stream (each stream may override it). */
  reconnect?: ReconnectOptions;
}

export interface CreateRunOptions {
  /**
   * The `Idempotency-Key` (1–200 printable ASCII characters). One is made up
   * when absent; pass your own to make retries across page reloads or
   * processes safe too (a repeat answers the run the first request created).
   */
  idempotencyKey?: string;
  /** Tries in all, for failures that may be transient (network, 5xx, 408, 429, a key in flight). Default 4. */
  attempts?: number;
  signal?: AbortSignal;
}

export interface RunStreamOptions extends StreamOptions {
  /** Resume after this seq (a position kept from an earlier stream); from the run's start by default. */
  after?: number;
  /** LangGraph stream modes; by default the run's own modes, else Hangar's channels. */
  streamMode?: string[];
}

export interface ThreadStreamOptions extends StreamOptions, ThreadFilter {
  /** Replay after this seq; without it the stream starts at the thread's current position (live). */
  since?: number;
  /** `websocket` by default when a WebSocket is available, else `sse`. */
  transport?: 'websocket' | 'sse';
}

/**
 * A client for a Hangar gateway, for browsers and Node ≥ 20 (fetch,
 * ReadableStream, WebSocket; nothing Node-only).
 *
 * @example
 * const client = new HangarClient({ baseUrl: 'http://127.0.0.1:2024', apiKey: 'hgr_…' });
 * const run = await client.createRun(threadId, { assistant_id: 'writer', input: { topic: 'tides' } });
 * for await (const item of client.streamRun(run.thread_id, run.run_id)) {
 *   if (item.type === 'event') console.log(item.seq, item.channel, item.data);
 * }
 */
export class HangarClient {
  readonly http: Http;
  private readonly WebSocket: WebSocketConstructor | undefined;
  private readonly reconnect: ReconnectOptions | undefined;

  constructor(options: HangarClientOptions) {
    this.http = new Http(options);
    this.WebSocket = options.WebSocket;
    this.reconnect = options.reconnect;
  }

  /** Creates a thread (`POST /threads`). */
  createThread(body: { thread_id?: string; metadata?: Record<string, unknown> } = {}): Promise<Thread> {
    return this.http.json<Thread>('POST', '/threads', { body });
  }

  /**
   * Creates a run on a thread (or a stateless one with `threadId` undefined)
   * and answers it at once, pending. Sent with an `Idempotency-Key`, and
   * repeated with the same key when the answer is lost (network, 5xx) or the
   * gateway is busy (429, a key in flight), so a retry never makes a second
   * run. A 4xx is thrown at once (`422 idempotency_key_reused`: the key was
   * used for another request).
   */
  async createRun(
    threadId: string | undefined,
    body: RunCreate,
    options: CreateRunOptions = {},
  ): Promise<Run> {
    const key = options.idempotencyKey ?? newIdempotencyKey();
    const path = threadId === undefined ? '/runs' : `/threads/${encodeURIComponent(threadId)}/runs`;
    const attempts = options.attempts ?? 4;
    const policy = reconnectPolicy({ initialDelayMs: 200, maxDelayMs: 5_000, ...this.reconnect });
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.http.json<Run>('POST', path, {
          body,
          headers: { 'idempotency-key': key },
          ...(options.signal === undefined ? {} : { signal: options.signal }),
        });
      } catch (err) {
        if (attempt >= attempts || !(isRetryable(err) || isKeyInFlight(err)) || isAbort(err)) throw err;
        const floor = err instanceof HangarApiError ? (err.retryAfterMs ?? 0) : 0;
        await sleep(backoffDelay(policy, attempt, floor), options.signal);
        options.signal?.throwIfAborted();
      }
    }
  }

  getRun(threadId: string, runId: string): Promise<Run> {
    return this.http.json<Run>('GET', runPath(threadId, runId));
  }

  /**
   * Cancels a run. `wait: true` returns once the run has ended; otherwise at
   * once (a running run is ended by its worker shortly after).
   */
  async cancelRun(
    threadId: string,
    runId: string,
    options: { wait?: boolean; action?: 'interrupt' | 'rollback' } = {},
  ): Promise<void> {
    const query = new URLSearchParams();
    if (options.wait === true) query.set('wait', '1');
    if (options.action !== undefined) query.set('action', options.action);
    const response = await this.http.send('POST', `${runPath(threadId, runId)}/cancel?${query}`);
    await response.body?.cancel();
  }

  /**
   * Follows a run's events until its terminal event, over SSE, reconnecting
   * with `Last-Event-ID` when the connection drops: every event once, in order.
   */
  streamRun(threadId: string, runId: string, options: RunStreamOptions = {}): EventStream {
    const connect = runSseConnect(this.http, threadId, runId, {
      ...(options.streamMode === undefined ? {} : { streamMode: options.streamMode }),
      ...(options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs }),
    });
    return new EventStream(connect, {
      ...this.streamOptions(options),
      ...(options.after === undefined ? {} : { after: options.after }),
      ends: isRunEnd,
    });
  }

  /**
   * Follows a thread (every run on it) over the Agent Protocol thread stream,
   * filtered by channel; it does not end by itself (`close()` it, or break).
   */
  streamThread(threadId: string, options: ThreadStreamOptions): EventStream {
    const filter: ThreadFilter = {
      channels: options.channels,
      ...(options.namespaces === undefined ? {} : { namespaces: options.namespaces }),
      ...(options.depth === undefined ? {} : { depth: options.depth }),
    };
    const transport = options.transport ?? (this.hasWebSocket() ? 'websocket' : 'sse');
    const connect =
      transport === 'websocket'
        ? threadWebSocketConnect(this.http, threadId, filter, this.WebSocket)
        : threadSseConnect(this.http, threadId, filter, options.idleTimeoutMs);
    return new EventStream(connect, {
      ...this.streamOptions(options),
      ...(options.since === undefined ? {} : { after: options.since }),
    });
  }

  /**
   * The callback form of a stream: `onEvent` per event, `onReset` when events
   * may have been missed, `onError` when the stream fails for good. Returns
   * the unsubscribe function.
   *
   * @example
   * const unsubscribe = client.subscribe(client.streamThread(threadId, { channels: ['messages'] }), {
   *   onEvent: (event) => view.apply(event),
   *   onReset: () => reload(),
   *   onError: (err) => showOffline(err),
   * });
   */
  subscribe<D>(stream: EventStream<D>, handlers: StreamHandlers<D>): () => void {
    return subscribe(stream, handlers);
  }

  /** The caller's stream options over the client's reconnect defaults. */
  private streamOptions(options: StreamOptions): StreamOptions {
    return {
      reconnect: { ...this.reconnect, ...options.reconnect },
      ...(options.onReconnect === undefined ? {} : { onReconnect: options.onReconnect }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    };
  }

  private hasWebSocket(): boolean {
    return (
      this.WebSocket !== undefined || typeof (globalThis as { WebSocket?: unknown }).WebSocket === 'function'
    );
  }
}

function runPath(threadId: string, runId: string): string {
  return `/threads/${encodeURIComponent(threadId)}/runs/${encodeURIComponent(runId)}`;
}

/** `409` for a repeat whose first request has not committed yet: the docs say retry later. */
function isKeyInFlight(err: unknown): boolean {
  return (
    err instanceof HangarApiError &&
    err.status === 409 &&
    err.details !== undefined &&
    'idempotency_key' in err.details &&
    !('run_id' in err.details)
  );
}
