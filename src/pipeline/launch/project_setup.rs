//! The setup phase: what the project needs before its agent starts. The project's setup script,
//! else the repository's `.codecourier/setup.sh`, else (with `auto_setup`) the installs its
//! lockfiles name — run in the project directory with the launch's variables, within a time limit
//! of its own, every line of output in the log and the last ones in the phase's detail. What the
//! setup leaves in the working tree is kept out of the branch's commits.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::git::shell_quote;
use super::{tail, Ending, Launch, Launcher, ERROR_TAIL};
use crate::model::Phase;
use crate::pipeline::lockfiles::{self, Install};
use crate::sandbox::{run_captured_within, Exec, LineSplitter, Output, PROJECT_DIR};
use crate::secret::Secret;

/// The repository's own setup script, run when the project sets none.
pub const REPOSITORY_SCRIPT: &str = ".codecourier/setup.sh";
/// Where the project's script is written in the sandbox (outside the repository).
const PROJECT_SCRIPT_FILE: &str = "/home/user/.codecourier/setup.sh";
/// How a script runs: stop at the first failing command, also inside a pipeline (as a GitHub
/// Actions step does).
const SCRIPT_SHELL: [&str; 3] = ["bash", "-eo", "pipefail"];
/// Top-level entries read when looking for lockfiles, and bytes of that listing.
const MAX_LISTED: usize = 1000;
const MAX_LISTING_BYTES: usize = 256 * 1024;
/// Lines of setup output kept in the log; past this they are counted, not kept.
const MAX_LOGGED_LINES: usize = 2000;
/// One logged line's length in bytes.
const MAX_LINE: usize = 2000;
/// Lines kept for a failure's tail.
const TAIL_LINES: usize = 40;
/// Lines of standard error a failure always shows.
const ERROR_LINES: usize = 10;
/// Lines of output the phase's detail ends with.
const DETAIL_LINES: usize = 2;
/// What `timeout` exits with when the limit ran out, and how long a command has after SIGTERM.
const TIMED_OUT_EXIT: i32 = 124;
const KILL_AFTER: &str = "--kill-after=10s";
/// Untracked paths the setup left that are kept out of commits, at most.
const MAX_EXCLUDED: usize = 1000;
/// Host settings that let an install trust this machine's network when the sandbox shares it:
/// extra CA certificates (proxies come with the sandbox's own variables, the gateway's).
const HOST_NETWORK_SETTINGS: [&str; 3] = ["NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "PIP_CERT"];

/// What the setup phase does for this launch.
enum Work {
    /// A script: whose it is (for messages) and how it runs.
    Script {
        what: &'static str,
        argv: Vec<String>,
    },
    /// The installs the lockfiles name whose programs the sandbox has, and those it lacks.
    Installs {
        run: Vec<Install>,
        skipped: Vec<Install>,
    },
    Nothing(&'static str),
}

/// The output of the phase's commands so far: how much was logged, and its last lines.
#[derive(Default)]
struct SetupLog {
    logged: usize,
    not_logged: usize,
    tail: VecDeque<String>,
    /// The last lines of standard error alone: its lines and standard output's reach us through
    /// separate pipes, so an error may arrive before output printed earlier and leave the tail.
    errors: VecDeque<String>,
}

impl SetupLog {
    fn keep(&mut self, line: &str, stderr: bool) {
        let push = |lines: &mut VecDeque<String>, max: usize| {
            if lines.len() == max {
                lines.pop_front();
            }
            lines.push_back(line.to_string());
        };
        push(&mut self.tail, TAIL_LINES);
        if stderr {
            push(&mut self.errors, ERROR_LINES);
        }
    }

    /// The last lines, and the last errors when they are not among them, for a failure, at most
    /// `ERROR_TAIL` bytes.
    fn failure_tail(&self) -> String {
        let mut text: Vec<&str> = self.tail.iter().map(String::as_str).collect();
        let missing: Vec<&str> = self
            .errors
            .iter()
            .filter(|e| !self.tail.contains(e))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            text.push("and on standard error:");
            text.extend(missing);
        }
        let text = text.join("\n");
        if text.trim().is_empty() {
            "(it printed nothing)".into()
        } else {
            tail(text.trim(), ERROR_TAIL)
        }
    }

    /// The last non-empty lines, on one line, for the detail.
    fn last_words(&self) -> Option<String> {
        let last: Vec<&str> = self
            .tail
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        let from = last.len().saturating_sub(DETAIL_LINES);
        (!last.is_empty()).then(|| last[from..].join(" ⏎ "))
    }
}

/// How one setup command ended.
struct Ran {
    code: Option<i32>,
    /// It ran past the setup's own time limit.
    timed_out: bool,
}

impl Ran {
    fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// " (exit 2)", " (killed)", or the time limit that ended it.
    fn how(&self, limit: Duration) -> String {
        match (self.timed_out, self.code) {
            (true, _) => format!(
                " (it ran past the setup's limit of {}; CODECOURIER_SETUP_TIMEOUT sets it)",
                humantime::format_duration(limit)
            ),
            (false, Some(code)) => format!(" (exit {code})"),
            (false, None) => " (killed)".into(),
        }
    }
}

impl Launcher {
    /// The setup phase. A failing script ends the launch; a failing install the lockfiles implied
    /// marks the phase failed, and the agent still starts (it may be there to fix just that).
    pub(super) async fn set_up_project(&self, launch: &Launch<'_>) -> Result<(), Ending> {
        self.phase(launch, Phase::Setup, async {
            let mut log = SetupLog::default();
            // The setup's own deadline, when it comes before the launch's (which ends it anyway).
            let remaining = Duration::from_millis(launch.request.resources.timeout_ms)
                .saturating_sub(launch.started.elapsed());
            let limit = self.setup_timeout;
            let deadline = (limit < remaining).then(|| Instant::now() + limit);
            let mut parts: Vec<String> = Vec::new();
            let mut failures: Vec<String> = Vec::new();
            match self.setup_work(launch).await? {
                Work::Nothing(why) => parts.push(format!("nothing to set up: {why}")),
                Work::Script { what, argv } => {
                    let ran = self.setup_command(launch, argv, deadline, &mut log).await?;
                    if !ran.success() {
                        return Err(Ending::Failed {
                            phase: Phase::Setup,
                            error: format!(
                                "{what} failed{}: {}",
                                ran.how(limit),
                                log.failure_tail()
                            ),
                        });
                    }
                    parts.push(format!("ran {what}"));
                }
                Work::Installs { run, skipped } => {
                    for install in run {
                        let argv = vec!["bash".into(), "-c".into(), install.command.into()];
                        let ran = self.setup_command(launch, argv, deadline, &mut log).await?;
                        if ran.success() {
                            parts.push(format!("ran {} ({})", install.command, install.lockfile));
                        } else {
                            failures.push(format!(
                                "{} ({}) failed{}: {}",
                                install.command,
                                install.lockfile,
                                ran.how(limit),
                                log.failure_tail()
                            ));
                        }
                    }
                    for install in skipped {
                        parts.push(format!(
                            "{} names {}, which this sandbox lacks: skipped",
                            install.lockfile, install.program
                        ));
                    }
                }
            }
            if log.not_logged > 0 {
                self.note(
                    launch,
                    format!(
                        "setup printed {} more lines than the log keeps ({MAX_LOGGED_LINES}); its last lines are in the phase's detail",
                        log.not_logged
                    ),
                )
                .await;
            }
            if log.logged + log.not_logged > 0 || !failures.is_empty() {
                if let Some(kept) = self.keep_out_of_commits(launch).await? {
                    parts.push(kept);
                }
            }
            parts.push(self.cache_words());
            if let Some(last) = log.last_words().filter(|_| failures.is_empty()) {
                parts.push(format!("last: {last}"));
            }
            let detail = match failures.is_empty() {
                true => Ok(parts.join(" · ")),
                false => Err(format!(
                    "{} · the agent starts anyway",
                    failures.into_iter().chain(parts).collect::<Vec<_>>().join(" · ")
                )),
            };
            Ok(((), detail))
        })
        .await
    }

    /// The project's script, the repository's, the lockfiles' installs, or nothing.
    async fn setup_work(&self, launch: &Launch<'_>) -> Result<Work, Ending> {
        let project = launch.project;
        if let Some(script) = project
            .setup_script
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            self.provider
                .write_file(
                    launch.handle(),
                    PROJECT_SCRIPT_FILE,
                    script.as_bytes(),
                    0o644,
                )
                .await
                .map_err(|e| Ending::from_sandbox(Phase::Setup, e))?;
            return Ok(Work::Script {
                what: "the project's setup script",
                argv: script_argv(PROJECT_SCRIPT_FILE),
            });
        }
        let listing = self
            .setup_probe(
                launch,
                format!(
                    "if [ -f {script} ]; then echo script; else echo none; fi; ls -A1 | head -n {MAX_LISTED}",
                    script = shell_quote(REPOSITORY_SCRIPT)
                ),
            )
            .await?;
        let mut lines = listing.lines();
        if lines.next() == Some("script") {
            return Ok(Work::Script {
                what: REPOSITORY_SCRIPT,
                argv: script_argv(REPOSITORY_SCRIPT),
            });
        }
        if !project.auto_setup {
            return Ok(Work::Nothing(
                "the project has no setup script, the repository no .codecourier/setup.sh, and auto setup is off",
            ));
        }
        let top_level: Vec<&str> = lines.collect();
        let installs = lockfiles::installs(&top_level);
        if installs.is_empty() {
            return Ok(Work::Nothing(
                "no setup script, no .codecourier/setup.sh, and no lockfile at the repository's top level",
            ));
        }
        let programs: Vec<&str> = installs.iter().map(|i| i.program).collect();
        let check = programs
            .iter()
            .map(|p| format!("command -v {p} >/dev/null && echo {p}"))
            .collect::<Vec<_>>()
            .join("; ");
        let found = self.setup_probe(launch, format!("{check}; true")).await?;
        let found: Vec<&str> = found.lines().collect();
        let (run, skipped) = installs
            .into_iter()
            .partition(|i| found.contains(&i.program));
        Ok(Work::Installs { run, skipped })
    }

    /// A short command in the project directory; its output (bounded).
    async fn setup_probe(&self, launch: &Launch<'_>, script: String) -> Result<String, Ending> {
        let out = run_captured_within(
            self.provider.as_ref(),
            launch.handle(),
            &Exec::script(script),
            MAX_LISTING_BYTES,
        )
        .await
        .map_err(|e| Ending::from_sandbox(Phase::Setup, e))?;
        Ok(out.stdout)
    }

    /// Runs one setup command in the project directory, every line of its output logged, within
    /// the setup's deadline when it has its own.
    async fn setup_command(
        &self,
        launch: &Launch<'_>,
        argv: Vec<String>,
        deadline: Option<Instant>,
        log: &mut SetupLog,
    ) -> Result<Ran, Ending> {
        let mut argv = argv;
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Ran {
                    code: None,
                    timed_out: true,
                });
            }
            // `timeout` ends the command's whole process group, whatever the provider.
            let seconds = format!("{}s", left.as_secs().max(1));
            argv.splice(0..0, ["timeout".to_string(), KILL_AFTER.into(), seconds]);
        }
        let exec = Exec {
            argv,
            cwd: Some(PROJECT_DIR.into()),
            env: self.setup_env(launch),
            stdin: None,
        };
        let (tx, mut rx) = mpsc::channel::<Output>(64);
        let consume = async {
            let mut stdout = LineSplitter::new(MAX_LINE);
            let mut stderr = LineSplitter::new(MAX_LINE);
            while let Some(chunk) = rx.recv().await {
                let (lines, from_stderr) = match chunk {
                    Output::Stdout(bytes) => (stdout.push(&bytes), false),
                    Output::Stderr(bytes) => (stderr.push(&bytes), true),
                };
                for line in lines {
                    self.setup_line(launch, log, &line, from_stderr).await;
                }
            }
            if let Some(line) = stdout.finish() {
                self.setup_line(launch, log, &line, false).await;
            }
            if let Some(line) = stderr.finish() {
                self.setup_line(launch, log, &line, true).await;
            }
        };
        let (status, ()) = tokio::join!(self.provider.run(launch.handle(), &exec, tx), consume);
        let status = status.map_err(|e| Ending::from_sandbox(Phase::Setup, e))?;
        let timed_out = deadline.is_some_and(|d| {
            status.code == Some(TIMED_OUT_EXIT) && Instant::now() + Duration::from_secs(1) >= d
        });
        Ok(Ran {
            code: status.code,
            timed_out,
        })
    }

    /// One line of setup output: logged (up to the limit) and kept for the tail.
    async fn setup_line(&self, launch: &Launch<'_>, log: &mut SetupLog, line: &str, stderr: bool) {
        // A progress bar redraws with carriage returns: the last drawing is what was seen.
        let line = line
            .rsplit('\r')
            .find(|part| !part.is_empty())
            .unwrap_or("");
        log.keep(line, stderr);
        if log.logged < MAX_LOGGED_LINES {
            log.logged += 1;
            self.output(launch, Phase::Setup, line).await;
        } else {
            log.not_logged += 1;
        }
    }

    /// The variables a setup command gets besides the sandbox's own: the launch's (project
    /// variables and `--env`), `CI=true` so tools do not wait for a person, and the host's CA
    /// settings when the sandbox shares this machine's network. Never the agent's keys.
    fn setup_env(&self, launch: &Launch<'_>) -> Vec<(String, Secret)> {
        let mut env = vec![("CI".to_string(), Secret::new("true"))];
        if self.provider.capabilities().host_network {
            for name in HOST_NETWORK_SETTINGS {
                if let Ok(value) = std::env::var(name) {
                    env.push((name.to_string(), Secret::new(value)));
                }
            }
        }
        env.extend(launch.request.env.iter().cloned());
        env
    }

    /// Adds what the setup left untracked in the working tree (`node_modules`, a virtualenv) to
    /// the clone's own exclude file, so the finish phase never commits it. Says how many.
    async fn keep_out_of_commits(&self, launch: &Launch<'_>) -> Result<Option<String>, Ending> {
        let listed = self
            .setup_probe(
                launch,
                format!("git ls-files -z --others --exclude-standard --directory | head -z -n {MAX_EXCLUDED}"),
            )
            .await?;
        let patterns: Vec<String> = listed
            .split('\0')
            .filter(|l| !l.is_empty() && !l.contains('\n'))
            .map(exclude_pattern)
            .collect();
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut append = Exec::script(
            "mkdir -p \"$(git rev-parse --git-path info)\" && cat >> \"$(git rev-parse --git-path info/exclude)\"",
        );
        append.stdin = Some(format!("{}\n", patterns.join("\n")).into_bytes());
        self.sh(
            launch,
            Phase::Setup,
            "keeping the setup's files out of commits",
            append,
        )
        .await?;
        Ok(Some(format!(
            "{} it left kept out of commits",
            super::count(patterns.len(), "new path")
        )))
    }

    /// What the provider keeps between this project's launches, for the detail.
    fn cache_words(&self) -> String {
        if self.provider.capabilities().dependency_caches {
            "npm, pip, uv, cargo and Go download caches kept between the project's launches".into()
        } else {
            format!(
                "no dependency cache on {}: installs download again each launch",
                self.provider.name()
            )
        }
    }
}

