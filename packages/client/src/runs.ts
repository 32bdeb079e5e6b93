/**
 * The run resource as the gateway shows it (the LangGraph API's `Run`, plus
 * Hangar's fields), and what creating one takes. Only the fields the client
 * relies on are typed closely; the rest pass through.
 */
export type RunStatus =
  | 'pending'
  | 'running'
  | 'interrupted'
  | 'waiting'
  | 'success'
  | 'error'
  | 'cancelled'
  | 'timeout'
  | 'dead';

export interface Run {
  run_id: string;
  thread_id: string;
  assistant_id: string;
  status: RunStatus;
  attempt?: number;
  created_at: string;
  updated_at: string;
  metadata: Record<string, unknown>;
  [field: string]: unknown;
}

/** The body of `POST /threads/{thread_id}/runs` (docs/api.md). */
export interface RunCreate {
  /** An assistant id or an agent's name. */
  assistant_id: string;
  input?: unknown;
  metadata?: Record<string, unknown>;
  config?: Record<string, unknown>;
  /** A client-chosen run id: idempotent too (the same id and request answer the same run). */
  run_id?: string;
  multitask_strategy?: 'reject' | 'interrupt' | 'rollback' | 'enqueue';
  if_not_exists?: 'create' | 'reject';
  webhook?: string;
  priority?: number;
  [field: string]: unknown;
}

export interface Thread {
  thread_id: string;
  status: string;
  metadata: Record<string, unknown>;
  values: unknown;
  [field: string]: unknown;
}

/** The run statuses a run never leaves. */
export const TERMINAL_STATUSES: readonly RunStatus[] = ['success', 'error', 'cancelled', 'timeout', 'dead'];

/**
 * An idempotency key: a random UUID. `crypto.randomUUID` needs a secure
 * context in browsers (https or localhost); elsewhere 16 random bytes do.
 */
export function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
