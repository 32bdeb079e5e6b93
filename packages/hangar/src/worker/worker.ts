import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Bus, Unsubscribe } from '../bus/bus.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import { expireInterrupts } from '../hitl/repository.ts';
import { matchSignals } from '../hitl/signals.ts';
import {
  type AgentClaimRules,
  agentResources,
  fits,
  type Resources,
  workerCapacity,
} from '../runs/concurrency.ts';
import {
  type ClaimResult,
  claimRunsWithPolicy,
  releaseRun,
  requeueExpiredLeases,
} from '../runs/repository.ts';
import type { ClaimedRun } from '../runs/types.ts';
import type { Agent } from '../sdk/agent.ts';
import type { LlmSettings } from '../sdk/llm.ts';
import type { SqlClient } from '../store/sql.ts';
import type { BreakerRegistry } from './breakers.ts';
import { CheckpointBatcher } from './checkpoints.ts';
import { type ExecuteOutcome, executeRun } from './execute.ts';
import type { SessionLiveness } from './liveness.ts';

export interface WorkerOptions {
  db: SqlClient;
  bus: Bus;
  agents: ReadonlyMap<string, Agent>;
  logger: Logger;
  /** Runs executed at once (the worker's `slots`, unless `resources` names them). */
  concurrency: number;
  /** Capacity by resource, e.g. `{ slots: 10, browser: 2 }` (`HANGAR_WORKER_RESOURCES`); runs take their agent's `resources`. */
  resources?: Resources;
  /** Runs of one tenant running at once across all workers (`HANGAR_TENANT_CONCURRENCY`); per-tenant overrides in `tenantLimits`. */
  tenantLimit?: number | null;
  tenantLimits?: Readonly<Record<string, number>>;
  /** Stop claiming while the process's RSS is above this many MiB (`HANGAR_WORKER_MAX_RSS_MB`); resume below. */
  maxRssMb?: number;
  /** How the process's RSS is read, in bytes (default `process.memoryUsage.rss`; tests pass their own). */
  rssBytes?: () => number;
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
  /** Circuit breakers of LLM providers and tools (worker/breakers.ts); default: the process's. */
  breakers?: BreakerRegistry;
  /** The crash-loop cap: attempts after which the sweeper ends a dead worker's run `dead` (default 5). */
  maxRunAttempts?: number;
  /**
   * Group commit of the worker's checkpoints (worker/checkpoints.ts): statements
   * in flight at once, and most writes in one (`HANGAR_CHECKPOINT_IN_FLIGHT`,
   * `HANGAR_CHECKPOINT_BATCH`; defaults 2 and 64).
   */
  checkpointsInFlight?: number;
  checkpointBatch?: number;
  /**
   * A busy worker with only a few free slots waits up to this long for more
   * to free before it claims (`HANGAR_CLAIM_GATHER_MS`, default 5; 0: claim at
   * once). A claim costs about the same for one run as for ten, so under load
   * this claims several runs a statement instead of one or two.
   */
  claimGatherMs?: number;
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
  claimGatherMs: 5,
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
  private gatherTimer: NodeJS.Timeout | undefined;
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: Unsubscribe | undefined;
  private unsubscribeCancel: Unsubscribe | undefined;
  /** Per running run: look for a cancel request now (a bus hint said there is one). */
  private readonly cancelChecks = new Map<string, () => void>();
  private readonly agentNames: string[];
  /** What the worker has, and what each running run takes of it. */
  readonly capacity: Resources;
  private readonly taken = new Map<string, Resources>();
  private readonly claimRules: Record<string, AgentClaimRules>;
  private memoryPaused = false;
  /** Every checkpoint of every run this worker executes goes through here (group commit). */
  private readonly checkpoints: CheckpointBatcher;

