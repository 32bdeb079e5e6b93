-- Hangar's data model. Postgres is the source of truth for everything below;
-- Redis (when used) only accelerates it. Every tenant-owned table carries
-- tenant_id and every query filters on it.

CREATE TABLE tenants (
  tenant_id   text PRIMARY KEY,
  name        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenants (tenant_id, name) VALUES ('default', 'Default tenant');

-- API keys: only a hash is stored; the prefix is shown for identification.
CREATE TABLE api_keys (
  key_id       uuid PRIMARY KEY,
  tenant_id    text NOT NULL REFERENCES tenants(tenant_id),
  name         text NOT NULL,
  prefix       text NOT NULL,
  key_hash     text NOT NULL UNIQUE,
  scopes       jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at   timestamptz
);

-- Assistants: a configured agent (graph_id = agent name) with a config version.
-- The default assistant of an agent has the same id in every tenant (uuid5 of
-- the agent name, as LangGraph does), hence the composite key.
CREATE TABLE assistants (
  tenant_id    text NOT NULL REFERENCES tenants(tenant_id),
  assistant_id uuid NOT NULL,
  graph_id     text NOT NULL,
  name         text NOT NULL,
  description  text,
  config       jsonb NOT NULL DEFAULT '{}',
  context      jsonb NOT NULL DEFAULT '{}',
  metadata     jsonb NOT NULL DEFAULT '{}',
  version      integer NOT NULL DEFAULT 1,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, assistant_id)
);
CREATE INDEX assistants_tenant_graph ON assistants (tenant_id, graph_id);

CREATE TABLE assistant_versions (
  tenant_id    text NOT NULL,
  assistant_id uuid NOT NULL,
  version      integer NOT NULL,
  graph_id     text NOT NULL,
  name         text NOT NULL,
  config       jsonb NOT NULL DEFAULT '{}',
  context      jsonb NOT NULL DEFAULT '{}',
  metadata     jsonb NOT NULL DEFAULT '{}',
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, assistant_id, version),
  FOREIGN KEY (tenant_id, assistant_id) REFERENCES assistants (tenant_id, assistant_id) ON DELETE CASCADE
);

-- Threads: a conversation / unit of state. Runs on one thread are serialized:
-- active_run_id names the run that holds the thread from its first claim until
-- it ends, across lease loss, sleeps and retries. last_seq is the thread's
-- event sequence counter (the log's next seq is last_seq + 1).
CREATE TABLE threads (
  thread_id     uuid PRIMARY KEY,
  tenant_id     text NOT NULL REFERENCES tenants(tenant_id),
  status        text NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'busy', 'interrupted', 'error')),
  metadata      jsonb NOT NULL DEFAULT '{}',
  "values"      jsonb NOT NULL DEFAULT '{}',
  active_run_id uuid,
  last_seq      bigint NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX threads_tenant_created ON threads (tenant_id, created_at DESC);

-- Thread state history: one checkpoint per state change (LangGraph's history).
CREATE TABLE thread_states (
  checkpoint_id        uuid PRIMARY KEY,
  thread_id            uuid NOT NULL REFERENCES threads(thread_id) ON DELETE CASCADE,
  parent_checkpoint_id uuid,
  run_id               uuid,
  "values"             jsonb NOT NULL,
  metadata             jsonb NOT NULL DEFAULT '{}',
  -- clock_timestamp: several checkpoints in one transaction still order.
  created_at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX thread_states_thread ON thread_states (thread_id, created_at DESC);

-- Runs: the unit of work. The row is the queue entry too: a run is enqueued
-- by the transaction that creates it. A run is claimable when its status is
-- pending or waiting and available_at has passed.
CREATE TABLE runs (
  run_id             uuid PRIMARY KEY,
  tenant_id          text NOT NULL REFERENCES tenants(tenant_id),
  thread_id          uuid NOT NULL REFERENCES threads(thread_id) ON DELETE CASCADE,
  assistant_id       uuid NOT NULL,
  agent              text NOT NULL,
  status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'running', 'waiting', 'interrupted',
                                         'success', 'error', 'cancelled', 'timeout', 'dead')),
  input              jsonb,
  output             jsonb,
  error              jsonb,
  config             jsonb NOT NULL DEFAULT '{}',
  metadata           jsonb NOT NULL DEFAULT '{}',
  kwargs             jsonb NOT NULL DEFAULT '{}',
  multitask_strategy text NOT NULL DEFAULT 'reject',
  priority           integer NOT NULL DEFAULT 0,
  concurrency_key    text,
  -- Thread state when the run first started: the base a replay starts from.
  base_values        jsonb,
  attempt            integer NOT NULL DEFAULT 0,
  available_at       timestamptz NOT NULL DEFAULT now(),
  lease_owner        text,
  lease_epoch        bigint NOT NULL DEFAULT 0,
  lease_expires_at   timestamptz,
  cancel_requested_at timestamptz,
  cancel_reason      text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  started_at         timestamptz,
  finished_at        timestamptz
);
CREATE INDEX runs_claimable ON runs (priority DESC, available_at, created_at) WHERE status IN ('pending', 'waiting');
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_thread ON runs (thread_id, created_at);
CREATE INDEX runs_tenant_status ON runs (tenant_id, status, created_at);

