//! `codecourier workflow …` and `codecourier chain …`: workflow runs and work chains from the
//! terminal, with a live timeline of the steps (and each step's phases) or `--json`.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::launch::ops;
use super::progress::TerminalTimeline;
use super::CliError;
use crate::catalog::{Budget, Catalog};
use crate::config::Config;
use crate::ids::{JobId, JobKind};
use crate::model::workflow::{StepKind, WorkflowDef};
use crate::pipeline::ops::{TaskRef, TaskRefusal};
use crate::pipeline::{step_line, JobRequest, LaunchError, Ops, WorkflowSink};
use crate::store::{JobOwner, JobRecord, JobStatus, Store, Work};

#[derive(Debug, clap::Subcommand)]
pub enum WorkflowCommand {
    /// The workflows there are: the built-in default and the project's own
    List {
        /// The repository whose project's workflows to list
        #[arg(long)]
        repo: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One workflow's definition
    Show {
        name: String,
        #[arg(long)]
        repo: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Store a workflow from a JSON definition (see README: Workflows)
    Create {
        /// The definition: name, default_config, personas, per-step overrides, max_rounds
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The repository whose project gets the workflow (default: every project)
        #[arg(long)]
        repo: Option<String>,
    },
    /// Run a workflow on a task: designer, then optimizer and checker rounds, on one new branch
    Run {
        #[arg(long)]
        repo: String,
        /// The workflow's name (default: default)
        #[arg(long)]
        workflow: Option<String>,
        /// The task as text
        #[arg(long, allow_hyphen_values = true, required_unless_present_any = ["issue", "github_issue"])]
        prompt: Option<String>,
        /// An issue of an issue session: SESSION#N (session id or its first characters)
        #[arg(long, conflicts_with_all = ["prompt", "github_issue"])]
        issue: Option<String>,
        /// A GitHub issue of the repository, by number
        #[arg(long, conflicts_with = "prompt")]
        github_issue: Option<u64>,
        #[arg(long)]
        base_branch: Option<String>,
        /// An environment variable for every step's sandbox (repeatable)
        #[arg(long, value_name = "KEY=VALUE")]
        env: Vec<String>,
        #[command(flatten)]
        budget: JobBudgetArgs,
        #[arg(long)]
        json: bool,
    },
    /// Finish a run that a stopped CodeCourier left unfinished, from the interrupted step
    Resume {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// One run with its steps
    Status {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum ChainCommand {
    /// Run a list of issues one after another on one branch, each as a workflow run
    Run {
        #[arg(long)]
        repo: String,
        #[arg(long)]
        workflow: Option<String>,
        /// An issue as a line of text (repeatable, in order)
        #[arg(long, allow_hyphen_values = true)]
        item: Vec<String>,
        /// Issues of an issue session: with --issues
        #[arg(long, requires = "issues")]
        from_session: Option<String>,
        /// Positions in the session's list, in order: 1,3,4
        #[arg(long, value_delimiter = ',')]
        issues: Vec<u32>,
        /// GitHub issues of the repository, by number (repeatable, in order)
        #[arg(long)]
        github_issue: Vec<u64>,
        /// Go on with the next issue when one fails (default: stop there)
        #[arg(long)]
        continue_on_failure: bool,
        #[arg(long)]
        base_branch: Option<String>,
        #[arg(long, value_name = "KEY=VALUE")]
        env: Vec<String>,
        #[command(flatten)]
        budget: JobBudgetArgs,
        #[arg(long)]
        json: bool,
    },
    /// Finish a chain a stopped CodeCourier left unfinished
    Resume {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// One chain with its runs
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// A budget for a whole run or chain, over the workflow's own.
#[derive(Debug, clap::Args)]
pub struct JobBudgetArgs {
    /// The most the whole run (or chain) may spend, as CodeCourier meters it, in US dollars
    #[arg(long, value_name = "USD", allow_negative_numbers = true,
          value_parser = |text: &str| Budget::parse_usd(text, "--max-cost-usd"))]
    max_cost_usd: Option<f64>,
    /// The most tokens the whole run (or chain) may use
    #[arg(long, value_name = "TOKENS")]
    max_tokens: Option<u64>,
}

impl JobBudgetArgs {
    fn apply(&self, definition: &mut WorkflowDef) {
        if self.max_cost_usd.is_some() {
            definition.max_cost_usd = self.max_cost_usd;
        }
        if self.max_tokens.is_some() {
            definition.max_tokens = self.max_tokens;
        }
    }
}

fn invalid(e: LaunchError) -> CliError {
    match e {
        LaunchError::Invalid(message) => CliError::Invalid(message),
        LaunchError::Store(e) => e.into(),
    }
}

async fn project_of(store: &Store, repo: Option<&str>) -> Result<Option<i64>, CliError> {
    match repo {
        None => Ok(None),
        Some(repo) => {
            let repo = repo_text(repo)?;
            Ok(Some(store.project_for_repo(&repo).await?.id))
        }
    }
}

/// A repository as the records name it (a local path made absolute).
fn repo_text(repo: &str) -> Result<String, CliError> {
    let input = crate::catalog::LaunchInput {
        prompt: Some("-".into()),
        repo: Some(repo.into()),
        ..Default::default()
    };
    let catalog = Catalog::built_in();
    input
        .validate(&catalog, true)
        .map(|r| r.repo.to_string())
        .map_err(|e| CliError::Invalid(format!("--repo: {e}")))
}

fn owner() -> String {
    std::env::var("USER").unwrap_or_else(|_| "terminal".into())
}

/// What `workflow run` and `chain run` start from: the operations, the repository as recorded,
/// its project, the workflow by name, and who starts the job.
struct Start {
    ops: Ops,
    repo: String,
    project: Option<i64>,
    definition: WorkflowDef,
    user: String,
}

impl Start {
    async fn new(
        config: &Config,
        catalog: &Catalog,
        repo: &str,
        workflow: Option<&str>,
    ) -> Result<Self, CliError> {
        let ops = ops(config, catalog).await?;
        let repo = repo_text(repo)?;
        let project = project_of(ops.store(), Some(&repo)).await?;
        let definition = ops
            .runner()
            .find_workflow(project, workflow)
            .await
            .map_err(invalid)?;
        Ok(Self {
            ops,
            repo,
            project,
            definition,
            user: owner(),
        })
    }

    fn owner(&self) -> JobOwner<'_> {
        JobOwner {
            project_id: self.project,
            launched_by: &self.user,
            discord: None,
        }
    }

    fn request<'a>(
        &'a self,
        owner: &'a JobOwner<'a>,
        base_branch: Option<&'a str>,
        env: &'a [String],
    ) -> JobRequest<'a> {
        JobRequest {
            workflow: &self.definition,
            repo: &self.repo,
            base_branch,
            env,
            owner,
            allow_local: true,
        }
    }
}

/// Ctrl-C stops the current step's sandbox and ends the run as stopped.
fn stop_on_interrupt() -> CancellationToken {
    let stop = CancellationToken::new();
    let on_interrupt = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping…");
            on_interrupt.cancel();
        }
    });
    stop
}

