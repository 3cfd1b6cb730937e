//! The Codex adapter's tests: the command line and config.toml, and the `exec --json` stream read
//! from recorded lines.

use super::*;
use crate::agent::MAX_KEPT_LINE;

fn parse_all(stream: &str) -> (Vec<AgentEvent>, AgentResult) {
    let mut parser = Box::new(StreamParser::new());
    let events = stream.lines().flat_map(|l| parser.line(l)).collect();
    (events, parser.finish(Some(0)))
}

fn shown(events: &[AgentEvent]) -> Vec<&AgentEvent> {
    events
        .iter()
        .filter(|e| !matches!(e, AgentEvent::Unparsed { .. }))
        .collect()
}

#[test]
fn command_line_matches_the_cli() {
    let args = command_line("gpt-5.4", Effort::High, "Be terse.");
    assert_eq!(
        args,
        [
            "codex",
            "exec",
            "--json",
            "--dangerously-bypass-approvals-and-sandbox",
            "--skip-git-repo-check",
            "-C",
            "/home/user/project",
            "-m",
            "gpt-5.4",
            "-c",
            "model_reasoning_effort=\"high\"",
            "-c",
            "developer_instructions=\"Be terse.\"",
            "-"
        ]
    );
    let none = command_line("m", Effort::None, "x");
    assert!(!none.iter().any(|a| a.contains("model_reasoning_effort")));
    let low = command_line("m", Effort::Low, "x");
    assert!(low.contains(&"model_reasoning_effort=\"low\"".to_string()));
}

#[test]
fn toml_strings_survive_quotes_backslashes_and_control_characters() {
    let nasty = "Say \"hi\".\nPaths: C:\\dir\\ and \\n literally.\r\n\ttab\u{0}nul\u{1b}[0m \u{7f} ünïcödé ✓ '''\"\"\" `ticks` $vars #not-a-comment";
    let encoded = toml_string(nasty);
    assert!(!encoded.contains('\u{0}'));
    let table: toml::Table = toml::from_str(&format!("v = {encoded}")).unwrap();
    assert_eq!(table["v"].as_str(), Some(nasty));
    let args = command_line("m", Effort::None, nasty);
    let arg = args.iter().find(|a| a.starts_with("developer_")).unwrap();
    let value = arg.strip_prefix("developer_instructions=").unwrap();
    let table: toml::Table = toml::from_str(&format!("v = {value}")).unwrap();
    assert_eq!(table["v"].as_str(), Some(nasty));
    assert_eq!(toml_string(""), "\"\"");
}

#[test]
fn config_names_the_key_variable_and_never_holds_a_key() {
    let text = config_toml("http://127.0.0.1:9/v1/");
    let config: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(config["model_provider"].as_str(), Some("codecourier"));
    let provider = &config["model_providers"]["codecourier"];
    assert_eq!(provider["base_url"].as_str(), Some("http://127.0.0.1:9/v1"));
    assert_eq!(provider["env_key"].as_str(), Some("CODEX_API_KEY"));
    assert_eq!(provider["wire_api"].as_str(), Some("responses"));
    assert_eq!(provider["supports_websockets"].as_bool(), Some(false));
    assert_eq!(provider["stream_max_retries"].as_integer(), Some(2));
    assert_eq!(config["allow_login_shell"].as_bool(), Some(false));
    assert_eq!(
        config["shell_environment_policy"]["exclude"][0].as_str(),
        Some("CODEX_API_KEY")
    );
    let odd: toml::Table = toml::from_str(&config_toml("http://h/\"x\\y")).unwrap();
    assert_eq!(
        odd["model_providers"]["codecourier"]["base_url"].as_str(),
        Some("http://h/\"x\\y")
    );
}

#[test]
fn plan_sets_the_key_home_and_base_url() {
    let catalog = crate::catalog::Catalog::built_in();
    let tool = catalog.tool("codex").unwrap();
    let env = [(
        "OPENAI_BASE_URL".to_string(),
        Secret::new("http://127.0.0.1:4242/v1"),
    )];
    let plan = plan(AgentContext {
        tool,
        model: "gpt-5.4",
        effort: Effort::Medium,
        session_id: "unused",
        resume: None,
        keys: vec![("OPENAI_API_KEY".into(), Secret::new("sk-test-abc"))],
        env: &env,
        system_prompt: "Be terse.",
        memory: "",
        skills: Vec::new(),
        commands: Vec::new(),
        output_schema: None,
    });
    let env: Vec<(&str, &str)> = plan
        .env
        .iter()
        .map(|(n, v)| (n.as_str(), v.expose()))
        .collect();
    assert_eq!(
        env,
        [
            ("CODEX_HOME", "/home/user/.codex"),
            ("CODEX_API_KEY", "sk-test-abc")
        ]
    );
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].path, "/home/user/.codex/config.toml");
    let config = String::from_utf8(plan.files[0].contents.clone()).unwrap();
    assert!(config.contains("base_url = \"http://127.0.0.1:4242/v1\""));
    assert!(!config.contains("sk-test-abc"));
    assert_eq!(plan.package.spec(), "@openai/codex@0.169.0");
    assert!(plan.install_if_missing);
    assert!(plan
        .argv
        .contains(&"model_reasoning_effort=\"medium\"".to_string()));
}

