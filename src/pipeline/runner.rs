//! Runs workflow runs and work chains. A run prepares one feature branch and runs each step as a
//! launch on it (designer, optimizer and checker rounds, see `workflow::next_step`); a chain runs its
//! items as workflow runs on one branch, in order, and ends with one pull request. Every step is
//! recorded before and after it runs, so a run driven again after a crash picks up at the step that
//! was interrupted and never repeats a finished one.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::events::{ProgressEvent, ProgressSink};
use super::naming::{pull_request_title, slug};
use super::ops::continuing;
use super::workflow::{
    next_step, read_verdict, step_prompt, DoneStep, Next, StepEnd, StepKind, Task, Verdict,
    WorkflowDef,
};
use super::SandboxStatus;
use super::{LaunchError, LaunchOrigin, Launcher, ProjectChoice};
use crate::catalog::{Catalog, FollowUp, LaunchMode, LaunchRequest, RepoRef};
use crate::ids::{SandboxId, WorkChainId, WorkflowRunId};
use crate::secret::Secret;
use crate::store::{
    ChainRecord, NewChain, NewRun, NewStep, RunOwner, RunRecord, RunStatus, StepEnding, StepStatus,
    Store, WorkflowLink,
};

/// A run nobody has reported driving for this long is resumed by whoever asks.
const STALE_AFTER: chrono::Duration = chrono::Duration::seconds(30);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// What a run or chain reports as it goes (the current step's launch progress included).
#[derive(Debug, Clone)]
pub enum WorkflowEvent {
    BranchReady {
        base: String,
        branch: String,
    },
    ItemStarted {
        position: u32,
        title: String,
        run: WorkflowRunId,
    },
    StepStarted {
        seq: u32,
        kind: StepKind,
        round: u32,
        sandbox: SandboxId,
        tool: String,
        model: String,
        template: String,
    },
    /// The current step's launch progress.
    Progress {
        kind: StepKind,
        event: ProgressEvent,
    },
    StepFinished {
        seq: u32,
        kind: StepKind,
        round: u32,
        status: StepStatus,
        verdict: Option<Verdict>,
        error: Option<String>,
        cost_usd: Option<f64>,
        duration_ms: Option<i64>,
    },
    RunFinished {
        run: WorkflowRunId,
        status: RunStatus,
        error: Option<String>,
        findings: Vec<String>,
        pr_url: Option<String>,
    },
    ChainFinished {
        status: RunStatus,
        error: Option<String>,
        pr_url: Option<String>,
    },
}

pub trait WorkflowSink: Send + Sync {
    fn emit(&self, event: &WorkflowEvent);
}

pub struct NoWorkflowProgress;

impl WorkflowSink for NoWorkflowProgress {
    fn emit(&self, _: &WorkflowEvent) {}
}

/// Hands a step's launch progress to the workflow sink.
struct StepProgress<'a> {
    sink: &'a dyn WorkflowSink,
    kind: StepKind,
}

impl ProgressSink for StepProgress<'_> {
    fn emit(&self, _: SandboxId, event: &ProgressEvent) {
        self.sink.emit(&WorkflowEvent::Progress {
            kind: self.kind,
            event: event.clone(),
        });
    }
}

/// What a run or chain is started with.
pub struct RunRequest<'a> {
    pub workflow: &'a WorkflowDef,
    pub repo: &'a str,
    pub base_branch: Option<&'a str>,
    /// `KEY=VALUE` for every step's sandbox (kept encrypted for a resumption).
    pub env: &'a [String],
    pub owner: &'a RunOwner<'a>,
    /// Whether a local path may be the repository (chat users only when the operator allows it).
    pub allow_local: bool,
}

pub struct Runner {
    launcher: Arc<Launcher>,
    catalog: Catalog,
    /// "host:pid": who drives a run, for resumption after a crash.
    me: String,
}

fn run_scope(id: WorkflowRunId) -> String {
    format!("workflow_run:{id}")
}

