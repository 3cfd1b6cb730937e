-- Rows as the 0005 schema holds them: a proposed and an accepted learning, a project's settings.
INSERT INTO learnings (project_id, text, status, sandbox_id, proposed_at)
VALUES (1, '- run tests with make check', 'proposed', '7f1e2d3c-4b5a-4678-9abc-def012345678', '2026-01-05T00:00:00Z');
UPDATE projects SET setup_script = 'npm ci', auto_setup = 0, auto_accept_learnings = 1 WHERE id = 1;
