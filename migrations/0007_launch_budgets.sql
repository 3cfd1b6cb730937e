-- A project's default budget: the spend cap in US dollars of its launches that set none (a
-- launch's own budget is in its request; the deployment's in CODECOURIER_DEFAULT_BUDGET_USD).
ALTER TABLE projects ADD COLUMN default_budget_usd REAL;
