//! Discord figures for the README: `cargo run --release --example discord_bench`.
//!
//! The real bot (`codecourier::discord::client_builder`, serenity + poise) talks to the fake Discord
//! of the tests (tests/support/fake_discord.rs) on loopback; launches run in real local sandboxes
//! with the stand-in agent (tests/fixtures/bin/claude).
//!
//! 1. Interaction acknowledgement: from dispatching `/launch` on the gateway to the fake receiving
//!    the interaction callback, for launches refused by validation (an ephemeral answer) and for
//!    launches that pass and are recorded (the public summary), against a bare poise bot whose only
//!    command answers `ok`.
//! 2. REST calls of one launch whose agent says 1,000 things in 30 s: the thread's status edits
//!    stay at least 1.5 s apart; then the same launch under a Discord-like rate limit on message
//!    edits (5 per 5 s per channel) gets no 429.
//!
//! Needs bubblewrap and git, like the local sandbox itself.

#[path = "../tests/support/fake_discord.rs"]
#[allow(dead_code)]
mod fake_discord;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use codecourier::catalog::Catalog;
use codecourier::config::Config;
use codecourier::ids::DiscordId;
use codecourier::secret::Secret;
use codecourier::store::{SandboxFilter, Store};
use fake_discord::*;
use poise::serenity_prelude as serenity;
use regex::Regex;
use serde_json::{json, Value};

/// Bound on every wait: reached only when something is broken (the fake then says what it saw).
const T: Duration = Duration::from_secs(120);
/// Untimed interactions first on each bot: connection pools and caches warm up.
const WARMUP: usize = 10;
/// Timed interactions per bot (our refused launches, the bare bot's pings).
const SAMPLES: usize = 200;
/// Timed launches that pass validation and run (one sandbox each).
const RECORDED: usize = 20;
const CHATTY_EVENTS: u32 = 1000;
const CHATTY_SECONDS: u32 = 30;
/// The bot's promise (src/discord/thread.rs EDIT_INTERVAL).
const EDIT_INTERVAL: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------------
// The bare bot to compare with: poise, one slash command, nothing else.

type BareError = Box<dyn std::error::Error + Send + Sync>;

/// Answers at once.
#[poise::command(slash_command)]
async fn ping(ctx: poise::Context<'_, (), BareError>) -> Result<(), BareError> {
    ctx.say("ok").await?;
    Ok(())
}

async fn start_bare(fake: &FakeDiscord) -> tokio::task::JoinHandle<()> {
    let framework = poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: vec![ping()],
            ..Default::default()
        })
        .setup(|ctx, _ready, framework| {
            Box::pin(async move {
                poise::builtins::register_in_guild(
                    ctx,
                    &framework.options().commands,
                    serenity::GuildId::new(GUILD_ID),
                )
                .await?;
                Ok(())
            })
        })
        .build();
    // fake.http() is built like the bot's own client: the fake's base URL, serenity's ratelimiter
    // off (with it on, serenity would ignore the base URL).
    let mut client =
        serenity::ClientBuilder::new_with_http(fake.http(), serenity::GatewayIntents::GUILDS)
            .framework(framework)
            .await
            .expect("bare client");
    let task = tokio::spawn(async move {
        let _ = client.start().await;
    });
    wait_registered(fake).await;
    task
}

// ---------------------------------------------------------------------------------------------
// CodeCourier's bot, on a data directory and a bare repository of its own.

struct World {
    dir: tempfile::TempDir,
    origin: PathBuf,
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@example.com")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@example.com")
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

impl World {
    /// A data directory and a bare repository whose `main` has one commit.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(
            root,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "origin.git",
            ],
        );
        git(root, &["init", "--quiet", "--initial-branch=main", "seed"]);
        let seed = root.join("seed");
        std::fs::write(seed.join("README.md"), "# Widgets\n").unwrap();
        git(&seed, &["add", "README.md"]);
        git(&seed, &["commit", "--quiet", "-m", "Initial commit"]);
        let origin = root.join("origin.git");
        git(
            &seed,
            &["push", "--quiet", origin.to_str().unwrap(), "HEAD:main"],
        );
        Self { dir, origin }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn repo(&self) -> String {
        self.origin.display().to_string()
    }

    /// The bot's store, opened beside the running bot, as an operator's CLI would.
    async fn store(&self) -> Store {
        let data = self.data();
        let config =
            Config::from_lookup(|name| (name == "CODECOURIER_DATA_DIR").then(|| data.clone()))
                .unwrap();
        Store::open(&config).await.unwrap()
    }
}

