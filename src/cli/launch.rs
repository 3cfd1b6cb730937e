//! `codecourier launch`: one sandbox from the terminal.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::progress::TerminalProgress;
use super::{invalid_request, CliError};
use crate::catalog::{Catalog, LaunchInput, LaunchRequest};
use crate::config::Config;
use crate::model::SandboxStatus;
use crate::pipeline::ops::{LaunchAsk, Refusal};
use crate::pipeline::{recover, LaunchOrigin, Launcher, NoProgress, Ops, ProjectChoice};
use crate::sandbox::provider_for;
use crate::store::{SandboxRecord, Store};

#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// owner/name, a GitHub URL (https or ssh), or a local repository path
    #[arg(long)]
    repo: Option<String>,
    /// What the agent should do (may start with -)
    #[arg(long, allow_hyphen_values = true, conflicts_with = "prompt_file")]
    prompt: Option<String>,
    /// Read the prompt from a file (- for standard input)
    #[arg(long, value_name = "FILE")]
    prompt_file: Option<PathBuf>,
    /// Agent CLI: claude-code (default), opencode, codex, pi
    #[arg(long)]
    tool: Option<String>,
    /// Model id; defaults to the tool's default model
    #[arg(long)]
    model: Option<String>,
    /// Thinking effort: high, medium, low or none
    #[arg(long)]
    effort: Option<String>,
    /// Memory in MB (256–8192, default 1024)
    #[arg(long, allow_negative_numbers = true)]
    memory_mb: Option<i64>,
    /// CPUs (1–8, default 2)
    #[arg(long, allow_negative_numbers = true)]
    cpus: Option<i64>,
    /// Timeout: 90s, 15m, 2h or milliseconds (1 minute–4 hours, default 15m)
    #[arg(long)]
    timeout: Option<String>,
    /// Sandbox template, [namespace/]alias[:tag]
    #[arg(long)]
    template: Option<String>,
    /// Branch to start from; defaults to the repository's default branch
    #[arg(long)]
    base_branch: Option<String>,
    /// For GitHub repositories: open a draft pull request (default), a ready one, or none (compare link only)
    #[arg(long, value_name = "draft|ready|none")]
    pr: Option<String>,
    /// An environment variable for the sandbox (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Stop the launch once its model calls, metered at the gateway, cost this many US dollars
    /// (default: the project's, else CODECOURIER_DEFAULT_BUDGET_USD)
    #[arg(long, value_name = "USD", allow_negative_numbers = true)]
    max_cost_usd: Option<String>,
    /// Stop the launch once its model calls have used this many tokens (input, output and cache)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    max_tokens: Option<String>,
    /// Print the result as one JSON object on standard output
    #[arg(long)]
    json: bool,
    /// Validate and show the resolved request without launching anything
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(
    config: &Config,
    catalog: &Catalog,
    args: LaunchArgs,
) -> Result<ExitCode, CliError> {
    let prompt = match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(path)) => Some(read_prompt_file(path)?),
        (None, None) => None,
    };
    let input = LaunchInput {
        prompt,
        repo: args.repo,
        base_branch: args.base_branch,
        tool: args.tool,
        model: args.model,
        effort: args.effort,
        memory_mb: args.memory_mb,
        cpus: args.cpus,
        timeout: args.timeout,
        template: args.template,
        env: args.env,
        pr: args.pr,
        max_cost_usd: args.max_cost_usd,
        max_tokens: args.max_tokens,
        ..Default::default()
    };
    // The terminal user owns this machine, so local repositories are always allowed here.
    let request = input
        .validate(catalog, true)
        .map_err(|e| invalid_request(&e))?;
    if args.dry_run {
        print_request(catalog, &request, args.json);
        return Ok(ExitCode::SUCCESS);
    }

    let (store, record) = run_request(config, catalog, request, args.json).await?;
    if args.json {
        println!("{}", launch_json(&record));
    } else {
        print_result(&record);
    }
    store.close().await;
    Ok(if record.status == SandboxStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Records and runs a checked request with the live display (none with `json`); Ctrl-C stops the
/// sandbox and records it as stopped. Returns the store and the final record.
pub(super) async fn run_request(
    config: &Config,
    catalog: &Catalog,
    request: LaunchRequest,
    json: bool,
) -> Result<(Store, SandboxRecord), CliError> {
    let ops = ops(config, catalog).await?;
    let launcher = ops.launcher();
    let origin = LaunchOrigin {
        launched_by: std::env::var("USER").unwrap_or_else(|_| "terminal".into()),
        discord: None,
        project: ProjectChoice::OfRepository,
        keys_of: None,
        issue_session: None,
        workflow: None,
    };
    let prepared = match ops.launch(LaunchAsk::Request(request), &origin).await? {
        Ok(prepared) => prepared,
        Err(Refusal::Fields(errors)) => return Err(invalid_request(&errors)),
        Err(Refusal::Said(message)) => return Err(CliError::Invalid(message)),
    };

    // Ctrl-C stops the sandbox and records it as stopped, instead of leaving it running.
    let stop = CancellationToken::new();
    let on_interrupt = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping the sandbox…");
            on_interrupt.cancel();
        }
    });
    let record = if json {
        launcher.run(prepared, &NoProgress, stop).await?
    } else {
        match (prepared.request().scan_task(), prepared.issue_session()) {
            (Some(_), Some(session)) => eprintln!(
                "Scanning {} in sandbox {} (issue session {session})",
                prepared.request().repo,
                prepared.id
            ),
            _ => eprintln!("Launching sandbox {}", prepared.id),
        }
        launcher
            .run(prepared, &TerminalProgress::new(), stop)
            .await?
    };
    Ok((launcher.store().clone(), record))
}

