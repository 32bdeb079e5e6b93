// The streaming benchmark's agents (bench/stream/run.ts).
export default {
  agents: ['./agents/emitter.ts'],
};
