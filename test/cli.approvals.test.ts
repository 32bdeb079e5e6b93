/**
 * `hangar approvals list`, `hangar approve`, `hangar reject` as real processes
 * against a gateway with API keys: the answer resumes the run and is recorded
 * with the key's principal; answering twice fails naming the first answer.
 */
import { Client } from '@langchain/langgraph-sdk';
import { defineAgent } from 'hangar';
import { startTestServer } from 'hangar/testing';
import { afterEach, expect, test } from 'vitest';
import { z } from 'zod';
import { createApiKey } from '../packages/hangar/src/auth/repository.ts';
import { Cleanup, poll } from './helpers.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const ask = defineAgent({
  name: 'ask',
  input: z.object({ what: z.string() }),
  async run(ctx, input) {
    return { answer: await ctx.interrupt({ what: input.what }) };
  },
});

async function hangar(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; output: string }> {
  const proc = cleanup.spawn(args, { env });
  const timer = setTimeout(() => void proc.kill('SIGKILL'), 30_000);
  const code = await proc.exited.finally(() => clearTimeout(timer));
  return { code, output: proc.output() };
}

test('approvals list / approve / reject through a keyed gateway', { timeout: 90_000 }, async () => {
  const server = await startTestServer('postgres', [ask], { gateway: { auth: 'keys' } });
  cleanup.add(() => server.stop());
  const { key, prefix } = await createApiKey(server.store.db, {
    tenantId: 'ops',
    name: 'oncall',
    scopes: ['runs:read', 'runs:write'],
  });
  const client = new Client({ apiUrl: server.apiUrl, apiKey: key, callerOptions: { maxRetries: 0 } });
  const start = async (what: string) => {
    const thread = await client.threads.create();
    const run = await client.runs.create(thread.thread_id, 'ask', { input: { what } });
    await poll(`${what} to be interrupted`, async () =>
      (await client.runs.get(thread.thread_id, run.run_id)).status === 'interrupted' ? true : undefined,
    );
    return { threadId: thread.thread_id, runId: run.run_id };
  };
  const deploy = await start('deploy');
  const drop = await start('drop table');
  const env = { HANGAR_URL: server.apiUrl, HANGAR_API_KEY: key };

  const listed = await hangar(['approvals', 'list', '--json'], env);
  expect(listed.code, listed.output).toBe(0);
  const approvals = JSON.parse(listed.output.trim().split('\n').pop() ?? '[]') as Array<{
    interrupt_id: string;
    run_id: string;
  }>;
  const idOf = (runId: string) => approvals.find((a) => a.run_id === runId)?.interrupt_id ?? '';
  expect(approvals.map((a) => a.run_id).sort()).toEqual([deploy.runId, drop.runId].sort());
  const table = await hangar(['approvals', 'list'], env);
  expect(table.output).toContain(idOf(deploy.runId));
  expect(table.output).toContain('{"what":"deploy"}');

  const approved = await hangar(['approve', idOf(deploy.runId), '--data', '{"window":"now"}'], env);
  expect(approved.code, approved.output).toBe(0);
  expect(approved.output).toContain(`approved ${idOf(deploy.runId)}; run ${deploy.runId} resumes`);
  expect(await client.runs.join(deploy.threadId, deploy.runId)).toEqual({
    answer: { decision: 'approve', data: { window: 'now' }, comment: null },
  });

  const rejected = await hangar(['reject', idOf(drop.runId), '--comment', 'no way'], env);
  expect(rejected.code, rejected.output).toBe(0);
  expect(await client.runs.join(drop.threadId, drop.runId)).toEqual({
    answer: { decision: 'reject', data: null, comment: 'no way' },
  });

  // Exactly once: a second answer fails with the first one's author.
  const again = await hangar(['approve', idOf(drop.runId)], env);
  expect(again.code).toBe(1);
  expect(again.output).toContain('409 conflict');
  expect(again.output).toContain(`already answered by key:${prefix}`);
  const badData = await hangar(['approve', idOf(drop.runId), '--data', '{nope'], env);
  expect(badData.code).toBe(2);
  expect(badData.output).toContain('--data is not valid JSON');
  const none = await hangar(['approvals', 'list'], env);
  expect(none.output).toContain('no approvals');
});
