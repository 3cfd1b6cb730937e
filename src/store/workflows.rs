//! Workflows, workflow runs and their steps, and work chains.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::sandboxes::{parse_id, text_id, DiscordOrigin};
use super::{Result, Store, StoreError};
use crate::ids::{DiscordId, IssueSessionId, SandboxId, WorkChainId, WorkflowRunId};
use crate::pipeline::workflow::{StepKind, Task, Verdict, WorkflowDef};

/// Where a run or chain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Passed,
    Failed,
    Stopped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::Stopped => "stopped",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            RunStatus::Running,
            RunStatus::Passed,
            RunStatus::Failed,
            RunStatus::Stopped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// Who started a run or chain, and where.
pub struct RunOwner<'a> {
    pub project_id: Option<i64>,
    pub launched_by: &'a str,
    pub discord: Option<DiscordOrigin>,
}

pub struct NewRun<'a> {
    pub id: WorkflowRunId,
    pub workflow: &'a WorkflowDef,
    pub task: &'a Task,
    pub repo: &'a str,
    pub base_branch: Option<&'a str>,
    /// A chain's run works on the chain's branch, at its place in the chain.
    pub branch: Option<&'a str>,
    pub chain: Option<(WorkChainId, u32)>,
    pub owner: &'a RunOwner<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: WorkflowRunId,
    pub project_id: Option<i64>,
    pub workflow: WorkflowDef,
    pub task: Task,
    pub repo: String,
    pub base_branch: Option<String>,
    pub branch: Option<String>,
    pub work_chain_id: Option<WorkChainId>,
    pub chain_position: Option<u32>,
    pub status: RunStatus,
    pub error: Option<String>,
    pub findings: Vec<String>,
    pub pr_url: Option<String>,
    #[serde(flatten)]
    pub meta: RunMeta,
    pub steps: Vec<StepRecord>,
}

/// Who started a run or chain and where, when, and which process drives it now.
#[derive(Debug, Clone, Serialize)]
pub struct RunMeta {
    pub launched_by: String,
    pub discord_user_id: Option<DiscordId>,
    pub discord_guild_id: Option<DiscordId>,
    pub discord_channel_id: Option<DiscordId>,
    pub discord_thread_id: Option<DiscordId>,
    pub discord_message_id: Option<DiscordId>,
    pub runner: Option<String>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl RunMeta {
    /// Where in Discord it was started, when it was.
    pub fn discord(&self) -> Option<DiscordOrigin> {
        match (self.discord_user_id, self.discord_channel_id) {
            (Some(user_id), Some(channel_id)) => Some(DiscordOrigin {
                user_id,
                guild_id: self.discord_guild_id,
                channel_id,
            }),
            _ => None,
        }
    }

    fn from_row(row: &SqliteRow) -> Result<Self> {
        Ok(Self {
            launched_by: row.try_get("launched_by")?,
            discord_user_id: parse_id(row, "discord_user_id")?,
            discord_guild_id: parse_id(row, "discord_guild_id")?,
            discord_channel_id: parse_id(row, "discord_channel_id")?,
            discord_thread_id: parse_id(row, "discord_thread_id")?,
            discord_message_id: parse_id(row, "discord_message_id")?,
            runner: row.try_get("runner")?,
            heartbeat_at: row.try_get("heartbeat_at")?,
            created_at: row.try_get("created_at")?,
            finished_at: row.try_get("finished_at")?,
        })
    }
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

pub struct NewChain<'a> {
    pub id: WorkChainId,
    pub workflow: &'a WorkflowDef,
    pub repo: &'a str,
    pub base_branch: Option<&'a str>,
    pub items: &'a [Task],
    pub continue_on_failure: bool,
    pub issue_session: Option<IssueSessionId>,
    pub owner: &'a RunOwner<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainRecord {
    pub id: WorkChainId,
    pub project_id: Option<i64>,
    pub workflow: WorkflowDef,
    pub repo: String,
    pub base_branch: Option<String>,
    pub branch: Option<String>,
    pub items: Vec<Task>,
    pub continue_on_failure: bool,
    pub status: RunStatus,
    pub error: Option<String>,
    pub pr_url: Option<String>,
    pub issue_session_id: Option<IssueSessionId>,
    #[serde(flatten)]
    pub meta: RunMeta,
    /// The runs of its items so far, in order.
    pub runs: Vec<RunRecord>,
}

/// A project's workflow as stored.
#[derive(Debug, Clone, Serialize)]
pub struct StoredWorkflow {
    pub project_id: Option<i64>,
    pub definition: WorkflowDef,
    pub created_by: String,
}

/// Which table a run-like record lives in.
#[derive(Clone, Copy)]
enum Table {
    Runs,
    Chains,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Runs => "workflow_runs",
            Table::Chains => "work_chains",
        }
    }
}

