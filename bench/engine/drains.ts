/**
 * A few drains only (no latency probes, no report): for trying one engine
 * change at a time. `npx tsx bench/engine/drains.ts [--runs N] [--reps N]
 * [--modes in-process,processes,prototype] [--workers 1,2]`; prints one line a drain.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { createBenchDatabase } from './db.ts';
import { type DrainOptions, drain, drainLabel } from './throughput.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    reps: { type: 'string', default: '2' },
    modes: { type: 'string', default: 'in-process,processes' },
    workers: { type: 'string', default: '1,2' },
    concurrency: { type: 'string', default: '10' },
  },
});
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const bench = await createBenchDatabase(url);
try {
  for (let rep = 1; rep <= Number(values.reps); rep++) {
    for (const mode of values.modes.split(',') as DrainOptions['mode'][]) {
      for (const workers of values.workers.split(',').map(Number)) {
        const concurrency = Number(values.concurrency);
        const d: DrainOptions = {
          mode,
          workers,
          concurrency,
          poolMax: Math.max(10, concurrency),
          runs: Number(values.runs),
          timeoutMs: 60_000,
          ...(mode === 'prototype' ? { prepared: true } : {}),
        };
        const load = loadavg()[0]?.toFixed(2);
        const commits = async () =>
          Number(
            (
              await bench.db.query<{ n: string }>(
                'SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()',
              )
            ).rows[0]?.n,
          );
        const before = await commits();
        const r = await drain(bench, d);
        // The statistics collector reports with a delay of up to a second.
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const perRun = ((await commits()) - before) / d.runs;
        console.log(
          `${drainLabel(d)} rep ${rep} load ${load}: ${r.runs_per_second} runs/s, cpu ms/run ${JSON.stringify(r.own_cpu_ms_per_run ?? null)}, commits/run ${perRun.toFixed(2)}, statuses ${JSON.stringify(r.statuses)}`,
        );
      }
    }
  }
} finally {
  await bench.dispose();
}
