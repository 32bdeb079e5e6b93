import { createHmac, timingSafeEqual } from 'node:crypto';

/** The header that carries a delivery's signature. */
export const SIGNATURE_HEADER = 'x-hangar-signature';

/**
 * Signs a webhook body the way Stripe does: an HMAC-SHA256 of
 * `${timestamp}.${body}` with the shared secret, sent as
 * `t=<unix seconds>,v1=<hex>`. The timestamp is signed too, so a captured
 * delivery cannot be replayed later with a fresh time.
 *
 * @example
 * signWebhook('s3cret-s3cret-s3cret', '{"run_id":"…"}', 1_700_000_000);
 * // 't=1700000000,v1=5f0c…'
 */
export function signWebhook(secret: string, body: string, timestamp: number): string {
  return `t=${timestamp},v1=${hmac(secret, timestamp, body)}`;
}

/**
 * Verifies a delivery on the receiving side: the header's `v1` must be the
 * HMAC of `${t}.${rawBody}`, and `t` within `toleranceSeconds` of now. Pass
 * the raw body bytes as received (re-serialized JSON will not match).
 *
 * @example
 * // In an HTTP handler, with the raw body as a string:
 * if (!verifyWebhookSignature({ secret, header: req.headers['x-hangar-signature'], body })) {
 *   res.writeHead(400).end();
 * }
 */
export function verifyWebhookSignature(options: {
  secret: string;
  header: string | string[] | undefined;
  body: string;
  toleranceSeconds?: number;
  /** Unix seconds; defaults to now. */
  now?: number;
}): boolean {
  const header = Array.isArray(options.header) ? options.header[0] : options.header;
  if (header === undefined) return false;
  const parts = new Map<string, string[]>();
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const key = part.slice(0, eq).trim();
    parts.set(key, [...(parts.get(key) ?? []), part.slice(eq + 1).trim()]);
  }
  const t = Number(parts.get('t')?.[0]);
  if (!Number.isInteger(t)) return false;
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > (options.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(hmac(options.secret, t, options.body), 'hex');
  // The format allows several v1 values (as Stripe's does); any matching one is enough.
  return (parts.get('v1') ?? []).some((candidate) => {
    const given = Buffer.from(candidate, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

function hmac(secret: string, timestamp: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}
