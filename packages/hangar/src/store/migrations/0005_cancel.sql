-- Cancellation: what the canceller asked for and who it was. A run not held
-- by a live worker is cancelled at once; a running one gets cancel_requested_at
-- and its worker ends it. cancel_action 'rollback' also restores the thread
-- state the run started from and deletes the run.
ALTER TABLE runs ADD COLUMN cancel_action text CHECK (cancel_action IN ('interrupt', 'rollback'));
ALTER TABLE runs ADD COLUMN cancelled_by text;
