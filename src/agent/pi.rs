//! Pi: `pi -p --mode json`, prompt on stdin.
//! Stream format: reference/agents/AGENTS.md section 4.4.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::claude::{first_line_of_content, tool_input_summary, unparsed};
use super::{
    clip, command_files, skill_files, AgentContext, AgentEvent, AgentPlan, AgentResult,
    AgentStream, SetupFile, SYSTEM_PROMPT_FILE,
};
use crate::catalog::Effort;
use crate::secret::Secret;

/// Pi's config directory (its default under HOME, made explicit).
pub const AGENT_DIR: &str = "/home/user/.pi/agent";

/// Environment for an unattended run: no update check or install telemetry at start-up.
pub const ENV: [(&str, &str); 3] = [
    ("PI_CODING_AGENT_DIR", AGENT_DIR),
    ("PI_OFFLINE", "1"),
    ("PI_TELEMETRY", "0"),
];

/// How much of the agent's last message a failure quotes.
const LAST_MESSAGE: usize = 2000;

/// Pi's command line, environment and files. The key stays in the environment.
pub fn plan(ctx: AgentContext<'_>) -> AgentPlan {
    let mut env: Vec<(String, Secret)> = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), Secret::new(*v)))
        .collect();
    env.extend(ctx.keys.iter().cloned());
    let mut files = Vec::new();
    // The global AGENTS.md is read whatever the project has (its own AGENTS.md, or a CLAUDE.md,
    // which Pi reads only when there is no AGENTS.md), and it is outside the repository.
    if !ctx.memory.trim().is_empty() {
        files.push(SetupFile::new(format!("{AGENT_DIR}/AGENTS.md"), ctx.memory));
    }
    // Pi discovers skills (`<name>/SKILL.md`) and prompt templates (`<name>.md`, its commands)
    // in its agent directory.
    files.extend(skill_files(&format!("{AGENT_DIR}/skills"), &ctx.skills));
    files.extend(command_files(
        &format!("{AGENT_DIR}/prompts"),
        &ctx.commands,
    ));
    if let Some(models) = models_json(&ctx) {
        files.push(SetupFile::new(
            format!("{AGENT_DIR}/models.json"),
            serde_json::to_vec_pretty(&models).expect("a JSON value serializes"),
        ));
    }
    AgentPlan {
        argv: command_line(ctx.model, ctx.effort, SYSTEM_PROMPT_FILE),
        env,
        files,
        package: super::packages::PI,
        install_if_missing: true,
        parser: Box::new(StreamParser::new(ctx.model)),
        left_out: Vec::new(),
    }
}

/// The unattended command line. Pi has no `--` and would take a prompt starting with a dash for
/// an option, so the prompt goes on stdin (closed after it). Pi has no permission prompts at all.
/// `--append-system-prompt` reads the file when the path exists.
pub fn command_line(model: &str, effort: Effort, system_prompt_file: &str) -> Vec<String> {
    let mut args: Vec<String> = ["pi", "-p", "--mode", "json", "--model", model]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Pi's levels are off|minimal|low|medium|high|xhigh; "none" means Pi's own default.
    if effort != Effort::None {
        args.extend(["--thinking".into(), effort.as_str().into()]);
    }
    args.extend(["--append-system-prompt".into(), system_prompt_file.into()]);
    args
}

/// `models.json` overriding the base URL of Pi's built-in providers (their models and key
/// variables stay), from the launch's variables; `None` when none is set. OPENROUTER_BASE_URL and
/// OPENAI_BASE_URL end in the API version (`https://openrouter.ai/api/v1`), ANTHROPIC_BASE_URL is
/// a host root as Claude Code takes it: the same forms Pi's own defaults have.
pub fn models_json(ctx: &AgentContext<'_>) -> Option<Value> {
    let providers: Map<String, Value> = [
        ("openrouter", "OPENROUTER_BASE_URL"),
        ("openai", "OPENAI_BASE_URL"),
        ("anthropic", "ANTHROPIC_BASE_URL"),
    ]
    .into_iter()
    .filter_map(|(provider, name)| {
        ctx.env_var(name).map(|url| {
            (
                provider.to_string(),
                json!({ "baseUrl": url.trim_end_matches('/') }),
            )
        })
    })
    .collect();
    (!providers.is_empty()).then(|| json!({ "providers": providers }))
}

/// Only the fields we use. `message` stays raw: it is read only on `message_end`, and
/// `message_update` lines repeat the whole partial message each time.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    id: Option<String>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(rename = "toolName")]
    tool_name: Option<String>,
    #[serde(borrow)]
    args: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(rename = "isError")]
    is_error: Option<bool>,
    attempt: Option<u32>,
    #[serde(rename = "maxAttempts")]
    max_attempts: Option<u32>,
    #[serde(rename = "errorMessage")]
    error_message: Option<String>,
    success: Option<bool>,
    #[serde(rename = "finalError")]
    final_error: Option<String>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    usage: Option<Usage>,
    #[serde(rename = "stopReason", borrow)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(rename = "errorMessage")]
    error_message: Option<String>,
}

/// Pi splits the prompt into fresh input and cache; we report whole prompts, as for the other CLIs.
#[derive(Deserialize)]
struct Usage {
    input: Option<u64>,
    output: Option<u64>,
    #[serde(rename = "cacheRead")]
    cache_read: Option<u64>,
    #[serde(rename = "cacheWrite")]
    cache_write: Option<u64>,
    cost: Option<Cost>,
}

#[derive(Deserialize)]
struct Cost {
    total: Option<f64>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    text: Option<String>,
}

