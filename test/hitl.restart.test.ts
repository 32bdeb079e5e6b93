/**
 * Human in the loop across processes (issue 6): an interrupted run holds no
 * worker, so every worker may stop while it waits; the answer (LangGraph's
 * `command: { resume }` through the official SDK, or the approvals API)
 * re-queues it, and a worker started afterwards finishes it without running a
 * completed step again. Parallel interrupts (one Promise.all) wait the same
 * way: answering one leaves the run interrupted, the last re-queues it.
 * Expiry is durable: interrupts that time out while no
 * process runs expire after a restart, into their default or an error.
 */
import { join } from 'node:path';
import { Client } from '@langchain/langgraph-sdk';
import { createTestPostgres, type HangarProcess } from 'hangar/testing';
import { afterEach, expect, test } from 'vitest';
import {
  api,
  Cleanup,
  count,
  createRun,
  explained,
  FIXTURES,
  getRun,
  pgEnv,
  poll,
  STARTUP_MS,
  seededDataDir,
  startDev,
  waitForTerminal,
} from './helpers.ts';

const HITL_CONFIG = join(FIXTURES, 'hitl.config.ts');
const cleanup = new Cleanup();
/** Several processes start on a possibly loaded two-core machine. */
const SLOW = { timeout: 120_000 };
afterEach(() => cleanup.run());

const isInterrupted = (base: string, run: { thread_id: string; run_id: string }) =>
  poll(`run ${run.run_id} to be interrupted`, async () =>
    (await getRun(base, run)).status === 'interrupted' ? true : undefined,
  );

