import { defineAgent } from 'hangar';
import { z } from 'zod';

/**
 * A multi-step agent with a durable sleep: it gathers, waits (freeing the
 * worker: the run is `waiting`, and resumes on any worker, even after a
 * restart), then reports. Kill `hangar dev` at any point and start it again:
 * finished steps are not run twice.
 */
export default defineAgent({
  name: 'research',
  description: 'Collects notes on a topic, waits for the dust to settle, and writes a report.',
  input: z.object({
    topic: z.string().min(1),
    waitSeconds: z.number().int().min(0).max(3600).default(5),
  }),
  output: z.object({ report: z.string(), notes: z.array(z.string()) }),
  async run(ctx, input) {
    const notes = await ctx.step('gather', async () => {
      await new Promise((resolve) => setTimeout(resolve, 500));
      return [`${input.topic} is older than it looks`, `${input.topic} has three schools of thought`];
    });
    await ctx.emit('custom', { progress: 'gathered', count: notes.length });

    await ctx.sleep(`${input.waitSeconds}s`);

    const checked = await ctx.step('check', async () => notes.map((note) => `${note} (checked)`));
    const report = await ctx.step(
      'report',
      async () => `Report on ${input.topic}:\n- ${checked.join('\n- ')}`,
    );

    const runs = Number(ctx.state.get().reports ?? 0) + 1;
    ctx.state.update({ reports: runs, lastTopic: input.topic });
    return { report, notes: checked };
  },
});
