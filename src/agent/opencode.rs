//! OpenCode: `opencode run --format json`, prompt on stdin.
//! Stream format: reference/agents/AGENTS.md section 3.4.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::claude::{one_line, tool_input_summary, unparsed};
use super::{
    clip, command_files, skill_files, AgentContext, AgentEvent, AgentPlan, AgentResult,
    AgentStream, SetupFile, SYSTEM_PROMPT_FILE,
};
use crate::secret::Secret;

/// The global config file: OpenCode reads `$XDG_CONFIG_HOME/opencode/opencode.json` (HOME is
/// /home/user in every sandbox) and merges a project's own `opencode.json` over it, concatenating
/// `instructions`, so the system prompt survives a project config.
pub const CONFIG_FILE: &str = "/home/user/.config/opencode/opencode.json";

/// Where OpenCode finds global skills (`<name>/SKILL.md`) and commands (`<name>.md`).
pub const SKILLS_DIR: &str = "/home/user/.config/opencode/skills";
pub const COMMANDS_DIR: &str = "/home/user/.config/opencode/commands";

/// Compiled memory, when the catalog says OpenCode gets one: listed in `instructions` like the
/// system prompt, because that is the mechanism OpenCode is known to read.
pub const MEMORY_FILE: &str = "/home/user/.codecourier/memory.md";

/// Environment for an unattended run. Without the models fetch OpenCode starts from its bundled
/// catalog instead of calling models.dev (offline, and the same catalog every run); a throwaway
/// sandbox has no use for a self-update check.
pub const ENV: [(&str, &str); 2] = [
    ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
    ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
];

/// OpenCode's command line, environment and config file. Keys stay in the environment: the
/// config names no secret. No effort: OpenCode's only mechanism (`--variant`) is provider-specific
/// and silently ignores unknown values, so the catalog offers none.
pub fn plan(ctx: AgentContext<'_>) -> AgentPlan {
    let mut env: Vec<(String, Secret)> = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), Secret::new(*v)))
        .collect();
    env.extend(ctx.keys.iter().cloned());
    let mut instructions = vec![SYSTEM_PROMPT_FILE];
    let mut files = Vec::new();
    if !ctx.memory.trim().is_empty() {
        files.push(SetupFile::new(MEMORY_FILE, ctx.memory));
        instructions.push(MEMORY_FILE);
    }
    // OpenCode's global skills and commands, beside its config (checked with `opencode debug
    // skill` and `opencode debug config`).
    files.extend(skill_files(SKILLS_DIR, &ctx.skills));
    files.extend(command_files(COMMANDS_DIR, &ctx.commands));
    let overrides = base_url_overrides(&ctx);
    let config = config(ctx.model, &instructions, &overrides);
    files.push(SetupFile::new(
        CONFIG_FILE,
        serde_json::to_vec_pretty(&config).expect("a JSON value serializes"),
    ));
    AgentPlan {
        argv: command_line(ctx.model),
        env,
        files,
        package: super::packages::OPENCODE,
        install_if_missing: true,
        parser: Box::new(StreamParser::new(ctx.model)),
        left_out: Vec::new(),
    }
}

/// The unattended command line. The prompt goes on stdin, which is closed after it. `run` already
/// allows bash and edits; `--auto` answers the rules that would ask (writing outside the project,
/// such as the learnings file). A given `--title` skips the title-generation call to a second,
/// small model, which costs money the stream never reports. Warnings on stderr say what the
/// stream's generic "Unexpected server error" means.
pub fn command_line(model: &str) -> Vec<String> {
    [
        "opencode",
        "run",
        "--format",
        "json",
        "--auto",
        "--model",
        model,
        "--title",
        "CodeCourier",
        "--print-logs",
        "--log-level",
        "WARN",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Base URLs from the launch's variables, per OpenCode provider. OPENROUTER_BASE_URL and
/// OPENAI_BASE_URL are OpenAI-style bases that end in the API version (`https://openrouter.ai/api/v1`),
/// as OpenCode's `baseURL` is; ANTHROPIC_BASE_URL is a host root, as Claude Code takes it, so the
/// version is added.
pub fn base_url_overrides(ctx: &AgentContext<'_>) -> Vec<(&'static str, String)> {
    [
        ("openrouter", "OPENROUTER_BASE_URL", ""),
        ("openai", "OPENAI_BASE_URL", ""),
        ("anthropic", "ANTHROPIC_BASE_URL", "/v1"),
    ]
    .into_iter()
    .filter_map(|(provider, name, suffix)| {
        ctx.env_var(name)
            .map(|url| (provider, format!("{}{suffix}", url.trim_end_matches('/'))))
    })
    .collect()
}

/// The config file's contents. The model is declared under its provider because, with the models
/// fetch off, OpenCode knows only its bundled catalog and refuses any newer id; a declared model
/// the catalog does know keeps the catalog's limits and prices.
pub fn config(model: &str, instructions: &[&str], base_urls: &[(&str, String)]) -> Value {
    let mut providers = Map::new();
    if let Some((provider, id)) = model.split_once('/') {
        providers.insert(provider.into(), json!({ "models": { id: {} } }));
    }
    for (provider, url) in base_urls {
        let entry = providers
            .entry(provider.to_string())
            .or_insert_with(|| json!({}));
        entry["options"] = json!({ "baseURL": url });
    }
    json!({
        "$schema": "https://opencode.ai/config.json",
        "instructions": instructions,
        "provider": providers,
    })
}

/// How much of the agent's last message a failure quotes.
const LAST_MESSAGE: usize = 2000;

/// Every line is `{"type", "timestamp", "sessionID", ...}`; only the fields we use are read.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "sessionID")]
    session_id: Option<String>,
    #[serde(borrow)]
    part: Option<Part<'a>>,
    error: Option<ErrorInfo>,
}

#[derive(Deserialize)]
struct Part<'a> {
    text: Option<String>,
    tool: Option<String>,
    #[serde(borrow)]
    state: Option<ToolState<'a>>,
    cost: Option<f64>,
    tokens: Option<Tokens>,
}

