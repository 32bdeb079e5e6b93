-- API keys are looked up by hash (unique index from 0001), listed per tenant
-- and revoked by their display prefix.
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);
CREATE INDEX api_keys_prefix ON api_keys (prefix);
