import type { StreamEvent } from './events.ts';
import type { Http } from './http.ts';
import type { Connect, ConnectionItem } from './resumable.ts';
import { type Run, TERMINAL_STATUSES } from './runs.ts';
import { sseRequest } from './sse-request.ts';
import { closeItems } from './wire.ts';

/**
 * The run stream transport: `GET /threads/{t}/runs/{r}/stream` (SSE), one
 * frame per event with `id:` = its seq and `event:` = its channel, resumed
 * with `Last-Event-ID`. The gateway ends the response after the run's
 * terminal event; a response that ends before it is a lost connection.
 */
export interface RunStreamTransport {
  /** LangGraph stream modes to ask for; by default the modes the run was created with, else Hangar's channels. */
  streamMode?: string[];
  idleTimeoutMs?: number;
}

export function runSseConnect(
  http: Http,
  threadId: string,
  runId: string,
  options: RunStreamTransport = {},
): Connect {
  const query = new URLSearchParams();
  for (const mode of options.streamMode ?? []) query.append('stream_mode', mode);
  const runPath = `/threads/${encodeURIComponent(threadId)}/runs/${encodeURIComponent(runId)}`;
  const path = `${runPath}/stream${query.size === 0 ? '' : `?${query}`}`;
  return async function* connect(after, signal): AsyncGenerator<ConnectionItem> {
    const headers: Record<string, string> = {};
    if (after !== undefined) headers['last-event-id'] = String(after);
    const request = {
      method: 'GET' as const,
      path,
      headers,
      ...(options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs }),
    };
    let delivered = false;
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
      // Frames without an id (the opening `metadata`) describe the stream, not the run's log.
      if (frame.id === undefined || !/^\d+$/.test(frame.id)) continue;
      delivered = true;
      const event: StreamEvent = {
        type: 'event',
        seq: Number(frame.id),
        channel: frame.event,
        runId,
        namespace: [],
        timestamp: undefined,
        data: parseJson(frame.data),
      };
      yield event;
    }
    // The response ended before the run's end event. Nothing at all after the position of a run
    // that has ended: the position is past its end, and reconnecting would get nothing forever.
    if (!delivered) {
      const run = await http.json<Run>('GET', runPath, { signal });
      if (TERMINAL_STATUSES.includes(run.status)) yield { type: 'end' };
    }
  };
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
