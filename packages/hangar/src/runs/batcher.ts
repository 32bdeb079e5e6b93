import { randomUUID } from 'node:crypto';
import { GroupCommit } from '../store/group-commit.ts';
import { json, type SqlClient } from '../store/sql.ts';
import { type CreateRunInput, createRun, RUN_COLUMNS, type RunRow, toRun } from './repository.ts';
import type { Run } from './types.ts';

export interface BatcherOptions {
  /** Batches written at once (each one statement, one commit). */
  maxInFlight?: number;
  /** Most creates in one statement. */
  maxBatch?: number;
}

interface Pending {
  input: CreateRunInput;
  resolve(run: Run): void;
  reject(err: unknown): void;
}

/**
 * Group commit for stateless creates (`POST /runs`). A commit costs a WAL
 * flush, and on a busy disk that flush, not the insert, is what bounds
 * creates per second: so creates that arrive while earlier ones are being
 * written wait for the next statement and share its commit. With the
 * database idle a create is written at once, alone; under load each statement
 * carries everything that queued behind the previous one (up to `maxBatch`).
 *
 * One statement inserts every thread and run of a batch: each run is still
 * created and enqueued together with its thread, atomically. If the
 * statement fails (a client-chosen run id that is taken, say), each create of
 * the batch is retried on its own, so every request gets its own answer.
 *
 * Only creates without a thread, webhook, concurrency key or multitask effects
 * come here; the rest take `createRun` directly.
 */
export class RunCreateBatcher extends GroupCommit<Pending> {
  private readonly maxBatch: number;

  constructor(
    private readonly db: SqlClient,
    options: BatcherOptions = {},
  ) {
    super(options.maxInFlight ?? 4);
    this.maxBatch = options.maxBatch ?? 200;
  }

  /** Whether a create can be batched: a new thread, nothing written beside the run and its thread. */
  static accepts(input: CreateRunInput): boolean {
    return input.threadId === undefined && input.webhook === undefined && input.concurrency === undefined;
  }

  create(input: CreateRunInput): Promise<Run> {
    return new Promise<Run>((resolve, reject) => this.enqueue({ input, resolve, reject }));
  }

  protected take(): Pending[] {
    return this.queue.splice(0, this.maxBatch);
  }

  protected async send(batch: Pending[]): Promise<void> {
    const rows = batch.map(({ input }, i) => ({
      i,
      run_id: input.runId ?? randomUUID(),
      thread_id: randomUUID(),
      tenant_id: input.tenantId,
      assistant_id: input.assistantId,
      agent: input.agent,
      input: input.input ?? null,
      config: input.config ?? {},
      metadata: input.metadata ?? {},
      kwargs: input.kwargs ?? {},
      multitask_strategy: input.multitaskStrategy ?? 'reject',
      priority: input.priority ?? 0,
    }));
    let created: Map<string, Run>;
    try {
      const res = await this.db.query<RunRow>(BATCH_SQL, [json(rows)]);
      created = new Map(res.rows.map((row) => [row.run_id, toRun(row)]));
    } catch {
      // One bad create spoils the statement: give each its own answer.
      await Promise.all(batch.map((p) => createRun(this.db, p.input).then(p.resolve, p.reject)));
      return;
    }
    for (const [i, pending] of batch.entries()) {
      const run = created.get(rows[i]?.run_id ?? '');
      if (run === undefined) pending.reject(new Error('batched create returned no row for a run'));
      else pending.resolve(run);
    }
  }
}

const BATCH_SQL = `
WITH input AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(i integer, run_id uuid, thread_id uuid, tenant_id text,
    assistant_id uuid, agent text, input jsonb, config jsonb, metadata jsonb, kwargs jsonb,
    multitask_strategy text, priority integer)
), new_threads AS (
  INSERT INTO threads (thread_id, tenant_id, metadata)
  SELECT thread_id, tenant_id, '{"stateless": true}'::jsonb FROM input
)
INSERT INTO runs (run_id, tenant_id, thread_id, assistant_id, agent, input, config, metadata, kwargs,
  multitask_strategy, priority)
SELECT run_id, tenant_id, thread_id, assistant_id, agent, COALESCE(input, 'null'::jsonb), config, metadata, kwargs,
  multitask_strategy, priority
FROM input ORDER BY i
RETURNING ${RUN_COLUMNS}`;
