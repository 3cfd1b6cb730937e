//! The real Claude Code CLI (pinned, installed from npm by the test setup) inside a real local
//! sandbox, against a fake Anthropic Messages API on loopback.

mod support;

use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use support::agent_cli::{self, run};
use support::fake_anthropic::{self, Mode, FINAL_TEXT};
use support::{claude_code_bin, processes_of, World};

/// `codecourier launch` with the real `claude` first on PATH (no fixture tools directory), pointed
/// at the fake API through `--env ANTHROPIC_BASE_URL`.
fn launch(world: &World, api: &str, args: &[&str]) -> StdCommand {
    agent_cli::launch(
        world,
        &claude_code_bin(),
        "claude-code",
        "ANTHROPIC_API_KEY",
        support::API_KEY,
        ("ANTHROPIC_BASE_URL", api),
        args,
    )
}

fn provider_id(world: &World, id: &str) -> String {
    let out = world
        .std_cmd()
        .args(["sandboxes", "show", "--json", id])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    r["provider_sandbox_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_creates_a_file_that_lands_on_the_feature_branch() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let (code, r, stderr) = run(launch(
        &world,
        &api.uri(),
        &["--prompt", "Create hello.txt"],
    ))
    .await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["result"], FINAL_TEXT);
    // Claude Code prices the fake's usage (2 requests × 100 in / 20 out) at Sonnet list prices.
    let cost = r["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.0012).abs() < 1e-9, "cost {cost}");
    assert_eq!(r["num_turns"], 2);
    // The gateway metered both requests, and its price agrees with Claude Code's.
    assert_eq!(r["metered"]["requests"], 2, "{r:#}");
    assert_eq!(r["reported"]["cost_usd"], r["cost_usd"]);
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(world.file_on_branch(branch, "hello.txt"), "hello\n");
    assert_eq!(r["pushed"], true);
    let prompts = fake_anthropic::prompts_received(&api).await;
    assert!(
        prompts.iter().all(|p| p.contains("Create hello.txt")),
        "{prompts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_key_fails_with_an_invalid_api_key_message() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Unauthorized).await;
    let started = Instant::now();
    let (code, r, _) = run(launch(
        &world,
        &api.uri(),
        &["--prompt", "Create hello.txt"],
    ))
    .await;
    assert_eq!(code, 1);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["failed_phase"], "agent");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("Invalid API key")
            && error.contains("invalid API key: the model API refused it"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_that_never_answers_times_out_and_leaves_nothing_running() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Silent).await;
    let mut cmd = launch(
        &world,
        &api.uri(),
        &["--prompt", "Create hello.txt", "--timeout", "8s"],
    );
    cmd.env("CODECOURIER_CATALOG", world.short_timeout_catalog());
    let started = Instant::now();
    let (code, r, _) = run(cmd).await;
    let took = started.elapsed();
    assert_eq!(code, 1);
    assert_eq!(r["status"], "timed_out", "{r:#}");
    assert!(took < Duration::from_secs(8 + 10), "took {took:?}");
    let provider = provider_id(&world, r["id"].as_str().unwrap());
    assert!(
        processes_of(&provider).is_empty(),
        "{:?}",
        processes_of(&provider)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prompts_starting_with_a_dash_and_of_100_kb_reach_the_model_whole() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let dash = "--version is not what I want: create hello.txt";
    let (code, r, _) = run(launch(&world, &api.uri(), &["--prompt", dash])).await;
    assert_eq!(code, 0, "{r:#}");

    let big: String = (0..2000)
        .map(|i| format!("requirement {i:05}: keep 'quotes', $vars and `ticks`\n"))
        .collect();
    assert!(big.len() > 100_000);
    let file = world.dir.path().join("prompt.md");
    std::fs::write(&file, &big).unwrap();
    let (code, r, _) = run(launch(
        &world,
        &api.uri(),
        &["--prompt-file", file.to_str().unwrap()],
    ))
    .await;
    assert_eq!(code, 0, "{r:#}");
    let prompts = fake_anthropic::prompts_received(&api).await;
    assert!(
        prompts.iter().any(|p| p.contains(dash)),
        "dash prompt not received"
    );
    assert!(
        prompts.iter().any(|p| p.contains(big.trim_end())),
        "100 KB prompt not received whole"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_in_the_models_answer_is_redacted_everywhere() {
    let world = World::new();
    let planted = "sk-ant-api03-plantedSECRETvalue0123456789";
    let api = fake_anthropic::start(Mode::Works {
        extra_text: format!(" The key is {planted}."),
    })
    .await;
    let mut cmd = launch(&world, &api.uri(), &["--prompt", "Create hello.txt"]);
    cmd.args(["--env", &format!("MY_TOKEN={planted}")]);
    let (code, r, stderr) = run(cmd).await;
    assert_eq!(code, 0, "{r:#}");
    let all = format!("{r}{stderr}");
    assert!(!all.contains("plantedSECRET"), "{all}");
    assert!(r["result"]
        .as_str()
        .unwrap()
        .contains("The key is [redacted]."));
    let logs = world
        .std_cmd()
        .args(["sandboxes", "logs", r["id"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&logs.stdout).contains("plantedSECRET"));
}

/// The effort each request the CLI sent asked for (`output_config.effort`: the pinned release
/// gives Claude 4.6 models adaptive thinking).
async fn efforts_sent(api: &wiremock::MockServer) -> Vec<String> {
    fake_anthropic::requests_received(api)
        .await
        .iter()
        .map(|body| {
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            body["output_config"]["effort"]
                .as_str()
                .unwrap_or("(none)")
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_models_default_effort_reaches_the_cli_and_an_explicit_one_wins() {
    let world = World::new();
    for (args, effort) in [
        (&["--model", "claude-opus-4-6"][..], "high"),
        (
            &["--model", "claude-opus-4-6", "--effort", "low"][..],
            "low",
        ),
        (&[][..], "medium"),
    ] {
        let api = fake_anthropic::start(Mode::Works {
            extra_text: String::new(),
        })
        .await;
        let mut all = vec!["--prompt", "Create hello.txt"];
        all.extend(args);
        let (code, r, stderr) = run(launch(&world, &api.uri(), &all)).await;
        assert_eq!(code, 0, "{r:#}\n{stderr}");
        let tool_setup = r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["phase"] == "tool_setup")
            .unwrap()["detail"]
            .to_string();
        assert!(
            tool_setup.contains(&format!("· effort {effort} ·")),
            "{args:?}: {tool_setup}"
        );
        let sent = efforts_sent(&api).await;
        assert!(
            !sent.is_empty() && sent.iter().all(|e| e == effort),
            "{args:?}: {sent:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn skills_and_commands_added_from_the_terminal_reach_the_cli_and_the_model() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    world.add_skill_and_command();
    let (code, r, stderr) = run(launch(
        &world,
        &api.uri(),
        &[
            "--prompt",
            "Run `cat ~/.claude/skills/widget-tests/SKILL.md ~/.claude/commands/widget-review.md`",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    let results = fake_anthropic::tool_results_received(&api).await;
    assert!(
        results.iter().any(|t| t.contains("Run `make widgetcheck`.")
            && t.contains("Review the diff for data races.")),
        "{results:?}"
    );
    // Claude Code lists both to the model, with their descriptions.
    let requests = fake_anthropic::requests_received(&api).await;
    assert!(
        requests[0].contains("widget-tests: Runs the widget test suite with make widgetcheck")
            && requests[0].contains("widget-review: Reviews the widget diff for races"),
        "{}",
        requests[0]
    );
    let tool_setup = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "tool_setup")
        .unwrap()["detail"]
        .to_string();
    assert!(
        tool_setup.contains("1 skill and 1 command given"),
        "{tool_setup}"
    );
}
