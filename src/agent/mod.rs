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
