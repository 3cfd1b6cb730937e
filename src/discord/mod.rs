//! The Discord bot: serenity's gateway client with poise commands, on the launcher. Interactions are
//! answered within Discord's three seconds (validation and the record are quick; the run happens in a
//! thread afterwards), every post has mentions disabled but the one requester ping, and buttons carry
//! their action and sandbox in the custom id so they work after a restart.

mod dialog;
mod project;
mod render;
mod scan;
mod thread;
mod workflow;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use poise::serenity_prelude as serenity;
use serenity::{
    ChannelId, CreateAllowedMentions, CreateInteractionResponse, CreateInteractionResponseMessage,
    GatewayIntents, GuildId, Mentionable,
};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, FieldError, LaunchInput, LaunchRequest};
use crate::config::Config;
use crate::ids::{DiscordId, SandboxId};
use crate::pipeline::{
    recover, LaunchError, LaunchOrigin, Launcher, Prepared, Runner, SandboxStatus,
};
use crate::sandbox::{provider_for, SandboxError};
use crate::store::{DiscordOrigin, Finish, SandboxFilter, SandboxRecord, Store, StoreError};

pub use render::{parse_button_id, ButtonAction};

type Error = anyhow::Error;
type Context<'a> = poise::Context<'a, Data, Error>;

/// Shared state of the bot.
pub struct Data {
    launcher: Arc<Launcher>,
    store: Store,
    catalog: Catalog,
    config: Arc<Config>,
    /// Launches running in this process, so Stop can end them at once.
    running: Arc<Mutex<HashMap<SandboxId, CancellationToken>>>,
    dialogs: dialog::Dialogs,
    runner: Arc<Runner>,
    /// Workflow runs and chains driven in this process, by "run:<id>" / "chain:<id>".
    workflows: Arc<Mutex<HashMap<String, CancellationToken>>>,
}

/// `codecourier serve`: connects to Discord and runs until the process is stopped.
pub async fn serve(config: Config, catalog: Catalog) -> anyhow::Result<()> {
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
        store.clone(),
        provider.clone(),
        catalog.clone(),
    ));
    let config = Arc::new(config);

    let http = http_builder(&token, &config.discord.api_base);
    let options = poise::FrameworkOptions {
        commands: vec![
            launch(),
            launch_from_message(),
            sandboxes(),
            sandbox(),
            scan::scan(),
            workflow::workflow(),
            project::project(),
        ],
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
                    setup_config.discord.guild_id,
                )
                .await?;
                tracing::info!(user = %ready.user.name, "connected to Discord");
                let runner = Arc::new(Runner::new(launcher.clone(), catalog.clone()));
                let data = Data {
                    launcher,
                    store,
                    catalog,
                    config: setup_config,
                    running: Arc::new(Mutex::new(HashMap::new())),
                    dialogs: dialog::Dialogs::default(),
                    runner,
                    workflows: Arc::new(Mutex::new(HashMap::new())),
                };
                announce_recovered(ctx, &data, provider.as_ref()).await;
                workflow::resume_all(ctx.http.clone(), &data.followers()).await;
                workflow::keep_resuming(ctx.http.clone(), data.followers());
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

/// Whether Discord accepts the bot token: the bot's name, or what to do.
pub async fn check_token(token: &crate::secret::Secret, api_base: &str) -> Result<String, String> {
    let http = http_builder(token.expose(), api_base).build();
    match http.get_current_user().await {
        Ok(user) => Ok(user.name.clone()),
        Err(serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(e))) if e.status_code.as_u16() == 401 => {
            Err("Discord refused DISCORD_TOKEN: copy the bot's token again from the developer portal (Bot → Reset Token)".into())
        }
        Err(_) => Err("Discord could not be reached to check DISCORD_TOKEN".into()),
    }
}

