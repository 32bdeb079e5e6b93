import websocket from '@fastify/websocket';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import type { AgentRegistry } from '../assistants/registry.ts';
import { AssistantCache } from '../assistants/resolve.ts';
import type { Bus } from '../bus/bus.ts';
import { HangarError } from '../errors.ts';
import { RunCreateBatcher } from '../runs/batcher.ts';
import { DEFAULT_IDEMPOTENCY_TTL_MS, sweepExpiredKeys } from '../runs/idempotency.ts';
import type { SqlClient } from '../store/sql.ts';
import { type StreamSettings, streamSettings } from '../streaming/backpressure.ts';
import { StreamRegistry } from '../streaming/registry.ts';
import { Authenticator, type AuthMode } from './auth.ts';
import { rejectDeepBodies, sendError, toHangarError } from './errors.ts';
import { Admission, type LimitSettings } from './limits.ts';
import { registerOpenApiRoutes, trackRoutes } from './openapi.ts';
import { registerApprovalRoutes } from './routes/approvals.ts';
import { registerAssistantRoutes } from './routes/assistants.ts';
import { registerDeadLetterRoutes } from './routes/dead-letters.ts';
import { registerRunRoutes } from './routes/runs.ts';
import { registerSignalRoutes } from './routes/signals.ts';
import { registerStoreRoutes } from './routes/store.ts';
import { registerThreadOpsRoutes } from './routes/thread-ops.ts';
import {
  acceptSubprotocolKey,
  registerThreadStreamRoutes,
  selectSubprotocol,
} from './routes/thread-stream.ts';
import { registerThreadRoutes } from './routes/threads.ts';

export interface GatewayOptions {
  db: SqlClient;
  bus: Bus;
  registry: AgentRegistry;
  logger: Logger;
  /** Largest accepted request body in bytes (default 1 MiB). */
  bodyLimitBytes?: number;
  /** How long an `Idempotency-Key` is remembered (default 72 h). */
  idempotencyTtlMs?: number;
  /** How often expired idempotency keys are deleted (default every minute). */
  idempotencySweepMs?: number;
  /** Accept a run's `webhook` (a webhook secret is configured); refused with a 400 otherwise. */
  webhooksEnabled?: boolean;
  /** Accept webhook URLs whose host is a loopback or private IP (default false: SSRF guard). */
  webhookPrivateNetworks?: boolean;
  /** `keys` (default): API keys required (see gateway/auth.ts); `none`: everything acts for `default`. */
  auth?: AuthMode;
  /** How long a key lookup is cached; bounds how long a revoked key keeps working (default 10 s). */
  keyCacheTtlMs?: number;
  /** Admission limits (see gateway/limits.ts); unset ones keep their defaults. */
  limits?: Partial<LimitSettings>;
  /** Thread-stream backpressure, heartbeats and shutdown (streaming/backpressure.ts); unset ones come from `HANGAR_STREAM_*` or the defaults. */
  streams?: Partial<StreamSettings>;
}

