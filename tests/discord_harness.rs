//! Self-tests of the fake Discord (tests/support/fake_discord.rs): a real serenity client and a
//! real poise framework, both defined here, talk to it over the real wire protocol, and every
//! REST call they make is asserted on the fake.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use poise::serenity_prelude as serenity;
use serde_json::{json, Value};
use serenity::{
    AutoArchiveDuration, ButtonStyle, ChannelId, ChannelType, ClientBuilder, Command,
    ComponentInteractionDataKind, CreateActionRow, CreateAttachment, CreateButton, CreateCommand,
    CreateEmbed, CreateEmbedFooter, CreateInteractionResponse, CreateInteractionResponseMessage,
    CreateMessage, CreateSelectMenu, CreateSelectMenuKind, CreateSelectMenuOption, CreateThread,
    EditInteractionResponse, EditMessage, GatewayIntents, GuildId, Interaction, ShardManager,
    UserId,
};
use support::fake_discord::*;

/// Generous: only reached when something is broken, and the panic then lists what happened.
const T: Duration = Duration::from_secs(10);

fn bot_auth() -> String {
    format!("Bot {BOT_TOKEN}")
}

fn assert_bot_auth(r: &Recorded) {
    assert_eq!(
        r.authorization.as_deref(),
        Some(bot_auth().as_str()),
        "{}",
        r.summary()
    );
}

// ---------------------------------------------------------------------------------------------
// A tiny poise bot.

type Error = Box<dyn std::error::Error + Send + Sync>;
type Ctx<'a> = poise::Context<'a, Data, Error>;
type AppCtx<'a> = poise::ApplicationContext<'a, Data, Error>;

struct Data {
    errors: Errors,
}

/// Answers "thinking…" (deferred), then edits `@original`.
#[poise::command(slash_command)]
async fn status(ctx: AppCtx<'_>) -> Result<(), Error> {
    ctx.defer().await?;
    ctx.interaction
        .edit_response(
            ctx.http(),
            EditInteractionResponse::new().content("All systems go"),
        )
        .await?;
    Ok(())
}

/// Replies, opens a thread, posts and edits a status message in it, then edits the reply.
#[poise::command(slash_command)]
async fn launch(
    ctx: Ctx<'_>,
    #[description = "What the agent should do"] prompt: String,
) -> Result<(), Error> {
    let reply = ctx.say("Launching…").await?;
    let thread = ctx
        .channel_id()
        .create_thread(
            ctx.http(),
            CreateThread::new(format!("run: {prompt}"))
                .kind(ChannelType::PublicThread)
                .auto_archive_duration(AutoArchiveDuration::OneDay),
        )
        .await?;
    let status = thread
        .id
        .send_message(
            ctx.http(),
            CreateMessage::new().content(format!("Prompt: {prompt}")),
        )
        .await?;
    thread
        .id
        .edit_message(
            ctx.http(),
            status.id,
            EditMessage::new().content("Status: running"),
        )
        .await?;
    reply
        .edit(
            ctx,
            poise::CreateReply::default().content(format!("Launched in <#{}>", thread.id)),
        )
        .await?;
    Ok(())
}

#[derive(Debug, poise::Modal)]
#[name = "Ask the agent"]
struct AskModal {
    #[name = "Prompt"]
    #[paragraph]
    prompt: String,
    #[name = "Branch"]
    branch: Option<String>,
}

/// Opens a modal and answers with what was submitted.
#[poise::command(slash_command)]
async fn ask(ctx: AppCtx<'_>) -> Result<(), Error> {
    let Some(answers) = modal_listening_first::<AskModal>(ctx).await? else {
        return Ok(());
    };
    let branch = answers.branch.unwrap_or_else(|| "main".into());
    poise::say_reply(
        poise::Context::Application(ctx),
        format!("Asked {:?} on {branch}", answers.prompt),
    )
    .await?;
    Ok(())
}

/// `poise::execute_modal`, except that it listens for the submit before it shows the modal:
/// poise starts its collector only once the modal went out, so a submit that arrives at once (a
/// test's) can be missed, and nothing on the wire says when it listens.
async fn modal_listening_first<M: poise::Modal>(ctx: AppCtx<'_>) -> Result<Option<M>, Error> {
    use futures_util::StreamExt;
    // poise's naming: the modal is called after the interaction that opened it.
    let custom_id = ctx.interaction.id.to_string();
    let wanted = custom_id.clone();
    let mut submits = serenity::ModalInteractionCollector::new(ctx.serenity_context())
        .filter(move |submit| submit.data.custom_id == wanted)
        .timeout(Duration::from_secs(30))
        .stream();
    ctx.interaction
        .create_response(ctx.http(), M::create(None, custom_id))
        .await?;
    ctx.has_sent_initial_response
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let Some(submit) = submits.next().await else {
        return Ok(None);
    };
    submit
        .create_response(ctx.http(), CreateInteractionResponse::Acknowledge)
        .await?;
    Ok(Some(M::parse(submit.data.clone())?))
}

/// Bytes that look like a multipart boundary and are not UTF-8, to prove uploads are
/// byte-exact.
const REPORT_BYTES: &[u8] = b"summary\r\n--not-a-boundary\r\n\x00\xff\xfe end";
const LOG_BYTES: &[u8] = b"line 1\nline 2\n";

/// Replies with an attached report, then posts a log file into the channel.
#[poise::command(slash_command)]
async fn report(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.send(
        poise::CreateReply::default()
            .content("Report attached")
            .attachment(CreateAttachment::bytes(REPORT_BYTES, "report.txt")),
    )
    .await?;
    ctx.channel_id()
        .send_message(
            ctx.http(),
            CreateMessage::new()
                .content("Full log")
                .add_file(CreateAttachment::bytes(LOG_BYTES, "run.log")),
        )
        .await?;
    Ok(())
}

async fn complete_model<'a>(_ctx: Ctx<'_>, partial: &'a str) -> impl Iterator<Item = String> + 'a {
    ["opus", "sonnet", "haiku"]
        .into_iter()
        .filter(move |m| m.starts_with(partial))
        .map(str::to_string)
}

