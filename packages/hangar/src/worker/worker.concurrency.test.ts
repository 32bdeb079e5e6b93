import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { MemoryBus } from '../bus/memory.ts';
import { createRun, getRun } from '../runs/repository.ts';
import { defineAgent } from '../sdk/agent.ts';
import type { SqlClient } from '../store/sql.ts';
import { startTestServer, type TestServer } from '../testing/index.ts';
import { createEngineStore, eventually, gate, TENANT, TEST_WORKER_SETTINGS } from './engine.harness.ts';
import { Worker, type WorkerOptions } from './worker.ts';

/** Each run of these agents waits for its gate (by input.id), so a test decides when it ends. */
const gates = new Map<string, ReturnType<typeof gate>>();
const started: string[] = [];
const gateFor = (id: string) => {
  let g = gates.get(id);
  if (g === undefined) {
    g = gate();
    gates.set(id, g);
  }
  return g;
};

const Input = z.object({ id: z.string(), repo: z.string().default('none') });

async function hold(
  ctx: { step: (name: string, fn: () => Promise<unknown>) => Promise<unknown> },
  id: string,
) {
  await ctx.step('hold', async () => {
    started.push(id);
    await gateFor(id).promise;
    return null;
  });
  return { id };
}

const review = defineAgent({
  name: 'review',
  input: Input,
  concurrency: { key: (input) => `repo:${input.repo}`, limit: 1 },
  run: (ctx, input) => hold(ctx, input.id),
});

const solo = defineAgent({
  name: 'solo',
  input: Input,
  concurrency: { limit: 1 },
  run: (ctx, input) => hold(ctx, input.id),
});

/** Its key function returns no usable key. */
const badKey = defineAgent({
  name: 'bad-key',
  input: Input,
  concurrency: { key: () => '', limit: 1 },
  run: (ctx, input) => hold(ctx, input.id),
});

const free = defineAgent({ name: 'free', input: Input, run: (ctx, input) => hold(ctx, input.id) });

afterEach(() => {
  for (const g of gates.values()) g.open();
  gates.clear();
  started.length = 0;
});