-- Step checkpoints: one row per ctx.step call, by its position in the run.
-- A completed step's result is returned on replay instead of re-running it.
CREATE TABLE steps (
  run_id      uuid NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  step_index  integer NOT NULL,
  name        text NOT NULL,
  kind        text NOT NULL DEFAULT 'step' CHECK (kind IN ('step', 'sleep', 'llm', 'interrupt', 'wait_event')),
  status      text NOT NULL CHECK (status IN ('completed', 'failed', 'sleeping')),
  result      jsonb,
  error       jsonb,
  attempt     integer NOT NULL,
  usage       jsonb,
  wake_at     timestamptz,
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, step_index)
);

-- The event log: one per thread, seq strictly increasing with no gaps.
-- op_key marks an event emitted outside any step, so a replay that passes the
-- same ctx.emit again does not append it twice.
CREATE TABLE events (
  thread_id  uuid NOT NULL REFERENCES threads(thread_id) ON DELETE CASCADE,
  seq        bigint NOT NULL,
  event_id   uuid NOT NULL,
  tenant_id  text NOT NULL,
  run_id     uuid,
  attempt    integer NOT NULL DEFAULT 0,
  ts         timestamptz NOT NULL DEFAULT now(),
  channel    text NOT NULL,
  namespace  jsonb NOT NULL DEFAULT '[]',
  data       jsonb,
  op_key     text,
  PRIMARY KEY (thread_id, seq)
);
CREATE INDEX events_run ON events (run_id, seq);
CREATE UNIQUE INDEX events_run_op ON events (run_id, op_key) WHERE op_key IS NOT NULL;

-- Interrupts / approvals: answered exactly once (compare-and-set on status).
CREATE TABLE interrupts (
  interrupt_id uuid PRIMARY KEY,
  tenant_id    text NOT NULL,
  run_id       uuid NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  thread_id    uuid NOT NULL,
  step_index   integer NOT NULL,
  agent        text NOT NULL,
  payload      jsonb,
  status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'answered', 'expired', 'cancelled')),
  answer       jsonb,
  decision     text,
  comment      text,
  answered_by  text,
  answered_at  timestamptz,
  expires_at   timestamptz,
  on_timeout   jsonb,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX interrupts_tenant_status ON interrupts (tenant_id, status, created_at);
CREATE INDEX interrupts_expiry ON interrupts (expires_at) WHERE status = 'pending';

-- External events for ctx.waitForEvent; kept until consumed, so an event that
-- arrives before the wait is registered is still matched.
CREATE TABLE thread_signals (
  signal_id   uuid PRIMARY KEY,
  tenant_id   text NOT NULL,
  thread_id   uuid NOT NULL REFERENCES threads(thread_id) ON DELETE CASCADE,
  name        text NOT NULL,
  payload     jsonb,
  consumed_by uuid,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX thread_signals_pending ON thread_signals (thread_id, name, created_at) WHERE consumed_by IS NULL;

-- Idempotent create: the key and a fingerprint of the body, written in the
-- run's creation transaction.
CREATE TABLE idempotency_keys (
  tenant_id   text NOT NULL,
  key         text NOT NULL,
  fingerprint text NOT NULL,
  run_id      uuid,
  response    jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- Tool-call journal: one row per tool call, keyed run:step:call-index, so a
-- retried step does not repeat a call that already succeeded.
CREATE TABLE tool_calls (
  idempotency_key text PRIMARY KEY,
  tenant_id       text NOT NULL,
  run_id          uuid NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  step_index      integer NOT NULL,
  call_index      integer NOT NULL,
  tool            text NOT NULL,
  arguments       jsonb,
  status          text NOT NULL CHECK (status IN ('started', 'succeeded', 'failed')),
  result          jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz
);

-- Long-term memory (the LangGraph store API), tenant-scoped.
CREATE TABLE store_items (
  tenant_id  text NOT NULL,
  namespace  text NOT NULL,
  key        text NOT NULL,
  value      jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, namespace, key)
);
