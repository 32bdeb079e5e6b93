import { describe, expect, it } from 'vitest';
import { BlockedDestinationError, isPublicAddress, postOnce } from './egress.ts';
import { startReceiver } from './test-receiver.ts';

describe('isPublicAddress', () => {
  it.each([
    '127.0.0.1',
    '10.1.2.3',
    '172.20.0.1',
    '192.168.0.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fd00::1',
    'fe80::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '64:ff9b::a00:1',
    'not an ip',
  ])('%s is not public', (address) => {
    expect(isPublicAddress(address)).toBe(false);
  });

  it.each(['1.1.1.1', '93.184.216.34', '172.32.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8'])(
    '%s is public',
    (address) => {
      expect(isPublicAddress(address)).toBe(true);
    },
  );
});

describe('postOnce', () => {
  it('posts to a private address only when private networks are allowed', async () => {
    const receiver = await startReceiver();
    try {
      const request = {
        url: receiver.url,
        headers: { 'content-type': 'application/json' },
        body: '{"ok":true}',
        signal: AbortSignal.timeout(5_000),
      };
      await expect(postOnce({ ...request, allowPrivateNetworks: false })).rejects.toBeInstanceOf(
        BlockedDestinationError,
      );
      const byName = postOnce({
        ...request,
        url: receiver.url.replace('127.0.0.1', 'localhost'),
        allowPrivateNetworks: false,
      });
      await expect(byName).rejects.toThrow(/localhost resolves only to private addresses/);
      expect(receiver.hooks).toHaveLength(0);

      const res = await postOnce({ ...request, allowPrivateNetworks: true });
      expect(res.status).toBe(200);
      expect(receiver.hooks).toHaveLength(1);
      expect(receiver.hooks[0]?.body).toBe('{"ok":true}');
    } finally {
      await receiver.close();
    }
  });

  it('does not follow a redirect', async () => {
    const receiver = await startReceiver(() => 302);
    try {
      const res = await postOnce({
        url: receiver.url,
        headers: {},
        body: '{}',
        signal: AbortSignal.timeout(5_000),
        allowPrivateNetworks: true,
      });
      expect(res.status).toBe(302);
      expect(receiver.hooks).toHaveLength(1);
    } finally {
      await receiver.close();
    }
  });
});
