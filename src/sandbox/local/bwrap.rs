//! The bubblewrap command line of one command in a local sandbox: namespaces, what the sandbox sees
//! of the host, its own home and /tmp, and the environment.

use std::path::PathBuf;

use super::identity::{HostUser, INSIDE_ID};
use super::mounts::Mounts;
use super::view::SystemPath;
use super::{Live, HOST_TOOLS_DIR, SANDBOX_PATH};
use crate::sandbox::{Exec, HOME};

pub(super) fn args(live: &Live, mounts: &Mounts, exec: &Exec) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&[
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-uts",
        "--unshare-ipc",
    ]);
    if !live.host_network {
        // Only a loopback: the host's, the LAN's and the internet's addresses are unreachable.
        push(&["--unshare-net"]);
    }
    let inside = INSIDE_ID.to_string();
    match &live.user {
        HostUser::Own | HostUser::Dedicated(_) => {
            push(&["--unshare-user", "--uid", &inside, "--gid", &inside]);
        }
        HostUser::Root(_) => push(&["--cap-drop", "ALL"]),
    }
    push(&["--hostname", "codecourier"]);
    for path in &live.system {
        match path {
            SystemPath::Bind { source, dest } => {
                push(&["--ro-bind", &source.to_string_lossy(), dest]);
            }
            SystemPath::Link { target, dest } => push(&["--symlink", target, dest]),
        }
    }
    push(&[
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/run", "--dir", "/var/tmp",
    ]);
    for (index, bind) in mounts.binds.iter().enumerate() {
        let kind = if bind.writable { "--bind" } else { "--ro-bind" };
        push(&[kind, &mounts.source(index), &bind.dest]);
    }
    for hidden in &live.hidden {
        push(&["--tmpfs", &hidden.guest]);
    }
    push(&["--dir", HOST_TOOLS_DIR]);
    for tool in &live.host_tools {
        let link = format!("{HOST_TOOLS_DIR}/{}", tool.name);
        push(&["--symlink", &tool.target.to_string_lossy(), &link]);
    }
    push(&["--chdir", exec.cwd.as_deref().unwrap_or(HOME), "--"]);
    a.extend(mounts.argv(&exec.argv));
    a
}

/// The command's environment. It reaches bwrap as bwrap's own environment (which bwrap hands on),
/// never as `--setenv` arguments: a command line is readable by every user of the machine.
pub(super) fn env(id: &str, live: &Live, exec: &Exec) -> Vec<(String, String)> {
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
    base.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(
            live.env
                .iter()
                .chain(exec.env.iter())
                .map(|(k, v)| (k.clone(), v.expose().to_string())),
        )
        .collect()
}

/// bwrap on this machine's PATH: the command's own PATH is the sandbox's, not the host's.
pub(super) fn program() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "bwrap".into())
}
