//! The agent run: the CLI made available (installed from npm where the tool's plan names a
//! package), then run on the prompt with its output streamed as events into the record and the
//! sink, with a notice when it stays quiet.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::answers::CheckedAnswer;
use super::git::shell_quote;
use super::{seconds, tail, Ending, Launch, Launcher, ERROR_TAIL};
use crate::agent::packages::CliPackage;
use crate::agent::{AgentPlan, AgentResult};
use crate::catalog::build_custom_tag;
use crate::model::Phase;
use crate::sandbox::e2b::templates;
use crate::sandbox::{run_captured, Exec, LineSplitter, Output, HOME, PROJECT_DIR};
use crate::secret::Secret;

/// Host settings an npm install needs to reach the registry as the host does.
const NPM_HOST_SETTINGS: [&str; 9] = [
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "npm_config_registry",
    "npm_config_cafile",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
];
/// Where a CLI the sandbox lacks is installed: the sandbox user's own, no root needed.
const INSTALL_PREFIX: &str = "/home/user/.local";
/// The longest line of agent output read whole.
const MAX_LINE: usize = 32 * 1024 * 1024;

/// A CLI installed by tool setup.
pub(super) struct Installed {
    pub(super) package: CliPackage,
    pub(super) took: Duration,
    /// Its executable: not on every provider's PATH (E2B's envd has its own), so run by path.
    pub(super) path: String,
}

/// What the agent phase produced.
pub(super) struct AgentOutcome {
    pub(super) result: AgentResult,
    /// Why the agent's run counts as failed (it exited badly, was killed, or answered unusably).
    pub(super) failure: Option<String>,
    /// A read-only launch's checked answer.
    pub(super) answer: Option<CheckedAnswer>,
    /// A scan's answers as given, when they could not be used.
    pub(super) raw_answer: Option<String>,
}

impl Launcher {
    /// The agent phase: the CLI on the prompt; a read-only launch's answer is checked (and
    /// repaired once). The agent's own failure marks the phase, but the launch goes on to the
    /// finish phase to save its work.
    pub(super) async fn run_agent_phase(
        &self,
        launch: &mut Launch<'_>,
        plan: AgentPlan,
    ) -> Result<(), Ending> {
        let outcome = self
            .phase(launch, Phase::Agent, async {
                let mut outcome = self.run_agent(launch, plan, &launch.request.prompt).await?;
                if let Some(form) = launch.form {
                    if outcome.failure.is_none() {
                        outcome = self.check_answer(launch, form, outcome).await?;
                    }
                }
                let detail = match &outcome.failure {
                    Some(failure) => Err(failure.clone()),
                    None => Ok(usage_summary(&outcome)),
                };
                Ok((outcome, detail))
            })
            .await?;
        launch.agent = Some(outcome);
        Ok(())
    }

    /// Makes sure the tool's command exists in the sandbox, installing the pinned package from
    /// npm when the plan asks for it, when the sandbox started from E2B's base template, or when
    /// the provider cannot show the sandbox this machine's tools. Returns what it installed.
    pub(super) async fn ensure_cli(
        &self,
        launch: &Launch<'_>,
        plan: &AgentPlan,
    ) -> Result<Option<Installed>, Ending> {
        let tool = launch.tool;
        let mut check = Exec::script(format!(
            "command -v {} >/dev/null",
            shell_quote(&tool.command)
        ));
        check.cwd = Some(HOME.into());
        let found = run_captured(self.provider.as_ref(), launch.handle(), &check)
            .await
            .map_err(|e| Ending::from_sandbox(Phase::ToolSetup, e))?
            .status
            .success();
        if found {
            return Ok(None);
        }
        let host_tools = self.provider.capabilities().host_mounts;
        let package = plan.package;
        if plan.install_if_missing || !host_tools || launch.fallback.is_some() {
            let started = Instant::now();
            self.install_cli(launch, package)
                .await
                .map_err(|ending| match ending {
                    Ending::Failed { phase, error } => Ending::Failed {
                        phase,
                        error: format!("{error}; {}", self.cli_advice(launch, package)),
                    },
                    other => other,
                })?;
            return Ok(Some(Installed {
                package,
                took: started.elapsed(),
                path: format!("{INSTALL_PREFIX}/bin/{}", tool.command),
            }));
        }
        Err(Ending::Failed {
            phase: Phase::ToolSetup,
            error: format!(
                "{}'s `{}` is not available in the sandbox: {}",
                tool.name,
                tool.command,
                self.cli_advice(launch, package)
            ),
        })
    }

