import { HangarError } from '../errors.ts';
import type { Queryable, SqlClient } from '../store/sql.ts';

/**
 * Fair concurrency control: what a worker may claim, decided inside the claim
 * statement (runs/repository.ts claimRuns) so that many workers claiming at
 * once never break a cap.
 *
 * - Caps on runs running at once, across all workers: per tenant
 *   (`HANGAR_TENANT_CONCURRENCY`, with per-tenant overrides), per agent
 *   (`concurrency: { limit }`), and per concurrency key (`concurrency: { key,
 *   limit }` or the create body's `concurrency_key`, one at a time by default).
 *   A capped key has a row in `concurrency_counters` holding the runs that
 *   occupy it; the claim locks the rows it needs, so the check and the claim
 *   are one step (see migration 0010).
 * - Parking: a run whose key is at its limit is parked (migration 0011) so
 *   the claim's bounded window moves on to the tenant's other runs; a run
 *   that stops holding a place releases the key's oldest parked runs
 *   (releaseParkedRuns), and the sweeper re-checks as a safety net
 *   (unparkFreeKeys).
 * - Fairness: tenants take turns. Each tenant's queue is read on its own
 *   (highest priority, then oldest) and the runs of the tenants running the
 *   fewest go first, so one tenant's burst never starves another.
 * - Weighted slots: a run takes its agent's resources (`{ slots: 1 }` unless
 *   it declares more, e.g. `{ browser: 1 }`) from the worker's free capacity;
 *   a worker never claims more than fits.
 */

/** Resource amounts by name; every run takes at least `slots: 1`. */
export type Resources = Readonly<Record<string, number>>;

/** An agent's concurrency settings (`defineAgent({ concurrency })`). */
export interface AgentConcurrency {
  /** At most this many runs at once: of the agent across all tenants, or, with `key`, per key of a tenant. */
  limit: number;
  /** The key runs are counted by (e.g. the repository a review is for), from the run's parsed input. */
  key?: (input: never) => string;
}

/** What the claim statement needs to know about each agent a worker runs. */
export interface AgentClaimRules {
  /** Agent-wide cap (an agent's `concurrency.limit` without a key); null: none. */
  limit: number | null;
  /** Resources one run takes (always with `slots`). */
  resources: Resources;
}

/** A worker's claim policy, beside the agents it runs. */
export interface ClaimPolicy {
  agents: Readonly<Record<string, AgentClaimRules>>;
  /** Capacity free on the worker now; claims never exceed it. */
  free: Resources;
  /** Runs of one tenant running at once (all workers); undefined or null: no cap. */
  tenantLimit?: number | null;
  /** Per-tenant caps overriding `tenantLimit`. */
  tenantLimits?: Readonly<Record<string, number>>;
}

export const MAX_CONCURRENCY_KEY_LENGTH = 200;
/**
 * How far into a tenant's queue one claim looks. A claim's cost stays bounded
 * whatever the backlog. Runs over a full key are parked out of the window;
 * when a tenant's first runs all wait on a tenant or agent cap, its runs
 * further back wait with them.
 */
export const QUEUE_WINDOW = 128;
const RESOURCE_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
/** A tenant id in `HANGAR_TENANT_CONCURRENCY_OVERRIDES`. */
export const TENANT_NAME = /^[^\s=,]{1,200}$/;

/** `name=amount,name=amount` (worker resources, per-tenant caps); throws naming the variable. */
export function parseAmounts(
  text: string,
  variable: string,
  namePattern = RESOURCE_NAME,
): Record<string, number> {
  const amounts: Record<string, number> = {};
  for (const part of text.split(',')) {
    if (part.trim() === '') continue;
    const [name = '', value = '', ...rest] = part.split('=').map((s) => s.trim());
    const amount = Number(value);
    if (
      !namePattern.test(name) ||
      rest.length > 0 ||
      !Number.isInteger(amount) ||
      amount < 0 ||
      amount > 100_000
    ) {
      throw new Error(`${variable}: "${part}" is not name=amount (a whole number from 0 to 100000)`);
    }
    amounts[name] = amount;
  }
  return amounts;
}

/** A worker's capacity: `slots` defaults to its concurrency. */
export function workerCapacity(concurrency: number, declared: Resources = {}): Resources {
  return { slots: concurrency, ...declared };
}

