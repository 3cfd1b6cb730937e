//! Issue sessions and the issues their scans returned.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::sandboxes::{parse_id, text_id, DiscordOrigin};
use super::{Result, Store, StoreError};
use crate::ids::{DiscordId, IssueSessionId, SandboxId};
use crate::model::scan::{IssueSessionStatus, ScannedIssue, Severity};

/// A session about to be recorded, with its scan sandbox.
pub struct NewIssueSession<'a> {
    pub id: IssueSessionId,
    pub project_id: Option<i64>,
    pub repo: &'a str,
    pub focus: Option<&'a str>,
    pub tool: &'a str,
    pub model: &'a str,
    pub max_issues: u32,
    pub launched_by: &'a str,
    pub discord: Option<DiscordOrigin>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IssueSession {
    pub id: IssueSessionId,
    pub project_id: Option<i64>,
    pub repo: String,
    pub focus: Option<String>,
    pub tool: String,
    pub model: String,
    pub max_issues: u32,
    pub status: IssueSessionStatus,
    pub error: Option<String>,
    /// The agent's answer as given, kept when it could not be used.
    pub raw_output: Option<String>,
    pub launched_by: String,
    pub discord_user_id: Option<DiscordId>,
    pub discord_channel_id: Option<DiscordId>,
    pub discord_thread_id: Option<DiscordId>,
    pub discord_message_id: Option<DiscordId>,
    /// The sandbox that ran the scan.
    pub sandbox_id: Option<SandboxId>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// An issue as stored: its place in the session's list (from 1) and, once filed, its GitHub issue.
#[derive(Debug, Clone, Serialize)]
pub struct IssueRecord {
    pub id: i64,
    pub position: u32,
    #[serde(flatten)]
    pub issue: ScannedIssue,
    pub github_issue_number: Option<u64>,
    pub github_issue_url: Option<String>,
}

impl Store {
    /// Records the session inside the transaction that records its scan sandbox.
    pub(super) async fn insert_issue_session(
        tx: &mut Transaction<'_, Sqlite>,
        new: &NewIssueSession<'_>,
        sandbox: SandboxId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO issue_sessions (id, project_id, repo, focus, tool, model, max_issues, status,
                launched_by, discord_user_id, discord_channel_id, sandbox_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9, ?10, ?11, ?12, ?12)",
        )
        .bind(new.id.to_string())
        .bind(new.project_id)
        .bind(new.repo)
        .bind(new.focus)
        .bind(new.tool)
        .bind(new.model)
        .bind(i64::from(new.max_issues))
        .bind(new.launched_by)
        .bind(text_id(new.discord.map(|d| d.user_id)))
        .bind(text_id(new.discord.map(|d| d.channel_id)))
        .bind(sandbox.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn get_issue_session(&self, id: IssueSessionId) -> Result<Option<IssueSession>> {
        let row = sqlx::query("SELECT * FROM issue_sessions WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Finds a session by its full id or a unique prefix of it (at least four characters).
    pub async fn find_issue_session(&self, id_or_prefix: &str) -> Result<IssueSession> {
        let id = self
            .find_id("issue_sessions", id_or_prefix, "issue session")
            .await?;
        let id = id
            .parse()
            .context("stored issue session id is not a UUID")?;
        self.get_issue_session(id)
            .await?
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("issue session {id} is gone")))
    }

    /// Newest first; only those started from `channel` when given.
    pub async fn list_issue_sessions(
        &self,
        channel: Option<DiscordId>,
        limit: u32,
    ) -> Result<Vec<IssueSession>> {
        let rows = sqlx::query(
            "SELECT * FROM issue_sessions WHERE (?1 IS NULL OR discord_channel_id = ?1)
             ORDER BY created_at DESC, rowid DESC LIMIT ?2",
        )
        .bind(text_id(channel))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Stores a scan's issues, in order, replacing none: a session gets its list once.
    pub async fn save_issues(
        &self,
        session: IssueSessionId,
        issues: &[ScannedIssue],
    ) -> Result<()> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        for (i, issue) in issues.iter().enumerate() {
            sqlx::query(
                "INSERT INTO issues (issue_session_id, position, title, description, severity, category,
                    files_json, evidence, suggested_fix, effort_estimate, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .bind(session.to_string())
            .bind(i as i64 + 1)
            .bind(&issue.title)
            .bind(&issue.description)
            .bind(issue.severity.as_str())
            .bind(&issue.category)
            .bind(serde_json::to_string(&issue.files).context("serialising files")?)
            .bind(&issue.evidence)
            .bind(&issue.suggested_fix)
            .bind(&issue.effort)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A session's issues in list order.
    pub async fn issues(&self, session: IssueSessionId) -> Result<Vec<IssueRecord>> {
        let rows =
            sqlx::query("SELECT * FROM issues WHERE issue_session_id = ?1 ORDER BY position")
                .bind(session.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(issue_from_row).collect()
    }

    /// Ends a running session; a session already ended keeps its status. Returns the status it has.
    pub async fn finish_issue_session(
        &self,
        id: IssueSessionId,
        status: IssueSessionStatus,
        error: Option<&str>,
        raw_output: Option<&str>,
    ) -> Result<IssueSessionStatus> {
        let now = Utc::now();
        sqlx::query(
            "UPDATE issue_sessions SET status = ?2, error = ?3, raw_output = ?4, updated_at = ?5,
                finished_at = ?5
             WHERE id = ?1 AND status = 'running'",
        )
        .bind(id.to_string())
        .bind(status.as_str())
        .bind(error)
        .bind(raw_output)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let session = self
            .get_issue_session(id)
            .await?
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("issue session {id} is gone")))?;
        Ok(session.status)
    }

    /// Sessions still running whose scan sandbox ended a while ago (CodeCourier stopped mid-scan):
    /// failed, with the sandbox's reason. The wait leaves a launcher that is just finishing alone.
    /// Returns how many.
    pub async fn end_orphaned_issue_sessions(&self) -> Result<u64> {
        let now = Utc::now();
        let settled = now - chrono::Duration::seconds(30);
        let done = sqlx::query(
            "UPDATE issue_sessions SET status = CASE s.status WHEN 'stopped' THEN 'stopped' ELSE 'failed' END,
                error = COALESCE(s.error, 'the scan ended without an answer'),
                updated_at = ?1, finished_at = ?1
             FROM sandboxes s
             WHERE s.id = issue_sessions.sandbox_id AND issue_sessions.status = 'running'
               AND s.status IN ('completed', 'failed', 'timed_out', 'stopped') AND s.updated_at < ?2",
        )
        .bind(now)
        .bind(settled)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn set_issue_session_discord(
        &self,
        id: IssueSessionId,
        thread: DiscordId,
        message: DiscordId,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE issue_sessions SET discord_thread_id = ?2, discord_message_id = ?3, updated_at = ?4
             WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(thread.to_string())
        .bind(message.to_string())
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the GitHub issue an issue was filed as (or linked to).
    pub async fn set_issue_filed(&self, issue_id: i64, number: u64, url: &str) -> Result<()> {
        sqlx::query(
            "UPDATE issues SET github_issue_number = ?2, github_issue_url = ?3 WHERE id = ?1",
        )
        .bind(issue_id)
        .bind(number as i64)
        .bind(url)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn session_from_row(row: &SqliteRow) -> Result<IssueSession> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let sandbox: Option<String> = row.try_get("sandbox_id")?;
    let max_issues: i64 = row.try_get("max_issues")?;
    Ok(IssueSession {
        id: id
            .parse()
            .with_context(|| format!("stored issue session id {id} is not a UUID"))?,
        project_id: row.try_get("project_id")?,
        repo: row.try_get("repo")?,
        focus: row.try_get("focus")?,
        tool: row.try_get("tool")?,
        model: row.try_get("model")?,
        max_issues: max_issues.clamp(0, i64::from(u32::MAX)) as u32,
        status: IssueSessionStatus::parse(&status)
            .with_context(|| format!("issue session {id}: unknown status {status}"))?,
        error: row.try_get("error")?,
        raw_output: row.try_get("raw_output")?,
        launched_by: row.try_get("launched_by")?,
        discord_user_id: parse_id(row, "discord_user_id")?,
        discord_channel_id: parse_id(row, "discord_channel_id")?,
        discord_thread_id: parse_id(row, "discord_thread_id")?,
        discord_message_id: parse_id(row, "discord_message_id")?,
        sandbox_id: sandbox
            .map(|s| s.parse().context("stored sandbox id is not a UUID"))
            .transpose()?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn issue_from_row(row: &SqliteRow) -> Result<IssueRecord> {
    let severity: String = row.try_get("severity")?;
    let files: String = row.try_get("files_json")?;
    let position: i64 = row.try_get("position")?;
    let number: Option<i64> = row.try_get("github_issue_number")?;
    let text = |column: &str| -> Result<String> {
        let value: Option<String> = row.try_get(column)?;
        Ok(value.unwrap_or_default())
    };
    Ok(IssueRecord {
        id: row.try_get("id")?,
        position: position.max(0) as u32,
        issue: ScannedIssue {
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            severity: Severity::parse(&severity)
                .with_context(|| format!("unknown severity {severity}"))?,
            category: row.try_get("category")?,
            files: serde_json::from_str(&files).context("files_json")?,
            evidence: text("evidence")?,
            suggested_fix: text("suggested_fix")?,
            effort: text("effort_estimate")?,
        },
        github_issue_number: number.map(|n| n as u64),
        github_issue_url: row.try_get("github_issue_url")?,
    })
}
