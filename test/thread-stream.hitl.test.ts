/**
 * Human in the loop over the thread WebSocket: the interrupt arrives as an
 * `input.requested` event; every worker stops while the run waits; the answer
 * (`input.respond`) goes through the approvals API's exactly-once path, so of
 * two concurrent answers exactly one wins and the other gets the first answer
 * back; a worker started afterwards finishes the run without redoing a
 * completed step. Another tenant cannot answer the interrupt. Parallel
 * interrupts arrive as one `interrupted` listing them all and are answered
 * one by one.
 */
import { join } from 'node:path';
import { createTestPostgres, type HangarProcess } from 'hangar/testing';
import { afterAll, expect, it } from 'vitest';
import { createApiKey } from '../packages/hangar/src/auth/repository.ts';
import { api, Cleanup, count, explained, FIXTURES, pgEnv, STARTUP_MS } from './helpers.ts';
import { StreamClient } from './thread-stream-client.ts';

const STREAM_CONFIG = join(FIXTURES, 'stream.config.ts');
const cleanup = new Cleanup();
afterAll(() => cleanup.run());

it('an interrupt answered over the WebSocket after every worker stopped: exactly once, finished by a new worker', async () => {
  const store = cleanup.store(await createTestPostgres());
  const all = ['runs:read', 'runs:write', 'admin'] as const;
  const keyA = (await createApiKey(store.db, { tenantId: 'tenant-a', name: 'a', scopes: [...all] })).key;
  const keyB = (await createApiKey(store.db, { tenantId: 'tenant-b', name: 'b', scopes: [...all] })).key;
  const file = join(cleanup.tmpDir(), 'effects.log');
  const gateway = cleanup.spawn(
    ['gateway', '--port', '0', '--host', '127.0.0.1', '--config', STREAM_CONFIG],
    {
      env: pgEnv(store),
    },
  );
  const startWorker = async (): Promise<HangarProcess> => {
    const proc = cleanup.spawn(['worker', '--config', STREAM_CONFIG], { env: pgEnv(store) });
    await proc.waitFor(/worker started/, STARTUP_MS);
    return proc;
  };
  const base = String((await gateway.waitFor(/Server listening at (http:\/\/[^\s"]+)/, STARTUP_MS))[1]);
  const first = await startWorker();
  const newThread = async (key: string) =>
    (await api<{ thread_id: string }>(base, 'POST', '/threads', {}, { 'x-api-key': key })).body.thread_id;

  const threadId = await newThread(keyA);
  const alice = await StreamClient.open(base, threadId, { headers: { 'x-api-key': keyA } });
  await alice.subscribe({ channels: ['lifecycle', 'input'] });
  const started = await alice.command('run.start', { assistantId: 'approval', input: { file } });
  const runId = String(started.result?.runId);
  const requested = await explained(
    alice.waitForEvent('input.requested', (e) => e.method === 'input.requested'),
    gateway,
    first,
  );
  const interruptId = String(requested.params.data.interruptId);
  expect(requested.params.data.payload).toEqual({ question: 'ship it?' });
  await alice.waitForEvent('interrupted', (e) => e.params.data.event === 'interrupted');

  // Every worker goes away; the run waits in Postgres only.
  expect(await first.kill('SIGTERM'), first.output()).toBe(0);

  // Another tenant, on its own thread, cannot answer it (nor learn it exists).
  const mallory = await StreamClient.open(base, await newThread(keyB), { headers: { 'x-api-key': keyB } });
  expect(
    await mallory.command('input.respond', { namespace: [], interruptId, response: { decision: 'approve' } }),
  ).toMatchObject({ type: 'error', error: 'no_such_interrupt' });
  mallory.close();

  // Two answers at once, from two sockets: exactly one wins; the other gets the first answer back.
  const bob = await StreamClient.open(base, threadId, { protocols: ['hangar.v1', `hangar.key.${keyA}`] });
  const answers = [
    { decision: 'approve', by: 'alice' },
    { decision: 'reject', by: 'bob' },
  ];
  const results = await Promise.all([
    alice.command('input.respond', { namespace: [], interruptId, response: answers[0] }),
    bob.command('input.respond', { namespace: [], interruptId, response: answers[1] }),
  ]);
  const winners = results.filter((r) => r.type === 'success');
  expect(winners, JSON.stringify(results)).toHaveLength(1);
  const winner = answers[results.indexOf(winners[0] as (typeof results)[number])];
  const loser = results.find((r) => r.type === 'error');
  expect(loser).toMatchObject({ error: 'invalid_argument', code: 'conflict', details: { answer: winner } });
  expect(loser?.details?.status).toBe('answered');
  bob.close();

  // A worker started now finishes the run; the step before the interrupt did not run again.
  const second = await startWorker();
  const end = await explained(alice.waitForEnd(runId, 60_000), gateway, second);
  expect(end.params.data).toMatchObject({ event: 'completed', output: { answer: winner } });
  expect(count(file, `${runId}:before:done`)).toBe(1);
  expect(count(file, `${runId}:after:done`)).toBe(1);

  // Two questions at once: an `input.requested` each, one `interrupted` listing both (call order).
  const pair = String(
    (await alice.command('run.start', { assistantId: 'approval-pair', input: { file } })).result?.runId,
  );
  const paused = await explained(
    alice.waitForEvent(
      'the pair interrupted',
      (e) => e.runId === pair && e.params.data.event === 'interrupted',
    ),
    gateway,
    second,
  );
  const ids = paused.params.data.interruptIds as string[];
  expect(ids).toHaveLength(2);
  const asked = alice.events.filter((e) => e.runId === pair && e.method === 'input.requested');
  expect(asked.map((e) => e.params.data.interruptId)).toEqual(ids);
  // Answered one at a time: the first answer leaves the run interrupted.
  const respond = (interruptId: string | undefined, response: unknown) =>
    alice.command('input.respond', { namespace: [], interruptId, response });
  expect(await respond(ids[1], 'finance: yes')).toMatchObject({ type: 'success' });
  const between = await api<{ status: string }>(base, 'GET', `/threads/${threadId}/runs/${pair}`, undefined, {
    'x-api-key': keyA,
  });
  expect(between.body.status).toBe('interrupted');
  expect(await respond(ids[0], 'legal: yes')).toMatchObject({ type: 'success' });
  expect(await respond(ids[0], 'legal: no')).toMatchObject({
    type: 'error',
    code: 'conflict',
    details: { answer: 'legal: yes' },
  });
  const pairEnd = await explained(alice.waitForEnd(pair, 60_000), gateway, second);
  expect(pairEnd.params.data).toMatchObject({
    event: 'completed',
    output: { answers: ['legal: yes', 'finance: yes'] },
  });
  expect(count(file, `${pair}:before:done`)).toBe(1);
  alice.close();
}, 120_000);
