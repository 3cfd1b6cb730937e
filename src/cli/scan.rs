//! `codecourier scan`: an issue session from the terminal, and the sessions recorded so far.

use std::process::ExitCode;

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};

use super::launch::{launch_json, run_request};
use super::sandboxes::truncate;
use super::{invalid_request, CliError};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::model::scan::IssueSessionStatus;
use crate::pipeline::recover;
use crate::pipeline::scan::{severity_counts, ScanInput};
use crate::sandbox::provider_for;
use crate::store::{IssueRecord, IssueSession, SandboxRecord, Store};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ScanArgs {
    #[command(subcommand)]
    command: Option<ScanCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
enum ScanCommand {
    /// List issue sessions, newest first
    History {
        /// How many to show
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show one issue session and its issues
    Show {
        /// The session id, or a unique prefix of it (at least 4 characters)
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// owner/name, a GitHub URL (https or ssh), or a local repository path
    #[arg(long)]
    repo: Option<String>,
    /// What to look at, in a few words ("security", "tests"); default: everything
    #[arg(long)]
    focus: Option<String>,
    /// Agent CLI: claude-code (default), opencode, codex, pi
    #[arg(long)]
    tool: Option<String>,
    /// Model id; defaults to the tool's default model
    #[arg(long)]
    model: Option<String>,
    /// At most this many issues (1–100, default 20)
    #[arg(long, allow_negative_numbers = true)]
    max_issues: Option<i64>,
    /// Branch to scan; defaults to the repository's default branch
    #[arg(long)]
    base_branch: Option<String>,
    /// Timeout: 90s, 15m, 2h or milliseconds (1 minute–4 hours, default 15m)
    #[arg(long)]
    timeout: Option<String>,
    /// An environment variable for the sandbox (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Print the session and its issues as one JSON object on standard output
    #[arg(long)]
    json: bool,
}

/// The store, with what a crashed CodeCourier left behind ended before anyone reads it.
async fn recovered_store(config: &Config) -> Result<Store, CliError> {
    let store = Store::open(config).await?;
    if let Ok(provider) = provider_for(config) {
        recover(&store, provider.as_ref()).await?;
    }
    Ok(store)
}

pub async fn run(config: &Config, catalog: &Catalog, args: ScanArgs) -> Result<ExitCode, CliError> {
    match args.command {
        Some(ScanCommand::History { limit, json }) => {
            let store = recovered_store(config).await?;
            let sessions = store.list_issue_sessions(None, limit).await?;
            if json {
                println!("{}", serde_json::to_string(&sessions).expect("serialises"));
            } else if sessions.is_empty() {
                println!("No issue sessions yet: `codecourier scan --repo …` starts one.");
            } else {
                print_history(&store, &sessions).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(ScanCommand::Show { id, json }) => {
            let store = recovered_store(config).await?;
            let session = store
                .find_issue_session(&id)
                .await
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            let issues = store.issues(session.id).await?;
            let sandbox = match session.sandbox_id {
                Some(id) => store.get_sandbox(id).await?,
                None => None,
            };
            if json {
                println!("{}", session_json(&session, &issues, sandbox.as_ref()));
            } else {
                print_session(&session, &issues, sandbox.as_ref());
            }
            Ok(ExitCode::SUCCESS)
        }
        None => scan(config, catalog, args.run).await,
    }
}

async fn scan(config: &Config, catalog: &Catalog, args: RunArgs) -> Result<ExitCode, CliError> {
    let input = ScanInput {
        repo: args.repo,
        base_branch: args.base_branch,
        focus: args.focus,
        tool: args.tool,
        model: args.model,
        max_issues: args.max_issues,
        timeout: args.timeout,
        env: args.env,
    };
    // The terminal user owns this machine, so local repositories are always allowed here.
    let request = input
        .validate(catalog, true)
        .map_err(|e| invalid_request(&e))?;
    let (store, record) = run_request(config, catalog, request, args.json).await?;
    let session_id = record
        .issue_session_id
        .as_deref()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("sandbox {} has no issue session", record.id))?;
    let session = store
        .get_issue_session(session_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("issue session {session_id} is not in the database"))?;
    let issues = store.issues(session.id).await?;
    if args.json {
        println!("{}", session_json(&session, &issues, Some(&record)));
    } else {
        print_session(&session, &issues, Some(&record));
    }
    store.close().await;
    Ok(if session.status == IssueSessionStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The session, its issues and its scan sandbox, as `scan --json` prints them.
fn session_json(
    session: &IssueSession,
    issues: &[IssueRecord],
    sandbox: Option<&SandboxRecord>,
) -> serde_json::Value {
    serde_json::json!({
        "session": session,
        "issues": issues,
        "sandbox": sandbox.map(launch_json),
    })
}

fn print_session(session: &IssueSession, issues: &[IssueRecord], sandbox: Option<&SandboxRecord>) {
    println!();
    let mut usage = Vec::new();
    if let Some(s) = sandbox {
        if let Some(cost) = s.cost_usd {
            usage.push(format!("${cost:.4}"));
        }
        if let Some(ms) = s.duration_ms {
            usage.push(format!("{:.1}s", ms as f64 / 1000.0));
        }
    }
    println!(
        "Issue session {} — {} · {}{}",
        session.id,
        session.status,
        session.repo,
        if usage.is_empty() {
            String::new()
        } else {
            format!(" · {}", usage.join(" · "))
        }
    );
    if let Some(focus) = &session.focus {
        println!("  focus     {focus}");
    }
    if let Some(error) = &session.error {
        println!("  error     {error}");
    }
    if let Some(raw) = &session.raw_output {
        println!("  the agent's answer, as given:");
        for line in raw.lines() {
            println!("    {line}");
        }
    }
    if session.status != IssueSessionStatus::Completed {
        return;
    }
    if issues.is_empty() {
        println!("  Nothing found: the scan reported no issues.");
        return;
    }
    println!(
        "  {} issue{}: {}",
        issues.len(),
        if issues.len() == 1 { "" } else { "s" },
        severity_counts(issues.iter().map(|i| &i.issue.severity))
    );
    for record in issues {
        let i = &record.issue;
        println!(
            "\n  {:>2}. {} {:<8} [{}] {}",
            record.position,
            i.severity.emoji(),
            i.severity,
            i.category,
            i.title
        );
        let files: Vec<String> = i.files.iter().map(|f| f.to_string()).collect();
        if !files.is_empty() {
            println!("      files   {}", files.join(", "));
        }
        println!("      effort  {}", i.effort);
        println!(
            "      {}",
            truncate(i.description.lines().next().unwrap_or_default(), 160)
        );
        if let Some(url) = &record.github_issue_url {
            println!("      GitHub  {url}");
        }
    }
}

async fn print_history(store: &Store, sessions: &[IssueSession]) -> Result<(), CliError> {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["ID", "Status", "Repo", "Focus", "Issues", "Created (UTC)"]);
    for s in sessions {
        let issues = store.issues(s.id).await?;
        table.add_row([
            s.id.short(),
            s.status.to_string(),
            s.repo.clone(),
            s.focus
                .as_deref()
                .map(|f| truncate(f, 30))
                .unwrap_or_default(),
            match s.status {
                IssueSessionStatus::Completed => issues.len().to_string(),
                _ => "—".into(),
            },
            s.created_at.format("%Y-%m-%d %H:%M").to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}
