//! `codecourier launch`: one sandbox from the terminal.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{invalid_request, CliError};
use crate::catalog::{Catalog, LaunchInput, LaunchRequest};

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
    /// An environment variable for the sandbox (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Print the result as one JSON object on standard output
    #[arg(long)]
    json: bool,
    /// Validate and show the resolved request without launching anything
    #[arg(long)]
    dry_run: bool,
}

pub fn run(catalog: &Catalog, args: LaunchArgs) -> Result<ExitCode, CliError> {
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
    Err(CliError::Failed(anyhow::anyhow!(
        "the launch sequence is not part of this build yet; add --dry-run to check a request"
    )))
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
