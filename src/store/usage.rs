//! Metered model usage: what the gateway counted of each launch's model traffic, per API and model.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::sandboxes::{parse_id, text_id};
use super::{Result, Store};
use crate::ids::{DiscordId, JobId, SandboxId};
use crate::model::usage::UsageBy;

/// Tokens (and their price) of one or more model responses.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelUsage {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// None when no price is known for the model.
    pub cost_usd: Option<f64>,
}

impl ModelUsage {
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens
    }
}

/// The name under which responses whose usage could not be read are recorded (the gateway's).
const UNMETERED: &str = "unmetered";

/// All a launch's metered usage: what the record shows as its cost and tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MeteredTotal {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// The priced models' cost.
    pub cost_usd: f64,
    /// Models without a price: counted in tokens, not in the cost.
    pub unpriced: Vec<String>,
    /// Responses whose usage could not be read.
    pub unmetered_requests: u64,
}

impl MeteredTotal {
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens
    }

    /// Input as the providers bill it: fresh, cached and cache-written together.
    pub fn all_input_tokens(&self) -> u64 {
        self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
    }

    fn from_models(models: &[MeteredModel]) -> Option<Self> {
        if models.is_empty() {
            return None;
        }
        let mut total = MeteredTotal::default();
        for m in models {
            let u = &m.usage;
            total.requests += u.requests;
            total.input_tokens += u.input_tokens;
            total.output_tokens += u.output_tokens;
            total.cache_read_tokens += u.cache_read_tokens;
            total.cache_write_tokens += u.cache_write_tokens;
            total.cost_usd += u.cost_usd.unwrap_or(0.0);
            if m.model == UNMETERED {
                total.unmetered_requests += u.requests;
            } else if u.cost_usd.is_none() && !total.unpriced.contains(&m.model) {
                total.unpriced.push(m.model.clone());
            }
        }
        Some(total)
    }
}

/// A launch's metered usage of one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeteredModel {
    pub api: String,
    pub model: String,
    #[serde(flatten)]
    pub usage: ModelUsage,
}

/// The longest model name kept: a name comes from the agent's own request when the response
/// names none.
const MAX_MODEL_NAME: usize = 100;

impl Store {
    /// Adds `usage` to what is metered for the launch's `api` and `model`. A price stays known
    /// only while every addition had one.
    pub async fn add_model_usage(
        &self,
        sandbox: SandboxId,
        api: &str,
        model: &str,
        usage: &ModelUsage,
    ) -> Result<()> {
        let model: String = model.chars().take(MAX_MODEL_NAME).collect();
        sqlx::query(
            "INSERT INTO model_usage (sandbox_id, api, model, requests, input_tokens, output_tokens,
                cache_read_tokens, cache_write_tokens, cost_usd, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (sandbox_id, api, model) DO UPDATE SET
                requests = requests + excluded.requests,
                input_tokens = input_tokens + excluded.input_tokens,
                output_tokens = output_tokens + excluded.output_tokens,
                cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
                cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
                cost_usd = cost_usd + excluded.cost_usd,
                updated_at = excluded.updated_at",
        )
        .bind(sandbox.to_string())
        .bind(api)
        .bind(model)
        .bind(usage.requests as i64)
        .bind(usage.input_tokens as i64)
        .bind(usage.output_tokens as i64)
        .bind(usage.cache_read_tokens as i64)
        .bind(usage.cache_write_tokens as i64)
        .bind(usage.cost_usd)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What a workflow run's or a work chain's sandboxes have used so far, metered: the priced
    /// cost and every token.
    pub async fn job_usage(&self, job: JobId) -> Result<ModelUsage> {
        let column = match job {
            JobId::Run(_) => "workflow_run_id",
            JobId::Chain(_) => "work_chain_id",
        };
        let row = sqlx::query(&format!(
            "SELECT COALESCE(SUM(u.requests), 0) AS requests,
                COALESCE(SUM(u.input_tokens), 0) AS input_tokens,
                COALESCE(SUM(u.output_tokens), 0) AS output_tokens,
                COALESCE(SUM(u.cache_read_tokens), 0) AS cache_read_tokens,
                COALESCE(SUM(u.cache_write_tokens), 0) AS cache_write_tokens,
                COALESCE(SUM(u.cost_usd), 0.0) AS cost_usd
             FROM model_usage u JOIN sandboxes s ON s.id = u.sandbox_id
             WHERE s.{column} = ?1"
        ))
        .bind(job.id_text())
        .fetch_one(&self.pool)
        .await?;
        usage_of(&row)
    }

    /// The sum of what was metered of one launch; none when nothing was.
    pub async fn metered_total(&self, sandbox: SandboxId) -> Result<Option<MeteredTotal>> {
        Ok(MeteredTotal::from_models(
            &self.metered_models(sandbox).await?,
        ))
    }

    /// What was metered of one launch, a row per API and model.
    pub async fn metered_models(&self, sandbox: SandboxId) -> Result<Vec<MeteredModel>> {
        let rows = sqlx::query(
            "SELECT api, model, requests, input_tokens, output_tokens, cache_read_tokens,
                    cache_write_tokens, cost_usd
             FROM model_usage WHERE sandbox_id = ?1 ORDER BY api, model",
        )
        .bind(sandbox.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MeteredModel {
                    api: row.try_get("api")?,
                    model: row.try_get("model")?,
                    usage: usage_of(row)?,
                })
            })
            .collect()
    }
}