/// Registers the commands, with choices and limits from the catalog (which poise's attributes
/// cannot express: the catalog is data, not code).
async fn register(
    ctx: &serenity::Context,
    commands: &[poise::Command<Data, Error>],
    catalog: &Catalog,
    guild: Option<DiscordId>,
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
    match guild {
        Some(guild) => {
            ctx.http
                .create_guild_commands(GuildId::new(guild.0), &payload)
                .await?;
        }
        None => {
            ctx.http.create_global_commands(&payload).await?;
        }
    }
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

async fn on_error(error: poise::FrameworkError<'_, Data, Error>) {
    match error {
        poise::FrameworkError::Command { error, ctx, .. } => {
            tracing::warn!(command = ctx.command().name, error = %format!("{error:#}"), "command failed");
            let text = ctx
                .data()
                .launcher_redact(&format!("Something went wrong: {error:#}"));
            let _ = ctx
                .send(
                    poise::CreateReply::default()
                        .content(render::cut(&text, render::MAX_CONTENT))
                        .ephemeral(true)
                        .allowed_mentions(CreateAllowedMentions::new()),
                )
                .await;
        }
        other => {
            if let Err(e) = poise::builtins::on_error(other).await {
                tracing::warn!(error = %e, "could not report an error");
            }
        }
    }
}

impl Data {
    fn launcher_redact(&self, text: &str) -> String {
        self.launcher.redact(text)
    }
}

/// Discord's name for a launch field (the terminal's flags differ).
fn option_name(field: &str) -> &str {
    match field {
        "timeout" => "timeout_minutes",
        other => other,
    }
}

pub(crate) fn field_errors(errors: &[FieldError]) -> String {
    let mut text = String::from("That launch is not valid:\n");
    for e in errors {
        let message = e.message.replace("\"", "`");
        text.push_str(&format!(
            "• **{}**: {}\n",
            option_name(e.field),
            render::inert(&message)
        ));
    }
    render::cut(&text, render::MAX_CONTENT)
}

async fn model_autocomplete(ctx: Context<'_>, partial: &str) -> Vec<String> {
    let tool = match ctx {
        poise::Context::Application(app) => {
            // `/launch` has its options at the top; `/scan run` one level down.
            let top = &app.interaction.data.options;
            let nested = top.iter().find_map(|o| match &o.value {
                serenity::CommandDataOptionValue::SubCommand(options) => Some(options),
                _ => None,
            });
            top.iter()
                .chain(nested.into_iter().flatten())
                .find(|o| o.name == "tool")
                .and_then(|o| o.value.as_str().map(str::to_string))
        }
        _ => None,
    };
    let catalog = &ctx.data().catalog;
    let tool = tool
        .and_then(|t| catalog.tool(&t).cloned())
        .unwrap_or_else(|| catalog.default_tool().clone());
    tool.models
        .iter()
        .filter(|m| m.to_lowercase().contains(&partial.to_lowercase()))
        .take(25)
        .cloned()
        .collect()
}

/// Launch a coding agent in a sandbox.
#[allow(clippy::too_many_arguments)]
#[poise::command(slash_command, guild_only)]
async fn launch(
    ctx: Context<'_>,
    #[description = "What the agent should do (leave out to open the launch dialog)"]
    prompt: Option<String>,
    #[description = "Agent CLI (default: the catalog's default)"] tool: Option<String>,
    #[description = "Model for the chosen tool"]
    #[autocomplete = "model_autocomplete"]
    model: Option<String>,
    #[description = "Thinking effort"] effort: Option<String>,
    #[description = "Memory in MB"] memory_mb: Option<i64>,
    #[description = "CPUs"] cpus: Option<i64>,
    #[description = "Timeout in minutes"] timeout_minutes: Option<i64>,
    #[description = "Sandbox template, [namespace/]alias[:tag]"] template: Option<String>,
    #[description = "owner/name or a GitHub URL (default: this channel's project)"] repo: Option<
        String,
    >,
    #[description = "Branch to start from (default: the repository's default branch)"] base_branch: Option<String>,
    #[description = "Pull request: draft (default), ready or none"] pr: Option<String>,
) -> Result<(), Error> {
    let data = ctx.data();
    let user = DiscordId(ctx.author().id.get());
    if let Some(refusal) = launch_refusal(ctx, user).await? {
        say_ephemeral(ctx, refusal).await?;
        return Ok(());
    }
    let channel = DiscordId(ctx.channel_id().get());
    let project = data.store.project_for_channel(channel).await?;
    let input = LaunchInput {
        prompt,
        repo: repo.or_else(|| project.as_ref().map(|p| p.repo.clone())),
        base_branch: base_branch.or_else(|| project.as_ref().and_then(|p| p.base_branch.clone())),
        tool,
        model,
        effort,
        memory_mb,
        cpus,
        timeout: timeout_minutes.map(|m| format!("{m}m")),
        template,
        pr,
        ..Default::default()
    };
    if input.prompt.is_none() {
        // The launch dialog: choose the agent, then write the prompt in a modal.
        let (id, dialog) = data.dialogs.open(&data.catalog, user.0, input);
        if let poise::Context::Application(app) = ctx {
            let response =
                CreateInteractionResponse::Message(dialog::message(&data.catalog, &id, &dialog));
            app.interaction
                .create_response(ctx.http(), response)
                .await?;
        }
        return Ok(());
    }
    let origin = launch_origin(
        &ctx.author().name,
        user,
        ctx.guild_id(),
        channel,
        project.as_ref(),
    );
    launch_and_follow(ctx, input, &origin, project.is_some()).await
}

/// For a slash or context-menu command: validate and record, then answer with the summary and
/// follow the launch in a thread; or answer, ephemeral, what to fix.
async fn launch_and_follow(
    ctx: Context<'_>,
    input: LaunchInput,
    origin: &LaunchOrigin,
    has_project: bool,
) -> Result<(), Error> {
    let data = ctx.data();
    let (prepared, summary) = match validate_and_prepare(data, input, origin, has_project).await? {
        Ok(ready) => ready,
        Err(refusal) => {
            let reply = poise::CreateReply::default()
                .content(refusal)
                .ephemeral(true)
                .allowed_mentions(CreateAllowedMentions::new());
            ctx.send(reply).await?;
            return Ok(());
        }
    };
    let reply = ctx
        .send(
            poise::CreateReply::default()
                .content(summary)
                .allowed_mentions(CreateAllowedMentions::new()),
        )
        .await?;
    let message = reply.message().await?.into_owned();
    let http = ctx.serenity_context().http.clone();
    thread::follow(
        http,
        data.handles(),
        ctx.channel_id(),
        message.id,
        prepared,
        ctx.author().id,
    )
    .await?;
    Ok(())
}

/// Launch an agent with a chat message as its task (marked as untrusted input).
#[poise::command(context_menu_command = "Launch from message", guild_only)]
async fn launch_from_message(ctx: Context<'_>, message: serenity::Message) -> Result<(), Error> {
    let data = ctx.data();
    let user = DiscordId(ctx.author().id.get());
    if let Some(refusal) = launch_refusal(ctx, user).await? {
        say_ephemeral(ctx, refusal).await?;
        return Ok(());
    }
    let channel = DiscordId(ctx.channel_id().get());
    let Some(project) = data.store.project_for_channel(channel).await? else {
        let text = "This channel has no project, so there is no repository to launch against: a server manager can run `/project setup`.";
        say_ephemeral(ctx, text).await?;
        return Ok(());
    };
    let input = LaunchInput {
        prompt: Some(render::untrusted_prompt(
            &message.author.name,
            &message.content,
        )),
        repo: Some(project.repo.clone()),
        base_branch: project.base_branch.clone(),
        ..Default::default()
    };
    let origin = launch_origin(
        &ctx.author().name,
        user,
        ctx.guild_id(),
        channel,
        Some(&project),
    );
    launch_and_follow(ctx, input, &origin, true).await
}

fn launch_origin(
    name: &str,
    user: DiscordId,
    guild: Option<GuildId>,
    channel: DiscordId,
    project: Option<&crate::store::Project>,
) -> LaunchOrigin {
    LaunchOrigin {
        launched_by: name.to_string(),
        discord: Some(DiscordOrigin {
            user_id: user,
            guild_id: guild.map(|g| DiscordId(g.get())),
            channel_id: channel,
        }),
        project_id: project.map(|p| p.id),
        issue_session: None,
        workflow: None,
    }
}

/// Validation and the record: either the prepared launch and its summary, or the sentence that
/// tells the person what to fix (sent ephemeral by the caller).
async fn validate_and_prepare(
    data: &Data,
    input: LaunchInput,
    origin: &LaunchOrigin,
    has_project: bool,
) -> Result<Result<(Prepared, String), String>, Error> {
    let request = match input.validate(&data.catalog, data.config.allow_local_repos) {
        Ok(r) => r,
        Err(errors) => {
            let mut text = field_errors(&errors.0);
            if errors.field("repo").is_some() && !has_project {
                text.push_str("\nThis channel has no project: pass `repo`, or a server manager can run `/project setup`.");
            }
            return Ok(Err(text));
        }
    };
    let tool = data.catalog.tool(&request.tool).expect("validated").clone();
    let summary = render::launch_summary(&request, &tool, &origin.launched_by);
    match data.launcher.prepare(request, origin).await {
        Ok(prepared) => Ok(Ok((prepared, summary))),
        Err(LaunchError::Invalid(message)) => Ok(Err(render::inert(&message))),
        Err(LaunchError::Store(e)) => Err(e.into()),
    }
}

/// Why this user may not launch now, if they may not.
async fn launch_refusal(ctx: Context<'_>, user: DiscordId) -> Result<Option<String>, Error> {
    let data = ctx.data();
    let allowed = &data.config.allowed_roles;
    if !allowed.is_empty() {
        let member = ctx.author_member().await;
        let roles: Vec<u64> = member
            .map(|m| m.roles.iter().map(|r| r.get()).collect())
            .unwrap_or_default();
        let mut names = Vec::new();
        if let Some(guild) = ctx.guild_id() {
            if let Ok(all) = guild.roles(ctx.http()).await {
                names = roles
                    .iter()
                    .filter_map(|r| {
                        all.get(&serenity::RoleId::new(*r))
                            .map(|role| role.name.clone())
                    })
                    .collect();
            }
        }
        let permitted = allowed
            .iter()
            .any(|a| roles.iter().any(|r| r.to_string() == *a) || names.iter().any(|n| n == a));
        if !permitted {
            return Ok(Some(format!(
                "Only members with one of these roles may launch: {}. Ask a server manager.",
                allowed.join(", ")
            )));
        }
    }
    running_cap_refusal(data, user).await
}

/// Why `user` may not start another sandbox right now, if they are at the per-user cap.
async fn running_cap_refusal(data: &Data, user: DiscordId) -> Result<Option<String>, Error> {
    let running = data.store.unfinished_for_user(user).await?;
    let cap = data.config.max_running_per_user;
    if running >= i64::from(cap) {
        return Ok(Some(format!(
            "You already have {running} sandboxes running (the limit is {cap}). Stop one with its Stop button, or wait for one to finish."
        )));
    }
    Ok(None)
}

impl Data {
    fn followers(&self) -> workflow::Followers {
        workflow::Followers {
            runner: self.runner.clone(),
            workflows: self.workflows.clone(),
            tool_names: Arc::new(
                self.catalog
                    .tools
                    .iter()
                    .map(|t| (t.id.clone(), t.name.clone()))
                    .collect(),
            ),
        }
    }

    fn handles(&self) -> thread::Handles {
        thread::Handles {
            launcher: self.launcher.clone(),
            store: self.store.clone(),
            running: self.running.clone(),
        }
    }
}

async fn on_event(
    ctx: &serenity::Context,
    event: &serenity::FullEvent,
    data: &Data,
) -> Result<(), Error> {
    let serenity::FullEvent::InteractionCreate { interaction } = event else {
        return Ok(());
    };
    let press = match interaction {
        serenity::Interaction::Component(press) => press,
        serenity::Interaction::Modal(submit) if submit.data.custom_id == "cc:wfcreate" => {
            return workflow::on_create_submit(ctx, submit, data).await
        }
        serenity::Interaction::Modal(submit) => return on_dialog_submit(ctx, submit, data).await,
        _ => return Ok(()),
    };
    if let Some((what, id)) = dialog::parse(&press.data.custom_id) {
        return on_dialog_component(ctx, press, data, what, id).await;
    }
    if let Some(action) = scan::parse_scan_id(&press.data.custom_id) {
        return scan::on_component(ctx, press, data, action).await;
    }
    if let Some(job) = workflow::parse_stop_id(&press.data.custom_id) {
        return workflow::on_stop(ctx, press, data, job).await;
    }
    let Some((action, id)) = parse_button_id(&press.data.custom_id) else {
        return Ok(());
    };
    let reply = |text: String| {
        CreateInteractionResponse::Message(
            CreateInteractionResponseMessage::new()
                .content(render::cut(&text, render::MAX_CONTENT))
                .ephemeral(true)
                .allowed_mentions(CreateAllowedMentions::new()),
        )
    };
    let Some(record) = data.store.get_sandbox(id).await? else {
        press
            .create_response(
                &ctx.http,
                reply(format!(
                    "Sandbox {} is not in this bot's records.",
                    id.short()
                )),
            )
            .await?;
        return Ok(());
    };
    let is_requester = record.discord.user_id == Some(DiscordId(press.user.id.get()));
    let is_admin = press
        .member
        .as_ref()
        .and_then(|m| m.permissions)
        .is_some_and(|p| p.manage_guild());
    match action {
        ButtonAction::Stop => {
            let text = stop(data, &record, &press.user.name, is_requester || is_admin).await?;
            press.create_response(&ctx.http, reply(text)).await?;
        }
        ButtonAction::FollowUp => {
            if !(is_requester || is_admin) {
                press.create_response(&ctx.http, reply("Only the person who launched this sandbox, or a server manager, can follow it up.".into())).await?;
                return Ok(());
            }
            let prompt = serenity::CreateInputText::new(
                serenity::InputTextStyle::Paragraph,
                "What should the agent do next?",
                "prompt",
            )
            .required(true)
            .max_length(4000);
            let modal = serenity::CreateModal::new(format!("cc:fu:{id}"), "Follow up")
                .components(vec![serenity::CreateActionRow::InputText(prompt)]);
            press
                .create_response(&ctx.http, CreateInteractionResponse::Modal(modal))
                .await?;
        }
        ButtonAction::OpenPr => {
            if !(is_requester || is_admin) {
                press.create_response(&ctx.http, reply("Only the person who launched this sandbox, or a server manager, can open its pull request.".into())).await?;
                return Ok(());
            }
            // Opening a pull request calls GitHub: acknowledge first, answer when it is done.
            press.defer_ephemeral(&ctx.http).await?;
            let text = match data.launcher.open_pull_request(&record).await {
                Ok(url) => format!("Draft pull request: {url}"),
                Err(why) => format!("No pull request: {}", data.launcher.redact(&why)),
            };
            press
                .edit_response(
                    &ctx.http,
                    serenity::EditInteractionResponse::new()
                        .content(render::cut(&text, render::MAX_CONTENT)),
                )
                .await?;
        }
        ButtonAction::Retry => {
            let user = DiscordId(press.user.id.get());
            if !(is_requester || is_admin) {
                press.create_response(&ctx.http, reply("Only the person who launched this sandbox, or a server manager, can retry it.".into())).await?;
                return Ok(());
            }
            if let Some(refusal) = running_cap_refusal(data, user).await? {
                press.create_response(&ctx.http, reply(refusal)).await?;
                return Ok(());
            }
            let mut request: LaunchRequest = record.request.clone();
            request.env = data.store.sandbox_env(id).await?;
            let channel = record
                .discord
                .channel_id
                .map(|c| ChannelId::new(c.0))
                .unwrap_or(press.channel_id);
            let origin = LaunchOrigin {
                launched_by: press.user.name.clone(),
                discord: Some(DiscordOrigin {
                    user_id: user,
                    guild_id: press.guild_id.map(|g| DiscordId(g.get())),
                    channel_id: DiscordId(channel.get()),
                }),
                project_id: record.project_id,
                issue_session: None,
                workflow: None,
            };
            let tool = data.catalog.tool(&request.tool).cloned();
            let prepared = match (tool, data.launcher.prepare(request.clone(), &origin).await) {
                (Some(tool), Ok(prepared)) => (tool, prepared),
                (_, Err(LaunchError::Invalid(message))) => {
                    press.create_response(&ctx.http, reply(message)).await?;
                    return Ok(());
                }
                (None, _) => {
                    press
                        .create_response(
                            &ctx.http,
                            reply(format!(
                                "The tool {} is no longer in the catalog.",
                                request.tool
                            )),
                        )
                        .await?;
                    return Ok(());
                }
                (_, Err(LaunchError::Store(e))) => return Err(e.into()),
            };
            press
                .create_response(
                    &ctx.http,
                    reply(format!("Launching sandbox {} again…", id.short())),
                )
                .await?;
            let (tool, prepared) = prepared;
            let summary = render::launch_summary(&request, &tool, &origin.launched_by);
            let message = channel
                .send_message(
                    &ctx.http,
                    serenity::CreateMessage::new()
                        .content(format!("🔁 Retry of `{}`\n{summary}", id.short()))
                        .allowed_mentions(CreateAllowedMentions::new()),
                )
                .await?;
            thread::follow(
                ctx.http.clone(),
                data.handles(),
                channel,
                message.id,
                prepared,
                press.user.id,
            )
            .await?;
        }
    }
    Ok(())
}

/// An answer only the person who asked sees, with mentions off and Discord's length respected.
pub(crate) async fn say_ephemeral(ctx: Context<'_>, text: impl Into<String>) -> Result<(), Error> {
    let text = text.into();
    ctx.send(
        poise::CreateReply::default()
            .content(render::cut(&text, render::MAX_CONTENT))
            .ephemeral(true)
            .allowed_mentions(CreateAllowedMentions::new()),
    )
    .await?;
    Ok(())
}

fn ephemeral(text: String) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .content(render::cut(&text, render::MAX_CONTENT))
            .ephemeral(true)
            .allowed_mentions(CreateAllowedMentions::new()),
    )
}

