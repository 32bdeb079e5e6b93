import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { AgentRegistry } from '../assistants/registry.ts';
import { hashKey, hasScope, looksLikeKey, type Scope } from '../auth/keys.ts';
import { findKeyByHash, type KeyRecord, touchApiKey } from '../auth/repository.ts';
import { HangarError } from '../errors.ts';
import type { SqlClient } from '../store/sql.ts';

/**
 * Authentication and authorization of gateway requests.
 *
 * `keys` (the default; `hangar gateway` always): every request but the public
 * ones below presents an API key as `x-api-key` (what the LangGraph SDK sends)
 * or `Authorization: Bearer <key>`. The key names the request's tenant and its
 * scopes. `none` (`hangar dev` on localhost, tests): every request acts for the
 * `default` tenant with every scope.
 */
export type AuthMode = 'none' | 'keys';

/** What a route requires: nothing, any valid key, or a scope. */
export type RouteAccess = 'public' | 'authenticated' | Scope;

/** Read-only operations sent as POST (searches, counts, history with a body). */
const READ_POSTS = new Set([
  'POST /threads/search',
  'POST /threads/count',
  'POST /threads/:/history',
  'POST /threads/:/stream',
  'POST /threads/:/state/checkpoint',
  'POST /assistants/search',
  'POST /assistants/count',
  'POST /assistants/:/versions',
  'POST /agents/search',
  'POST /runs/crons/search',
  'POST /store/items/search',
  'POST /store/namespaces',
]);

/**
 * The one map from routes to what they require:
 *
 * - public: `GET /ok`, `GET /info`, `GET /openapi.json`, `GET /docs…`
 * - `admin`: everything under `/admin/`
 * - `runs:read`: every `GET`/`HEAD`, and the read-only `POST`s above (searches, counts, history)
 * - `runs:write`: every other method (create, update, delete, cancel, store put/delete, …)
 * - no route matched: any valid key (then `404`), so unknown paths tell nothing to strangers
 *
 * `admin` includes both run scopes. A new route gets its scope from this rule
 * without an edit here, unless it only reads through a `POST` (add it above)
 * or is an administrative one (put it under `/admin/`).
 *
 * @example
 * routeAccess('GET', '/threads/:thread_id/runs/:run_id'); // 'runs:read'
 * routeAccess('POST', '/threads/search');                  // 'runs:read'
 * routeAccess('POST', '/threads/:thread_id/runs');         // 'runs:write'
 */
export function routeAccess(method: string, url: string | undefined): RouteAccess {
  if (url === undefined) return 'authenticated';
  const reads = method === 'GET' || method === 'HEAD';
  if (reads && (url === '/ok' || url === '/info' || url === '/openapi.json')) return 'public';
  if (reads && (url === '/docs' || url.startsWith('/docs/'))) return 'public';
  if (url.startsWith('/admin/') || url === '/admin') return 'admin';
  if (reads) return 'runs:read';
  if (READ_POSTS.has(`${method} ${url.replace(/:[^/]+/g, ':')}`)) return 'runs:read';
  return 'runs:write';
}

/** Who a request acts for. */
export interface RequestAuth {
  tenantId: string;
  /** The key's id; null without authentication (`none`). */
  keyId: string | null;
  prefix: string | null;
}

export interface RegisteredRoute {
  method: string;
  url: string;
  access: RouteAccess;
}

export interface AuthOptions {
  mode: AuthMode;
  db: SqlClient;
  registry: AgentRegistry;
  logger: Logger;
  /**
   * How long a key lookup is cached in memory (default 10 s). A key revoked
   * in the database stops working on every gateway within this time.
   */
  keyCacheTtlMs?: number;
  /** `last_used_at` is written at most this often per key and gateway (default 60 s). */
  touchIntervalMs?: number;
}

export const DEFAULT_KEY_CACHE_TTL_MS = 10_000;
const CACHE_MAX_ENTRIES = 10_000;
const ANONYMOUS: RequestAuth = { tenantId: 'default', keyId: null, prefix: null };

/** The gateway's authenticator: a Fastify `onRequest` hook plus `tenantOf`. */
export class Authenticator {
  readonly mode: AuthMode;
  private readonly ttlMs: number;
  private readonly touchIntervalMs: number;
  private readonly byRequest = new WeakMap<FastifyRequest, RequestAuth>();
  private readonly cache = new Map<string, { expiresAt: number; record: Promise<KeyRecord | null> }>();
  private readonly lastTouched = new Map<string, number>();
  /** Tenants whose default assistants this process has made sure of. */
  private readonly readyTenants = new Map<string, Promise<void>>();
  private readonly routes: RegisteredRoute[] = [];

  constructor(private readonly options: AuthOptions) {
    this.mode = options.mode;
    this.ttlMs = options.keyCacheTtlMs ?? DEFAULT_KEY_CACHE_TTL_MS;
    this.touchIntervalMs = options.touchIntervalMs ?? 60_000;
  }

