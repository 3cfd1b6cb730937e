//! `/project skills|commands|learnings` on the real bot against the fake Discord: what a channel's
//! project gives its agents, checked before it is stored, and learnings that reach later runs only
//! once a server manager accepts them.

mod support;

use serde_json::Value;
use support::discord_bot::*;
use support::fake_discord::*;

fn prompt(text: &str) -> Vec<(&'static str, Value)> {
    vec![("prompt", text.into())]
}

/// `project show --json` for the bot's repository.
fn project(bot: &Bot) -> Value {
    bot.cli(&["project", "show", "--json", "--repo", &bot.repo()])
}

/// A launch from #general that runs to its end; its result message.
async fn launch_to_the_end(bot: &Bot, text: &str) -> String {
    let launch = bot.slash(alice(), "launch", &prompt(text));
    bot.public_reply(&launch).await;
    let thread = bot.run_thread().await;
    let result = bot.next_message(thread.id).await;
    content(&result).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn skills_and_commands_are_added_from_a_form_or_a_file_and_checked() {
    let bot = start_bot(&[]).await;
    bind_project(&bot, &[]).await;
    let manager = User::manager(ALICE);

    // Members may list, not change.
    let refused = bot.slash(bob(), "project skills add", &[]);
    let text = bot.ephemeral_reply(&refused).await;
    assert!(text.starts_with("Only server managers"), "{text}");

    // A form: name, description, body.
    let add = bot.slash(manager, "project skills add", &[]);
    let form = bot.modal(&add).await;
    let submit = bot
        .submit_modal(
            manager,
            &form,
            &[
                ("name", "run-tests"),
                ("description", "How this repository runs its tests"),
                ("body", "Run make check before committing."),
            ],
        )
        .await;
    assert_eq!(bot.reply(&submit).await.kind(), ReplyKind::Acknowledged);
    let answer = bot.follow_up(&add).await;
    assert!(answer.contains("Skill `run-tests` stored"), "{answer}");

    // A file, with its name and description in its front matter.
    let file = bot.fake.host_file(
        "SKILL.md",
        b"---\nname: deploy\ndescription: How to deploy\n---\nUse make deploy.\n",
    );
    let add = bot.slash(manager, "project skills add", &[("file", file)]);
    let answer = bot.ephemeral_reply(&add).await;
    assert!(answer.contains("Skill `deploy` stored"), "{answer}");

    // A name that would climb out of the skills directory is refused, and nothing is stored.
    let file = bot.fake.host_file("SKILL.md", b"Do things.\n");
    let add = bot.slash(
        manager,
        "project skills add",
        &[
            ("file", file),
            ("name", "../../.ssh".into()),
            ("description", "x".into()),
        ],
    );
    let answer = bot.ephemeral_reply(&add).await;
    assert!(
        answer.contains("not stored") && answer.contains("lowercase letters"),
        "{answer}"
    );

    let add = bot.slash(manager, "project commands add", &[]);
    let form = bot.modal(&add).await;
    let submit = bot
        .submit_modal(
            manager,
            &form,
            &[("name", "review"), ("body", "Review the diff for bugs.")],
        )
        .await;
    assert_eq!(bot.reply(&submit).await.kind(), ReplyKind::Acknowledged);
    let answer = bot.follow_up(&add).await;
    assert!(answer.contains("Command `/review` stored"), "{answer}");

    let list = bot.slash(bob(), "project skills list", &[]);
    let text = bot.ephemeral_reply(&list).await;
    assert!(
        text.contains("`deploy`") && text.contains("`run-tests`"),
        "{text}"
    );
    let p = project(&bot);
    assert_eq!(p["skills"], serde_json::json!(["deploy", "run-tests"]));
    assert_eq!(p["commands"], serde_json::json!(["review"]));

    let remove = bot.slash(
        manager,
        "project skills remove",
        &[("name", "deploy".into())],
    );
    let text = bot.ephemeral_reply(&remove).await;
    assert!(text.contains("removed"), "{text}");
    assert_eq!(project(&bot)["skills"], serde_json::json!(["run-tests"]));
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proposed_learning_reaches_later_runs_only_once_a_manager_accepts_it() {
    let bot = start_bot(&[]).await;
    // The stand-in agent writes "- run the tests with make test" to the learnings file.
    bind_project(&bot, &[("FAKE_CLAUDE", "create")]).await;
    let result = launch_to_the_end(&bot, "Save it").await;
    assert!(result.contains("✅ completed"), "{result}");

    let list = bot.slash(bob(), "project learnings list", &[]);
    let text = bot.ephemeral_reply(&list).await;
    assert!(
        text.contains("📝") && text.contains("run the tests with make test"),
        "{text}"
    );
    let id = bot.cli(&[
        "project",
        "learnings",
        "list",
        "--json",
        "--repo",
        &bot.repo(),
    ])[0]["id"]
        .as_i64()
        .unwrap();

    // Not yet in what the next agent reads.
    bind_project(&bot, &[("FAKE_CLAUDE", "recall")]).await;
    let result = launch_to_the_end(&bot, "What do you know?").await;
    assert!(!result.contains("make test"), "{result}");

    // Members cannot accept; a manager can.
    let refused = bot.slash(bob(), "project learnings accept", &[("id", id.into())]);
    let text = bot.ephemeral_reply(&refused).await;
    assert!(text.starts_with("Only server managers"), "{text}");
    let accept = bot.slash(
        User::manager(ALICE),
        "project learnings accept",
        &[("id", id.into())],
    );
    let text = bot.ephemeral_reply(&accept).await;
    assert!(text.contains("1 learning(s) accepted"), "{text}");

    let result = launch_to_the_end(&bot, "What do you know now?").await;
    assert!(result.contains("run the tests with make test"), "{result}");
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_setup_form_sets_the_setup_script_and_auto_setup() {
    let bot = start_bot(&[]).await;
    bind_project(&bot, &[]).await;
    let manager = User::manager(ALICE);
    let setup = bot.slash(manager, "project setup", &[("auto_setup", false.into())]);
    let form = bot.modal(&setup).await;
    assert_eq!(form.value("setup_script"), Some(""));
    let submit = bot
        .submit_modal(manager, &form, &[("setup_script", "npm ci\nnpm run build")])
        .await;
    assert_eq!(bot.reply(&submit).await.kind(), ReplyKind::Acknowledged);
    let answer = bot.follow_up(&setup).await;
    assert!(
        answer.contains("This channel now launches against"),
        "{answer}"
    );
    let p = project(&bot);
    assert_eq!(p["setup_script"], "npm ci\nnpm run build");
    assert_eq!(p["auto_setup"], false);

    // The form shows the current script; emptied, it is cleared (and auto setup left as it is).
    let setup = bot.slash(manager, "project setup", &[]);
    let form = bot.modal(&setup).await;
    assert_eq!(form.value("setup_script"), Some("npm ci\nnpm run build"));
    let submit = bot
        .submit_modal(manager, &form, &[("setup_script", "")])
        .await;
    assert_eq!(bot.reply(&submit).await.kind(), ReplyKind::Acknowledged);
    bot.follow_up(&setup).await;
    let p = project(&bot);
    assert_eq!(p["setup_script"], serde_json::Value::Null);
    assert_eq!(p["auto_setup"], false);
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_setup_form_sets_the_default_budget_of_the_project_s_launches() {
    let bot = start_bot(&[]).await;
    bind_project(&bot, &[]).await;
    let manager = User::manager(ALICE);
    let refused = bot.slash(
        manager,
        "project setup",
        &[("default_budget_usd", (-1.0).into())],
    );
    let text = bot.ephemeral_reply(&refused).await;
    assert!(
        text.contains("default_budget_usd must be more than $0"),
        "{text}"
    );

    let setup = bot.slash(
        manager,
        "project setup",
        &[("default_budget_usd", 2.5.into())],
    );
    let form = bot.modal(&setup).await;
    let submit = bot.submit_modal(manager, &form, &[]).await;
    assert_eq!(bot.reply(&submit).await.kind(), ReplyKind::Acknowledged);
    bot.follow_up(&setup).await;
    assert_eq!(project(&bot)["default_budget_usd"], 2.5);
    let show = bot.slash(alice(), "project show", &[]);
    let text = bot.ephemeral_reply(&show).await;
    assert!(text.contains("Default budget: $2.50"), "{text}");

    // A launch that sets none takes it.
    bind_project(&bot, &[("FAKE_CLAUDE", "create")]).await;
    launch_to_the_end(&bot, "Save the prompt").await;
    let records = bot.cli(&["sandboxes", "list", "--json"]);
    assert_eq!(records[0]["request"]["budget"]["max_cost_usd"], 2.5);

    // Zero removes it.
    let setup = bot.slash(
        manager,
        "project setup",
        &[("default_budget_usd", 0.0.into())],
    );
    let form = bot.modal(&setup).await;
    let submit = bot.submit_modal(manager, &form, &[]).await;
    assert_eq!(bot.reply(&submit).await.kind(), ReplyKind::Acknowledged);
    bot.follow_up(&setup).await;
    assert_eq!(project(&bot)["default_budget_usd"], Value::Null);
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skills_and_commands_added_from_discord_reach_the_cli_and_the_model() {
    let (bot, api) = start_claude_bot(
        support::fake_anthropic::Mode::Works {
            extra_text: String::new(),
        },
        &[],
    )
    .await;
    let manager = User::manager(ALICE);
    let add = bot.slash(manager, "project skills add", &[]);
    let form = bot.modal(&add).await;
    let submit = bot
        .submit_modal(
            manager,
            &form,
            &[
                ("name", "gadget-tests"),
                ("description", "Runs the gadget suite with make gadgetcheck"),
                ("body", "Run `make gadgetcheck`."),
            ],
        )
        .await;
    assert_eq!(bot.reply(&submit).await.kind(), ReplyKind::Acknowledged);
    bot.follow_up(&add).await;
    let add = bot.slash(manager, "project commands add", &[]);
    let form = bot.modal(&add).await;
    let submit = bot
        .submit_modal(
            manager,
            &form,
            &[
                ("name", "gadget-review"),
                ("body", "Review the gadget diff."),
            ],
        )
        .await;
    assert_eq!(bot.reply(&submit).await.kind(), ReplyKind::Acknowledged);
    bot.follow_up(&add).await;

    let text = launch_to_the_end(
        &bot,
        "Run `cat ~/.claude/skills/gadget-tests/SKILL.md ~/.claude/commands/gadget-review.md`",
    )
    .await;
    assert!(text.contains("✅ completed"), "{text}");
    let results = support::fake_anthropic::tool_results_received(&api).await;
    assert!(
        results.iter().any(|t| t.contains("Run `make gadgetcheck`.")
            && t.contains("description: Runs the gadget suite with make gadgetcheck")
            && t.contains("Review the gadget diff.")),
        "{results:?}"
    );
    let requests = support::fake_anthropic::requests_received(&api).await;
    assert!(
        requests[0].contains("gadget-tests: Runs the gadget suite with make gadgetcheck")
            && requests[0].contains("gadget-review"),
        "{}",
        requests[0]
    );
    bot.finish().await;
}
