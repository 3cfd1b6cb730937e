//! The Discord bot: serenity's gateway client with poise commands, on the pipeline's operations.
//! Interactions are answered within Discord's three seconds (validation and the record are quick;
//! the run happens in a thread afterwards), every post has mentions disabled but the one requester
//! ping, and buttons carry their action in their custom id so they work after a restart. This file
//! holds start-up, the router for buttons and forms, and the one place errors become answers.

mod access;
mod custom_id;
mod dialog;
mod launch;
mod modal;
mod project;
mod render;
mod reply;
mod sandboxes;
mod scan;
mod status_editor;
mod thread;
mod usage;
mod workflow;

use std::sync::Arc;

use anyhow::Context as _;
use poise::serenity_prelude as serenity;
use serenity::{CreateInteractionResponseFollowup, GatewayIntents, GuildId};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::ids::DiscordId;
use crate::pipeline::{Launcher, Ops};
use crate::sandbox::provider_for;
use crate::store::Store;
use custom_id::{CustomId, DialogPart};

type Error = anyhow::Error;
type Context<'a> = poise::Context<'a, Data, Error>;

/// Shared state of the bot.
pub struct Data {
    ops: Arc<Ops>,
    config: Arc<Config>,
    dialogs: dialog::Dialogs,
}

/// `codecourier serve`: connects to Discord and runs until the process is stopped.
pub async fn serve(config: Config, catalog: Catalog) -> anyhow::Result<()> {
    // Opened here, before the client opens its own: two first opens at once would race to
    // create the secret key.
    let store = Store::open(&config).await?;
    crate::retention::keep_running(store, &config);
    let mut client = client_builder(config, catalog)
        .await?
        .await
        .context("cannot start the Discord client")?;
    client.start().await.context("the Discord connection ended")
}

/// The configured client, ready to start (tests add their own event probes to it first).
pub async fn client_builder(
    config: Config,
    catalog: Catalog,
) -> anyhow::Result<serenity::ClientBuilder> {
    let token = config.require_discord()?.expose().to_string();
    let store = Store::open(&config).await?;
    let provider = provider_for(&config).map_err(|e| anyhow::anyhow!(e))?;
    let launcher = Arc::new(Launcher::new(
        &config,
        store,
        provider.clone(),
        catalog.clone(),
    ));
    let ops = Arc::new(Ops::new(
        launcher,
        catalog.clone(),
        config.allow_local_repos,
    ));
    let config = Arc::new(config);

    let http = http_builder(&token, &config.discord.api_base);
    let options = poise::FrameworkOptions {
        commands: vec![
            launch::launch(),
            launch::launch_from_message(),
            sandboxes::sandboxes(),
            sandboxes::sandbox(),
            scan::scan(),
            workflow::workflow(),
            project::project(),
            usage::usage(),
        ],
        // Every command asks first whether this server is one the bot serves.
        command_check: Some(|ctx| {
            Box::pin(async move {
                if access::serves(&ctx.data().config, ctx.guild_id()) {
                    return Ok(true);
                }
                refuse_elsewhere(ctx).await?;
                Ok(false)
            })
        }),
        on_error: |error| Box::pin(on_error(error)),
        event_handler: |ctx, event, _framework, data| Box::pin(on_event(ctx, event, data)),
        ..Default::default()
    };
    let setup_config = config.clone();
    let framework = poise::Framework::builder()
        .options(options)
        .setup(move |ctx, ready, framework| {
            Box::pin(async move {
                register(
                    ctx,
                    &framework.options().commands,
                    &catalog,
                    &setup_config.discord.allowed_guilds,
                )
                .await?;
                tracing::info!(user = %ready.user.name, "connected to Discord");
                let data = Data {
                    ops,
                    config: setup_config,
                    dialogs: dialog::Dialogs::default(),
                };
                thread::announce_recovered(ctx, &data, provider.as_ref()).await;
                workflow::resume_all(ctx.http.clone(), &data.ops).await;
                workflow::keep_resuming(ctx.http.clone(), data.ops.clone());
                Ok(data)
            })
        })
        .build();
    Ok(
        serenity::ClientBuilder::new_with_http(http.build(), GatewayIntents::GUILDS)
            .framework(framework),
    )
}

/// serenity's HTTP client for the configured API base.
fn http_builder(token: &str, api_base: &str) -> serenity::HttpBuilder {
    let http = serenity::HttpBuilder::new(token);
    if api_base == "https://discord.com" {
        http
    } else {
        // serenity's ratelimiter ignores the proxy and would talk to discord.com: it must be off
        // for DISCORD_API_BASE to take effect (the bot's own edit coalescing keeps it polite).
        http.proxy(api_base).ratelimiter_disabled(true)
    }
}

/// What `doctor` learns of the bot from Discord.
pub struct BotCheck {
    pub name: String,
    /// "Public Bot" is on: anyone can invite it to their server.
    pub public: Option<bool>,
}

