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
use crate::model::NamedText;
use crate::secret::Secret;

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
    /// What the project gives that this CLI cannot take ("Codex takes no commands: 2 left out"),
    /// for the tool-setup phase's detail.
    pub left_out: Vec<String>,
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

/// The project's skills as `<dir>/<name>/SKILL.md`, the layout every CLI reads skills in.
pub fn skill_files(dir: &str, skills: &[NamedText]) -> Vec<SetupFile> {
    skills
        .iter()
        .map(|s| {
            SetupFile::new(
                format!("{dir}/{}/SKILL.md", file_name(&s.name)),
                s.text.as_str(),
            )
        })
        .collect()
}

/// The project's commands (prompt templates) as `<dir>/<name>.md`.
pub fn command_files(dir: &str, commands: &[NamedText]) -> Vec<SetupFile> {
    commands
        .iter()
        .map(|c| SetupFile::new(format!("{dir}/{}.md", file_name(&c.name)), c.text.as_str()))
        .collect()
}

/// "Codex takes no commands: 2 left out", when there are any to leave out.
pub fn left_out(tool: &str, what: &str, count: usize) -> Option<String> {
    (count > 0).then(|| format!("{tool} takes no {what}: {count} left out"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn named(name: &str, text: &str) -> NamedText {
        NamedText {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Each CLI's plan for a project with two skills and two commands: the files it writes (path
    /// and text) and what it leaves out.
    fn extensions_of(tool: &str) -> (Vec<(String, String)>, Vec<String>) {
        let catalog = Catalog::built_in();
        let tool = catalog.tool(tool).unwrap();
        let plan = plan(AgentContext {
            tool,
            model: tool.default_model(),
            effort: Effort::None,
            session_id: "s",
            resume: None,
            keys: Vec::new(),
            env: &[],
            system_prompt: "p",
            memory: "",
            skills: vec![
                named(
                    "run-tests",
                    "---\nname: run-tests\ndescription: Tests\n---\nmake check\n",
                ),
                named(
                    "deploy",
                    "---\nname: deploy\ndescription: Deploys\n---\nmake deploy\n",
                ),
            ],
            commands: vec![
                named("review", "Review the diff."),
                named("ship", "Ship it."),
            ],
            output_schema: None,
        })
        .unwrap();
        let files = plan
            .files
            .iter()
            .filter(|f| {
                f.path.contains("skills/")
                    || f.path.contains("commands/")
                    || f.path.contains("prompts/")
            })
            .map(|f| {
                (
                    f.path.clone(),
                    String::from_utf8(f.contents.clone()).unwrap(),
                )
            })
            .collect();
        (files, plan.left_out)
    }

    fn paths(files: &[(String, String)]) -> Vec<&str> {
        files.iter().map(|(p, _)| p.as_str()).collect()
    }

    #[test]
    fn every_cli_gets_the_projects_skills_and_commands_its_own_way() {
        let (files, left_out) = extensions_of("claude-code");
        assert_eq!(
            paths(&files),
            [
                "/home/user/.claude/skills/run-tests/SKILL.md",
                "/home/user/.claude/skills/deploy/SKILL.md",
                "/home/user/.claude/commands/review.md",
                "/home/user/.claude/commands/ship.md",
            ]
        );
        assert!(files[0].1.contains("make check") && files[2].1 == "Review the diff.");
        assert!(left_out.is_empty());

        let (files, left_out) = extensions_of("opencode");
        assert_eq!(
            paths(&files),
            [
                "/home/user/.config/opencode/skills/run-tests/SKILL.md",
                "/home/user/.config/opencode/skills/deploy/SKILL.md",
                "/home/user/.config/opencode/commands/review.md",
                "/home/user/.config/opencode/commands/ship.md",
            ]
        );
        assert!(left_out.is_empty());

        let (files, left_out) = extensions_of("pi");
        assert_eq!(
            paths(&files),
            [
                "/home/user/.pi/agent/skills/run-tests/SKILL.md",
                "/home/user/.pi/agent/skills/deploy/SKILL.md",
                "/home/user/.pi/agent/prompts/review.md",
                "/home/user/.pi/agent/prompts/ship.md",
            ]
        );
        assert!(left_out.is_empty());

        let (files, left_out) = extensions_of("codex");
        assert_eq!(
            paths(&files),
            [
                "/home/user/.codex/skills/run-tests/SKILL.md",
                "/home/user/.codex/skills/deploy/SKILL.md",
            ]
        );
        assert!(files[1].1.contains("make deploy"));
        assert_eq!(left_out, ["Codex takes no commands: 2 left out"]);
    }
}
