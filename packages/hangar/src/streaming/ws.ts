import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';
import type { Bus } from '../bus/bus.ts';
import type { Queryable } from '../store/sql.ts';
import type { StreamSettings } from './backpressure.ts';
import {
  CommandEnvelope,
  type ErrorResponse,
  errorResponse,
  filterOfId,
  ProtocolError,
  parseParams,
  ReconnectParams,
  SubscribeParams,
  type SuccessResponse,
  subscriptionId,
  toFilter,
  UnsubscribeParams,
} from './protocol.ts';
import { ThreadPump } from './pump.ts';
import { CLOSE_CODES, type CloseReason, type StreamRegistry } from './registry.ts';

/** What a command answers: its `result`, and the position it applies through when it has one. */
export interface CommandResult {
  result: Record<string, unknown>;
  appliedThroughSeq?: number;
}

/** The commands that act on the thread rather than on the socket (gateway/routes/thread-stream.ts). */
export interface ThreadCommands {
  /** The thread's current log position. */
  position(): Promise<number>;
  runStart(params: unknown): Promise<CommandResult>;
  inputRespond(params: unknown): Promise<CommandResult>;
  /** Throws `no_such_run` unless the run is on this thread. */
  checkRun(runId: string): Promise<void>;
}

export interface WebSocketStreamOptions {
  db: Queryable;
  bus: Bus;
  tenantId: string;
  threadId: string;
  settings: StreamSettings;
  registry: StreamRegistry;
  commands: ThreadCommands;
  logger: Pick<Logger, 'info' | 'error'>;
}

/** Spec methods Hangar does not implement (yet): answered `not_supported`, not `unknown_command`. */
const NOT_SUPPORTED = new Set([
  'input.inject',
  'state.get',
  'state.listCheckpoints',
  'state.fork',
  'agent.getTree',
]);
/** Commands one socket may have in flight; more are refused (a client that never waits for answers). */
const MAX_IN_FLIGHT = 16;

/**
 * Serves one thread WebSocket: in-band commands (spec framing), the
 * subscriptions' events through a ThreadPump, pings, and the close codes of
 * streaming/registry.ts. A bad command gets an error response; the socket
 * stays open.
 */
