//! Sandbox records: a launch recorded (within the running caps), where it stands, the status
//! transitions, its result, and looking records up. Their phases and event log are in
//! `sandbox_log`.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::issues::NewIssueSession;
use super::sandbox_log::{parse_phase, PhaseRecord};
use super::secrets::{env_to_secret, ENV_SECRET};
use super::usage::MeteredTotal;
use super::{Result, Store, StoreError};
use crate::agent::AgentResult;
use crate::catalog::{usd, LaunchRequest};
use crate::ids::{DiscordId, IssueSessionId, SandboxId};
use crate::model::{Phase, SandboxStatus};
use crate::secret::Secret;

/// Where a launch came from in Discord.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DiscordOrigin {
    pub user_id: DiscordId,
    pub guild_id: Option<DiscordId>,
    pub channel_id: DiscordId,
}

pub struct NewSandbox<'a> {
    pub request: &'a LaunchRequest,
    /// A display name for messages and listings ("alice", or the terminal user).
    pub launched_by: &'a str,
    pub discord: Option<DiscordOrigin>,
    pub project_id: Option<i64>,
    pub issue_session: Option<IssueSessionLink<'a>>,
    pub workflow: Option<super::WorkflowLink>,
    /// Checked in the transaction that records the launch, so simultaneous launches cannot
    /// exceed them.
    pub caps: RunningCaps,
}

/// Limits on sandboxes running at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunningCaps {
    /// Sandboxes one Discord user may have running (the launch's requester).
    pub per_user: Option<u32>,
    /// Sandboxes the whole deployment may have running.
    pub total: Option<u32>,
}

/// Which cap a launch would exceed, with what is running now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapReached {
    #[error("You already have {running} sandboxes running (the limit is {cap}): stop one, or wait for one to finish.")]
    User { running: i64, cap: u32 },
    #[error(
        "CodeCourier already runs {running} sandboxes, its limit (CODECOURIER_MAX_RUNNING={cap}): wait for one to finish."
    )]
    Deployment { running: i64, cap: u32 },
}

/// How a sandbox belongs to an issue session.
pub enum IssueSessionLink<'a> {
    /// It runs the scan of this new session, recorded with it.
    Scan(&'a NewIssueSession<'a>),
    /// It works on the issues of an existing session (a fix).
    Fix(IssueSessionId),
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscordRefs {
    pub user_id: Option<DiscordId>,
    pub guild_id: Option<DiscordId>,
    pub channel_id: Option<DiscordId>,
    pub thread_id: Option<DiscordId>,
    pub status_message_id: Option<DiscordId>,
    pub result_message_id: Option<DiscordId>,
}

/// A commit on the feature branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Commit {
    pub sha: String,
    pub subject: String,
}

/// Everything the finish phase records, with the final status.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    pub failed_phase: Option<Phase>,
    pub error: Option<String>,
    pub result: Option<AgentResult>,
    pub duration_ms: Option<i64>,
    pub commits: Vec<Commit>,
    pub pushed: Option<bool>,
    pub pr_url: Option<String>,
    pub compare_url: Option<String>,
}

/// A sandbox as stored: the launch request it was made from, where it stands, and its result.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxRecord {
    pub id: SandboxId,
    pub status: SandboxStatus,
    pub request: LaunchRequest,
    /// Names of the `--env` variables; their values are encrypted in the secrets table.
    pub env_names: Vec<String>,
    /// The branch the work started from: as asked, or the repository's default once cloned.
    pub base_branch: Option<String>,
    pub branch: Option<String>,
    pub provider: Option<String>,
    pub provider_sandbox_id: Option<String>,
    pub launched_by: String,
    pub discord: DiscordRefs,
    pub project_id: Option<i64>,
    pub issue_session_id: Option<String>,
    pub workflow_run_id: Option<String>,
    pub workflow_step: Option<String>,
    pub work_chain_id: Option<String>,
    pub current_phase: Option<Phase>,
    pub failed_phase: Option<Phase>,
    pub error: Option<String>,
    pub result_text: Option<String>,
    pub session_id: Option<String>,
    /// As the agent's CLI reported them (its own word); `metered` is what the gateway counted.
    pub cost_usd: Option<f64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    /// What CodeCourier's gateway counted of the launch's model traffic; none when it saw none.
    pub metered: Option<MeteredTotal>,
    pub num_turns: Option<i64>,
    pub duration_ms: Option<i64>,
    pub commits: Vec<Commit>,
    pub pushed: Option<bool>,
    pub pr_url: Option<String>,
    pub compare_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub phases: Vec<PhaseRecord>,
}

