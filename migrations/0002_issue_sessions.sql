-- Issue sessions: a scanning agent's run over a repository, and the issues it returned.
CREATE TABLE issue_sessions (
    id TEXT PRIMARY KEY,
    project_id INTEGER REFERENCES projects(id) ON DELETE SET NULL,
    repo TEXT NOT NULL,
    focus TEXT,
    tool TEXT NOT NULL,
    model TEXT NOT NULL,
    max_issues INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'stopped')),
    error TEXT,
    -- The agent's answer as given, kept when it could not be parsed.
    raw_output TEXT,
    launched_by TEXT NOT NULL,
    discord_user_id TEXT,
    discord_channel_id TEXT,
    discord_thread_id TEXT,
    discord_message_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);

CREATE TABLE issues (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_session_id TEXT NOT NULL REFERENCES issue_sessions(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    category TEXT NOT NULL,
    -- [{"path": "...", "start_line": n, "end_line": n}]
    files_json TEXT NOT NULL DEFAULT '[]',
    evidence TEXT,
    suggested_fix TEXT,
    effort_estimate TEXT,
    github_issue_url TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (issue_session_id, position)
);

ALTER TABLE sandboxes ADD COLUMN issue_session_id TEXT REFERENCES issue_sessions(id) ON DELETE SET NULL;
CREATE INDEX sandboxes_by_issue_session ON sandboxes (issue_session_id);
