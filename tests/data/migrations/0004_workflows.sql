-- Rows as the 0004 schema holds them: a project workflow, a chain with one run and its first step.
INSERT INTO workflows (project_id, name, definition_json, created_by, created_at, updated_at)
VALUES (1, 'careful', '{"name":"careful","max_rounds":2}', 'bob', '2026-01-04T00:00:00Z', '2026-01-04T00:00:00Z');

INSERT INTO work_chains (id, project_id, workflow_json, repo, base_branch, branch, items_json, status, launched_by,
                         created_at, updated_at)
VALUES ('c0c0c0c0-1111-4222-8333-444455556666', 1, '{"name":"default"}', 'acme/widgets', 'main',
        'codecourier/chain-c0c0c0c0', '[{"title":"a","prompt":"a","source":"text"}]', 'running', 'bob',
        '2026-01-04T00:00:00Z', '2026-01-04T00:00:00Z');

INSERT INTO workflow_runs (id, project_id, workflow_json, task_json, repo, base_branch, branch, work_chain_id,
                           chain_position, status, launched_by, created_at, updated_at)
VALUES ('a1a1a1a1-2222-4333-8444-555566667777', 1, '{"name":"default"}', '{"title":"a","prompt":"a","source":"text"}',
        'acme/widgets', 'main', 'codecourier/chain-c0c0c0c0', 'c0c0c0c0-1111-4222-8333-444455556666', 0,
        'running', 'bob', '2026-01-04T00:00:00Z', '2026-01-04T00:00:00Z');

INSERT INTO workflow_steps (run_id, seq, step, round, sandbox_id, tool, model, template, config_json, status,
                            started_at)
VALUES ('a1a1a1a1-2222-4333-8444-555566667777', 1, 'designer', 0, '7f1e2d3c-4b5a-4678-9abc-def012345678',
        'claude-code', 'claude-sonnet-4-6', 'codecourier/claude-code', '{}', 'completed', '2026-01-04T00:00:00Z');

UPDATE sandboxes SET workflow_run_id = 'a1a1a1a1-2222-4333-8444-555566667777', workflow_step = 'designer',
                     work_chain_id = 'c0c0c0c0-1111-4222-8333-444455556666'
WHERE id = '7f1e2d3c-4b5a-4678-9abc-def012345678';

-- A checker step's sandbox: a follow-up on the run's branch, read-only (checker: true).
INSERT INTO sandboxes (id, project_id, status, tool, model, repo, base_branch, branch, prompt, config_json, launched_by,
                       workflow_run_id, workflow_step, created_at, updated_at)
VALUES ('c4ec4e00-0000-4000-8000-000000000004', 1, 'running', 'claude-code', 'claude-sonnet-4-6', 'acme/widgets',
        'main', 'codecourier/chain-c0c0c0c0', 'Check the work',
        '{"prompt":"Check the work","repo":{"kind":"github","owner":"acme","name":"widgets"},"base_branch":"main","tool":"claude-code","model":"claude-sonnet-4-6","effort":"none","resources":{"memory_mb":1024,"cpus":2,"timeout_ms":900000},"template":"codecourier-claude-code","checker_template_id":null,"designer_cli_id":null,"optimizer_cli_id":null,"checker_cli_id":null,"pr":"draft","follow_up":{"of":"7f1e2d3c-4b5a-4678-9abc-def012345678","branch":"codecourier/chain-c0c0c0c0","base_branch":"main","session_id":null},"scan":null,"checker":true}',
        'bob', 'a1a1a1a1-2222-4333-8444-555566667777', 'checker', '2026-01-04T00:00:00Z', '2026-01-04T00:00:00Z');