  constructor(private readonly options: WorkerOptions) {
    this.id = options.id ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.checkpoints = new CheckpointBatcher(options.db, {
      ...(options.checkpointsInFlight === undefined ? {} : { maxInFlight: options.checkpointsInFlight }),
      ...(options.checkpointBatch === undefined ? {} : { maxBatch: options.checkpointBatch }),
      ...(options.bus.hintChannel === undefined ? {} : { hintChannel: options.bus.hintChannel }),
    });
    this.agentNames = [...options.agents.keys()];
    this.capacity = workerCapacity(options.concurrency, options.resources);
    this.claimRules = Object.fromEntries(
      [...options.agents].map(([name, agent]) => [
        name,
        {
          // With a key, the limit is per key and stored on each run at create; without, it caps the agent.
          limit:
            agent.concurrency !== undefined && agent.concurrency.key === undefined
              ? agent.concurrency.limit
              : null,
          resources: agentResources(agent.resources),
        },
      ]),
    );
  }

  get activeRuns(): number {
    return this.running.size;
  }

  /** Whether claims are paused because the process's memory is above `maxRssMb`. */
  get claimsPaused(): boolean {
    return this.memoryPaused;
  }

  /** Capacity not taken by running runs. */
  freeCapacity(): Resources {
    const free: Record<string, number> = { ...this.capacity };
    for (const resources of this.taken.values()) {
      for (const [name, amount] of Object.entries(resources)) free[name] = (free[name] ?? 0) - amount;
    }
    return free;
  }

  /** Above the memory threshold: no claims until the RSS is back under it (logged on each change). */
  private overMemory(): boolean {
    const { maxRssMb, logger } = this.options;
    if (maxRssMb === undefined) return false;
    const rssMb = Math.round((this.options.rssBytes ?? process.memoryUsage.rss)() / (1024 * 1024));
    const over = rssMb > maxRssMb;
    if (over !== this.memoryPaused) {
      this.memoryPaused = over;
      if (over) {
        logger.warn(
          { worker_id: this.id, rss_mb: rssMb, max_rss_mb: maxRssMb, active_runs: this.running.size },
          'memory above HANGAR_WORKER_MAX_RSS_MB: claims paused',
        );
      } else {
        logger.info(
          { worker_id: this.id, rss_mb: rssMb, max_rss_mb: maxRssMb },
          'memory back under HANGAR_WORKER_MAX_RSS_MB: claims resume',
        );
      }
    }
    return over;
  }

  start(): void {
    this.unsubscribe = this.options.bus.onWork(() => this.wake());
    this.unsubscribeCancel = this.options.bus.onCancel((runId) => this.cancelChecks.get(runId)?.());
    this.timers.push(setInterval(() => this.wake(), this.options.pollMs));
    this.timers.push(setInterval(() => void this.sweep(), this.options.sweepMs));
    for (const t of this.timers) t.unref();
    this.options.logger.info(
      { worker_id: this.id, agents: this.agentNames, capacity: this.capacity },
      'worker started',
    );
    for (const [name, rules] of Object.entries(this.claimRules)) {
      if (fits(rules.resources, this.capacity) === 0) {
        this.options.logger.warn(
          { agent: name, resources: rules.resources, capacity: this.capacity },
          "this worker never runs the agent: one run needs more than the worker's capacity",
        );
      }
    }
    this.wake();
  }

  /** Claims until the worker is full or the queue is empty. Re-entrant calls coalesce. */
  wake(): void {
    if (!this.claiming && this.gathering()) return;
    this.claimNow();
  }

  /**
   * Whether to wait a moment for more free slots before claiming: runs are
   * running and only a few slots (under a quarter) are free. The wait ends
   * when enough slots free up (each ending wakes the worker) or after
   * `claimGatherMs`.
   */
  private gathering(): boolean {
    const gatherMs = this.options.claimGatherMs ?? WORKER_DEFAULTS.claimGatherMs;
    const capacity = this.capacity.slots ?? 0;
    const free = this.freeCapacity().slots ?? 0;
    const enough = free >= Math.ceil(capacity / 4);
    if (gatherMs <= 0 || this.running.size === 0 || free <= 0 || enough) {
      if (this.gatherTimer !== undefined) clearTimeout(this.gatherTimer);
      this.gatherTimer = undefined;
      return false;
    }
    if (this.gatherTimer === undefined) {
      this.gatherTimer = setTimeout(() => {
        this.gatherTimer = undefined;
        this.claimNow();
      }, gatherMs);
    }
    return true;
  }