export function serveWebSocket(socket: WebSocket, options: WebSocketStreamOptions): void {
  const { settings, logger } = options;
  const stop = new AbortController();
  let closed = false;
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });

  const closeWith = (reason: CloseReason) => {
    if (closed || socket.readyState !== socket.OPEN) return;
    logger.info({ reason, queued_bytes: socket.bufferedAmount }, 'thread stream closed by the gateway');
    socket.close(CLOSE_CODES[reason], reason);
  };
  const outlet = {
    queuedBytes: () => socket.bufferedAmount,
    get closed() {
      return closed;
    },
  };
  const sendJson = (message: unknown) => {
    if (closed || socket.readyState !== socket.OPEN) return;
    socket.send(JSON.stringify(message));
  };
  const pump = new ThreadPump({
    db: options.db,
    bus: options.bus,
    tenantId: options.tenantId,
    threadId: options.threadId,
    settings,
    outlet,
    send: sendJson,
    onSlow: () => closeWith('slow'),
    onReset: () => closeWith('reset'),
    onError: (err) => {
      logger.error({ err }, 'thread stream failed');
      if (!closed) socket.close(1011, 'internal error');
    },
    signal: stop.signal,
    logger,
  });

  options.registry.add({
    close: closeWith,
    destroy: () => socket.terminate(),
    done,
  });

  // Pings: a peer that leaves `missedPongs` in a row unanswered is dropped.
  let unanswered = 0;
  socket.on('pong', () => {
    unanswered = 0;
  });
  const heartbeat = setInterval(() => {
    if (unanswered >= settings.missedPongs) {
      logger.info({ missed: unanswered }, 'thread stream peer missed its pings; dropped');
      socket.terminate();
      return;
    }
    unanswered++;
    socket.ping();
  }, settings.heartbeatMs);
  heartbeat.unref();

  const subscribe = async (params: unknown): Promise<CommandResult> => {
    const parsed = parseParams(SubscribeParams, params);
    const filter = toFilter(parsed);
    const now = Math.max(pump.position, await options.commands.position());
    if (parsed.since !== undefined && parsed.since > now) {
      throw new ProtocolError(
        'invalid_argument',
        `params.since: ${parsed.since} is beyond the end of the thread's log (${now})`,
        { code: 'invalid_request', field: 'params.since', details: { last_seq: now } },
      );
    }
    // Checked after the await, right before the add: concurrent subscribes cannot overshoot.
    if (pump.count >= settings.maxSubscriptions) {
      throw new ProtocolError(
        'invalid_argument',
        `this socket holds ${pump.count} subscriptions, its limit; unsubscribe one first`,
        {
          code: 'rate_limited',
          field: 'params',
          details: { limit: 'subscriptions_per_socket', max: settings.maxSubscriptions },
        },
      );
    }
    const from = parsed.since ?? now;
    let id = subscriptionId(filter);
    for (let n = 2; pump.has(id); n++) id = `${subscriptionId(filter)}#${n}`;
    pump.add({ id, filter, from });
    return { result: { subscriptionId: id }, appliedThroughSeq: from };
  };

  const reconnect = async (params: unknown): Promise<CommandResult> => {
    const parsed = parseParams(ReconnectParams, params);
    if (parsed.runId !== undefined) await options.commands.checkRun(parsed.runId);
    const ids = parsed.subscriptions ?? [];
    const filters = ids.map((id) => filterOfId(id));
    const now = Math.max(pump.position, await options.commands.position());
    if (pump.count + ids.length > settings.maxSubscriptions) {
      throw new ProtocolError('invalid_argument', `more than ${settings.maxSubscriptions} subscriptions`, {
        code: 'rate_limited',
        field: 'params.subscriptions',
      });
    }
    // A position beyond the log's end (another thread's, another deployment's) cannot be resumed:
    // `restored: false`, and the subscriptions come back from the current position.
    const wanted = parsed.lastEventId === undefined ? now : Number(parsed.lastEventId);
    const restored = wanted <= now;
    const from = restored ? wanted : now;
    for (const [i, id] of ids.entries()) {
      const filter = filters[i];
      if (filter !== undefined && !pump.has(id)) pump.add({ id, filter, from });
    }
    return { result: { restored }, appliedThroughSeq: from };
  };

  const dispatch = (method: string, params: unknown): Promise<CommandResult> => {
    switch (method) {
      case 'subscription.subscribe':
        return subscribe(params);
      case 'subscription.unsubscribe': {
        const { subscriptionId: id } = parseParams(UnsubscribeParams, params);
        if (!pump.remove(id)) {
          throw new ProtocolError(
            'no_such_subscription',
            `no subscription ${id.slice(0, 80)} on this socket`,
            {
              field: 'params.subscriptionId',
            },
          );
        }
        return Promise.resolve({ result: {} });
      }
      case 'subscription.reconnect':
        return reconnect(params);
      case 'run.start':
        return options.commands.runStart(params);
      case 'input.respond':
        return options.commands.inputRespond(params);
      default:
        throw NOT_SUPPORTED.has(method)
          ? new ProtocolError('not_supported', `${method} is not supported by Hangar`, { field: 'method' })
          : new ProtocolError('unknown_command', `unknown method ${method.slice(0, 100)}`, {
              field: 'method',
            });
    }
  };

  let inFlight = 0;
  socket.on('message', (data: RawData, isBinary: boolean) => {
    let id: number | null = null;
    const fail = (err: unknown) => {
      const response: ErrorResponse = errorResponse(id, err);
      if (response.code === 'internal') logger.error({ err }, 'thread stream command failed');
      sendJson(response);
    };
    try {
      if (isBinary)
        throw new ProtocolError('invalid_argument', 'commands are JSON text messages', {
          field: '(message)',
        });
      let raw: unknown;
      try {
        raw = JSON.parse(data.toString());
      } catch {
        throw new ProtocolError('invalid_argument', 'message is not valid JSON', { field: '(message)' });
      }
      const probe = raw as { id?: unknown };
      if (typeof probe?.id === 'number' && Number.isSafeInteger(probe.id) && probe.id >= 0) id = probe.id;
      const parsed = CommandEnvelope.safeParse(raw);
      if (!parsed.success) {
        const field = parsed.error.issues[0]?.path.map(String).join('.') || '(message)';
        throw new ProtocolError(
          'invalid_argument',
          `${field}: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
          {
            field,
          },
        );
      }
      if (inFlight >= MAX_IN_FLIGHT) {
        throw new ProtocolError(
          'invalid_argument',
          `more than ${MAX_IN_FLIGHT} commands in flight; wait for answers`,
          {
            code: 'rate_limited',
          },
        );
      }
      inFlight++;
      const commandId = parsed.data.id;
      const { method, params } = parsed.data;
      Promise.resolve()
        .then(() => dispatch(method, params))
        .then((answer) => {
          const response: SuccessResponse = {
            type: 'success',
            id: commandId,
            result: answer.result,
            ...(answer.appliedThroughSeq === undefined
              ? {}
              : { meta: { appliedThroughSeq: answer.appliedThroughSeq } }),
          };
          sendJson(response);
        }, fail)
        .finally(() => {
          inFlight--;
        });
    } catch (err) {
      fail(err);
    }
  });

  socket.on('close', () => {
    closed = true;
    clearInterval(heartbeat);
    stop.abort();
    resolveDone();
  });
}
