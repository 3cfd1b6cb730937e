//! The first two phases, before anything runs: validate (the tool, the keys it needs from the
//! launch, the person, the project or CodeCourier's environment, and whether the provider can reach
//! the repository) and record (the sandbox row, and a scan's issue session).

use chrono::{DateTime, Utc};

use super::Launcher;
use crate::agent;
use crate::catalog::{Budget, LaunchRequest, RepoRef, Tool};
use crate::gateway::ModelApi;
use crate::ids::{DiscordId, IssueSessionId, SandboxId};
use crate::model::Phase;
use crate::redact::{looks_secret, Redactor};
use crate::secret::Secret;
use crate::store::{
    DiscordOrigin, IssueSessionLink, NewIssueSession, NewSandbox, Project, RunningCaps, StoreError,
    WorkflowLink,
};

/// Who launched, for the record and the messages.
#[derive(Debug, Clone)]
pub struct LaunchOrigin {
    pub launched_by: String,
    pub discord: Option<DiscordOrigin>,
    /// Whose project's variables, keys, instructions and learnings the launch gets.
    pub project: ProjectChoice,
    /// Whose personal keys (`/project keys for: me`) the launch may use: its requester's, also
    /// when someone else presses Retry or Follow up on it — never the presser's.
    pub keys_of: Option<DiscordId>,
    /// The issue session whose issue this launch works on (a scan's own session is made by
    /// `prepare`).
    pub issue_session: Option<IssueSessionId>,
    /// The workflow run and step the launch is.
    pub workflow: Option<WorkflowLink>,
}

/// Which project a launch takes its variables, keys, instructions and learnings from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectChoice {
    /// This one: a Discord channel's, or the one a workflow run was started with.
    Project(i64),
    /// The project bound to the launch's repository (a terminal launch).
    OfRepository,
    /// None: only CodeCourier's own keys, no project's variables, keys or instructions (a
    /// repository named from a channel that is not its project's).
    Nothing,
}

/// Where a project's keys and variables are stored.
pub fn project_scope(project_id: i64) -> String {
    format!("project:{project_id}")
}