/** What one run of an agent takes: `{ slots: 1 }` plus what the agent declares. */
export function agentResources(resources: Resources | undefined): Resources {
  return { slots: 1, ...resources };
}

/** Checks an agent's `concurrency` and `resources` (defineAgent); throws a TypeError naming the problem. */
export function checkAgentConcurrency(agent: string, concurrency: unknown, resources: unknown): void {
  if (concurrency !== undefined) {
    const c = concurrency as Partial<AgentConcurrency>;
    if (
      typeof c !== 'object' ||
      c === null ||
      !Number.isInteger(c.limit) ||
      (c.limit ?? 0) < 1 ||
      (c.limit ?? 0) > 100_000
    ) {
      throw new TypeError(`agent "${agent}": "concurrency.limit" must be a whole number from 1 to 100000`);
    }
    if (c.key !== undefined && typeof c.key !== 'function') {
      throw new TypeError(`agent "${agent}": "concurrency.key" must be a function of the run input`);
    }
  }
  if (resources !== undefined) {
    if (typeof resources !== 'object' || resources === null) {
      throw new TypeError(`agent "${agent}": "resources" must be an object like { browser: 1 }`);
    }
    for (const [name, amount] of Object.entries(resources)) {
      if (!RESOURCE_NAME.test(name) || !Number.isInteger(amount) || amount < 0 || amount > 100_000) {
        throw new TypeError(`agent "${agent}": "resources.${name}" must be a whole number from 0 to 100000`);
      }
    }
  }
}

/**
 * The concurrency key a new run is counted by, and the limit for that key:
 * the create body's `concurrency_key` wins over the agent's `concurrency.key`.
 * The limit is the agent's `concurrency.limit` when it declares a key, else 1.
 * A key function that throws or returns no usable string is the request's
 * problem to hear about (422 naming `concurrency_key`), never a 500.
 */
export function runConcurrencyKey(
  concurrency: AgentConcurrency | undefined,
  input: unknown,
  requested: string | undefined,
  path = 'concurrency_key',
): { key: string; limit: number } | null {
  const limit = concurrency?.key === undefined ? 1 : concurrency.limit;
  if (requested !== undefined) return { key: requested, limit };
  if (concurrency?.key === undefined) return null;
  let key: unknown;
  try {
    key = (concurrency.key as (input: unknown) => unknown)(input);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw keyError(path, `the agent's concurrency.key threw: ${why.slice(0, 200)}`);
  }
  if (
    typeof key !== 'string' ||
    key.length === 0 ||
    key.length > MAX_CONCURRENCY_KEY_LENGTH ||
    key.includes('\u0000')
  ) {
    throw keyError(
      path,
      `the agent's concurrency.key must return a non-empty string of at most ${MAX_CONCURRENCY_KEY_LENGTH} characters`,
    );
  }
  return { key, limit };
}

function keyError(path: string, message: string): HangarError {
  return new HangarError('input_invalid', `run input is invalid: ${path}: ${message}`, {
    details: { issues: [{ path, message }] },
  });
}

/** How many runs of an agent fit in `free` on their own (the claim reads no more candidates of it). */
export function fits(resources: Resources, free: Resources): number {
  let n = Number.POSITIVE_INFINITY;
  for (const [name, amount] of Object.entries(resources)) {
    if (amount > 0) n = Math.min(n, Math.floor((free[name] ?? 0) / amount));
  }
  return Number.isFinite(n) ? n : 100_000;
}

/** The claim statement's parameters for the policy: agents (with caps, resources, fit) and tenant caps. */
export function claimParameters(policy: ClaimPolicy): {
  agents: Record<string, { limit: number | null; resources: Resources; fits: number }>;
  tenantLimit: number | null;
  tenantLimits: Readonly<Record<string, number>>;
  free: Resources;
} {
  const agents: Record<string, { limit: number | null; resources: Resources; fits: number }> = {};
  for (const [name, rules] of Object.entries(policy.agents)) {
    const n = fits(rules.resources, policy.free);
    if (n > 0) agents[name] = { limit: rules.limit, resources: rules.resources, fits: n };
  }
  return {
    agents,
    tenantLimit: policy.tenantLimit ?? null,
    tenantLimits: policy.tenantLimits ?? {},
    free: policy.free,
  };
}