#[derive(Deserialize)]
struct ToolState<'a> {
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    output: Option<String>,
    error: Option<String>,
}

/// OpenCode splits a call's prompt into fresh input and cache, and its output into text and
/// reasoning; we report whole prompts and whole outputs, as for the other CLIs.
#[derive(Deserialize)]
struct Tokens {
    input: Option<u64>,
    output: Option<u64>,
    reasoning: Option<u64>,
    cache: Option<Cache>,
}

#[derive(Deserialize)]
struct Cache {
    read: Option<u64>,
    write: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorInfo {
    name: Option<String>,
    data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    message: Option<String>,
    #[serde(rename = "statusCode")]
    status_code: Option<u16>,
}

/// Turns `run --format json` lines into `AgentEvent`s. The stream has no final event: the totals
/// are sums over the model calls (`step_finish`), the answer is the last text part.
#[derive(Debug, Default)]
pub struct StreamParser {
    model: String,
    session_id: Option<String>,
    steps: u32,
    cost_usd: f64,
    input_tokens: u64,
    output_tokens: u64,
    last_text: Option<String>,
    error: Option<(String, Option<u16>)>,
}

impl StreamParser {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            ..Self::default()
        }
    }

    fn event(&mut self, line: Line, raw: &str) -> Vec<AgentEvent> {
        let mut events = Vec::new();
        if let (None, Some(id)) = (&self.session_id, &line.session_id) {
            self.session_id = Some(id.clone());
            events.push(AgentEvent::Started {
                session_id: Some(id.clone()),
                model: Some(self.model.clone()),
            });
        }
        match (line.kind.as_ref(), line.part, line.error) {
            ("step_start", _, _) => {}
            (
                "text",
                Some(Part {
                    text: Some(text), ..
                }),
                _,
            ) => {
                if !text.trim().is_empty() {
                    self.last_text = Some(text.clone());
                    events.push(AgentEvent::Text { text });
                }
            }
            // Only a finished tool is reported, so its call and result arrive together.
            ("tool_use", Some(Part { tool, state, .. }), _) => {
                let state = state.unwrap_or(ToolState {
                    status: None,
                    input: None,
                    output: None,
                    error: None,
                });
                events.push(AgentEvent::ToolUse {
                    name: tool.unwrap_or_else(|| "tool".into()),
                    summary: state.input.map(tool_input_summary).unwrap_or_default(),
                });
                match state.status.as_deref() {
                    Some("completed") => events.push(AgentEvent::ToolResult {
                        ok: true,
                        summary: one_line(state.output.as_deref().unwrap_or_default()),
                    }),
                    Some("error") => events.push(AgentEvent::ToolResult {
                        ok: false,
                        summary: one_line(state.error.as_deref().unwrap_or("failed")),
                    }),
                    _ => {}
                }
            }
            ("step_finish", Some(part), _) => {
                self.steps += 1;
                self.cost_usd += part.cost.unwrap_or(0.0);
                if let Some(t) = part.tokens {
                    let cache = t.cache.as_ref();
                    self.input_tokens += t.input.unwrap_or(0)
                        + cache.and_then(|c| c.read).unwrap_or(0)
                        + cache.and_then(|c| c.write).unwrap_or(0);
                    self.output_tokens += t.output.unwrap_or(0) + t.reasoning.unwrap_or(0);
                }
            }
            ("error", _, Some(error)) => {
                let name = error.name.unwrap_or_else(|| "error".into());
                let (message, status) = match error.data {
                    Some(data) => (data.message, data.status_code),
                    None => (None, None),
                };
                let message = message.unwrap_or_else(|| name.clone());
                self.error = Some((message.clone(), status));
                events.push(AgentEvent::ApiError {
                    error: name,
                    message,
                });
            }
            _ => events.push(unparsed(raw)),
        }
        events
    }

    fn finish_run(self, exit_code: Option<i32>) -> AgentResult {
        let ran = self.steps > 0;
        let success = exit_code == Some(0) && self.error.is_none() && ran;
        let (text, api_error_status) = match (self.error, exit_code) {
            _ if success => (self.last_text.unwrap_or_default(), None),
            (Some((message, status)), _) => (message, status),
            (None, code) => {
                let end = match code {
                    Some(code) => format!("OpenCode exited with code {code} without a result"),
                    None => "OpenCode was killed before it finished".into(),
                };
                let text = match self.last_text {
                    Some(last) => format!("{end}; last message: {}", clip(&last, LAST_MESSAGE)),
                    None => end,
                };
                (text, None)
            }
        };
        AgentResult {
            success,
            text,
            cost_usd: ran.then_some(self.cost_usd),
            input_tokens: ran.then_some(self.input_tokens),
            output_tokens: ran.then_some(self.output_tokens),
            num_turns: ran.then_some(self.steps),
            duration_ms: None,
            session_id: self.session_id,
            api_error_status,
            structured_output: None,
        }
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

#[cfg(test)]
mod tests;