fn chain_scope(id: WorkChainId) -> String {
    format!("work_chain:{id}")
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether the runner recorded on a run ("host:pid:nonce") is gone: its heartbeat is old, or it
/// was a process on this machine that no longer exists — or an earlier process with our own pid (a
/// container restarted as pid 1). `me` is this process's own runner id.
fn is_stale(runner: Option<&str>, heartbeat: Option<chrono::DateTime<Utc>>, me: &str) -> bool {
    let Some(runner) = runner else {
        return true;
    };
    if heartbeat.is_none_or(|at| Utc::now() - at > STALE_AFTER) {
        return true;
    }
    if runner == me {
        return false;
    }
    let mut parts = runner.splitn(3, ':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return true;
    };
    if host != this_host() {
        return false;
    }
    match pid.parse::<i32>() {
        Ok(pid) if pid as u32 == std::process::id() => true,
        // SAFETY: signal 0 only asks whether the process exists.
        Ok(pid) => {
            let alive = unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            !alive
        }
        Err(_) => true,
    }
}

impl Runner {
    pub fn new(launcher: Arc<Launcher>, catalog: Catalog) -> Self {
        Self {
            launcher,
            catalog,
            me: format!(
                "{}:{}:{}",
                this_host(),
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
        }
    }

    pub fn store(&self) -> &Store {
        self.launcher.store()
    }

    /// Checks a run's workflow and repository as its steps will use them; the designer's launch
    /// request, for the repository it names.
    fn check(&self, request: &RunRequest<'_>) -> Result<LaunchRequest, LaunchError> {
        request.workflow.validate(&self.catalog).map_err(|e| {
            LaunchError::Invalid(format!("workflow {}: {e}", request.workflow.name))
        })?;
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

    /// Records a run, checked first: nothing is recorded when the workflow or repository is wrong.
    pub async fn start_run(
        &self,
        request: &RunRequest<'_>,
        task: Task,
    ) -> Result<WorkflowRunId, LaunchError> {
        let designer = self.check(request)?;
        let id = WorkflowRunId::new();
        let repo = designer.repo.to_string();
        self.store()
            .insert_run(&NewRun {
                id,
                workflow: request.workflow,
                task: &task,
                repo: &repo,
                base_branch: request.base_branch,
                branch: None,
                chain: None,
                owner: request.owner,
            })
            .await?;
        self.store().put_env(&run_scope(id), &designer.env).await?;
        Ok(id)
    }

    /// Records a chain of `items`, checked first: an empty chain, one over `max_items`, or a bad
    /// workflow is refused before anything is recorded.
    pub async fn start_chain(
        &self,
        request: &RunRequest<'_>,
        items: Vec<Task>,
        continue_on_failure: bool,
        issue_session: Option<crate::ids::IssueSessionId>,
        max_items: usize,
    ) -> Result<WorkChainId, LaunchError> {
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
        let designer = self.check(request)?;
        let id = WorkChainId::new();
        let repo = designer.repo.to_string();
        self.store()
            .insert_chain(&NewChain {
                id,
                workflow: request.workflow,
                repo: &repo,
                base_branch: request.base_branch,
                items: &items,
                continue_on_failure,
                issue_session,
                owner: request.owner,
            })
            .await?;
        self.store()
            .put_env(&chain_scope(id), &designer.env)
            .await?;
        Ok(id)
    }

    /// A workflow by name: the project's own (or one made without a project), else the built-in
    /// `default`. Unknown names are refused with the names there are.
    pub async fn find_workflow(
        &self,
        project_id: Option<i64>,
        name: Option<&str>,
    ) -> Result<WorkflowDef, LaunchError> {
        let name = name.unwrap_or(super::workflow::DEFAULT_WORKFLOW).trim();
        let stored = self.store().list_workflows(project_id).await?;
        // The project's own first, then one made without a project.
        let found = stored
            .iter()
            .filter(|w| w.definition.name == name)
            .max_by_key(|w| w.project_id.is_some());
        if let Some(found) = found {
            return Ok(found.definition.clone());
        }
        if name == super::workflow::DEFAULT_WORKFLOW {
            return Ok(WorkflowDef::built_in());
        }
        let mut names: Vec<String> = stored.into_iter().map(|w| w.definition.name).collect();
        names.insert(0, super::workflow::DEFAULT_WORKFLOW.into());
        Err(LaunchError::Invalid(format!(
            "there is no workflow named \"{name}\"; there are: {}",
            names.join(", ")
        )))
    }

    /// A task from an issue of an issue session (`session` an id or its first characters) of the
    /// same repository; from chat, only a session started in the same channel is found.
    pub async fn task_from_issue(
        &self,
        session: &str,
        position: u32,
        repo: &str,
        channel: Option<crate::ids::DiscordId>,
    ) -> Result<Task, LaunchError> {
        let wanted = session;
        let session = self
            .store()
            .find_issue_session(wanted)
            .await
            .ok()
            .filter(|s| {
                channel.is_none()
                    || s.discord_channel_id == channel
                    || s.discord_thread_id == channel
            })
            .ok_or_else(|| {
                LaunchError::Invalid(format!(
                    "no issue session \"{wanted}\"{}",
                    if channel.is_some() {
                        " was started in this channel"
                    } else {
                        " exists; `codecourier scan history` lists them"
                    }
                ))
            })?;
        if RepoRef::parse(&session.repo) != RepoRef::parse(repo) {
            return Err(LaunchError::Invalid(format!(
                "issue session {} scanned {}, not {repo}",
                session.id.short(),
                session.repo
            )));
        }
        let issues = self.store().issues(session.id).await?;
        let issue = issues
            .iter()
            .find(|i| i.position == position)
            .ok_or_else(|| {
                LaunchError::Invalid(format!(
                    "issue session {} has no issue {position} (it has {})",
                    session.id.short(),
                    issues.len()
                ))
            })?;
        Ok(Task {
            title: issue.issue.title.clone(),
            prompt: super::scan::fix_prompt(&issue.issue),
            source: format!("issue {}#{position}", session.id.short()),
        })
    }

    /// A task from a GitHub issue of `repo`.
    pub async fn task_from_github(&self, repo: &str, number: u64) -> Result<Task, LaunchError> {
        let Some(RepoRef::Github { owner, name }) = RepoRef::parse(repo) else {
            return Err(LaunchError::Invalid(format!(
                "GitHub issue #{number}: {repo} is not a GitHub repository"
            )));
        };
        let github = crate::github::connect(&self.launcher.github, &owner, &name)
            .await
            .map_err(|e| LaunchError::Invalid(e.to_string()))?;
        let (title, body) = github
            .issue(number)
            .await
            .map_err(|e| LaunchError::Invalid(e.to_string()))?;
        Ok(Task {
            title: format!("#{number} {title}"),
            prompt: format!("Resolve GitHub issue #{number}: {title}\n\n{body}"),
            source: format!("github #{number}"),
        })
    }

    /// Runs and chains left running by a CodeCourier that is gone: (runs, chains).
    pub async fn resumable(&self) -> anyhow::Result<(Vec<RunRecord>, Vec<ChainRecord>)> {
        let (runs, chains) = self.store().unfinished_runs().await?;
        Ok((
            runs.into_iter()
                .filter(|r| is_stale(r.meta.runner.as_deref(), r.meta.heartbeat_at, &self.me))
                .collect(),
            chains
                .into_iter()
                .filter(|c| is_stale(c.meta.runner.as_deref(), c.meta.heartbeat_at, &self.me))
                .collect(),
        ))
    }

    /// Drives a run to its end: from the start, or from the step a crash interrupted.
    pub async fn drive_run(
        &self,
        id: WorkflowRunId,
        sink: &dyn WorkflowSink,
        stop: CancellationToken,
    ) -> anyhow::Result<RunRecord> {
        let run = self
            .store()
            .get_run(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("workflow run {id} is not in the database"))?;
        if run.status != RunStatus::Running {
            sink.emit(&WorkflowEvent::RunFinished {
                run: id,
                status: run.status,
                error: run.error.clone(),
                findings: run.findings.clone(),
                pr_url: run.pr_url.clone(),
            });
            return Ok(run);
        }
        if !self
            .store()
            .claim_run(id, run.meta.runner.as_deref(), &self.me)
            .await?
        {
            anyhow::bail!("workflow run {id} is being driven by another CodeCourier");
        }
        let _beat = self.heartbeat(Beat::Run(id), stop.clone());
        let env = self.store().get_env(&run_scope(id)).await?;
        let (base, branch) = match (&run.base_branch, &run.branch) {
            (Some(base), Some(branch)) => (base.clone(), branch.clone()),
            _ => match self
                .prepare_branch(
                    &run.repo,
                    run.base_branch.as_deref(),
                    &format!("wf-{}", id.short()),
                    &run.task.title,
                )
                .await
            {
                Ok((base, branch)) => {
                    self.store().set_run_branch(id, &base, &branch).await?;
                    (base, branch)
                }
                Err(error) => {
                    return self
                        .end_run(&run, RunStatus::Failed, Some(error), Vec::new(), sink)
                        .await
                }
            },
        };
        sink.emit(&WorkflowEvent::BranchReady {
            base: base.clone(),
            branch: branch.clone(),
        });
        // A step still marked running was cut off by a crash: it runs again.
        for step in &run.steps {
            if step.status == StepStatus::Running {
                self.store()
                    .end_step(
                        step.id,
                        &StepEnding {
                            status: StepStatus::Interrupted,
                            verdict: None,
                            error: Some("CodeCourier stopped during this step; it ran again"),
                            cost_usd: None,
                            duration_ms: None,
                        },
                    )
                    .await?;
            }
        }
        loop {
            let steps = self.store().steps(id).await?;
            let done: Vec<DoneStep> = steps.iter().map(done_step).collect();
            let next = if stop.is_cancelled() {
                Next::Stopped
            } else {
                next_step(&done, run.workflow.max_rounds)
            };
            match next {
                Next::Run {
                    kind,
                    round,
                    findings,
                } => {
                    let previous = steps
                        .iter()
                        .rev()
                        .find(|s| s.status == StepStatus::Completed)
                        .and_then(|s| s.sandbox_id);
                    let step = Step {
                        run: &run,
                        kind,
                        round,
                        seq: steps.len() as u32 + 1,
                        findings: &findings,
                        base: &base,
                        branch: &branch,
                        previous,
                        env: &env,
                    };
                    if let Err(error) = self.run_step(&step, sink, stop.clone()).await {
                        return self
                            .end_run(&run, RunStatus::Failed, Some(error), Vec::new(), sink)
                            .await;
                    }
                }
                Next::Passed => {
                    return self
                        .end_run(&run, RunStatus::Passed, None, Vec::new(), sink)
                        .await
                }
                Next::Failed { error, findings } => {
                    return self
                        .end_run(&run, RunStatus::Failed, Some(error), findings, sink)
                        .await
                }
                Next::Stopped => {
                    return self
                        .end_run(
                            &run,
                            RunStatus::Stopped,
                            Some("stopped".into()),
                            Vec::new(),
                            sink,
                        )
                        .await
                }
            }
        }
    }

    /// Runs one step as a launch on the run's branch and records it. Err: the step could not start.
    async fn run_step(
        &self,
        step: &Step<'_>,
        sink: &dyn WorkflowSink,
        stop: CancellationToken,
    ) -> Result<(), String> {
        let run = step.run;
        let kind = step.kind;
        let workflow = &run.workflow;
        let mut input = workflow.step_input(&self.catalog, kind, String::new());
        let structured = input
            .tool
            .as_deref()
            .and_then(|t| self.catalog.tool(t))
            .unwrap_or_else(|| self.catalog.default_tool())
            .capabilities
            .structured_output;
        input.prompt = Some(step_prompt(
            kind,
            workflow.persona(kind),
            &run.task,
            step.findings,
            structured,
        ));
        input.repo = Some(run.repo.clone());
        input.base_branch = Some(step.base.to_string());
        // Checked when the run was recorded; the terminal's and the chat's rules applied then.
        let mut request = input
            .validate(&self.catalog, true)
            .map_err(|e| format!("the {kind} step cannot start: {e}"))?;
        request.env = step.env.to_vec();
        if kind == StepKind::Checker {
            request.mode = LaunchMode::Check;
        }
        let request = continuing(
            request,
            FollowUp {
                of: step.previous,
                branch: step.branch.to_string(),
                base_branch: step.base.to_string(),
                session_id: None,
            },
        );
        let origin = LaunchOrigin {
            launched_by: run.meta.launched_by.clone(),
            discord: run.meta.discord(),
            // A run started without a project of its own (a repository named from another
            // channel) keeps none for every step.
            project: run
                .project_id
                .map_or(ProjectChoice::Nothing, ProjectChoice::Project),
            keys_of: run.meta.discord().map(|d| d.user_id),
            issue_session: None,
            workflow: Some(WorkflowLink {
                run: run.id,
                step: kind,
                chain: run.work_chain_id,
            }),
        };
        let config = serde_json::json!({
            "tool": request.tool,
            "model": request.model,
            "effort": request.effort,
            "resources": request.resources,
            "template": request.template.to_string(),
        });
        let (tool, model, template) = (
            request.tool.clone(),
            request.model.clone(),
            request.template.to_string(),
        );
        let prepared = match self.launcher.prepare(request, &origin).await {
            Ok(prepared) => prepared,
            Err(LaunchError::Invalid(message)) => {
                return Err(format!("the {kind} step cannot start: {message}"))
            }
            Err(LaunchError::Store(e)) => return Err(e.to_string()),
        };
        let sandbox = prepared.id;
        let inserted = self
            .store()
            .insert_step(&NewStep {
                run: run.id,
                seq: step.seq,
                kind,
                round: step.round,
                sandbox,
                tool: &tool,
                model: &model,
                template: &template,
                config: &config,
            })
            .await;
        let step_id = match inserted {
            Ok(id) => id,
            Err(e) => {
                let why = format!("the {kind} step could not be recorded: {e}");
                if let Err(e) = self.launcher.abandon(prepared, &why).await {
                    tracing::warn!(sandbox = %sandbox, error = %e, "could not end an unused sandbox record");
                }
                return Err(why);
            }
        };
        sink.emit(&WorkflowEvent::StepStarted {
            seq: step.seq,
            kind,
            round: step.round,
            sandbox,
            tool,
            model,
            template,
        });
        let record = match self
            .launcher
            .run(prepared, &StepProgress { sink, kind }, stop)
            .await
        {
            Ok(record) => record,
            Err(e) => {
                let why = format!("the {kind} step ended without a record: {e:#}");
                let ending = StepEnding {
                    status: StepStatus::Failed,
                    verdict: None,
                    error: Some(&why),
                    cost_usd: None,
                    duration_ms: None,
                };
                let _ = self.store().end_step(step_id, &ending).await;
                return Err(why);
            }
        };
        let (status, verdict, error) = match record.status {
            SandboxStatus::Completed if kind == StepKind::Checker => {
                match read_verdict(None, record.result_text.as_deref().unwrap_or("")) {
                    Ok(v) => (StepStatus::Completed, Some(v), None),
                    Err(problems) => (
                        StepStatus::Failed,
                        None,
                        Some(format!("no readable verdict: {}", problems.join("; "))),
                    ),
                }
            }
            SandboxStatus::Completed => (StepStatus::Completed, None, None),
            SandboxStatus::Stopped => (StepStatus::Stopped, None, record.error.clone()),
            _ => (
                StepStatus::Failed,
                None,
                Some(record.error.clone().unwrap_or_else(|| "failed".into())),
            ),
        };
        self.store()
            .end_step(
                step_id,
                &StepEnding {
                    status,
                    verdict: verdict.as_ref(),
                    error: error.as_deref(),
                    cost_usd: record.cost_usd,
                    duration_ms: record.duration_ms,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        sink.emit(&WorkflowEvent::StepFinished {
            seq: step.seq,
            kind,
            round: step.round,
            status,
            verdict,
            error,
            cost_usd: record.cost_usd,
            duration_ms: record.duration_ms,
        });
        Ok(())
    }

    /// Records the run's end; a standalone run that passed on GitHub gets its pull request.
    async fn end_run(
        &self,
        run: &RunRecord,
        status: RunStatus,
        error: Option<String>,
        findings: Vec<String>,
        sink: &dyn WorkflowSink,
    ) -> anyhow::Result<RunRecord> {
        let mut pr_url = None;
        let mut error = error;
        if status == RunStatus::Passed && run.work_chain_id.is_none() {
            let run = self
                .store()
                .get_run(run.id)
                .await?
                .unwrap_or_else(|| run.clone());
            let body = run_pr_body(&run);
            match self
                .open_pull_request(
                    &run.repo,
                    run.branch.as_deref(),
                    run.base_branch.as_deref(),
                    &run.task.title,
                    &body,
                )
                .await
            {
                Ok(url) => pr_url = url,
                Err(e) => error = Some(format!("passed, but the pull request was not opened: {e}")),
            }
        }
        let status = self
            .store()
            .finish_run(
                run.id,
                status,
                error.as_deref(),
                &findings,
                pr_url.as_deref(),
            )
            .await?;
        sink.emit(&WorkflowEvent::RunFinished {
            run: run.id,
            status,
            error,
            findings,
            pr_url,
        });
        self.store()
            .get_run(run.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("workflow run {} disappeared", run.id))
    }

    /// Drives a chain to its end: each item a workflow run on the chain's branch, in order.
    pub async fn drive_chain(
        &self,
        id: WorkChainId,
        sink: &dyn WorkflowSink,
        stop: CancellationToken,
    ) -> anyhow::Result<ChainRecord> {
        let chain = self
            .store()
            .get_chain(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("work chain {id} is not in the database"))?;
        if chain.status != RunStatus::Running {
            return Ok(chain);
        }
        if !self
            .store()
            .claim_chain(id, chain.meta.runner.as_deref(), &self.me)
            .await?
        {
            anyhow::bail!("work chain {id} is being driven by another CodeCourier");
        }
        let _beat = self.heartbeat(Beat::Chain(id), stop.clone());
        let env = self.store().get_env(&chain_scope(id)).await?;
        let title = chain
            .items
            .first()
            .map(|t| t.title.clone())
            .unwrap_or_default();
        let (base, branch) = match (&chain.base_branch, &chain.branch) {
            (Some(base), Some(branch)) => (base.clone(), branch.clone()),
            _ => match self
                .prepare_branch(
                    &chain.repo,
                    chain.base_branch.as_deref(),
                    &format!("chain-{}", id.short()),
                    &title,
                )
                .await
            {
                Ok((base, branch)) => {
                    self.store().set_chain_branch(id, &base, &branch).await?;
                    (base, branch)
                }
                Err(error) => {
                    return self
                        .end_chain(&chain, RunStatus::Failed, Some(error), sink)
                        .await
                }
            },
        };
        sink.emit(&WorkflowEvent::BranchReady {
            base: base.clone(),
            branch: branch.clone(),
        });
        let owner = RunOwner {
            project_id: chain.project_id,
            launched_by: &chain.meta.launched_by,
            discord: chain.meta.discord(),
        };
        let mut first_failure = None;
        for (position, item) in chain.items.iter().enumerate() {
            let position = position as u32;
            let existing = chain
                .runs
                .iter()
                .find(|r| r.chain_position == Some(position));
            let run_id = match existing {
                Some(run) => run.id,
                None => {
                    let run_id = WorkflowRunId::new();
                    self.store()
                        .insert_run(&NewRun {
                            id: run_id,
                            workflow: &chain.workflow,
                            task: item,
                            repo: &chain.repo,
                            base_branch: Some(&base),
                            branch: Some(&branch),
                            chain: Some((id, position)),
                            owner: &owner,
                        })
                        .await?;
                    self.store().put_env(&run_scope(run_id), &env).await?;
                    run_id
                }
            };
            sink.emit(&WorkflowEvent::ItemStarted {
                position,
                title: item.title.clone(),
                run: run_id,
            });
            let record = self.drive_run(run_id, sink, stop.clone()).await?;
            match record.status {
                RunStatus::Passed => {}
                RunStatus::Stopped => {
                    return self
                        .end_chain(
                            &chain,
                            RunStatus::Stopped,
                            Some(format!(
                                "stopped at issue {} ({})",
                                position + 1,
                                item.title
                            )),
                            sink,
                        )
                        .await
                }
                _ => {
                    let why = format!(
                        "issue {} ({}) failed: {}",
                        position + 1,
                        item.title,
                        record.error.as_deref().unwrap_or("failed")
                    );
                    if !chain.continue_on_failure {
                        let error = format!(
                            "{why}; the chain stopped there ({} of {} issues not run)",
                            chain.items.len() as u32 - position - 1,
                            chain.items.len()
                        );
                        return self
                            .end_chain(&chain, RunStatus::Failed, Some(error), sink)
                            .await;
                    }
                    first_failure.get_or_insert(why);
                }
            }
        }
        match first_failure {
            None => self.end_chain(&chain, RunStatus::Passed, None, sink).await,
            Some(why) => {
                self.end_chain(&chain, RunStatus::Failed, Some(why), sink)
                    .await
            }
        }
    }

    /// Records the chain's end; the branch gets one pull request listing every issue and its
    /// outcome when some issue passed (GitHub).
    async fn end_chain(
        &self,
        chain: &ChainRecord,
        status: RunStatus,
        error: Option<String>,
        sink: &dyn WorkflowSink,
    ) -> anyhow::Result<ChainRecord> {
        let chain = self
            .store()
            .get_chain(chain.id)
            .await?
            .unwrap_or_else(|| chain.clone());
        let mut pr_url = None;
        let mut error = error;
        if chain.runs.iter().any(|r| r.status == RunStatus::Passed) {
            let title = format!(
                "{} ({} issue{})",
                pull_request_title(&chain.items[0].title),
                chain.items.len(),
                if chain.items.len() == 1 { "" } else { "s" }
            );
            match self
                .open_pull_request(
                    &chain.repo,
                    chain.branch.as_deref(),
                    chain.base_branch.as_deref(),
                    &title,
                    &chain_pr_body(&chain),
                )
                .await
            {
                Ok(url) => pr_url = url,
                Err(e) => {
                    let note = format!("the pull request was not opened: {e}");
                    error = Some(match error {
                        Some(error) => format!("{error}; {note}"),
                        None => note,
                    });
                }
            }
        }
        self.store()
            .finish_chain(chain.id, status, error.as_deref(), pr_url.as_deref())
            .await?;
        sink.emit(&WorkflowEvent::ChainFinished {
            status,
            error,
            pr_url,
        });
        self.store()
            .get_chain(chain.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("work chain {} disappeared", chain.id))
    }

    /// A draft pull request for a GitHub repository's branch (None for a local repository).
    async fn open_pull_request(
        &self,
        repo: &str,
        branch: Option<&str>,
        base: Option<&str>,
        title: &str,
        body: &str,
    ) -> Result<Option<String>, String> {
        let Some(RepoRef::Github { owner, name }) = RepoRef::parse(repo) else {
            return Ok(None);
        };
        let (Some(branch), Some(base)) = (branch, base) else {
            return Ok(None);
        };
        let github = crate::github::connect(&self.launcher.github, &owner, &name)
            .await
            .map_err(|e| e.to_string())?;
        let pr = github
            .open_pull_request(branch, base, &pull_request_title(title), body, true)
            .await
            .map_err(|e| self.launcher.redact(&e.to_string()))?;
        Ok(Some(pr.html_url))
    }

    /// Creates the run's feature branch from the base: on GitHub through the API, for a local
    /// repository with git on it. Returns (base, branch).
    async fn prepare_branch(
        &self,
        repo: &str,
        base: Option<&str>,
        prefix: &str,
        title: &str,
    ) -> Result<(String, String), String> {
        let wanted = match slug(title, 30) {
            s if s.is_empty() => format!("codecourier/{prefix}"),
            s => format!("codecourier/{prefix}-{s}"),
        };
        match RepoRef::parse(repo) {
            Some(RepoRef::Github { owner, name }) => {
                let github = crate::github::connect(&self.launcher.github, &owner, &name)
                    .await
                    .map_err(|e| e.to_string())?;
                let repository = github.repository().await.map_err(|e| e.to_string())?;
                let base = base
                    .map(str::to_string)
                    .unwrap_or(repository.default_branch);
                let sha = github.branch_head(&base).await.map_err(|e| e.to_string())?;
                let branch = github
                    .create_branch(&wanted, &sha)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((base, branch))
            }
            Some(RepoRef::Local { path }) => {
                // Hooks and configuration other than the repository's own out of play.
                let git = |args: &[&str]| {
                    std::process::Command::new("git")
                        .env("GIT_CONFIG_NOSYSTEM", "1")
                        .env("GIT_CONFIG_GLOBAL", "/dev/null")
                        .args([
                            "-c",
                            "core.hooksPath=/dev/null",
                            "-c",
                            "core.fsmonitor=false",
                        ])
                        .arg("-C")
                        .arg(&path)
                        .args(args)
                        .output()
                        .map_err(|e| format!("cannot run git: {e}"))
                };
                let base = match base {
                    Some(b) => b.to_string(),
                    None => {
                        let out = git(&["symbolic-ref", "--short", "HEAD"])?;
                        String::from_utf8_lossy(&out.stdout).trim().to_string()
                    }
                };
                let exists = git(&[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/heads/{base}"),
                ])?;
                if !exists.status.success() {
                    return Err(format!("{} has no branch {base}", path.display()));
                }
                for n in 1..=5 {
                    let name = if n == 1 {
                        wanted.clone()
                    } else {
                        format!("{wanted}-{n}")
                    };
                    let out = git(&["branch", &name, &base])?;
                    if out.status.success() {
                        return Ok((base, name));
                    }
                    if !String::from_utf8_lossy(&out.stderr).contains("already exists") {
                        return Err(format!(
                            "creating the branch {name} failed: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ));
                    }
                }
                Err(format!("{wanted} and four numbered variants already exist"))
            }
            None => Err(format!("{repo} is not a repository CodeCourier can reach")),
        }
    }

    /// Keeps telling the store that this process drives the run or chain, until dropped; when the
    /// record was ended from elsewhere (a Stop from another process), `stop` is cancelled.
    fn heartbeat(&self, what: Beat, stop: CancellationToken) -> HeartbeatGuard {
        let store = self.store().clone();
        let me = self.me.clone();
        HeartbeatGuard(tokio::spawn(async move {
            loop {
                let result = match what {
                    Beat::Run(id) => store.run_heartbeat(id, &me).await,
                    Beat::Chain(id) => store.chain_heartbeat(id, &me).await,
                };
                match result {
                    Ok(true) => {}
                    Ok(false) => {
                        stop.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "could not record the heartbeat"),
                }
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        }))
    }
}

#[derive(Clone, Copy)]
enum Beat {
    Run(WorkflowRunId),
    Chain(WorkChainId),
}

struct HeartbeatGuard(tokio::task::JoinHandle<()>);

impl Drop for HeartbeatGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one step needs to run.
struct Step<'a> {
    run: &'a RunRecord,
    kind: StepKind,
    round: u32,
    seq: u32,
    findings: &'a [String],
    base: &'a str,
    branch: &'a str,
    /// The last finished step's sandbox: the launch this one continues.
    previous: Option<SandboxId>,
    env: &'a [(String, Secret)],
}

fn done_step(step: &crate::store::StepRecord) -> DoneStep {
    let end = match step.status {
        StepStatus::Completed => StepEnd::Completed {
            verdict: step.verdict.as_deref().map(|v| Verdict {
                pass: v == "pass",
                findings: step.findings.clone(),
            }),
        },
        StepStatus::Failed => StepEnd::Failed {
            error: step.error.clone().unwrap_or_else(|| "failed".into()),
        },
        StepStatus::Stopped => StepEnd::Stopped,
        StepStatus::Running | StepStatus::Interrupted => StepEnd::Interrupted,
    };
    DoneStep {
        kind: step.step,
        round: step.round,
        end,
    }
}

/// A step's line for timelines and pull requests: "designer · Claude Code · model · ✅ · $0.01 · 3.2s".
pub fn step_line(step: &crate::store::StepRecord) -> String {
    let mut text = format!("{}", step.step);
    if step.step != StepKind::Designer {
        let _ = write!(text, " {}", step.round);
    }
    let _ = write!(
        text,
        " · {} · {} · template {}",
        step.tool, step.model, step.template
    );
    let outcome = match (step.status, step.verdict.as_deref()) {
        (StepStatus::Completed, Some("pass")) => "✅ pass".to_string(),
        (StepStatus::Completed, Some(_)) => "❌ fail".to_string(),
        (StepStatus::Completed, None) => "✅".to_string(),
        (StepStatus::Running, _) => "⏳".to_string(),
        (StepStatus::Failed, _) => "❌ failed".to_string(),
        (StepStatus::Stopped, _) => "🛑 stopped".to_string(),
        (StepStatus::Interrupted, _) => "↻ interrupted, ran again".to_string(),
    };
    let _ = write!(text, " · {outcome}");
    if let Some(cost) = step.cost_usd {
        let _ = write!(text, " · ${cost:.4}");
    }
    if let Some(ms) = step.duration_ms {
        let _ = write!(text, " · {:.1}s", ms as f64 / 1000.0);
    }
    text
}

fn run_pr_body(run: &RunRecord) -> String {
    let mut text = format!("{}\n\n", crate::agent::clip(run.task.prompt.trim(), 4000));
    let _ = writeln!(text, "### Workflow `{}` passed\n", run.workflow.name);
    for step in &run.steps {
        let _ = writeln!(text, "- {}", step_line(step));
    }
    let _ = write!(
        text,
        "\nLaunched by {} via CodeCourier (workflow run {}).",
        run.meta.launched_by, run.id
    );
    text
}

fn chain_pr_body(chain: &ChainRecord) -> String {
    let mut text = format!(
        "A CodeCourier work chain: {} issue{} on one branch, each through the `{}` workflow.\n\n",
        chain.items.len(),
        if chain.items.len() == 1 { "" } else { "s" },
        chain.workflow.name
    );
    for (i, item) in chain.items.iter().enumerate() {
        let outcome = match chain
            .runs
            .iter()
            .find(|r| r.chain_position == Some(i as u32))
        {
            Some(run) => match run.status {
                RunStatus::Passed => "✅ passed".to_string(),
                RunStatus::Failed => {
                    format!("❌ failed: {}", run.error.as_deref().unwrap_or("failed"))
                }
                RunStatus::Stopped => "🛑 stopped".to_string(),
                RunStatus::Running => "⏳ running".to_string(),
            },
            None => "not run".to_string(),
        };
        let _ = writeln!(text, "{}. **{}** — {outcome}", i + 1, item.title);
    }
    let _ = write!(
        text,
        "\nLaunched by {} via CodeCourier (work chain {}).",
        chain.meta.launched_by, chain.id
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_is_stale_when_its_heartbeat_is_old_or_its_process_is_gone() {
        let now = Some(Utc::now());
        let me = format!("{}:{}:abc", this_host(), std::process::id());
        assert!(!is_stale(Some(&me), now, &me));
        let old = Some(Utc::now() - chrono::Duration::minutes(5));
        assert!(is_stale(Some(&me), old, &me));
        assert!(is_stale(None, None, &me));
        // A process id that cannot exist on this machine.
        let gone = format!("{}:999999999:x", this_host());
        assert!(is_stale(Some(&gone), now, &me));
        // An earlier process that had our pid (a restarted container).
        let earlier = format!("{}:{}:old", this_host(), std::process::id());
        assert!(is_stale(Some(&earlier), now, &me));
        // A live process here, and another machine's runner, are trusted while fresh.
        assert!(!is_stale(Some(&format!("{}:1:x", this_host())), now, &me));
        assert!(!is_stale(Some("elsewhere:1:x"), now, &me));
    }
}
