-- Rows as the 0006 schema holds them: a launch's metered usage of a priced and an unpriced model.
INSERT INTO model_usage (sandbox_id, api, model, requests, input_tokens, output_tokens,
    cache_read_tokens, cache_write_tokens, cost_usd, updated_at)
VALUES ('7f1e2d3c-4b5a-4678-9abc-def012345678', 'anthropic', 'claude-sonnet-4-6', 3, 1200, 340, 800, 0, 0.0123, '2026-01-06T00:00:00Z'),
       ('7f1e2d3c-4b5a-4678-9abc-def012345678', 'openrouter', 'some/unpriced-model', 1, 50, 5, 0, 0, NULL, '2026-01-06T00:00:00Z');
