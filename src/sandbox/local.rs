//! The local provider: a sandbox is a directory under the data directory (its own `/home/user` and
//! `/tmp`), cgroups for memory and CPU where the machine allows, and every command runs in fresh
//! mount, pid, uts and ipc namespaces through bubblewrap, seeing the host's system directories
//! read-only. The timeout is enforced here by a watchdog that kills the whole process tree.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::cgroup::{self, Cgroup};
use super::{
    Exec, ExitStatus, Mount, Output, SandboxError, SandboxHandle, SandboxInfo, SandboxProvider,
    SandboxSpec, HOME,
};
use crate::secret::Secret;

/// Inside the sandbox: `CODECOURIER_TOOLS_DIR` is mounted here, and host tools are linked into `bin`.
const TOOLS_MOUNT: &str = "/run/codecourier/tools";
const HOST_TOOLS_DIR: &str = "/run/codecourier/bin";
/// `~/.local/bin` last: where the tool-setup phase installs a CLI the sandbox lacks.
const SANDBOX_PATH: &str = "/run/codecourier/tools:/run/codecourier/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/home/user/.local/bin";
/// Host directories shown read-only in every sandbox.
const SYSTEM_DIRS: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt",
];

/// What survives on disk so another process (`sandboxes stop`, recovery) can find and kill it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    provider_id: String,
    metadata: BTreeMap<String, String>,
    cgroup: Cgroup,
    owner_pid: u32,
    deadline_unix_ms: u64,
}

/// A host executable made visible inside: the directory tree it needs, and the file to link to.
#[derive(Debug, Clone)]
struct HostTool {
    name: String,
    target: PathBuf,
    install_root: Option<PathBuf>,
}

struct Live {
    dir: PathBuf,
    env: Vec<(String, Secret)>,
    mounts: Vec<Mount>,
    host_tools: Vec<HostTool>,
    cgroup: Cgroup,
    cpus: usize,
    deadline: watch::Sender<Instant>,
    expired: AtomicBool,
    killed: AtomicBool,
    /// bwrap processes currently running, killed directly when there is no cgroup.
    children: Mutex<Vec<u32>>,
}

pub struct LocalProvider {
    root: PathBuf,
    tools_dir: Option<PathBuf>,
    live: Mutex<HashMap<String, Arc<Live>>>,
}

