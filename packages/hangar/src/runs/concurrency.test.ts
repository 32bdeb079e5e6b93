import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { HangarError, type RunErrorRecord } from '../errors.ts';
import { defineAgent } from '../sdk/agent.ts';
import { createTestPostgres, createTestStore, STORE_KINDS, type TestStore } from '../testing/db.ts';
import { cancelRun } from './cancel.ts';
import { type CheckpointWrite, writeCheckpoint } from './checkpoint.ts';
import {
  type AgentClaimRules,
  type ClaimPolicy,
  fits,
  parseAmounts,
  type Resources,
  runConcurrencyKey,
} from './concurrency.ts';
import {
  type ClaimResult,
  type CreateRunInput,
  claimRunsWithPolicy,
  createRun,
  releaseRun,
  requeueExpiredLeases,
} from './repository.ts';
import type { ClaimedRun, Lease } from './types.ts';

const LEASE_MS = 60_000;
const cancelApi = { action: 'interrupt', reason: 'api', by: 'test' } as const;

describe('concurrency settings', () => {
  it('parses name=amount lists and names the variable when one is wrong', () => {
    expect(parseAmounts('slots=10, browser=2', 'X')).toEqual({ slots: 10, browser: 2 });
    expect(parseAmounts('', 'X')).toEqual({});
    expect(() => parseAmounts('slots=ten', 'HANGAR_WORKER_RESOURCES')).toThrow(/HANGAR_WORKER_RESOURCES/);
    expect(() => parseAmounts('Browser=1', 'X')).toThrow(/name=amount/);
  });

  it('refuses a bad concurrency or resources declaration when the agent is defined', () => {
    const base = { name: 'x', input: z.object({}), run: async () => null };
    expect(() => defineAgent({ ...base, concurrency: { limit: 0 } })).toThrow(/concurrency.limit/);
    expect(() => defineAgent({ ...base, concurrency: { limit: 1.5 } })).toThrow(/concurrency.limit/);
    expect(() =>
      defineAgent({ ...base, concurrency: { limit: 1, key: 'repo' as unknown as () => string } }),
    ).toThrow(/concurrency.key/);
    expect(() => defineAgent({ ...base, resources: { browser: -1 } })).toThrow(/resources.browser/);
    expect(() => defineAgent({ ...base, resources: { 'GPU!': 1 } })).toThrow(/resources/);
    expect(defineAgent({ ...base, concurrency: { limit: 2 }, resources: { browser: 1 } }).resources).toEqual({
      browser: 1,
    });
  });

  it('counts how many runs of an agent fit what is free', () => {
    expect(fits({ slots: 1, browser: 1 }, { slots: 10, browser: 2 })).toBe(2);
    expect(fits({ slots: 2 }, { slots: 5 })).toBe(2);
    expect(fits({ slots: 1, gpu: 1 }, { slots: 5 })).toBe(0);
  });

  it("takes the body's key over the agent's, with the agent's limit when it declares a key", () => {
    const byRepo = { limit: 2, key: (input: { repo: string }) => input.repo };
    expect(runConcurrencyKey(byRepo, { repo: 'a/b' }, undefined)).toEqual({ key: 'a/b', limit: 2 });
    expect(runConcurrencyKey(byRepo, { repo: 'a/b' }, 'mine')).toEqual({ key: 'mine', limit: 2 });
    expect(runConcurrencyKey({ limit: 5 }, {}, 'mine')).toEqual({ key: 'mine', limit: 1 });
    expect(runConcurrencyKey(undefined, {}, undefined)).toBeNull();
  });

  it('turns a key function that throws or returns no string into a 422 naming concurrency_key', () => {
    const throwing = {
      limit: 1,
      key: (): string => {
        throw new Error('no repo');
      },
    };
    const empty = { limit: 1, key: () => '' };
    for (const concurrency of [throwing, empty]) {
      let caught: unknown;
      try {
        runConcurrencyKey(concurrency, {}, undefined, '[1].concurrency_key');
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(HangarError);
      expect((caught as HangarError).httpStatus).toBe(422);
      expect((caught as HangarError).message).toContain('[1].concurrency_key');
    }
  });
});

describe.each(STORE_KINDS)('claims under caps, priorities and fairness on %s', (kind) => {
  // One store per suite; each test has its own tenants and agents, so claims never see another test's runs.
  let store: TestStore;

  beforeAll(async () => {
    store = await createTestStore(kind);
  });

  afterAll(async () => {
    await store?.dispose();
  });

  const scenario = () => new Scenario(store);

  it('keeps a tenant to its cap, and a per-tenant override wins', async () => {
    const s = scenario();
    const capped = await s.tenant();
    const vip = await s.tenant();
    const agent = s.agent();
    for (let i = 0; i < 5; i++) {
      await s.create(capped, agent);
      await s.create(vip, agent);
    }
    const policy = s.policy({ [agent]: {} }, { slots: 20 }, { tenantLimit: 2, tenantLimits: { [vip]: 4 } });
    const first = await s.claim(policy, 20);
    expect(s.countBy(first, (r) => r.run.tenant_id)).toEqual({ [capped]: 2, [vip]: 4 });
    expect(await s.claim(policy, 20)).toHaveLength(0);
    // One ends: its place is free again (the counter prunes it; no bookkeeping at the end).
    const done = first.find((r) => r.run.tenant_id === capped);
    await s.finish(done?.lease);
    const next = await s.claim(policy, 20);
    expect(next.map((r) => r.run.tenant_id)).toEqual([capped]);
  });

  it('keeps an agent to its cap across tenants', async () => {
    const s = scenario();
    const a = await s.tenant();
    const b = await s.tenant();
    const agent = s.agent();
    for (let i = 0; i < 4; i++) {
      await s.create(a, agent);
      await s.create(b, agent);
    }
    const policy = s.policy({ [agent]: { limit: 3 } }, { slots: 20 });
    expect(await s.claim(policy, 20)).toHaveLength(3);
    expect(await s.claim(policy, 20)).toHaveLength(0);
  });

  it('runs one run per key at a time, without holding back the tenant’s other keys', async () => {
    const s = scenario();
    const tenant = await s.tenant();
    const agent = s.agent();
    // The hot key's runs are the oldest: a queue read in order would see only them.
    const hot: string[] = [];
    for (let i = 0; i < 30; i++)
      hot.push(await s.create(tenant, agent, { concurrency: { key: 'repo-1', limit: 1 } }));
    const other = await s.create(tenant, agent, { concurrency: { key: 'repo-2', limit: 1 } });
    const policy = s.policy({ [agent]: {} }, { slots: 5 });
    const claimed = await s.claim(policy, 5);
    expect(claimed.map((r) => r.run.run_id).sort()).toEqual([hot[0], other].sort());
    expect(await s.claim(policy, 5)).toHaveLength(0);
    // A run handed back (pending again) holds no place.
    const first = claimed.find((r) => r.run.run_id === hot[0]);
    if (first === undefined) throw new Error('hot key run not claimed');
    expect(await releaseRun(store.db, first.lease)).toBe(true);
    const again = await s.claim(policy, 5);
    expect(again).toHaveLength(1);
    expect(hot).toContain(again[0]?.run.run_id);
  });

  it('claims higher priority first within a tenant', async () => {
    const s = scenario();
    const tenant = await s.tenant();
    const agent = s.agent();
    const low = await s.create(tenant, agent, { priority: -5 });
    const mid = await s.create(tenant, agent);
    const high = await s.create(tenant, agent, { priority: 10 });
    const policy = s.policy({ [agent]: {} }, { slots: 1 });
    const order = [];
    for (let i = 0; i < 3; i++) order.push((await s.claim(policy, 1))[0]?.run.run_id);
    expect(order).toEqual([high, mid, low]);
  });

  it("interleaves tenants: a later tenant's runs are not stuck behind another's burst", async () => {
    const s = scenario();
    const busy = await s.tenant();
    const quiet = await s.tenant();
    const agent = s.agent();
    for (let i = 0; i < 40; i++) await s.create(busy, agent);
    for (let i = 0; i < 3; i++) await s.create(quiet, agent);
    const policy = s.policy({ [agent]: {} }, { slots: 6 });
    const claimed = await s.claim(policy, 6);
    expect(s.countBy(claimed, (r) => r.run.tenant_id)).toEqual({ [busy]: 3, [quiet]: 3 });
  });

  it('gives a one-slot claim to the tenant running least, even when the other has older runs', async () => {
    const s = scenario();
    const busy = await s.tenant();
    const quiet = await s.tenant();
    const agent = s.agent();
    for (let i = 0; i < 10; i++) await s.create(busy, agent);
    const policy = s.policy({ [agent]: {} }, { slots: 1 });
    await s.claim(policy, 1);
    await s.claim(policy, 1);
    const late = await s.create(quiet, agent);
    expect((await s.claim(policy, 1))[0]?.run.run_id).toBe(late);
    // Both running one or more: the busy tenant's next run waits for the quiet one to catch up.
    await s.create(quiet, agent);
    expect((await s.claim(policy, 1))[0]?.run.tenant_id).toBe(quiet);
    expect((await s.claim(policy, 1))[0]?.run.tenant_id).toBe(busy);
  });

  it('claims only what fits the free capacity: heavy runs up to their resource, light runs in the other slots', async () => {
    const s = scenario();
    const tenant = await s.tenant();
    const heavy = s.agent();
    const light = s.agent();
    for (let i = 0; i < 6; i++) await s.create(tenant, heavy);
    for (let i = 0; i < 6; i++) await s.create(tenant, light);
    const agents = { [heavy]: { resources: { slots: 1, browser: 1 } }, [light]: {} };
    const claimed = await s.claim(s.policy(agents, { slots: 5, browser: 2 }), 5);
    expect(s.countBy(claimed, (r) => r.run.agent)).toEqual({ [heavy]: 2, [light]: 3 });
    // Nothing fits a worker with no browser free: only light runs.
    const more = await s.claim(s.policy(agents, { slots: 4, browser: 0 }), 4);
    expect(s.countBy(more, (r) => r.run.agent)).toEqual({ [light]: 3 });
  });

  it('counts a run that weighs more slots as more', async () => {
    const s = scenario();
    const tenant = await s.tenant();
    const big = s.agent();
    for (let i = 0; i < 4; i++) await s.create(tenant, big);
    const claimed = await s.claim(s.policy({ [big]: { resources: { slots: 3 } } }, { slots: 7 }), 7);
    expect(claimed).toHaveLength(2);
  });
});

describe.each(STORE_KINDS)('runs parked behind a full key on %s', (kind) => {
  let store: TestStore;

  beforeAll(async () => {
    store = await createTestStore(kind);
  });

  afterAll(async () => {
    await store?.dispose();
  });

  it("starts a tenant's other keys while a 300-run burst on one key runs one at a time", async () => {
    const s = new Scenario(store);
    const tenant = await s.tenant();
    const agent = s.agent();
    const created: string[] = [];
    for (let i = 0; i < 300; i++)
      created.push(await s.create(tenant, agent, { concurrency: { key: 'A', limit: 1 } }));
    // Oldest first, ties (PGlite's clock has millisecond steps) by run id, as claims and releases take them.
    const ordered = await store.db.query<{ run_id: string }>(
      'SELECT run_id FROM runs WHERE run_id = ANY($1::uuid[]) ORDER BY created_at, run_id',
      [created],
    );
    const burst = ordered.rows.map((r) => r.run_id);
    const later: string[] = [];
    for (let i = 0; i < 5; i++)
      later.push(await s.create(tenant, agent, { concurrency: { key: 'B', limit: 5 } }));
    const policy = s.policy({ [agent]: {} }, { slots: 10 });
    // The burst fills the claim's window (128 runs) more than twice over: B starts once A's runs are parked.
    const started = await s.claimAsWorker(policy, 10);
    expect(started.map((r) => r.run.run_id).sort()).toEqual([burst[0], ...later].sort());
    expect(await s.parked(tenant, 'A')).toBe(299);
    // A one at a time, in order: each end releases the next, and a claim finds nothing else meanwhile.
    let holder = started.find((r) => r.run.run_id === burst[0]);
    for (let i = 1; i <= 3; i++) {
      await s.finish(holder?.lease);
      const next = await s.claimAsWorker(policy, 10);
      expect(next.map((r) => r.run.run_id)).toEqual([burst[i]]);
      holder = next[0];
    }
    expect(await s.parked(tenant, 'A')).toBe(296);
  });

  it('releases a parked run on every path that gives a place back', async () => {
    const s = new Scenario(store);
    const tenant = await s.tenant();
    const agent = s.agent();
    const policy = s.policy({ [agent]: {} }, { slots: 4 });
    const failure: RunErrorRecord = { code: 'internal', type: 'Error', message: 'failed' };
    const paths: Record<string, (holder: ClaimedRun) => Promise<unknown>> = {
      success: (h) => s.finish(h.lease),
      error: (h) => s.end(h, { status: 'error', error: failure }),
      dead: (h) => s.end(h, { status: 'dead', error: failure }),
      timeout: (h) => s.end(h, { status: 'timeout', error: failure }),
      'cancel (the worker ends it)': (h) => s.end(h, { status: 'cancelled', error: failure }),
      sleep: (h) => s.end(h, { status: 'waiting', until: new Date(Date.now() + 3_600_000) }),
      'wait for a signal': (h) => s.end(h, { status: 'waiting', until: null }),
      'cancel of an expired holder': async (h) => {
        await store.db.query(
          `UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE run_id = $1`,
          [h.run.run_id],
        );
        expect((await cancelRun(store.db, tenant, h.run.run_id, cancelApi)).outcome).toBe('cancelled');
      },
      'sweeper: dead': async (h) => {
        await store.db.query(
          `UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE run_id = $1`,
          [h.run.run_id],
        );
        const effects = { dead: [] as string[], events: [] };
        await requeueExpiredLeases(store.db, 100, { maxAttempts: 1, effects });
        expect(effects.dead).toContain(h.run.run_id);
      },
    };
    for (const [path, end] of Object.entries(paths)) {
      const key = `k-${path}`;
      const holder = await s.create(tenant, agent, { concurrency: { key, limit: 1 } });
      const parked = await s.create(tenant, agent, { concurrency: { key, limit: 1 } });
      const first = await s.claimAsWorker(policy, 4);
      expect(first.map((r) => r.run.run_id)).toEqual([holder]);
      expect(await s.parked(tenant, key)).toBe(1);
      await end(first[0] as ClaimedRun);
      expect({ path, parked: await s.parked(tenant, key) }).toEqual({ path, parked: 0 });
      const next = await s.claimAsWorker(policy, 4);
      expect({ path, claimed: next.map((r) => r.run.run_id) }).toEqual({ path, claimed: [parked] });
      await s.finish(next[0]?.lease);
    }
  });

  it('un-parks, in the sweep, a key with room whose release never came', async () => {
    const s = new Scenario(store);
    const tenant = await s.tenant();
    const agent = s.agent();
    const policy = s.policy({ [agent]: {} }, { slots: 4 });
    const holder = await s.create(tenant, agent, { concurrency: { key: 'K', limit: 1 } });
    const parked = await s.create(tenant, agent, { concurrency: { key: 'K', limit: 1 } });
    expect((await s.claimAsWorker(policy, 4)).map((r) => r.run.run_id)).toEqual([holder]);
    // The holder's process died between its ending write and the release.
    await store.db.query(`UPDATE runs SET status = 'success', finished_at = now() WHERE run_id = $1`, [
      holder,
    ]);
    expect(await s.claimAsWorker(policy, 4)).toHaveLength(0);
    await requeueExpiredLeases(store.db);
    expect(await s.parked(tenant, 'K')).toBe(0);
    expect((await s.claimAsWorker(policy, 4)).map((r) => r.run.run_id)).toEqual([parked]);
  });

  it('cancelling a parked run leaks no place', async () => {
    const s = new Scenario(store);
    const tenant = await s.tenant();
    const agent = s.agent();
    const policy = s.policy({ [agent]: {} }, { slots: 4 });
    const runs: string[] = [];
    for (let i = 0; i < 3; i++)
      runs.push(await s.create(tenant, agent, { concurrency: { key: 'K', limit: 1 } }));
    const [holder] = await s.claimAsWorker(policy, 4);
    expect(holder?.run.run_id).toBe(runs[0]);
    expect(await s.parked(tenant, 'K')).toBe(2);
    expect((await cancelRun(store.db, tenant, runs[1] ?? '', cancelApi)).outcome).toBe('cancelled');
    // Still full: the cancelled run held no place and released nobody.
    expect(await s.parked(tenant, 'K')).toBe(1);
    expect(await s.claimAsWorker(policy, 4)).toHaveLength(0);
    await s.finish(holder?.lease);
    const [third] = await s.claimAsWorker(policy, 4);
    expect(third?.run.run_id).toBe(runs[2]);
    await s.finish(third?.lease);
    // The key is empty again: a new run starts at once, with its one place.
    const fourth = await s.create(tenant, agent, { concurrency: { key: 'K', limit: 1 } });
    expect((await s.claimAsWorker(policy, 4)).map((r) => r.run.run_id)).toEqual([fourth]);
  });

  it('parks a run behind its key that also waits behind its thread, and releases it in turn', async () => {
    const s = new Scenario(store);
    const tenant = await s.tenant();
    const agent = s.agent();
    const policy = s.policy({ [agent]: {} }, { slots: 4 });
    const threadId = randomUUID();
    await store.db.query('INSERT INTO threads (thread_id, tenant_id) VALUES ($1, $2)', [threadId, tenant]);
    const onKey = { concurrency: { key: 'K', limit: 1 } };
    const holder = await s.create(tenant, agent, onKey);
    const first = await s.create(tenant, agent, { ...onKey, threadId, multitaskStrategy: 'enqueue' });
    const second = await s.create(tenant, agent, { ...onKey, threadId, multitaskStrategy: 'enqueue' });
    const [h] = await s.claimAsWorker(policy, 4);
    expect(h?.run.run_id).toBe(holder);
    // `first` waits on the key (its thread is free), `second` on its thread.
    expect(await s.parked(tenant, 'K')).toBe(1);
    await s.finish(h?.lease);
    const [a] = await s.claimAsWorker(policy, 4);
    expect(a?.run.run_id).toBe(first);
    await s.finish(a?.lease);
    const [b] = await s.claimAsWorker(policy, 4);
    expect(b?.run.run_id).toBe(second);
  });
});

describe('concurrent claimers on real Postgres', () => {
  let store: TestStore;

  beforeAll(async () => {
    store = await createTestPostgres();
  });

  afterAll(async () => {
    await store?.dispose();
  });

  it('never let the running count of a tenant, an agent or a key exceed its cap', async () => {
    const s = new Scenario(store);
    const tenants = [await s.tenant(), await s.tenant()];
    const agent = s.agent();
    for (let i = 0; i < 60; i++) {
      const tenant = tenants[i % 2] ?? '';
      await s.create(tenant, agent, i % 3 === 0 ? { concurrency: { key: 'shared', limit: 2 } } : {});
    }
    const caps = { tenant: 4, agent: 7, key: 2 };
    const policy = s.policy({ [agent]: { limit: caps.agent } }, { slots: 5 }, { tenantLimit: caps.tenant });
    const running = new Map<string, ClaimedRun>();
    const peaks = { tenant: 0, agent: 0, key: 0 };
    let claimedTotal = 0;
    for (let round = 0; round < 15; round++) {
      // Eight workers claim at once, each on its own connection.
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, w) => claimRunsWithPolicy(store.db, s.options(policy, 5, `w${w}`))),
      );
      for (const result of results) {
        for (const run of result.runs) running.set(run.run.run_id, run);
        claimedTotal += result.runs.length;
      }
      const counts = await store.db.query<{ tenant_max: string; agent_n: string; key_max: string }>(
        `SELECT
           (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM runs WHERE status = 'running' AND agent = $1
              GROUP BY tenant_id) t) AS tenant_max,
           (SELECT count(*) FROM runs WHERE status = 'running' AND agent = $1) AS agent_n,
           (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM runs WHERE status = 'running' AND agent = $1
              AND concurrency_key IS NOT NULL GROUP BY tenant_id, concurrency_key) k) AS key_max`,
        [agent],
      );
      const row = counts.rows[0];
      peaks.tenant = Math.max(peaks.tenant, Number(row?.tenant_max));
      peaks.agent = Math.max(peaks.agent, Number(row?.agent_n));
      peaks.key = Math.max(peaks.key, Number(row?.key_max));
      // About half of what runs ends before the next round.
      const ending = [...running.values()].filter((_, i) => i % 2 === 0);
      await Promise.all(ending.map((r) => s.finish(r.lease)));
      for (const r of ending) running.delete(r.run.run_id);
    }
    expect(peaks).toEqual(caps);
    expect(claimedTotal).toBeGreaterThan(30);
  });
});

