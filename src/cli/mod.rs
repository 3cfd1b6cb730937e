//! The terminal front end: clap arguments, dispatch, and the one place that turns errors into what
//! the user sees and the exit code (2 for invalid input, 1 for anything else that failed).

mod doctor;
mod launch;
mod progress;
mod project;
mod sandboxes;
mod scan;
mod tools;
mod usage;
mod workflow;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::catalog::{Catalog, ValidationErrors};
use crate::config::{Config, ConfigError};

#[derive(Debug, Parser)]
#[command(
    name = "codecourier",
    version,
    about = "Launch AI coding agents (Claude Code, OpenCode, Codex, Pi) into isolated sandboxes, from Discord or the terminal",
    after_help = "Configuration comes from the environment and a .env file in the working directory; see .env.example."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Discord bot (needs DISCORD_TOKEN)
    Serve,
    /// Launch one sandbox from the terminal
    Launch(launch::LaunchArgs),
    /// Scan a repository for issues (an issue session), or list and show earlier sessions
    Scan(scan::ScanArgs),
    /// Inspect sandbox records
    #[command(subcommand)]
    Sandboxes(sandboxes::SandboxesCommand),
    /// Workflows (designer → optimizer → checker): list, show, create, run, resume
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// Work chains: a list of issues run one after another on one branch
    #[command(subcommand)]
    Chain(workflow::ChainCommand),
    /// Projects: settings, variables, keys, skills, commands and learnings of a repository
    #[command(subcommand)]
    Project(project::ProjectCommand),
    /// Show the tool catalog: tools, models, defaults, required keys
    Tools {
        /// Print the catalog as JSON
        #[arg(long)]
        json: bool,
    },
    /// What launches spent, metered by CodeCourier: by person, project, model or tool
    Usage(usage::UsageArgs),
    /// Check the configuration and this machine, and say what to fix
    Doctor,
    /// Inside a local sandbox: start its forwards, then run the command (CodeCourier runs this)
    #[command(name = "sandbox-init", hide = true)]
    SandboxInit {
        /// PORT=SOCKET: listen on the sandbox's 127.0.0.1:PORT, piping each connection to SOCKET
        #[arg(long = "forward")]
        forwards: Vec<String>,
        /// The command to run
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
}

/// What went wrong, sorted by who can fix it.
#[derive(Debug)]
pub enum CliError {
    /// The input or configuration is wrong: exit 2.
    Invalid(String),
    /// Something failed while working: exit 1.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Failed(e)
    }
}

impl From<crate::store::StoreError> for CliError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::NotFound(_) | StoreError::Ambiguous(..) => CliError::Invalid(e.to_string()),
            other => CliError::Failed(other.into()),
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Invalid(e.to_string())
    }
}

/// Launch-request errors in the terminal's words: fields become the flags that set them.
pub(crate) fn invalid_request(errors: &ValidationErrors) -> CliError {
    let mut text = String::from("invalid launch request:");
    for e in &errors.0 {
        text.push_str(&format!(
            "\n  --{}: {}",
            e.field.replace('_', "-"),
            e.message
        ));
    }
    CliError::Invalid(text)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Inside a sandbox: no configuration, no logging set-up, nothing but the command.
    if let Command::SandboxInit { forwards, argv } = &cli.command {
        return crate::sandbox::init::main(forwards, argv);
    }
    let config = Config::from_env();
    if let Ok(config) = &config {
        init_logging(&config.log_filter);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return report(CliError::Failed(e.into())),
    };
    match runtime.block_on(run(cli, config)) {
        Ok(code) => code,
        Err(e) => report(e),
    }
}

fn report(e: CliError) -> ExitCode {
    match e {
        CliError::Invalid(message) => {
            eprintln!("error: {}", message.trim_end());
            ExitCode::from(2)
        }
        CliError::Failed(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("codecourier=info,warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli, config: Result<Config, ConfigError>) -> Result<ExitCode, CliError> {
    // doctor reports configuration problems itself; every other command needs a valid configuration.
    if let Command::Doctor = cli.command {
        return Ok(doctor::run(config).await);
    }
    let config = config?;
    let catalog = Catalog::load(config.catalog_path.as_deref())?;
    match cli.command {
        Command::Tools { json } => tools::run(&catalog, json),
        Command::Launch(args) => launch::run(&config, &catalog, args).await,
        Command::Sandboxes(command) => sandboxes::run(&config, &catalog, command).await,
        Command::Workflow(command) => workflow::run_workflow(&config, &catalog, command).await,
        Command::Chain(command) => workflow::run_chain(&config, &catalog, command).await,
        Command::Serve => {
            config.require_discord()?;
            crate::discord::serve(config, catalog).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan(args) => scan::run(&config, &catalog, args).await,
        Command::Project(command) => project::run(&config, command).await,
        Command::Usage(args) => usage::run(&config, args).await,
        Command::Doctor | Command::SandboxInit { .. } => unreachable!("handled above"),
    }
}
