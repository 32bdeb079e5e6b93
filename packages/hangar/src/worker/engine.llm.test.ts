import type { LanguageModelV3StreamPart } from '@ai-sdk/provider';
import { MockLanguageModelV3 } from 'ai/test';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { EventEnvelope } from '../events/envelope.ts';
import { defineAgent } from '../sdk/agent.ts';
import type { LlmResult } from '../sdk/llm.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { scriptedModel } from '../testing/llm.ts';
import { createTestEngine, eventually, gate, type TestEngine, untilAborted } from './engine.harness.ts';

const TOKENS = Array.from({ length: 30 }, (_, i) => `t${i} `);
const FULL_TEXT = TOKENS.join('');
const USAGE = { inputTokens: 12, outputTokens: TOKENS.length, totalTokens: 12 + TOKENS.length };

/** The only mock in the engine suites: a language model that streams `tokens` as fast as it can. */
function mockModel(tokens: string[] = TOKENS, tail: LanguageModelV3StreamPart[] = []): MockLanguageModelV3 {
  return scriptedModel(tokens, { inputTokens: USAGE.inputTokens, outputTokens: USAGE.outputTokens, tail });
}

const asker = defineAgent({
  name: 'asker',
  input: z.object({ question: z.string() }),
  async run(ctx, input) {
    return ctx.llm.generate('answer', { prompt: input.question, system: 'Be brief.' });
  },
});

function messageEvents(events: readonly EventEnvelope[]): Array<Record<string, unknown>> {
  return events.filter((e) => e.channel === 'messages').map((e) => e.data as Record<string, unknown>);
}

describe.each(STORE_KINDS)('ctx.llm (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('streams the message into the messages channel, coalesced, and records usage with the step', async () => {
    const model = mockModel();
    engine.startWorker(asker, { llm: { model }, coalesceMs: 1_000 });
    const run = await engine.createRun(asker, { question: 'What is Hangar?' });
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    const expected: LlmResult = {
      text: FULL_TEXT,
      finishReason: 'stop',
      usage: USAGE,
      model: 'mock-provider:mock-model-id',
    };
    expect(done.output).toEqual(expected);

    expect(model.doStreamCalls).toHaveLength(1);
    expect(model.doStreamCalls[0]?.prompt).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'What is Hangar?' }] },
    ]);

    const messages = messageEvents(await engine.runEvents(run));
    const deltas = messages.filter((m) => m.event === 'content-block-delta');
    expect(messages.map((m) => m.event)).toEqual([
      'message-start',
      'content-block-start',
      ...deltas.map(() => 'content-block-delta'),
      'content-block-finish',
      'message-finish',
    ]);
    expect(messages[0]).toEqual({
      event: 'message-start',
      role: 'ai',
      id: `${run.run_id}:0:1`, // run:op-index:lease-epoch (the first claim)
      metadata: { provider: 'mock-provider', model: 'mock-model-id' },
    });
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.length).toBeLessThan(TOKENS.length);
    expect(deltas.map((d) => (d.delta as { text: string }).text).join('')).toBe(FULL_TEXT);
    for (const d of deltas) expect(d).toMatchObject({ index: 0, delta: { type: 'text-delta' } });
    expect(messages.at(-2)).toEqual({
      event: 'content-block-finish',
      index: 0,
      content: { type: 'text', text: FULL_TEXT },
    });
    expect(messages.at(-1)).toEqual({ event: 'message-finish', reason: 'stop', usage: USAGE });

    const steps = await engine.steps(run.run_id);
    expect(steps.map((s) => [s.name, s.kind, s.status])).toEqual([['answer', 'llm', 'completed']]);
    expect(steps[0]?.usage).toEqual({ ...USAGE, model: 'mock-provider:mock-model-id' });
  });

  it('does not call the model again when the run is replayed after an interruption', async () => {
    const model = mockModel();
    const holding = gate();
    let holds = 0;
    const agent = defineAgent({
      name: 'ask-then-hold',
      input: z.object({}),
      async run(ctx) {
        const answer = await ctx.llm.generate('answer', { prompt: 'hi' });
        await ctx.step('hold', async ({ signal }) => {
          holds++;
          if (holds === 1) {
            holding.open();
            await untilAborted(signal);
          }
        });
        return { text: answer.text, tokens: answer.usage.totalTokens };
      },
    });
    const first = engine.startWorker(agent, { llm: { model } });
    const run = await engine.createRun(agent, {});
    await holding.promise;
    await first.stop();

    engine.startWorker(agent, { llm: { model } });
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect(done.output).toEqual({ text: FULL_TEXT, tokens: USAGE.totalTokens });
    expect(model.doStreamCalls).toHaveLength(1);
    expect(holds).toBe(2);
    const starts = messageEvents(await engine.runEvents(run)).filter((m) => m.event === 'message-start');
    expect(starts).toHaveLength(1);
  });

  it('a call interrupted mid-stream is not checkpointed; the resumed run streams a new message', async () => {
    const complete = mockModel();
    let calls = 0;
    const model = new MockLanguageModelV3({
      doStream: async (options) => {
        calls++;
        if (calls > 1) return complete.doStream(options);
        // The first call sends a few tokens and then hangs until the worker aborts it.
        const stream = new ReadableStream<LanguageModelV3StreamPart>({
          start(controller) {
            controller.enqueue({ type: 'stream-start', warnings: [] });
            controller.enqueue({ type: 'text-start', id: 'text-1' });
            for (const delta of TOKENS.slice(0, 3))
              controller.enqueue({ type: 'text-delta', id: 'text-1', delta });
            options.abortSignal?.addEventListener(
              'abort',
              () => controller.error(options.abortSignal?.reason),
              {
                once: true,
              },
            );
          },
        });
        return { stream };
      },
    });
    const first = engine.startWorker(asker, { llm: { model }, coalesceMs: 0 });
    const run = await engine.createRun(asker, { question: 'q' });
    await eventually('some tokens to be logged', async () => {
      const messages = messageEvents(await engine.runEvents(run));
      return messages.filter((m) => m.event === 'content-block-delta').length >= 2;
    });
    await first.stop();
    expect(await engine.steps(run.run_id)).toEqual([]);

    engine.startWorker(asker, { llm: { model }, coalesceMs: 0 });
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect((done.output as LlmResult).text).toBe(FULL_TEXT);
    expect(model.doStreamCalls).toHaveLength(2);

    const messages = messageEvents(await engine.runEvents(run));
    const starts = messages.filter((m) => m.event === 'message-start').map((m) => m.id);
    expect(starts).toHaveLength(2);
    // The partial message and the new one are different messages: a client keying on the id must not
    // append the new tokens to the partial ones.
    expect(new Set(starts).size).toBe(2);
    expect(messages.filter((m) => m.event === 'message-finish')).toHaveLength(1);
  });
});

