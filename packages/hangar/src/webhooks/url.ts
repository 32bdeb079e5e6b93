import { z } from 'zod';
import { HangarError } from '../errors.ts';

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
 */
export function acceptWebhook(url: string, enabled: boolean): string {
  if (!enabled) {
    throw new HangarError(
      'invalid_request',
      'invalid request: webhook: webhooks are disabled on this server (set HANGAR_WEBHOOK_SECRET)',
      { details: { issues: [{ path: 'webhook', message: 'webhooks are disabled on this server' }] } },
    );
  }
  return url;
}
