/**
 * External events for `ctx.waitForEvent` (issue 6): `POST /threads/{id}/events`
 * stores a signal on the thread; a signal is consumed by at most one wait,
 * and a wait by at most one signal.
 *
 * A signal and a wait can each be committed first, so both sides match after
 * their own commit: the sender after storing the signal, the worker after its
 * write that registered the wait (worker/execute.ts). Whichever commits last
 * sees the other, so an event sent before the wait exists is not lost; every
 * worker's sweep also matches, as a safety net.
 */
import { randomUUID } from 'node:crypto';
import { HangarError } from '../errors.ts';
import { json, type Queryable } from '../store/sql.ts';

/**
 * Matches the oldest unconsumed signal to a waiting `wait_event` step (same
 * thread, same name, payload containing the wait's `match`), exactly once:
 * the signal and the run row are locked (`SKIP LOCKED`: a run being claimed is
 * left alone, its wait timed out), the step must still be `sleeping` and the
 * run `waiting`. The step completes with the signal's payload, the signal is
 * marked consumed by the run, and the run becomes claimable now. $1: a thread,
 * or null for every thread (the sweep).
 */
const MATCH_SQL = `
WITH candidate AS (
  SELECT s.signal_id, st.run_id, st.step_index, s.payload
  FROM thread_signals s
  JOIN runs r ON r.thread_id = s.thread_id AND r.tenant_id = s.tenant_id AND r.status = 'waiting'
  JOIN steps st ON st.run_id = r.run_id AND st.kind = 'wait_event' AND st.status = 'sleeping'
  WHERE s.consumed_by IS NULL AND ($1::uuid IS NULL OR s.thread_id = $1::uuid)
    AND s.name = st.result->'wait'->>'name'
    AND (jsonb_typeof(st.result->'wait'->'match') IS DISTINCT FROM 'object'
      OR s.payload @> (st.result->'wait'->'match'))
  ORDER BY s.created_at, s.signal_id, st.step_index
  LIMIT 1
  FOR UPDATE OF s, r SKIP LOCKED
), step AS (
  UPDATE steps st SET status = 'completed', result = jsonb_build_object('v', c.payload), finished_at = now()
  FROM candidate c WHERE st.run_id = c.run_id AND st.step_index = c.step_index AND st.status = 'sleeping'
  RETURNING st.run_id
), consumed AS (
  UPDATE thread_signals s SET consumed_by = c.run_id FROM candidate c, step WHERE s.signal_id = c.signal_id
  RETURNING s.signal_id
), woke AS (
  UPDATE runs r SET available_at = now(), updated_at = now()
  FROM candidate c, step WHERE r.run_id = c.run_id AND r.status = 'waiting'
  RETURNING r.run_id
)
SELECT c.signal_id, c.run_id FROM candidate c, step`;

export interface SignalMatch {
  signal_id: string;
  run_id: string;
}

/** Matches signals to waits until none is left (at most `limit`); returns the matches (their runs are claimable). */
export async function matchSignals(
  db: Queryable,
  threadId: string | null,
  limit = 100,
): Promise<SignalMatch[]> {
  const matches: SignalMatch[] = [];
  for (let i = 0; i < limit; i++) {
    const res = await db.query<SignalMatch>(MATCH_SQL, [threadId]);
    const row = res.rows[0];
    if (row === undefined) break;
    matches.push(row);
  }
  return matches;
}

/**
 * Stores an event on the tenant's thread and matches it (and any earlier
 * one) to a waiting run. Returns the signal's id and the run that consumed it
 * now, if any; otherwise the signal waits for a `ctx.waitForEvent` to come.
 */
export async function sendSignal(
  db: Queryable,
  tenantId: string,
  threadId: string,
  event: { name: string; payload: unknown },
): Promise<{ signal_id: string; consumed_by: string | null }> {
  const signalId = randomUUID();
  const res = await db.query(
    `INSERT INTO thread_signals (signal_id, tenant_id, thread_id, name, payload)
     SELECT $1, tenant_id, thread_id, $4, $5::jsonb FROM threads WHERE thread_id = $2 AND tenant_id = $3`,
    [signalId, threadId, tenantId, event.name, json(event.payload ?? null)],
  );
  if (res.rowCount === 0) {
    throw new HangarError('not_found', `thread ${threadId} not found`, { details: { thread_id: threadId } });
  }
  await matchSignals(db, threadId);
  const consumed = await db.query<{ consumed_by: string | null }>(
    'SELECT consumed_by FROM thread_signals WHERE signal_id = $1',
    [signalId],
  );
  return { signal_id: signalId, consumed_by: consumed.rows[0]?.consumed_by ?? null };
}
