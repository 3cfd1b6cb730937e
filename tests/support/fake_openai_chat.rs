//! A fake OpenRouter on loopback: the OpenAI-compatible Chat Completions API with SSE streaming,
//! which is what OpenCode (ai-sdk's OpenRouter provider) and Pi (the OpenAI SDK) send to
//! `<base>/chat/completions` for `openrouter/...` models. Scenario: the first request gets a `bash`
//! tool call that creates a file; a request carrying the tool's result gets the final text. A
//! request that does not ask for a stream gets one JSON completion.

use codecourier::agent::LEARNINGS_FILE;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const FINAL_TEXT: &str = "Done. Created hello.txt containing \"hello\".";
pub const SHELL_COMMAND: &str = "echo hello > hello.txt && cat hello.txt";
/// What every answer reports: 100 prompt tokens of which 30 came from the cache, 20 completion
/// tokens of which 5 were reasoning, and OpenRouter's own price (which neither CLI reads: both
/// price tokens from their bundled model tables).
pub const PROMPT_TOKENS: u64 = 100;
pub const COMPLETION_TOKENS: u64 = 20;
pub const CACHED_TOKENS: u64 = 30;
pub const REASONING_TOKENS: u64 = 5;
pub const OPENROUTER_COST: f64 = 0.000_77;
/// OpenRouter's answer to a key it does not know.
pub const UNAUTHORIZED_MESSAGE: &str = "User not found.";

pub enum Mode {
    /// Tool call, then the final answer.
    Works,
    /// As `Works`, but the command also appends this line to the learnings file outside the
    /// project, as the system prompt asks agents to, and reads it back with `cat` (a command
    /// whose path arguments OpenCode checks against the project directory).
    Learns(String),
    /// 401 with OpenRouter's error body.
    Unauthorized,
    /// A checker: each request is answered at once with the next verdict (the last repeats) as a
    /// fenced JSON block ending the text.
    Verdicts(Vec<Value>),
}

/// The API's base URL, shaped like OpenRouter's `https://openrouter.ai/api/v1`.
pub fn base_url(server: &MockServer) -> String {
    format!("{}/api/v1", server.uri())
}

struct Scenario {
    command: String,
    verdicts: Vec<Value>,
    answered: std::sync::atomic::AtomicUsize,
}

fn has_tool_result(body: &Value) -> bool {
    body["messages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"))
}

fn offers_bash(body: &Value) -> bool {
    body["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == "bash"))
}

/// One streamed chunk, as `data: <json>` (OpenRouter also sends comment lines while it waits).
fn chunk(model: &str, choices: Value, usage: Option<Value>) -> String {
    let mut chunk = json!({
        "id": "gen-fake-1",
        "provider": "Fake",
        "model": model,
        "object": "chat.completion.chunk",
        "created": 1_795_000_000,
        "choices": choices,
    });
    if let Some(usage) = usage {
        chunk["usage"] = usage;
    }
    format!("data: {chunk}\n\n")
}

impl Respond for Scenario {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let model = body["model"].as_str().unwrap_or("google/gemini-2.5-pro");
        let choice = |delta: Value, finish: Option<&str>| json!([{"index": 0, "delta": delta, "finish_reason": finish}]);
        let (deltas, finish) = if !self.verdicts.is_empty() {
            let n = self
                .answered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let verdict = &self.verdicts[n.min(self.verdicts.len() - 1)];
            let text = format!("I checked the branch.\n\n```json\n{verdict}\n```");
            (
                vec![
                    json!({"role": "assistant", "content": ""}),
                    json!({"content": text}),
                ],
                "stop",
            )
        } else if offers_bash(&body) && !has_tool_result(&body) {
            let arguments = json!({ "command": self.command }).to_string();
            (
                vec![
                    json!({"role": "assistant", "content": "", "tool_calls": [{"index": 0, "id": "call_fake_1", "type": "function", "function": {"name": "bash", "arguments": ""}}]}),
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}),
                ],
                "tool_calls",
            )
        } else {
            (
                vec![
                    json!({"role": "assistant", "content": ""}),
                    json!({"content": FINAL_TEXT}),
                ],
                "stop",
            )
        };
        let usage = json!({
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
            "completion_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
            "cost": OPENROUTER_COST,
        });
        if body["stream"] != true {
            // Not streamed: one completion, its message the deltas put together.
            let mut message = json!({"role": "assistant", "content": ""});
            for delta in &deltas {
                if let Some(text) = delta["content"].as_str() {
                    let sum = format!("{}{text}", message["content"].as_str().unwrap_or(""));
                    message["content"] = json!(sum);
                }
                if let Some(calls) = delta["tool_calls"].as_array() {
                    let call = &calls[0];
                    if call["id"].is_string() {
                        message["tool_calls"] = json!([call]);
                    } else if let Some(arguments) = call["function"]["arguments"].as_str() {
                        message["tool_calls"][0]["function"]["arguments"] = json!(arguments);
                    }
                }
            }
            return ResponseTemplate::new(200).set_body_json(json!({
                "id": "gen-fake-1", "provider": "Fake", "model": model, "object": "chat.completion",
                "created": 1_795_000_000,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }));
        }
        let mut stream = String::from(": OPENROUTER PROCESSING\n\n");
        for delta in deltas {
            stream.push_str(&chunk(model, choice(delta, None), None));
        }
        stream.push_str(&chunk(model, choice(json!({}), Some(finish)), None));
        stream.push_str(&chunk(model, json!([]), Some(usage)));
        stream.push_str("data: [DONE]\n\n");
        ResponseTemplate::new(200).set_body_raw(stream, "text/event-stream")
    }
}

pub async fn start(mode: Mode) -> MockServer {
    let server = MockServer::start().await;
    let completions = Mock::given(method("POST")).and(path("/api/v1/chat/completions"));
    match mode {
        Mode::Works => completions.respond_with(Scenario {
            command: SHELL_COMMAND.into(),
            verdicts: Vec::new(),
            answered: Default::default(),
        }),
        Mode::Learns(line) => completions.respond_with(Scenario {
            command: format!(
                "echo '{line}' >> {LEARNINGS_FILE} && cat {LEARNINGS_FILE} && {SHELL_COMMAND}"
            ),
            verdicts: Vec::new(),
            answered: Default::default(),
        }),
        Mode::Verdicts(verdicts) => completions.respond_with(Scenario {
            command: String::new(),
            verdicts,
            answered: Default::default(),
        }),
        Mode::Unauthorized => completions.respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"message": UNAUTHORIZED_MESSAGE, "code": 401}})),
        ),
    }
    .mount(&server)
    .await;
    server
}

/// The JSON bodies of the requests the CLI sent.
pub async fn requests(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

/// All text of the given role's messages in a request (content is a string or a list of parts).
pub fn text_of(body: &Value, role: &str) -> String {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == role)
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
