import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HangarError, isHangarError } from '../errors.ts';
import type { Queryable } from '../store/sql.ts';

/**
 * Admission control: the gateway refuses work it should not take with `429
 * rate_limited` and a `Retry-After` header (seconds).
 *
 * - Pending runs, per tenant and over all tenants: a run create is refused
 *   while that many runs are `pending`. Each gateway counts the backlog in
 *   Postgres at most once a second per tenant (bounded by the limit, on the
 *   `runs_tenant_status` and `runs_claimable_tenant` indexes) and adds the creates it
 *   admitted since, so the limit is soft: N gateways can overshoot it by what
 *   the others admitted within a second.
 * - Requests per API key: a token bucket per key **in each gateway replica**
 *   (N replicas behind a balancer let a key through at up to N times the rate).
 * - Held connections per API key (SSE streams, `wait`, `join`): counted per
 *   replica too.
 *
 * The per-key limits apply to API keys; with authentication off (`hangar dev`
 * on localhost) there is no key and only the pending-run limits apply.
 * A limit of 0 turns that limit off.
 */
export interface LimitSettings {
  /** Pending runs one tenant may have (default 1000). */
  maxPendingRunsPerTenant: number;
  /** Pending runs over all tenants (default 10000). */
  maxPendingRuns: number;
  /** `Retry-After` when a pending-run limit refuses a create, in seconds (default 5). */
  pendingRetryAfterSeconds: number;
  /** Sustained requests per second per key and replica (default 100). */
  keyRequestsPerSecond: number;
  /** Burst above the rate: the bucket's size (default 200). */
  keyBurst: number;
  /** Open streams / waits / joins per key and replica (default 100). */
  maxStreamsPerKey: number;
}

export const DEFAULT_LIMITS: LimitSettings = {
  maxPendingRunsPerTenant: 1000,
  maxPendingRuns: 10_000,
  pendingRetryAfterSeconds: 5,
  keyRequestsPerSecond: 100,
  keyBurst: 200,
  maxStreamsPerKey: 100,
};

/** Routes that hold their connection until a run ends: they count against the stream limit. */
export function holdsConnection(url: string | undefined): boolean {
  return url !== undefined && /\/(stream|wait|join)$/.test(url);
}

interface Bucket {
  tokens: number;
  at: number;
}

/** How often a gateway re-counts a backlog (at its limit: before every refusal). */
const BACKLOG_REFRESH_MS = 1_000;

interface Backlog {
  /** Pending runs at the last count. */
  count: number;
  /** Creates this gateway admitted since that count. */
  admitted: number;
  readAt: number;
  reading: Promise<void> | undefined;
}

const estimate = (backlog: Backlog) => backlog.count + backlog.admitted;

export class Admission {
  readonly settings: LimitSettings;
  private readonly backlogs = new Map<string, Backlog>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly streams = new Map<string, number>();

  constructor(
    private readonly db: Queryable,
    settings: Partial<LimitSettings> = {},
    private readonly keyOf: (request: FastifyRequest) => string | null = () => null,
  ) {
    this.settings = { ...DEFAULT_LIMITS, ...settings };
  }

  /**
   * Adds the per-key hooks; install after authentication (it reads the key).
   * Also sets `Retry-After` on every `rate_limited` error that carries `retry_after_s`.
   */
  install(app: FastifyInstance): void {
    app.addHook('onRequest', async (request, reply) => this.onRequest(request, reply));
    app.addHook('onError', async (_request, reply, err) => {
      if (isHangarError(err, 'rate_limited') && typeof err.details?.retry_after_s === 'number') {
        reply.header('retry-after', String(err.details.retry_after_s));
      }
    });
  }

  /**
   * Refuses a run create while the tenant's or the whole backlog is at its
   * limit. The backlog is counted in Postgres at most every `BACKLOG_REFRESH_MS`
   * per tenant (single-flight: concurrent creates share one count) plus the
   * creates this gateway admitted since, so the check costs no round trip on
   * most creates. At the limit the count is re-read before refusing, so a
   * run that ends frees its place at once.
   */
  async beforeCreate(tenantId: string): Promise<void> {
    const { maxPendingRunsPerTenant: perTenant, maxPendingRuns: global } = this.settings;
    const [tenantPending, allPending] = await Promise.all([
      perTenant > 0
        ? this.backlog(`t:${tenantId}`, perTenant, 'tenant_id = $2 AND status = $3', [tenantId, 'pending'])
        : null,
      global > 0 ? this.backlog('*', global, 'status = $2', ['pending']) : null,
    ]);
    const retry_after_s = this.settings.pendingRetryAfterSeconds;
    if (tenantPending !== null && estimate(tenantPending) >= perTenant) {
      throw new HangarError(
        'rate_limited',
        `the tenant has ${perTenant} pending runs, its limit; retry after ${retry_after_s} s`,
        { details: { limit: 'pending_runs_per_tenant', max: perTenant, retry_after_s } },
      );
    }
    if (allPending !== null && estimate(allPending) >= global) {
      throw new HangarError(
        'rate_limited',
        `the server has ${global} pending runs, its limit; retry after ${retry_after_s} s`,
        { details: { limit: 'pending_runs', max: global, retry_after_s } },
      );
    }
    if (tenantPending !== null) tenantPending.admitted++;
    if (allPending !== null) allPending.admitted++;
  }