/** A policy for a plain list of agents: one slot each, no caps (tests, tools). */
export function defaultPolicy(agents: readonly string[], slots: number): ClaimPolicy {
  return {
    agents: Object.fromEntries(agents.map((a) => [a, { limit: null, resources: { slots: 1 } }])),
    free: { slots },
  };
}

/**
 * The claim, one statement. Parameters: $1 agents that fit the free capacity
 * (jsonb: name → { limit, resources, fits }), $2 owner, $3 lease ms, $4 most
 * runs, $5 liveness key, $6 tenant cap (null: none), $7 per-tenant caps
 * (jsonb), $8 free capacity (jsonb), $9 the agents' names. `runColumns` are
 * the columns returned per claimed run.
 *
 * 1. `queued`: the tenants with queued runs (a skip scan: one index probe
 *    per tenant); `open`: those under their cap, with their running runs.
 * 2. `win`: the head of each open tenant's queue (priority, then age; at
 *    most QUEUE_WINDOW runs read); a run beyond its key's cap, or of a key at
 *    its cap as the snapshot sees it, is `over`. `pool`: the others, without
 *    runs of an agent beyond what its cap or the free capacity could take;
 *    `turn` is the run's place in its tenant's queue plus the tenant's
 *    running runs.
 * 3. `picked`: the pool by turn (fair share across tenants); `locked`: those
 *    still claimable, locked, SKIP LOCKED so claimers never wait on each
 *    other's runs.
 * 4. `over`: the over runs, locked (SKIP LOCKED). `counters`: the cap rows
 *    the candidates and over runs need, locked (in key order, so claimers
 *    can't deadlock); `live`: their holders still running.
 * 5. `fit`: a walk through the candidates in order, taking each one whose caps
 *    have room and whose resources fit what is still free (exact greedy);
 *    skipped when nothing is capped and every run takes one slot (`simple`).
 * 6. The thread hand-over and the run update, as before; `counted` records the
 *    claimed runs as holders of their caps (and prunes ended holders);
 *    `parked` parks the over runs whose key is full counting this claim's
 *    runs (a key with room left: they are claimed next time instead).
 *
 * The caps are checked against locked rows, not the snapshot: a claimer that
 * waited on a counter row reads the version the previous claimer committed.
 */
