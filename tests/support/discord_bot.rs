//! The bot of `codecourier serve` against the fake Discord, driven the way people use it: a user
//! runs a slash command, presses a button by its label, chooses in a select menu, fills in the
//! modal the bot showed; the test then reads what the bot posted.
//!
//! Reading pops: every interaction reply, follow-up, thread and channel message the bot posts is
//! read once, in order. `Bot::finish`, which every test ends with, fails the test when the bot
//! posted something the test never read, and dropping a `Bot` that was not finished panics. Not
//! posts: lookups (GET), command registration, and edits of channel messages (the status
//! messages): the bot coalesces those on a timer, so a test reads a message's latest state
//! (`wait_message`, `final_status`) rather than each edit.
//!
//! Waiting never sleeps: the fake wakes every wait when a request arrives, and a wait that times
//! out says what the bot did post.

use std::process::{Child, Command as StdCommand, Stdio};
use std::time::Duration;

use codecourier::catalog::Catalog;
use codecourier::config::Config;
use regex::Regex;
use serde_json::{json, Value};

use super::fake_discord::*;
use super::{fixtures_bin, World, API_KEY};

/// Bound on every wait: reached only when something is broken.
pub const T: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Who acts.

/// A member of the fake guild, as interactions carry them.
#[derive(Clone, Copy, Debug)]
pub struct User {
    pub id: u64,
    permissions: u64,
    roles: &'static [u64],
    /// Where they act from: `Some(guild)`, or `None` for a direct message with the bot.
    server: Option<u64>,
    /// The channel they act in, when not #general (add it with `FakeDiscord::add_channel`).
    channel: Option<u64>,
}

impl User {
    /// An ordinary member: no roles, `@everyone`'s permissions.
    pub const fn member(id: u64) -> Self {
        Self {
            id,
            permissions: PERMS_MEMBER,
            roles: &[],
            server: Some(GUILD_ID),
            channel: None,
        }
    }

    /// A member with Manage Server (through the Manager role).
    pub const fn manager(id: u64) -> Self {
        Self {
            id,
            permissions: PERMS_MANAGE_SERVER,
            roles: &[],
            server: Some(GUILD_ID),
            channel: None,
        }
    }

    /// The same person with these roles too (add them to the guild with `FakeDiscord::add_role`).
    pub const fn with_roles(self, roles: &'static [u64]) -> Self {
        Self { roles, ..self }
    }

    /// The same person acting from another server the bot was invited to.
    pub const fn in_server(self, guild: u64) -> Self {
        Self {
            server: Some(guild),
            ..self
        }
    }

    /// The same person acting in another channel of the server.
    pub const fn in_channel(self, channel: u64) -> Self {
        Self {
            channel: Some(channel),
            ..self
        }
    }

    /// The same person writing to the bot in a direct message.
    pub const fn in_dm(self) -> Self {
        Self {
            server: None,
            ..self
        }
    }

    /// `<@id>`, as the bot pings them.
    pub fn mention(&self) -> String {
        format!("<@{}>", self.id)
    }

    fn member_json(&self) -> Value {
        let mut member = member_json(self.id, self.permissions);
        let mut roles: Vec<Value> = member["roles"].as_array().cloned().unwrap_or_default();
        roles.extend(self.roles.iter().map(|r| json!(r.to_string())));
        member["roles"] = Value::Array(roles);
        member
    }
}

pub const fn alice() -> User {
    User::member(ALICE)
}

pub const fn bob() -> User {
    User::member(BOB)
}

// ---------------------------------------------------------------------------------------------
// What users send and what the bot answers.

/// An interaction a user sent: what its reply, follow-ups and modal are looked up by.
#[derive(Clone, Debug)]
pub struct Interaction {
    pub id: u64,
    pub token: String,
    pub user: User,
    /// The channel object it was sent in (a thread for a press in a thread).
    channel: Value,
    /// For a press or a choice: the message the component is on.
    message_id: Option<u64>,
}

/// Discord's interaction callback types, by what they do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// 4: a message (public or ephemeral).
    Message,
    /// 5: "thinking…", the answer follows as an edit.
    Deferred,
    /// 6: acknowledged without a message (a modal closed, a press taken).
    Acknowledged,
    /// 7: the message the component is on, updated in place.
    Update,
    /// 8: autocomplete choices.
    Choices,
    /// 9: a modal.
    Modal,
    Other(u64),
}

