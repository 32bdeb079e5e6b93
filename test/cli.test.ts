/**
 * The `hangar` CLI as a user meets it: configuration mistakes are one clear
 * line and a non-zero exit (never a stack trace), and the greeter example
 * works as written.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { dropSchema, TEST_DATABASE_URL } from 'hangar/testing';
import pg from 'pg';
import { afterEach, expect, test } from 'vitest';
import { Cleanup, FIXTURES, REPO_ROOT, STARTUP_MS } from './helpers.ts';

const cleanup = new Cleanup();
/** Several `hangar dev` starts (PGlite in WebAssembly) can take a while on a loaded two-core machine. */
const SLOW = { timeout: 120_000 };
afterEach(() => cleanup.run());

/** Runs `hangar …` to completion; returns its exit code and output. */
async function hangar(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number | null; output: string }> {
  const proc = cleanup.spawn(args, options);
  const timeout = new Promise<never>((_, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`hangar ${args.join(' ')} did not exit; output:\n${proc.output()}`)),
      30_000,
    );
    void proc.exited.finally(() => clearTimeout(timer));
  });
  const code = await Promise.race([proc.exited, timeout]);
  return { code, output: proc.output() };
}

/** A user error: one line on the terminal, non-zero exit, no stack trace. */
function expectOneLineError(result: { code: number | null; output: string }): string {
  expect(result.code, result.output).not.toBe(0);
  expect(result.code, result.output).not.toBeNull();
  expect(result.output).not.toMatch(/\n\s+at |node:internal|\.ts:\d+:\d+/);
  const outputLines = result.output.trim().split('\n');
  expect(outputLines, result.output).toHaveLength(1);
  return outputLines[0] ?? '';
}

test('hangar dev --config with a missing file names the file', async () => {
  const dataDir = join(cleanup.tmpDir(), 'data');
  const line = expectOneLineError(
    await hangar(['dev', '--port', '0', '--data-dir', dataDir, '--config', 'missing.ts']),
  );
  expect(line).toContain(join(REPO_ROOT, 'missing.ts'));
  expect(line).toMatch(/not found/);
});

test('a config whose agent module throws at import names the module and the error', async () => {
  const dataDir = join(cleanup.tmpDir(), 'data');
  const line = expectOneLineError(
    await hangar([
      'dev',
      '--port',
      '0',
      '--data-dir',
      dataDir,
      '--config',
      join(FIXTURES, 'broken', 'hangar.config.ts'),
    ]),
  );
  expect(line).toContain(join(FIXTURES, 'broken', 'throws-at-import.ts'));
  expect(line).toContain('SHOPIFY_TOKEN is not set');
});

test('hangar worker without DATABASE_URL says what it needs', async () => {
  const line = expectOneLineError(
    await hangar(['worker', '--config', join(FIXTURES, 'hangar.config.ts')], {
      env: { DATABASE_URL: undefined },
    }),
  );
  expect(line).toContain('DATABASE_URL');
  expect(line).toContain('hangar dev');
});

test('hangar migrate prepares an empty schema once, then reports it up to date', async () => {
  const schema = `hangar_test_migrate_${randomBytes(5).toString('hex')}`;
  const env = { DATABASE_URL: TEST_DATABASE_URL, HANGAR_SCHEMA: schema };
  try {
    const first = await hangar(['migrate'], { env });
    expect(first.code, first.output).toBe(0);
    expect(first.output).toMatch(/applied migrations 1\b/);
    const second = await hangar(['migrate'], { env });
    expect(second.code, second.output).toBe(0);
    expect(second.output).toContain('up to date');
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    try {
      const tables = await client.query(
        `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('runs', 'steps', 'events', 'threads')`,
        [schema],
      );
      expect(tables.rows[0]?.n).toBe(4);
    } finally {
      await client.end();
    }
  } finally {
    await dropSchema(schema);
  }
});

test('hangar run with --input that is not JSON says so', async () => {
  const line = expectOneLineError(
    await hangar(['run', 'greeter', '--input', '{name: Ada}', '--url', 'http://127.0.0.1:9']),
  );
  expect(line).toContain('--input is not valid JSON');
});

test('hangar run against no server says how to start one', async () => {
  const line = expectOneLineError(
    await hangar(['run', 'greeter', '--input', '{"name":"Ada"}', '--url', 'http://127.0.0.1:9']),
  );
  expect(line).toContain('http://127.0.0.1:9');
  expect(line).toContain('hangar dev');
});

test('the greeter example: hangar dev with its own config, then hangar run --follow', SLOW, async () => {
  const example = join(REPO_ROOT, 'examples', 'greeter');
  // The example's default config (./hangar.config.ts in its directory); a free port and a
  // throwaway data dir so the test touches nothing of a developer's own `hangar dev`.
  const dataDir = join(cleanup.tmpDir(), 'data');
  const dev = cleanup.spawn(['dev', '--port', '0', '--data-dir', dataDir], { cwd: example });
  const banner = await dev.waitFor(/hangar dev: serving (.*) at (http:\/\/\S+)/, STARTUP_MS);
  expect(banner[1]).toBe('greeter');
  const url = String(banner[2]);

  const result = await hangar(['run', 'greeter', '--input', '{"name":"Ada"}', '--follow', '--url', url]);
  expect(result.code, result.output).toBe(0);
  const out = result.output;
  expect(out).toMatch(/^run [0-9a-f-]{36} \(thread [0-9a-f-]{36}\)$/m);
  expect(out).toMatch(/^event: metadata|^metadata /m);
  expect(out).toMatch(/^\[\d+\] lifecycle .*"run\.started"/m);
  expect(out).toMatch(/^\[\d+\] updates \{"greet":"Hello, Ada"\}$/m);
  expect(out).toMatch(/^\[\d+\] custom \{"greeting":"Hello, Ada"\}$/m);
  expect(out).toMatch(/^\[\d+\] lifecycle .*"status":"success".*$/m);
  expect(out).toMatch(/^status: success$/m);
  expect(out).toContain('output: {"greeting":"Hello, Ada"}');

  // A second run without --follow prints the created run as JSON.
  const plain = await hangar(['run', 'greeter', '--input', '{"name":"Grace"}', '--url', url]);
  expect(plain.code, plain.output).toBe(0);
  expect(JSON.parse(plain.output)).toMatchObject({ agent: 'greeter', status: 'pending' });

  // Input the agent rejects: a clear message naming the field, exit 1.
  const bad = expectOneLineError(await hangar(['run', 'greeter', '--input', '{}', '--url', url]));
  expect(bad).toMatch(/422 input_invalid: .*input\.name/);

  expect(await dev.kill('SIGTERM'), dev.output()).toBe(0);
  expect(existsSync(join(dataDir, 'hangar.pid'))).toBe(false);

  // Restarting on a port something else holds: one line, non-zero exit, no worker left running
  // (the process exits by itself) and the data dir unlocked again.
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  cleanup.add(() => new Promise((resolve) => blocker.close(resolve)));
  const { port } = blocker.address() as AddressInfo;
  const busy = expectOneLineError(
    await hangar(['dev', '--port', String(port), '--data-dir', dataDir], { cwd: example }),
  );
  expect(busy).toContain(`port ${port} on 127.0.0.1 is already in use`);
  expect(existsSync(join(dataDir, 'hangar.pid'))).toBe(false);
});
