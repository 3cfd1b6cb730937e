//! `codecourier project env` and `project keys`: the variables every launch of a project gets and
//! the agent keys its launches use (values read from standard input, never echoed).

use std::io::Read as _;
use std::process::ExitCode;

use clap::Subcommand;

use super::{project_of, RepoArg};
use crate::cli::CliError;
use crate::config::AGENT_KEY_VARS;
use crate::pipeline::project_scope;
use crate::secret::Secret;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Set variables: NAME=VALUE …
    Set {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(required = true, value_name = "NAME=VALUE")]
        pairs: Vec<String>,
    },
    /// Remove variables by name
    Unset {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Store a key; its value is read from standard input
    Set {
        #[command(flatten)]
        repo: RepoArg,
        name: String,
    },
    /// Remove a stored key
    Unset {
        #[command(flatten)]
        repo: RepoArg,
        name: String,
    },
}

pub(super) async fn env(store: &Store, command: EnvCommand) -> Result<ExitCode, CliError> {
    let (repo, set, unset) = match command {
        EnvCommand::Set { repo, pairs } => (repo, pairs, Vec::new()),
        EnvCommand::Unset { repo, names } => (repo, Vec::new(), names),
    };
    let p = project_of(store, &repo).await?;
    let scope = project_scope(p.id);
    let mut vars = store.get_env(&scope).await?;
    for pair in &set {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(CliError::Invalid(format!("{pair}: give NAME=VALUE")));
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(CliError::Invalid(format!(
                "{name}: a variable name holds letters, digits and underscores"
            )));
        }
        vars.retain(|(n, _)| n != name);
        vars.push((name.to_string(), Secret::new(value)));
    }
    for name in &unset {
        vars.retain(|(n, _)| n != name);
    }
    store.put_env(&scope, &vars).await?;
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    println!(
        "{}: variables {}",
        p.repo,
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn key_name(name: &str) -> Result<&str, CliError> {
    AGENT_KEY_VARS
        .iter()
        .find(|k| **k == name)
        .copied()
        .ok_or_else(|| {
            CliError::Invalid(format!(
                "{name} is not an agent key; keys are {} (other variables: `project env set`)",
                AGENT_KEY_VARS.join(", ")
            ))
        })
}

pub(super) async fn keys(store: &Store, command: KeysCommand) -> Result<ExitCode, CliError> {
    match command {
        KeysCommand::Set { repo, name } => {
            let name = key_name(&name)?;
            let p = project_of(store, &repo).await?;
            let mut value = String::new();
            std::io::stdin().read_to_string(&mut value).map_err(|e| {
                CliError::Invalid(format!("cannot read the key from standard input: {e}"))
            })?;
            let value = value.trim();
            if value.is_empty() {
                return Err(CliError::Invalid(format!(
                    "no value for {name} on standard input (e.g. `codecourier project keys set --repo R {name} < key.txt`)"
                )));
            }
            store
                .put_secret(&project_scope(p.id), name, &Secret::new(value))
                .await?;
            println!("{}: {name} stored (encrypted; never shown again)", p.repo);
        }
        KeysCommand::Unset { repo, name } => {
            let name = key_name(&name)?;
            let p = project_of(store, &repo).await?;
            let removed = store.delete_secret(&project_scope(p.id), name).await?;
            println!(
                "{}: {name} {}",
                p.repo,
                if removed { "removed" } else { "was not stored" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
