//! `codecourier sandboxes list|show|stop|logs`: the records, as tables or JSON, and stopping one.

use std::process::ExitCode;
use std::sync::Arc;

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};

use super::CliError;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::model::{PhaseOutcome, SandboxStatus};
use crate::pipeline::ops::SandboxStop;
use crate::pipeline::{recover, Launcher, Ops};
use crate::sandbox::provider_for;
use crate::store::{SandboxFilter, SandboxRecord, Store};

#[derive(Debug, clap::Subcommand)]
pub enum SandboxesCommand {
    /// List sandboxes, newest first
    List {
        /// Only sandboxes in this status (creating, provisioning, setting_up, running, completed, failed, timed_out, stopped)
        #[arg(long)]
        status: Option<SandboxStatus>,
        /// How many to show
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show one sandbox: its request, phases and result
    Show {
        /// The sandbox id, or a unique prefix of it (at least 4 characters)
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop a sandbox (also one launched from another terminal) and record it as stopped
    Stop {
        /// The sandbox id, or a unique prefix of it
        id: String,
    },
    /// Print a sandbox's event log: phases, agent activity, status changes
    Logs {
        /// The sandbox id, or a unique prefix of it
        id: String,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(
    config: &Config,
    catalog: &Catalog,
    command: SandboxesCommand,
) -> Result<ExitCode, CliError> {
    let store = Store::open(config).await?;
    // Records a crashed CodeCourier left behind get their final status before anyone reads them.
    if let Ok(provider) = provider_for(config) {
        recover(&store, provider.as_ref()).await?;
    }
    match command {
        SandboxesCommand::List {
            status,
            limit,
            json,
        } => {
            let records = store
                .list_sandboxes(&SandboxFilter {
                    status,
                    limit,
                    ..Default::default()
                })
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&records).expect("records serialise")
                );
            } else if records.is_empty() {
                println!("No sandboxes yet. Start one with: codecourier launch --repo OWNER/NAME --prompt \"...\"");
            } else {
                print_list(&records);
            }
        }
        SandboxesCommand::Show { id, json } => {
            let record = store.find_sandbox(&id).await?;
            if json {
                println!("{}", record.to_json());
            } else {
                print_record(&record);
            }
        }
        SandboxesCommand::Stop { id } => {
            let record = store.find_sandbox(&id).await?;
            let provider = provider_for(config).map_err(CliError::Invalid)?;
            let launcher = Launcher::new(config, store.clone(), provider, catalog.clone());
            let ops = Ops::new(Arc::new(launcher), catalog.clone(), true);
            let by = std::env::var("USER").unwrap_or_else(|_| "someone".into());
            let by = format!("{by} from the terminal");
            match ops.stop_sandbox(&record, &by).await? {
                SandboxStop::AlreadyEnded(status) => {
                    println!("Sandbox {} already ended: {status}", record.id)
                }
                SandboxStop::Stopping => println!("Stopping sandbox {}", record.id),
                SandboxStop::Stopped(status) => println!("Sandbox {} {status}", record.id),
                SandboxStop::NotStopped(why) => {
                    return Err(CliError::Failed(anyhow::anyhow!(
                        "could not stop the sandbox: {why}"
                    )))
                }
            }
        }
        SandboxesCommand::Logs { id, json } => {
            let record = store.find_sandbox(&id).await?;
            for event in store.events(record.id, 0).await? {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&event).expect("event serialises")
                    );
                } else {
                    println!("{}", event.log_line());
                }
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The first `max` characters, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

fn print_list(records: &[SandboxRecord]) {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "ID",
            "Status",
            "Tool",
            "Model",
            "Repo",
            "Created (UTC)",
            "Prompt",
        ]);
    for r in records {
        table.add_row([
            r.id.short(),
            r.status.to_string(),
            r.request.tool.clone(),
            r.request.model.clone(),
            r.request.repo.to_string(),
            r.created_at.format("%Y-%m-%d %H:%M").to_string(),
            truncate(r.request.prompt.lines().next().unwrap_or_default(), 40),
        ]);
    }
    println!("{table}");
}

fn print_record(r: &SandboxRecord) {
    let req = &r.request;
    println!("Sandbox {} — {}", r.id, r.status);
    println!(
        "  repo        {} (base: {})",
        req.repo,
        req.base_branch.as_deref().unwrap_or("default branch")
    );
    if let Some(branch) = &r.branch {
        println!("  branch      {branch}");
    }
    println!(
        "  tool        {} · {} · effort {}",
        req.tool, req.model, req.effort
    );
    println!(
        "  resources   {} MB · {} CPUs · timeout {}",
        req.resources.memory_mb,
        req.resources.cpus,
        humantime::format_duration(std::time::Duration::from_millis(req.resources.timeout_ms))
    );
    println!("  template    {}", req.template);
    if !r.env_names.is_empty() {
        println!("  env         {}", r.env_names.join(", "));
    }
    println!(
        "  launched    by {} at {}",
        r.launched_by,
        r.created_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    println!(
        "  prompt      {}",
        truncate(&req.prompt.replace('\n', " "), 100)
    );
    if !r.phases.is_empty() {
        println!("Phases:");
        for p in &r.phases {
            let mark = match p.outcome {
                PhaseOutcome::Running => "…",
                PhaseOutcome::Ok => "✓",
                PhaseOutcome::Failed => "✗",
                PhaseOutcome::Skipped => "-",
            };
            let took = p
                .duration_ms()
                .map(|ms| format!(" {:.1}s", ms as f64 / 1000.0))
                .unwrap_or_default();
            let detail = p
                .detail
                .as_deref()
                .map(|d| format!(" — {d}"))
                .unwrap_or_default();
            println!("  {mark} {}{took}{detail}", p.phase);
        }
    }
    let usage = r.usage_words();
    if !usage.is_empty() {
        println!("  usage       {}", usage.join(" · "));
    }
    if r.request.budget.is_set() {
        println!("  budget      {}", r.request.budget.describe());
    }
    if let Some(text) = &r.result_text {
        println!("Result: {}", truncate(text, 500));
    }
    if let Some(error) = &r.error {
        let phase = r
            .failed_phase
            .map(|p| format!(" in {p}"))
            .unwrap_or_default();
        println!("Failed{phase}: {error}");
    }
}
