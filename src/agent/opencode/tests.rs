//! The OpenCode adapter's tests: the command line and config, and the `run --format json` stream
//! read from recorded lines.

use super::*;
use crate::agent::MAX_KEPT_LINE;
use crate::catalog::{Catalog, Effort};

fn parse_all(stream: &str, exit_code: i32) -> (Vec<AgentEvent>, AgentResult) {
    let mut parser = Box::new(StreamParser::new("openrouter/google/gemini-2.5-pro"));
    let events = stream.lines().flat_map(|l| parser.line(l)).collect();
    (events, parser.finish(Some(exit_code)))
}

#[test]
fn command_line_matches_the_cli() {
    assert_eq!(
        command_line("openrouter/google/gemini-2.5-pro").join(" "),
        "opencode run --format json --auto --model openrouter/google/gemini-2.5-pro --title CodeCourier --print-logs --log-level WARN"
    );
}

#[test]
fn plan_wires_instructions_model_and_base_urls_without_writing_keys() {
    let catalog = Catalog::built_in();
    let env = [
        (
            "OPENROUTER_BASE_URL".to_string(),
            Secret::new("http://127.0.0.1:9/api/v1/"),
        ),
        (
            "ANTHROPIC_BASE_URL".to_string(),
            Secret::new("http://127.0.0.1:8"),
        ),
    ];
    let plan = plan(AgentContext {
        tool: catalog.tool("opencode").unwrap(),
        model: "openrouter/google/gemini-3-pro-preview",
        effort: Effort::None,
        session_id: "unused",
        resume: None,
        keys: vec![("OPENROUTER_API_KEY".into(), Secret::new("sk-or-secret"))],
        env: &env,
        system_prompt: "be careful",
        memory: "",
        skills: Vec::new(),
        commands: Vec::new(),
        output_schema: None,
    });
    assert_eq!(plan.package.spec(), "opencode-ai@1.18.33");
    assert!(plan.install_if_missing);
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].path, CONFIG_FILE);
    let config: Value = serde_json::from_slice(&plan.files[0].contents).unwrap();
    assert_eq!(config["instructions"], json!([SYSTEM_PROMPT_FILE]));
    assert_eq!(
        config["provider"]["openrouter"],
        json!({"models": {"google/gemini-3-pro-preview": {}}, "options": {"baseURL": "http://127.0.0.1:9/api/v1"}})
    );
    assert_eq!(
        config["provider"]["anthropic"],
        json!({"options": {"baseURL": "http://127.0.0.1:8/v1"}})
    );
    let files: String = plan
        .files
        .iter()
        .map(|f| String::from_utf8_lossy(&f.contents).into_owned())
        .collect();
    assert!(!files.contains("sk-or-secret"));
    let env: Vec<(&str, &str)> = plan
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert!(env.contains(&("OPENROUTER_API_KEY", "sk-or-secret")));
    assert!(env.contains(&("OPENCODE_DISABLE_MODELS_FETCH", "1")));
}

#[test]
fn memory_becomes_a_second_instructions_file() {
    let catalog = Catalog::built_in();
    let plan = plan(AgentContext {
        tool: catalog.tool("opencode").unwrap(),
        model: "openrouter/openai/gpt-5.4",
        effort: Effort::None,
        session_id: "unused",
        resume: None,
        keys: Vec::new(),
        env: &[],
        system_prompt: "",
        memory: "- run make test\n",
        skills: Vec::new(),
        commands: Vec::new(),
        output_schema: None,
    });
    let memory = plan.files.iter().find(|f| f.path == MEMORY_FILE).unwrap();
    assert_eq!(memory.contents, b"- run make test\n");
    let config = plan.files.iter().find(|f| f.path == CONFIG_FILE).unwrap();
    let config: Value = serde_json::from_slice(&config.contents).unwrap();
    assert_eq!(
        config["instructions"],
        json!([SYSTEM_PROMPT_FILE, MEMORY_FILE])
    );
    assert!(config["provider"]["openrouter"].get("options").is_none());
}

#[test]
fn recorded_success_stream() {
    let (events, result) = parse_all(
        include_str!("../../../tests/data/opencode/success.jsonl"),
        0,
    );
    assert_eq!(
        events[0],
        AgentEvent::Started {
            session_id: Some("ses_de9f92870ffeHvc3crVNQTFp9R".into()),
            model: Some("openrouter/google/gemini-2.5-pro".into())
        }
    );
    assert_eq!(
        events[1..],
        [
            AgentEvent::Text {
                text: "I will create the file.".into()
            },
            AgentEvent::ToolUse {
                name: "bash".into(),
                summary: "echo hello > hello.txt && cat hello.txt".into()
            },
            AgentEvent::ToolResult {
                ok: true,
                summary: "hello".into()
            },
            AgentEvent::Text {
                text: "Done. Created hello.txt containing \"hello\".".into()
            },
        ]
    );
    assert!(result.success);
    assert_eq!(result.text, "Done. Created hello.txt containing \"hello\".");
    assert!((result.cost_usd.unwrap() - 0.00894).abs() < 1e-12);
    // Per call: 1200 fresh + 800 cached prompt tokens, 42 output tokens.
    assert_eq!(
        (result.input_tokens, result.output_tokens),
        (Some(4000), Some(84))
    );
    assert_eq!(result.num_turns, Some(2));
    assert_eq!(
        result.session_id.as_deref(),
        Some("ses_de9f92870ffeHvc3crVNQTFp9R")
    );
    assert_eq!(result.api_error_status, None);
}

