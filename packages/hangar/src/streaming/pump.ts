import type { Bus } from '../bus/bus.ts';
import type { Queryable } from '../store/sql.ts';
import { type Outlet, type StreamSettings, waitForRoom } from './backpressure.ts';
import { FeedItem, type FeedListener, type ThreadFeeds } from './feed.ts';
import { FollowReset, followThread } from './follow.ts';
import { type Filter, matches } from './protocol.ts';

/** A subscription as the pump holds it. */
export interface PumpSubscription {
  id: string;
  filter: Filter;
  /** Events with a greater seq are wanted. */
  from: number;
}

interface Held extends PumpSubscription {
  /** The pump's high-water mark when the subscription was added: it saw nothing up to it. */
  addedAt: number;
  /** Removed subscriptions: the high-water mark at removal (it saw nothing after it). */
  removedAt?: number;
}

/** Removed subscriptions remembered so a replay does not send again what they sent. */
const MAX_RETIRED = 64;

/**
 * The connection a pump sends to. An object with methods (the connection
 * itself, usually) rather than callbacks: a socket can stay open for hours,
 * and every closure it keeps is memory (docs/performance.md, "Streaming").
 */
export interface PumpSink extends Outlet {
  /** Sends one event (serialized once per gateway: FeedItem.json / .sse). */
  send(item: FeedItem): void;
  /** The client is too slow (queue over the hard cap or not drained in time): close it `slow`. */
  onSlow(): void;
  /** A position beyond the log's end (streaming/follow.ts FollowReset): close it `reset`. */
  onReset(lastSeq: number): void;
  /** Following the log failed (the database is gone): close the connection so the client retries. */
  onError(err: unknown): void;
}

export interface PumpOptions {
  db: Queryable;
  bus: Bus;
  tenantId: string;
  threadId: string;
  settings: StreamSettings;
  /** The gateway's shared thread feeds: a caught-up pump takes its events from there. */
  feeds: ThreadFeeds;
  sink: PumpSink;
  signal: AbortSignal;
}

/** Held live messages per follower: past this the follower re-reads the log (streaming/follow.ts). */
const MAX_QUEUED_MESSAGES = 64;
/** A quiet thread's log is re-read this often (a lost bus message costs latency, never events). */
const POLL_MS = 5_000;
/** Events per log read: a page is held in memory whole, and events can be large. */
const PAGE_SIZE = 100;

/**
 * One connection's reader of its thread: sends each event that some
 * subscription matches, once, in seq order, from the earliest position a
 * subscription wants. A pump that is caught up takes the events from the
 * thread's shared feed on this gateway (streaming/feed.ts: one follower per
 * thread, each event serialized once), so an idle or live connection holds no
 * follower of its own. One that is behind (catching up, rewound, or its
 * client over the soft cap) follows the log on its own until it is level.
 *
 * Pulling is the backpressure: while the connection's queue is over its soft
 * cap the pump leaves the feed and does not pull, and reads what it missed
 * back from the log later. A subscription that wants events the pump has
 * already passed (a `since` below its position) rewinds it. Events seen again
 * are sent only if no subscription present then (one removed since included,
 * of the last MAX_RETIRED) matched them the first time, so nothing is sent twice.
 */
export class ThreadPump implements FeedListener {
  private readonly subscriptions = new Map<string, Held>();
  private readonly retired: Held[] = [];
  /** The position the pump has processed through (its follower reads after it). */
  private cursor = 0;
  /** The greatest seq the pump has processed. */
  private highWater = 0;
  private follow: AbortController | undefined;
  private running = false;
  /** Attached to the thread's feed: how to leave it. */
  private leaveFeed: (() => void) | undefined;
  /** The next pass follows the log on its own: the feed failed, or the client fell behind it. */
  private ownPass = false;
  /** The connection is being closed `slow`: nothing more is sent. */
  private finished = false;

  constructor(private readonly options: PumpOptions) {
    options.signal.addEventListener('abort', () => this.leave(), { once: true });
  }

  /** The position of the newest event processed (0 before any). */
  get position(): number {
    return this.highWater;
  }

  get count(): number {
    return this.subscriptions.size;
  }

  has(id: string): boolean {
    return this.subscriptions.has(id);
  }

  add(subscription: PumpSubscription): void {
    if (!this.running && this.leaveFeed === undefined && this.subscriptions.size === 0) {
      if (subscription.from > this.cursor) {
        // Idle: nothing between the old position and this one is wanted.
        this.cursor = subscription.from;
        this.highWater = Math.max(this.highWater, subscription.from);
      }
    }
    this.subscriptions.set(subscription.id, { ...subscription, addedAt: this.highWater });
    if (subscription.from < this.cursor) {
      this.cursor = subscription.from;
      this.follow?.abort();
      this.leave();
    }
    this.start();
  }

  remove(id: string): boolean {
    const held = this.subscriptions.get(id);
    if (held === undefined) return false;
    this.subscriptions.delete(id);
    this.retired.push({ ...held, removedAt: this.highWater });
    if (this.retired.length > MAX_RETIRED) this.retired.shift();
    if (this.subscriptions.size === 0) this.leave();
    return true;
  }

