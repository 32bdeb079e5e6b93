import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { EventEnvelope } from '../events/envelope.ts';
import type { Bus, PublishFence, TailRead, ThreadMessage, Unsubscribe } from './bus.ts';
import { MemoryBus } from './memory.ts';

/** How much of a thread's recent events Redis keeps (docs/operations.md, HANGAR_STREAM_RETENTION_*). */
export interface StreamRetention {
  /** Entries per thread stream (trimmed approximately: Redis may keep up to one node, ~100, more). */
  entries: number;
  /** Bytes of event JSON per thread stream, estimated from the size of the latest batch's events. */
  bytes: number;
  /** The stream (and its generation and fence) expire this long after the thread's last event. */
  ms: number;
}

export const DEFAULT_STREAM_RETENTION: StreamRetention = {
  entries: 10_000,
  bytes: 8 * 1024 * 1024,
  ms: 60 * 60 * 1000,
};

export interface RedisBusOptions {
  url: string;
  /** Every key and channel starts with this (default in the CLI: `hangar:<schema>:`). */
  prefix: string;
  logger: Logger;
  retention?: Partial<StreamRetention>;
  /** Events being published at once; past this a publish is dropped and counted (default 10000). */
  maxPendingEvents?: number;
  /** A Redis command that takes longer fails (default 2000 ms); readers then use Postgres. */
  commandTimeoutMs?: number;
}

/** What the bus did with the batches handed to it since it started. */
export interface RedisBusStats {
  published: number;
  dropped: number;
  fenced: number;
}

/**
 * One script per thread batch, so a batch is fenced, stored and announced
 * atomically: a reader that saw the PUBLISH finds the events in the stream.
 * KEYS: stream, generation, fence hash. ARGV: run id ('' = no fence), epoch,
 * max entries, max bytes, ttl ms, channel, candidate generation, batch JSON,
 * then (seq, envelope JSON) pairs in seq order. Returns the entries added, or
 * -1 when a higher epoch of the run already published.
 */
const PUBLISH_SCRIPT = `
if ARGV[1] ~= '' then
  local seen = redis.call('HGET', KEYS[3], ARGV[1])
  if seen and tonumber(seen) > tonumber(ARGV[2]) then return -1 end
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], ARGV[7])
end
local last = 0
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top > 0 then last = tonumber(string.match(top[1][1], '^(%d+)')) end
local added = 0
local bytes = 0
for i = 9, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    redis.call('XADD', KEYS[1], ARGV[i] .. '-0', 'e', ARGV[i + 1])
    last = seq
    added = added + 1
    bytes = bytes + string.len(ARGV[i + 1])
  end
end
if added > 0 then
  local keep = tonumber(ARGV[3])
  local byBytes = math.floor(tonumber(ARGV[4]) / math.max(1, bytes / added))
  if byBytes < keep then keep = byBytes end
  if keep < 1 then keep = 1 end
  redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', keep)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[8])
return added
`;

type PublishCommand = (...args: (string | number)[]) => Promise<number>;

/** Warnings about dropped publishes are logged at most this often. */
const DROP_LOG_MS = 10_000;

/**
 * The event plane across processes (docs/streaming.md, "Event plane").
 * Postgres stays the seq authority: events reach this bus only after their
 * fenced commit, and the bus keeps, per thread, a Redis stream whose entry
 * ids are the log's seqs (`<seq>-0`), so positions mean the same everywhere.
 * Redis is the fan-out (per-thread pub/sub channels carrying the events, so a
 * gateway needs no read to serve live followers) and the hot tail a
 * reconnecting reader catches up from. Losing Redis loses no event: readers
 * fall back to the Postgres log.
 *
 * Subscriptions: one subscriber connection per process, one channel per
 * followed thread, ref-counted by the local followers of that thread. A
 * single shared channel would send every thread's events to every gateway,
 * the cost that made LISTEN/NOTIFY hints not scale.
 */
export class RedisBus implements Bus {
  private readonly local = new MemoryBus();
  private readonly commands: Redis;
  private readonly subscriber: Redis;
  private readonly publishCommand: PublishCommand;
  private readonly retention: StreamRetention;
  private readonly maxPendingEvents: number;
  private readonly workChannel: string;
  private readonly cancelChannel: string;
  /** Subscribed thread channels: how many local followers each has. */
  private readonly channels = new Map<string, { threadId: string; refs: number }>();
  private pendingEvents = 0;
  private pendingWork = false;
  private workScheduled = false;
  private lastDropLog = 0;
  /** The subscriptions of the latest connect, confirmed (or failed). */
  private subscribed: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly counters: RedisBusStats = { published: 0, dropped: 0, fenced: 0 };

