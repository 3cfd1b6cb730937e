//! Codex CLI: `codex exec --json`, prompt on stdin.
//! Stream format and quirks: reference/agents/AGENTS.md section 2.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::claude::{one_line, unparsed};
use super::{
    left_out, skill_files, AgentContext, AgentEvent, AgentPlan, AgentResult, AgentStream, SetupFile,
};
use crate::catalog::Effort;
use crate::sandbox::PROJECT_DIR;
use crate::secret::Secret;

/// Must exist before Codex starts; kept out of TMPDIR, where Codex refuses to create the helper
/// binaries (`apply_patch` aliases) it puts on the commands' PATH.
pub const CODEX_HOME: &str = "/home/user/.codex";
/// The key variable our provider reads. Codex ignores OPENAI_API_KEY; CODEX_API_KEY is the one
/// `codex exec` itself documents, so a run without our config would still authenticate.
pub const KEY_VAR: &str = "CODEX_API_KEY";
/// Where the model API lives unless the launch overrides OPENAI_BASE_URL.
pub const OPENAI_API: &str = "https://api.openai.com/v1";
/// Our provider's id in config.toml.
const PROVIDER: &str = "codecourier";
/// Attempts after a failed request or stream: a rejected key then fails in about a second
/// instead of Codex's default five reconnects.
const MAX_RETRIES: u32 = 2;

/// Codex's command line, environment and its config file. The key travels only in the
/// environment; the config file names the variable, never the value.
pub fn plan(ctx: AgentContext<'_>) -> AgentPlan {
    let mut env = vec![("CODEX_HOME".to_string(), Secret::new(CODEX_HOME))];
    if let Some(key) = ctx.key("OPENAI_API_KEY") {
        env.push((KEY_VAR.into(), key.clone()));
    }
    let base_url = ctx.env_var("OPENAI_BASE_URL").unwrap_or(OPENAI_API);
    let mut files = vec![SetupFile::new(
        format!("{CODEX_HOME}/config.toml"),
        config_toml(base_url),
    )];
    // Codex loads skills from `$CODEX_HOME/skills`; `codex exec` has no slash commands.
    files.extend(skill_files(&format!("{CODEX_HOME}/skills"), &ctx.skills));
    AgentPlan {
        argv: command_line(ctx.model, ctx.effort, ctx.system_prompt),
        env,
        files,
        package: super::packages::CODEX,
        install_if_missing: true,
        parser: Box::new(StreamParser::new()),
        left_out: left_out("Codex", "commands", ctx.commands.len())
            .into_iter()
            .collect(),
    }
}

/// The unattended command line. The prompt goes on stdin (`-`), which the launcher closes: Codex
/// reads stdin to its end whenever it is not a terminal. `-c` values are TOML; a value that does
/// not parse is silently taken as a literal string, so the system prompt is encoded exactly.
pub fn command_line(model: &str, effort: Effort, system_prompt: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "codex",
        "exec",
        "--json",
        // Our sandbox is the isolation; Codex's own (bwrap) sandbox and approvals stay off.
        "--dangerously-bypass-approvals-and-sandbox",
        // Otherwise Codex refuses a directory it does not see as a trusted git repository.
        "--skip-git-repo-check",
        "-C",
        PROJECT_DIR,
        "-m",
        model,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Effort::None leaves the model's own default reasoning level.
    if effort != Effort::None {
        args.extend([
            "-c".into(),
            format!("model_reasoning_effort={}", toml_string(effort.as_str())),
        ]);
    }
    args.extend([
        "-c".into(),
        format!("developer_instructions={}", toml_string(system_prompt)),
        "-".into(),
    ]);
    args
}

/// `$CODEX_HOME/config.toml`. Every run goes through our own provider entry, the only way to set a
/// base URL, the key variable and a retry limit (the built-in `openai` provider cannot be
/// changed); HTTPS only, since the websocket transport first retries for seconds against any
/// endpoint that does not speak it. Commands run in plain (not login) shells: a login shell
/// resets PATH from /etc/profile and loses the sandbox's tool directories and `~/.local/bin`. The
/// key stays out of the commands' environment.
pub fn config_toml(base_url: &str) -> String {
    let base_url = base_url.trim_end_matches('/');
    let provider = toml::toml! {
        name = "OpenAI"
        base_url = base_url
        env_key = KEY_VAR
        wire_api = "responses"
        supports_websockets = false
        request_max_retries = MAX_RETRIES
        stream_max_retries = MAX_RETRIES
    };
    let mut config = toml::toml! {
        model_provider = PROVIDER
        allow_login_shell = false
        check_for_update_on_startup = false

        [shell_environment_policy]
        exclude = [KEY_VAR]

        [analytics]
        enabled = false

        [feedback]
        enabled = false
    };
    config.insert(
        "model_providers".into(),
        toml::Table::from_iter([(PROVIDER.to_string(), provider.into())]).into(),
    );
    format!(
        "# Written by CodeCourier for one unattended run in a throwaway sandbox.\n{}",
        toml::to_string(&config).expect("strings, booleans and integers serialise")
    )
}

