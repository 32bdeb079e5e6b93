/**
 * The quickstart config: every example agent in one `hangar dev`.
 * Each example folder also has its own hangar.config.ts.
 */
export default {
  agents: [
    './examples/greeter/agents/greeter.ts',
    './examples/research/agents/research.ts',
    './examples/llm-chat/agents/chat.ts',
  ],
};
