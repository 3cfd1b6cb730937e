//! The launch sequence (DESIGN.md section 4): validate → record → provision → clone → branch →
//! credentials → environment → system prompt → tool setup → agent → finish. Every phase is
//! persisted and emitted; every run ends in a terminal status, with the sandbox cleaned up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::{ProgressEvent, ProgressSink};
use super::naming::{
    branch_name, commit_message, pull_request_body, pull_request_title, PullRequestFacts,
};
use super::prompt::{learnings_section, read_only_system_prompt, system_prompt};
use super::scan::{self, IssueSessionStatus};
use super::workflow::{self, Verdict};
use super::{Phase, PhaseOutcome, SandboxStatus};
use crate::agent::{
    self, AgentContext, AgentEvent, AgentResult, LEARNINGS_FILE, SYSTEM_PROMPT_FILE,
};
use crate::catalog::{Catalog, LaunchMode, LaunchRequest, PrPolicy, RepoRef, ScanTask, Tool};
use crate::config::Config;
use crate::config::GithubConfig;
use crate::github::{self, GithubError, RepoClient};
use crate::ids::{IssueSessionId, SandboxId};
use crate::redact::Redactor;
use crate::sandbox::{
    run_captured, Exec, LineSplitter, Mount, Output, SandboxError, SandboxHandle, SandboxProvider,
    SandboxSpec, PROJECT_DIR,
};
use crate::secret::Secret;
use crate::store::{
    Commit, DiscordOrigin, Finish, IssueSessionLink, NewIssueSession, NewSandbox, Project,
    SandboxRecord, Store, StoreError, WorkflowLink,
};

/// Where a local repository appears inside the sandbox.
const ORIGIN_MOUNT: &str = "/srv/origin";
/// Our git commands carry the token in this variable; the agent's environment never does.
const TOKEN_VAR: &str = "CODECOURIER_GIT_TOKEN";
const CREDENTIAL_HELPER: &str = "!f() { test -n \"$CODECOURIER_GIT_TOKEN\" || exit 0; echo username=x-access-token; echo \"password=$CODECOURIER_GIT_TOKEN\"; }; f";
/// How much of a failing command's output an error shows.
const ERROR_TAIL: usize = 1500;
/// Host settings an npm install inside a local sandbox needs to reach the registry as the host does.
const NPM_HOST_SETTINGS: [&str; 9] = [
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "npm_config_registry",
    "npm_config_cafile",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
];
/// Session archives beyond this (base64 bytes) are not kept: a follow-up then starts afresh.
const MAX_SESSION_ARCHIVE: usize = 32 * 1024 * 1024;
/// Past the sandbox's own timeout, how long before the launcher stops waiting for the provider.
const TIMEOUT_GRACE: Duration = Duration::from_secs(15);

/// Who launched, for the record and the messages.
#[derive(Debug, Clone)]
pub struct LaunchOrigin {
    pub launched_by: String,
    pub discord: Option<DiscordOrigin>,
    /// The project the launch belongs to (a Discord channel's); else the repository's own.
    pub project_id: Option<i64>,
    /// The issue session whose issue this launch works on (a scan's own session is made by
    /// `prepare`).
    pub issue_session: Option<IssueSessionId>,
    /// The workflow run and step the launch is.
    pub workflow: Option<WorkflowLink>,
}

/// Where a project's keys and variables are stored.
pub fn project_scope(project_id: i64) -> String {
    format!("project:{project_id}")
}

/// Where a person's own keys are stored.
pub fn user_scope(user: crate::ids::DiscordId) -> String {
    format!("user:{user}")
}

/// Problems found before anything is recorded: the person launching can fix them.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Prepared {
    pub fn request(&self) -> &LaunchRequest {
        &self.request
    }

    /// The issue session the launch belongs to: the one its scan answers, or the one it fixes.
    pub fn issue_session(&self) -> Option<IssueSessionId> {
        self.issue_session
    }
}

/// A launch that passed validation and has its record.
pub struct Prepared {
    pub id: SandboxId,
    /// The validate and record phases, shown when the run starts: (phase, detail, duration in ms).
    early_phases: [(Phase, String, i64); 2],
    launched_by: String,
    request: LaunchRequest,
    project: Project,
    redactor: Redactor,
    keys: Vec<(String, Secret)>,
    issue_session: Option<IssueSessionId>,
}

pub struct Launcher {
    store: Store,
    provider: Arc<dyn SandboxProvider>,
    catalog: Catalog,
    agent_keys: BTreeMap<String, Secret>,
    pub(super) github: GithubConfig,
    redactor: Redactor,
    idle_notice: Duration,
}

/// A phase's detail line: `Err` when the phase failed but the run goes on.
type Detail = Result<String, String>;

/// Why a run ended early.
#[derive(Debug)]
enum Ending {
    Failed { phase: Phase, error: String },
    TimedOut { phase: Phase },
    Stopped { phase: Phase },
}

impl Ending {
    fn from_sandbox(phase: Phase, e: SandboxError) -> Self {
        match e {
            SandboxError::Expired => Ending::TimedOut { phase },
            SandboxError::Killed => Ending::Stopped { phase },
            other => Ending::Failed {
                phase,
                error: other.to_string(),
            },
        }
    }
}

/// The repository as git sees it, found by the prepare phase.
#[derive(Default)]
struct Origin {
    clone_url: String,
    mounts: Vec<Mount>,
    token: Option<Secret>,
    github: Option<RepoClient>,
    /// The branch was created on GitHub by the prepare phase (and is removed again if unused).
    branch_created: bool,
    /// Resolved through the API (GitHub only): the base branch and the feature branch reserved.
    base_branch: Option<String>,
    branch: Option<String>,
}

/// What the finish phase published on GitHub.
#[derive(Default)]
struct Links {
    pr_url: Option<String>,
    compare_url: Option<String>,
    /// A sentence for the finish phase's detail.
    note: Option<String>,
}

/// What the sequence produced when it reached the agent.
struct AgentRun {
    result: AgentResult,
    failure: Option<String>,
    /// A read-only launch's checked answer.
    answer: Option<Answer>,
    /// A scan's answers as given, when they could not be used.
    raw_answer: Option<String>,
}

/// Per-run state shared by the phases.
struct Run<'a> {
    id: SandboxId,
    request: &'a LaunchRequest,
    tool: &'a Tool,
    project: &'a Project,
    redactor: Redactor,
    keys: &'a [(String, Secret)],
    sink: &'a dyn ProgressSink,
    handle: Option<SandboxHandle>,
    base_branch: String,
    base_sha: String,
    branch: String,
    /// Where git clones from and pushes to, with the token (None for local repositories).
    origin: Origin,
    links: Links,
    started: std::time::Instant,
    launched_by: &'a str,
    issue_session: Option<IssueSessionId>,
    agent: Option<AgentRun>,
    commits: Vec<Commit>,
    pushed: Option<bool>,
}

/// The form a read-only launch answers in.
#[derive(Clone, Copy)]
enum Form<'a> {
    Issues(&'a ScanTask),
    Verdict,
}

/// A read-only launch's checked answer.
enum Answer {
    Issues(scan::Answer),
    Verdict(Verdict),
}

impl Answer {
    /// A few words for the agent phase's detail.
    fn summary(&self) -> String {
        match self {
            Answer::Issues(a) => {
                let counts = scan::severity_counts(a.issues.iter().map(|i| &i.severity));
                format!(
                    "{} issue{}{}",
                    a.issues.len(),
                    if a.issues.len() == 1 { "" } else { "s" },
                    if counts.is_empty() {
                        String::new()
                    } else {
                        format!(" ({counts})")
                    }
                )
            }
            Answer::Verdict(v) => format!("verdict {}", if v.pass { "pass" } else { "fail" }),
        }
    }
}

impl<'a> Form<'a> {
    fn of(request: &'a LaunchRequest) -> Option<Self> {
        match &request.mode {
            LaunchMode::Scan(task) => Some(Form::Issues(task)),
            LaunchMode::Check => Some(Form::Verdict),
            LaunchMode::Work => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Form::Issues(_) => "issue",
            Form::Verdict => "verdict",
        }
    }

