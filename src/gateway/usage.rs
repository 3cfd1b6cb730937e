//! Reading a model response's usage as its bytes go by: the provider's token counts and the model
//! it names, from a JSON body or from the events of an SSE stream, for each API shape. Bounded (a
//! partial line or a JSON body is held up to `MAX_HELD`), incremental (chunks split lines
//! anywhere) and cheap per chunk: only a line that names `"usage"` (or ends the stream) is parsed.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde_json::Value;

use crate::store::ModelUsage;

/// The most of one SSE line, or of a JSON body, held to read its usage.
pub const MAX_HELD: usize = 8 * 1024 * 1024;
/// More tokens than any response has: a count above it is cut to it, so sums stay in range.
const MAX_TOKENS: u64 = 100_000_000;
/// The longest model name kept.
const MAX_MODEL: usize = 128;

static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static MESSAGE_STOP: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"message_stop\""));

/// The generation endpoints the meter reads, by the shape of their answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Anthropic Messages: `…/messages`.
    Messages,
    /// OpenAI Responses: `…/responses` (and its compaction).
    Responses,
    /// Chat Completions (OpenRouter's, or OpenAI's): `…/chat/completions`.
    Chat,
}

impl Wire {
    /// The generation endpoint `path` (below an API's base URL) is, if it is one.
    pub fn of(path: &str) -> Option<Wire> {
        let path = path.trim_end_matches('/');
        if path.ends_with("/messages") {
            Some(Wire::Messages)
        } else if path.ends_with("/responses") || path.ends_with("/responses/compact") {
            Some(Wire::Responses)
        } else if path.ends_with("/chat/completions") {
            Some(Wire::Chat)
        } else {
            None
        }
    }

    /// Endpoints that only count a prompt's tokens: free, and so never metered.
    pub fn is_free(path: &str) -> bool {
        let path = path.trim_end_matches('/');
        path.ends_with("/messages/count_tokens") || path.ends_with("/responses/input_tokens")
    }
}

/// What a response's bytes said of its usage, so far.
pub struct UsageReader {
    wire: Wire,
    shape: Shape,
    /// A partial SSE line, or the JSON body so far.
    held: Vec<u8>,
    /// Past `MAX_HELD`: the usage cannot be read.
    overflow: bool,
    model: Option<String>,
    usage: ModelUsage,
    /// Some usage was read.
    seen: bool,
    /// The stream's last event was read: its usage is final.
    done: bool,
    /// Server-side web searches the answer ran (Anthropic's `server_tool_use`), billed per use.
    web_searches: u64,
}

/// What a response said of itself: the model that answered, its tokens, and the web searches it
/// ran on the provider's side.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub model: Option<String>,
    pub usage: ModelUsage,
    pub web_searches: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Nothing but whitespace yet.
    Unknown,
    Json,
    Sse,
}

/// Why a response's usage could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    TooLarge,
    NoUsage,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::TooLarge => write!(
                f,
                "its usage is in a line or body larger than {} MiB",
                MAX_HELD / (1024 * 1024)
            ),
            Unreadable::NoUsage => f.write_str("it carried no usage"),
        }
    }
}

impl UsageReader {
    pub fn new(wire: Wire) -> Self {
        Self {
            wire,
            shape: Shape::Unknown,
            held: Vec::new(),
            overflow: false,
            model: None,
            usage: ModelUsage::default(),
            seen: false,
            done: false,
            web_searches: 0,
        }
    }

