//! The Pi adapter's tests: the command line and models.json, and the `--mode json` stream read from
//! recorded lines.

use super::*;
use crate::agent::MAX_KEPT_LINE;
use crate::catalog::Catalog;

fn parse_all(stream: &str, exit_code: i32) -> (Vec<AgentEvent>, AgentResult) {
    let mut parser = Box::new(StreamParser::new("openrouter/google/gemini-2.5-pro"));
    let events = stream.lines().flat_map(|l| parser.line(l)).collect();
    (events, parser.finish(Some(exit_code)))
}

fn context<'a>(catalog: &'a Catalog, env: &'a [(String, Secret)]) -> AgentContext<'a> {
    AgentContext {
        tool: catalog.tool("pi").unwrap(),
        model: "openrouter/google/gemini-2.5-pro",
        effort: Effort::High,
        session_id: "unused",
        resume: None,
        keys: vec![("OPENROUTER_API_KEY".into(), Secret::new("sk-or-secret"))],
        env,
        system_prompt: "be careful",
        memory: "",
        skills: Vec::new(),
        commands: Vec::new(),
        output_schema: None,
    }
}

#[test]
fn command_line_matches_the_cli() {
    assert_eq!(
        command_line("openrouter/google/gemini-2.5-pro", Effort::Medium, "/home/user/.codecourier/system-prompt.md").join(" "),
        "pi -p --mode json --model openrouter/google/gemini-2.5-pro --thinking medium --append-system-prompt /home/user/.codecourier/system-prompt.md"
    );
    let none = command_line("m", Effort::None, "f");
    assert!(!none.contains(&"--thinking".to_string()));
}

#[test]
fn plan_keeps_the_key_in_the_environment_and_overrides_base_urls() {
    let catalog = Catalog::built_in();
    let env = [(
        "OPENROUTER_BASE_URL".to_string(),
        Secret::new("http://127.0.0.1:9/api/v1/"),
    )];
    let plan = plan(context(&catalog, &env));
    assert_eq!(plan.package.spec(), "@mariozechner/pi-coding-agent@0.73.1");
    assert!(plan.install_if_missing);
    assert_eq!(plan.argv[plan.argv.len() - 1], SYSTEM_PROMPT_FILE);
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].path, "/home/user/.pi/agent/models.json");
    let models: Value = serde_json::from_slice(&plan.files[0].contents).unwrap();
    assert_eq!(
        models,
        json!({"providers": {"openrouter": {"baseUrl": "http://127.0.0.1:9/api/v1"}}})
    );
    let env: Vec<(&str, &str)> = plan
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert!(env.contains(&("OPENROUTER_API_KEY", "sk-or-secret")));
    assert!(env.contains(&("PI_CODING_AGENT_DIR", "/home/user/.pi/agent")));
}

#[test]
fn memory_goes_to_the_global_agents_file() {
    let catalog = Catalog::built_in();
    let mut ctx = context(&catalog, &[]);
    ctx.memory = "- run make test\n";
    let plan = plan(ctx);
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].path, "/home/user/.pi/agent/AGENTS.md");
    assert_eq!(plan.files[0].contents, b"- run make test\n");
}

#[test]
fn recorded_success_stream() {
    let (events, result) = parse_all(include_str!("../../../tests/data/pi/success.jsonl"), 0);
    assert_eq!(
        events,
        [
            AgentEvent::Started {
                session_id: Some("01a2160a-6828-7360-a302-95dd56ed07cf".into()),
                model: Some("openrouter/google/gemini-2.5-pro".into())
            },
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
        Some("01a2160a-6828-7360-a302-95dd56ed07cf")
    );
}

#[test]
fn recorded_401_fails_although_pi_exits_0() {
    let (events, result) = parse_all(include_str!("../../../tests/data/pi/unauthorized.jsonl"), 0);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(&events[0], AgentEvent::ApiError { error, message }
        if error == "error" && message.starts_with("401 {")));
    assert!(!result.success);
    assert!(result.text.contains("invalid x-api-key"), "{}", result.text);
    assert_eq!(result.api_error_status, Some(401));
    assert_eq!(result.cost_usd, Some(0.0));
    assert_eq!(result.num_turns, Some(0));
}

