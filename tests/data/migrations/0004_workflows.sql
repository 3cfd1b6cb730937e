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