impl Store {
    /// Stores a project's workflow; the name must be new in the project, and not the built-in's.
    pub async fn create_workflow(
        &self,
        project_id: Option<i64>,
        definition: &WorkflowDef,
        created_by: &str,
    ) -> Result<()> {
        if definition.name.trim() == crate::pipeline::workflow::DEFAULT_WORKFLOW {
            return Err(StoreError::Other(anyhow::anyhow!(
                "\"{}\" is the built-in workflow's name; choose another",
                definition.name
            )));
        }
        let now = Utc::now();
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT id FROM workflows WHERE project_id IS ?1 AND name = ?2")
                .bind(project_id)
                .bind(&definition.name)
                .fetch_optional(&self.pool)
                .await?;
        if exists.is_some() {
            return Err(StoreError::Other(anyhow::anyhow!(
                "a workflow named \"{}\" exists already; choose another name",
                definition.name
            )));
        }
        sqlx::query(
            "INSERT INTO workflows (project_id, name, definition_json, created_by, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .bind(project_id)
        .bind(&definition.name)
        .bind(serde_json::to_string(definition).context("serialising the workflow")?)
        .bind(created_by)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A project's workflows (and those made without a project), by name.
    pub async fn list_workflows(&self, project_id: Option<i64>) -> Result<Vec<StoredWorkflow>> {
        let rows = sqlx::query(
            "SELECT project_id, definition_json, created_by FROM workflows
             WHERE project_id IS ?1 OR project_id IS NULL ORDER BY name",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let json: String = row.try_get("definition_json")?;
                Ok(StoredWorkflow {
                    project_id: row.try_get("project_id")?,
                    definition: serde_json::from_str(&json).context("a stored workflow")?,
                    created_by: row.try_get("created_by")?,
                })
            })
            .collect()
    }

    pub async fn insert_run(&self, new: &NewRun<'_>) -> Result<()> {
        let now = Utc::now();
        let owner = new.owner;
        sqlx::query(
            "INSERT INTO workflow_runs (id, project_id, workflow_json, task_json, repo, base_branch, branch,
                work_chain_id, chain_position, status, launched_by, discord_user_id, discord_guild_id,
                discord_channel_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'running', ?10, ?11, ?12, ?13, ?14, ?14)",
        )
        .bind(new.id.to_string())
        .bind(owner.project_id)
        .bind(serde_json::to_string(new.workflow).context("serialising the workflow")?)
        .bind(serde_json::to_string(new.task).context("serialising the task")?)
        .bind(new.repo)
        .bind(new.base_branch)
        .bind(new.branch)
        .bind(new.chain.map(|(c, _)| c.to_string()))
        .bind(new.chain.map(|(_, p)| i64::from(p)))
        .bind(owner.launched_by)
        .bind(text_id(owner.discord.map(|d| d.user_id)))
        .bind(text_id(owner.discord.and_then(|d| d.guild_id)))
        .bind(text_id(owner.discord.map(|d| d.channel_id)))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_run(&self, id: WorkflowRunId) -> Result<Option<RunRecord>> {
        let row = sqlx::query("SELECT * FROM workflow_runs WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(self.run_from_row(&row).await?)),
            None => Ok(None),
        }
    }

    /// A run by its full id or a unique prefix (at least four characters).
    pub async fn find_run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        let id = self
            .find_id(Table::Runs.name(), id_or_prefix, "workflow run")
            .await?;
        let id = id.parse().context("stored run id is not a UUID")?;
        self.get_run(id)
            .await?
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("workflow run {id} is gone")))
    }

    /// Standalone runs (not a chain's), newest first.
    pub async fn list_runs(&self, limit: u32) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM workflow_runs WHERE work_chain_id IS NULL
             ORDER BY created_at DESC, rowid DESC LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut runs = Vec::new();
        for row in &rows {
            runs.push(self.run_from_row(row).await?);
        }
        Ok(runs)
    }

    pub async fn set_run_branch(&self, id: WorkflowRunId, base: &str, branch: &str) -> Result<()> {
        self.set_branch(Table::Runs, &id.to_string(), base, branch)
            .await
    }

    /// Ends a running run; one ended already keeps its status. Returns the status it has.
    pub async fn finish_run(
        &self,
        id: WorkflowRunId,
        status: RunStatus,
        error: Option<&str>,
        findings: &[String],
        pr_url: Option<&str>,
    ) -> Result<RunStatus> {
        sqlx::query(
            "UPDATE workflow_runs SET status = ?2, error = ?3, findings = ?4, pr_url = COALESCE(?5, pr_url),
                updated_at = ?6, finished_at = ?6, runner = NULL
             WHERE id = ?1 AND status = 'running'",
        )
        .bind(id.to_string())
        .bind(status.as_str())
        .bind(error)
        .bind(serde_json::to_string(findings).context("serialising findings")?)
        .bind(pr_url)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        let status: String = sqlx::query_scalar("SELECT status FROM workflow_runs WHERE id = ?1")
            .bind(id.to_string())
            .fetch_one(&self.pool)
            .await?;
        RunStatus::parse(&status)
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("unknown run status {status}")))
    }

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

    pub async fn steps(&self, run: WorkflowRunId) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query("SELECT * FROM workflow_steps WHERE run_id = ?1 ORDER BY seq")
            .bind(run.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(step_from_row).collect()
    }

    pub async fn insert_chain(&self, new: &NewChain<'_>) -> Result<()> {
        let now = Utc::now();
        let owner = new.owner;
        sqlx::query(
            "INSERT INTO work_chains (id, project_id, workflow_json, repo, base_branch, items_json,
                continue_on_failure, status, issue_session_id, launched_by, discord_user_id,
                discord_guild_id, discord_channel_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
        )
        .bind(new.id.to_string())
        .bind(owner.project_id)
        .bind(serde_json::to_string(new.workflow).context("serialising the workflow")?)
        .bind(new.repo)
        .bind(new.base_branch)
        .bind(serde_json::to_string(new.items).context("serialising the items")?)
        .bind(new.continue_on_failure)
        .bind(new.issue_session.map(|s| s.to_string()))
        .bind(owner.launched_by)
        .bind(text_id(owner.discord.map(|d| d.user_id)))
        .bind(text_id(owner.discord.and_then(|d| d.guild_id)))
        .bind(text_id(owner.discord.map(|d| d.channel_id)))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_chain(&self, id: WorkChainId) -> Result<Option<ChainRecord>> {
        let row = sqlx::query("SELECT * FROM work_chains WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(self.chain_from_row(&row).await?)),
            None => Ok(None),
        }
    }

    pub async fn find_chain(&self, id_or_prefix: &str) -> Result<ChainRecord> {
        let id = self
            .find_id(Table::Chains.name(), id_or_prefix, "work chain")
            .await?;
        let id = id.parse().context("stored chain id is not a UUID")?;
        self.get_chain(id)
            .await?
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("work chain {id} is gone")))
    }

    pub async fn set_chain_branch(&self, id: WorkChainId, base: &str, branch: &str) -> Result<()> {
        self.set_branch(Table::Chains, &id.to_string(), base, branch)
            .await
    }

    pub async fn finish_chain(
        &self,
        id: WorkChainId,
        status: RunStatus,
        error: Option<&str>,
        pr_url: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE work_chains SET status = ?2, error = ?3, pr_url = COALESCE(?4, pr_url), updated_at = ?5,
                finished_at = ?5, runner = NULL
             WHERE id = ?1 AND status = 'running'",
        )
        .bind(id.to_string())
        .bind(status.as_str())
        .bind(error)
        .bind(pr_url)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes over driving a running run or chain from `expected` (its driver as last read: none,
    /// or one found stale), compare-and-set, so two processes never both drive it. False: another
    /// process took it first, or it ended.
    pub async fn claim_run(
        &self,
        id: WorkflowRunId,
        expected: Option<&str>,
        runner: &str,
    ) -> Result<bool> {
        self.claim(Table::Runs, &id.to_string(), expected, runner)
            .await
    }

    pub async fn claim_chain(
        &self,
        id: WorkChainId,
        expected: Option<&str>,
        runner: &str,
    ) -> Result<bool> {
        self.claim(Table::Chains, &id.to_string(), expected, runner)
            .await
    }

    async fn claim(
        &self,
        table: Table,
        id: &str,
        expected: Option<&str>,
        runner: &str,
    ) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE {} SET runner = ?3, heartbeat_at = ?4
             WHERE id = ?1 AND status = 'running' AND runner IS ?2",
            table.name()
        ))
        .bind(id)
        .bind(expected)
        .bind(runner)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks `runner` as driving the run, now. False: the run is no longer running, or another
    /// process drives it.
    pub async fn run_heartbeat(&self, id: WorkflowRunId, runner: &str) -> Result<bool> {
        self.heartbeat(Table::Runs, &id.to_string(), runner).await
    }

    pub async fn chain_heartbeat(&self, id: WorkChainId, runner: &str) -> Result<bool> {
        self.heartbeat(Table::Chains, &id.to_string(), runner).await
    }

    /// Running standalone runs and chains, for resumption: (runs, chains).
    pub async fn unfinished_runs(&self) -> Result<(Vec<RunRecord>, Vec<ChainRecord>)> {
        let rows = sqlx::query(
            "SELECT * FROM workflow_runs WHERE status = 'running' AND work_chain_id IS NULL ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut runs = Vec::new();
        for row in &rows {
            runs.push(self.run_from_row(row).await?);
        }
        let rows =
            sqlx::query("SELECT * FROM work_chains WHERE status = 'running' ORDER BY created_at")
                .fetch_all(&self.pool)
                .await?;
        let mut chains = Vec::new();
        for row in &rows {
            chains.push(self.chain_from_row(row).await?);
        }
        Ok((runs, chains))
    }

    pub async fn set_run_discord(
        &self,
        id: WorkflowRunId,
        thread: DiscordId,
        message: DiscordId,
    ) -> Result<()> {
        self.set_discord(Table::Runs, &id.to_string(), thread, message)
            .await
    }

    pub async fn set_chain_discord(
        &self,
        id: WorkChainId,
        thread: DiscordId,
        message: DiscordId,
    ) -> Result<()> {
        self.set_discord(Table::Chains, &id.to_string(), thread, message)
            .await
    }

    async fn set_branch(&self, table: Table, id: &str, base: &str, branch: &str) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE {} SET base_branch = ?2, branch = ?3, updated_at = ?4 WHERE id = ?1",
            table.name()
        ))
        .bind(id)
        .bind(base)
        .bind(branch)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The driver's heartbeat: only while the record still runs and is still driven by `runner`.
    async fn heartbeat(&self, table: Table, id: &str, runner: &str) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE {} SET heartbeat_at = ?3 WHERE id = ?1 AND status = 'running' AND runner = ?2",
            table.name()
        ))
        .bind(id)
        .bind(runner)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_discord(
        &self,
        table: Table,
        id: &str,
        thread: DiscordId,
        message: DiscordId,
    ) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE {} SET discord_thread_id = ?2, discord_message_id = ?3, updated_at = ?4 WHERE id = ?1",
            table.name()
        ))
        .bind(id)
        .bind(thread.to_string())
        .bind(message.to_string())
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn run_from_row(&self, row: &SqliteRow) -> Result<RunRecord> {
        let id: String = row.try_get("id")?;
        let id: WorkflowRunId = id.parse().context("stored run id is not a UUID")?;
        let workflow: String = row.try_get("workflow_json")?;
        let task: String = row.try_get("task_json")?;
        let status: String = row.try_get("status")?;
        let findings: Option<String> = row.try_get("findings")?;
        let chain: Option<String> = row.try_get("work_chain_id")?;
        let position: Option<i64> = row.try_get("chain_position")?;
        Ok(RunRecord {
            id,
            project_id: row.try_get("project_id")?,
            workflow: serde_json::from_str(&workflow).context("a run's workflow")?,
            task: serde_json::from_str(&task).context("a run's task")?,
            repo: row.try_get("repo")?,
            base_branch: row.try_get("base_branch")?,
            branch: row.try_get("branch")?,
            work_chain_id: chain
                .map(|c| c.parse().context("stored chain id is not a UUID"))
                .transpose()?,
            chain_position: position.map(|p| p.max(0) as u32),
            status: RunStatus::parse(&status)
                .with_context(|| format!("run {id}: unknown status {status}"))?,
            error: row.try_get("error")?,
            findings: findings
                .map(|f| serde_json::from_str(&f).unwrap_or_default())
                .unwrap_or_default(),
            pr_url: row.try_get("pr_url")?,
            meta: RunMeta::from_row(row)?,
            steps: self.steps(id).await?,
        })
    }

    async fn chain_from_row(&self, row: &SqliteRow) -> Result<ChainRecord> {
        let id: String = row.try_get("id")?;
        let id: WorkChainId = id.parse().context("stored chain id is not a UUID")?;
        let workflow: String = row.try_get("workflow_json")?;
        let items: String = row.try_get("items_json")?;
        let status: String = row.try_get("status")?;
        let session: Option<String> = row.try_get("issue_session_id")?;
        let continue_on_failure: bool = row.try_get("continue_on_failure")?;
        let rows = sqlx::query(
            "SELECT * FROM workflow_runs WHERE work_chain_id = ?1 ORDER BY chain_position",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut runs = Vec::new();
        for r in &rows {
            runs.push(self.run_from_row(r).await?);
        }
        Ok(ChainRecord {
            id,
            project_id: row.try_get("project_id")?,
            workflow: serde_json::from_str(&workflow).context("a chain's workflow")?,
            repo: row.try_get("repo")?,
            base_branch: row.try_get("base_branch")?,
            branch: row.try_get("branch")?,
            items: serde_json::from_str(&items).context("a chain's items")?,
            continue_on_failure,
            status: RunStatus::parse(&status)
                .with_context(|| format!("chain {id}: unknown status {status}"))?,
            error: row.try_get("error")?,
            pr_url: row.try_get("pr_url")?,
            issue_session_id: session
                .map(|s| s.parse().context("stored session id is not a UUID"))
                .transpose()?,
            meta: RunMeta::from_row(row)?,
            runs,
        })
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
