-- Rows as the 0007 schema holds them: a project with a default budget.
UPDATE projects SET default_budget_usd = 2.5 WHERE id = 1;
