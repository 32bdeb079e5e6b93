/**
 * CPU time spent on the benchmark's own behalf: its Node processes (the bench
 * with its in-process workers, the spawned `hangar worker` processes) and the
 * Postgres backends serving their connections. On a shared machine this is
 * steadier than throughput, which also depends on whoever else is busy.
 * Linux only (reads /proc); Postgres must run on the same machine.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { SqlClient } from '../../packages/hangar/src/store/sql.ts';

/** USER_HZ: /proc reports CPU time in ticks of 10 ms on Linux. */
const TICK_MS = 10;

function cpuTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces); utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (match?.[1] !== undefined) inodes.add(match[1]);
      } catch {
        // The descriptor closed while we looked.
      }
    }
  } catch {
    // The process exited.
  }
  return inodes;
}

/** Local ports of TCP sockets with these inodes (IPv4 and IPv6 tables). */
function localPorts(inodes: Set<string>): number[] {
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      const inode = cols[9];
      if (local === undefined || inode === undefined || !inodes.has(inode)) continue;
      ports.push(Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16));
    }
  }
  return ports;
}

export interface CpuSample {
  workers: number;
  backends: Map<number, number>;
}

export class OwnCpu {
  constructor(
    private readonly db: SqlClient,
    private readonly pids: () => number[],
  ) {}

  async sample(): Promise<CpuSample> {
    const pids = this.pids();
    let workers = 0;
    const inodes = new Set<string>();
    for (const pid of pids) {
      workers += cpuTicks(pid) ?? 0;
      for (const inode of socketInodes(pid)) inodes.add(inode);
    }
    const ports = localPorts(inodes);
    const res = await this.db.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])',
      [ports],
    );
    const backends = new Map<number, number>();
    for (const { pid } of res.rows) {
      const ticks = cpuTicks(pid);
      if (ticks !== undefined) backends.set(pid, ticks);
    }
    return { workers, backends };
  }

  /** CPU ms between two samples; a backend first seen in `end` started during the interval. */
  static diff(start: CpuSample, end: CpuSample): { workersMs: number; postgresMs: number } {
    let postgres = 0;
    for (const [pid, ticks] of end.backends) postgres += ticks - (start.backends.get(pid) ?? 0);
    return { workersMs: (end.workers - start.workers) * TICK_MS, postgresMs: postgres * TICK_MS };
  }
}