/// Whose launches a usage report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageScope {
    /// Every launch (the operator, at the terminal).
    Everything,
    /// The launches made from one Discord server.
    Server(DiscordId),
    /// One person's launches from one Discord server.
    Person { server: DiscordId, user: DiscordId },
}

/// One row of a usage report: a person, project, model or tool, or the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    pub name: String,
    /// The person's Discord id, when the row is a person who launched from Discord.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discord_user_id: Option<DiscordId>,
    pub launches: u64,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// What CodeCourier metered, priced from the catalog (models without a price add nothing).
    pub metered_cost_usd: f64,
    /// Tokens of models the catalog has no price for.
    pub unpriced_tokens: u64,
    /// What the agent CLIs reported themselves; none for a model's row (a CLI reports one figure
    /// for its whole run).
    pub reported_cost_usd: Option<f64>,
}

/// Usage in a window, grouped, with the total over the same launches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    pub by: UsageBy,
    pub since: DateTime<Utc>,
    pub rows: Vec<UsageRow>,
    pub total: UsageRow,
}

/// A launch's metered figures summed over its models, joined to each sandbox row.
const PER_LAUNCH: &str = "LEFT JOIN (
        SELECT sandbox_id, SUM(requests) AS requests, SUM(input_tokens) AS input_tokens,
            SUM(output_tokens) AS output_tokens, SUM(cache_read_tokens) AS cache_read_tokens,
            SUM(cache_write_tokens) AS cache_write_tokens, SUM(cost_usd) AS cost_usd,
            SUM(CASE WHEN cost_usd IS NULL
                THEN input_tokens + output_tokens + cache_read_tokens + cache_write_tokens
                ELSE 0 END) AS unpriced_tokens
        FROM model_usage GROUP BY sandbox_id
    ) m ON m.sandbox_id = s.id";

/// The launches in the window and the scope (`?1` the start, `?2` the server, `?3` the person).
const IN_SCOPE: &str = "s.created_at >= ?1
    AND (?2 IS NULL OR s.discord_guild_id = ?2)
    AND (?3 IS NULL OR s.discord_user_id = ?3)";

const SUMS: &str = "COUNT(DISTINCT s.id) AS launches,
    COALESCE(SUM(m.requests), 0) AS requests, COALESCE(SUM(m.input_tokens), 0) AS input_tokens,
    COALESCE(SUM(m.output_tokens), 0) AS output_tokens,
    COALESCE(SUM(m.cache_read_tokens), 0) AS cache_read_tokens,
    COALESCE(SUM(m.cache_write_tokens), 0) AS cache_write_tokens,
    COALESCE(SUM(m.cost_usd), 0.0) AS metered_cost_usd,
    COALESCE(SUM(m.unpriced_tokens), 0) AS unpriced_tokens";