export function claimSql(runColumns: string): string {
  const tenantCap = `coalesce(($7::jsonb ->> q.tenant_id)::int, $6::int)`;
  return `WITH RECURSIVE queued (tenant_id) AS (
  -- available_at is in the index: tenants whose runs all sleep or wait behind a busy thread are
  -- passed over inside the index scan.
  (SELECT r.tenant_id FROM runs r WHERE r.status IN ('pending', 'waiting') AND r.available_at <= now()
   ORDER BY r.tenant_id LIMIT 1)
  UNION ALL
  SELECT (SELECT r.tenant_id FROM runs r WHERE r.status IN ('pending', 'waiting') AND r.available_at <= now()
            AND r.tenant_id > q.tenant_id
          ORDER BY r.tenant_id LIMIT 1)
  FROM queued q WHERE q.tenant_id IS NOT NULL
), open AS MATERIALIZED (
  -- Each tenant with its running runs (counted up to its cap, or 1,000): at its cap it is left out.
  -- Materialized: each count is taken once per tenant, not once per run of its window.
  SELECT q.tenant_id, q.running FROM (
    SELECT q.tenant_id, (SELECT count(*) FROM (SELECT 1 FROM runs x WHERE x.tenant_id = q.tenant_id
        AND x.status = 'running' LIMIT coalesce(${tenantCap}, 1000)) s) AS running, ${tenantCap} AS cap
    FROM queued q WHERE q.tenant_id IS NOT NULL
  ) q
  WHERE q.cap IS NULL OR q.running < q.cap
), win AS (
  -- The head of each open tenant's queue (bounded: the claim's cost does not grow with the backlog),
  -- each run with its place among its key's runs. A run beyond its key's cap, or of a key at its cap
  -- as the snapshot sees it, is \`over\`: parked below rather than claimed. Runs queued behind a busy
  -- thread or parked behind a full key wait with available_at = infinity: every run here is on a free
  -- thread (or holds its thread).
  SELECT w.*, o.running, w.concurrency_limit IS NOT NULL AND (w.key_nth > w.concurrency_limit OR (
      SELECT count(*) FROM (SELECT 1 FROM runs x WHERE x.tenant_id = w.tenant_id
        AND x.concurrency_key = w.concurrency_key AND x.status = 'running' LIMIT w.concurrency_limit) s
    ) >= w.concurrency_limit) AS over
  FROM open o CROSS JOIN LATERAL (
    SELECT w.*,
      row_number() OVER (PARTITION BY w.concurrency_key ORDER BY w.priority DESC, w.available_at, w.created_at,
        w.run_id)
        AS key_nth
    FROM (
      SELECT r.run_id, r.tenant_id, r.agent, r.priority, r.available_at, r.created_at, r.concurrency_key,
        r.concurrency_limit
      FROM runs r
      WHERE r.tenant_id = o.tenant_id AND r.status IN ('pending', 'waiting') AND r.available_at <= now()
        AND r.agent = ANY($9::text[])
      ORDER BY r.priority DESC, r.available_at, r.created_at
      LIMIT ${QUEUE_WINDOW}
    ) w
  ) w
), pool AS (
  -- A run's turn: its place in its tenant's queue plus the tenant's running runs, so the tenant
  -- running least goes first and tenants then alternate (fair share).
  SELECT w.*, w.running + w.tenant_nth AS turn FROM (
    SELECT w.*,
      row_number() OVER (PARTITION BY w.tenant_id ORDER BY w.priority DESC, w.available_at, w.created_at, w.run_id)
        AS tenant_nth
    FROM (
      SELECT w.*, row_number() OVER (PARTITION BY w.tenant_id, w.agent
          ORDER BY w.priority DESC, w.available_at, w.created_at, w.run_id) AS agent_nth
      FROM win w WHERE NOT w.over
    ) w
    -- No more of an agent than the free capacity (or its cap) could take, none at its cap.
    WHERE w.agent_nth <= ($1::jsonb -> w.agent ->> 'fits')::int
      AND (($1::jsonb -> w.agent ->> 'limit') IS NULL OR (w.agent_nth <= ($1::jsonb -> w.agent ->> 'limit')::int
        AND (SELECT count(*) FROM (SELECT 1 FROM runs x WHERE x.agent = w.agent AND x.status = 'running'
          LIMIT ($1::jsonb -> w.agent ->> 'limit')::int) s) < ($1::jsonb -> w.agent ->> 'limit')::int))
  ) w
  WHERE w.tenant_nth <= $4
), picked AS (
  SELECT p.run_id, row_number() OVER (ORDER BY p.turn, p.priority DESC, p.available_at, p.created_at, p.run_id) AS ord
  FROM pool p ORDER BY ord LIMIT $4
), locked AS (
  SELECT r.run_id, r.tenant_id, r.thread_id, r.agent, r.concurrency_key, r.concurrency_limit, p.ord
  FROM picked p JOIN runs r ON r.run_id = p.run_id
  WHERE r.status IN ('pending', 'waiting') AND r.available_at <= now()
  FOR UPDATE OF r SKIP LOCKED
), cands AS (
  SELECT l.*, row_number() OVER (ORDER BY l.ord) AS i FROM locked l
), needs AS (
  SELECT c.run_id, k.key, k.lim FROM cands c CROSS JOIN LATERAL (VALUES
    (jsonb_build_array('tenant', c.tenant_id)::text, coalesce(($7::jsonb ->> c.tenant_id)::int, $6::int)),
    (jsonb_build_array('agent', c.agent)::text, ($1::jsonb -> c.agent ->> 'limit')::int),
    (jsonb_build_array('key', c.tenant_id, c.concurrency_key)::text, c.concurrency_limit)
  ) AS k (key, lim)
  WHERE k.lim IS NOT NULL
), over AS (
  -- Runs of a key over its cap, to park (decided below under the key's counter row): at most a
  -- window's worth a claim, each found by its key (the bound keeps the plan on the primary key).
  SELECT r.run_id, r.concurrency_limit, jsonb_build_array('key', r.tenant_id, r.concurrency_key)::text AS key
  FROM (SELECT w.run_id FROM win w WHERE w.over LIMIT ${QUEUE_WINDOW}) w JOIN runs r ON r.run_id = w.run_id
  WHERE r.status IN ('pending', 'waiting') AND r.available_at <= now()
  FOR UPDATE OF r SKIP LOCKED
), keys AS (
  SELECT key FROM needs UNION SELECT key FROM over
), ensure AS (
  -- A cap row seen for the first time: created now, used from the next claim on.
  INSERT INTO concurrency_counters (key) SELECT key FROM keys ON CONFLICT DO NOTHING RETURNING key
), counters AS (
  SELECT c.key, c.holders FROM concurrency_counters c WHERE c.key IN (SELECT key FROM keys)
  ORDER BY c.key FOR UPDATE
), live AS (
  SELECT c.key, jsonb_array_length(c.holders) AS before,
    coalesce(jsonb_agg(h.value) FILTER (WHERE h.value IS NOT NULL), '[]'::jsonb) AS holders, count(h.value) AS n
  FROM counters c LEFT JOIN LATERAL (
    SELECT e.value FROM jsonb_array_elements(c.holders) e
    WHERE EXISTS (SELECT 1 FROM runs x WHERE x.run_id = (e.value ->> 0)::uuid
      AND (x.lease_epoch < (e.value ->> 1)::bigint OR (x.lease_epoch = (e.value ->> 1)::bigint AND x.status = 'running')))
  ) h ON true
  GROUP BY c.key, c.holders
), sized AS (
  SELECT c.i, $1::jsonb -> c.agent -> 'resources' AS resources,
    coalesce((SELECT jsonb_object_agg(n.key, n.lim) FROM needs n WHERE n.run_id = c.run_id), '{}'::jsonb) AS caps,
    NOT EXISTS (SELECT 1 FROM needs n WHERE n.run_id = c.run_id AND n.key NOT IN (SELECT key FROM live)) AS countable
  FROM cands c
), fit (i, free, used, take) AS (
  SELECT 0::bigint, $8::jsonb, coalesce((SELECT jsonb_object_agg(key, n) FROM live), '{}'::jsonb), false
  UNION ALL
  SELECT s.i,
    CASE WHEN o.ok THEN f.free || coalesce((SELECT jsonb_object_agg(e.key, coalesce((f.free ->> e.key)::int, 0) - e.value::int)
      FROM jsonb_each_text(s.resources) e), '{}'::jsonb) ELSE f.free END,
    CASE WHEN o.ok THEN f.used || coalesce((SELECT jsonb_object_agg(e.key, coalesce((f.used ->> e.key)::int, 0) + 1)
      FROM jsonb_object_keys(s.caps) e (key)), '{}'::jsonb) ELSE f.used END,
    o.ok
  FROM fit f JOIN sized s ON s.i = f.i + 1
  CROSS JOIN LATERAL (SELECT s.countable
    AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(s.resources) e WHERE coalesce((f.free ->> e.key)::int, 0) < e.value::int)
    AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(s.caps) e WHERE coalesce((f.used ->> e.key)::int, 0) >= e.value::int)
    AS ok) o
), simple AS (
  -- No caps and one slot a run (the usual case): every candidate within the free slots fits, and
  -- the walk above is never run.
  SELECT NOT EXISTS (SELECT 1 FROM needs) AND NOT EXISTS (
    SELECT 1 FROM cands c WHERE $1::jsonb -> c.agent -> 'resources' <> '{"slots": 1}'::jsonb) AS yes
), chosen AS (
  SELECT c.run_id, c.thread_id FROM cands c
  WHERE (SELECT yes FROM simple) AND c.i <= ($8::jsonb ->> 'slots')::int
  UNION ALL
  SELECT c.run_id, c.thread_id FROM fit f JOIN cands c ON c.i = f.i WHERE NOT (SELECT yes FROM simple) AND f.take
), taken AS (
  UPDATE threads t SET active_run_id = c.run_id, status = 'busy', updated_at = now()
  FROM chosen c
  WHERE t.thread_id = c.thread_id AND (t.active_run_id IS NULL OR t.active_run_id = c.run_id)
  RETURNING c.run_id AS taken_run_id, t."values" AS thread_values
), claimed AS (
  UPDATE runs r SET status = 'running', lease_owner = $2, lease_lock = $5::bigint, lease_epoch = r.lease_epoch + 1,
    lease_expires_at = now() + ($3::bigint * interval '1 millisecond'), attempt = r.attempt + 1,
    base_values = COALESCE(r.base_values, taken.thread_values), started_at = COALESCE(r.started_at, now()),
    key_parked = false, updated_at = now()
  FROM taken WHERE r.run_id = taken.taken_run_id
  RETURNING r.*
), counted AS (
  UPDATE concurrency_counters c SET holders = l.holders || coalesce(a.added, '[]'::jsonb), updated_at = now()
  FROM live l LEFT JOIN LATERAL (
    SELECT jsonb_agg(jsonb_build_array(cl.run_id, cl.lease_epoch)) AS added
    FROM claimed cl JOIN needs n ON n.run_id = cl.run_id WHERE n.key = l.key
  ) a ON true
  WHERE c.key = l.key AND (a.added IS NOT NULL OR l.n < l.before)
  RETURNING c.key
), parked AS (
  -- A run over its key's cap waits out of the queue while the key is full counting this claim's
  -- runs; the run that frees a place releases it (releaseParkedRuns).
  UPDATE runs r SET available_at = 'infinity', key_parked = true, updated_at = now()
  FROM over o JOIN live l ON l.key = o.key
  WHERE r.run_id = o.run_id AND l.n + (SELECT count(*) FROM claimed cl JOIN needs n ON n.run_id = cl.run_id
    WHERE n.key = l.key) >= o.concurrency_limit
  RETURNING r.run_id
)
SELECT ${runColumns}, cancel_requested_at, cancel_action, cancel_reason, cancelled_by,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('step_index', s.step_index, 'name', s.name, 'kind', s.kind,
      'status', s.status, 'result', s.result, 'attempt', s.attempt, 'usage', s.usage, 'wake_at', s.wake_at)
      ORDER BY s.step_index), '[]'::jsonb)
   FROM steps s WHERE s.run_id = claimed.run_id) AS history,
  (SELECT count(*) FROM ensure) AS counters_created, (SELECT count(*) FROM parked) AS parked
FROM (SELECT 1) AS one LEFT JOIN claimed ON true
ORDER BY priority DESC, created_at`;
}

