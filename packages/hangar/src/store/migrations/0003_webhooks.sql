-- Completion webhooks: one delivery per run created with a `webhook` URL,
-- inserted by the run's creation transaction (no dual write). A dispatcher in
-- every worker process claims deliveries whose run has ended, POSTs them and
-- records the outcome here, so a delivery survives any process crash.
--
-- attempts counts claims: a claim increments it and pushes next_attempt_at
-- past the attempt's timeout (a lease), so a dispatcher that dies mid-POST
-- leaves the delivery due again once the lease passes. The outcome write is
-- fenced on attempts, so a late dispatcher cannot overwrite a newer claim.
CREATE TABLE webhook_deliveries (
  delivery_id      uuid PRIMARY KEY,
  tenant_id        text NOT NULL,
  run_id           uuid NOT NULL UNIQUE REFERENCES runs(run_id) ON DELETE CASCADE,
  url              text NOT NULL,
  status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  -- The last attempt: the receiver's HTTP status (null: no answer) and why it failed.
  last_status_code integer,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_tenant_status ON webhook_deliveries (tenant_id, status, created_at);
