//! One command of a local sandbox as a host process: bwrap started in the sandbox's cgroup (for a
//! root-run sandbox also with its staged mounts and as its own user), its input fed, its output
//! passed on, and the command ended when nobody wants that output any more.

use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::identity::{self, HostUser};
use super::{bounds, bwrap, Live};
use crate::sandbox::{cgroup, Exec, Output};

/// Runs bwrap for `exec` and waits for it.
pub(super) async fn run(
    id: &str,
    live: &Arc<Live>,
    exec: &Exec,
    output: mpsc::Sender<Output>,
) -> anyhow::Result<std::process::ExitStatus> {
    let mounts = live.mounts.lock().expect("lock").clone();
    let mut command = tokio::process::Command::new(bwrap::program());
    command
        .args(bwrap::args(live, &mounts, exec))
        .env_clear()
        .envs(bwrap::env(id, live, exec))
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
    let (cpus, user) = (live.cpus, live.user.clone());
    // A file past the bound is stopped just past it, so the measure after the command sees it.
    let file_bound = (live.disk_limit_mb + 1) * 1024 * 1024;
    let own_uid_pids = live.own_uid_pids;
    // SAFETY: the closure only makes async-signal-safe calls: the cgroup is joined while still
    // root, then the staged mounts are made, then the sandbox's user is taken.
    unsafe {
        command.pre_exec(move || {
            cgroup::enter_in_child(&procs_files, cpus)?;
            bounds::limit_in_child(file_bound, own_uid_pids)?;
            if let Some(stage) = &mounts.stage {
                stage.enter()?;
            }
            if let HostUser::Dedicated(id) = user {
                identity::drop_to(id)?;
            }
            Ok(())
        });
    }
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
    // Set when the receiver is gone: nobody wants the rest, so the command is ended.
    let unwanted = tokio::sync::Notify::new();
    let pump = |mut reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                wrap: fn(Vec<u8>) -> Output| {
        let output = output.clone();
        let unwanted = &unwanted;
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if output.send(wrap(buf[..n].to_vec())).await.is_err() {
                            unwanted.notify_one();
                            break;
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
    let wait = async {
        tokio::select! {
            status = child.wait() => status,
            _ = unwanted.notified() => {
                // bwrap's death ends its pid namespace and everything in it.
                let _ = child.start_kill();
                child.wait().await
            }
        }
    };
    let (_, _, _, status) = tokio::join!(feed, stdout, stderr, wait);
    live.children.lock().expect("lock").retain(|p| *p != pid);
    status.context("waiting for the sandbox command")
}

/// Kills the bwrap processes of a sandbox another process started, found through /proc by the
/// sandbox's marker in their environment.
pub(super) fn kill_marked(provider_id: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let marker = format!("CODECOURIER_SANDBOX_ID={provider_id}");
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let is_bwrap = std::fs::read_to_string(entry.path().join("comm"))
            .is_ok_and(|comm| comm.trim_end() == "bwrap");
        let marked = std::fs::read(entry.path().join("environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()));
        if is_bwrap && marked {
            // SAFETY: sending a signal has no memory effects on this process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
