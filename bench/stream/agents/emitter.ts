import { defineAgent } from 'hangar';
import { z } from 'zod';

/**
 * The streaming benchmark's agent: one step that emits `rate` events a second
 * for `seconds` on the `custom` channel, each carrying its emit time `t`
 * (epoch ms, same machine as the client) and `bytes` of padding, the way a
 * model streams tokens from inside a step.
 */
export default defineAgent({
  name: 'emitter',
  input: z.object({
    rate: z.number().int().min(1).max(100_000),
    seconds: z.number().min(0.1).max(600),
    bytes: z.number().int().min(0).max(65_536).default(64),
  }),
  async run(ctx, input) {
    const sent = await ctx.step('emit', async () => {
      const pad = 'x'.repeat(input.bytes);
      const total = Math.round(input.rate * input.seconds);
      const start = Date.now();
      let n = 0;
      while (n < total) {
        const due = Math.min(total, Math.floor(((Date.now() - start) / 1000) * input.rate) + 1);
        while (n < due) {
          await ctx.emit('custom', { i: n, t: Date.now(), pad });
          n++;
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      return n;
    });
    return { sent };
  },
});
