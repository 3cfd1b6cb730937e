//! Who may do what from Discord, tried as people in the room would: the real bot against the fake
//! Discord, each test reading everything the bot posted.

mod support;

use serde_json::Value;
use support::discord_bot::*;
use support::fake_discord::*;

/// Another server the bot was invited to (left "Public", say).
const OTHER_GUILD: u64 = GUILD_ID + 1;

fn prompt(text: &str) -> Vec<(&'static str, Value)> {
    vec![("prompt", text.into())]
}

fn records(bot: &Bot) -> Vec<Value> {
    bot.cli(&["sandboxes", "list", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn another_server_and_direct_messages_get_a_refusal_and_nothing_else() {
    let bot = start_bot(&[]).await;
    bind_project(&bot, &[]).await;
    // Commands are registered in the served server only, never globally.
    assert!(bot.fake.registered_commands(None).is_empty());
    assert!(!bot.fake.registered_commands(Some(GUILD_ID)).is_empty());

    for user in [alice().in_server(OTHER_GUILD), alice().in_dm()] {
        let launch = bot.slash(user, "launch", &bot.with_repo(&prompt("Do it")));
        let text = bot.ephemeral_reply(&launch).await;
        assert!(text.contains("serves only the servers"), "{text}");
        let scan = bot.slash(user, "scan run", &bot.with_repo(&[]));
        let text = bot.ephemeral_reply(&scan).await;
        assert!(text.contains("serves only the servers"), "{text}");
        // Autocomplete shows nothing of this deployment's records or catalog.
        let typed = bot.autocomplete(user, "launch", &[], ("model", "claude"));
        assert!(bot.choices(&typed).await.is_empty());
    }
    assert!(records(&bot).is_empty());

    // A button of this server's launch, pressed from elsewhere, does nothing either.
    bind_project(&bot, &[("FAKE_CLAUDE", "hang")]).await;
    let launch = bot.slash(alice(), "launch", &prompt("Wait"));
    bot.public_reply(&launch).await;
    let thread = bot.run_thread().await;
    bot.wait_message(&thread.status, "the agent at work", |m| {
        content(m).contains("⏳ **agent**")
    })
    .await;
    let press = bot.press(alice().in_server(OTHER_GUILD), &thread.status, "Stop");
    let text = bot.ephemeral_reply(&press).await;
    assert!(text.contains("serves only the servers"), "{text}");
    assert_eq!(records(&bot)[0]["status"], "running");

    let stop = bot.press(alice(), &thread.status, "Stop");
    bot.ephemeral_reply(&stop).await;
    let result = bot.next_message(thread.id).await;
    assert!(content(&result).contains("stopped"), "{}", content(&result));
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_to_start_without_a_server_to_serve() {
    let world = support::World::new();
    let out = world
        .std_cmd()
        .arg("serve")
        .env("DISCORD_TOKEN", BOT_TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CODECOURIER_ALLOWED_GUILDS") && err.contains("DISCORD_GUILD_ID"),
        "{err}"
    );
}

/// Another text channel of the same server, with no project of its own.
const ELSEWHERE: u64 = CHANNEL_ID + 1;

/// The first characters of a key's SHA-256, as the stand-in agent reports the key it holds.
fn digest(key: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..16].to_string()
}

async fn plant_key(bot: &Bot, scope: &str, value: &str) {
    let store = store_of(bot).await;
    store
        .put_secret(
            scope,
            "ANTHROPIC_API_KEY",
            &codecourier::secret::Secret::new(value),
        )
        .await
        .unwrap();
    store.close().await;
}

async fn general_project(bot: &Bot) -> i64 {
    let store = store_of(bot).await;
    let project = store
        .project_for_channel(codecourier::ids::DiscordId(CHANNEL_ID))
        .await
        .unwrap()
        .expect("#general has a project");
    store.close().await;
    project.id
}

#[tokio::test(flavor = "multi_thread")]
async fn another_channels_repository_is_refused_or_runs_without_that_project() {
    const PROJECT_KEY: &str = "sk-ant-project-planted-key-000";
    let bot = start_bot(&[]).await;
    bind_project(&bot, &[("PLANTED", "planted-project-variable")]).await;
    let project = general_project(&bot).await;
    plant_key(
        &bot,
        &codecourier::pipeline::project_scope(project),
        PROJECT_KEY,
    )
    .await;
    // The repository itself tells the stand-in agent to report what it holds.
    bot.world.commit_to_origin(".fake-claude", "vars");
    bot.fake.add_channel(text_channel(ELSEWHERE, "elsewhere"));

    // A member of a channel without a project cannot borrow #general's.
    for (command, what) in [
        ("launch", "prompt"),
        ("scan run", "focus"),
        ("workflow run", "task"),
    ] {
        let options = bot.with_repo(&[(what, "Print".into())]);
        let refused = bot.slash(alice().in_channel(ELSEWHERE), command, &options);
        let text = bot.ephemeral_reply(&refused).await;
        assert!(
            text.contains("This channel has no project"),
            "{command}: {text}"
        );
    }
    assert!(records(&bot).is_empty());

    // A manager may, and the launch runs with none of that project's variables or keys.
    let manager = User::manager(BOB).in_channel(ELSEWHERE);
    let launch = bot.slash(manager, "launch", &bot.with_repo(&prompt("Print")));
    let summary = bot.public_reply(&launch).await;
    assert!(
        summary.contains("no project's variables or keys"),
        "{summary}"
    );
    let thread = bot.run_thread().await;
    let result = content(&bot.next_message(thread.id).await).to_string();
    assert!(
        result.contains("✅ completed") && result.contains("PLANTED=unset"),
        "{result}"
    );
    assert!(!result.contains(&digest(PROJECT_KEY)), "{result}");
    assert_eq!(records(&bot)[0]["project_id"], Value::Null);
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_of_another_channel_or_server_show_nothing() {
    let guilds = format!("{GUILD_ID},{OTHER_GUILD}");
    let fake = FakeDiscord::start().await;
    fake.join_guild(OTHER_GUILD);
    let extra = [("CODECOURIER_ALLOWED_GUILDS", guilds.as_str())];
    let bot = start_bot_in(support::World::new(), fake, &extra).await;
    bind_project(&bot, &[("FAKE_CLAUDE", "hang")]).await;
    bot.fake.add_channel(text_channel(ELSEWHERE, "elsewhere"));
    let launch = bot.slash(alice(), "launch", &prompt("Wait"));
    bot.public_reply(&launch).await;
    let thread = bot.run_thread().await;
    bot.wait_message(&thread.status, "the agent at work", |m| {
        content(m).contains("⏳ **agent**")
    })
    .await;
    let id = records(&bot)[0]["id"].as_str().unwrap().to_string();

    // A member elsewhere, and a manager of another server this deployment also serves, are
    // answered as if the sandbox did not exist.
    let other_manager = User::manager(BOB).in_server(OTHER_GUILD);
    for user in [bob().in_channel(ELSEWHERE), other_manager] {
        for command in ["sandbox status", "sandbox logs", "sandbox stop"] {
            let asked = bot.slash(user, command, &[("id", id[..8].into())]);
            let text = bot.ephemeral_reply(&asked).await;
            assert!(
                text.starts_with("No sandbox of this channel"),
                "{command}: {text}"
            );
            assert!(!text.contains("Wait"), "{text}");
        }
        let list = bot.slash(user, "sandboxes", &[("show", "all".into())]);
        let text = bot.ephemeral_reply(&list).await;
        assert!(!text.contains(&id[..8]), "{text}");
    }
    // Nor can that manager press Stop on it.
    let press = bot.press(other_manager, &thread.status, "Stop");
    let text = bot.ephemeral_reply(&press).await;
    assert!(text.starts_with("Only the person who launched"), "{text}");
    assert_eq!(records(&bot)[0]["status"], "running");

    // A manager of this server sees it from any of its channels.
    let manager = User::manager(BOB).in_channel(ELSEWHERE);
    let status = bot.slash(manager, "sandbox status", &[("id", id[..8].into())]);
    let text = bot.ephemeral_reply(&status).await;
    assert!(text.contains(&id[..8]), "{text}");

    let stop = bot.press(alice(), &thread.status, "Stop");
    bot.ephemeral_reply(&stop).await;
    let result = bot.next_message(thread.id).await;
    assert!(content(&result).contains("stopped"), "{}", content(&result));
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_by_a_manager_runs_with_the_requesters_key() {
    const ALICES_KEY: &str = "sk-ant-alice-own-key-0000000001";
    const MANAGERS_KEY: &str = "sk-ant-manager-own-key-00000002";
    let (bot, api) = start_claude_bot(
        support::fake_anthropic::Mode::Works {
            extra_text: String::new(),
        },
        &[],
    )
    .await;
    let user = |id| codecourier::pipeline::user_scope(codecourier::ids::DiscordId(id));
    plant_key(&bot, &user(ALICE), ALICES_KEY).await;
    plant_key(&bot, &user(BOB), MANAGERS_KEY).await;

    let launch = bot.slash(alice(), "launch", &prompt("Save the prompt"));
    bot.public_reply(&launch).await;
    let thread = bot.run_thread().await;
    let result = bot.next_message(thread.id).await;
    assert!(
        content(&result).contains("✅ completed"),
        "{}",
        content(&result)
    );

    let retry = bot.press(User::manager(BOB), &result, "Retry");
    let text = bot.ephemeral_reply(&retry).await;
    assert!(text.starts_with("Launching sandbox"), "{text}");
    let announced = bot.next_message(CHANNEL_ID).await;
    assert!(
        content(&announced).starts_with("🔁 Retry of"),
        "{}",
        content(&announced)
    );
    let second = bot.run_thread().await;
    let result = bot.next_message(second.id).await;
    assert!(
        content(&result).contains("✅ completed"),
        "{}",
        content(&result)
    );

    // Both runs reached the model API with Alice's key, never the manager's.
    let keys: Vec<String> = api
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.headers.get("x-api-key"))
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(keys.len() >= 2, "{keys:?}");
    assert!(keys.iter().all(|k| k == ALICES_KEY), "{keys:?}");
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_are_answered_only_for_those_who_may_submit_them() {
    let bot = start_bot(&[]).await;
    bind_project(&bot, &[("FAKE_CLAUDE", "create")]).await;

    // The launch dialog's form, submitted by someone other than its opener: nothing launches.
    let open = bot.slash(alice(), "launch", &[]);
    let dialog = bot.reply(&open).await.message().clone();
    let write = bot.press(alice(), &dialog, "Write the prompt…");
    let modal = bot.modal(&write).await;
    let forged = bot
        .submit_modal(bob(), &modal, &[("prompt", "Do what Bob says")])
        .await;
    let text = bot.ephemeral_reply(&forged).await;
    assert!(text.contains("belongs to someone else"), "{text}");
    assert!(records(&bot).is_empty());

    // The workflow form re-checks Manage Server.
    let manager = User::manager(ALICE);
    let create = bot.slash(manager, "workflow create", &[]);
    let form = bot.modal(&create).await;
    let forged = bot.submit_modal(bob(), &form, &[("name", "sneaky")]).await;
    let text = bot.ephemeral_reply(&forged).await;
    assert!(text.starts_with("Only a server manager"), "{text}");
    let list = bot.slash(alice(), "workflow list", &[]);
    let text = bot.ephemeral_reply(&list).await;
    assert!(!text.contains("sneaky"), "{text}");
    bot.finish().await;
}

/// Five launches at once, and how many were recorded.
async fn five_at_once(bot: &Bot, users: [User; 5]) -> usize {
    let asked: Vec<Interaction> = users
        .iter()
        .enumerate()
        .map(|(n, user)| bot.slash(*user, "launch", &prompt(&format!("Wait {n}"))))
        .collect();
    let mut launched = 0;
    for interaction in &asked {
        let reply = bot.reply(interaction).await;
        if reply.is_ephemeral() {
            assert!(reply.text().contains("limit"), "{}", reply.text());
        } else {
            launched += 1;
            bot.run_thread().await;
        }
    }
    assert_eq!(records(bot).len(), launched);
    launched
}

#[tokio::test(flavor = "multi_thread")]
async fn running_caps_hold_for_launches_at_the_same_moment() {
    let bot = start_bot(&[("CODECOURIER_MAX_RUNNING_PER_USER", "2")]).await;
    bind_project(&bot, &[("FAKE_CLAUDE", "hang")]).await;
    assert_eq!(five_at_once(&bot, [alice(); 5]).await, 2);
    bot.finish().await;

    let bot = start_bot(&[("CODECOURIER_MAX_RUNNING", "2")]).await;
    bind_project(&bot, &[("FAKE_CLAUDE", "hang")]).await;
    let users = [101, 102, 103, 104, 105].map(|n| User::member(ALICE + 1000 + n));
    assert_eq!(five_at_once(&bot, users).await, 2);
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_holding_a_key_or_a_workflow_is_refused_and_the_thread_names_the_file() {
    let bot = start_bot(&[]).await;
    // The agent writes the deployment's model key into a file (a prompt could carry it).
    let text = format!("KEY = \"{}\"", support::API_KEY);
    bind_project(
        &bot,
        &[
            ("FAKE_CLAUDE", "write"),
            ("WRITE_PATH", "config/settings.py"),
            ("WRITE_TEXT", text.as_str()),
        ],
    )
    .await;
    let launch = bot.slash(alice(), "launch", &prompt("Configure it"));
    bot.public_reply(&launch).await;
    let thread = bot.run_thread().await;
    let result = content(&bot.next_message(thread.id).await).to_string();
    assert!(
        result.contains("push refused") && result.contains("config/settings.py"),
        "{result}"
    );
    assert!(!result.contains(support::API_KEY), "{result}");
    let branches = bot.world.branches();
    assert!(branches.iter().all(|b| b == "main"), "{branches:?}");

    // A new workflow file: refused until the project allows workflow changes.
    bind_project(
        &bot,
        &[
            ("FAKE_CLAUDE", "write"),
            ("WRITE_PATH", ".github/workflows/release.yml"),
            ("WRITE_TEXT", "on: push"),
        ],
    )
    .await;
    let launch = bot.slash(alice(), "launch", &prompt("Release on push"));
    bot.public_reply(&launch).await;
    let thread = bot.run_thread().await;
    let result = content(&bot.next_message(thread.id).await).to_string();
    assert!(
        result.contains("push refused") && result.contains(".github/workflows/release.yml"),
        "{result}"
    );
    let allowed = bot
        .world
        .std_cmd()
        .args(["project", "setup", "--repo", &bot.repo()])
        .args(["--allow-workflow-changes", "on"])
        .output()
        .unwrap();
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let launch = bot.slash(alice(), "launch", &prompt("Release on push"));
    bot.public_reply(&launch).await;
    let thread = bot.run_thread().await;
    let result = content(&bot.next_message(thread.id).await).to_string();
    assert!(result.contains("✅ completed"), "{result}");
    bot.finish().await;
}

/// Writes a finished launch by `user` from `guild` with metered usage, as a run would leave it.
async fn metered_launch(bot: &Bot, user: u64, guild: u64, name: &str, cost: f64) {
    use codecourier::catalog::{Catalog, LaunchInput};
    use codecourier::ids::DiscordId;
    use codecourier::store::{DiscordOrigin, ModelUsage, NewSandbox};
    let store = store_of(bot).await;
    let request = LaunchInput {
        prompt: Some("Tidy up".into()),
        repo: Some(bot.repo()),
        ..Default::default()
    }
    .validate(&Catalog::built_in(), true)
    .unwrap();
    let id = store
        .insert_sandbox(&NewSandbox {
            request: &request,
            launched_by: name,
            discord: Some(DiscordOrigin {
                user_id: DiscordId(user),
                guild_id: Some(DiscordId(guild)),
                channel_id: DiscordId(CHANNEL_ID),
            }),
            project_id: None,
            issue_session: None,
            workflow: None,
            caps: Default::default(),
        })
        .await
        .unwrap();
    let usage = ModelUsage {
        requests: 1,
        input_tokens: 1000,
        output_tokens: 100,
        cost_usd: Some(cost),
        ..Default::default()
    };
    store
        .add_model_usage(id, "anthropic", "claude-sonnet-4-6", &usage)
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_shows_a_member_their_own_spend_and_a_manager_the_servers() {
    let bot = start_bot(&[]).await;
    metered_launch(&bot, ALICE, GUILD_ID, "alice", 1.25).await;
    metered_launch(&bot, BOB, GUILD_ID, "bob @everyone", 2.5).await;
    metered_launch(&bot, ALICE, OTHER_GUILD, "alice", 100.0).await;

    // A member sees their own launches of this server, nothing of Bob's or of the other server.
    let mine = bot.slash(alice(), "usage", &[]);
    let text = bot.ephemeral_reply(&mine).await;
    assert!(text.contains("your launches"), "{text}");
    assert!(
        text.contains("`$1.2500`") && text.contains("1 launch"),
        "{text}"
    );
    assert!(
        !text.contains("bob") && !text.contains("$2.5") && !text.contains("100.0"),
        "{text}"
    );
    let asked = bot.slash(alice(), "usage", &[("show", "server".into())]);
    let text = bot.ephemeral_reply(&asked).await;
    assert!(text.starts_with("Only server managers"), "{text}");

    // A manager sees the server's, by person by default; a name cannot ping anyone.
    let manager = User::manager(BOB);
    let server = bot.slash(manager, "usage", &[("since", "7d".into())]);
    let text = bot.ephemeral_reply(&server).await;
    assert!(text.contains("this server's launches · last 7d"), "{text}");
    assert!(
        text.contains("**Total** · `$3.7500` · 2 launches"),
        "{text}"
    );
    assert!(
        !text.contains("@everyone") && !text.contains("100.0"),
        "{text}"
    );
    let by_model = bot.slash(
        manager,
        "usage",
        &[("by", "model".into()), ("show", "mine".into())],
    );
    let text = bot.ephemeral_reply(&by_model).await;
    assert!(
        text.contains("**Usage by model** · your launches"),
        "{text}"
    );
    assert!(
        text.contains("claude-sonnet-4-6") && text.contains("`$2.5000`"),
        "{text}"
    );

    for (option, value, expected) in [
        ("since", "forever", "90m, 12h, 7d, 4w"),
        ("by", "team", "person, project, model or tool"),
        ("show", "everyone", "use mine or server"),
    ] {
        let bad = bot.slash(alice(), "usage", &[(option, value.into())]);
        let text = bot.ephemeral_reply(&bad).await;
        assert!(text.contains(expected), "{option}: {text}");
    }
    // Another server this deployment does not serve is refused before anything is read.
    let elsewhere = bot.slash(alice().in_server(OTHER_GUILD), "usage", &[]);
    let text = bot.ephemeral_reply(&elsewhere).await;
    assert!(text.contains("serves only the servers"), "{text}");
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_may_lower_a_budget_but_only_a_manager_may_raise_it() {
    let bot = start_bot(&[("CODECOURIER_DEFAULT_BUDGET_USD", "1")]).await;
    bind_project(&bot, &[]).await;
    let with_budget = |usd: f64| {
        let mut options = prompt("Add a README");
        options.push(("budget_usd", usd.into()));
        options
    };
    let raised = bot.slash(alice(), "launch", &with_budget(5.0));
    let text = bot.ephemeral_reply(&raised).await;
    assert_eq!(
        text,
        "A budget above $1.00 needs Manage Server: ask for at most that, or leave `budget_usd` out."
    );
    let run = bot.slash(
        alice(),
        "workflow run",
        &[("task", "Add a README".into()), ("budget_usd", 5.0.into())],
    );
    let text = bot.ephemeral_reply(&run).await;
    assert!(
        text.starts_with("A budget above $1.00 needs Manage Server"),
        "{text}"
    );
    assert!(records(&bot).is_empty());

    // Lower is anyone's to ask for; higher a manager's. Each launch runs with the budget asked for.
    for (user, usd) in [(alice(), 0.5), (User::manager(BOB), 5.0)] {
        let launch = bot.slash(user, "launch", &with_budget(usd));
        bot.public_reply(&launch).await;
        let thread = bot.run_thread().await;
        bot.final_status(&thread).await;
        bot.next_message(thread.id).await;
        let record = &records(&bot)[0];
        assert_eq!(
            record["request"]["budget"]["max_cost_usd"], usd,
            "{record:#}"
        );
    }
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_s_own_upstream_gets_only_the_project_s_own_key() {
    const ALICES_KEY: &str = "sk-ant-alice-own-key-0000000003";
    let bot = start_bot(&[]).await;
    // A manager points the project at an upstream of their choosing, with no key of its own.
    bind_project(
        &bot,
        &[("ANTHROPIC_BASE_URL", "https://models.example.net")],
    )
    .await;
    let store = store_of(&bot).await;
    let project = store
        .project_for_channel(codecourier::ids::DiscordId(CHANNEL_ID))
        .await
        .unwrap()
        .unwrap();
    let scope = codecourier::pipeline::project_scope(project.id);
    assert!(store
        .delete_secret(&scope, "ANTHROPIC_API_KEY")
        .await
        .unwrap());
    store.close().await;
    // Neither the deployment's key nor Alice's own goes there.
    for planted in [None, Some(ALICES_KEY)] {
        if let Some(key) = planted {
            let user = codecourier::pipeline::user_scope(codecourier::ids::DiscordId(ALICE));
            plant_key(&bot, &user, key).await;
        }
        let launch = bot.slash(alice(), "launch", &prompt("Add a README"));
        let text = bot.ephemeral_reply(&launch).await;
        assert!(
            text.contains("this project sends its model calls to its own ANTHROPIC_BASE_URL, so ANTHROPIC_API_KEY must be the project's own too"),
            "{text}"
        );
    }
    assert!(records(&bot).is_empty());
    bot.finish().await;
}
