import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { STORE_LIMITS, unstorableJson, unstorableText } from '../../items/namespace.ts';
import {
  deleteItem,
  getItem,
  listNamespaces,
  putItem,
  searchItems,
  sweepExpiredItems,
} from '../../items/repository.ts';
import type { GatewayDeps } from '../app.ts';
import { parseWith } from '../errors.ts';

/**
 * The LangGraph store API (long-term memory), as the SDK's `client.store`
 * calls it. Semantic search is not offered: `query` and `index` are accepted
 * and ignored, as LangGraph itself does when no embedding index is configured.
 */

/** Adds a zod issue when a string cannot be stored (NUL, lone surrogate). */
const storableText = (value: string, ctx: z.core.$RefinementCtx<string>) => {
  const problem = unstorableText(value);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
};

/** Adds a zod issue, at the offending field, when a JSON value cannot be stored. */
const storableJson = (value: unknown, ctx: z.core.$RefinementCtx<unknown>) => {
  const problem = unstorableJson(value);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: problem.message, path: problem.path });
};

const Label = z
  .string()
  .min(1, 'namespace labels must be non-empty')
  .max(STORE_LIMITS.maxLabelLength)
  .regex(/^[^.]*$/, "namespace labels cannot contain '.'")
  .superRefine(storableText);

const Labels = z.array(Label).max(STORE_LIMITS.maxDepth);
/** An item's namespace: at least one label. */
const Namespace = Labels.min(1, 'namespace must have at least one label').refine(
  (labels) => Buffer.byteLength(labels.join('.')) <= STORE_LIMITS.maxNamespaceBytes,
  `namespace is longer than ${STORE_LIMITS.maxNamespaceBytes} bytes (labels joined by '.', UTF-8)`,
);

const Key = z
  .string()
  .min(1, 'key must be non-empty')
  .max(STORE_LIMITS.maxKeyBytes)
  .refine(
    (key) => Buffer.byteLength(key) <= STORE_LIMITS.maxKeyBytes,
    `key is longer than ${STORE_LIMITS.maxKeyBytes} bytes (UTF-8)`,
  )
  .superRefine(storableText);

const Value = z
  .record(z.string(), z.unknown(), { error: 'value must be a JSON object' })
  .superRefine(storableJson)
  .superRefine((value, ctx) => {
    // Only measured once the depth check passed: stringify recurses too.
    if (ctx.issues.length > 0) return;
    const bytes = Buffer.byteLength(JSON.stringify(value));
    if (bytes > STORE_LIMITS.maxValueBytes) {
      ctx.addIssue({
        code: 'custom',
        message: `value is ${bytes} bytes of JSON; the limit is ${STORE_LIMITS.maxValueBytes}`,
      });
    }
  });

/** Minutes (fractions allowed) until the item expires; null or absent: never. */
const Ttl = z.number().positive().max(1e7).nullable().optional();

const Page = (defaultLimit: number) => ({
  limit: z.number().int().min(1).max(STORE_LIMITS.maxPageSize).default(defaultLimit),
  offset: z.number().int().min(0).max(2_147_483_647).default(0),
});

const Filter = z
  .record(
    z.string().min(1, 'filter field names must be non-empty').superRefine(storableText),
    z.unknown().superRefine((expected, ctx) => {
      // LangGraph also knows `{$gt: …}`-style operators; Hangar matches exactly, so say so.
      if (
        typeof expected === 'object' &&
        expected !== null &&
        !Array.isArray(expected) &&
        Object.keys(expected).some((k) => k.startsWith('$'))
      ) {
        ctx.addIssue({ code: 'custom', message: 'filter operators ($eq, $gt, …) are not supported' });
        return;
      }
      storableJson(expected, ctx);
    }),
  )
  .refine((filter) => Object.keys(filter).length <= STORE_LIMITS.maxFilterFields, {
    message: `at most ${STORE_LIMITS.maxFilterFields} filter fields`,
  });

/** `PUT /store/items`; `index` (embedding fields) is ignored. */
export const StorePutBody = z.looseObject({ namespace: Namespace, key: Key, value: Value, ttl: Ttl });

