import { describe, expect, it } from 'vitest';
import { RunCreateBody } from '../gateway/schemas.ts';
import { runLimits } from './budgets.ts';

describe('run limits', () => {
  it("a run's hangar_limits can only tighten the agent's limits", () => {
    const agent = { maxSteps: 50, maxTokens: 10_000, maxDuration: '1h' as const };
    expect(runLimits(agent, {})).toEqual(agent);
    expect(
      runLimits(agent, {
        configurable: {
          hangar_limits: { max_steps: 500, max_tokens: 2_000, max_cost_usd: 0.5, max_duration: '10m' },
        },
      }),
    ).toEqual({ maxSteps: 50, maxTokens: 2_000, maxCostUsd: 0.5, maxDuration: 600_000 });
    expect(runLimits(undefined, { configurable: { hangar_limits: { max_duration: 30_000 } } })).toEqual({
      maxDuration: 30_000,
    });
  });

  it('a bad override is refused at create time, naming the field', () => {
    const body = (hangarLimits: unknown) =>
      RunCreateBody.safeParse({
        assistant_id: 'a',
        config: { configurable: { hangar_limits: hangarLimits } },
      });
    expect(body({ max_steps: 3 }).success).toBe(true);
    for (const bad of [{ max_steps: 0 }, { max_tokens: 1.5 }, { max_duration: 'soon' }, { max_step: 3 }]) {
      const parsed = body(bad);
      expect(parsed.success).toBe(false);
      expect(parsed.error?.issues[0]?.path.slice(0, 3)).toEqual(['config', 'configurable', 'hangar_limits']);
    }
    expect(() => runLimits({}, { configurable: { hangar_limits: { max_steps: -1 } } })).toThrow(
      'config.configurable.hangar_limits.max_steps',
    );
  });
});
