//! `codecourier doctor`: checks the configuration and this machine and says what to fix.
//! Never prints a secret: only whether one is set.

use std::process::ExitCode;

use crate::agent::packages;
use crate::catalog::{build_custom_tag, Catalog};
use crate::config::{Config, ConfigError, ProviderKind};
use crate::sandbox::e2b::{templates, E2bProvider};
use crate::sandbox::local;
use crate::secret::KeySource;
use crate::store::{Store, MIGRATOR};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: impl AsRef<str>) {
        let mark = match level {
            Level::Ok => "✓",
            Level::Warn => "!",
            Level::Fail => {
                self.failed = true;
                "✗"
            }
        };
        println!("{mark} {what}: {}", detail.as_ref());
    }
}

pub async fn run(config: Result<Config, ConfigError>) -> ExitCode {
    let mut report = Report { failed: false };
    let config = match config {
        Ok(config) => {
            report.line(Level::Ok, "configuration", "every variable is valid");
            config
        }
        Err(e) => {
            for p in &e.problems {
                report.line(Level::Fail, &p.var, &p.message);
            }
            println!("Fix the configuration first; the other checks need it.");
            return ExitCode::from(1);
        }
    };

    match Catalog::load(config.catalog_path.as_deref()) {
        Ok(catalog) => {
            let source = config
                .catalog_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built in".into());
            report.line(
                Level::Ok,
                "tool catalog",
                format!(
                    "{} tools ({source}), default {}",
                    catalog.tools.len(),
                    catalog.default_tool
                ),
            );
            for tool in &catalog.tools {
                if tool.keys_satisfied(&|key| config.agent_keys.contains_key(key)) {
                    report.line(Level::Ok, &tool.name, "key present");
                } else {
                    report.line(
                        Level::Warn,
                        &tool.name,
                        format!("no key; set {} to launch it", tool.keys_description()),
                    );
                }
            }
        }
        Err(e) => report.line(Level::Fail, "tool catalog", format!("{e:#}")),
    }
    report.line(
        Level::Ok,
        "budget",
        match config.default_budget_usd {
            Some(usd) => format!(
                "launches that set no budget (nor their project) stop once their model calls, metered at the gateway, cost {} (CODECOURIER_DEFAULT_BUDGET_USD)",
                crate::catalog::usd(usd)
            ),
            None => "none by default (CODECOURIER_DEFAULT_BUDGET_USD); a launch may set --max-cost-usd or --max-tokens, a project --default-budget-usd".into(),
        },
    );

    match Store::open(&config).await {
        Ok(store) => {
            let data_dir = config.data_dir.clone();
            let sizes = tokio::task::spawn_blocking(move || {
                let caches = crate::caches::Caches::new(&data_dir).size();
                (crate::caches::size_of(&data_dir), caches)
            })
            .await
            .unwrap_or_default();
            report.line(
                Level::Ok,
                "data directory",
                format!(
                    "{} ({}, of which dependency caches {})",
                    config.data_dir.display(),
                    crate::retention::megabytes(sizes.0),
                    crate::retention::megabytes(sizes.1)
                ),
            );
            let days = config.retention_days;
            match crate::retention::Expired::find(&store, &config.data_dir, days).await {
                Ok(expired) => report.line(
                    Level::Ok,
                    "retention",
                    format!(
                        "after {days} days (CODECOURIER_RETENTION_DAYS) `serve` removes projects' unused dependency caches, finished sandboxes' directories and session archives (records stay); it would free now: {}",
                        expired.describe()
                    ),
                ),
                Err(e) => report.line(Level::Warn, "retention", format!("{e:#}")),
            }
            match store.applied_migrations().await {
                Ok(n) => report.line(
                    Level::Ok,
                    "database",
                    format!(
                        "{} ({n} of {} migrations applied)",
                        config.database_url,
                        MIGRATOR.iter().count()
                    ),
                ),
                Err(e) => report.line(Level::Fail, "database", format!("{e:#}")),
            }
            match store.key_source() {
                KeySource::Environment => {
                    report.line(Level::Ok, "secret key", "from CODECOURIER_SECRET_KEY")
                }
                KeySource::Generated(path) => report.line(
                    Level::Ok,
                    "secret key",
                    format!(
                        "generated into {}; back it up: stored secrets need it",
                        path.display()
                    ),
                ),
                KeySource::File(path) => key_file_check(&mut report, path),
            }
            store.close().await;
        }
        Err(e) => report.line(Level::Fail, "database", format!("{e:#}")),
    }

    match std::process::Command::new("git").arg("--version").output() {
        Ok(out) if out.status.success() => report.line(
            Level::Ok,
            "git",
            String::from_utf8_lossy(&out.stdout).trim(),
        ),
        _ => report.line(Level::Fail, "git", "not found on PATH; install git"),
    }

    match config.sandbox_provider {
        ProviderKind::Local => {
            report.line(Level::Ok, "sandbox provider", "local (this machine)");
            match local::check_bwrap() {
                Ok(version) => report.line(
                    Level::Ok,
                    "isolation",
                    format!("{version}: mount, pid, uts and ipc namespaces"),
                ),
                Err(why) => report.line(Level::Fail, "isolation", why),
            }
            let (memory, cpu) = local::limits_available();
            for (what, result) in [("memory limit", memory), ("CPU quota", cpu)] {
                match result {
                    Ok(()) => report.line(Level::Ok, what, "enforced through cgroups"),
                    Err(why) => report.line(
                        Level::Warn,
                        what,
                        format!("not enforced: {why}; sandboxes still get the timeout"),
                    ),
                }
            }
            if let Ok(catalog) = Catalog::load(config.catalog_path.as_deref()) {
                for tool in &catalog.tools {
                    match local::locate_tool(config.tools_dir.as_deref(), &tool.command) {
                        Some(
                            local::ToolLocation::ToolsDir(p) | local::ToolLocation::HostPath(p),
                        ) => report.line(
                            Level::Ok,
                            &format!("{} CLI", tool.name),
                            p.display().to_string(),
                        ),
                        None => report.line(
                            Level::Warn,
                            &format!("{} CLI", tool.name),
                            format!(
                                "`{}` is not on PATH or in CODECOURIER_TOOLS_DIR; {}",
                                tool.command,
                                install_hint(&tool.id)
                            ),
                        ),
                    }
                }
            }
        }
        ProviderKind::E2b => {
            report.line(
                Level::Ok,
                "sandbox provider",
                format!("e2b at {} (key set)", config.e2b.api_url),
            );
            e2b_templates(&mut report, &config).await;
        }
    }

    match (&config.github.token, &config.github.app) {
        (_, Some(app)) => report.line(Level::Ok, "GitHub", format!("App {} at {}", app.app_id, config.github.api_url)),
        (Some(_), None) => report.line(
            Level::Warn,
            "GitHub",
            "a personal access token reaches every repository its owner can; a GitHub App (GITHUB_APP_ID) scopes each launch to one repository",
        ),
        (None, None) => report.line(
            Level::Warn,
            "GitHub",
            "no GITHUB_TOKEN or GitHub App: only local repositories can be launched",
        ),
    }

    match &config.discord.token {
        Some(token) => match crate::discord::check_token(token, &config.discord.api_base).await {
            Ok(bot) => {
                report.line(
                    Level::Ok,
                    "Discord",
                    format!("token accepted (the bot is {})", bot.name),
                );
                if bot.public == Some(true) {
                    report.line(
                        Level::Warn,
                        "Discord",
                        "\"Public Bot\" is on: anyone can invite the bot to their server (which it refuses to serve, but it should not be there); turn it off in the developer portal, Bot → Public Bot",
                    );
                }
                let guilds: Vec<String> = config
                    .discord
                    .allowed_guilds
                    .iter()
                    .map(|g| g.to_string())
                    .collect();
                if guilds.is_empty() {
                    report.line(
                        Level::Fail,
                        "Discord",
                        "no server to serve: set DISCORD_GUILD_ID or CODECOURIER_ALLOWED_GUILDS (`serve` refuses to start without one)",
                    );
                } else {
                    report.line(
                        Level::Ok,
                        "Discord",
                        format!("serves only the servers {}", guilds.join(", ")),
                    );
                }
            }
            Err(why) => report.line(Level::Fail, "Discord", why),
        },
        None => report.line(
            Level::Warn,
            "Discord",
            "DISCORD_TOKEN is not set: `serve` needs it",
        ),
    }

    if report.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn key_file_check(report: &mut Report, path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                report.line(
                    Level::Warn,
                    "secret key",
                    format!(
                        "{} is readable by others (mode {mode:o}); run chmod 600 on it",
                        path.display()
                    ),
                );
                return;
            }
        }
    }
    report.line(Level::Ok, "secret key", format!("{}", path.display()));
}

