import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { uuidv5 } from '../assistants/registry.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import { createRun } from '../runs/repository.ts';
import { defineAgent } from '../sdk/agent.ts';
import { STORE_KINDS } from '../testing/db.ts';
import { scriptedModel } from '../testing/llm.ts';
import { createTestEngine, TENANT, type TestEngine } from './engine.harness.ts';

function budgetEvent(events: readonly EventEnvelope[]): unknown {
  return events.find(
    (e) => e.channel === 'lifecycle' && (e.data as { event?: string }).event === 'budget.exceeded',
  )?.data;
}

describe.each(STORE_KINDS)('run budgets (%s)', (kind) => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine(kind);
  });
  afterEach(async () => {
    await engine.dispose();
  });

  it('maxSteps stops a looping agent, even one that catches the error', async () => {
    let steps = 0;
    const agent = defineAgent({
      name: 'step-loop',
      input: z.object({}),
      limits: { maxSteps: 5 },
      async run(ctx) {
        for (;;) {
          try {
            await ctx.step(`s${steps}`, () => steps++);
          } catch {
            // A careless agent swallows every error: the budget still ends the run.
          }
        }
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error).toMatchObject({
      code: 'budget_exceeded',
      details: { budget: 'maxSteps', limit: 5, value: 6 },
    });
    expect(steps).toBe(5);
    const events = await engine.runEvents(run);
    expect(budgetEvent(events)).toEqual({ event: 'budget.exceeded', budget: 'maxSteps', limit: 5, value: 6 });
    expect(events.at(-1)?.data).toMatchObject({ event: 'run.completed', status: 'error', terminal: true });
  });
});

describe('run budgets (postgres)', () => {
  let engine: TestEngine;
  beforeEach(async () => {
    engine = await createTestEngine('postgres');
  });
  afterEach(async () => {
    await engine.dispose();
  });

  /** An agent that asks the model forever. */
  const chatty = (limits: Parameters<typeof defineAgent>[0]['limits']) =>
    defineAgent({
      name: 'chatty',
      input: z.object({}),
      limits,
      async run(ctx) {
        for (let i = 0; ; i++) await ctx.llm.generate(`ask-${i}`, { prompt: 'more' });
      },
    });

  it('maxTokens stops a looping agent once its recorded usage reaches the limit', async () => {
    // 12 input + 3 output tokens a call.
    const model = scriptedModel(['a', 'b', 'c']);
    const agent = chatty({ maxTokens: 40 });
    engine.startWorker(agent, { llm: { model } });
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('error');
    expect(done.error?.details).toEqual({ budget: 'maxTokens', limit: 40, value: 45 });
    expect(model.doStreamCalls).toHaveLength(3);
    expect(budgetEvent(await engine.runEvents(run))).toMatchObject({ budget: 'maxTokens', value: 45 });
  });

  it('maxCostUsd prices usage from the pricing table', async () => {
    const model = scriptedModel(['x'], { inputTokens: 1_000, outputTokens: 1_000 });
    // 1000 * 1 + 1000 * 3 per million tokens: $0.004 a call.
    const pricing = { 'mock-provider:mock-model-id': { inputPerMTokUsd: 1, outputPerMTokUsd: 3 } };
    const agent = chatty({ maxCostUsd: 0.01 });
    engine.startWorker(agent, { llm: { model, pricing } });
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.error?.details).toEqual({ budget: 'maxCostUsd', limit: 0.01, value: 0.012 });
    expect(model.doStreamCalls).toHaveLength(3);
  });

  it('maxDuration ends a run stuck in a step with status timeout', async () => {
    const agent = defineAgent({
      name: 'stuck',
      input: z.object({}),
      limits: { maxDuration: '400ms' },
      async run(ctx) {
        await ctx.step('ok', () => 1);
        // Ignores its signal: the run still ends on time.
        return ctx.step('forever', () => new Promise(() => {}));
      },
    });
    engine.startWorker(agent);
    const run = await engine.createRun(agent, {});
    const done = await engine.waitForRun(run.run_id);
    expect(done.status).toBe('timeout');
    expect(done.error).toMatchObject({
      code: 'budget_exceeded',
      details: { budget: 'maxDuration', limit: 400 },
    });
    const event = budgetEvent(await engine.runEvents(run)) as { value: number };
    expect(event.value).toBeGreaterThanOrEqual(400);
  });

  it("a run's config.configurable.hangar_limits tightens the agent's limits; a bad one is input_invalid", async () => {
    const agent = defineAgent({
      name: 'overridden',
      input: z.object({}),
      limits: { maxSteps: 100 },
      async run(ctx) {
        for (let i = 0; ; i++) await ctx.step(`s${i}`, () => i);
      },
    });
    engine.startWorker(agent);
    const create = (hangarLimits: unknown) =>
      createRun(engine.db, {
        tenantId: TENANT,
        agent: agent.name,
        assistantId: uuidv5(agent.name),
        input: {},
        config: { configurable: { hangar_limits: hangarLimits } },
      });
    const tight = await create({ max_steps: 3 });
    const bad = await create({ max_steps: -1 });
    engine.bus.notifyWork();
    const done = await engine.waitForRun(tight.run_id);
    expect(done.error?.details).toEqual({ budget: 'maxSteps', limit: 3, value: 4 });
    const rejected = await engine.waitForRun(bad.run_id);
    expect(rejected.status).toBe('error');
    expect(rejected.error?.code).toBe('input_invalid');
    expect(rejected.error?.message).toContain('config.configurable.hangar_limits.max_steps');
    expect(await engine.steps(bad.run_id)).toEqual([]);
  });
});