/// A string option with autocomplete.
#[poise::command(slash_command)]
async fn pick(
    ctx: Ctx<'_>,
    #[description = "Model"]
    #[autocomplete = "complete_model"]
    model: String,
) -> Result<(), Error> {
    ctx.say(format!("Picked {model}")).await?;
    Ok(())
}

/// A message context-menu command.
#[poise::command(context_menu_command = "Summarize")]
async fn summarize(ctx: Ctx<'_>, message: serenity::Message) -> Result<(), Error> {
    ctx.say(format!("{} said: {}", message.author.name, message.content))
        .await?;
    Ok(())
}

/// A subcommand that needs Manage Server (poise checks it over REST).
#[poise::command(slash_command, subcommands("reset"))]
async fn admin(_ctx: Ctx<'_>) -> Result<(), Error> {
    Ok(())
}

#[poise::command(slash_command, required_permissions = "MANAGE_GUILD")]
async fn reset(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.say("Reset done").await?;
    Ok(())
}

/// What a bot's handlers failed with, waitable like the fake's records.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<(Vec<String>, usize)>>, Arc<tokio::sync::Notify>);

impl Errors {
    fn push(&self, error: String) {
        self.0.lock().unwrap().0.push(error);
        self.1.notify_waiters();
    }

    /// The next error not returned before.
    async fn next(&self, timeout: Duration) -> String {
        let wait = async {
            loop {
                let notified = self.1.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut guard = self.0.lock().unwrap();
                    let (errors, seen) = &mut *guard;
                    if let Some(e) = errors.get(*seen).cloned() {
                        *seen += 1;
                        return e;
                    }
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .expect("the bot reported no error")
    }
}

/// A running client; `errors` collects what its handlers failed with.
struct Bot {
    shard_manager: Arc<ShardManager>,
    task: tokio::task::JoinHandle<Result<(), serenity::Error>>,
    errors: Errors,
}

impl Bot {
    async fn stop(self) {
        self.shard_manager.shutdown_all().await;
        let _ = self.task.await;
    }

    fn assert_no_errors(&self) {
        let errors = self.errors.0.lock().unwrap();
        assert!(errors.0.is_empty(), "the bot failed: {:#?}", errors.0);
    }
}

async fn run(builder: ClientBuilder, errors: Errors) -> Bot {
    let mut client = builder.await.expect("client builds");
    let shard_manager = client.shard_manager.clone();
    let task = tokio::spawn(async move { client.start().await });
    Bot {
        shard_manager,
        task,
        errors,
    }
}

async fn start_poise(fake: &FakeDiscord, probe: &UnknownEventProbe) -> Bot {
    let errors = Errors::default();
    let framework = poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: vec![
                status(),
                launch(),
                ask(),
                report(),
                pick(),
                summarize(),
                admin(),
            ],
            on_error: |error| {
                Box::pin(async move {
                    // Permission refusals are expected in one test; poise's default handler
                    // answers those. Anything else is a failure the test should see.
                    if let poise::FrameworkError::Command { error, ctx, .. } = &error {
                        ctx.data().errors.push(error.to_string());
                    }
                    let _ = poise::builtins::on_error(error).await;
                })
            },
            ..Default::default()
        })
        .setup({
            let errors = errors.clone();
            move |ctx, _ready, framework| {
                Box::pin(async move {
                    poise::builtins::register_in_guild(
                        ctx,
                        &framework.options().commands,
                        GuildId::new(GUILD_ID),
                    )
                    .await?;
                    Ok(Data { errors })
                })
            }
        })
        .build();
    let builder = ClientBuilder::new_with_http(fake.http(), GatewayIntents::GUILDS)
        .framework(framework)
        .raw_event_handler(probe.clone());
    run(builder, errors).await
}

// ---------------------------------------------------------------------------------------------
// A tiny serenity bot: a global `/ping` whose answer carries buttons and a select.

struct Handler {
    errors: Errors,
}

