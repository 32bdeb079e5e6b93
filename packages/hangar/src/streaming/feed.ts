import type { Bus } from '../bus/bus.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import type { Queryable } from '../store/sql.ts';
import { followThread } from './follow.ts';
import { type ProtocolEvent, toProtocolEvent } from './protocol.ts';

/**
 * One event of a thread as every stream of a gateway sends it: mapped to the
 * Agent Protocol event once, and serialized once (lazily) for all of them.
 */
export class FeedItem {
  readonly seq: number;
  readonly channel: string;
  readonly event: ProtocolEvent;
  private text: string | undefined;
  private frame: string | undefined;

  constructor(envelope: EventEnvelope) {
    this.seq = envelope.seq;
    const { channel, event } = toProtocolEvent(envelope);
    this.channel = channel;
    this.event = event;
  }

  /** The event's JSON (a WebSocket message). */
  get json(): string {
    this.text ??= JSON.stringify(this.event);
    return this.text;
  }

  /** The event's SSE frame. */
  get sse(): string {
    this.frame ??= `id: ${this.event.eventId}\nevent: ${this.event.method}\ndata: ${this.json}\n\n`;
    return this.frame;
  }
}

/** A stream attached to a feed. */
export interface FeedListener {
  /** The next event of the thread, in seq order, with no gap after the position it attached at. */
  push(item: FeedItem): void;
  /** The feed stopped (its follow failed): the listener must follow the log on its own. */
  detached(): void;
}

/** Recent items a feed keeps, so a stream slightly behind it can attach without reading the log. */
const RECENT = 512;
/** Live messages the feed's follower holds; past this it re-reads the log. */
const MAX_QUEUED = 10_000;
const POLL_MS = 5_000;
const PAGE_SIZE = 100;

interface FeedSource {
  db: Queryable;
  bus: Bus;
  tenantId: string;
  threadId: string;
}

/**
 * The live feed of one thread on one gateway: one follower of the log (one
 * bus subscription, one catch-up, one poll timer) whose events are pushed to
 * every stream of the thread that is caught up, instead of one follower per
 * stream. A stream that falls behind (its client is slow, it rewinds, it is
 * catching up) detaches and follows the log on its own until it is level
 * again (streaming/pump.ts). The feed stops when its last listener leaves.
 */
class ThreadFeed {
  /** Every event after this seq will be pushed, in order. */
  position: number;
  private readonly recent: FeedItem[] = [];
  private readonly listeners = new Set<FeedListener>();
  private readonly stop = new AbortController();

  constructor(
    private readonly source: FeedSource,
    afterSeq: number,
    private readonly onStopped: (feed: ThreadFeed) => void,
  ) {
    this.position = afterSeq;
    void this.run();
  }

  get size(): number {
    return this.listeners.size;
  }

  /**
   * Attaches `listener` at `cursor` (it has everything up to it). A cursor
   * ahead of the feed is accepted only when `verified` (known to be in the
   * log); one behind it, when the recent items cover the difference, which are
   * returned for the listener to take first. Undefined: not attached.
   */
  attach(listener: FeedListener, cursor: number, verified: boolean): FeedItem[] | undefined {
    if (this.stop.signal.aborted) return undefined;
    if (cursor > this.position && !verified) return undefined;
    if (cursor >= this.position) {
      this.listeners.add(listener);
      return [];
    }
    const first = this.recent[0];
    if (first === undefined || first.seq > cursor + 1) return undefined;
    this.listeners.add(listener);
    return this.recent.filter((item) => item.seq > cursor);
  }

  detach(listener: FeedListener): void {
    if (!this.listeners.delete(listener) || this.listeners.size > 0) return;
    this.stop.abort();
    this.onStopped(this);
  }

  private async run(): Promise<void> {
    try {
      for await (const envelope of followThread({
        ...this.source,
        afterSeq: this.position,
        signal: this.stop.signal,
        maxQueued: MAX_QUEUED,
        pollMs: POLL_MS,
        pageSize: PAGE_SIZE,
      })) {
        const item = new FeedItem(envelope);
        this.position = item.seq;
        this.recent.push(item);
        if (this.recent.length > RECENT) this.recent.shift();
        for (const listener of this.listeners) listener.push(item);
      }
    } catch {
      // The listeners follow on their own, and meet the failure there (streaming/pump.ts).
    } finally {
      this.stop.abort();
      this.onStopped(this);
      const left = [...this.listeners];
      this.listeners.clear();
      for (const listener of left) listener.detached();
    }
  }
}

/** The live feeds of one gateway, one per (tenant, thread) that has a caught-up stream. */
export class ThreadFeeds {
  private readonly feeds = new Map<string, ThreadFeed>();

  /** Feeds running (for tests and metrics). */
  get size(): number {
    return this.feeds.size;
  }

  /**
   * Attaches `listener` to the thread's feed (streaming/pump.ts): see
   * ThreadFeed.attach. With `verified`, a thread without a feed gets one,
   * starting at `cursor`. Returns the detach function and the items to take
   * first, or undefined when the listener must follow on its own.
   */
  attach(
    source: FeedSource,
    listener: FeedListener,
    cursor: number,
    verified: boolean,
  ): { items: FeedItem[]; detach: () => void } | undefined {
    const key = `${source.tenantId}\u0000${source.threadId}`;
    let feed = this.feeds.get(key);
    if (feed === undefined) {
      if (!verified) return undefined;
      const created = new ThreadFeed(source, cursor, (stopped) => {
        if (this.feeds.get(key) === stopped) this.feeds.delete(key);
      });
      this.feeds.set(key, created);
      feed = created;
    }
    const items = feed.attach(listener, cursor, verified);
    if (items === undefined) return undefined;
    const attached = feed;
    return { items, detach: () => attached.detach(listener) };
  }
}
