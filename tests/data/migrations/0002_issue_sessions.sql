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