impl Handler {
    async fn handle(
        &self,
        ctx: &serenity::Context,
        interaction: Interaction,
    ) -> Result<(), serenity::Error> {
        match interaction {
            Interaction::Command(cmd) if cmd.data.name == "ping" => {
                let buttons = CreateActionRow::Buttons(vec![
                    CreateButton::new("approve")
                        .label("Approve")
                        .style(ButtonStyle::Success),
                    CreateButton::new("retry").label("Retry"),
                ]);
                let select = CreateActionRow::SelectMenu(CreateSelectMenu::new(
                    "model",
                    CreateSelectMenuKind::String {
                        options: vec![
                            CreateSelectMenuOption::new("Opus", "opus"),
                            CreateSelectMenuOption::new("Sonnet", "sonnet"),
                        ],
                    },
                ));
                let embed = CreateEmbed::new()
                    .title("Run 42")
                    .description("Waiting for approval")
                    .field("Model", "opus", true)
                    .colour(0x5865F2)
                    .footer(CreateEmbedFooter::new("codecourier"));
                let message = CreateInteractionResponseMessage::new()
                    .content("pong")
                    .embed(embed)
                    .components(vec![buttons, select]);
                cmd.create_response(&ctx.http, CreateInteractionResponse::Message(message))
                    .await
            }
            Interaction::Component(press) => {
                match (press.data.custom_id.as_str(), &press.data.kind) {
                    ("approve", _) => {
                        press
                            .create_response(&ctx.http, CreateInteractionResponse::Acknowledge)
                            .await?;
                        press
                            .channel_id
                            .send_message(
                                &ctx.http,
                                CreateMessage::new()
                                    .content(format!("Approved by <@{}>", press.user.id)),
                            )
                            .await
                            .map(drop)
                    }
                    ("model", ComponentInteractionDataKind::StringSelect { values }) => {
                        let update = CreateInteractionResponseMessage::new()
                            .content(format!("Model: {}", values[0]));
                        press
                            .create_response(
                                &ctx.http,
                                CreateInteractionResponse::UpdateMessage(update),
                            )
                            .await
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

#[serenity::async_trait]
impl serenity::EventHandler for Handler {
    async fn ready(&self, ctx: serenity::Context, _ready: serenity::Ready) {
        let ping = CreateCommand::new("ping").description("Answers with buttons");
        if let Err(e) = Command::set_global_commands(&ctx.http, vec![ping]).await {
            self.errors.push(format!("registering: {e}"));
        }
    }

    async fn interaction_create(&self, ctx: serenity::Context, interaction: Interaction) {
        if let Err(e) = self.handle(&ctx, interaction).await {
            self.errors.push(e.to_string());
        }
    }
}

async fn start_serenity(fake: &FakeDiscord, probe: &UnknownEventProbe) -> Bot {
    let errors = Errors::default();
    let builder = ClientBuilder::new_with_http(fake.http(), GatewayIntents::GUILDS)
        .event_handler(Handler {
            errors: errors.clone(),
        })
        .raw_event_handler(probe.clone());
    run(builder, errors).await
}

// ---------------------------------------------------------------------------------------------
// Shared steps.

/// A fake and a poise bot that has connected and registered its commands.
async fn poise_ready() -> (FakeDiscord, UnknownEventProbe, Bot) {
    let fake = FakeDiscord::start().await;
    let probe = UnknownEventProbe::new();
    let bot = start_poise(&fake, &probe).await;
    fake.wait_ready(T).await;
    fake.wait_for(
        "PUT",
        format!("/applications/{APP_ID}/guilds/{GUILD_ID}/commands"),
        T,
    )
    .await;
    fake.take_unread();
    (fake, probe, bot)
}

/// A fake and a serenity bot that has connected and registered `/ping`.
async fn serenity_ready() -> (FakeDiscord, UnknownEventProbe, Bot) {
    let fake = FakeDiscord::start().await;
    let probe = UnknownEventProbe::new();
    let bot = start_serenity(&fake, &probe).await;
    fake.wait_ready(T).await;
    fake.wait_for("PUT", format!("/applications/{APP_ID}/commands"), T)
        .await;
    fake.take_unread();
    (fake, probe, bot)
}

/// Nothing unexpected happened: no unread or unhandled request, no dropped event, no error.
async fn finish(fake: FakeDiscord, probe: UnknownEventProbe, bot: Bot) {
    fake.assert_no_unread();
    let unhandled = fake.unhandled();
    assert!(
        unhandled.is_empty(),
        "calls the fake has no route for: {unhandled:#?}"
    );
    probe.assert_none();
    bot.assert_no_errors();
    bot.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn handshake_and_command_registration() {
    // A short heartbeat interval, to see heartbeats ACKed within the test.
    let fake = FakeDiscord::start_with(Config {
        heartbeat_interval_ms: 300,
        ..Config::default()
    })
    .await;
    let probe = UnknownEventProbe::new();
    let bot = start_poise(&fake, &probe).await;

    // serenity finds the gateway through REST (FAKE_DISCORD.md §3), poise asks for the owners.
    let gateway = fake.wait_for("GET", "/gateway", T).await;
    assert_bot_auth(&gateway);
    assert_eq!(gateway.response["url"], fake.gateway_url());
    assert!(
        gateway.content_type.is_none(),
        "a GET has no body: {:?}",
        gateway.content_type
    );
    let application = fake.wait_for("GET", "/oauth2/applications/@me", T).await;
    assert_bot_auth(&application);

    let connection = fake.wait_ready(T).await;
    assert_eq!(connection.uri, "/?v=10");
    let identify = connection.identify.clone().unwrap();
    assert_eq!(identify["op"], 2);
    assert_eq!(identify["d"]["token"], bot_auth());
    assert_eq!(identify["d"]["intents"], GatewayIntents::GUILDS.bits());
    assert_eq!(identify["d"]["shard"], json!([0, 1]));

    let put = fake
        .wait_for(
            "PUT",
            format!("/applications/{APP_ID}/guilds/{GUILD_ID}/commands"),
            T,
        )
        .await;
    assert_bot_auth(&put);
    assert_eq!(put.content_type.as_deref(), Some("application/json"));
    assert_eq!(put.status, 200, "{}", put.response);
    let sent = put.body.as_array().unwrap();
    let names: Vec<&str> = sent.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "status",
            "launch",
            "ask",
            "report",
            "pick",
            "Summarize",
            "admin"
        ]
    );
    let by_name = |name: &str| sent.iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!(by_name("Summarize")["type"], 3);
    assert_eq!(by_name("launch")["options"][0]["name"], "prompt");
    assert_eq!(by_name("launch")["options"][0]["required"], true);
    assert_eq!(by_name("pick")["options"][0]["autocomplete"], true);
    assert_eq!(by_name("admin")["options"][0]["name"], "reset");
    assert_eq!(by_name("admin")["options"][0]["type"], 1);
    // The echo has what serenity's `Command` needs; the fake stores it.
    let registered = fake.registered_commands(Some(GUILD_ID));
    assert_eq!(registered.len(), 7);
    assert!(registered
        .iter()
        .all(|c| c["id"].is_string() && c["application_id"] == json!(APP_ID.to_string())));

    // Heartbeats are ACKed, so serenity keeps its one connection.
    fake.wait_heartbeats(connection.index, 2, T).await;
    assert_eq!(fake.connections().len(), 1);
    assert!(fake.connections()[0].open);
    finish(fake, probe, bot).await;
}

#[tokio::test]
async fn slash_command_deferred_then_original_edited() {
    let (fake, probe, bot) = poise_ready().await;
    let id = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        slash(id, "tok-status", "status", json!([]), ALICE),
    );

    let callback = fake
        .wait_for("POST", format!("/interactions/{id}/tok-status/callback"), T)
        .await;
    assert_eq!(callback.body["type"], 5, "deferred: {}", callback.body);
    assert_eq!(callback.status, 204);
    let edit = fake
        .wait_for(
            "PATCH",
            format!("/webhooks/{APP_ID}/tok-status/messages/@original"),
            T,
        )
        .await;
    assert_bot_auth(&edit);
    assert_eq!(edit.body["content"], "All systems go");
    assert_eq!(edit.status, 200, "{}", edit.response);
    // The loading message became the answer.
    let original = fake.original_response("tok-status").unwrap();
    assert_eq!(original["content"], "All systems go");
    assert_eq!(original["flags"].as_u64().unwrap() & (1 << 7), 0);
    assert_eq!(original["channel_id"], CHANNEL_ID.to_string());
    finish(fake, probe, bot).await;
}

#[tokio::test]
async fn slash_command_opens_a_thread_and_posts_and_edits_in_it() {
    let (fake, probe, bot) = poise_ready().await;
    let id = fake.snowflake();
    let options = json!([{"name": "prompt", "type": 3, "value": "fix the tests"}]);
    fake.dispatch(
        "INTERACTION_CREATE",
        slash(id, "tok-launch", "launch", options, ALICE),
    );

    let callback = fake
        .wait_for("POST", format!("/interactions/{id}/tok-launch/callback"), T)
        .await;
    assert_eq!(callback.body["type"], 4);
    assert_eq!(callback.body["data"]["content"], "Launching…");

    let create = fake
        .wait_for("POST", format!("/channels/{CHANNEL_ID}/threads"), T)
        .await;
    assert_bot_auth(&create);
    assert_eq!(create.body["name"], "run: fix the tests");
    assert_eq!(create.body["type"], 11);
    assert_eq!(create.body["auto_archive_duration"], 1440);
    assert_eq!(create.status, 201);
    let thread: u64 = create.response["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(create.response["parent_id"], CHANNEL_ID.to_string());

    let post = fake
        .wait_for("POST", format!("/channels/{thread}/messages"), T)
        .await;
    assert_bot_auth(&post);
    assert_eq!(post.body["content"], "Prompt: fix the tests");
    let message = post.response["id"].as_str().unwrap().to_string();

    let edit = fake
        .wait_for("PATCH", format!("/channels/{thread}/messages/{message}"), T)
        .await;
    assert_bot_auth(&edit);
    assert_eq!(edit.body["content"], "Status: running");
    assert_eq!(edit.response["id"], message);

    let reply = fake
        .wait_for(
            "PATCH",
            format!("/webhooks/{APP_ID}/tok-launch/messages/@original"),
            T,
        )
        .await;
    assert_eq!(reply.body["content"], format!("Launched in <#{thread}>"));

    // The fake's world agrees: one message in the thread, edited.
    let in_thread = fake.messages_in(thread);
    assert_eq!(in_thread.len(), 1);
    assert_eq!(in_thread[0]["content"], "Status: running");
    assert!(in_thread[0]["edited_timestamp"].is_string());
    assert_eq!(fake.channel(thread).unwrap()["type"], 11);
    finish(fake, probe, bot).await;
}

#[tokio::test]
async fn component_interactions_are_acknowledged() {
    let (fake, probe, bot) = serenity_ready().await;
    let id = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        slash(id, "tok-ping", "ping", json!([]), ALICE),
    );
    let callback = fake
        .wait_for("POST", format!("/interactions/{id}/tok-ping/callback"), T)
        .await;
    assert_eq!(callback.body["type"], 4);
    assert_eq!(
        callback.body["data"]["components"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(callback.body["data"]["embeds"][0]["title"], "Run 42");
    // The message the buttons are on, as the fake stored it from the bot's own answer. The
    // checked dispatches below prove serenity reads its echoed embed and components.
    let message = fake.original_response("tok-ping").unwrap();
    assert_eq!(
        message["components"][0]["components"][0]["custom_id"],
        "approve"
    );
    assert_eq!(message["embeds"][0]["fields"][0]["name"], "Model");

    // A button: acknowledged without a visible answer (type 6), then a channel message.
    let press = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        component(
            press,
            "tok-approve",
            "approve",
            2,
            &[],
            message.clone(),
            BOB,
        ),
    );
    let ack = fake
        .wait_for(
            "POST",
            format!("/interactions/{press}/tok-approve/callback"),
            T,
        )
        .await;
    assert_eq!(ack.body["type"], 6);
    assert_eq!(ack.status, 204);
    let approved = fake
        .wait_for("POST", format!("/channels/{CHANNEL_ID}/messages"), T)
        .await;
    assert_bot_auth(&approved);
    assert_eq!(approved.body["content"], format!("Approved by <@{BOB}>"));

    // A string select: the message is updated in place (type 7).
    let select = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        component(
            select,
            "tok-model",
            "model",
            3,
            &["sonnet"],
            message.clone(),
            ALICE,
        ),
    );
    let update = fake
        .wait_for(
            "POST",
            format!("/interactions/{select}/tok-model/callback"),
            T,
        )
        .await;
    assert_eq!(update.body["type"], 7);
    assert_eq!(update.body["data"]["content"], "Model: sonnet");
    let id: u64 = message["id"].as_str().unwrap().parse().unwrap();
    let updated = fake.message(id).unwrap();
    assert_eq!(updated["content"], "Model: sonnet");
    assert_eq!(
        updated["components"], message["components"],
        "an update without components keeps them"
    );
    finish(fake, probe, bot).await;
}

#[tokio::test]
async fn modal_is_opened_and_submitted() {
    let (fake, probe, bot) = poise_ready().await;
    let id = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        slash(id, "tok-ask", "ask", json!([]), ALICE),
    );

    let open = fake
        .wait_for("POST", format!("/interactions/{id}/tok-ask/callback"), T)
        .await;
    assert_eq!(open.body["type"], 9, "a modal: {}", open.body);
    assert_eq!(open.status, 204, "{}", open.response);
    let modal = &open.body["data"];
    assert_eq!(modal["title"], "Ask the agent");
    // poise names the modal after the interaction and each input after its field.
    assert_eq!(modal["custom_id"], id.to_string());
    let inputs: Vec<&Value> = modal["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| &row["components"][0])
        .collect();
    assert_eq!(inputs[0]["custom_id"], "prompt");
    assert_eq!(inputs[0]["style"], 2);
    assert_eq!(inputs[0]["required"], true);
    assert_eq!(inputs[1]["custom_id"], "branch");
    assert_eq!(inputs[1]["required"], false);

    let submit = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        modal_submit(
            submit,
            "tok-submit",
            &id.to_string(),
            &[("prompt", "fix the flaky test"), ("branch", "dev")],
            ALICE,
        ),
    );
    // poise closes the modal with a bare acknowledgement…
    let ack = fake
        .wait_for(
            "POST",
            format!("/interactions/{submit}/tok-submit/callback"),
            T,
        )
        .await;
    assert_eq!(ack.body["type"], 6);
    // …and answers with a follow-up on the slash command's token.
    let followup = fake
        .wait_for("POST", format!("/webhooks/{APP_ID}/tok-ask"), T)
        .await;
    assert_eq!(
        followup.body["content"],
        "Asked \"fix the flaky test\" on dev"
    );
    assert_eq!(followup.status, 200, "{}", followup.response);
    finish(fake, probe, bot).await;
}

#[tokio::test]
async fn file_attachments_are_uploaded_as_multipart() {
    let (fake, probe, bot) = poise_ready().await;
    let id = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        slash(id, "tok-report", "report", json!([]), ALICE),
    );

    // The interaction answer carries the file.
    let callback = fake
        .wait_for("POST", format!("/interactions/{id}/tok-report/callback"), T)
        .await;
    assert!(callback.is_multipart(), "{:?}", callback.content_type);
    assert_eq!(callback.body["type"], 4, "payload_json: {}", callback.body);
    assert_eq!(callback.body["data"]["content"], "Report attached");
    assert_eq!(
        callback.body["data"]["attachments"][0]["filename"],
        "report.txt"
    );
    assert_eq!(callback.files.len(), 1);
    assert_eq!(callback.files[0].field, "files[0]");
    assert_eq!(callback.files[0].filename, "report.txt");
    assert_eq!(callback.files[0].bytes, REPORT_BYTES);

    // A channel message with a file.
    let post = fake
        .wait_for("POST", format!("/channels/{CHANNEL_ID}/messages"), T)
        .await;
    assert_bot_auth(&post);
    assert!(post.is_multipart());
    assert_eq!(post.body["content"], "Full log");
    assert_eq!(post.files[0].filename, "run.log");
    assert_eq!(post.files[0].bytes, LOG_BYTES);
    assert_eq!(post.response["attachments"][0]["filename"], "run.log");
    assert_eq!(post.response["attachments"][0]["size"], LOG_BYTES.len());

    // The stored answer is a valid serenity message whose attachment downloads from the fake.
    let original: serenity::Message =
        serde_json::from_value(fake.original_response("tok-report").unwrap()).unwrap();
    assert_eq!(original.attachments.len(), 1);
    assert_eq!(
        original.attachments[0].download().await.unwrap(),
        REPORT_BYTES
    );
    let download = fake.wait_for("GET", "/attachments/*", T).await;
    assert_eq!(download.status, 200);
    finish(fake, probe, bot).await;
}

#[tokio::test]
async fn autocomplete_and_message_context_menu() {
    let (fake, probe, bot) = poise_ready().await;
    let id = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        autocomplete(id, "tok-pick", "pick", "model", "s", json!([]), ALICE),
    );
    let choices = fake
        .wait_for("POST", format!("/interactions/{id}/tok-pick/callback"), T)
        .await;
    assert_eq!(choices.body["type"], 8);
    assert_eq!(
        choices.body["data"]["choices"],
        json!([{"name": "sonnet", "value": "sonnet"}])
    );
    assert_eq!(choices.status, 204, "{}", choices.response);

    let id = fake.snowflake();
    let target = message_json(fake.snowflake(), CHANNEL_ID, BOB, "the build is red");
    fake.dispatch(
        "INTERACTION_CREATE",
        message_context_menu(id, "tok-sum", "Summarize", target, ALICE),
    );
    let answer = fake
        .wait_for("POST", format!("/interactions/{id}/tok-sum/callback"), T)
        .await;
    assert_eq!(answer.body["type"], 4);
    assert_eq!(answer.body["data"]["content"], "bob said: the build is red");
    finish(fake, probe, bot).await;
}

#[tokio::test]
async fn manage_server_is_checked_over_rest() {
    let (fake, probe, bot) = poise_ready().await;

    // Bob is an ordinary member: poise looks up guild, channel and member, then refuses.
    let id = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        subcommand(id, "tok-bob", "admin", "reset", json!([]), BOB),
    );
    let refusal = fake
        .wait_for("POST", format!("/interactions/{id}/tok-bob/callback"), T)
        .await;
    assert_eq!(refusal.body["type"], 4);
    assert_eq!(
        refusal.body["data"]["flags"], 64,
        "ephemeral: {}",
        refusal.body
    );
    let text = refusal.body["data"]["content"].as_str().unwrap();
    // serenity calls MANAGE_GUILD "Manage Guild".
    assert!(text.contains("Manage Guild"), "{text}");
    for lookup in [
        format!("/guilds/{GUILD_ID}"),
        format!("/channels/{CHANNEL_ID}"),
        format!("/guilds/{GUILD_ID}/members/{BOB}"),
    ] {
        let r = fake.wait_for("GET", lookup, T).await;
        assert_bot_auth(&r);
        assert_eq!(r.status, 200, "{}", r.summary());
    }