test(
  'interrupted runs survive every worker stopping, and finish on a new worker once answered (SDK and approvals API, parallel interrupts)',
  SLOW,
  async () => {
    const store = cleanup.store(await createTestPostgres());
    const file = join(cleanup.tmpDir(), 'effects.log');
    const gatewayProc = cleanup.spawn(
      ['gateway', '--port', '0', '--host', '127.0.0.1', '--auth', 'none', '--config', HITL_CONFIG],
      { env: pgEnv(store) },
    );
    const gatewayUrl = String(
      (await gatewayProc.waitFor(/Server listening at (http:\/\/[^\s"]+)/, STARTUP_MS))[1],
    );
    const startWorker = async (): Promise<HangarProcess> => {
      const proc = cleanup.spawn(['worker', '--config', HITL_CONFIG], { env: pgEnv(store) });
      await proc.waitFor(/worker started/, STARTUP_MS);
      return proc;
    };
    const first = await startWorker();
    const client = new Client({ apiUrl: gatewayUrl, callerOptions: { maxRetries: 0 } });

    const viaSdk = await createRun(
      gatewayUrl,
      'approval',
      { file },
      (await client.threads.create()).thread_id,
    );
    const viaApi = await createRun(
      gatewayUrl,
      'approval',
      { file },
      (await client.threads.create()).thread_id,
    );
    const viaPair = await createRun(gatewayUrl, 'approval-pair', { file });
    await explained(
      Promise.all([
        isInterrupted(gatewayUrl, viaSdk),
        isInterrupted(gatewayUrl, viaApi),
        isInterrupted(gatewayUrl, viaPair),
      ]),
      first,
    );

    // Every worker goes away; the runs wait in Postgres only.
    expect(await first.kill('SIGTERM'), first.output()).toBe(0);

    const resumed = await client.runs.create(viaSdk.thread_id, 'approval', {
      command: { resume: { shipped: true } },
    });
    expect(resumed.run_id).toBe(viaSdk.run_id);
    expect(resumed.status).toBe('pending');
    const [pending] = (
      await api<Array<{ interrupt_id: string }>>(gatewayUrl, 'GET', `/approvals?run_id=${viaApi.run_id}`)
    ).body;
    const answered = await api(gatewayUrl, 'POST', `/approvals/${pending?.interrupt_id}`, {
      decision: 'approve',
      data: { by: 'ops' },
    });
    expect(answered.status, answered.text).toBe(200);
    expect((await getRun(gatewayUrl, viaApi)).status).toBe('pending');

    // Two questions at once: both pending (in call order); the run is re-queued by the last answer only.
    const pair = (
      await api<Array<{ interrupt_id: string; payload: unknown }>>(
        gatewayUrl,
        'GET',
        `/approvals?run_id=${viaPair.run_id}`,
      )
    ).body;
    expect(pair.map((p) => p.payload)).toEqual([{ question: 'legal ok?' }, { question: 'finance ok?' }]);
    const [legal, finance] = pair.map((p) => p.interrupt_id);
    const one = await api(gatewayUrl, 'POST', `/approvals/${finance}`, { decision: 'approve' });
    expect(one.status, one.text).toBe(200);
    expect((await getRun(gatewayUrl, viaPair)).status).toBe('interrupted');
    const two = await api(gatewayUrl, 'POST', `/approvals/${legal}`, { decision: 'reject', comment: 'no' });
    expect(two.status, two.text).toBe(200);
    expect((await getRun(gatewayUrl, viaPair)).status).toBe('pending');

    const second = await startWorker();
    const result = await explained(client.runs.join(viaSdk.thread_id, viaSdk.run_id), second);
    expect(result).toEqual({ answer: { shipped: true } });
    const other = await explained(waitForTerminal(gatewayUrl, viaApi, 30_000), second);
    expect(other.status, JSON.stringify(other.error)).toBe('success');
    expect(other.output).toEqual({ answer: { decision: 'approve', data: { by: 'ops' }, comment: null } });
    const paired = await explained(waitForTerminal(gatewayUrl, viaPair, 30_000), second);
    expect(paired.status, JSON.stringify(paired.error)).toBe('success');
    expect(paired.output).toEqual({
      answers: [
        { decision: 'reject', data: null, comment: 'no' },
        { decision: 'approve', data: null, comment: null },
      ],
    });
    for (const run of [viaSdk, viaApi, viaPair]) {
      expect(count(file, `${run.run_id}:before:done`)).toBe(1);
      expect(count(file, `${run.run_id}:after:done`)).toBe(1);
    }
  },
);

test(
  'interrupts that time out while hangar dev is down expire after the restart: default or error',
  SLOW,
  async () => {
    const dataDir = await seededDataDir(cleanup);
    const file = join(cleanup.tmpDir(), 'effects.log');
    const first = await startDev(cleanup, { dataDir, config: HITL_CONFIG });
    const withDefault = await createRun(first.url, 'approval', {
      file,
      timeout: '5s',
      fallback: { decision: 'timed-out' },
    });
    const withError = await createRun(first.url, 'approval', { file, timeout: '5s' });
    await explained(
      Promise.all([isInterrupted(first.url, withDefault), isInterrupted(first.url, withError)]),
      first.proc,
    );
    const pending = await api<unknown[]>(first.url, 'GET', '/approvals?status=pending');
    expect(pending.body).toHaveLength(2);
    await first.proc.kill('SIGKILL');
    // Both expire while no process runs.
    await new Promise((r) => setTimeout(r, 5_500));

    const second = await startDev(cleanup, { dataDir, config: HITL_CONFIG });
    const done = await explained(waitForTerminal(second.url, withDefault, 30_000), second.proc);
    expect(done.status, JSON.stringify(done.error)).toBe('success');
    expect(done.output).toEqual({ answer: { decision: 'timed-out' } });
    const failed = await explained(waitForTerminal(second.url, withError, 30_000), second.proc);
    expect(failed.status).toBe('error');
    expect(failed.error?.code).toBe('interrupt_expired');

    const expired = await api<Array<{ run_id: string; answered_by: string }>>(
      second.url,
      'GET',
      '/approvals?status=expired',
    );
    expect(expired.body.map((e) => e.run_id).sort()).toEqual([withDefault.run_id, withError.run_id].sort());
    expect(expired.body.every((e) => e.answered_by === 'timeout')).toBe(true);
    expect(count(file, `${withDefault.run_id}:before:done`)).toBe(1);
    expect(count(file, `${withDefault.run_id}:after:done`)).toBe(1);
    expect(count(file, `${withError.run_id}:before:done`)).toBe(1);
    expect(count(file, `${withError.run_id}:after:done`)).toBe(0);
  },
);
