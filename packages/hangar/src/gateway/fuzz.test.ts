/**
 * Property-based bad input over every operation of the OpenAPI catalog,
 * against a real server on Postgres: malformed, missing, oversized,
 * wrong-typed and unknown body fields, invalid ids in paths, bad query
 * strings, huge metadata, non-JSON bodies and wrong content types.
 *
 * Whatever arrives, the answer is never a 5xx, never a hang, always the one
 * error shape `{error, message, details?}` with a documented code (and, for
 * `invalid_request`, the field that was wrong), and the status and code are
 * among those `/openapi.json` lists for the operation.
 *
 * `HANGAR_FUZZ_RUNS` (default 20) sets the cases per operation; a failure
 * prints fast-check's seed and path to replay it
 * (`HANGAR_FUZZ_SEED=<seed> HANGAR_FUZZ_PATH=<path>`).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { uuidv5 } from '../assistants/registry.ts';
import { ERROR_CODES, type ErrorCode } from '../errors.ts';
import { defineAgent } from '../sdk/agent.ts';
import { startTestServer, type TestServer } from '../testing/index.ts';
import { openApiDocument } from './openapi.ts';
import { errorCodesOf, OPERATIONS, type Operation } from './operations.ts';

const RUNS = Number(process.env.HANGAR_FUZZ_RUNS ?? 20);
const SEED = process.env.HANGAR_FUZZ_SEED === undefined ? undefined : Number(process.env.HANGAR_FUZZ_SEED);
const PATH = process.env.HANGAR_FUZZ_PATH;
/** A request (body included) that takes longer than this is a hang. */
const REQUEST_TIMEOUT_MS = 10_000;

const echo = defineAgent({
  name: 'echo',
  input: z.object({ text: z.string().max(100) }),
  run: async (_ctx, input) => ({ echoed: input.text }),
});

/** JSON text spliced verbatim into a body (nesting too deep for JSON.stringify, bad escapes). */
class RawJson {
  constructor(readonly text: string) {}
}
type Value = RawJson | null | boolean | number | string | Value[] | { [key: string]: Value };

function toJson(value: Value | undefined): string {
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    return `{${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

const hugeString = fc.integer({ min: 1_000, max: 400_000 }).map((n) => 'x'.repeat(n));
const hugeObject = fc
  .integer({ min: 100, max: 5_000 })
  .map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])) as Value);
const deepNesting = fc
  .tuple(fc.integer({ min: 50, max: 50_000 }), fc.boolean())
  .map(([depth, arrays]) =>
    arrays
      ? new RawJson(`${'['.repeat(depth)}${']'.repeat(depth)}`)
      : new RawJson(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`),
  );
/** Values no field expects: wrong types, edge numbers, odd strings, huge and deep ones. */
const weird: fc.Arbitrary<Value> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Value>,
  fc.constantFrom<Value>(null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 63, '', ' ', 'a\u0000b', [], {}, [
    [[]],
  ]),
  fc.constantFrom(
    new RawJson('"\\ud800"'),
    new RawJson('"\\u0000"'),
    new RawJson('{"\\u0000":1}'),
    new RawJson('{"__proto__":{"polluted":1}}'),
    new RawJson('{"constructor":{"prototype":{"polluted":1}}}'),
    new RawJson('1e400'),
    new RawJson('-0'),
    new RawJson('123456789012345678901234567890'),
  ),
  fc.string({ unit: 'binary', maxLength: 30 }),
  hugeString,
  hugeObject,
  deepNesting,
);

/** Fields every body of the API may carry, so generated objects hit them. */
const COMMON_FIELDS = [
  'metadata',
  'limit',
  'offset',
  'input',
  'config',
  'values',
  'assistant_id',
  'thread_id',
];

function knownFields(schema: z.ZodType | undefined): string[] {
  if (schema === undefined) return COMMON_FIELDS;
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as {
    properties?: Record<string, unknown>;
  };
  return [...new Set([...Object.keys(json.properties ?? {}), ...COMMON_FIELDS])];
}

/** A valid body per body component, for mutations one field at a time. */
const BASE_BODIES: Record<string, Record<string, Value>> = {
  RunCreate: { assistant_id: 'echo', input: { text: 'hi' } },
  ThreadStateUpdate: { values: { a: 1 } },
  AssistantCreate: { graph_id: 'echo' },
  AssistantLatest: { version: 1 },
  StorePut: { namespace: ['fuzz'], key: 'k', value: { a: 1 } },
  StoreDelete: { namespace: ['fuzz'], key: 'k' },
};

type Mutation = { kind: 'set'; field: string; value: Value } | { kind: 'delete'; field: string };

