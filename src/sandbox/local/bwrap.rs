//! The bubblewrap command line of one command in a local sandbox: namespaces, what the sandbox sees
//! of the host, its own home and /tmp, and the environment.

use std::path::Path;

use super::{Live, HOST_TOOLS_DIR, SANDBOX_PATH, SYSTEM_DIRS, TOOLS_MOUNT};
use crate::sandbox::{Exec, HOME};

pub(super) fn args(live: &Live, tools_dir: Option<&Path>, exec: &Exec) -> Vec<String> {
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
    if let Some(tools) = tools_dir {
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
    push(&["--chdir", exec.cwd.as_deref().unwrap_or(HOME), "--"]);
    a.extend(exec.argv.iter().cloned());
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
pub(super) fn program() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "bwrap".into())
}