async fn start_ours(fake: &FakeDiscord, world: &World) -> tokio::task::JoinHandle<()> {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bin");
    let vars = [
        ("DISCORD_TOKEN", BOT_TOKEN.to_string()),
        ("DISCORD_API_BASE", fake.api_base()),
        ("DISCORD_GUILD_ID", GUILD_ID.to_string()),
        ("CODECOURIER_DATA_DIR", world.data()),
        ("CODECOURIER_TOOLS_DIR", tools.display().to_string()),
        ("ANTHROPIC_API_KEY", "sk-ant-bench-0000000000".to_string()),
        ("CODECOURIER_ALLOW_LOCAL_REPOS", "true".to_string()),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let mut client = codecourier::discord::client_builder(config, Catalog::built_in())
        .await
        .expect("bot")
        .await
        .expect("client");
    let task = tokio::spawn(async move {
        let _ = client.start().await;
    });
    wait_registered(fake).await;
    task
}

/// Connected, and its commands registered: the bot is ready for interactions.
async fn wait_registered(fake: &FakeDiscord) {
    fake.wait_ready(T).await;
    let path = format!("/applications/{APP_ID}/guilds/{GUILD_ID}/commands");
    fake.wait_for("PUT", path.as_str(), T).await;
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/// Dispatches `/name` and returns the time from the dispatch to the fake receiving the
/// interaction's callback (the fake stamps each request as it arrives), with that callback.
/// Timed interactions skip the fake's payload check (the warm-up ran it on the same shape), so
/// only the bot is measured.
async fn ack(
    fake: &FakeDiscord,
    name: &str,
    options: Value,
    checked: bool,
) -> (Duration, Recorded) {
    let id = fake.snowflake();
    let token = format!("bench-{id}");
    let payload = slash(id, &token, name, options, ALICE);
    let callback = format!("/interactions/{id}/{token}/callback");
    let sent = Instant::now();
    if checked {
        fake.dispatch("INTERACTION_CREATE", payload);
    } else {
        fake.dispatch_unchecked("INTERACTION_CREATE", payload);
    }
    let answer = fake.wait_for("POST", callback.as_str(), T).await;
    assert_eq!(answer.status, 204, "{}", answer.summary());
    (answer.at.duration_since(sent), answer)
}

/// Nearest-rank percentile.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn content(body: &Value) -> &str {
    body["content"].as_str().unwrap_or_default()
}

fn is_ephemeral(callback: &Recorded) -> bool {
    callback.body["data"]["flags"].as_u64().unwrap_or(0) & 64 != 0
}

fn launch_options(world: &World, prompt: &str, extra: &[(&str, Value)]) -> Value {
    let mut options = vec![
        json!({"name": "prompt", "type": 3, "value": prompt}),
        json!({"name": "repo", "type": 3, "value": world.repo()}),
    ];
    for (name, value) in extra {
        options.push(json!({"name": name, "type": 4, "value": value}));
    }
    Value::Array(options)
}

struct Figures {
    label: &'static str,
    p50: Duration,
    p99: Duration,
}

impl Figures {
    fn of(label: &'static str, samples: &[Duration]) -> Self {
        Self {
            label,
            p50: percentile(samples, 50.0),
            p99: percentile(samples, 99.0),
        }
    }

    fn print(&self, n: usize, bare: Option<&Figures>) {
        print!(
            "  {:<44} n={n:<4} p50 {:>9}   p99 {:>9}",
            self.label,
            ms(self.p50),
            ms(self.p99)
        );
        if let Some(bare) = bare {
            print!(
                "   ratio to bare p50 {:.2}x  p99 {:.2}x",
                self.p50.as_secs_f64() / bare.p50.as_secs_f64(),
                self.p99.as_secs_f64() / bare.p99.as_secs_f64()
            );
        }
        println!();
    }
}

/// Waits for the launch that was just acknowledged to post its result in its thread, and returns
/// the thread. Reads the fake's records: the next thread created, then its posts.
async fn wait_result(fake: &FakeDiscord) -> (u64, Recorded, Recorded) {
    let threads = Regex::new("^/channels/[0-9]+/messages/[0-9]+/threads$").unwrap();
    let thread = fake.wait_for("POST", threads, T).await;
    let thread: u64 = thread.response["id"].as_str().unwrap().parse().unwrap();
    let posts = format!("/channels/{thread}/messages");
    let status = fake.wait_for("POST", posts.as_str(), T).await;
    let result = fake.wait_for("POST", posts.as_str(), T).await;
    assert!(
        content(&result.body).contains("sandbox `"),
        "the thread's second post is the result: {}",
        content(&result.body)
    );
    (thread, status, result)
}

async fn bench_acks(ours: &FakeDiscord, bare: &FakeDiscord, world: &World) {
    println!("interaction acknowledgement: gateway dispatch → interaction callback at the fake");
    println!("  (after {WARMUP} untimed interactions on each bot; refused launches and the bare bot alternate, so background load hits both alike)");
    // memory_mb below the catalog's 256 MB: refused by validation, answered at once.
    let refused_options =
        |world: &World| launch_options(world, "Too small", &[("memory_mb", json!(100))]);
    for _ in 0..WARMUP {
        let (_, answer) = ack(ours, "launch", refused_options(world), true).await;
        assert!(is_ephemeral(&answer));
        ack(bare, "ping", json!([]), true).await;
    }
    let (mut refused, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let (took, answer) = ack(ours, "launch", refused_options(world), false).await;
        assert!(
            is_ephemeral(&answer),
            "a refused launch gets an ephemeral answer: {}",
            answer.body
        );
        refused.push(took);
        let (took, answer) = ack(bare, "ping", json!([]), false).await;
        assert_eq!(content(&answer.body["data"]), "ok");
        plain.push(took);
    }
    // Launches that pass: recorded in the store, acknowledged by the public summary. Each runs to
    // its result before the next, so no sandbox is busy beside a measured acknowledgement.
    let mut recorded = Vec::new();
    for i in 0..RECORDED {
        let (took, answer) = ack(
            ours,
            "launch",
            launch_options(world, &format!("Save the prompt ({i})"), &[]),
            false,
        )
        .await;
        assert!(
            !is_ephemeral(&answer) && content(&answer.body["data"]).contains("launched by"),
            "a recorded launch is acknowledged by its public summary: {}",
            answer.body
        );
        recorded.push(took);
        let (_, _, result) = wait_result(ours).await;
        assert!(content(&result.body).contains("completed"));
    }
    let store = world.store().await;
    let records = store
        .list_sandboxes(&SandboxFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    store.close().await;
    assert_eq!(
        records.len(),
        RECORDED,
        "only the launches that passed were recorded"
    );

    let bare_figures = Figures::of("bare poise bot, `/ping` → say(\"ok\")", &plain);
    bare_figures.print(plain.len(), None);
    Figures::of("/launch refused by validation (ephemeral)", &refused)
        .print(refused.len(), Some(&bare_figures));
    Figures::of("/launch recorded (public summary)", &recorded)
        .print(recorded.len(), Some(&bare_figures));
    println!("  (a recorded launch writes its sandbox record and first phases to SQLite before answering; p99 of {RECORDED} is their slowest; each ran to its result before the next; {} sandboxes recorded)", records.len());
}

/// What a launch's REST calls were for.
fn kind_of(r: &Recorded, thread: u64, status: u64) -> &'static str {
    let in_thread = format!("/channels/{thread}/messages");
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", p) if p.starts_with("/interactions/") => "interaction callback (the summary)",
        ("GET", p) if p.starts_with("/webhooks/") => "fetch of the summary (@original)",
        ("POST", p) if p.ends_with("/threads") => "thread creation",
        ("POST", p) if p == in_thread => "thread posts (status message, result)",
        ("PATCH", p) if p == format!("{in_thread}/{status}") => "status message edits",
        _ => "other",
    }
}