    // Alice has Manage Server (in the payload, and so in the fake's member list).
    let id = fake.snowflake();
    let payload = with_manage_server(
        subcommand(id, "tok-alice", "admin", "reset", json!([]), ALICE),
        true,
    );
    assert_eq!(
        payload["member"]["permissions"],
        PERMS_MANAGE_SERVER.to_string()
    );
    fake.dispatch("INTERACTION_CREATE", payload);
    let done = fake
        .wait_for("POST", format!("/interactions/{id}/tok-alice/callback"), T)
        .await;
    assert_eq!(done.body["data"]["content"], "Reset done");
    let member = fake
        .wait_for("GET", format!("/guilds/{GUILD_ID}/members/{ALICE}"), T)
        .await;
    assert_eq!(
        member.response["roles"],
        json!([MANAGER_ROLE_ID.to_string()])
    );
    fake.take_unread(); // the guild and channel lookups again
    finish(fake, probe, bot).await;
}

#[tokio::test]
async fn unknown_event_probe_catches_a_malformed_dispatch() {
    let (fake, probe, bot) = serenity_ready().await;
    let bad_id = fake.snowflake();
    let mut bad = slash(bad_id, "tok-bad", "ping", json!([]), ALICE);
    bad.as_object_mut().unwrap().remove("entitlements");

    // The checked dispatch refuses it and says why…
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fake.dispatch("INTERACTION_CREATE", bad.clone())
    }))
    .expect_err("dispatch must refuse a payload serenity cannot read");
    let message = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("entitlements"), "{message}");

    // …sent anyway, serenity drops it silently and only the probe notices.
    fake.dispatch_unchecked("INTERACTION_CREATE", bad);
    let dropped = probe.wait_unknown(T).await;
    assert_eq!(dropped.kind, "INTERACTION_CREATE");
    assert_eq!(dropped.value["id"], bad_id.to_string());

    // A good interaction after it is answered; the bad one never was.
    let good = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        slash(good, "tok-good", "ping", json!([]), ALICE),
    );
    fake.wait_for("POST", format!("/interactions/{good}/tok-good/callback"), T)
        .await;
    assert!(fake
        .requests()
        .iter()
        .all(|r| !r.path.contains(&bad_id.to_string())));
    assert_eq!(probe.events().len(), 1);
    fake.assert_no_unread();
    bot.assert_no_errors();
    bot.stop().await;
}