describe('concurrency through the gateway and a worker', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer('pglite', [review, solo, badKey], { worker: { concurrency: 10 } });
  });

  afterAll(async () => {
    await server?.stop();
  });

  const post = (body: unknown) =>
    fetch(`${server.apiUrl}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  const create = async (body: unknown): Promise<{ run_id: string }> => {
    const res = await post(body);
    expect(res.status).toBe(200);
    return (await res.json()) as { run_id: string };
  };

  const status = async (runId: string) => (await getRun(server.store.db, TENANT, runId))?.status;

  it("runs one run per key (the agent's key function) while other keys run", async () => {
    const a1 = await create({ assistant_id: 'review', input: { id: 'a1', repo: 'a' } });
    const a2 = await create({ assistant_id: 'review', input: { id: 'a2', repo: 'a' } });
    const b1 = await create({ assistant_id: 'review', input: { id: 'b1', repo: 'b' } });
    await eventually('a1 and b1 to run', () => started.includes('a1') && started.includes('b1'));
    expect(await status(a2.run_id)).toBe('pending');
    gateFor('a1').open();
    await eventually('a2 to start once a1 ended', () => started.includes('a2'));
    expect(await status(a1.run_id)).toBe('success');
    gateFor('a2').open();
    gateFor('b1').open();
    await eventually('b1 to end', async () => (await status(b1.run_id)) === 'success');
  });

  it("takes the body's concurrency_key over the agent's key", async () => {
    await create({ assistant_id: 'review', input: { id: 'x1', repo: 'x' }, concurrency_key: 'shared' });
    const y1 = await create({
      assistant_id: 'review',
      input: { id: 'y1', repo: 'y' },
      concurrency_key: 'shared',
    });
    await eventually('x1 to run', () => started.includes('x1'));
    expect(await status(y1.run_id)).toBe('pending');
    gateFor('x1').open();
    await eventually('y1 to start after x1', () => started.includes('y1'));
  });

  it('keeps an agent with concurrency.limit to that many runs at once', async () => {
    const first = await create({ assistant_id: 'solo', input: { id: 's1' } });
    const second = await create({ assistant_id: 'solo', input: { id: 's2' } });
    await eventually('one solo run to start', () => started.some((id) => id.startsWith('s')));
    const [running] = started.filter((id) => id.startsWith('s'));
    const waiting = running === 's1' ? second : first;
    expect(await status(waiting.run_id)).toBe('pending');
    gateFor(running ?? '').open();
    await eventually(
      'the other solo run to start',
      () => started.filter((id) => id.startsWith('s')).length === 2,
    );
  });

  it('refuses a bad concurrency_key or priority with a 4xx naming the field', async () => {
    const cases: Array<[unknown, number, string]> = [
      [
        { assistant_id: 'review', input: { id: 'z' }, concurrency_key: 'k'.repeat(201) },
        400,
        'concurrency_key',
      ],
      [{ assistant_id: 'review', input: { id: 'z' }, concurrency_key: '' }, 400, 'concurrency_key'],
      [{ assistant_id: 'review', input: { id: 'z' }, concurrency_key: 7 }, 400, 'concurrency_key'],
      [{ assistant_id: 'review', input: { id: 'z' }, priority: 5_000 }, 400, 'priority'],
      // The agent's key function returns an empty string: the run cannot be counted.
      [{ assistant_id: 'bad-key', input: { id: 'z' } }, 422, 'concurrency_key'],
    ];
    for (const [body, code, field] of cases) {
      const res = await post(body);
      const text = await res.text();
      expect(res.status, text).toBe(code);
      expect(text).toContain(field);
    }
  });
});

/** A worker of the `free` agent alone. */
function freeWorker(db: SqlClient, options: Partial<WorkerOptions> & Pick<WorkerOptions, 'logger'>): Worker {
  return new Worker({
    ...TEST_WORKER_SETTINGS,
    llm: {},
    db,
    bus: new MemoryBus(),
    agents: new Map([[free.name, free]]),
    ...options,
  });
}

/** Queues a run of the `free` agent, held until its gate (by `id`) opens. */
function queueFree(db: SqlClient, id: string) {
  return createRun(db, {
    tenantId: TENANT,
    agent: free.name,
    assistantId: crypto.randomUUID(),
    input: { id },
  });
}

describe('memory threshold', () => {
  it('stops claiming while the RSS is above HANGAR_WORKER_MAX_RSS_MB and resumes below, saying so in the log', async () => {
    const store = await createEngineStore('postgres');
    const logs: string[] = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _enc, done) {
          logs.push(String(chunk));
          done();
        },
      }),
    );
    let rssMb = 900;
    const worker = freeWorker(store.db, {
      logger,
      maxRssMb: 512,
      rssBytes: () => rssMb * 1024 * 1024,
    });
    try {
      const run = await queueFree(store.db, 'm1');
      worker.start();
      await eventually('the pause to be logged', () => logs.some((l) => l.includes('claims paused')));
      // The pause is checked before every claim: the run, queued before the worker started, is still there.
      expect(worker.claimsPaused).toBe(true);
      expect((await getRun(store.db, TENANT, run.run_id))?.status).toBe('pending');
      rssMb = 300;
      await eventually('the run to start once memory is back under', () => started.includes('m1'));
      expect(logs.some((l) => l.includes('claims resume'))).toBe(true);
      expect(worker.claimsPaused).toBe(false);
    } finally {
      gateFor('m1').open();
      await worker.stop(5_000);
      await store.dispose();
    }
  });
});

describe('claim gathering', () => {
  /**
   * A worker of 8 slots running 7 runs, with one more run queued. With a
   * gather wait, the one free slot waits for a second (a claim takes several
   * runs at the cost of one); without, the run starts at once.
   */
  async function busyWorker(claimGatherMs: number, prefix: string) {
    const store = await createEngineStore('postgres');
    const worker = freeWorker(store.db, { logger: pino({ level: 'silent' }), concurrency: 8, claimGatherMs });
    const create = (id: string) => queueFree(store.db, id);
    worker.start();
    for (let i = 0; i < 7; i++) await create(`${prefix}${i}`);
    await eventually('seven runs to start', () => started.filter((id) => id.startsWith(prefix)).length === 7);
    const last = await create(`${prefix}last`);
    return {
      last,
      status: async () => (await getRun(store.db, TENANT, last.run_id))?.status,
      async dispose() {
        for (const g of gates.values()) g.open();
        await worker.stop(5_000);
        await store.dispose();
      },
    };
  }

  it('a busy worker with one slot free waits for a second before it claims', async () => {
    const w = await busyWorker(60_000, 'g');
    try {
      // Polls (every 100 ms) and the create's work notice find the run, but the slot waits.
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(await w.status()).toBe('pending');
      gateFor('g0').open();
      await eventually('the queued run to start once a second slot is free', () => started.includes('glast'));
    } finally {
      await w.dispose();
    }
  });

  it('with HANGAR_CLAIM_GATHER_MS 0 the free slot claims at once', async () => {
    const w = await busyWorker(0, 'n');
    try {
      await eventually('the queued run to start', () => started.includes('nlast'));
      expect(started.filter((id) => id.startsWith('n'))).toHaveLength(8);
    } finally {
      await w.dispose();
    }
  });
});