/** A key's holder `e.value` ([run_id, lease_epoch]) still running (see migration 0010). */
const LIVE_HOLDER = `EXISTS (SELECT 1 FROM runs x WHERE x.run_id = (e.value ->> 0)::uuid
  AND (x.lease_epoch < (e.value ->> 1)::bigint OR (x.lease_epoch = (e.value ->> 1)::bigint AND x.status = 'running')))`;

const COUNTER_KEY = `jsonb_build_array('key', $1::text, $2::text)::text`;

/**
 * Locks a key's counter row and drops the holders that stopped running. A
 * claimer that waited on the row then reads it without them: it sees the
 * place free instead of parking a run behind it.
 */
const PRUNE_SQL = `UPDATE concurrency_counters c SET updated_at = now(),
  holders = coalesce((SELECT jsonb_agg(e.value) FROM jsonb_array_elements(c.holders) e WHERE ${LIVE_HOLDER}), '[]'::jsonb)
WHERE c.key = ${COUNTER_KEY}`;

/**
 * Releases a key's oldest parked runs, one per free place ($3: the key's
 * limit). They go back to their place in the queue (available_at = created_at).
 * A parked run another transaction has locked is passed over (SKIP LOCKED:
 * never a deadlock with a claimer waiting on the counter row we hold — one
 * whose stale snapshot still showed the run claimable locked it); `short`
 * says so: fewer released than there were places and parked runs.
 */