/// The pipeline's operations on this machine's store and provider, where what a crashed
/// CodeCourier left behind has been ended. The terminal's user owns this machine: local
/// repositories are always allowed here.
pub(super) async fn ops(config: &Config, catalog: &Catalog) -> Result<Ops, CliError> {
    let provider = provider_for(config).map_err(CliError::Invalid)?;
    let store = Store::open(config).await?;
    recover(&store, provider.as_ref()).await?;
    let launcher = Arc::new(Launcher::new(config, store, provider, catalog.clone()));
    Ok(Ops::new(launcher, catalog.clone(), true))
}

/// The final record as `launch --json` prints it: one flat object.
pub fn launch_json(r: &SandboxRecord) -> serde_json::Value {
    // Cost and tokens as metered by the gateway; the CLI's own under `reported`.
    let (cost_usd, input_tokens, output_tokens) = r.shown_usage();
    serde_json::json!({
        "id": r.id,
        "status": r.status,
        "tool": r.request.tool,
        "model": r.request.model,
        "repo": r.request.repo.to_string(),
        "branch": r.branch,
        "base_branch": r.base_branch,
        "result": r.result_text,
        "cost_usd": cost_usd,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "reported": {
            "cost_usd": r.cost_usd,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
        },
        "metered": r.metered,
        "budget": r.request.budget,
        "num_turns": r.num_turns,
        "duration_ms": r.duration_ms,
        "commits": r.commits,
        "pushed": r.pushed,
        "pr_url": r.pr_url,
        "compare_url": r.compare_url,
        "phases": r.phases,
        "failed_phase": r.failed_phase,
        "error": r.error,
    })
}

fn print_result(r: &SandboxRecord) {
    println!();
    println!("Sandbox {} — {}", r.id, r.status);
    if let Some(text) = &r.result_text {
        let summary = text.trim();
        if !summary.is_empty() {
            println!("  result    {}", summary.replace('\n', "\n            "));
        }
    }
    let mut usage = r.usage_words();
    if let Some(turns) = r.num_turns {
        usage.push(format!("{turns} turns"));
    }
    if let Some(ms) = r.duration_ms {
        usage.push(format!("{:.1}s", ms as f64 / 1000.0));
    }
    if !usage.is_empty() {
        println!("  usage     {}", usage.join(" · "));
    }
    if let Some(branch) = &r.branch {
        println!(
            "  branch    {branch} (from {})",
            r.base_branch.as_deref().unwrap_or("?")
        );
    }
    if !r.commits.is_empty() {
        let pushed = if r.pushed == Some(true) {
            "pushed"
        } else {
            "not pushed"
        };
        println!("  commits   {} {pushed}", r.commits.len());
        for c in &r.commits {
            println!("            {} {}", &c.sha[..c.sha.len().min(8)], c.subject);
        }
    } else if r.status == SandboxStatus::Completed {
        println!("  commits   none: the agent changed nothing");
    }
    if let Some(error) = &r.error {
        let phase = r
            .failed_phase
            .map(|p| format!(" in {p}"))
            .unwrap_or_default();
        println!("  error{phase}: {error}");
    }
}

fn read_prompt_file(path: &PathBuf) -> Result<String, CliError> {
    let mut text = String::new();
    let result = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    result.map_err(|e| {
        CliError::Invalid(format!(
            "--prompt-file: cannot read {}: {e}",
            path.display()
        ))
    })?;
    Ok(text)
}

fn print_request(catalog: &Catalog, request: &LaunchRequest, json: bool) {
    let env_names: Vec<&str> = request.env.iter().map(|(n, _)| n.as_str()).collect();
    if json {
        let mut value = serde_json::to_value(request).expect("request serialises");
        value["env_names"] = serde_json::json!(env_names);
        println!("{value}");
        return;
    }
    let tool = catalog.tool(&request.tool).expect("validated");
    let r = request.resources;
    println!("Launch request is valid:");
    println!(
        "  repo       {} (base: {})",
        request.repo,
        request
            .base_branch
            .as_deref()
            .unwrap_or("the repository's default branch")
    );
    println!(
        "  tool       {} · {} · effort {}",
        tool.name, request.model, request.effort
    );
    println!(
        "  resources  {} MB · {} CPUs · timeout {}",
        r.memory_mb,
        r.cpus,
        humantime::format_duration(std::time::Duration::from_millis(r.timeout_ms))
    );
    println!("  template   {}", request.template);
    if request.budget.is_set() {
        println!("  budget     {}", request.budget.describe());
    }
    if !env_names.is_empty() {
        println!("  env        {}", env_names.join(", "));
    }
    let first_line = request.prompt.lines().next().unwrap_or_default();
    println!(
        "  prompt     {} ({} bytes)",
        crate::cli::sandboxes::truncate(first_line, 70),
        request.prompt.len()
    );
}
