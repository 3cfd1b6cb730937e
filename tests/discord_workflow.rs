//! Workflow runs and work chains from Discord, end to end: the real serenity/poise bot against the
//! fake Discord, the real Claude Code CLI in local sandboxes against the fake Anthropic API, on a
//! bare repository on disk.

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

impl Bot {
    fn workflow_run(&self, token: &str, options: Value) {
        self.fake.dispatch(
            "INTERACTION_CREATE",
            subcommand(
                self.fake.snowflake(),
                token,
                "workflow",
                "run",
                options,
                ALICE,
            ),
        );
    }
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
    bot.workflow_run(
        "tok-wf",
        json!([{"name": "task", "type": 3, "value": "Create hello.txt"}]),
    );
    let reply = bot.fake.wait_for("POST", callback("tok-wf"), T).await;
    let summary = reply.body["data"]["content"].as_str().unwrap();
    assert!(
        summary.starts_with("🔁 **Workflow `default`**")
            && summary
                .contains("designer Claude Code → optimizer Claude Code → checker Claude Code"),
        "{summary}"
    );
    let thread = thread_of_launch(&bot).await;
    let result = bot
        .wait_thread_message(thread, "result", |m| {
            content(m).contains("workflow `default` · run")
        })
        .await;
    let text = content(&result);
    assert!(
        text.starts_with(&format!("<@{ALICE}> **✅ passed**")),
        "{text}"
    );
    assert!(text.contains("5 steps"), "{text}");
    // The timeline's last edit: every step with its tool, model and verdict; no Stop any more.
    let timeline = bot
        .wait_thread_message(thread, "final timeline", |m| {
            content(m).contains("— ✅ passed")
        })
        .await;
    let text = content(&timeline);
    for expected in [
        "✅ **designer** · Claude Code · `claude-sonnet-4-6`",
        "✅ **optimizer** 1 · Claude Code",
        "❌ **checker** 1 · Claude Code · `claude-sonnet-4-6` · verdict fail (1 finding)",
        "✅ **optimizer** 2",
        "✅ **checker** 2 · Claude Code · `claude-sonnet-4-6` · verdict pass",
        "🌿 `codecourier/wf-",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    assert!(timeline["components"]
        .as_array()
        .is_none_or(|c| c.is_empty()));
    let prompts = fake_anthropic::prompts_received(&api).await;
    assert!(prompts
        .iter()
        .any(|p| p.contains("hello.txt needs a second line")));
    bot.probe.assert_none();
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
    bot.workflow_run(
        "tok-wfstop",
        json!([{"name": "task", "type": 3, "value": "Create hello.txt"}]),
    );
    let thread = thread_of_launch(&bot).await;
    wait_status(&bot, "running").await;
    // While a step runs, the timeline shows its phases live (the agent waits here until stopped).
    let timeline = bot
        .wait_thread_message(thread, "live timeline", |m| {
            content(m).contains("— ⏳ running")
                && content(m).contains("⏳ **designer**")
                && content(m).contains("\u{2003}⏳ **agent**")
        })
        .await;
    assert!(timeline["components"].to_string().contains("cc:wfstop:"));
    let stop = timeline["components"][0]["components"][0]["custom_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Someone else may not stop it.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        component(
            bot.fake.snowflake(),
            "tok-bob",
            &stop,
            2,
            &[],
            timeline.clone(),
            BOB,
        ),
    );
    let refused = bot.fake.wait_for("POST", callback("tok-bob"), T).await;
    assert!(refused.body["data"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Only the person who started this"));
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        component(
            bot.fake.snowflake(),
            "tok-stop",
            &stop,
            2,
            &[],
            timeline,
            ALICE,
        ),
    );
    let answer = bot.fake.wait_for("POST", callback("tok-stop"), T).await;
    assert!(answer.body["data"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Stopping"));
    let result = bot
        .wait_thread_message(thread, "result", |m| {
            content(m).contains("workflow `default` · run")
        })
        .await;
    assert!(
        content(&result).contains("**🛑 stopped**"),
        "{}",
        content(&result)
    );
    let sandbox = &bot.cli(&["sandboxes", "list", "--json"])[0];
    assert_eq!(sandbox["status"], "stopped");
    assert_eq!(sandbox["workflow_step"], "designer");
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
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        subcommand(
            bot.fake.snowflake(),
            "tok-scan",
            "scan",
            "run",
            json!([]),
            ALICE,
        ),
    );
    let scan_thread = thread_of_launch(&bot).await;
    let list = bot
        .wait_thread_message(scan_thread, "issue list", |m| {
            content(m).contains("scan** · session")
        })
        .await;
    let pick = list["components"][0]["components"][0]["custom_id"]
        .as_str()
        .unwrap()
        .to_string();
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        component(
            bot.fake.snowflake(),
            "tok-pick",
            &pick,
            3,
            &["1", "3"],
            list,
            ALICE,
        ),
    );
    bot.fake.wait_for("POST", callback("tok-pick"), T).await;
    let chosen = bot.fake.original_response("tok-pick").unwrap();
    let buttons = chosen["components"][0]["components"].as_array().unwrap();
    let chain_button = buttons
        .iter()
        .find(|b| b["label"] == "Fix as a chain")
        .expect("a Fix as a chain button")["custom_id"]
        .as_str()
        .unwrap()
        .to_string();
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        component(
            bot.fake.snowflake(),
            "tok-chain",
            &chain_button,
            2,
            &[],
            chosen,
            ALICE,
        ),
    );
    let deferred = bot.fake.wait_for("POST", callback("tok-chain"), T).await;
    assert_eq!(deferred.body["type"], 5);
    let answered = bot.fake.wait_for("PATCH", "/webhooks/*", T).await;
    assert!(
        answered.body["content"]
            .as_str()
            .unwrap()
            .contains("started with 2 issues"),
        "{:#}",
        answered.body
    );
    let chain_thread = thread_of_launch(&bot).await;
    let result = bot
        .wait_thread_message(chain_thread, "chain result", |m| {
            content(m).contains("work chain `")
        })
        .await;
    let text = content(&result);
    assert!(text.contains("**✅ passed**"), "{text}");
    assert!(
        text.contains("1. Create alpha.txt — ✅ passed")
            && text.contains("2. Create gamma.txt — ✅ passed"),
        "{text}"
    );
    let timeline = bot
        .wait_thread_message(chain_thread, "chain timeline", |m| {
            content(m).contains("**Issues**") && content(m).contains("— ✅ passed")
        })
        .await;
    assert!(
        content(&timeline).contains("✅ 2. Create gamma.txt"),
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
    bot.probe.assert_none();
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_create_checks_the_form_and_stores_the_workflow() {
    let (bot, _api) = start_claude(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    // Members who may not manage the server cannot define workflows.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        subcommand(
            bot.fake.snowflake(),
            "tok-create-member",
            "workflow",
            "create",
            json!([]),
            BOB,
        ),
    );
    let refused = bot
        .fake
        .wait_for("POST", callback("tok-create-member"), T)
        .await;
    assert!(refused.body["data"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Only a server manager"));
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        with_manage_server(
            subcommand(
                bot.fake.snowflake(),
                "tok-create",
                "workflow",
                "create",
                json!([]),
                ALICE,
            ),
            true,
        ),
    );
    let modal = bot.fake.wait_for("POST", callback("tok-create"), T).await;
    assert_eq!(modal.body["type"], 9, "a form opens");
    assert!(
        modal.status < 300,
        "Discord accepts the form: {}",
        modal.summary()
    );
    let submit = |token: &str, inputs: &[(&str, &str)]| {
        bot.fake.dispatch(
            "INTERACTION_CREATE",
            with_manage_server(
                modal_submit(bot.fake.snowflake(), token, "cc:wfcreate", inputs, ALICE),
                true,
            ),
        );
    };
    // An unknown tool and a model of another tool: refused, by field.
    submit(
        "tok-create-bad",
        &[
            ("name", "careful"),
            ("tools", "cursor, , opencode"),
            ("models", ", , claude-sonnet-4-6"),
            ("checker_template", ""),
            ("max_rounds", "2"),
        ],
    );
    let bad = bot
        .fake
        .wait_for("POST", callback("tok-create-bad"), T)
        .await;
    let text = bad.body["data"]["content"].as_str().unwrap();
    assert!(
        text.starts_with("That workflow is not valid")
            && text.contains("**designer_cli_id**")
            && text.contains("**checker_model**"),
        "{text}"
    );
    submit(
        "tok-create-ok",
        &[
            ("name", "careful"),
            ("tools", ", , opencode"),
            ("models", ""),
            ("checker_template", "acme/checker:v2"),
            ("max_rounds", "2"),
        ],
    );
    let ok = bot
        .fake
        .wait_for("POST", callback("tok-create-ok"), T)
        .await;
    let text = ok.body["data"]["content"].as_str().unwrap();
    assert!(
        text.contains("Workflow `careful` saved: designer Claude Code → optimizer Claude Code → checker OpenCode"),
        "{text}"
    );
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        subcommand(
            bot.fake.snowflake(),
            "tok-list",
            "workflow",
            "list",
            json!([]),
            ALICE,
        ),
    );
    let list = bot.fake.wait_for("POST", callback("tok-list"), T).await;
    let text = list.body["data"]["content"].as_str().unwrap();
    assert!(text.contains("`default`") && text.contains("`careful` — designer Claude Code → optimizer Claude Code → checker OpenCode · up to 2 rounds"), "{text}");
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        subcommand(
            bot.fake.snowflake(),
            "tok-show",
            "workflow",
            "show",
            json!([{"name": "name", "type": 3, "value": "careful"}]),
            ALICE,
        ),
    );
    let shown = bot.fake.wait_for("POST", callback("tok-show"), T).await;
    let text = shown.body["data"]["content"].as_str().unwrap();
    assert!(
        text.contains("**checker** · OpenCode") && text.contains("template `acme/checker:v2`"),
        "{text}"
    );
    // An unknown workflow is refused before anything runs.
    bot.workflow_run(
        "tok-unknown",
        json!([{"name": "task", "type": 3, "value": "x"}, {"name": "workflow", "type": 3, "value": "nope"}]),
    );
    let refused = bot.fake.wait_for("POST", callback("tok-unknown"), T).await;
    assert!(refused.body["data"]["content"]
        .as_str()
        .unwrap()
        .contains("there is no workflow named \"nope\"; there are: default, careful"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bot_killed_during_the_optimizer_resumes_the_run_in_its_thread() {
    let world = World::new();
    let fake = FakeDiscord::start().await;
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
    let serve = |world: &World, fake: &FakeDiscord| {
        let mut cmd = world.std_cmd();
        cmd.env("DISCORD_TOKEN", BOT_TOKEN)
            .env("DISCORD_API_BASE", fake.api_base())
            .env("DISCORD_GUILD_ID", GUILD_ID.to_string())
            .env("CODECOURIER_ALLOW_LOCAL_REPOS", "true")
            .env("CODECOURIER_TOOLS_DIR", &tools)
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().unwrap()
    };
    let mut first = serve(&world, &fake);
    fake.wait_ready(T).await;
    let bot = Bot {
        fake,
        world,
        probe: UnknownEventProbe::new(),
        client: tokio::spawn(async {}),
    };
    bind_project(&bot, &[("ANTHROPIC_BASE_URL", &api.uri())]).await;
    bot.workflow_run(
        "tok-crash",
        json!([{"name": "task", "type": 3, "value": "Create hello.txt"}, {"name": "workflow", "type": 3, "value": "two-models"}]),
    );
    let thread = thread_of_launch(&bot).await;
    let deadline = std::time::Instant::now() + T;
    let run_id = loop {
        let list = bot.cli(&["sandboxes", "list", "--json"]);
        if let Some(s) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["workflow_step"] == "optimizer" && s["status"] == "running")
        {
            break s["workflow_run_id"].as_str().unwrap().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no optimizer: {list:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut second = serve(&bot.world, &bot.fake);
    let result = bot
        .wait_thread_message(thread, "result after the restart", |m| {
            content(m).contains("workflow `two-models` · run")
        })
        .await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(
        content(&result).contains("**✅ passed**"),
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
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_chain_runs_lines_of_text_on_one_branch() {
    let (bot, _api) = start_claude(Mode::Scan {
        answers: vec![Some(verdict(true, ""))],
    })
    .await;
    // Nothing to run: refused, nothing recorded.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        subcommand(
            bot.fake.snowflake(),
            "tok-empty",
            "workflow",
            "chain",
            json!([{"name": "issues", "type": 3, "value": " ; "}]),
            ALICE,
        ),
    );
    let refused = bot.fake.wait_for("POST", callback("tok-empty"), T).await;
    assert!(refused.body["data"]["content"]
        .as_str()
        .unwrap()
        .contains("the chain has no issues"));
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        subcommand(
            bot.fake.snowflake(),
            "tok-chain",
            "workflow",
            "chain",
            json!([{"name": "issues", "type": 3, "value": "Create alpha.txt; Create beta.txt"}]),
            ALICE,
        ),
    );
    let reply = bot.fake.wait_for("POST", callback("tok-chain"), T).await;
    let summary = reply.body["data"]["content"].as_str().unwrap();
    assert!(
        summary.starts_with("⛓ **Work chain**")
            && summary.contains("1. Create alpha.txt\n2. Create beta.txt"),
        "{summary}"
    );
    let thread = thread_of_launch(&bot).await;
    let result = bot
        .wait_thread_message(thread, "chain result", |m| {
            content(m).contains("work chain `")
        })
        .await;
    let text = content(&result);
    assert!(
        text.contains("**✅ passed**")
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
}
