/**
 * The event envelope (ARCHITECTURE.md, "Events and streaming"). Every event a
 * run produces lands in its thread's log with a `seq` one greater than the
 * previous; a client's position in a stream is the last `seq` it saw.
 */
export interface EventEnvelope<T = unknown> {
  seq: number;
  event_id: string;
  thread_id: string;
  run_id: string | null;
  attempt: number;
  ts: string;
  channel: string;
  namespace: string[];
  data: T;
}

/** An event before the log has given it a place. */
export interface PendingEvent {
  channel: string;
  data: unknown;
  namespace?: string[];
  /** Set for events emitted outside any step: replays skip an op already logged. */
  opKey?: string;
}

/**
 * Channels of the Agent Protocol streaming spec that Hangar produces, plus
 * `lifecycle` for run status changes. Agents emit on `custom` (or any name
 * matching CHANNEL_PATTERN) with `ctx.emit`.
 */
export const CHANNEL_PATTERN = /^[a-z][a-z0-9_.-]{0,63}$/;

/** Lifecycle events mark run status changes; the last one of a run has `terminal: true`. */
export interface LifecycleData {
  event: 'run.started' | 'run.waiting' | 'run.interrupted' | 'run.completed';
  status: string;
  attempt?: number;
  terminal?: boolean;
  until?: string;
  output?: unknown;
  error?: unknown;
}

export function isTerminalEvent(event: EventEnvelope): boolean {
  return (
    event.channel === 'lifecycle' &&
    typeof event.data === 'object' &&
    event.data !== null &&
    (event.data as LifecycleData).terminal === true
  );
}