/// The bot's first answer to an interaction.
#[derive(Clone, Debug)]
pub struct Reply {
    pub request: Recorded,
    /// The message it posted (Message, Deferred) or updated (Update), as the fake holds it.
    message: Option<Value>,
}

impl Reply {
    pub fn kind(&self) -> ReplyKind {
        match self.request.body["type"].as_u64().unwrap_or(0) {
            4 => ReplyKind::Message,
            5 => ReplyKind::Deferred,
            6 => ReplyKind::Acknowledged,
            7 => ReplyKind::Update,
            8 => ReplyKind::Choices,
            9 => ReplyKind::Modal,
            other => ReplyKind::Other(other),
        }
    }

    /// The callback's `data`.
    pub fn data(&self) -> &Value {
        &self.request.body["data"]
    }

    pub fn text(&self) -> &str {
        self.data()["content"].as_str().unwrap_or_default()
    }

    pub fn is_ephemeral(&self) -> bool {
        self.data()["flags"].as_u64().unwrap_or(0) & 64 != 0
    }

    /// The message this reply posted or updated.
    pub fn message(&self) -> &Value {
        self.message
            .as_ref()
            .unwrap_or_else(|| panic!("a {:?} reply shows no message", self.kind()))
    }
}

/// A modal the bot showed, with the text inputs it holds.
#[derive(Clone, Debug)]
pub struct Modal {
    pub custom_id: String,
    pub title: String,
    /// (input custom id, pre-filled value) in order.
    pub fields: Vec<(String, String)>,
    opened_by: Interaction,
}

impl Modal {
    pub fn value(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(id, _)| id == field)
            .map(|(_, v)| v.as_str())
    }
}

/// A thread the bot opened for a launch, scan, workflow run or chain, with its status message
/// (the launch's phases, the workflow's timeline).
#[derive(Clone, Debug)]
pub struct RunThread {
    pub id: u64,
    pub name: String,
    pub status: Value,
}

// ---------------------------------------------------------------------------------------------
// The bot.

enum Client {
    /// `codecourier::discord::client_builder` in this process.
    InProcess(tokio::task::JoinHandle<()>),
    /// `codecourier serve` as a child process, which a test may kill and start again.
    Process {
        child: Option<Child>,
        configure: Box<dyn Fn(&mut StdCommand) + Send + Sync>,
    },
}

pub struct Bot {
    pub fake: FakeDiscord,
    pub world: World,
    pub probe: UnknownEventProbe,
    client: Client,
    finished: bool,
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.stop();
        if !self.finished && !std::thread::panicking() {
            panic!(
                "a Discord test ends with `bot.finish().await`: it checks that the bot posted \
                 nothing the test did not read"
            );
        }
    }
}

/// The bot in this process, on `world`, talking to `fake`, with `extra` settings first.
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
            // The bot runs in the test process: its sandboxes' bridge is the built binary.
            (
                "CODECOURIER_BRIDGE_BINARY",
                env!("CARGO_BIN_EXE_codecourier").into(),
            ),
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
    let bot = Bot {
        fake,
        world,
        probe,
        client: Client::InProcess(task),
        finished: false,
    };
    bot.wait_connected().await;
    bot
}

pub async fn start_bot(extra: &[(&str, &str)]) -> Bot {
    start_bot_in(World::new(), FakeDiscord::start().await, extra).await
}

/// `codecourier serve` as a process (one a test can kill), on `world`, talking to `fake`;
/// `configure` adds to its environment.
pub async fn start_bot_process(
    world: World,
    fake: FakeDiscord,
    configure: impl Fn(&mut StdCommand) + Send + Sync + 'static,
) -> Bot {
    let mut bot = Bot {
        fake,
        world,
        probe: UnknownEventProbe::new(),
        client: Client::Process {
            child: None,
            configure: Box::new(configure),
        },
        finished: false,
    };
    bot.restart().await;
    bot
}

/// The bot with the real Claude Code CLI as its agent, talking to a fake Anthropic API that the
/// operator configured as the deployment's upstream (with `vars` as the project's variables).
pub async fn start_claude_bot(
    mode: super::fake_anthropic::Mode,
    vars: &[(&str, &str)],
) -> (Bot, wiremock::MockServer) {
    let tools = super::claude_code_tools_dir().display().to_string();
    let api = super::fake_anthropic::start(mode).await;
    let base = api.uri();
    let bot = start_bot(&[
        ("CODECOURIER_TOOLS_DIR", tools.as_str()),
        ("ANTHROPIC_BASE_URL", base.as_str()),
    ])
    .await;
    bind_project(&bot, vars).await;
    (bot, api)
}