describe('parking with concurrent claimers and endings on real Postgres', () => {
  let store: TestStore;

  beforeAll(async () => {
    store = await createTestPostgres();
  });

  afterAll(async () => {
    await store?.dispose();
  });

  it('holds every key to its cap exactly and leaves no run parked once its key has room', async () => {
    const s = new Scenario(store);
    const tenant = await s.tenant();
    const agent = s.agent();
    const limits: Record<string, number> = { k0: 1, k1: 2, k2: 1, k3: 3 };
    const ids: string[] = [];
    for (const [key, n] of [
      ['k0', 40],
      ['k1', 25],
      ['k2', 20],
      ['k3', 20],
    ] as const) {
      for (let i = 0; i < n; i++)
        ids.push(await s.create(tenant, agent, { concurrency: { key, limit: limits[key] ?? 1 } }));
    }
    for (let i = 0; i < 15; i++) ids.push(await s.create(tenant, agent));
    const policy = s.policy({ [agent]: {} }, { slots: 3 });
    const over: string[] = [];
    const checkCaps = async () => {
      const res = await store.db.query<{ concurrency_key: string; n: string }>(
        `SELECT concurrency_key, count(*) AS n FROM runs WHERE tenant_id = $1 AND status = 'running'
           AND concurrency_key IS NOT NULL GROUP BY concurrency_key`,
        [tenant],
      );
      for (const row of res.rows) {
        if (Number(row.n) > (limits[row.concurrency_key] ?? 0)) over.push(`${row.concurrency_key}: ${row.n}`);
      }
    };
    // Six workers claim (as the worker does) and end what they claimed, all at once, for `rounds` rounds each.
    const work = (rounds: number) =>
      Promise.all(
        Array.from({ length: 6 }, async (_, w) => {
          for (let round = 0; round < rounds; round++) {
            const claimed = await s.claimAsWorker(policy, 3, `w${w}`);
            await checkCaps();
            await Promise.all(
              claimed.map(async (run, i) => {
                await new Promise((resolve) => setTimeout(resolve, (i * 3 + w) % 5));
                await s.finish(run.lease);
              }),
            );
          }
        }),
      );
    await work(6);
    expect(await s.parked(tenant, 'k0')).toBeGreaterThan(0);
    // Quiet: no run waits parked while its key has a place that neither a running run nor a released
    // (claimable) run of the key takes.
    const stranded = await store.db.query(
      `SELECT r.run_id FROM runs r JOIN threads t ON t.thread_id = r.thread_id
       WHERE r.tenant_id = $1 AND r.available_at = 'infinity' AND r.status IN ('pending', 'waiting')
         AND (t.active_run_id IS NULL OR t.active_run_id = r.run_id)
         AND (SELECT count(*) FROM runs x WHERE x.tenant_id = r.tenant_id AND x.concurrency_key = r.concurrency_key
           AND (x.status = 'running' OR (x.status IN ('pending', 'waiting') AND x.available_at <= now())))
           < r.concurrency_limit`,
      [tenant],
    );
    expect(stranded.rows).toEqual([]);
    // Then to the end: every run ran, with no help from the sweeper's safety net.
    const deadline = Date.now() + 40_000;
    let left = ids.length;
    while (left > 0 && Date.now() < deadline) {
      await work(2);
      const res = await store.db.query<{ n: string }>(
        `SELECT count(*) AS n FROM runs WHERE tenant_id = $1 AND status <> 'success'`,
        [tenant],
      );
      left = Number(res.rows[0]?.n);
    }
    expect(left).toBe(0);
    expect(over).toEqual([]);
  });
});

