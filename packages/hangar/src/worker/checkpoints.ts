import type { HangarError } from '../errors.ts';
import {
  type CheckpointRequest,
  type CheckpointResult,
  writeCheckpoints,
  writeOneCheckpoint,
} from '../runs/checkpoint.ts';
import { GroupCommit } from '../store/group-commit.ts';
import type { Queryable } from '../store/sql.ts';

/** Where a run attempt's durable writes go (worker/committer.ts). */
export interface CheckpointWriter {
  /** Resolves once the write is committed; rejects (`lease_lost`, a database error) having written nothing. */
  write(request: CheckpointRequest): Promise<CheckpointResult>;
  /**
   * Whether the statements NOTIFY the Postgres bus's thread hints themselves
   * (then the events are published with `hinted`, and no separate NOTIFY follows).
   */
  readonly hints: boolean;
}

export interface CheckpointBatcherOptions {
  /** Statements in flight at once (each carries a batch). */
  maxInFlight?: number;
  /** Most writes in one statement. */
  maxBatch?: number;
  /** The Postgres bus's hint channel: each statement NOTIFYs its threads' new last seqs at commit. */
  hintChannel?: string;
}

interface Pending {
  request: CheckpointRequest;
  resolve(result: CheckpointResult): void;
  reject(err: unknown): void;
}

/**
 * Group commit across a worker's runs. A run's checkpoint is one statement,
 * and what a statement costs Postgres is mostly the statement and its commit,
 * not its rows: so the checkpoints of all the runs a worker executes share
 * statements. A write that arrives while fewer than `maxInFlight` statements
 * are in flight goes out at the next turn of the event loop (with whatever
 * else arrived in that turn); otherwise it waits for a statement to come
 * back and goes out with everything queued behind it. An idle worker writes
 * each checkpoint at once, alone.
 *
 * Every write keeps its own fence (runs/checkpoint.ts): one whose lease is
 * lost fails alone and writes nothing, the others of its statement commit.
 * A statement holds at most one write per thread (a later write of the same
 * thread waits for the next statement), so each thread's seq counter moves
 * once per statement. If a statement fails as a whole (one write breaks a
 * constraint, a deadlock with the sweeper, a lost connection), each write of
 * it is tried again on its own, so one write's failure is never another's.
 */
export class CheckpointBatcher extends GroupCommit<Pending> implements CheckpointWriter {
  private readonly maxBatch: number;
  private readonly hintChannel: string | undefined;

  constructor(
    private readonly db: Queryable,
    options: CheckpointBatcherOptions = {},
  ) {
    super(Math.max(1, options.maxInFlight ?? 2));
    this.maxBatch = Math.max(1, options.maxBatch ?? 64);
    this.hintChannel = options.hintChannel;
  }

  get hints(): boolean {
    return this.hintChannel !== undefined;
  }

  write(request: CheckpointRequest): Promise<CheckpointResult> {
    return new Promise<CheckpointResult>((resolve, reject) => this.enqueue({ request, resolve, reject }));
  }

  /** The next batch: queue order, one write per thread, at most `maxBatch`. */
  protected take(): Pending[] {
    const batch: Pending[] = [];
    const threads = new Set<string>();
    const rest: Pending[] = [];
    for (const pending of this.queue) {
      const thread = pending.request.lease.threadId;
      if (batch.length < this.maxBatch && !threads.has(thread)) {
        threads.add(thread);
        batch.push(pending);
      } else rest.push(pending);
    }
    this.queue = rest;
    return batch;
  }

  protected async send(batch: Pending[]): Promise<void> {
    const options = this.hintChannel === undefined ? {} : { hintChannel: this.hintChannel };
    let results: Array<CheckpointResult | HangarError>;
    try {
      results = await writeCheckpoints(
        this.db,
        batch.map((p) => p.request),
        options,
      );
    } catch (err) {
      const [only] = batch;
      if (batch.length === 1 && only !== undefined) {
        only.reject(err);
        return;
      }
      await Promise.all(
        batch.map((p) => writeCheckpoints(this.db, [p.request]).then(([r]) => settle(p, r), p.reject)),
      );
      return;
    }
    for (const [i, pending] of batch.entries()) settle(pending, results[i]);
  }
}

function settle(pending: Pending, result: CheckpointResult | HangarError | undefined): void {
  if (result === undefined) pending.reject(new Error('a batched checkpoint returned no row for a write'));
  else if (result instanceof Error) pending.reject(result);
  else pending.resolve(result);
}

/** One statement per write, no batching (tools and tests that drive a single attempt). */
export function directCheckpoints(db: Queryable): CheckpointWriter {
  return { write: (r) => writeOneCheckpoint(db, r), hints: false };
}
