-- A filed issue's number on GitHub, next to its address; and the sandbox that ran a session's scan
-- (launches that fix its issues link to the session too).
ALTER TABLE issues ADD COLUMN github_issue_number INTEGER;
ALTER TABLE issue_sessions ADD COLUMN sandbox_id TEXT;
