-- What CodeCourier's gateway metered of each launch's model traffic: one row per API and model the
-- launch called, added to as responses end. The CLI's own figures stay in sandboxes.cost_usd and
-- the token columns beside it.
CREATE TABLE model_usage (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    api TEXT NOT NULL,
    -- As the response named it (the request's when the response did not).
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    -- NULL when the catalog has no price for the model: its tokens are counted, not priced.
    cost_usd REAL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, api, model)
);
