//! The real Codex CLI (pinned, installed from npm by the test setup) inside a real local sandbox,
//! against a fake OpenAI Responses API on loopback.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use codecourier::agent::{codex, AgentContext};
use codecourier::catalog::{Catalog, Effort};
use codecourier::secret::Secret;
use support::agent_cli::{self, run};
use support::fake_openai_responses::{self as fake, Mode, FINAL_TEXT};
use support::{npm_cli_bin, processes_of, World};

const OPENAI_KEY: &str = "sk-test-openai-0123456789";

/// The directory holding the real `codex` (CODECOURIER_TEST_CODEX_BIN overrides).
fn codex_bin() -> std::path::PathBuf {
    let package = codecourier::agent::packages::CODEX;
    npm_cli_bin(
        "CODECOURIER_TEST_CODEX_BIN",
        package.name,
        package.version,
        package.command,
    )
}

/// `codecourier launch --tool codex` with the real `codex` first on PATH (no fixture tools
/// directory), pointed at the fake API through `--env OPENAI_BASE_URL`.
fn launch(world: &World, api: &str, args: &[&str]) -> StdCommand {
    let base = format!("{api}/v1");
    agent_cli::launch(
        world,
        &codex_bin(),
        "codex",
        "OPENAI_API_KEY",
        OPENAI_KEY,
        ("OPENAI_BASE_URL", &base),
        args,
    )
}