/// Binds #general to the bot's bare repository, with project variables (how a test makes the
/// stand-in agent misbehave, since Discord launches carry no `--env`).
pub async fn bind_project(bot: &Bot, vars: &[(&str, &str)]) {
    bind_project_to(bot, &bot.repo(), vars).await
}

/// Binds #general to `repo`, with project variables.
pub async fn bind_project_to(bot: &Bot, repo: &str, vars: &[(&str, &str)]) {
    let store = store_of(bot).await;
    let project = store
        .bind_channel_project(
            codecourier::ids::DiscordId(CHANNEL_ID),
            Some(codecourier::ids::DiscordId(GUILD_ID)),
            repo,
            None,
            None,
        )
        .await
        .unwrap();
    let pairs: Vec<(String, codecourier::secret::Secret)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), codecourier::secret::Secret::new(*v)))
        .collect();
    let scope = codecourier::pipeline::project_scope(project.id);
    store.put_env(&scope, &pairs).await.unwrap();
    // A project that sends an API to an upstream of its own brings its own key for it:
    // CodeCourier sends no other key there.
    let own_keys = [
        ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", super::API_KEY),
        (
            "OPENROUTER_BASE_URL",
            "OPENROUTER_API_KEY",
            "sk-or-v1-project-key",
        ),
        ("OPENAI_BASE_URL", "OPENAI_API_KEY", "sk-project-openai-key"),
    ];
    for (url, key, value) in own_keys {
        if vars.iter().any(|(n, _)| *n == url) {
            let value = codecourier::secret::Secret::new(value);
            store.put_secret(&scope, key, &value).await.unwrap();
        }
    }
    store.close().await;
}

/// The bot's store, opened beside it (as the CLI would): close it when done.
pub async fn store_of(bot: &Bot) -> codecourier::store::Store {
    let data = bot.world.dir.path().join("data").display().to_string();
    let config =
        Config::from_lookup(|name| (name == "CODECOURIER_DATA_DIR").then(|| data.clone())).unwrap();
    codecourier::store::Store::open(&config).await.unwrap()
}

impl Bot {
    // ------------------------------------------------------------------ life

    /// Connected and its guild commands registered: ready for users.
    async fn wait_connected(&self) {
        self.fake.wait_ready(T).await;
        self.fake
            .wait_for(
                "PUT",
                format!("/applications/{APP_ID}/guilds/{GUILD_ID}/commands"),
                T,
            )
            .await;
    }

