import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Bus, Unsubscribe } from '../bus/bus.ts';
import { expireInterrupts } from '../hitl/repository.ts';
import { matchSignals } from '../hitl/signals.ts';
import { claimRuns, releaseRun, requeueExpiredLeases } from '../runs/repository.ts';
import type { ClaimedRun } from '../runs/types.ts';
import type { Agent } from '../sdk/agent.ts';
import type { LlmSettings } from '../sdk/llm.ts';
import type { SqlClient } from '../store/sql.ts';
import { type ExecuteOutcome, executeRun } from './execute.ts';
import type { SessionLiveness } from './liveness.ts';

export interface WorkerOptions {
  db: SqlClient;
  bus: Bus;
  agents: ReadonlyMap<string, Agent>;
  logger: Logger;
  /** Runs executed at once. */
  concurrency: number;
  /** Lease length; a dead worker's run resumes elsewhere within about this long (+ sweep interval). */
  leaseMs: number;
  heartbeatMs: number;
  /** Fallback poll for work when no bus hint arrives. */
  pollMs: number;
  sweepMs: number;
  flushMs: number;
  coalesceMs: number;
  maxBufferedEvents: number;
  llm: LlmSettings;
  id?: string;
  /**
   * On stop, how long runs may take to reach their next step boundary (the
   * step in flight finishes and is checkpointed, then the run is handed back)
   * before they are aborted. 0 (the default) aborts at once.
   */
  drainMs?: number;
  /** Postgres-session liveness (worker/liveness.ts): a dead worker's runs resume without waiting out the lease. */
  liveness?: SessionLiveness;
}

export const WORKER_DEFAULTS = {
  concurrency: 10,
  leaseMs: 5_000,
  heartbeatMs: 1_000,
  pollMs: 1_000,
  sweepMs: 1_000,
  flushMs: 25,
  coalesceMs: 25,
  maxBufferedEvents: 500,
} as const;

/**
 * Claims runs and executes them. Work is found through bus hints (new run,
 * run freed) and, as a fallback, a poll; the sweeper returns runs whose
 * worker died to the queue.
 */
export class Worker {
  readonly id: string;
  private readonly running = new Map<string, Promise<ExecuteOutcome>>();
  private readonly stopController = new AbortController();
  /** Aborted first on stop: no more claims, and attempts end at their next step boundary. */
  private readonly drainController = new AbortController();
  private claiming = false;
  private again = false;
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: Unsubscribe | undefined;
  private unsubscribeCancel: Unsubscribe | undefined;
  /** Per running run: look for a cancel request now (a bus hint said there is one). */
  private readonly cancelChecks = new Map<string, () => void>();
  private readonly agentNames: string[];

  constructor(private readonly options: WorkerOptions) {
    this.id = options.id ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.agentNames = [...options.agents.keys()];
  }

  get activeRuns(): number {
    return this.running.size;
  }

  start(): void {
    this.unsubscribe = this.options.bus.onWork(() => this.wake());
    this.unsubscribeCancel = this.options.bus.onCancel((runId) => this.cancelChecks.get(runId)?.());
    this.timers.push(setInterval(() => this.wake(), this.options.pollMs));
    this.timers.push(setInterval(() => void this.sweep(), this.options.sweepMs));
    for (const t of this.timers) t.unref();
    this.options.logger.info({ worker_id: this.id, agents: this.agentNames }, 'worker started');
    this.wake();
  }

  /** Claims until the worker is full or the queue is empty. Re-entrant calls coalesce. */
  wake(): void {
    if (this.drainController.signal.aborted) return;
    if (this.claiming) {
      this.again = true;
      return;
    }
    this.claiming = true;
    void this.claimLoop().finally(() => {
      this.claiming = false;
      if (this.again) {
        this.again = false;
        this.wake();
      }
    });
  }

  private async claimLoop(): Promise<void> {
    const { db, leaseMs, concurrency, logger } = this.options;
    while (
      !this.drainController.signal.aborted &&
      this.running.size < concurrency &&
      this.agentNames.length > 0
    ) {
      const free = concurrency - this.running.size;
      let claimed: ClaimedRun[];
      try {
        // One statement claims as many runs as there are free slots.
        claimed = await claimRuns(db, {
          owner: this.id,
          leaseMs,
          agents: this.agentNames,
          limit: free,
          livenessKey: this.options.liveness?.heldKey() ?? null,
        });
      } catch (err) {
        logger.warn({ err }, 'claim failed; retrying on the next poll');
        return;
      }
      for (const run of claimed) this.launch(run);
      if (claimed.length < free) return;
    }
  }

