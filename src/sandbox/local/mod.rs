//! The local provider: a sandbox is a directory under the data directory (its own `/home/user` and
//! `/tmp`), cgroups for its limits where the machine allows, and every command runs through
//! bubblewrap in fresh mount, pid, uts, ipc, user and (unless egress is open) network namespaces,
//! as an unprivileged user, seeing only the host files a toolchain needs, read-only. Forwards
//! bridge ports on its loopback to sockets on the host. The timeout is enforced here by a watchdog
//! that kills the whole process tree.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cgroup::{self, Cgroup};
use super::{
    Exec, ExitStatus, Output, SandboxError, SandboxHandle, SandboxInfo, SandboxProvider,
    SandboxSpec, HOME,
};
use crate::secret::Secret;
use bounds::{Held, PidsBound};
use identity::HostUser;
use mounts::{Mounts, NoOwnUser};
use tools::HostTool;
use view::{Bind, Hidden, SystemPath};

pub use bounds::limits_available;
pub use leftovers::finished_before;
pub use tools::{check_bwrap, locate_tool, ToolLocation};

mod bounds;
mod bwrap;
mod files;
mod identity;
mod leftovers;
mod mounts;
mod process;
mod stage;
mod tools;
mod view;
mod watch;

/// Inside the sandbox: `CODECOURIER_TOOLS_DIR` is mounted here, and host tools are linked into `bin`.
const TOOLS_MOUNT: &str = "/run/codecourier/tools";
const HOST_TOOLS_DIR: &str = "/run/codecourier/bin";
/// `~/.local/bin` last: where the tool-setup phase installs a CLI the sandbox lacks.
const SANDBOX_PATH: &str = "/run/codecourier/tools:/run/codecourier/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/home/user/.local/bin";

/// Processes (and threads) a sandbox may have: a fork bomb ends here, an agent with npm and a
/// build does not.
const DEFAULT_PIDS_MAX: u32 = 2048;
/// Disk a sandbox's home and /tmp may take.
const DEFAULT_DISK_LIMIT_MB: u64 = 10 * 1024;

/// What survives on disk so another process (`sandboxes stop`, recovery) can find and kill it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    provider_id: String,
    metadata: BTreeMap<String, String>,
    cgroup: Cgroup,
    owner_pid: u32,
    deadline_unix_ms: u64,
}

struct Live {
    dir: PathBuf,
    env: Vec<(String, Secret)>,
    host_tools: Vec<HostTool>,
    system: Vec<SystemPath>,
    /// The binds it was created with; forwards add to them.
    base_binds: Vec<Bind>,
    /// CodeCourier's own directories inside a repository the sandbox mounts, covered by a tmpfs.
    hidden: Vec<Hidden>,
    user: HostUser,
    /// Shares the host's network (egress open) instead of having its own.
    host_network: bool,
    /// Ports on the sandbox's loopback and the host sockets behind them.
    forwards: Mutex<Vec<(u16, PathBuf)>>,
    mounts: Mutex<Arc<Mounts>>,
    cgroup: Cgroup,
    cpus: usize,
    deadline: tokio::sync::watch::Sender<Instant>,
    ending: Mutex<Option<watch::Ending>>,
    disk_limit_mb: u64,
    pids_max: u32,
    /// A uid of its own holds its processes where no cgroup can.
    own_uid_pids: Option<u32>,
    /// bwrap processes currently running, killed directly when there is no cgroup.
    children: Mutex<Vec<u32>>,
}

pub struct LocalProvider {
    root: PathBuf,
    tools_dir: Option<PathBuf>,
    /// CodeCourier's own paths no sandbox may see: the data directory, `.env`, key files.
    protected: Vec<PathBuf>,
    /// Sandboxes share the host's network instead of having their own (`CODECOURIER_EGRESS=open`).
    egress_open: bool,
    /// CodeCourier's own binary, the forwarder inside a sandbox with forwards.
    init_binary: Option<PathBuf>,
    pids_max: u32,
    disk_limit_mb: u64,
    live: Mutex<HashMap<String, Arc<Live>>>,
}