  constructor(private readonly options: RedisBusOptions) {
    this.retention = { ...DEFAULT_STREAM_RETENTION, ...options.retention };
    this.maxPendingEvents = options.maxPendingEvents ?? 10_000;
    this.workChannel = `${options.prefix}work`;
    this.cancelChannel = `${options.prefix}cancel`;
    // Commands fail at once while Redis is away (no offline queue, no retry):
    // memory stays bounded and callers fall back to Postgres.
    this.commands = new Redis(options.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 2_000,
      lazyConnect: true,
    });
    this.commands.defineCommand('hangarPublish', { numberOfKeys: 3, lua: PUBLISH_SCRIPT });
    this.publishCommand = (this.commands as unknown as { hangarPublish: PublishCommand }).hangarPublish.bind(
      this.commands,
    );
    // Subscriptions are (re)made by this class on every connect (onSubscriberReady), so nothing
    // needs queueing while Redis is away.
    this.subscriber = new Redis(options.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      autoResubscribe: false,
    });
    this.commands.on('error', (err: Error) =>
      this.options.logger.debug({ err }, 'redis command connection error'),
    );
    this.subscriber.on('error', (err: Error) => this.options.logger.debug({ err }, 'redis subscriber error'));
    this.subscriber.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    this.subscriber.on('ready', () => this.onSubscriberReady());
  }

  /**
   * Connects both connections. A Redis that is down at start is not fatal:
   * the process runs on the Postgres log and picks Redis up when it returns.
   */
  async start(): Promise<void> {
    const connect = async (client: Redis) => {
      try {
        await client.connect();
      } catch (err) {
        this.options.logger.warn(
          { err },
          'redis unavailable at start; streaming falls back to Postgres until it returns',
        );
      }
    };
    await Promise.all([connect(this.commands), connect(this.subscriber)]);
    await this.subscribed;
  }

  get stats(): RedisBusStats {
    return { ...this.counters };
  }

  private key(threadId: string, suffix: string): string {
    // The hash tag keeps a thread's keys in one slot (one script touches them all on Redis Cluster).
    return `${this.options.prefix}{${threadId}}:${suffix}`;
  }

  private liveChannel(threadId: string): string {
    return this.key(threadId, 'live');
  }

  publishEvents(threadId: string, events: readonly EventEnvelope[], fence?: PublishFence): void {
    if (events.length === 0 || this.closed) return;
    if (this.pendingEvents + events.length > this.maxPendingEvents || this.commands.status !== 'ready') {
      this.dropped(events.length, undefined);
      return;
    }
    const args: (string | number)[] = [
      this.key(threadId, 's'),
      this.key(threadId, 'g'),
      this.key(threadId, 'f'),
      fence?.runId ?? '',
      fence?.epoch ?? 0,
      this.retention.entries,
      this.retention.bytes,
      this.retention.ms,
      this.liveChannel(threadId),
      randomUUID(),
    ];
    const encoded = events.map((event) => JSON.stringify(event));
    args.push(`[${encoded.join(',')}]`);
    events.forEach((event, i) => {
      args.push(event.seq, encoded[i] as string);
    });
    this.pendingEvents += events.length;
    this.publishCommand(...args).then(
      (added) => {
        this.pendingEvents -= events.length;
        if (added < 0) this.counters.fenced += events.length;
        else this.counters.published += events.length;
      },
      (err: unknown) => {
        this.pendingEvents -= events.length;
        this.dropped(events.length, err);
      },
    );
  }

  /** The events are durable in Postgres; only latency is lost. Counted, and logged now and then. */
  private dropped(count: number, err: unknown): void {
    this.counters.dropped += count;
    const now = Date.now();
    if (now - this.lastDropLog < DROP_LOG_MS) return;
    this.lastDropLog = now;
    this.options.logger.warn(
      { err, dropped: this.counters.dropped },
      'redis publish dropped (events are in the Postgres log; followers read them from there)',
    );
  }

  subscribeThread(threadId: string, handler: (message: ThreadMessage) => void): Unsubscribe {
    const unsubscribe = this.local.subscribeThread(threadId, handler);
    const channel = this.liveChannel(threadId);
    const entry = this.channels.get(channel);
    if (entry !== undefined) {
      entry.refs++;
    } else {
      this.channels.set(channel, { threadId, refs: 1 });
      // Until SUBSCRIBE is confirmed a publish can be missed: once it is, every
      // follower of the thread re-reads (the stream has whatever was published before).
      // While Redis is away the next connect subscribes (and wakes everyone).
      if (this.subscriber.status === 'ready') {
        this.subscriber.subscribe(channel).then(
          () => this.local.dispatchHint(threadId, Number.MAX_SAFE_INTEGER),
          (err: unknown) =>
            this.options.logger.debug({ err }, 'redis subscribe failed; followers poll the log'),
        );
      }
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      unsubscribe();
      const current = this.channels.get(channel);
      if (current === undefined) return;
      current.refs--;
      if (current.refs > 0) return;
      this.channels.delete(channel);
      if (!this.closed && this.subscriber.status === 'ready')
        this.subscriber.unsubscribe(channel).catch(() => {});
    };
  }

  async readTail(threadId: string, afterSeq: number, limit: number): Promise<TailRead | undefined> {
    if (this.commands.status !== 'ready') return undefined;
    const stream = this.key(threadId, 's');
    try {
      const results = await this.commands
        .multi()
        .xrange(stream, `${afterSeq + 1}-0`, '+', 'COUNT', limit)
        .xrevrange(stream, '+', '-', 'COUNT', 1)
        .get(this.key(threadId, 'g'))
        .exec();
      if (results === null) return undefined;
      for (const [err] of results) if (err) throw err;
      const range = results[0]?.[1] as [string, string[]][];
      const top = results[1]?.[1] as [string, string[]][];
      const generation = (results[2]?.[1] as string | null) ?? null;
      const events = range.map(([, fields]) => JSON.parse(fields[1] as string) as EventEnvelope);
      const lastSeq = top[0] === undefined ? 0 : Number.parseInt(top[0][0], 10);
      return { events, lastSeq, generation };
    } catch (err) {
      this.options.logger.debug({ err }, 'redis tail read failed; reading the Postgres log');
      return undefined;
    }
  }

  private onMessage(channel: string, message: string): void {
    if (channel === this.workChannel) {
      this.local.notifyWork();
      return;
    }
    if (channel === this.cancelChannel) {
      this.local.notifyCancel(message);
      return;
    }
    const entry = this.channels.get(channel);
    if (entry === undefined) return;
    let events: EventEnvelope[];
    try {
      events = JSON.parse(message) as EventEnvelope[];
    } catch {
      return;
    }
    this.local.dispatchEvents(entry.threadId, events);
  }

  /**
   * On every connect (the first, and each after Redis was lost): subscribe to
   * the notices and every followed thread; once that is confirmed, whatever was
   * published while not subscribed was missed, so every follower re-reads and
   * every idle worker looks for work.
   */
  private onSubscriberReady(): void {
    const channels = [this.workChannel, this.cancelChannel, ...this.channels.keys()];
    this.subscribed = this.subscriber.subscribe(...channels).then(
      () => {
        this.local.dispatchHintToAll();
        this.local.notifyWork();
      },
      (err: unknown) =>
        this.options.logger.debug({ err }, 'redis subscribe failed; retried at the next connect'),
    );
  }

  notifyWork(): void {
    this.pendingWork = true;
    if (this.workScheduled || this.closed) return;
    this.workScheduled = true;
    // Every worker hears every work notice: those of one turn of the event loop go out as one.
    setImmediate(() => {
      this.workScheduled = false;
      if (!this.pendingWork || this.closed) return;
      this.pendingWork = false;
      this.commands.publish(this.workChannel, '').catch((err: unknown) => {
        this.options.logger.debug({ err }, 'work notice failed (workers poll)');
      });
    });
  }

  onWork(handler: () => void): Unsubscribe {
    return this.local.onWork(handler);
  }

  notifyCancel(runId: string): void {
    if (this.closed) return;
    this.commands.publish(this.cancelChannel, runId).catch((err: unknown) => {
      this.options.logger.debug({ err }, 'cancel notice failed (the worker sees it at its next heartbeat)');
    });
  }

  onCancel(handler: (runId: string) => void): Unsubscribe {
    return this.local.onCancel(handler);
  }

  /** Lets publishes in flight finish (briefly), then disconnects. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const deadline = Date.now() + 1_000;
    while (this.pendingEvents > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.commands.disconnect();
    this.subscriber.disconnect();
    await this.local.close();
  }
}
