//! Sandbox providers: where agents run. `local` (namespaces on this machine, no account needed) and,
//! later, `e2b` (cloud micro-VMs). The launch sequence sees only this trait.

pub mod archive;
mod capture;
mod cgroup;
pub mod e2b;
pub mod init;
pub mod local;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::catalog::{Resources, TemplateRef};
use crate::secret::Secret;

pub use capture::{run_captured, run_captured_within, Captured, CAPTURE_LIMIT};

/// The home directory inside every sandbox; the project is cloned into `project/` below it.
pub const HOME: &str = "/home/user";
pub const PROJECT_DIR: &str = "/home/user/project";

/// What to create.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub template: TemplateRef,
    pub resources: Resources,
    /// Variables every command in the sandbox sees.
    pub env: Vec<(String, Secret)>,
    /// Labels for finding the sandbox again (recovery after a restart).
    pub metadata: BTreeMap<String, String>,
    /// Host directories to show inside (local provider only; a cloud provider refuses them).
    pub mounts: Vec<Mount>,
    /// Executables to make available from the host (local provider only; templates carry their own).
    pub host_tools: Vec<String>,
    /// What the sandbox may reach and the credentials its egress adds, for a provider whose own
    /// egress enforces it (`ProviderCapabilities::egress_rules`); a local sandbox has a network of
    /// its own and reaches CodeCourier's gateway through forwards instead.
    pub network: Option<NetworkPolicy>,
}

/// A sandbox's egress as its provider enforces it: only `allow_out` (unless `open`), and on each
/// rule's host the headers added to every request, so the agent holds placeholders, never keys.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Any destination, not only the list (`CODECOURIER_EGRESS=open`).
    pub open: bool,
    /// Host names (`*.suffix` allowed) the sandbox may reach.
    pub allow_out: Vec<String>,
    pub header_rules: Vec<HeaderRule>,
}

/// Headers set (replacing any the agent sent) on every request to `host`.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    pub host: String,
    pub headers: Vec<(String, Secret)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
}

/// A created sandbox, as the provider knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxHandle {
    pub provider_id: String,
    /// Which limits are actually enforced here, in words, for the provision phase to report.
    pub limits_report: String,
}

/// One command to run inside a sandbox.
#[derive(Debug, Clone, Default)]
pub struct Exec {
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    /// Extra variables for this command only (never stored in the sandbox).
    pub env: Vec<(String, Secret)>,
    /// Written to the command's stdin, which is then closed. Without it stdin is empty: several
    /// agent CLIs block reading an open stdin.
    pub stdin: Option<Vec<u8>>,
}

impl Exec {
    /// `bash -lc SCRIPT` in the project directory.
    pub fn script(script: impl Into<String>) -> Self {
        Self {
            argv: vec!["bash".into(), "-c".into(), script.into()],
            cwd: Some(PROJECT_DIR.into()),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// How a command ended: its exit code, or `None` when it was killed by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: Option<i32>,
    /// The kernel killed a process of this command for exceeding the sandbox's memory limit.
    pub oom_killed: bool,
    /// A fork of this command failed at the sandbox's process limit.
    pub pids_limited: bool,
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxInfo {
    pub provider_id: String,
    pub metadata: BTreeMap<String, String>,
    pub alive: bool,
}

/// Errors a caller branches on.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox {0} does not exist (it may have been stopped or timed out)")]
    NotFound(String),
    #[error("the sandbox's time limit ran out")]
    Expired,
    #[error("the sandbox was stopped")]
    Killed,
    #[error("the sandbox used more than {limit_mb} MB of disk")]
    DiskLimit { limit_mb: u64 },
    #[error(
        "the sandbox kept hitting its limit of {limit} processes (a fork bomb?) and was ended"
    )]
    ProcessLimit { limit: u32 },
    #[error("the provider has no capacity for another sandbox: {0}")]
    QuotaExceeded(String),
    #[error("the provider did not answer in time: {0}")]
    Transient(String),
    /// The provider has no template of this name for this account (E2B answers 404 for a
    /// template the team lacks): the launch may start from a public one instead.
    #[error("E2B has no template {0} in this team; build it in your E2B team or choose another with --template")]
    TemplateNotFound(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What a provider can do beyond what every provider does, so the launch sequence asks for a
/// capability instead of comparing provider names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderCapabilities {
    /// Host directories can be shown inside a sandbox (`SandboxSpec::mounts`): a local repository,
    /// or a clone URL on this machine.
    pub host_mounts: bool,
    /// Commands reach the network as this machine does, so the host's registry, CA bundle and
    /// proxy settings apply to an install inside the sandbox.
    pub host_network: bool,
    /// Host directories mounted writable keep package managers' download caches between the
    /// launches of one project (`caches`).
    pub dependency_caches: bool,
    /// The provider's own egress enforces `SandboxSpec::network` and adds its headers (E2B): the
    /// sandbox talks to the real upstreams and never reaches CodeCourier's gateway.
    pub egress_rules: bool,
}

#[async_trait]
pub trait SandboxProvider: Send + Sync {
    /// "local" or "e2b", for records and messages.
    fn name(&self) -> &'static str;

    fn capabilities(&self) -> ProviderCapabilities;

