import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode, HangarError } from '../errors.ts';
import {
  DOCS_ASSETS,
  DocsAssetParams,
  errorCodesOf,
  isPublic,
  OPERATIONS,
  type Operation,
  type Success,
} from './operations.ts';

/** The OpenAPI path (`/threads/{thread_id}`) of a Fastify path. */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

type Json = Record<string, unknown>;

function jsonSchema(schema: z.ZodType): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io: 'input' }) as Json;
  return rest;
}

function parametersOf(op: Operation): Json[] {
  const out: Json[] = [];
  const add = (where: 'path' | 'query', object: z.ZodObject | undefined) => {
    if (object === undefined) return;
    const schema = jsonSchema(object) as { properties?: Record<string, Json>; required?: string[] };
    for (const [name, property] of Object.entries(schema.properties ?? {})) {
      const required = where === 'path' || (schema.required ?? []).includes(name);
      out.push({ name, in: where, required, schema: property });
    }
  };
  add('path', op.params);
  add('query', op.query);
  for (const header of op.headers ?? []) {
    out.push({
      name: header.name,
      in: 'header',
      required: false,
      description: header.description,
      schema: header.schema,
    });
  }
  return out;
}

function successResponse({ description, kind }: Success): Json {
  const content: Record<string, Json> | undefined = {
    json: { 'application/json': { schema: {} } },
    'json-object': { 'application/json': { schema: { type: 'object' } } },
    'json-array': { 'application/json': { schema: { type: 'array', items: { type: 'object' } } } },
    sse: { 'text/event-stream': { schema: { type: 'string' } } },
    html: { 'text/html': { schema: { type: 'string' } } },
    asset: { 'application/octet-stream': { schema: { type: 'string' } } },
    none: undefined,
  }[kind];
  return content === undefined ? { description } : { description, content };
}

function errorResponses(op: Operation): Record<string, Json> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of errorCodesOf(op)) {
    const status = ERROR_CODES[code].http;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, Json> = {};
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    out[String(status)] = {
      description: codes.map((code) => `\`${code}\`: ${ERROR_CODES[code].summary}`).join(' '),
      content: {
        'application/json': {
          schema: {
            allOf: [{ $ref: '#/components/schemas/Error' }],
            properties: { error: { type: 'string', enum: codes } },
          },
        },
      },
    };
  }
  return out;
}

/** The error codes an API client can receive, in `ERROR_CODES` order. */
export const API_ERROR_CODES = (Object.keys(ERROR_CODES) as ErrorCode[]).filter(
  (code) => ERROR_CODES[code].kind === 'api',
);

/**
 * The OpenAPI 3.1 document of the gateway, generated from `OPERATIONS`.
 *
 * @example
 * const doc = openApiDocument();
 * doc.paths['/threads/{thread_id}'].get.operationId; // 'getThread'
 */