    /// Reads the next bytes of the response. True once the usage is final (a stream's last event
    /// was read); a JSON body is final only at its end (`finish`).
    pub fn push(&mut self, mut bytes: &[u8]) -> bool {
        if self.done || self.overflow {
            return self.done;
        }
        if self.shape == Shape::Unknown {
            let Some(first) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else {
                return false;
            };
            // An SSE line starts with a field name or a colon, never a brace.
            self.shape = if bytes[first] == b'{' {
                Shape::Json
            } else {
                Shape::Sse
            };
        }
        if self.shape == Shape::Json {
            self.hold(bytes);
            return false;
        }
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            let part = &bytes[..end];
            bytes = &bytes[end + 1..];
            if self.held.is_empty() {
                self.line(part);
            } else {
                self.hold(part);
                if self.overflow {
                    return false;
                }
                let line = std::mem::take(&mut self.held);
                self.line(&line);
            }
            if self.done {
                return true;
            }
        }
        if !bytes.is_empty() {
            self.hold(bytes);
        }
        false
    }

    /// The model the response named and its usage, once the response has ended.
    pub fn finish(mut self) -> Result<Read, Unreadable> {
        if self.overflow {
            return Err(Unreadable::TooLarge);
        }
        match self.shape {
            Shape::Json => {
                let body: Value =
                    serde_json::from_slice(&self.held).map_err(|_| Unreadable::NoUsage)?;
                self.model = model_of(&body["model"]);
                self.apply(&body["usage"]);
            }
            Shape::Sse if !self.done && !self.held.is_empty() => {
                // A last line without its newline.
                let line = std::mem::take(&mut self.held);
                self.line(&line);
            }
            Shape::Sse | Shape::Unknown => {}
        }
        if !self.seen {
            return Err(Unreadable::NoUsage);
        }
        Ok(Read {
            model: self.model,
            usage: self.usage,
            web_searches: self.web_searches,
        })
    }

    fn hold(&mut self, bytes: &[u8]) {
        if self.held.len() + bytes.len() > MAX_HELD {
            self.overflow = true;
            self.held = Vec::new();
        } else {
            self.held.extend_from_slice(bytes);
        }
    }

    /// One SSE line, without its newline.
    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if self.wire == Wire::Chat && data == b"[DONE]" {
            self.done = true;
            return;
        }
        let stop = self.wire == Wire::Messages && MESSAGE_STOP.find(data).is_some();
        if !stop && USAGE.find(data).is_none() {
            return;
        }
        // Parsed, so that a text delta that merely says "usage" or "message_stop" changes nothing.
        let Ok(event) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        match self.wire {
            // `message_start` carries the model and the input's counts; each `message_delta`
            // the counts so far (cumulative: they replace, never add).
            Wire::Messages => match event["type"].as_str() {
                Some("message_start") => {
                    self.name(&event["message"]["model"]);
                    self.apply(&event["message"]["usage"]);
                }
                Some("message_delta") => self.apply(&event["usage"]),
                Some("message_stop") => self.done = true,
                _ => {}
            },
            // The final usage is on the response of `response.completed` (or of the events that
            // end it otherwise).
            Wire::Responses => {
                let response = &event["response"];
                self.name(&response["model"]);
                if response["usage"].is_object() {
                    self.apply(&response["usage"]);
                    if matches!(
                        event["type"].as_str(),
                        Some("response.completed" | "response.failed" | "response.incomplete")
                    ) {
                        self.done = true;
                    }
                }
            }
            // The usage comes in the last chunk before `[DONE]`.
            Wire::Chat => {
                self.name(&event["model"]);
                self.apply(&event["usage"]);
            }
        }
    }

    fn name(&mut self, model: &Value) {
        if let Some(model) = model_of(model) {
            self.model = Some(model);
        }
    }

    /// Takes the counts `usage` holds, in the API's own names. Cached input is a part of the
    /// input in the OpenAI shapes and apart from it in Anthropic's; here input is the uncached
    /// part only, so nothing is counted twice.
    fn apply(&mut self, usage: &Value) {
        if !usage.is_object() {
            return;
        }
        self.seen = true;
        let u = &mut self.usage;
        let set = |field: &mut u64, value: &Value| {
            if !value.is_null() {
                *field = count(value);
            }
        };
        match self.wire {
            Wire::Messages => {
                set(&mut u.input_tokens, &usage["input_tokens"]);
                set(&mut u.output_tokens, &usage["output_tokens"]);
                set(
                    &mut u.cache_write_tokens,
                    &usage["cache_creation_input_tokens"],
                );
                set(&mut u.cache_read_tokens, &usage["cache_read_input_tokens"]);
                let searches = &usage["server_tool_use"]["web_search_requests"];
                if !searches.is_null() {
                    self.web_searches = count(searches);
                }
            }
            Wire::Responses | Wire::Chat => {
                let (input, output, details) = match self.wire {
                    Wire::Responses => ("input_tokens", "output_tokens", "input_tokens_details"),
                    _ => (
                        "prompt_tokens",
                        "completion_tokens",
                        "prompt_tokens_details",
                    ),
                };
                let cached = count(&usage[details]["cached_tokens"]);
                u.input_tokens = count(&usage[input]).saturating_sub(cached);
                u.cache_read_tokens = cached.min(count(&usage[input]));
                u.output_tokens = count(&usage[output]);
            }
        }
    }
}

/// A token count as sent: a negative, fractional or missing one is none, a huge one is cut.
fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0).min(MAX_TOKENS)
}