/// Whether Discord accepts the bot token: the bot's name and whether anyone may invite it, or what
/// to do.
pub async fn check_token(
    token: &crate::secret::Secret,
    api_base: &str,
) -> Result<BotCheck, String> {
    let http = http_builder(token.expose(), api_base).build();
    match http.get_current_user().await {
        Ok(user) => Ok(BotCheck {
            name: user.name.clone(),
            public: http
                .get_current_application_info()
                .await
                .ok()
                .map(|app| app.bot_public),
        }),
        Err(serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(e))) if e.status_code.as_u16() == 401 => {
            Err("Discord refused DISCORD_TOKEN: copy the bot's token again from the developer portal (Bot → Reset Token)".into())
        }
        Err(_) => Err("Discord could not be reached to check DISCORD_TOKEN".into()),
    }
}

/// Registers the commands in every server the bot serves (never globally: a server it does not
/// serve should not even see them), with choices and limits from the catalog (which poise's
/// attributes cannot express: the catalog is data, not code).
async fn register(
    ctx: &serenity::Context,
    commands: &[poise::Command<Data, Error>],
    catalog: &Catalog,
    guilds: &[DiscordId],
) -> anyhow::Result<()> {
    let mut payload = Vec::new();
    for command in poise::builtins::create_application_commands(commands) {
        let mut value = serde_json::to_value(&command)?;
        if value["name"] == "launch" {
            patch_launch_options(&mut value, catalog);
        }
        // `/scan run` takes a tool too: the same choices.
        if value["name"] == "scan" {
            if let Some(subcommands) = value["options"].as_array_mut() {
                for sub in subcommands.iter_mut().filter(|o| o["name"] == "run") {
                    patch_launch_options(sub, catalog);
                }
            }
        }
        payload.push(value);
    }
    // A server the bot was removed from must not keep it from serving the others.
    let mut registered = 0;
    for guild in guilds {
        match ctx
            .http
            .create_guild_commands(GuildId::new(guild.0), &payload)
            .await
        {
            Ok(_) => registered += 1,
            Err(e) => tracing::warn!(
                server = %guild,
                error = %e,
                "could not register the commands in this server of CODECOURIER_ALLOWED_GUILDS: is the bot invited there?"
            ),
        }
    }
    anyhow::ensure!(
        registered > 0,
        "could not register the commands in any server of CODECOURIER_ALLOWED_GUILDS: invite the bot to one of them (see the README's Discord setup)"
    );
    Ok(())
}

fn patch_launch_options(command: &mut serde_json::Value, catalog: &Catalog) {
    let limits = catalog.limits;
    let Some(options) = command["options"].as_array_mut() else {
        return;
    };
    for option in options {
        let choices = |names: Vec<(String, String)>| {
            serde_json::Value::Array(
                names
                    .into_iter()
                    .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
                    .collect(),
            )
        };
        match option["name"].as_str().unwrap_or_default() {
            "tool" => {
                option["choices"] = choices(
                    catalog
                        .tools
                        .iter()
                        .map(|t| (t.name.clone(), t.id.clone()))
                        .collect(),
                )
            }
            "effort" => {
                option["choices"] = choices(
                    ["high", "medium", "low", "none"]
                        .iter()
                        .map(|e| (e.to_string(), e.to_string()))
                        .collect(),
                )
            }
            "pr" => {
                option["choices"] = choices(
                    ["draft", "ready", "none"]
                        .iter()
                        .map(|e| (e.to_string(), e.to_string()))
                        .collect(),
                )
            }
            "memory_mb" => {
                option["min_value"] = limits.memory_mb.min.into();
                option["max_value"] = limits.memory_mb.max.into();
            }
            "cpus" => {
                option["min_value"] = limits.cpus.min.into();
                option["max_value"] = limits.cpus.max.into();
            }
            "timeout_minutes" => {
                option["min_value"] = limits.timeout_ms.min.div_ceil(60_000).into();
                option["max_value"] = (limits.timeout_ms.max / 60_000).into();
            }
            _ => {}
        }
    }
}

/// The one place a command's error becomes an answer: logged under a reference, which is all the
/// person sees of it. Refusals never get here; they are answers.
async fn on_error(error: poise::FrameworkError<'_, Data, Error>) {
    match error {
        poise::FrameworkError::Command { error, ctx, .. } => {
            let text = reply::failed_on_our_side(&error, &ctx.command().qualified_name);
            let _ = reply::say_ephemeral(ctx, text).await;
        }
        // A server the bot does not serve: the check answered already.
        poise::FrameworkError::CommandCheckFailed { error: None, .. } => {}
        poise::FrameworkError::GuildOnly { ctx, .. } => {
            if let Err(e) = refuse_elsewhere(ctx).await {
                tracing::warn!(error = %e, "could not refuse a direct message");
            }
        }
        other => {
            if let Err(e) = poise::builtins::on_error(other).await {
                tracing::warn!(error = %e, "could not report an error");
            }
        }
    }
}

