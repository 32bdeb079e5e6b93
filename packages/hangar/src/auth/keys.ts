import { createHash, randomBytes } from 'node:crypto';

/**
 * API keys: what a key looks like, what it may do, and how it is stored.
 *
 * A key is `hgr_` followed by 43 base64url characters (32 random bytes). Only
 * its sha256 is stored: the secret is high-entropy, so a plain hash is enough
 * (no salt or slow hash), and lookup by hash needs no constant-time compare.
 * The first 8 random characters, with the `hgr_` marker, are kept as the
 * key's display prefix (`hgr_AbCd1234`): enough to tell keys apart in a list
 * or a log, useless to guess the rest.
 */
export const KEY_MARKER = 'hgr_';
const PREFIX_CHARS = 8;

/**
 * What a key may do. `admin` includes the other two; `runs:write` does not
 * include `runs:read` (a key that creates runs and reads them needs both).
 */
export const SCOPES = ['runs:read', 'runs:write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export function isScope(value: unknown): value is Scope {
  return typeof value === 'string' && (SCOPES as readonly string[]).includes(value);
}

/** Whether a key with `granted` scopes may do what `needed` names. */
export function hasScope(granted: readonly Scope[], needed: Scope): boolean {
  return granted.includes(needed) || granted.includes('admin');
}

/** A tenant id: a short name, safe in logs and URLs (`acme`, `team-42`, `default`). */
export const TENANT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export interface GeneratedKey {
  /** The full key, shown to its owner once. */
  secret: string;
  /** `hgr_` and the first characters of the secret: shown in lists and logs. */
  prefix: string;
  /** What is stored. */
  hash: string;
}

export function generateKey(): GeneratedKey {
  const secret = KEY_MARKER + randomBytes(32).toString('base64url');
  return { secret, prefix: displayPrefix(secret), hash: hashKey(secret) };
}

export function displayPrefix(secret: string): string {
  return secret.slice(0, KEY_MARKER.length + PREFIX_CHARS);
}

export function hashKey(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/**
 * Whether a presented value can be a key at all (marker, length, alphabet):
 * anything else is rejected without a lookup.
 */
export function looksLikeKey(value: string): boolean {
  return /^hgr_[A-Za-z0-9_-]{43}$/.test(value);
}
