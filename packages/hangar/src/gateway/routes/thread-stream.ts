import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import { hashKey, hasScope } from '../../auth/keys.ts';
import { findKeyByHash } from '../../auth/repository.ts';
import { ERROR_CODES, type ErrorCode, HangarError } from '../../errors.ts';
import { answerInterrupt, getApproval } from '../../hitl/repository.ts';
import { getRun } from '../../runs/repository.ts';
import { unstorableJson } from '../../store/storable.ts';
import type { StreamSettings } from '../../streaming/backpressure.ts';
import {
  EventStreamRequest,
  InputRespondParams,
  ProtocolError,
  parseParams,
  RunStartParams,
  toFilter,
} from '../../streaming/protocol.ts';
import type { StreamRegistry } from '../../streaming/registry.ts';
import { parseLastEventId } from '../../streaming/sse.ts';
import { serveThreadSse } from '../../streaming/thread-sse.ts';
import {
  type CommandResult,
  type StreamLogger,
  serveWebSocket,
  type ThreadCommands,
} from '../../streaming/ws.ts';
import { getThread, threadLastSeq } from '../../threads/repository.ts';
import type { GatewayDeps } from '../app.ts';
import { MAX_BODY_DEPTH, parseWith } from '../errors.ts';
import { ThreadParams } from '../schemas.ts';

/**
 * The Agent Protocol thread stream (docs/streaming.md, "Transports"):
 * `POST /threads/{id}/stream` (SSE, one filtered subscription) and
 * `GET /threads/{id}/stream` upgraded to a WebSocket (in-band commands).
 * Both answer `404` for a thread the caller's tenant does not have, before
 * anything streams. `run.start` goes through `POST /threads/{id}/runs` itself
 * (injected with the socket's credentials: same validation, admission control
 * and scopes); `input.respond` through the approvals API's exactly-once answer.
 */
export interface ThreadStreamContext {
  registry: StreamRegistry;
  settings: StreamSettings;
  /** The root app: `run.start` is injected into it. */
  root: FastifyInstance;
}

/** The subprotocol a client speaks (`Sec-WebSocket-Protocol`); the only one the server selects. */
export const SUBPROTOCOL = 'hangar.v1';
const KEY_PROTOCOL_PREFIX = 'hangar.key.';

/**
 * Browsers cannot set headers on a WebSocket: they offer the key as the
 * subprotocol `hangar.key.<key>` next to `hangar.v1`. Run before
 * authentication, this hands such a key to it as `x-api-key` (a header
 * present wins). The server never selects the key protocol, so it is not echoed.
 */
export function acceptSubprotocolKey(request: FastifyRequest): void {
  const offered = request.headers['sec-websocket-protocol'];
  if (typeof offered !== 'string' || request.headers.upgrade?.toLowerCase() !== 'websocket') return;
  if (request.headers['x-api-key'] !== undefined || request.headers.authorization !== undefined) return;
  const key = offered
    .split(',')
    .map((p) => p.trim())
    .find((p) => p.startsWith(KEY_PROTOCOL_PREFIX));
  if (key !== undefined && key.length > KEY_PROTOCOL_PREFIX.length) {
    request.headers['x-api-key'] = key.slice(KEY_PROTOCOL_PREFIX.length);
  }
}

/** `handleProtocols` of the WebSocket server: `hangar.v1` when offered, else none. */
export function selectSubprotocol(protocols: Set<string>): string | false {
  return protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false;
}

