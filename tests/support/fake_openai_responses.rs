//! A fake OpenAI Responses API on loopback, streaming the SSE events the real Codex CLI reads
//! (reference/agents/AGENTS.md, appendix A). Scenario: the first request gets a call to the shell
//! tool Codex offers (`exec_command` in 0.169.0) that creates a file; a request carrying the
//! tool's output gets the final message. A request that does not ask for a stream gets the
//! completed response as one JSON body.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const FINAL_TEXT: &str = "Done. Created hello.txt containing \"hello\".";
pub const SHELL_COMMAND: &str = "echo hello > hello.txt && cat hello.txt";
/// Usage each response reports; Codex sums them over the turn.
pub const INPUT_TOKENS: u64 = 1000;
pub const CACHED_TOKENS: u64 = 200;
pub const OUTPUT_TOKENS: u64 = 50;
pub const REASONING_TOKENS: u64 = 10;
/// OpenAI's answer to a bad key (it echoes a masked key).
pub const UNAUTHORIZED_MESSAGE: &str = "Incorrect API key provided: sk-test***6789. You can find your API key at https://platform.openai.com/account/api-keys.";

pub enum Mode {
    /// Shell tool call creating hello.txt, then the final answer.
    Works,
    /// A shell tool call running this command, then the final answer.
    Runs(String),
    /// 401 with OpenAI's error body.
    Unauthorized,
}

struct Scenario {
    command: String,
    responses: AtomicUsize,
}

fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

fn input_items(body: &Value) -> impl Iterator<Item = &Value> {
    body["input"].as_array().into_iter().flatten()
}

fn has_tool_output(body: &Value) -> bool {
    input_items(body).any(|i| i["type"] == "function_call_output")
}

fn offers(body: &Value, tool: &str) -> bool {
    body["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["name"] == tool))
}

impl Respond for Scenario {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let n = self.responses.fetch_add(1, Ordering::SeqCst);
        let model = body["model"].as_str().unwrap_or("gpt-5.4");
        let response_id = format!("resp_fake_{n}");
        // Without the shell tool there is nothing to call: answer, and let the test see no file.
        let (added, deltas, done) = if has_tool_output(&body) || !offers(&body, "exec_command") {
            let id = format!("msg_fake_{n}");
            let added = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
            let delta = json!({"type": "response.output_text.delta", "item_id": id, "output_index": 0, "content_index": 0, "delta": FINAL_TEXT});
            let done = json!({"type": "message", "id": id, "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": FINAL_TEXT, "annotations": []}]});
            (added, vec![delta], done)
        } else {
            let arguments = json!({"cmd": self.command}).to_string();
            let call = |status: &str, arguments: &str| {
                json!({"type": "function_call", "id": format!("fc_fake_{n}"), "status": status,
                    "name": "exec_command", "arguments": arguments, "call_id": format!("call_fake_{n}")})
            };
            (
                call("in_progress", ""),
                Vec::new(),
                call("completed", &arguments),
            )
        };
        let response = json!({"id": response_id, "object": "response", "status": "in_progress", "model": model, "output": []});
        let mut completed = response.clone();
        completed["status"] = json!("completed");
        completed["output"] = json!([done]);
        completed["usage"] = json!({
            "input_tokens": INPUT_TOKENS,
            "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
            "output_tokens": OUTPUT_TOKENS,
            "output_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        });
        if body["stream"] != true {
            // Not streamed: the completed response itself.
            return ResponseTemplate::new(200).set_body_json(completed);
        }
        let mut events = vec![
            json!({"type": "response.created", "response": response}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": added}),
        ];
        events.extend(deltas);
        events.extend([
            json!({"type": "response.output_item.done", "output_index": 0, "item": done}),
            json!({"type": "response.completed", "response": completed}),
        ]);
        ResponseTemplate::new(200).set_body_raw(sse(&events), "text/event-stream")
    }
}

pub async fn start(mode: Mode) -> MockServer {
    let server = MockServer::start().await;
    let responses = Mock::given(method("POST")).and(path("/v1/responses"));
    let scenario = |command: &str| Scenario {
        command: command.to_string(),
        responses: AtomicUsize::new(0),
    };
    match mode {
        Mode::Works => responses.respond_with(scenario(SHELL_COMMAND)),
        Mode::Runs(command) => responses.respond_with(scenario(&command)),
        Mode::Unauthorized => responses.respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": UNAUTHORIZED_MESSAGE, "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        )),
    }
    .mount(&server)
    .await;
    server
}

/// The JSON bodies of the requests Codex sent to `/v1/responses`.
pub async fn requests_received(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/v1/responses")
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .collect()
}

/// The texts of a request's input messages with the given role, in order.
pub fn message_texts(body: &Value, role: &str) -> Vec<String> {
    input_items(body)
        .filter(|i| i["type"] == "message" && i["role"] == role)
        .flat_map(|i| i["content"].as_array().into_iter().flatten())
        .filter_map(|c| c["text"].as_str().map(str::to_string))
        .collect()
}

/// The `Authorization` headers Codex sent.
pub async fn authorizations(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.headers.get("authorization"))
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// The outputs of the tool calls Codex sent back (`function_call_output`).
pub async fn tool_outputs(server: &MockServer) -> Vec<String> {
    requests_received(server)
        .await
        .iter()
        .flat_map(|body| {
            input_items(body)
                .filter(|i| i["type"] == "function_call_output")
                .filter_map(|i| i["output"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}