/// `text` as a TOML string value, quotes included, for Codex's `-c key=value`.
pub fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Only the fields we use; everything else in a line is skipped without being built.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    thread_id: Option<String>,
    message: Option<String>,
    error: Option<ErrorBody>,
    usage: Option<Usage>,
    #[serde(borrow)]
    item: Option<Item<'a>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    /// Includes the cached part (`cached_input_tokens`), as in the OpenAI API.
    input_tokens: Option<u64>,
    /// Includes the reasoning part (`reasoning_output_tokens`).
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Item<'a> {
    id: Option<String>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    text: Option<String>,
    message: Option<String>,
    command: Option<String>,
    aggregated_output: Option<String>,
    exit_code: Option<i64>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    changes: Option<Vec<Change>>,
    server: Option<String>,
    tool: Option<String>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
    error: Option<ErrorBody>,
    query: Option<String>,
}

#[derive(Deserialize)]
struct Change {
    path: Option<String>,
    kind: Option<String>,
}

/// Turns `exec --json` lines into `AgentEvent`s and remembers what the final result needs.
#[derive(Debug, Default)]
pub struct StreamParser {
    result: Option<AgentResult>,
    session_id: Option<String>,
    last_text: Option<String>,
    last_error: Option<String>,
    turns: u32,
    /// Items whose start was reported, so a completion without a start still shows the call.
    started: HashSet<String>,
}

impl StreamParser {
    pub fn new() -> Self {
        Self::default()
    }
}

impl AgentStream for StreamParser {
    fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        super::json_line(line, |parsed: Line, raw| self.event(parsed, raw))
    }

    fn finish(self: Box<Self>, exit_code: Option<i32>) -> AgentResult {
        self.finish_run(exit_code)
    }
}

impl StreamParser {
    fn event(&mut self, line: Line, raw: &str) -> Vec<AgentEvent> {
        match line.kind.as_ref() {
            "thread.started" => {
                self.session_id = line.thread_id.clone();
                vec![AgentEvent::Started {
                    session_id: line.thread_id,
                    model: None,
                }]
            }
            "turn.started" => {
                self.turns += 1;
                vec![unparsed(raw)]
            }
            // Also sent for notices the run recovers from ("Reconnecting... 2/5 (…)").
            "error" => {
                let message = line.message.unwrap_or_default();
                if let Some(retry) = retry_of(&message) {
                    return vec![retry];
                }
                if !message.trim().is_empty() {
                    self.last_error = Some(message.clone());
                }
                vec![AgentEvent::ApiError {
                    error: http_status(&message)
                        .map(|s| format!("HTTP {s}"))
                        .unwrap_or_else(|| "error".into()),
                    message,
                }]
            }
            "turn.completed" => {
                let usage = line.usage;
                self.finish_turn(AgentResult {
                    success: true,
                    text: self.last_text.clone().unwrap_or_default(),
                    input_tokens: usage.as_ref().and_then(|u| u.input_tokens),
                    output_tokens: usage.as_ref().and_then(|u| u.output_tokens),
                    ..Default::default()
                })
            }
            "turn.failed" => {
                let text = line
                    .error
                    .and_then(|e| e.message)
                    .or_else(|| self.last_error.clone())
                    .unwrap_or_else(|| "Codex reported a failed turn without a message".into());
                self.finish_turn(AgentResult {
                    success: false,
                    api_error_status: http_status(&text),
                    text,
                    ..Default::default()
                })
            }
            "item.started" | "item.updated" | "item.completed" => match line.item {
                Some(item) => self.item(&line.kind, item, raw),
                None => vec![unparsed(raw)],
            },
            _ => vec![unparsed(raw)],
        }
    }

    fn item(&mut self, phase: &str, item: Item, raw: &str) -> Vec<AgentEvent> {
        let completed = phase == "item.completed";
        match item.kind.as_ref() {
            "agent_message" if completed => {
                let text = item.text.unwrap_or_default();
                self.last_text = Some(text.clone());
                vec![AgentEvent::Text { text }]
            }
            "command_execution" | "file_change" | "mcp_tool_call" | "web_search" => {
                let id = item.id.clone().unwrap_or_default();
                let mut events = Vec::new();
                if phase == "item.started" || (completed && !self.started.contains(&id)) {
                    self.started.insert(id);
                    events.push(tool_use(&item));
                }
                if completed {
                    events.push(tool_result(&item));
                }
                if events.is_empty() {
                    events.push(unparsed(raw));
                }
                events
            }
            // A warning the run goes on after ("Model metadata for `x` not found…"): kept for the
            // log, and for the message if the run then ends without a result.
            "error" => {
                if let Some(message) = item.message.filter(|m| !m.trim().is_empty()) {
                    self.last_error = Some(message);
                }
                vec![unparsed(raw)]
            }
            // Reasoning summaries, to-do lists, partial messages: not shown.
            _ => vec![unparsed(raw)],
        }
    }

    fn finish_turn(&mut self, result: AgentResult) -> Vec<AgentEvent> {
        let result = AgentResult {
            session_id: self.session_id.clone(),
            num_turns: Some(self.turns.max(1)),
            // Codex reports tokens only, never a price.
            cost_usd: None,
            ..result
        };
        self.result = Some(result.clone());
        vec![AgentEvent::Result(result)]
    }