#[tokio::test]
async fn rate_limit_switch_answers_429_like_discord() {
    let fake = FakeDiscord::start().await;
    let http = fake.http();
    let channel = ChannelId::new(CHANNEL_ID);
    fake.set_rate_limit(Some(
        RateLimit::new(2, Duration::from_millis(400)).only("POST", "/channels/*"),
    ));

    channel.say(&http, "one").await.unwrap();
    channel.say(&http, "two").await.unwrap();
    let err = channel.say(&http, "three").await.unwrap_err();
    // With serenity's ratelimiter disabled, a 429 reaches the caller as an error.
    match &err {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(response)) => {
            assert_eq!(response.status_code.as_u16(), 429)
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    assert_eq!(fake.rate_limited_count(), 1);
    let limited = fake
        .requests()
        .into_iter()
        .find(|r| r.status == 429)
        .unwrap();
    assert_eq!(limited.response["message"], RATE_LIMIT_MESSAGE);
    assert_eq!(limited.response["global"], false);
    let retry_after = limited.response["retry_after"].as_f64().unwrap();
    assert!(retry_after > 0.0 && retry_after <= 0.4, "{retry_after}");
    assert_eq!(limited.response_header("retry-after"), Some("1"));
    assert_eq!(limited.response_header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        limited.route,
        format!("POST /channels/{CHANNEL_ID}/messages")
    );

    // Other routes and other channels are separate buckets.
    let thread = channel
        .create_thread(
            &http,
            CreateThread::new("side").kind(ChannelType::PublicThread),
        )
        .await
        .unwrap();
    thread.id.say(&http, "in the thread").await.unwrap();
    assert_eq!(fake.rate_limited_count(), 1);

    // A client honouring retry_after gets through. (Waiting here is the behaviour under test:
    // what a well-behaved bot does, not a guess at when something happened.)
    tokio::time::sleep(Duration::from_secs_f64(retry_after)).await;
    channel.say(&http, "three, later").await.unwrap();
    assert_eq!(fake.rate_limited_count(), 1);

    fake.set_rate_limit(None);
    for i in 0..5 {
        channel.say(&http, format!("burst {i}")).await.unwrap();
    }
    assert_eq!(fake.rate_limited_count(), 1);
}

#[tokio::test]
async fn a_restarted_client_gets_a_fresh_ready() {
    let fake = FakeDiscord::start().await;
    let probe = UnknownEventProbe::new();
    let first = start_serenity(&fake, &probe).await;
    let one = fake.wait_ready(T).await;
    let put_one = fake
        .wait_for("PUT", format!("/applications/{APP_ID}/commands"), T)
        .await;
    assert_eq!(put_one.body[0]["name"], "ping");
    first.stop().await;
    let closed = fake.wait_closed(one.index, T).await;
    assert_eq!(closed.close_code, Some(1000), "a clean logoff");

    let second = start_serenity(&fake, &probe).await;
    let two = fake.wait_ready(T).await;
    assert_eq!(two.index, 1);
    assert_ne!(two.session_id, one.session_id);
    assert!(two.identify.is_some() && two.resume.is_none());
    let put_two = fake
        .wait_for("PUT", format!("/applications/{APP_ID}/commands"), T)
        .await;
    // Re-registering the same command keeps its id, as on Discord.
    assert_eq!(put_two.response[0]["id"], put_one.response[0]["id"]);

    // Dispatches now reach the second client.
    let id = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        slash(id, "tok-again", "ping", json!([]), ALICE),
    );
    let callback = fake
        .wait_for("POST", format!("/interactions/{id}/tok-again/callback"), T)
        .await;
    assert_eq!(callback.body["data"]["content"], "pong");
    fake.take_unread(); // the second client's GET /gateway
    finish(fake, probe, second).await;
}