  /** The backlog entry for `key`, re-counted when stale (sooner when it is at its limit). */
  private async backlog(key: string, max: number, where: string, params: unknown[]): Promise<Backlog> {
    let entry = this.backlogs.get(key);
    if (entry === undefined) {
      entry = { count: 0, admitted: 0, readAt: 0, reading: undefined };
      this.backlogs.set(key, entry);
    }
    const age = Date.now() - entry.readAt;
    // At the limit a refusal is only ever made on a fresh count (concurrent ones share it).
    const stale = age > BACKLOG_REFRESH_MS || estimate(entry) >= max;
    if (stale) {
      const current = entry;
      current.reading ??= (async () => {
        try {
          const startedAt = Date.now();
          const count = await countUpTo(this.db, where, max, params);
          // Creates admitted while the count ran may or may not be in it: keep them (err on refusing).
          current.count = count;
          current.admitted = 0;
          current.readAt = startedAt;
        } finally {
          current.reading = undefined;
        }
      })();
      await current.reading;
    }
    return entry;
  }

  private onRequest(request: FastifyRequest, reply: FastifyReply): void {
    const keyId = this.keyOf(request);
    if (keyId === null) return;
    this.takeToken(keyId);
    if (holdsConnection(request.routeOptions.url)) this.openStream(keyId, reply);
  }

  private takeToken(keyId: string): void {
    const { keyRequestsPerSecond: rate, keyBurst } = this.settings;
    if (rate <= 0) return;
    const burst = Math.max(1, keyBurst);
    const now = Date.now();
    const bucket = this.buckets.get(keyId) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    if (bucket.tokens < 1) {
      this.buckets.set(keyId, bucket);
      const retry_after_s = Math.max(1, Math.ceil((1 - bucket.tokens) / rate));
      throw new HangarError(
        'rate_limited',
        `too many requests for this API key (${rate}/s, burst ${burst}); retry after ${retry_after_s} s`,
        { details: { limit: 'key_requests_per_second', max: rate, retry_after_s } },
      );
    }
    bucket.tokens -= 1;
    // Delete-and-set keeps the map in last-use order, so pruning drops the idle buckets first.
    this.buckets.delete(keyId);
    this.buckets.set(keyId, bucket);
    if (this.buckets.size > 10_000) this.pruneBuckets(now, rate, burst);
  }

  /** A bucket idle long enough to be full again is the same as no bucket. */
  private pruneBuckets(now: number, rate: number, burst: number): void {
    const refillMs = (burst / rate) * 1000;
    for (const [keyId, bucket] of this.buckets) {
      if (now - bucket.at < refillMs) break;
      this.buckets.delete(keyId);
    }
  }

  private openStream(keyId: string, reply: FastifyReply): void {
    const max = this.settings.maxStreamsPerKey;
    if (max <= 0) return;
    const open = this.streams.get(keyId) ?? 0;
    if (open >= max) {
      throw new HangarError(
        'rate_limited',
        `this API key has ${open} open streams, its limit; close one or retry later`,
        { details: { limit: 'streams_per_key', max, retry_after_s: 1 } },
      );
    }
    this.streams.set(keyId, open + 1);
    let closed = false;
    // 'close' fires once the response is done or the client went away, hijacked (SSE) or not.
    reply.raw.once('close', () => {
      if (closed) return;
      closed = true;
      const left = (this.streams.get(keyId) ?? 1) - 1;
      if (left <= 0) this.streams.delete(keyId);
      else this.streams.set(keyId, left);
    });
  }

  /** Open held connections of a key on this replica (for tests and metrics). */
  openStreams(keyId: string): number {
    return this.streams.get(keyId) ?? 0;
  }
}

/** `count(*)` of matching runs, stopping at `max`: the cost is bounded by the limit, not the table. */
async function countUpTo(db: Queryable, where: string, max: number, params: unknown[]): Promise<number> {
  const res = await db.query<{ n: number | string }>(
    `SELECT count(*) AS n FROM (SELECT 1 FROM runs WHERE ${where} LIMIT $1) AS pending`,
    [max, ...params],
  );
  return Number(res.rows[0]?.n ?? 0);
}
