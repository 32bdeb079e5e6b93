import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStore, STORE_KINDS, type TestStore } from '../testing/db.ts';
import { createThread } from '../threads/repository.ts';
import type { PendingEvent } from './envelope.ts';
import { type AppendContext, appendEvents, readEvents } from './log.ts';

const TENANT = 'default';

function pending(count: number, tag: string): PendingEvent[] {
  return Array.from({ length: count }, (_, i) => ({ channel: 'custom', data: { tag, i } }));
}

describe.each(STORE_KINDS)('event log on %s', (kind) => {
  // One store per suite (PGlite takes seconds to boot); every test uses threads of its own.
  let store: TestStore;

  beforeAll(async () => {
    store = await createTestStore(kind);
  });

  afterAll(async () => {
    await store?.dispose();
  });

  async function newThread(): Promise<string> {
    return (await createThread(store.db, { tenantId: TENANT })).thread_id;
  }

  function ctx(threadId: string, runId: string | null = null): AppendContext {
    return { tenantId: TENANT, threadId, runId, attempt: 1 };
  }

  function append(context: AppendContext, events: readonly PendingEvent[]) {
    return store.db.transaction((tx) => appendEvents(tx, context, events));
  }

  async function readAll(threadId: string, tenantId = TENANT) {
    return readEvents(store.db, tenantId, threadId, { afterSeq: 0, limit: 10_000 });
  }

  it('numbers each thread from 1, contiguously, independently of other threads', async () => {
    const a = await newThread();
    const b = await newThread();
    const a1 = await append(ctx(a), pending(3, 'a1'));
    const b1 = await append(ctx(b), pending(2, 'b1'));
    const a2 = await append(ctx(a), pending(2, 'a2'));
    const a3 = await append(ctx(a), pending(1, 'a3'));
    expect(a1.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(a2.map((e) => e.seq)).toEqual([4, 5]);
    expect(a3.map((e) => e.seq)).toEqual([6]);
    expect(b1.map((e) => e.seq)).toEqual([1, 2]);

    const logA = await readAll(a);
    expect(logA.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(logA.map((e) => e.data)).toEqual([...a1, ...a2, ...a3].map((e) => e.data));
    expect(logA.every((e) => e.thread_id === a)).toBe(true);
    expect((await readAll(b)).map((e) => e.seq)).toEqual([1, 2]);
  });

  it('stores the envelope it returns', async () => {
    const thread = await newThread();
    const runId = randomUUID();
    const written = await append({ tenantId: TENANT, threadId: thread, runId, attempt: 3 }, [
      { channel: 'messages', data: { text: 'hi', nested: [1, { x: null }] }, namespace: ['sub', 'graph'] },
      { channel: 'custom', data: null },
    ]);
    const logged = await readAll(thread);
    expect(logged).toEqual(written);
    expect(logged[0]).toMatchObject({
      seq: 1,
      run_id: runId,
      attempt: 3,
      channel: 'messages',
      namespace: ['sub', 'graph'],
      data: { text: 'hi', nested: [1, { x: null }] },
    });
    expect(logged[1]?.namespace).toEqual([]);
    expect(new Set(logged.map((e) => e.event_id)).size).toBe(2);
  });

  it('appends nothing for an empty batch', async () => {
    const thread = await newThread();
    expect(await append(ctx(thread), [])).toEqual([]);
    expect((await append(ctx(thread), pending(1, 'x'))).map((e) => e.seq)).toEqual([1]);
  });

  it('gives concurrent appenders on one thread a gapless, duplicate-free sequence', async () => {
    const thread = await newThread();
    const batches = await Promise.all(
      Array.from({ length: 40 }, (_, i) => append(ctx(thread), pending((i % 3) + 1, `batch-${i}`))),
    );
    const total = batches.reduce((n, b) => n + b.length, 0);
    // Each batch got a contiguous range of its own.
    for (const batch of batches) {
      const seqs = batch.map((e) => e.seq);
      const first = seqs[0] ?? 0;
      expect(seqs).toEqual(seqs.map((_, i) => first + i));
    }
    const all = batches.flatMap((b) => b.map((e) => e.seq)).sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    const logged = await readAll(thread);
    expect(logged.map((e) => e.seq)).toEqual(all);
    expect(logged).toEqual(batches.flat().sort((x, y) => x.seq - y.seq));
  });

  it('loses no seq to a rolled-back append', async () => {
    const thread = await newThread();
    await append(ctx(thread), pending(2, 'kept'));
    await expect(
      store.db.transaction(async (tx) => {
        await appendEvents(tx, ctx(thread), pending(3, 'lost'));
        throw new Error('checkpoint failed');
      }),
    ).rejects.toThrow('checkpoint failed');
    const next = await append(ctx(thread), pending(1, 'next'));
    expect(next.map((e) => e.seq)).toEqual([3]);
    expect((await readAll(thread)).map((e) => (e.data as { tag: string }).tag)).toEqual([
      'kept',
      'kept',
      'next',
    ]);
  });

  it('drops events whose op_key the run already logged', async () => {
    const thread = await newThread();
    const runId = randomUUID();
    const first = await append(ctx(thread, runId), [
      { channel: 'custom', data: 'a', opKey: 'op-a' },
      { channel: 'custom', data: 'b', opKey: 'op-b' },
    ]);
    expect(first.map((e) => e.seq)).toEqual([1, 2]);
    // A replay passes op-a again, plus a new op and an event without a key.
    const replay = await append(ctx(thread, runId), [
      { channel: 'custom', data: 'a again', opKey: 'op-a' },
      { channel: 'custom', data: 'c', opKey: 'op-c' },
      { channel: 'custom', data: 'plain' },
    ]);
    expect(replay.map((e) => [e.seq, e.data])).toEqual([
      [3, 'c'],
      [4, 'plain'],
    ]);
    // A batch of nothing but logged ops appends nothing and takes no seq.
    expect(
      await append(ctx(thread, runId), [
        { channel: 'custom', data: 'b again', opKey: 'op-b' },
        { channel: 'custom', data: 'c again', opKey: 'op-c' },
      ]),
    ).toEqual([]);
    // op keys are per run: another run on the thread may use the same key.
    const other = await append(ctx(thread, randomUUID()), [{ channel: 'custom', data: 'a', opKey: 'op-a' }]);
    expect(other.map((e) => e.seq)).toEqual([5]);
    expect((await readAll(thread)).map((e) => e.data)).toEqual(['a', 'b', 'c', 'plain', 'a']);
  });

  it('pages from any position with no gap and no duplicate', async () => {
    const thread = await newThread();
    const otherRun = randomUUID();
    const run = randomUUID();
    for (let i = 0; i < 5; i++) {
      await append(ctx(thread, run), pending(4, `run-${i}`));
      await append(ctx(thread, otherRun), pending(1, `other-${i}`));
    }
    const total = 25;
    for (const limit of [4, 100]) {
      for (let position = 0; position <= total; position++) {
        const seen: number[] = [];
        let after = position;
        for (;;) {
          const page = await readEvents(store.db, TENANT, thread, { afterSeq: after, limit });
          expect(page.length).toBeLessThanOrEqual(limit);
          if (page.length === 0) break;
          seen.push(...page.map((e) => e.seq));
          after = page[page.length - 1]?.seq ?? after;
        }
        expect(seen).toEqual(Array.from({ length: total - position }, (_, i) => position + i + 1));
      }
    }
    // A run filter pages over that run's events only, still in seq order.
    const runOnly = await readEvents(store.db, TENANT, thread, { afterSeq: 5, limit: 100, runId: run });
    expect(runOnly.every((e) => e.run_id === run)).toBe(true);
    expect(runOnly.map((e) => e.seq)).toEqual([6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19, 21, 22, 23, 24]);
  });

  it("never shows a thread's events to another tenant", async () => {
    const thread = await newThread();
    await append(ctx(thread), pending(3, 'secret'));
    expect(await readAll(thread)).toHaveLength(3);
    expect(await readAll(thread, 'another-tenant')).toEqual([]);
  });
});
