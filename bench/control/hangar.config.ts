// bench/control runs the cluster tests' slow-steps agent (it writes the side channel the bench reads).
export default {
  agents: ['../../test/fixtures/agents/slow-steps.ts'],
};
