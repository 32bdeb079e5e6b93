import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MemoryBus } from '../bus/memory.ts';
import type { PendingEvent } from '../events/envelope.ts';
import { appendEvents } from '../events/log.ts';
import { TrackingBus } from '../testing/bus.ts';
import { createTestPostgres, type TestStore } from '../testing/db.ts';
import { createThread } from '../threads/repository.ts';
import { streamSettings } from './backpressure.ts';
import { ThreadFeeds } from './feed.ts';
import { toFilter } from './protocol.ts';
import { ThreadPump } from './pump.ts';

const TENANT = 'default';

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('shared thread feeds (streaming/feed.ts)', () => {
  let store: TestStore;
  beforeAll(async () => {
    store = await createTestPostgres();
  });
  afterAll(async () => {
    await store?.dispose();
  });

  const settings = streamSettings({ softCapBytes: 1_000, hardCapBytes: 1_000_000 });
  const custom = (count: number): PendingEvent[] =>
    Array.from({ length: count }, (_, i) => ({ channel: 'custom', data: { i } }));

  async function append(bus: MemoryBus, threadId: string, count: number): Promise<void> {
    const written = await store.db.transaction((tx) =>
      appendEvents(tx, { tenantId: TENANT, threadId, runId: null, attempt: 1 }, custom(count)),
    );
    bus.publishEvents(threadId, written);
  }

  function pumpOf(bus: MemoryBus, feeds: ThreadFeeds, threadId: string, from: number) {
    const sent: number[] = [];
    const frames = new Set<string>();
    const controller = new AbortController();
    const outlet = { queued: 0, closed: false };
    const pump = new ThreadPump({
      db: store.db,
      bus,
      tenantId: TENANT,
      threadId,
      settings,
      feeds,
      sink: {
        queuedBytes: () => outlet.queued,
        get closed() {
          return outlet.closed;
        },
        send: (item) => {
          sent.push(item.seq);
          frames.add(item.json);
        },
        onSlow: () => {
          throw new Error('closed slow');
        },
        onReset: () => {
          throw new Error('reset');
        },
        onError: (err) => {
          throw err;
        },
      },
      signal: controller.signal,
    });
    pump.add({ id: 'all', filter: toFilter({ channels: ['custom'] }), from });
    return { sent, frames, controller, outlet };
  }

  it('streams of one thread share one follower, and each gets every event once, in order', async () => {
    const bus = new TrackingBus();
    const feeds = new ThreadFeeds();
    const { thread_id: threadId } = await createThread(store.db, { tenantId: TENANT });
    await append(bus, threadId, 1);
    const pumps = Array.from({ length: 40 }, () => pumpOf(bus, feeds, threadId, 1));
    // Each pump caught up (on its own or from the feed) ends on the one feed: one bus subscription.
    await until(() => feeds.size === 1 && bus.open === 1, 'the pumps to share one feed');
    for (let batch = 0; batch < 3; batch++) await append(bus, threadId, 10);
    const expected = Array.from({ length: 30 }, (_, i) => i + 2);
    await until(() => pumps.every((p) => p.sent.length >= 30), 'every pump to get 30 events');
    for (const p of pumps) expect(p.sent).toEqual(expected);
    // Serialized once per gateway: every pump sent the very same strings.
    const first = pumps[0]?.frames;
    expect(pumps.every((p) => [...p.frames].every((f) => first?.has(f)))).toBe(true);
    for (const p of pumps) p.controller.abort();
    expect(feeds.size).toBe(0);
    await until(() => bus.open === 0, 'the bus subscriptions to close');
  });

  it('a stream whose client is over the soft cap leaves the feed, then gets what it missed from the log', async () => {
    const bus = new TrackingBus();
    const feeds = new ThreadFeeds();
    const { thread_id: threadId } = await createThread(store.db, { tenantId: TENANT });
    await append(bus, threadId, 1);
    const fast = pumpOf(bus, feeds, threadId, 1);
    const slow = pumpOf(bus, feeds, threadId, 1);
    await until(() => feeds.size === 1 && bus.open === 1, 'both pumps on the feed');
    slow.outlet.queued = 5_000;
    await append(bus, threadId, 20);
    await until(() => fast.sent.length === 20, 'the fast pump to get 20 events');
    expect(slow.sent).toEqual([]);
    // The slow one waits on its own follower (a second bus subscription), not on the feed.
    await until(() => bus.open === 2, 'the slow pump to follow on its own');
    await append(bus, threadId, 20);
    await until(() => fast.sent.length === 40, 'the fast pump to get 40 events');
    slow.outlet.queued = 0;
    const expected = Array.from({ length: 40 }, (_, i) => i + 2);
    await until(() => slow.sent.length >= 40, 'the slow pump to catch up');
    expect(slow.sent).toEqual(expected);
    expect(fast.sent).toEqual(expected);
    // Level again: back on the feed.
    await until(() => bus.open === 1, 'the slow pump to rejoin the feed');
    await append(bus, threadId, 5);
    await until(() => slow.sent.length === 45 && fast.sent.length === 45, 'both pumps to get 45 events');
    expect(slow.sent).toEqual(fast.sent);
    fast.controller.abort();
    slow.controller.abort();
    expect(feeds.size).toBe(0);
  });
});