/// A model name as a response gives it, kept only when it looks like one.
fn model_of(value: &Value) -> Option<String> {
    let name = value.as_str()?;
    let ok = !name.is_empty()
        && name.len() <= MAX_MODEL
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/:@".contains(&b));
    ok.then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_in_pieces(wire: Wire, body: &str, piece: usize) -> (bool, Option<String>, ModelUsage) {
        let mut reader = UsageReader::new(wire);
        let mut done = false;
        for chunk in body.as_bytes().chunks(piece) {
            done |= reader.push(chunk);
        }
        let Read { model, usage, .. } = reader.finish().expect("usage read");
        (done, model, usage)
    }

    const ANTHROPIC_SSE: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-6\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1,\"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":300}}}\r\n\r\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"usage\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"message_stop\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":42}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn an_anthropic_stream_is_read_whatever_its_chunks_and_its_last_delta_counts() {
        for piece in [1, 3, 7, 64, 4096] {
            let (done, model, usage) = read_in_pieces(Wire::Messages, ANTHROPIC_SSE, piece);
            assert!(done, "piece {piece}");
            assert_eq!(model.as_deref(), Some("claude-sonnet-4-6"));
            assert_eq!(
                (
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_write_tokens,
                    usage.cache_read_tokens
                ),
                (10, 42, 7, 300),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn openai_shapes_count_cached_input_once() {
        let responses = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-5.4\",\"usage\":null}}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-5.4\",\"usage\":{\"input_tokens\":1000,\"input_tokens_details\":{\"cached_tokens\":200},\"output_tokens\":50}}}\n\n";
        let (done, model, usage) = read_in_pieces(Wire::Responses, responses, 5);
        assert!(done);
        assert_eq!(model.as_deref(), Some("gpt-5.4"));
        assert_eq!(
            (
                usage.input_tokens,
                usage.cache_read_tokens,
                usage.output_tokens
            ),
            (800, 200, 50)
        );
        let chat = ": OPENROUTER PROCESSING\n\ndata: {\"model\":\"google/gemini-2.5-pro\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"model\":\"google/gemini-2.5-pro\",\"choices\":[],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":20,\"prompt_tokens_details\":{\"cached_tokens\":30}}}\n\ndata: [DONE]\n\n";
        let (done, model, usage) = read_in_pieces(Wire::Chat, chat, 2);
        assert!(done);
        assert_eq!(model.as_deref(), Some("google/gemini-2.5-pro"));
        assert_eq!(
            (
                usage.input_tokens,
                usage.cache_read_tokens,
                usage.output_tokens
            ),
            (70, 30, 20)
        );
    }

    #[test]
    fn generation_endpoints_are_told_by_their_path() {
        assert_eq!(Wire::of("/v1/messages"), Some(Wire::Messages));
        assert_eq!(Wire::of("/responses"), Some(Wire::Responses));
        assert_eq!(Wire::of("/chat/completions"), Some(Wire::Chat));
        assert_eq!(Wire::of("/v1/messages/batches"), None);
        assert_eq!(Wire::of("/v1/messages/count_tokens"), None);
        assert!(Wire::is_free("/v1/messages/count_tokens"));
        assert!(!Wire::is_free("/v1/messages/batches"));
    }

    #[test]
    fn a_json_body_is_read_at_its_end() {
        let body = r#"{"id":"msg_1","model":"claude-haiku-4-5","usage":{"input_tokens":3,"output_tokens":4}}"#;
        let (done, model, usage) = read_in_pieces(Wire::Messages, body, 10);
        assert!(!done, "a JSON body is final only when it ends");
        assert_eq!(model.as_deref(), Some("claude-haiku-4-5"));
        assert_eq!((usage.input_tokens, usage.output_tokens), (3, 4));
    }

    #[test]
    fn hostile_bodies_give_no_usage_or_bounded_counts_and_never_panic() {
        let mut reader = UsageReader::new(Wire::Chat);
        reader.push(b"data: {\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":1e30,\"prompt_tokens_details\":{\"cached_tokens\":99999999999999999999}}}\n");
        let Read { usage, .. } = reader.finish().unwrap();
        assert_eq!(
            (
                usage.input_tokens,
                usage.cache_read_tokens,
                usage.output_tokens
            ),
            (0, 0, 0)
        );

        let mut reader = UsageReader::new(Wire::Messages);
        reader.push(b"data: {\"type\":\"message_start\",\"message\":{\"model\":\"<script>\",\"usage\":{\"input_tokens\":18446744073709551615}}}\n");
        let Read { model, usage, .. } = reader.finish().unwrap();
        assert_eq!(model, None);
        assert_eq!(usage.input_tokens, MAX_TOKENS);

        for garbage in [
            &b"\xff\xfe{{{"[..],
            b"data: {not json \"usage\"\n",
            b"{\"usage\": 5",
            b"",
        ] {
            let mut reader = UsageReader::new(Wire::Responses);
            reader.push(garbage);
            assert_eq!(reader.finish().unwrap_err(), Unreadable::NoUsage);
        }

        let mut reader = UsageReader::new(Wire::Messages);
        let line = vec![b'x'; 1024 * 1024];
        reader.push(b"data: ");
        for _ in 0..(MAX_HELD / line.len() + 1) {
            reader.push(&line);
        }
        assert!(
            reader.held.capacity() <= MAX_HELD,
            "the partial line stays bounded"
        );
        assert_eq!(reader.finish().unwrap_err(), Unreadable::TooLarge);
    }
}
