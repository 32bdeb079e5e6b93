export default { agents: ['./agents/greeter.ts'] };
