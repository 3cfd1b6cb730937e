//! A fake Anthropic Messages API on loopback, speaking the streaming (SSE) wire format the real
//! Claude Code CLI reads (reference/agents/AGENTS.md, appendix A), or one JSON message when the
//! request does not ask for a stream. Scenario: the first request gets
//! a `Bash` tool call that creates a file; a request carrying the tool's result gets the final text.
//! A scan (a request that offers the `StructuredOutput` tool of `--json-schema`) gets its answers
//! in turn instead.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

static NEXT_TOOL_ID: AtomicU64 = AtomicU64::new(1);

pub const FINAL_TEXT: &str = "Done. Created hello.txt containing \"hello\".";
pub const SHELL_COMMAND: &str = "echo hello > hello.txt && cat hello.txt";
/// The usage of every answer (a stream's `message_delta` carries the final output count).
pub const INPUT_TOKENS: u64 = 100;
pub const OUTPUT_TOKENS: u64 = 20;

pub enum Mode {
    /// Tool call, then the final answer (optionally with extra text in it).
    Works { extra_text: String },
    /// 401 with Anthropic's error body.
    Unauthorized,
    /// Accepts the request and never answers.
    Silent,
    /// Launches work as in `Works`; each scan request gets the next answer (the last repeats):
    /// `Some` as a `StructuredOutput` call, `None` as plain text that ignores the tool.
    Scan { answers: Vec<Option<Value>> },
    /// As `Scan`, but requests for `model` get no answer until `release` is set.
    HangsFor {
        model: String,
        release: Arc<AtomicBool>,
        answers: Vec<Option<Value>>,
    },
}

pub const SCAN_TEXT_ANSWER: &str =
    "I looked around and found a few things, but I will just describe them.";

struct Scenario {
    extra_text: String,
    scan_answers: Vec<Option<Value>>,
    scans: AtomicUsize,
    hang: Option<(String, Arc<AtomicBool>)>,
}

/// The shell command of the `Bash` call: a prompt's "Run `<command>`" runs that command; "Create
/// <name>.txt" makes that file holding its stem (so several tasks leave several files); otherwise
/// hello.txt.
fn shell_command(body: &Value) -> String {
    let prompt = first_user_text(body);
    if let Some(command) = prompt
        .split_once("Run `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(command, _)| command)
    {
        return command.to_string();
    }
    let name = prompt
        .split("Create ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .find(|w| {
            w.ends_with(".txt")
                && w.len() > 4
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
        })
        .unwrap_or("hello.txt");
    if name == "hello.txt" {
        return SHELL_COMMAND.to_string();
    }
    let stem = name.trim_end_matches(".txt");
    format!("echo {stem} > {name} && cat {name}")
}

fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

fn has_tool_result(body: &Value) -> bool {
    body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
}

impl Respond for Scenario {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let model = body["model"].as_str().unwrap_or("claude-sonnet-4-6");
        if let Some((hanging, release)) = &self.hang {
            if model == hanging && !release.load(Ordering::SeqCst) {
                return ResponseTemplate::new(200).set_delay(Duration::from_secs(3600));
            }
        }
        let offers = |name: &str| {
            body["tools"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["name"] == name))
        };
        let (block_start, delta, stop) = if offers("StructuredOutput")
            && !self.scan_answers.is_empty()
        {
            let turn = self.scans.fetch_add(1, Ordering::SeqCst);
            match &self.scan_answers[turn.min(self.scan_answers.len() - 1)] {
                Some(answer) => (
                    json!({"type": "tool_use", "id": format!("toolu_fake_{}", NEXT_TOOL_ID.fetch_add(1, Ordering::SeqCst)), "name": "StructuredOutput", "input": {}}),
                    json!({"type": "input_json_delta", "partial_json": answer.to_string()}),
                    "tool_use",
                ),
                None => (
                    json!({"type": "text", "text": ""}),
                    json!({"type": "text_delta", "text": SCAN_TEXT_ANSWER}),
                    "end_turn",
                ),
            }
        } else if has_tool_result(&body) || !offers("Bash") {
            let text = format!("{FINAL_TEXT}{}", self.extra_text);
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": text}),
                "end_turn",
            )
        } else {
            let input = json!({"command": shell_command(&body), "description": "Create the file"});
            (
                // A fresh id per call: a resumed session already holds the earlier calls' ids.
                json!({"type": "tool_use", "id": format!("toolu_fake_{}", NEXT_TOOL_ID.fetch_add(1, Ordering::SeqCst)), "name": "Bash", "input": {}}),
                json!({"type": "input_json_delta", "partial_json": input.to_string()}),
                "tool_use",
            )
        };
        if body["stream"] != true {
            // Not streamed: the whole message, with its final usage.
            let mut block = block_start;
            match delta["type"].as_str() {
                Some("text_delta") => block["text"] = delta["text"].clone(),
                _ => {
                    block["input"] =
                        serde_json::from_str(delta["partial_json"].as_str().unwrap_or("{}"))
                            .unwrap_or_default()
                }
            }
            return ResponseTemplate::new(200).set_body_json(json!({
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [block], "stop_reason": stop, "stop_sequence": null,
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            }));
        }
        let usage = json!({"input_tokens": INPUT_TOKENS, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0});
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage}}),
            json!({"type": "content_block_start", "index": 0, "content_block": block_start}),
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": OUTPUT_TOKENS}}),
            json!({"type": "message_stop"}),
        ];
        ResponseTemplate::new(200).set_body_raw(sse(&events), "text/event-stream")
    }
}

pub async fn start(mode: Mode) -> MockServer {
    let server = MockServer::start().await;
    let messages = Mock::given(method("POST")).and(path("/v1/messages"));
    match mode {
        Mode::Works { extra_text } => messages.respond_with(Scenario {
            extra_text,
            scan_answers: Vec::new(),
            scans: AtomicUsize::new(0),
            hang: None,
        }),
        Mode::Scan { answers } => messages.respond_with(Scenario {
            extra_text: String::new(),
            scan_answers: answers,
            scans: AtomicUsize::new(0),
            hang: None,
        }),
        Mode::HangsFor {
            model,
            release,
            answers,
        } => messages.respond_with(Scenario {
            extra_text: String::new(),
            scan_answers: answers,
            scans: AtomicUsize::new(0),
            hang: Some((model, release)),
        }),
        Mode::Unauthorized => messages.respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
        )),
        Mode::Silent => messages.respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3600))),
    }
    .mount(&server)
    .await;
    server
}

/// The text of the first user message of each request the CLI sent (the prompt).
pub async fn prompts_received(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|body| first_user_text(&body))
        .collect()
}

/// The text of a request's first user message.
pub fn first_user_text(body: &Value) -> String {
    match &body["messages"][0]["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The text of every tool result the CLI sent back (what its commands printed).
pub async fn tool_results_received(server: &MockServer) -> Vec<String> {
    let bodies: Vec<Value> = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .collect();
    let mut results = Vec::new();
    for body in &bodies {
        for message in body["messages"].as_array().into_iter().flatten() {
            for block in message["content"].as_array().into_iter().flatten() {
                if block["type"] == "tool_result" {
                    results.push(match &block["content"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                }
            }
        }
    }
    results
}

/// Every request body the CLI sent, as text (to look for what its configuration put there).
pub async fn requests_received(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}