  /** Adds the hooks; call before any route is registered so `routes` sees them all. */
  install(app: FastifyInstance): void {
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      for (const method of methods) {
        this.routes.push({ method, url: route.url, access: routeAccess(method, route.url) });
      }
    });
    app.addHook('onRequest', (request, reply) => this.onRequest(request, reply));
  }

  /** Every route registered after `install`, with what it requires. */
  registeredRoutes(): readonly RegisteredRoute[] {
    return this.routes;
  }

  /** The tenant a request acts for; only valid after the `onRequest` hook accepted it. */
  tenantOf = (request: unknown): string => {
    if (this.mode === 'none') return 'default';
    const auth = this.byRequest.get(request as FastifyRequest);
    // A route that reads tenant data but was classified public: a bug, never another tenant's data.
    if (auth === undefined) throw new HangarError('unauthorized', 'this operation needs an API key');
    return auth.tenantId;
  };

  /** The key a request presented (null without authentication). */
  authOf(request: FastifyRequest): RequestAuth | undefined {
    return this.byRequest.get(request);
  }

  private async onRequest(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (this.mode === 'none') {
      this.byRequest.set(request, ANONYMOUS);
      return;
    }
    const access = routeAccess(request.method, request.routeOptions.url);
    if (access === 'public') return;
    const presented = presentedKey(request);
    if (presented === undefined) {
      reply.header('www-authenticate', 'Bearer');
      throw new HangarError(
        'unauthorized',
        'missing API key: send it in the x-api-key header or as Authorization: Bearer <key>',
      );
    }
    const record = looksLikeKey(presented) ? await this.lookup(presented) : null;
    if (record === null) {
      reply.header('www-authenticate', 'Bearer error="invalid_token"');
      throw new HangarError('unauthorized', 'invalid API key');
    }
    if (record.revoked) {
      reply.header('www-authenticate', 'Bearer error="invalid_token"');
      throw new HangarError('unauthorized', `API key ${record.prefix}… has been revoked`, {
        details: { key_prefix: record.prefix },
      });
    }
    if (access !== 'authenticated' && !hasScope(record.scopes, access)) {
      throw new HangarError(
        'forbidden',
        `API key ${record.prefix}… lacks the scope ${access} that ${request.method} ${request.routeOptions.url} needs`,
        { details: { required_scope: access, key_scopes: record.scopes } },
      );
    }
    this.touch(record.keyId);
    await this.tenantReady(record.tenantId);
    this.byRequest.set(request, { tenantId: record.tenantId, keyId: record.keyId, prefix: record.prefix });
  }

  /** Looks a key up by hash, cached for the TTL (misses too, so bad keys don't each cost a query). */
  private lookup(secret: string): Promise<KeyRecord | null> {
    const hash = hashKey(secret);
    const now = Date.now();
    const hit = this.cache.get(hash);
    if (hit !== undefined && hit.expiresAt > now) return hit.record;
    if (hit !== undefined) this.cache.delete(hash);
    if (this.cache.size >= CACHE_MAX_ENTRIES) this.evict(now);
    const record = findKeyByHash(this.options.db, hash);
    this.cache.set(hash, { expiresAt: now + this.ttlMs, record });
    // A failed lookup is not remembered: the next request asks again.
    record.catch(() => this.cache.delete(hash));
    return record;
  }

  private evict(now: number): void {
    for (const [hash, entry] of this.cache) if (entry.expiresAt <= now) this.cache.delete(hash);
    // Still full (a flood of distinct keys): drop the oldest entries, in insertion order.
    for (const hash of this.cache.keys()) {
      if (this.cache.size < CACHE_MAX_ENTRIES * 0.9) break;
      this.cache.delete(hash);
    }
  }

  /** Records the key's use at most once per interval, without holding the request. */
  private touch(keyId: string): void {
    const now = Date.now();
    if (now - (this.lastTouched.get(keyId) ?? 0) < this.touchIntervalMs) return;
    this.lastTouched.set(keyId, now);
    touchApiKey(this.options.db, keyId).catch((err: unknown) =>
      this.options.logger.warn({ err, key_id: keyId }, 'could not record API key use'),
    );
  }

  /**
   * Tenants are created with their first key (`hangar keys create`, which
   * loads no agents), so each gateway makes sure a tenant has the default
   * assistant of every agent it serves on the tenant's first request.
   */
  private tenantReady(tenantId: string): Promise<void> {
    let ready = this.readyTenants.get(tenantId);
    if (ready === undefined) {
      ready = this.options.registry.syncAssistants(this.options.db, tenantId);
      this.readyTenants.set(tenantId, ready);
      ready.catch(() => this.readyTenants.delete(tenantId));
    }
    return ready;
  }
}

/** The key from `x-api-key`, else from `Authorization: Bearer …`. */
function presentedKey(request: FastifyRequest): string | undefined {
  const header = request.headers['x-api-key'];
  const apiKey = Array.isArray(header) ? header[0] : header;
  if (apiKey !== undefined && apiKey.trim() !== '') return apiKey.trim();
  const authorization = request.headers.authorization;
  if (authorization === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return match?.[1] ?? authorization.trim();
}
