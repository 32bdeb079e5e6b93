import pg from 'pg';
import type { Logger } from 'pino';
import type { EventEnvelope } from '../events/envelope.ts';
import type { Bus, PublishFence, PublishOptions, ThreadMessage, Unsubscribe } from './bus.ts';
import { MemoryBus } from './memory.ts';

export interface PostgresBusOptions {
  connectionString: string;
  /** Channel names are scoped by schema so isolated deployments (and tests) don't hear each other. */
  schema: string;
  logger: Logger;
  /**
   * LISTEN to thread hints from the start (default true). A process that
   * never follows a thread (a `hangar worker`) passes false, and Postgres
   * then doesn't deliver it every checkpoint's hint; should it subscribe to a
   * thread after all, it starts listening then, and its subscribers get a
   * hint when that takes effect.
   */
  threadHints?: boolean;
}

/**
 * A bus over Postgres LISTEN/NOTIFY for deployments without Redis. Only hints
 * cross processes ("thread T's log reached seq N", "work is queued"); local
 * subscribers in the same process still get events directly.
 */
export class PostgresBus implements Bus {
  private readonly local = new MemoryBus();
  private readonly publisher: pg.Pool;
  private listener: pg.Client | undefined;
  private readonly eventsChannel: string;
  private readonly workChannel: string;
  private readonly cancelChannel: string;
  private closed = false;
  /** Hints waiting for the next flush: the latest seq per thread, and whether work was announced. */
  private pendingHints = new Map<string, number>();
  private pendingWork = false;
  private flushScheduled = false;
  /** Whether to LISTEN to thread hints (see `threadHints`). */
  private eventsWanted: boolean;
  /** The listener connection that LISTENs to thread hints. */
  private eventsListening: pg.Client | undefined;

  constructor(private readonly options: PostgresBusOptions) {
    this.publisher = new pg.Pool({ connectionString: options.connectionString, max: 2 });
    this.publisher.on('error', () => {});
    this.eventsChannel = `hangar_${options.schema}_events`;
    this.workChannel = `hangar_${options.schema}_work`;
    this.cancelChannel = `hangar_${options.schema}_cancel`;
    this.eventsWanted = options.threadHints ?? true;
  }

  async start(): Promise<void> {
    await this.connectListener();
  }

  private async connectListener(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.connectionString });
    client.on('error', (err) => {
      this.options.logger.warn({ err }, 'bus listener connection lost; reconnecting');
      this.listener = undefined;
      void client.end().catch(() => {});
      if (!this.closed) setTimeout(() => void this.connectListener().catch(() => {}), 500);
    });
    client.on('notification', (msg) => {
      if (msg.channel === this.workChannel) {
        this.local.notifyWork();
        return;
      }
      if (msg.channel === this.cancelChannel) {
        if (msg.payload) this.local.notifyCancel(msg.payload);
        return;
      }
      const payload = msg.payload ?? '';
      const sep = payload.indexOf(':');
      if (sep <= 0) return;
      this.local.dispatchHint(payload.slice(0, sep), Number(payload.slice(sep + 1)));
    });
    await client.connect();
    await client.query(`LISTEN ${this.workChannel}`);
    await client.query(`LISTEN ${this.cancelChannel}`);
    if (this.eventsWanted) {
      await client.query(`LISTEN ${this.eventsChannel}`);
      this.eventsListening = client;
    }
    this.listener = client;
    // Wanted since the LISTENs above were sent (a first subscription in a worker process).
    this.listenEvents();
    // Anything published while we were disconnected is only a missed hint:
    // wake everyone so they re-read the log.
    this.local.notifyWork();
    this.local.dispatchHintToAll();
  }

  get hintChannel(): string {
    return this.eventsChannel;
  }

  /** The fence applies to local subscribers; other processes only hear a hint and read the (fenced) log. */
  publishEvents(
    threadId: string,
    events: readonly EventEnvelope[],
    fence?: PublishFence,
    options?: PublishOptions,
  ): void {
    const last = events[events.length - 1];
    if (last === undefined) return;
    this.local.publishEvents(threadId, events, fence);
    if (options?.hinted === true) return;
    this.pendingHints.set(threadId, Math.max(last.seq, this.pendingHints.get(threadId) ?? 0));
    this.scheduleFlush();
  }

  subscribeThread(threadId: string, handler: (message: ThreadMessage) => void): Unsubscribe {
    const unsubscribe = this.local.subscribeThread(threadId, handler);
    this.eventsWanted = true;
    this.listenEvents();
    return unsubscribe;
  }

  /** Starts listening to thread hints once they are wanted; then every subscriber re-reads (it may have missed one). */
  private listenEvents(): void {
    const client = this.listener;
    if (!this.eventsWanted || client === undefined || this.eventsListening === client) return;
    this.eventsListening = client;
    client.query(`LISTEN ${this.eventsChannel}`).then(
      () => this.local.dispatchHintToAll(),
      () => {}, // the connection's error handler reconnects, and listens again
    );
  }

  notifyWork(): void {
    this.pendingWork = true;
    this.scheduleFlush();
  }

  onWork(handler: () => void): Unsubscribe {
    return this.local.onWork(handler);
  }

  /** Cancels are rare and latency matters: each goes out at once (every process hears it, local ones included). */
  notifyCancel(runId: string): void {
    if (this.closed) return;
    this.publisher.query('SELECT pg_notify($1, $2)', [this.cancelChannel, runId]).catch((err: unknown) => {
      this.options.logger.debug({ err }, 'cancel notify failed (the worker sees it at its next heartbeat)');
    });
  }

  onCancel(handler: (runId: string) => void): Unsubscribe {
    return this.local.onCancel(handler);
  }

  /**
   * Hints are coalesced: everything published in one turn of the event loop
   * goes out in one statement, and a thread's hints collapse into its latest
   * seq. Every listening process receives every NOTIFY, so fewer is cheaper
   * for all of them.
   */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const notices: Array<{ c: string; p: string }> = [];
      for (const [threadId, seq] of this.pendingHints)
        notices.push({ c: this.eventsChannel, p: `${threadId}:${seq}` });
      if (this.pendingWork) notices.push({ c: this.workChannel, p: '' });
      this.pendingHints = new Map();
      this.pendingWork = false;
      if (notices.length === 0 || this.closed) return;
      this.publisher
        .query('SELECT pg_notify(n.c, n.p) FROM jsonb_to_recordset($1::jsonb) AS n(c text, p text)', [
          JSON.stringify(notices),
        ])
        .catch((err: unknown) => {
          this.options.logger.debug({ err }, 'bus notify failed (hints only; readers poll)');
        });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.listener?.end().catch(() => {});
    await this.publisher.end().catch(() => {});
    await this.local.close();
  }
}
