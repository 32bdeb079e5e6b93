import type { Logger } from 'pino';
import type { Bus, Unsubscribe } from '../bus/bus.ts';
import type { SqlClient } from '../store/sql.ts';
import { BlockedDestinationError, type EgressResponse, postOnce } from './egress.ts';
import { loadWebhookRun, webhookPayload } from './payload.ts';
import {
  claimDeliveries,
  type DeliveryClaim,
  type DeliveryOutcome,
  failAbandoned,
  recordOutcome,
} from './repository.ts';
import { SIGNATURE_HEADER, signWebhook } from './signature.ts';

/** Webhook settings of one process (resolved from the environment by the CLI). */
export interface WebhookSettings {
  /**
   * The HMAC-SHA256 key every delivery is signed with. Without it this
   * process refuses `webhook` at create and sends nothing: a delivery is
   * never sent unsigned (pending ones wait for a process that has it).
   */
  secret?: string;
  /** Attempts per delivery, the first included, before it is marked `failed`. */
  maxAttempts?: number;
  /** Timeout of one POST (connect to end of response headers). */
  timeoutMs?: number;
  /** Backoff before retry n is a random delay in [0, min(maxDelayMs, baseDelayMs · 2^(n-1))] (full jitter). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Fallback poll for due deliveries; run-end hints on the bus wake the dispatcher sooner. */
  pollMs?: number;
  /** POSTs in flight at once per process. */
  concurrency?: number;
  /**
   * Deliver to loopback and private addresses too. Off by default: a webhook
   * URL comes from an API caller, and without this guard it could reach the
   * cloud metadata service or anything else on the private network (SSRF).
   * `hangar dev` turns it on (a laptop's receiver is on localhost).
   */
  allowPrivateNetworks?: boolean;
}

export const WEBHOOK_DEFAULTS = {
  maxAttempts: 10,
  timeoutMs: 10_000,
  baseDelayMs: 5_000,
  maxDelayMs: 15 * 60_000,
  pollMs: 1_000,
  concurrency: 16,
  allowPrivateNetworks: false,
} as const;

/** Hints (every run create and run end announces work) are coalesced to one claim per this interval. */
const MIN_PASS_GAP_MS = 50;

export interface WebhookDispatcherOptions extends Required<Omit<WebhookSettings, 'secret'>> {
  db: SqlClient;
  bus: Bus;
  logger: Logger;
  secret: string;
}

/**
 * Sends completion webhooks. Runs in every process that runs a worker, apart
 * from it: a slow or dead receiver never holds a run or a worker slot. The
 * outbox is `webhook_deliveries` (see `claimDeliveries`), so delivery is
 * at-least-once across crashes; receivers dedupe on `X-Hangar-Delivery`.
 */
export class WebhookDispatcher {
  private readonly inflight = new Set<Promise<void>>();
  private readonly stopController = new AbortController();
  private readonly timers = new Set<NodeJS.Timeout>();
  private interval: NodeJS.Timeout | undefined;
  private unsubscribe: Unsubscribe | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private passing = false;
  private again = false;
  private saturated = false;
  private lastPassAt = 0;

  constructor(private readonly options: WebhookDispatcherOptions) {}

  start(): void {
    // The worker announces work when a run ends: that is the hint a delivery became due.
    this.unsubscribe = this.options.bus.onWork(() => this.wake());
    this.interval = setInterval(() => void this.tick(), this.options.pollMs);
    this.interval.unref();
    this.wake();
  }