export function registerThreadStreamRoutes(
  app: FastifyInstance,
  deps: GatewayDeps,
  context: ThreadStreamContext,
): void {
  const { registry, settings } = context;

  /** The thread of the path, the caller's tenant's; 404 otherwise (another tenant's included). */
  const threadOf = async (request: FastifyRequest) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    if (registry.draining) {
      throw new HangarError('unavailable', 'this gateway is shutting down; reconnect', {
        details: { retry_after_s: 1 },
      });
    }
    const tenantId = deps.tenantOf(request);
    if ((await getThread(deps.db, tenantId, thread_id)) === null) {
      throw new HangarError('not_found', `thread ${thread_id} not found`, { details: { thread_id } });
    }
    return { tenantId, threadId: thread_id };
  };

  app.post('/threads/:thread_id/stream', async (request, reply) => {
    parseWith(ThreadParams, request.params, 'path');
    const body = parseWith(EventStreamRequest, request.body ?? {}, '');
    const { tenantId, threadId } = await threadOf(request);
    const lastEventId = parseLastEventId(request.headers['last-event-id']);
    const from = lastEventId ?? body.since ?? (await threadLastSeq(deps.db, tenantId, threadId)) ?? 0;
    reply.hijack();
    await serveThreadSse(reply.raw, {
      db: deps.db,
      bus: deps.bus,
      tenantId,
      threadId,
      filter: toFilter(body),
      from,
      settings,
      registry,
      logger: request.log,
    });
  });

  app.route({
    method: 'GET',
    url: '/threads/:thread_id/stream',
    // Before the upgrade: a refusal is a plain HTTP answer with the API's error shape.
    preHandler: async (request) => {
      await threadOf(request);
    },
    handler: async () => {
      const message = 'must be websocket: this route is the thread WebSocket (POST it for SSE)';
      throw new HangarError('invalid_request', `invalid request: headers.upgrade: ${message}`, {
        details: { issues: [{ path: 'headers.upgrade', message }] },
      });
    },
    wsHandler: (socket, request) => {
      const tenantId = deps.tenantOf(request);
      const { thread_id: threadId } = parseWith(ThreadParams, request.params, 'path');
      const logger = new LazyChildLogger(request.log, { thread_id: threadId });
      releaseUpgrade(socket, logger);
      serveWebSocket(socket, {
        db: deps.db,
        bus: deps.bus,
        tenantId,
        threadId,
        settings,
        registry,
        commands: new SocketCommands(deps, context, request, tenantId, threadId),
        logger,
      });
    },
  });
}

/**
 * A thread WebSocket outlives its upgrade request by hours. @fastify/websocket's
 * error listener on the WebSocket closes over Fastify's request and reply,
 * keeping them (and their properties) for the socket's life: it is replaced by
 * one that does what the gateway's error handler does (warn, terminate) with
 * the socket's own logger. (Node's upgrade response stays attached to the TCP
 * socket: its `close` is what frees the key's stream place, gateway/limits.ts.)
 */
function releaseUpgrade(socket: WebSocket, logger: StreamLogger): void {
  socket.removeAllListeners('error');
  socket.on('error', (err) => {
    logger.warn({ err }, 'thread stream socket error');
    socket.terminate();
  });
}

/** A logger that makes its child (with `bindings`) the first time it logs. */
class LazyChildLogger implements StreamLogger {
  private child: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Record<string, string>,
  ) {}

  private get logger(): FastifyBaseLogger {
    this.child ??= this.parent.child(this.bindings);
    return this.child;
  }

  info(fields: object, message: string): void {
    this.logger.info(fields, message);
  }

  warn(fields: object, message: string): void {
    this.logger.warn(fields, message);
  }

  error(fields: object, message: string): void {
    this.logger.error(fields, message);
  }
}

/** The credentials of the upgrade request, for `run.start`'s injected create. */
function credentials(request: FastifyRequest): Record<string, string> {
  const apiKey = request.headers['x-api-key'];
  if (typeof apiKey === 'string') return { 'x-api-key': apiKey };
  const authorization = request.headers.authorization;
  return typeof authorization === 'string' ? { authorization } : {};
}

/** One socket's thread commands (a class: a socket can stay open for hours, see ThreadSocket). */
class SocketCommands implements ThreadCommands {
  /** Taken from the upgrade request at once: the socket keeps these, not the request. */
  private readonly auth: Record<string, string>;
  private readonly by: string;
  /** The key's `runs:write` scope, looked up once per socket. */
  private canWrite: Promise<boolean> | undefined;

  constructor(
    private readonly deps: GatewayDeps,
    private readonly context: ThreadStreamContext,
    request: FastifyRequest,
    private readonly tenantId: string,
    private readonly threadId: string,
  ) {
    this.auth = credentials(request);
    this.by = deps.principalOf?.(request) ?? 'api';
  }

  async position(): Promise<number> {
    return (await threadLastSeq(this.deps.db, this.tenantId, this.threadId)) ?? 0;
  }

  async runStart(params: unknown): Promise<CommandResult> {
    const parsed = parseParams(RunStartParams, params);
    const before = await this.position();
    const res = await this.context.root.inject({
      method: 'POST',
      url: `/threads/${this.threadId}/runs`,
      headers: { ...this.auth, 'content-type': 'application/json' },
      payload: {
        assistant_id: parsed.assistantId,
        input: parsed.input ?? {},
        ...(parsed.config === undefined ? {} : { config: parsed.config }),
        ...(parsed.metadata === undefined ? {} : { metadata: parsed.metadata }),
      },
    });
    const body = res.json() as Record<string, unknown>;
    if (res.statusCode === 200) {
      return { result: { runId: body.run_id }, appliedThroughSeq: before };
    }
    throw createError(body);
  }

