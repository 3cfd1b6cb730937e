//! End-to-end helpers for agent CLIs installed from npm: a launch that finds the real CLI on the
//! host PATH, and a direct run of the real CLI with an adapter's exact command line.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use codecourier::agent::{AgentPlan, SYSTEM_PROMPT_FILE};

use super::World;

/// `codecourier launch --json` that finds the CLI in `bin` first on the host PATH (no fixture tools
/// directory), for `tool`, with `key_var` set in the environment and the base-URL override passed
/// with `--env`, as a person would.
pub fn launch(
    world: &World,
    bin: &Path,
    tool: &str,
    key_var: &str,
    key: &str,
    base_url: (&str, &str),
    args: &[&str],
) -> StdCommand {
    let mut cmd = world.launch_std(args);
    with_real_cli(&mut cmd, bin, key_var, key, base_url);
    cmd.args(["--tool", tool]);
    cmd
}

/// Makes `cmd` (a launch or a scan) find the real CLI in `bin` first on the host PATH, with the key
/// in the environment and the base-URL override passed with `--env`.
pub fn with_real_cli(
    cmd: &mut StdCommand,
    bin: &Path,
    key_var: &str,
    key: &str,
    base_url: (&str, &str),
) {
    let path = std::env::join_paths(
        std::iter::once(bin.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    cmd.env_remove("CODECOURIER_TOOLS_DIR")
        .env("PATH", path)
        .env(key_var, key)
        .args(["--env", &format!("{}={}", base_url.0, base_url.1)]);
}

/// Runs the command off the async runtime (the fake API keeps serving meanwhile) and returns
/// (exit code, stdout, stderr).
pub async fn output(mut cmd: StdCommand) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// As `output`, with stdout read as one JSON value (a `--json` record).
pub async fn run(cmd: StdCommand) -> (i32, serde_json::Value, String) {
    let (code, stdout, stderr) = output(cmd).await;
    let record =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (code, record, stderr)
}

/// The stored record of a sandbox (`sandboxes show --json`).
pub fn record(world: &World, id: &str) -> serde_json::Value {
    let out = world
        .std_cmd()
        .args(["sandboxes", "show", "--json", id])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

pub struct DirectRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs the real CLI from `bin` with the plan's argv, environment and files, as the sandbox would
/// but on this machine: /home/user becomes a temporary home (with the XDG directories and TMPDIR
/// under it), the project is an empty directory, the prompt goes on stdin, which is then closed.
/// Fails when the CLI is still running after `limit`.
pub fn run_plan_directly(bin: &Path, plan: &AgentPlan, limit: Duration) -> DirectRun {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let project = home.join("project");
    let tmp = dir.path().join("tmp");
    for d in [&project, &tmp] {
        std::fs::create_dir_all(d).unwrap();
    }
    let home_text = home.to_str().unwrap().to_string();
    let local = |text: &str| text.replace("/home/user", &home_text);
    let mut files = plan.files.clone();
    files.push(codecourier::agent::SetupFile::new(
        SYSTEM_PROMPT_FILE,
        "You are checking a command line.",
    ));
    for file in &files {
        let path = PathBuf::from(local(&file.path));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let contents = match String::from_utf8(file.contents.clone()) {
            Ok(text) => local(&text).into_bytes(),
            Err(_) => file.contents.clone(),
        };
        std::fs::write(&path, contents).unwrap();
    }
    let path = std::env::join_paths(
        std::iter::once(bin.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let argv: Vec<String> = plan.argv.iter().map(|a| local(a)).collect();
    let mut cmd = StdCommand::new(&argv[0]);
    // Its own process group, so that whatever the CLI starts goes when the test ends it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .current_dir(&project)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in &plan.env {
        cmd.env(name, local(value.expose()));
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", argv[0]));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"say hi").unwrap();
    drop(stdin);
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = pipe.read_to_string(&mut out);
            out
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let group = child.id() as i32;
    let kill_group = || {
        // SAFETY: signals the process group this test created; no memory is involved.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            kill_group();
            break status;
        }
        if started.elapsed() > limit {
            kill_group();
            let _ = child.wait();
            panic!(
                "{} was still running after {limit:?}: {}",
                argv[0],
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    DirectRun {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        took: started.elapsed(),
    }
}
