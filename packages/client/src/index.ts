/**
 * @hangar/client — a Hangar client for browsers and Node ≥ 20: idempotent run
 * creation, and run and thread streams that reconnect, resume from the last
 * seq, drop duplicates, surface resets, and apply attempt fencing.
 */
export { backoffDelay, type ReconnectOptions, reconnectPolicy } from './backoff.ts';
export {
  type CreateRunOptions,
  HangarClient,
  type HangarClientOptions,
  type RunStreamOptions,
  type ThreadStreamOptions,
} from './client.ts';
export { HangarApiError, isRetryableStatus, StreamError } from './errors.ts';
export {
  type DiscardMarker,
  discardMarker,
  isRunEnd,
  type StreamEvent,
  type StreamItem,
  type StreamReset,
} from './events.ts';
export {
  EventStream,
  type ReconnectInfo,
  type StreamHandlers,
  type StreamOptions,
  type StreamStats,
  subscribe,
} from './resumable.ts';
export {
  newIdempotencyKey,
  type Run,
  type RunCreate,
  type RunStatus,
  TERMINAL_STATUSES,
  type Thread,
} from './runs.ts';
export { type SseFrame, sseFrames } from './sse.ts';
export type { ThreadFilter } from './thread-stream.ts';
export { type ApplyResult, type AssembledMessage, VisibleOutput } from './visible-output.ts';
export { SUBPROTOCOL, type WebSocketConstructor, type WebSocketLike } from './websocket.ts';
