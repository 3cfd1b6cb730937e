-- Workflows (designer → optimizer → checker), their runs and steps, and work chains.

-- A project's own workflows; the built-in default lives in the code.
CREATE TABLE workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- The definition: default_config, personas, per-step overrides, round limit.
    definition_json TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);

-- An ordered list of tasks run as workflow runs on one branch.
CREATE TABLE work_chains (
    id TEXT PRIMARY KEY,
    project_id INTEGER REFERENCES projects(id) ON DELETE SET NULL,
    workflow_json TEXT NOT NULL,
    repo TEXT NOT NULL,
    base_branch TEXT,
    branch TEXT,
    -- [{"title": "...", "prompt": "...", "source": "..."}]
    items_json TEXT NOT NULL,
    continue_on_failure INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('running', 'passed', 'failed', 'stopped')),
    error TEXT,
    pr_url TEXT,
    issue_session_id TEXT REFERENCES issue_sessions(id) ON DELETE SET NULL,
    launched_by TEXT NOT NULL,
    discord_user_id TEXT,
    discord_guild_id TEXT,
    discord_channel_id TEXT,
    discord_thread_id TEXT,
    discord_message_id TEXT,
    -- Who is running it ("host:pid") and when it last said so: a run nobody drives is resumed.
    runner TEXT,
    heartbeat_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);

CREATE TABLE workflow_runs (
    id TEXT PRIMARY KEY,
    project_id INTEGER REFERENCES projects(id) ON DELETE SET NULL,
    -- The workflow as it was when the run started.
    workflow_json TEXT NOT NULL,
    -- {"title": "...", "prompt": "...", "source": "..."}
    task_json TEXT NOT NULL,
    repo TEXT NOT NULL,
    base_branch TEXT,
    branch TEXT,
    work_chain_id TEXT REFERENCES work_chains(id) ON DELETE CASCADE,
    chain_position INTEGER,
    status TEXT NOT NULL CHECK (status IN ('running', 'passed', 'failed', 'stopped')),
    error TEXT,
    findings TEXT,
    pr_url TEXT,
    launched_by TEXT NOT NULL,
    discord_user_id TEXT,
    discord_guild_id TEXT,
    discord_channel_id TEXT,
    discord_thread_id TEXT,
    discord_message_id TEXT,
    runner TEXT,
    heartbeat_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    UNIQUE (work_chain_id, chain_position)
);

-- One step of a run: one sandbox. A step interrupted by a crash stays as 'interrupted' and the
-- same step runs again as a new row.
CREATE TABLE workflow_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES workflow_runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    step TEXT NOT NULL CHECK (step IN ('designer', 'optimizer', 'checker')),
    round INTEGER NOT NULL,
    sandbox_id TEXT REFERENCES sandboxes(id) ON DELETE SET NULL,
    -- The configuration used: tool, model, effort, template, resources.
    tool TEXT NOT NULL,
    model TEXT NOT NULL,
    template TEXT NOT NULL,
    config_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'stopped', 'interrupted')),
    verdict TEXT CHECK (verdict IN ('pass', 'fail')),
    findings TEXT,
    error TEXT,
    cost_usd REAL,
    duration_ms INTEGER,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    UNIQUE (run_id, seq)
);
CREATE INDEX workflow_steps_by_run ON workflow_steps (run_id, seq);
CREATE INDEX workflow_runs_by_chain ON workflow_runs (work_chain_id, chain_position);
