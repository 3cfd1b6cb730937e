//! The bot of `codecourier serve` against the fake Discord, as the Discord tests drive it: started
//! in-process on a test world, with helpers to send commands and read what it posted.

use std::time::{Duration, Instant};

use codecourier::catalog::Catalog;
use codecourier::config::Config;
use serde_json::{json, Value};

use super::fake_discord::*;
use super::{fixtures_bin, World, API_KEY};

pub const T: Duration = Duration::from_secs(20);

pub struct Bot {
    pub fake: FakeDiscord,
    pub world: World,
    pub probe: UnknownEventProbe,
    pub client: tokio::task::JoinHandle<()>,
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.client.abort();
    }
}

pub async fn start_bot_in(world: World, fake: FakeDiscord, extra: &[(&str, &str)]) -> Bot {
    // The test's own settings come first: the lookup takes the first match.
    let mut vars: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.extend(
        [
            ("DISCORD_TOKEN", BOT_TOKEN.into()),
            ("DISCORD_API_BASE", fake.api_base()),
            ("DISCORD_GUILD_ID", GUILD_ID.to_string()),
            (
                "CODECOURIER_DATA_DIR",
                world.dir.path().join("data").display().to_string(),
            ),
            (
                "CODECOURIER_TOOLS_DIR",
                fixtures_bin().display().to_string(),
            ),
            ("ANTHROPIC_API_KEY", API_KEY.into()),
            ("CODECOURIER_ALLOW_LOCAL_REPOS", "true".into()),
        ]
        .map(|(k, v): (&str, String)| (k.to_string(), v)),
    );
    let config =
        Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .unwrap();
    let probe = UnknownEventProbe::new();
    let builder = codecourier::discord::client_builder(config, Catalog::built_in())
        .await
        .unwrap();
    let mut client = builder.raw_event_handler(probe.clone()).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = client.start().await;
    });
    fake.wait_ready(T).await;
    fake.wait_for(
        "PUT",
        format!("/applications/{APP_ID}/guilds/{GUILD_ID}/commands").as_str(),
        T,
    )
    .await;
    Bot {
        fake,
        world,
        probe,
        client: task,
    }
}

pub async fn start_bot(extra: &[(&str, &str)]) -> Bot {
    start_bot_in(World::new(), FakeDiscord::start().await, extra).await
}

impl Bot {
    pub fn repo(&self) -> String {
        self.world.origin.display().to_string()
    }

    /// `/launch` by `user` with the given options; returns the interaction token used.
    pub fn launch(&self, token: &str, user: u64, options: Value) -> u64 {
        let id = self.fake.snowflake();
        self.fake.dispatch(
            "INTERACTION_CREATE",
            slash(id, token, "launch", options, user),
        );
        id
    }

    pub fn options(&self, prompt: &str, extra: &[(&str, Value)]) -> Value {
        let mut options = vec![
            json!({"name": "prompt", "type": 3, "value": prompt}),
            json!({"name": "repo", "type": 3, "value": self.repo()}),
        ];
        for (name, value) in extra {
            let kind = if value.is_i64() { 4 } else { 3 };
            options.push(json!({"name": name, "type": kind, "value": value}));
        }
        Value::Array(options)
    }

    /// Waits for the thread's message that satisfies `done`, reading the thread's posts and edits.
    pub async fn wait_thread_message(
        &self,
        thread: u64,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + T;
        loop {
            if let Some(m) = self.fake.messages_in(thread).into_iter().find(|m| done(m)) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} in thread {thread}: {:#?}",
                self.fake.messages_in(thread)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn cli(&self, args: &[&str]) -> Value {
        let out = self.world.std_cmd().args(args).output().unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// The callback path of the interaction with this token.
pub fn callback(token: &str) -> regex::Regex {
    regex::Regex::new(&format!("^/interactions/[0-9]+/{token}/callback$")).unwrap()
}

pub fn content(m: &Value) -> &str {
    m["content"].as_str().unwrap_or_default()
}

pub async fn bind_project(bot: &Bot, vars: &[(&str, &str)]) {
    let data = bot.world.dir.path().join("data").display().to_string();
    let config =
        Config::from_lookup(|name| (name == "CODECOURIER_DATA_DIR").then(|| data.clone())).unwrap();
    let store = codecourier::store::Store::open(&config).await.unwrap();
    let project = store
        .bind_channel_project(
            codecourier::ids::DiscordId(CHANNEL_ID),
            Some(codecourier::ids::DiscordId(GUILD_ID)),
            &bot.repo(),
            None,
            None,
        )
        .await
        .unwrap();
    let pairs: Vec<(String, codecourier::secret::Secret)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), codecourier::secret::Secret::new(*v)))
        .collect();
    store
        .put_env(&codecourier::pipeline::project_scope(project.id), &pairs)
        .await
        .unwrap();
    store.close().await;
}

/// The bot with the real Claude Code CLI as its agent, talking to a fake Anthropic API that the
/// channel's project points it at (with `vars` as further project variables).
pub async fn start_claude_bot(
    mode: super::fake_anthropic::Mode,
    vars: &[(&str, &str)],
) -> (Bot, wiremock::MockServer) {
    let tools = super::claude_code_tools_dir().display().to_string();
    let bot = start_bot(&[("CODECOURIER_TOOLS_DIR", tools.as_str())]).await;
    let api = super::fake_anthropic::start(mode).await;
    let base = api.uri();
    let mut all = vec![("ANTHROPIC_BASE_URL", base.as_str())];
    all.extend_from_slice(vars);
    bind_project(&bot, &all).await;
    (bot, api)
}

pub async fn thread_of_launch(bot: &Bot) -> u64 {
    let threads = regex::Regex::new("^/channels/[0-9]+/messages/[0-9]+/threads$").unwrap();
    let thread = bot.fake.wait_for("POST", threads, T).await;
    thread.response["id"].as_str().unwrap().parse().unwrap()
}

pub async fn wait_status(bot: &Bot, status: &str) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let list = bot.cli(&["sandboxes", "list", "--json"]);
        if let Some(r) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == status)
        {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "nothing reached {status}: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
