export default { agents: ['./agents/research.ts'] };
