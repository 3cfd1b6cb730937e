//! Claude Code: `claude -p --output-format stream-json --verbose`, prompt on stdin.
//! Stream format: reference/agents/AGENTS.md section 1.4.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    clip, command_files, skill_files, AgentContext, AgentEvent, AgentPlan, AgentResult,
    AgentStream, SetupFile, MAX_KEPT_LINE, SYSTEM_PROMPT_FILE,
};
use crate::catalog::Effort;
use crate::secret::Secret;

/// Claude Code's command line, environment and files: user-level memory, skills and commands go
/// under `~/.claude`, outside the repository, so they are never committed.
pub fn plan(ctx: AgentContext<'_>) -> AgentPlan {
    let mut env: Vec<(String, Secret)> = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), Secret::new(*v)))
        .collect();
    env.push((
        "CLAUDE_CONFIG_DIR".into(),
        Secret::new("/home/user/.claude"),
    ));
    env.extend(ctx.keys.iter().cloned());
    let mut files = Vec::new();
    if !ctx.memory.trim().is_empty() {
        files.push(SetupFile::new("/home/user/.claude/CLAUDE.md", ctx.memory));
    }
    files.extend(skill_files("/home/user/.claude/skills", &ctx.skills));
    files.extend(command_files("/home/user/.claude/commands", &ctx.commands));
    let mut argv = match ctx.resume {
        Some(session) => resume_command_line(ctx.model, ctx.effort, SYSTEM_PROMPT_FILE, session),
        None => command_line(ctx.model, ctx.effort, SYSTEM_PROMPT_FILE, ctx.session_id),
    };
    if let Some(schema) = ctx.output_schema {
        // The CLI offers the model a StructuredOutput tool with this schema, checks the answer
        // against it, and reports it as the result's `structured_output`.
        argv.extend(["--json-schema".into(), schema.into()]);
    }
    AgentPlan {
        argv,
        env,
        files,
        package: super::packages::CLAUDE_CODE,
        install_if_missing: false,
        parser: Box::new(StreamParser::new()),
        left_out: Vec::new(),
    }
}

/// The unattended command line. The prompt goes on stdin (no quoting, no leading-dash or length
/// problems); the system prompt is appended from a file.
pub fn command_line(
    model: &str,
    effort: Effort,
    system_prompt_file: &str,
    session_id: &str,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--dangerously-skip-permissions",
        "--model",
        model,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Claude's --effort takes low|medium|high|xhigh|max; "none" means the CLI's own default.
    if effort != Effort::None {
        args.extend(["--effort".into(), effort.as_str().into()]);
    }
    args.extend([
        "--append-system-prompt-file".into(),
        system_prompt_file.into(),
        "--session-id".into(),
        session_id.into(),
    ]);
    args
}

/// The same, continuing an earlier session (its files restored into `CLAUDE_CONFIG_DIR`).
pub fn resume_command_line(
    model: &str,
    effort: Effort,
    system_prompt_file: &str,
    session_id: &str,
) -> Vec<String> {
    let mut args = command_line(model, effort, system_prompt_file, session_id);
    let at = args
        .iter()
        .position(|a| a == "--session-id")
        .expect("command_line sets it");
    args[at] = "--resume".into();
    args
}

/// Environment for an unattended run. `IS_SANDBOX=1` lets the permission bypass run as root;
/// without a low retry count a bad key is retried ten times (minutes) before the run fails.
pub const ENV: [(&str, &str); 5] = [
    ("IS_SANDBOX", "1"),
    ("CLAUDE_CODE_MAX_RETRIES", "2"),
    ("DISABLE_AUTOUPDATER", "1"),
    ("DISABLE_TELEMETRY", "1"),
    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
];

/// Only the fields we use; everything else in a line is skipped without being built.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    subtype: Option<Cow<'a, str>>,
    session_id: Option<String>,
    model: Option<String>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    error: Option<String>,
    is_error: Option<bool>,
    result: Option<String>,
    errors: Option<Vec<String>>,
    total_cost_usd: Option<f64>,
    usage: Option<Usage>,
    num_turns: Option<u32>,
    duration_ms: Option<u64>,
    api_error_status: Option<u16>,
    attempt: Option<u32>,
    max_retries: Option<u32>,
    error_status: Option<u16>,
    tool_name: Option<String>,
    structured_output: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    text: Option<String>,
    name: Option<String>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    is_error: Option<bool>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