const DIALOG_EXPIRED: &str =
    "This launch dialog has expired (CodeCourier restarted since). Run /launch again.";

async fn on_dialog_component(
    ctx: &serenity::Context,
    press: &serenity::ComponentInteraction,
    data: &Data,
    what: &str,
    id: &str,
) -> Result<(), Error> {
    let Some(dialog) = data.dialogs.get(id) else {
        press
            .create_response(&ctx.http, ephemeral(DIALOG_EXPIRED.into()))
            .await?;
        return Ok(());
    };
    if dialog.user != press.user.id.get() {
        press
            .create_response(
                &ctx.http,
                ephemeral(
                    "This dialog belongs to someone else: run /launch to open your own.".into(),
                ),
            )
            .await?;
        return Ok(());
    }
    let response = if what == "open" {
        dialog::modal(&data.catalog, id, &dialog)
    } else {
        let dialog =
            dialog::choose(&data.dialogs, &data.catalog, what, id, press).unwrap_or(dialog);
        CreateInteractionResponse::UpdateMessage(dialog::message(&data.catalog, id, &dialog))
    };
    press.create_response(&ctx.http, response).await?;
    Ok(())
}

async fn on_dialog_submit(
    ctx: &serenity::Context,
    submit: &serenity::ModalInteraction,
    data: &Data,
) -> Result<(), Error> {
    if let Some(id) = submit
        .data
        .custom_id
        .strip_prefix("cc:fu:")
        .and_then(|id| id.parse().ok())
    {
        return on_follow_up_submit(ctx, submit, data, id).await;
    }
    let Some(("modal", id)) = dialog::parse(&submit.data.custom_id) else {
        return Ok(());
    };
    let Some(mut dialog) = data.dialogs.get(id) else {
        submit
            .create_response(&ctx.http, ephemeral(DIALOG_EXPIRED.into()))
            .await?;
        return Ok(());
    };
    dialog::submitted(submit, &mut dialog.input);
    let user = DiscordId(submit.user.id.get());
    let channel = DiscordId(submit.channel_id.get());
    let project = data.store.project_for_channel(channel).await?;
    if let Some(refusal) = running_cap_refusal(data, user).await? {
        submit
            .create_response(&ctx.http, ephemeral(refusal))
            .await?;
        return Ok(());
    }
    let origin = launch_origin(
        &submit.user.name,
        user,
        submit.guild_id,
        channel,
        project.as_ref(),
    );
    // Keep what was typed while the person fixes a mistake; the dialog ends once the launch is recorded.
    data.dialogs
        .update(id, |input| *input = dialog.input.clone());
    let (prepared, summary) =
        match validate_and_prepare(data, dialog.input.clone(), &origin, project.is_some()).await? {
            Ok(ready) => ready,
            Err(refusal) => {
                submit
                    .create_response(&ctx.http, ephemeral(refusal))
                    .await?;
                return Ok(());
            }
        };
    data.dialogs.take(id);
    let public = CreateInteractionResponseMessage::new()
        .content(summary)
        .allowed_mentions(CreateAllowedMentions::new());
    submit
        .create_response(&ctx.http, CreateInteractionResponse::Message(public))
        .await?;
    let message = submit.get_response(&ctx.http).await?;
    thread::follow(
        ctx.http.clone(),
        data.handles(),
        submit.channel_id,
        message.id,
        prepared,
        submit.user.id,
    )
    .await?;
    Ok(())
}

