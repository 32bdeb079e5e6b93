import { z } from 'zod';

/**
 * Backpressure and heartbeat settings of the thread stream, and the wait a
 * stream does when its client reads slower than events come.
 *
 * Each connection's send queue (bytes accepted for the socket but not yet
 * written to the network: `ws.bufferedAmount`, `res.writableLength`) is
 * capped. Under the soft cap live events are pushed. Over it the stream stops
 * pulling events and waits for the queue to fall to half the soft cap; while
 * it waits, the thread follower drops the live events it would queue and
 * reads them back from the log when the stream pulls again (positions make
 * that exact), so a slow client costs the gateway at most its hard cap plus
 * the follower's bounded queue. A queue over the hard cap, or one that does
 * not drain within the write timeout, closes the connection with the `slow`
 * code: the client resumes from its last seq.
 */
export interface StreamSettings {
  /** Send-queue bytes above which live events stop being pushed (default 1 MiB). */
  softCapBytes: number;
  /** Send-queue bytes above which the connection is closed `slow` (default 8 MiB). */
  hardCapBytes: number;
  /** How long a queue over the soft cap may take to drain before the connection is closed `slow` (default 30 s). */
  writeTimeoutMs: number;
  /** WebSocket ping / SSE comment interval (default 15 s). */
  heartbeatMs: number;
  /** Pings a WebSocket peer may leave unanswered before it is dropped (default 2). */
  missedPongs: number;
  /** On shutdown, clients are told to reconnect spread over this window (default 2 s). */
  shutdownWindowMs: number;
  /** On shutdown, connections still open after this are cut (default 10 s). */
  shutdownDeadlineMs: number;
  /** Largest WebSocket message a client may send (default 1 MiB; bigger: close 1009). */
  maxMessageBytes: number;
  /** Subscriptions one WebSocket may hold (default 32). */
  maxSubscriptions: number;
}

export const DEFAULT_STREAM_SETTINGS: StreamSettings = {
  softCapBytes: 1024 * 1024,
  hardCapBytes: 8 * 1024 * 1024,
  writeTimeoutMs: 30_000,
  heartbeatMs: 15_000,
  missedPongs: 2,
  shutdownWindowMs: 2_000,
  shutdownDeadlineMs: 10_000,
  maxMessageBytes: 1024 * 1024,
  maxSubscriptions: 32,
};

const positive = z.coerce
  .number()
  .int()
  .min(1)
  .max(2 ** 31);

/** The environment variable of each setting (documented in docs/streaming.md). */
const ENV: Record<keyof StreamSettings, string> = {
  softCapBytes: 'HANGAR_STREAM_SOFT_CAP_BYTES',
  hardCapBytes: 'HANGAR_STREAM_HARD_CAP_BYTES',
  writeTimeoutMs: 'HANGAR_STREAM_WRITE_TIMEOUT_MS',
  heartbeatMs: 'HANGAR_STREAM_HEARTBEAT_MS',
  missedPongs: 'HANGAR_STREAM_MISSED_PONGS',
  shutdownWindowMs: 'HANGAR_STREAM_SHUTDOWN_WINDOW_MS',
  shutdownDeadlineMs: 'HANGAR_STREAM_SHUTDOWN_DEADLINE_MS',
  maxMessageBytes: 'HANGAR_STREAM_MAX_MESSAGE_BYTES',
  maxSubscriptions: 'HANGAR_STREAM_MAX_SUBSCRIPTIONS',
};

/**
 * The settings: `overrides`, else `HANGAR_STREAM_*` from the environment,
 * else the defaults. A bad variable throws naming it (at startup).
 */
export function streamSettings(
  overrides: Partial<StreamSettings> = {},
  env: NodeJS.ProcessEnv = process.env,
): StreamSettings {
  const settings = { ...DEFAULT_STREAM_SETTINGS };
  for (const key of Object.keys(ENV) as Array<keyof StreamSettings>) {
    const raw = env[ENV[key]];
    if (raw === undefined || raw === '') continue;
    const parsed = positive.safeParse(raw);
    if (!parsed.success)
      throw new Error(`${ENV[key]} must be a positive integer, got ${JSON.stringify(raw)}`);
    settings[key] = parsed.data;
  }
  Object.assign(settings, overrides);
  if (settings.hardCapBytes < settings.softCapBytes) settings.hardCapBytes = settings.softCapBytes;
  return settings;
}

/** What a stream writes to: its queued bytes, and whether it is gone. */
export interface Outlet {
  queuedBytes(): number;
  readonly closed: boolean;
}

export type Room = 'ok' | 'slow' | 'closed';

const DRAIN_POLL_MS = 20;

/**
 * Waits until `outlet` has room for live events: at once under the soft cap;
 * over it, until the queue falls to half the soft cap. `slow` when it is over
 * the hard cap or does not drain within the write timeout; `closed` when the
 * connection went away meanwhile.
 */
export async function waitForRoom(outlet: Outlet, settings: StreamSettings): Promise<Room> {
  if (outlet.closed) return 'closed';
  let queued = outlet.queuedBytes();
  if (queued > settings.hardCapBytes) return 'slow';
  if (queued < settings.softCapBytes) return 'ok';
  const deadline = Date.now() + settings.writeTimeoutMs;
  const lowWater = settings.softCapBytes / 2;
  while (queued > lowWater) {
    if (Date.now() >= deadline) return 'slow';
    await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    if (outlet.closed) return 'closed';
    queued = outlet.queuedBytes();
    if (queued > settings.hardCapBytes) return 'slow';
  }
  return 'ok';
}
