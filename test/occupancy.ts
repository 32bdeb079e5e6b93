/**
 * Replays the start/end lines the occupant agents write (test/fixtures/agents/occupant.ts):
 * how many runs each worker process had at once, in all and per agent.
 */
import { lines } from './helpers.ts';

export interface Occupancy {
  /** Most runs a process had at once, by pid. */
  peak: Map<number, number>;
  /** Most runs of one agent a process had at once, by pid then agent. */
  peakByAgent: Map<number, Map<string, number>>;
  /** Whether some process ran `a` and `b` runs at the same moment, `a` at its peak. */
  together(a: string, b: string): boolean;
  started: number;
  ended: number;
}

export function occupancy(file: string): Occupancy {
  const now = new Map<number, Map<string, number>>();
  const peak = new Map<number, number>();
  const peakByAgent = new Map<number, Map<string, number>>();
  const moments: Array<Map<string, number>> = [];
  let started = 0;
  let ended = 0;
  for (const line of lines(file)) {
    const [sign, pidText, agent = ''] = line.split(' ');
    const pid = Number(pidText);
    const byAgent = now.get(pid) ?? new Map<string, number>();
    now.set(pid, byAgent);
    byAgent.set(agent, (byAgent.get(agent) ?? 0) + (sign === '+' ? 1 : -1));
    if (sign === '+') started++;
    else ended++;
    const total = [...byAgent.values()].reduce((a, b) => a + b, 0);
    peak.set(pid, Math.max(peak.get(pid) ?? 0, total));
    const peaks = peakByAgent.get(pid) ?? new Map<string, number>();
    peakByAgent.set(pid, peaks);
    peaks.set(agent, Math.max(peaks.get(agent) ?? 0, byAgent.get(agent) ?? 0));
    moments.push(new Map(byAgent));
  }
  return {
    peak,
    peakByAgent,
    started,
    ended,
    together(a, b) {
      const peakA = Math.max(0, ...[...peakByAgent.values()].map((p) => p.get(a) ?? 0));
      return moments.some((m) => (m.get(a) ?? 0) === peakA && peakA > 0 && (m.get(b) ?? 0) > 0);
    },
  };
}
