//! Workflow runs and work chains from Discord, end to end: the real serenity/poise bot against the
//! fake Discord, the real Claude Code CLI in local sandboxes against the fake Anthropic API, on a
//! bare repository on disk. Each test reads everything the bot posted (`bot.finish()` checks).

mod support;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde_json::{json, Value};
use support::discord_bot::*;
use support::fake_anthropic::{self, Mode};
use support::fake_discord::*;
use support::World;

async fn start_claude(mode: Mode) -> (Bot, wiremock::MockServer) {
    start_claude_bot(mode, &[]).await
}

fn verdict(pass: bool, finding: &str) -> Value {
    if pass {
        json!({"verdict": "pass", "findings": []})
    } else {
        json!({"verdict": "fail", "findings": [finding]})
    }
}

/// `/workflow run task:<task>` plus `options`, by Alice.
fn workflow_run(bot: &Bot, task: &str, options: &[(&str, Value)]) -> Interaction {
    let mut all = vec![("task", task.into())];
    all.extend_from_slice(options);
    bot.slash(alice(), "workflow run", &all)
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_run_shows_the_step_timeline_in_its_thread() {
    let (bot, api) = start_claude(Mode::Scan {
        answers: vec![
            Some(verdict(false, "hello.txt needs a second line")),
            Some(verdict(true, "")),
        ],
    })
    .await;
    let run = workflow_run(&bot, "Create hello.txt", &[]);
    let summary = bot.public_reply(&run).await;
    assert!(
        summary.starts_with("🔁 **Workflow `default`**")
            && summary
                .contains("designer Claude Code → optimizer Claude Code → checker Claude Code"),
        "{summary}"
    );
    let thread = bot.run_thread().await;
    let result = bot.next_message(thread.id).await;
    let text = content(&result);
    assert!(text.contains("workflow `default` · run"), "{text}");
    assert!(
        text.starts_with(&format!("{} **✅ passed**", alice().mention())),
        "{text}"
    );
    assert!(text.contains("5 steps"), "{text}");
    // The timeline's last edit: every step with its tool, model and verdict; no Stop any more.
    let timeline = bot.final_status(&thread).await;
    let text = content(&timeline);
    for expected in [
        "— ✅ passed",
        "✅ **designer** · Claude Code · `claude-sonnet-4-6`",
        "✅ **optimizer** 1 · Claude Code",
        "❌ **checker** 1 · Claude Code · `claude-sonnet-4-6` · verdict fail (1 finding)",
        "✅ **optimizer** 2",
        "✅ **checker** 2 · Claude Code · `claude-sonnet-4-6` · verdict pass",
        "🌿 `codecourier/wf-",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    let prompts = fake_anthropic::prompts_received(&api).await;
    assert!(prompts
        .iter()
        .any(|p| p.contains("hello.txt needs a second line")));
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_ends_the_current_sandbox_and_the_run() {
    // The model never answers: the designer waits until it is stopped.
    let (bot, _api) = start_claude(Mode::HangsFor {
        model: "claude-sonnet-4-6".into(),
        release: Arc::new(AtomicBool::new(false)),
        answers: Vec::new(),
    })
    .await;
    let run = workflow_run(&bot, "Create hello.txt", &[]);
    bot.public_reply(&run).await;
    let thread = bot.run_thread().await;
    // While a step runs, the timeline shows its phases live (the agent waits here until stopped).
    let timeline = bot
        .wait_message(&thread.status, "the designer's agent at work", |m| {
            content(m).contains("— ⏳ running")
                && content(m).contains("⏳ **designer**")
                && content(m).contains("\u{2003}⏳ **agent**")
        })
        .await;
    // Someone else may not stop it.
    let refused = bot.press(bob(), &timeline, "Stop");
    let text = bot.ephemeral_reply(&refused).await;
    assert!(
        text.starts_with("Only the person who started this"),
        "{text}"
    );
    let stop = bot.press(alice(), &timeline, "Stop");
    let text = bot.ephemeral_reply(&stop).await;
    assert!(text.starts_with("Stopping"), "{text}");
    let result = bot.next_message(thread.id).await;
    assert!(
        content(&result).contains("workflow `default` · run")
            && content(&result).contains("**🛑 stopped**"),
        "{}",
        content(&result)
    );
    let sandbox = &bot.cli(&["sandboxes", "list", "--json"])[0];
    assert_eq!(sandbox["status"], "stopped");
    assert_eq!(sandbox["workflow_step"], "designer");
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fix_as_a_chain_from_a_scans_list_runs_the_issues_on_one_branch() {
    let issue = |title: &str| {
        json!({"title": title, "description": "d", "severity": "medium", "category": "docs",
               "files": [], "evidence": "e", "suggested_fix": "f", "effort": "trivial"})
    };
    // The scan's answer first, then every checker passes.
    let (bot, _api) = start_claude(Mode::Scan {
        answers: vec![
            Some(json!({"issues": [issue("Create alpha.txt"), issue("Create beta.txt"), issue("Create gamma.txt")]})),
            Some(verdict(true, "")),
        ],
    })
    .await;
    let scan = bot.slash(alice(), "scan run", &[]);
    bot.public_reply(&scan).await;
    let scan_thread = bot.run_thread().await;
    let list = bot.next_message(scan_thread.id).await;
    assert!(
        content(&list).contains("scan** · session"),
        "{}",
        content(&list)
    );
    let pick = bot.choose(alice(), &list, &["1", "3"]);
    let chosen = bot.reply(&pick).await.message().clone();
    let chain = bot.press(alice(), &chosen, "Fix as a chain");
    let answer = bot.deferred_answer(&chain).await;
    assert!(answer.contains("started with 2 issues"), "{answer}");
    // The chain announces itself in the scan's channel and runs in a thread of its own.
    let announced = bot.next_message(CHANNEL_ID).await;
    assert!(
        content(&announced).starts_with("⛓ **Work chain** of 2 issues"),
        "{}",
        content(&announced)
    );
    let chain_thread = bot.run_thread().await;
    let result = bot.next_message(chain_thread.id).await;
    let text = content(&result);
    assert!(
        text.contains("work chain `") && text.contains("**✅ passed**"),
        "{text}"
    );
    assert!(
        text.contains("1. Create alpha.txt — ✅ passed")
            && text.contains("2. Create gamma.txt — ✅ passed"),
        "{text}"
    );
    let timeline = bot.final_status(&chain_thread).await;
    assert!(
        content(&timeline).contains("**Issues**")
            && content(&timeline).contains("— ✅ passed")
            && content(&timeline).contains("✅ 2. Create gamma.txt"),
        "{}",
        content(&timeline)
    );
    // Both issues' work is on the chain's one branch.
    let sandboxes = bot.cli(&["sandboxes", "list", "--json"]);
    let branch = sandboxes
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["workflow_step"] == "designer")
        .unwrap()["branch"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(branch.starts_with("codecourier/chain-"), "{branch}");
    assert_eq!(bot.world.file_on_branch(&branch, "alpha.txt"), "alpha\n");
    assert_eq!(bot.world.file_on_branch(&branch, "gamma.txt"), "gamma\n");
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_create_checks_the_form_and_stores_the_workflow() {
    let (bot, _api) = start_claude(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    // Members who may not manage the server cannot define workflows.
    let refused = bot.slash(bob(), "workflow create", &[]);
    let text = bot.ephemeral_reply(&refused).await;
    assert!(text.starts_with("Only a server manager"), "{text}");
    let manager = User::manager(ALICE);
    let create = bot.slash(manager, "workflow create", &[]);
    let form = bot.modal(&create).await;
    // An unknown tool and a model of another tool: refused, by field.
    let bad = bot
        .submit_modal(
            manager,
            &form,
            &[
                ("name", "careful"),
                ("tools", "cursor, , opencode"),
                ("models", ", , claude-sonnet-4-6"),
                ("checker_template", ""),
                ("max_rounds", "2"),
            ],
        )
        .await;
    let text = bot.ephemeral_reply(&bad).await;
    assert!(
        text.starts_with("That workflow is not valid")
            && text.contains("**designer_cli_id**")
            && text.contains("**checker_model**"),
        "{text}"
    );
    let ok = bot
        .submit_modal(
            manager,
            &form,
            &[
                ("name", "careful"),
                ("tools", ", , opencode"),
                ("models", ""),
                ("checker_template", "acme/checker:v2"),
                ("max_rounds", "2"),
            ],
        )
        .await;
    let text = bot.ephemeral_reply(&ok).await;
    assert!(
        text.contains("Workflow `careful` saved: designer Claude Code → optimizer Claude Code → checker OpenCode"),
        "{text}"
    );
    let list = bot.slash(alice(), "workflow list", &[]);
    let text = bot.ephemeral_reply(&list).await;
    assert!(text.contains("`default`") && text.contains("`careful` — designer Claude Code → optimizer Claude Code → checker OpenCode · up to 2 rounds"), "{text}");
    let show = bot.slash(alice(), "workflow show", &[("name", "careful".into())]);
    let text = bot.ephemeral_reply(&show).await;
    assert!(
        text.contains("**checker** · OpenCode") && text.contains("template `acme/checker:v2`"),
        "{text}"
    );
    // An unknown workflow is refused before anything runs.
    let unknown = workflow_run(&bot, "x", &[("workflow", "nope".into())]);
    let text = bot.ephemeral_reply(&unknown).await;
    assert!(
        text.contains("there is no workflow named \"nope\"; there are: default, careful"),
        "{text}"
    );
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bot_killed_during_the_optimizer_resumes_the_run_in_its_thread() {
    let world = World::new();
    let release = Arc::new(AtomicBool::new(false));
    let api = fake_anthropic::start(Mode::HangsFor {
        model: "claude-haiku-4-5".into(),
        release: release.clone(),
        answers: vec![Some(verdict(true, ""))],
    })
    .await;
    let file = world.dir.path().join("wf.json");
    std::fs::write(
        &file,
        json!({"name": "two-models", "optimizer_model": "claude-haiku-4-5"}).to_string(),
    )
    .unwrap();
    let out = world
        .std_cmd()
        .args(["workflow", "create", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let tools = support::claude_code_tools_dir();
    let mut bot = start_bot_process(world, FakeDiscord::start().await, move |cmd| {
        cmd.env("CODECOURIER_TOOLS_DIR", &tools);
    })
    .await;
    bind_project(&bot, &[("ANTHROPIC_BASE_URL", &api.uri())]).await;
    let run = workflow_run(
        &bot,
        "Create hello.txt",
        &[("workflow", "two-models".into())],
    );
    bot.public_reply(&run).await;
    let thread = bot.run_thread().await;
    // The optimizer's model never answers until released: kill the bot while it waits.
    bot.wait_message(&thread.status, "the optimizer's agent at work", |m| {
        content(m).contains("⏳ **optimizer**") && content(m).contains("\u{2003}⏳ **agent**")
    })
    .await;
    let list = bot.cli(&["sandboxes", "list", "--json"]);
    let optimizer = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["workflow_step"] == "optimizer" && s["status"] == "running")
        .unwrap_or_else(|| panic!("no optimizer running: {list:#}"));
    let run_id = optimizer["workflow_run_id"].as_str().unwrap().to_string();
    bot.kill(); // SIGKILL
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    bot.restart().await;
    // The restarted bot picks the run up in the same thread, with a timeline of its own.
    let resumed = bot.next_message(thread.id).await;
    assert!(
        content(&resumed).contains("CodeCourier restarted"),
        "{}",
        content(&resumed)
    );
    let result = bot.next_message(thread.id).await;
    assert!(
        content(&result).contains("workflow `two-models` · run")
            && content(&result).contains("**✅ passed**"),
        "{}",
        content(&result)
    );
    let run = bot.cli(&["workflow", "status", "--json", &run_id]);
    let steps: Vec<(String, String)> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("designer".to_string(), "completed".to_string()),
            ("optimizer".into(), "interrupted".into()),
            ("optimizer".into(), "completed".into()),
            ("checker".into(), "completed".into()),
        ]
    );
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_chain_runs_lines_of_text_on_one_branch() {
    let (bot, _api) = start_claude(Mode::Scan {
        answers: vec![Some(verdict(true, ""))],
    })
    .await;
    // Nothing to run: refused.
    let empty = bot.slash(alice(), "workflow chain", &[("issues", " ; ".into())]);
    let text = bot.ephemeral_reply(&empty).await;
    assert!(text.contains("the chain has no issues"), "{text}");
    let chain = bot.slash(
        alice(),
        "workflow chain",
        &[("issues", "Create alpha.txt; Create beta.txt".into())],
    );
    let summary = bot.public_reply(&chain).await;
    assert!(
        summary.starts_with("⛓ **Work chain**")
            && summary.contains("1. Create alpha.txt\n2. Create beta.txt"),
        "{summary}"
    );
    let thread = bot.run_thread().await;
    let result = bot.next_message(thread.id).await;
    let text = content(&result);
    assert!(
        text.contains("work chain `")
            && text.contains("**✅ passed**")
            && text.contains("1. Create alpha.txt — ✅ passed")
            && text.contains("2. Create beta.txt — ✅ passed"),
        "{text}"
    );
    let sandboxes = bot.cli(&["sandboxes", "list", "--json"]);
    let branch = sandboxes
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["workflow_step"] == "designer")
        .unwrap()["branch"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(branch.starts_with("codecourier/chain-"), "{branch}");
    assert_eq!(bot.world.file_on_branch(&branch, "alpha.txt"), "alpha\n");
    assert_eq!(bot.world.file_on_branch(&branch, "beta.txt"), "beta\n");
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_started_with_a_budget_stops_once_its_steps_have_spent_it() {
    let (bot, api) = start_claude(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let run = workflow_run(&bot, "Create hello.txt", &[("budget_usd", 0.0001.into())]);
    let summary = bot.public_reply(&run).await;
    assert!(
        summary.contains("checker Claude Code · budget $0.0001 for the whole run"),
        "{summary}"
    );
    let thread = bot.run_thread().await;
    let result = bot.next_message(thread.id).await;
    let text = content(&result);
    assert!(text.contains("**🛑 stopped**"), "{text}");
    assert!(
        text.contains("budget of $0.0001 for the whole run reached after $0.0"),
        "{text}"
    );
    // The designer's first answer spent it: no other step asked the model anything.
    let steps: Vec<Value> = bot
        .cli(&["sandboxes", "list", "--json"])
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(steps.len(), 1, "{steps:#?}");
    assert_eq!(steps[0]["workflow_step"], "designer");
    assert!(!api.received_requests().await.unwrap().is_empty());
    bot.final_status(&thread).await;
    bot.finish().await;
}