  /** FeedListener: the feed's next event (seq order, no gap after the position attached at). */
  push(item: FeedItem): void {
    if (item.seq <= this.cursor) return;
    const { sink: outlet, settings } = this.options;
    if (this.select(item)) {
      if (outlet.closed) {
        this.leave();
        return;
      }
      const queued = outlet.queuedBytes();
      if (queued > settings.hardCapBytes) {
        this.finished = true;
        this.leave();
        this.options.sink.onSlow();
        return;
      }
      if (queued >= settings.softCapBytes) {
        // Behind: wait for room, reading this event and the next back from the log.
        this.leave();
        this.ownPass = true;
        this.start();
        return;
      }
      this.options.sink.send(item);
    }
    this.cursor = item.seq;
    this.highWater = Math.max(this.highWater, item.seq);
    if (this.subscriptions.size === 0) this.leave();
  }

  /** FeedListener: the feed stopped; follow on our own. */
  detached(): void {
    this.leaveFeed = undefined;
    this.ownPass = true;
    this.start();
  }

  private leave(): void {
    const leave = this.leaveFeed;
    this.leaveFeed = undefined;
    leave?.();
  }

  private start(): void {
    if (this.running || this.leaveFeed !== undefined || this.finished) return;
    if (this.options.signal.aborted || this.subscriptions.size === 0) return;
    void this.loop();
  }

  /** Attaches to the thread's feed, taking first the items it is behind by; true when still attached. */
  private attach(verified: boolean): boolean {
    const { db, bus, tenantId, threadId, feeds } = this.options;
    const attached = feeds.attach({ db, bus, tenantId, threadId }, this, this.cursor, verified);
    if (attached === undefined) return false;
    this.leaveFeed = attached.detach;
    for (const item of attached.items) {
      if (this.leaveFeed === undefined) break;
      this.push(item);
    }
    return this.leaveFeed !== undefined;
  }

  private async loop(): Promise<void> {
    const { signal } = this.options;
    this.running = true;
    try {
      while (!signal.aborted && this.subscriptions.size > 0 && !this.finished) {
        if (!this.ownPass && this.attach(false)) return;
        this.ownPass = false;
        const follow = new AbortController();
        this.follow = follow;
        const onAbort = () => follow.abort();
        signal.addEventListener('abort', onAbort);
        try {
          const outcome = await this.pass(follow.signal);
          if (outcome === 'done') return;
          // Level with the log: from here the feed carries the thread (one it is ahead of waits for the log).
          if (outcome === 'level' && !signal.aborted && this.attach(true)) return;
        } finally {
          signal.removeEventListener('abort', onAbort);
        }
      }
    } catch (err) {
      if (err instanceof FollowReset) this.options.sink.onReset(err.lastSeq);
      else if (!signal.aborted) this.options.sink.onError(err);
    } finally {
      this.running = false;
      this.follow = undefined;
    }
  }

  /**
   * One follow of the log from the cursor until level with it: `done` when
   * the connection is done (slow, closed), `level` when caught up, `again`
   * when it stopped early (rewound, or no subscription left).
   */
  private async pass(follow: AbortSignal): Promise<'done' | 'level' | 'again'> {
    const { settings, sink: outlet } = this.options;
    for await (const envelope of followThread({
      db: this.options.db,
      bus: this.options.bus,
      tenantId: this.options.tenantId,
      threadId: this.options.threadId,
      afterSeq: this.cursor,
      signal: follow,
      maxQueued: MAX_QUEUED_MESSAGES,
      pollMs: POLL_MS,
      pageSize: PAGE_SIZE,
      signalReset: true,
      untilCaughtUp: true,
    })) {
      if (follow.aborted) break;
      const item = new FeedItem(envelope);
      if (this.select(item)) {
        const room = await waitForRoom(outlet, settings);
        if (room === 'slow') {
          this.finished = true;
          this.options.sink.onSlow();
          return 'done';
        }
        if (room === 'closed') return 'done';
        // Rewound while waiting: this event is read again from the new cursor.
        if (follow.aborted) break;
        this.options.sink.send(item);
      }
      this.cursor = envelope.seq;
      this.highWater = Math.max(this.highWater, envelope.seq);
      if (this.subscriptions.size === 0) return 'again';
    }
    return follow.aborted ? 'again' : 'level';
  }

  /** True when the event goes out to this connection. */
  private select(item: FeedItem): boolean {
    const { seq, channel } = item;
    const namespace = item.event.params.namespace;
    const fresh = seq > this.highWater;
    const matching = (s: Held) => s.from < seq && matches(s.filter, channel, namespace);
    let wanted = false;
    for (const s of this.subscriptions.values()) {
      if (!matching(s)) continue;
      if (fresh) return true;
      // Seen before: it went out then if a subscription present then matched it.
      if (s.addedAt >= seq) wanted = true;
      else return false;
    }
    if (!wanted) return false;
    return !this.retired.some((s) => s.addedAt < seq && seq <= (s.removedAt ?? 0) && matching(s));
  }
}
