//! A sandbox's phases with their timings, and its event log: what the launch sequence records as
//! it goes, and what `sandboxes show` and `sandboxes logs` read back.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, Row};

use super::{Result, Store, StoreError};
use crate::agent::AgentEvent;
use crate::ids::SandboxId;
use crate::model::{Phase, PhaseOutcome};

#[derive(Debug, Clone, Serialize)]
pub struct PhaseRecord {
    pub phase: Phase,
    pub outcome: PhaseOutcome,
    pub detail: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl PhaseRecord {
    pub fn duration_ms(&self) -> Option<i64> {
        self.ended_at
            .map(|end| (end - self.started_at).num_milliseconds())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub payload: serde_json::Value,
}

impl EventRecord {
    /// The event as one line of a log: time, then what happened.
    pub fn log_line(&self) -> String {
        let p = &self.payload;
        let text = |key: &str| p[key].as_str().unwrap_or_default().to_string();
        let cut = |t: &str, max: usize| match t.char_indices().nth(max) {
            None => t.to_string(),
            Some((i, _)) => format!("{}…", &t[..i]),
        };
        let what = match self.kind.as_str() {
            "phase_started" => format!("▶ {}", text("phase")),
            "phase_finished" => format!(
                "{} {} {}",
                if text("outcome") == "ok" {
                    "✓"
                } else {
                    "✗"
                },
                text("phase"),
                text("detail")
            ),
            "status" => format!("status → {}", text("status")),
            "note" => format!("note: {}", text("message")),
            "output" => format!("{} | {}", text("phase"), text("line")),
            kind => match serde_json::from_value::<AgentEvent>(p["event"].clone()) {
                Ok(AgentEvent::Unparsed { line }) => format!("(unparsed) {}", cut(&line, 200)),
                Ok(AgentEvent::Text { text }) => {
                    format!("agent: {}", text.replace('\n', "\n       "))
                }
                Ok(AgentEvent::Result(r)) => format!(
                    "result: {} — {}",
                    if r.success { "success" } else { "failure" },
                    cut(&r.text, 300)
                ),
                Ok(other) => other.activity().unwrap_or_else(|| kind.to_string()),
                Err(_) => format!("{kind} {p}"),
            },
        };
        format!("{} {what}", self.at.format("%H:%M:%S%.3f"))
    }
}

pub(super) fn parse_phase(text: Option<String>) -> Result<Option<Phase>> {
    text.map(|t| {
        t.parse::<Phase>()
            .map_err(|e| StoreError::Other(anyhow::anyhow!(e)))
    })
    .transpose()
}

impl Store {
    /// Records a phase that ran before the record existed (validate, record) with its real times.
    pub async fn record_phase(
        &self,
        id: SandboxId,
        phase: Phase,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
        detail: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sandbox_phases (sandbox_id, phase, outcome, detail, started_at, ended_at)
             VALUES (?1, ?2, 'ok', ?3, ?4, ?5)",
        )
        .bind(id.to_string())
        .bind(phase.as_str())
        .bind(detail)
        .bind(started_at)
        .bind(ended_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a phase as started and makes it the sandbox's current phase.
    pub async fn start_phase(&self, id: SandboxId, phase: Phase) -> Result<()> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sandbox_phases (sandbox_id, phase, outcome, started_at) VALUES (?1, ?2, 'running', ?3)
             ON CONFLICT (sandbox_id, phase) DO UPDATE SET
                outcome = 'running', detail = NULL, started_at = excluded.started_at, ended_at = NULL",
        )
        .bind(id.to_string())
        .bind(phase.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE sandboxes SET current_phase = ?1, updated_at = ?2 WHERE id = ?3")
            .bind(phase.as_str())
            .bind(now)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records how a started phase ended; a failed phase is also remembered on the sandbox.
    pub async fn end_phase(
        &self,
        id: SandboxId,
        phase: Phase,
        outcome: PhaseOutcome,
        detail: Option<&str>,
    ) -> Result<()> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE sandbox_phases SET outcome = ?1, detail = ?2, ended_at = ?3
             WHERE sandbox_id = ?4 AND phase = ?5",
        )
        .bind(outcome.as_str())
        .bind(detail)
        .bind(now)
        .bind(id.to_string())
        .bind(phase.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::Other(anyhow::anyhow!(
                "sandbox {id}: phase {phase} ended without having started"
            )));
        }
        if outcome == PhaseOutcome::Failed {
            sqlx::query("UPDATE sandboxes SET failed_phase = ?1, updated_at = ?2 WHERE id = ?3")
                .bind(phase.as_str())
                .bind(now)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn phases(&self, id: SandboxId) -> Result<Vec<PhaseRecord>> {
        let rows = sqlx::query(
            "SELECT phase, outcome, detail, started_at, ended_at FROM sandbox_phases
             WHERE sandbox_id = ?1 ORDER BY started_at, rowid",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PhaseRecord {
                    phase: parse_phase(row.try_get("phase")?)?.expect("NOT NULL column"),
                    outcome: row
                        .try_get::<String, _>("outcome")?
                        .parse()
                        .map_err(|e: String| StoreError::Other(anyhow::anyhow!(e)))?,
                    detail: row.try_get("detail")?,
                    started_at: row.try_get("started_at")?,
                    ended_at: row.try_get("ended_at")?,
                })
            })
            .collect()
    }

    /// Appends to the sandbox's event log; returns the event's sequence number (1, 2, …).
    pub async fn append_event(
        &self,
        id: SandboxId,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<i64> {
        let seq = sqlx::query_scalar(
            "INSERT INTO sandbox_events (sandbox_id, seq, at, kind, payload_json)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM sandbox_events WHERE sandbox_id = ?1), ?2, ?3, ?4)
             RETURNING seq",
        )
        .bind(id.to_string())
        .bind(Utc::now())
        .bind(kind)
        .bind(payload.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(seq)
    }

    /// Events after `after_seq` (0 for all), in order.
    pub async fn events(&self, id: SandboxId, after_seq: i64) -> Result<Vec<EventRecord>> {
        #[derive(FromRow)]
        struct Row {
            seq: i64,
            at: DateTime<Utc>,
            kind: String,
            payload_json: String,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT seq, at, kind, payload_json FROM sandbox_events
             WHERE sandbox_id = ?1 AND seq > ?2 ORDER BY seq",
        )
        .bind(id.to_string())
        .bind(after_seq)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| EventRecord {
                seq: r.seq,
                at: r.at,
                kind: r.kind,
                // An unparseable payload is kept as a string rather than lost.
                payload: serde_json::from_str(&r.payload_json)
                    .unwrap_or(serde_json::Value::String(r.payload_json)),
            })
            .collect())
    }
}
