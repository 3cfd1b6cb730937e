//! The launch sequence (DESIGN.md section 4): `prepare` validates and records a launch, `run` takes
//! it through its phases to a terminal status, with the sandbox cleaned up. `sequence` below is the
//! list of phases; each phase is a function in the module of its concern.

mod access;
mod agent;
mod answers;
mod finish;
mod git;
mod host_repo;
mod mirror;
mod prepare;
mod project_setup;
mod publish;
mod push;
mod recorder;
mod session;
mod setup;
mod spend;

pub use prepare::{project_scope, user_scope, LaunchError, LaunchOrigin, Prepared, ProjectChoice};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use self::access::Access;
use self::agent::AgentOutcome;
use self::answers::AnswerForm;
use self::git::GitRemote;
use self::publish::Links;
use super::events::{ProgressEvent, ProgressSink};
use crate::agent::packages;
use crate::caches::Caches;
use crate::catalog::{build_custom_tag, Catalog, LaunchRequest, TemplateRef, Tool};
use crate::config::{Config, GithubConfig};
use crate::gateway::{Gateway, GatewaySettings};
use crate::ids::{IssueSessionId, SandboxId};
use crate::model::{Phase, PhaseOutcome, SandboxStatus};
use crate::redact::Redactor;
use crate::sandbox::e2b::templates;
use crate::sandbox::{
    run_captured, Exec, SandboxError, SandboxHandle, SandboxProvider, SandboxSpec,
};
use crate::secret::Secret;
use crate::store::{Commit, Project, RunningCaps, SandboxRecord, Store, StoreError};

/// Past the sandbox's own timeout, how long before the launcher stops waiting for the provider.
const TIMEOUT_GRACE: Duration = Duration::from_secs(15);
/// How much of a failing command's output an error shows.
const ERROR_TAIL: usize = 1500;

pub struct Launcher {
    store: Store,
    provider: Arc<dyn SandboxProvider>,
    catalog: Catalog,
    agent_keys: BTreeMap<String, Secret>,
    pub(super) github: GithubConfig,
    /// CodeCourier's own secrets; each launch adds its keys and secret-looking variables.
    redactor: Redactor,
    idle_notice: Duration,
    /// The longest the setup phase may take (within the launch's own timeout).
    setup_timeout: Duration,
    /// Package managers' caches kept between a project's launches, where the provider keeps any.
    caches: Caches,
    /// Running sandboxes per Discord user and for the whole deployment, checked where a launch
    /// is recorded.
    caps: RunningCaps,
    /// The credential gateway every launch's model and git traffic goes through, started on
    /// first use with the configured upstreams.
    gateway: tokio::sync::OnceCell<Gateway>,
    gateway_settings: GatewaySettings,
    /// CodeCourier's data directory: the gateway's sockets, its own repositories.
    data_dir: std::path::PathBuf,
    /// Agent events and output lines stored per launch (`CODECOURIER_MAX_EVENTS`).
    max_events: u64,
    /// The budget of a launch whose request and project set none.
    default_budget_usd: Option<f64>,
}

/// A phase's detail line: `Err` when the phase failed but the launch goes on.
type Detail = Result<String, String>;

/// Why a launch ended early.
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

    fn failed(phase: Phase) -> impl Fn(String) -> Ending {
        move |error| Ending::Failed { phase, error }
    }
}

/// One launch on its way through the sequence: what it was given, and what its phases found.
struct Launch<'a> {
    id: SandboxId,
    request: &'a LaunchRequest,
    tool: &'a Tool,
    project: &'a Project,
    redactor: Redactor,
    keys: &'a [(String, Secret)],
    sink: &'a dyn ProgressSink,
    launched_by: &'a str,
    issue_session: Option<IssueSessionId>,
    started: Instant,
    /// The form a read-only launch answers in; `None` for a launch that works on a branch.
    form: Option<AnswerForm<'a>>,
    handle: Option<SandboxHandle>,
    /// The launch's grant at the gateway, held until the launch ends.
    access: Option<Access>,
    /// The keys as the agent holds them (placeholders) and its variables (no key, no upstream).
    agent_keys: Vec<(String, Secret)>,
    agent_env: Vec<(String, Secret)>,
    /// Set when the tool's own template was missing and the sandbox started from E2B's base.
    fallback: Option<TemplateFallback>,
    /// Where git clones from and pushes to.
    remote: GitRemote,
    base_branch: String,
    base_sha: String,
    branch: String,
    /// Written by the system prompt phase; a repair request reuses it.
    system_prompt: String,
    /// What earlier runs learned, for CLIs that read it.
    memory: String,
    agent: Option<AgentOutcome>,
    commits: Vec<Commit>,
    pushed: Option<bool>,
    links: Links,
    /// The agent events and output lines stored so far, and those past the cap.
    events: recorder::EventCount,
    /// A checkout of the repository's mirror being made ready for its next launch.
    preparing: Option<tokio::task::JoinHandle<()>>,
}

