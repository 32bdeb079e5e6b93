import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { HangarError } from '../errors.ts';

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

export function sendError(request: FastifyRequest, reply: FastifyReply, err: HangarError): FastifyReply {
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