    /// Kills the `codecourier serve` process (SIGKILL: no chance to say goodbye).
    pub fn kill(&mut self) {
        let Client::Process { child, .. } = &mut self.client else {
            panic!("only a bot started with start_bot_process can be killed");
        };
        if let Some(mut child) = child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts `codecourier serve` (again) and waits until it is connected.
    pub async fn restart(&mut self) {
        self.kill();
        let mut cmd = self.world.std_cmd();
        cmd.env("DISCORD_TOKEN", BOT_TOKEN)
            .env("DISCORD_API_BASE", self.fake.api_base())
            .env("DISCORD_GUILD_ID", GUILD_ID.to_string())
            .env("CODECOURIER_ALLOW_LOCAL_REPOS", "true")
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let Client::Process { child, configure } = &mut self.client else {
            unreachable!("kill checked");
        };
        configure(&mut cmd);
        *child = Some(cmd.spawn().unwrap());
        self.wait_connected().await;
    }

    fn stop(&mut self) {
        match &mut self.client {
            Client::InProcess(task) => task.abort(),
            Client::Process { child, .. } => {
                if let Some(mut child) = child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }

    /// Ends the test: the bot is stopped, and the test fails if the bot posted anything the test
    /// did not read, called a route the fake does not know, sent a payload serenity could not
    /// read, or its client had stopped by itself.
    pub async fn finish(mut self) {
        self.finished = true;
        let alive = match &mut self.client {
            Client::InProcess(task) => !task.is_finished(),
            Client::Process { child, .. } => child
                .as_mut()
                .is_none_or(|c| c.try_wait().unwrap().is_none()),
        };
        self.stop();
        let unread: Vec<Recorded> = self
            .fake
            .take_unread()
            .into_iter()
            .filter(is_post)
            .collect();
        assert!(
            unread.is_empty(),
            "the bot posted what the test never read:\n{}",
            unread
                .iter()
                .map(|r| format!("  {}\n    body: {}\n", r.summary(), r.body))
                .collect::<String>()
        );
        let unhandled = self.fake.unhandled();
        assert!(
            unhandled.is_empty(),
            "the bot called routes the fake does not know: {:#?}",
            unhandled.iter().map(Recorded::summary).collect::<Vec<_>>()
        );
        self.probe.assert_none();
        assert!(alive, "the bot's client stopped by itself during the test");
    }

    // ------------------------------------------------------------------ what users do

    /// `/command` (or `/command subcommand`, or `/command group subcommand`, space-separated)
    /// with `options`; a file hosted with `fake.host_file` is an attachment option.
    pub fn slash(&self, user: User, command: &str, options: &[(&str, Value)]) -> Interaction {
        let (id, token) = self.next_interaction("slash");
        let json_options = options_json(options);
        let words: Vec<&str> = command.split(' ').collect();
        let mut payload = match words.as_slice() {
            [name, group, sub] => slash(
                id,
                &token,
                name,
                json!([{"name": group, "type": 2, "options": [
                    {"name": sub, "type": 1, "options": json_options}]}]),
                user.id,
            ),
            [name, sub] => subcommand(id, &token, name, sub, json_options, user.id),
            _ => slash(id, &token, command, json_options, user.id),
        };
        let attachments: serde_json::Map<String, Value> = options
            .iter()
            .filter_map(|(_, v)| {
                v.get("filename")?;
                Some((v["id"].as_str()?.to_string(), v.clone()))
            })
            .collect();
        if !attachments.is_empty() {
            payload["data"]["resolved"] = json!({ "attachments": attachments });
        }
        self.send(user, payload, id, token, None)
    }

    /// Autocomplete while `user` types `focused.1` into option `focused.0` of `/command`, with
    /// `options` already filled in.
    pub fn autocomplete(
        &self,
        user: User,
        command: &str,
        options: &[(&str, Value)],
        focused: (&str, &str),
    ) -> Interaction {
        let (id, token) = self.next_interaction("ac");
        let mut options = options_json(options);
        options
            .as_array_mut()
            .unwrap()
            .push(json!({"name": focused.0, "type": 3, "value": focused.1, "focused": true}));
        let mut payload = match command.split_once(' ') {
            Some((name, sub)) => subcommand(id, &token, name, sub, options, user.id),
            None => slash(id, &token, command, options, user.id),
        };
        payload["type"] = json!(4);
        self.send(user, payload, id, token, None)
    }

    /// The message context-menu command `name` on `target`.
    pub fn message_command(&self, user: User, name: &str, target: &Value) -> Interaction {
        let (id, token) = self.next_interaction("ctx");
        let payload = message_context_menu(id, &token, name, target.clone(), user.id);
        self.send(user, payload, id, token, None)
    }

    /// A message `user` posts in `channel` (not the bot), for a context-menu command say.
    pub fn someone_posts(&self, user: User, channel: u64, text: &str) -> Value {
        let message = message_json(self.fake.snowflake(), channel, user.id, text);
        self.fake.add_message(message.clone());
        message
    }

    /// Presses the button labelled `label` on `message` as it is now.
    pub fn press(&self, user: User, message: &Value, label: &str) -> Interaction {
        let message = self.current(message);
        let buttons = components_of(&message, 2);
        let button = buttons
            .iter()
            .find(|b| b["label"] == label)
            .unwrap_or_else(|| {
                panic!(
                    "no button {label:?} on the message; its buttons: {:?}\n{}",
                    buttons.iter().map(|b| &b["label"]).collect::<Vec<_>>(),
                    content(&message)
                )
            });
        assert!(
            button["disabled"] != true,
            "the button {label:?} is disabled: nobody can press it"
        );
        let custom_id = button["custom_id"].as_str().unwrap().to_string();
        self.send_component(user, &message, &custom_id, 2, &[])
    }

    /// Chooses `values` in the select menu of `message` (as it is now) that offers them all.
    pub fn choose(&self, user: User, message: &Value, values: &[&str]) -> Interaction {
        let message = self.current(message);
        let select = select_offering(&message, values);
        let count = values.len() as u64;
        assert!(
            select["min_values"].as_u64().unwrap_or(1) <= count
                && count <= select["max_values"].as_u64().unwrap_or(1),
            "the select takes {}–{} values, not {count}",
            select["min_values"],
            select["max_values"]
        );
        let custom_id = select["custom_id"].as_str().unwrap().to_string();
        self.send_component(user, &message, &custom_id, 3, values)
    }

    /// Submits `modal` (which the bot showed) with `inputs`; the other inputs keep their
    /// pre-filled values, and every input is sent, as Discord does.
    pub async fn submit_modal(
        &self,
        user: User,
        modal: &Modal,
        inputs: &[(&str, &str)],
    ) -> Interaction {
        for (field, _) in inputs {
            assert!(
                modal.value(field).is_some(),
                "the modal {:?} has no input {field:?}: {:?}",
                modal.title,
                modal.fields
            );
        }
        let values: Vec<(&str, &str)> = modal
            .fields
            .iter()
            .map(|(field, prefilled)| {
                let typed = inputs.iter().find(|(f, _)| f == field).map(|(_, v)| *v);
                (field.as_str(), typed.unwrap_or(prefilled))
            })
            .collect();
        let (id, token) = self.next_interaction("modal");
        let mut payload = modal_submit(id, &token, &modal.custom_id, &values, user.id);
        payload = in_channel(payload, &modal.opened_by.channel);
        let message_id = modal.opened_by.message_id;
        if let Some(message) = message_id.and_then(|m| self.fake.message(m)) {
            payload["message"] = message;
        }
        self.send(user, payload, id, token, message_id)
    }

    // ------------------------------------------------------------------ what the bot answers

    /// The bot's first answer to `interaction` (read).
    pub async fn reply(&self, interaction: &Interaction) -> Reply {
        let request = self
            .fake
            .wait_for(
                "POST",
                format!(
                    "/interactions/{}/{}/callback",
                    interaction.id, interaction.token
                ),
                T,
            )
            .await;
        assert!(
            request.status < 300,
            "Discord refused the answer: {} {}",
            request.summary(),
            request.response
        );
        let message = match request.body["type"].as_u64() {
            Some(4 | 5) => self.fake.original_response(&interaction.token),
            Some(7) => interaction.message_id.and_then(|m| self.fake.message(m)),
            _ => None,
        };
        Reply { request, message }
    }

    /// The text of the bot's answer, which only `interaction`'s user sees.
    pub async fn ephemeral_reply(&self, interaction: &Interaction) -> String {
        let reply = self.reply(interaction).await;
        assert!(
            reply.kind() == ReplyKind::Message && reply.is_ephemeral(),
            "not an ephemeral message: {:#}",
            reply.request.body
        );
        reply.text().to_string()
    }

    /// The text of the bot's answer, which everyone in the channel sees.
    pub async fn public_reply(&self, interaction: &Interaction) -> String {
        let reply = self.reply(interaction).await;
        assert!(
            reply.kind() == ReplyKind::Message && !reply.is_ephemeral(),
            "not a public message: {:#}",
            reply.request.body
        );
        reply.text().to_string()
    }

    /// The message the pressed component is on, as the bot's answer updated it in place.
    pub async fn updated_message(&self, interaction: &Interaction) -> Value {
        let reply = self.reply(interaction).await;
        assert_eq!(
            reply.kind(),
            ReplyKind::Update,
            "not an update of the message: {:#}",
            reply.request.body
        );
        reply.message().clone()
    }

    /// The modal the bot answered with (Discord accepted it).
    pub async fn modal(&self, interaction: &Interaction) -> Modal {
        let reply = self.reply(interaction).await;
        assert_eq!(
            reply.kind(),
            ReplyKind::Modal,
            "not a modal: {:#}",
            reply.request.body
        );
        let data = reply.data();
        let fields = data["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let input = &row["components"][0];
                (
                    input["custom_id"].as_str().unwrap().to_string(),
                    input["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        Modal {
            custom_id: data["custom_id"].as_str().unwrap().to_string(),
            title: data["title"].as_str().unwrap_or_default().to_string(),
            fields,
            opened_by: interaction.clone(),
        }
    }

    /// The autocomplete choices' names.
    pub async fn choices(&self, interaction: &Interaction) -> Vec<String> {
        let reply = self.reply(interaction).await;
        assert_eq!(reply.kind(), ReplyKind::Choices, "{:#}", reply.request.body);
        reply.data()["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// The bot acknowledged at once ("thinking…", only the user sees it) and then answered by
    /// editing that message: the answer's text.
    pub async fn deferred_answer(&self, interaction: &Interaction) -> String {
        let reply = self.reply(interaction).await;
        assert_eq!(
            reply.kind(),
            ReplyKind::Deferred,
            "acknowledged before the slow work: {:#}",
            reply.request.body
        );
        let edit = self
            .fake
            .wait_for(
                "*",
                Regex::new(&format!(
                    "^/webhooks/{APP_ID}/{}(/messages/@original)?$",
                    interaction.token
                ))
                .unwrap(),
                T,
            )
            .await;
        edit.body["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The bot's follow-up message on `interaction` (after its first answer).
    pub async fn follow_up(&self, interaction: &Interaction) -> String {
        let post = self
            .fake
            .wait_for(
                "POST",
                format!("/webhooks/{APP_ID}/{}", interaction.token),
                T,
            )
            .await;
        post.body["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    // ------------------------------------------------------------------ what the bot posts

    /// The next thread the bot opened: (id, name).
    pub async fn next_thread(&self) -> (u64, String) {
        let created = self
            .fake
            .wait_for(
                "POST",
                Regex::new("^/channels/[0-9]+/(messages/[0-9]+/)?threads$").unwrap(),
                T,
            )
            .await;
        let id = created.response["id"].as_str().unwrap().parse().unwrap();
        let name = created.response["name"].as_str().unwrap().to_string();
        (id, name)
    }

    /// The next thread the bot opened for a run, with the status message it posted first.
    pub async fn run_thread(&self) -> RunThread {
        let (id, name) = self.next_thread().await;
        let status = self.next_message(id).await;
        RunThread { id, name, status }
    }

    /// The next message the bot posted in `channel` (a thread too), as it is now.
    pub async fn next_message(&self, channel: u64) -> Value {
        let post = self
            .fake
            .wait_for("POST", format!("/channels/{channel}/messages"), T)
            .await;
        let id = post.response["id"].as_str().unwrap().parse().unwrap();
        self.fake.message(id).unwrap()
    }

    /// Waits until `message` (edited in place by the bot) shows `what`, and returns it then.
    pub async fn wait_message(
        &self,
        message: &Value,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        self.fake
            .wait_message(message_id(message), what, T, done)
            .await
    }

    /// A run's status message in its last state: the bot's final edit, without the Stop button.
    pub async fn final_status(&self, thread: &RunThread) -> Value {
        self.wait_message(&thread.status, "its final state, without buttons", |m| {
            m["components"].as_array().is_none_or(|c| c.is_empty())
        })
        .await
    }

    /// The request with which the bot posted `message` (its mentions, its files).
    pub fn post_of(&self, message: &Value) -> Recorded {
        let id = message["id"].clone();
        self.fake
            .requests()
            .into_iter()
            .find(|r| r.method == "POST" && r.response["id"] == id)
            .unwrap_or_else(|| panic!("the bot did not post {id}"))
    }

    // ------------------------------------------------------------------ the world

    pub fn repo(&self) -> String {
        self.world.origin.display().to_string()
    }

    /// `options` plus `repo`: the bot's bare repository.
    pub fn with_repo<'a>(&self, options: &[(&'a str, Value)]) -> Vec<(&'a str, Value)> {
        let mut all = options.to_vec();
        all.push(("repo", self.repo().into()));
        all
    }

    /// `codecourier ARGS` on the bot's data directory; its JSON output.
    pub fn cli(&self, args: &[&str]) -> Value {
        let out = self.world.std_cmd().args(args).output().unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    // ------------------------------------------------------------------ helpers

    fn next_interaction(&self, what: &str) -> (u64, String) {
        let id = self.fake.snowflake();
        (id, format!("tok-{what}-{id}"))
    }

    /// Dispatches `payload` from `user` and returns what its answers are found by.
    fn send(
        &self,
        user: User,
        mut payload: Value,
        id: u64,
        token: String,
        message_id: Option<u64>,
    ) -> Interaction {
        payload["member"] = user.member_json();
        if let Some(channel) = user.channel {
            payload["channel_id"] = json!(channel.to_string());
            payload["channel"]["id"] = json!(channel.to_string());
            payload["channel"]["name"] = json!("elsewhere");
        }
        match user.server {
            Some(GUILD_ID) => {}
            Some(other) => {
                let other = json!(other.to_string());
                payload["guild_id"] = other.clone();
                payload["data"]["guild_id"] = other.clone();
                payload["channel"]["guild_id"] = other.clone();
                payload["authorizing_integration_owners"] = json!({"0": other});
            }
            None => {
                let object = payload.as_object_mut().unwrap();
                object.remove("guild_id");
                object.remove("member");
                object.remove("guild_locale");
                payload["data"].as_object_mut().unwrap().remove("guild_id");
                payload["user"] = user_json(user.id);
                payload["channel"] = json!({"id": payload["channel_id"], "type": 1});
                payload["context"] = json!(1);
            }
        }
        let channel = payload["channel"].clone();
        self.fake.dispatch("INTERACTION_CREATE", payload);
        Interaction {
            id,
            token,
            user,
            channel,
            message_id,
        }
    }

    fn send_component(
        &self,
        user: User,
        message: &Value,
        custom_id: &str,
        component_type: u64,
        values: &[&str],
    ) -> Interaction {
        let (id, token) = self.next_interaction("press");
        let mut payload = component(
            id,
            &token,
            custom_id,
            component_type,
            values,
            message.clone(),
            user.id,
        );
        let channel_id = snowflake(&message["channel_id"]);
        if let Some(channel) = self.fake.channel(channel_id) {
            payload = in_channel(payload, &channel);
        }
        self.send(user, payload, id, token, Some(message_id(message)))
    }

    /// `message` as the fake holds it now (as the user sees it), or as given.
    fn current(&self, message: &Value) -> Value {
        self.fake
            .message(message_id(message))
            .unwrap_or_else(|| message.clone())
    }
}

/// Only posts must be read: not lookups, command registration or edits of channel messages.
fn is_post(r: &Recorded) -> bool {
    let edit = Regex::new("^/channels/[0-9]+/messages/[0-9]+$").unwrap();
    !(r.method == "GET"
        || (r.method == "PUT" && r.path.starts_with(&format!("/applications/{APP_ID}/")))
        || (r.method == "PATCH" && edit.is_match(&r.path)))
}

fn options_json(options: &[(&str, Value)]) -> Value {
    Value::Array(
        options
            .iter()
            .map(|(name, value)| {
                if value.get("filename").is_some() {
                    return json!({"name": name, "type": 11, "value": value["id"]});
                }
                let kind = match value {
                    Value::Number(n) if n.is_i64() => 4,
                    Value::Number(_) => 10,
                    Value::Bool(_) => 5,
                    _ => 3,
                };
                json!({"name": name, "type": kind, "value": value})
            })
            .collect(),
    )
}

fn snowflake(id: &Value) -> u64 {
    id.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a snowflake: {id}"))
}

fn message_id(message: &Value) -> u64 {
    snowflake(&message["id"])
}

/// The components of `kind` (2 button, 3 string select) on a message, row by row.
fn components_of(message: &Value, kind: u64) -> Vec<Value> {
    message["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["type"] == kind)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reading messages.

pub fn content(m: &Value) -> &str {
    m["content"].as_str().unwrap_or_default()
}

/// The button labelled `label` on `message`.
pub fn button(message: &Value, label: &str) -> Value {
    components_of(message, 2)
        .into_iter()
        .find(|b| b["label"] == label)
        .unwrap_or_else(|| panic!("no button {label:?} on {:#}", message["components"]))
}

/// The one select menu on `message` that offers all of `values`.
pub fn select_offering(message: &Value, values: &[&str]) -> Value {
    let offering: Vec<Value> = components_of(message, 3)
        .into_iter()
        .filter(|s| {
            let offered: Vec<&str> = s["options"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["value"].as_str())
                .collect();
            values.iter().all(|v| offered.contains(v))
        })
        .collect();
    assert_eq!(
        offering.len(),
        1,
        "{} select menus offer {values:?}: {:#}",
        offering.len(),
        message["components"]
    );
    offering.into_iter().next().unwrap()
}

/// The values a select menu shows as chosen.
pub fn chosen(select: &Value) -> Vec<String> {
    select["options"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["default"] == true)
        .map(|o| o["value"].as_str().unwrap().to_string())
        .collect()
}