/// Turns stream-json lines into `AgentEvent`s and remembers what the final result needs.
#[derive(Debug, Default)]
pub struct StreamParser {
    result: Option<AgentResult>,
    last_text: Option<String>,
    last_api_error: Option<String>,
    session_id: Option<String>,
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
        if let Some(id) = &line.session_id {
            self.session_id = Some(id.clone());
        }
        match (line.kind.as_ref(), line.subtype.as_deref()) {
            ("system", Some("init")) => vec![AgentEvent::Started {
                session_id: line.session_id,
                model: line.model,
            }],
            ("system", Some("api_retry")) => vec![AgentEvent::Retry {
                attempt: line.attempt.unwrap_or(0),
                max_retries: line.max_retries,
                error: match (line.error_status, line.error) {
                    (Some(status), Some(e)) => format!("HTTP {status}: {e}"),
                    (Some(status), None) => format!("HTTP {status}"),
                    (None, Some(e)) => e,
                    (None, None) => "unknown".into(),
                },
            }],
            ("system", Some("permission_denied")) => vec![AgentEvent::ToolResult {
                ok: false,
                summary: format!(
                    "permission denied for {}",
                    line.tool_name.as_deref().unwrap_or("a tool")
                ),
            }],
            ("assistant", _) => {
                let blocks = line.message.map(blocks_of).unwrap_or_default();
                if let Some(error) = line.error {
                    let message = blocks
                        .iter()
                        .filter_map(|b| b.text.clone())
                        .collect::<Vec<_>>()
                        .join("\n");
                    self.last_api_error = Some(message.clone());
                    return vec![AgentEvent::ApiError { error, message }];
                }
                blocks
                    .into_iter()
                    .filter_map(|block| match block.kind.as_ref() {
                        "text" => {
                            let text = block.text?;
                            self.last_text = Some(text.clone());
                            Some(AgentEvent::Text { text })
                        }
                        "tool_use" => Some(AgentEvent::ToolUse {
                            summary: block.input.map(tool_input_summary).unwrap_or_default(),
                            name: block.name.unwrap_or_else(|| "tool".into()),
                        }),
                        _ => None,
                    })
                    .collect()
            }
            ("user", _) => line
                .message
                .map(blocks_of)
                .unwrap_or_default()
                .into_iter()
                .filter(|b| b.kind == "tool_result")
                .map(|b| AgentEvent::ToolResult {
                    ok: !b.is_error.unwrap_or(false),
                    summary: b.content.map(first_line_of_content).unwrap_or_default(),
                })
                .collect(),
            ("result", _) => {
                let success = line.is_error == Some(false);
                let text = if success {
                    line.result.unwrap_or_default()
                } else {
                    let mut parts: Vec<String> = line.errors.unwrap_or_default();
                    if let Some(r) = line.result {
                        parts.push(r);
                    }
                    if parts.is_empty() {
                        parts.extend(self.last_api_error.clone().or(self.last_text.clone()));
                    }
                    parts.join("\n")
                };
                let usage = line.usage;
                let result = AgentResult {
                    success,
                    text,
                    cost_usd: line.total_cost_usd,
                    input_tokens: usage.as_ref().map(|u| {
                        u.input_tokens.unwrap_or(0)
                            + u.cache_read_input_tokens.unwrap_or(0)
                            + u.cache_creation_input_tokens.unwrap_or(0)
                    }),
                    output_tokens: usage.as_ref().and_then(|u| u.output_tokens),
                    num_turns: line.num_turns,
                    duration_ms: line.duration_ms,
                    session_id: line.session_id.or_else(|| self.session_id.clone()),
                    api_error_status: line.api_error_status,
                    structured_output: line.structured_output,
                };
                self.result = Some(result.clone());
                vec![AgentEvent::Result(result)]
            }
            // Known but not worth showing (hooks, status, stream deltas) or unknown: keep for the log.
            _ => vec![unparsed(raw)],
        }
    }

    fn finish_run(self, exit_code: Option<i32>) -> AgentResult {
        match self.result {
            Some(result) => result,
            None => AgentResult {
                success: false,
                text: match (self.last_api_error.or(self.last_text), exit_code) {
                    (Some(last), Some(code)) => format!("Claude Code exited with code {code} without a result; last message: {last}"),
                    (Some(last), None) => format!("Claude Code was killed before it finished; last message: {last}"),
                    (None, Some(code)) => format!("Claude Code exited with code {code} without a result"),
                    (None, None) => "Claude Code was killed before it finished".into(),
                },
                session_id: self.session_id,
                ..Default::default()
            },
        }
    }
}

pub(super) fn unparsed(line: &str) -> AgentEvent {
    AgentEvent::Unparsed {
        line: clip(line, MAX_KEPT_LINE),
    }
}

fn blocks_of(message: &RawValue) -> Vec<Block<'_>> {
    let Ok(message) = serde_json::from_str::<Message>(message.get()) else {
        return Vec::new();
    };
    message
        .content
        .and_then(|c| serde_json::from_str::<Vec<Block>>(c.get()).ok())
        .unwrap_or_default()
}

/// A one-line description of a tool call's input: the field a person would want to see.
pub(super) fn tool_input_summary(input: &RawValue) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(input.get()) else {
        return String::new();
    };
    let pick = [
        "description",
        "command",
        "file_path",
        "path",
        "pattern",
        "url",
        "query",
        "prompt",
    ]
    .iter()
    .find_map(|key| fields.get(*key).and_then(|v| v.as_str()))
    .or_else(|| fields.values().find_map(|v| v.as_str()))
    .unwrap_or_default();
    one_line(pick)
}

