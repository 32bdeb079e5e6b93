import type { Queryable } from '../store/sql.ts';

export type StepKind = 'step' | 'sleep' | 'llm' | 'interrupt' | 'wait_event';

/** A recorded step, by its position in the run's sequence of durable operations. */
export interface StepRecord {
  index: number;
  name: string;
  kind: StepKind;
  status: 'completed' | 'failed' | 'sleeping' | 'interrupted';
  result: unknown;
  attempt: number;
  usage: Record<string, unknown> | null;
  wakeAt: Date | null;
}

/** A step row as SQL returns it (also inside a claim's JSON history, where timestamps are strings). */
export type StepHistoryRow = {
  step_index: number;
  name: string;
  kind: StepKind;
  status: StepRecord['status'];
  result: unknown;
  attempt: number;
  usage: Record<string, unknown> | null;
  wake_at: Date | string | null;
};

export function toStepRecord(r: StepHistoryRow): StepRecord {
  return {
    index: Number(r.step_index),
    name: r.name,
    kind: r.kind,
    status: r.status,
    result: r.result,
    attempt: Number(r.attempt),
    usage: r.usage,
    wakeAt: r.wake_at === null ? null : new Date(r.wake_at),
  };
}

export async function loadSteps(db: Queryable, runId: string): Promise<StepRecord[]> {
  const res = await db.query<StepHistoryRow>(
    `SELECT step_index, name, kind, status, result, attempt, usage, wake_at FROM steps
     WHERE run_id = $1 ORDER BY step_index`,
    [runId],
  );
  return res.rows.map(toStepRecord);
}

export interface StepWrite {
  index: number;
  name: string;
  kind: StepKind;
  status: StepRecord['status'];
  result?: unknown;
  attempt: number;
  usage?: Record<string, unknown>;
  wakeAt?: Date;
  startedAt: Date;
}