/// Where a person's own keys are stored.
pub fn user_scope(user: DiscordId) -> String {
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

/// A launch that passed validation and has its record.
pub struct Prepared {
    pub id: SandboxId,
    /// The validate and record phases, shown when the launch runs: (phase, detail, duration in ms).
    pub(super) early_phases: [(Phase, String, i64); 2],
    pub(super) launched_by: String,
    pub(super) request: LaunchRequest,
    pub(super) project: Project,
    /// Whether the project's variables, keys and instructions apply (not when it is only the
    /// repository's project, named from a channel that is not its own).
    pub(super) with_project_settings: bool,
    pub(super) redactor: Redactor,
    pub(super) keys: Vec<(String, Secret)>,
    pub(super) issue_session: Option<IssueSessionId>,
}

impl Prepared {
    pub fn request(&self) -> &LaunchRequest {
        &self.request
    }

    /// The issue session the launch belongs to: the one its scan answers, or the one it fixes.
    pub fn issue_session(&self) -> Option<IssueSessionId> {
        self.issue_session
    }

    /// The project whose settings the launch runs with, if any.
    pub fn settings_of(&self) -> Option<&str> {
        self.with_project_settings
            .then_some(self.project.name.as_str())
    }
}

impl Launcher {
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

        let project = match origin.project {
            ProjectChoice::Project(id) => Some(self.store.get_project(id).await?.ok_or_else(|| {
                LaunchError::Invalid("this channel's project no longer exists; a server manager can run /project setup again".into())
            })?),
            ProjectChoice::OfRepository => Some(
                self.store
                    .project_for_repo(&request.repo.to_string())
                    .await?,
            ),
            ProjectChoice::Nothing => None,
        };
        // The project's variables, under what the launch itself sets.
        let mut request = request;
        let mut from_project = Vec::new();
        if let Some(project) = &project {
            for (name, value) in self.store.get_env(&project_scope(project.id)).await? {
                if !request.env.iter().any(|(n, _)| *n == name) {
                    from_project.push(name.clone());
                    request.env.push((name, value));
                }
            }
        }
        self.resolve_budget(&mut request, project.as_ref())?;
        let keys = self
            .resolve_keys(tool, &request, origin, project.as_ref(), &from_project)
            .await?;
        self.check_repository_reach(&request.repo)?;
        let validate_ended = Utc::now();

        // Without a project of its own the launch records none; what it learns is still
        // proposed to its repository's project, with nothing of that project's settings applied.
        let recorded_project = project.as_ref().map(|p| p.id);
        let project = match project {
            Some(project) => project,
            None => self
                .store
                .project_for_repo(&request.repo.to_string())
                .await?
                .without_team_settings(),
        };
        let (id, issue_session) = self.record(&request, origin, recorded_project).await?;
        let recorded = Utc::now();
        let key_names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
        let validated = format!(
            "{} · {} · key {}",
            tool.name,
            request.model,
            key_names.join(", ")
        );
        let record = match (request.scan_task(), issue_session) {
            (Some(_), Some(session)) => format!(
                "issue session {} · sandbox {} of project {}",
                session.short(),
                id.short(),
                project.name
            ),
            _ if recorded_project.is_none() => {
                format!("sandbox {} with no project's variables or keys", id.short())
            }
            _ => format!("sandbox {} of project {}", id.short(), project.name),
        };
        let early_phases = [
            (Phase::Validate, validated, validate_started, validate_ended),
            (Phase::Record, record, validate_ended, recorded),
        ];
        for (phase, detail, started, ended) in &early_phases {
            self.store
                .record_phase(id, *phase, *started, *ended, Some(detail))
                .await?;
        }
        let early_phases = early_phases
            .map(|(phase, detail, started, ended)| (phase, detail, duration_ms(started, ended)));
        let redactor = self.launch_redactor(&keys, &request);
        Ok(Prepared {
            id,
            early_phases,
            launched_by: origin.launched_by.clone(),
            request,
            project,
            with_project_settings: recorded_project.is_some(),
            redactor,
            keys,
            issue_session,
        })
    }

    /// The launch's budget: its own, else its project's default, else the deployment's
    /// (`CODECOURIER_DEFAULT_BUDGET_USD`). Refused where the gateway cannot meter the launch.
    fn resolve_budget(
        &self,
        request: &mut LaunchRequest,
        project: Option<&Project>,
    ) -> Result<(), LaunchError> {
        let (budget, from) = if request.budget.is_set() {
            (request.budget, "the launch's")
        } else if let Some(usd) = project.and_then(|p| p.default_budget_usd) {
            (
                Budget {
                    max_cost_usd: Some(usd),
                    max_tokens: None,
                },
                "the project's default",
            )
        } else {
            (
                Budget {
                    max_cost_usd: self.default_budget_usd,
                    max_tokens: None,
                },
                "CODECOURIER_DEFAULT_BUDGET_USD's",
            )
        };
        if budget.is_set() && self.provider.capabilities().egress_rules {
            let what = format!("{from} budget of {}", budget.describe());
            return Err(LaunchError::Invalid(format!(
                "{}; launch without a budget, or on local sandboxes",
                Budget::unenforceable(&what, self.provider.name())
            )));
        }
        // The model's calls would all be refused at the gateway: say so now, before a sandbox.
        if budget.max_cost_usd.is_some()
            && self
                .catalog
                .prices
                .of_launch_model(&request.model)
                .is_none()
        {
            return Err(LaunchError::Invalid(format!(
                "{from} budget of {} is in dollars, but the catalog has no price for {}: give a budget in tokens (--max-tokens), choose a priced model, or add its price to the catalog (CODECOURIER_CATALOG)",
                budget.describe(),
                request.model
            )));
        }
        request.budget = budget;
        Ok(())
    }

    /// The keys the tool needs. Each resolves from the launch's own variables, then the person's,
    /// then the project's, then CodeCourier's environment.
    async fn resolve_keys(
        &self,
        tool: &Tool,
        request: &LaunchRequest,
        origin: &LaunchOrigin,
        project: Option<&Project>,
        from_project: &[String],
    ) -> Result<Vec<(String, Secret)>, LaunchError> {
        let mut scopes = Vec::new();
        if let Some(owner) = origin.keys_of {
            scopes.push(user_scope(owner));
        }
        if let Some(project) = project {
            scopes.push(project_scope(project.id));
        }
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
            let mut projects_own = value.is_some() && from_project.contains(name);
            for scope in &scopes {
                if value.is_none() {
                    value = self.store.get_secret(scope, name).await?;
                    projects_own =
                        value.is_some() && project.is_some_and(|p| *scope == project_scope(p.id));
                }
            }
            if let Some(value) = value.or_else(|| self.agent_keys.get(name).cloned()) {
                let chosen_upstream = ModelApi::of_key(name, &value)
                    .map(|(api, _)| api.base_url_var())
                    .filter(|var| {
                        request.env.iter().any(|(n, _)| n == var)
                            && (from_project.iter().any(|n| n == var) || origin.discord.is_some())
                    });
                // A project (or a chat launch) that sends an API to an upstream of its own sends
                // its own key there: never the deployment's, nor a member's personal one.
                if let Some(var) = chosen_upstream.filter(|_| !projects_own) {
                    return Err(LaunchError::Invalid(format!(
                        "this project sends its model calls to its own {var}, so {name} must be the project's own too (a server manager can add it with /project keys, or `codecourier project keys set`): CodeCourier sends the deployment's keys and members' own keys only to the configured upstream"
                    )));
                }
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
        Ok(keys)
    }

    /// A local repository needs a provider that can mount it; GitHub needs a token or an App.
    fn check_repository_reach(&self, repo: &RepoRef) -> Result<(), LaunchError> {
        match repo {
            RepoRef::Local { .. } if !self.provider.capabilities().host_mounts => {
                Err(LaunchError::Invalid(format!(
                    "a local repository cannot be reached from {} sandboxes; push it to GitHub or use SANDBOX_PROVIDER=local",
                    self.provider.name()
                )))
            }
            RepoRef::Github { owner, name }
                if self.github.token.is_none() && self.github.app.is_none() =>
            {
                Err(LaunchError::Invalid(format!(
                    "GITHUB_TOKEN (or a GitHub App: GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY) is needed to clone and push {owner}/{name}; set it in .env or the environment"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The record phase: the sandbox row (status `creating`), with a scan's own issue session.
    /// Returns the sandbox and the issue session the launch belongs to.
    async fn record(
        &self,
        request: &LaunchRequest,
        origin: &LaunchOrigin,
        project_id: Option<i64>,
    ) -> Result<(SandboxId, Option<IssueSessionId>), StoreError> {
        let repo_text = request.repo.to_string();
        let scan_session = request.scan_task().map(|task| NewIssueSession {
            id: IssueSessionId::new(),
            project_id,
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
                request,
                launched_by: &origin.launched_by,
                discord: origin.discord,
                project_id,
                issue_session,
                workflow: origin.workflow,
                // A workflow's steps belong to a run admitted when it started.
                caps: match origin.workflow {
                    Some(_) => RunningCaps::default(),
                    None => RunningCaps {
                        per_user: origin.discord.and(self.caps.per_user),
                        total: self.caps.total,
                    },
                },
            })
            .await?;
        let issue_session = scan_session.as_ref().map(|s| s.id).or(origin.issue_session);
        Ok((id, issue_session))
    }

    /// What this launch's output hides: CodeCourier's secrets, the launch's keys, and those of its
    /// variables that look secret.
    fn launch_redactor(&self, keys: &[(String, Secret)], request: &LaunchRequest) -> Redactor {
        let mut redactor = self.redactor.clone();
        for (_, value) in keys {
            redactor.add(value.expose());
        }
        for (name, value) in &request.env {
            if looks_secret(name, value.expose()) {
                redactor.add(value.expose());
            }
        }
        redactor
    }
}

fn duration_ms(started: DateTime<Utc>, ended: DateTime<Utc>) -> i64 {
    (ended - started).num_milliseconds()
}
