//! Agent CLIs: for each tool, the unattended command line, the files it reads, and a parser from
//! its output stream to `AgentEvent`s.

pub mod claude;

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
    pub session_id: &'a str,
    /// The keys the tool reads, by variable name.
    pub keys: Vec<(String, Secret)>,
    /// Compiled learnings and project instructions, for tools that read a memory file.
    pub memory: &'a str,
    pub skills: Vec<NamedText>,
    pub commands: Vec<NamedText>,
}

/// A file the tool-setup phase writes into the sandbox.
#[derive(Debug, Clone)]
pub struct SetupFile {
    pub path: String,
    pub contents: Vec<u8>,
}

/// Everything needed to run one agent: its command line, environment, files and output parser.
pub struct AgentPlan {
    pub argv: Vec<String>,
    pub env: Vec<(String, Secret)>,
    pub files: Vec<SetupFile>,
    pub parser: OutputParser,
}

/// The output parser of whichever CLI runs.
pub enum OutputParser {
    Claude(claude::StreamParser),
}

impl OutputParser {
    pub fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        match self {
            OutputParser::Claude(p) => p.line(line),
        }
    }

    pub fn finish(self, exit_code: Option<i32>) -> AgentResult {
        match self {
            OutputParser::Claude(p) => p.finish(exit_code),
        }
    }
}

/// Whether this build can run the tool; the error is for the user.
pub fn supported(tool: &Tool) -> Result<(), String> {
    match tool.id.as_str() {
        "claude-code" => Ok(()),
        _ => Err(format!(
            "{} launches are not part of this build yet; use --tool claude-code",
            tool.name
        )),
    }
}

pub fn plan(ctx: AgentContext<'_>) -> Result<AgentPlan, String> {
    supported(ctx.tool)?;
    let mut env: Vec<(String, Secret)> = claude::ENV
        .iter()
        .map(|(k, v)| (k.to_string(), Secret::new(*v)))
        .collect();
    env.push((
        "CLAUDE_CONFIG_DIR".into(),
        Secret::new("/home/user/.claude"),
    ));
    env.extend(ctx.keys);
    let mut files = Vec::new();
    if !ctx.memory.trim().is_empty() {
        // User-level memory: read by Claude Code, outside the repository, so never committed.
        files.push(SetupFile {
            path: "/home/user/.claude/CLAUDE.md".into(),
            contents: ctx.memory.as_bytes().to_vec(),
        });
    }
    for skill in &ctx.skills {
        files.push(SetupFile {
            path: format!(
                "/home/user/.claude/skills/{}/SKILL.md",
                file_name(&skill.name)
            ),
            contents: skill.text.as_bytes().to_vec(),
        });
    }
    for command in &ctx.commands {
        files.push(SetupFile {
            path: format!(
                "/home/user/.claude/commands/{}.md",
                file_name(&command.name)
            ),
            contents: command.text.as_bytes().to_vec(),
        });
    }
    Ok(AgentPlan {
        argv: claude::command_line(ctx.model, ctx.effort, SYSTEM_PROMPT_FILE, ctx.session_id),
        env,
        files,
        parser: OutputParser::Claude(claude::StreamParser::new()),
    })
}

/// A name safe to use as one path component.
fn file_name(name: &str) -> String {
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
