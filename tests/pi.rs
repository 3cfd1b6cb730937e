//! The real Pi CLI (pinned, installed from npm by the test setup) inside a real local sandbox,
//! against a fake OpenRouter (Chat Completions) on loopback.

mod support;

use std::path::PathBuf;
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use codecourier::agent::{pi, AgentContext};
use codecourier::catalog::{Catalog, Effort};
use codecourier::secret::Secret;
use support::fake_openai_chat::{self as fake, Mode, FINAL_TEXT};
use support::{agent_cli, npm_cli_bin, processes_of, World};
use wiremock::MockServer;

const KEY: &str = "sk-or-v1-test-key-0123456789";
/// A model Pi's bundled catalog prices (1.25 $/M input, 0.125 $/M cached, 10 $/M output).
const MODEL: &str = "openrouter/google/gemini-2.5-pro";

fn pi_bin() -> PathBuf {
    let package = codecourier::agent::packages::PI;
    npm_cli_bin(
        "CODECOURIER_TEST_PI_BIN",
        package.name,
        package.version,
        package.command,
    )
}

fn launch(world: &World, api: &MockServer, args: &[&str]) -> StdCommand {
    agent_cli::launch(
        world,
        &pi_bin(),
        "pi",
        "OPENROUTER_API_KEY",
        KEY,
        ("OPENROUTER_BASE_URL", &fake::base_url(api)),
        args,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pi_creates_a_file_that_lands_on_the_feature_branch() {
    let world = World::new();
    let api = fake::start(Mode::Works).await;
    let (code, r, stderr) = agent_cli::run(launch(
        &world,
        &api,
        &[
            "--prompt",
            "Create hello.txt",
            "--model",
            MODEL,
            "--effort",
            "high",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["result"], FINAL_TEXT);
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(world.file_on_branch(branch, "hello.txt"), "hello\n");
    assert_eq!(r["pushed"], true);

    let requests = fake::requests(&api).await;
    assert_eq!(requests.len(), 2, "{requests:#?}");
    // The gateway metered each of the real CLI's requests; the figures below are its.
    assert_eq!(r["metered"]["requests"], 2, "{r:#}");
    assert_eq!(r["num_turns"], 2);
    assert_eq!(r["input_tokens"], 2 * fake::PROMPT_TOKENS);
    assert_eq!(r["output_tokens"], 2 * fake::COMPLETION_TOKENS);
    // Pi prices tokens itself: per call 70 fresh, 30 cached and 20 output tokens.
    let per_call = 70.0 * 1.25e-6 + 30.0 * 0.125e-6 + 20.0 * 10e-6;
    let cost = r["cost_usd"].as_f64().unwrap();
    assert!((cost - 2.0 * per_call).abs() < 1e-12, "cost {cost}");

    for body in &requests {
        assert_eq!(body["model"], "google/gemini-2.5-pro");
        // --effort high became --thinking high.
        assert_eq!(body["reasoning"]["effort"], "high");
        assert!(fake::text_of(body, "user").contains("Create hello.txt"));
        // Pi sends its system prompt as the developer message to reasoning models.
        let system = format!(
            "{}{}",
            fake::text_of(body, "system"),
            fake::text_of(body, "developer")
        );
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
    assert_eq!(session.len(), 36, "{session}");
    // Nothing the CLI started outlives the run.
    let provider = stored["provider_sandbox_id"].as_str().unwrap();
    assert!(
        processes_of(provider).is_empty(),
        "{:?}",
        processes_of(provider)
    );
}

/// Pi exits 0 when the API refuses the key: the failure is read from the stream.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_key_fails_although_pi_exits_0() {
    let world = World::new();
    let api = fake::start(Mode::Unauthorized).await;
    let started = Instant::now();
    let (code, r, _) =
        agent_cli::run(launch(&world, &api, &["--prompt", "Create hello.txt"])).await;
    assert_eq!(code, 1);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["failed_phase"], "agent");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains(fake::UNAUTHORIZED_MESSAGE)
            && error.contains("invalid API key: the model API refused it"),
        "{error}"
    );
    assert!(!error.contains(KEY), "{error}");
    // A 401 is not retried.
    assert_eq!(fake::requests(&api).await.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// The adapter's exact command line passes the real CLI's own checks: with no key it gets as far
/// as looking for one (an unknown option would fail first, with "Unknown option").
#[test]
fn the_command_line_passes_the_clis_own_checks() {
    let catalog = Catalog::built_in();
    let plan = pi::plan(AgentContext {
        tool: catalog.tool("pi").unwrap(),
        model: MODEL,
        effort: Effort::Low,
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
    let run = agent_cli::run_plan_directly(&pi_bin(), &plan, Duration::from_secs(60));
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        !run.stderr.contains("Unknown option") && !run.stderr.contains("Warning"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("No API key found for openrouter"),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains("\"type\":\"session\""),
        "{}",
        run.stdout
    );
    assert!(run.took < Duration::from_secs(30), "took {:?}", run.took);
}

/// What one run appends to the learnings file, once accepted, reaches the next run's model through Pi's global
/// AGENTS.md (the catalog says Pi reads a memory file, so the system prompt leaves it out).
#[tokio::test(flavor = "multi_thread")]
async fn learnings_of_one_run_reach_the_next() {
    let world = World::new();
    let learning = "- run make check before committing";
    let first = fake::start(Mode::Learns(learning.into())).await;
    let (code, r, _) =
        agent_cli::run(launch(&world, &first, &["--prompt", "Create hello.txt"])).await;
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
    let (code, r, _) =
        agent_cli::run(launch(&world, &second, &["--prompt", "Create hello.txt"])).await;
    assert_eq!(code, 0, "{r:#}");
    let requests = fake::requests(&second).await;
    let developer = fake::text_of(&requests[0], "developer");
    assert!(developer.contains(learning), "{developer}");
}

/// A skill and a command (a prompt template to Pi) added from the terminal: Pi lists the skill to
/// the model and expands the template a prompt starts with.
#[tokio::test(flavor = "multi_thread")]
async fn skills_and_prompt_templates_reach_pi() {
    let world = World::new();
    world.add_skill_and_command();
    let api = fake::start(Mode::Works).await;
    let (code, r, stderr) =
        agent_cli::run(launch(&world, &api, &["--prompt", "/widget-review"])).await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    let requests = fake::requests(&api).await;
    let system = format!(
        "{}{}",
        fake::text_of(&requests[0], "system"),
        fake::text_of(&requests[0], "developer")
    );
    assert!(
        system.contains("Runs the widget test suite with make widgetcheck"),
        "{system}"
    );
    let user = fake::text_of(&requests[0], "user");
    assert!(user.contains("Review the diff for data races."), "{user}");
}