#[test]
fn openrouter_stream_counts_cache_and_reasoning_tokens() {
    let (_, result) = parse_all(
        include_str!("../../../tests/data/opencode/openrouter_cached_reasoning.jsonl"),
        0,
    );
    assert!(result.success);
    // The API said 100 prompt tokens (30 cached) and 20 completion tokens (5 reasoning) twice.
    assert_eq!(
        (result.input_tokens, result.output_tokens),
        (Some(200), Some(40))
    );
    assert!((result.cost_usd.unwrap() - 0.0005825).abs() < 1e-12);
}

#[test]
fn recorded_401_fails_with_the_providers_message() {
    let (events, result) = parse_all(
        include_str!("../../../tests/data/opencode/unauthorized.jsonl"),
        1,
    );
    assert!(matches!(&events[1], AgentEvent::ApiError { error, message }
        if error == "APIError" && message == "invalid x-api-key"));
    assert!(!result.success);
    assert_eq!(result.text, "invalid x-api-key");
    assert_eq!(result.api_error_status, Some(401));
    assert_eq!(result.cost_usd, None);
    assert_eq!(
        result.session_id.as_deref(),
        Some("ses_de9f8cde7ffeVZbaV0Kh9v9ZuS")
    );
}

#[test]
fn a_failed_tool_is_a_failed_result() {
    let line = r#"{"type":"tool_use","sessionID":"ses_1","part":{"type":"tool","tool":"bash","state":{"status":"error","input":{"command":"make"},"error":"make: *** No targets.\nStop."}}}"#;
    let mut parser = StreamParser::new("m");
    let events = parser.line(line);
    assert_eq!(
        events[1..],
        [
            AgentEvent::ToolUse {
                name: "bash".into(),
                summary: "make".into()
            },
            AgentEvent::ToolResult {
                ok: false,
                summary: "make: *** No targets.…".into()
            }
        ]
    );
}

#[test]
fn exit_codes_decide_when_the_stream_cannot() {
    // Answered, then exited non-zero: not a success.
    let (_, result) = parse_all(
        include_str!("../../../tests/data/opencode/success.jsonl"),
        2,
    );
    assert!(!result.success);
    assert!(
        result
            .text
            .starts_with("OpenCode exited with code 2 without a result; last message: Done."),
        "{}",
        result.text
    );
    // Exited 0 having said nothing.
    let result = Box::new(StreamParser::new("m")).finish(Some(0));
    assert!(!result.success);
    assert_eq!(result.text, "OpenCode exited with code 0 without a result");
    let result = Box::new(StreamParser::new("m")).finish(None);
    assert_eq!(result.text, "OpenCode was killed before it finished");
}

#[test]
fn garbage_never_breaks_the_parser() {
    let mut parser = Box::new(StreamParser::new("m"));
    let huge = format!(
        "{{\"type\":\"text\",\"sessionID\":\"ses_x\",\"part\":{{\"type\":\"text\",\"text\":\"{}\"}}}}",
        "x".repeat(5_000_000)
    );
    let long_garbage = "y".repeat(3_000_000);
    let inputs = [
        "",
        "   ",
        "not json at all",
        "{\"type\":",
        "[1,2,3]",
        "{\"no_type\":true}",
        "{\"type\":\"reasoning\",\"part\":{\"text\":\"hmm\"}}",
        "{\"type\":\"text\",\"part\":\"a string\"}",
        "{\"type\":\"text\",\"part\":{}}",
        "{\"type\":\"tool_use\",\"part\":{}}",
        "{\"type\":\"step_finish\",\"part\":{\"tokens\":{\"input\":-1}}}",
        "{\"type\":\"error\"}",
        "\u{0}\u{1}binary",
        huge.as_str(),
        long_garbage.as_str(),
    ];
    let mut events = Vec::new();
    for input in inputs {
        events.extend(parser.line(input));
    }
    assert!(events
        .iter()
        .any(|e| matches!(e, AgentEvent::Text { text } if text.len() == 5_000_000)));
    assert!(events
        .iter()
        .any(|e| matches!(e, AgentEvent::ToolUse { name, .. } if name == "tool")));
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
            .starts_with("OpenCode exited with code 1 without a result"),
        "{}",
        result.text
    );
}
