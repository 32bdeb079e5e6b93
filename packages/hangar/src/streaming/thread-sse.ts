import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Bus } from '../bus/bus.ts';
import type { Queryable } from '../store/sql.ts';
import type { StreamSettings } from './backpressure.ts';
import type { FeedItem } from './feed.ts';
import { type Filter, subscriptionId } from './protocol.ts';
import { ThreadPump } from './pump.ts';
import { CLOSE_CODES, type CloseReason, type StreamRegistry } from './registry.ts';

export interface ThreadSseOptions {
  db: Queryable;
  bus: Bus;
  tenantId: string;
  threadId: string;
  filter: Filter;
  /** Events after this seq are sent. */
  from: number;
  settings: StreamSettings;
  registry: StreamRegistry;
  logger: Pick<Logger, 'info' | 'error'>;
}

/** After its final frame, a response whose client reads nothing is cut after this long. */
const END_GRACE_MS = 10_000;

/**
 * The Agent Protocol thread stream over SSE (`POST /threads/{id}/stream`): one
 * connection, one subscription. Frames are `id: <seq>`, `event: <method>`,
 * `data: <Event>`; comments are heartbeats. The stream outlives runs; when the
 * gateway ends it (shutdown, a slow client) the last frame is `event: close`
 * with the close code (streaming/registry.ts). Resolves when the stream is over.
 */
export function serveThreadSse(res: ServerResponse, options: ThreadSseOptions): Promise<void> {
  const { settings, logger } = options;
  const stop = new AbortController();
  let closed = false;
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();

  const finish = () => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    stop.abort();
    resolveDone();
  };
  res.on('close', finish);

  const end = (reason: CloseReason, lastSeq?: number) => {
    if (closed || res.writableEnded) return;
    logger.info({ reason, queued_bytes: res.writableLength }, 'thread stream closed by the gateway');
    const data = {
      type: 'close',
      code: CLOSE_CODES[reason],
      reason,
      reconnect: true,
      ...(lastSeq === undefined ? {} : { lastSeq }),
    };
    res.end(`event: close\ndata: ${JSON.stringify(data)}\n\n`);
    stop.abort();
    // A client that reads nothing never takes the rest: do not keep its buffers.
    setTimeout(() => res.destroy(), END_GRACE_MS).unref();
  };

  const heartbeat = setInterval(() => {
    if (!res.writableEnded) res.write(': heartbeat\n\n');
  }, settings.heartbeatMs);
  heartbeat.unref();

  const pump = new ThreadPump({
    db: options.db,
    bus: options.bus,
    tenantId: options.tenantId,
    threadId: options.threadId,
    settings,
    feeds: options.registry.feeds,
    sink: {
      queuedBytes: () => res.writableLength,
      get closed() {
        return closed || res.writableEnded;
      },
      send: (item: FeedItem) => {
        if (!res.writableEnded) res.write(item.sse);
      },
      onSlow: () => end('slow'),
      onReset: (lastSeq) => end('reset', lastSeq),
      onError: (err) => {
        logger.error({ err }, 'thread stream failed');
        res.destroy();
      },
    },
    signal: stop.signal,
  });
  options.registry.add({ close: (reason) => end(reason), destroy: () => res.destroy(), done });
  pump.add({ id: subscriptionId(options.filter), filter: options.filter, from: options.from });
  return done;
}
