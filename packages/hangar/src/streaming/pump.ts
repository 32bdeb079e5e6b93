import type { Logger } from 'pino';
import type { Bus } from '../bus/bus.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import type { Queryable } from '../store/sql.ts';
import { type Outlet, type StreamSettings, waitForRoom } from './backpressure.ts';
import { FollowReset, followThread } from './follow.ts';
import { type Filter, matches, type ProtocolEvent, toProtocolEvent } from './protocol.ts';

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

export interface PumpOptions {
  db: Queryable;
  bus: Bus;
  tenantId: string;
  threadId: string;
  settings: StreamSettings;
  outlet: Outlet;
  send(event: ProtocolEvent): void;
  /** The client is too slow (queue over the hard cap or not drained in time): close it `slow`. */
  onSlow(): void;
  /** A position beyond the log's end (streaming/follow.ts FollowReset): close it `reset`. */
  onReset(lastSeq: number): void;
  /** Following the log failed (the database is gone): close the connection so the client retries. */
  onError(err: unknown): void;
  signal: AbortSignal;
  logger: Pick<Logger, 'info' | 'error'>;
}

/** Held live messages per follower: past this the follower re-reads the log (streaming/follow.ts). */
const MAX_QUEUED_MESSAGES = 64;
/** A quiet thread's log is re-read this often (a lost bus message costs latency, never events). */
const POLL_MS = 5_000;
/** Events per log read: a page is held in memory whole, and events can be large. */
const PAGE_SIZE = 100;

/**
 * One connection's reader of its thread: follows the log from the earliest
 * position a subscription wants and sends each event that some subscription
 * matches, once, in seq order. Pulling is the backpressure: while the
 * connection's queue is over its soft cap the pump does not pull, and the
 * follower reads what it dropped back from the log later.
 *
 * A subscription that wants events the pump has already passed (a `since`
 * below its position) rewinds it. Events seen again are sent only if no
 * subscription present then (one removed since included, of the last
 * MAX_RETIRED) matched them the first time, so nothing is sent twice.
 */
export class ThreadPump {
  private readonly subscriptions = new Map<string, Held>();
  private readonly retired: Held[] = [];
  /** The position the follower reads after. */
  private cursor = 0;
  /** The greatest seq the pump has processed. */
  private highWater = 0;
  private follow: AbortController | undefined;
  private running = false;

  constructor(private readonly options: PumpOptions) {}

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
    if (!this.running && this.subscriptions.size === 0 && subscription.from > this.cursor) {
      // Idle: nothing between the old position and this one is wanted.
      this.cursor = subscription.from;
      this.highWater = Math.max(this.highWater, subscription.from);
    }
    this.subscriptions.set(subscription.id, { ...subscription, addedAt: this.highWater });
    if (subscription.from < this.cursor) {
      this.cursor = subscription.from;
      this.follow?.abort();
    }
    if (!this.running) void this.loop();
  }

  remove(id: string): boolean {
    const held = this.subscriptions.get(id);
    if (held === undefined) return false;
    this.subscriptions.delete(id);
    this.retired.push({ ...held, removedAt: this.highWater });
    if (this.retired.length > MAX_RETIRED) this.retired.shift();
    return true;
  }

  private async loop(): Promise<void> {
    const { signal } = this.options;
    this.running = true;
    try {
      while (!signal.aborted && this.subscriptions.size > 0) {
        const follow = new AbortController();
        this.follow = follow;
        const onAbort = () => follow.abort();
        signal.addEventListener('abort', onAbort);
        try {
          const done = await this.pass(follow.signal);
          if (done) return;
        } finally {
          signal.removeEventListener('abort', onAbort);
        }
      }
    } catch (err) {
      if (err instanceof FollowReset) this.options.onReset(err.lastSeq);
      else if (!signal.aborted) this.options.onError(err);
    } finally {
      this.running = false;
      this.follow = undefined;
    }
  }

  /** One follow from the cursor; true when the connection is done (slow, closed). */
  private async pass(follow: AbortSignal): Promise<boolean> {
    const { settings, outlet } = this.options;
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
    })) {
      if (follow.aborted) break;
      const event = this.select(envelope);
      if (event !== undefined) {
        const room = await waitForRoom(outlet, settings);
        if (room === 'slow') {
          this.options.onSlow();
          return true;
        }
        if (room === 'closed') return true;
        // Rewound while waiting: this event is read again from the new cursor.
        if (follow.aborted) break;
        this.options.send(event);
      }
      this.cursor = envelope.seq;
      this.highWater = Math.max(this.highWater, envelope.seq);
      if (this.subscriptions.size === 0) return false;
    }
    return false;
  }

  private select(envelope: EventEnvelope): ProtocolEvent | undefined {
    const { channel, event } = toProtocolEvent(envelope);
    const { seq } = envelope;
    const fresh = seq > this.highWater;
    const matching = (s: Held) => s.from < seq && matches(s.filter, channel, event.params.namespace);
    let wanted = false;
    for (const s of this.subscriptions.values()) {
      if (!matching(s)) continue;
      if (fresh) return event;
      // Seen before: it went out then if a subscription present then matched it.
      if (s.addedAt >= seq) wanted = true;
      else return undefined;
    }
    if (!wanted) return undefined;
    const sentBefore = this.retired.some((s) => s.addedAt < seq && seq <= (s.removedAt ?? 0) && matching(s));
    return sentBefore ? undefined : event;
  }
}