    fn finish_run(self, exit_code: Option<i32>) -> AgentResult {
        if let Some(result) = self.result {
            return result;
        }
        let last = self
            .last_error
            .map(|e| format!("; last error: {e}"))
            .or(self.last_text.map(|t| format!("; last message: {t}")))
            .unwrap_or_default();
        AgentResult {
            success: false,
            text: match exit_code {
                Some(code) => format!("Codex exited with code {code} without a result{last}"),
                None => format!("Codex was killed before it finished{last}"),
            },
            session_id: self.session_id,
            ..Default::default()
        }
    }
}

fn tool_use(item: &Item) -> AgentEvent {
    let (name, summary) = match item.kind.as_ref() {
        "command_execution" => (
            "shell".to_string(),
            one_line(unwrap_shell(item.command.as_deref().unwrap_or_default())),
        ),
        "file_change" => ("edit".to_string(), changes_summary(item)),
        "mcp_tool_call" => (
            format!(
                "{}/{}",
                item.server.as_deref().unwrap_or("mcp"),
                item.tool.as_deref().unwrap_or("tool")
            ),
            item.arguments
                .map(|a| one_line(a.get()))
                .unwrap_or_default(),
        ),
        _ => (
            "web_search".to_string(),
            one_line(item.query.as_deref().unwrap_or_default()),
        ),
    };
    AgentEvent::ToolUse { name, summary }
}

fn tool_result(item: &Item) -> AgentEvent {
    let status_ok = item.status.as_deref() == Some("completed");
    match item.kind.as_ref() {
        "command_execution" => {
            let ok = status_ok && item.exit_code == Some(0);
            let output = one_line(item.aggregated_output.as_deref().unwrap_or_default());
            let summary = match (ok, item.exit_code) {
                (false, Some(code)) if output.is_empty() => format!("exit code {code}"),
                (false, Some(code)) => format!("exit code {code}: {output}"),
                (false, None) => format!(
                    "{}{}",
                    item.status.as_deref().unwrap_or("failed"),
                    if output.is_empty() {
                        String::new()
                    } else {
                        format!(": {output}")
                    }
                ),
                (true, _) => output,
            };
            AgentEvent::ToolResult { ok, summary }
        }
        "file_change" => AgentEvent::ToolResult {
            ok: status_ok,
            summary: changes_summary(item),
        },
        "mcp_tool_call" => match item.error.as_ref().and_then(|e| e.message.as_deref()) {
            Some(error) => AgentEvent::ToolResult {
                ok: false,
                summary: one_line(error),
            },
            None => AgentEvent::ToolResult {
                ok: status_ok,
                summary: item.status.as_deref().unwrap_or_default().to_string(),
            },
        },
        _ => AgentEvent::ToolResult {
            ok: true,
            summary: one_line(item.query.as_deref().unwrap_or_default()),
        },
    }
}

/// "add notes.md, update src/lib.rs", with paths relative to the project.
fn changes_summary(item: &Item) -> String {
    let prefix = format!("{PROJECT_DIR}/");
    let changes: Vec<String> = item
        .changes
        .iter()
        .flatten()
        .map(|c| {
            let path = c.path.as_deref().unwrap_or("?");
            format!(
                "{} {}",
                c.kind.as_deref().unwrap_or("change"),
                path.strip_prefix(&prefix).unwrap_or(path)
            )
        })
        .collect();
    one_line(&changes.join(", "))
}

/// Codex shows commands as `/bin/bash -lc '<command>'`; the command is what a person wants to see.
fn unwrap_shell(command: &str) -> &str {
    let mut parts = command.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(shell), Some("-c" | "-lc"), Some(rest)) if shell.ends_with("sh") => rest
            .strip_prefix('\'')
            .and_then(|r| r.strip_suffix('\''))
            .unwrap_or(rest),
        _ => command,
    }
}

/// "Reconnecting... 2/5 (why)" or "Reconnecting... waiting for network (why)" as a retry.
fn retry_of(message: &str) -> Option<AgentEvent> {
    let rest = message.strip_prefix("Reconnecting...")?.trim_start();
    let (counter, reason) = match rest.split_once(' ') {
        Some((counter, reason)) if counter.contains('/') => (Some(counter), reason),
        _ => (None, rest),
    };
    let (attempt, max_retries) = counter
        .and_then(|c| c.split_once('/'))
        .map(|(a, m)| (a.parse().ok(), m.parse().ok()))
        .unwrap_or((None, None));
    let reason = reason.trim();
    let reason = reason
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(reason);
    Some(AgentEvent::Retry {
        attempt: attempt.unwrap_or(0),
        max_retries,
        error: reason.to_string(),
    })
}

/// The HTTP status in a Codex error ("unexpected status 401 Unauthorized: …").
fn http_status(message: &str) -> Option<u16> {
    let (_, after) = message.split_once("status ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    if digits.len() != 3 {
        return None;
    }
    digits.parse().ok().filter(|s| (100..600).contains(s))
}

#[cfg(test)]
mod tests;