    /// `npm install` of the package into the sandbox user's own prefix.
    async fn install_cli(&self, launch: &Launch<'_>, package: CliPackage) -> Result<(), Ending> {
        let mut install = Exec::script(format!(
            "npm install --global --prefix {INSTALL_PREFIX} --no-audit --no-fund --loglevel=error {}",
            shell_quote(&package.spec())
        ));
        install.cwd = Some(HOME.into());
        if self.provider.capabilities().host_network {
            // The sandbox reaches the registry the way this machine does: same CA bundle and
            // proxy settings (its own npm config under --prefix would not carry them).
            for name in NPM_HOST_SETTINGS {
                if let Ok(value) = std::env::var(name) {
                    install.env.push((name.to_string(), Secret::new(value)));
                }
            }
        }
        let what = format!("installing {}", package.spec());
        self.sh(launch, Phase::ToolSetup, &what, install)
            .await
            .map(|_| ())
    }

    /// What to do about a CLI the sandbox lacks, for the provider in use: on this machine,
    /// install it here or in CODECOURIER_TOOLS_DIR; on E2B, build it into the template.
    fn cli_advice(&self, launch: &Launch<'_>, package: CliPackage) -> String {
        let tool = launch.tool;
        if self.provider.capabilities().host_mounts {
            return format!(
                "install it on this machine (`npm install -g {}`) or put it in CODECOURIER_TOOLS_DIR (`codecourier doctor` shows how)",
                package.spec()
            );
        }
        let build = templates::build_command(tool, &self.catalog.limits);
        if build_custom_tag(&tool.default_template).as_ref() == Ok(&launch.request.template) {
            format!(
                "build the template {} with the CLI in it (`{build}`), so no launch installs it",
                tool.default_template
            )
        } else {
            format!(
                "the template {} lacks it: install {} in that template (as templates/{}/e2b.Dockerfile does), or launch with the tool's own template {} (`{build}`)",
                launch.request.template,
                package.spec(),
                tool.id,
                tool.default_template
            )
        }
    }

