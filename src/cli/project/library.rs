//! `codecourier project skills`, `commands` and `learnings`: what a project's agents get besides
//! the prompt, and what earlier runs proposed to remember.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{project_of, read_text, who, RepoArg};
use crate::cli::CliError;
use crate::model::NamedText;
use crate::pipeline::extensions;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum SkillsCommand {
    List {
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Add (or replace) a skill from a SKILL.md file ("-" for standard input)
    Add {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Its name (default: the file's front matter)
        #[arg(long)]
        name: Option<String>,
        /// When to use it (default: the file's front matter)
        #[arg(long)]
        description: Option<String>,
    },
    Remove {
        #[command(flatten)]
        repo: RepoArg,
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CommandsCommand {
    List {
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Add (or replace) a command from a markdown file ("-" for standard input)
    Add {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[arg(long)]
        name: String,
    },
    Remove {
        #[command(flatten)]
        repo: RepoArg,
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LearningsCommand {
    /// Proposed and accepted learnings, with their ids
    List {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(long)]
        json: bool,
    },
    /// Accept proposals by id (or all of them)
    Accept {
        #[command(flatten)]
        repo: RepoArg,
        ids: Vec<i64>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Remove learnings by id
    Remove {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

fn print_names(repo: &str, what: &str, items: &[NamedText]) {
    if items.is_empty() {
        println!("{repo}: no {what}");
    }
    for item in items {
        println!("{}  ({} bytes)", item.name, item.text.len());
    }
}

pub(super) async fn skills(store: &Store, command: SkillsCommand) -> Result<ExitCode, CliError> {
    match command {
        SkillsCommand::List { repo } => {
            let p = project_of(store, &repo).await?;
            print_names(&p.repo, "skills", &p.skills());
        }
        SkillsCommand::Add {
            repo,
            file,
            name,
            description,
        } => {
            let text = read_text(&file)?;
            let skill = extensions::skill(name.as_deref(), description.as_deref(), &text)
                .map_err(CliError::Invalid)?;
            let p = project_of(store, &repo).await?;
            let name = skill.name.clone();
            let list = extensions::with_added(p.skills(), skill).map_err(CliError::Invalid)?;
            store.set_skills(p.id, &list).await?;
            println!("{}: skill {name} stored", p.repo);
        }
        SkillsCommand::Remove { repo, name } => {
            let p = project_of(store, &repo).await?;
            let mut list = p.skills();
            let before = list.len();
            list.retain(|s| s.name != name);
            store.set_skills(p.id, &list).await?;
            println!(
                "{}: skill {name} {}",
                p.repo,
                if list.len() < before {
                    "removed"
                } else {
                    "was not there"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn commands(
    store: &Store,
    command: CommandsCommand,
) -> Result<ExitCode, CliError> {
    match command {
        CommandsCommand::List { repo } => {
            let p = project_of(store, &repo).await?;
            print_names(&p.repo, "commands", &p.commands());
        }
        CommandsCommand::Add { repo, file, name } => {
            let text = read_text(&file)?;
            let item = extensions::command(&name, &text).map_err(CliError::Invalid)?;
            let p = project_of(store, &repo).await?;
            let name = item.name.clone();
            let list = extensions::with_added(p.commands(), item).map_err(CliError::Invalid)?;
            store.set_commands(p.id, &list).await?;
            println!("{}: command /{name} stored", p.repo);
        }
        CommandsCommand::Remove { repo, name } => {
            let p = project_of(store, &repo).await?;
            let mut list = p.commands();
            let before = list.len();
            list.retain(|s| s.name != name);
            store.set_commands(p.id, &list).await?;
            println!(
                "{}: command /{name} {}",
                p.repo,
                if list.len() < before {
                    "removed"
                } else {
                    "was not there"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn learnings(
    store: &Store,
    command: LearningsCommand,
) -> Result<ExitCode, CliError> {
    match command {
        LearningsCommand::List { repo, json } => {
            let p = project_of(store, &repo).await?;
            let all = store.learnings(p.id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
                return Ok(ExitCode::SUCCESS);
            }
            if all.is_empty() {
                println!("{}: no learnings yet", p.repo);
            }
            for l in &all {
                println!(
                    "{:>5}  {:<8}  {}",
                    l.id,
                    if l.accepted() { "accepted" } else { "proposed" },
                    l.text
                );
            }
        }
        LearningsCommand::Accept { repo, ids, all } => {
            let p = project_of(store, &repo).await?;
            let ids: Vec<i64> = if all {
                store
                    .learnings(p.id)
                    .await?
                    .into_iter()
                    .filter(|l| !l.accepted())
                    .map(|l| l.id)
                    .collect()
            } else if ids.is_empty() {
                return Err(CliError::Invalid(
                    "name the learnings to accept by id, or --all".into(),
                ));
            } else {
                ids
            };
            let by = who();
            let mut accepted = 0;
            for id in &ids {
                if store.accept_learning(p.id, *id, &by).await? {
                    accepted += 1;
                } else {
                    eprintln!("{}: no learning {id}", p.repo);
                }
            }
            println!("{}: {accepted} learning(s) accepted", p.repo);
        }
        LearningsCommand::Remove { repo, ids } => {
            let p = project_of(store, &repo).await?;
            let mut removed = 0;
            for id in &ids {
                if store.remove_learning(p.id, *id).await? {
                    removed += 1;
                } else {
                    eprintln!("{}: no learning {id}", p.repo);
                }
            }
            println!("{}: {removed} learning(s) removed", p.repo);
        }
    }
    Ok(ExitCode::SUCCESS)
}