/** A body of the operation: its valid base body with one to four fields set to odd values or removed. */
function objectBody(op: Operation): fc.Arbitrary<Value> {
  if (op.body?.name === 'RunBatch') {
    const create = OPERATIONS.find((o) => o.body?.name === 'RunCreate') as Operation;
    return fc.array(objectBody(create), { maxLength: 3 });
  }
  const fields = knownFields(op.body?.schema);
  const field = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...fields) },
    { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  );
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('set' as const), field, value: weird }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), field }) },
  );
  return fc.array(mutation, { minLength: 1, maxLength: 4 }).map((mutations) => {
    const body: Record<string, Value> = { ...(BASE_BODIES[op.body?.name ?? ''] ?? {}) };
    for (const m of mutations) {
      if (m.kind === 'set')
        Object.defineProperty(body, m.field, {
          value: m.value,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      else delete body[m.field];
    }
    return body;
  });
}

interface Body {
  bytes: string | Uint8Array;
  contentType: string | undefined;
}

const JSON_TYPES = ['application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON'];
const OTHER_TYPES = [
  'application/json; charset=iso-8859-1',
  'application/json;charset=utf-16',
  'text/plain',
  'text/json',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=xyz',
  'application/xml',
  'application/octet-stream',
  'application/vnd.api+json',
  '*/*',
  ';;;',
  'application/json, text/plain',
];
const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...JSON_TYPES) },
  { weight: 3, arbitrary: fc.constantFrom(...OTHER_TYPES) },
  { weight: 1, arbitrary: fc.constant(undefined) },
);

const notJson = fc.oneof(
  fc.string({ maxLength: 50 }),
  fc.constantFrom(
    '',
    'null',
    'true',
    '1',
    '"x"',
    '\uFEFF{}',
    '{"a":1}garbage',
    '{"a":}',
    'NaN',
    '{"a":1,}',
    '[1,2',
    '{',
  ),
  fc.uint8Array({ maxLength: 200 }),
);

function bodyOf(op: Operation): fc.Arbitrary<Body | undefined> {
  const json = fc.oneof({ weight: 5, arbitrary: objectBody(op) }, { weight: 2, arbitrary: weird });
  const generated = fc.oneof(
    { weight: 6, arbitrary: json.map((v) => toJson(v)) },
    { weight: 2, arbitrary: notJson },
  );
  const body = fc.record({ bytes: generated, contentType }).map(
    // Without a content type, fetch labels a string body text/plain: send bytes to send none.
    (b): Body =>
      b.contentType === undefined && typeof b.bytes === 'string'
        ? { bytes: new TextEncoder().encode(b.bytes), contentType: undefined }
        : b,
  );
  if (op.method === 'GET') return fc.constant(undefined);
  if (op.body === undefined) return fc.option(body, { freq: 3 }).map((b) => b ?? undefined);
  return fc.oneof({ weight: 9, arbitrary: body }, { weight: 1, arbitrary: fc.constant(undefined) });
}

/** Path segments: real ids (so handlers go past validation), random ones, malformed ones. */
function pathValue(real: readonly string[]): fc.Arbitrary<string> {
  const raw = fc.constantFrom(
    'not-a-uuid',
    '0',
    'null',
    '%',
    '%zz',
    '%E0%A4%A',
    '%00',
    '..',
    '%2e%2e',
    '%2F',
    '00000000-0000-0000-0000-00000000000g',
    'ffffffff-ffff-ffff-ffff-ffffffffffff',
    '00000000-0000-0000-0000-000000000000',
    ':thread_id',
    'x'.repeat(3_000),
  );
  const encoded = fc
    .oneof(
      fc.string({ maxLength: 40 }),
      fc.uuid().map((u) => u.toUpperCase()),
      fc.uuid().map((u) => `${u}a`),
      fc.uuid().map((u) => u.replace(/-/g, '')),
    )
    .map(encodeURIComponent);
  return fc.oneof(
    ...(real.length > 0 ? [{ weight: 4, arbitrary: fc.constantFrom(...real) }] : []),
    { weight: 2, arbitrary: fc.uuid() },
    { weight: 2, arbitrary: raw },
    { weight: 2, arbitrary: encoded },
  );
}