    /// Runs the agent CLI on `prompt`, streaming its events into the record and the sink.
    pub(super) async fn run_agent(
        &self,
        launch: &Launch<'_>,
        plan: AgentPlan,
        prompt: &str,
    ) -> Result<AgentOutcome, Ending> {
        let request = launch.request;
        let tool = launch.tool;
        let mut env = plan.env;
        env.extend(launch.agent_env.iter().cloned());
        let exec = Exec {
            argv: plan.argv,
            cwd: Some(PROJECT_DIR.into()),
            env,
            stdin: Some(prompt.as_bytes().to_vec()),
        };
        let (tx, mut rx) = mpsc::channel::<Output>(256);
        let mut parser = plan.parser;
        let meter = launch.access.as_ref().and_then(|a| a.meter()).cloned();
        // Without a meter, a spend that never changes (its sender is gone).
        let mut spend = match &meter {
            Some(meter) => meter.watch(),
            None => tokio::sync::watch::channel(Default::default()).1,
        };
        let budget_reached = meter.as_ref().map(|m| m.reached()).unwrap_or_default();
        let consume = async {
            let mut lines = LineSplitter::new(MAX_LINE);
            let mut stderr = Vec::new();
            // A CLI that prints nothing may be retrying for ever (OpenCode does): say so, once per
            // idle period; the sandbox timeout still ends the launch.
            let mut quiet_since = tokio::time::Instant::now();
            let mut notices = 0u32;
            loop {
                let deadline = quiet_since + self.idle_notice * (notices + 1);
                let received = tokio::select! {
                    received = tokio::time::timeout_at(deadline, rx.recv()) => received,
                    Ok(()) = spend.changed() => {
                        let now = spend.borrow_and_update().clone();
                        self.show_spend(launch, &now);
                        continue;
                    }
                };
                let chunk = match received {
                    Ok(Some(chunk)) => {
                        quiet_since = tokio::time::Instant::now();
                        notices = 0;
                        chunk
                    }
                    Ok(None) => break,
                    Err(_) => {
                        notices += 1;
                        self.note(launch, format!(
                            "no output from {} for {}; the sandbox's timeout of {} still ends the run",
                            tool.name,
                            humantime::format_duration(self.idle_notice * notices),
                            humantime::format_duration(Duration::from_millis(request.resources.timeout_ms)),
                        ))
                        .await;
                        continue;
                    }
                };
                match chunk {
                    Output::Stdout(bytes) => {
                        for line in lines.push(&bytes) {
                            for event in parser.line(&line) {
                                self.agent_event(launch, event).await;
                            }
                        }
                    }
                    Output::Stderr(bytes) => {
                        stderr.extend(bytes);
                        if stderr.len() > 64 * 1024 {
                            stderr.drain(..stderr.len() - 16 * 1024);
                        }
                    }
                }
            }
            if let Some(line) = lines.finish() {
                for event in parser.line(&line) {
                    self.agent_event(launch, event).await;
                }
            }
            String::from_utf8_lossy(&stderr).into_owned()
        };
        let ran = async { tokio::join!(self.provider.run(launch.handle(), &exec, tx), consume) };
        // A reached budget ends the run at once (dropping it ends the command); the finish phase
        // still saves the work so far.
        let ran = tokio::select! {
            ran = ran => Some(ran),
            _ = budget_reached.cancelled() => None,
        };
        // The spend as the run left it (its last change may have come after the output's end).
        if let Some(meter) = &meter {
            self.show_spend(launch, &meter.spend());
        }
        let Some((status, stderr)) = ran else {
            let words = meter
                .as_ref()
                .and_then(|m| m.reached_words())
                .unwrap_or_else(|| "budget reached".into());
            return Ok(AgentOutcome {
                result: parser.finish(None),
                failure: Some(format!("{} was stopped: {words}", tool.name)),
                answer: None,
                raw_answer: None,
            });
        };
        let status = status.map_err(|e| Ending::from_sandbox(Phase::Agent, e))?;
        let result = parser.finish(status.code);
        let failure = if status.oom_killed {
            Some(format!(
                "{} was killed for using more than the sandbox's {} MB of memory; launch again with more --memory-mb",
                tool.name, request.resources.memory_mb
            ))
        } else if !result.success {
            let mut message = format!("{} failed: {}", tool.name, result.text.trim());
            if matches!(result.api_error_status, Some(401 | 403)) {
                message.push_str(&format!(
                    " — invalid API key: the model API refused it; check {}",
                    tool.keys_description()
                ));
            }
            if !stderr.trim().is_empty() {
                message.push_str(&format!("; stderr: {}", tail(stderr.trim(), ERROR_TAIL)));
            }
            Some(message)
        } else {
            None
        };
        Ok(AgentOutcome {
            result,
            failure,
            answer: None,
            raw_answer: None,
        })
    }
}

/// The agent phase's detail: the answer in a few words (read-only launches), turns, cost, tokens.
fn usage_summary(outcome: &AgentOutcome) -> String {
    let r = &outcome.result;
    let found = outcome
        .answer
        .as_ref()
        .map(|a| format!("{} · ", a.summary()))
        .unwrap_or_default();
    format!(
        "{found}{} turns · {} · {} in / {} out tokens",
        r.num_turns.unwrap_or(0),
        r.cost_usd
            .map(|c| format!("${c:.4}"))
            .unwrap_or_else(|| "cost not reported".into()),
        r.input_tokens.unwrap_or(0),
        r.output_tokens.unwrap_or(0)
    )
}

/// Tool setup's words on an install: what, how long, and on a fallback how to stop paying it.
pub(super) fn install_note(launch: &Launch<'_>, installed: &Installed) -> String {
    let mut note = format!(
        " · installed {} from npm in {}",
        installed.package.spec(),
        seconds(installed.took)
    );
    if let Some(fallback) = &launch.fallback {
        note.push_str(&format!(
            " (template {} is missing; build it to skip this install: `{}`)",
            fallback.missing, fallback.build_command
        ));
    }
    note
}