impl SandboxRecord {
    /// The cost and tokens a result shows, in words: metered by CodeCourier's gateway when it saw
    /// the launch's model traffic (with the CLI's own figure after it where that differs), else as
    /// the CLI reported them.
    pub fn usage_words(&self) -> Vec<String> {
        let mut words = Vec::new();
        let Some(m) = &self.metered else {
            if let Some(cost) = self.cost_usd {
                words.push(format!("${cost:.4}"));
            }
            if let (Some(i), Some(o)) = (self.input_tokens, self.output_tokens) {
                words.push(format!("{i} in / {o} out tokens"));
            }
            return words;
        };
        if m.cost_usd > 0.0 || m.unpriced.is_empty() {
            words.push(usd(m.cost_usd));
        }
        words.push(format!(
            "{} in / {} out tokens",
            m.all_input_tokens(),
            m.output_tokens
        ));
        if !m.unpriced.is_empty() {
            words.push(format!(
                "tokens only: no price for {}",
                m.unpriced.join(", ")
            ));
        }
        if m.unmetered_requests > 0 {
            words.push(format!(
                "{} response{} unmetered",
                m.unmetered_requests,
                if m.unmetered_requests == 1 { "" } else { "s" }
            ));
        }
        if let Some(reported) = self.cost_usd {
            if (reported - m.cost_usd).abs() >= 0.000_05 {
                words.push(format!("{} reported {}", self.request.tool, usd(reported)));
            }
        }
        words
    }

    /// The cost and tokens a result shows (see `usage_words`), as numbers: cost, input tokens
    /// (fresh, cached and cache-written), output tokens.
    pub fn shown_usage(&self) -> (Option<f64>, Option<i64>, Option<i64>) {
        match &self.metered {
            Some(m) => (
                (m.cost_usd > 0.0 || m.unpriced.is_empty()).then_some(m.cost_usd),
                Some(m.all_input_tokens() as i64),
                Some(m.output_tokens as i64),
            ),
            None => (self.cost_usd, self.input_tokens, self.output_tokens),
        }
    }

    /// The record as JSON for people's scripts: `cost_usd` and the token counts are the shown
    /// ones, `reported` the CLI's own, `metered` the gateway's whole count.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("records serialise");
        let (cost, input, output) = self.shown_usage();
        value["cost_usd"] = serde_json::json!(cost);
        value["input_tokens"] = serde_json::json!(input);
        value["output_tokens"] = serde_json::json!(output);
        value["reported"] = serde_json::json!({
            "cost_usd": self.cost_usd,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        });
        value
    }
}

#[derive(Debug, Clone, Default)]
pub struct SandboxFilter {
    pub status: Option<SandboxStatus>,
    /// Only sandboxes launched by this Discord user.
    pub discord_user: Option<DiscordId>,
    /// Only sandboxes launched from this Discord channel.
    pub discord_channel: Option<DiscordId>,
    /// Only sandboxes launched from this Discord server.
    pub discord_guild: Option<DiscordId>,
    pub limit: u32,
}

pub(super) const AGENT_SESSION: &str = "agent-session";

fn env_scope(id: SandboxId) -> String {
    format!("sandbox:{id}")
}

pub(super) fn text_id(id: Option<DiscordId>) -> Option<String> {
    id.map(|id| id.to_string())
}

pub(super) fn parse_id(row: &SqliteRow, column: &str) -> Result<Option<DiscordId>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| {
        t.parse()
            .with_context(|| format!("column {column} holds \"{t}\", not a Discord id"))
    })
    .transpose()
    .map_err(StoreError::Other)
}

