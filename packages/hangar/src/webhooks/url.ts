import { z } from 'zod';
import { HangarError } from '../errors.ts';
import { isPublicAddress, literalAddress } from './egress.ts';

/** Longest accepted webhook URL (most HTTP stacks cap a request line near 8 KiB; we stay well below). */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

/**
 * A run's `webhook`: an absolute `http:` or `https:` URL without credentials
 * (`fetch` refuses to send a URL with `user:pass@`, so such a URL could never
 * be delivered). LangGraph's relative "loopback" URLs (`/path`) are not
 * supported.
 *
 * @example
 * WebhookUrl.parse('https://example.com/hooks/hangar'); // ok
 * WebhookUrl.safeParse('ftp://example.com').success;    // false
 */
export const WebhookUrl = z
  .string()
  .max(MAX_WEBHOOK_URL_LENGTH)
  .refine((value) => parseHttpUrl(value) !== undefined, {
    message: 'must be an absolute http:// or https:// URL without credentials',
  });

function parseHttpUrl(value: string): URL | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (url.username !== '' || url.password !== '') return undefined;
  return url;
}

/**
 * Checks at create time that this gateway can accept a webhook: deliveries are
 * signed, and an unsigned delivery is never sent, so without a secret the
 * request is refused instead of queueing a delivery that could never go out.
 * A host that is a loopback or private IP literal is refused unless private
 * networks are allowed; a DNS name is checked again on every delivery, on the
 * address actually connected to (webhooks/egress.ts).
 */
export function acceptWebhook(url: string, enabled: boolean, allowPrivateNetworks = false): string {
  if (!enabled) throw webhookRefused('webhooks are disabled on this server', ' (set HANGAR_WEBHOOK_SECRET)');
  const literal = literalAddress(new URL(url));
  if (!allowPrivateNetworks && literal !== undefined && !isPublicAddress(literal)) {
    throw webhookRefused(
      `${literal} is a loopback or private address`,
      ' (webhooks go to public addresses; set HANGAR_WEBHOOK_ALLOW_PRIVATE=true to allow private ones)',
    );
  }
  return url;
}

function webhookRefused(message: string, hint: string): HangarError {
  return new HangarError('invalid_request', `invalid request: webhook: ${message}${hint}`, {
    details: { issues: [{ path: 'webhook', message }] },
  });
}
