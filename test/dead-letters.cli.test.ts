/**
 * `hangar dead-letters list | inspect | redrive | discard` as real processes
 * against a gateway with API keys: what each prints, and a clear message
 * (exit 2 for bad usage, 1 for a refusal naming the status) for bad input.
 */
import { defineAgent } from 'hangar';
import { startTestServer } from 'hangar/testing';
import { afterEach, expect, test, vi } from 'vitest';
import { z } from 'zod';
import { createApiKey } from '../packages/hangar/src/auth/repository.ts';
import { main } from '../packages/hangar/src/cli/main.ts';
import { claimRun, createRun, requeueExpiredLeases } from '../packages/hangar/src/runs/repository.ts';
import { createThread } from '../packages/hangar/src/threads/repository.ts';
import { Cleanup } from './helpers.ts';

const cleanup = new Cleanup();
/** Each `hangar` process costs seconds to start on a busy two-core machine. */
const SLOW = { timeout: 90_000 };
afterEach(() => cleanup.run());

const ingest = defineAgent({
  name: 'ingest',
  input: z.object({ url: z.string().url() }),
  async run(ctx, input) {
    return ctx.step('fetch', () => input.url);
  },
});

/** The CLI in this process, for usage errors (caught before any request). */
async function inProcess(args: string[]): Promise<{ code: number; output: string }> {
  let output = '';
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    output += String(chunk);
    return true;
  });
  try {
    return { code: await main(['dead-letters', ...args]), output };
  } finally {
    spy.mockRestore();
  }
}

async function hangar(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; output: string }> {
  const proc = cleanup.spawn(['dead-letters', ...args], { env });
  const timer = setTimeout(() => void proc.kill('SIGKILL'), 30_000);
  const code = await proc.exited.finally(() => clearTimeout(timer));
  return { code, output: proc.output() };
}

test('dead-letters list / inspect / redrive / discard through a keyed gateway', SLOW, async () => {
  // No worker: the runs die as the sweeper kills them (claimed, worker gone, cap of 1 reached).
  const server = await startTestServer('postgres', [ingest], { worker: false, gateway: { auth: 'keys' } });
  cleanup.add(() => server.stop());
  const db = server.store.db;
  const { key } = await createApiKey(db, {
    tenantId: 'ops',
    name: 'oncall',
    scopes: ['runs:read', 'runs:write'],
  });
  const kill = async (url: string) => {
    const thread = await createThread(db, { tenantId: 'ops' });
    const run = await createRun(db, {
      tenantId: 'ops',
      agent: 'ingest',
      assistantId: '00000000-0000-0000-0000-000000000001',
      threadId: thread.thread_id,
      input: { url },
    });
    await claimRun(db, { owner: 'doomed', leaseMs: 60_000, agents: ['ingest'] });
    await db.query(`UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE run_id = $1`, [
      run.run_id,
    ]);
    await requeueExpiredLeases(db, 100, { maxAttempts: 1 });
    return run.run_id;
  };
  const first = await kill('https://example.com/a');
  const second = await kill('https://example.com/b');
  const env = { HANGAR_URL: server.apiUrl, HANGAR_API_KEY: key };

  // Reads in parallel: each process start costs seconds on a busy machine.
  const [listed, table, inspected] = await Promise.all([
    hangar(['list', '--json'], env),
    hangar(['list', '--agent', 'ingest'], env),
    hangar(['inspect', first, '--json'], env),
  ]);
  expect(listed.code, listed.output).toBe(0);
  const letters = JSON.parse(listed.output.trim().split('\n').pop() ?? '[]') as Array<{ run_id: string }>;
  expect(letters.map((l) => l.run_id).sort()).toEqual([first, second].sort());
  expect(table.output).toContain(`${first}  ingest`);
  expect(table.output).toContain('attempts_exhausted');

  expect(inspected.code, inspected.output).toBe(0);
  expect(JSON.parse(inspected.output.trim().split('\n').pop() ?? '{}')).toMatchObject({
    run: { run_id: first, status: 'dead' },
    error: { code: 'attempts_exhausted' },
    attempts: 1,
  });

  // Bad usage never reaches the server: exit 2 with what was wrong (in this process: no server call).
  expect(await inProcess(['redrive', first, '--input', '{nope'])).toMatchObject({
    code: 2,
    output: expect.stringContaining('--input is not valid JSON'),
  });
  expect(await inProcess(['redrive', first, '--state', '[1]'])).toMatchObject({
    code: 2,
    output: expect.stringContaining('--state must be a JSON object'),
  });
  expect(await inProcess(['redrive'])).toMatchObject({
    code: 2,
    output: expect.stringContaining('usage: hangar dead-letters redrive <run_id>'),
  });
  expect(await inProcess(['discard', first, '--state', '{}'])).toMatchObject({
    code: 2,
    output: expect.stringContaining('--input and --state go with "hangar dead-letters redrive"'),
  });
  expect(await inProcess(['revive', first])).toMatchObject({
    code: 2,
    output: expect.stringContaining('unknown dead-letters command "revive"'),
  });
  // The server refuses an input that fails the agent's schema, naming the path.
  const invalid = await hangar(['redrive', first, '--input', '{"url":"not a url"}'], env);
  expect(invalid.code).toBe(1);
  expect(invalid.output).toContain('422 input_invalid');
  expect(invalid.output).toContain('input.url');

  const redriven = await hangar(
    ['redrive', first, '--input', '{"url":"https://example.com/fixed"}', '--state', '{"fixed":true}'],
    env,
  );
  expect(redriven.code, redriven.output).toBe(0);
  expect(redriven.output).toContain(`redrove run ${first}; it resumes from its last checkpoint`);
  const again = await hangar(['redrive', first], env);
  expect(again.code).toBe(1);
  expect(again.output).toContain('409 conflict');
  expect(again.output).toContain('is pending, not dead');

  const discarded = await hangar(['discard', second], env);
  expect(discarded.code, discarded.output).toBe(0);
  expect(discarded.output).toContain(`discarded run ${second}`);
  const [audit, none] = await Promise.all([hangar(['inspect', second], env), hangar(['list'], env)]);
  expect(audit.output).toContain('status dead');
  expect(none.output).toContain('no dead letters');
});
