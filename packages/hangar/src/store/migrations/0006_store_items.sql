-- Long-term store (the LangGraph store API): item expiry and prefix search.
-- namespace stays the labels joined by '.' (labels never contain '.'), so a
-- namespace prefix is a text prefix and text_pattern_ops serves LIKE 'a.b.%'.
-- ttl_minutes is kept so a read can push expires_at out again (refresh_ttl).
ALTER TABLE store_items ADD COLUMN expires_at timestamptz;
ALTER TABLE store_items ADD COLUMN ttl_minutes double precision;
CREATE INDEX store_items_prefix ON store_items (tenant_id, namespace text_pattern_ops);
CREATE INDEX store_items_recent ON store_items (tenant_id, updated_at DESC);
CREATE INDEX store_items_expiry ON store_items (expires_at) WHERE expires_at IS NOT NULL;
