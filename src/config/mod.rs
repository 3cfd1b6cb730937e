//! Configuration: `.env` (dotenvy) and the environment, read once into `Config`.
//!
//! Every problem is collected and reported together, by variable name, with what to do. Secret values
//! are held as `Secret` and never appear in an error.

mod reader;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::gateway::HostPattern;
use crate::ids::DiscordId;
use crate::secret::Secret;
use reader::Reader;

/// The agent API keys CodeCourier reads from its own environment (projects can add their own later).
pub const AGENT_KEY_VARS: [&str; 4] = [
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "OPENAI_API_KEY",
    "OPENROUTER_API_KEY",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Local,
    E2b,
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::Local => "local",
            ProviderKind::E2b => "e2b",
        })
    }
}

#[derive(Debug, Clone)]
pub struct DiscordConfig {
    pub token: Option<Secret>,
    pub guild_id: Option<DiscordId>,
    /// The only servers the bot serves (and registers its commands in): interactions from any
    /// other server, or from direct messages, are refused.
    pub allowed_guilds: Vec<DiscordId>,
    pub api_base: String,
}

#[derive(Debug, Clone)]
pub struct E2bConfig {
    pub api_key: Option<Secret>,
    pub api_url: String,
    pub domain: String,
    pub sandbox_url: Option<String>,
}

/// A GitHub App's private key: the PEM itself, or the path of a PEM file.
#[derive(Debug, Clone)]
pub enum AppKey {
    Pem(Secret),
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub struct GithubApp {
    pub app_id: u64,
    pub private_key: AppKey,
}

#[derive(Debug, Clone)]
pub struct GithubConfig {
    pub token: Option<Secret>,
    pub app: Option<GithubApp>,
    pub api_url: String,
}

/// How long dependency caches of a project without launches, and finished sandboxes' files and
/// session archives, are kept, unless configured.
pub const DEFAULT_RETENTION_DAYS: u32 = 14;
/// Agent events and output lines stored per launch, unless configured; past it they are counted.
pub const DEFAULT_MAX_EVENTS: u32 = 20_000;

/// The vendors' base URLs, as each API's clients take them.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const OPENROUTER_BASE_URL: &str = "https://openrouter.ai/api/v1";

/// The credential gateway's upstreams and what sandboxes may reach besides it.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub anthropic_base_url: String,
    pub openai_base_url: String,
    pub openrouter_base_url: String,
    /// Hosts besides the package registries (`CODECOURIER_EGRESS_ALLOW`).
    pub egress_allow: Vec<HostPattern>,
    /// `CODECOURIER_EGRESS=open`: any host with public addresses, not only the list.
    pub egress_open: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub discord: DiscordConfig,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub secret_key: Option<Secret>,
    pub sandbox_provider: ProviderKind,
    pub e2b: E2bConfig,
    pub github: GithubConfig,
    /// Present agent keys by variable name (only those that are set).
    pub agent_keys: BTreeMap<String, Secret>,
    pub gateway: GatewayConfig,
    /// Discord role ids allowed to launch; empty means everyone in the server.
    pub allowed_roles: Vec<DiscordId>,
    pub max_running_per_user: u32,
    /// Sandboxes the whole deployment may run at once.
    pub max_running: u32,
    /// The most issues one work chain may take.
    pub max_chain_items: u32,
    /// Agent events and output lines stored per launch; the rest are counted, not stored.
    pub max_events: u32,
    /// The budget in US dollars of a launch that sets none and whose project sets none.
    pub default_budget_usd: Option<f64>,
    pub catalog_path: Option<PathBuf>,
    pub tools_dir: Option<PathBuf>,
    /// The `codecourier` executable mounted into local sandboxes as their network bridge
    /// (`CODECOURIER_BRIDGE_BINARY`); unset, the running executable when it is `codecourier`.
    pub bridge_binary: Option<PathBuf>,
    pub allow_local_repos: bool,
    /// After this long without output from an agent, its progress says so.
    pub agent_idle_notice: std::time::Duration,
    /// The longest a launch's setup phase (its setup script or installs) may take.
    pub setup_timeout: std::time::Duration,
    /// Dependency caches of projects without a launch for this many days are removed, and so are
    /// the files and session archives of sandboxes finished this long ago (records stay).
    pub retention_days: u32,
    pub log_filter: String,
}

/// One bad or missing variable, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub var: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{n} configuration problem{} (set these in .env or the environment; .env.example describes each):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {}: {}", p.var, p.message)?;
        }
        Ok(())
    }
}

