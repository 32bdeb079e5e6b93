/**
 * Shared fixture of the engine tests (`engine.*.test.ts`): a real store (own
 * Postgres schema or in-memory PGlite), the in-process bus, real `Worker`s, and
 * bounded waits. Nothing here is mocked; tests observe the engine only through
 * what it writes (runs, steps, the event log, thread state).
 */
import type { PGlite } from '@electric-sql/pglite';
import { uuidv5 } from '../assistants/registry.ts';
import { MemoryBus } from '../bus/memory.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import { readEvents } from '../events/log.ts';
import { createRun, getRun } from '../runs/repository.ts';
import { TERMINAL_STATUSES } from '../runs/status.ts';
import type { Run } from '../runs/types.ts';
import type { Agent } from '../sdk/agent.ts';
import { loadSteps, type StepRecord } from '../steps/repository.ts';
import { migrate } from '../store/migrate.ts';
import { openPGlite, PGliteClient } from '../store/pglite.ts';
import type { SqlClient } from '../store/sql.ts';
import { createTestStore, type STORE_KINDS, type TestStore } from '../testing/db.ts';
import { testLogger } from '../testing/logger.ts';
import { WORKER_DEFAULTS, Worker, type WorkerOptions } from './worker.ts';

export const TENANT = 'default';

/** Small leases and fast polls keep the suite quick; every wait is still bounded. */
export const TEST_WORKER_SETTINGS = {
  ...WORKER_DEFAULTS,
  leaseMs: 2_000,
  heartbeatMs: 500,
  pollMs: 100,
  sweepMs: 200,
} as const;

export type WorkerOverrides = Partial<Omit<WorkerOptions, 'db' | 'bus' | 'agents' | 'logger'>>;

export interface TestEngine {
  kind: TestStore['kind'];
  db: SqlClient;
  bus: MemoryBus;
  /** Starts a worker for these agents; `dispose()` stops it if the test did not. */
  startWorker(agents: Agent | readonly Agent[], overrides?: WorkerOverrides): Worker;
  /** Creates a run (and wakes workers, as the gateway does). */
  createRun(agent: Agent, input: unknown, options?: { threadId?: string }): Promise<Run>;
  /** Waits until the run satisfies `until` (default: a terminal status). */
  waitForRun(runId: string, until?: (run: Run) => boolean, timeoutMs?: number): Promise<Run>;
  /** The run's events in log order. */
  runEvents(run: Pick<Run, 'run_id' | 'thread_id'>): Promise<EventEnvelope[]>;
  /** The whole thread's log in order. */
  threadEvents(threadId: string): Promise<EventEnvelope[]>;
  steps(runId: string): Promise<StepRecord[]>;
  dispose(): Promise<void>;
}

let pgliteTemplate: Promise<PGliteClient> | undefined;

/**
 * A fresh, migrated store of its own. Postgres: `createTestStore` (a schema per
 * store). PGlite: a clone of one migrated in-memory database per test file,
 * which skips `initdb` and the migrations (about 2.5x faster than a new
 * instance) and is still a separate, real PGlite database.
 */
export async function createEngineStore(kind: (typeof STORE_KINDS)[number]): Promise<TestStore> {
  if (kind === 'postgres') return createTestStore(kind);
  pgliteTemplate ??= openPGlite().then(async (template) => {
    await migrate(template);
    return template;
  });
  // clone() is typed as the interface; it returns a PGlite instance.
  const db = new PGliteClient((await (await pgliteTemplate).db.clone()) as PGlite);
  return { kind, db, dispose: () => db.close() };
}

export async function createTestEngine(kind: (typeof STORE_KINDS)[number]): Promise<TestEngine> {
  const store = await createEngineStore(kind);
  const bus = new MemoryBus();
  const workers: Worker[] = [];
  const db = store.db;

  const engine: TestEngine = {
    kind: store.kind,
    db,
    bus,
    startWorker(agents, overrides = {}) {
      const list: readonly Agent[] = Array.isArray(agents) ? agents : [agents as Agent];
      const worker = new Worker({
        ...TEST_WORKER_SETTINGS,
        llm: {},
        ...overrides,
        db,
        bus,
        agents: new Map(list.map((a) => [a.name, a])),
        logger: testLogger(),
      });
      workers.push(worker);
      worker.start();
      return worker;
    },
    async createRun(agent, input, options = {}) {
      const run = await createRun(db, {
        tenantId: TENANT,
        agent: agent.name,
        assistantId: uuidv5(agent.name),
        input,
        ...(options.threadId === undefined ? {} : { threadId: options.threadId, createThread: true }),
      });
      bus.notifyWork();
      return run;
    },
    waitForRun(runId, until = (run) => TERMINAL_STATUSES.has(run.status), timeoutMs = 10_000) {
      return eventually(
        `run ${runId} to reach the awaited state`,
        async () => {
          const run = await getRun(db, TENANT, runId);
          if (run === null) throw new Error(`run ${runId} not found`);
          return until(run) ? run : undefined;
        },
        timeoutMs,
        async () => JSON.stringify(await getRun(db, TENANT, runId)),
      );
    },
    runEvents(run) {
      return readEvents(db, TENANT, run.thread_id, { afterSeq: 0, limit: 10_000, runId: run.run_id });
    },
    threadEvents(threadId) {
      return readEvents(db, TENANT, threadId, { afterSeq: 0, limit: 10_000 });
    },
    steps(runId) {
      return loadSteps(db, runId);
    },
    async dispose() {
      await Promise.all(workers.map((w) => w.stop(5_000)));
      await store.dispose();
    },
  };
  return engine;
}

/**
 * Polls `probe` until it returns something other than undefined/false; fails
 * with `what` (and an optional description of the last state) after `timeoutMs`.
 */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  describeState?: () => Promise<string> | string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) {
      const state = describeState === undefined ? '' : `; last state: ${await describeState()}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${state}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A promise the test opens by hand: lets a test hold a step "in flight" as long as it needs. */
export function gate(): { promise: Promise<void>; open(): void; opened: boolean } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  const g = {
    promise,
    opened: false,
    open() {
      g.opened = true;
      open();
    },
  };
  return g;
}

/** Resolves when `signal` aborts (a step that only ends when the worker lets go of it). */
export function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** The `data.event` of lifecycle events, `channel` otherwise: a compact view of a run's log. */
export function eventShape(events: readonly EventEnvelope[]): string[] {
  return events.map((e) => {
    const data = e.data as { event?: unknown } | null;
    return e.channel === 'lifecycle' || e.channel === 'messages'
      ? `${e.channel}:${String(data?.event)}`
      : e.channel;
  });
}
