//! `codecourier project`: a repository's project from the terminal — its settings, variables,
//! keys, skills, commands and learnings. The project of a repository is the one a terminal launch of
//! it uses (the first bound to it, created on first use). Here: the commands, listing, showing and
//! settings; variables and keys in `secrets.rs`; skills, commands and learnings in `library.rs`.

mod library;
mod secrets;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::CliError;
use crate::catalog::{usd, Budget, RepoRef};
use crate::config::Config;
use crate::model::NamedText;
use crate::pipeline::project_scope;
use crate::store::{Project, ProjectChange, Store};
use library::{commands, learnings, skills, CommandsCommand, LearningsCommand, SkillsCommand};
use secrets::{env, keys, EnvCommand, KeysCommand};

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Every project: repository, Discord channel, pending learnings
    List {
        #[arg(long)]
        json: bool,
    },
    /// One project's settings, and the names (never the values) of its variables and keys
    Show {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(long)]
        json: bool,
    },
    /// Change a project's settings (only those given)
    Setup(SetupArgs),
    /// Variables every launch of the project gets
    #[command(subcommand)]
    Env(EnvCommand),
    /// Agent keys the project's launches use (read from standard input, never echoed)
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Skills the project's agents get (`SKILL.md` files)
    #[command(subcommand)]
    Skills(SkillsCommand),
    /// Commands the project's agents get (prompt templates run as /name)
    #[command(subcommand)]
    Commands(CommandsCommand),
    /// What earlier runs proposed to remember: only accepted learnings reach later prompts
    #[command(subcommand)]
    Learnings(LearningsCommand),
}

#[derive(Debug, Args)]
pub struct RepoArg {
    /// The repository (owner/name, a GitHub URL, or a local path)
    #[arg(long)]
    repo: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Switch {
    On,
    Off,
}

impl From<Switch> for bool {
    fn from(s: Switch) -> bool {
        matches!(s, Switch::On)
    }
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// The branch launches start from ("" for the repository's default)
    #[arg(long)]
    base_branch: Option<String>,
    /// Standing instructions for every agent, from a file ("-" for standard input; empty clears)
    #[arg(long, value_name = "FILE")]
    system_prompt_file: Option<PathBuf>,
    /// A shell script the setup phase runs in the project directory before the agent ("-" for
    /// standard input; an empty file clears it)
    #[arg(long, value_name = "FILE")]
    setup_script_file: Option<PathBuf>,
    /// Without a setup script, install what the repository's lockfiles name
    #[arg(long)]
    auto_setup: Option<Switch>,
    /// Accept new learnings without review
    #[arg(long)]
    auto_accept_learnings: Option<Switch>,
    /// Allow pushes that change .github/workflows/
    #[arg(long)]
    allow_workflow_changes: Option<Switch>,
    /// The budget in US dollars of launches that set none ("" or "none" clears it)
    #[arg(long, value_name = "USD")]
    default_budget_usd: Option<String>,
}

/// The project a terminal launch of `repo` uses.
async fn project_of(store: &Store, repo: &RepoArg) -> Result<Project, CliError> {
    let parsed = RepoRef::parse(&repo.repo).ok_or_else(|| {
        CliError::Invalid(format!(
            "--repo {}: not owner/name, a GitHub URL, or a git repository on this machine",
            repo.repo
        ))
    })?;
    Ok(store.project_for_repo(&parsed.to_string()).await?)
}

/// A file's text, or standard input's for "-".
fn read_text(path: &PathBuf) -> Result<String, CliError> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Invalid(format!("cannot read standard input: {e}")))?;
        return Ok(text);
    }
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Invalid(format!("cannot read {}: {e}", path.display())))
}

fn who() -> String {
    std::env::var("USER").unwrap_or_else(|_| "terminal".into())
}

pub async fn run(config: &Config, command: ProjectCommand) -> Result<ExitCode, CliError> {
    let store = Store::open(config).await?;
    match command {
        ProjectCommand::List { json } => list(&store, json).await,
        ProjectCommand::Show { repo, json } => show(&store, &repo, json).await,
        ProjectCommand::Setup(args) => setup(&store, args).await,
        ProjectCommand::Env(command) => env(&store, command).await,
        ProjectCommand::Keys(command) => keys(&store, command).await,
        ProjectCommand::Skills(command) => skills(&store, command).await,
        ProjectCommand::Commands(command) => commands(&store, command).await,
        ProjectCommand::Learnings(command) => learnings(&store, command).await,
    }
}