    fn answer_of(self) -> &'static str {
        match self {
            Form::Issues(_) => "scan's answer",
            Form::Verdict => "checker's answer",
        }
    }

    fn schema(self) -> serde_json::Value {
        match self {
            Form::Issues(_) => scan::answer_schema(),
            Form::Verdict => workflow::verdict_schema(),
        }
    }

    fn read(self, result: &AgentResult) -> Result<Answer, Vec<String>> {
        let structured = result.structured_output.as_ref();
        match self {
            Form::Issues(task) => {
                scan::read_answer(structured, &result.text, task.max_issues).map(Answer::Issues)
            }
            Form::Verdict => workflow::read_verdict(structured, &result.text).map(Answer::Verdict),
        }
    }

    fn repair_prompt(self, tool: &Tool, problems: &[String], raw: &str) -> String {
        match self {
            Form::Issues(task) => scan::repair_prompt(task, tool, problems, raw),
            Form::Verdict => {
                workflow::verdict_repair_prompt(problems, raw, tool.capabilities.structured_output)
            }
        }
    }
}

impl Launcher {
    pub fn new(
        config: &Config,
        store: Store,
        provider: Arc<dyn SandboxProvider>,
        catalog: Catalog,
    ) -> Self {
        let mut redactor = Redactor::default();
        let config_secrets = config
            .agent_keys
            .values()
            .chain(config.github.token.iter())
            .chain(config.discord.token.iter())
            .chain(config.e2b.api_key.iter())
            .chain(config.secret_key.iter());
        for secret in config_secrets {
            redactor.add(secret.expose());
        }
        Self {
            store,
            provider,
            catalog,
            agent_keys: config.agent_keys.clone(),
            github: config.github.clone(),
            redactor,
            idle_notice: config.agent_idle_notice,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn provider(&self) -> &Arc<dyn SandboxProvider> {
        &self.provider
    }

    /// Opens a draft pull request for a finished launch that pushed commits but has none (launched
    /// with `pr: none`, or the pull request failed then). Returns its address.
    pub async fn open_pull_request(&self, record: &SandboxRecord) -> Result<String, String> {
        let RepoRef::Github { owner, name } = &record.request.repo else {
            return Err("only GitHub repositories get pull requests".into());
        };
        let (Some(branch), Some(base)) = (&record.branch, &record.base_branch) else {
            return Err("this sandbox never got a branch".into());
        };
        if record.commits.is_empty() || record.pushed != Some(true) {
            return Err("this sandbox pushed no commits, so there is nothing to review".into());
        }
        if let Some(url) = &record.pr_url {
            return Ok(url.clone());
        }
        let github = github::connect(&self.github, owner, name)
            .await
            .map_err(|e| e.to_string())?;
        let body = pull_request_body(&PullRequestFacts {
            prompt: &record.request.prompt,
            summary: record.result_text.as_deref().unwrap_or(""),
            launched_by: &record.launched_by,
            sandbox: record.id,
            cost_usd: record.cost_usd,
            duration: Duration::from_millis(record.duration_ms.unwrap_or(0).max(0) as u64),
        });
        let pr = github
            .open_pull_request(
                branch,
                base,
                &pull_request_title(&record.request.prompt),
                &body,
                true,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .set_pr_url(record.id, &pr.html_url)
            .await
            .map_err(|e| e.to_string())?;
        Ok(pr.html_url)
    }

    /// Ends a prepared launch that will not run, with the reason.
    pub async fn abandon(&self, prepared: Prepared, reason: &str) -> Result<(), StoreError> {
        let finish = Finish {
            error: Some(reason.to_string()),
            ..Default::default()
        };
        self.store
            .finish(prepared.id, SandboxStatus::Failed, &finish)
            .await
            .map(|_| ())
    }

    /// Hides the configured secrets in text bound for people (error replies, say).
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// The validate and record phases. Nothing is recorded when validation fails.
    pub async fn prepare(
        &self,
        request: LaunchRequest,
        origin: &LaunchOrigin,
    ) -> Result<Prepared, LaunchError> {
        let validate_started = Utc::now();
        let tool = self.catalog.tool(&request.tool).ok_or_else(|| {
            LaunchError::Invalid(format!("tool {} is not in the catalog", request.tool))
        })?;
        agent::supported(tool).map_err(LaunchError::Invalid)?;

        let project = match origin.project_id {
            Some(id) => self.store.get_project(id).await?,
            None => None,
        };
        let project = match project {
            Some(p) => p,
            None => {
                self.store
                    .project_for_repo(&request.repo.to_string())
                    .await?
            }
        };
        // The project's variables, under what the launch itself sets.
        let mut request = request;
        for (name, value) in self.store.get_env(&project_scope(project.id)).await? {
            if !request.env.iter().any(|(n, _)| *n == name) {
                request.env.push((name, value));
            }
        }

        // Keys resolve: the launch's own variables, then the person's, then the project's, then
        // CodeCourier's environment.
        let mut scopes = Vec::new();
        if let Some(discord) = &origin.discord {
            scopes.push(user_scope(discord.user_id));
        }
        scopes.push(project_scope(project.id));
        let mut keys: Vec<(String, Secret)> = Vec::new();
        for name in tool.required_keys.iter().flatten() {
            if keys.iter().any(|(n, _)| n == name) {
                continue;
            }
            let mut value = request
                .env
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone());
            for scope in &scopes {
                if value.is_none() {
                    value = self.store.get_secret(scope, name).await?;
                }
            }
            if let Some(value) = value.or_else(|| self.agent_keys.get(name).cloned()) {
                keys.push((name.clone(), value));
            }
        }
        if !tool.keys_satisfied(&|k| keys.iter().any(|(n, _)| n == k)) {
            let how = if origin.discord.is_some() {
                "a server manager can add it with /project keys, or the operator in CodeCourier's environment"
            } else {
                "set it in .env or the environment, or pass it with --env"
            };
            return Err(LaunchError::Invalid(format!(
                "{} needs {}: {how}",
                tool.name,
                tool.keys_description()
            )));
        }
        match &request.repo {
            RepoRef::Local { .. } if self.provider.name() != "local" => {
                return Err(LaunchError::Invalid(format!(
                    "a local repository cannot be reached from {} sandboxes; push it to GitHub or use SANDBOX_PROVIDER=local",
                    self.provider.name()
                )))
            }
            RepoRef::Github { owner, name } if self.github.token.is_none() && self.github.app.is_none() => {
                return Err(LaunchError::Invalid(format!(
                    "GITHUB_TOKEN (or a GitHub App: GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY) is needed to clone and push {owner}/{name}; set it in .env or the environment"
                )))
            }
            _ => {}
        }
        let validate_ended = Utc::now();

        let project = self
            .store
            .project_for_repo(&request.repo.to_string())
            .await?;
        let repo_text = request.repo.to_string();
        let scan_session = request.scan_task().map(|task| NewIssueSession {
            id: IssueSessionId::new(),
            project_id: Some(project.id),
            repo: &repo_text,
            focus: task.focus.as_deref(),
            tool: &request.tool,
            model: &request.model,
            max_issues: task.max_issues,
            launched_by: &origin.launched_by,
            discord: origin.discord,
        });
        let issue_session = match (&scan_session, origin.issue_session) {
            (Some(session), _) => Some(IssueSessionLink::Scan(session)),
            (None, Some(id)) => Some(IssueSessionLink::Fix(id)),
            (None, None) => None,
        };
        let id = self
            .store
            .insert_sandbox(&NewSandbox {
                request: &request,
                launched_by: &origin.launched_by,
                discord: origin.discord,
                project_id: Some(project.id),
                issue_session,
                workflow: origin.workflow,
            })
            .await?;
        let issue_session = scan_session.as_ref().map(|s| s.id).or(origin.issue_session);
        let recorded = Utc::now();
        let key_names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
        let early_phases = [
            (
                Phase::Validate,
                format!(
                    "{} · {} · key {}",
                    tool.name,
                    request.model,
                    key_names.join(", ")
                ),
                validate_started,
                validate_ended,
            ),
            (
                Phase::Record,
                match (request.scan_task(), issue_session) {
                    (Some(_), Some(session)) => format!(
                        "issue session {} · sandbox {} of project {}",
                        session.short(),
                        id.short(),
                        project.name
                    ),
                    _ => format!("sandbox {} of project {}", id.short(), project.name),
                },
                validate_ended,
                recorded,
            ),
        ];
        for (phase, detail, started, ended) in &early_phases {
            self.store
                .record_phase(id, *phase, *started, *ended, Some(detail))
                .await?;
        }
        let early_phases = early_phases.map(|(phase, detail, started, ended)| {
            (phase, detail, (ended - started).num_milliseconds())
        });

        let mut redactor = self.redactor.clone();
        for (_, value) in &keys {
            redactor.add(value.expose());
        }
        for (name, value) in &request.env {
            if looks_secret(name, value.expose()) {
                redactor.add(value.expose());
            }
        }
        Ok(Prepared {
            id,
            early_phases,
            launched_by: origin.launched_by.clone(),
            request,
            project,
            redactor,
            keys,
            issue_session,
        })
    }

    /// Runs a prepared launch to its end. The record always reaches a terminal status, and the
    /// sandbox is always killed afterwards.
    pub async fn run(
        &self,
        prepared: Prepared,
        sink: &dyn ProgressSink,
        stop: CancellationToken,
    ) -> anyhow::Result<SandboxRecord> {
        let started = std::time::Instant::now();
        let Prepared {
            id,
            early_phases,
            launched_by,
            request,
            project,
            redactor,
            keys,
            issue_session,
        } = prepared;
        let tool = self
            .catalog
            .tool(&request.tool)
            .expect("checked in prepare");
        for (phase, detail, duration_ms) in early_phases {
            let event = ProgressEvent::PhaseFinished {
                phase,
                outcome: PhaseOutcome::Ok,
                detail: Some(detail),
                duration_ms,
            };
            self.persist(id, &event).await;
            sink.emit(id, &event);
        }
        let mut run = Run {
            id,
            request: &request,
            tool,
            project: &project,
            redactor: redactor.clone(),
            keys: &keys,
            sink,
            handle: None,
            base_branch: String::new(),
            base_sha: String::new(),
            branch: String::new(),
            origin: Origin::default(),
            links: Links::default(),
            started,
            launched_by: &launched_by,
            issue_session,
            agent: None,
            commits: Vec::new(),
            pushed: None,
        };
        let timeout = Duration::from_millis(request.resources.timeout_ms);
        let outcome = tokio::select! {
            outcome = self.sequence(&mut run) => outcome,
            _ = stop.cancelled() => Err(Ending::Stopped { phase: self.current_phase(id).await }),
            _ = tokio::time::sleep(timeout + TIMEOUT_GRACE) => Err(Ending::TimedOut { phase: self.current_phase(id).await }),
        };
        let mut finish = Finish {
            duration_ms: Some(started.elapsed().as_millis() as i64),
            commits: run.commits.clone(),
            pushed: run.pushed,
            pr_url: run.links.pr_url.clone(),
            compare_url: run.links.compare_url.clone(),
            result: run.agent.as_ref().map(|a| AgentResult {
                // A checked structured answer is the result, whatever text came with it.
                text: run.redactor.redact(
                    match (&a.answer, &a.result.structured_output) {
                        (Some(_), Some(_)) => raw_answer(&a.result),
                        _ => a.result.text.clone(),
                    }
                    .as_str(),
                ),
                ..a.result.clone()
            }),
            ..Default::default()
        };
        let status = match &outcome {
            Ok(()) => match run.agent.as_ref().and_then(|a| a.failure.clone()) {
                None => SandboxStatus::Completed,
                Some(error) => {
                    finish.failed_phase = Some(Phase::Agent);
                    finish.error = Some(redactor.redact(&error));
                    SandboxStatus::Failed
                }
            },
            Err(ending) => {
                let (phase, status, message) = match ending {
                    Ending::Failed { phase, error } => {
                        (*phase, SandboxStatus::Failed, redactor.redact(error))
                    }
                    Ending::TimedOut { phase } => (
                        *phase,
                        SandboxStatus::TimedOut,
                        format!(
                            "the sandbox's time limit of {} ran out during {phase}",
                            humantime::format_duration(timeout)
                        ),
                    ),
                    Ending::Stopped { phase } => (
                        *phase,
                        SandboxStatus::Stopped,
                        format!("stopped during {phase}"),
                    ),
                };
                self.close_open_phase(&run, phase, &message).await;
                finish.failed_phase = Some(phase);
                finish.error = Some(message);
                status
            }
        };
        let final_status = self.store.finish(id, status, &finish).await?;
        if let (Some(_), Some(session)) = (request.scan_task(), issue_session) {
            self.finish_issue_session(
                session,
                final_status,
                &finish,
                run.agent.as_ref(),
                &run.redactor,
            )
            .await?;
        }
        // The end is recorded before the sandbox goes: a recovery running meanwhile in another
        // process sees a finished record, not a running one whose sandbox has vanished.
        let provider_id = self
            .store
            .get_sandbox(id)
            .await?
            .and_then(|r| r.provider_sandbox_id);
        if let Some(provider_id) = &provider_id {
            if let Err(e) = self.provider.kill(provider_id).await {
                if !matches!(e, SandboxError::NotFound(_)) {
                    tracing::warn!(sandbox = %id, error = %e, "could not clean up the sandbox");
                }
            }
        }
        let event = ProgressEvent::Status {
            status: final_status,
        };
        self.persist(id, &event).await;
        sink.emit(id, &event);
        self.store
            .get_sandbox(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("sandbox {id} disappeared from the database"))
    }

    async fn current_phase(&self, id: SandboxId) -> Phase {
        self.store
            .get_sandbox(id)
            .await
            .ok()
            .flatten()
            .and_then(|r| r.current_phase)
            .unwrap_or(Phase::Provision)
    }

    /// Marks the phase the run ended in as failed, if its record still says running.
    async fn close_open_phase(&self, run: &Run<'_>, phase: Phase, message: &str) {
        let open = self.store.phases(run.id).await.ok().and_then(|phases| {
            phases
                .into_iter()
                .find(|p| p.phase == phase && p.outcome == PhaseOutcome::Running)
        });
        if let Some(open) = open {
            let _ = self
                .store
                .end_phase(run.id, phase, PhaseOutcome::Failed, Some(message))
                .await;
            let event = ProgressEvent::PhaseFinished {
                phase,
                outcome: PhaseOutcome::Failed,
                detail: Some(message.to_string()),
                duration_ms: (Utc::now() - open.started_at).num_milliseconds(),
            };
            self.persist(run.id, &event).await;
            run.sink.emit(run.id, &event);
        }
    }

    async fn persist(&self, id: SandboxId, event: &ProgressEvent) {
        let kind = match event {
            ProgressEvent::PhaseStarted { .. } => "phase_started".to_string(),
            ProgressEvent::PhaseFinished { .. } => "phase_finished".to_string(),
            ProgressEvent::Status { .. } => "status".to_string(),
            ProgressEvent::Note { .. } => "note".to_string(),
            ProgressEvent::Agent { event } => format!(
                "agent.{}",
                serde_json::to_value(event)
                    .ok()
                    .and_then(|v| v["kind"].as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
        };
        let payload = serde_json::to_value(event).unwrap_or_default();
        if let Err(e) = self.store.append_event(id, &kind, &payload).await {
            tracing::warn!(sandbox = %id, error = %e, "could not record an event");
        }
    }

    async fn set_status(
        &self,
        run: &Run<'_>,
        status: SandboxStatus,
        phase: Phase,
    ) -> Result<(), Ending> {
        match self.store.transition(run.id, status).await {
            Ok(()) => {
                let event = ProgressEvent::Status { status };
                self.persist(run.id, &event).await;
                run.sink.emit(run.id, &event);
                Ok(())
            }
            // Ended from elsewhere (`sandboxes stop`): stop here.
            Err(StoreError::IllegalTransition { source, .. }) if source.from.is_terminal() => {
                Err(Ending::Stopped { phase })
            }
            Err(e) => Err(Ending::Failed {
                phase,
                error: e.to_string(),
            }),
        }
    }

    /// Runs one phase: records its start, its end and outcome, and emits both. The work returns its
    /// value and a detail line; a detail given as `Err` marks the phase failed without ending the run.
    async fn phase<T>(
        &self,
        run: &Run<'_>,
        phase: Phase,
        work: impl std::future::Future<Output = Result<(T, Detail), Ending>>,
    ) -> Result<T, Ending> {
        let started = std::time::Instant::now();
        self.store
            .start_phase(run.id, phase)
            .await
            .map_err(|e| Ending::Failed {
                phase,
                error: e.to_string(),
            })?;
        let event = ProgressEvent::PhaseStarted { phase };
        self.persist(run.id, &event).await;
        run.sink.emit(run.id, &event);
        let result = work.await;
        let (outcome, detail) = match &result {
            Ok((_, Ok(detail))) => (PhaseOutcome::Ok, run.redactor.redact(detail)),
            Ok((_, Err(detail))) => (PhaseOutcome::Failed, run.redactor.redact(detail)),
            Err(Ending::Failed { error, .. }) => (PhaseOutcome::Failed, run.redactor.redact(error)),
            Err(Ending::TimedOut { .. }) => (PhaseOutcome::Failed, "timed out".into()),
            Err(Ending::Stopped { .. }) => (PhaseOutcome::Failed, "stopped".into()),
        };
        let _ = self
            .store
            .end_phase(run.id, phase, outcome, Some(&detail))
            .await;
        let event = ProgressEvent::PhaseFinished {
            phase,
            outcome,
            detail: Some(detail),
            duration_ms: started.elapsed().as_millis() as i64,
        };
        self.persist(run.id, &event).await;
        run.sink.emit(run.id, &event);
        result.map(|(value, _)| value)
    }

    /// Runs a command in the sandbox; a non-zero exit is a phase failure showing the output's tail.
    async fn sh(
        &self,
        run: &Run<'_>,
        phase: Phase,
        what: &str,
        exec: Exec,
    ) -> Result<String, Ending> {
        let handle = run.handle.as_ref().expect("provisioned");
        let out = run_captured(self.provider.as_ref(), handle, &exec)
            .await
            .map_err(|e| Ending::from_sandbox(phase, e))?;
        if !out.status.success() {
            let detail = format!("{}{}", out.stderr, out.stdout);
            return Err(Ending::Failed {
                phase,
                error: format!("{what} failed: {}", tail(detail.trim(), ERROR_TAIL)),
            });
        }
        Ok(out.stdout.trim().to_string())
    }

    fn git(&self, script: String, token: Option<&Secret>) -> Exec {
        let mut exec = Exec::script(script);
        exec.env
            .push(("GIT_TERMINAL_PROMPT".into(), Secret::new("0")));
        if let Some(token) = token {
            exec.env.push((TOKEN_VAR.into(), token.clone()));
        }
        exec
    }

    async fn sequence(&self, run: &mut Run<'_>) -> Result<(), Ending> {
        let request = run.request;
        let id = run.id;

        run.origin = self
            .phase(run, Phase::Prepare, self.prepare_origin(run))
            .await?;
        if let Some(token) = &run.origin.token {
            run.redactor.add(token.expose());
        }
        if let Some(base) = &run.origin.base_branch {
            run.base_branch = base.clone();
        }
        if let Some(branch) = &run.origin.branch {
            run.branch = branch.clone();
        }
        self.set_status(run, SandboxStatus::Provisioning, Phase::Provision)
            .await?;
        let mounts = run.origin.mounts.clone();
        let spec = SandboxSpec {
            template: request.template.clone(),
            resources: request.resources,
            env: Vec::new(),
            metadata: BTreeMap::from([("codecourier_sandbox_id".to_string(), id.to_string())]),
            mounts,
            host_tools: vec![run.tool.command.clone()],
        };
        let timeout = Duration::from_millis(request.resources.timeout_ms);
        let handle = self
            .phase(run, Phase::Provision, async {
                let handle = self
                    .provider
                    .create(&spec, timeout)
                    .await
                    .map_err(|e| Ending::from_sandbox(Phase::Provision, e))?;
                self.store
                    .set_provider(id, self.provider.name(), &handle.provider_id)
                    .await
                    .map_err(|e| Ending::Failed {
                        phase: Phase::Provision,
                        error: e.to_string(),
                    })?;
                let detail = format!(
                    "{} sandbox {}: {}",
                    self.provider.name(),
                    handle.provider_id,
                    handle.limits_report
                );
                Ok((handle, Ok(detail)))
            })
            .await?;
        run.handle = Some(handle);
        self.set_status(run, SandboxStatus::SettingUp, Phase::Clone)
            .await?;

        let url = run.origin.clone_url.clone();
        let needs_token = run.origin.token.is_some();
        let clone_token = run.origin.token.clone();
        // GitHub: the prepare phase resolved the base branch; local: as asked, else the default.
        let base_to_clone = match (&request.follow_up, &run.origin.github) {
            (Some(f), _) => Some(f.branch.clone()),
            (None, Some(_)) => Some(run.base_branch.clone()),
            (None, None) => request.base_branch.clone(),
        };
        let (base_branch, base_sha) = self
            .phase(run, Phase::Clone, async {
                let branch_arg = base_to_clone
                    .as_deref()
                    .map(|b| format!("--branch {} ", shell_quote(b)))
                    .unwrap_or_default();
                let script = format!(
                    "git -c credential.helper={helper} clone --quiet {branch_arg}{url} {PROJECT_DIR} && cd {PROJECT_DIR} && git rev-parse --abbrev-ref HEAD && git rev-parse HEAD",
                    helper = shell_quote(CREDENTIAL_HELPER),
                    url = shell_quote(&url),
                );
                let mut exec = self.git(script, clone_token.as_ref());
                exec.cwd = Some(crate::sandbox::HOME.into());
                let out = self.sh(run, Phase::Clone, "git clone", exec).await?;
                let mut lines = out.lines();
                let base = lines.next().unwrap_or_default().to_string();
                let sha = lines.next().unwrap_or_default().to_string();
                if base == "HEAD" || sha.is_empty() {
                    return Err(Ending::Failed {
                        phase: Phase::Clone,
                        error: format!("{} has no commits to start from; commit something first", request.repo),
                    });
                }
                let detail = format!("{} at {base} ({})", request.repo, &sha[..sha.len().min(8)]);
                Ok(((base, sha), Ok(detail)))
            })
            .await?;
        // A follow-up's commits are the ones after the branch as it was; its base stays the original.
        run.base_branch = match &request.follow_up {
            Some(f) => f.base_branch.clone(),
            None => base_branch,
        };
        run.base_sha = base_sha;

        // On GitHub the prepare phase reserved the name; a local repository gets it here.
        let branch = if run.branch.is_empty() {
            branch_name(id, &request.prompt)
        } else {
            run.branch.clone()
        };
        let continuing = request.follow_up.is_some();
        let form = Form::of(request);
        let read_only = form.is_some();
        self.phase(run, Phase::Branch, async {
            if request.scan_task().is_some() {
                let detail = format!(
                    "read-only scan of {}: no branch is created or pushed",
                    run.base_branch
                );
                return Ok(((), Ok(detail)));
            }
            if read_only {
                // A checker reads the branch it checks: the record says which.
                self.store
                    .set_branches(id, &run.base_branch, &branch)
                    .await
                    .map_err(|e| Ending::Failed {
                        phase: Phase::Branch,
                        error: e.to_string(),
                    })?;
                let detail = format!("read-only check of {}: nothing is pushed", branch);
                return Ok(((), Ok(detail)));
            }
            if !continuing {
                self.sh(
                    run,
                    Phase::Branch,
                    "creating the branch",
                    self.git(
                        format!("git checkout --quiet -b {}", shell_quote(&branch)),
                        None,
                    ),
                )
                .await?;
            }
            self.store
                .set_branches(id, &run.base_branch, &branch)
                .await
                .map_err(|e| Ending::Failed {
                    phase: Phase::Branch,
                    error: e.to_string(),
                })?;
            let detail = if continuing {
                format!("continuing on {branch} (from {})", run.base_branch)
            } else {
                format!("{} from {}", branch, run.base_branch)
            };
            Ok(((), Ok(detail)))
        })
        .await?;
        run.branch = branch;

        self.phase(run, Phase::Credentials, async {
            // The helper reads the token from a variable only our own git commands carry: it is never
            // written to disk, into the repository, or into the agent's environment.
            let gitconfig = format!(
                "[user]\n\tname = CodeCourier\n\temail = codecourier@users.noreply.github.com\n[safe]\n\tdirectory = *\n[credential]\n\thelper = {}\n",
                CREDENTIAL_HELPER.replace('\\', "\\\\").replace('"', "\\\"")
            );
            let handle = run.handle.as_ref().expect("provisioned");
            self.provider
                .write_file(handle, "/home/user/.gitconfig", gitconfig.as_bytes(), 0o644)
                .await
                .map_err(|e| Ending::from_sandbox(Phase::Credentials, e))?;
            let detail = if needs_token {
                "git credential helper installed; the token stays out of the sandbox's files and the agent's environment"
            } else {
                "local repository: no token needed"
            };
            Ok(((), Ok(detail.to_string())))
        })
        .await?;

        let env_names: Vec<String> = request.env.iter().map(|(n, _)| n.clone()).collect();
        self.phase(run, Phase::Environment, async {
            let detail = if env_names.is_empty() {
                "no extra variables".to_string()
            } else {
                format!(
                    "{} variable{}: {}",
                    env_names.len(),
                    if env_names.len() == 1 { "" } else { "s" },
                    env_names.join(", ")
                )
            };
            Ok(((), Ok(detail)))
        })
        .await?;

        let reads_memory = run.tool.capabilities.claude_md;
        let prompt_text = match (request.scan_task(), read_only) {
            (Some(_), _) => read_only_system_prompt(&run.base_branch, run.project, !reads_memory),
            (None, true) => read_only_system_prompt(&run.branch, run.project, !reads_memory),
            (None, false) => {
                system_prompt(&run.branch, &run.base_branch, run.project, !reads_memory)
            }
        };
        // The answer's schema, for CLIs that enforce one.
        let schema = form
            .filter(|_| run.tool.capabilities.structured_output)
            .map(|f| f.schema().to_string());
        self.phase(run, Phase::SystemPrompt, async {
            let handle = run.handle.as_ref().expect("provisioned");
            self.provider
                .write_file(handle, SYSTEM_PROMPT_FILE, prompt_text.as_bytes(), 0o644)
                .await
                .map_err(|e| Ending::from_sandbox(Phase::SystemPrompt, e))?;
            Ok(((), Ok(format!("{} bytes", prompt_text.len()))))
        })
        .await?;

        let session_id = uuid::Uuid::new_v4().to_string();
        // A follow-up resumes the earlier agent session when its files were kept (Claude Code).
        let resumed = self.restore_session(run).await?;
        let memory = if reads_memory {
            learnings_section(run.project)
        } else {
            String::new()
        };
        let plan = self
            .phase(run, Phase::ToolSetup, async {
                let plan = agent::plan(AgentContext {
                    tool: run.tool,
                    model: &request.model,
                    effort: request.effort,
                    session_id: &session_id,
                    resume: resumed.as_deref(),
                    keys: run.keys.to_vec(),
                    env: &request.env,
                    system_prompt: &prompt_text,
                    memory: &memory,
                    skills: run.project.skills(),
                    commands: run.project.commands(),
                    output_schema: schema.as_deref(),
                })
                .map_err(|error| Ending::Failed {
                    phase: Phase::ToolSetup,
                    error,
                })?;
                let installed = self.ensure_cli(run, &plan).await?;
                let handle = run.handle.as_ref().expect("provisioned");
                for file in &plan.files {
                    self.provider
                        .write_file(handle, &file.path, &file.contents, file.mode)
                        .await
                        .map_err(|e| Ending::from_sandbox(Phase::ToolSetup, e))?;
                }
                let keys: Vec<&str> = run.keys.iter().map(|(n, _)| n.as_str()).collect();
                let detail = format!(
                    "{} · {} · effort {} · {} setup file{} · key {}{}",
                    run.tool.name,
                    request.model,
                    request.effort,
                    plan.files.len(),
                    if plan.files.len() == 1 { "" } else { "s" },
                    keys.join(", "),
                    installed
                        .map(|p| format!(" · installed {p} from npm"))
                        .unwrap_or_default()
                        + &resumed
                            .as_deref()
                            .map(|id| format!(" · resuming session {id}"))
                            .unwrap_or_default()
                );
                Ok((plan, Ok(detail)))
            })
            .await?;

        self.set_status(run, SandboxStatus::Running, Phase::Agent)
            .await?;
        let agent_run = self
            .phase(run, Phase::Agent, async {
                let mut agent_run = self.run_agent(run, plan, &request.prompt).await?;
                if let Some(form) = form {
                    if agent_run.failure.is_none() {
                        agent_run = self
                            .check_answer(
                                run,
                                form,
                                agent_run,
                                &prompt_text,
                                &memory,
                                schema.as_deref(),
                            )
                            .await?;
                    }
                }
                // The agent's own failure marks the phase, but the run goes on to save its work.
                let detail = match &agent_run.failure {
                    Some(failure) => Err(failure.clone()),
                    None => {
                        let r = &agent_run.result;
                        let found = agent_run
                            .answer
                            .as_ref()
                            .map(|a| format!("{} · ", a.summary()))
                            .unwrap_or_default();
                        Ok(format!(
                            "{found}{} turns · {} · {} in / {} out tokens",
                            r.num_turns.unwrap_or(0),
                            r.cost_usd
                                .map(|c| format!("${c:.4}"))
                                .unwrap_or_else(|| "cost not reported".into()),
                            r.input_tokens.unwrap_or(0),
                            r.output_tokens.unwrap_or(0)
                        ))
                    }
                };
                Ok((agent_run, detail))
            })
            .await?;
        run.agent = Some(agent_run);

        let push_token = run.origin.token.clone();
        let (commits, pushed, links) = self
            .phase(run, Phase::Finish, async {
                if read_only {
                    let detail = self.finish_read_only(run).await?;
                    return Ok(((Vec::new(), None, Links::default()), Ok(detail)));
                }
                let status = self
                    .sh(
                        run,
                        Phase::Finish,
                        "git status",
                        self.git("git status --porcelain".into(), None),
                    )
                    .await?;
                if !status.is_empty() {
                    let message = commit_message(id, &request.prompt);
                    self.sh(
                        run,
                        Phase::Finish,
                        "committing the agent's changes",
                        self.git(
                            format!(
                                "git add -A && git commit --quiet -m {}",
                                shell_quote(&message)
                            ),
                            None,
                        ),
                    )
                    .await?;
                }
                let log = self
                    .sh(
                        run,
                        Phase::Finish,
                        "listing commits",
                        self.git(
                            format!(
                                "git log --reverse --format='%H%x09%s' {}..HEAD",
                                run.base_sha
                            ),
                            None,
                        ),
                    )
                    .await?;
                let commits: Vec<Commit> = log
                    .lines()
                    .filter_map(|l| l.split_once('\t'))
                    .map(|(sha, subject)| Commit {
                        sha: sha.to_string(),
                        subject: run.redactor.redact(subject),
                    })
                    .collect();
                let pushed = if commits.is_empty() {
                    None
                } else {
                    self.sh(
                        run,
                        Phase::Finish,
                        "git push",
                        self.git(
                            format!("git push --quiet origin {}", shell_quote(&run.branch)),
                            push_token.as_ref(),
                        ),
                    )
                    .await?;
                    Some(true)
                };
                let learned = self.save_learnings(run).await;
                let mut detail = match commits.len() {
                    0 => "no changes to push".to_string(),
                    n => format!(
                        "{n} commit{} pushed to {}",
                        if n == 1 { "" } else { "s" },
                        run.branch
                    ),
                };
                self.save_session(run).await;
                let links = self.publish(run, &commits).await;
                if let Some(note) = &links.note {
                    detail.push_str(&format!("; {note}"));
                }
                if learned > 0 {
                    detail.push_str(&format!(
                        "; {learned} new learning{}",
                        if learned == 1 { "" } else { "s" }
                    ));
                }
                Ok(((commits, pushed, links), Ok(detail)))
            })
            .await?;
        run.commits = commits;
        run.pushed = pushed;
        run.links = links;
        Ok(())
    }

    /// The prepare phase: where git will clone from. A GitHub repository is checked through the API
    /// (it exists, the token can push, the base branch exists) and the feature branch is created
    /// there, all before a sandbox is paid for.
    async fn prepare_origin(&self, run: &Run<'_>) -> Result<(Origin, Detail), Ending> {
        let request = run.request;
        let fail = |error: String| Ending::Failed {
            phase: Phase::Prepare,
            error,
        };
        let (owner, name) = match &request.repo {
            RepoRef::Local { path } => {
                let origin = Origin {
                    clone_url: format!("file://{ORIGIN_MOUNT}"),
                    mounts: vec![Mount {
                        host: path.clone(),
                        guest: ORIGIN_MOUNT.into(),
                        writable: true,
                    }],
                    base_branch: request.follow_up.as_ref().map(|f| f.base_branch.clone()),
                    branch: request.follow_up.as_ref().map(|f| f.branch.clone()),
                    ..Default::default()
                };
                return Ok((origin, Ok(format!("local repository {}", path.display()))));
            }
            RepoRef::Github { owner, name } => (owner, name),
        };
        let github = github::connect(&self.github, owner, name)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let repo = github.repository().await.map_err(|e| fail(e.to_string()))?;
        if repo.can_push == Some(false) && request.scan_task().is_none() {
            return Err(fail(
                GithubError::CannotPush {
                    repo: repo.full_name.clone(),
                }
                .to_string(),
            ));
        }
        if request.scan_task().is_some() {
            // A read-only scan: the base branch must exist; no branch is made.
            let base = request
                .base_branch
                .clone()
                .unwrap_or_else(|| repo.default_branch.clone());
            let base_sha = github
                .branch_head(&base)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let (clone_url, mounts) = self.clone_source(&repo.clone_url);
            let detail = format!(
                "{} · base {base} ({}) · read-only scan",
                repo.full_name,
                &base_sha[..base_sha.len().min(8)]
            );
            let origin = Origin {
                clone_url,
                mounts,
                token: Some(github.git_token.clone()),
                github: Some(github),
                branch_created: false,
                base_branch: Some(base),
                branch: None,
            };
            return Ok((origin, Ok(detail)));
        }
        let (base, base_sha, branch) = match &request.follow_up {
            // A follow-up continues on the earlier launch's branch, which must still exist.
            Some(f) => {
                let head = github.branch_head(&f.branch).await.map_err(|e| match e {
                    GithubError::BranchNotFound { .. } => fail(format!(
                        "the branch {} of the launch being followed up no longer exists on GitHub; launch afresh instead",
                        f.branch
                    )),
                    other => fail(other.to_string()),
                })?;
                (f.base_branch.clone(), head, f.branch.clone())
            }
            None => {
                let base = request
                    .base_branch
                    .clone()
                    .unwrap_or_else(|| repo.default_branch.clone());
                let base_sha = github
                    .branch_head(&base)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let branch = github
                    .create_branch(&branch_name(run.id, &request.prompt), &base_sha)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                (base, base_sha, branch)
            }
        };
        self.store
            .set_branches(run.id, &base, &branch)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (clone_url, mounts) = self.clone_source(&repo.clone_url);
        let sha = &base_sha[..base_sha.len().min(8)];
        let detail = match request.follow_up {
            Some(_) => format!(
                "{} · base {base} · branch {branch} continued at {sha}",
                repo.full_name
            ),
            None => format!(
                "{} · base {base} ({sha}) · branch {branch} created",
                repo.full_name
            ),
        };
        let origin = Origin {
            clone_url,
            mounts,
            token: Some(github.git_token.clone()),
            github: Some(github),
            branch_created: request.follow_up.is_none(),
            base_branch: Some(base),
            branch: Some(branch),
        };
        Ok((origin, Ok(detail)))
    }

    /// A clone URL on this machine (a mirror, or a test's bare repository) is mounted into a local
    /// sandbox like a local repository; another provider gets the URL as it is.
    fn clone_source(&self, clone_url: &str) -> (String, Vec<Mount>) {
        match clone_url.strip_prefix("file://") {
            Some(path) if self.provider.name() == "local" => (
                format!("file://{ORIGIN_MOUNT}"),
                vec![Mount {
                    host: path.into(),
                    guest: ORIGIN_MOUNT.into(),
                    writable: true,
                }],
            ),
            _ => (clone_url.to_string(), Vec::new()),
        }
    }

    /// After the push: the compare link and, per the launch's policy, a pull request (an open one
    /// for the branch is reused). A branch the run left empty is removed again.
    async fn publish(&self, run: &Run<'_>, commits: &[Commit]) -> Links {
        let Some(github) = &run.origin.github else {
            return Links::default();
        };
        if commits.is_empty() {
            if run.origin.branch_created {
                if let Err(e) = github.delete_branch(&run.branch).await {
                    return Links {
                        note: Some(format!("the unused branch could not be removed: {e}")),
                        ..Default::default()
                    };
                }
            }
            return Links {
                note: Some("the unused branch was removed from GitHub".into()),
                ..Default::default()
            };
        }
        let mut links = Links::default();
        let mut notes = Vec::new();
        match github.compare(&run.base_branch, &run.branch).await {
            Ok(c) => {
                notes.push(format!(
                    "{} file{} changed, +{} −{}",
                    c.files_changed,
                    if c.files_changed == 1 { "" } else { "s" },
                    c.additions,
                    c.deletions
                ));
                links.compare_url = Some(c.html_url);
            }
            Err(e) => notes.push(format!("no compare link: {e}")),
        }
        let policy = run.request.pr;
        if policy != PrPolicy::None {
            let agent = run.agent.as_ref().map(|a| &a.result);
            let body = pull_request_body(&PullRequestFacts {
                prompt: &run.request.prompt,
                summary: agent
                    .map(|r| run.redactor.redact(&r.text))
                    .unwrap_or_default()
                    .as_str(),
                launched_by: run.launched_by,
                sandbox: run.id,
                cost_usd: agent.and_then(|r| r.cost_usd),
                duration: run.started.elapsed(),
            });
            let title = pull_request_title(&run.request.prompt);
            match github
                .open_pull_request(
                    &run.branch,
                    &run.base_branch,
                    &title,
                    &body,
                    policy == PrPolicy::Draft,
                )
                .await
            {
                Ok(pr) => {
                    notes.insert(
                        0,
                        format!(
                            "{}{} pull request #{}",
                            if pr.reused { "reused " } else { "" },
                            policy.as_str(),
                            pr.number
                        ),
                    );
                    links.pr_url = Some(pr.html_url);
                }
                Err(e) => notes.insert(0, format!("pull request not opened: {e}")),
            }
        }
        links.note = Some(notes.join(" · "));
        links
    }

    /// Makes sure the tool's command exists in the sandbox, installing it from npm where the plan
    /// names a package. Returns the package it installed.
    async fn ensure_cli(
        &self,
        run: &Run<'_>,
        plan: &agent::AgentPlan,
    ) -> Result<Option<&'static str>, Ending> {
        let command = shell_quote(&run.tool.command);
        let mut check = Exec::script(format!("command -v {command} >/dev/null"));
        check.cwd = Some(crate::sandbox::HOME.into());
        let handle = run.handle.as_ref().expect("provisioned");
        let found = run_captured(self.provider.as_ref(), handle, &check)
            .await
            .map_err(|e| Ending::from_sandbox(Phase::ToolSetup, e))?
            .status
            .success();
        if found {
            return Ok(None);
        }
        let Some(package) = plan.install_if_missing else {
            return Err(Ending::Failed {
                phase: Phase::ToolSetup,
                error: format!(
                    "{}'s `{}` is not available in the sandbox: install it on this machine or put it in CODECOURIER_TOOLS_DIR (`codecourier doctor` shows how)",
                    run.tool.name, run.tool.command
                ),
            });
        };
        let mut install = Exec::script(format!(
            "npm install --global --prefix /home/user/.local --no-audit --no-fund --loglevel=error {}",
            shell_quote(package)
        ));
        install.cwd = Some(crate::sandbox::HOME.into());
        if self.provider.name() == "local" {
            // A local sandbox reaches the registry the way this machine does: same CA bundle and
            // proxy settings (its own npm config under --prefix would not carry them).
            for name in NPM_HOST_SETTINGS {
                if let Ok(value) = std::env::var(name) {
                    install.env.push((name.to_string(), Secret::new(value)));
                }
            }
        }
        self.sh(
            run,
            Phase::ToolSetup,
            &format!("installing {package}"),
            install,
        )
        .await?;
        Ok(Some(package))
    }

    /// Keeps the agent's session files (Claude Code's config directory) encrypted, so a follow-up can
    /// resume the conversation in a new sandbox.
    async fn save_session(&self, run: &Run<'_>) {
        if !run.tool.capabilities.resume_session {
            return;
        }
        let Some(handle) = run.handle.as_ref() else {
            return;
        };
        let exec = Exec {
            cwd: Some(crate::sandbox::HOME.into()),
            ..Exec::script("tar -C /home/user -czf - .claude 2>/dev/null | base64 -w0")
        };
        match run_captured(self.provider.as_ref(), handle, &exec).await {
            Ok(out)
                if out.status.success()
                    && !out.stdout.is_empty()
                    && out.stdout.len() < MAX_SESSION_ARCHIVE =>
            {
                if let Err(e) = self
                    .store
                    .save_agent_session(run.id, &Secret::new(out.stdout))
                    .await
                {
                    tracing::warn!(sandbox = %run.id, error = %e, "could not keep the agent session");
                }
            }
            _ => tracing::info!(sandbox = %run.id, "no agent session kept"),
        }
    }

    /// For a follow-up: puts the earlier session's files back. Returns the session to resume, or
    /// `None` (a fresh session) when the CLI cannot resume or nothing was kept.
    async fn restore_session(&self, run: &Run<'_>) -> Result<Option<String>, Ending> {
        let Some(follow_up) = &run.request.follow_up else {
            return Ok(None);
        };
        let Some(session) = &follow_up.session_id else {
            return Ok(None);
        };
        if !run.tool.capabilities.resume_session {
            return Ok(None);
        }
        let Some(of) = follow_up.of else {
            return Ok(None);
        };
        let archive = match self.store.agent_session(of).await {
            Ok(Some(archive)) => archive,
            _ => return Ok(None),
        };
        let handle = run.handle.as_ref().expect("provisioned");
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            archive.expose().trim(),
        )
        .map_err(|_| Ending::Failed {
            phase: Phase::ToolSetup,
            error: "the kept agent session is damaged".into(),
        })?;
        self.provider
            .write_file(handle, "/home/user/.codecourier/session.tgz", &bytes, 0o600)
            .await
            .map_err(|e| Ending::from_sandbox(Phase::ToolSetup, e))?;
        let mut unpack = Exec::script("tar -xzf /home/user/.codecourier/session.tgz -C /home/user && rm /home/user/.codecourier/session.tgz");
        unpack.cwd = Some(crate::sandbox::HOME.into());
        self.sh(run, Phase::ToolSetup, "restoring the agent session", unpack)
            .await?;
        Ok(Some(session.clone()))
    }

    /// Reads what the agent wrote to the learnings file and stores it on the project.
    async fn save_learnings(&self, run: &Run<'_>) -> usize {
        let exec = Exec {
            cwd: Some(crate::sandbox::HOME.into()),
            ..Exec::script(format!("cat {LEARNINGS_FILE} 2>/dev/null || true"))
        };
        let Some(handle) = run.handle.as_ref() else {
            return 0;
        };
        let Ok(out) = run_captured(self.provider.as_ref(), handle, &exec).await else {
            return 0;
        };
        let text = run.redactor.redact(&out.stdout);
        if text.trim().is_empty() {
            return 0;
        }
        self.store
            .add_learnings(run.project.id, &text)
            .await
            .unwrap_or(0)
    }

    /// Reads a read-only launch's answer; an unusable one gets one repair request in the same
    /// sandbox, after which it is used whole or the run fails with both answers kept.
    async fn check_answer(
        &self,
        run: &Run<'_>,
        form: Form<'_>,
        first: AgentRun,
        system_prompt: &str,
        memory: &str,
        schema: Option<&str>,
    ) -> Result<AgentRun, Ending> {
        let problems = match form.read(&first.result) {
            Ok(answer) => {
                return Ok(AgentRun {
                    answer: Some(answer),
                    ..first
                })
            }
            Err(problems) => problems,
        };
        let first_raw = raw_answer(&first.result);
        self.note(
            run,
            format!(
                "the answer did not follow the {} format ({}); asking {} once more",
                form.name(),
                scan::describe_problems(&problems),
                run.tool.name
            ),
        )
        .await;
        let request = run.request;
        let session_id = uuid::Uuid::new_v4().to_string();
        let plan = agent::plan(AgentContext {
            tool: run.tool,
            model: &request.model,
            effort: request.effort,
            session_id: &session_id,
            resume: None,
            keys: run.keys.to_vec(),
            env: &request.env,
            system_prompt,
            memory,
            skills: run.project.skills(),
            commands: run.project.commands(),
            output_schema: schema,
        })
        .map_err(|error| Ending::Failed {
            phase: Phase::Agent,
            error,
        })?;
        let prompt = form.repair_prompt(run.tool, &problems, &first_raw);
        let second = self.run_agent(run, plan, &prompt).await?;
        let result = with_usage_of(&first.result, second.result);
        if second.failure.is_some() {
            return Ok(AgentRun {
                result,
                failure: second.failure,
                answer: None,
                raw_answer: Some(first_raw),
            });
        }
        match form.read(&result) {
            Ok(answer) => Ok(AgentRun {
                result,
                failure: None,
                answer: Some(answer),
                raw_answer: None,
            }),
            Err(problems) => Ok(AgentRun {
                failure: Some(format!(
                    "the {} did not follow the {} format, even after one repair request: {}",
                    form.answer_of(),
                    form.name(),
                    scan::describe_problems(&problems)
                )),
                raw_answer: Some(format!(
                    "First answer:\n{first_raw}\n\nAnswer to the repair request:\n{}",
                    raw_answer(&result)
                )),
                result,
                answer: None,
            }),
        }
    }

    /// A read-only finish phase: a scan's issues are stored (redacted); nothing is committed or
    /// pushed.
    async fn finish_read_only(&self, run: &Run<'_>) -> Result<String, Ending> {
        let fail = |e: StoreError| Ending::Failed {
            phase: Phase::Finish,
            error: e.to_string(),
        };
        let changed = self
            .sh(
                run,
                Phase::Finish,
                "git status",
                self.git("git status --porcelain".into(), None),
            )
            .await?;
        let mut detail = match (
            run.agent.as_ref().and_then(|a| a.answer.as_ref()),
            run.issue_session,
        ) {
            (Some(Answer::Verdict(v)), _) => format!(
                "verdict {}{}",
                if v.pass { "pass" } else { "fail" },
                match v.findings.len() {
                    0 => String::new(),
                    n => format!(" with {n} finding{}", if n == 1 { "" } else { "s" }),
                }
            ),
            (Some(Answer::Issues(answer)), Some(session)) => {
                let redact = |t: &str| run.redactor.redact(t);
                let issues: Vec<scan::ScannedIssue> = answer
                    .issues
                    .iter()
                    .map(|i| scan::ScannedIssue {
                        title: redact(&i.title),
                        description: redact(&i.description),
                        category: redact(&i.category),
                        evidence: redact(&i.evidence),
                        suggested_fix: redact(&i.suggested_fix),
                        files: i
                            .files
                            .iter()
                            .map(|f| scan::FileRange {
                                path: redact(&f.path),
                                ..f.clone()
                            })
                            .collect(),
                        ..i.clone()
                    })
                    .collect();
                self.store
                    .save_issues(session, &issues)
                    .await
                    .map_err(fail)?;
                let mut text = format!(
                    "{} issue{} recorded",
                    issues.len(),
                    if issues.len() == 1 { "" } else { "s" }
                );
                if answer.dropped > 0 {
                    text.push_str(&format!(
                        " ({} more left out: the session asked for at most {})",
                        answer.dropped,
                        run.request.scan_task().map_or(0, |t| t.max_issues)
                    ));
                }
                text
            }
            (Some(Answer::Issues(_)), None) => {
                "no issue session to record the issues in".to_string()
            }
            (None, _) => match run.request.scan_task() {
                Some(_) => "no issues recorded".to_string(),
                None => "no verdict".to_string(),
            },
        };
        if !changed.is_empty() {
            detail.push_str("; the agent changed files, which a read-only scan does not keep");
        }
        let learned = self.save_learnings(run).await;
        if learned > 0 {
            detail.push_str(&format!(
                "; {learned} new learning{}",
                if learned == 1 { "" } else { "s" }
            ));
        }
        detail.push_str("; read-only: nothing pushed");
        Ok(detail)
    }

    /// Ends a scan's issue session as its sandbox ended, keeping unusable answers.
    async fn finish_issue_session(
        &self,
        session: IssueSessionId,
        sandbox_status: SandboxStatus,
        finish: &Finish,
        agent: Option<&AgentRun>,
        redactor: &Redactor,
    ) -> Result<(), StoreError> {
        let status = match sandbox_status {
            SandboxStatus::Completed => IssueSessionStatus::Completed,
            SandboxStatus::Stopped => IssueSessionStatus::Stopped,
            _ => IssueSessionStatus::Failed,
        };
        let raw = agent
            .and_then(|a| a.raw_answer.as_deref())
            .map(|r| redactor.redact(r));
        let error = finish
            .error
            .as_deref()
            .filter(|_| status != IssueSessionStatus::Completed);
        self.store
            .finish_issue_session(session, status, error, raw.as_deref())
            .await?;
        Ok(())
    }

    /// Runs the agent CLI on `prompt`, streaming its events into the record and the sink.
    async fn run_agent(
        &self,
        run: &Run<'_>,
        plan: agent::AgentPlan,
        prompt: &str,
    ) -> Result<AgentRun, Ending> {
        let handle = run.handle.as_ref().expect("provisioned");
        let mut env = plan.env;
        env.extend(run.request.env.iter().cloned());
        let exec = Exec {
            argv: plan.argv,
            cwd: Some(PROJECT_DIR.into()),
            env,
            stdin: Some(prompt.as_bytes().to_vec()),
        };
        let (tx, mut rx) = mpsc::channel::<Output>(256);
        let mut parser = plan.parser;
        let consume = async {
            let mut lines = LineSplitter::new(32 * 1024 * 1024);
            let mut stderr = Vec::new();
            // A CLI that prints nothing may be retrying for ever (OpenCode does): say so, once per
            // idle period; the sandbox timeout still ends the run.
            let mut quiet_since = tokio::time::Instant::now();
            let mut notices = 0u32;
            loop {
                let deadline = quiet_since + self.idle_notice * (notices + 1);
                let chunk = match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(chunk)) => {
                        quiet_since = tokio::time::Instant::now();
                        notices = 0;
                        chunk
                    }
                    Ok(None) => break,
                    Err(_) => {
                        notices += 1;
                        self.note(run, format!(
                            "no output from {} for {}; the sandbox's timeout of {} still ends the run",
                            run.tool.name,
                            humantime::format_duration(self.idle_notice * notices),
                            humantime::format_duration(Duration::from_millis(run.request.resources.timeout_ms)),
                        ))
                        .await;
                        continue;
                    }
                };
                match chunk {
                    Output::Stdout(bytes) => {
                        for line in lines.push(&bytes) {
                            for event in parser.line(&line) {
                                self.agent_event(run, event).await;
                            }
                        }
                    }
                    Output::Stderr(bytes) => {
                        stderr.extend(bytes);
                        if stderr.len() > 64 * 1024 {
                            stderr.drain(..stderr.len() - 16 * 1024);
                        }
                    }
                }
            }
            if let Some(line) = lines.finish() {
                for event in parser.line(&line) {
                    self.agent_event(run, event).await;
                }
            }
            String::from_utf8_lossy(&stderr).into_owned()
        };
        let (status, stderr) = tokio::join!(self.provider.run(handle, &exec, tx), consume);
        let status = status.map_err(|e| Ending::from_sandbox(Phase::Agent, e))?;
        let result = parser.finish(status.code);
        let failure = if status.oom_killed {
            Some(format!(
                "{} was killed for using more than the sandbox's {} MB of memory; launch again with more --memory-mb",
                run.tool.name, run.request.resources.memory_mb
            ))
        } else if !result.success {
            let mut message = format!("{} failed: {}", run.tool.name, result.text.trim());
            if matches!(result.api_error_status, Some(401 | 403)) {
                message.push_str(&format!(
                    " — invalid API key: the model API refused it; check {}",
                    run.tool.keys_description()
                ));
            }
            if !stderr.trim().is_empty() {
                message.push_str(&format!("; stderr: {}", tail(stderr.trim(), ERROR_TAIL)));
            }
            Some(message)
        } else {
            None
        };
        Ok(AgentRun {
            result,
            failure,
            answer: None,
            raw_answer: None,
        })
    }

