import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { HangarError } from '../errors.ts';
import { sqlState } from '../store/sql.ts';

const FASTIFY_CODES: Record<string, HangarError['code']> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
};

/** Maps anything thrown in a handler to the one JSON error shape; only bugs become 5xx. */
export function toHangarError(err: unknown, bodyLimit: number, contentType?: string): HangarError {
  if (err instanceof HangarError) return err;
  const fastifyError = err as Partial<FastifyError>;
  const code = fastifyError.code === undefined ? undefined : FASTIFY_CODES[fastifyError.code];
  if (code === 'body_too_large') {
    return new HangarError(code, `request body exceeds the limit of ${bodyLimit} bytes`, {
      details: { limit_bytes: bodyLimit },
    });
  }
  if (code === 'invalid_json') return new HangarError(code, 'request body is not valid JSON');
  if (fastifyError.code === 'FST_ERR_BAD_URL') {
    return invalidField('path', 'is not a valid URL (bad percent-encoding)');
  }
  if (fastifyError.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return invalidField('path', 'a path segment is longer than the router accepts (100 characters)');
  }
  if (code === 'unsupported_media_type') {
    return new HangarError(code, `request body must be application/json, not ${contentType ?? 'unknown'}`, {
      details: { content_type: contentType ?? null },
    });
  }
  if (code !== undefined) return new HangarError(code, fastifyError.message ?? code);
  if (
    typeof fastifyError.statusCode === 'number' &&
    fastifyError.statusCode >= 400 &&
    fastifyError.statusCode < 500
  ) {
    return new HangarError('invalid_request', fastifyError.message ?? 'invalid request');
  }
  return new HangarError('internal', 'internal server error', { cause: err });
}

export function sendError(request: FastifyRequest, reply: FastifyReply, error: HangarError): FastifyReply {
  const err = error.code === 'internal' ? (unstorableText(error.cause, request) ?? error) : error;
  if (err.httpStatus >= 500) request.log.error({ err: err.cause ?? err }, 'request failed');
  return reply.status(err.httpStatus).header('content-type', 'application/json').send(err.toJSON());
}

/** Turns zod issues into `invalid_request` (or `code`) naming the first failing field. */
export function zodError(
  error: z.ZodError,
  prefix: string,
  code: 'invalid_request' | 'input_invalid' = 'invalid_request',
): HangarError {
  const issues = error.issues.map((issue) => ({
    path: [prefix, ...issue.path.map(String)].filter((p) => p !== '').join('.') || prefix || '(root)',
    message: issue.message,
  }));
  const first = issues[0];
  const what = code === 'input_invalid' ? 'run input is invalid' : 'invalid request';
  return new HangarError(code, first === undefined ? what : `${what}: ${first.path}: ${first.message}`, {
    details: { issues },
  });
}

/** Parses a request part with a zod schema, throwing the API's error shape. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, prefix: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw zodError(parsed.error, prefix);
  return parsed.data;
}

/** `invalid_request` naming one field, in the shape `zodError` gives. */
function invalidField(path: string, message: string): HangarError {
  return new HangarError('invalid_request', `invalid request: ${path}: ${message}`, {
    details: { issues: [{ path, message }] },
  });
}

/** Postgres refusing text: `\u0000` in jsonb (22P05), NUL in text (22021), a bad surrogate in jsonb (22P02). */
const UNSTORABLE_TEXT_STATES = new Set(['22P05', '22021', '22P02']);
/** NUL, or a UTF-16 surrogate without its pair: JSON allows them, Postgres text and jsonb do not. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const unstorable = (text: string) => text.includes('\u0000') || LONE_SURROGATE.test(text);

/**
 * A database error caused by a string of the request that Postgres cannot
 * store is the client's: `invalid_request` naming the first such field.
 * Only when the request does hold one; any other database error stays a 500.
 */
function unstorableText(cause: unknown, request: FastifyRequest): HangarError | undefined {
  const state = sqlState(cause);
  if (state === undefined || !UNSTORABLE_TEXT_STATES.has(state)) return undefined;
  const parts: Array<[string, unknown]> = [
    ['path', request.params],
    ['query', request.query],
    ['', request.body],
  ];
  for (const [prefix, value] of parts) {
    const path = findUnstorable(prefix, value);
    if (path !== undefined) {
      return invalidField(path, 'contains a NUL character or an unpaired surrogate, which cannot be stored');
    }
  }
  return undefined;
}

/** The dotted path of the first unstorable string (or key) in a value; iterative, for deep input. */
function findUnstorable(prefix: string, root: unknown): string | undefined {
  const stack: Array<[string, unknown]> = [[prefix, root]];
  while (stack.length > 0) {
    const [path, value] = stack.pop() as [string, unknown];
    if (typeof value === 'string') {
      if (unstorable(value)) return path || '(root)';
    } else if (typeof value === 'object' && value !== null) {
      const entries = Object.entries(value).reverse();
      for (const [key, child] of entries) {
        const childPath = path === '' ? key : `${path}.${key}`;
        if (unstorable(key)) return childPath;
        stack.push([childPath, child]);
      }
    }
  }
  return undefined;
}

/** How deep a request body may nest: far beyond any real input, well within the stack of every JSON walk. */
export const MAX_BODY_DEPTH = 512;

/**
 * A `preValidation` hook: a body nested deeper than `MAX_BODY_DEPTH` is
 * `invalid_request` naming its top-level field. Without it a deep body
 * overflows the stack in the first recursive JSON walk (fingerprinting,
 * serializing for Postgres) and answers a 500 (found by gateway/fuzz.test.ts).
 */
export async function rejectDeepBodies(request: FastifyRequest): Promise<void> {
  const root = request.body;
  if (typeof root !== 'object' || root === null) return;
  const stack: Array<[value: object, depth: number, field: string]> = [[root, 0, '(root)']];
  while (stack.length > 0) {
    const [value, depth, field] = stack.pop() as [object, number, string];
    if (depth >= MAX_BODY_DEPTH) {
      throw invalidField(field, `nests deeper than ${MAX_BODY_DEPTH} levels`);
    }
    for (const [key, child] of Object.entries(value)) {
      if (typeof child !== 'object' || child === null) continue;
      stack.push([child, depth + 1, depth === 0 && !Array.isArray(root) ? key || '""' : field]);
    }
  }
}