function queryOf(op: Operation): fc.Arbitrary<string> {
  const keys = [...Object.keys(op.query?.shape ?? {}), 'limit', 'offset', 'stream_mode'];
  const badValue = fc.oneof(
    fc.string({ maxLength: 20 }).map(encodeURIComponent),
    fc.constantFrom(
      '-1',
      '0',
      '1e400',
      'NaN',
      'abc',
      '1.5',
      '99999999999999999999',
      '',
      '%zz',
      'values',
      'x'.repeat(5_000),
    ),
    fc.integer().map(String),
  );
  const pairs = fc
    .array(
      fc.tuple(
        fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 10 }).map(encodeURIComponent)),
        badValue,
      ),
      {
        maxLength: 4,
      },
    )
    .map((list) => list.map(([k, v]) => `${k}=${v}`).join('&'));
  const garbage = fc.constantFrom(
    '%',
    '%%%',
    'a=%zz',
    '&&&=',
    '=x',
    'limit[]=1',
    'limit[a]=1',
    '__proto__=1',
    'constructor[prototype]=1',
    'limit=1&limit=2',
  );
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant('') },
    { weight: 4, arbitrary: pairs },
    { weight: 1, arbitrary: garbage },
  );
}

const headerValue = fc.oneof(
  fc.string({
    unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    maxLength: 250,
  }),
  fc.constantFrom('', ' ', '-1', '99999999999999999999', 'x'.repeat(2_000)),
);

interface FuzzRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: Body | undefined;
}

function requestOf(op: Operation, real: Record<string, readonly string[]>): fc.Arbitrary<FuzzRequest> {
  const names = [...op.path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1] ?? '');
  const params = fc.tuple(...names.map((name) => pathValue(real[name] ?? [])));
  const headers = fc.record(
    Object.fromEntries((op.headers ?? []).map((h) => [h.name.toLowerCase(), headerValue])),
    { requiredKeys: [] },
  );
  return fc
    .record({ params, query: queryOf(op), headers, body: bodyOf(op) })
    .map(({ params, query, headers, body }) => {
      let i = 0;
      const path = op.path.replace(/:([A-Za-z0-9_]+)/g, () => params[i++] ?? '');
      return {
        method: op.method,
        url: query === '' ? path : `${path}?${query}`,
        headers: headers as Record<string, string>,
        body,
      };
    });
}

function describeRequest(req: FuzzRequest): string {
  const bytes = req.body?.bytes;
  const text = bytes === undefined ? '' : typeof bytes === 'string' ? bytes : `<${bytes.length} bytes>`;
  return `${req.method} ${req.url.slice(0, 300)} headers=${JSON.stringify(req.headers).slice(0, 200)} content-type=${req.body?.contentType} body=${text.slice(0, 300)}${text.length > 300 ? `… (${text.length} chars)` : ''}`;
}

