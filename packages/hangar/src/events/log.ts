import { randomUUID } from 'node:crypto';
import { iso, json, type Queryable } from '../store/sql.ts';
import type { EventEnvelope, PendingEvent } from './envelope.ts';

type EventRow = {
  seq: number;
  event_id: string;
  thread_id: string;
  run_id: string | null;
  attempt: number;
  ts: Date;
  channel: string;
  namespace: string[];
  data: unknown;
};

function toEnvelope(row: EventRow): EventEnvelope {
  return {
    seq: Number(row.seq),
    event_id: row.event_id,
    thread_id: row.thread_id,
    run_id: row.run_id,
    attempt: Number(row.attempt),
    ts: iso(row.ts) ?? '',
    channel: row.channel,
    namespace: row.namespace,
    data: row.data,
  };
}

export interface AppendContext {
  tenantId: string;
  threadId: string;
  runId: string | null;
  attempt: number;
}

/**
 * Appends events to a thread's log inside the caller's transaction. The seq
 * range is taken from the thread row, whose lock is held until commit, so
 * sequences commit in order: a reader never sees seq n+1 before seq n.
 * Events whose `opKey` the run already logged are dropped (replay of an emit
 * outside a step).
 */
export async function appendEvents(
  tx: Queryable,
  ctx: AppendContext,
  events: readonly PendingEvent[],
): Promise<EventEnvelope[]> {
  if (events.length === 0) return [];
  let fresh = events;
  const opKeys = events.flatMap((e) => (e.opKey === undefined ? [] : [e.opKey]));
  if (opKeys.length > 0 && ctx.runId !== null) {
    const seen = await tx.query<{ op_key: string }>(
      // Arrays travel as JSON: PGlite and pg serialize JS arrays differently.
      'SELECT op_key FROM events WHERE run_id = $1 AND op_key IN (SELECT jsonb_array_elements_text($2::jsonb))',
      [ctx.runId, json(opKeys)],
    );
    if (seen.rowCount > 0) {
      const logged = new Set(seen.rows.map((r) => r.op_key));
      fresh = events.filter((e) => e.opKey === undefined || !logged.has(e.opKey));
      if (fresh.length === 0) return [];
    }
  }
  const counter = await tx.query<{ last_seq: number }>(
    'UPDATE threads SET last_seq = last_seq + $2 WHERE thread_id = $1 RETURNING last_seq',
    [ctx.threadId, fresh.length],
  );
  const last = counter.rows[0]?.last_seq;
  if (last === undefined) throw new Error(`thread ${ctx.threadId} not found while appending events`);
  const first = Number(last) - fresh.length + 1;
  const ts = new Date().toISOString();
  const envelopes: EventEnvelope[] = fresh.map((e, i) => ({
    seq: first + i,
    event_id: randomUUID(),
    thread_id: ctx.threadId,
    run_id: ctx.runId,
    attempt: ctx.attempt,
    ts,
    channel: e.channel,
    namespace: e.namespace ?? [],
    data: e.data ?? null,
  }));
  // One multi-row INSERT from JSON keeps this a single round trip.
  await tx.query(
    `INSERT INTO events (thread_id, seq, event_id, tenant_id, run_id, attempt, ts, channel, namespace, data, op_key)
     SELECT $1, e.seq, e.event_id, $2, $3, $4, $5, e.channel, e.namespace, e.data, e.op_key
     FROM jsonb_to_recordset($6::jsonb)
       AS e(seq bigint, event_id uuid, channel text, namespace jsonb, data jsonb, op_key text)`,
    [
      ctx.threadId,
      ctx.tenantId,
      ctx.runId,
      ctx.attempt,
      ts,
      json(
        envelopes.map((env, i) => ({
          seq: env.seq,
          event_id: env.event_id,
          channel: env.channel,
          namespace: env.namespace,
          data: env.data,
          op_key: fresh[i]?.opKey ?? null,
        })),
      ),
    ],
  );
  return envelopes;
}

export interface ReadOptions {
  afterSeq: number;
  limit: number;
  /** Only this run's events. */
  runId?: string;
}

/** Reads a page of a thread's log after a position, in seq order. */
export async function readEvents(
  db: Queryable,
  tenantId: string,
  threadId: string,
  options: ReadOptions,
): Promise<EventEnvelope[]> {
  const params: unknown[] = [threadId, tenantId, options.afterSeq, options.limit];
  let filter = '';
  if (options.runId !== undefined) {
    params.push(options.runId);
    filter = 'AND run_id = $5';
  }
  const res = await db.query<EventRow>(
    `SELECT seq, event_id, thread_id, run_id, attempt, ts, channel, namespace, data FROM events
     WHERE thread_id = $1 AND tenant_id = $2 AND seq > $3 ${filter}
     ORDER BY seq LIMIT $4`,
    params,
  );
  return res.rows.map(toEnvelope);
}

/** The seq of a thread's last event (0 before the first), or null when the thread does not exist. */
export async function readLastSeq(db: Queryable, tenantId: string, threadId: string): Promise<number | null> {
  const res = await db.query<{ last_seq: number }>(
    'SELECT last_seq FROM threads WHERE thread_id = $1 AND tenant_id = $2',
    [threadId, tenantId],
  );
  const row = res.rows[0];
  return row === undefined ? null : Number(row.last_seq);
}