/// A follow-up: the earlier launch's request with the new prompt, on its branch, resuming its session
/// where the CLI can; it runs in the same thread.
async fn on_follow_up_submit(
    ctx: &serenity::Context,
    submit: &serenity::ModalInteraction,
    data: &Data,
    of: SandboxId,
) -> Result<(), Error> {
    let Some(record) = data.store.get_sandbox(of).await? else {
        submit
            .create_response(
                &ctx.http,
                ephemeral(format!(
                    "Sandbox {} is not in this bot's records.",
                    of.short()
                )),
            )
            .await?;
        return Ok(());
    };
    let user = DiscordId(submit.user.id.get());
    let is_admin = submit
        .member
        .as_ref()
        .and_then(|m| m.permissions)
        .is_some_and(|p| p.manage_guild());
    if record.discord.user_id != Some(user) && !is_admin {
        submit.create_response(&ctx.http, ephemeral("Only the person who launched this sandbox, or a server manager, can follow it up.".into())).await?;
        return Ok(());
    }
    let (Some(branch), Some(base_branch)) = (record.branch.clone(), record.base_branch.clone())
    else {
        submit
            .create_response(
                &ctx.http,
                ephemeral("That launch never got a branch to continue.".into()),
            )
            .await?;
        return Ok(());
    };
    if let Some(refusal) = running_cap_refusal(data, user).await? {
        submit
            .create_response(&ctx.http, ephemeral(refusal))
            .await?;
        return Ok(());
    }
    let mut prompt = String::new();
    dialog::submitted_prompt(submit, &mut prompt);
    if prompt.trim().is_empty() {
        submit
            .create_response(&ctx.http, ephemeral("The follow-up needs a prompt.".into()))
            .await?;
        return Ok(());
    }
    let mut request = record.request.clone();
    request.prompt = prompt;
    request.env = data.store.sandbox_env(of).await?;
    request.follow_up = Some(crate::catalog::FollowUp {
        of: Some(of),
        branch,
        base_branch,
        session_id: record.session_id.clone(),
    });
    let channel = record
        .discord
        .channel_id
        .unwrap_or(DiscordId(submit.channel_id.get()));
    let origin = LaunchOrigin {
        launched_by: submit.user.name.clone(),
        discord: Some(DiscordOrigin {
            user_id: user,
            guild_id: submit.guild_id.map(|g| DiscordId(g.get())),
            channel_id: channel,
        }),
        project_id: record.project_id,
        issue_session: None,
        workflow: None,
    };
    let Some(tool) = data.catalog.tool(&request.tool).cloned() else {
        submit
            .create_response(
                &ctx.http,
                ephemeral(format!(
                    "The tool {} is no longer in the catalog.",
                    request.tool
                )),
            )
            .await?;
        return Ok(());
    };
    let summary = format!(
        "↪️ Follow-up of `{}`\n{}",
        of.short(),
        render::launch_summary(&request, &tool, &origin.launched_by)
    );
    let prepared = match data.launcher.prepare(request, &origin).await {
        Ok(prepared) => prepared,
        Err(LaunchError::Invalid(message)) => {
            submit
                .create_response(&ctx.http, ephemeral(message))
                .await?;
            return Ok(());
        }
        Err(LaunchError::Store(e)) => return Err(e.into()),
    };
    let public = CreateInteractionResponseMessage::new()
        .content(render::cut(&summary, render::MAX_CONTENT))
        .allowed_mentions(CreateAllowedMentions::new());
    submit
        .create_response(&ctx.http, CreateInteractionResponse::Message(public))
        .await?;
    let thread = record
        .discord
        .thread_id
        .map(|t| ChannelId::new(t.0))
        .unwrap_or(submit.channel_id);
    thread::run_in_thread(
        ctx.http.clone(),
        data.handles(),
        thread,
        prepared,
        submit.user.id,
    )
    .await?;
    Ok(())
}

