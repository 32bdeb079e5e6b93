import type { StreamSettings } from './backpressure.ts';
import { ThreadFeeds } from './feed.ts';

/**
 * The thread-stream close codes (WebSocket close codes; SSE carries the same
 * in its final `event: close`). docs/streaming.md has the table a client
 * follows: all three mean "reconnect and resume from your last seq".
 */
export const CLOSE_CODES = {
  /** This gateway is shutting down: reconnect now (another replica answers). */
  reconnect: 4000,
  /** The client did not keep up: its send queue went over the cap or did not drain. */
  slow: 4001,
  /** The event plane lost continuity: reconnect, then resync state. */
  reset: 4003,
} as const;

export type CloseReason = keyof typeof CLOSE_CODES;

/** One open thread stream (a WebSocket or an SSE response), as the shutdown sees it. */
export interface StreamConnection {
  /** Tells the client to go, with the reason's code; the connection ends once the client has it. */
  close(reason: CloseReason): void;
  /** Cuts the connection at once. */
  destroy(): void;
  /** Settles when the connection is gone. */
  readonly done: Promise<void>;
}

/**
 * The open thread streams of one gateway. On shutdown every client is told
 * to reconnect (`reconnect` code), spread at random over a short window so
 * the replicas left do not take every reconnect in the same instant; the
 * gateway waits until they have gone, and cuts what is left at a deadline.
 */
export class StreamRegistry {
  /** The threads' shared live feeds of this gateway (streaming/feed.ts). */
  readonly feeds = new ThreadFeeds();
  private readonly open = new Set<StreamConnection>();
  private closing: Promise<void> | undefined;

  /** True once shutdown began: new streams are refused (503) so clients go elsewhere. */
  get draining(): boolean {
    return this.closing !== undefined;
  }

  get size(): number {
    return this.open.size;
  }

  add(connection: StreamConnection): void {
    this.open.add(connection);
    void connection.done.finally(() => this.open.delete(connection));
  }

  /** Tells every client to reconnect (jittered over the window); resolves once all are gone. */
  closeAll(settings: Pick<StreamSettings, 'shutdownWindowMs' | 'shutdownDeadlineMs'>): Promise<void> {
    this.closing ??= this.drain(settings);
    return this.closing;
  }

  private async drain(
    settings: Pick<StreamSettings, 'shutdownWindowMs' | 'shutdownDeadlineMs'>,
  ): Promise<void> {
    const connections = [...this.open];
    if (connections.length === 0) return;
    const timers = connections.map((c) =>
      setTimeout(() => c.close('reconnect'), Math.floor(Math.random() * settings.shutdownWindowMs)),
    );
    let deadline: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      deadline = setTimeout(() => resolve(true), settings.shutdownDeadlineMs);
    });
    const allGone = Promise.allSettled(connections.map((c) => c.done)).then(() => false);
    const cut = await Promise.race([allGone, timedOut]);
    clearTimeout(deadline);
    for (const timer of timers) clearTimeout(timer);
    if (cut) for (const c of this.open) c.destroy();
  }
}
