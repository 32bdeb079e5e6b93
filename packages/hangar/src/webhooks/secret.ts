import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Where `hangar dev` keeps the webhook secret it generated for a data directory. */
export const DEV_SECRET_FILE = 'webhook-secret';

/**
 * The webhook secret of a `hangar dev` data directory when HANGAR_WEBHOOK_SECRET
 * is not set: generated once (32 random bytes, hex, file mode 0600) and reused
 * on every start, so a receiver configured with it keeps verifying across
 * restarts. Production processes (`hangar gateway | worker`) never generate
 * one: they share the secret through the environment.
 */
export function devWebhookSecret(dataDir: string): { secret: string; path: string } {
  const path = join(dataDir, DEV_SECRET_FILE);
  try {
    writeFileSync(path, `${randomBytes(32).toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const secret = readFileSync(path, 'utf8').trim();
  if (secret.length < 16)
    throw new Error(`${path} holds no usable webhook secret; delete it to generate one`);
  return { secret, path };
}
