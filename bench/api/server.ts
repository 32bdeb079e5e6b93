/**
 * The server side of the API benchmark, run as its own process so the load
 * generator does not share its event loop: `hangar` (a gateway on Postgres,
 * auth by API key, as `hangar serve` runs it; no worker, so the figures are
 * the create path alone) or `peer` (a bare Fastify app answering the same
 * route with a constant: the HTTP + JSON floor on this machine).
 * Prints `{"port": N}` on stdout once listening.
 */
import Fastify from 'fastify';
import { z } from 'zod';
import { MemoryBus } from '../../packages/hangar/src/bus/memory.ts';
import { startHangar } from '../../packages/hangar/src/runtime/start.ts';
import { defineAgent } from '../../packages/hangar/src/sdk/agent.ts';
import { openPostgres } from '../../packages/hangar/src/store/postgres.ts';
import { testLogger } from '../../packages/hangar/src/testing/logger.ts';

const mode = process.argv[2];
// Exit on SIGTERM so `--cpu-prof` (BENCH_API_PROFILE=1) gets to write its profile.
process.on('SIGTERM', () => process.exit(0));

const bench = defineAgent({
  name: 'bench',
  input: z.object({ n: z.number().int() }),
  async run(_ctx, input) {
    return { n: input.n };
  },
});

if (mode === 'peer') {
  const app = Fastify({ logger: false });
  const body = { run_id: '00000000-0000-4000-8000-000000000000', status: 'pending' };
  app.post('/runs', async (request) => ({ ...body, input: (request.body as { input?: unknown }).input }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  console.log(JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 }));
} else if (mode === 'hangar') {
  const db = await openPostgres({
    connectionString: process.env.DATABASE_URL ?? '',
    schema: process.env.HANGAR_SCHEMA ?? 'public',
    applicationName: 'hangar-bench-api',
  });
  const hangar = await startHangar({
    db,
    bus: new MemoryBus(),
    agents: new Map([['bench', bench]]),
    logger: testLogger(),
    migrate: false,
    gateway: {
      port: 0,
      host: '127.0.0.1',
      auth: 'keys',
      // The bench measures the path, not the limits: every create is admitted, but still counted.
      limits: {
        maxPendingRunsPerTenant: 1_000_000_000,
        maxPendingRuns: 1_000_000_000,
        keyRequestsPerSecond: 0,
      },
    },
  });
  console.log(JSON.stringify({ port: new URL(hangar.url ?? '').port }));
} else {
  console.error('usage: server.ts hangar|peer');
  process.exit(2);
}