/// Stops a sandbox for a person allowed to; the answer says what happened.
async fn stop(
    data: &Data,
    record: &SandboxRecord,
    by: &str,
    allowed: bool,
) -> Result<String, Error> {
    let id = record.id;
    if !allowed {
        return Ok(
            "Only the person who launched this sandbox, or a server manager, can stop it.".into(),
        );
    }
    if record.status.is_terminal() {
        return Ok(format!(
            "Sandbox {} already ended: {}.",
            id.short(),
            record.status
        ));
    }
    let token = data.running.lock().expect("lock").get(&id).cloned();
    match token {
        // Running here: the launcher stops it and records the end itself.
        Some(token) => token.cancel(),
        None => {
            if let Some(provider_id) = &record.provider_sandbox_id {
                match data.launcher.provider().kill(provider_id).await {
                    Ok(()) | Err(SandboxError::NotFound(_)) => {}
                    Err(e) => {
                        tracing::warn!(sandbox = %id, error = %e, "could not kill the sandbox")
                    }
                }
            }
            let finish = Finish {
                failed_phase: record.current_phase,
                error: Some(format!("stopped by {by} from Discord")),
                ..Default::default()
            };
            data.store
                .finish(id, SandboxStatus::Stopped, &finish)
                .await?;
        }
    }
    Ok(format!("Stopping sandbox {}…", id.short()))
}