export function openApiDocument(version = '0.1.0'): Json & { paths: Record<string, Record<string, Json>> } {
  const paths: Record<string, Record<string, Json>> = {};
  const bodies: Record<string, Json> = {};
  for (const op of OPERATIONS) {
    const operation: Json = {
      operationId: op.operationId,
      summary: op.summary,
      tags: [op.tag],
    };
    if (!isPublic(op)) operation.security = [{ apiKey: [] }, { bearer: [] }];
    const parameters = parametersOf(op);
    if (parameters.length > 0) operation.parameters = parameters;
    if (op.body !== undefined) {
      bodies[op.body.name] ??= jsonSchema(op.body.schema);
      operation.requestBody = {
        required: op.body.required,
        content: { 'application/json': { schema: { $ref: `#/components/schemas/${op.body.name}` } } },
      };
    }
    const successes = Object.fromEntries(
      [op.ok, ...(op.alsoOk ?? [])].map((ok) => [String(ok.status), successResponse(ok)]),
    );
    operation.responses = { ...successes, ...errorResponses(op) };
    const path = openApiPath(op.path);
    paths[path] = { ...paths[path], [op.method.toLowerCase()]: operation };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Hangar API',
      version,
      description:
        'The LangGraph Platform-compatible HTTP API of Hangar (the `@langchain/langgraph-sdk` Client is the reference client), ' +
        'plus Agent Protocol aliases. Every error answers `{error, message, details?}` with `error` from a closed set (docs/errors.md).',
    },
    tags: [
      { name: 'runs', description: 'Background, blocking and streaming runs.' },
      { name: 'threads', description: 'Threads, their state and history.' },
      { name: 'assistants', description: 'LangGraph assistants (one per configured agent).' },
      { name: 'agents', description: 'Agent Protocol aliases of the assistants.' },
      { name: 'store', description: 'The long-term memory store: items by namespace and key.' },
      {
        name: 'approvals',
        description: 'Human in the loop: the interrupts runs wait on, and their answers.',
      },
      {
        name: 'dead-letters',
        description: 'Runs that ended `dead`: inspect what killed them, then redrive or discard them.',
      },
      { name: 'meta', description: 'Liveness, version and this document.' },
    ],
    paths,
    components: {
      securitySchemes: {
        apiKey: {
          type: 'apiKey',
          in: 'header',
          name: 'x-api-key',
          description: 'An API key (what the LangGraph SDK sends).',
        },
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'The same API key as `Authorization: Bearer <key>`.',
        },
      },
      schemas: {
        Error: {
          type: 'object',
          description: 'The one error shape of the API.',
          required: ['error', 'message'],
          additionalProperties: false,
          properties: {
            error: { type: 'string', enum: API_ERROR_CODES },
            message: { type: 'string' },
            details: { type: 'object', additionalProperties: {} },
          },
        },
        ...bodies,
      },
    },
  };
}

const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Hangar API</title>
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body>
</html>
`;

// No validator badge: Swagger UI would send the document to an outside validator.
const DOCS_INIT = `window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  validatorUrl: null,
});
`;

/**
 * `GET /openapi.json`, and `GET /docs`: Swagger UI served from the
 * `swagger-ui-dist` package in node_modules, so the page works offline.
 */
export function registerOpenApiRoutes(app: FastifyInstance): void {
  let document: string | undefined;
  const assetDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  const assets = new Map<string, Buffer | string>([['init.js', DOCS_INIT]]);

  app.get('/openapi.json', async (_request, reply) => {
    document ??= JSON.stringify(openApiDocument());
    return reply.type('application/json; charset=utf-8').send(document);
  });
  app.get('/docs', async (_request, reply) => reply.type('text/html; charset=utf-8').send(DOCS_HTML));
  app.get('/docs/assets/:file', async (request, reply) => {
    const parsed = DocsAssetParams.safeParse(request.params);
    if (!parsed.success) {
      const file = (request.params as { file?: unknown }).file;
      throw new HangarError('not_found', `no docs asset ${String(file)}`, { details: { file } });
    }
    const { file } = parsed.data;
    let body = assets.get(file);
    if (body === undefined) {
      body = await readFile(join(assetDir, file));
      assets.set(file, body);
    }
    return reply
      .type(DOCS_ASSETS[file] ?? 'application/octet-stream')
      .header('cache-control', 'public, max-age=3600')
      .send(body);
  });
}

const tracked = new WeakMap<FastifyInstance, Array<{ method: string; path: string }>>();

/**
 * Records every route registered on `app` from now on (call it first), so
 * tests can compare the gateway's routes with `OPERATIONS`.
 */
export function trackRoutes(app: FastifyInstance): void {
  const routes: Array<{ method: string; path: string }> = [];
  tracked.set(app, routes);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, path: route.url ?? route.path });
  });
}

/** The routes `trackRoutes` recorded on `app`. */
export function trackedRoutes(app: FastifyInstance): ReadonlyArray<{ method: string; path: string }> {
  return tracked.get(app) ?? [];
}
