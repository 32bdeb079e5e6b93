-- Worker liveness through Postgres sessions: a worker holds a session-level
-- advisory lock for as long as it lives, and stamps its key on the runs it
-- claims. When the worker's process dies its session ends and the lock goes
-- with it, so the sweeper re-queues those runs at once instead of waiting for
-- their leases to expire (the lease stays the backstop: a machine that
-- vanishes without closing its connections).
ALTER TABLE runs ADD COLUMN lease_lock bigint;
