import { z } from 'zod';
import { HangarError } from '../errors.ts';
import type { EventEnvelope } from '../events/envelope.ts';

/**
 * The Agent Protocol streaming framing (spec `streaming-protocol.cddl`
 * v0.0.13) as Hangar speaks it on the thread stream: command parsing, the
 * map from Hangar's log channels to the spec's event methods, subscription
 * filters, and the response/error shapes. Transport-free: the WebSocket
 * (streaming/ws.ts) and the SSE stream (streaming/thread-sse.ts) share it.
 * docs/streaming.md, "Transports", is the reader's version of this file.
 */

/** The spec's channels a client may name (plus `custom:<name>`). */
export const SPEC_CHANNELS = [
  'values',
  'updates',
  'messages',
  'tools',
  'lifecycle',
  'input',
  'checkpoints',
  'tasks',
  'custom',
] as const;

const Channel = z.union([
  z.enum(SPEC_CHANNELS),
  z.string().regex(/^custom:[a-z][a-z0-9_.-]{0,63}$/, 'must be a spec channel or custom:<name>'),
]);

const Namespace = z.array(z.string().min(1).max(200)).max(32);

/** A subscription's filter: `SubscribeParams` / `EventStreamRequest` without `since`. */
export const FilterFields = {
  channels: z.array(Channel).min(1).max(16),
  namespaces: z.array(Namespace).max(16).optional(),
  depth: z.number().int().min(0).max(64).optional(),
};

const Seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** `POST /threads/{id}/stream`'s body (`EventStreamRequest`). Unknown fields are ignored (Extensible). */
export const EventStreamRequest = z.object({ ...FilterFields, since: Seq.optional() });

export const SubscribeParams = z.object({ ...FilterFields, since: Seq.optional() });
export const UnsubscribeParams = z.object({ subscriptionId: z.string().min(1).max(4096) });
export const ReconnectParams = z.object({
  runId: z.string().uuid().optional(),
  lastEventId: z
    .string()
    .regex(/^\d{1,15}$/, 'must be a seq (digits) as received in eventId')
    .optional(),
  subscriptions: z.array(z.string().min(1).max(4096)).max(32).optional(),
});
export const RunStartParams = z.object({
  assistantId: z.string().min(1).max(200),
  input: z.unknown(),
  config: z.record(z.string(), z.unknown()).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});
const RespondEntry = z.object({
  namespace: Namespace,
  interruptId: z.string().uuid(),
  response: z.unknown(),
});
const RespondExtras = {
  update: z.null({ error: 'update is not supported by Hangar agents' }).optional(),
  goto: z.null({ error: 'goto is not supported by Hangar agents' }).optional(),
  config: z.record(z.string(), z.unknown()).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
};
export const InputRespondParams = z.union([
  z.object({ ...RespondEntry.shape, ...RespondExtras }),
  z.object({ responses: z.array(RespondEntry).min(1).max(64), ...RespondExtras }),
]);

/** A command's envelope; `params` is checked per method. */
export const CommandEnvelope = z.object({
  id: Seq,
  method: z.string().min(1).max(100),
  params: z.record(z.string(), z.unknown()).optional(),
});

/** The spec's `ErrorCode`. */
export type ProtocolErrorCode =
  | 'invalid_argument'
  | 'unknown_command'
  | 'unknown_error'
  | 'no_such_run'
  | 'no_such_subscription'
  | 'no_such_namespace'
  | 'no_such_interrupt'
  | 'no_such_checkpoint'
  | 'permission_denied'
  | 'not_supported';

/** A command that failed: answered as an `ErrorResponse`; the connection stays open. */
export class ProtocolError extends Error {
  constructor(
    readonly error: ProtocolErrorCode,
    message: string,
    readonly extra: { code?: string; field?: string; details?: Record<string, unknown> } = {},
  ) {
    super(message);
  }
}

export interface SuccessResponse {
  type: 'success';
  id: number;
  result: Record<string, unknown>;
  meta?: { appliedThroughSeq?: number };
}