#[test]
fn without_an_override_the_provider_is_openai() {
    let config: toml::Table = toml::from_str(&config_toml(OPENAI_API)).unwrap();
    assert_eq!(
        config["model_providers"]["codecourier"]["base_url"].as_str(),
        Some("https://api.openai.com/v1")
    );
}

#[test]
fn recorded_success_stream() {
    let (events, result) = parse_all(include_str!("../../../tests/data/codex/success.jsonl"));
    let session = "01a215f6-ebdf-7893-9563-a195febf6784";
    assert_eq!(
        shown(&events),
        [
            &AgentEvent::Started {
                session_id: Some(session.into()),
                model: None
            },
            &AgentEvent::ToolUse {
                name: "shell".into(),
                summary: "echo hello > hello.txt && cat hello.txt".into()
            },
            &AgentEvent::ToolResult {
                ok: true,
                summary: "hello".into()
            },
            &AgentEvent::Text {
                text: "Done. Created hello.txt containing \"hello\".".into()
            },
            &AgentEvent::Result(result.clone()),
        ]
    );
    assert!(result.success);
    assert_eq!(result.text, "Done. Created hello.txt containing \"hello\".");
    assert_eq!(
        (result.input_tokens, result.output_tokens),
        (Some(3000), Some(120))
    );
    assert_eq!(result.cost_usd, None);
    assert_eq!(result.num_turns, Some(1));
    assert_eq!(result.session_id.as_deref(), Some(session));
    assert_eq!(result.api_error_status, None);
}

#[test]
fn recorded_file_change_stream() {
    let (events, result) = parse_all(include_str!("../../../tests/data/codex/file_change.jsonl"));
    let shown = shown(&events);
    assert_eq!(
        shown[3],
        &AgentEvent::ToolUse {
            name: "edit".into(),
            summary: "add notes.md".into()
        }
    );
    assert_eq!(
        shown[4],
        &AgentEvent::ToolResult {
            ok: true,
            summary: "add notes.md".into()
        }
    );
    assert!(result.success);
    assert_eq!(
        (result.input_tokens, result.output_tokens),
        (Some(4500), Some(180))
    );
}

#[test]
fn a_failed_command_is_a_failed_tool_result() {
    let (events, result) = parse_all(include_str!(
        "../../../tests/data/codex/command_failed.jsonl"
    ));
    assert!(events.contains(&AgentEvent::ToolResult {
        ok: false,
        summary: "exit code 1: cat: missing.txt: No such file or directory".into()
    }));
    assert!(result.success);
}

#[test]
fn an_unknown_model_warning_is_logged_not_shown() {
    let (events, result) = parse_all(include_str!(
        "../../../tests/data/codex/unknown_model.jsonl"
    ));
    assert!(
        matches!(&events[1], AgentEvent::Unparsed { line } if line.contains("Model metadata for `gpt-5.4` not found"))
    );
    assert!(result.success);
    assert_eq!(
        (result.input_tokens, result.output_tokens),
        (Some(2000), Some(100))
    );
}

#[test]
fn a_rejected_key_fails_with_its_status() {
    for stream in [
        include_str!("../../../tests/data/codex/unauthorized.jsonl"),
        include_str!("../../../tests/data/codex/unauthorized_retried.jsonl"),
    ] {
        let (events, result) = parse_all(stream);
        assert!(!result.success);
        assert_eq!(result.api_error_status, Some(401));
        assert!(
            result
                .text
                .starts_with("unexpected status 401 Unauthorized: Incorrect API key provided"),
            "{}",
            result.text
        );
        assert!(result.session_id.is_some());
        assert!(events
            .iter()
            .any(|e| matches!(e, AgentEvent::ApiError { error, .. } if error == "HTTP 401")));
    }
    let (events, _) = parse_all(include_str!(
        "../../../tests/data/codex/unauthorized_retried.jsonl"
    ));
    assert!(events.contains(&AgentEvent::Retry {
        attempt: 2,
        max_retries: Some(2),
        error: "unexpected status 401 Unauthorized: Incorrect API key provided: sk-bogus., url: http://127.0.0.1:18080/v1/responses".into()
    }));
}

