/** Writes bench/results/engine.{json,md} and renders the tables printed at the end of a run. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { LatencySummary } from './stats.ts';
import type { DrainResult } from './throughput.ts';

const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));

export interface Target {
  name: string;
  target: string;
  measured: number;
  unit: string;
  pass: boolean;
}

export interface LatencyRow {
  key: string;
  what: string;
  summary: LatencySummary;
}

export interface EngineReport {
  benchmark: 'engine';
  command: string;
  generated_at: string;
  duration_s: number;
  machine: Record<string, unknown>;
  settings: Record<string, unknown>;
  latency: Record<string, LatencyRow>;
  ratios: Record<string, { value: number; unit: 'x'; definition: string }>;
  throughput: DrainResult[];
  idle_run_latency?: {
    what: string;
    submit_to_terminal_event: LatencySummary;
    created_to_finish: LatencySummary;
  };
  targets: Target[];
  skipped: string[];
  notes: string[];
}

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '–');

export function renderMarkdown(r: EngineReport): string {
  const lines: string[] = [];
  lines.push('# Engine benchmark', '');
  lines.push(
    `${r.generated_at} · \`${r.command}\` · ${String(r.machine.cpus)} × ${String(r.machine.cpu_model)} · ` +
      `Node ${String(r.machine.node)} · ${String(r.machine.postgres)} · ${r.duration_s.toFixed(0)} s`,
    '',
  );
  lines.push('## Targets', '', '| target | goal | measured | result |', '|---|---|---|---|');
  for (const t of r.targets) {
    lines.push(`| ${t.name} | ${t.target} | ${t.measured} ${t.unit} | ${t.pass ? 'PASS' : 'FAIL'} |`);
  }
  lines.push('', '## Commit latency (sequential, one at a time)', '');
  lines.push('| measurement | p50 ms | p90 ms | p99 ms | max ms | n |', '|---|---|---|---|---|---|');
  for (const row of Object.values(r.latency)) {
    const s = row.summary;
    lines.push(`| ${row.what} | ${ms(s.p50)} | ${ms(s.p90)} | ${ms(s.p99)} | ${ms(s.max)} | ${s.samples} |`);
  }
  for (const [name, ratio] of Object.entries(r.ratios)) {
    lines.push(`| ratio ${name} (${ratio.definition}) | | | ${ratio.value.toFixed(2)}× | | |`);
  }
  lines.push('', '## End-to-end: draining a queue of 3-step runs', '');
  lines.push(
    '| workers | rep | load | runs | runs/s | enqueue→finish p50 / p99 ms | created→finish p50 / p99 ms | execution p50 / p99 ms | step under load p50 / p99 ms | machine CPU busy | own CPU ms/run (workers + Postgres) | CPU-bound ceiling runs/s |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const d of r.throughput) {
    const step =
      d.step_under_load === undefined ? '–' : `${ms(d.step_under_load.p50)} / ${ms(d.step_under_load.p99)}`;
    const failed = d.runs - (d.statuses.success ?? 0);
    const i = d.integrity;
    const broken = i.runs_with_wrong_steps + i.threads_with_seq_gaps + i.threads_still_held;
    lines.push(
      `| ${d.label} | ${d.repetition} | ${d.loadavg_1m_at_start} | ${d.runs}${failed > 0 ? ` (${failed} not success)` : ''}${broken > 0 ? ' (integrity check failed)' : ''}${i.runs_retried > 0 ? ` (${i.runs_retried} retried)` : ''} | **${d.runs_per_second.toFixed(0)}** | ` +
        `${ms(d.enqueue_to_finish.p50)} / ${ms(d.enqueue_to_finish.p99)} | ` +
        `${ms(d.created_to_finish.p50)} / ${ms(d.created_to_finish.p99)} | ` +
        `${ms(d.execution.p50)} / ${ms(d.execution.p99)} | ${step} | ${d.machine_cpu_busy_percent}% | ${d.own_cpu_ms_per_run.total} (${d.own_cpu_ms_per_run.workers} + ${d.own_cpu_ms_per_run.postgres}) | ${d.cpu_bound_ceiling_runs_per_second} |`,
    );
  }
  if (r.idle_run_latency !== undefined) {
    const i = r.idle_run_latency;
    lines.push(
      '',
      `Idle latency (${i.what}): submit → terminal event p50 ${ms(i.submit_to_terminal_event.p50)} ms, ` +
        `p99 ${ms(i.submit_to_terminal_event.p99)} ms; created_at → finished_at p50 ${ms(i.created_to_finish.p50)} ms, ` +
        `p99 ${ms(i.created_to_finish.p99)} ms.`,
    );
  }
  const profiled = r.throughput.find((d) => d.profile !== undefined);
  if (profiled?.profile !== undefined) {
    const p = profiled.profile;
    lines.push('', `## Where a run's time goes (${profiled.label})`, '');
    lines.push('| transaction | per run | round trips each | mean ms |', '|---|---|---|---|');
    for (const [kind, t] of Object.entries(p.transactions)) {
      lines.push(`| ${kind} | ${t.per_run} | ${t.round_trips_each} | ${ms(t.mean_ms)} |`);
    }
    lines.push(
      `| autocommit statements | ${p.autocommit_per_run} | 1 | |`,
      `| bus notices (pg_notify on PostgresBus) | ${p.bus_notifies_per_run} | 1 | |`,
      `| **total round trips per run** | **${p.round_trips_per_run}** | | |`,
    );
    lines.push('', '| statement | per run | mean ms |', '|---|---|---|');
    for (const [name, s] of Object.entries(p.statements))
      lines.push(`| ${name} | ${s.per_run} | ${ms(s.mean_ms)} |`);
  }
  if (r.skipped.length > 0) lines.push('', `Skipped (time budget): ${r.skipped.join(', ')}.`);
  if (r.notes.length > 0) lines.push('', '## Notes', '', ...r.notes.map((n) => `- ${n}`));
  return `${lines.join('\n')}\n`;
}

export function writeReport(r: EngineReport): { json: string; md: string; markdown: string } {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = `${RESULTS_DIR}engine.json`;
  const md = `${RESULTS_DIR}engine.md`;
  const markdown = renderMarkdown(r);
  writeFileSync(json, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(md, markdown);
  return { json, md, markdown };
}
