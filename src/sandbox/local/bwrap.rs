//! The bubblewrap command line of one command in a local sandbox: namespaces, what the sandbox sees
//! of the host, its own home and /tmp, and the environment.

use std::path::Path;

use super::{Live, HOST_TOOLS_DIR, SANDBOX_PATH, SYSTEM_DIRS, TOOLS_MOUNT};
use crate::sandbox::{Exec, HOME};

pub(super) fn args(id: &str, live: &Live, tools_dir: Option<&Path>, exec: &Exec) -> Vec<String> {
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
