/**
 * The long worker-kill chaos run (`npm run bench:chaos`): see chaos.ts for
 * what is checked. Writes bench/results/chaos.{json,md} and exits non-zero if
 * any check failed.
 *
 * Flags: --runs N (default 1000), --steps N (5), --llm-ms N (400),
 * --workers N (3), --concurrency N (10), --kill-min-ms / --kill-max-ms
 * (2000 / 5000), --lease-ms N (default: the product default).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runChaos } from './chaos.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    steps: { type: 'string', default: '5' },
    'llm-ms': { type: 'string', default: '400' },
    workers: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '10' },
    'kill-min-ms': { type: 'string', default: '2000' },
    'kill-max-ms': { type: 'string', default: '5000' },
    'lease-ms': { type: 'string' },
  },
});
const settings = {
  runs: Number(values.runs),
  steps: Number(values.steps),
  llmMs: Number(values['llm-ms']),
  workers: Number(values.workers),
  concurrency: Number(values.concurrency),
  killEveryMs: [Number(values['kill-min-ms']), Number(values['kill-max-ms'])] as [number, number],
  ...(values['lease-ms'] === undefined ? {} : { leaseMs: Number(values['lease-ms']) }),
  deadlineMs: 30 * 60_000,
};

const report = await runChaos({ ...settings, log: (line) => console.log(`[chaos] ${line}`) });
const failures = [
  ...(report.statuses.success === report.runs ? [] : [`statuses ${JSON.stringify(report.statuses)}`]),
  ...(report.wrong_outputs.length === 0 ? [] : [`${report.wrong_outputs.length} wrong outputs`]),
  ...(report.completed_steps_rerun.length === 0
    ? []
    : [`${report.completed_steps_rerun.length} completed steps re-run`]),
  ...(report.missing_effects.length === 0 ? [] : [`${report.missing_effects.length} missing tool effects`]),
  ...(report.unexpected_effects.length === 0
    ? []
    : [`${report.unexpected_effects.length} unexpected tool effects`]),
];
const result = {
  benchmark: 'chaos',
  command: `npm run bench:chaos -- ${process.argv.slice(2).join(' ')}`.trim(),
  generated_at: new Date().toISOString(),
  machine: {
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model,
    node: process.version,
    loadavg_1m_end: loadavg()[0],
  },
  settings,
  report,
  pass: failures.length === 0,
  failures,
};
const dir = fileURLToPath(new URL('../results/', import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}chaos.json`, `${JSON.stringify(result, null, 2)}\n`);
const md = [
  '# Worker-kill chaos (local cluster)',
  '',
  `${result.generated_at} · \`${result.command}\` · ${result.machine.cpus} × ${String(result.machine.cpu_model)} · Node ${process.version}`,
  '',
  '| runs | steps/run | workers × slots | kills | duration | statuses | completed steps re-run | tool effects (expected) | tool requests | interrupted executions | max attempts |',
  '|---|---|---|---|---|---|---|---|---|---|---|',
  `| ${report.runs} | ${report.steps_per_run} | ${report.workers} × ${settings.concurrency} | ${report.kills} | ${(report.duration_ms / 1000).toFixed(0)} s | ${JSON.stringify(report.statuses)} | ${report.completed_steps_rerun.length} | ${report.tool_effects} (${report.runs * report.steps_per_run}) | ${report.tool_requests} | ${report.interrupted_executions} | ${report.run_attempts.max} |`,
  '',
  result.pass ? 'All checks passed.' : `FAILED: ${failures.join('; ')}`,
  '',
].join('\n');
writeFileSync(`${dir}chaos.md`, md);
console.log(md);
process.exit(result.pass ? 0 : 1);
