import type { ServerResponse } from 'node:http';
import type { EventEnvelope } from '../events/envelope.ts';

/**
 * Writes a Server-Sent Events stream. Each event's `id` is its thread seq, so
 * a client that reconnects with `Last-Event-ID` resumes exactly after it.
 */
export class SseWriter {
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(
    private readonly res: ServerResponse,
    headers: Record<string, string> = {},
    heartbeatMs = 15_000,
  ) {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      ...headers,
    });
    res.flushHeaders();
    this.heartbeat = setInterval(() => {
      res.write(': heartbeat\n\n');
    }, heartbeatMs);
    this.heartbeat.unref();
  }

  /** Writes one event; resolves when the socket accepted it (backpressure). */
  async send(event: string, data: unknown, id?: number | string): Promise<void> {
    let frame = '';
    if (id !== undefined) frame += `id: ${id}\n`;
    frame += `event: ${event}\n`;
    frame += `data: ${JSON.stringify(data)}\n\n`;
    if (!this.res.write(frame)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.res.off('drain', done);
          this.res.off('close', done);
          resolve();
        };
        this.res.on('drain', done);
        this.res.on('close', done);
      });
    }
  }

  sendEnvelope(envelope: EventEnvelope): Promise<void> {
    return this.send(envelope.channel, envelope.data, envelope.seq);
  }

  end(): void {
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    if (!this.res.writableEnded) this.res.end();
  }
}

/** Parses a `Last-Event-ID` header (or query value) into a seq; absent or invalid → undefined. */
export function parseLastEventId(value: unknown): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw.trim())) return undefined;
  return Number(raw.trim());
}
