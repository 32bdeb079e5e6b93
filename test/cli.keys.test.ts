/**
 * `hangar keys create | list | revoke` as a real process against a Postgres
 * schema, the key it prints working against a real `hangar gateway`, and the
 * rules for serving without keys.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Client } from '@langchain/langgraph-sdk';
import { createTestStore } from 'hangar/testing';
import { afterEach, expect, test } from 'vitest';
import { Cleanup, FIXTURE_CONFIG, pgEnv, STARTUP_MS } from './helpers.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function hangar(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; output: string }> {
  const proc = cleanup.spawn(args, { env });
  const timer = setTimeout(() => void proc.kill('SIGKILL'), 30_000);
  const code = await proc.exited.finally(() => clearTimeout(timer));
  return { code, output: proc.output() };
}

/** A user error: one line, non-zero exit, no stack trace. */
function oneLineError(result: { code: number | null; output: string }): string {
  expect(result.code, result.output).not.toBe(0);
  expect(result.code, result.output).not.toBeNull();
  expect(result.output).not.toMatch(/\n\s+at |node:internal|\.ts:\d+:\d+/);
  const lines = result.output.trim().split('\n');
  expect(lines, result.output).toHaveLength(1);
  return lines[0] ?? '';
}

test('keys create / list / revoke against DATABASE_URL; the key works on hangar gateway until revoked', async () => {
  const store = cleanup.store(await createTestStore('postgres'));
  const env = pgEnv(store, { HANGAR_KEY_CACHE_SECONDS: '0' });

  const created = await hangar(
    ['keys', 'create', '--tenant', 'acme', '--name', 'ci bot', '--scopes', 'runs:read,runs:write'],
    env,
  );
  expect(created.code, created.output).toBe(0);
  expect(created.output).toMatch(
    /created API key hgr_\S{8} \([0-9a-f-]{36}\) "ci bot" for tenant acme \(new tenant\)/,
  );
  const secret = created.output.match(/^(hgr_[A-Za-z0-9_-]{43})$/m)?.[1] ?? '';
  expect(secret).not.toBe('');
  expect(created.output).toContain('only time the key is shown');

  // Stored: the tenant, the hash and the prefix, never the secret.
  const rows = await store.db.query<Record<string, unknown>>('SELECT * FROM api_keys');
  expect(rows.rows).toHaveLength(1);
  expect(rows.rows[0]?.key_hash).toBe(createHash('sha256').update(secret).digest('hex'));
  expect(JSON.stringify(rows.rows)).not.toContain(secret);
  expect(rows.rows[0]).toMatchObject({ tenant_id: 'acme', name: 'ci bot', prefix: secret.slice(0, 12) });
  const tenants = await store.db.query('SELECT 1 FROM tenants WHERE tenant_id = $1', ['acme']);
  expect(tenants.rowCount).toBe(1);

  const second = await hangar(
    ['keys', 'create', '--tenant', 'acme', '--name', 'reader', '--json', '--scopes', 'runs:read'],
    env,
  );
  expect(second.code, second.output).toBe(0);
  const reader = JSON.parse(second.output) as {
    key: string;
    key_id: string;
    tenant_created: boolean;
    scopes: string[];
  };
  expect(reader).toMatchObject({ tenant_created: false, scopes: ['runs:read'] });

  const listed = await hangar(['keys', 'list', '--tenant', 'acme'], env);
  expect(listed.code, listed.output).toBe(0);
  expect(listed.output).toContain(secret.slice(0, 12));
  expect(listed.output).toContain(reader.key_id);
  expect(listed.output).not.toContain(secret);
  expect(listed.output).not.toContain(reader.key);
  const other = await hangar(['keys', 'list', '--tenant', 'nobody', '--json'], env);
  expect(JSON.parse(other.output)).toEqual([]);

  // The printed key works against a real gateway, which requires keys by default.
  const gateway = cleanup.spawn(
    ['gateway', '--port', '0', '--host', '127.0.0.1', '--config', FIXTURE_CONFIG],
    {
      env,
    },
  );
  const url = String((await gateway.waitFor(/Server listening at (http:\/\/[^\s"]+)/, STARTUP_MS))[1]);
  const client = new Client({ apiUrl: url, apiKey: secret, callerOptions: { maxRetries: 0 } });
  const thread = await client.threads.create();
  expect(thread.thread_id).toMatch(/^[0-9a-f-]{36}$/);
  await expect(new Client({ apiUrl: url, apiKey: null }).threads.search()).rejects.toMatchObject({
    status: 401,
  });

  const revoked = await hangar(['keys', 'revoke', secret.slice(0, 12)], env);
  expect(revoked.code, revoked.output).toBe(0);
  expect(revoked.output).toContain('revoked API key');
  await expect(client.threads.get(thread.thread_id)).rejects.toMatchObject({ status: 401 });
  const afterRevoke = await hangar(['keys', 'list', '--json'], env);
  const states = (JSON.parse(afterRevoke.output) as Array<{ key_id: string; revoked_at: string | null }>).map(
    (k) => k.revoked_at !== null,
  );
  expect(states.sort()).toEqual([false, true]);

  // Revoke by id works too; an unknown key is one clear line.
  expect((await hangar(['keys', 'revoke', reader.key_id], env)).code).toBe(0);
  expect(oneLineError(await hangar(['keys', 'revoke', 'hgr_nothere'], env))).toContain(
    'no API key with id or prefix "hgr_nothere"',
  );
});

test('keys: bad flags and a missing database are one clear line', async () => {
  const noDb = { DATABASE_URL: undefined };
  expect(oneLineError(await hangar(['keys', 'create', '--name', 'x'], noDb))).toContain('--tenant');
  expect(oneLineError(await hangar(['keys', 'create', '--tenant', 't'], noDb))).toContain('--name');
  expect(
    oneLineError(
      await hangar(
        ['keys', 'create', '--tenant', 't', '--name', 'n', '--scopes', 'runs:read,runs:delete'],
        noDb,
      ),
    ),
  ).toContain('unknown scope "runs:delete"');
  expect(oneLineError(await hangar(['keys', 'create', '--tenant', 't', '--name', 'n'], noDb))).toContain(
    'DATABASE_URL',
  );
  expect(oneLineError(await hangar(['keys', 'frobnicate'], noDb))).toContain(
    'hangar keys create | list | revoke',
  );
  expect(oneLineError(await hangar(['keys', 'revoke'], noDb))).toContain('key id or prefix');
  expect(oneLineError(await hangar(['keys', 'list', '--tenants', 'x'], noDb))).toContain("'--tenants'");
  const store = cleanup.store(await createTestStore('postgres'));
  expect(
    oneLineError(await hangar(['keys', 'create', '--tenant', 'bad tenant!', '--name', 'n'], pgEnv(store))),
  ).toContain('tenant id "bad tenant!" is invalid');
});

test('serving without keys: only on localhost, and hangar dev says so', async () => {
  const dataDir = join(cleanup.tmpDir(), 'data');
  const refused = oneLineError(
    await hangar([
      'dev',
      '--host',
      '0.0.0.0',
      '--port',
      '0',
      '--data-dir',
      dataDir,
      '--config',
      FIXTURE_CONFIG,
    ]),
  );
  expect(refused).toContain('refusing to serve on 0.0.0.0 without authentication');
  expect(refused).toContain('--auth keys');
  const gatewayNone = oneLineError(
    await hangar(['gateway', '--auth', 'none', '--port', '0', '--config', FIXTURE_CONFIG], {
      DATABASE_URL: 'postgres://127.0.0.1:9/none',
    }),
  );
  expect(gatewayNone).toContain('refusing to serve on 0.0.0.0 without authentication');
  expect(
    oneLineError(await hangar(['dev', '--auth', 'maybe', '--data-dir', dataDir, '--config', FIXTURE_CONFIG])),
  ).toContain('--auth must be "keys" or "none"');

  const dev = cleanup.spawn(['dev', '--port', '0', '--data-dir', dataDir, '--config', FIXTURE_CONFIG]);
  const banner = await dev.waitFor(
    /hangar dev: serving .* at (http:\/\/\S+)[\s\S]*auth: none[^\n]*\n/,
    STARTUP_MS,
  );
  expect(banner[0]).toContain('localhost only');
  const res = await fetch(`${String(banner[1])}/threads/search`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  expect(res.status).toBe(200);
  expect(await dev.kill('SIGTERM')).toBe(0);
});
