//! Workflow jobs: a workflow run, or a work chain of runs on one branch. What every job does is
//! written once here — it is checked and recorded, taken up by one process that keeps a heartbeat
//! on it, given its branch, and ended with its pull request — and each kind does its own part in
//! between: a run its steps (`run`), a chain its issues, each a run (`chain`). A job driven again
//! after a crash picks up where it was interrupted and never repeats what finished.

mod branch;
mod budget;
mod chain;
mod events;
mod heartbeat;
mod run;
mod tasks;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use events::{NoWorkflowProgress, WorkflowEvent, WorkflowSink};
pub use run::step_line;

use super::{LaunchError, Launcher};
use crate::catalog::{Budget, Catalog, LaunchRequest};
use crate::ids::{IssueSessionId, JobId, WorkChainId, WorkflowRunId};
use crate::model::workflow::{StepKind, Task, WorkflowDef};
use crate::secret::Secret;
use crate::store::{JobEnd, JobOwner, JobRecord, JobStatus, NewJob, NewWork, Store, Work};

/// What a run or chain is started with.
pub struct JobRequest<'a> {
    pub workflow: &'a WorkflowDef,
    pub repo: &'a str,
    pub base_branch: Option<&'a str>,
    /// `KEY=VALUE` for every step's sandbox (kept encrypted for a resumption).
    pub env: &'a [String],
    pub owner: &'a JobOwner<'a>,
    /// Whether a local path may be the repository (chat users only when the operator allows it).
    pub allow_local: bool,
}

pub struct Runner {
    launcher: Arc<Launcher>,
    catalog: Catalog,
    /// "host:pid:nonce": who drives a job, for resumption after a crash.
    me: String,
}

/// Where a job's steps' sandboxes get their `--env` values from, encrypted.
fn env_scope(job: JobId) -> String {
    match job {
        JobId::Run(id) => format!("workflow_run:{id}"),
        JobId::Chain(id) => format!("work_chain:{id}"),
    }
}

/// A job taken up by this process: its record as it was then, its branch and its steps' env.
struct Driving<'a> {
    record: &'a JobRecord,
    base: &'a str,
    branch: &'a str,
    env: &'a [(String, Secret)],
}

/// A pull request a job ends with.
struct PullRequest {
    title: String,
    body: String,
}

impl Runner {
    pub fn new(launcher: Arc<Launcher>, catalog: Catalog) -> Self {
        Self {
            launcher,
            catalog,
            me: heartbeat::runner_id(),
        }
    }

    pub fn store(&self) -> &Store {
        self.launcher.store()
    }

    /// Records a run, checked first: nothing is recorded when the workflow or repository is wrong.
    pub async fn start_run(
        &self,
        request: &JobRequest<'_>,
        task: Task,
    ) -> Result<JobId, LaunchError> {
        let work = NewWork::Run {
            id: WorkflowRunId::new(),
            task: &task,
            branch: None,
            chain: None,
        };
        self.record(request, work).await
    }

    /// Records a chain of `items`, checked first: an empty chain, one over `max_items`, or a bad
    /// workflow is refused before anything is recorded.
    pub async fn start_chain(
        &self,
        request: &JobRequest<'_>,
        items: Vec<Task>,
        continue_on_failure: bool,
        issue_session: Option<IssueSessionId>,
        max_items: usize,
    ) -> Result<JobId, LaunchError> {
        if items.is_empty() {
            return Err(LaunchError::Invalid(
                "the chain has no issues: give at least one".into(),
            ));
        }
        if items.len() > max_items {
            return Err(LaunchError::Invalid(format!(
                "the chain has {} issues; at most {max_items} run in one chain (CODECOURIER_MAX_CHAIN_ITEMS)",
                items.len()
            )));
        }
        let work = NewWork::Chain {
            id: WorkChainId::new(),
            items: &items,
            continue_on_failure,
            issue_session,
        };
        self.record(request, work).await
    }

    async fn record(
        &self,
        request: &JobRequest<'_>,
        work: NewWork<'_>,
    ) -> Result<JobId, LaunchError> {
        let designer = self.check(request)?;
        let repo = designer.repo.to_string();
        let job = work.id();
        self.store()
            .insert_job(&NewJob {
                workflow: request.workflow,
                repo: &repo,
                base_branch: request.base_branch,
                owner: request.owner,
                work,
            })
            .await?;
        self.store().put_env(&env_scope(job), &designer.env).await?;
        Ok(job)
    }