/// Answers a command from a server the bot does not serve, or a direct message: the refusal, or
/// no choices for an option being typed (nothing of this deployment is shown).
async fn refuse_elsewhere(ctx: Context<'_>) -> Result<(), Error> {
    match ctx {
        poise::Context::Application(app)
            if app.interaction_type == poise::CommandInteractionType::Autocomplete =>
        {
            let none = serenity::CreateInteractionResponse::Autocomplete(
                serenity::CreateAutocompleteResponse::new(),
            );
            app.interaction.create_response(ctx.http(), none).await?;
            Ok(())
        }
        _ => reply::say_ephemeral(ctx, access::NOT_SERVED).await,
    }
}

/// Buttons, select menus and forms, by their custom id; a press that fails on our side is told so
/// with the log's reference.
async fn on_event(
    ctx: &serenity::Context,
    event: &serenity::FullEvent,
    data: &Data,
) -> Result<(), Error> {
    let serenity::FullEvent::InteractionCreate { interaction } = event else {
        return Ok(());
    };
    let guild = match interaction {
        serenity::Interaction::Component(press) => press.guild_id,
        serenity::Interaction::Modal(submit) => submit.guild_id,
        _ => return Ok(()),
    };
    if !access::serves(&data.config, guild) {
        let refused = match interaction {
            serenity::Interaction::Component(press) => {
                press
                    .create_response(&ctx.http, reply::ephemeral(access::NOT_SERVED))
                    .await
            }
            serenity::Interaction::Modal(submit) => {
                submit
                    .create_response(&ctx.http, reply::ephemeral(access::NOT_SERVED))
                    .await
            }
            _ => Ok(()),
        };
        if let Err(e) = refused {
            tracing::warn!(error = %e, "could not refuse an interaction from another server");
        }
        return Ok(());
    }
    let outcome = match interaction {
        serenity::Interaction::Component(press) => {
            let Some(id) = CustomId::parse(&press.data.custom_id) else {
                return Ok(());
            };
            on_press(ctx, press, data, id).await
        }
        serenity::Interaction::Modal(submit) => {
            let Some(id) = CustomId::parse(&submit.data.custom_id) else {
                return Ok(());
            };
            on_submit(ctx, submit, data, id).await
        }
        _ => return Ok(()),
    };
    if let Err(error) = outcome {
        let text = reply::failed_on_our_side(&error, "a button or form");
        let told = match interaction {
            serenity::Interaction::Component(press) => {
                tell_anyway(
                    &text,
                    |r| press.create_response(&ctx.http, r),
                    |f| press.create_followup(&ctx.http, f),
                )
                .await
            }
            serenity::Interaction::Modal(submit) => {
                tell_anyway(
                    &text,
                    |r| submit.create_response(&ctx.http, r),
                    |f| submit.create_followup(&ctx.http, f),
                )
                .await
            }
            _ => Ok(()),
        };
        if let Err(e) = told {
            tracing::warn!(error = %e, "could not tell the person about the failure");
        }
    }
    Ok(())
}

/// Answers an interaction, or follows it up when it was answered already.
async fn tell_anyway<R, F, RF, FF>(text: &str, respond: R, follow: F) -> serenity::Result<()>
where
    R: FnOnce(serenity::CreateInteractionResponse) -> RF,
    RF: std::future::Future<Output = serenity::Result<()>>,
    F: FnOnce(CreateInteractionResponseFollowup) -> FF,
    FF: std::future::Future<Output = serenity::Result<serenity::Message>>,
{
    if respond(reply::ephemeral(text)).await.is_ok() {
        return Ok(());
    }
    let followup = CreateInteractionResponseFollowup::new()
        .content(text)
        .ephemeral(true)
        .allowed_mentions(serenity::CreateAllowedMentions::new());
    follow(followup).await.map(|_| ())
}

async fn on_press(
    ctx: &serenity::Context,
    press: &serenity::ComponentInteraction,
    data: &Data,
    id: CustomId,
) -> Result<(), Error> {
    match id {
        CustomId::Sandbox(action, sandbox) => {
            sandboxes::on_button(ctx, press, data, action, sandbox).await
        }
        CustomId::Dialog(part, dialog) => {
            launch::on_dialog_press(ctx, press, data, part, &dialog).await
        }
        CustomId::Scan(session, action) => scan::on_press(ctx, press, data, session, action).await,
        CustomId::StopJob(job) => workflow::on_stop(ctx, press, data, job).await,
        CustomId::FollowUpForm(_) | CustomId::WorkflowForm => Ok(()),
    }
}

async fn on_submit(
    ctx: &serenity::Context,
    submit: &serenity::ModalInteraction,
    data: &Data,
    id: CustomId,
) -> Result<(), Error> {
    match id {
        CustomId::FollowUpForm(of) => launch::on_follow_up_submit(ctx, submit, data, of).await,
        CustomId::Dialog(DialogPart::Form, dialog) => {
            launch::on_dialog_submit(ctx, submit, data, &dialog).await
        }
        CustomId::WorkflowForm => workflow::on_create_submit(ctx, submit, data).await,
        _ => Ok(()),
    }
}