impl LocalProvider {
    /// `data_dir/sandboxes` holds the sandboxes; `tools_dir` is `CODECOURIER_TOOLS_DIR`.
    pub fn new(data_dir: &Path, tools_dir: Option<PathBuf>) -> Self {
        Self {
            root: data_dir.join("sandboxes"),
            tools_dir,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self, id: &str) -> Result<Arc<Live>, SandboxError> {
        self.live
            .lock()
            .expect("lock")
            .get(id)
            .cloned()
            .ok_or_else(|| SandboxError::NotFound(id.to_string()))
    }

    /// Finds `name` on the host PATH, to be linked into the sandbox. `None` when the tools directory
    /// has it or it is nowhere (the tool-setup phase then installs it or says what to do).
    fn resolve_tool(&self, name: &str) -> Result<Option<HostTool>, SandboxError> {
        let found = match locate_tool(self.tools_dir.as_deref(), name) {
            Some(ToolLocation::HostPath(found)) => found,
            Some(ToolLocation::ToolsDir(_)) | None => return Ok(None),
        };
        let target = found
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", found.display()))?;
        let install_root = install_root(&target);
        Ok(Some(HostTool {
            name: name.to_string(),
            target,
            install_root,
        }))
    }

    fn bwrap_args(&self, id: &str, live: &Live, exec: &Exec) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        push(&[
            "--die-with-parent",
            "--new-session",
            "--unshare-pid",
            "--unshare-uts",
            "--unshare-ipc",
        ]);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            push(&["--cap-drop", "ALL"]);
        } else {
            push(&["--unshare-user"]);
        }
        push(&["--hostname", "codecourier"]);
        for dir in SYSTEM_DIRS {
            let path = Path::new(dir);
            match std::fs::read_link(path) {
                Ok(target) => push(&["--symlink", &target.to_string_lossy(), dir]),
                Err(_) if path.is_dir() => push(&["--ro-bind", dir, dir]),
                Err(_) => {}
            }
        }
        let home = live.dir.join("home");
        let tmp = live.dir.join("tmp");
        push(&[
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/run", "--dir", "/var/tmp",
        ]);
        push(&[
            "--bind",
            &home.to_string_lossy(),
            HOME,
            "--bind",
            &tmp.to_string_lossy(),
            "/tmp",
        ]);
        if let Some(tools) = &self.tools_dir {
            push(&["--ro-bind", &tools.to_string_lossy(), TOOLS_MOUNT]);
        }
        push(&["--dir", HOST_TOOLS_DIR]);
        for tool in &live.host_tools {
            if let Some(root) = &tool.install_root {
                push(&[
                    "--ro-bind",
                    &root.to_string_lossy(),
                    &root.to_string_lossy(),
                ]);
            }
            let link = format!("{HOST_TOOLS_DIR}/{}", tool.name);
            push(&["--symlink", &tool.target.to_string_lossy(), &link]);
        }
        for m in &live.mounts {
            let kind = if m.writable { "--bind" } else { "--ro-bind" };
            push(&[kind, &m.host.to_string_lossy(), &m.guest]);
        }
        push(&["--clearenv"]);
        let base = [
            ("HOME", HOME),
            ("PATH", SANDBOX_PATH),
            ("TMPDIR", "/tmp"),
            ("LANG", "C.UTF-8"),
            ("TERM", "dumb"),
            ("XDG_CONFIG_HOME", "/home/user/.config"),
            ("XDG_CACHE_HOME", "/home/user/.cache"),
            ("XDG_DATA_HOME", "/home/user/.local/share"),
            ("XDG_STATE_HOME", "/home/user/.local/state"),
            ("CODECOURIER_SANDBOX_ID", id),
        ];
        for (k, v) in base {
            push(&["--setenv", k, v]);
        }
        for (k, v) in live.env.iter().chain(exec.env.iter()) {
            push(&["--setenv", k, v.expose()]);
        }
        push(&["--chdir", exec.cwd.as_deref().unwrap_or(HOME), "--"]);
        a.extend(exec.argv.iter().cloned());
        a
    }

    fn host_path(live: &Live, guest: &str) -> Result<PathBuf, SandboxError> {
        let guest = Path::new(guest);
        let relative = |prefix: &str| guest.strip_prefix(prefix).ok().map(Path::to_path_buf);
        let mapped = relative(HOME)
            .map(|r| live.dir.join("home").join(r))
            .or_else(|| relative("/tmp").map(|r| live.dir.join("tmp").join(r)));
        match mapped {
            Some(p)
                if !guest
                    .components()
                    .any(|c| c == std::path::Component::ParentDir) =>
            {
                Ok(p)
            }
            _ => Err(SandboxError::Unsupported(format!(
                "cannot write {}: local sandboxes accept files under {HOME} or /tmp",
                guest.display()
            ))),
        }
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

    /// Kills everything in the sandbox. `expired` says whether the watchdog did it.
    fn terminate(live: &Live, expired: bool) {
        if expired {
            live.expired.store(true, Ordering::SeqCst);
        } else {
            live.killed.store(true, Ordering::SeqCst);
        }
        for pid in live.children.lock().expect("lock").iter() {
            // SAFETY: sending a signal has no memory effects on this process. bwrap dies and, with
            // it, the pid namespace and everything in it.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        live.cgroup.kill_all();
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

/// Which limits hold, in words: the provision phase shows this, so it never claims a limit that a
/// cgroup could not set.
fn limits_report(
    memory_mb: u32,
    memory: &Result<(), String>,
    cpus: usize,
    available: usize,
    cpu_quota: &Result<(), String>,
    timeout: Duration,
) -> String {
    let memory = match memory {
        Ok(()) => format!("memory {memory_mb} MB enforced (cgroup)"),
        Err(why) => format!("memory {memory_mb} MB NOT enforced ({why})"),
    };
    let affinity = if cpus < available {
        format!("affinity to {cpus} of {available} CPUs")
    } else {
        format!("all {available} CPUs of this machine")
    };
    let cpu = match cpu_quota {
        Ok(()) => format!("{cpus} CPUs enforced (cgroup quota; {affinity})"),
        Err(why) if cpus < available => format!("{cpus} CPUs by {affinity} only; no quota ({why})"),
        Err(why) => format!("{cpus} CPUs NOT enforced ({why}; {affinity})"),
    };
    let timeout = humantime::format_duration(Duration::from_secs(timeout.as_secs()));
    format!("{memory}; {cpu}; timeout {timeout} enforced")
}

/// What must be mounted for a host executable to run inside: nothing under the system directories
/// (already visible); a whole npm install for a package's binary; else the executable's directory.
fn install_root(target: &Path) -> Option<PathBuf> {
    if SYSTEM_DIRS.iter().any(|d| target.starts_with(d)) {
        return None;
    }
    let text = target.to_string_lossy();
    Some(match text.find("/node_modules/") {
        Some(i) => PathBuf::from(&text[..i]),
        None => target.parent().unwrap_or(Path::new("/")).to_path_buf(),
    })
}

/// Where an agent executable was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolLocation {
    ToolsDir(PathBuf),
    HostPath(PathBuf),
}

/// Looks for an executable in `CODECOURIER_TOOLS_DIR` first, then on this process's PATH.
pub fn locate_tool(tools_dir: Option<&Path>, name: &str) -> Option<ToolLocation> {
    if let Some(path) = tools_dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
        return Some(ToolLocation::ToolsDir(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(ToolLocation::HostPath)
}

/// Which resource limits a sandbox on this machine would get, found by creating a probe cgroup.
pub fn limits_available() -> (Result<(), String>, Result<(), String>) {
    let probe = cgroup::create(&format!("doctor-{}", std::process::id()), 256, 1);
    probe.cgroup.remove();
    (probe.memory, probe.cpu_quota)
}

/// Whether bubblewrap can be run here; the error says how to install it.
pub fn check_bwrap() -> Result<String, String> {
    match std::process::Command::new("bwrap").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        _ => Err("bubblewrap (bwrap) is needed for local sandboxes: install it with `apt-get install bubblewrap`".into()),
    }
}

#[async_trait]
impl SandboxProvider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn capabilities(&self) -> super::ProviderCapabilities {
        super::ProviderCapabilities {
            host_mounts: true,
            host_network: true,
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
        let host_tools = spec
            .host_tools
            .iter()
            .map(|name| self.resolve_tool(name))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();

        let id = format!("local-{}", uuid::Uuid::new_v4().simple());
        let dir = self.root.join(&id);
        for sub in ["home", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        let resources = spec.resources;
        let enforced = cgroup::create(&id, resources.memory_mb, resources.cpus);
        let available = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cpus = resources.cpus as usize;

        let report = limits_report(
            resources.memory_mb,
            &enforced.memory,
            cpus,
            available,
            &enforced.cpu_quota,
            timeout,
        );

        let deadline = Instant::now() + timeout;
        let (deadline_tx, mut deadline_rx) = watch::channel(deadline);
        let live = Arc::new(Live {
            dir: dir.clone(),
            env: spec.env.clone(),
            mounts: spec.mounts.clone(),
            host_tools,
            cgroup: enforced.cgroup.clone(),
            cpus: cpus.min(available),
            deadline: deadline_tx,
            expired: AtomicBool::new(false),
            killed: AtomicBool::new(false),
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

        // The watchdog: sleeps until the deadline (which set_timeout may move) and then kills.
        let watched = Arc::downgrade(&live);
        tokio::spawn(async move {
            loop {
                let at = *deadline_rx.borrow_and_update();
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {
                        if *deadline_rx.borrow() <= Instant::now() {
                            if let Some(live) = watched.upgrade() {
                                tracing::info!(sandbox = %live.dir.display(), "sandbox timed out");
                                let _ = tokio::task::spawn_blocking(move || {
                                    LocalProvider::terminate(&live, true);
                                    live.cgroup.remove();
                                })
                                .await;
                            }
                            return;
                        }
                    }
                    changed = deadline_rx.changed() => if changed.is_err() { return },
                }
            }
        });

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
        if live.expired.load(Ordering::SeqCst) {
            return Err(SandboxError::Expired);
        }
        if live.killed.load(Ordering::SeqCst) {
            return Err(SandboxError::Killed);
        }
        let args = self.bwrap_args(&sandbox.provider_id, &live, exec);
        let mut command = tokio::process::Command::new("bwrap");
        command
            .args(&args)
            .stdin(if exec.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Our own process group: a Ctrl-C in the terminal reaches CodeCourier, which then
            // stops the sandbox and records it, instead of killing the agent behind its back.
            .process_group(0);
        let procs_files = live.cgroup.procs_files();
        let cpus = live.cpus;
        // SAFETY: the closure only makes async-signal-safe calls (see enter_in_child).
        unsafe {
            command.pre_exec(move || cgroup::enter_in_child(&procs_files, cpus));
        }
        let oom_before = live.cgroup.oom_kills();
        let mut child = command.spawn().context("cannot start bwrap")?;
        let pid = child.id().unwrap_or(0);
        live.children.lock().expect("lock").push(pid);

        let stdin = child.stdin.take();
        let input = exec.stdin.clone();
        let feed = async move {
            if let (Some(mut stdin), Some(bytes)) = (stdin, input) {
                // A command that exits without reading its input is not an error.
                let _ = stdin.write_all(&bytes).await;
                let _ = stdin.shutdown().await;
            }
        };
        let pump = |mut reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    wrap: fn(Vec<u8>) -> Output| {
            let output = output.clone();
            async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if output.send(wrap(buf[..n].to_vec())).await.is_err() {
                                // Nobody listens any more; keep draining so the process never blocks.
                                continue;
                            }
                        }
                    }
                }
            }
        };
        let stdout = pump(
            Box::new(child.stdout.take().expect("piped")),
            Output::Stdout,
        );
        let stderr = pump(
            Box::new(child.stderr.take().expect("piped")),
            Output::Stderr,
        );
        drop(output);
        let (_, _, _, status) = tokio::join!(feed, stdout, stderr, child.wait());
        live.children.lock().expect("lock").retain(|p| *p != pid);
        let status = status.context("waiting for the sandbox command")?;

        if live.expired.load(Ordering::SeqCst) {
            return Err(SandboxError::Expired);
        }
        if live.killed.load(Ordering::SeqCst)
            || self.root.join(&sandbox.provider_id).join("killed").exists()
        {
            return Err(SandboxError::Killed);
        }
        Ok(ExitStatus {
            code: status.code(),
            oom_killed: live.cgroup.oom_kills() > oom_before,
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
        let host = Self::host_path(&live, path)?;
        if let Some(parent) = host.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("cannot create the directory for {path}"))?;
        }
        tokio::fs::write(&host, contents)
            .await
            .with_context(|| format!("cannot write {path}"))?;
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode))
            .await
            .with_context(|| format!("cannot set the mode of {path}"))?;
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
            Some(live) => Self::terminate(live, false),
            None => {
                if let Some(state) = self.read_state(provider_id) {
                    state.cgroup.kill_all();
                }
                // Without a cgroup, the owning process's bwrap children are found by their marker.
                kill_marked_processes(provider_id);
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

/// Kills bwrap processes of this sandbox found through /proc (their command line names its home).
fn kill_marked_processes(provider_id: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        if text.starts_with("bwrap\0") && text.contains(&format!("/{provider_id}/home")) {
            // SAFETY: sending a signal has no memory effects on this process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_limits_that_do_not_hold() {
        let none = Err("no cgroup memory controller".to_string());
        let report = limits_report(
            1024,
            &none,
            2,
            2,
            &Err("no cpu controller".into()),
            Duration::from_secs(900),
        );
        assert_eq!(
            report,
            "memory 1024 MB NOT enforced (no cgroup memory controller); 2 CPUs NOT enforced (no cpu controller; all 2 CPUs of this machine); timeout 15m enforced"
        );
        let report = limits_report(
            512,
            &Ok(()),
            1,
            4,
            &Err("no cpu controller".into()),
            Duration::from_secs(60),
        );
        assert_eq!(
            report,
            "memory 512 MB enforced (cgroup); 1 CPUs by affinity to 1 of 4 CPUs only; no quota (no cpu controller); timeout 1m enforced"
        );
    }

    #[test]
    fn npm_installs_are_mounted_whole() {
        assert_eq!(install_root(Path::new("/usr/local/bin/git")), None);
        assert_eq!(
            install_root(Path::new(
                "/srv/tools/claude/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
            )),
            Some(PathBuf::from("/srv/tools/claude"))
        );
        assert_eq!(
            install_root(Path::new("/srv/tools/bin/tool")),
            Some(PathBuf::from("/srv/tools/bin"))
        );
    }
}
