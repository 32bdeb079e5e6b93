export default { agents: ['./agents/chat.ts'] };