pub async fn run_workflow(
    config: &Config,
    catalog: &Catalog,
    command: WorkflowCommand,
) -> Result<ExitCode, CliError> {
    match command {
        WorkflowCommand::List { repo, json } => {
            let store = Store::open(config).await?;
            let project = project_of(&store, repo.as_deref()).await?;
            let mut all = vec![WorkflowDef::built_in()];
            all.extend(
                store
                    .list_workflows(project)
                    .await?
                    .into_iter()
                    .map(|w| w.definition),
            );
            if json {
                println!("{}", serde_json::to_string(&all).expect("serialises"));
            } else {
                for w in &all {
                    println!(
                        "{}",
                        describe(catalog, w).lines().next().unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::Show { name, repo, json } => {
            let ops = ops(config, catalog).await?;
            let project = project_of(ops.store(), repo.as_deref()).await?;
            let w = ops
                .runner()
                .find_workflow(project, Some(&name))
                .await
                .map_err(invalid)?;
            if json {
                println!("{}", serde_json::to_string(&w).expect("serialises"));
            } else {
                println!("{}", describe(catalog, &w));
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::Create { file, repo } => {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                CliError::Invalid(format!("--file: cannot read {}: {e}", file.display()))
            })?;
            let definition: WorkflowDef = serde_json::from_str(&text).map_err(|e| {
                CliError::Invalid(format!(
                    "--file: {} is not a workflow definition: {e}",
                    file.display()
                ))
            })?;
            definition
                .validate(catalog)
                .map_err(|e| CliError::Invalid(format!("workflow {}: {e}", definition.name)))?;
            let store = Store::open(config).await?;
            let project = project_of(&store, repo.as_deref()).await?;
            store
                .create_workflow(project, &definition, &owner())
                .await
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            println!(
                "Workflow {} stored.\n{}",
                definition.name,
                describe(catalog, &definition)
            );
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::Run {
            repo,
            workflow,
            prompt,
            issue,
            github_issue,
            base_branch,
            env,
            budget,
            json,
        } => {
            let mut start = Start::new(config, catalog, &repo, workflow.as_deref()).await?;
            budget.apply(&mut start.definition);
            let named = TaskRef::for_run(prompt.as_deref(), issue.as_deref(), github_issue)
                .map_err(|refusal| {
                    match refusal {
                    TaskRefusal::Blank => CliError::Invalid(
                        "give the task: --prompt (not blank), --issue SESSION#N or --github-issue N"
                            .into(),
                    ),
                    TaskRefusal::NotSessionIssue(issue) => {
                        CliError::Invalid(format!("--issue: \"{issue}\" is not SESSION#N"))
                    }
                }
                })?;
            let ops = &start.ops;
            let task = ops
                .run_task(&named, &start.repo, None)
                .await
                .map_err(invalid)?;
            let owner = start.owner();
            let request = start.request(&owner, base_branch.as_deref(), &env);
            let job = ops
                .runner()
                .start_run(&request, task)
                .await
                .map_err(invalid)?;
            follow(ops, job, &start.definition, json).await
        }
        WorkflowCommand::Resume { id, json } => {
            resume(config, catalog, JobKind::Run, &id, json).await
        }
        WorkflowCommand::Status { id, json } => show(config, JobKind::Run, &id, json).await,
    }
}

pub async fn run_chain(
    config: &Config,
    catalog: &Catalog,
    command: ChainCommand,
) -> Result<ExitCode, CliError> {
    match command {
        ChainCommand::Run {
            repo,
            workflow,
            item,
            from_session,
            issues,
            github_issue,
            continue_on_failure,
            base_branch,
            env,
            budget,
            json,
        } => {
            let mut start = Start::new(config, catalog, &repo, workflow.as_deref()).await?;
            budget.apply(&mut start.definition);
            let ops = &start.ops;
            // In order: the lines of text (blank ones are no issue), the session's issues, then
            // GitHub's.
            let texts = item
                .into_iter()
                .filter(|t| !t.trim().is_empty())
                .map(TaskRef::Text);
            let scanned = from_session.iter().flat_map(|session| {
                issues.iter().map(|&position| TaskRef::ScanIssue {
                    session: session.clone(),
                    position,
                })
            });
            let github = github_issue.iter().map(|&n| TaskRef::GithubIssue(n));
            let named: Vec<TaskRef> = texts.chain(scanned).chain(github).collect();
            let items = ops
                .chain_tasks(&named, &start.repo, None)
                .await
                .map_err(invalid)?;
            let session_id = match &from_session {
                Some(session) => ops
                    .store()
                    .find_issue_session(session)
                    .await
                    .ok()
                    .map(|s| s.id),
                None => None,
            };
            let owner = start.owner();
            let request = start.request(&owner, base_branch.as_deref(), &env);
            let job = ops
                .runner()
                .start_chain(
                    &request,
                    items,
                    continue_on_failure,
                    session_id,
                    config.max_chain_items as usize,
                )
                .await
                .map_err(invalid)?;
            follow(ops, job, &start.definition, json).await
        }
        ChainCommand::Resume { id, json } => {
            resume(config, catalog, JobKind::Chain, &id, json).await
        }
        ChainCommand::Show { id, json } => show(config, JobKind::Chain, &id, json).await,
    }
}

/// The live timeline, or nothing when the record goes out as JSON.
fn timeline(json: bool) -> Box<dyn WorkflowSink> {
    if json {
        Box::new(crate::pipeline::NoWorkflowProgress)
    } else {
        Box::new(TerminalTimeline::default())
    }
}

/// Follows a job just started to its end, with its live timeline, and reports how it ended.
async fn follow(
    ops: &Ops,
    job: JobId,
    workflow: &WorkflowDef,
    json: bool,
) -> Result<ExitCode, CliError> {
    if !json {
        eprintln!("{} ({})", capitalised(&job.to_string()), workflow.name);
    }
    report(ops, job, json).await
}

/// Finishes a job a stopped CodeCourier left unfinished, unless a live process drives it.
async fn resume(
    config: &Config,
    catalog: &Catalog,
    kind: JobKind,
    id: &str,
    json: bool,
) -> Result<ExitCode, CliError> {
    let ops = ops(config, catalog).await?;
    let record = ops
        .store()
        .find_job(kind, id)
        .await
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let job = record.id();
    if let Some(driver) = ops.driven_elsewhere(job).await? {
        return Err(CliError::Invalid(format!(
            "{job} is being driven by {driver} right now; nothing to resume"
        )));
    }
    if record.status == JobStatus::Running && !json {
        eprintln!("Resuming {job}");
    }
    report(&ops, job, json).await
}

/// Drives the job to its end (only reading it when it has ended) and prints the record; the
/// exit code says whether it passed.
async fn report(ops: &Ops, job: JobId, json: bool) -> Result<ExitCode, CliError> {
    let sink = timeline(json);
    let record = ops
        .runner()
        .drive(job, sink.as_ref(), stop_on_interrupt())
        .await?;
    print(&record, json);
    ops.store().clone().close().await;
    Ok(if record.status == JobStatus::Passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `workflow status` and `chain show`: one job as recorded.
async fn show(config: &Config, kind: JobKind, id: &str, json: bool) -> Result<ExitCode, CliError> {
    let store = Store::open(config).await?;
    let record = store
        .find_job(kind, id)
        .await
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    print(&record, json);
    Ok(ExitCode::SUCCESS)
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A workflow in a few lines: the steps with the tool each uses.
fn describe(catalog: &Catalog, w: &WorkflowDef) -> String {
    let mut text = format!("{} · up to {} optimizer rounds", w.name, w.max_rounds);
    let budget = w.budget();
    if budget.is_set() {
        text.push_str(&format!(
            " · budget {} for the whole run",
            budget.describe()
        ));
    }
    for kind in StepKind::ALL {
        let (tool, model, template) = w.step_tool(catalog, kind);
        text.push_str(&format!(
            "\n  {kind:<9} {tool} · {model}{} — {}",
            template
                .map(|t| format!(" · template {t}"))
                .unwrap_or_default(),
            crate::cli::sandboxes::truncate(w.persona(kind), 80)
        ));
    }
    text
}

/// A job's record: as JSON, or in lines for people.
fn print(job: &JobRecord, json: bool) {
    if json {
        println!("{}", serde_json::to_string(job).expect("serialises"));
        return;
    }
    println!();
    let subject = match &job.work {
        Work::Run(_) => job.repo.clone(),
        Work::Chain(chain) => format!("{} issues", chain.items.len()),
    };
    println!(
        "{} — {} · {} · {subject}",
        capitalised(&job.id().to_string()),
        job.status,
        job.workflow.name
    );
    if let Work::Run(run) = &job.work {
        println!("  task      {}", run.task.title);
    }
    if let Some(branch) = &job.branch {
        println!(
            "  branch    {branch} (from {})",
            job.base_branch.as_deref().unwrap_or("?")
        );
    }
    match &job.work {
        Work::Run(run) => {
            for step in &run.steps {
                println!("  {}", step_line(step));
            }
        }
        Work::Chain(chain) => {
            for (i, item) in chain.items.iter().enumerate() {
                let status = chain
                    .run_at(i as u32)
                    .map(|r| r.status.to_string())
                    .unwrap_or_else(|| "not run".into());
                println!("  {}. {} — {status}", i + 1, item.title);
            }
        }
    }
    if let Some(error) = &job.error {
        println!("  error     {error}");
    }
    if let Work::Run(run) = &job.work {
        for f in &run.findings {
            println!("  finding   {f}");
        }
    }
    if let Some(url) = &job.pr_url {
        println!("  pull request {url}");
    }
}
