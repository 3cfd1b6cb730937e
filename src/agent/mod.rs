//! Agent CLIs: for each tool, the unattended command line, the files it reads, and a parser from
//! its output stream to `AgentEvent`s.

pub mod claude;
pub mod codex;
pub mod opencode;
pub mod packages;
pub mod pi;

use serde::{Deserialize, Serialize};

/// What an agent did, in our words, whatever CLI produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The CLI is up: its session id (for follow-ups) and the model it reports.
    Started {
        session_id: Option<String>,
        model: Option<String>,
    },
    /// Text the agent wrote to the user.
    Text { text: String },
    /// A tool call: the tool's name and a short description of its input.
    ToolUse { name: String, summary: String },
    /// A tool's result: whether it succeeded and the first line of its output.
    ToolResult { ok: bool, summary: String },
    /// The model API answered with an error (auth, rate limit, overload, …).
    ApiError { error: String, message: String },
    /// The CLI is retrying a failed API call.
    Retry {
        attempt: u32,
        max_retries: Option<u32>,
        error: String,
    },
    /// The run's end, as the CLI reported it.
    Result(AgentResult),
    /// A line that is not an event we know: kept for the log, never fatal.
    Unparsed { line: String },
}

impl AgentEvent {
    /// One line of what the agent is doing, for a live display; `None` for events not worth a line.
    pub fn activity(&self) -> Option<String> {
        let first_line = |t: &str| {
            let line = t
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            clip_chars(line, 100)
        };
        match self {
            AgentEvent::Started { model, .. } => Some(format!(
                "started{}",
                model
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )),
            AgentEvent::Text { text } => Some(format!("💬 {}", first_line(text))),
            AgentEvent::ToolUse { name, summary } => {
                Some(format!("🔧 {name}: {}", first_line(summary)))
            }
            AgentEvent::ToolResult { ok: false, summary } => {
                Some(format!("✗ tool failed: {}", first_line(summary)))
            }
            AgentEvent::ToolResult { ok: true, .. } => None,
            AgentEvent::ApiError { error, message } => {
                Some(format!("API error ({error}): {}", first_line(message)))
            }
            AgentEvent::Retry {
                attempt,
                max_retries,
                error,
            } => Some(format!(
                "retrying the API ({attempt}{}): {error}",
                max_retries.map(|m| format!(" of {m}")).unwrap_or_default()
            )),
            AgentEvent::Result(_) | AgentEvent::Unparsed { .. } => None,
        }
    }
}

/// The first `max` characters, with an ellipsis when cut.
fn clip_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

/// The outcome of one agent run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentResult {
    pub success: bool,
    /// The final answer on success; what went wrong otherwise.
    pub text: String,
    pub cost_usd: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub num_turns: Option<u32>,
    pub duration_ms: Option<u64>,
    pub session_id: Option<String>,
    /// The API's HTTP status when the run failed on an API error.
    pub api_error_status: Option<u16>,
    /// The answer in the requested structured form, for CLIs that return one (Claude Code's
    /// `--json-schema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_output: Option<serde_json::Value>,
}

/// Longest line kept verbatim in the event log; longer lines are cut (and say so).
pub const MAX_KEPT_LINE: usize = 64 * 1024;

/// `text` cut to at most `max` bytes at a character boundary, marking the cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} more bytes]", &text[..end], text.len() - end)
}

use crate::catalog::{Effort, Tool};
use crate::secret::Secret;
use crate::store::NamedText;

/// Where the launch sequence writes what every agent reads, inside the sandbox.
pub const SYSTEM_PROMPT_FILE: &str = "/home/user/.codecourier/system-prompt.md";
/// The agent is asked to append what it learned here; the finish phase stores it on the project.
pub const LEARNINGS_FILE: &str = "/home/user/.codecourier/learnings.md";

