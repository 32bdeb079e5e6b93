import type { StreamEvent } from './events.ts';
import { isRecord } from './events.ts';
import type { ConnectionClose, ConnectionItem } from './resumable.ts';

/**
 * The thread stream's wire format (docs/streaming.md "Thread stream
 * framing", after the Agent Protocol's `Event`), decoded into the client's
 * StreamEvent; shared by its SSE and WebSocket transports.
 */

/** An Agent Protocol `Event` as the gateway sends it (`runId` is Hangar's extension). */
export interface WireEvent {
  type: 'event';
  eventId?: string;
  seq: number;
  runId?: string;
  method: string;
  params: { namespace?: string[]; timestamp?: number; data?: unknown };
}

/** A WireEvent as a StreamEvent; undefined for something that is not an event with a seq. */
export function fromWire(value: unknown): StreamEvent | undefined {
  if (!isRecord(value) || value.type !== 'event') return undefined;
  const seq = typeof value.seq === 'number' ? value.seq : Number(value.eventId);
  if (!Number.isSafeInteger(seq) || typeof value.method !== 'string') return undefined;
  const params = isRecord(value.params) ? value.params : {};
  return {
    type: 'event',
    seq,
    // The spec names the input channel's one event by its method.
    channel: value.method === 'input.requested' ? 'input' : value.method,
    runId: typeof value.runId === 'string' ? value.runId : undefined,
    namespace: Array.isArray(params.namespace) ? (params.namespace as string[]) : [],
    timestamp: typeof params.timestamp === 'number' ? params.timestamp : undefined,
    data: params.data,
  };
}

/**
 * Close codes (docs/streaming.md "Close codes"): which end a stream for good.
 * 1008 (key refused) and 1009 (command too big) cannot be fixed by
 * reconnecting; 1000 is the client's own close. Everything else — going
 * away, abnormal, internal, 4000 reconnect, 4001 slow, 4003 reset, and codes
 * this client does not know — is worth a reconnect from the last position.
 */
const TERMINAL_CLOSE_CODES = new Set([1000, 1002, 1003, 1007, 1008, 1009, 1010]);

/** The gateway's "the event plane lost continuity" code: reconnect, and resync. */
export const RESET_CLOSE_CODE = 4003;

/**
 * What a close means for the stream: a reset first when the server could not
 * serve the position (it may say where to restart: `lastSeq`), then the close.
 */
export function closeItems(
  code: number,
  reason: string,
  options: { reconnect?: boolean | undefined; lastSeq?: number | undefined } = {},
): ConnectionItem[] {
  const close: ConnectionClose = {
    type: 'close',
    code,
    reason,
    reconnect: options.reconnect ?? !TERMINAL_CLOSE_CODES.has(code),
  };
  if (code !== RESET_CLOSE_CODE) return [close];
  return [{ type: 'reset', reason: reason || 'reset', restartsAfter: options.lastSeq ?? null }, close];
}
