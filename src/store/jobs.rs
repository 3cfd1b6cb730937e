//! Workflow jobs as recorded: a workflow run, or a work chain of runs on one branch. What every
//! job has — who started it and where, its status, branch, Discord thread, the process driving it
//! and its heartbeat, its end and pull request — is written once over the kind; each kind keeps
//! its own part (a run's task and steps, a chain's issues and runs). Each kind has its own table.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::sandboxes::{parse_id, text_id, DiscordOrigin};
use super::steps::StepRecord;
use super::{Result, Store, StoreError};
use crate::ids::{DiscordId, IssueSessionId, JobId, JobKind, WorkChainId, WorkflowRunId};
use crate::model::workflow::{Task, WorkflowDef};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Running,
    Passed,
    Failed,
    Stopped,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Passed => "passed",
            JobStatus::Failed => "failed",
            JobStatus::Stopped => "stopped",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            JobStatus::Running,
            JobStatus::Passed,
            JobStatus::Failed,
            JobStatus::Stopped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who started a job, and where.
pub struct JobOwner<'a> {
    pub project_id: Option<i64>,
    pub launched_by: &'a str,
    pub discord: Option<DiscordOrigin>,
}

/// A job to record, running.
pub struct NewJob<'a> {
    pub workflow: &'a WorkflowDef,
    pub repo: &'a str,
    pub base_branch: Option<&'a str>,
    pub owner: &'a JobOwner<'a>,
    pub work: NewWork<'a>,
}

/// A new job's own part, by kind.
pub enum NewWork<'a> {
    Run {
        id: WorkflowRunId,
        task: &'a Task,
        /// A chain's run works on the chain's branch, at its place in the chain.
        branch: Option<&'a str>,
        chain: Option<(WorkChainId, u32)>,
    },
    Chain {
        id: WorkChainId,
        items: &'a [Task],
        continue_on_failure: bool,
        issue_session: Option<IssueSessionId>,
    },
}

impl NewWork<'_> {
    pub fn id(&self) -> JobId {
        match self {
            NewWork::Run { id, .. } => JobId::Run(*id),
            NewWork::Chain { id, .. } => JobId::Chain(*id),
        }
    }
}

/// A job as recorded: its kind's own part (with its id), then what every job has.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    #[serde(flatten)]
    pub work: Work,
    pub project_id: Option<i64>,
    pub workflow: WorkflowDef,
    pub repo: String,
    pub base_branch: Option<String>,
    pub branch: Option<String>,
    pub status: JobStatus,
    pub error: Option<String>,
    pub pr_url: Option<String>,
    #[serde(flatten)]
    pub meta: JobMeta,
}

/// A job's own part, by kind.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Work {
    Run(RunWork),
    Chain(ChainWork),
}

/// A run's own part: its task, its place in a chain, the checker's last findings and its steps.
#[derive(Debug, Clone, Serialize)]
pub struct RunWork {
    pub id: WorkflowRunId,
    pub task: Task,
    pub work_chain_id: Option<WorkChainId>,
    pub chain_position: Option<u32>,
    pub findings: Vec<String>,
    pub steps: Vec<StepRecord>,
}

/// A chain's own part: its issues, and the runs of those started so far, in order.
#[derive(Debug, Clone, Serialize)]
pub struct ChainWork {
    pub id: WorkChainId,
    pub items: Vec<Task>,
    pub continue_on_failure: bool,
    pub issue_session_id: Option<IssueSessionId>,
    pub runs: Vec<JobRecord>,
}

impl ChainWork {
    /// The run of the issue at `position`, once it started.
    pub fn run_at(&self, position: u32) -> Option<&JobRecord> {
        self.runs
            .iter()
            .find(|r| matches!(&r.work, Work::Run(run) if run.chain_position == Some(position)))
    }
}

impl JobRecord {
    pub fn id(&self) -> JobId {
        match &self.work {
            Work::Run(run) => JobId::Run(run.id),
            Work::Chain(chain) => JobId::Chain(chain.id),
        }
    }

    /// What it is about: a run's task, a chain's first issue.
    pub fn title(&self) -> &str {
        match &self.work {
            Work::Run(run) => &run.task.title,
            Work::Chain(chain) => chain.items.first().map_or("", |t| t.title.as_str()),
        }
    }

    /// Every step it ran, in order: a run's own, or those of a chain's runs.
    pub fn steps(&self) -> Vec<&StepRecord> {
        match &self.work {
            Work::Run(run) => run.steps.iter().collect(),
            Work::Chain(chain) => chain.runs.iter().flat_map(|r| r.steps()).collect(),
        }
    }
}

