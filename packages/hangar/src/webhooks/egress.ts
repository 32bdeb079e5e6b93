import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * Where webhook POSTs may go. A run's `webhook` is a URL from an API caller,
 * so without a check a tenant could make Hangar's workers call the metadata
 * service (169.254.169.254), the database, or anything else on the private
 * network and learn from the delivery outcome whether it answered (SSRF).
 *
 * The check is made on the address the socket actually connects to: the
 * request resolves the host through `guardedLookup`, which drops every
 * non-public address, so a DNS name that passes a check at create time and
 * later resolves to 10.0.0.5 (DNS rebinding) is still refused. Literal IP
 * hosts, which never go through a lookup, are checked before the request.
 */

const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this" network
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata services
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96], // NAT64: embeds an IPv4 address
  ['100::', 64],
  ['2001:db8::', 32],
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv6');
}

/** True for an address on the public internet (IPv4-mapped IPv6 is judged by its IPv4 address). */
export function isPublicAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] !== undefined) return isPublicAddress(mapped[1]);
  const family = isIP(address);
  if (family === 0) return false;
  return !PRIVATE.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** The URL's host as an IP literal, or undefined when it is a DNS name. */
export function literalAddress(url: URL): string | undefined {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return isIP(host) === 0 ? undefined : host;
}

export class BlockedDestinationError extends Error {
  readonly code = 'EHANGARBLOCKED';
}

/** A DNS lookup that only ever hands the socket public addresses. */
const guardedLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
    if (err) {
      callback(err, '', 0);
      return;
    }
    const allowed = addresses.filter((a) => isPublicAddress(a.address));
    if (allowed.length === 0) {
      const seen = addresses.map((a) => a.address).join(', ');
      callback(
        new BlockedDestinationError(`${hostname} resolves only to private addresses (${seen})`),
        '',
        0,
      );
      return;
    }
    if (options.all === true) {
      (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, allowed);
      return;
    }
    const first = allowed[0] as LookupAddress;
    callback(null, first.address, first.family);
  });
};

export interface EgressRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
  signal: AbortSignal;
  /** Allow loopback and private networks (local development, tests, receivers inside the cluster). */
  allowPrivateNetworks: boolean;
}

export interface EgressResponse {
  status: number;
  retryAfter: string | null;
}

/**
 * POSTs a body and resolves with the status once the response headers are in
 * (the response body is discarded). Redirects are never followed: the body
 * would go to a URL nobody configured.
 */
export function postOnce(request: EgressRequest): Promise<EgressResponse> {
  const url = new URL(request.url);
  if (!request.allowPrivateNetworks) {
    const literal = literalAddress(url);
    if (literal !== undefined && !isPublicAddress(literal)) {
      return Promise.reject(new BlockedDestinationError(`${literal} is a private address`));
    }
  }
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(
      url,
      {
        method: 'POST',
        headers: { ...request.headers, 'content-length': String(Buffer.byteLength(request.body)) },
        signal: request.signal,
        ...(request.allowPrivateNetworks ? {} : { lookup: guardedLookup }),
      },
      (res) => {
        res.resume();
        const retryAfter = res.headers['retry-after'];
        resolve({
          status: res.statusCode ?? 0,
          retryAfter: typeof retryAfter === 'string' ? retryAfter : null,
        });
      },
    );
    req.on('error', reject);
    req.end(request.body);
  });
}
