//! Workflow runs and work chains from the terminal, end to end: the real Claude Code and OpenCode
//! CLIs (pinned) in real local sandboxes against fake model APIs, on a bare repository on disk, and
//! a mock GitHub (wiremock) for the chain's pull request.

mod support;

use std::process::Command as StdCommand;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::agent_cli::{output, record, run as json_of};
use support::fake_anthropic::{self, Mode};
use support::fake_openai_chat;
use support::{claude_code_bin, git, mock_github, opencode_bin, World};

const OPENROUTER_KEY: &str = "sk-or-v1-test-key-0123456789";

fn pass() -> Value {
    json!({"verdict": "pass", "findings": []})
}

fn fail(finding: &str) -> Value {
    json!({"verdict": "fail", "findings": [finding]})
}

/// `codecourier <args>` finding the real `claude` and `opencode` first on PATH, with both keys.
fn cli(world: &World, args: &[&str]) -> StdCommand {
    let path = std::env::join_paths(
        [claude_code_bin(), opencode_bin()]
            .into_iter()
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let mut cmd = world.std_cmd();
    cmd.env_remove("CODECOURIER_TOOLS_DIR")
        .env("PATH", path)
        .env("OPENROUTER_API_KEY", OPENROUTER_KEY)
        .args(args);
    cmd
}

fn create_workflow(world: &World, definition: Value) {
    let file = world
        .dir
        .path()
        .join(format!("{}.json", definition["name"].as_str().unwrap()));
    std::fs::write(&file, definition.to_string()).unwrap();
    let out = world
        .std_cmd()
        .args(["workflow", "create", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fake Anthropic API whose optimizer model (in the `two-models` workflow it creates) gets no
/// answer until the returned flag is set: a run waits in its optimizer step.
async fn hanging_optimizer(world: &World) -> (wiremock::MockServer, Arc<AtomicBool>) {
    let release = Arc::new(AtomicBool::new(false));
    let anthropic = fake_anthropic::start(Mode::HangsFor {
        model: "claude-haiku-4-5".into(),
        release: release.clone(),
        answers: vec![Some(pass())],
    })
    .await;
    create_workflow(
        world,
        json!({"name": "two-models", "optimizer_model": "claude-haiku-4-5"}),
    );
    (anthropic, release)
}

/// The record of the optimizer sandbox once one is running.
async fn running_optimizer(world: &World) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = world
            .std_cmd()
            .args(["sandboxes", "list", "--json"])
            .output()
            .unwrap();
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let optimizer = list.as_array().and_then(|l| {
            l.iter()
                .find(|s| s["workflow_step"] == "optimizer" && s["status"] == "running")
                .cloned()
        });
        if let Some(s) = optimizer {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the optimizer never started: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn steps(run: &Value) -> Vec<(String, u64, String)> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["round"].as_u64().unwrap(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_designs_opencode_checks_with_its_own_template_and_the_second_round_passes() {
    let world = World::new();
    let anthropic = fake_anthropic::start(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let openrouter = fake_openai_chat::start(fake_openai_chat::Mode::Verdicts(vec![
        fail("hello.txt needs a second line"),
        pass(),
    ]))
    .await;
    create_workflow(
        &world,
        json!({
            "name": "mixed",
            "checker_cli_id": "opencode",
            "checker_model": "openrouter/google/gemini-2.5-pro",
            "checker_template_id": "acme/checker:v2",
            "max_rounds": 3
        }),
    );
    let repo = world.origin.display().to_string();
    let (code, run, stderr) = json_of(cli(
        &world,
        &[
            "workflow",
            "run",
            "--json",
            "--repo",
            &repo,
            "--workflow",
            "mixed",
            "--prompt",
            "Create hello.txt",
            "--env",
            &format!("ANTHROPIC_BASE_URL={}", anthropic.uri()),
            "--env",
            &format!(
                "OPENROUTER_BASE_URL={}",
                fake_openai_chat::base_url(&openrouter)
            ),
        ],
    ))
    .await;
    assert_eq!(code, 0, "{run:#}\n{stderr}");
    assert_eq!(run["status"], "passed");
    // A failing check, then a second optimizer round, then a pass.
    assert_eq!(
        steps(&run),
        [
            ("designer".into(), 0, "completed".into()),
            ("optimizer".into(), 1, "completed".into()),
            ("checker".into(), 1, "completed".into()),
            ("optimizer".into(), 2, "completed".into()),
            ("checker".into(), 2, "completed".into()),
        ]
    );
    let all = run["steps"].as_array().unwrap();
    assert_eq!(all[2]["verdict"], "fail");
    assert_eq!(all[2]["findings"], json!(["hello.txt needs a second line"]));
    assert_eq!(all[4]["verdict"], "pass");
    // Each step's configuration as used, in the step and in its sandbox's record.
    for step in all {
        let record = record(&world, step["sandbox_id"].as_str().unwrap());
        assert_eq!(record["workflow_step"], step["step"]);
        assert_eq!(record["workflow_run_id"], run["id"]);
        assert_eq!(record["request"]["tool"], step["tool"]);
        assert_eq!(record["request"]["template"], step["template"]);
        assert_eq!(record["status"], "completed");
        if step["step"] == "checker" {
            assert_eq!(step["tool"], "opencode");
            assert_eq!(step["template"], "acme/checker:v2");
            assert_eq!(step["model"], "openrouter/google/gemini-2.5-pro");
            assert!(record["pushed"].is_null(), "the checker pushes nothing");
            assert_eq!(
                record["branch"], run["branch"],
                "it checked the run's branch"
            );
        } else {
            assert_eq!(step["tool"], "claude-code");
            assert_ne!(step["template"], "acme/checker:v2");
        }
    }
    // The work is on the run's branch; the second optimizer round was told the finding.
    let branch = run["branch"].as_str().unwrap();
    assert_eq!(world.file_on_branch(branch, "hello.txt"), "hello\n");
    let prompts = fake_anthropic::prompts_received(&anthropic).await;
    assert!(
        prompts
            .iter()
            .any(|p| p.contains("## What the checker found")
                && p.contains("hello.txt needs a second line")),
        "{prompts:#?}"
    );
    let checks = fake_openai_chat::requests(&openrouter).await;
    assert_eq!(checks.len(), 2);
    assert!(fake_openai_chat::text_of(&checks[0], "user").contains("You are the checker"));

    // The terminal's own view of the run.
    let out = world
        .std_cmd()
        .args(["workflow", "status", run["id"].as_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("— passed")
            && text.contains("checker 2 · opencode")
            && text.contains("✅ pass"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checker_that_always_fails_ends_the_run_failed_with_its_findings() {
    let world = World::new();
    let anthropic = fake_anthropic::start(Mode::Scan {
        answers: vec![Some(fail("the README still says Widgets"))],
    })
    .await;
    create_workflow(&world, json!({"name": "strict", "max_rounds": 2}));
    let repo = world.origin.display().to_string();
    let (code, stdout, stderr) = output(cli(
        &world,
        &[
            "workflow",
            "run",
            "--repo",
            &repo,
            "--workflow",
            "strict",
            "--prompt",
            "Create hello.txt",
            "--env",
            &format!("ANTHROPIC_BASE_URL={}", anthropic.uri()),
        ],
    ))
    .await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    // The live timeline on standard error, the record on standard output.
    assert!(stderr.contains("▶ designer · claude-code"), "{stderr}");
    assert!(
        stderr.contains("■ checker completed · verdict fail"),
        "{stderr}"
    );
    assert!(stdout.contains("— failed"), "{stdout}");
    assert!(
        stdout.contains("the checker still found problems after 2 optimizer rounds"),
        "{stdout}"
    );
    assert!(
        stdout.contains("finding   the README still says Widgets"),
        "{stdout}"
    );
    // Claude Code as the checker answered through its structured output.
    let requests = anthropic.received_requests().await.unwrap();
    assert!(requests.iter().any(|r| {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        body["tools"].as_array().is_some_and(|t| {
            t.iter().any(|t| {
                t["name"] == "StructuredOutput"
                    && t["input_schema"]["properties"]["verdict"].is_object()
            })
        })
    }));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_during_the_optimizer_resumes_without_repeating_the_designer() {
    let world = World::new();
    let (anthropic, release) = hanging_optimizer(&world).await;
    let repo = world.origin.display().to_string();
    let mut child = cli(
        &world,
        &[
            "workflow",
            "run",
            "--json",
            "--repo",
            &repo,
            "--workflow",
            "two-models",
            "--prompt",
            "Create hello.txt",
            "--env",
            &format!("ANTHROPIC_BASE_URL={}", anthropic.uri()),
        ],
    )
    .spawn()
    .unwrap();
    let run_id = running_optimizer(&world).await["workflow_run_id"]
        .as_str()
        .unwrap()
        .to_string();
    child.kill().unwrap(); // SIGKILL: CodeCourier gets no chance to record anything
    child.wait().unwrap();
    release.store(true, Ordering::SeqCst);

    let (code, run, stderr) =
        json_of(cli(&world, &["workflow", "resume", "--json", &run_id])).await;
    assert_eq!(code, 0, "{run:#}\n{stderr}");
    assert_eq!(run["status"], "passed");
    assert_eq!(
        steps(&run),
        [
            ("designer".into(), 0, "completed".into()),
            ("optimizer".into(), 1, "interrupted".into()),
            ("optimizer".into(), 1, "completed".into()),
            ("checker".into(), 1, "completed".into()),
        ]
    );
    let out = world
        .std_cmd()
        .args(["sandboxes", "list", "--json"])
        .output()
        .unwrap();
    let sandboxes: Value = serde_json::from_slice(&out.stdout).unwrap();
    let designers = sandboxes
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["workflow_step"] == "designer")
        .count();
    assert_eq!(designers, 1, "the designer ran once");
    // The interrupted optimizer's sandbox was ended with the reason.
    let interrupted = record(&world, run["steps"][1]["sandbox_id"].as_str().unwrap());
    assert_eq!(interrupted["status"], "failed");
    assert!(interrupted["error"]
        .as_str()
        .unwrap()
        .contains("CodeCourier restarted"));
    let branch = run["branch"].as_str().unwrap();
    assert_eq!(world.file_on_branch(branch, "hello.txt"), "hello\n");
    // A finished run has nothing left to resume.
    let (code, again, _) = json_of(cli(&world, &["workflow", "resume", "--json", &run_id])).await;
    assert_eq!(code, 0);
    assert_eq!(again["steps"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_of_three_issues_leaves_three_commits_on_one_branch_and_one_pull_request() {
    let world = World::new();
    let github = mock_github::start(&world).await;
    let anthropic = fake_anthropic::start(Mode::Scan {
        answers: vec![Some(pass())],
    })
    .await;
    let uri = github.uri();
    let mut cmd = cli(
        &world,
        &[
            "chain",
            "run",
            "--json",
            "--repo",
            "acme/widgets",
            "--item",
            "Create alpha.txt",
            "--item",
            "Create beta.txt",
            "--item",
            "Create gamma.txt",
            "--env",
            &format!("ANTHROPIC_BASE_URL={}", anthropic.uri()),
        ],
    );
    cmd.env("GITHUB_API_URL", &uri)
        .env("GITHUB_TOKEN", mock_github::TOKEN);
    let (code, chain, stderr) = json_of(cmd).await;
    assert_eq!(code, 0, "{chain:#}\n{stderr}");
    assert_eq!(chain["status"], "passed");
    let runs = chain["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let branch = chain["branch"].as_str().unwrap();
    for (run, name) in runs.iter().zip(["alpha", "beta", "gamma"]) {
        assert_eq!(run["status"], "passed");
        assert_eq!(run["branch"], branch, "every issue on the chain's branch");
        assert_eq!(
            world.file_on_branch(branch, &format!("{name}.txt")),
            format!("{name}\n")
        );
    }
    // Three commits on the branch, one per issue, in order.
    let log = git(
        &world.origin,
        &["log", "--format=%s", &format!("main..{branch}")],
    );
    assert_eq!(log.lines().count(), 3, "{log}");
    // One pull request listing all three with their outcome.
    let prs = mock_github::pull_requests(&github).await;
    assert_eq!(prs.len(), 1, "{prs:#?}");
    let body = prs[0]["body"].as_str().unwrap();
    for expected in [
        "1. **Create alpha.txt** — ✅ passed",
        "2. **Create beta.txt** — ✅ passed",
        "3. **Create gamma.txt** — ✅ passed",
    ] {
        assert!(body.contains(expected), "{expected} not in {body}");
    }
    assert_eq!(prs[0]["head"], branch);
    assert_eq!(prs[0]["draft"], true);
    assert_eq!(chain["pr_url"], mock_github::PULL_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_github_issue_is_a_task_and_a_passed_run_opens_its_pull_request() {
    use wiremock::matchers::{method, path};
    let world = World::new();
    let github = mock_github::start(&world).await;
    wiremock::Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/issues/7"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(
            json!({"number": 7, "title": "Create delta.txt", "body": "The docs need a delta file."}),
        ))
        .mount(&github)
        .await;
    let anthropic = fake_anthropic::start(Mode::Scan {
        answers: vec![Some(pass())],
    })
    .await;
    let mut cmd = cli(
        &world,
        &[
            "workflow",
            "run",
            "--json",
            "--repo",
            "acme/widgets",
            "--github-issue",
            "7",
            "--env",
            &format!("ANTHROPIC_BASE_URL={}", anthropic.uri()),
        ],
    );
    cmd.env("GITHUB_API_URL", github.uri())
        .env("GITHUB_TOKEN", mock_github::TOKEN);
    let (code, run, stderr) = json_of(cmd).await;
    assert_eq!(code, 0, "{run:#}\n{stderr}");
    assert_eq!(run["task"]["title"], "#7 Create delta.txt");
    assert_eq!(run["task"]["source"], "github #7");
    let branch = run["branch"].as_str().unwrap();
    assert_eq!(world.file_on_branch(branch, "delta.txt"), "delta\n");
    let prs = mock_github::pull_requests(&github).await;
    assert_eq!(prs.len(), 1);
    let body = prs[0]["body"].as_str().unwrap();
    assert!(
        body.contains("The docs need a delta file.")
            && body.contains("### Workflow `default` passed"),
        "{body}"
    );
    assert_eq!(run["pr_url"], mock_github::PULL_REQUEST);
    // A number the repository does not have is refused before anything runs.
    let mut cmd = cli(
        &world,
        &[
            "workflow",
            "run",
            "--repo",
            "acme/widgets",
            "--github-issue",
            "8",
        ],
    );
    cmd.env("GITHUB_API_URL", github.uri())
        .env("GITHUB_TOKEN", mock_github::TOKEN);
    let (code, _, stderr) = output(cmd).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("issue #8"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_whose_second_issue_fails_stops_there_and_says_so() {
    let world = World::new();
    // The first check passes; the second issue's check fails, and one round is all it gets.
    let anthropic = fake_anthropic::start(Mode::Scan {
        answers: vec![Some(pass()), Some(fail("beta.txt is not what was asked"))],
    })
    .await;
    create_workflow(&world, json!({"name": "one-round", "max_rounds": 1}));
    let repo = world.origin.display().to_string();
    let (code, chain, stderr) = json_of(cli(
        &world,
        &[
            "chain",
            "run",
            "--json",
            "--repo",
            &repo,
            "--workflow",
            "one-round",
            "--item",
            "Create alpha.txt",
            "--item",
            "Create beta.txt",
            "--item",
            "Create gamma.txt",
            "--env",
            &format!("ANTHROPIC_BASE_URL={}", anthropic.uri()),
        ],
    ))
    .await;
    assert_eq!(code, 1, "{chain:#}\n{stderr}");
    assert_eq!(chain["status"], "failed");
    let error = chain["error"].as_str().unwrap();
    assert!(
        error.starts_with("issue 2 (Create beta.txt) failed")
            && error.contains("the chain stopped there (1 of 3 issues not run)"),
        "{error}"
    );
    let runs = chain["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "the third issue never ran");
    assert_eq!(runs[0]["status"], "passed");
    assert_eq!(runs[1]["status"], "failed");
    assert_eq!(
        runs[1]["findings"],
        json!(["beta.txt is not what was asked"])
    );
    let out = world
        .std_cmd()
        .args(["chain", "show", chain["id"].as_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3. Create gamma.txt — not run"), "{text}");
}

#[test]
fn bad_workflows_and_chains_are_refused_before_anything_runs() {
    let world = World::new();
    let repo = world.origin.display().to_string();
    let refuse = |args: &[&str], expected: &[&str]| {
        let out = world.std_cmd().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        for e in expected {
            assert!(stderr.contains(e), "{e} not in {stderr}");
        }
    };
    refuse(
        &[
            "workflow",
            "run",
            "--repo",
            &repo,
            "--workflow",
            "nope",
            "--prompt",
            "x",
        ],
        &["there is no workflow named \"nope\"; there are: default"],
    );
    let bad = world.dir.path().join("bad.json");
    std::fs::write(
        &bad,
        json!({"name": "bad", "designer_cli_id": "cursor", "checker_cli_id": "opencode", "checker_model": "claude-sonnet-4-6"}).to_string(),
    )
    .unwrap();
    refuse(
        &["workflow", "create", "--file", bad.to_str().unwrap()],
        &["designer_cli_id", "checker_model", "checker step"],
    );
    refuse(
        &["chain", "run", "--repo", &repo],
        &["the chain has no issues"],
    );
    refuse(
        &[
            "workflow",
            "run",
            "--repo",
            &repo,
            "--prompt",
            "x",
            "--max-cost-usd",
            "-1",
        ],
        &["--max-cost-usd must be more than $0 (got -1)"],
    );
    refuse(
        &[
            "workflow",
            "run",
            "--repo",
            &repo,
            "--prompt",
            "x",
            "--max-tokens",
            "0",
        ],
        &["max_tokens: must be a positive number"],
    );
    let costly = world.dir.path().join("costly.json");
    std::fs::write(
        &costly,
        json!({"name": "costly", "max_cost_usd": 0}).to_string(),
    )
    .unwrap();
    refuse(
        &["workflow", "create", "--file", costly.to_str().unwrap()],
        &["max_cost_usd: must be a positive number"],
    );
    let named_default = world.dir.path().join("default.json");
    std::fs::write(&named_default, json!({"name": "default"}).to_string()).unwrap();
    refuse(
        &[
            "workflow",
            "create",
            "--file",
            named_default.to_str().unwrap(),
        ],
        &["\"default\" is the built-in workflow's name"],
    );
    let mut many = vec!["chain", "run", "--repo", repo.as_str()];
    for _ in 0..4 {
        many.extend(["--item", "Create a.txt"]);
    }
    let out = world
        .std_cmd()
        .args(&many)
        .env("CODECOURIER_MAX_CHAIN_ITEMS", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the chain has 4 issues; at most 3"));
    // Nothing was recorded.
    let out = world
        .std_cmd()
        .args(["sandboxes", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_killed_mid_issue_resumes_at_that_issue_and_step() {
    let world = World::new();
    let (anthropic, release) = hanging_optimizer(&world).await;
    let repo = world.origin.display().to_string();
    let mut child = cli(
        &world,
        &[
            "chain",
            "run",
            "--json",
            "--repo",
            &repo,
            "--workflow",
            "two-models",
            "--item",
            "Create alpha.txt",
            "--item",
            "Create beta.txt",
            "--env",
            &format!("ANTHROPIC_BASE_URL={}", anthropic.uri()),
        ],
    )
    .spawn()
    .unwrap();
    let chain_id = running_optimizer(&world).await["work_chain_id"]
        .as_str()
        .unwrap()
        .to_string();
    child.kill().unwrap();
    child.wait().unwrap();
    release.store(true, Ordering::SeqCst);

    let (code, chain, stderr) =
        json_of(cli(&world, &["chain", "resume", "--json", &chain_id])).await;
    assert_eq!(code, 0, "{chain:#}\n{stderr}");
    assert_eq!(chain["status"], "passed");
    let runs = chain["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        steps(&runs[0]),
        [
            ("designer".into(), 0, "completed".into()),
            ("optimizer".into(), 1, "interrupted".into()),
            ("optimizer".into(), 1, "completed".into()),
            ("checker".into(), 1, "completed".into()),
        ]
    );
    assert_eq!(runs[1]["status"], "passed");
    let branch = chain["branch"].as_str().unwrap();
    assert_eq!(world.file_on_branch(branch, "alpha.txt"), "alpha\n");
    assert_eq!(world.file_on_branch(branch, "beta.txt"), "beta\n");
    let out = world
        .std_cmd()
        .args(["sandboxes", "list", "--json"])
        .output()
        .unwrap();
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let designers = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["workflow_step"] == "designer")
        .count();
    assert_eq!(designers, 2, "one designer per issue, none repeated");
}

/// `workflow run` or `chain run` of the stand-in agent calling the fake Messages API until it is
/// stopped, with a budget for the whole job.
fn budgeted(world: &World, api: &wiremock::MockServer, job: &[&str]) -> StdCommand {
    let mut cmd = world.std_cmd();
    cmd.args(job)
        .arg("--repo")
        .arg(&world.origin)
        .args(["--env", "FAKE_CLAUDE=model", "--max-cost-usd", "0.002"])
        .args(["--env", &format!("ANTHROPIC_BASE_URL={}", api.uri())])
        .arg("--json");
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_budget_stops_the_run_inside_its_step_and_keeps_the_work() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let run = budgeted(
        &world,
        &api,
        &["workflow", "run", "--prompt", "Keep calling the model"],
    );
    let (code, run, stderr) = json_of(run).await;
    assert_eq!(code, 1, "{run:#}\n{stderr}");
    assert_eq!(run["status"], "stopped", "{run:#}");
    // Each answer costs $0.0006: the designer was stopped at the fourth, the run said why.
    assert_eq!(
        run["error"], "budget of $0.0020 for the whole run reached after $0.0024",
        "{run:#}"
    );
    assert_eq!(steps(&run), [("designer".to_string(), 0, "stopped".into())]);
    assert_eq!(api.received_requests().await.unwrap().len(), 4);
    // The step ran with what was left of the run's budget, and its commit reached the branch.
    let designer = record(&world, run["steps"][0]["sandbox_id"].as_str().unwrap());
    assert_eq!(
        designer["request"]["budget"]["max_cost_usd"], 0.002,
        "{designer:#}"
    );
    let branch = run["branch"].as_str().unwrap();
    assert_eq!(world.file_on_branch(branch, "first.txt"), "first\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_budget_covers_every_issue_and_stops_the_chain_where_it_is_reached() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let chain = budgeted(
        &world,
        &api,
        &[
            "chain",
            "run",
            "--item",
            "Call the model",
            "--item",
            "Never run",
        ],
    );
    let (code, chain, stderr) = json_of(chain).await;
    assert_eq!(code, 1, "{chain:#}\n{stderr}");
    assert_eq!(chain["status"], "stopped", "{chain:#}");
    assert_eq!(
        chain["error"],
        "budget of $0.0020 for the whole chain reached after $0.0024; stopped at issue 1 (Call the model)",
        "{chain:#}"
    );
    assert_eq!(chain["runs"].as_array().unwrap().len(), 1, "{chain:#}");
    assert_eq!(api.received_requests().await.unwrap().len(), 4);
}