const RELEASE_SQL = `WITH free AS (
  SELECT greatest(0, $3::int - (SELECT count(*) FROM concurrency_counters c, jsonb_array_elements(c.holders) e
    WHERE c.key = ${COUNTER_KEY} AND ${LIVE_HOLDER}))::int AS n
), parked AS (
  SELECT r.run_id FROM runs r
  WHERE r.key_parked AND r.tenant_id = $1 AND r.concurrency_key = $2 AND r.status IN ('pending', 'waiting')
  ORDER BY r.priority DESC, r.created_at, r.run_id LIMIT (SELECT n FROM free)
), next AS (
  SELECT r.run_id FROM runs r
  WHERE r.key_parked AND r.tenant_id = $1 AND r.concurrency_key = $2 AND r.status IN ('pending', 'waiting')
  ORDER BY r.priority DESC, r.created_at, r.run_id LIMIT (SELECT n FROM free)
  FOR UPDATE SKIP LOCKED
), released AS (
  UPDATE runs r SET available_at = least(r.created_at, now()), key_parked = false, updated_at = now()
  FROM next WHERE r.run_id = next.run_id
  RETURNING r.run_id
)
SELECT coalesce((SELECT jsonb_agg(run_id) FROM released), '[]'::jsonb) AS released,
  (SELECT count(*) FROM released) < (SELECT count(*) FROM parked) AS short`;

