import { defineAgent } from 'hangar';
import { z } from 'zod';

/**
 * An LLM agent: the answer streams token by token on the `messages` channel,
 * and the call is a durable step (on resume its recorded answer is reused,
 * not paid for again). Needs a model: set HANGAR_MODEL, e.g.
 *   HANGAR_MODEL=openai:gpt-4o-mini OPENAI_API_KEY=… npx hangar dev
 *   HANGAR_MODEL=anthropic:claude-sonnet-4-5 ANTHROPIC_API_KEY=… npx hangar dev
 *   HANGAR_MODEL=compatible:llama3.1 HANGAR_LLM_BASE_URL=http://127.0.0.1:11434/v1 npx hangar dev
 * Without one, runs end in `error` with code `llm_not_configured`, saying what to set.
 */
export default defineAgent({
  name: 'chat',
  description: 'Answers a question, streaming the answer; remembers the conversation on its thread.',
  input: z.object({ question: z.string().min(1).max(10_000) }),
  async run(ctx, input) {
    const history = (ctx.state.get().turns ?? []) as Array<{ q: string; a: string }>;
    const context = history.map((t) => `Q: ${t.q}\nA: ${t.a}`).join('\n\n');
    const { text, usage } = await ctx.llm.generate('answer', {
      system: 'You are a concise, friendly assistant.',
      prompt: context === '' ? input.question : `${context}\n\nQ: ${input.question}`,
    });
    ctx.state.update({ turns: [...history, { q: input.question, a: text }].slice(-20) });
    return { answer: text, usage };
  },
});