/** Tenants, agents and runs of one test, and the claims it makes. */
class Scenario {
  constructor(private readonly store: TestStore) {}

  async tenant(): Promise<string> {
    const tenantId = `t-${randomUUID().slice(0, 8)}`;
    await this.store.db.query('INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)', [tenantId]);
    return tenantId;
  }

  agent(): string {
    return `agent-${randomUUID().slice(0, 8)}`;
  }

  async create(
    tenantId: string,
    agent: string,
    extra: Pick<CreateRunInput, 'priority' | 'concurrency' | 'threadId' | 'multitaskStrategy'> = {},
  ): Promise<string> {
    const run = await createRun(this.store.db, {
      tenantId,
      agent,
      assistantId: randomUUID(),
      input: {},
      ...extra,
    });
    return run.run_id;
  }

  policy(
    agents: Record<string, { limit?: number; resources?: Resources }>,
    free: Resources,
    tenants: Pick<ClaimPolicy, 'tenantLimit' | 'tenantLimits'> = {},
  ): ClaimPolicy {
    const rules: Record<string, AgentClaimRules> = {};
    for (const [name, a] of Object.entries(agents)) {
      rules[name] = { limit: a.limit ?? null, resources: a.resources ?? { slots: 1 } };
    }
    return { agents: rules, free, ...tenants };
  }