  /** Claims due deliveries soon (coalesced). */
  wake(): void {
    if (this.stopController.signal.aborted) return;
    if (this.passing) {
      this.again = true;
      return;
    }
    if (this.wakeTimer !== undefined) return;
    const wait = Math.max(0, this.lastPassAt + MIN_PASS_GAP_MS - Date.now());
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      void this.pass();
    }, wait);
    this.wakeTimer.unref();
  }

  /** Stops claiming; POSTs in flight are aborted and their attempts given back (due again at once). */
  async stop(): Promise<void> {
    if (this.stopController.signal.aborted) return;
    this.stopController.abort();
    this.unsubscribe?.();
    clearInterval(this.interval);
    clearTimeout(this.wakeTimer);
    for (const timer of this.timers) clearTimeout(timer);
    await Promise.allSettled([...this.inflight]);
  }

  private async tick(): Promise<void> {
    try {
      const failed = await failAbandoned(this.options.db, this.options.maxAttempts);
      for (const d of failed) {
        this.options.logger.error(
          { delivery_id: d.delivery_id, run_id: d.run_id, tenant_id: d.tenant_id },
          'webhook delivery failed: its last attempt was interrupted',
        );
      }
    } catch (err) {
      this.options.logger.warn({ err }, 'webhook sweep failed');
    }
    this.wake();
  }

  private async pass(): Promise<void> {
    if (this.stopController.signal.aborted) return;
    this.passing = true;
    this.lastPassAt = Date.now();
    const { db, concurrency, maxAttempts, timeoutMs } = this.options;
    try {
      const free = concurrency - this.inflight.size;
      if (free <= 0) return;
      // The claim outlives the attempt's timeout, so only a dead dispatcher's claim ever lapses.
      const claims = await claimDeliveries(db, { limit: free, leaseMs: 2 * timeoutMs + 1_000, maxAttempts });
      this.saturated = claims.length === free;
      for (const claim of claims) this.launch(claim);
    } catch (err) {
      this.options.logger.warn({ err }, 'webhook claim failed; retrying on the next poll');
    } finally {
      this.passing = false;
      if (this.again) {
        this.again = false;
        this.wake();
      }
    }
  }

  private launch(claim: DeliveryClaim): void {
    const done = this.deliver(claim)
      .catch((err: unknown) => {
        // Recording the outcome failed (database down): the claim lapses and the delivery is retried.
        this.options.logger.warn({ err, delivery_id: claim.deliveryId }, 'webhook outcome not recorded');
      })
      .finally(() => {
        this.inflight.delete(done);
        if (this.saturated) this.wake();
      });
    this.inflight.add(done);
  }

  private async deliver(claim: DeliveryClaim): Promise<void> {
    const { db, logger } = this.options;
    const log = logger.child({
      delivery_id: claim.deliveryId,
      run_id: claim.runId,
      tenant_id: claim.tenantId,
      attempt: claim.attempt,
      // The origin only: webhook URLs often carry a token in their path or query.
      webhook: origin(claim.url),
    });
    const loaded = await loadWebhookRun(db, claim.tenantId, claim.runId);
    if (loaded === null) return; // The run was deleted, and its delivery with it.
    const outcome = await this.post(
      claim,
      JSON.stringify(webhookPayload(loaded.run, loaded.values, new Date())),
    );
    if (!(await recordOutcome(db, claim, outcome))) {
      log.warn('webhook attempt outcome dropped: the delivery was claimed again meanwhile');
      return;
    }
    switch (outcome.kind) {
      case 'delivered':
        log.info({ status_code: outcome.statusCode }, 'webhook delivered');
        break;
      case 'retry': {
        log.warn(
          { status_code: outcome.statusCode, error: outcome.error, retry_in_ms: outcome.delayMs },
          'webhook attempt failed; will retry',
        );
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          this.wake();
        }, outcome.delayMs);
        timer.unref();
        this.timers.add(timer);
        break;
      }
      case 'failed':
        log.error({ status_code: outcome.statusCode, error: outcome.error }, 'webhook delivery failed');
        break;
      case 'released':
        break;
    }
  }

  /** One POST, classified: 2xx delivered; network error, timeout, 408, 429, 5xx retried; the rest failed. */
  private async post(claim: DeliveryClaim, body: string): Promise<DeliveryOutcome> {
    const { secret, timeoutMs } = this.options;
    const timeout = AbortSignal.timeout(timeoutMs);
    let res: EgressResponse;
    try {
      res = await postOnce({
        url: claim.url,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Hangar-Webhooks/0.1',
          'x-hangar-delivery': claim.deliveryId,
          'x-hangar-attempt': String(claim.attempt),
          [SIGNATURE_HEADER]: signWebhook(secret, body, Math.floor(Date.now() / 1000)),
        },
        body,
        signal: AbortSignal.any([timeout, this.stopController.signal]),
        allowPrivateNetworks: this.options.allowPrivateNetworks,
      });
    } catch (err) {
      if (this.stopController.signal.aborted && !timeout.aborted) return { kind: 'released' };
      if (err instanceof BlockedDestinationError) {
        return { kind: 'failed', statusCode: null, error: `blocked: ${err.message} (not retried)` };
      }
      const error = timeout.aborted ? `no response within ${timeoutMs} ms` : describeRequestError(err);
      return this.retryOrFail(claim, null, error, undefined);
    }
    if (res.status >= 200 && res.status < 300) return { kind: 'delivered', statusCode: res.status };
    const error = `receiver answered ${res.status}`;
    if (res.status === 408 || res.status === 429 || res.status >= 500) {
      return this.retryOrFail(claim, res.status, error, retryAfterMs(res.retryAfter));
    }
    return { kind: 'failed', statusCode: res.status, error: `${error} (not retried)` };
  }

  private retryOrFail(
    claim: DeliveryClaim,
    statusCode: number | null,
    error: string,
    retryAfter: number | undefined,
  ): DeliveryOutcome {
    const { maxAttempts, baseDelayMs, maxDelayMs } = this.options;
    if (claim.attempt >= maxAttempts) {
      return { kind: 'failed', statusCode, error: `${error}; gave up after ${claim.attempt} attempts` };
    }
    const delayMs = Math.min(maxDelayMs, retryAfter ?? backoffMs(claim.attempt, baseDelayMs, maxDelayMs));
    return { kind: 'retry', statusCode, error, delayMs };
  }
}

/** Full jitter: uniform in [0, min(cap, base · 2^(attempt-1))] (attempt 1 is the one that just failed). */
export function backoffMs(attempt: number, baseDelayMs: number, maxDelayMs: number): number {
  return Math.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
}

/** `Retry-After` as seconds or an HTTP date; undefined when absent or unreadable. */
function retryAfterMs(header: string | null): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** A socket error by its code (ECONNREFUSED, ENOTFOUND, …): the receiver's address stays out of the run's record. */
function describeRequestError(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return `request failed: ${code}`;
  return `request failed: ${err instanceof Error ? err.message : String(err)}`;
}

function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid url)';
  }
}

/**
 * Starts the dispatcher of a worker process, or says why there is none: with
 * no secret nothing is sent (deliveries stay pending for a process that has one).
 */
export function startWebhookDispatcher(options: {
  db: SqlClient;
  bus: Bus;
  logger: Logger;
  settings: WebhookSettings | undefined;
}): WebhookDispatcher | undefined {
  const { secret, ...tuning } = options.settings ?? {};
  if (secret === undefined) {
    options.logger.info('webhook delivery is off in this process: HANGAR_WEBHOOK_SECRET is not set');
    return undefined;
  }
  const dispatcher = new WebhookDispatcher({
    ...WEBHOOK_DEFAULTS,
    ...definedOnly(tuning),
    db: options.db,
    bus: options.bus,
    logger: options.logger,
    secret,
  });
  dispatcher.start();
  return dispatcher;
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