  async inputRespond(params: unknown): Promise<CommandResult> {
    await this.requireWrite('input.respond');
    const parsed = parseParams(InputRespondParams, params);
    const entries = 'responses' in parsed ? parsed.responses : [parsed];
    const at = (i: number) => ('responses' in parsed ? `params.responses.${i}` : 'params');
    // What Postgres would refuse (NUL, lone surrogates) or too deep to walk: named, before any answer.
    for (const [i, entry] of entries.entries()) {
      const problem = unstorableJson(entry.response ?? null, MAX_BODY_DEPTH);
      if (problem !== null) {
        const field = [`${at(i)}.response`, ...problem.path].join('.');
        throw new ProtocolError('invalid_argument', `${field}: ${problem.message}`, {
          code: 'invalid_request',
          field,
        });
      }
    }
    // Every interrupt must be this thread's before any is answered.
    for (const [i, entry] of entries.entries()) {
      const approval = await getApproval(this.deps.db, this.tenantId, entry.interruptId);
      if (approval === null || approval.thread_id !== this.threadId) {
        throw new ProtocolError(
          'no_such_interrupt',
          `interrupt ${entry.interruptId} not found on this thread`,
          {
            code: 'not_found',
            field: `${at(i)}.interruptId`,
            details: { interrupt_id: entry.interruptId },
          },
        );
      }
    }
    let resumed = false;
    for (const entry of entries) {
      const value = entry.response ?? null;
      const object = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
      const answered = await answerInterrupt(this.deps.db, this.tenantId, entry.interruptId, {
        value,
        decision: typeof object.decision === 'string' ? object.decision.slice(0, 64) : null,
        comment: typeof object.comment === 'string' ? object.comment.slice(0, 4000) : null,
        by: this.by,
      });
      resumed ||= answered.resumed;
    }
    if (resumed) this.deps.bus.notifyWork();
    return { result: {} };
  }

  async checkRun(runId: string): Promise<void> {
    const run = await getRun(this.deps.db, this.tenantId, runId);
    if (run === null || run.thread_id !== this.threadId) {
      throw new ProtocolError('no_such_run', `run ${runId} not found on this thread`, {
        code: 'not_found',
        field: 'params.runId',
      });
    }
  }

  /** No key: authentication is off. */
  private async requireWrite(method: string): Promise<void> {
    const key = this.auth['x-api-key'] ?? /^Bearer\s+(\S+)\s*$/i.exec(this.auth.authorization ?? '')?.[1];
    this.canWrite ??=
      key === undefined
        ? Promise.resolve(true)
        : findKeyByHash(this.deps.db, hashKey(key)).then(
            (record) => record !== null && !record.revoked && hasScope(record.scopes, 'runs:write'),
          );
    if (!(await this.canWrite)) {
      throw new ProtocolError('permission_denied', `${method} needs an API key with the runs:write scope`, {
        code: 'forbidden',
        details: { required_scope: 'runs:write' },
      });
    }
  }
}

/** Body fields of `POST /threads/{id}/runs` as `run.start` names them. */
const PARAM_NAMES: Record<string, string> = { assistant_id: 'assistantId' };

/** The `run.start` error for the create's HTTP error (fields renamed to the command's params). */
function createError(body: Record<string, unknown>): unknown {
  const code = typeof body.error === 'string' ? body.error : 'internal';
  const message = typeof body.message === 'string' ? body.message : 'run.start failed';
  const details = (body.details ?? undefined) as Record<string, unknown> | undefined;
  if (code === 'invalid_request' || code === 'input_invalid') {
    const issues = details?.issues as Array<{ path?: string }> | undefined;
    const path = issues?.[0]?.path ?? '';
    const [head = '', ...rest] = path.split('.');
    const field = ['params', PARAM_NAMES[head] ?? head, ...rest].filter((p) => p !== '').join('.');
    return new ProtocolError('invalid_argument', message, {
      code,
      field,
      ...(details === undefined ? {} : { details }),
    });
  }
  // An unknown assistant (the thread itself was checked when the socket opened).
  if (code === 'agent_not_found' || (code === 'not_found' && details?.assistant_id !== undefined)) {
    return new ProtocolError('invalid_argument', message, {
      code,
      field: 'params.assistantId',
      ...(details === undefined ? {} : { details }),
    });
  }
  if (!Object.hasOwn(ERROR_CODES, code) || code === 'internal') return new HangarError('internal', message);
  return new HangarError(code as ErrorCode, message, details === undefined ? {} : { details });
}