#[tokio::test]
async fn reconnect_request_resumes_the_session() {
    let (fake, probe, bot) = serenity_ready().await;
    let first = fake.connections()[0].clone();
    fake.request_reconnect();
    let resumed = fake.wait_resumed(T).await;
    assert_eq!(resumed.index, 1);
    let resume = resumed.resume.clone().unwrap();
    assert_eq!(resume["op"], 6);
    assert_eq!(
        resume["d"]["session_id"].as_str(),
        first.session_id.as_deref()
    );
    assert_eq!(resume["d"]["seq"], 1, "the last sequence number: READY's");
    assert_eq!(resume["d"]["token"], bot_auth());

    let id = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        slash(id, "tok-resumed", "ping", json!([]), ALICE),
    );
    fake.wait_for(
        "POST",
        format!("/interactions/{id}/tok-resumed/callback"),
        T,
    )
    .await;
    assert_eq!(fake.connections().len(), 2, "no extra reconnects");

    // A dropped connection (close 4000, "unknown error") is resumed too, the sequence intact.
    fake.drop_connection(4000);
    let again = fake.wait_resumed(T).await;
    assert_eq!(again.index, 2);
    assert_eq!(
        again.resume.unwrap()["d"]["seq"],
        3,
        "READY, RESUMED, one dispatch"
    );
    let id = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        slash(id, "tok-again", "ping", json!([]), ALICE),
    );
    fake.wait_for("POST", format!("/interactions/{id}/tok-again/callback"), T)
        .await;
    finish(fake, probe, bot).await;
}