#[test]
fn reconnect_notices_are_retries_and_a_cut_off_run_fails() {
    let mut parser = Box::new(StreamParser::new());
    let events: Vec<AgentEvent> = include_str!("../../../tests/data/codex/offline.jsonl")
        .lines()
        .flat_map(|l| parser.line(l))
        .collect();
    let retries: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Retry {
                attempt,
                max_retries: Some(5),
                ..
            } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [2, 3, 4, 5]);
    assert!(!events
        .iter()
        .any(|e| matches!(e, AgentEvent::ApiError { .. })));
    let waiting = parser.line(r#"{"type":"error","message":"Reconnecting... waiting for network (Connection failed: error sending request)"}"#);
    assert_eq!(
        waiting,
        [AgentEvent::Retry {
            attempt: 0,
            max_retries: None,
            error: "waiting for network (Connection failed: error sending request)".into()
        }]
    );
    let result = parser.finish(None);
    assert!(!result.success);
    assert!(
        result.text.starts_with(
            "Codex was killed before it finished; last error: Falling back from WebSockets"
        ),
        "{}",
        result.text
    );
    assert_eq!(
        result.session_id.as_deref(),
        Some("01a215f0-f801-7062-90da-e2844165396b")
    );
}

#[test]
fn statuses_are_read_from_messages() {
    assert_eq!(
        http_status("unexpected status 403 Forbidden: no"),
        Some(403)
    );
    assert_eq!(
        http_status("unexpected status 429 Too Many Requests"),
        Some(429)
    );
    assert_eq!(http_status("status 4011"), None);
    assert_eq!(
        http_status("Missing environment variable: `CODEX_API_KEY`."),
        None
    );
    assert_eq!(unwrap_shell("/bin/bash -lc 'ls -la'"), "ls -la");
    assert_eq!(unwrap_shell("/bin/bash -c 'ls\n'"), "ls\n");
    assert_eq!(unwrap_shell("ls -c x"), "ls -c x");
    assert_eq!(unwrap_shell("ls"), "ls");
}

#[test]
fn garbage_never_breaks_the_parser() {
    let mut parser = Box::new(StreamParser::new());
    let huge = format!(
        "{{\"type\":\"item.completed\",\"item\":{{\"id\":\"item_9\",\"type\":\"agent_message\",\"text\":\"{}\"}}}}",
        "x".repeat(5_000_000)
    );
    let huge_output = format!(
        "{{\"type\":\"item.completed\",\"item\":{{\"id\":\"item_8\",\"type\":\"command_execution\",\"command\":\"yes\",\"aggregated_output\":\"{}\",\"exit_code\":0,\"status\":\"completed\"}}}}",
        "y\\n".repeat(2_000_000)
    );
    let long_garbage = "z".repeat(3_000_000);
    let inputs = [
        "",
        "   ",
        "not json at all",
        "{\"type\":",
        "[1,2,3]",
        "{\"no_type\":true}",
        "{\"type\":\"thread.started\"}",
        "{\"type\":\"item.started\"}",
        "{\"type\":\"item.completed\",\"item\":\"a string\"}",
        "{\"type\":\"item.completed\",\"item\":{\"type\":\"command_execution\",\"exit_code\":\"NaN\"}}",
        "{\"type\":\"item.completed\",\"item\":{\"type\":\"file_change\",\"changes\":[{}],\"status\":\"failed\"}}",
        "{\"type\":\"item.updated\",\"item\":{\"id\":\"t\",\"type\":\"todo_list\",\"items\":[]}}",
        "{\"type\":\"error\"}",
        "{\"type\":\"turn.failed\",\"error\":null}",
        "{\"type\":\"some.future.event\",\"x\":1}",
        "\u{0}\u{1}binary",
        huge.as_str(),
        huge_output.as_str(),
        long_garbage.as_str(),
    ];
    let mut events = Vec::new();
    for input in inputs {
        events.extend(parser.line(input));
    }
    assert!(events.contains(&AgentEvent::ToolResult {
        ok: false,
        summary: "change ?".into()
    }));
    assert!(events
        .iter()
        .any(|e| matches!(e, AgentEvent::Text { text } if text.len() == 5_000_000)));
    assert!(events
        .iter()
        .any(|e| matches!(e, AgentEvent::ToolResult { ok: true, summary } if summary == "y…")));
    for e in &events {
        if let AgentEvent::Unparsed { line } = e {
            assert!(line.len() <= MAX_KEPT_LINE + 40);
        }
    }
    // A turn.failed without a message still ends the run as failed.
    let result = parser.finish(Some(1));
    assert!(!result.success);
    assert_eq!(
        result.text,
        "Codex reported a failed turn without a message"
    );

    let silent = Box::new(StreamParser::new());
    let result = silent.finish(Some(1));
    assert!(!result.success);
    assert_eq!(result.text, "Codex exited with code 1 without a result");
}
