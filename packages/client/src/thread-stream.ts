import { StreamError } from './errors.ts';
import { isRecord } from './events.ts';
import type { Http } from './http.ts';
import type { Connect, ConnectionItem } from './resumable.ts';
import { parseJson } from './run-stream.ts';
import { sseRequest } from './sse-request.ts';
import {
  openSocket,
  resolveWebSocket,
  SocketClosedBeforeOpen,
  type WebSocketConstructor,
  webSocketProtocols,
} from './websocket.ts';
import { closeItems, fromWire, RESET_CLOSE_CODE } from './wire.ts';

/**
 * The Agent Protocol thread stream's two transports (docs/streaming.md
 * "Transports"): `POST /threads/{id}/stream` (SSE, one connection per
 * subscription) and `GET /threads/{id}/stream` (WebSocket, subscriptions as
 * in-band commands). Both resume from the last seq the client saw.
 */
export interface ThreadFilter {
  /** Channels to receive (`messages`, `lifecycle`, `values`, `updates`, `custom`, `input`, `tools`, …). */
  channels: string[];
  /** Namespace prefixes; everything by default. */
  namespaces?: string[][];
  /** Levels below a prefix; unlimited by default. */
  depth?: number;
}

function threadPath(threadId: string): string {
  return `/threads/${encodeURIComponent(threadId)}/stream`;
}

/** The SSE transport: each connection POSTs the filter, with `Last-Event-ID` once it has a position. */
export function threadSseConnect(
  http: Http,
  threadId: string,
  filter: ThreadFilter,
  idleTimeoutMs?: number,
): Connect {
  return async function* connect(after, signal): AsyncGenerator<ConnectionItem> {
    const headers: Record<string, string> = {};
    if (after !== undefined) headers['last-event-id'] = String(after);
    const body = { ...filter, ...(after === undefined ? {} : { since: after }) };
    const request = {
      method: 'POST' as const,
      path: threadPath(threadId),
      headers,
      body,
      ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }),
    };
    for await (const frame of sseRequest(http, request, signal)) {
      if (frame.event === 'close') {
        const close = parseJson(frame.data) as {
          code?: number;
          reason?: string;
          reconnect?: boolean;
          lastSeq?: number;
        };
        yield* closeItems(close.code ?? 1006, close.reason ?? 'closed', close);
        return;
      }
      const event = fromWire(parseJson(frame.data));
      if (event !== undefined) yield event;
    }
  };
}

/**
 * The WebSocket transport. The first connection subscribes
 * (`subscription.subscribe`, with `since` when the caller gave a position);
 * later ones restore the subscription on a new socket with
 * `subscription.reconnect` and the last seq seen, on whichever gateway they reach.
 */
export function threadWebSocketConnect(
  http: Http,
  threadId: string,
  filter: ThreadFilter,
  WebSocketImpl: WebSocketConstructor | undefined,
): Connect {
  const url = `${http.baseUrl.replace(/^http/, 'ws')}${threadPath(threadId)}`;
  let subscriptionId: string | undefined;
  // The position the subscription started at, for a reconnect before any event arrived.
  let applied: number | undefined;
  let nextId = 1;
  return async function* connect(after, signal): AsyncGenerator<ConnectionItem> {
    const WebSocket = resolveWebSocket(WebSocketImpl);
    let queue: Awaited<ReturnType<typeof openSocket>>;
    try {
      queue = await openSocket(WebSocket, url, webSocketProtocols(http.apiKey), signal);
    } catch (err) {
      if (!(err instanceof SocketClosedBeforeOpen) || signal.aborted) throw err;
      // A refused upgrade looks like a lost connection from here; the same request over HTTP says which.
      await http.send('GET', `/threads/${encodeURIComponent(threadId)}`, { signal });
      throw new StreamError(err.message, { closeCode: err.code, retryable: true, cause: err });
    }
    const socket = queue.socket;
    let pending = 0;
    const send = (method: string, params: Record<string, unknown>) => {
      pending = nextId++;
      socket.send(JSON.stringify({ id: pending, method, params }));
    };
    const subscribe = (since: number | undefined) =>
      send('subscription.subscribe', { ...filter, ...(since === undefined ? {} : { since }) });
    try {
      const position = after ?? applied;
      if (subscriptionId === undefined) subscribe(position);
      else {
        send('subscription.reconnect', {
          subscriptions: [subscriptionId],
          ...(position === undefined ? {} : { lastEventId: String(position) }),
        });
      }
      for (;;) {
        const message = await queue.next();
        if (message.kind === 'close') {
          // A reset: the position the subscription started at is no good either.
          if (message.code === RESET_CLOSE_CODE) applied = undefined;
          yield* closeItems(message.code, message.reason);
          return;
        }
        const value = parseJson(typeof message.data === 'string' ? message.data : String(message.data));
        if (!isRecord(value)) continue;
        if (value.type === 'event') {
          const event = fromWire(value);
          if (event !== undefined) yield event;
          continue;
        }
        if (value.id !== pending) continue;
        const meta = isRecord(value.meta) ? value.meta : {};
        const through = typeof meta.appliedThroughSeq === 'number' ? meta.appliedThroughSeq : undefined;
        if (value.type === 'error') {
          // `since` beyond the log's end: a reset; subscribe again from where the log is.
          const lastSeq = isRecord(value.details) ? value.details.last_seq : undefined;
          if (value.field === 'params.since' && typeof lastSeq === 'number') {
            yield { type: 'reset', reason: 'ahead_of_log', restartsAfter: lastSeq };
            subscribe(lastSeq);
            continue;
          }
          throw new StreamError(`subscription refused: ${String(value.error)}: ${String(value.message)}`, {
            retryable: false,
          });
        }
        const result = isRecord(value.result) ? value.result : {};
        if (typeof result.subscriptionId === 'string') subscriptionId = result.subscriptionId;
        applied ??= through;
        // `restored: false`: the position could not be resumed; the subscription goes on from `through`.
        if (result.restored === false) {
          applied = through;
          yield { type: 'reset', reason: 'not_restored', restartsAfter: through ?? null };
        }
      }
    } finally {
      socket.close(1000, 'client closed');
    }
  };
}
