//! Issue sessions from the terminal: `codecourier scan` runs the real Claude Code CLI (pinned,
//! installed from npm by the test setup) in a real local sandbox against a fake Anthropic API that
//! answers through Claude Code's structured output.

mod support;

use std::process::Command as StdCommand;

use serde_json::{json, Value};
use support::agent_cli::{output, run, with_real_cli};
use support::fake_anthropic::{self, Mode, SCAN_TEXT_ANSWER};
use support::{claude_code_bin, World};

fn issue(title: &str, severity: &str) -> Value {
    json!({
        "title": title,
        "description": format!("{title}: what is wrong and why it matters."),
        "severity": severity,
        "category": "security",
        "files": [{"path": "src/db.rs", "start_line": 10, "end_line": 20}],
        // A secret the agent saw must not reach the record.
        "evidence": format!("format!(\"SELECT … {{}}\", name) with key {}", support::API_KEY),
        "suggested_fix": "Use a bound parameter.",
        "effort": "small"
    })
}

/// `codecourier scan --repo <origin>` with the real `claude` against the fake API.
fn scan(world: &World, api: &str, args: &[&str]) -> StdCommand {
    let mut cmd = world.std_cmd();
    cmd.args(["scan", "--repo"]).arg(&world.origin).args(args);
    with_real_cli(
        &mut cmd,
        &claude_code_bin(),
        "ANTHROPIC_API_KEY",
        support::API_KEY,
        ("ANTHROPIC_BASE_URL", api),
    );
    cmd
}

async fn scan_json(world: &World, api: &str, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    run(scan(world, api, &all)).await
}

