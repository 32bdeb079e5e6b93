/** The config the spawned `hangar worker` processes load (`--config bench/engine/hangar.config.ts`). */
export default { agents: ['./agents.ts'] };
