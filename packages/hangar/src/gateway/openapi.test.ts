import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../errors.ts';
import { defineAgent } from '../sdk/agent.ts';
import { startTestServer, type TestServer } from '../testing/index.ts';
import { API_ERROR_CODES, openApiDocument, openApiPath, trackedRoutes } from './openapi.ts';
import { OPERATIONS } from './operations.ts';
import { RunCreateBody, ThreadSearchBody } from './schemas.ts';

const echo = defineAgent({ name: 'echo', input: z.object({ text: z.string() }), run: async (_ctx, i) => i });

interface OperationObject {
  operationId: string;
  parameters?: Array<{ name: string; in: string; required: boolean; schema: Record<string, unknown> }>;
  requestBody?: { required: boolean; content: Record<string, { schema: { $ref: string } }> };
  responses: Record<
    string,
    { description: string; content?: Record<string, { schema: Record<string, unknown> }> }
  >;
}

interface Doc {
  openapi: string;
  paths: Record<string, Record<string, OperationObject>>;
  components: unknown;
}

const key = (method: string, path: string) => `${method} ${path}`;

describe('OpenAPI document (postgres)', () => {
  let server: TestServer;
  let doc: Doc;

  beforeAll(async () => {
    server = await startTestServer('postgres', [echo], { worker: false });
    const res = await fetch(`${server.apiUrl}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    doc = (await res.json()) as Doc;
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('catalogs every route the gateway registers, and nothing else', () => {
    const app = server.hangar.gateway?.app;
    expect(app).toBeDefined();
    const routes = trackedRoutes(app as NonNullable<typeof app>);
    const registered = new Set(routes.map((r) => key(r.method, r.path)));
    // Fastify adds a HEAD route for every GET; only the GET is an operation.
    const operations = new Set(
      [...registered].filter((k) => !(k.startsWith('HEAD ') && registered.has(`GET ${k.slice(5)}`))),
    );
    const catalog = new Set(OPERATIONS.map((op) => key(op.method, op.path)));
    expect(OPERATIONS.length).toBe(catalog.size);
    const missingFromCatalog = [...operations].filter((k) => !catalog.has(k));
    const withoutRoute = [...catalog].filter((k) => !operations.has(k));
    expect(missingFromCatalog, 'routes without an entry in OPERATIONS (gateway/openapi.ts)').toEqual([]);
    expect(withoutRoute, 'OPERATIONS entries that no route serves').toEqual([]);
    expect(operations.has('POST /threads/:thread_id/runs')).toBe(true);
  });

  it('serves a valid OpenAPI 3.1 document with one operation per catalog entry', async () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc).toEqual(JSON.parse(JSON.stringify(openApiDocument())));
    // The validator dereferences in place: give it a copy.
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeDefined();
    const ids = new Set<string>();
    for (const op of OPERATIONS) {
      const operation = doc.paths[openApiPath(op.path)]?.[op.method.toLowerCase()] as
        | OperationObject
        | undefined;
      expect(operation, key(op.method, op.path)).toBeDefined();
      ids.add(operation?.operationId ?? '');
      expect(Object.keys(operation?.responses ?? {})).toContain(String(op.ok.status));
    }
    expect(ids.size).toBe(OPERATIONS.length);
  });

  it('the validator catches a broken document (so its pass above means something)', async () => {
    const noDescription = structuredClone(doc) as Doc;
    const getThread = noDescription.paths['/threads/{thread_id}']?.get as OperationObject;
    delete (getThread.responses['200'] as { description?: string }).description;
    await expect(SwaggerParser.validate(noDescription as never)).rejects.toThrow(/description/);
    const danglingRef = structuredClone(doc) as Doc;
    delete (danglingRef.components as { schemas: Record<string, unknown> }).schemas.Error;
    await expect(SwaggerParser.validate(danglingRef as never)).rejects.toThrow(/Error/);
  });

  it('declares exactly the path parameters of each path template (not checked by the validator for 3.x)', () => {
    for (const [path, item] of Object.entries(doc.paths)) {
      const inTemplate = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      for (const [method, value] of Object.entries(item)) {
        const declared = ((value as OperationObject).parameters ?? []).filter((p) => p.in === 'path');
        expect(declared.map((p) => p.name).sort(), `${method} ${path}`).toEqual(inTemplate);
        for (const p of declared) expect(p.required, `${method} ${path} ${p.name}`).toBe(true);
      }
    }
  });

  it('describes request parts with the schemas the handlers validate with', () => {
    const schemas = (doc.components as { schemas: Record<string, { properties: Record<string, unknown> }> })
      .schemas;
    const { $schema: _, ...runCreate } = z.toJSONSchema(RunCreateBody, { io: 'input' }) as {
      $schema: string;
      properties: Record<string, unknown>;
    };
    expect(schemas.RunCreate?.properties).toEqual({
      ...runCreate.properties,
      stream_mode: expect.objectContaining({ anyOf: expect.any(Array) }),
    });
    expect(schemas.ThreadSearch?.properties.status).toEqual(
      (z.toJSONSchema(ThreadSearchBody, { io: 'input' }) as { properties: Record<string, unknown> })
        .properties.status,
    );
    const createRun = doc.paths['/threads/{thread_id}/runs']?.post as OperationObject;
    expect(createRun.requestBody).toEqual({
      required: true,
      content: { 'application/json': { schema: { $ref: '#/components/schemas/RunCreate' } } },
    });
    expect(createRun.parameters).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          name: 'thread_id',
          in: 'path',
          required: true,
          schema: expect.objectContaining({ format: 'uuid' }),
        }),
        expect.objectContaining({ name: 'Idempotency-Key', in: 'header', required: false }),
      ]),
    );
    const history = doc.paths['/threads/{thread_id}/history']?.get as OperationObject;
    expect(history.parameters).toContainEqual(
      expect.objectContaining({
        name: 'limit',
        in: 'query',
        required: false,
        schema: expect.objectContaining({ maximum: 1000 }),
      }),
    );
  });

  it('documents the one error shape and, per operation, the codes it can answer by status', () => {
    const error = (
      doc.components as { schemas: Record<string, { properties: { error: { enum: string[] } } }> }
    ).schemas.Error;
    expect(error?.properties.error.enum).toEqual(API_ERROR_CODES);
    expect(API_ERROR_CODES).toContain('invalid_request');
    expect(API_ERROR_CODES).not.toContain('agent_error');
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, value] of Object.entries(item)) {
        const operation = value as OperationObject;
        for (const [status, response] of Object.entries(operation.responses)) {
          if (Number(status) < 400) continue;
          const schema = response.content?.['application/json']?.schema as {
            allOf: unknown[];
            properties: { error: { enum: ErrorCode[] } };
          };
          expect(schema.allOf, `${method} ${path} ${status}`).toEqual([
            { $ref: '#/components/schemas/Error' },
          ]);
          for (const code of schema.properties.error.enum)
            expect(ERROR_CODES[code].http).toBe(Number(status));
        }
        expect(Object.keys(operation.responses)).toContain('500');
      }
    }
    const createRun = doc.paths['/threads/{thread_id}/runs']?.post as OperationObject;
    expect(Object.keys(createRun.responses)).toEqual(
      expect.arrayContaining(['200', '400', '404', '409', '413', '415', '422', '500']),
    );
    const badRequest = createRun.responses['400']?.content?.['application/json']?.schema as {
      properties: { error: { enum: string[] } };
    };
    expect(badRequest.properties.error.enum).toEqual(
      expect.arrayContaining(['invalid_request', 'invalid_json']),
    );
  });

  it('validates every documented path parameter as the document says', async () => {
    for (const op of OPERATIONS) {
      const operation = doc.paths[openApiPath(op.path)]?.[op.method.toLowerCase()] as OperationObject;
      const uuidParams = (operation.parameters ?? []).filter(
        (p) => p.in === 'path' && p.schema.format === 'uuid',
      );
      for (const param of uuidParams) {
        const url = op.path.replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) =>
          name === param.name ? 'not-a-uuid' : '00000000-0000-4000-8000-000000000000',
        );
        const res = await fetch(`${server.apiUrl}${url}`, {
          method: op.method,
          ...(op.body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: '{}' }),
        });
        const body = (await res.json()) as { error: string; message: string };
        expect({ op: key(op.method, op.path), status: res.status, error: body.error }).toEqual({
          op: key(op.method, op.path),
          status: 400,
          error: 'invalid_request',
        });
        expect(body.message).toContain(`path.${param.name}`);
      }
    }
  });
});

describe('/docs (postgres)', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer('postgres', [echo], { worker: false });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('is an HTML page whose every asset is served by the gateway itself', async () => {
    const res = await fetch(`${server.apiUrl}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).not.toMatch(/https?:|\/\//);
    const refs = [...html.matchAll(/\s(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '');
    expect(refs).toEqual(
      expect.arrayContaining([
        '/docs/assets/swagger-ui.css',
        '/docs/assets/swagger-ui-bundle.js',
        '/docs/assets/init.js',
      ]),
    );
    for (const ref of refs) {
      expect(ref).toMatch(/^\/docs\/assets\/[\w.-]+$/);
      const asset = await fetch(`${server.apiUrl}${ref}`);
      expect(asset.status, ref).toBe(200);
      expect((await asset.arrayBuffer()).byteLength, ref).toBeGreaterThan(100);
    }
    const init = await (await fetch(`${server.apiUrl}/docs/assets/init.js`)).text();
    expect(init).toContain("url: '/openapi.json'");
    expect(init).toContain('validatorUrl: null');
    expect(init).not.toMatch(/https?:/);
    const css = await fetch(`${server.apiUrl}/docs/assets/swagger-ui.css`);
    expect(css.headers.get('content-type')).toMatch(/^text\/css/);
    expect(await css.text()).not.toMatch(/url\(\s*["']?https?:/);
  });

  it('answers an unknown asset with a 404 in the error shape', async () => {
    for (const name of ['index.html', '..%2Fpackage.json', 'swagger-ui-bundle.js.map']) {
      const res = await fetch(`${server.apiUrl}/docs/assets/${name}`);
      expect(res.status, name).toBe(404);
      expect(await res.json()).toMatchObject({ error: 'not_found', message: expect.any(String) });
    }
  });
});
