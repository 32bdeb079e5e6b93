import type {
  Bus,
  PublishFence,
  PublishOptions,
  ThreadMessage,
  Unsubscribe,
} from '../../packages/hangar/src/bus/bus.ts';
import type { EventEnvelope } from '../../packages/hangar/src/events/envelope.ts';
import type { Queryable, QueryResult, SqlClient } from '../../packages/hangar/src/store/sql.ts';
import { round } from './stats.ts';

/** Statement classes, recognised by the opening of the engine's SQL. */
const STATEMENTS: Array<[RegExp, string]> = [
  [/^\/\* hangar: generic plan \*\/\s*WITH RECURSIVE queued/, 'claim'],
  [/^WITH w AS MATERIALIZED/, "checkpoint statement (group commit of the worker's runs)"],
  [/^UPDATE runs SET lease_expires_at/, 'heartbeat'],
  [/^WITH held AS/, 'sweep: liveness'],
  [/^WITH RECURSIVE k AS/, 'sweep: parked keys'],
  [/^WITH resolved AS/, 'sweep: expired interrupts'],
  [/^WITH candidate AS/, 'sweep: signals'],
];

function classify(sql: string): string {
  const text = sql.trimStart();
  for (const [pattern, name] of STATEMENTS) if (pattern.test(text)) return name;
  return `other: ${text.slice(0, 40).replace(/\s+/g, ' ')}`;
}

/** What a transaction was for, from the statements it ran. */
function transactionKind(statements: readonly string[]): string {
  return statements[0] ?? 'empty';
}

interface Tally {
  count: number;
  ms: number;
}

function add(map: Map<string, Tally>, key: string, ms: number): void {
  const t = map.get(key) ?? { count: 0, ms: 0 };
  t.count++;
  t.ms += ms;
  map.set(key, t);
}

/**
 * A SqlClient that counts and times every statement and transaction of the
 * client it wraps. A transaction costs its statements plus two round trips
 * (BEGIN and COMMIT, issued by the adapter) plus waiting for a pooled connection.
 */
export class CountingSqlClient implements SqlClient {
  readonly dialect: SqlClient['dialect'];
  readonly statements = new Map<string, Tally>();
  readonly transactions = new Map<string, Tally & { statements: number }>();
  /** Round trips outside transactions (autocommit statements). */
  autocommit = 0;

  constructor(private readonly inner: SqlClient) {
    this.dialect = inner.dialect;
  }

  async query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    const t0 = performance.now();
    try {
      return await this.inner.query<R>(sql, params);
    } finally {
      this.autocommit++;
      add(this.statements, classify(sql), performance.now() - t0);
    }
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const seen: string[] = [];
    const t0 = performance.now();
    try {
      return await this.inner.transaction((tx) =>
        fn({
          query: async <R>(sql: string, params?: readonly unknown[]) => {
            const s0 = performance.now();
            const name = classify(sql);
            seen.push(name);
            try {
              return await tx.query<R>(sql, params);
            } finally {
              add(this.statements, name, performance.now() - s0);
            }
          },
        }),
      );
    } finally {
      const kind = transactionKind(seen);
      const t = this.transactions.get(kind) ?? { count: 0, ms: 0, statements: 0 };
      t.count++;
      t.ms += performance.now() - t0;
      t.statements += seen.length;
      this.transactions.set(kind, t);
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  reset(): void {
    this.statements.clear();
    this.transactions.clear();
    this.autocommit = 0;
  }
}

/**
 * Counts bus traffic as a PostgresBus would send it: the checkpoint statements
 * NOTIFY their threads' hints themselves (this bus names a hint channel, which
 * nobody listens to), so only work notices and unhinted publishes would be
 * `pg_notify` round trips of their own.
 */
export class CountingBus implements Bus {
  publishes = 0;
  workNotices = 0;
  readonly hintChannel = 'hangar_bench_profile_hints';

  constructor(private readonly inner: Bus) {}

  publishEvents(
    threadId: string,
    events: readonly EventEnvelope[],
    fence?: PublishFence,
    options?: PublishOptions,
  ): void {
    if (events.length > 0 && options?.hinted !== true) this.publishes++;
    this.inner.publishEvents(threadId, events, fence, options);
  }
  subscribeThread(threadId: string, handler: (message: ThreadMessage) => void): Unsubscribe {
    return this.inner.subscribeThread(threadId, handler);
  }
  notifyWork(): void {
    this.workNotices++;
    this.inner.notifyWork();
  }
  onWork(handler: () => void): Unsubscribe {
    return this.inner.onWork(handler);
  }
  notifyCancel(runId: string): void {
    this.inner.notifyCancel(runId);
  }
  onCancel(handler: (runId: string) => void): Unsubscribe {
    return this.inner.onCancel(handler);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface RoundTripProfile {
  runs: number;
  /** Per run: transactions by kind, with round trips (statements + BEGIN + COMMIT) and mean wall time. */
  transactions: Record<string, { per_run: number; round_trips_each: number; mean_ms: number }>;
  /** Per run: each statement class, with its mean latency. */
  statements: Record<string, { per_run: number; mean_ms: number }>;
  autocommit_per_run: number;
  bus_notifies_per_run: number;
  round_trips_per_run: number;
  /** Write transactions (each one a WAL flush at COMMIT). */
  transactions_per_run: number;
}

export function roundTripProfile(db: CountingSqlClient, bus: CountingBus, runs: number): RoundTripProfile {
  const transactions: RoundTripProfile['transactions'] = {};
  let txRoundTrips = 0;
  let commits = 0;
  for (const [kind, t] of db.transactions) {
    const roundTrips = t.statements / t.count + 2;
    transactions[kind] = {
      per_run: round(t.count / runs, 2),
      round_trips_each: round(roundTrips, 2),
      mean_ms: round(t.ms / t.count),
    };
    txRoundTrips += t.statements + 2 * t.count;
    commits += t.count;
  }
  const statements: RoundTripProfile['statements'] = {};
  for (const [name, t] of [...db.statements].sort((a, b) => b[1].ms - a[1].ms)) {
    statements[name] = { per_run: round(t.count / runs, 2), mean_ms: round(t.ms / t.count) };
  }
  const notifies = bus.publishes + bus.workNotices;
  return {
    runs,
    transactions,
    statements,
    autocommit_per_run: round(db.autocommit / runs, 2),
    bus_notifies_per_run: round(notifies / runs, 2),
    round_trips_per_run: round((txRoundTrips + db.autocommit + notifies) / runs, 2),
    transactions_per_run: round(commits / runs, 2),
  };
}
