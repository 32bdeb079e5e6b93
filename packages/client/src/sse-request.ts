import { StreamError } from './errors.ts';
import type { Http } from './http.ts';
import { type SseFrame, sseFrames } from './sse.ts';

/**
 * One SSE request with an idle watchdog. A connection can die without
 * either end noticing (a NAT or proxy dropping it silently: half-open); the
 * gateway writes a heartbeat comment every 15 s, so when nothing at all
 * arrives for `idleTimeoutMs` the request is aborted and reported as a lost
 * connection, which the stream reconnects from.
 */
export interface SseRequest {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: unknown;
  /** Default 45 000: three of the gateway's heartbeats. */
  idleTimeoutMs?: number;
}

export const DEFAULT_IDLE_TIMEOUT_MS = 45_000;

export async function* sseRequest(
  http: Http,
  request: SseRequest,
  signal: AbortSignal,
): AsyncGenerator<SseFrame> {
  const idleMs = request.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const abort = new AbortController();
  const onAbort = () => abort.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  let idle = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      idle = true;
      abort.abort();
    }, idleMs);
  };
  try {
    arm();
    const response = await http.send(request.method, request.path, {
      headers: { accept: 'text/event-stream', ...request.headers },
      ...(request.body === undefined ? {} : { body: request.body }),
      signal: abort.signal,
    });
    if (response.body === null) return;
    for await (const frame of sseFrames(response.body, arm)) {
      // The time the caller spends on a frame is not the connection's silence.
      clearTimeout(timer);
      yield frame;
      arm();
    }
  } catch (err) {
    if (idle && !signal.aborted) {
      throw new StreamError(`nothing received for ${idleMs} ms; the connection is presumed lost`, {
        retryable: true,
        cause: err,
      });
    }
    throw err;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
    abort.abort();
  }
}
