-- What a project allows and prepares: learnings held for review, the setup before an agent starts,
-- and whether a run may change CI workflows.

-- Learnings an agent proposes wait for a manager: only accepted ones reach later prompts.
CREATE TABLE learnings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('proposed', 'accepted')),
    sandbox_id TEXT REFERENCES sandboxes(id) ON DELETE SET NULL,
    proposed_at TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT,
    UNIQUE (project_id, text)
);
CREATE INDEX learnings_project ON learnings (project_id, status);

-- What earlier runs learned was in every prompt already: it stays, as accepted.
WITH RECURSIVE split (project_id, line, rest) AS (
    SELECT id, '', learnings || char(10) FROM projects WHERE learnings != ''
    UNION ALL
    SELECT project_id, substr(rest, 1, instr(rest, char(10)) - 1), substr(rest, instr(rest, char(10)) + 1)
    FROM split WHERE rest != ''
)
INSERT OR IGNORE INTO learnings (project_id, text, status, proposed_at, decided_by, decided_at)
SELECT project_id, trim(line), 'accepted', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 'migration',
       strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
FROM split WHERE trim(line) != '';

ALTER TABLE projects DROP COLUMN learnings;
ALTER TABLE projects ADD COLUMN auto_accept_learnings INTEGER NOT NULL DEFAULT 0;
-- A shell script run in the project directory before the agent (the `setup` phase).
ALTER TABLE projects ADD COLUMN setup_script TEXT;
-- Without a script: install what the lockfiles name.
ALTER TABLE projects ADD COLUMN auto_setup INTEGER NOT NULL DEFAULT 1;
-- Pushes that change .github/workflows/ are refused unless this is set.
ALTER TABLE projects ADD COLUMN allow_workflow_changes INTEGER NOT NULL DEFAULT 0;
