/**
 * The WebSocket the client needs, structurally: the browser's global one and
 * the `ws` package's both fit, so the client has no dependency on either
 * (Node 20 has no global WebSocket: pass `ws` in the client's options).
 */
export interface WebSocketLike {
  readonly readyState: number;
  /** The subprotocol the server selected. */
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open', listener: () => void): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
  addEventListener(type: 'error', listener: (event: unknown) => void): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The subprotocol the gateway speaks; the key rides along as `hangar.key.<key>` (browsers cannot set headers). */
export const SUBPROTOCOL = 'hangar.v1';

export function webSocketProtocols(apiKey: string | undefined): string[] {
  return apiKey === undefined ? [SUBPROTOCOL] : [SUBPROTOCOL, `hangar.key.${apiKey}`];
}

/** The global WebSocket, or the one given; fails with what to do when there is neither. */
export function resolveWebSocket(given: WebSocketConstructor | undefined): WebSocketConstructor {
  if (given !== undefined) return given;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global === undefined) {
    throw new Error(
      "no global WebSocket (Node 20): pass one, e.g. new HangarClient({ WebSocket: (await import('ws')).default })",
    );
  }
  return global;
}

export type SocketMessage =
  | { kind: 'message'; data: unknown }
  | { kind: 'close'; code: number; reason: string };

/**
 * An open socket as a queue of messages to await in order, ending with its
 * close. `next()` resolves with the next message (the close last, and again
 * after it).
 */
export class SocketQueue {
  private readonly queue: SocketMessage[] = [];
  private waiter: ((message: SocketMessage) => void) | undefined;
  private ended: SocketMessage | undefined;

  constructor(readonly socket: WebSocketLike) {
    socket.addEventListener('message', (event) => this.push({ kind: 'message', data: event.data }));
    socket.addEventListener('close', (event) =>
      this.push({ kind: 'close', code: event.code, reason: event.reason }),
    );
  }

  private push(message: SocketMessage): void {
    if (this.ended !== undefined) return;
    if (message.kind === 'close') this.ended = message;
    const waiter = this.waiter;
    if (waiter !== undefined) {
      this.waiter = undefined;
      waiter(message);
    } else {
      this.queue.push(message);
    }
  }

  next(): Promise<SocketMessage> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.ended !== undefined) return Promise.resolve(this.ended);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }
}

/** Opens a socket; resolves once open, rejects with the close when it never opens. */
export function openSocket(
  WebSocketImpl: WebSocketConstructor,
  url: string,
  protocols: string[],
  signal: AbortSignal,
): Promise<SocketQueue> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocketImpl(url, protocols);
    const queue = new SocketQueue(socket);
    const onAbort = () => socket.close(1000, 'client closed');
    signal.addEventListener('abort', onAbort, { once: true });
    socket.addEventListener('open', () => resolve(queue));
    // A failure is followed by a close, which says what there is to say; `ws` throws an unheard error.
    socket.addEventListener('error', () => {});
    socket.addEventListener('close', (event) => {
      signal.removeEventListener('abort', onAbort);
      reject(new SocketClosedBeforeOpen(event.code, event.reason));
    });
  });
}

/** The upgrade failed (refused, unreachable): browsers do not say why, so the close code is all there is. */
export class SocketClosedBeforeOpen extends Error {
  override readonly name = 'SocketClosedBeforeOpen';
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(`WebSocket closed before it opened (${code}${reason === '' ? '' : ` ${reason}`})`);
  }
}