/** `DELETE /store/items`. */
export const StoreDeleteBody = z.looseObject({ namespace: Namespace, key: Key });

/** `GET /store/items?namespace=a.b&key=k[&refresh_ttl=false]`: the SDK joins the labels with '.'. */
export const StoreGetQuery = z.looseObject({
  // Checked label by label, but kept a string so the schema still renders as OpenAPI.
  namespace: z
    .string({ error: 'namespace is required (labels joined by ".")' })
    .superRefine((joined, ctx) => {
      const parsed = Namespace.safeParse(joined.split('.'));
      for (const issue of parsed.error?.issues ?? []) {
        ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path.map(String) });
      }
    }),
  key: Key,
  refresh_ttl: z.enum(['true', 'false']).optional(),
});

/** `POST /store/items/search`; `query` (semantic search) is accepted and ignored. */
export const StoreSearchBody = z.looseObject({
  namespace_prefix: Labels.default([]),
  filter: Filter.nullable().optional(),
  ...Page(10),
  query: z.string().max(10_000).nullable().optional(),
  refresh_ttl: z.boolean().nullable().optional(),
});

/** `POST /store/namespaces`. */
export const StoreNamespacesBody = z.looseObject({
  prefix: Labels.nullable().optional(),
  suffix: Labels.nullable().optional(),
  max_depth: z.number().int().min(1).max(STORE_LIMITS.maxDepth).nullable().optional(),
  ...Page(100),
});

export interface StoreRouteOptions {
  /** How often expired items are deleted (default every minute); they are invisible before that. */
  sweepMs?: number;
}

export function registerStoreRoutes(
  app: FastifyInstance,
  deps: GatewayDeps,
  options: StoreRouteOptions = {},
): void {
  const sweeper = setInterval(() => {
    sweepExpiredItems(deps.db).catch((err: unknown) => app.log.warn({ err }, 'store item sweep failed'));
  }, options.sweepMs ?? 60_000);
  sweeper.unref();
  app.addHook('onClose', async () => clearInterval(sweeper));

  app.put('/store/items', async (request, reply) => {
    const body = parseWith(StorePutBody, request.body ?? {}, '');
    await putItem(deps.db, deps.tenantOf(request), {
      namespace: body.namespace,
      key: body.key,
      value: body.value,
      ttlMinutes: body.ttl ?? null,
    });
    return reply.status(204).send();
  });

  // A missing item is `200 null`, not a 404: the SDK's getItem resolves to null for it.
  app.get('/store/items', async (request, reply) => {
    const query = parseWith(StoreGetQuery, request.query, 'query');
    const item = await getItem(deps.db, deps.tenantOf(request), query.namespace.split('.'), query.key, {
      refreshTtl: query.refresh_ttl !== 'false',
    });
    return reply.header('content-type', 'application/json').send(JSON.stringify(item));
  });

  app.delete('/store/items', async (request, reply) => {
    const body = parseWith(StoreDeleteBody, request.body ?? {}, '');
    await deleteItem(deps.db, deps.tenantOf(request), body.namespace, body.key);
    return reply.status(204).send();
  });

  app.post('/store/items/search', async (request) => {
    const body = parseWith(StoreSearchBody, request.body ?? {}, '');
    const items = await searchItems(deps.db, deps.tenantOf(request), {
      namespacePrefix: body.namespace_prefix,
      filter: body.filter ?? {},
      limit: body.limit,
      offset: body.offset,
      refreshTtl: body.refresh_ttl ?? true,
    });
    return { items };
  });

  app.post('/store/namespaces', async (request) => {
    const body = parseWith(StoreNamespacesBody, request.body ?? {}, '');
    const namespaces = await listNamespaces(deps.db, deps.tenantOf(request), {
      prefix: body.prefix ?? [],
      suffix: body.suffix ?? [],
      ...(body.max_depth == null ? {} : { maxDepth: body.max_depth }),
      limit: body.limit,
      offset: body.offset,
    });
    return { namespaces };
  });
}
