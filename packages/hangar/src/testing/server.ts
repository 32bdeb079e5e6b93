import { MemoryBus } from '../bus/memory.ts';
import { type RunningHangar, type StartOptions, startHangar, type WorkerSettings } from '../runtime/start.ts';
import type { Agent } from '../sdk/agent.ts';
import type { LlmSettings } from '../sdk/llm.ts';
import { createTestStore, type TestStore } from './db.ts';
import { testLogger } from './logger.ts';

export interface TestServer {
  store: TestStore;
  hangar: RunningHangar;
  /** The gateway's base URL. */
  apiUrl: string;
  /** Stops the server and disposes the store. */
  stop(): Promise<void>;
}

/**
 * A real Hangar in this process — gateway on a free localhost port, and a
 * worker unless `worker: false` — on a fresh test store and an in-process bus.
 */
export async function startTestServer(
  kind: 'postgres' | 'pglite',
  agents: readonly Agent[],
  options: {
    worker?: WorkerSettings | false;
    bus?: MemoryBus;
    llm?: LlmSettings;
    /**
     * Extra gateway settings; it always listens on a free localhost port. `auth` is `none`
     * unless set (`auth: 'keys'` to test with API keys).
     */
    gateway?: Omit<NonNullable<StartOptions['gateway']>, 'port' | 'host'>;
  } = {},
): Promise<TestServer> {
  const store = await createTestStore(kind);
  const hangar = await startHangar({
    db: store.db,
    bus: options.bus ?? new MemoryBus(),
    agents: new Map(agents.map((a) => [a.name, a])),
    logger: testLogger(),
    ...(options.llm === undefined ? {} : { llm: options.llm }),
    gateway: { auth: 'none', ...options.gateway, port: 0, host: '127.0.0.1' },
    ...(options.worker === false ? {} : { worker: { pollMs: 50, ...options.worker } }),
  });
  return {
    store,
    hangar,
    apiUrl: hangar.url ?? '',
    async stop() {
      await hangar.stop();
      await store.dispose();
    },
  };
}
