/**
 * Hangar's public API for agent authors.
 *
 * @example
 * import { defineAgent } from 'hangar';
 * import { z } from 'zod';
 */

export { defineConfig, type HangarConfig } from './config/load.ts';
export {
  CircuitOpenError,
  ERROR_CODES,
  type ErrorCode,
  HangarError,
  NonRetryableError,
  RetryAfterError,
} from './errors.ts';
export type { EventEnvelope } from './events/envelope.ts';
export type { RunStatus } from './runs/status.ts';
export type { Run } from './runs/types.ts';
export { type Agent, type AgentSpec, agentJsonSchemas, defineAgent } from './sdk/agent.ts';
export type { LlmClient, RunContext, StepContext, StepOptions, ThreadState } from './sdk/context.ts';
export type { LlmRequest, LlmResult, LlmUsage, ModelPricing, ModelSpec } from './sdk/llm.ts';
export type { Duration } from './util/duration.ts';
export type { RunLimits } from './worker/budgets.ts';
export type { RetryPolicy } from './worker/retry.ts';
