/**
 * `HANGAR_METRICS_PORT`: a real `hangar worker` and `hangar gateway` serve
 * Prometheus metrics on their own port — a circuit breaker that opened, the
 * worker's occupancy, the gateway's open streams.
 */
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { createTestPostgres } from '../packages/hangar/src/testing/index.ts';
import { api, Cleanup, createRun, FIXTURES, pgEnv, poll, STARTUP_MS } from './helpers.ts';

const CONFIG = join(FIXTURES, 'metrics.config.ts');
const cleanup = new Cleanup();

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return res.text();
}

/** The value of one sample, e.g. `hangar_breaker_state{breaker="x",state="open"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

afterAll(() => cleanup.run());

describe('metrics', () => {
  test('a worker shows an open breaker and its slots; a gateway its open streams', async () => {
    const store = cleanup.store(await createTestPostgres());
    const [workerPort, gatewayPort] = [await freePort(), await freePort()];
    const worker = cleanup.spawn(['worker', '--config', CONFIG, '--concurrency', '4'], {
      env: pgEnv(store, { HANGAR_METRICS_PORT: String(workerPort) }),
    });
    const gateway = cleanup.spawn(
      ['gateway', '--port', '0', '--host', '127.0.0.1', '--auth', 'none', '--config', CONFIG],
      {
        env: pgEnv(store, { HANGAR_METRICS_PORT: String(gatewayPort) }),
      },
    );
    await worker.waitFor(/worker started/, STARTUP_MS);
    const base = String((await gateway.waitFor(/Server listening at (http:\/\/[^\s"]+)/, STARTUP_MS))[1]);

    const idle = await scrape(workerPort);
    expect(sample(idle, 'hangar_worker_runs_active')).toBe(0);
    expect(sample(idle, 'hangar_worker_capacity_free{resource="slots"}')).toBe(4);
    expect(sample(idle, 'hangar_worker_claims_paused')).toBe(0);
    expect(sample(idle, 'hangar_process_resident_memory_bytes')).toBeGreaterThan(0);

    // Five failed calls in a row open the breaker; the run then waits for its half-open time.
    const run = await createRun(base, 'flaky-tool', {});
    const open = await poll('the breaker to open', async () => {
      const text = await scrape(workerPort);
      return sample(text, 'hangar_breaker_state{breaker="flaky-upstream",state="open"}') === 1
        ? text
        : undefined;
    });
    expect(sample(open, 'hangar_breaker_state{breaker="flaky-upstream",state="closed"}')).toBe(0);

    // A run executing takes a slot.
    const dir = cleanup.tmpDir();
    const slow = await createRun(base, 'steps', { file: join(dir, 'marks.log'), steps: 1, stepMs: 10_000 });
    await poll('the slow run to take a slot', async () =>
      sample(await scrape(workerPort), 'hangar_worker_capacity_free{resource="slots"}') === 3
        ? true
        : undefined,
    );

    // An open run stream counts on the gateway.
    const stream = await fetch(`${base}/threads/${slow.thread_id}/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ channels: ['lifecycle'] }),
    });
    expect(stream.status).toBe(200);
    await poll('the stream to count', async () =>
      sample(await scrape(gatewayPort), 'hangar_gateway_streams_open') === 1 ? true : undefined,
    );
    await stream.body?.cancel();

    const notFound = await fetch(`http://127.0.0.1:${workerPort}/other`);
    expect(notFound.status).toBe(404);
    for (const r of [run, slow]) {
      await api(base, 'POST', `/threads/${r.thread_id}/runs/${r.run_id}/cancel`);
    }
  }, 120_000);
});