export interface ErrorResponse {
  type: 'error';
  id: number | null;
  error: ProtocolErrorCode;
  message: string;
  code?: string;
  field?: string;
  details?: Record<string, unknown>;
}

/** An `Event` as sent; `runId` is Hangar's extension. */
export interface ProtocolEvent {
  type: 'event';
  eventId: string;
  seq: number;
  runId?: string;
  method: string;
  params: { namespace: string[]; timestamp: number; data: unknown };
}

/** Parses `params` of a command with `schema`, or throws `invalid_argument` naming the field. */
export function parseParams<S extends z.ZodType>(schema: S, params: unknown): z.output<S> {
  const parsed = schema.safeParse(params ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = ['params', ...(issue?.path ?? []).map(String)].join('.');
  throw new ProtocolError('invalid_argument', `${field}: ${issue?.message ?? 'invalid'}`, {
    code: 'invalid_request',
    field,
    details: { issues: parsed.error.issues.map((i) => ({ path: i.path.map(String), message: i.message })) },
  });
}

const HANGAR_TO_PROTOCOL: Partial<Record<string, ProtocolErrorCode>> = {
  invalid_request: 'invalid_argument',
  invalid_json: 'invalid_argument',
  input_invalid: 'invalid_argument',
  agent_not_found: 'invalid_argument',
  conflict: 'invalid_argument',
  idempotency_key_reused: 'invalid_argument',
  body_too_large: 'invalid_argument',
  unauthorized: 'permission_denied',
  forbidden: 'permission_denied',
};

/**
 * The `ErrorResponse` for anything a command threw. Hangar's own error code
 * travels as `code` (with `details`), so a client can tell `rate_limited`
 * or `conflict` apart; only bugs become `unknown_error` without details.
 */
export function errorResponse(id: number | null, err: unknown): ErrorResponse {
  if (err instanceof ProtocolError) {
    return { type: 'error', id, error: err.error, message: err.message, ...err.extra };
  }
  if (err instanceof HangarError) {
    const json = err.toJSON();
    return {
      type: 'error',
      id,
      error: HANGAR_TO_PROTOCOL[err.code] ?? 'unknown_error',
      message: err.code === 'internal' ? 'internal server error' : err.message,
      code: err.code,
      ...(json.details === undefined || err.code === 'internal' ? {} : { details: json.details }),
    };
  }
  return { type: 'error', id, error: 'unknown_error', message: 'internal server error', code: 'internal' };
}

/** A subscription's filter, normalized. */
export interface Filter {
  channels: string[];
  namespaces: string[][];
  depth?: number;
}

export function toFilter(params: { channels: string[]; namespaces?: string[][]; depth?: number }): Filter {
  return {
    channels: [...new Set(params.channels)].sort(),
    namespaces: params.namespaces === undefined || params.namespaces.length === 0 ? [[]] : params.namespaces,
    ...(params.depth === undefined ? {} : { depth: params.depth }),
  };
}

/**
 * Subscription ids describe their filter (`s1.` + base64url JSON), so a
 * `subscription.reconnect` on a new socket, on any gateway, restores them
 * without server state. A socket holding the same filter twice gets a
 * `#n` suffix on the second id.
 */
export function subscriptionId(filter: Filter): string {
  const compact = {
    c: filter.channels,
    n: filter.namespaces,
    ...(filter.depth === undefined ? {} : { d: filter.depth }),
  };
  return `s1.${Buffer.from(JSON.stringify(compact)).toString('base64url')}`;
}

/** The filter a subscription id describes; `no_such_subscription` when it is not one of ours. */
export function filterOfId(id: string): Filter {
  const bad = () =>
    new ProtocolError('no_such_subscription', `subscription ${id.slice(0, 80)} is not a subscription id`, {
      field: 'params.subscriptions',
    });
  const match = /^s1\.([A-Za-z0-9_-]+)(#\d+)?$/.exec(id);
  if (match === null) throw bad();
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(match[1] ?? '', 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  const parsed = z
    .object({ c: FilterFields.channels, n: z.array(Namespace).max(16), d: FilterFields.depth })
    .safeParse(raw);
  if (!parsed.success) throw bad();
  return toFilter({
    channels: parsed.data.c,
    namespaces: parsed.data.n,
    ...(parsed.data.d === undefined ? {} : { depth: parsed.data.d }),
  });
}

/** Whether a protocol event passes a filter (channel, then namespace prefix and depth). */
export function matches(filter: Filter, channel: string, namespace: readonly string[]): boolean {
  const channelOk = filter.channels.some(
    (c) => c === channel || (c === 'custom' && channel.startsWith('custom:')),
  );
  if (!channelOk) return false;
  return filter.namespaces.some(
    (prefix) =>
      prefix.length <= namespace.length &&
      prefix.every((part, i) => namespace[i] === part) &&
      (filter.depth === undefined || namespace.length - prefix.length <= filter.depth),
  );
}

const STANDARD = new Set<string>(['values', 'messages', 'tools', 'checkpoints', 'tasks']);

/**
 * A Hangar log event as the spec's `Event`, with the spec channel it belongs
 * to (what filters match). See the mapping table in docs/streaming.md.
 */
export function toProtocolEvent(envelope: EventEnvelope): { channel: string; event: ProtocolEvent } {
  const { channel, method, data } = mapChannel(envelope);
  const event: ProtocolEvent = {
    type: 'event',
    eventId: String(envelope.seq),
    seq: envelope.seq,
    ...(envelope.run_id === null ? {} : { runId: envelope.run_id }),
    method,
    params: { namespace: envelope.namespace ?? [], timestamp: Date.parse(envelope.ts), data },
  };
  return { channel, event };
}

function mapChannel(envelope: EventEnvelope): { channel: string; method: string; data: unknown } {
  const { channel, data } = envelope;
  if (STANDARD.has(channel)) return { channel, method: channel, data };
  switch (channel) {
    case 'lifecycle':
      return { channel, method: channel, data: lifecycleData(envelope) };
    case 'updates': {
      const keys = isObject(data) ? Object.keys(data) : [];
      const node = keys.length === 1 ? keys[0] : undefined;
      return {
        channel,
        method: channel,
        data: { ...(node === undefined ? {} : { node }), values: isObject(data) ? data : { value: data } },
      };
    }
    case 'custom':
      return { channel, method: channel, data: { payload: data } };
    case 'input': {
      const { event: _event, ...rest } = isObject(data) ? data : { payload: data };
      return { channel, method: 'input.requested', data: rest };
    }
    default:
      return {
        channel: `custom:${channel}`,
        method: `custom:${channel}`,
        data: { name: channel, payload: data },
      };
  }
}

/** Hangar's lifecycle events as the spec's `LifecycleData` (the marker passes through). */
function lifecycleData(envelope: EventEnvelope): unknown {
  const data = envelope.data;
  if (!isObject(data)) return data;
  const runId = envelope.run_id ?? undefined;
  switch (data.event) {
    case 'run.started':
      return { event: 'started', runId, attempt: data.attempt ?? envelope.attempt };
    case 'run.waiting':
      return {
        event: 'running',
        runId,
        waiting: {
          ...(data.until === undefined ? {} : { until: data.until }),
          ...(data.for_event === undefined ? {} : { forEvent: data.for_event }),
        },
      };
    case 'run.interrupted':
      // Parallel interrupts (one Promise.all): `interruptId` is the first, `interruptIds` all of them.
      return {
        event: 'interrupted',
        runId,
        interruptId: data.interrupt_id,
        ...(Array.isArray(data.interrupt_ids) ? { interruptIds: data.interrupt_ids } : {}),
      };
    case 'run.completed': {
      if (data.status === 'success') {
        return { event: 'completed', runId, status: 'success', output: data.output ?? null, terminal: true };
      }
      const error = isObject(data.error) ? data.error : {};
      return {
        event: 'failed',
        runId,
        status: data.status,
        error:
          typeof error.message === 'string' ? error.message : `run ended with status ${String(data.status)}`,
        errorDetail: data.error ?? null,
        terminal: true,
      };
    }
    default:
      return data;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