impl Launch<'_> {
    fn handle(&self) -> &SandboxHandle {
        self.handle.as_ref().expect("provisioned")
    }

    /// The answer's JSON schema, for CLIs that enforce one.
    fn answer_schema(&self) -> Option<String> {
        self.form
            .filter(|_| self.tool.capabilities.structured_output)
            .map(|form| form.schema().to_string())
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
            setup_timeout: config.setup_timeout,
            caches: Caches::new(&config.data_dir),
            caps: RunningCaps {
                per_user: Some(config.max_running_per_user),
                total: Some(config.max_running),
            },
            gateway: tokio::sync::OnceCell::new(),
            gateway_settings: GatewaySettings::from_config(&config.gateway),
            data_dir: config.data_dir.clone(),
            max_events: u64::from(config.max_events),
            default_budget_usd: config.default_budget_usd,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn provider(&self) -> &Arc<dyn SandboxProvider> {
        &self.provider
    }

    /// Hides the configured secrets in text bound for people (error replies, say).
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// Runs a prepared launch to its end. The record always reaches a terminal status, and the
    /// sandbox is always killed afterwards.
    pub async fn run(
        &self,
        prepared: Prepared,
        sink: &dyn ProgressSink,
        stop: CancellationToken,
    ) -> anyhow::Result<SandboxRecord> {
        let started = Instant::now();
        let Prepared {
            id,
            early_phases,
            launched_by,
            request,
            project,
            with_project_settings: _,
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
        let mut launch = Launch {
            id,
            request: &request,
            tool,
            project: &project,
            redactor,
            keys: &keys,
            sink,
            launched_by: &launched_by,
            issue_session,
            started,
            form: AnswerForm::of(&request.mode),
            handle: None,
            access: None,
            agent_keys: Vec::new(),
            agent_env: Vec::new(),
            fallback: None,
            remote: GitRemote::default(),
            base_branch: String::new(),
            base_sha: String::new(),
            branch: String::new(),
            system_prompt: String::new(),
            memory: String::new(),
            agent: None,
            commits: Vec::new(),
            pushed: None,
            links: Links::default(),
            events: recorder::EventCount::default(),
            preparing: None,
        };
        let timeout = Duration::from_millis(request.resources.timeout_ms);
        let outcome = tokio::select! {
            outcome = self.sequence(&mut launch) => outcome,
            _ = stop.cancelled() => Err(Ending::Stopped { phase: self.current_phase(id).await }),
            _ = tokio::time::sleep(timeout + TIMEOUT_GRACE) => Err(Ending::TimedOut { phase: self.current_phase(id).await }),
        };
        let record = self.conclude(&mut launch, outcome).await;
        if let Some(preparing) = launch.preparing.take() {
            let _ = preparing.await;
        }
        record
    }

    /// The phases, in order. A phase that fails ends the launch; `run` records how.
    async fn sequence(&self, launch: &mut Launch<'_>) -> Result<(), Ending> {
        self.prepare_remote(launch).await?;
        self.set_status(launch, SandboxStatus::Provisioning, Phase::Provision)
            .await?;
        self.provision(launch).await?;
        self.set_status(launch, SandboxStatus::SettingUp, Phase::Clone)
            .await?;
        self.clone_repository(launch).await?;
        self.create_branch(launch).await?;
        self.install_credentials(launch).await?;
        self.pass_environment(launch).await?;
        self.write_system_prompt(launch).await?;
        self.set_up_project(launch).await?;
        let plan = self.set_up_tool(launch).await?;
        self.set_status(launch, SandboxStatus::Running, Phase::Agent)
            .await?;
        launch.preparing = self.prepare_next_checkout(launch);
        self.run_agent_phase(launch, plan).await?;
        self.finish(launch).await
    }

    /// The provision phase: the launch's grant at the gateway, then the provider creates the
    /// sandbox with the repository's mounts, the network its provider gives it, and its way to
    /// the gateway.
    async fn provision(&self, launch: &mut Launch<'_>) -> Result<(), Ending> {
        let mut access = self.grant_access(launch).await?;
        let (agent_keys, agent_env) = access.agent_env(launch.keys, &launch.request.env);
        launch.agent_keys = agent_keys;
        launch.agent_env = agent_env;
        let request = launch.request;
        let mut spec = SandboxSpec {
            template: request.template.clone(),
            resources: request.resources,
            env: access.sandbox_env(),
            metadata: BTreeMap::from([(
                "codecourier_sandbox_id".to_string(),
                launch.id.to_string(),
            )]),
            mounts: launch.remote.mounts.clone(),
            host_tools: vec![launch.tool.command.clone()],
            network: self.network_policy(&access),
        };
        let timeout = Duration::from_millis(request.resources.timeout_ms);
        let created = self
            .phase(launch, Phase::Provision, async {
                if self.provider.capabilities().dependency_caches {
                    let caches = self.caches.mounts(launch.project.id).map_err(|e| {
                        Ending::failed(Phase::Provision)(format!(
                            "cannot prepare the project's dependency caches: {e}"
                        ))
                    })?;
                    spec.mounts.extend(caches);
                }
                let (handle, fallback) = self.create_sandbox(launch, spec, timeout).await?;
                self.store
                    .set_provider(launch.id, self.provider.name(), &handle.provider_id)
                    .await
                    .map_err(|e| Ending::failed(Phase::Provision)(e.to_string()))?;
                self.connect_access(&mut access, &handle).await?;
                let mut detail = format!(
                    "{} sandbox {}: {}; {}",
                    self.provider.name(),
                    handle.provider_id,
                    handle.limits_report,
                    access.describe(self.gateway_settings.egress.open)
                );
                if let Some(fallback) = &fallback {
                    detail.push_str(&format!("; {}", fallback.describe(launch.tool)));
                }
                Ok(((handle, fallback), Ok(detail)))
            })
            .await;
        // Held from here on: a sandbox that failed to start ends the grant with the launch.
        launch.access = Some(access);
        let (handle, fallback) = created?;
        launch.handle = Some(handle);
        launch.fallback = fallback;
        Ok(())
    }

    /// Creates the sandbox from the launch's template. When that is the tool's own template from
    /// the catalog and the provider has none of that name, the sandbox starts from E2B's public
    /// base template instead and tool setup installs the CLI; a template named explicitly (a
    /// launch's, project's or workflow's) never falls back.
    async fn create_sandbox(
        &self,
        launch: &Launch<'_>,
        spec: SandboxSpec,
        timeout: Duration,
    ) -> Result<(SandboxHandle, Option<TemplateFallback>), Ending> {
        let started = Instant::now();
        let own_template = build_custom_tag(&launch.tool.default_template).ok();
        match self.provider.create(&spec, timeout).await {
            Ok(handle) => Ok((handle, None)),
            Err(SandboxError::TemplateNotFound(_))
                if own_template.as_ref() == Some(&spec.template) =>
            {
                let refused_after = started.elapsed();
                let base = SandboxSpec {
                    template: build_custom_tag(templates::BASE).expect("a valid name"),
                    ..spec.clone()
                };
                let handle = self
                    .provider
                    .create(&base, timeout)
                    .await
                    .map_err(|e| Ending::from_sandbox(Phase::Provision, e))?;
                let fallback = TemplateFallback {
                    missing: spec.template,
                    refused_after,
                    build_command: templates::build_command(launch.tool, &self.catalog.limits),
                };
                Ok((handle, Some(fallback)))
            }
            Err(e) => Err(Ending::from_sandbox(Phase::Provision, e)),
        }
    }

    /// Runs a command in the sandbox; a non-zero exit is a phase failure showing the output's tail.
    async fn sh(
        &self,
        launch: &Launch<'_>,
        phase: Phase,
        what: &str,
        exec: Exec,
    ) -> Result<String, Ending> {
        let out = run_captured(self.provider.as_ref(), launch.handle(), &exec)
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

    /// Ends a prepared launch that will not run, with the reason.
    pub async fn abandon(&self, prepared: Prepared, reason: &str) -> Result<(), StoreError> {
        let finish = crate::store::Finish {
            error: Some(reason.to_string()),
            ..Default::default()
        };
        self.store
            .finish(prepared.id, SandboxStatus::Failed, &finish)
            .await
            .map(|_| ())
    }
}

/// The tool's own template was not in the provider's account: what started instead, and how to
/// build the template so that the next launch needs no install.
struct TemplateFallback {
    missing: TemplateRef,
    /// How long the refused create took.
    refused_after: Duration,
    build_command: String,
}

impl TemplateFallback {
    /// The provision phase's words on it.
    fn describe(&self, tool: &Tool) -> String {
        let cli = packages::of_tool(&tool.id)
            .map(|p| p.spec())
            .unwrap_or_else(|| tool.command.clone());
        format!(
            "⚠️ template {} is not in this E2B team (E2B refused it in {}): started from E2B's {} template instead, and tool setup installs {cli} on every launch until the template is built: `{}`",
            self.missing,
            seconds(self.refused_after),
            templates::BASE,
            self.build_command
        )
    }
}

/// A duration in seconds with one decimal: "0.4 s", "38.2 s".
fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// "1 file", "2 files": a count with its noun.
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_end() {
        assert_eq!(tail("abcdef", 3), "…def");
        assert_eq!(tail("abc", 3), "abc");
    }

    #[test]
    fn counts_name_their_noun() {
        assert_eq!(count(1, "commit"), "1 commit");
        assert_eq!(count(0, "file"), "0 files");
        assert_eq!(count(2, "learning"), "2 learnings");
    }
}