#[test]
fn retries_are_shown_and_the_final_error_wins() {
    let (events, result) = parse_all(
        include_str!("../../../tests/data/pi/server_error_retries.jsonl"),
        0,
    );
    let retries: Vec<(u32, Option<u32>)> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Retry {
                attempt,
                max_retries,
                error,
            } => {
                assert_eq!(error, "500 Internal Server Error");
                Some((*attempt, *max_retries))
            }
            _ => None,
        })
        .collect();
    assert_eq!(retries, [(1, Some(3)), (2, Some(3)), (3, Some(3))]);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, AgentEvent::ApiError { .. }))
            .count(),
        4
    );
    assert!(!result.success);
    assert_eq!(result.text, "500 Internal Server Error");
    assert_eq!(result.api_error_status, Some(500));
    assert_eq!(
        result.session_id.as_deref(),
        Some("01a2167a-00f0-7539-a846-ec7c8ee22398")
    );
}

#[test]
fn statuses_are_read_only_from_a_leading_code() {
    assert_eq!(http_status("401 User not found."), Some(401));
    assert_eq!(http_status("403 {\"error\":1}"), Some(403));
    assert_eq!(http_status("Connection error."), None);
    assert_eq!(http_status("200 fine"), None);
    assert_eq!(http_status("4010 odd"), None);
    assert_eq!(http_status(""), None);
}

#[test]
fn an_answer_needs_a_clean_exit() {
    let (_, result) = parse_all(include_str!("../../../tests/data/pi/success.jsonl"), 1);
    assert!(!result.success);
    assert!(
        result
            .text
            .starts_with("Pi exited with code 1 without a result; last message: Done."),
        "{}",
        result.text
    );
    let result = Box::new(StreamParser::new("m")).finish(Some(1));
    assert_eq!(result.text, "Pi exited with code 1 without a result");
    assert_eq!(result.cost_usd, None);
    let result = Box::new(StreamParser::new("m")).finish(None);
    assert_eq!(result.text, "Pi was killed before it finished");
}

#[test]
fn garbage_never_breaks_the_parser() {
    let mut parser = Box::new(StreamParser::new("m"));
    let huge = format!(
        "{{\"type\":\"message_end\",\"message\":{{\"role\":\"assistant\",\"content\":[{{\"type\":\"text\",\"text\":\"{}\"}}],\"stopReason\":\"stop\"}}}}",
        "x".repeat(5_000_000)
    );
    let huge_update = format!(
        "{{\"type\":\"message_update\",\"message\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{}\"}}]}}}}",
        "z".repeat(5_000_000)
    );
    let long_garbage = "y".repeat(3_000_000);
    let inputs = [
        "",
        "   ",
        "not json at all",
        "{\"type\":",
        "[1,2,3]",
        "{\"no_type\":true}",
        "{\"type\":\"compaction_start\"}",
        "{\"type\":\"message_end\",\"message\":\"a string\"}",
        "{\"type\":\"message_end\",\"message\":{\"role\":\"assistant\",\"content\":\"plain\",\"usage\":{\"cost\":{}}}}",
        "{\"type\":\"message_end\",\"message\":{\"role\":\"toolResult\"}}",
        "{\"type\":\"tool_execution_end\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"line1\\nline2\"}]},\"isError\":true}",
        "{\"type\":\"tool_execution_start\",\"args\":[1]}",
        "{\"type\":\"auto_retry_end\",\"success\":false}",
        "\u{0}\u{1}binary",
        huge.as_str(),
        huge_update.as_str(),
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
        .any(|e| matches!(e, AgentEvent::ToolUse { name, summary } if name == "tool" && summary.is_empty())));
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
            .starts_with("Pi exited with code 1 without a result; last message: xxx"),
        "{}",
        result.text
    );
    assert!(result.text.len() < 3000);
}