fn show(world: &World, id: &str) -> serde_json::Value {
    let out = world
        .std_cmd()
        .args(["sandboxes", "show", "--json", id])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_creates_a_file_that_lands_on_the_feature_branch() {
    let world = World::new();
    let api = fake::start(Mode::Works).await;
    let (code, r, stderr) = run(launch(
        &world,
        &api.uri(),
        &["--prompt", "Create hello.txt", "--effort", "high"],
    ))
    .await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["result"], FINAL_TEXT);
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(world.file_on_branch(branch, "hello.txt"), "hello\n");
    assert_eq!(r["pushed"], true);

    let requests = fake::requests_received(&api).await;
    // One request for the tool call, one with its output for the answer.
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let n = requests.len() as u64;
    // The gateway metered each of the real CLI's requests.
    assert_eq!(r["metered"]["requests"], n, "{r:#}");
    // Codex sums the usage of every request in the turn; it reports no price.
    assert_eq!(r["input_tokens"], n * fake::INPUT_TOKENS);
    assert_eq!(r["output_tokens"], n * fake::OUTPUT_TOKENS);
    assert!(r["cost_usd"].is_null(), "{r:#}");
    assert_eq!(r["num_turns"], 1);

    let authorizations = fake::authorizations(&api).await;
    assert!(
        authorizations.len() == 2
            && authorizations
                .iter()
                .all(|a| a == &format!("Bearer {OPENAI_KEY}")),
        "the key did not reach the API as a bearer token"
    );
    for body in &requests {
        assert_eq!(body["model"], "gpt-5.4");
        assert_eq!(body["reasoning"]["effort"], "high");
        let prompt = fake::message_texts(body, "user").join("\n");
        assert!(prompt.contains("Create hello.txt"), "{prompt}");
        // The system prompt arrives decoded: real newlines, the branch in backticks.
        let developer = fake::message_texts(body, "developer");
        assert!(
            developer.iter().any(|t| t
                .starts_with("You are running unattended in a CodeCourier sandbox")
                && t.contains(&format!("`{branch}`"))
                && t.contains("\n- Commit your work")),
            "{developer:#?}"
        );
    }

    // The thread id Codex reported is kept for follow-ups; it is the one it sent the API.
    let record = show(&world, r["id"].as_str().unwrap());
    let session = record["session_id"].as_str().expect("a session id");
    let sent = api.received_requests().await.unwrap();
    assert_eq!(
        sent[0].headers.get("session-id").unwrap().to_str().unwrap(),
        session
    );
    // Nothing Codex started (its daemon included) outlives the run.
    let provider = record["provider_sandbox_id"].as_str().unwrap();
    assert!(
        processes_of(provider).is_empty(),
        "{:?}",
        processes_of(provider)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_key_fails_fast_with_the_providers_message() {
    let world = World::new();
    let api = fake::start(Mode::Unauthorized).await;
    let started = Instant::now();
    let (code, r, stderr) = run(launch(
        &world,
        &api.uri(),
        &["--prompt", "Create hello.txt"],
    ))
    .await;
    assert_eq!(code, 1, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["failed_phase"], "agent");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("Incorrect API key provided")
            && error.contains("401")
            && error.contains("invalid API key: the model API refused it"),
        "{error}"
    );
    assert!(!format!("{r}{stderr}").contains(OPENAI_KEY));
    // Retries are bounded: the first attempt and two more.
    assert_eq!(fake::requests_received(&api).await.len(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agents_commands_keep_the_sandbox_path_and_never_see_the_key() {
    let world = World::new();
    let api = fake::start(Mode::Runs(
        "echo \"PATH=$PATH\"; env | cut -d= -f1 | sort | tr '\\n' ' '".into(),
    ))
    .await;
    let (code, r, stderr) = run(launch(&world, &api.uri(), &["--prompt", "Show the env"])).await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    let outputs = fake::tool_outputs(&api).await;
    let output = outputs
        .first()
        .expect("the command's output went back to the model");
    assert!(output.contains("Process exited with code 0"), "{output}");
    let path = output
        .lines()
        .find_map(|l| l.strip_prefix("PATH="))
        .unwrap_or_else(|| panic!("{output}"));
    for dir in ["/run/codecourier/bin", "/home/user/.local/bin", "/usr/bin"] {
        assert!(
            path.split(':').any(|d| d == dir),
            "{dir} missing from {path}"
        );
    }
    assert!(
        output.contains(" CODEX_HOME ") && output.contains(" HOME "),
        "{output}"
    );
    assert!(!output.contains("CODEX_API_KEY"), "{output}");
    assert!(!output.contains(OPENAI_KEY));
}

/// Codex's plan for a run, with the given base URL and system prompt.
fn codex_plan(base_url: &str, system_prompt: &str) -> codecourier::agent::AgentPlan {
    let catalog = Catalog::built_in();
    let env = [("OPENAI_BASE_URL".to_string(), Secret::new(base_url))];
    codex::plan(AgentContext {
        tool: catalog.tool("codex").unwrap(),
        model: "gpt-5.4",
        effort: Effort::High,
        session_id: "unused",
        resume: None,
        keys: vec![("OPENAI_API_KEY".into(), Secret::new(OPENAI_KEY))],
        env: &env,
        system_prompt,
        memory: "",
        skills: Vec::new(),
        commands: Vec::new(),
        output_schema: None,
    })
}

/// Runs the plan's command line with the real `codex` on this machine, outside any sandbox: the
/// sandbox's home and project directories are mapped into `dir`, the plan's files written there,
/// the prompt written to stdin, which is then closed (as the launcher does).
fn run_plan_here(
    plan: &codecourier::agent::AgentPlan,
    dir: &Path,
    with_key: bool,
    extra: &[&str],
) -> (Option<i32>, String, String, Duration) {
    let home = dir.join("home");
    let project = home.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let to_host = |p: &str| {
        home.join(
            p.strip_prefix("/home/user/")
                .expect("a path in the sandbox's home"),
        )
    };
    for file in &plan.files {
        let path = to_host(&file.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &file.contents).unwrap();
    }
    let mut argv: Vec<String> = plan
        .argv
        .iter()
        .map(|a| {
            if a == codecourier::sandbox::PROJECT_DIR {
                project.to_string_lossy().into_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    argv.splice(2..2, extra.iter().map(|s| s.to_string()));
    let mut cmd = StdCommand::new(codex_bin().join(&argv[0]));
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", &home)
        .current_dir(&project)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in &plan.env {
        match name.as_str() {
            "CODEX_HOME" => cmd.env(name, to_host(value.expose())),
            _ if with_key => cmd.env(name, value.expose()),
            _ => &mut cmd,
        };
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Create hello.txt").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn the_real_cli_accepts_our_command_line_and_config() {
    // Loopback port 9 (discard) is closed: nothing is reached even if a request were sent.
    let plan = codex_plan("http://127.0.0.1:9/v1", "Be terse.\nSay \"done\".");
    for extra in [&[][..], &["--strict-config"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let (code, stdout, stderr, took) = run_plan_here(&plan, dir.path(), false, extra);
        assert_ne!(code, Some(2), "argument error: {stderr}");
        assert!(!stderr.contains("unexpected argument"), "{stderr}");
        assert!(!stderr.contains("Error loading config"), "{stderr}");
        // It got as far as the turn, using our provider, which found its key variable unset.
        assert!(
            stdout.contains("\"type\":\"thread.started\""),
            "{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("\"type\":\"turn.failed\"") && stdout.contains("CODEX_API_KEY"),
            "{stdout}\n{stderr}"
        );
        assert_eq!(code, Some(1), "{stdout}\n{stderr}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_system_prompt_reaches_the_model_byte_for_byte() {
    let api = fake::start(Mode::Works).await;
    let nasty = "Rules:\n- say \"done\"\n- paths like C:\\dir\\ and \\n stay literal\r\n\ttabbed `ticks` $HOME 'single' \"\"\" ''' #hash [x] = {y}\n- ünïcödé ✓ \u{1b}[0m";
    let plan = codex_plan(&format!("{}/v1", api.uri()), nasty);
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr, _) = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || run_plan_here(&plan, &dir, true, &[])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let requests = fake::requests_received(&api).await;
    assert!(!requests.is_empty());
    for body in &requests {
        let developer = fake::message_texts(body, "developer");
        assert!(developer.iter().any(|t| t == nasty), "{developer:#?}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("home/project/hello.txt")).unwrap(),
        "hello\n"
    );
}

/// A skill added from the terminal reaches Codex (its description is sent to the model); the
/// command, which `codex exec` cannot take, is named as left out.
#[tokio::test(flavor = "multi_thread")]
async fn skills_reach_codex_and_commands_are_named_left_out() {
    let world = World::new();
    world.add_skill_and_command();
    let api = fake::start(Mode::Works).await;
    let (code, r, stderr) = run(launch(
        &world,
        &api.uri(),
        &["--prompt", "Create hello.txt"],
    ))
    .await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    let requests = fake::requests_received(&api).await;
    let sent = requests[0].to_string();
    assert!(
        sent.contains("Runs the widget test suite with make widgetcheck"),
        "{sent}"
    );
    let tool_setup = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "tool_setup")
        .unwrap()["detail"]
        .to_string();
    assert!(
        tool_setup.contains("Codex takes no commands: 1 left out"),
        "{tool_setup}"
    );
}
