/** Writes bench/results/control.{json,md} and renders the tables printed at the end of a run. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Target } from '../engine/report.ts';
import type { LatencySummary } from '../engine/stats.ts';
import type { CancelSample, CrashSample } from './measure.ts';

const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));

export interface ControlReport {
  benchmark: 'control';
  command: string;
  generated_at: string;
  duration_s: number;
  machine: Record<string, unknown>;
  settings: Record<string, unknown>;
  /** With the default settings (what the target is judged on). */
  crash_resume?: CrashSeries;
  /** The same with a shorter lease (HANGAR_LEASE_MS), to show what bounds the default. */
  crash_resume_short_lease?: CrashSeries;
  cancel?: {
    what: string;
    request_to_cancelled: LatencySummary;
    request_to_abort: LatencySummary;
    statuses: Record<string, number>;
    loadavg_1m: { min: number; max: number };
    samples: CancelSample[];
  };
  targets: Target[];
  notes: string[];
}

export interface CrashSeries {
  what: string;
  lease_ms: number;
  kill_to_resume: LatencySummary;
  lease_left_at_kill: LatencySummary;
  expiry_to_resume: LatencySummary;
  statuses: Record<string, number>;
  loadavg_1m: { min: number; max: number };
  samples: CrashSample[];
}

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '–');
const row = (what: string, s: LatencySummary) =>
  `| ${what} | ${ms(s.p50)} | ${ms(s.p90)} | ${ms(s.p99)} | ${ms(s.max)} | ${s.samples} |`;

export function renderMarkdown(r: ControlReport): string {
  const lines: string[] = [];
  lines.push('# Control-plane benchmark (local cluster)', '');
  lines.push(
    `${r.generated_at} · \`${r.command}\` · ${String(r.machine.cpus)} × ${String(r.machine.cpu_model)} · ` +
      `Node ${String(r.machine.node)} · ${String(r.machine.postgres)} · ${String(r.machine.haproxy)} · ${r.duration_s.toFixed(0)} s`,
    '',
  );
  lines.push('## Targets', '', '| target | goal | measured | result |', '|---|---|---|---|');
  for (const t of r.targets) {
    lines.push(`| ${t.name} | ${t.target} | ${t.measured} ${t.unit} | ${t.pass ? 'PASS' : 'FAIL'} |`);
  }
  const header = ['| measurement | p50 ms | p90 ms | p99 ms | max ms | n |', '|---|---|---|---|---|---|'];
  const crash = (title: string, c: CrashSeries) => {
    lines.push('', title, '', c.what, '', ...header);
    lines.push(row('**SIGKILL → step restarted in another worker process**', c.kill_to_resume));
    lines.push(row('lease left at the kill (lease_expires_at − now)', c.lease_left_at_kill));
    lines.push(
      row(
        'step restarted − lease expiry (negative: before the lease would have expired)',
        c.expiry_to_resume,
      ),
    );
    lines.push(
      '',
      `Final statuses: ${JSON.stringify(c.statuses)}; load average (1 min) ${c.loadavg_1m.min}–${c.loadavg_1m.max}.`,
    );
  };
  if (r.crash_resume !== undefined) {
    crash(
      `## Crash → resume (SIGKILL of the worker executing a run), default lease ${r.crash_resume.lease_ms} ms`,
      r.crash_resume,
    );
  }
  if (r.crash_resume_short_lease !== undefined) {
    crash(
      `## For comparison: crash → resume with HANGAR_LEASE_MS=${r.crash_resume_short_lease.lease_ms}`,
      r.crash_resume_short_lease,
    );
  }
  if (r.cancel !== undefined) {
    const c = r.cancel;
    lines.push('', '## Cancel across processes', '', c.what, '', ...header);
    lines.push(row('**cancel request → 204 (run ended), via another gateway**', c.request_to_cancelled));
    lines.push(row('cancel request → the step’s signal fired in the worker', c.request_to_abort));
    lines.push(
      '',
      `Final statuses: ${JSON.stringify(c.statuses)}; load average (1 min) ${c.loadavg_1m.min}–${c.loadavg_1m.max}.`,
    );
  }
  if (r.notes.length > 0) lines.push('', '## Notes', '', ...r.notes.map((n) => `- ${n}`));
  return `${lines.join('\n')}\n`;
}

export function writeReport(r: ControlReport): { json: string; md: string; markdown: string } {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = `${RESULTS_DIR}control.json`;
  const md = `${RESULTS_DIR}control.md`;
  const markdown = renderMarkdown(r);
  writeFileSync(json, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(md, markdown);
  return { json, md, markdown };
}