/// Who started a job and where, when, and which process drives it now.
#[derive(Debug, Clone, Serialize)]
pub struct JobMeta {
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

impl JobMeta {
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

/// How a job ended, to record. A chain has no findings of its own: they are its runs'.
#[derive(Debug, Clone)]
pub struct JobEnd {
    pub status: JobStatus,
    pub error: Option<String>,
    pub findings: Vec<String>,
    pub pr_url: Option<String>,
}

impl JobEnd {
    /// An end with no findings and no pull request (yet).
    pub fn new(status: JobStatus, error: Option<String>) -> Self {
        Self {
            status,
            error,
            findings: Vec::new(),
            pr_url: None,
        }
    }
}

/// The table that holds a kind of job.
fn table(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Run => "workflow_runs",
        JobKind::Chain => "work_chains",
    }
}

impl Store {
    /// Records a new job as running.
    pub async fn insert_job(&self, new: &NewJob<'_>) -> Result<()> {
        let id = new.work.id();
        let own: &[&str] = match new.work {
            NewWork::Run { .. } => &["task_json", "branch", "work_chain_id", "chain_position"],
            NewWork::Chain { .. } => &["items_json", "continue_on_failure", "issue_session_id"],
        };
        let own_values: Vec<String> = (11..).take(own.len()).map(|n| format!("?{n}")).collect();
        let sql = format!(
            "INSERT INTO {} (id, project_id, workflow_json, repo, base_branch, launched_by,
                discord_user_id, discord_guild_id, discord_channel_id, created_at, updated_at, status,
                {})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, 'running', {})",
            table(id.kind()),
            own.join(", "),
            own_values.join(", ")
        );
        let owner = new.owner;
        let query = sqlx::query(&sql)
            .bind(id.id_text())
            .bind(owner.project_id)
            .bind(serde_json::to_string(new.workflow).context("serialising the workflow")?)
            .bind(new.repo)
            .bind(new.base_branch)
            .bind(owner.launched_by)
            .bind(text_id(owner.discord.map(|d| d.user_id)))
            .bind(text_id(owner.discord.and_then(|d| d.guild_id)))
            .bind(text_id(owner.discord.map(|d| d.channel_id)))
            .bind(Utc::now());
        let query = match &new.work {
            NewWork::Run {
                task,
                branch,
                chain,
                ..
            } => query
                .bind(serde_json::to_string(task).context("serialising the task")?)
                .bind(*branch)
                .bind(chain.map(|(c, _)| c.to_string()))
                .bind(chain.map(|(_, p)| i64::from(p))),
            NewWork::Chain {
                items,
                continue_on_failure,
                issue_session,
                ..
            } => query
                .bind(serde_json::to_string(items).context("serialising the items")?)
                .bind(*continue_on_failure)
                .bind(issue_session.map(|s| s.to_string())),
        };
        query.execute(&self.pool).await?;
        Ok(())
    }

    pub async fn get_job(&self, job: JobId) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&format!(
            "SELECT * FROM {} WHERE id = ?1",
            table(job.kind())
        ))
        .bind(job.id_text())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(self.job_from_row(job.kind(), &row).await?)),
            None => Ok(None),
        }
    }

    /// A job of `kind` by its full id or a unique prefix (at least four characters).
    pub async fn find_job(&self, kind: JobKind, id_or_prefix: &str) -> Result<JobRecord> {
        let id = self
            .find_id(table(kind), id_or_prefix, &kind.to_string())
            .await?;
        let job = match kind {
            JobKind::Run => JobId::Run(id.parse().context("stored run id is not a UUID")?),
            JobKind::Chain => JobId::Chain(id.parse().context("stored chain id is not a UUID")?),
        };
        self.get_job(job)
            .await?
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("{job} is gone")))
    }

    /// Running jobs that are not a chain's run, for resumption: runs first, then chains, each
    /// oldest first.
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>> {
        let mut jobs = Vec::new();
        for (kind, sql) in [
            (
                JobKind::Run,
                "SELECT * FROM workflow_runs WHERE status = 'running' AND work_chain_id IS NULL
                 ORDER BY created_at",
            ),
            (
                JobKind::Chain,
                "SELECT * FROM work_chains WHERE status = 'running' ORDER BY created_at",
            ),
        ] {
            for row in &sqlx::query(sql).fetch_all(&self.pool).await? {
                jobs.push(self.job_from_row(kind, row).await?);
            }
        }
        Ok(jobs)
    }

    /// The branch the job works on, and the one it started from.
    pub async fn set_job_branch(&self, job: JobId, base: &str, branch: &str) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE {} SET base_branch = ?2, branch = ?3, updated_at = ?4 WHERE id = ?1",
            table(job.kind())
        ))
        .bind(job.id_text())
        .bind(base)
        .bind(branch)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The Discord thread that follows the job, and its timeline message there.
    pub async fn set_job_discord(
        &self,
        job: JobId,
        thread: DiscordId,
        message: DiscordId,
    ) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE {} SET discord_thread_id = ?2, discord_message_id = ?3, updated_at = ?4 WHERE id = ?1",
            table(job.kind())
        ))
        .bind(job.id_text())
        .bind(thread.to_string())
        .bind(message.to_string())
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes over driving a running job from `expected` (its driver as last read: none, or one
    /// found stale), compare-and-set, so two processes never both drive it. False: another
    /// process took it first, or it ended.
    pub async fn claim_job(
        &self,
        job: JobId,
        expected: Option<&str>,
        runner: &str,
    ) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE {} SET runner = ?3, heartbeat_at = ?4
             WHERE id = ?1 AND status = 'running' AND runner IS ?2",
            table(job.kind())
        ))
        .bind(job.id_text())
        .bind(expected)
        .bind(runner)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks `runner` as driving the job, now. False: the job is no longer running, or another
    /// process drives it.
    pub async fn job_heartbeat(&self, job: JobId, runner: &str) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE {} SET heartbeat_at = ?3 WHERE id = ?1 AND status = 'running' AND runner = ?2",
            table(job.kind())
        ))
        .bind(job.id_text())
        .bind(runner)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends a running job; one ended already keeps its status. Returns the status it has.
    pub async fn finish_job(&self, job: JobId, end: &JobEnd) -> Result<JobStatus> {
        let table = table(job.kind());
        let findings = match job.kind() {
            JobKind::Run => ", findings = ?6",
            JobKind::Chain => "",
        };
        sqlx::query(&format!(
            "UPDATE {table} SET status = ?2, error = ?3, pr_url = COALESCE(?4, pr_url),
                updated_at = ?5, finished_at = ?5, runner = NULL{findings}
             WHERE id = ?1 AND status = 'running'"
        ))
        .bind(job.id_text())
        .bind(end.status.as_str())
        .bind(&end.error)
        .bind(&end.pr_url)
        .bind(Utc::now())
        .bind(serde_json::to_string(&end.findings).context("serialising findings")?)
        .execute(&self.pool)
        .await?;
        let status: String =
            sqlx::query_scalar(&format!("SELECT status FROM {table} WHERE id = ?1"))
                .bind(job.id_text())
                .fetch_one(&self.pool)
                .await?;
        JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("{job}: unknown status {status}")))
    }

    async fn job_from_row(&self, kind: JobKind, row: &SqliteRow) -> Result<JobRecord> {
        match kind {
            JobKind::Run => self.run_from_row(row).await,
            JobKind::Chain => self.chain_from_row(row).await,
        }
    }

    async fn run_from_row(&self, row: &SqliteRow) -> Result<JobRecord> {
        let id: String = row.try_get("id")?;
        let id: WorkflowRunId = id.parse().context("stored run id is not a UUID")?;
        let task: String = row.try_get("task_json")?;
        let findings: Option<String> = row.try_get("findings")?;
        let chain: Option<String> = row.try_get("work_chain_id")?;
        let position: Option<i64> = row.try_get("chain_position")?;
        let work = Work::Run(RunWork {
            id,
            task: serde_json::from_str(&task).context("a run's task")?,
            work_chain_id: chain
                .map(|c| c.parse().context("stored chain id is not a UUID"))
                .transpose()?,
            chain_position: position.map(|p| p.max(0) as u32),
            findings: findings
                .map(|f| serde_json::from_str(&f).unwrap_or_default())
                .unwrap_or_default(),
            steps: self.steps(id).await?,
        });
        job_from_row(row, work)
    }

    async fn chain_from_row(&self, row: &SqliteRow) -> Result<JobRecord> {
        let id: String = row.try_get("id")?;
        let id: WorkChainId = id.parse().context("stored chain id is not a UUID")?;
        let items: String = row.try_get("items_json")?;
        let session: Option<String> = row.try_get("issue_session_id")?;
        let rows = sqlx::query(
            "SELECT * FROM workflow_runs WHERE work_chain_id = ?1 ORDER BY chain_position",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut runs = Vec::with_capacity(rows.len());
        for r in &rows {
            runs.push(self.run_from_row(r).await?);
        }
        let work = Work::Chain(ChainWork {
            id,
            items: serde_json::from_str(&items).context("a chain's items")?,
            continue_on_failure: row.try_get("continue_on_failure")?,
            issue_session_id: session
                .map(|s| s.parse().context("stored session id is not a UUID"))
                .transpose()?,
            runs,
        });
        job_from_row(row, work)
    }
}

/// What every job's row holds, around its kind's own part.
fn job_from_row(row: &SqliteRow, work: Work) -> Result<JobRecord> {
    let workflow: String = row.try_get("workflow_json")?;
    let status: String = row.try_get("status")?;
    let id = match &work {
        Work::Run(run) => JobId::Run(run.id),
        Work::Chain(chain) => JobId::Chain(chain.id),
    };
    Ok(JobRecord {
        project_id: row.try_get("project_id")?,
        workflow: serde_json::from_str(&workflow).with_context(|| format!("{id}: its workflow"))?,
        repo: row.try_get("repo")?,
        base_branch: row.try_get("base_branch")?,
        branch: row.try_get("branch")?,
        status: JobStatus::parse(&status)
            .with_context(|| format!("{id}: unknown status {status}"))?,
        error: row.try_get("error")?,
        pr_url: row.try_get("pr_url")?,
        meta: JobMeta::from_row(row)?,
        work,
    })
}