#[tokio::test]
async fn rest_answers_are_valid_serenity_models() {
    let fake = FakeDiscord::start().await;
    let http = fake.http();
    // Outside a client nobody read READY's application id; command registration needs it.
    http.set_application_id(serenity::ApplicationId::new(APP_ID));
    let guild = http.get_guild(GuildId::new(GUILD_ID)).await.unwrap();
    assert_eq!(guild.roles.len(), 3);
    let member = http
        .get_member(GuildId::new(GUILD_ID), UserId::new(BOB))
        .await
        .unwrap();
    assert_eq!(member.user.name, "bob");
    let channel = http.get_channel(ChannelId::new(CHANNEL_ID)).await.unwrap();
    assert_eq!(channel.guild().unwrap().name, "general");
    let me = http.get_current_user().await.unwrap();
    assert_eq!(me.id.get(), BOT_ID);
    assert!(me.bot);
    let app = http.get_current_application_info().await.unwrap();
    assert_eq!(app.id.get(), APP_ID);
    let bot_gateway = http.get_bot_gateway().await.unwrap();
    assert_eq!(bot_gateway.url, fake.gateway_url());
    let dm = UserId::new(ALICE).create_dm_channel(&http).await.unwrap();
    dm.id.say(&http, "hello Alice").await.unwrap();
    let messages = dm
        .id
        .messages(&http, serenity::GetMessages::new().limit(5))
        .await
        .unwrap();
    assert_eq!(messages[0].content, "hello Alice");
    assert!(fake.unhandled().is_empty(), "{:#?}", fake.unhandled());

    // Discord's answers to the mistakes it rejects.
    let status = |e: serenity::Error| match e {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(r)) => {
            (r.status_code.as_u16(), r.error.code, r.error.errors)
        }
        other => panic!("expected an HTTP error, got {other:?}"),
    };
    // serenity's builders refuse some of these before sending; raw bodies reach the fake.
    let send_raw = |body: Value| {
        let http = &http;
        async move {
            http.send_message(ChannelId::new(CHANNEL_ID), vec![], &body)
                .await
                .unwrap_err()
        }
    };
    let (code, discord_code, errors) = status(send_raw(json!({"content": "x".repeat(2001)})).await);
    assert_eq!((code, discord_code), (400, 50035));
    assert_eq!(errors[0].path, "content");
    let (code, discord_code, _) = status(send_raw(json!({"content": ""})).await);
    assert_eq!((code, discord_code), (400, 50006));
    let (code, discord_code, _) = status(ChannelId::new(42).say(&http, "lost").await.unwrap_err());
    assert_eq!((code, discord_code), (404, 10003));
    let wrong_token = serenity::HttpBuilder::new("not-the-token")
        .proxy(fake.api_base())
        .ratelimiter_disabled(true)
        .build();
    let (code, _, _) = status(wrong_token.get_current_user().await.unwrap_err());
    assert_eq!(code, 401);
    let bad_command = CreateCommand::new("Launch Now").description("bad name");
    let (code, discord_code, errors) = status(
        GuildId::new(GUILD_ID)
            .set_commands(&http, vec![bad_command])
            .await
            .unwrap_err(),
    );
    assert_eq!((code, discord_code), (400, 50035));
    assert_eq!(errors[0].path, "0.name");

    // An unexpected call is recorded as unhandled, so a test can see it.
    let _ = http
        .get_guild_webhooks(GuildId::new(GUILD_ID))
        .await
        .unwrap_err();
    let unhandled = fake.unhandled();
    assert_eq!(unhandled.len(), 1);
    assert_eq!(unhandled[0].path, format!("/guilds/{GUILD_ID}/webhooks"));
}

#[tokio::test]
async fn interaction_callbacks_follow_discords_rules() {
    let (fake, probe, bot) = serenity_ready().await;
    let http = fake.http();
    // Outside a client nobody read READY's application id; the interaction webhooks need it.
    http.set_application_id(serenity::ApplicationId::new(APP_ID));
    let message_id = fake.snowflake();
    let message = message_json(message_id, CHANNEL_ID, BOB, "not the bot's");
    // A press on a component the bot ignores: the test answers it itself.
    let id = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        component(id, "tok-rules", "ignored", 2, &[], message, ALICE),
    );
    let ack = json!({"type": 6});
    let interaction = serenity::InteractionId::new(id);
    let err = http
        .create_followup_message("tok-rules", &json!({"content": "too early"}), vec![])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Unknown Webhook"), "{err}");
    http.create_interaction_response(interaction, "tok-rules", &ack, vec![])
        .await
        .unwrap();
    let again = http
        .create_interaction_response(interaction, "tok-rules", &ack, vec![])
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("already been acknowledged"),
        "{again}"
    );
    let unknown = http
        .create_interaction_response(serenity::InteractionId::new(7), "nope", &ack, vec![])
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().contains("Unknown interaction"),
        "{unknown}"
    );
    // The bot may not edit someone else's message (the fake learned it from the dispatch).
    let edit = ChannelId::new(CHANNEL_ID)
        .edit_message(
            &http,
            serenity::MessageId::new(message_id),
            EditMessage::new().content("x"),
        )
        .await
        .unwrap_err();
    assert!(
        edit.to_string().contains("authored by another user"),
        "{edit}"
    );
    fake.take_unread();
    finish(fake, probe, bot).await;
}