    async fn note(&self, run: &Run<'_>, message: String) {
        let event = ProgressEvent::Note {
            message: run.redactor.redact(&message),
        };
        self.persist(run.id, &event).await;
        run.sink.emit(run.id, &event);
    }

    async fn agent_event(&self, run: &Run<'_>, event: AgentEvent) {
        let event = redact_event(&run.redactor, event);
        let progress = ProgressEvent::Agent { event };
        self.persist(run.id, &progress).await;
        run.sink.emit(run.id, &progress);
    }
}

/// An answer as the agent gave it: its structured output, else its final text.
fn raw_answer(result: &AgentResult) -> String {
    match &result.structured_output {
        Some(value) => serde_json::to_string_pretty(value).unwrap_or_default(),
        None => result.text.clone(),
    }
}

/// `second`, with the cost, tokens, turns and time of `first` added: what both runs used.
fn with_usage_of(first: &AgentResult, second: AgentResult) -> AgentResult {
    fn sum<T: std::ops::Add<Output = T>>(a: Option<T>, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        }
    }
    AgentResult {
        cost_usd: sum(first.cost_usd, second.cost_usd),
        input_tokens: sum(first.input_tokens, second.input_tokens),
        output_tokens: sum(first.output_tokens, second.output_tokens),
        num_turns: sum(first.num_turns, second.num_turns),
        duration_ms: sum(first.duration_ms, second.duration_ms),
        ..second
    }
}