  private launch(claimed: ClaimedRun): void {
    const { run } = claimed;
    const agent = this.options.agents.get(run.agent);
    if (agent === undefined) {
      // Cannot happen (claims name this worker's agents), but never let it escape the claim loop.
      this.options.logger.error(
        { run_id: run.run_id, agent: run.agent },
        'claimed a run of an agent not loaded here',
      );
      void releaseRun(this.options.db, claimed.lease).catch(() => false);
      return;
    }
    const tracked = executeRun(
      { ...this.options, cancelChecks: this.cancelChecks, draining: this.drainController.signal },
      claimed,
      agent,
      this.stopController.signal,
    )
      .then(async (outcome) => {
        if (outcome.kind === 'suspended') {
          const timer = setTimeout(() => this.wake(), Math.max(0, outcome.until.getTime() - Date.now()));
          timer.unref();
        }
        if (outcome.kind === 'finished' || outcome.kind === 'released') this.options.bus.notifyWork();
        if (outcome.kind === 'abandoned' && this.stopController.signal.aborted) {
          // Shutting down: hand the run back now instead of letting its lease run out.
          await releaseRun(this.options.db, claimed.lease).catch(() => false);
        }
        return outcome;
      })
      .catch((err: unknown): ExecuteOutcome => {
        this.options.logger.error({ err, run_id: run.run_id }, 'run execution crashed');
        return { kind: 'abandoned', error: err };
      })
      .finally(() => {
        this.running.delete(run.run_id);
        this.wake();
      });
    this.running.set(run.run_id, tracked);
  }

  private async sweep(): Promise<void> {
    try {
      const requeued = await requeueExpiredLeases(this.options.db);
      if (requeued.length > 0) {
        this.options.logger.info({ run_ids: requeued }, 're-queued runs whose lease expired');
        this.options.bus.notifyWork();
        this.wake();
      }
    } catch (err) {
      this.options.logger.warn({ err }, 'lease sweep failed');
    }
    try {
      // Interrupts past their timeout: durable (a row's expires_at), and each expires exactly once.
      const resumed = await expireInterrupts(this.options.db);
      if (resumed.length > 0) {
        this.options.logger.info({ run_ids: resumed }, 'expired interrupts; runs resume');
        this.options.bus.notifyWork();
        this.wake();
      }
    } catch (err) {
      this.options.logger.warn({ err }, 'interrupt expiry sweep failed');
    }
    try {
      // Events that arrived while their wait was being registered, if neither side matched them.
      if ((await matchSignals(this.options.db, null)).length > 0) {
        this.options.bus.notifyWork();
        this.wake();
      }
    } catch (err) {
      this.options.logger.warn({ err }, 'event match sweep failed');
    }
  }

  /**
   * Stops claiming and drains: each run in progress finishes the step it is
   * in, checkpoints it, and is handed back to the queue at its next step
   * boundary without counting the attempt (`drainMs`, default 0). Runs still
   * going after that are aborted and handed back (the interrupted step runs
   * again elsewhere); `deadlineMs` bounds that wait.
   */
  async stop(deadlineMs = 10_000): Promise<void> {
    if (this.drainController.signal.aborted) return;
    this.drainController.abort();
    for (const t of this.timers) clearInterval(t);
    this.unsubscribe?.();
    this.unsubscribeCancel?.();
    const settled = (ms: number) => {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      });
      return Promise.race([Promise.allSettled([...this.running.values()]), deadline]).finally(() =>
        clearTimeout(timer),
      );
    };
    const drainMs = this.options.drainMs ?? 0;
    if (drainMs > 0 && this.running.size > 0) {
      this.options.logger.info(
        { worker_id: this.id, runs: this.running.size, drain_ms: drainMs },
        'draining: runs finish their current step, then go back to the queue',
      );
      await settled(drainMs);
    }
    this.stopController.abort();
    await settled(deadlineMs);
    if (this.running.size > 0) {
      this.options.logger.warn(
        { run_ids: [...this.running.keys()] },
        'runs ignored the abort; their leases will expire',
      );
    }
    this.options.logger.info({ worker_id: this.id }, 'worker stopped');
  }
}
