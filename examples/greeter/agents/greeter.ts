import { defineAgent } from 'hangar';
import { z } from 'zod';

export default defineAgent({
  name: 'greeter',
  input: z.object({ name: z.string() }),
  async run(ctx, input) {
    const greeting = await ctx.step('greet', async () => `Hello, ${input.name}`);
    await ctx.emit('custom', { greeting });
    return { greeting };
  },
});
