/**
 * Phases 1 and 2: the raw commit baseline and the cost of one step
 * checkpoint, measured sequentially (one write in flight). The probes run in
 * interleaved blocks, so drift in the disk's fsync latency (or another
 * tenant of the same Postgres) lands on all of them alike and their ratios
 * stay meaningful.
 */

import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { uuidv5 } from '../../packages/hangar/src/assistants/registry.ts';
import { MemoryBus } from '../../packages/hangar/src/bus/memory.ts';
import { isTerminalEvent } from '../../packages/hangar/src/events/envelope.ts';
import { writeCheckpoint } from '../../packages/hangar/src/runs/checkpoint.ts';
import { claimRun, createRun } from '../../packages/hangar/src/runs/repository.ts';
import type { Lease } from '../../packages/hangar/src/runs/types.ts';
import type { Queryable, SqlClient } from '../../packages/hangar/src/store/sql.ts';
import { createThread } from '../../packages/hangar/src/threads/repository.ts';
import { CheckpointBatcher } from '../../packages/hangar/src/worker/checkpoints.ts';
import { RunCommitter } from '../../packages/hangar/src/worker/committer.ts';
import { WORKER_DEFAULTS, Worker } from '../../packages/hangar/src/worker/worker.ts';
import { manySteps, stepTimings } from './agents.ts';
import type { BenchDatabase } from './db.ts';
import { leanCheckpoint } from './prototype.ts';
import { type LatencySummary, summarize, timeLoop } from './stats.ts';

const LEASE_MS = 600_000;

/** Times `n` sequential operations and returns one sample (ms) per operation. */
type Block = (n: number) => Promise<number[]>;

interface Probe {
  key: string;
  what: string;
  /** Samples per block (the raw baseline and ctx.step get the most). */
  perBlock: number;
  block: Block;
}

/** A run claimed by the bench itself, so its checkpoints can be written directly. */
async function claimedLease(db: SqlClient, agent: string): Promise<Lease> {
  await createRun(db, { tenantId: 'default', agent, assistantId: uuidv5(agent), input: {} });
  const claimed = await claimRun(db, { owner: 'bench', leaseMs: LEASE_MS, agents: [agent] });
  if (claimed === null) throw new Error(`could not claim the ${agent} run`);
  return claimed.lease;
}

function stepWrite(index: number) {
  return {
    index,
    name: `s${index}`,
    kind: 'step' as const,
    status: 'completed' as const,
    result: { v: 1 },
    attempt: 1,
    startedAt: new Date(),
  };
}

function updateEvent(index: number) {
  return { channel: 'updates', data: { [`s${index}`]: 1 } };
}

/** 1. One single-row INSERT, autocommit, on a plain `pg.Client`: the floor for any durable write. */
async function rawInsert(bench: BenchDatabase): Promise<Block> {
  const client = await bench.client();
  await client.query(
    'CREATE TABLE bench_raw (id bigserial PRIMARY KEY, run_id uuid NOT NULL, payload jsonb, at timestamptz DEFAULT now())',
  );
  const runId = randomUUID();
  return (n) =>
    timeLoop(n, 0, (i) =>
      client.query('INSERT INTO bench_raw (run_id, payload) VALUES ($1, $2::jsonb)', [
        runId,
        JSON.stringify({ v: i }),
      ]),
    );
}

/**
 * 2a. The engine's checkpoint statement (runs/checkpoint.ts) on a plain
 * client, unprepared: the statement's cost without the pool, prepared
 * statements, the committer chain or the agent context.
 */
async function bareCheckpoint(bench: BenchDatabase): Promise<Block> {
  const lease = await claimedLease(bench.db, 'bench-bare');
  const client = await bench.client();
  const plain: Queryable = {
    query: async <R>(sql: string, params?: readonly unknown[]) => {
      const res = await client.query(sql, params as unknown[] | undefined);
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
    },
  };
  let index = 0;
  return (n) =>
    timeLoop(n, 0, async () => {
      const i = index++;
      await writeCheckpoint(plain, lease, { attempt: 1 }, { step: stepWrite(i), events: [updateEvent(i)] });
    });
}

/** 2b. `RunCommitter.commit` with the work `ctx.step` gives it: the engine's path below the agent context. */
async function committerCheckpoint(bench: BenchDatabase): Promise<Block> {
  const lease = await claimedLease(bench.db, 'bench-committer');
  const committer = new RunCommitter({
    writer: new CheckpointBatcher(bench.db),
    bus: new MemoryBus(),
    lease,
    attempt: 1,
    flushMs: WORKER_DEFAULTS.flushMs,
    maxBuffered: WORKER_DEFAULTS.maxBufferedEvents,
  });
  let index = 0;
  return (n) =>
    timeLoop(n, 0, () => {
      const i = index++;
      return committer.commit({ step: stepWrite(i), events: [updateEvent(i)] });
    });
}