async fn list(store: &Store, json: bool) -> Result<ExitCode, CliError> {
    let projects = store.list_projects().await?;
    let mut rows = Vec::new();
    for p in &projects {
        let pending = store
            .learnings(p.id)
            .await?
            .iter()
            .filter(|l| !l.accepted())
            .count();
        rows.push((p, pending));
    }
    if json {
        let value: Vec<serde_json::Value> = rows
            .iter()
            .map(|(p, pending)| {
                serde_json::json!({"id": p.id, "repo": p.repo, "base_branch": p.base_branch,
                    "pending_learnings": pending})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No projects yet: a launch or `codecourier project setup --repo R` makes one.");
    }
    for (p, pending) in rows {
        println!(
            "{:>4}  {}  base {}{}",
            p.id,
            p.repo,
            p.base_branch.as_deref().unwrap_or("(default)"),
            if pending > 0 {
                format!("  · {pending} learning(s) to review")
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(store: &Store, repo: &RepoArg, json: bool) -> Result<ExitCode, CliError> {
    let p = project_of(store, repo).await?;
    let scope = project_scope(p.id);
    let (variables, keys) = store.setting_names(&scope).await?;
    let names = |items: Vec<NamedText>| items.into_iter().map(|i| i.name).collect::<Vec<_>>();
    let learnings = store.learnings(p.id).await?;
    let accepted = learnings.iter().filter(|l| l.accepted()).count();
    let value = serde_json::json!({
        "id": p.id,
        "repo": p.repo,
        "base_branch": p.base_branch,
        "system_prompt": p.system_prompt,
        "setup_script": p.setup_script,
        "auto_setup": p.auto_setup,
        "auto_accept_learnings": p.auto_accept_learnings,
        "allow_workflow_changes": p.allow_workflow_changes,
        "default_budget_usd": p.default_budget_usd,
        "variables": variables,
        "keys": keys,
        "skills": names(p.skills()),
        "commands": names(p.commands()),
        "learnings": {"accepted": accepted, "proposed": learnings.len() - accepted},
    });
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let list = |v: &serde_json::Value| {
        let items: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str())
            .collect();
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    let on = |b: bool| if b { "on" } else { "off" };
    println!("project {} · {}", p.id, p.repo);
    println!(
        "base branch:            {}",
        p.base_branch
            .as_deref()
            .unwrap_or("(the repository's default)")
    );
    println!(
        "instructions:           {}",
        p.system_prompt
            .as_deref()
            .map(|t| t.lines().next().unwrap_or_default().to_string())
            .unwrap_or_else(|| "none".into())
    );
    println!(
        "setup script:           {}",
        match &p.setup_script {
            Some(s) => format!("{} line(s)", s.lines().count()),
            None => "none (the repository's .codecourier/setup.sh, if any)".into(),
        }
    );
    println!("auto setup:             {}", on(p.auto_setup));
    println!("auto-accept learnings:  {}", on(p.auto_accept_learnings));
    println!(
        "workflow file changes:  {}",
        if p.allow_workflow_changes {
            "allowed"
        } else {
            "refused"
        }
    );
    println!(
        "default budget:         {}",
        p.default_budget_usd
            .map(usd)
            .unwrap_or_else(|| "none (the deployment's, if any)".into())
    );
    println!("variables:              {}", list(&value["variables"]));
    println!("keys:                   {}", list(&value["keys"]));
    println!("skills:                 {}", list(&value["skills"]));
    println!("commands:               {}", list(&value["commands"]));
    println!(
        "learnings:              {accepted} accepted, {} to review",
        learnings.len() - accepted
    );
    Ok(ExitCode::SUCCESS)
}

/// An optional text setting from a file: an empty file clears it.
fn optional_text(path: &Option<PathBuf>) -> Result<Option<Option<String>>, CliError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = read_text(path)?;
    Ok(Some((!text.trim().is_empty()).then_some(text)))
}

async fn setup(store: &Store, args: SetupArgs) -> Result<ExitCode, CliError> {
    let p = project_of(store, &args.repo).await?;
    let change = ProjectChange {
        base_branch: args
            .base_branch
            .map(|b| Some(b.trim().to_string()).filter(|b| !b.is_empty())),
        system_prompt: optional_text(&args.system_prompt_file)?,
        setup_script: optional_text(&args.setup_script_file)?,
        auto_setup: args.auto_setup.map(bool::from),
        auto_accept_learnings: args.auto_accept_learnings.map(bool::from),
        allow_workflow_changes: args.allow_workflow_changes.map(bool::from),
        default_budget_usd: match args.default_budget_usd.as_deref().map(str::trim) {
            None => None,
            Some("" | "none") => Some(None),
            Some(text) => Some(Some(
                Budget::parse_usd(text, "--default-budget-usd").map_err(CliError::Invalid)?,
            )),
        },
    };
    store.update_project(p.id, &change).await?;
    println!("project {} · {} updated", p.id, p.repo);
    Ok(ExitCode::SUCCESS)
}