/// Whether the member who invoked a command may manage the server.
pub(crate) fn is_admin(ctx: Context<'_>) -> bool {
    match ctx {
        poise::Context::Application(app) => app
            .interaction
            .member
            .as_ref()
            .and_then(|m| m.permissions)
            .is_some_and(|p| p.manage_guild()),
        _ => false,
    }
}

async fn sandbox_autocomplete(
    ctx: Context<'_>,
    partial: &str,
) -> Vec<serenity::AutocompleteChoice> {
    let filter = SandboxFilter {
        discord_channel: Some(DiscordId(ctx.channel_id().get())),
        limit: 25,
        ..Default::default()
    };
    let records = ctx
        .data()
        .store
        .list_sandboxes(&filter)
        .await
        .unwrap_or_default();
    records
        .iter()
        .filter(|r| {
            r.id.to_string().starts_with(&partial.to_lowercase())
                || r.request
                    .prompt
                    .to_lowercase()
                    .contains(&partial.to_lowercase())
        })
        .map(|r| {
            let label = render::cut(
                &format!(
                    "{} · {} · {}",
                    r.id.short(),
                    r.status,
                    r.request.prompt.lines().next().unwrap_or_default()
                ),
                100,
            );
            serenity::AutocompleteChoice::new(label, r.id.to_string())
        })
        .collect()
}