/// How the last model call ended.
#[derive(Debug)]
enum Last {
    Answered(String),
    Failed(String),
}

/// Turns `--mode json` lines into `AgentEvent`s. Pi exits 0 even when the model API failed, so
/// the outcome is read from the last assistant message (and a failed retry sequence).
#[derive(Debug, Default)]
pub struct StreamParser {
    model: String,
    session_id: Option<String>,
    calls: u32,
    answers: u32,
    cost_usd: f64,
    input_tokens: u64,
    output_tokens: u64,
    last: Option<Last>,
}

impl StreamParser {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            ..Self::default()
        }
    }

    fn event(&mut self, line: Line, raw: &str) -> Vec<AgentEvent> {
        match line.kind.as_ref() {
            "session" => {
                self.session_id = line.id.clone();
                vec![AgentEvent::Started {
                    session_id: line.id,
                    model: Some(self.model.clone()),
                }]
            }
            "message_end" => match line
                .message
                .map(|m| serde_json::from_str::<Message>(m.get()))
            {
                Some(Ok(message)) => self.message_end(message),
                _ => vec![unparsed(raw)],
            },
            "tool_execution_start" => vec![AgentEvent::ToolUse {
                name: line.tool_name.unwrap_or_else(|| "tool".into()),
                summary: line.args.map(tool_input_summary).unwrap_or_default(),
            }],
            "tool_execution_end" => vec![AgentEvent::ToolResult {
                ok: !line.is_error.unwrap_or(false),
                summary: line.result.map(result_summary).unwrap_or_default(),
            }],
            "auto_retry_start" => vec![AgentEvent::Retry {
                attempt: line.attempt.unwrap_or(0),
                max_retries: line.max_attempts,
                error: line.error_message.unwrap_or_else(|| "unknown".into()),
            }],
            "auto_retry_end" => {
                if line.success == Some(false) {
                    if let Some(error) = line.final_error {
                        self.last = Some(Last::Failed(error));
                    }
                }
                Vec::new()
            }
            // Known and carried by the events above (message_update repeats the partial message
            // on every token): nothing to show or keep.
            "agent_start"
            | "agent_end"
            | "turn_start"
            | "turn_end"
            | "message_start"
            | "message_update"
            | "tool_execution_update"
            | "queue_update" => Vec::new(),
            _ => vec![unparsed(raw)],
        }
    }

    fn message_end(&mut self, message: Message) -> Vec<AgentEvent> {
        if message.role.as_deref() != Some("assistant") {
            return Vec::new();
        }
        self.calls += 1;
        if let Some(usage) = &message.usage {
            self.input_tokens += usage.input.unwrap_or(0)
                + usage.cache_read.unwrap_or(0)
                + usage.cache_write.unwrap_or(0);
            self.output_tokens += usage.output.unwrap_or(0);
            self.cost_usd += usage.cost.as_ref().and_then(|c| c.total).unwrap_or(0.0);
        }
        let stop = message.stop_reason.as_deref().unwrap_or("stop");
        if matches!(stop, "error" | "aborted") {
            let error = message
                .error_message
                .unwrap_or_else(|| format!("the model call ended with {stop}"));
            self.last = Some(Last::Failed(error.clone()));
            return vec![AgentEvent::ApiError {
                error: stop.to_string(),
                message: error,
            }];
        }
        self.answers += 1;
        let texts: Vec<String> = message
            .content
            .and_then(|c| serde_json::from_str::<Vec<Block>>(c.get()).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text)
            .filter(|t| !t.trim().is_empty())
            .collect();
        self.last = Some(Last::Answered(texts.join("\n\n")));
        texts
            .into_iter()
            .map(|text| AgentEvent::Text { text })
            .collect()
    }

    fn finish_run(self, exit_code: Option<i32>) -> AgentResult {
        let ran = self.calls > 0;
        let (success, text, api_error_status) = match (self.last, exit_code) {
            (Some(Last::Answered(text)), Some(0)) => (true, text, None),
            (Some(Last::Failed(error)), _) => {
                let status = http_status(&error);
                (false, error, status)
            }
            (last, code) => {
                let end = match code {
                    Some(code) => format!("Pi exited with code {code} without a result"),
                    None => "Pi was killed before it finished".into(),
                };
                let text = match last {
                    Some(Last::Answered(text)) if !text.is_empty() => {
                        format!("{end}; last message: {}", clip(&text, LAST_MESSAGE))
                    }
                    _ => end,
                };
                (false, text, None)
            }
        };
        AgentResult {
            success,
            text,
            cost_usd: ran.then_some(self.cost_usd),
            input_tokens: ran.then_some(self.input_tokens),
            output_tokens: ran.then_some(self.output_tokens),
            num_turns: ran.then_some(self.answers),
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

/// A tool's result is `{content: [{type: "text", text}], details?}`.
fn result_summary(result: &RawValue) -> String {
    #[derive(Deserialize)]
    struct ToolResult<'a> {
        #[serde(borrow)]
        content: Option<&'a RawValue>,
    }
    serde_json::from_str::<ToolResult>(result.get())
        .ok()
        .and_then(|r| r.content)
        .map(first_line_of_content)
        .unwrap_or_default()
}

/// Pi's provider errors start with the HTTP status ("401 User not found.", "429 {...}").
fn http_status(error: &str) -> Option<u16> {
    let code = error.split_whitespace().next()?;
    let status: u16 = code.parse().ok()?;
    (code.len() == 3 && (400..600).contains(&status)).then_some(status)
}

#[cfg(test)]
mod tests;
