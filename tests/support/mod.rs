//! Shared test world: a temporary data directory, a bare repository on disk, and the built binary
//! with a clean environment.
#![allow(dead_code)]

pub mod agent_cli;
pub mod discord_bot;
pub mod fake_anthropic;
pub mod fake_discord;
pub mod fake_e2b;
pub mod fake_openai_chat;
pub mod fake_openai_responses;
pub mod git_http;
pub mod mock_github;
pub mod npm_registry;
pub mod openapi;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;

pub const API_KEY: &str = "sk-ant-test-key-0123456789";

/// The skill and the command `World::add_skill_and_command` gives a project.
pub const WIDGET_SKILL: &str = "---\nname: widget-tests\ndescription: Runs the widget test suite with make widgetcheck\n---\nRun `make widgetcheck`.\n";
pub const WIDGET_COMMAND: &str =
    "---\ndescription: Reviews the widget diff for races\n---\nReview the diff for data races.\n";

pub struct World {
    pub dir: tempfile::TempDir,
    pub origin: PathBuf,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = StdCommand::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl World {
    /// A data directory and a bare repository `origin.git` whose `main` has one commit.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("origin.git");
        git(
            dir.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "origin.git",
            ],
        );
        let work = dir.path().join("seed");
        git(
            dir.path(),
            &["clone", "--quiet", origin.to_str().unwrap(), "seed"],
        );
        std::fs::write(work.join("README.md"), "# Widgets\n").unwrap();
        git(&work, &["add", "README.md"]);
        git(&work, &["commit", "--quiet", "-m", "Initial commit"]);
        git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
        Self { dir, origin }
    }

    /// `codecourier` with only the variables a test gives it, the fake agents first on the
    /// sandbox PATH, and an Anthropic key.
    pub fn std_cmd(&self) -> StdCommand {
        let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("codecourier"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.dir.path())
            .env("CODECOURIER_DATA_DIR", self.dir.path().join("data"))
            .env("CODECOURIER_TOOLS_DIR", fixtures_bin())
            .env("ANTHROPIC_API_KEY", API_KEY)
            .current_dir(self.dir.path());
        cmd
    }

    /// Accepts every learning proposed for the world's repository, as a reviewer would.
    pub fn accept_learnings(&self) {
        let out = self
            .std_cmd()
            .args(["project", "learnings", "accept", "--all", "--repo"])
            .arg(&self.origin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `codecourier project <args> --repo <origin>`, which must succeed.
    pub fn project(&self, args: &[&str]) {
        let out = self
            .std_cmd()
            .arg("project")
            .args(args)
            .arg("--repo")
            .arg(&self.origin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "project {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Gives the world's project a skill (`widget-tests`) and a command (`widget-review`) from
    /// the terminal.
    pub fn add_skill_and_command(&self) {
        let skill = self.dir.path().join("SKILL.md");
        std::fs::write(&skill, WIDGET_SKILL).unwrap();
        let command = self.dir.path().join("review.md");
        std::fs::write(&command, WIDGET_COMMAND).unwrap();
        self.project(&["skills", "add", "--file", skill.to_str().unwrap()]);
        self.project(&[
            "commands",
            "add",
            "--name",
            "widget-review",
            "--file",
            command.to_str().unwrap(),
        ]);
    }

    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// `codecourier launch --json --repo <origin>` plus the given arguments.
    pub fn launch_std(&self, args: &[&str]) -> StdCommand {
        let mut cmd = self.std_cmd();
        cmd.args(["launch", "--json", "--repo"])
            .arg(&self.origin)
            .args(args);
        cmd
    }

    pub fn launch(&self, args: &[&str]) -> Command {
        Command::from_std(self.launch_std(args))
    }

    /// Commits `path` holding `text` onto the origin's `main` (as the repository's owners would).
    pub fn commit_to_origin(&self, path: &str, text: &str) {
        let work = self.dir.path().join("seed");
        std::fs::write(work.join(path), text).unwrap();
        git(&work, &["add", path]);
        git(&work, &["commit", "--quiet", "-m", &format!("Add {path}")]);
        git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
    }

    /// A file's contents on a branch of the origin repository.
    pub fn file_on_branch(&self, branch: &str, path: &str) -> String {
        git(&self.origin, &["show", &format!("{branch}:{path}")])
    }

    pub fn branches(&self) -> Vec<String> {
        git(&self.origin, &["branch", "--format=%(refname:short)"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A catalog like the built-in one but with a timeout minimum of one second, for timeout tests.
    pub fn short_timeout_catalog(&self) -> PathBuf {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/catalog/catalog.toml"),
        )
        .unwrap()
        .replace("timeout_ms = { min = 60000,", "timeout_ms = { min = 1000,");
        let path = self.dir.path().join("catalog.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

pub fn fixtures_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bin")
}

/// Runs a launch and returns (exit code, the `--json` record, stderr).
pub fn run_json(mut cmd: impl std::borrow::BorrowMut<Command>) -> (i32, serde_json::Value, String) {
    let out = cmd.borrow_mut().output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let record = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON object ({e}):\n{stdout}\nstderr:\n{stderr}")
    });
    (out.status.code().unwrap_or(-1), record, stderr)
}

/// Processes on this machine belonging to a sandbox: its bwrap (named by its home directory on
/// the command line) or anything inside it (marked in the environment).
pub fn processes_of(provider_id: &str) -> Vec<String> {
    let marker = format!("CODECOURIER_SANDBOX_ID={provider_id}");
    let home = format!("/{provider_id}/home");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmdline = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?)
                .replace('\0', " ");
            let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let inside = environ.split(|b| *b == 0).any(|kv| kv == marker.as_bytes());
            (inside || cmdline.contains(&home)).then_some(cmdline)
        })
        .collect()
}

/// The pinned Claude Code release the end-to-end tests run (the one sandboxes install).
pub const CLAUDE_CODE_VERSION: &str = codecourier::agent::packages::CLAUDE_CODE.version;

/// The pinned OpenCode release (CODECOURIER_TEST_OPENCODE_BIN overrides the directory).
pub fn opencode_bin() -> PathBuf {
    let package = codecourier::agent::packages::OPENCODE;
    npm_cli_bin(
        "CODECOURIER_TEST_OPENCODE_BIN",
        package.name,
        package.version,
        package.command,
    )
}

/// The directory holding the real `claude` executable (CODECOURIER_TEST_CLAUDE_BIN overrides).
pub fn claude_code_bin() -> PathBuf {
    let package = codecourier::agent::packages::CLAUDE_CODE;
    npm_cli_bin(
        "CODECOURIER_TEST_CLAUDE_BIN",
        package.name,
        package.version,
        package.command,
    )
}

/// The `node_modules/.bin` directory of a pinned npm package, installed on first use into a cache
/// under the target directory, one install at a time. `override_var` may name an existing bin
/// directory instead. Fails, never skips, when the CLI cannot be installed.
pub fn npm_cli_bin(override_var: &str, package: &str, version: &str, command: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(override_var) {
        return PathBuf::from(dir);
    }
    let slug: String = package
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("npm-{slug}-{version}"));
    let bin = root.join("node_modules/.bin");
    std::fs::create_dir_all(&root).unwrap();
    let lock = std::fs::File::create(root.join(".install.lock")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; concurrent tests wait for one install.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    let marker = root.join(".installed");
    if !(marker.exists() && bin.join(command).exists()) {
        let status = StdCommand::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(&root)
            .arg(format!("{package}@{version}"))
            .status()
            .unwrap_or_else(|e| panic!("npm is needed to install {package} for the end-to-end tests ({e}); scripts/test installs Node.js and npm"));
        assert!(status.success(), "npm install {package}@{version} failed");
        assert!(
            bin.join(command).exists(),
            "{package}@{version} did not provide `{command}`"
        );
        std::fs::write(&marker, version).unwrap();
    }
    bin
}

/// A tools directory (CODECOURIER_TOOLS_DIR) holding the real `claude`: its native executable linked
/// in, for a bot running inside the test process, whose PATH a test must not change.
pub fn claude_code_tools_dir() -> PathBuf {
    let bin = claude_code_bin().join("claude").canonicalize().unwrap();
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("claude-tools-{CLAUDE_CODE_VERSION}"));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("claude");
    if !link.exists() {
        // A hard link (same file system as the install); a copy where that is not possible.
        let staging = dir.join(format!(".claude-{}", std::process::id()));
        if std::fs::hard_link(&bin, &staging).is_err() {
            std::fs::copy(&bin, &staging).unwrap();
        }
        let _ = std::fs::rename(&staging, &link);
    }
    dir
}
