import { z } from 'zod';
import { HangarError } from '../errors.ts';
import type { ModelPricing } from '../sdk/llm.ts';
import type { StepRecord } from '../steps/repository.ts';
import { type Duration, toMs } from '../util/duration.ts';

/**
 * A run's limits (`defineAgent({ limits })`): the engine ends a run that goes
 * over one with `budget_exceeded` (status `timeout` for `maxDuration`, `error`
 * otherwise), which is what stops an agent stuck in a loop from burning quota.
 */
export interface RunLimits {
  /** Durable operations (`ctx.step`, `ctx.llm.generate`, `ctx.sleep`, …) the run may start. */
  maxSteps?: number;
  /** Total tokens (input + output) of the run's `ctx.llm` calls. */
  maxTokens?: number;
  /** Cost of the run's `ctx.llm` calls, in USD, from the `pricing` table in `hangar.config.ts`. */
  maxCostUsd?: number;
  /** Wall time since the run first started, across attempts and waits. */
  maxDuration?: Duration;
}

export type BudgetName = 'maxSteps' | 'maxTokens' | 'maxCostUsd' | 'maxDuration';

const positive = z.number().finite().positive();

/**
 * The per-run override a client may send in `config.configurable.hangar_limits`
 * (snake_case like the rest of the API). It can only tighten the agent's limits.
 */
export const RunLimitsOverride = z.strictObject({
  max_steps: positive.int().optional(),
  max_tokens: positive.int().optional(),
  max_cost_usd: positive.optional(),
  max_duration: z
    .union([positive, z.string().regex(/^\d+(?:\.\d+)?(ms|s|m|h|d)$/, 'a duration such as "30s" or "2h"')])
    .optional(),
});

/** The limits of one run: the agent's, tightened by the run's override (`config.configurable.hangar_limits`). */
export function runLimits(agentLimits: RunLimits | undefined, config: Record<string, unknown>): RunLimits {
  const configurable = config.configurable as Record<string, unknown> | undefined;
  const raw =
    typeof configurable === 'object' && configurable !== null ? configurable.hangar_limits : undefined;
  const limits: RunLimits = { ...agentLimits };
  if (raw === undefined || raw === null) return limits;
  const parsed = RunLimitsOverride.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = ['config', 'configurable', 'hangar_limits', ...(issue?.path ?? [])].join('.');
    throw new HangarError('input_invalid', `${path}: ${issue?.message ?? 'invalid'}`, {
      details: { issues: parsed.error.issues.map((i) => ({ path, message: i.message })) },
    });
  }
  const o = parsed.data;
  const tighter = (a: number | undefined, b: number | undefined) =>
    a === undefined ? b : b === undefined ? a : Math.min(a, b);
  const steps = tighter(limits.maxSteps, o.max_steps);
  const tokens = tighter(limits.maxTokens, o.max_tokens);
  const cost = tighter(limits.maxCostUsd, o.max_cost_usd);
  const agentMs =
    limits.maxDuration === undefined ? undefined : toMs(limits.maxDuration, 'limits.maxDuration');
  const runMs =
    o.max_duration === undefined ? undefined : toMs(o.max_duration as Duration, 'hangar_limits.max_duration');
  const duration = tighter(agentMs, runMs);
  return {
    ...(steps === undefined ? {} : { maxSteps: steps }),
    ...(tokens === undefined ? {} : { maxTokens: tokens }),
    ...(cost === undefined ? {} : { maxCostUsd: cost }),
    ...(duration === undefined ? {} : { maxDuration: duration }),
  };
}

/** An LLM call's recorded usage (the `usage` of its step row). */
export interface RecordedUsage {
  totalTokens?: number;
  inputTokens?: number;
  outputTokens?: number;
  model?: string;
}

/**
 * What a run has spent, rebuilt from its step history at every attempt (so
 * budgets hold across crashes and waits without state of their own), and
 * checked before each new durable operation.
 */
export class RunBudget {
  private tokens = 0;
  private costUsd = 0;
  /** When `maxDuration` runs out, if the run has one. */
  readonly deadline: Date | undefined;

  constructor(
    private readonly limits: RunLimits,
    private readonly pricing: ModelPricing,
    history: readonly StepRecord[],
    startedAt: Date,
  ) {
    for (const step of history) if (step.usage !== null) this.record(step.usage as RecordedUsage);
    this.deadline =
      limits.maxDuration === undefined
        ? undefined
        : new Date(startedAt.getTime() + toMs(limits.maxDuration, 'limits.maxDuration'));
  }

  /** Adds an LLM call's usage. */
  record(usage: RecordedUsage): void {
    const input = usage.inputTokens ?? 0;
    const output = usage.outputTokens ?? 0;
    this.tokens += usage.totalTokens ?? input + output;
    const price = usage.model === undefined ? undefined : this.pricing[usage.model];
    if (price !== undefined) {
      this.costUsd += (input * price.inputPerMTokUsd + output * price.outputPerMTokUsd) / 1_000_000;
    }
  }

  /** Throws `budget_exceeded` when starting operation #`index` would go over a limit (or one is spent). */
  check(index: number): void {
    const { maxSteps, maxTokens, maxCostUsd } = this.limits;
    if (maxSteps !== undefined && index >= maxSteps) throw budgetExceeded('maxSteps', maxSteps, index + 1);
    if (maxTokens !== undefined && this.tokens >= maxTokens) {
      throw budgetExceeded('maxTokens', maxTokens, this.tokens);
    }
    if (maxCostUsd !== undefined && this.costUsd >= maxCostUsd) {
      throw budgetExceeded('maxCostUsd', maxCostUsd, Math.round(this.costUsd * 1e6) / 1e6);
    }
    this.checkDuration();
  }

  /** Throws `budget_exceeded` (maxDuration) once the run's wall time is spent. */
  checkDuration(): void {
    if (this.deadline !== undefined && Date.now() >= this.deadline.getTime()) throw this.durationExceeded();
  }

  durationExceeded(): HangarError {
    const limit = toMs(this.limits.maxDuration ?? 0);
    const started = (this.deadline?.getTime() ?? Date.now()) - limit;
    return budgetExceeded('maxDuration', limit, Date.now() - started);
  }
}

function budgetExceeded(budget: BudgetName, limit: number, value: number): HangarError {
  return new HangarError(
    'budget_exceeded',
    `the run went over its ${budget} budget: ${value} for a limit of ${limit}`,
    {
      details: { budget, limit, value },
    },
  );
}

/** The run status a budget error ends the run with: running out of time is a `timeout`. */
export function budgetStatus(err: HangarError): 'timeout' | 'error' {
  return err.details?.budget === 'maxDuration' ? 'timeout' : 'error';
}