impl Config {
    /// Loads `.env` from the working directory (values already in the environment win), then reads
    /// the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let dotenv_problem = match dotenvy::dotenv() {
            Ok(_) => None,
            Err(e) if e.not_found() => None,
            Err(e) => Some(ConfigProblem {
                var: ".env".into(),
                message: format!("cannot be read: {e}; fix the line or remove the file"),
            }),
        };
        let result = Self::from_lookup(|name| std::env::var(name).ok());
        match (result, dotenv_problem) {
            (Ok(config), None) => Ok(config),
            (Ok(_), Some(p)) => Err(ConfigError { problems: vec![p] }),
            (Err(mut e), Some(p)) => {
                e.problems.insert(0, p);
                Err(e)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// Reads every variable through `lookup`. Empty values count as unset, so a copied
    /// `.env.example` with blank lines behaves like no file.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };

        let guild_id: Option<DiscordId> = r.parsed(
            "DISCORD_GUILD_ID",
            "is not a Discord id (a number); in Discord enable Developer Mode, right-click the server and Copy Server ID",
        );
        let allowed_guilds = r
            .ids("CODECOURIER_ALLOWED_GUILDS", "server")
            .unwrap_or_else(|| guild_id.into_iter().collect());
        let discord = DiscordConfig {
            token: r.secret("DISCORD_TOKEN"),
            guild_id,
            allowed_guilds,
            api_base: r.url("DISCORD_API_BASE", "https://discord.com"),
        };
        let data_dir = PathBuf::from(
            r.text("CODECOURIER_DATA_DIR")
                .unwrap_or_else(|| "./data".into()),
        );
        let database_url = match r.text("DATABASE_URL") {
            Some(url) if url.starts_with("sqlite:") => url,
            Some(_) => {
                r.problem(
                    "DATABASE_URL",
                    "must be a SQLite URL such as sqlite://data/codecourier.db (only SQLite is supported)",
                );
                String::new()
            }
            None => format!("sqlite://{}", data_dir.join("codecourier.db").display()),
        };
        let secret_key = r.secret("CODECOURIER_SECRET_KEY");
        if let Some(key) = &secret_key {
            if let Err(why) = crate::secret::SecretKey::from_hex(key.expose()) {
                r.problem(
                    "CODECOURIER_SECRET_KEY",
                    &format!("{why}; generate one with `openssl rand -hex 32`, or unset it to have one generated into the data directory"),
                );
            }
        }

        let e2b = E2bConfig {
            api_key: r.secret("E2B_API_KEY"),
            api_url: r.url("E2B_API_URL", "https://api.e2b.app"),
            domain: r.text("E2B_DOMAIN").unwrap_or_else(|| "e2b.app".into()),
            sandbox_url: r.optional_url("E2B_SANDBOX_URL"),
        };
        let sandbox_provider = match r.text("SANDBOX_PROVIDER").as_deref() {
            None if e2b.api_key.is_some() => ProviderKind::E2b,
            None | Some("local") => ProviderKind::Local,
            Some("e2b") => {
                if e2b.api_key.is_none() {
                    r.problem(
                        "E2B_API_KEY",
                        "is required when SANDBOX_PROVIDER=e2b; create a key in the E2B dashboard, or set SANDBOX_PROVIDER=local",
                    );
                }
                ProviderKind::E2b
            }
            Some(other) => {
                r.problem(
                    "SANDBOX_PROVIDER",
                    &format!("\"{other}\" is not a provider; choose local or e2b"),
                );
                ProviderKind::Local
            }
        };

        let github = GithubConfig {
            token: r.secret("GITHUB_TOKEN"),
            app: r.github_app(),
            api_url: r.url("GITHUB_API_URL", "https://api.github.com"),
        };

        let agent_keys = AGENT_KEY_VARS
            .iter()
            .filter_map(|name| r.secret(name).map(|s| (name.to_string(), s)))
            .collect();

        let gateway = r.gateway();

        // Ids only: anyone who may create roles could create one with an allowed role's name.
        let allowed_roles = r
            .ids("CODECOURIER_ALLOWED_ROLES", "role")
            .unwrap_or_default();
        let max_running_per_user = match r.text("CODECOURIER_MAX_RUNNING_PER_USER") {
            None => 3,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    r.problem(
                        "CODECOURIER_MAX_RUNNING_PER_USER",
                        &format!("\"{s}\" is not a whole number of at least 1"),
                    );
                    3
                }
            },
        };
        // By machine size: a local sandbox takes two CPUs by default; an E2B one costs money.
        let by_machine = std::thread::available_parallelism()
            .map(|n| 2 * n.get() as u32)
            .unwrap_or(4)
            .max(4);
        let max_running = match r.text("CODECOURIER_MAX_RUNNING") {
            None => by_machine,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    r.problem(
                        "CODECOURIER_MAX_RUNNING",
                        &format!("\"{s}\" is not a whole number of at least 1"),
                    );
                    by_machine
                }
            },
        };
        let max_chain_items = match r.text("CODECOURIER_MAX_CHAIN_ITEMS") {
            None => 10,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    r.problem(
                        "CODECOURIER_MAX_CHAIN_ITEMS",
                        &format!("\"{s}\" is not a whole number from 1 to 100"),
                    );
                    10
                }
            },
        };
        let max_events = match r.text("CODECOURIER_MAX_EVENTS") {
            None => DEFAULT_MAX_EVENTS,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (100..=10_000_000).contains(&n) => n,
                _ => {
                    r.problem(
                        "CODECOURIER_MAX_EVENTS",
                        &format!("\"{s}\" is not a whole number from 100 to 10000000"),
                    );
                    DEFAULT_MAX_EVENTS
                }
            },
        };
        let default_budget_usd = r.text("CODECOURIER_DEFAULT_BUDGET_USD").and_then(|text| {
            match crate::catalog::Budget::parse_usd(&text, "it") {
                Err(e) => {
                    r.problem("CODECOURIER_DEFAULT_BUDGET_USD", &e);
                    None
                }
                // E2B's egress carries model traffic past the gateway that meters it.
                Ok(_) if sandbox_provider == ProviderKind::E2b => {
                    r.problem(
                        "CODECOURIER_DEFAULT_BUDGET_USD",
                        "cannot be enforced on E2B sandboxes: their model calls leave through E2B's egress, which CodeCourier's gateway does not see; unset it, or use SANDBOX_PROVIDER=local",
                    );
                    None
                }
                Ok(amount) => Some(amount),
            }
        });
        let catalog_path = r.existing_path("CODECOURIER_CATALOG", false);
        let tools_dir = r.existing_path("CODECOURIER_TOOLS_DIR", true);
        let bridge_binary = r.existing_path("CODECOURIER_BRIDGE_BINARY", false);
        let allow_local_repos = r.flag("CODECOURIER_ALLOW_LOCAL_REPOS");
        let agent_idle_notice = r.duration(
            "CODECOURIER_AGENT_IDLE_NOTICE",
            std::time::Duration::from_secs(300),
            "such as 5m",
        );
        let setup_timeout = r.duration(
            "CODECOURIER_SETUP_TIMEOUT",
            std::time::Duration::from_secs(600),
            "such as 10m",
        );
        let retention_days = match r.text("CODECOURIER_RETENTION_DAYS") {
            None => DEFAULT_RETENTION_DAYS,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=3650).contains(&n) => n,
                _ => {
                    r.problem(
                        "CODECOURIER_RETENTION_DAYS",
                        &format!("\"{s}\" is not a whole number of days from 1 to 3650"),
                    );
                    DEFAULT_RETENTION_DAYS
                }
            },
        };
        let log_filter = r
            .text("RUST_LOG")
            .unwrap_or_else(|| "codecourier=info,warn".into());

        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        Ok(Config {
            discord,
            data_dir,
            database_url,
            secret_key,
            sandbox_provider,
            e2b,
            github,
            agent_keys,
            gateway,
            allowed_roles,
            max_running_per_user,
            max_running,
            max_chain_items,
            max_events,
            default_budget_usd,
            catalog_path,
            tools_dir,
            bridge_binary,
            allow_local_repos,
            agent_idle_notice,
            setup_timeout,
            retention_days,
            log_filter,
        })
    }

    /// What `serve` needs on top of the base configuration.
    pub fn require_discord(&self) -> Result<&Secret, ConfigError> {
        let mut problems = Vec::new();
        if self.discord.token.is_none() {
            problems.push(ConfigProblem {
                var: "DISCORD_TOKEN".into(),
                message: "is required by `serve`; create a bot in the Discord developer portal (README: Discord setup) and copy its token".into(),
            });
        }
        if self.discord.allowed_guilds.is_empty() {
            problems.push(ConfigProblem {
                var: "CODECOURIER_ALLOWED_GUILDS".into(),
                message: "or DISCORD_GUILD_ID is required by `serve`: the bot serves only the servers listed, so a bot invited elsewhere does nothing with this deployment's keys".into(),
            });
        }
        match &self.discord.token {
            Some(token) if problems.is_empty() => Ok(token),
            _ => Err(ConfigError { problems }),
        }
    }
}

#[cfg(test)]
mod tests;
