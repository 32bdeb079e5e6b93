import { describe, expect, it } from 'vitest';
import { backoffMs } from './dispatcher.ts';
import { signWebhook, verifyWebhookSignature } from './signature.ts';
import { WebhookUrl } from './url.ts';

const SECRET = 'whsec-0123456789abcdef';
const BODY = '{"run_id":"r1","status":"success"}';
const T = 1_700_000_000;

describe('webhook signatures', () => {
  const header = signWebhook(SECRET, BODY, T);

  it('is t=<unix>,v1=<hex sha256>', () => {
    expect(header).toMatch(/^t=1700000000,v1=[0-9a-f]{64}$/);
  });

  it('verifies the body it was made for, at that time', () => {
    expect(verifyWebhookSignature({ secret: SECRET, header, body: BODY, now: T + 10 })).toBe(true);
  });

  it('rejects a changed body, another secret, a replay outside the tolerance, or a forged time', () => {
    expect(verifyWebhookSignature({ secret: SECRET, header, body: `${BODY} `, now: T })).toBe(false);
    expect(verifyWebhookSignature({ secret: `${SECRET}x`, header, body: BODY, now: T })).toBe(false);
    expect(verifyWebhookSignature({ secret: SECRET, header, body: BODY, now: T + 301 })).toBe(false);
    const forged = header.replace(`t=${T}`, `t=${T + 100}`);
    expect(verifyWebhookSignature({ secret: SECRET, header: forged, body: BODY, now: T + 100 })).toBe(false);
    expect(verifyWebhookSignature({ secret: SECRET, header: undefined, body: BODY, now: T })).toBe(false);
    expect(verifyWebhookSignature({ secret: SECRET, header: 'garbage', body: BODY, now: T })).toBe(false);
  });
});

describe('webhook retry backoff', () => {
  it('is full jitter under an exponential cap', () => {
    for (let i = 0; i < 200; i++) {
      expect(backoffMs(1, 100, 10_000)).toBeLessThanOrEqual(100);
      expect(backoffMs(4, 100, 10_000)).toBeLessThanOrEqual(800);
      expect(backoffMs(30, 100, 10_000)).toBeLessThanOrEqual(10_000);
      expect(backoffMs(3, 100, 10_000)).toBeGreaterThanOrEqual(0);
    }
    const samples = Array.from({ length: 200 }, () => backoffMs(6, 100, 10_000));
    // Jittered, not constant: spread over most of [0, 3200].
    expect(Math.max(...samples) - Math.min(...samples)).toBeGreaterThan(1_600);
  });
});

describe('webhook URLs', () => {
  it.each(['https://example.com/hook', 'http://127.0.0.1:9000/x?token=1'])('accepts %s', (url) => {
    expect(WebhookUrl.safeParse(url).success).toBe(true);
  });
  it.each(['ftp://example.com', '/relative', 'https://u:p@example.com', `https://e.com/${'a'.repeat(2048)}`])(
    'refuses %s',
    (url) => {
      expect(WebhookUrl.safeParse(url).success).toBe(false);
    },
  );
});
