import type { RawData, WebSocket } from 'ws';
import type { Bus } from '../bus/bus.ts';
import type { Queryable } from '../store/sql.ts';
import type { StreamSettings } from './backpressure.ts';
import type { FeedItem } from './feed.ts';
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
import { type PumpSink, ThreadPump } from './pump.ts';
import { CLOSE_CODES, type CloseReason, type StreamConnection, type StreamRegistry } from './registry.ts';

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
  logger: StreamLogger;
}

/** What a socket logs through. */
export interface StreamLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
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
  new ThreadSocket(socket, options);
}

/**
 * One open thread WebSocket. A class, its handlers methods: an idle socket
 * may stay open for hours, and per-socket closures (named ones cost a
 * property dictionary each under tsx) were a quarter of its memory
 * (docs/performance.md, "Streaming").
 */
class ThreadSocket implements PumpSink, StreamConnection {
  readonly done: Promise<void>;
  closed = false;
  private resolveDone: (() => void) | undefined;
  private readonly stop = new AbortController();
  private readonly pump: ThreadPump;
  private readonly heartbeat: NodeJS.Timeout;
  /** Pings left unanswered in a row. */
  private unanswered = 0;
  private inFlight = 0;

  constructor(
    private readonly socket: WebSocket,
    private readonly options: WebSocketStreamOptions,
  ) {
    this.done = new Promise<void>((resolve) => {
      this.resolveDone = resolve;
    });
    this.pump = new ThreadPump({
      db: options.db,
      bus: options.bus,
      tenantId: options.tenantId,
      threadId: options.threadId,
      settings: options.settings,
      feeds: options.registry.feeds,
      sink: this,
      signal: this.stop.signal,
    });
    options.registry.add(this);
    socket.on('pong', () => {
      this.unanswered = 0;
    });
    this.heartbeat = setInterval(() => this.ping(), options.settings.heartbeatMs);
    this.heartbeat.unref();
    socket.on('message', (data: RawData, isBinary: boolean) => this.onMessage(data, isBinary));
    socket.on('close', () => this.onClose());
  }

  /** StreamConnection: tells the client to go, with the reason's code. */
  close(reason: CloseReason): void {
    if (this.closed || this.socket.readyState !== this.socket.OPEN) return;
    this.options.logger.info(
      { reason, queued_bytes: this.socket.bufferedAmount },
      'thread stream closed by the gateway',
    );
    this.socket.close(CLOSE_CODES[reason], reason);
  }

  destroy(): void {
    this.socket.terminate();
  }

  queuedBytes(): number {
    return this.socket.bufferedAmount;
  }

  send(item: FeedItem): void {
    if (!this.closed && this.socket.readyState === this.socket.OPEN) this.socket.send(item.json);
  }

  onSlow(): void {
    this.close('slow');
  }

  onReset(): void {
    this.close('reset');
  }

  onError(err: unknown): void {
    this.options.logger.error({ err }, 'thread stream failed');
    if (!this.closed) this.socket.close(1011, 'internal error');
  }

  private sendJson(message: unknown): void {
    if (this.closed || this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(JSON.stringify(message));
  }

  /** A peer that leaves `missedPongs` pings in a row unanswered is dropped. */
  private ping(): void {
    if (this.unanswered >= this.options.settings.missedPongs) {
      this.options.logger.info({ missed: this.unanswered }, 'thread stream peer missed its pings; dropped');
      this.socket.terminate();
      return;
    }
    this.unanswered++;
    this.socket.ping();
  }

  private onClose(): void {
    this.closed = true;
    clearInterval(this.heartbeat);
    this.stop.abort();
    this.resolveDone?.();
  }

  private async subscribe(params: unknown): Promise<CommandResult> {
    const { pump, options } = this;
    const { settings } = options;
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
  }

  private async reconnect(params: unknown): Promise<CommandResult> {
    const { pump, options } = this;
    const { settings } = options;
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
  }

  private dispatch(method: string, params: unknown): Promise<CommandResult> {
    switch (method) {
      case 'subscription.subscribe':
        return this.subscribe(params);
      case 'subscription.unsubscribe': {
        const { subscriptionId: id } = parseParams(UnsubscribeParams, params);
        if (!this.pump.remove(id)) {
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
        return this.reconnect(params);
      case 'run.start':
        return this.options.commands.runStart(params);
      case 'input.respond':
        return this.options.commands.inputRespond(params);
      default:
        throw NOT_SUPPORTED.has(method)
          ? new ProtocolError('not_supported', `${method} is not supported by Hangar`, { field: 'method' })
          : new ProtocolError('unknown_command', `unknown method ${method.slice(0, 100)}`, {
              field: 'method',
            });
    }
  }

  private fail(id: number | null, err: unknown): void {
    const response: ErrorResponse = errorResponse(id, err);
    if (response.code === 'internal') this.options.logger.error({ err }, 'thread stream command failed');
    this.sendJson(response);
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    let id: number | null = null;
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
      if (this.inFlight >= MAX_IN_FLIGHT) {
        throw new ProtocolError(
          'invalid_argument',
          `more than ${MAX_IN_FLIGHT} commands in flight; wait for answers`,
          {
            code: 'rate_limited',
          },
        );
      }
      this.inFlight++;
      const commandId = parsed.data.id;
      const { method, params } = parsed.data;
      Promise.resolve()
        .then(() => this.dispatch(method, params))
        .then(
          (answer) => {
            const response: SuccessResponse = {
              type: 'success',
              id: commandId,
              result: answer.result,
              ...(answer.appliedThroughSeq === undefined
                ? {}
                : { meta: { appliedThroughSeq: answer.appliedThroughSeq } }),
            };
            this.sendJson(response);
          },
          (err: unknown) => this.fail(commandId, err),
        )
        .finally(() => {
          this.inFlight--;
        });
    } catch (err) {
      this.fail(id, err);
    }
  }
}