  options(policy: ClaimPolicy, limit: number, owner = 'w') {
    return { owner, leaseMs: LEASE_MS, agents: Object.keys(policy.agents), limit, policy };
  }

  /** A worker's claim: again at once when it met caps for the first time (as the worker does). */
  async claim(policy: ClaimPolicy, limit: number): Promise<ClaimedRun[]> {
    let result: ClaimResult = await claimRunsWithPolicy(this.store.db, this.options(policy, limit));
    if (!result.countersCreated) return result.runs;
    const first = result.runs;
    const free = { ...policy.free };
    for (const run of first) {
      for (const [name, amount] of Object.entries(policy.agents[run.run.agent]?.resources ?? {})) {
        free[name] = (free[name] ?? 0) - amount;
      }
    }
    result = await claimRunsWithPolicy(
      this.store.db,
      this.options({ ...policy, free }, limit - first.length),
    );
    return [...first, ...result.runs];
  }

  /**
   * Claims as the worker does: again at once while the claim parks runs (its
   * window moved on) or meets caps for the first time, until nothing is left.
   */
  async claimAsWorker(policy: ClaimPolicy, limit: number, owner = 'w'): Promise<ClaimedRun[]> {
    const claimed: ClaimedRun[] = [];
    const free = { ...policy.free };
    for (let round = 0; round < 50 && claimed.length < limit; round++) {
      const result = await claimRunsWithPolicy(
        this.store.db,
        this.options({ ...policy, free }, limit - claimed.length, owner),
      );
      claimed.push(...result.runs);
      for (const run of result.runs) {
        for (const [name, amount] of Object.entries(policy.agents[run.run.agent]?.resources ?? {})) {
          free[name] = (free[name] ?? 0) - amount;
        }
      }
      if (result.parked === 0 && !result.countersCreated) break;
    }
    return claimed;
  }

  /** How many of a key's runs wait parked. */
  async parked(tenantId: string, key: string): Promise<number> {
    const res = await this.store.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM runs WHERE tenant_id = $1 AND concurrency_key = $2 AND key_parked
         AND available_at = 'infinity'`,
      [tenantId, key],
    );
    return Number(res.rows[0]?.n);
  }

  /** Ends or suspends a claimed run as its worker would. */
  async end(run: ClaimedRun, end: CheckpointWrite['end']): Promise<void> {
    await writeCheckpoint(this.store.db, run.lease, { attempt: 1 }, { events: [], ...(end ? { end } : {}) });
  }

  async finish(lease: Lease | undefined): Promise<void> {
    if (lease === undefined) throw new Error('no lease to finish');
    await writeCheckpoint(
      this.store.db,
      lease,
      { attempt: 1 },
      { events: [], end: { status: 'success', output: null } },
    );
  }

  countBy(runs: ClaimedRun[], by: (run: ClaimedRun) => string): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const run of runs) counts[by(run)] = (counts[by(run)] ?? 0) + 1;
    return counts;
  }
}