// These cases exercise the engine's logic, not store-specific SQL (the suites above cover both stores).
describe('ctx.llm (postgres)', () => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine('postgres');
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('sends one delta event per token when coalescing is off', async () => {
    engine.startWorker(asker, { llm: { model: mockModel() }, coalesceMs: 0 });
    const run = await engine.createRun(asker, { question: 'q' });
    expect((await engine.waitForRun(run.run_id)).status).toBe('success');
    const deltas = messageEvents(await engine.runEvents(run)).filter(
      (m) => m.event === 'content-block-delta',
    );
    expect(deltas.map((d) => (d.delta as { text: string }).text)).toEqual(TOKENS);
  });

  it('replaces U+0000 in model text, which Postgres could not store, instead of failing every commit', async () => {
    const model = mockModel(['nul', '\u0000', 'byte']);
    engine.startWorker(asker, { llm: { model } });
    const run = await engine.createRun(asker, { question: 'q' });
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('success');
    expect((done.output as LlmResult).text).toBe('nul\uFFFDbyte');
    expect(done.attempt).toBe(1);
    expect(model.doStreamCalls).toHaveLength(1);
  });

  it('a model given in the request overrides the configured one', async () => {
    const configured = mockModel(['configured']);
    const chosen = mockModel(['chosen']);
    const agent = defineAgent({
      name: 'chooser',
      input: z.object({}),
      async run(ctx) {
        const { text } = await ctx.llm.generate('pick', { prompt: 'p', model: chosen });
        return text;
      },
    });
    engine.startWorker(agent, { llm: { model: configured } });
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.output).toBe('chosen');
    expect(configured.doStreamCalls).toHaveLength(0);
    expect(chosen.doStreamCalls).toHaveLength(1);
  });

  it('a stream error fails the run and is reported on the messages channel', async () => {
    const model = mockModel(['partial '], [{ type: 'error', error: new Error('provider overloaded') }]);
    // No retries: the provider's error ends the run (engine.retry.test.ts covers retried LLM calls).
    const once = defineAgent({ ...asker, name: 'asker-once', retry: { maxAttempts: 1 } });
    engine.startWorker(once, { llm: { model } });
    const run = await engine.createRun(once, { question: 'q' });
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error).toEqual({ code: 'agent_error', type: 'Error', message: 'provider overloaded' });
    expect(await engine.steps(run.run_id)).toEqual([]);
    const messages = messageEvents(await engine.runEvents(run));
    expect(messages.map((m) => m.event)).toContain('error');
    expect(messages.find((m) => m.event === 'error')).toEqual({
      event: 'error',
      message: 'provider overloaded',
    });
    expect(messages.map((m) => m.event)).not.toContain('message-finish');
  });

  it('fails with llm_not_configured, saying what to set, when no model is configured', async () => {
    engine.startWorker(asker, { llm: {} });
    const run = await engine.createRun(asker, { question: 'q' });
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error?.code).toBe('llm_not_configured');
    expect(done.error?.message).toContain('HANGAR_MODEL');
    expect(done.error?.message).toContain('hangar.config.ts');
    expect(await engine.steps(run.run_id)).toEqual([]);
  });

  it('fails with llm_not_configured for a model string with an unknown provider', async () => {
    engine.startWorker(asker, { llm: { model: 'nosuch:model-1' } });
    const run = await engine.createRun(asker, { question: 'q' });
    const done = await engine.waitForRun(run.run_id);
    expect(done.error?.code).toBe('llm_not_configured');
    expect(done.error?.message).toContain('"nosuch:model-1" has an unknown provider');
  });
});
