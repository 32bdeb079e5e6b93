-- Dead letters (issue 5, point 5): runs that ended `dead` (a step exhausted
-- its retries, or the run's attempts kept dying: the crash-loop cap) wait
-- here for someone to look. A discard acknowledges one: it leaves the list
-- but the run is kept, with who discarded it and when, for audit.
ALTER TABLE runs ADD COLUMN discarded_at timestamptz;
ALTER TABLE runs ADD COLUMN discarded_by text;
CREATE INDEX runs_dead_letters ON runs (tenant_id, finished_at DESC, run_id) WHERE status = 'dead';

-- One row per redrive: who sent the run back to the queue, when, what they
-- patched (input, state) and what the run had died of, since the redrive
-- clears the run's error and attempts.
CREATE TABLE run_redrives (
  redrive_id        uuid PRIMARY KEY,
  tenant_id         text NOT NULL,
  run_id            uuid NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  redriven_by       text NOT NULL,
  redriven_at       timestamptz NOT NULL DEFAULT now(),
  -- The new input (null: kept) and the patch merged into the state (null: none).
  input             jsonb,
  state             jsonb,
  previous_error    jsonb,
  previous_attempts integer NOT NULL,
  -- The run went behind another run of its thread instead of straight to the queue.
  queued            boolean NOT NULL
);
CREATE INDEX run_redrives_run ON run_redrives (run_id, redriven_at);
