-- Rows as the 0002 schema held them.
INSERT INTO issue_sessions (id, project_id, repo, focus, tool, model, max_issues, status, launched_by,
                            discord_channel_id, created_at, updated_at)
VALUES ('0c9a8b7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d', 1, 'acme/widgets', 'security', 'claude-code', 'claude-sonnet-4-6',
        20, 'completed', 'bob', '1234567890123456789', '2026-01-02T00:00:00Z', '2026-01-02T00:00:00Z');

INSERT INTO issues (issue_session_id, position, title, description, severity, category, files_json, created_at)
VALUES ('0c9a8b7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d', 1, 'SQL built by string concatenation', 'User input reaches a query.',
        'high', 'security', '[{"path":"src/db.rs","start_line":10,"end_line":20}]', '2026-01-02T00:00:00Z');

UPDATE sandboxes SET issue_session_id = '0c9a8b7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d'
WHERE id = '7f1e2d3c-4b5a-4678-9abc-def012345678';

-- The scan's own sandbox: its request names the scan (the mode of a launch is read from these fields).
INSERT INTO sandboxes (id, project_id, status, tool, model, repo, base_branch, prompt, config_json, launched_by,
                       issue_session_id, created_at, updated_at)
VALUES ('5ca55ca5-0000-4000-8000-000000000002', 1, 'completed', 'claude-code', 'claude-sonnet-4-6', 'acme/widgets',
        'main', 'Scan this repository',
        '{"prompt":"Scan this repository","repo":{"kind":"github","owner":"acme","name":"widgets"},"base_branch":"main","tool":"claude-code","model":"claude-sonnet-4-6","effort":"none","resources":{"memory_mb":1024,"cpus":2,"timeout_ms":900000},"template":"codecourier-claude-code","checker_template_id":null,"designer_cli_id":null,"optimizer_cli_id":null,"checker_cli_id":null,"pr":"none","follow_up":null,"scan":{"max_issues":20,"focus":"security"}}',
        'bob', '0c9a8b7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d', '2026-01-02T00:00:00Z', '2026-01-02T00:10:00Z');
