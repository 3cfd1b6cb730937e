-- Rows as the 0001 schema held them, to prove later migrations keep them.
INSERT INTO projects (id, name, repo, base_branch, system_prompt, learnings, discord_guild_id, discord_channel_id,
                      created_at, updated_at)
VALUES (1, 'widgets', 'acme/widgets', 'main', 'Be careful.', '- builds with cargo' || char(10) || '  ' || char(10) ||
        '- tests need git', '18446744073709551615', '1234567890123456789', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');

INSERT INTO secrets (scope, name, nonce, ciphertext, created_at, updated_at)
VALUES ('project:1', 'ANTHROPIC_API_KEY', x'000102030405060708090a0b0c0d0e0f1011121314151617', x'deadbeef',
        '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');

INSERT INTO sandboxes (id, project_id, status, tool, model, repo, base_branch, branch, prompt, config_json,
                       env_names_json, launched_by, discord_user_id, discord_channel_id, current_phase,
                       result_text, cost_usd, commits_json, pushed, created_at, updated_at, finished_at)
VALUES ('7f1e2d3c-4b5a-4678-9abc-def012345678', 1, 'completed', 'claude-code', 'claude-sonnet-4-6', 'acme/widgets',
        'main', 'codecourier/7f1e2d3c-add-readme', 'Add a README',
        '{"prompt":"Add a README","repo":{"kind":"github","owner":"acme","name":"widgets"},"base_branch":"main","tool":"claude-code","model":"claude-sonnet-4-6","effort":"none","resources":{"memory_mb":1024,"cpus":2,"timeout_ms":900000},"template":"codecourier-claude-code","checker_template_id":null,"designer_cli_id":null,"optimizer_cli_id":null,"checker_cli_id":null}',
        '["ANTHROPIC_BASE_URL"]', 'alice', '18446744073709551615', '1234567890123456789', 'finish',
        'Added README.md', 0.0123, '[{"sha":"0123456789abcdef0123456789abcdef01234567","subject":"Add README.md"}]', 1,
        '2026-01-01T00:00:00Z', '2026-01-01T00:05:00Z', '2026-01-01T00:05:00Z');

INSERT INTO sandbox_phases (sandbox_id, phase, outcome, detail, started_at, ended_at)
VALUES ('7f1e2d3c-4b5a-4678-9abc-def012345678', 'provision', 'ok', 'memory limit enforced',
        '2026-01-01T00:00:01Z', '2026-01-01T00:00:02Z');

INSERT INTO sandbox_events (sandbox_id, seq, at, kind, payload_json)
VALUES ('7f1e2d3c-4b5a-4678-9abc-def012345678', 1, '2026-01-01T00:01:00Z', 'agent.text', '{"text":"Working on it"}');