/**
 * 2c. `ctx.step` inside a real run on an in-process Worker (concurrency 1):
 * each block is one run of `n` trivial steps, each timed by the agent from
 * the call to its resolve.
 */
async function ctxStep(bench: BenchDatabase, stops: Array<() => Promise<void>>): Promise<Block> {
  const db = await bench.open(10);
  const bus = new MemoryBus();
  const worker = new Worker({
    ...WORKER_DEFAULTS,
    concurrency: 1,
    db,
    bus,
    agents: new Map([[manySteps.name, manySteps]]),
    logger: pino({ level: 'info' }, pino.destination('/dev/null')),
    llm: {},
  });
  worker.start();
  stops.push(async () => {
    await worker.stop(5_000);
    await db.close();
  });
  return async (n) => {
    const thread = await createThread(db, { tenantId: 'default' });
    let unsubscribe = () => {};
    let timer: NodeJS.Timeout | undefined;
    const finished = new Promise<void>((resolve, reject) => {
      unsubscribe = bus.subscribeThread(thread.thread_id, (message) => {
        if (message.kind === 'events' && message.events.some(isTerminalEvent)) resolve();
      });
      timer = setTimeout(() => reject(new Error(`a ${n}-step run did not finish in 60 s`)), 60_000);
    });
    stepTimings.samples = [];
    stepTimings.enabled = true;
    try {
      await createRun(db, {
        tenantId: 'default',
        agent: manySteps.name,
        assistantId: uuidv5(manySteps.name),
        input: { steps: n },
        threadId: thread.thread_id,
      });
      bus.notifyWork();
      await finished;
    } finally {
      stepTimings.enabled = false;
      clearTimeout(timer);
      unsubscribe();
    }
    return stepTimings.samples;
  };
}

/** 2d/2e. The prototype: the same writes as one autocommit statement (see prototype.ts). */
async function fusedCheckpoint(bench: BenchDatabase, prepared: boolean): Promise<Block> {
  const lease = await claimedLease(bench.db, prepared ? 'bench-fused-prepared' : 'bench-fused');
  const client = await bench.client();
  const lean = { runId: lease.runId, epoch: lease.epoch, attempt: 1 };
  let index = 0;
  return (n) =>
    timeLoop(n, 0, () => {
      const i = index++;
      return leanCheckpoint(
        client,
        lean,
        LEASE_MS,
        { index: i, name: `s${i}`, result: 1, startedAt: new Date() },
        [updateEvent(i)],
        { prepared },
      );
    });
}

export interface LatencyResult {
  key: string;
  what: string;
  summary: LatencySummary;
}

/**
 * Runs every probe in `rounds` interleaved rounds after one warm-up block
 * each. `iterations` is the sample count of the raw baseline and ctx.step;
 * the other probes take a quarter as many.
 */
export async function measureLatency(
  bench: BenchDatabase,
  options: { iterations: number; rounds: number },
): Promise<Record<string, LatencyResult>> {
  const stops: Array<() => Promise<void>> = [];
  const full = Math.max(1, Math.round(options.iterations / options.rounds));
  const part = Math.max(1, Math.round(full / 4));
  try {
    const probes: Probe[] = [
      {
        key: 'raw_insert',
        what: '1. raw single-row INSERT, autocommit, plain pg.Client',
        perBlock: full,
        block: await rawInsert(bench),
      },
      {
        key: 'bare_checkpoint',
        what: "2a. engine's checkpoint statement on a plain client (unprepared)",
        perBlock: part,
        block: await bareCheckpoint(bench),
      },
      {
        key: 'committer_checkpoint',
        what: '2b. RunCommitter.commit (pool + the same fenced transaction)',
        perBlock: part,
        block: await committerCheckpoint(bench),
      },
      {
        key: 'ctx_step',
        what: '2c. **ctx.step, trivial fn, in a real run (in-process Worker)**',
        perBlock: full,
        block: await ctxStep(bench, stops),
      },
      {
        key: 'fused_checkpoint',
        what: '2d. prototype: the same writes as one autocommit statement',
        perBlock: part,
        block: await fusedCheckpoint(bench, false),
      },
      {
        key: 'fused_prepared_checkpoint',
        what: '2e. prototype: as 2d, as a named (prepared) statement',
        perBlock: part,
        block: await fusedCheckpoint(bench, true),
      },
    ];
    const samples = new Map<string, number[]>(probes.map((p) => [p.key, []]));
    for (const probe of probes) await probe.block(Math.min(50, probe.perBlock));
    for (let round = 0; round < options.rounds; round++) {
      for (const probe of probes) samples.get(probe.key)?.push(...(await probe.block(probe.perBlock)));
    }
    return Object.fromEntries(
      probes.map((p) => [p.key, { key: p.key, what: p.what, summary: summarize(samples.get(p.key) ?? []) }]),
    );
  } finally {
    for (const stop of stops) await stop().catch(() => {});
  }
}
