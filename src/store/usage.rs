//! Metered model usage: what the gateway counted of each launch's model traffic, per API and model.

use chrono::Utc;
use serde::Serialize;
use sqlx::Row;

use super::{Result, Store};
use crate::ids::SandboxId;

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
                    usage: ModelUsage {
                        requests: row.try_get::<i64, _>("requests")? as u64,
                        input_tokens: row.try_get::<i64, _>("input_tokens")? as u64,
                        output_tokens: row.try_get::<i64, _>("output_tokens")? as u64,
                        cache_read_tokens: row.try_get::<i64, _>("cache_read_tokens")? as u64,
                        cache_write_tokens: row.try_get::<i64, _>("cache_write_tokens")? as u64,
                        cost_usd: row.try_get("cost_usd")?,
                    },
                })
            })
            .collect()
    }
}