fn titles(r: &Value) -> Vec<&str> {
    r["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_of_a_local_repository_prints_the_session_and_its_issues() {
    let world = World::new();
    let answer = json!({"issues": [
        issue("Debug logging of request bodies", "low"),
        issue("SQL built from user input", "critical"),
        issue("Session cookie without Secure", "high"),
    ]});
    let api = fake_anthropic::start(Mode::Scan {
        answers: vec![Some(answer)],
    })
    .await;
    let (code, r, stderr) = scan_json(
        &world,
        &api.uri(),
        &["--focus", "security", "--max-issues", "5"],
    )
    .await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    let session = &r["session"];
    assert_eq!(session["status"], "completed");
    assert_eq!(session["focus"], "security");
    assert_eq!(session["max_issues"], 5);
    assert_eq!(session["tool"], "claude-code");
    // Most severe first, numbered from 1, every field kept.
    assert_eq!(
        titles(&r),
        [
            "SQL built from user input",
            "Session cookie without Secure",
            "Debug logging of request bodies"
        ]
    );
    let first = &r["issues"][0];
    assert_eq!(first["position"], 1);
    assert_eq!(first["severity"], "critical");
    assert_eq!(
        first["files"][0],
        json!({"path": "src/db.rs", "start_line": 10, "end_line": 20})
    );
    assert_eq!(first["suggested_fix"], "Use a bound parameter.");
    assert_eq!(first["effort"], "small");
    assert!(first["github_issue_url"].is_null());
    assert!(
        !r.to_string().contains(support::API_KEY),
        "a planted key reached the record"
    );
    assert!(
        first["evidence"].as_str().unwrap().contains("[redacted]"),
        "{first:#}"
    );

    // One sandbox, linked to the session, read-only: no branch, nothing pushed.
    let sandbox = &r["sandbox"];
    assert_eq!(sandbox["status"], "completed");
    assert_eq!(session["sandbox_id"], sandbox["id"]);
    assert!(sandbox["branch"].is_null());
    assert!(sandbox["pushed"].is_null());
    assert_eq!(world.branches(), ["main"]);
    assert!(sandbox["cost_usd"].as_f64().unwrap() > 0.0);

    // The CLI got the schema as its StructuredOutput tool, and the scanning prompt.
    let requests = api.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let tool = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "StructuredOutput")
        .expect("StructuredOutput offered");
    assert_eq!(
        tool["input_schema"]["properties"]["issues"]["items"]["properties"]["severity"]["enum"],
        json!(["critical", "high", "medium", "low"])
    );
    let prompts = fake_anthropic::prompts_received(&api).await;
    assert!(prompts[0].contains("focusing on: security"), "{prompts:?}");
    assert!(prompts[0].contains("at most 5 issues"), "{prompts:?}");

    // The session is in the history and can be shown again.
    let id = session["id"].as_str().unwrap();
    let out = world
        .std_cmd()
        .args(["scan", "show", "--json", &id[..8]])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(titles(&shown), titles(&r));
    let out = world
        .std_cmd()
        .args(["scan", "history", "--json"])
        .output()
        .unwrap();
    let history: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history[0]["id"], session["id"]);
    let out = world.std_cmd().args(["scan", "history"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&id[..8]) && table.contains("completed"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_outside_the_form_gets_one_repair_request() {
    let world = World::new();
    // The CLI's own schema check passes this; ours does not (the range runs backwards).
    let mut backwards = issue("Off-by-one in pagination", "medium");
    backwards["files"][0] = json!({"path": "src/page.rs", "start_line": 40, "end_line": 12});
    let api = fake_anthropic::start(Mode::Scan {
        answers: vec![
            Some(json!({"issues": [backwards]})),
            Some(json!({"issues": [issue("Off-by-one in pagination", "medium")]})),
        ],
    })
    .await;
    let (code, r, stderr) = scan_json(&world, &api.uri(), &[]).await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert_eq!(r["session"]["status"], "completed");
    assert_eq!(titles(&r), ["Off-by-one in pagination"]);
    let prompts = fake_anthropic::prompts_received(&api).await;
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(
        prompts[1].contains("could not be used")
            && prompts[1].contains("issues[0].files[0].end_line: 12 comes before start_line 40"),
        "{}",
        prompts[1]
    );
    // Both runs are paid for: the record's cost is their sum.
    let single = 0.0012 / 2.0;
    let cost = r["sandbox"]["cost_usd"].as_f64().unwrap();
    assert!(cost > single, "cost {cost}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_that_stays_unusable_fails_with_the_raw_answer_kept() {
    let world = World::new();
    // Plain text every time: the CLI nudges once per run, then gives up with the text.
    let api = fake_anthropic::start(Mode::Scan {
        answers: vec![None],
    })
    .await;
    let (code, r, stderr) = scan_json(&world, &api.uri(), &[]).await;
    assert_eq!(code, 1, "{r:#}\n{stderr}");
    let session = &r["session"];
    assert_eq!(session["status"], "failed");
    let error = session["error"].as_str().unwrap();
    assert!(
        error.contains("did not follow the issue format, even after one repair request")
            && error.contains("no fenced ```json block"),
        "{error}"
    );
    let raw = session["raw_output"].as_str().unwrap();
    assert!(
        raw.contains("First answer:") && raw.contains("Answer to the repair request:"),
        "{raw}"
    );
    assert_eq!(raw.matches(SCAN_TEXT_ANSWER).count(), 2, "{raw}");
    assert_eq!(r["issues"], json!([]));
    assert_eq!(r["sandbox"]["status"], "failed");
    assert_eq!(r["sandbox"]["failed_phase"], "agent");
    // Exactly one repair: two runs of two requests each (the CLI's own nudge included).
    assert_eq!(api.received_requests().await.unwrap().len(), 4);

    // The terminal shows the answer as given.
    let out = world
        .std_cmd()
        .args(["scan", "show", session["id"].as_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("the agent's answer, as given") && text.contains(SCAN_TEXT_ANSWER),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_that_finds_nothing_says_so() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Scan {
        answers: vec![Some(json!({"issues": []}))],
    })
    .await;
    let (code, stdout, stderr) = output(scan(&world, &api.uri(), &[])).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("— completed"), "{stdout}");
    assert!(
        stdout.contains("Nothing found: the scan reported no issues."),
        "{stdout}"
    );
    // The live display showed the phases on standard error, as a launch does.
    assert!(
        stderr.contains("Scanning ") && stderr.contains("issue session"),
        "{stderr}"
    );
    assert!(stderr.contains("read-only scan"), "{stderr}");
}

#[test]
fn bad_scan_options_are_refused_before_anything_runs() {
    let world = World::new();
    let long_focus = "x".repeat(501);
    let out = world
        .std_cmd()
        .args(["scan", "--repo"])
        .arg(&world.origin)
        .args([
            "--max-issues",
            "0",
            "--focus",
            &long_focus,
            "--tool",
            "cursor",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "--max-issues: is 0; it must be between 1 and 100",
        "--focus: is 501 characters; the limit is 500",
        "--tool:",
    ] {
        assert!(stderr.contains(expected), "{expected} not in {stderr}");
    }
    let out = world.std_cmd().args(["scan", "history"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("No issue sessions yet"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_killed_outright_ends_its_session_at_the_next_command() {
    let world = World::new();
    // The model API never answers: the scan waits in its agent phase.
    let api = fake_anthropic::start(Mode::Silent).await;
    let mut child = scan(&world, &api.uri(), &["--json"]).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let session = loop {
        let out = world
            .std_cmd()
            .args(["sandboxes", "list", "--json"])
            .output()
            .unwrap();
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(r) = list
            .as_array()
            .and_then(|l| l.iter().find(|r| r["status"] == "running"))
        {
            break r["issue_session_id"].as_str().unwrap().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scan never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    child.kill().unwrap(); // SIGKILL: nothing recorded on the way out
    child.wait().unwrap();
    let out = world
        .std_cmd()
        .args(["scan", "show", "--json", &session])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["session"]["status"], "failed", "{r:#}");
    assert!(
        r["session"]["error"]
            .as_str()
            .unwrap()
            .contains("CodeCourier restarted during the run"),
        "{r:#}"
    );
    assert_eq!(r["sandbox"]["status"], "failed");
}