fn redact_event(redactor: &Redactor, event: AgentEvent) -> AgentEvent {
    let value = serde_json::to_value(&event).unwrap_or_default();
    serde_json::from_value(redactor.redact_json(&value)).unwrap_or(event)
}

/// Whether an `--env` value should be hidden from output: its name says it is a credential, or
/// the value looks like a token. Plain settings ("fast", a URL) stay readable.
fn looks_secret(name: &str, value: &str) -> bool {
    let name = name.to_ascii_uppercase();
    let secret_name = [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "AUTH",
        "CREDENTIAL",
        "PRIVATE",
        "COOKIE",
        "SESSION",
    ]
    .iter()
    .any(|word| name.contains(word));
    let plain_url =
        (value.starts_with("http://") || value.starts_with("https://")) && !value.contains('@');
    let token_like = value.len() >= 12
        && !value.chars().any(char::is_whitespace)
        && value.chars().any(|c| c.is_ascii_alphabetic())
        && value.chars().any(|c| c.is_ascii_digit())
        && !plain_url;
    secret_name || token_like
}

/// The last `max` bytes of `text`, at a character boundary.
fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Quotes a string for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn env_values_are_hidden_when_they_look_secret() {
        assert!(looks_secret("GITHUB_TOKEN", "abc"));
        assert!(looks_secret("PLANTED", "plantedvalue-9f8e7d"));
        assert!(looks_secret("DB", "postgres://user:pw@db/x1"));
        assert!(!looks_secret("MODE", "garbage"));
        assert!(!looks_secret("ANTHROPIC_BASE_URL", "http://127.0.0.1:8080"));
    }

    #[test]
    fn tails_keep_the_end() {
        assert_eq!(tail("abcdef", 3), "…def");
        assert_eq!(tail("abc", 3), "abc");
    }
}