async fn find(ctx: Context<'_>, id: &str) -> Result<Option<SandboxRecord>, Error> {
    match ctx.data().store.find_sandbox(id).await {
        Ok(record) => Ok(Some(record)),
        Err(e @ (StoreError::NotFound(_) | StoreError::Ambiguous(..))) => {
            say_ephemeral(ctx, e.to_string()).await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Recent sandboxes: this channel's (default), yours, or all.
#[poise::command(slash_command, guild_only)]
async fn sandboxes(
    ctx: Context<'_>,
    #[description = "channel (default), mine or all"] show: Option<String>,
    #[description = "Only this status"] status: Option<String>,
) -> Result<(), Error> {
    let mut filter = SandboxFilter {
        limit: 15,
        ..Default::default()
    };
    match show.as_deref().unwrap_or("channel") {
        "mine" => filter.discord_user = Some(DiscordId(ctx.author().id.get())),
        "all" => {}
        _ => filter.discord_channel = Some(DiscordId(ctx.channel_id().get())),
    }
    if let Some(status) = status {
        match status.parse() {
            Ok(s) => filter.status = Some(s),
            Err(e) => {
                say_ephemeral(ctx, e).await?;
                return Ok(());
            }
        }
    }
    let records = ctx.data().store.list_sandboxes(&filter).await?;
    let text = if records.is_empty() {
        "No sandboxes yet. Start one with `/launch`.".to_string()
    } else {
        records
            .iter()
            .map(|r| {
                format!(
                    "`{}` {} · {} · {} · <t:{}:R> — {}",
                    r.id.short(),
                    render::status_word(r.status),
                    r.request.tool,
                    render::inert(&r.request.repo.to_string()),
                    r.created_at.timestamp(),
                    render::inert(&render::cut(
                        r.request.prompt.lines().next().unwrap_or_default(),
                        60
                    ))
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    say_ephemeral(ctx, render::cut(&text, render::MAX_CONTENT)).await?;
    Ok(())
}

/// Inspect or control one sandbox.
#[poise::command(
    slash_command,
    guild_only,
    subcommands("sandbox_status", "sandbox_stop", "sandbox_logs")
)]
async fn sandbox(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Where a sandbox stands: its phases and result.
#[poise::command(slash_command, rename = "status")]
async fn sandbox_status(
    ctx: Context<'_>,
    #[description = "Sandbox id (or its first characters)"]
    #[autocomplete = "sandbox_autocomplete"]
    id: String,
) -> Result<(), Error> {
    let Some(record) = find(ctx, &id).await? else {
        return Ok(());
    };
    let mut view = render::StatusView {
        status: Some(record.status),
        ..Default::default()
    };
    for p in &record.phases {
        view.finished(
            p.phase,
            p.outcome,
            p.duration_ms().unwrap_or(0),
            p.detail.clone(),
        );
    }
    let (result, _) = render::result_message(&record, None);
    let text = format!("{}\n\n{}", render::status_message(&view), result);
    say_ephemeral(ctx, render::cut(&text, render::MAX_CONTENT)).await?;
    Ok(())
}

/// Stop a running sandbox (yours, or any if you manage the server).
#[poise::command(slash_command, rename = "stop")]
async fn sandbox_stop(
    ctx: Context<'_>,
    #[description = "Sandbox id (or its first characters)"]
    #[autocomplete = "sandbox_autocomplete"]
    id: String,
) -> Result<(), Error> {
    let Some(record) = find(ctx, &id).await? else {
        return Ok(());
    };
    let allowed = record.discord.user_id == Some(DiscordId(ctx.author().id.get())) || is_admin(ctx);
    let text = stop(ctx.data(), &record, &ctx.author().name, allowed).await?;
    say_ephemeral(ctx, text).await?;
    Ok(())
}

/// A sandbox's event log, as an attached file.
#[poise::command(slash_command, rename = "logs")]
async fn sandbox_logs(
    ctx: Context<'_>,
    #[description = "Sandbox id (or its first characters)"]
    #[autocomplete = "sandbox_autocomplete"]
    id: String,
) -> Result<(), Error> {
    let Some(record) = find(ctx, &id).await? else {
        return Ok(());
    };
    let events = ctx.data().store.events(record.id, 0).await?;
    let log: String = events.iter().map(|e| e.log_line() + "\n").collect();
    let file = serenity::CreateAttachment::bytes(
        log.into_bytes(),
        format!("sandbox-{}.log", record.id.short()),
    );
    let text = format!(
        "Event log of sandbox `{}` ({} events)",
        record.id.short(),
        events.len()
    );
    ctx.send(
        poise::CreateReply::default()
            .content(text)
            .attachment(file)
            .ephemeral(true),
    )
    .await?;
    Ok(())
}

/// After a restart: unfinished sandboxes nobody runs any more are ended, and their threads told.
async fn announce_recovered(
    ctx: &serenity::Context,
    data: &Data,
    provider: &dyn crate::sandbox::SandboxProvider,
) {
    let ended = match recover(&data.store, provider).await {
        Ok(ended) => ended,
        Err(e) => {
            tracing::warn!(error = %e, "recovery failed");
            return;
        }
    };
    for id in ended {
        let Ok(Some(record)) = data.store.get_sandbox(id).await else {
            continue;
        };
        let Some(thread_id) = record.discord.thread_id else {
            continue;
        };
        if record.request.scan_task().is_some() {
            let requester = record.discord.user_id.map(|u| serenity::UserId::new(u.0));
            let thread = ChannelId::new(thread_id.0);
            if let Err(e) =
                scan::post_result(&ctx.http, &data.store, thread, &record, requester).await
            {
                tracing::warn!(sandbox = %id, error = %format!("{e:#}"), "could not tell the scan's thread about the restart");
            }
            continue;
        }
        let mention = record
            .discord
            .user_id
            .map(|u| serenity::UserId::new(u.0).mention().to_string());
        let (text, _) = render::result_message(&record, mention.as_deref());
        let mut allowed = CreateAllowedMentions::new();
        if let Some(user) = record.discord.user_id {
            allowed = allowed.users([serenity::UserId::new(user.0)]);
        }
        let result = ChannelId::new(thread_id.0)
            .send_message(
                &ctx.http,
                serenity::CreateMessage::new()
                    .content(text)
                    .allowed_mentions(allowed),
            )
            .await;
        if let Err(e) = result {
            tracing::warn!(sandbox = %id, error = %e, "could not tell the thread about the restart");
        }
    }
}