  /** A claim now, without gathering (the gather wait is over). */
  private claimNow(): void {
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
    const { db, leaseMs, logger } = this.options;
    let retried = false;
    while (!this.drainController.signal.aborted && this.agentNames.length > 0 && !this.overMemory()) {
      const free = this.freeCapacity();
      const slots = free.slots ?? 0;
      if (slots <= 0) return;
      let result: ClaimResult;
      try {
        // One statement claims as many runs as fit the free capacity, within the caps (runs/concurrency.ts).
        result = await claimRunsWithPolicy(db, {
          owner: this.id,
          leaseMs,
          agents: this.agentNames,
          limit: slots,
          livenessKey: this.options.liveness?.heldKey() ?? null,
          policy: {
            agents: this.claimRules,
            free,
            tenantLimit: this.options.tenantLimit ?? null,
            tenantLimits: this.options.tenantLimits ?? {},
          },
        });
      } catch (err) {
        logger.warn({ err }, 'claim failed; retrying on the next poll');
        return;
      }
      for (const run of result.runs) this.launch(run);
      // Runs parked behind full keys: the queue's head moved on to the runs behind them.
      if (result.parked > 0) continue;
      // Caps met for the first time held their runs back this once: claim again at once.
      if (result.countersCreated && !retried) {
        retried = true;
        continue;
      }
      if (result.runs.length < slots) return;
    }
  }

  /** Whether a run counts against a tenant or agent cap (its ending frees a place other workers may wait for). */
  private capped(run: { tenant_id: string; agent: string }): boolean {
    const { tenantLimit, tenantLimits } = this.options;
    return (
      (tenantLimit ?? null) !== null ||
      tenantLimits?.[run.tenant_id] !== undefined ||
      (this.claimRules[run.agent]?.limit ?? null) !== null
    );
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
      {
        ...this.options,
        cancelChecks: this.cancelChecks,
        draining: this.drainController.signal,
        checkpoints: this.checkpoints,
      },
      claimed,
      agent,
      this.stopController.signal,
    )
      .then(async (outcome) => {
        if (outcome.kind === 'suspended') {
          const timer = setTimeout(() => this.wake(), Math.max(0, outcome.until.getTime() - Date.now()));
          timer.unref();
        }
        // A run handed back is claimable again. A run that ended gave back a place of a tenant or
        // agent cap, which other workers may be waiting for; the runs its ending released (the
        // thread's next run, parked runs of its key) were announced by its write (RunCommitter).
        if (outcome.kind === 'released' || (outcome.kind === 'finished' && this.capped(run)))
          this.options.bus.notifyWork();
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
        this.taken.delete(run.run_id);
        this.wake();
      });
    this.running.set(run.run_id, tracked);
    this.taken.set(run.run_id, this.claimRules[run.agent]?.resources ?? { slots: 1 });
  }

  private async sweep(): Promise<void> {
    try {
      const effects = { dead: [] as string[], events: [] as EventEnvelope[] };
      const requeued = await requeueExpiredLeases(this.options.db, 100, {
        ...(this.options.maxRunAttempts === undefined ? {} : { maxAttempts: this.options.maxRunAttempts }),
        effects,
      });
      if (requeued.length > 0) {
        this.options.logger.info({ run_ids: requeued }, 're-queued runs whose lease expired');
      }
      if (effects.dead.length > 0) {
        // Crash-looping runs (runs/repository.ts): dead letters now; their followers get the terminal event.
        this.options.logger.warn({ run_ids: effects.dead }, 'runs whose worker kept dying are dead letters');
        for (const event of effects.events) this.options.bus.publishEvents(event.thread_id, [event]);
      }
      if (requeued.length > 0 || effects.dead.length > 0) {
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
    if (this.gatherTimer !== undefined) clearTimeout(this.gatherTimer);
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
