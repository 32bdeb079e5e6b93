-- Human in the loop (issue 6). A step of kind 'interrupt' waits as
-- 'interrupted' until its interrupt row is answered (or expires or is
-- cancelled); the answer becomes the step's result in the same statement.
ALTER TABLE steps DROP CONSTRAINT steps_status_check;
ALTER TABLE steps ADD CONSTRAINT steps_status_check
  CHECK (status IN ('completed', 'failed', 'sleeping', 'interrupted'));

-- A thread's pending interrupts (Thread.interrupts, the resume of command.resume)
-- and a run's (cancel marks them, a resume checks none is left).
CREATE INDEX interrupts_thread_pending ON interrupts (thread_id, created_at) WHERE status = 'pending';
CREATE INDEX interrupts_run ON interrupts (run_id);
-- The approvals list: newest first within a tenant and status.
CREATE INDEX interrupts_tenant_agent ON interrupts (tenant_id, agent, status, created_at);
