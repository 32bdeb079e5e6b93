-- Fair concurrency control (issue 5, point 7; runs/concurrency.ts).
--
-- A run's concurrency key (an agent's `concurrency.key(input)` or the create
-- body's `concurrency_key`) and how many runs of that key may run at once,
-- both fixed when the run is created.
ALTER TABLE runs ADD COLUMN concurrency_limit integer;

-- The claim walks each tenant's queue on its own (fairness: tenants take
-- turns), so the claimable runs are indexed by tenant first. The same index
-- lists the tenants that have work (a skip scan over tenant_id).
CREATE INDEX runs_claimable_tenant ON runs (tenant_id, priority DESC, available_at, created_at)
  WHERE status IN ('pending', 'waiting');
-- It replaces the claim's old index (one queue for all tenants).
DROP INDEX runs_claimable;
-- Running runs per cap, counted (up to the cap) to skip saturated work when picking candidates.
CREATE INDEX runs_running_agent ON runs (agent) WHERE status = 'running';
CREATE INDEX runs_running_key ON runs (tenant_id, concurrency_key)
  WHERE status = 'running' AND concurrency_key IS NOT NULL;

-- One row per capped key ('t:<tenant>', 'a:<agent>', 'k:<tenant>:<key>'):
-- the runs that hold one of its places, as [run_id, lease_epoch] pairs. A
-- claim locks the row (FOR UPDATE returns its newest version, even one
-- committed after the claim's snapshot), counts the holders still running,
-- and appends the runs it claims, all in the claim statement: two workers
-- can't both take the last place. A holder is still running while its run's
-- lease_epoch is below the recorded one (the claim is newer than what the
-- snapshot shows) or equal with status 'running'; others are pruned on the
-- next claim, so a run's end needs no bookkeeping here.
CREATE TABLE concurrency_counters (
  key        text PRIMARY KEY,
  holders    jsonb NOT NULL DEFAULT '[]',
  updated_at timestamptz NOT NULL DEFAULT now()
);