impl Store {
    /// Records a new sandbox in `creating`, with its env values encrypted, in one transaction.
    pub async fn insert_sandbox(&self, new: &NewSandbox<'_>) -> Result<SandboxId> {
        let id = SandboxId::new();
        let request = new.request;
        let now = Utc::now();
        let env_names: Vec<&str> = request.env.iter().map(|(n, _)| n.as_str()).collect();
        let session = match &new.issue_session {
            Some(IssueSessionLink::Scan(session)) => Some(session.id),
            Some(IssueSessionLink::Fix(id)) => Some(*id),
            None => None,
        };
        // IMMEDIATE: the counts below and the insert happen under one write lock, so two
        // launches recorded at once both see each other.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let unfinished = "status IN ('creating', 'provisioning', 'setting_up', 'running')";
        if let (Some(cap), Some(user)) = (new.caps.per_user, new.discord.map(|d| d.user_id)) {
            let running: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM sandboxes WHERE discord_user_id = ?1 AND {unfinished}"
            ))
            .bind(user.to_string())
            .fetch_one(&mut *tx)
            .await?;
            if running >= i64::from(cap) {
                return Err(StoreError::AtCapacity(CapReached::User { running, cap }));
            }
        }
        if let Some(cap) = new.caps.total {
            let running: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM sandboxes WHERE {unfinished}"
            ))
            .fetch_one(&mut *tx)
            .await?;
            if running >= i64::from(cap) {
                return Err(StoreError::AtCapacity(CapReached::Deployment {
                    running,
                    cap,
                }));
            }
        }
        if let Some(IssueSessionLink::Scan(session)) = &new.issue_session {
            Self::insert_issue_session(&mut tx, session, id, now).await?;
        }
        sqlx::query(
            "INSERT INTO sandboxes (id, project_id, status, tool, model, repo, base_branch, prompt,
                config_json, env_names_json, launched_by, discord_user_id, discord_guild_id,
                discord_channel_id, created_at, updated_at, issue_session_id, workflow_run_id,
                workflow_step, work_chain_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?16, ?17,
                ?18, ?19)",
        )
        .bind(id.to_string())
        .bind(new.project_id)
        .bind(SandboxStatus::Creating.as_str())
        .bind(&request.tool)
        .bind(&request.model)
        .bind(request.repo.to_string())
        .bind(&request.base_branch)
        .bind(&request.prompt)
        .bind(serde_json::to_string(request).context("serialising the launch request")?)
        .bind(serde_json::to_string(&env_names).context("serialising env names")?)
        .bind(new.launched_by)
        .bind(text_id(new.discord.map(|d| d.user_id)))
        .bind(text_id(new.discord.and_then(|d| d.guild_id)))
        .bind(text_id(new.discord.map(|d| d.channel_id)))
        .bind(now)
        .bind(session.map(|s| s.to_string()))
        .bind(new.workflow.map(|w| w.run.to_string()))
        .bind(new.workflow.map(|w| w.step.as_str()))
        .bind(new.workflow.and_then(|w| w.chain).map(|c| c.to_string()))
        .execute(&mut *tx)
        .await?;
        if !request.env.is_empty() {
            self.write_secret(
                &mut tx,
                &env_scope(id),
                ENV_SECRET,
                &env_to_secret(&request.env),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// An agent's saved session files (base64 of a tarball), kept encrypted for a follow-up to resume.
    pub async fn save_agent_session(&self, id: SandboxId, archive: &Secret) -> Result<()> {
        self.put_secret(&env_scope(id), AGENT_SESSION, archive)
            .await
    }

    pub async fn agent_session(&self, id: SandboxId) -> Result<Option<Secret>> {
        self.get_secret(&env_scope(id), AGENT_SESSION).await
    }

    /// The `--env` values of a sandbox, decrypted, in name order.
    pub async fn sandbox_env(&self, id: SandboxId) -> Result<Vec<(String, Secret)>> {
        self.get_env(&env_scope(id)).await
    }

    pub async fn get_sandbox(&self, id: SandboxId) -> Result<Option<SandboxRecord>> {
        let row = sqlx::query("SELECT * FROM sandboxes WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(self.record_from_row(&row).await?)),
        }
    }

    /// Finds a sandbox by its full id or a unique prefix of it (at least four characters).
    pub async fn find_sandbox(&self, id_or_prefix: &str) -> Result<SandboxRecord> {
        let wanted = id_or_prefix.trim().to_ascii_lowercase();
        if let Ok(id) = wanted.parse::<SandboxId>() {
            return self
                .get_sandbox(id)
                .await?
                .ok_or(StoreError::NotFound(wanted));
        }
        if wanted.len() < 4 || !wanted.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(StoreError::NotFound(wanted));
        }
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM sandboxes WHERE substr(id, 1, length(?1)) = ?1 LIMIT 10",
        )
        .bind(&wanted)
        .fetch_all(&self.pool)
        .await?;
        match ids.as_slice() {
            [] => Err(StoreError::NotFound(wanted)),
            [one] => {
                let id = one.parse().context("stored sandbox id is not a UUID")?;
                self.get_sandbox(id)
                    .await?
                    .ok_or(StoreError::NotFound(wanted))
            }
            many => Err(StoreError::Ambiguous(wanted, many.len())),
        }
    }

    /// Newest first.
    pub async fn list_sandboxes(&self, filter: &SandboxFilter) -> Result<Vec<SandboxRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM sandboxes WHERE (?1 IS NULL OR status = ?1)
               AND (?3 IS NULL OR discord_user_id = ?3) AND (?4 IS NULL OR discord_channel_id = ?4)
               AND (?5 IS NULL OR discord_guild_id = ?5)
             ORDER BY created_at DESC, rowid DESC LIMIT ?2",
        )
        .bind(filter.status.map(|s| s.as_str()))
        .bind(i64::from(filter.limit))
        .bind(text_id(filter.discord_user))
        .bind(text_id(filter.discord_channel))
        .bind(text_id(filter.discord_guild))
        .fetch_all(&self.pool)
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.push(self.record_from_row(row).await?);
        }
        Ok(records)
    }

    /// Moves a sandbox to `to` if the state machine allows it from its current status. The update is a
    /// compare-and-set on the status, so two writers can never both win.
    pub async fn transition(&self, id: SandboxId, to: SandboxStatus) -> Result<()> {
        loop {
            let current: Option<String> =
                sqlx::query_scalar("SELECT status FROM sandboxes WHERE id = ?1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
            let current: SandboxStatus = current
                .ok_or_else(|| StoreError::NotFound(id.to_string()))?
                .parse()
                .map_err(|e: String| StoreError::Other(anyhow::anyhow!(e)))?;
            current
                .check_transition(to)
                .map_err(|source| StoreError::IllegalTransition { id, source })?;
            let now = Utc::now();
            let finished_at = to.is_terminal().then_some(now);
            let updated = sqlx::query(
                "UPDATE sandboxes SET status = ?1, updated_at = ?2, finished_at = COALESCE(?3, finished_at)
                 WHERE id = ?4 AND status = ?5",
            )
            .bind(to.as_str())
            .bind(now)
            .bind(finished_at)
            .bind(id.to_string())
            .bind(current.as_str())
            .execute(&self.pool)
            .await?;
            if updated.rows_affected() == 1 {
                return Ok(());
            }
            // Someone else moved it between our read and write: judge again from the new status.
        }
    }

    /// Which provider runs the sandbox, and its id there (for stop, logs and recovery).
    pub async fn set_provider(
        &self,
        id: SandboxId,
        provider: &str,
        provider_id: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sandboxes SET provider = ?1, provider_sandbox_id = ?2, updated_at = ?3 WHERE id = ?4",
        )
        .bind(provider)
        .bind(provider_id)
        .bind(Utc::now())
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The base branch actually used (the default branch when none was asked for) and the new branch.
    pub async fn set_branches(&self, id: SandboxId, base_branch: &str, branch: &str) -> Result<()> {
        sqlx::query(
            "UPDATE sandboxes SET base_branch = ?1, branch = ?2, updated_at = ?3 WHERE id = ?4",
        )
        .bind(base_branch)
        .bind(branch)
        .bind(Utc::now())
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The Discord thread and status message that show this sandbox.
    pub async fn set_discord_thread(
        &self,
        id: SandboxId,
        thread: DiscordId,
        status_message: DiscordId,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sandboxes SET discord_thread_id = ?1, discord_status_message_id = ?2, updated_at = ?3
             WHERE id = ?4",
        )
        .bind(thread.to_string())
        .bind(status_message.to_string())
        .bind(Utc::now())
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_discord_result_message(
        &self,
        id: SandboxId,
        message: DiscordId,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sandboxes SET discord_result_message_id = ?1, updated_at = ?2 WHERE id = ?3",
        )
        .bind(message.to_string())
        .bind(Utc::now())
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_pr_url(&self, id: SandboxId, url: &str) -> Result<()> {
        sqlx::query("UPDATE sandboxes SET pr_url = ?1, updated_at = ?2 WHERE id = ?3")
            .bind(url)
            .bind(Utc::now())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many sandboxes a Discord user has that have not ended (for the per-user cap).
    pub async fn unfinished_for_user(&self, user: DiscordId) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM sandboxes WHERE discord_user_id = ?1
             AND status IN ('creating', 'provisioning', 'setting_up', 'running')",
        )
        .bind(user.to_string())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Moves the sandbox to its terminal `status` with the result. When someone else ended it first
    /// (a stop from another terminal), that status stays and the result is still recorded.
    /// Returns the status the record ends with.
    pub async fn finish(
        &self,
        id: SandboxId,
        status: SandboxStatus,
        finish: &Finish,
    ) -> Result<SandboxStatus> {
        let final_status = match self.transition(id, status).await {
            Ok(()) => status,
            Err(StoreError::IllegalTransition { source, .. }) if source.from.is_terminal() => {
                source.from
            }
            Err(e) => return Err(e),
        };
        let r = finish.result.as_ref();
        sqlx::query(
            "UPDATE sandboxes SET
                failed_phase = COALESCE(?1, failed_phase), error = COALESCE(?2, error),
                result_text = ?3, session_id = ?4, cost_usd = ?5, input_tokens = ?6, output_tokens = ?7,
                num_turns = ?8, duration_ms = ?9, commits_json = ?10, pushed = ?11, updated_at = ?12,
                pr_url = COALESCE(?14, pr_url), compare_url = COALESCE(?15, compare_url)
             WHERE id = ?13",
        )
        .bind(finish.failed_phase.map(|p| p.as_str()))
        .bind(&finish.error)
        .bind(r.map(|r| r.text.as_str()))
        .bind(r.and_then(|r| r.session_id.as_deref()))
        .bind(r.and_then(|r| r.cost_usd))
        .bind(r.and_then(|r| r.input_tokens).map(|n| n as i64))
        .bind(r.and_then(|r| r.output_tokens).map(|n| n as i64))
        .bind(r.and_then(|r| r.num_turns).map(i64::from))
        .bind(finish.duration_ms)
        .bind(serde_json::to_string(&finish.commits).context("serialising commits")?)
        .bind(finish.pushed)
        .bind(Utc::now())
        .bind(id.to_string())
        .bind(&finish.pr_url)
        .bind(&finish.compare_url)
        .execute(&self.pool)
        .await?;
        Ok(final_status)
    }

    /// Sandboxes not yet in a terminal status (for recovery after a restart).
    pub async fn unfinished_sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM sandboxes WHERE status IN ('creating', 'provisioning', 'setting_up', 'running')
             ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.push(self.record_from_row(row).await?);
        }
        Ok(records)
    }

    async fn record_from_row(&self, row: &SqliteRow) -> Result<SandboxRecord> {
        let id_text: String = row.try_get("id")?;
        let id: SandboxId = id_text
            .parse()
            .with_context(|| format!("stored sandbox id {id_text} is not a UUID"))?;
        let config: String = row.try_get("config_json")?;
        let request: LaunchRequest = serde_json::from_str(&config)
            .with_context(|| format!("sandbox {id}: stored launch request cannot be read"))?;
        let status: String = row.try_get("status")?;
        let env_names: String = row.try_get("env_names_json")?;
        let commits: String = row.try_get("commits_json")?;
        let pushed: Option<i64> = row.try_get("pushed")?;
        Ok(SandboxRecord {
            id,
            status: status
                .parse()
                .map_err(|e: String| StoreError::Other(anyhow::anyhow!(e)))?,
            request,
            env_names: serde_json::from_str(&env_names).context("env_names_json")?,
            base_branch: row.try_get("base_branch")?,
            branch: row.try_get("branch")?,
            provider: row.try_get("provider")?,
            provider_sandbox_id: row.try_get("provider_sandbox_id")?,
            launched_by: row.try_get("launched_by")?,
            discord: DiscordRefs {
                user_id: parse_id(row, "discord_user_id")?,
                guild_id: parse_id(row, "discord_guild_id")?,
                channel_id: parse_id(row, "discord_channel_id")?,
                thread_id: parse_id(row, "discord_thread_id")?,
                status_message_id: parse_id(row, "discord_status_message_id")?,
                result_message_id: parse_id(row, "discord_result_message_id")?,
            },
            project_id: row.try_get("project_id")?,
            issue_session_id: row.try_get("issue_session_id")?,
            workflow_run_id: row.try_get("workflow_run_id")?,
            workflow_step: row.try_get("workflow_step")?,
            work_chain_id: row.try_get("work_chain_id")?,
            current_phase: parse_phase(row.try_get("current_phase")?)?,
            failed_phase: parse_phase(row.try_get("failed_phase")?)?,
            error: row.try_get("error")?,
            result_text: row.try_get("result_text")?,
            session_id: row.try_get("session_id")?,
            cost_usd: row.try_get("cost_usd")?,
            input_tokens: row.try_get("input_tokens")?,
            output_tokens: row.try_get("output_tokens")?,
            metered: self.metered_total(id).await?,
            num_turns: row.try_get("num_turns")?,
            duration_ms: row.try_get("duration_ms")?,
            commits: serde_json::from_str(&commits).context("commits_json")?,
            pushed: pushed.map(|p| p != 0),
            pr_url: row.try_get("pr_url")?,
            compare_url: row.try_get("compare_url")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            finished_at: row.try_get("finished_at")?,
            phases: self.phases(id).await?,
        })
    }
}
