import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { APICallError } from '@ai-sdk/provider';
import { type LanguageModel, type ModelMessage, streamText } from 'ai';
import { HangarError, NonRetryableError, RetryAfterError } from '../errors.ts';

/**
 * A model: `"openai:gpt-4o-mini"`, `"anthropic:claude-sonnet-4-5"`,
 * `"compatible:<model>"` (any OpenAI-compatible server at `baseURL`), or an AI
 * SDK `LanguageModel` instance.
 */
export type ModelSpec = string | Exclude<LanguageModel, string>;

/** Resolved LLM settings (from `hangar.config.ts` and the environment, at the edge). */
export interface LlmSettings {
  model?: ModelSpec;
  /** Base URL for `compatible:` models (and to point `openai:` at a proxy). */
  baseURL?: string;
  apiKeys?: { openai?: string; anthropic?: string; compatible?: string };
  /** Prices by model (`"openai:gpt-4o-mini"`), for the `maxCostUsd` budget (`pricing` in hangar.config.ts). */
  pricing?: ModelPricing;
}

/**
 * USD per million tokens, by model name as `provider:model` (what
 * `LlmResult.model` says). A model missing here costs nothing in budgets.
 *
 * @example
 * pricing: { 'openai:gpt-4o-mini': { inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 } }
 */
export type ModelPricing = Record<string, { inputPerMTokUsd: number; outputPerMTokUsd: number }>;

export interface LlmRequest {
  prompt?: string;
  system?: string;
  messages?: ModelMessage[];
  /** Overrides the configured model for this call. */
  model?: ModelSpec;
  temperature?: number;
  maxOutputTokens?: number;
}

export interface LlmUsage {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
}

export interface LlmResult {
  text: string;
  finishReason: string;
  usage: LlmUsage;
  model: string;
}

export const MODEL_HELP =
  'set HANGAR_MODEL (e.g. "openai:gpt-4o-mini" with OPENAI_API_KEY, "anthropic:claude-sonnet-4-5" with ' +
  'ANTHROPIC_API_KEY, or "compatible:<model>" with HANGAR_LLM_BASE_URL) or `llm.model` in hangar.config.ts';

export function resolveModel(
  spec: ModelSpec | undefined,
  settings: LlmSettings,
): Exclude<LanguageModel, string> {
  if (spec === undefined) {
    throw new HangarError('llm_not_configured', `no language model is configured: ${MODEL_HELP}`);
  }
  if (typeof spec !== 'string') return spec;
  const sep = spec.indexOf(':');
  const provider = sep > 0 ? spec.slice(0, sep) : '';
  const modelId = spec.slice(sep + 1);
  if (modelId === '')
    throw new HangarError('llm_not_configured', `model "${spec}" names no model: ${MODEL_HELP}`);
  switch (provider) {
    case 'openai':
      return createOpenAI({
        apiKey: settings.apiKeys?.openai,
        ...(settings.baseURL === undefined ? {} : { baseURL: settings.baseURL }),
      })(modelId);
    case 'anthropic':
      return createAnthropic({ apiKey: settings.apiKeys?.anthropic })(modelId);
    case 'compatible':
      if (settings.baseURL === undefined) {
        throw new HangarError(
          'llm_not_configured',
          `model "${spec}" needs a base URL: set HANGAR_LLM_BASE_URL`,
        );
      }
      return createOpenAICompatible({
        name: 'compatible',
        baseURL: settings.baseURL,
        ...(settings.apiKeys?.compatible === undefined ? {} : { apiKey: settings.apiKeys.compatible }),
      })(modelId);
    default:
      throw new HangarError('llm_not_configured', `model "${spec}" has an unknown provider: ${MODEL_HELP}`);
  }
}

export function modelName(model: Exclude<LanguageModel, string>): string {
  return `${model.provider}:${model.modelId}`;
}

/** Sink for a streamed message, in the Agent Protocol's `messages` event shapes. */
export type MessageSink = (data: Record<string, unknown>) => void;

/**
 * Streams one model call. Deltas are coalesced for `coalesceMs` so a fast
 * model produces one event per window, not one per token. The provider SDK's
 * own retries are off: Hangar's step policy is the one place retries happen.
 */
