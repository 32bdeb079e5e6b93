/** One 3-step run at a time on an idle in-process Worker: the latency a lone request sees. */
import pino from 'pino';
import { uuidv5 } from '../../packages/hangar/src/assistants/registry.ts';
import { MemoryBus } from '../../packages/hangar/src/bus/memory.ts';
import { isTerminalEvent } from '../../packages/hangar/src/events/envelope.ts';
import { createRun } from '../../packages/hangar/src/runs/repository.ts';
import { createThread } from '../../packages/hangar/src/threads/repository.ts';
import { WORKER_DEFAULTS, Worker } from '../../packages/hangar/src/worker/worker.ts';
import { threeStep } from './agents.ts';
import { type BenchDatabase, resetRuns } from './db.ts';
import { type LatencySummary, summarize } from './stats.ts';

export async function idleRunLatency(
  bench: BenchDatabase,
  runs: number,
): Promise<{ what: string; submit_to_terminal_event: LatencySummary; created_to_finish: LatencySummary }> {
  await resetRuns(bench.db);
  const db = await bench.open(10);
  const bus = new MemoryBus();
  const worker = new Worker({
    ...WORKER_DEFAULTS,
    db,
    bus,
    agents: new Map([[threeStep.name, threeStep]]),
    logger: pino({ level: 'info' }, pino.destination('/dev/null')),
    llm: {},
  });
  worker.start();
  const samples: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const thread = await createThread(db, { tenantId: 'default' });
      let unsubscribe = () => {};
      let timer: NodeJS.Timeout | undefined;
      const done = new Promise<void>((resolve, reject) => {
        unsubscribe = bus.subscribeThread(thread.thread_id, (message) => {
          if (message.kind === 'events' && message.events.some(isTerminalEvent)) resolve();
        });
        timer = setTimeout(() => reject(new Error('an idle run did not finish within 10 s')), 10_000);
      });
      const t0 = performance.now();
      // As the gateway does: create (the enqueue), then hint idle workers.
      await createRun(db, {
        tenantId: 'default',
        agent: threeStep.name,
        assistantId: uuidv5(threeStep.name),
        input: {},
        threadId: thread.thread_id,
      });
      bus.notifyWork();
      try {
        await done;
      } finally {
        clearTimeout(timer);
        unsubscribe();
      }
      samples.push(performance.now() - t0);
    }
  } finally {
    await worker.stop(5_000);
    await db.close();
  }
  const rows = await bench.db.query<{ c: number }>(
    'SELECT extract(epoch FROM finished_at - created_at) * 1000 AS c FROM runs WHERE finished_at IS NOT NULL',
  );
  return {
    what: `${runs} runs one after another, in-process Worker, MemoryBus`,
    submit_to_terminal_event: summarize(samples),
    created_to_finish: summarize(rows.rows.map((r) => Number(r.c))),
  };
}