export interface GatewayDeps {
  db: SqlClient;
  bus: Bus;
  registry: AgentRegistry;
  /** The tenant a request acts for: its API key's tenant (`default` with auth `none`). */
  tenantOf(request: unknown): string;
  /** Who a request acts as, recorded on what it cancels: `key:<prefix>`, or `anonymous` without auth. */
  principalOf?(request: unknown): string;
  /** Aborted when the gateway shuts down: open streams end. */
  shutdown: AbortSignal;
  /** Retention of an `Idempotency-Key`, in ms. */
  idempotencyTtlMs: number;
  /** Whether a run's `webhook` is accepted (a webhook secret is configured). */
  webhooksEnabled: boolean;
  webhookPrivateNetworks: boolean;
  /** Admission control: `beforeCreate(tenantId)` refuses a run over the pending-run limits. */
  admission: Admission;
  /** Group commit for stateless creates (runs/batcher.ts). */
  creates: RunCreateBatcher;
  /** Assistants as run creates read them (a short TTL; this gateway's writes invalidate). */
  assistantCache?: AssistantCache;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

/** The gateway: stateless HTTP + SSE. It writes runs and serves streams; it never runs agent code. */
export function createGateway(options: GatewayOptions): {
  app: FastifyInstance;
  auth: Authenticator;
  openStreams(): number;
  close(): Promise<void>;
} {
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;
  const shutdown = new AbortController();
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    // A bad percent-encoding or an over-long path segment never reaches a route: same error shape.
    frameworkErrors: (err, request, reply) => sendError(request, reply, toHangarError(err, bodyLimit)),
    forceCloseConnections: true,
  });
  trackRoutes(app); // first: openapi.test.ts compares every route with the OpenAPI catalog
  const auth = new Authenticator({
    mode: options.auth ?? 'keys',
    db: options.db,
    registry: options.registry,
    logger: options.logger,
    ...(options.keyCacheTtlMs === undefined ? {} : { keyCacheTtlMs: options.keyCacheTtlMs }),
  });
  const admission = new Admission(options.db, options.limits, (r) => auth.authOf(r)?.keyId ?? null);
  const streams = { registry: new StreamRegistry(), settings: streamSettings(options.streams), root: app };
  // A browser's WebSocket offers its key as a subprotocol: handed to authentication as a header.
  app.addHook('onRequest', async (request) => acceptSubprotocolKey(request));
  // An upgrade refused before the WebSocket plugin saw it (401, 403, 429 from the hooks below) holds
  // a socket the HTTP server no longer tracks: closed once the refusal is sent, or close() would hang.
  app.addHook('onResponse', async (request, reply) => {
    if (request.headers.upgrade !== undefined && reply.statusCode !== 101) request.raw.socket?.destroy();
  });
  // Before any route: authentication, then the per-key limits, run first on every request.
  auth.install(app);
  admission.install(app);
  const deps: GatewayDeps = {
    db: options.db,
    bus: options.bus,
    registry: options.registry,
    tenantOf: auth.tenantOf,
    principalOf: (request) => {
      const who = auth.authOf(request as FastifyRequest);
      return who?.prefix == null ? 'anonymous' : `key:${who.prefix}`;
    },
    admission,
    creates: new RunCreateBatcher(options.db),
    assistantCache: new AssistantCache(),
    shutdown: shutdown.signal,
    idempotencyTtlMs: options.idempotencyTtlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS,
    webhooksEnabled: options.webhooksEnabled ?? false,
    webhookPrivateNetworks: options.webhookPrivateNetworks ?? false,
  };
  // Expired idempotency keys go in bounded batches; every gateway sweeps (SKIP LOCKED keeps that cheap).
  const sweeper = setInterval(() => {
    sweepExpiredKeys(options.db).catch((err: unknown) =>
      options.logger.warn({ err }, 'idempotency key sweep failed'),
    );
  }, options.idempotencySweepMs ?? 60_000);
  sweeper.unref();

  // Fastify parses text/plain bodies by default; the API takes JSON only, so a JSON document sent
  // as text/plain (a common curl mistake) gets a 415 saying so, not a confusing schema error.
  app.removeContentTypeParser('text/plain');
  app.addHook('preValidation', rejectDeepBodies);
  app.setErrorHandler((err, request, reply) =>
    sendError(request, reply, toHangarError(err, bodyLimit, request.headers['content-type'])),
  );
  app.setNotFoundHandler((request, reply) =>
    sendError(
      request,
      reply,
      new HangarError('not_found', `no route for ${request.method} ${request.url.split('?')[0]}`),
    ),
  );

  app.get('/ok', async () => ({ ok: true }));
  app.get('/info', async () => ({ version: '0.1.0', agents: options.registry.names }));
  registerRunRoutes(app, deps);
  registerThreadRoutes(app, deps);
  registerThreadOpsRoutes(app, deps);
  registerAssistantRoutes(app, deps);
  registerStoreRoutes(app, deps);
  registerApprovalRoutes(app, deps);
  registerDeadLetterRoutes(app, deps);
  registerSignalRoutes(app, deps);
  app.register(websocket, {
    options: {
      maxPayload: streams.settings.maxMessageBytes,
      perMessageDeflate: false,
      handleProtocols: selectSubprotocol,
    },
    // A client that vanishes mid-frame is routine for a long-lived socket: a warning, never the key.
    errorHandler(err, socket, request) {
      request.log.warn({ err }, 'thread stream socket error');
      socket.terminate();
    },
    // Streams were told to reconnect by close(); whatever is left is cut.
    preClose(done) {
      for (const client of this.websocketServer.clients) client.terminate();
      this.websocketServer.close();
      done();
    },
  });
  app.register(async (instance) => registerThreadStreamRoutes(instance, deps, streams));
  registerOpenApiRoutes(app);

  return {
    app,
    auth,
    /** Thread streams (SSE and WebSocket) open on this gateway. */
    openStreams: () => streams.registry.size,
    async close() {
      clearInterval(sweeper);
      // Stream clients reconnect elsewhere (jittered) before the server stops.
      await streams.registry.closeAll(streams.settings);
      shutdown.abort();
      await app.close();
    },
  };
}