    /// Checks a job's workflow and repository as its steps will use them; the designer's launch
    /// request, for the repository it names.
    fn check(&self, request: &JobRequest<'_>) -> Result<LaunchRequest, LaunchError> {
        request.workflow.validate(&self.catalog).map_err(|e| {
            LaunchError::Invalid(format!("workflow {}: {e}", request.workflow.name))
        })?;
        let budgeted =
            request.workflow.max_cost_usd.is_some() || request.workflow.max_tokens.is_some();
        let provider = self.launcher.provider();
        if budgeted && provider.capabilities().egress_rules {
            return Err(LaunchError::Invalid(format!(
                "workflow {}: {}; run without a budget, or on local sandboxes",
                request.workflow.name,
                Budget::unenforceable("a budget", provider.name())
            )));
        }
        let mut designer = None;
        for kind in StepKind::ALL {
            let mut input = request
                .workflow
                .step_input(&self.catalog, kind, "check".into());
            input.repo = Some(request.repo.to_string());
            input.base_branch = request.base_branch.map(str::to_string);
            input.env = request.env.to_vec();
            let checked = input
                .validate(&self.catalog, request.allow_local)
                .map_err(|e| LaunchError::Invalid(format!("the {kind} step: {e}")))?;
            designer.get_or_insert(checked);
        }
        Ok(designer.expect("three steps"))
    }

    /// Drives a job to its end: from the start, or from where a crash interrupted it. One that
    /// has ended already is only reported.
    pub async fn drive(
        &self,
        job: JobId,
        sink: &dyn WorkflowSink,
        stop: CancellationToken,
    ) -> anyhow::Result<JobRecord> {
        let record = self
            .store()
            .get_job(job)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{job} is not in the database"))?;
        if record.status != JobStatus::Running {
            sink.emit(&WorkflowEvent::JobFinished {
                job,
                status: record.status,
                error: record.error.clone(),
                findings: match &record.work {
                    Work::Run(run) => run.findings.clone(),
                    Work::Chain(_) => Vec::new(),
                },
                pr_url: record.pr_url.clone(),
            });
            return Ok(record);
        }
        if !self
            .store()
            .claim_job(job, record.meta.runner.as_deref(), &self.me)
            .await?
        {
            anyhow::bail!("{job} is being driven by another CodeCourier");
        }
        let _beat = self.heartbeat(job, stop.clone());
        let env = self.store().get_env(&env_scope(job)).await?;
        let (base, branch) = match (&record.base_branch, &record.branch) {
            (Some(base), Some(branch)) => (base.clone(), branch.clone()),
            _ => match self.prepare_branch(&record).await {
                Ok((base, branch)) => {
                    self.store().set_job_branch(job, &base, &branch).await?;
                    (base, branch)
                }
                Err(error) => {
                    let end = JobEnd::new(JobStatus::Failed, Some(error));
                    return self.end(&record, end, sink).await;
                }
            },
        };
        sink.emit(&WorkflowEvent::BranchReady {
            base: base.clone(),
            branch: branch.clone(),
        });
        let on = Driving {
            record: &record,
            base: &base,
            branch: &branch,
            env: &env,
        };
        let end = match &record.work {
            Work::Run(run) => self.run_steps(&on, run, sink, stop).await?,
            Work::Chain(chain) => self.run_items(&on, chain, sink, stop).await?,
        };
        self.end(&record, end, sink).await
    }

    /// Records the job's end, with its pull request when one is due (GitHub); returns the record
    /// as it ended.
    async fn end(
        &self,
        record: &JobRecord,
        mut end: JobEnd,
        sink: &dyn WorkflowSink,
    ) -> anyhow::Result<JobRecord> {
        let job = record.id();
        // As it is now, with the steps and runs it has since.
        let record = self
            .store()
            .get_job(job)
            .await?
            .unwrap_or_else(|| record.clone());
        let due = match &record.work {
            Work::Run(run) => run::pull_request(&record, run, end.status),
            Work::Chain(chain) => chain::pull_request(&record, chain),
        };
        if let Some(pr) = due {
            match self.open_pull_request(&record, &pr.title, &pr.body).await {
                Ok(url) => end.pr_url = url,
                Err(e) => {
                    let note = format!("the pull request was not opened: {e}");
                    end.error = Some(match end.error.take() {
                        Some(error) => format!("{error}; {note}"),
                        // A run's pull request is due only when it passed.
                        None if matches!(record.work, Work::Run(_)) => {
                            format!("passed, but {note}")
                        }
                        None => note,
                    });
                }
            }
        }
        let status = self.store().finish_job(job, &end).await?;
        sink.emit(&WorkflowEvent::JobFinished {
            job,
            status,
            error: end.error,
            findings: end.findings,
            pr_url: end.pr_url,
        });
        self.store()
            .get_job(job)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{job} disappeared"))
    }
}