export async function streamCompletion(
  model: Exclude<LanguageModel, string>,
  request: LlmRequest,
  options: { signal: AbortSignal; messageId: string; coalesceMs: number; sink: MessageSink },
): Promise<LlmResult> {
  const { sink, messageId } = options;
  const name = modelName(model);
  sink({
    event: 'message-start',
    role: 'ai',
    id: messageId,
    metadata: { provider: model.provider, model: model.modelId },
  });
  sink({ event: 'content-block-start', index: 0, content: { type: 'text', text: '' } });
  const base = {
    model,
    abortSignal: options.signal,
    maxRetries: 0,
    ...(request.system === undefined ? {} : { system: request.system }),
    ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
    ...(request.maxOutputTokens === undefined ? {} : { maxOutputTokens: request.maxOutputTokens }),
  };
  let streamError: unknown;
  const onError = ({ error }: { error: unknown }) => {
    streamError = error;
  };
  const result =
    request.messages !== undefined
      ? streamText({
          ...base,
          messages: request.messages,
          onError,
        })
      : streamText({
          ...base,
          prompt: request.prompt ?? '',
          onError,
        });
  let text = '';
  let pending = '';
  let timer: NodeJS.Timeout | undefined;
  const flushDelta = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (pending === '') return;
    sink({ event: 'content-block-delta', index: 0, delta: { type: 'text-delta', text: pending } });
    pending = '';
  };
  try {
    for await (const part of result.fullStream) {
      if (part.type === 'text-delta') {
        // Postgres cannot store U+0000 in jsonb: one in the model's text would fail every commit of the
        // run (and call the model again on every retry). It carries no meaning in text; mark its place.
        const delta = part.text.replaceAll('\u0000', '\uFFFD');
        text += delta;
        pending += delta;
        if (options.coalesceMs <= 0) flushDelta();
        else timer ??= setTimeout(flushDelta, options.coalesceMs);
      } else if (part.type === 'error') {
        streamError = part.error;
      }
    }
  } finally {
    flushDelta();
  }
  if (streamError !== undefined) {
    sink({ event: 'error', message: errorMessage(streamError) });
    throw providerFailure(streamError);
  }
  const usage = await result.totalUsage;
  const finishReason = await result.finishReason;
  const totals: LlmUsage = {
    inputTokens: usage.inputTokens ?? 0,
    outputTokens: usage.outputTokens ?? 0,
    totalTokens: usage.totalTokens ?? (usage.inputTokens ?? 0) + (usage.outputTokens ?? 0),
  };
  sink({ event: 'content-block-finish', index: 0, content: { type: 'text', text } });
  sink({ event: 'message-finish', reason: finishReason, usage: totals });
  return { text, finishReason, usage: totals, model: name };
}

/**
 * A provider's failure with its retry meaning (worker/retry.ts): a 429 waits
 * for its `Retry-After` (`retry-after-ms`, or `retry-after` in seconds or as a
 * date), other 4xx but 408 cannot be fixed by retrying, 5xx, 408 and network
 * errors are retried by the step's policy. The provider SDK retries nothing
 * itself (`maxRetries: 0`), so retries don't multiply.
 */
export function providerFailure(err: unknown): Error {
  if (!APICallError.isInstance(err)) return err instanceof Error ? err : new Error(errorMessage(err));
  const status = err.statusCode;
  const message = `${err.message}${status === undefined ? '' : ` (HTTP ${status})`}`;
  if (status === 429) {
    const at = retryAfter(err.responseHeaders ?? {});
    return at === undefined ? err : new RetryAfterError(at, message, { cause: err });
  }
  if (status !== undefined && status >= 400 && status < 500 && status !== 408) {
    return new NonRetryableError(message, { cause: err });
  }
  return err;
}

function retryAfter(headers: Record<string, string>): Date | undefined {
  const header = (name: string) =>
    Object.entries(headers)
      .find(([key]) => key.toLowerCase() === name)?.[1]
      ?.trim();
  const ms = Number(header('retry-after-ms'));
  if (header('retry-after-ms') !== undefined && Number.isFinite(ms) && ms >= 0) {
    return new Date(Date.now() + ms);
  }
  const value = header('retry-after');
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (value !== '' && Number.isFinite(seconds) && seconds >= 0) return new Date(Date.now() + seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : new Date(date);
}

function errorMessage(err: unknown): string {
  // Logged as an event: no U+0000 (see the text deltas above).
  return (err instanceof Error ? err.message : String(err)).replaceAll('\u0000', '\uFFFD');
}
