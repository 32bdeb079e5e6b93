/**
 * Worker-kill chaos on the local cluster (the short variant of
 * `npm run bench:chaos`; see bench/control/chaos.ts for what is checked and
 * how): 200 runs of a three-step agent with simulated LLM latency and an
 * idempotent tool call per step, while a random worker is SIGKILLed every
 * 1.5–3 s and restarted.
 */
import { describe, expect, test } from 'vitest';
import { runChaos } from '../bench/control/chaos.ts';

describe('chaos: workers SIGKILLed at random while 200 runs execute', () => {
  test('every run completes; no completed step runs again; every tool effect happens once', async () => {
    const report = await runChaos({
      runs: 200,
      steps: 3,
      llmMs: 300,
      workers: 3,
      concurrency: 5,
      killEveryMs: [1_500, 3_000],
      leaseMs: 2_000,
      deadlineMs: 150_000,
    });
    const summary = JSON.stringify({
      ...report,
      completed_steps_rerun: report.completed_steps_rerun.slice(0, 5),
    });
    expect(report.statuses, summary).toEqual({ success: 200 });
    expect(report.wrong_outputs, summary).toEqual([]);
    expect(report.completed_steps_rerun, summary).toEqual([]);
    expect(report.missing_effects, summary).toEqual([]);
    expect(report.unexpected_effects, summary).toEqual([]);
    expect(report.tool_effects).toBe(200 * 3);
    // The chaos was real: workers died, and some died with steps in flight that ran again elsewhere.
    expect(report.kills, summary).toBeGreaterThanOrEqual(3);
    expect(report.interrupted_executions, summary).toBeGreaterThan(0);
    expect(report.run_attempts.max, summary).toBeGreaterThan(1);
  }, 240_000);
});
