import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';

/**
 * One process's operational metrics in the Prometheus text format: what an
 * operator graphs and alerts on (breakers open, workers out of slots or
 * paused for memory, Redis publishes dropped, streams open). Each role adds
 * the gauges it can answer; reading them costs no query.
 */
export interface MetricSource {
  /** Lines without the trailing newline, `# HELP`/`# TYPE` included. */
  collect(): string[];
}

/** A gauge or counter family: one HELP/TYPE header and a sample per label set. */
export function family(
  name: string,
  type: 'gauge' | 'counter',
  help: string,
  samples: Array<{ labels?: Record<string, string>; value: number }>,
): string[] {
  return [
    `# HELP ${name} ${help}`,
    `# TYPE ${name} ${type}`,
    ...samples.map(
      ({ labels, value }) => `${name}${formatLabels(labels)} ${Number.isFinite(value) ? value : 0}`,
    ),
  ];
}

function formatLabels(labels: Record<string, string> | undefined): string {
  if (labels === undefined || Object.keys(labels).length === 0) return '';
  const parts = Object.entries(labels).map(
    ([k, v]) => `${k}="${v.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}"`,
  );
  return `{${parts.join(',')}}`;
}

/** Every source's lines, plus the process's own memory. */
export function renderMetrics(sources: readonly MetricSource[]): string {
  const memory = process.memoryUsage();
  const lines = [
    ...family('hangar_process_resident_memory_bytes', 'gauge', 'Resident set size of this process.', [
      { value: memory.rss },
    ]),
    ...family('hangar_process_heap_used_bytes', 'gauge', 'V8 heap in use.', [{ value: memory.heapUsed }]),
    ...sources.flatMap((s) => s.collect()),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * Serves `GET /metrics` on its own port (`HANGAR_METRICS_PORT`): workers have
 * no HTTP API, and a gateway's metrics stay off its public, authenticated one.
 */
export async function startMetricsServer(options: {
  port: number;
  host: string;
  sources: readonly MetricSource[];
  logger: Logger;
}): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
      return;
    }
    res
      .writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
      .end(renderMetrics(options.sources));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  const url = `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}/metrics`;
  options.logger.info({ url }, 'metrics listening');
  return {
    url,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