#[tokio::test]
async fn a_wrong_token_is_refused_at_identify() {
    let fake = FakeDiscord::start().await;
    let http = serenity::HttpBuilder::new("not-the-token")
        .proxy(fake.api_base())
        .ratelimiter_disabled(true)
        .build();
    let errors = Errors::default();
    let mut client = ClientBuilder::new_with_http(http, GatewayIntents::GUILDS)
        .event_handler(Handler { errors })
        .await
        .unwrap();
    let result = tokio::time::timeout(T, client.start())
        .await
        .expect("serenity gives up on a refused token");
    assert!(
        matches!(
            result,
            Err(serenity::Error::Gateway(
                serenity::GatewayError::InvalidAuthentication
            ))
        ),
        "{result:?}"
    );
    let connection = fake.wait_closed(0, T).await;
    assert!(!connection.ready_sent);
    // The gateway lookup still went to the fake, not to discord.com.
    let gateway = fake.wait_for("GET", "/gateway", T).await;
    assert_eq!(gateway.status, 200);
    fake.assert_no_unread();
}

#[tokio::test]
async fn world_helpers_shape_what_rest_answers() {
    let fake = FakeDiscord::start().await;
    let http = fake.http();
    let channel = ChannelId::new(CHANNEL_ID);

    // A one-shot failure, then the normal answer.
    fake.respond_once(
        "POST",
        format!("/channels/{CHANNEL_ID}/messages"),
        403,
        json!({"code": 50013, "message": "Missing Permissions"}),
    );
    let refused = channel.say(&http, "first").await.unwrap_err();
    assert!(
        refused.to_string().contains("Missing Permissions"),
        "{refused}"
    );
    channel.say(&http, "second").await.unwrap();

    // A thread on someone's message gets the message's id.
    let theirs = fake.snowflake();
    fake.add_message(message_json(theirs, CHANNEL_ID, BOB, "please look"));
    let thread = channel
        .create_thread_from_message(
            &http,
            serenity::MessageId::new(theirs),
            CreateThread::new("look"),
        )
        .await
        .unwrap();
    assert_eq!(thread.id.get(), theirs);
    assert_eq!(thread.kind, ChannelType::PublicThread);

    // Another channel, and membership of the Manager role as REST reports it.
    let other = fake.snowflake();
    fake.add_channel(json!({"id": other.to_string(), "type": 0, "guild_id": GUILD_ID.to_string(), "name": "ops"}));
    ChannelId::new(other).say(&http, "in ops").await.unwrap();
    fake.set_manage_server(BOB, true);
    let bob = GuildId::new(GUILD_ID)
        .member(&http, UserId::new(BOB))
        .await
        .unwrap();
    assert_eq!(bob.roles, [serenity::RoleId::new(MANAGER_ROLE_ID)]);

    // An added role is one of the guild's roles.
    fake.add_role(MANAGER_ROLE_ID + 100, "builders", 0);
    let roles = GuildId::new(GUILD_ID).roles(&http).await.unwrap();
    assert_eq!(
        roles[&serenity::RoleId::new(MANAGER_ROLE_ID + 100)].name,
        "builders"
    );

    // A hosted file downloads like a CDN attachment.
    let attachment: serenity::Attachment =
        serde_json::from_value(fake.host_file("spec.md", b"# Spec\n")).unwrap();
    assert_eq!(attachment.download().await.unwrap(), b"# Spec\n");
    assert!(fake.unhandled().is_empty(), "{:#?}", fake.unhandled());
}

#[tokio::test]
async fn a_late_first_answer_is_an_unknown_interaction() {
    let (fake, probe, bot) = serenity_ready().await;
    // Discord gives a bot 3 s to answer; a zero deadline makes every answer late.
    fake.set_interaction_deadline(Some(Duration::ZERO));
    let id = fake.snowflake();
    fake.dispatch(
        "INTERACTION_CREATE",
        slash(id, "tok-late", "ping", json!([]), ALICE),
    );
    let late = fake
        .wait_for("POST", format!("/interactions/{id}/tok-late/callback"), T)
        .await;
    assert_eq!(late.status, 404);
    assert_eq!(late.response["code"], 10062);
    let error = bot.errors.next(T).await;
    assert!(error.contains("Unknown interaction"), "{error}");
    fake.assert_no_unread();
    probe.assert_none();
    bot.stop().await;
}

#[tokio::test]
async fn a_message_is_awaited_in_the_state_an_edit_gives_it() {
    let fake = Arc::new(FakeDiscord::start().await);
    let http = Arc::new(fake.http());
    let channel = ChannelId::new(CHANNEL_ID);
    let status = channel.say(&*http, "⏳ starting…").await.unwrap();
    let id = status.id.get();

    // The wait wakes when the edit lands, whenever that is.
    let waiting = {
        let fake = fake.clone();
        tokio::spawn(async move {
            fake.wait_message(id, "the run done", T, |m| m["content"] == "✅ done")
                .await
        })
    };
    channel
        .edit_message(&*http, status.id, EditMessage::new().content("⏳ agent"))
        .await
        .unwrap();
    channel
        .edit_message(&*http, status.id, EditMessage::new().content("✅ done"))
        .await
        .unwrap();
    assert_eq!(waiting.await.unwrap()["content"], "✅ done");

    // A wait that times out shows every state the message went through.
    let missed = {
        let fake = fake.clone();
        tokio::spawn(async move {
            fake.wait_message(id, "a failure", Duration::from_millis(50), |m| {
                m["content"] == "❌ failed"
            })
            .await
        })
    };
    let report = *missed
        .await
        .unwrap_err()
        .into_panic()
        .downcast::<String>()
        .unwrap();
    for expected in [
        "message ",
        "to show a failure",
        "\"⏳ starting…\"",
        "\"⏳ agent\"",
        "now: \"✅ done\"",
    ] {
        assert!(report.contains(expected), "{expected} not in {report}");
    }
}