describe('bad input never gets a 5xx (postgres)', () => {
  let server: TestServer;
  const real: Record<string, string[]> = {};
  const doc = openApiDocument();

  beforeAll(async () => {
    server = await startTestServer('postgres', [echo]);
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${server.apiUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(res.status, path).toBe(200);
      return res.json() as Promise<Record<string, unknown>>;
    };
    const threads = [await post('/threads', { metadata: { fuzz: true } }), await post('/threads', {})];
    const run = await post(`/threads/${threads[0]?.thread_id}/runs/wait`, {
      assistant_id: 'echo',
      input: { text: 'a' },
    });
    expect(run).toEqual({ echoed: 'a' });
    await post(`/threads/${threads[1]?.thread_id}/state`, { values: { seeded: true } });
    const history = (await post(`/threads/${threads[1]?.thread_id}/history`, {})) as unknown as Array<{
      checkpoint: { checkpoint_id: string };
    }>;
    const runs = (await (
      await fetch(`${server.apiUrl}/threads/${threads[0]?.thread_id}/runs`)
    ).json()) as Array<{
      run_id: string;
    }>;
    real.thread_id = threads.map((t) => String(t.thread_id));
    real.run_id = runs.map((r) => r.run_id);
    real.checkpoint_id = history.map((h) => h.checkpoint.checkpoint_id);
    real.assistant_id = [uuidv5('echo')];
    real.agent_id = [uuidv5('echo')];
    real.file = ['init.js', 'swagger-ui.css'];
    real.namespace = ['ns'];
    expect(real.run_id).toHaveLength(1);
    expect(real.checkpoint_id.length).toBeGreaterThan(0);
  });
  afterAll(async () => {
    await server?.stop();
  });

  /** The status codes `/openapi.json` documents for an operation. */
  function documentedStatuses(op: Operation): string[] {
    const path = op.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const operation = doc.paths[path]?.[op.method.toLowerCase()] as { responses: Record<string, unknown> };
    return Object.keys(operation.responses);
  }

  async function send(req: FuzzRequest): Promise<{ status: number; contentType: string; text: string }> {
    const headers: Record<string, string> = { ...req.headers };
    if (req.body?.contentType !== undefined) headers['content-type'] = req.body.contentType;
    const res = await fetch(`${server.apiUrl}${req.url}`, {
      method: req.method,
      headers,
      ...(req.body === undefined ? {} : { body: req.body.bytes }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    // The whole body within the timeout too: a stream that never ends is a hang.
    const text = await res.text();
    return { status: res.status, contentType: res.headers.get('content-type') ?? '', text };
  }

  function check(
    op: Operation,
    req: FuzzRequest,
    res: { status: number; contentType: string; text: string },
  ): void {
    const what = `${describeRequest(req)}\n→ ${res.status} ${res.text.slice(0, 500)}`;
    expect(res.status, what).toBeLessThan(500);
    if (res.status < 400) {
      expect(
        [op.ok, ...(op.alsoOk ?? [])].map((ok) => ok.status),
        what,
      ).toContain(res.status);
      return;
    }
    expect(res.contentType, what).toMatch(/^application\/json/);
    const body = JSON.parse(res.text) as { error: ErrorCode; message: string; details?: unknown };
    expect(
      Object.keys(body).filter((k) => !['error', 'message', 'details'].includes(k)),
      what,
    ).toEqual([]);
    expect(typeof body.message, what).toBe('string');
    expect(res.text, what).not.toMatch(/\n\s+at /);
    const info = ERROR_CODES[body.error];
    expect(info?.kind, what).toBe('api');
    expect(info?.http, what).toBe(res.status);
    if (body.details !== undefined)
      expect(typeof body.details === 'object' && body.details !== null, what).toBe(true);
    const noRoute = body.error === 'not_found' && body.message.startsWith('no route for');
    if (!noRoute) {
      expect(errorCodesOf(op), `${what}\nundocumented code`).toContain(body.error);
      expect(documentedStatuses(op), `${what}\nundocumented status`).toContain(String(res.status));
    }
    if (body.error === 'invalid_request') {
      // The field that was wrong: `invalid request: <field>: <why>`, the same field as `details.issues`.
      const issues = (body.details as { issues?: Array<{ path: string }> } | undefined)?.issues;
      const field = issues?.[0]?.path ?? '';
      expect(field, `${what}\nno field named`).not.toBe('');
      expect(body.message.startsWith(`invalid request: ${field}: `), `${what}\nno field named`).toBe(true);
    }
  }

  describe('cases the fuzz found', () => {
    const cases: Array<[string, FuzzRequest, string]> = [
      [
        'a body nested past the depth limit (stack overflow in fingerprinting)',
        {
          method: 'POST',
          url: '/runs/wait',
          headers: { 'idempotency-key': 'deep' },
          body: {
            bytes: `{"assistant_id":"echo","input":{"text":"a"},"extra":${'['.repeat(20_000)}${']'.repeat(20_000)}}`,
            contentType: 'application/json',
          },
        },
        'invalid request: extra: nests deeper than 512 levels',
      ],
      [
        'a NUL character in a text filter (Postgres 22021)',
        {
          method: 'POST',
          url: '/agents/search',
          headers: {},
          body: { bytes: '{"name":"a\\u0000b"}', contentType: 'application/json' },
        },
        'invalid request: name: contains a NUL character',
      ],
      [
        'an unpaired surrogate in jsonb metadata (Postgres 22P02)',
        {
          method: 'POST',
          url: '/threads',
          headers: {},
          body: { bytes: '{"metadata":{"a":{"b":"x\\ud800"}}}', contentType: 'application/json' },
        },
        'invalid request: metadata.a.b: contains',
      ],
      [
        'bad percent-encoding in the path (Fastify answered in its own shape)',
        { method: 'GET', url: '/threads/%E0%A4%A', headers: {}, body: undefined },
        'invalid request: path: is not a valid URL',
      ],
      [
        'a path segment over the router limit (Fastify answered 414 in its own shape)',
        { method: 'GET', url: `/threads/${'x'.repeat(3_000)}`, headers: {}, body: undefined },
        'invalid request: path: a path segment is longer',
      ],
    ];
    for (const [name, req, message] of cases) {
      it(name, async () => {
        const op = OPERATIONS.find(
          (o) => o.method === req.method && new RegExp(`^${o.path.replace(/:\w+/g, '[^/]+')}$`).test(req.url),
        ) as Operation;
        const res = await send(req);
        check(op, req, res);
        expect(res.status).toBe(400);
        expect((JSON.parse(res.text) as { message: string }).message).toContain(message);
      });
    }
  });

  for (const op of OPERATIONS) {
    it(`${op.method} ${op.path}`, async () => {
      await fc.assert(
        fc.asyncProperty(requestOf(op, real), async (req) => {
          check(op, req, await send(req));
        }),
        {
          numRuns: RUNS,
          ...(SEED === undefined ? {} : { seed: SEED }),
          ...(PATH === undefined ? {} : { path: PATH }),
        },
      );
    });
  }
});