/// Tool results carry a string or a list of `{type: "text", text}` blocks.
pub(super) fn first_line_of_content(content: &RawValue) -> String {
    match serde_json::from_str::<serde_json::Value>(content.get()) {
        Ok(serde_json::Value::String(s)) => one_line(&s),
        Ok(serde_json::Value::Array(items)) => items
            .iter()
            .find_map(|i| i.get("text").and_then(|t| t.as_str()))
            .map(one_line)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

pub(super) fn one_line(text: &str) -> String {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let mut out: String = first.trim().chars().take(120).collect();
    if first.trim().chars().count() > 120 || text.trim().lines().count() > 1 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(stream: &str) -> (Vec<AgentEvent>, AgentResult) {
        let mut parser = Box::new(StreamParser::new());
        let events = stream.lines().flat_map(|l| parser.line(l)).collect();
        (events, parser.finish(Some(0)))
    }

    #[test]
    fn command_line_matches_the_cli() {
        let args = command_line(
            "claude-sonnet-4-6",
            Effort::High,
            "/home/user/.codecourier/system.md",
            "abc",
        );
        assert_eq!(
            args.join(" "),
            "claude -p --output-format stream-json --verbose --dangerously-skip-permissions --model claude-sonnet-4-6 --effort high --append-system-prompt-file /home/user/.codecourier/system.md --session-id abc"
        );
        let none = command_line("m", Effort::None, "f", "s");
        assert!(!none.contains(&"--effort".to_string()));
    }

    #[test]
    fn recorded_success_stream() {
        let (events, result) = parse_all(include_str!("../../tests/data/claude/success.jsonl"));
        assert_eq!(
            events[0],
            AgentEvent::Started {
                session_id: Some("609f8461-02e6-4700-bc43-85c9f4050c9c".into()),
                model: Some("claude-sonnet-5-5".into())
            }
        );
        assert_eq!(
            events[1],
            AgentEvent::Text {
                text: "I will create the file.".into()
            }
        );
        assert_eq!(
            events[2],
            AgentEvent::ToolUse {
                name: "Bash".into(),
                summary: "Create hello.txt".into()
            }
        );
        assert_eq!(
            events[3],
            AgentEvent::ToolResult {
                ok: true,
                summary: "hello".into()
            }
        );
        assert!(result.success);
        assert_eq!(result.text, "Done. Created hello.txt containing \"hello\".");
        assert_eq!(result.cost_usd, Some(0.0058));
        assert_eq!(
            (result.input_tokens, result.output_tokens),
            (Some(4000), Some(84))
        );
        assert_eq!(result.num_turns, Some(2));
        assert_eq!(result.duration_ms, Some(298));
        assert_eq!(
            result.session_id.as_deref(),
            Some("609f8461-02e6-4700-bc43-85c9f4050c9c")
        );
    }

    #[test]
    fn success_is_read_from_is_error_not_subtype() {
        let (events, result) =
            parse_all(include_str!("../../tests/data/claude/not_logged_in.jsonl"));
        assert!(matches!(&events[1], AgentEvent::ApiError { error, message }
            if error == "authentication_failed" && message == "Not logged in · Please run /login"));
        assert!(!result.success);
        assert_eq!(result.text, "Not logged in · Please run /login");
    }

    #[test]
    fn error_subtypes_report_their_errors() {
        let (_, result) = parse_all(include_str!("../../tests/data/claude/max_turns.jsonl"));
        assert!(!result.success);
        assert_eq!(result.text, "Reached maximum number of turns (1)");
        assert_eq!(result.cost_usd, Some(0.0029));
    }

    #[test]
    fn garbage_never_breaks_the_parser() {
        let mut parser = Box::new(StreamParser::new());
        let huge = format!("{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{}\"}}]}}}}", "x".repeat(5_000_000));
        let long_garbage = "y".repeat(3_000_000);
        let inputs = [
            "",
            "   ",
            "not json at all",
            "{\"type\":",
            "[1,2,3]",
            "{\"no_type\":true}",
            "{\"type\":\"rate_limit_event\",\"x\":1}",
            "{\"type\":\"assistant\",\"message\":\"a string\"}",
            "{\"type\":\"assistant\",\"message\":{\"content\":\"plain\"}}",
            "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\",\"content\":[{\"type\":\"text\",\"text\":\"line1\\nline2\"}],\"is_error\":true}]}}",
            "\u{0}\u{1}binary",
            huge.as_str(),
            long_garbage.as_str(),
        ];
        let mut events = Vec::new();
        for input in inputs {
            events.extend(parser.line(input));
        }
        assert!(events.iter().any(
            |e| matches!(e, AgentEvent::ToolResult { ok: false, summary } if summary == "line1…")
        ));
        assert!(events
            .iter()
            .any(|e| matches!(e, AgentEvent::Text { text } if text.len() == 5_000_000)));
        for e in &events {
            if let AgentEvent::Unparsed { line } = e {
                assert!(line.len() <= MAX_KEPT_LINE + 40);
            }
        }
        let result = parser.finish(Some(1));
        assert!(!result.success);
        assert!(
            result
                .text
                .starts_with("Claude Code exited with code 1 without a result"),
            "{}",
            result.text
        );
    }
}
