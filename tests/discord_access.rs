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
