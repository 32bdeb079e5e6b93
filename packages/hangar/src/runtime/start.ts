import type { Logger } from 'pino';
import { AgentRegistry } from '../assistants/registry.ts';
import type { Bus } from '../bus/bus.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import { createGateway, type GatewayOptions } from '../gateway/app.ts';
import { requeueAllRunning } from '../runs/repository.ts';
import type { Agent } from '../sdk/agent.ts';
import type { LlmSettings } from '../sdk/llm.ts';
import { migrate } from '../store/migrate.ts';
import type { SqlClient } from '../store/sql.ts';
import { startWebhookDispatcher, type WebhookSettings } from '../webhooks/dispatcher.ts';
import { SessionLiveness } from '../worker/liveness.ts';
import { WORKER_DEFAULTS, Worker, type WorkerOptions } from '../worker/worker.ts';

export type WorkerSettings = Partial<Omit<WorkerOptions, 'db' | 'bus' | 'agents' | 'logger' | 'llm'>>;

export interface StartOptions {
  db: SqlClient;
  bus: Bus;
  agents: ReadonlyMap<string, Agent>;
  logger: Logger;
  llm?: LlmSettings;
  /** Serve the HTTP API (gateway role). */
  gateway?: {
    port: number;
    host: string;
    bodyLimitBytes?: number;
    /** Retention of an `Idempotency-Key` (default 72 h). */
    idempotencyTtlMs?: number;
    /** How often expired idempotency keys are deleted (default every minute). */
    idempotencySweepMs?: number;
    /** `keys` (default) or `none` (every request acts for `default`: localhost only). */
    auth?: GatewayOptions['auth'];
    keyCacheTtlMs?: number;
    limits?: GatewayOptions['limits'];
  };
  /** Execute runs (worker role). */
  worker?: WorkerSettings;
  /**
   * Postgres to hold the worker's liveness lock on (worker/liveness.ts), so a
   * worker process that dies has its runs resumed at the next sweep rather
   * than when their leases expire. Postgres deployments only (`hangar dev`
   * re-queues its own runs at start instead).
   */
  liveness?: { connectionString: string };
  /** Completion webhooks: the gateway accepts `webhook` and the worker's process delivers only with a secret. */
  webhooks?: WebhookSettings;
  /** Apply migrations first (default true). */
  migrate?: boolean;
  /**
   * Re-queue every `running` run at start, without waiting for leases to
   * expire. Only safe when this process is the database's sole user (`hangar
   * dev`, which locks its data directory): such runs were its own before a crash.
   */
  recoverRunning?: boolean;
}

export interface RunningHangar {
  /** The gateway's base URL, when it serves one. */
  url: string | undefined;
  /** The gateway, when this process serves one (tests read its routes). */
  gateway: ReturnType<typeof createGateway> | undefined;
  worker: Worker | undefined;
  registry: AgentRegistry;
  stop(): Promise<void>;
}

/** Starts the roles of one Hangar process on an open store and bus. */
export async function startHangar(options: StartOptions): Promise<RunningHangar> {
  const { db, bus, logger } = options;
  if (options.migrate !== false) await migrate(db);
  if (options.recoverRunning === true) {
    const effects = { dead: [] as string[], events: [] as EventEnvelope[] };
    const recovered = await requeueAllRunning(db, {
      ...(options.worker?.maxRunAttempts === undefined ? {} : { maxAttempts: options.worker.maxRunAttempts }),
      effects,
    });
    if (recovered.length > 0)
      logger.info({ run_ids: recovered }, 'resuming runs left running by the last process');
    if (effects.dead.length > 0)
      logger.warn({ run_ids: effects.dead }, 'runs whose process died in every attempt are dead letters now');
  }
  const registry = new AgentRegistry(options.agents);
  await registry.syncAssistants(db, 'default');

  let gateway: ReturnType<typeof createGateway> | undefined;
  let url: string | undefined;
  if (options.gateway !== undefined) {
    gateway = createGateway({
      db,
      bus,
      registry,
      logger: logger.child({ role: 'gateway' }),
      ...(options.gateway.bodyLimitBytes === undefined
        ? {}
        : { bodyLimitBytes: options.gateway.bodyLimitBytes }),
      ...(options.gateway.idempotencyTtlMs === undefined
        ? {}
        : { idempotencyTtlMs: options.gateway.idempotencyTtlMs }),
      ...(options.gateway.idempotencySweepMs === undefined
        ? {}
        : { idempotencySweepMs: options.gateway.idempotencySweepMs }),
      webhooksEnabled: options.webhooks?.secret !== undefined,
      webhookPrivateNetworks: options.webhooks?.allowPrivateNetworks ?? false,
      auth: options.gateway.auth ?? 'keys',
      ...(options.gateway.keyCacheTtlMs === undefined
        ? {}
        : { keyCacheTtlMs: options.gateway.keyCacheTtlMs }),
      ...(options.gateway.limits === undefined ? {} : { limits: options.gateway.limits }),
    });
    let address: string;
    try {
      address = await gateway.app.listen({ port: options.gateway.port, host: options.gateway.host });
    } catch (err) {
      await gateway.close().catch(() => {});
      throw err;
    }
    url = address.replace('[::1]', 'localhost');
  }

  // The worker starts once the gateway listens: a process that cannot serve (port in use)
  // exits without having claimed any run.
  let worker: Worker | undefined;
  let liveness: SessionLiveness | undefined;
  if (options.worker !== undefined) {
    if (options.liveness !== undefined) {
      liveness = new SessionLiveness({ ...options.liveness, logger: logger.child({ role: 'worker' }) });
      await liveness.start();
    }
    worker = new Worker({
      ...WORKER_DEFAULTS,
      ...options.worker,
      db,
      bus,
      agents: options.agents,
      logger: logger.child({ role: 'worker' }),
      llm: options.llm ?? {},
      ...(liveness === undefined ? {} : { liveness }),
    });
    worker.start();
  }
  // Webhooks go out from every worker process, beside the worker (never in a run's slot).
  const webhooks =
    worker === undefined
      ? undefined
      : startWebhookDispatcher({
          db,
          bus,
          logger: logger.child({ role: 'webhooks' }),
          settings: options.webhooks,
        });

  return {
    url,
    gateway,
    worker,
    registry,
    async stop() {
      await gateway?.close();
      await worker?.stop();
      // After the worker handed its runs back: the lock's end would otherwise re-queue them.
      await liveness?.stop();
      await webhooks?.stop();
    },
  };
}