impl Store {
    /// What the launches started since `since` in `scope` used, grouped `by`.
    pub async fn usage(
        &self,
        by: UsageBy,
        since: DateTime<Utc>,
        scope: UsageScope,
    ) -> Result<UsageReport> {
        let (server, user) = match scope {
            UsageScope::Everything => (None, None),
            UsageScope::Server(server) => (Some(server), None),
            UsageScope::Person { server, user } => (Some(server), Some(user)),
        };
        let grouped = match by {
            UsageBy::Person => format!(
                "SELECT MAX(s.launched_by) AS name, s.discord_user_id, {SUMS},
                    SUM(s.cost_usd) AS reported_cost_usd
                 FROM sandboxes s {PER_LAUNCH} WHERE {IN_SCOPE}
                 GROUP BY COALESCE('discord:' || s.discord_user_id, 'terminal:' || s.launched_by)"
            ),
            UsageBy::Project => format!(
                "SELECT COALESCE(p.name, s.repo || ' (no project)') AS name, NULL AS discord_user_id,
                    {SUMS}, SUM(s.cost_usd) AS reported_cost_usd
                 FROM sandboxes s LEFT JOIN projects p ON p.id = s.project_id {PER_LAUNCH}
                 WHERE {IN_SCOPE} GROUP BY 1"
            ),
            UsageBy::Tool => format!(
                "SELECT s.tool AS name, NULL AS discord_user_id, {SUMS},
                    SUM(s.cost_usd) AS reported_cost_usd
                 FROM sandboxes s {PER_LAUNCH} WHERE {IN_SCOPE} GROUP BY s.tool"
            ),
            // A row per model the gateway saw, from its own rows rather than per launch.
            UsageBy::Model => format!(
                "SELECT m.model AS name, NULL AS discord_user_id, {SUMS},
                    NULL AS reported_cost_usd
                 FROM sandboxes s JOIN (
                    SELECT sandbox_id, model, requests, input_tokens, output_tokens,
                        cache_read_tokens, cache_write_tokens, cost_usd,
                        CASE WHEN cost_usd IS NULL
                            THEN input_tokens + output_tokens + cache_read_tokens + cache_write_tokens
                            ELSE 0 END AS unpriced_tokens
                    FROM model_usage
                 ) m ON m.sandbox_id = s.id
                 WHERE {IN_SCOPE} GROUP BY m.model"
            ),
        };
        let ordered = format!("{grouped} ORDER BY metered_cost_usd DESC, requests DESC, name");
        let total = format!(
            "SELECT 'total' AS name, NULL AS discord_user_id, {SUMS},
                SUM(s.cost_usd) AS reported_cost_usd
             FROM sandboxes s {PER_LAUNCH} WHERE {IN_SCOPE}"
        );
        let mut fetched = Vec::with_capacity(2);
        for sql in [&ordered, &total] {
            fetched.push(
                sqlx::query(sql)
                    .bind(since)
                    .bind(text_id(server))
                    .bind(text_id(user))
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        let total = fetched
            .pop()
            .and_then(|mut t| t.pop())
            .expect("a total has one row");
        let rows = fetched.pop().expect("the grouped rows");
        Ok(UsageReport {
            by,
            since,
            rows: rows.iter().map(usage_row).collect::<Result<_>>()?,
            total: usage_row(&total)?,
        })
    }
}

fn usage_of(row: &SqliteRow) -> Result<ModelUsage> {
    let count = |column: &str| -> Result<u64> { Ok(row.try_get::<i64, _>(column)?.max(0) as u64) };
    Ok(ModelUsage {
        requests: count("requests")?,
        input_tokens: count("input_tokens")?,
        output_tokens: count("output_tokens")?,
        cache_read_tokens: count("cache_read_tokens")?,
        cache_write_tokens: count("cache_write_tokens")?,
        cost_usd: row.try_get("cost_usd")?,
    })
}

fn usage_row(row: &SqliteRow) -> Result<UsageRow> {
    let count = |column: &str| -> Result<u64> { Ok(row.try_get::<i64, _>(column)?.max(0) as u64) };
    Ok(UsageRow {
        name: row.try_get("name")?,
        discord_user_id: parse_id(row, "discord_user_id")?,
        launches: count("launches")?,
        requests: count("requests")?,
        input_tokens: count("input_tokens")?,
        output_tokens: count("output_tokens")?,
        cache_read_tokens: count("cache_read_tokens")?,
        cache_write_tokens: count("cache_write_tokens")?,
        metered_cost_usd: row.try_get("metered_cost_usd")?,
        unpriced_tokens: count("unpriced_tokens")?,
        reported_cost_usd: row.try_get("reported_cost_usd")?,
    })
}
