import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import type { AgentRegistry } from '../assistants/registry.ts';
import type { Bus } from '../bus/bus.ts';
import { HangarError } from '../errors.ts';
import { DEFAULT_IDEMPOTENCY_TTL_MS, sweepExpiredKeys } from '../runs/idempotency.ts';
import type { SqlClient } from '../store/sql.ts';
import { sendError, toHangarError } from './errors.ts';
import { registerAssistantRoutes } from './routes/assistants.ts';
import { registerRunRoutes } from './routes/runs.ts';
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
}

export interface GatewayDeps {
  db: SqlClient;
  bus: Bus;
  registry: AgentRegistry;
  /** The tenant a request acts for (API keys arrive with the run API issue; until then, `default`). */
  tenantOf(request: unknown): string;
  /** Aborted when the gateway shuts down: open streams end. */
  shutdown: AbortSignal;
  /** Retention of an `Idempotency-Key`, in ms. */
  idempotencyTtlMs: number;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

/** The gateway: stateless HTTP + SSE. It writes runs and serves streams; it never runs agent code. */
export function createGateway(options: GatewayOptions): { app: FastifyInstance; close(): Promise<void> } {
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;
  const shutdown = new AbortController();
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    forceCloseConnections: true,
  });
  const deps: GatewayDeps = {
    db: options.db,
    bus: options.bus,
    registry: options.registry,
    tenantOf: () => 'default',
    shutdown: shutdown.signal,
    idempotencyTtlMs: options.idempotencyTtlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS,
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
  registerAssistantRoutes(app, deps);

  return {
    app,
    async close() {
      clearInterval(sweeper);
      shutdown.abort();
      await app.close();
    },
  };
}