    /// Creates a sandbox whose life ends after `timeout` unless extended.
    async fn create(
        &self,
        spec: &SandboxSpec,
        timeout: Duration,
    ) -> Result<SandboxHandle, SandboxError>;

    /// Runs a command, sending its output as it comes, and returns how it ended. When the
    /// receiver of `output` goes away, nobody wants the rest: the command is ended.
    async fn run(
        &self,
        sandbox: &SandboxHandle,
        exec: &Exec,
        output: mpsc::Sender<Output>,
    ) -> Result<ExitStatus, SandboxError>;

    /// Writes a file inside the sandbox (parents created), with the given mode.
    async fn write_file(
        &self,
        sandbox: &SandboxHandle,
        path: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), SandboxError>;

    /// Reads a file of the sandbox, refusing one larger than `max_bytes` and never following a
    /// link (nor reading a device or a pipe): what a sandbox offers is the agent's to choose.
    async fn read_file(
        &self,
        sandbox: &SandboxHandle,
        path: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, SandboxError>;

    /// Makes `port` on the sandbox's own loopback reach the Unix socket `socket` on the host, for
    /// every command started from now on: the sandbox's bridge to CodeCourier's gateway and
    /// proxy. A provider whose sandboxes have no network of their own refuses.
    async fn forward(
        &self,
        sandbox: &SandboxHandle,
        port: u16,
        socket: &Path,
    ) -> Result<(), SandboxError> {
        let _ = (sandbox, socket);
        Err(SandboxError::Unsupported(format!(
            "{} sandboxes cannot forward port {port}: they have no network of their own",
            self.name()
        )))
    }

    /// Moves the host directory `host` into the sandbox at `guest` (under its home, not there
    /// yet), made the sandbox user's own: a checkout prepared beforehand. A provider whose
    /// sandboxes see no host files refuses.
    async fn adopt(
        &self,
        sandbox: &SandboxHandle,
        host: &Path,
        guest: &str,
    ) -> Result<(), SandboxError> {
        let _ = (sandbox, host);
        Err(SandboxError::Unsupported(format!(
            "{} sandboxes cannot take a directory of the host ({guest})",
            self.name()
        )))
    }

    /// Ends the sandbox and everything running in it. Works from another process too.
    async fn kill(&self, provider_id: &str) -> Result<(), SandboxError>;

    /// Moves the end of the sandbox's life to `timeout` from now.
    async fn set_timeout(
        &self,
        sandbox: &SandboxHandle,
        timeout: Duration,
    ) -> Result<(), SandboxError>;

    /// Sandboxes whose metadata contains every given pair.
    async fn list(
        &self,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Vec<SandboxInfo>, SandboxError>;
}

/// Splits a byte stream into lines without limit on the number of lines but with a cap on one
/// line's length: past `max` bytes the line is handed out cut, and the rest of it skipped.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    skipping: bool,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
            skipping: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for part in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = part.ends_with(b"\n");
            let body = if complete {
                &part[..part.len() - 1]
            } else {
                part
            };
            if !self.skipping {
                let room = self.max.saturating_sub(self.buf.len());
                self.buf.extend_from_slice(&body[..body.len().min(room)]);
                if body.len() > room {
                    lines
                        .push(String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned());
                    self.skipping = true;
                }
            }
            if complete {
                if self.skipping {
                    self.skipping = false;
                } else {
                    lines
                        .push(String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned());
                }
            }
        }
        lines
    }

    /// What is left when the stream ends without a final newline.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        (!rest.is_empty() && !self.skipping).then(|| String::from_utf8_lossy(&rest).into_owned())
    }
}

/// The provider the configuration names.
pub fn provider_for(
    config: &crate::config::Config,
) -> Result<std::sync::Arc<dyn SandboxProvider>, String> {
    match config.sandbox_provider {
        crate::config::ProviderKind::Local => Ok(std::sync::Arc::new({
            let provider = local::LocalProvider::new(&config.data_dir, config.tools_dir.clone())
                .protecting(codecourier_files(config))
                .with_egress_open(config.gateway.egress_open);
            match &config.bridge_binary {
                Some(binary) => provider.with_init_binary(binary.clone()),
                None => provider,
            }
        })),
        crate::config::ProviderKind::E2b => {
            Ok(std::sync::Arc::new(e2b::E2bProvider::new(&config.e2b)?))
        }
    }
}

/// CodeCourier's own files besides the data directory: the `.env` it read (dotenvy looks in the
/// working directory and its parents) and a database kept elsewhere.
fn codecourier_files(config: &crate::config::Config) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        files.extend(
            cwd.ancestors()
                .map(|d| d.join(".env"))
                .find(|f| f.is_file()),
        );
    }
    let database = config
        .database_url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let database = database.split('?').next().unwrap_or_default();
    if !database.is_empty() && database != ":memory:" {
        files.push(PathBuf::from(database));
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_and_long_lines_are_capped() {
        let mut s = LineSplitter::new(10);
        assert_eq!(s.push(b"ab"), Vec::<String>::new());
        assert_eq!(s.push(b"c\nde\n\nf"), ["abc", "de", ""]);
        assert_eq!(s.push(b"0123456789abcdef"), ["f012345678"]);
        assert_eq!(s.push(b"more\nok\n"), ["ok"]);
        assert_eq!(s.push(b"tail"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("tail"));
    }
}
