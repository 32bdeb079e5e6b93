import { z } from 'zod';
import { checkAgentConcurrency } from '../runs/concurrency.ts';
import { type Duration, toMs } from '../util/duration.ts';
import type { RunLimits } from '../worker/budgets.ts';
import { type RetryPolicy, resolveRetry } from '../worker/retry.ts';
import type { RunContext } from './context.ts';

const AGENT_BRAND = Symbol.for('hangar.agent');
const NAME_PATTERN = /^[a-zA-Z][a-zA-Z0-9_-]{0,63}$/;

export interface AgentSpec<I extends z.ZodType, O> {
  /** Unique name; it is the assistant's `graph_id` and what `hangar run <agent>` takes. */
  name: string;
  description?: string;
  /** Validates run input before the run is created (422 naming the path when it fails). */
  input: I;
  /** Validates the return value; a mismatch ends the run with `output_invalid`. */
  output?: z.ZodType<O>;
  /**
   * How a failed `ctx.step` / `ctx.llm.generate` is retried (durably, with
   * exponential backoff and full jitter); a step's own `retry` overrides it.
   * Default `{ maxAttempts: 3, initialDelayMs: 1000, maxDelayMs: 60000 }`.
   */
  retry?: Partial<RetryPolicy>;
  /** Default timeout of each step (a step's `timeout` overrides it). Default: none. */
  stepTimeout?: Duration;
  /** The run's budgets; a run's `config.configurable.hangar_limits` can tighten them. */
  limits?: RunLimits;
  /**
   * How many runs may run at once, across all workers (runs/concurrency.ts):
   * `{ limit }` caps the agent's runs; `{ key, limit }` caps the runs of one
   * key of a tenant instead (e.g. `key: (input) => input.repo`, one review
   * per repository at a time). The key is computed when the run is created; a
   * create body's `concurrency_key` overrides it.
   */
  concurrency?: { limit: number; key?: (input: z.output<I>) => string };
  /**
   * What one run takes from a worker's capacity (`HANGAR_WORKER_RESOURCES`),
   * beside its slot: e.g. `{ browser: 1 }`. Default `{ slots: 1 }`.
   */
  resources?: Readonly<Record<string, number>>;
  /**
   * The agent's code. Between durable operations (`ctx.step`, `ctx.sleep`,
   * `ctx.llm`, …) it must be deterministic: on resume it runs again from the
   * top and completed steps return their recorded results.
   */
  run(ctx: RunContext, input: z.output<I>): Promise<O>;
}

export interface Agent<I extends z.ZodType = z.ZodType, O = unknown> extends AgentSpec<I, O> {
  readonly [AGENT_BRAND]: true;
}

/**
 * Defines an agent.
 *
 * @example
 * export default defineAgent({
 *   name: 'greeter',
 *   input: z.object({ name: z.string() }),
 *   async run(ctx, input) {
 *     const greeting = await ctx.step('greet', async () => `Hello, ${input.name}`);
 *     await ctx.emit('custom', { greeting });
 *     return { greeting };
 *   },
 * });
 */
export function defineAgent<I extends z.ZodType, O>(spec: AgentSpec<I, O>): Agent<I, O> {
  if (typeof spec !== 'object' || spec === null) throw new TypeError('defineAgent expects an object');
  if (typeof spec.name !== 'string' || !NAME_PATTERN.test(spec.name)) {
    throw new TypeError(
      `agent name ${JSON.stringify(spec.name)} is invalid: use letters, digits, "-" or "_", starting with a letter`,
    );
  }
  if (!isZodSchema(spec.input)) {
    throw new TypeError(
      `agent "${spec.name}": "input" must be a zod schema (import { z } from 'zod', zod v4)`,
    );
  }
  if (typeof spec.run !== 'function') throw new TypeError(`agent "${spec.name}": "run" must be a function`);
  checkPolicies(spec);
  checkAgentConcurrency(spec.name, spec.concurrency, spec.resources);
  return Object.freeze({ ...spec, [AGENT_BRAND]: true as const });
}

/** A wrong retry policy, timeout or limit fails at load time, not in the middle of a run. */
function checkPolicies(spec: AgentSpec<z.ZodType, unknown>): void {
  const fail = (problem: string) => {
    throw new TypeError(`agent "${spec.name}": ${problem}`);
  };
  try {
    resolveRetry(spec.retry);
    if (spec.stepTimeout !== undefined) toMs(spec.stepTimeout, 'stepTimeout');
    if (spec.limits?.maxDuration !== undefined) toMs(spec.limits.maxDuration, 'limits.maxDuration');
  } catch (err) {
    fail((err as Error).message);
  }
  for (const key of ['maxSteps', 'maxTokens', 'maxCostUsd'] as const) {
    const value = spec.limits?.[key];
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)) {
      fail(`limits.${key} must be a positive number`);
    }
  }
}

/** Duck-typed so an app's own copy of zod v4 works too. */
function isZodSchema(value: unknown): value is z.ZodType {
  return (
    typeof value === 'object' &&
    value !== null &&
    '_zod' in value &&
    typeof (value as { safeParse?: unknown }).safeParse === 'function'
  );
}

export function isAgent(value: unknown): value is Agent {
  return (
    typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[AGENT_BRAND] === true
  );
}

/**
 * The agent's input and output schemas as JSON Schema (for `/assistants/{id}/schemas`).
 * The input schema describes what a client may send (`io: 'input'`: fields with a
 * default are optional, a transform's input type is shown); the output schema
 * describes the stored, parsed output.
 */
export function agentJsonSchemas(agent: Agent): { input: unknown; output: unknown } {
  return {
    input: z.toJSONSchema(agent.input, { unrepresentable: 'any', io: 'input' }),
    output: agent.output === undefined ? null : z.toJSONSchema(agent.output, { unrepresentable: 'any' }),
  };
}