/// What the tool-setup phase knows about the run.
pub struct AgentContext<'a> {
    pub tool: &'a Tool,
    pub model: &'a str,
    pub effort: Effort,
    /// A fresh UUID for CLIs that accept a session id; others report their own.
    pub session_id: &'a str,
    /// A session to resume instead (a follow-up whose session files were restored).
    pub resume: Option<&'a str>,
    /// The keys the tool reads, by variable name.
    pub keys: Vec<(String, Secret)>,
    /// The launch's own variables (`--env`, project variables): base-URL overrides live here.
    pub env: &'a [(String, Secret)],
    /// The system prompt's text (also written to `SYSTEM_PROMPT_FILE`).
    pub system_prompt: &'a str,
    /// Compiled learnings, for tools that read a memory file ("" when none).
    pub memory: &'a str,
    pub skills: Vec<NamedText>,
    pub commands: Vec<NamedText>,
    /// A JSON schema the final answer must follow, for CLIs that can enforce one (an issue scan).
    pub output_schema: Option<&'a str>,
}

impl AgentContext<'_> {
    /// A variable from the launch's environment (for base-URL overrides).
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.expose())
            .filter(|v| !v.is_empty())
    }

    /// A key's value, from the keys the tool was given.
    pub fn key(&self, name: &str) -> Option<&Secret> {
        self.keys.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A file the tool-setup phase writes into the sandbox.
#[derive(Debug, Clone)]
pub struct SetupFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl SetupFile {
    pub fn new(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            contents: contents.into(),
            mode: 0o644,
        }
    }

    /// A file only its owner may read (keys, auth files).
    pub fn private(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            contents: contents.into(),
            mode: 0o600,
        }
    }
}

/// Everything needed to run one agent: its command line, environment, files and output parser.
pub struct AgentPlan {
    pub argv: Vec<String>,
    pub env: Vec<(String, Secret)>,
    pub files: Vec<SetupFile>,
    /// The npm package that provides the CLI, at its pinned version.
    pub package: packages::CliPackage,
    /// Whether a sandbox that lacks the command gets the package installed even from the tool's
    /// own template or host (a sandbox from E2B's `base` template always does).
    pub install_if_missing: bool,
    pub parser: Box<dyn AgentStream>,
}

/// A CLI's output stream, read line by line.
pub trait AgentStream: Send + Sync {
    /// One line of standard output. Never fails: what cannot be read comes back as `Unparsed`.
    fn line(&mut self, line: &str) -> Vec<AgentEvent>;

    /// The run's outcome once the process has exited (`None`: killed by a signal). A run that
    /// reported no result failed, whatever its exit code.
    fn finish(self: Box<Self>, exit_code: Option<i32>) -> AgentResult;
}

/// One line of a JSON-lines stream: blank lines give nothing, what is not the expected JSON is
/// kept as `Unparsed`, the rest goes to `event` with the raw text (for keeping unknown events).
pub(crate) fn json_line<'a, T: serde::Deserialize<'a>>(
    line: &'a str,
    event: impl FnOnce(T, &'a str) -> Vec<AgentEvent>,
) -> Vec<AgentEvent> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    match serde_json::from_str::<T>(trimmed) {
        Ok(parsed) => event(parsed, trimmed),
        Err(_) => vec![AgentEvent::Unparsed {
            line: clip(trimmed, MAX_KEPT_LINE),
        }],
    }
}

/// Whether this build can run the tool; the error is for the user.
pub fn supported(tool: &Tool) -> Result<(), String> {
    match tool.id.as_str() {
        "claude-code" | "codex" | "opencode" | "pi" => Ok(()),
        other => Err(format!(
            "the catalog's tool {other} ({}) has no adapter in CodeCourier: tools must be claude-code, opencode, codex or pi",
            tool.name
        )),
    }
}

/// The plan for the tool's CLI.
pub fn plan(ctx: AgentContext<'_>) -> Result<AgentPlan, String> {
    supported(ctx.tool)?;
    match ctx.tool.id.as_str() {
        "claude-code" => Ok(claude::plan(ctx)),
        "codex" => Ok(codex::plan(ctx)),
        "opencode" => Ok(opencode::plan(ctx)),
        "pi" => Ok(pi::plan(ctx)),
        other => Err(format!("no adapter for {other}")),
    }
}

/// A name safe to use as one path component.
pub fn file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unnamed".into()
    } else {
        cleaned
    }
}
