//! The real OpenCode CLI (pinned, installed from npm by the test setup) inside a real local
//! sandbox, against a fake OpenRouter (Chat Completions) on loopback.

mod support;

use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use codecourier::agent::{opencode, AgentContext};
use codecourier::catalog::{Catalog, Effort};
use codecourier::secret::Secret;
use support::fake_openai_chat::{self as fake, Mode, FINAL_TEXT};
use support::{agent_cli, opencode_bin, processes_of, World};
use wiremock::MockServer;

const KEY: &str = "sk-or-v1-test-key-0123456789";
/// A model OpenCode's bundled catalog prices (1.25 $/M input, 0.125 $/M cached, 10 $/M output).
const MODEL: &str = "openrouter/google/gemini-2.5-pro";

fn launch(world: &World, api: &MockServer, args: &[&str]) -> StdCommand {
    agent_cli::launch(
        world,
        &opencode_bin(),
        "opencode",
        "OPENROUTER_API_KEY",
        KEY,
        ("OPENROUTER_BASE_URL", &fake::base_url(api)),
        args,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn opencode_creates_a_file_that_lands_on_the_feature_branch() {
    let world = World::new();
    let api = fake::start(Mode::Works).await;
    let (code, r, stderr) = agent_cli::run(launch(
        &world,
        &api,
        &["--prompt", "Create hello.txt", "--model", MODEL],
    ))
    .await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["result"], FINAL_TEXT);
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(world.file_on_branch(branch, "hello.txt"), "hello\n");
    assert_eq!(r["pushed"], true);

    // Two model calls (the tool call, the answer): `--title` left out the title-generation call.
    let requests = fake::requests(&api).await;
    assert_eq!(requests.len(), 2, "{requests:#?}");
    // The gateway metered each of the real CLI's requests; the figures below are its.
    assert_eq!(r["metered"]["requests"], 2, "{r:#}");
    assert_eq!(r["num_turns"], 2);
    assert_eq!(r["input_tokens"], 2 * fake::PROMPT_TOKENS);
    assert_eq!(r["output_tokens"], 2 * fake::COMPLETION_TOKENS);
    // OpenCode prices tokens itself: per call 70 fresh, 30 cached and 20 output tokens.
    let per_call = 70.0 * 1.25e-6 + 30.0 * 0.125e-6 + 20.0 * 10e-6;
    let cost = r["cost_usd"].as_f64().unwrap();
    assert!((cost - 2.0 * per_call).abs() < 1e-12, "cost {cost}");

    for body in &requests {
        assert_eq!(body["model"], "google/gemini-2.5-pro");
        assert!(fake::text_of(body, "user").contains("Create hello.txt"));
        // The system prompt arrives through the config's `instructions`.
        let system = fake::text_of(body, "system");
        assert!(
            system.contains("You are running unattended in a CodeCourier sandbox"),
            "{system}"
        );
    }
    let auth: Vec<String> = api
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert!(auth.iter().all(|a| a == &format!("Bearer {KEY}")));

    let stored = agent_cli::record(&world, r["id"].as_str().unwrap());
    let session = stored["session_id"].as_str().unwrap();
    assert!(session.starts_with("ses_"), "{session}");
    // Nothing the CLI started outlives the run.
    let provider = stored["provider_sandbox_id"].as_str().unwrap();
    assert!(
        processes_of(provider).is_empty(),
        "{:?}",
        processes_of(provider)
    );
}

/// Runs with an OpenRouter model that OpenCode 1.18.33's bundled catalog lacks: it reaches the API
/// only because the adapter declares it.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_key_fails_with_the_providers_message() {
    let world = World::new();
    let api = fake::start(Mode::Unauthorized).await;
    let started = Instant::now();
    let (code, r, _) = agent_cli::run(launch(
        &world,
        &api,
        &[
            "--prompt",
            "Create hello.txt",
            "--model",
            "openrouter/google/gemini-3-pro-preview",
        ],
    ))
    .await;
    assert_eq!(code, 1);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["model"], "openrouter/google/gemini-3-pro-preview");
    assert_eq!(r["failed_phase"], "agent");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains(fake::UNAUTHORIZED_MESSAGE)
            && error.contains("invalid API key: the model API refused it"),
        "{error}"
    );
    assert!(!error.contains(KEY), "{error}");
    let requests = fake::requests(&api).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["model"], "google/gemini-3-pro-preview");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

/// The adapter's exact command line and config pass the real CLI's own checks: with no key it
/// gets as far as asking the provider for one (a usage error would print the usage text).
#[test]
fn the_command_line_passes_the_clis_own_checks() {
    let catalog = Catalog::built_in();
    let plan = opencode::plan(AgentContext {
        tool: catalog.tool("opencode").unwrap(),
        model: MODEL,
        effort: Effort::None,
        session_id: "unused",
        resume: None,
        keys: Vec::new(),
        env: &[(
            "OPENROUTER_BASE_URL".into(),
            Secret::new("http://127.0.0.1:9/api/v1"),
        )],
        system_prompt: "",
        memory: "- earlier runs learned this\n",
        skills: Vec::new(),
        commands: Vec::new(),
        output_schema: None,
    });
    let run = agent_cli::run_plan_directly(&opencode_bin(), &plan, Duration::from_secs(60));
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        !run.stderr.contains("opencode run [message..]"),
        "usage error: {}",
        run.stderr
    );
    assert!(
        run.stdout.contains("\"name\":\"ProviderAuthError\"")
            && run.stdout.contains("OpenRouter API key is missing"),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(run.took < Duration::from_secs(30), "took {:?}", run.took);
}

/// The agent may write the learnings file outside the project (`--auto` answers OpenCode's
/// external-directory rule), and once accepted the next run's system prompt carries what it wrote.
#[tokio::test(flavor = "multi_thread")]
async fn learnings_of_one_run_reach_the_next() {
    let world = World::new();
    let learning = "- run make check before committing";
    let first = fake::start(Mode::Learns(learning.into())).await;
    let args = ["--prompt", "Create hello.txt", "--model", MODEL];
    let (code, r, _) = agent_cli::run(launch(&world, &first, &args)).await;
    assert_eq!(code, 0, "{r:#}");
    let finish = r["phases"].as_array().unwrap().last().unwrap().clone();
    assert!(
        finish["detail"]
            .as_str()
            .unwrap()
            .contains("1 new learning"),
        "{finish}"
    );

    world.accept_learnings();
    let second = fake::start(Mode::Works).await;
    let (code, r, _) = agent_cli::run(launch(&world, &second, &args)).await;
    assert_eq!(code, 0, "{r:#}");
    let requests = fake::requests(&second).await;
    let system = fake::text_of(&requests[0], "system");
    assert!(system.contains(learning), "{system}");
}

/// A skill added from the terminal reaches OpenCode: its description is offered to the model.
/// (Commands go to `~/.config/opencode/commands/`, where `opencode debug config` lists them.)
#[tokio::test(flavor = "multi_thread")]
async fn skills_reach_opencode() {
    let world = World::new();
    world.add_skill_and_command();
    let api = fake::start(Mode::Works).await;
    let (code, r, stderr) =
        agent_cli::run(launch(&world, &api, &["--prompt", "Create hello.txt"])).await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    let requests = fake::requests(&api).await;
    let sent = requests[0].to_string();
    assert!(
        sent.contains("Runs the widget test suite with make widgetcheck"),
        "{sent}"
    );
}