/// How to get a tool's CLI onto this machine (local sandboxes show it to the agent).
fn install_hint(tool: &str) -> String {
    match packages::of_tool(tool) {
        Some(package) => format!("install it with `npm install -g {}`", package.spec()),
        None => "install it or put it in CODECOURIER_TOOLS_DIR".into(),
    }
}

/// The team's E2B templates against the catalog's: which exist, and how to build the missing
/// ones (without them a launch starts from E2B's base template and installs the CLI each time).
async fn e2b_templates(report: &mut Report, config: &Config) {
    let (Ok(catalog), Ok(e2b)) = (
        Catalog::load(config.catalog_path.as_deref()),
        E2bProvider::new(&config.e2b),
    ) else {
        return;
    };
    let team = match e2b.templates().await {
        Ok(team) => team,
        Err(e) => {
            report.line(
                Level::Fail,
                "E2B templates",
                format!("cannot list them: {e}"),
            );
            return;
        }
    };
    let names: Vec<&str> = team
        .iter()
        .filter_map(|t| t.names.first().map(String::as_str))
        .collect();
    report.line(
        Level::Ok,
        "E2B templates",
        match names.len() {
            0 => "the team has none of its own".to_string(),
            n => format!("the team has {n}: {}", names.join(", ")),
        },
    );
    for tool in &catalog.tools {
        let what = format!("{} template", tool.name);
        let needed = match build_custom_tag(&tool.default_template) {
            Ok(t) => t,
            Err(why) => {
                report.line(
                    Level::Fail,
                    &what,
                    format!("\"{}\" {why}", tool.default_template),
                );
                continue;
            }
        };
        let name = match &needed.namespace {
            Some(ns) => format!("{ns}/{}", needed.alias),
            None => needed.alias.clone(),
        };
        let build = templates::build_command(tool, &catalog.limits);
        let cli = packages::of_tool(&tool.id)
            .map(|p| p.spec())
            .unwrap_or_else(|| tool.command.clone());
        match team.iter().find(|t| t.is_named(&name)) {
            Some(t) if t.build_status == "ready" => {
                report.line(Level::Ok, &what, format!("{} exists", tool.default_template))
            }
            Some(t) => report.line(
                Level::Warn,
                &what,
                format!(
                    "{} exists but its last build is {}; rebuild it: `{build}`",
                    tool.default_template, t.build_status
                ),
            ),
            None => report.line(
                Level::Warn,
                &what,
                format!(
                    "{} is missing: launches start from E2B's base template and install {cli} each time; build it: `{build}`",
                    tool.default_template
                ),
            ),
        }
    }
}
