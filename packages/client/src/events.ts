/**
 * What a stream yields: the events of a thread's log, each with its `seq`
 * (its position in the thread's log: resume after it), and `reset` notices
 * when the server could not continue from the client's position. A reset is
 * never hidden: events between the old position and the new one may be
 * missing, so the caller resyncs (reads the thread's state or the run again).
 */

/** One event of a thread's log. */
export interface StreamEvent<D = unknown> {
  type: 'event';
  /** The event's position in its thread's log; increasing within a stream, each seen once. */
  seq: number;
  /**
   * The channel: `messages`, `values`, `updates`, `custom` (or `custom:<name>` on the thread
   * stream), `input`, `tools`, `lifecycle`, … On a run stream of a run created with a LangGraph
   * `stream_mode`, the LangGraph event name (`values`, `messages/partial`, `end`, …).
   */
  channel: string;
  /** The run the event belongs to, when known (the thread stream says; a run stream is one run). */
  runId: string | undefined;
  /** Where in the agent tree the event comes from; `[]` for the root. */
  namespace: string[];
  /** Milliseconds since the epoch, when the transport carries it (the thread stream does). */
  timestamp: number | undefined;
  data: D;
}

/**
 * The server could not resume the stream from the client's position (it is
 * older than what the event plane kept, or the plane lost continuity).
 * Events may have been missed; the stream goes on from where the server
 * restarted it.
 */
export interface StreamReset {
  type: 'reset';
  recovered: false;
  /** The position the client asked to resume after. */
  from: number | undefined;
  /** The server's reason (`reset`, …). */
  reason: string;
}

export type StreamItem<D = unknown> = StreamEvent<D> | StreamReset;

/** The attempt-fencing marker (docs/streaming.md "Attempt fencing"). */
export interface DiscardMarker {
  event: 'output.discarded';
  run_id: string;
  /** The last event committed with a durable checkpoint; output after it up to the marker is void. */
  after_seq: number;
  reason: 'retry' | 'resume' | (string & {});
  attempt: number;
  step?: string;
}

/** The marker an event carries, if it is one. */
export function discardMarker(event: StreamEvent): DiscardMarker | undefined {
  if (event.channel !== 'lifecycle' || !isRecord(event.data)) return undefined;
  const data = event.data;
  if (data.event !== 'output.discarded') return undefined;
  if (typeof data.run_id !== 'string' || typeof data.after_seq !== 'number') return undefined;
  return data as unknown as DiscardMarker;
}

/**
 * Whether the event ends its run: a `lifecycle` event with `terminal: true`
 * (both the run and the thread streams mark the last event of a run so), or
 * LangGraph's `end` on a run stream in a LangGraph `stream_mode`.
 */
export function isRunEnd(event: StreamEvent): boolean {
  if (event.channel === 'end') return true;
  return event.channel === 'lifecycle' && isRecord(event.data) && event.data.terminal === true;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
