import type { LanguageModelV3StreamPart } from '@ai-sdk/provider';
import { simulateReadableStream } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';

/**
 * A scripted language model (the AI SDK's mock): streams `tokens` as text
 * deltas as fast as it can, then `tail`, then a `finish` with the given usage
 * (output tokens default to the number of tokens streamed).
 * The stand-in for a provider in tests; the code path that calls it is the
 * production one.
 */
export function scriptedModel(
  tokens: readonly string[],
  options: { inputTokens?: number; outputTokens?: number; tail?: LanguageModelV3StreamPart[] } = {},
): MockLanguageModelV3 {
  const inputTokens = options.inputTokens ?? 12;
  const outputTokens = options.outputTokens ?? tokens.length;
  return new MockLanguageModelV3({
    doStream: async () => ({
      stream: simulateReadableStream<LanguageModelV3StreamPart>({
        chunkDelayInMs: null,
        initialDelayInMs: null,
        chunks: [
          { type: 'stream-start', warnings: [] },
          { type: 'text-start', id: 'text-1' },
          ...tokens.map((delta): LanguageModelV3StreamPart => ({ type: 'text-delta', id: 'text-1', delta })),
          { type: 'text-end', id: 'text-1' },
          ...(options.tail ?? []),
          {
            type: 'finish',
            finishReason: { unified: 'stop', raw: 'stop' },
            usage: {
              inputTokens: { total: inputTokens, noCache: inputTokens, cacheRead: 0, cacheWrite: 0 },
              outputTokens: { total: outputTokens, text: outputTokens, reasoning: 0 },
            },
          },
        ],
      }),
    }),
  });
}
