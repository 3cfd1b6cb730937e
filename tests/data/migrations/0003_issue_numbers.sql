-- Rows as the 0003 schema holds them: an issue filed on GitHub, and the session's scan sandbox.
INSERT INTO issues (issue_session_id, position, title, description, severity, category, files_json,
                    github_issue_url, github_issue_number, created_at)
VALUES ('0c9a8b7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d', 2, 'Panics on an empty config', 'unwrap on a missing key.',
        'medium', 'bug', '[]', 'https://github.com/acme/widgets/issues/7', 7, '2026-01-03T00:00:00Z');

UPDATE issue_sessions SET sandbox_id = '7f1e2d3c-4b5a-4678-9abc-def012345678'
WHERE id = '0c9a8b7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d';
