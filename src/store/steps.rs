//! A workflow run's steps: each one sandbox, recorded before it runs and when it ends, with the
//! configuration it used and how it ended.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{Result, Store};
use crate::ids::{SandboxId, WorkChainId, WorkflowRunId};
use crate::model::workflow::{StepKind, Verdict};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Running,
    Completed,
    Failed,
    Stopped,
    /// CodeCourier stopped while it ran; the step ran again as a new row.
    Interrupted,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
            StepStatus::Stopped => "stopped",
            StepStatus::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            StepStatus::Running,
            StepStatus::Completed,
            StepStatus::Failed,
            StepStatus::Stopped,
            StepStatus::Interrupted,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A sandbox's place in a workflow run.
#[derive(Debug, Clone, Copy)]
pub struct WorkflowLink {
    pub run: WorkflowRunId,
    pub step: StepKind,
    pub chain: Option<WorkChainId>,
}

/// A step as recorded, with the configuration it actually used.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub id: i64,
    pub seq: u32,
    pub step: StepKind,
    pub round: u32,
    pub sandbox_id: Option<SandboxId>,
    pub tool: String,
    pub model: String,
    pub template: String,
    pub config: serde_json::Value,
    pub status: StepStatus,
    pub verdict: Option<String>,
    pub findings: Vec<String>,
    pub error: Option<String>,
    pub cost_usd: Option<f64>,
    pub duration_ms: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub struct NewStep<'a> {
    pub run: WorkflowRunId,
    pub seq: u32,
    pub kind: StepKind,
    pub round: u32,
    pub sandbox: SandboxId,
    pub tool: &'a str,
    pub model: &'a str,
    pub template: &'a str,
    pub config: &'a serde_json::Value,
}

/// How a step ended, to record.
pub struct StepEnding<'a> {
    pub status: StepStatus,
    pub verdict: Option<&'a Verdict>,
    pub error: Option<&'a str>,
    pub cost_usd: Option<f64>,
    pub duration_ms: Option<i64>,
}

impl Store {
    pub async fn insert_step(&self, new: &NewStep<'_>) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO workflow_steps (run_id, seq, step, round, sandbox_id, tool, model, template,
                config_json, status, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'running', ?10) RETURNING id",
        )
        .bind(new.run.to_string())
        .bind(i64::from(new.seq))
        .bind(new.kind.as_str())
        .bind(i64::from(new.round))
        .bind(new.sandbox.to_string())
        .bind(new.tool)
        .bind(new.model)
        .bind(new.template)
        .bind(new.config.to_string())
        .bind(Utc::now())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn end_step(&self, id: i64, ending: &StepEnding<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE workflow_steps SET status = ?2, verdict = ?3, findings = ?4, error = ?5, cost_usd = ?6,
                duration_ms = ?7, finished_at = ?8
             WHERE id = ?1",
        )
        .bind(id)
        .bind(ending.status.as_str())
        .bind(ending.verdict.map(|v| if v.pass { "pass" } else { "fail" }))
        .bind(
            ending
                .verdict
                .map(|v| serde_json::to_string(&v.findings).unwrap_or_default()),
        )
        .bind(ending.error)
        .bind(ending.cost_usd)
        .bind(ending.duration_ms)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A run's steps, in order.
    pub async fn steps(&self, run: WorkflowRunId) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query("SELECT * FROM workflow_steps WHERE run_id = ?1 ORDER BY seq")
            .bind(run.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(step_from_row).collect()
    }
}

fn step_from_row(row: &SqliteRow) -> Result<StepRecord> {
    let step: String = row.try_get("step")?;
    let status: String = row.try_get("status")?;
    let sandbox: Option<String> = row.try_get("sandbox_id")?;
    let config: String = row.try_get("config_json")?;
    let findings: Option<String> = row.try_get("findings")?;
    let seq: i64 = row.try_get("seq")?;
    let round: i64 = row.try_get("round")?;
    Ok(StepRecord {
        id: row.try_get("id")?,
        seq: seq.max(0) as u32,
        step: StepKind::parse(&step).with_context(|| format!("unknown step {step}"))?,
        round: round.max(0) as u32,
        sandbox_id: sandbox
            .map(|s| s.parse().context("stored sandbox id is not a UUID"))
            .transpose()?,
        tool: row.try_get("tool")?,
        model: row.try_get("model")?,
        template: row.try_get("template")?,
        config: serde_json::from_str(&config).unwrap_or_default(),
        status: StepStatus::parse(&status)
            .with_context(|| format!("unknown step status {status}"))?,
        verdict: row.try_get("verdict")?,
        findings: findings
            .map(|f| serde_json::from_str(&f).unwrap_or_default())
            .unwrap_or_default(),
        error: row.try_get("error")?,
        cost_usd: row.try_get("cost_usd")?,
        duration_ms: row.try_get("duration_ms")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}