/// One chatty launch from the channel's project; prints its REST calls and checks the pacing of
/// its status edits. Returns the status edits.
async fn chatty_launch(fake: &FakeDiscord, title: &str) -> Vec<Recorded> {
    let first = fake.requests().len();
    let started = Instant::now();
    let (_, answer) = ack(
        fake,
        "launch",
        json!([{"name": "prompt", "type": 3, "value": "Talk a lot"}]),
        true,
    )
    .await;
    assert!(!is_ephemeral(&answer), "{}", answer.body);
    let (thread, status, result) = wait_result(fake).await;
    let took = started.elapsed();
    assert!(
        content(&result.body).contains("completed"),
        "{}",
        content(&result.body)
    );
    let status: u64 = status.response["id"].as_str().unwrap().parse().unwrap();
    // The result is the launch's last call (the status updater has finished before it).
    let calls: Vec<Recorded> = fake.requests().into_iter().skip(first).collect();
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for call in &calls {
        let kind = kind_of(call, thread, status);
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let edits: Vec<Recorded> = calls
        .iter()
        .filter(|r| kind_of(r, thread, status) == "status message edits")
        .cloned()
        .collect();
    let gaps: Vec<Duration> = edits
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect();
    let closest = gaps.iter().min().copied().unwrap_or_default();
    println!("  {title}: dispatch → result {:.1} s", took.as_secs_f64());
    println!(
        "    REST calls: {} in all, {:.3} per agent event",
        calls.len(),
        calls.len() as f64 / f64::from(CHATTY_EVENTS)
    );
    for (kind, n) in &kinds {
        println!("      {n:>4}  {kind}");
    }
    println!(
        "    status edits: closest two {:.3} s apart, median gap {:.3} s (never closer than {:.1} s: {})",
        closest.as_secs_f64(),
        percentile(&gaps, 50.0).as_secs_f64(),
        EDIT_INTERVAL.as_secs_f64(),
        if closest >= EDIT_INTERVAL { "yes" } else { "NO" }
    );
    assert!(closest >= EDIT_INTERVAL, "status edits closer than 1.5 s");
    assert!(
        calls.iter().all(|r| r.status < 400),
        "a call failed: {:?}",
        calls
            .iter()
            .filter(|r| r.status >= 400)
            .map(Recorded::summary)
            .collect::<Vec<_>>()
    );
    edits
}

async fn bench_chatty(fake: &FakeDiscord, world: &World) {
    println!(
        "REST calls of one launch whose agent emits {CHATTY_EVENTS} events in {CHATTY_SECONDS} s"
    );
    // Everything of the acknowledgement runs has been waited for; only new calls are read now.
    fake.take_unread();
    // Discord launches carry no --env: the channel's project gives the stand-in agent its mode.
    let store = world.store().await;
    let project = store
        .bind_channel_project(
            DiscordId(CHANNEL_ID),
            Some(DiscordId(GUILD_ID)),
            &world.repo(),
            None,
            None,
        )
        .await
        .unwrap();
    let vars = [
        ("FAKE_CLAUDE", "chatty".to_string()),
        ("CHATTY_EVENTS", CHATTY_EVENTS.to_string()),
        ("CHATTY_SECONDS", CHATTY_SECONDS.to_string()),
    ]
    .map(|(k, v)| (k.to_string(), Secret::new(v)));
    store
        .put_env(&codecourier::pipeline::project_scope(project.id), &vars)
        .await
        .unwrap();

    chatty_launch(fake, "no rate limit").await;
    let latest = store
        .list_sandboxes(&SandboxFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let said = store
        .events(latest[0].id, 0)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.log_line().contains("agent: Step "))
        .count();
    println!("    agent messages the bot received and logged: {said}");
    assert_eq!(said, CHATTY_EVENTS as usize);

    // Discord's limit on message edits is about 5 per 5 s per channel; the fake keys its buckets
    // by route and channel like Discord, and answers 429 past the limit.
    let edit = Regex::new("^/channels/[0-9]+/messages/[0-9]+$").unwrap();
    let limit = RateLimit::new(5, Duration::from_secs(5)).only("PATCH", edit);
    fake.set_rate_limit(Some(limit.clone()));
    let before = fake.rate_limited_count();
    let edits = chatty_launch(fake, "with 5 edits per 5 s per channel enforced").await;
    println!(
        "    429 answers to the bot: {} (rate_limited_count() {before} → {})",
        fake.rate_limited_count() - before,
        fake.rate_limited_count()
    );
    assert_eq!(
        fake.rate_limited_count(),
        before,
        "the bot was rate limited"
    );

    // The limit is live: a client editing the same message on every event is refused at once.
    // Re-arming it empties the buckets, so the bot's last edits take none of the control's five.
    fake.set_rate_limit(Some(limit));
    let last = edits.last().expect("edits");
    let (channel, message) = last
        .path
        .strip_prefix("/channels/")
        .and_then(|p| p.split_once("/messages/"))
        .unwrap();
    let http = fake.http();
    let mut refused = 0;
    for i in 0..10 {
        let result = serenity::ChannelId::new(channel.parse().unwrap())
            .edit_message(
                &http,
                serenity::MessageId::new(message.parse().unwrap()),
                serenity::EditMessage::new().content(format!("step {i}")),
            )
            .await;
        refused += usize::from(result.is_err());
    }
    println!("    control: a client editing on every event (10 edits back to back, fresh bucket) got {refused} × 429");
    assert!(refused > 0, "the rate limit is not enforced");
    store.close().await;
}

#[tokio::main]
async fn main() {
    println!("cargo run --release --example discord_bench");
    let world = World::new();
    let ours = FakeDiscord::start().await;
    let bare = FakeDiscord::start().await;
    let our_client = start_ours(&ours, &world).await;
    let bare_client = start_bare(&bare).await;

    bench_acks(&ours, &bare, &world).await;
    bare_client.abort();
    println!();
    bench_chatty(&ours, &world).await;
    our_client.abort();
}
