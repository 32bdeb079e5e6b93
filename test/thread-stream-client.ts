/**
 * A minimal Agent Protocol thread-stream client for the end-to-end tests
 * (`ws` as the Node client): commands with ids, events collected in arrival
 * order, bounded waits. Deliberately thin: the tests assert the wire.
 */
import WebSocket from 'ws';
import { poll } from './helpers.ts';

export interface WireEvent {
  type: 'event';
  eventId: string;
  seq: number;
  runId?: string;
  method: string;
  params: { namespace: string[]; timestamp: number; data: Record<string, unknown> };
}

export interface WireResponse {
  type: 'success' | 'error';
  id: number | null;
  result?: Record<string, unknown>;
  meta?: { appliedThroughSeq?: number };
  error?: string;
  message?: string;
  code?: string;
  field?: string;
  details?: Record<string, unknown>;
}

export class StreamClient {
  readonly events: WireEvent[] = [];
  readonly responses: WireResponse[] = [];
  closeCode: number | undefined;
  closeReason = '';
  private nextId = 1;
  private readonly waiting = new Map<number, (r: WireResponse) => void>();

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString()) as WireEvent | WireResponse;
      if (message.type === 'event') {
        this.events.push(message);
        return;
      }
      this.responses.push(message);
      if (message.id !== null) this.waiting.get(message.id)?.(message);
    });
    socket.on('close', (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
    });
  }

  /** Opens the thread WebSocket; rejects with `HTTP <status>: <body>` when the upgrade is refused. */
  static open(
    base: string,
    threadId: string,
    options: { headers?: Record<string, string>; protocols?: string[]; path?: string } = {},
  ): Promise<StreamClient> {
    const url = `${base.replace(/^http/, 'ws')}${options.path ?? `/threads/${threadId}/stream`}`;
    const socket = new WebSocket(url, options.protocols ?? [], { headers: options.headers ?? {} });
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(new StreamClient(socket)));
      socket.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => {
          body += chunk.toString();
        });
        res.on('end', () => reject(new Error(`HTTP ${res.statusCode}: ${body}`)));
      });
      socket.once('error', reject);
    });
  }

  /** Sends a command and resolves with its response (success or error). */
  command(method: string, params?: unknown): Promise<WireResponse> {
    const id = this.nextId++;
    return this.raw({ id, method, ...(params === undefined ? {} : { params }) }, id);
  }

  /** Sends any text (or object as JSON); with `id`, resolves with the response to it. */
  raw(message: unknown, id?: number): Promise<WireResponse> {
    const text = typeof message === 'string' ? message : JSON.stringify(message);
    if (id === undefined) {
      const before = this.responses.length;
      this.socket.send(text);
      return poll('a response', () => this.responses[before], { timeoutMs: 20_000, intervalMs: 10 });
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no response to command ${id}`)), 30_000);
      this.waiting.set(id, (r) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(r);
      });
      this.socket.send(text);
    });
  }

  /** Subscribes and returns the subscription id (fails the test on an error response). */
  async subscribe(params: Record<string, unknown>): Promise<{ id: string; from: number }> {
    const res = await this.command('subscription.subscribe', params);
    if (res.type !== 'success') throw new Error(`subscribe failed: ${JSON.stringify(res)}`);
    return { id: String(res.result?.subscriptionId), from: Number(res.meta?.appliedThroughSeq) };
  }

  /** Waits until an event matching `predicate` has arrived; returns it. */
  waitForEvent(what: string, predicate: (e: WireEvent) => boolean, timeoutMs = 30_000): Promise<WireEvent> {
    return poll(what, () => this.events.find(predicate), { timeoutMs, intervalMs: 20 });
  }

  /** Waits for the run's terminal lifecycle event. */
  waitForEnd(runId: string, timeoutMs = 30_000): Promise<WireEvent> {
    return this.waitForEvent(
      `run ${runId} to end`,
      (e) => e.method === 'lifecycle' && e.runId === runId && e.params.data.terminal === true,
      timeoutMs,
    );
  }

  waitForClose(timeoutMs = 30_000): Promise<number> {
    return poll('the socket to close', () => this.closeCode, { timeoutMs, intervalMs: 20 });
  }

  close(): void {
    this.socket.close(1000);
  }
}

/** Checks that seqs increase strictly (each event once, in order). */
export function strictlyIncreasing(events: readonly WireEvent[]): boolean {
  return events.every((e, i) => i === 0 || e.seq > (events[i - 1]?.seq ?? -1));
}
