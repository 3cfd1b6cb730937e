-- Projects: a repository that a Discord channel (or the terminal) works on, with its defaults.
CREATE TABLE projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    repo TEXT NOT NULL,
    base_branch TEXT,
    system_prompt TEXT,
    default_tool TEXT,
    default_model TEXT,
    skills_json TEXT NOT NULL DEFAULT '[]',
    commands_json TEXT NOT NULL DEFAULT '[]',
    learnings TEXT NOT NULL DEFAULT '',
    -- Discord snowflakes are u64: kept as decimal text so none is ever truncated or made negative.
    discord_guild_id TEXT,
    discord_channel_id TEXT UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Secrets, encrypted with XChaCha20-Poly1305; the associated data is "<scope>/<name>".
-- scope: 'global', 'project:<id>', 'sandbox:<id>'.
CREATE TABLE secrets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (scope, name)
);

-- One row per sandbox launch. config_json is the validated LaunchRequest (env values live in secrets);
-- the columns beside it repeat what listings filter and sort on.
CREATE TABLE sandboxes (
    id TEXT PRIMARY KEY,
    project_id INTEGER REFERENCES projects(id) ON DELETE SET NULL,
    status TEXT NOT NULL CHECK (status IN
        ('creating', 'provisioning', 'setting_up', 'running', 'completed', 'failed', 'timed_out', 'stopped')),
    tool TEXT NOT NULL,
    model TEXT NOT NULL,
    repo TEXT NOT NULL,
    base_branch TEXT,
    branch TEXT,
    prompt TEXT NOT NULL,
    config_json TEXT NOT NULL,
    env_names_json TEXT NOT NULL DEFAULT '[]',
    provider TEXT,
    provider_sandbox_id TEXT,
    launched_by TEXT NOT NULL,
    discord_user_id TEXT,
    discord_guild_id TEXT,
    discord_channel_id TEXT,
    discord_thread_id TEXT,
    discord_status_message_id TEXT,
    discord_result_message_id TEXT,
    current_phase TEXT,
    failed_phase TEXT,
    error TEXT,
    result_text TEXT,
    session_id TEXT,
    cost_usd REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    num_turns INTEGER,
    duration_ms INTEGER,
    commits_json TEXT NOT NULL DEFAULT '[]',
    pushed INTEGER,
    pr_url TEXT,
    compare_url TEXT,
    -- Workflow runs and work chains get their own tables with their feature; until then these are plain ids.
    workflow_run_id TEXT,
    workflow_step TEXT,
    work_chain_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX sandboxes_by_created ON sandboxes (created_at);
CREATE INDEX sandboxes_by_status ON sandboxes (status);

-- Each phase of the launch sequence: when it started and ended, and how.
CREATE TABLE sandbox_phases (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    phase TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('running', 'ok', 'failed', 'skipped')),
    detail TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    PRIMARY KEY (sandbox_id, phase)
);

-- The ordered event log of a sandbox (progress, agent events, errors).
CREATE TABLE sandbox_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    UNIQUE (sandbox_id, seq)
);