impl LocalProvider {
    /// `data_dir/sandboxes` holds the sandboxes; `tools_dir` is `CODECOURIER_TOOLS_DIR`.
    pub fn new(data_dir: &Path, tools_dir: Option<PathBuf>) -> Self {
        Self {
            root: data_dir.join("sandboxes"),
            tools_dir,
            protected: vec![data_dir.to_path_buf()],
            egress_open: false,
            init_binary: std::env::current_exe()
                .ok()
                .filter(|exe| exe.file_name().is_some_and(|n| n == "codecourier")),
            pids_max: DEFAULT_PIDS_MAX,
            disk_limit_mb: DEFAULT_DISK_LIMIT_MB,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// At most this many processes (and threads) in each sandbox.
    pub fn with_pids_max(mut self, pids: u32) -> Self {
        self.pids_max = pids;
        self
    }

    /// At most this much disk for each sandbox's home and /tmp: past it the sandbox is ended and
    /// its commands fail with [`SandboxError::DiskLimit`].
    pub fn with_disk_limit_mb(mut self, mb: u64) -> Self {
        self.disk_limit_mb = mb;
        self
    }

    /// With `open`, sandboxes share the host's network (and can have no forwards); without it
    /// (the default) each has a network of its own with only a loopback.
    pub fn with_egress_open(mut self, open: bool) -> Self {
        self.egress_open = open;
        self
    }

    /// CodeCourier's binary, mounted into sandboxes with forwards (by default this process's
    /// executable when it is `codecourier`; tests name the built binary).
    pub fn with_init_binary(mut self, path: PathBuf) -> Self {
        self.init_binary = Some(path);
        self
    }

    /// More of CodeCourier's own paths no sandbox may see (`.env`, a database outside the data
    /// directory): a sandbox is refused when one lies below what it would be shown, and a
    /// repository it mounts has them covered up.
    pub fn protecting(mut self, paths: impl IntoIterator<Item = PathBuf>) -> Self {
        self.protected.extend(paths);
        self
    }

    fn live(&self, id: &str) -> Result<Arc<Live>, SandboxError> {
        self.live
            .lock()
            .expect("lock")
            .get(id)
            .cloned()
            .ok_or_else(|| SandboxError::NotFound(id.to_string()))
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.root.join(id).join("state.json")
    }

    fn read_state(&self, id: &str) -> Option<State> {
        let text = std::fs::read_to_string(self.state_path(id)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write_state(&self, state: &State) -> anyhow::Result<()> {
        let path = self.state_path(&state.provider_id);
        std::fs::write(&path, serde_json::to_vec_pretty(state)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Where a guest path lies on the host: the sandbox's home or tmp directory, and the path below it.
fn guest_location(live: &Live, guest: &str) -> Result<(PathBuf, PathBuf), SandboxError> {
    let path = Path::new(guest);
    let below = |prefix: &str| path.strip_prefix(prefix).ok().map(Path::to_path_buf);
    let located = below(HOME)
        .map(|r| (live.dir.join("home"), r))
        .or_else(|| below("/tmp").map(|r| (live.dir.join("tmp"), r)));
    match located {
        Some((root, relative))
            if relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_))) =>
        {
            Ok((root, relative))
        }
        _ => Err(SandboxError::Unsupported(format!(
            "{guest}: local sandboxes exchange files only under {HOME} or /tmp"
        ))),
    }
}

/// `link` (relative to the same root as `relative`) as the sandbox sees it.
fn guest_path(guest: &str, relative: &Path, link: &Path) -> String {
    let prefix = guest
        .strip_suffix(relative.to_string_lossy().as_ref())
        .unwrap_or(guest);
    Path::new(prefix).join(link).display().to_string()
}

/// The sandbox's user and mounts: a user of its own where it can have one, else root with
/// capabilities dropped (the reason kept for the report).
fn user_and_mounts(id: &str, binds: &[Bind]) -> Result<(HostUser, Mounts), SandboxError> {
    let user = HostUser::for_sandbox(id);
    match mounts::build(binds, &[], None, &user)? {
        Ok(mounts) => Ok((user, mounts)),
        Err(NoOwnUser(why)) => {
            let user = HostUser::Root(why);
            match mounts::build(binds, &[], None, &user)? {
                Ok(mounts) => Ok((user, mounts)),
                Err(NoOwnUser(why)) => Err(SandboxError::Other(anyhow::anyhow!(why))),
            }
        }
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[async_trait]
impl SandboxProvider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn capabilities(&self) -> super::ProviderCapabilities {
        super::ProviderCapabilities {
            host_mounts: true,
            // Only with egress open do commands reach the network as this machine does.
            host_network: self.egress_open,
            dependency_caches: true,
            egress_rules: false,
        }
    }

    async fn create(
        &self,
        spec: &SandboxSpec,
        timeout: Duration,
    ) -> Result<SandboxHandle, SandboxError> {
        check_bwrap().map_err(SandboxError::Unsupported)?;
        for m in &spec.mounts {
            if !m.host.exists() {
                return Err(SandboxError::Unsupported(format!(
                    "{} does not exist",
                    m.host.display()
                )));
            }
        }
        let host_tools: Vec<HostTool> = spec
            .host_tools
            .iter()
            .map(|name| tools::resolve_tool(self.tools_dir.as_deref(), name))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();

        let id = format!("local-{}", uuid::Uuid::new_v4().simple());
        let dir = self.root.join(&id);
        let view::Shown {
            system,
            binds,
            hidden,
        } = view::shown(
            &dir,
            self.tools_dir.as_deref(),
            &host_tools,
            &spec.mounts,
            &self.protected,
        )?;
        for (sub, mode) in [("home", 0o755), ("tmp", 0o1777)] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .and_then(|_| {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                })
                .with_context(|| format!("cannot create {}", path.display()))?;
        }
        view::write_accounts(&dir)
            .with_context(|| format!("cannot write the accounts of {}", dir.display()))?;
        let (user, mounts) = {
            let (id, binds) = (id.clone(), binds.clone());
            tokio::task::spawn_blocking(move || user_and_mounts(&id, &binds))
                .await
                .map_err(|e| SandboxError::Other(e.into()))??
        };
        for sub in ["home", "tmp"] {
            identity::hand_over(&dir.join(sub), &user).with_context(|| {
                format!(
                    "cannot hand {} to the sandbox's user",
                    dir.join(sub).display()
                )
            })?;
        }
        let resources = spec.resources;
        let enforced = cgroup::create(&id, resources.memory_mb, resources.cpus, self.pids_max);
        let available = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cpus = resources.cpus as usize;
        let pids = match (&enforced.pids, &user) {
            (Ok(()), _) => PidsBound::Cgroup,
            (Err(_), HostUser::Dedicated(_)) => PidsBound::OwnUid,
            (Err(why), _) => PidsBound::None(why.clone()),
        };
        let report = bounds::limits_report(&Held {
            memory_mb: resources.memory_mb,
            memory: &enforced.memory,
            cpus,
            available,
            cpu_quota: &enforced.cpu_quota,
            pids_max: self.pids_max,
            pids: &pids,
            disk_mb: self.disk_limit_mb,
            timeout,
        });
        let network = if self.egress_open {
            "network: host's (egress open)"
        } else {
            "network: its own (loopback only, and what CodeCourier forwards)"
        };
        let report = format!("{report}; {}; {network}", user.describe());

        let deadline = Instant::now() + timeout;
        let (deadline_tx, deadline_rx) = tokio::sync::watch::channel(deadline);
        let live = Arc::new(Live {
            dir: dir.clone(),
            env: spec.env.clone(),
            host_tools,
            system,
            base_binds: binds,
            hidden,
            user,
            host_network: self.egress_open,
            forwards: Mutex::new(Vec::new()),
            mounts: Mutex::new(Arc::new(mounts)),
            cgroup: enforced.cgroup.clone(),
            cpus: cpus.min(available),
            deadline: deadline_tx,
            ending: Mutex::new(None),
            disk_limit_mb: self.disk_limit_mb,
            pids_max: self.pids_max,
            own_uid_pids: (pids == PidsBound::OwnUid).then_some(self.pids_max),
            children: Mutex::new(Vec::new()),
        });
        self.write_state(&State {
            provider_id: id.clone(),
            metadata: spec.metadata.clone(),
            cgroup: enforced.cgroup,
            owner_pid: std::process::id(),
            deadline_unix_ms: unix_ms(SystemTime::now() + timeout),
        })?;
        self.live
            .lock()
            .expect("lock")
            .insert(id.clone(), live.clone());

        tokio::spawn(watch::deadline(Arc::downgrade(&live), deadline_rx));
        tokio::spawn(watch::disk(Arc::downgrade(&live)));
        tokio::spawn(watch::processes(Arc::downgrade(&live)));

        Ok(SandboxHandle {
            provider_id: id,
            limits_report: report,
        })
    }

    async fn run(
        &self,
        sandbox: &SandboxHandle,
        exec: &Exec,
        output: mpsc::Sender<Output>,
    ) -> Result<ExitStatus, SandboxError> {
        let live = self.live(&sandbox.provider_id)?;
        if let Some(ended) = live.ended() {
            return Err(ended);
        }
        let oom_before = live.cgroup.oom_kills();
        let refused_before = live.cgroup.refused_forks();
        let status = process::run(&sandbox.provider_id, &live, exec, output).await?;
        if live.ending().is_none() {
            // What the command left counts now, not at the next measure.
            let measured = live.clone();
            let _ = tokio::task::spawn_blocking(move || measured.check_disk()).await;
        }
        if let Some(ended) = live.ended() {
            return Err(ended);
        }
        if self.root.join(&sandbox.provider_id).join("killed").exists() {
            return Err(SandboxError::Killed);
        }
        Ok(ExitStatus {
            code: status.code(),
            oom_killed: live.cgroup.oom_kills() > oom_before,
            pids_limited: live.cgroup.refused_forks() > refused_before,
        })
    }

    async fn write_file(
        &self,
        sandbox: &SandboxHandle,
        path: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), SandboxError> {
        let live = self.live(&sandbox.provider_id)?;
        let (root, relative) = guest_location(&live, path)?;
        let contents = contents.to_vec();
        let written = tokio::task::spawn_blocking({
            let (root, relative) = (root.clone(), relative.clone());
            let owner = live.user.owner();
            move || files::write_beneath(&root, &relative, &contents, mode, owner)
        })
        .await
        .context("writing a file into the sandbox")?;
        written.map_err(|e| match files::first_link(&root, &relative) {
            Some(link) => SandboxError::Other(anyhow::anyhow!(
                "cannot write {path}: {} is a link, and CodeCourier never writes through a link in a sandbox",
                guest_path(path, &relative, &link)
            )),
            None => SandboxError::Other(anyhow::anyhow!("cannot write {path}: {e}")),
        })
    }

    async fn adopt(
        &self,
        sandbox: &SandboxHandle,
        host: &Path,
        guest: &str,
    ) -> Result<(), SandboxError> {
        let live = self.live(&sandbox.provider_id)?;
        let (root, relative) = guest_location(&live, guest)?;
        let target = root.join(relative);
        let host = host.to_path_buf();
        let adopted = tokio::task::spawn_blocking({
            let live = live.clone();
            move || {
                // Nothing of the sandbox's is replaced: the place must be free.
                if target.symlink_metadata().is_ok() {
                    return Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists));
                }
                std::fs::rename(&host, &target)?;
                identity::hand_over_tree(&target, &live.user)
            }
        })
        .await
        .context("moving a directory into the sandbox")?;
        adopted.map_err(|e| {
            SandboxError::Other(anyhow::anyhow!(
                "cannot move a prepared directory into the sandbox at {guest}: {e}"
            ))
        })
    }

    async fn read_file(
        &self,
        sandbox: &SandboxHandle,
        path: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, SandboxError> {
        let live = self.live(&sandbox.provider_id)?;
        let (root, relative) = guest_location(&live, path)?;
        let read = tokio::task::spawn_blocking({
            let (root, relative) = (root.clone(), relative.clone());
            move || files::read_beneath(&root, &relative, max_bytes)
        })
        .await
        .context("reading a file of the sandbox")?;
        read.map_err(|e| match files::first_link(&root, &relative) {
            Some(link) => SandboxError::Other(anyhow::anyhow!(
                "cannot read {path}: {} is a link, and CodeCourier never reads through a link in a sandbox",
                guest_path(path, &relative, &link)
            )),
            None => SandboxError::Other(anyhow::anyhow!("cannot read {path}: {e}")),
        })
    }

    async fn forward(
        &self,
        sandbox: &SandboxHandle,
        port: u16,
        socket: &Path,
    ) -> Result<(), SandboxError> {
        let live = self.live(&sandbox.provider_id)?;
        if live.host_network {
            return Err(SandboxError::Unsupported(format!(
                "cannot forward port {port}: the sandbox shares the host's network (egress open), so it reaches the host's services directly"
            )));
        }
        if !socket.exists() {
            return Err(SandboxError::Unsupported(format!(
                "cannot forward port {port}: {} does not exist",
                socket.display()
            )));
        }
        let mut forwards = live.forwards.lock().expect("lock").clone();
        forwards.retain(|(p, _)| *p != port);
        forwards.push((port, socket.to_path_buf()));
        let built = {
            let (live, forwards) = (live.clone(), forwards.clone());
            let binary = self.init_binary.clone();
            tokio::task::spawn_blocking(move || {
                mounts::build(&live.base_binds, &forwards, binary.as_deref(), &live.user)
            })
            .await
            .map_err(|e| SandboxError::Other(e.into()))??
        };
        let mounts = built.map_err(|NoOwnUser(why)| {
            SandboxError::Unsupported(format!("cannot forward port {port}: {why}"))
        })?;
        *live.mounts.lock().expect("lock") = Arc::new(mounts);
        *live.forwards.lock().expect("lock") = forwards;
        Ok(())
    }

    async fn kill(&self, provider_id: &str) -> Result<(), SandboxError> {
        let dir = self.root.join(provider_id);
        if !dir.exists() {
            return Err(SandboxError::NotFound(provider_id.to_string()));
        }
        let live = self.live.lock().expect("lock").remove(provider_id);
        // Mark first, so the process that owns the sandbox reports "stopped", not a failure.
        let _ = std::fs::write(dir.join("killed"), b"");
        match &live {
            Some(live) => live.end(watch::Ending::Stopped),
            None => {
                if let Some(state) = self.read_state(provider_id) {
                    state.cgroup.kill_all();
                }
                // Without a cgroup, the owning process's bwrap children are found by their marker.
                process::kill_marked(provider_id);
            }
        }
        let state = self.read_state(provider_id);
        let remove = tokio::task::spawn_blocking(move || {
            if let Some(state) = state {
                state.cgroup.remove();
            }
            // Leave the directory itself: it holds the "killed" marker the owner reads.
            for sub in ["home", "tmp"] {
                let _ = std::fs::remove_dir_all(dir.join(sub));
            }
        });
        remove.await.context("cleaning up the sandbox")?;
        Ok(())
    }

    async fn set_timeout(
        &self,
        sandbox: &SandboxHandle,
        timeout: Duration,
    ) -> Result<(), SandboxError> {
        let live = self.live(&sandbox.provider_id)?;
        live.deadline.send_replace(Instant::now() + timeout);
        if let Some(mut state) = self.read_state(&sandbox.provider_id) {
            state.deadline_unix_ms = unix_ms(SystemTime::now() + timeout);
            self.write_state(&state)?;
        }
        Ok(())
    }

    async fn list(
        &self,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Vec<SandboxInfo>, SandboxError> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(found);
        };
        let now = unix_ms(SystemTime::now());
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let Some(state) = self.read_state(&id) else {
                continue;
            };
            if !metadata
                .iter()
                .all(|(k, v)| state.metadata.get(k) == Some(v))
            {
                continue;
            }
            let alive = !entry.path().join("killed").exists()
                && state.deadline_unix_ms > now
                && process_alive(state.owner_pid);
            found.push(SandboxInfo {
                provider_id: id,
                metadata: state.metadata,
                alive,
            });
        }
        Ok(found)
    }
}
