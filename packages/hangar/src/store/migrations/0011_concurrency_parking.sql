-- Runs parked behind a full concurrency key (issue 5, point 7; runs/concurrency.ts).
--
-- A claim that finds a run whose key is at its limit parks it: the run waits
-- with available_at = 'infinity' (out of the claim's index, like a run queued
-- behind a busy thread) and key_parked set, so the claim's window moves on to
-- the tenant's other runs. When a run holding one of the key's places stops
-- running, the key's oldest parked runs are released (one per free place);
-- the sweeper re-checks keys with parked runs as a safety net.
ALTER TABLE runs ADD COLUMN key_parked boolean NOT NULL DEFAULT false;

-- A key's parked runs, in the order they are released.
CREATE INDEX runs_key_parked ON runs (tenant_id, concurrency_key, priority DESC, created_at) WHERE key_parked;
