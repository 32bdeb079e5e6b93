import { defineAgent, type RunContext } from 'hangar';
import { z } from 'zod';

/**
 * Step timings recorded by the bench agents when they run inside the bench's
 * own process (in-process workers). Spawned `hangar worker` processes load the
 * same module but nobody reads their copy.
 */
export const stepTimings = {
  enabled: false,
  samples: [] as number[],
  /** Hard cap so a misconfigured phase can't grow memory without bound. */
  max: 200_000,
};

async function timedStep(ctx: RunContext, name: string): Promise<void> {
  const t0 = performance.now();
  // A trivial step: the fn returns at once, so what is timed is the checkpoint.
  await ctx.step(name, () => 1);
  if (stepTimings.enabled && stepTimings.samples.length < stepTimings.max) {
    stepTimings.samples.push(performance.now() - t0);
  }
}

/** The throughput workload: three trivial steps. */
export const threeStep = defineAgent({
  name: 'bench-3step',
  input: z.object({}),
  async run(ctx) {
    await timedStep(ctx, 'a');
    await timedStep(ctx, 'b');
    await timedStep(ctx, 'c');
    return { ok: true };
  },
});

/** The per-step overhead workload: `steps` trivial steps in one run, timed one by one. */
export const manySteps = defineAgent({
  name: 'bench-steps',
  input: z.object({ steps: z.number().int().min(1).max(100_000) }),
  async run(ctx, input) {
    for (let i = 0; i < input.steps; i++) await timedStep(ctx, `s${i}`);
    return { steps: input.steps };
  },
});
