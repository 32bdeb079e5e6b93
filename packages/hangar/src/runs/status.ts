/**
 * The run status machine (ARCHITECTURE.md, "Runs"):
 *
 *   pending → running → (interrupted | waiting) → success | error | cancelled | timeout
 *                                                 + dead (retries exhausted)
 *
 * `waiting` is a run that suspended itself (a durable sleep, a retry backoff)
 * and will be claimed again when `available_at` passes; `interrupted` waits for
 * a human answer. Neither holds a worker.
 */
export const RUN_STATUSES = [
  'pending',
  'running',
  'waiting',
  'interrupted',
  'success',
  'error',
  'cancelled',
  'timeout',
  'dead',
] as const;

export type RunStatus = (typeof RUN_STATUSES)[number];

export const TERMINAL_STATUSES: ReadonlySet<RunStatus> = new Set([
  'success',
  'error',
  'cancelled',
  'timeout',
  'dead',
]);

const TRANSITIONS: Record<RunStatus, readonly RunStatus[]> = {
  pending: ['running', 'cancelled'],
  running: ['pending', 'waiting', 'interrupted', 'success', 'error', 'cancelled', 'timeout', 'dead'],
  waiting: ['running', 'cancelled'],
  interrupted: ['pending', 'cancelled', 'timeout', 'error'],
  success: [],
  error: [],
  cancelled: [],
  timeout: [],
  dead: ['pending'],
};

export function isTerminal(status: RunStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

export function canTransition(from: RunStatus, to: RunStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

export type MultitaskStrategy = 'reject' | 'interrupt' | 'rollback' | 'enqueue';