/** Tries of a release that found parked runs locked (each waits for their lockers to commit). */
const RELEASE_TRIES = 5;

/** A concurrency key of a tenant, with its limit: the key a run that stopped running gives a place back to. */
export interface KeyPlace {
  tenantId: string;
  key: string;
  limit: number;
}

/**
 * Gives the places of a key's runs that stopped running (ended, suspended,
 * re-queued) to its parked runs: called after the statement that stopped the
 * run has committed (or later in its transaction). Two statements in one
 * transaction, so the release reads a snapshot taken after it holds the
 * key's counter row: a claimer that parked a run while this waited for the
 * row has committed, and its parked run is seen; a claimer that comes after
 * reads the pruned row and takes the place. Either way no run stays parked
 * while its key has room. Returns the released runs.
 */
export async function releaseParkedRuns(db: Queryable, place: KeyPlace): Promise<string[]> {
  const release = async (tx: Queryable) => {
    const params = [place.tenantId, place.key];
    await tx.query(PRUNE_SQL, params);
    const res = await tx.query<{ released: string[]; short: boolean }>(RELEASE_SQL, [...params, place.limit]);
    return res.rows[0] ?? { released: [], short: false };
  };
  // Inside the caller's transaction: one try (the lockers of a passed-over run wait on the counter
  // row until that transaction ends; the sweeper's un-park catches it).
  if (!('transaction' in db)) return (await release(db)).released;
  // A client: a try passed over parked runs locked by claimers waiting on the counter row; they go on
  // once this try commits, and the next try, which waits for them on the row, finds the runs unlocked.
  const released: string[] = [];
  for (let tries = 0; tries < RELEASE_TRIES; tries++) {
    const result = await (db as SqlClient).transaction(release);
    released.push(...result.released);
    if (!result.short) break;
  }
  return released;
}

/**
 * The safety net (the sweeper runs it): releases parked runs of keys that
 * have room — left parked only when a releasing process died between a run's
 * end and its release, or a parked run was locked when its release came.
 * At most `limit` keys a call. Returns the released runs.
 */
export async function unparkFreeKeys(db: Queryable, limit = 100): Promise<string[]> {
  // The keys with parked runs (a skip scan: one index probe per key), those with a place free.
  const keys = await db.query<{ tenant_id: string; concurrency_key: string; lim: number }>(
    `WITH RECURSIVE k AS (
       (SELECT tenant_id, concurrency_key, concurrency_limit AS lim FROM runs WHERE key_parked
        ORDER BY tenant_id, concurrency_key LIMIT 1)
       UNION ALL
       SELECT n.* FROM k CROSS JOIN LATERAL (
         SELECT r.tenant_id, r.concurrency_key, r.concurrency_limit FROM runs r
         WHERE r.key_parked AND (r.tenant_id, r.concurrency_key) > (k.tenant_id, k.concurrency_key)
         ORDER BY r.tenant_id, r.concurrency_key LIMIT 1) n
     )
     SELECT k.tenant_id, k.concurrency_key, k.lim FROM k
     WHERE (SELECT count(*) FROM concurrency_counters c, jsonb_array_elements(c.holders) e
       WHERE c.key = jsonb_build_array('key', k.tenant_id, k.concurrency_key)::text AND ${LIVE_HOLDER}) < k.lim
     LIMIT $1`,
    [limit],
  );
  const released: string[] = [];
  for (const k of keys.rows) {
    released.push(
      ...(await releaseParkedRuns(db, {
        tenantId: k.tenant_id,
        key: k.concurrency_key,
        limit: Number(k.lim),
      })),
    );
  }
  return released;
}