fn script_argv(path: &str) -> Vec<String> {
    SCRIPT_SHELL
        .iter()
        .map(|s| s.to_string())
        .chain([path.to_string()])
        .collect()
}

/// A path git printed as a pattern for the exclude file that matches only that path, from the
/// repository's top: gitignore's special characters escaped.
fn exclude_pattern(path: &str) -> String {
    let mut pattern = String::from("/");
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | '\\' | '!' | '#') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    // A trailing space would be dropped by git unless escaped.
    if pattern.ends_with(' ') {
        pattern.pop();
        pattern.push_str("\\ ");
    }
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_patterns_match_only_their_path() {
        assert_eq!(exclude_pattern("node_modules/"), "/node_modules/");
        assert_eq!(exclude_pattern("a*b"), "/a\\*b");
        assert_eq!(exclude_pattern("#x "), "/\\#x\\ ");
    }

    #[test]
    fn the_log_keeps_the_last_lines_for_a_failure_and_the_detail() {
        let mut log = SetupLog::default();
        for i in 0..100 {
            log.keep(&format!("line {i}"), false);
        }
        log.keep("", false);
        assert_eq!(log.tail.len(), TAIL_LINES);
        assert!(log.failure_tail().ends_with("line 99"));
        assert_eq!(log.last_words().unwrap(), "line 98 ⏎ line 99");
        assert_eq!(SetupLog::default().failure_tail(), "(it printed nothing)");
    }

    #[test]
    fn an_error_that_arrived_before_later_output_stays_in_the_failure() {
        let mut log = SetupLog::default();
        log.keep("error: libwidget not found", true);
        for i in 0..100 {
            log.keep(&format!("step {i}"), false);
        }
        let tail = log.failure_tail();
        assert!(tail.contains("step 99"), "{tail}");
        assert!(
            tail.ends_with("and on standard error:\nerror: libwidget not found"),
            "{tail}"
        );
    }
}
