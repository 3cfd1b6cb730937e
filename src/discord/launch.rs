//! Launches from chat: `/launch` (with options, or the launch dialog), "Launch from message", the
//! dialog's menus and form, Retry and Follow up. Each checks who may launch, asks the pipeline to
//! record the launch (or shows its refusal as written), and follows the launch in a thread.

use poise::serenity_prelude as serenity;
use serenity::{
    ChannelId, CreateAllowedMentions, CreateInteractionResponse, CreateInteractionResponseMessage,
    GuildId, UserId,
};

use super::custom_id::{CustomId, DialogPart};
use super::reply::{self, ephemeral, say_ephemeral};
use super::{access, dialog, render, thread, Context, Data, Error};
use crate::catalog::LaunchInput;
use crate::ids::{DiscordId, SandboxId};
use crate::pipeline::ops::LaunchAsk;
use crate::pipeline::{LaunchOrigin, Prepared, ProjectChoice};
use crate::store::{DiscordOrigin, SandboxRecord};

const NOT_YOUR_DIALOG: &str = "This dialog belongs to someone else: run /launch to open your own.";
const DIALOG_EXPIRED: &str =
    "This launch dialog has expired (CodeCourier restarted since). Run /launch again.";

/// The models of the tool chosen in the same command (`/launch`, `/scan run`), else the default tool's.
pub async fn model_autocomplete(ctx: Context<'_>, partial: &str) -> Vec<String> {
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
    let catalog = ctx.data().ops.catalog();
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
pub async fn launch(
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
    #[description = "Stop the run once its model calls cost this many US dollars (default: the project's)"]
    budget_usd: Option<f64>,
) -> Result<(), Error> {
    let data = ctx.data();
    if let Some(refusal) = access::command_launch_refusal(ctx) {
        return say_ephemeral(ctx, refusal).await;
    }
    let channel = DiscordId(ctx.channel_id().get());
    let project = data.ops.store().project_for_channel(channel).await?;
    let actor = access::Actor::of_command(ctx);
    let used = match access::repo_use(data, &actor, project.as_ref(), repo.as_deref(), base_branch)
        .await?
    {
        Ok(used) => used,
        Err(refusal) => return say_ephemeral(ctx, refusal).await,
    };
    if budget_usd.is_some() {
        let cap = access::default_budget(data, &used.project).await?;
        if let Some(refusal) = access::budget_refusal(&actor, budget_usd, cap) {
            return say_ephemeral(ctx, refusal).await;
        }
    }
    let input = LaunchInput {
        prompt,
        repo: used.repo,
        base_branch: used.base_branch,
        tool,
        model,
        effort,
        memory_mb,
        cpus,
        timeout: timeout_minutes.map(|m| format!("{m}m")),
        template,
        pr,
        max_cost_usd: budget_usd.map(|usd| usd.to_string()),
        ..Default::default()
    };
    if input.prompt.is_none() {
        // The launch dialog: choose the agent, then write the prompt in a form.
        let catalog = data.ops.catalog();
        let (id, dialog) = data.dialogs.open(catalog, ctx.author().id.get(), input);
        if let poise::Context::Application(app) = ctx {
            let response =
                CreateInteractionResponse::Message(dialog::message(catalog, &id, &dialog));
            app.interaction
                .create_response(ctx.http(), response)
                .await?;
        }
        return Ok(());
    }
    let origin = origin(
        &ctx.author().name,
        ctx.author().id,
        ctx.guild_id(),
        channel,
        used.project,
    );
    launch_and_follow(ctx, input, &origin, project.is_some()).await
}

/// Launch an agent with a chat message as its task (marked as untrusted input).
#[poise::command(context_menu_command = "Launch from message", guild_only)]
pub async fn launch_from_message(
    ctx: Context<'_>,
    message: serenity::Message,
) -> Result<(), Error> {
    let data = ctx.data();
    if let Some(refusal) = access::command_launch_refusal(ctx) {
        return say_ephemeral(ctx, refusal).await;
    }
    let channel = DiscordId(ctx.channel_id().get());
    let Some(project) = data.ops.store().project_for_channel(channel).await? else {
        let text = "This channel has no project, so there is no repository to launch against: a server manager can run `/project setup`.";
        return say_ephemeral(ctx, text).await;
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
    let origin = origin(
        &ctx.author().name,
        ctx.author().id,
        ctx.guild_id(),
        channel,
        ProjectChoice::Project(project.id),
    );
    launch_and_follow(ctx, input, &origin, true).await
}

/// For a slash or context-menu command: record the launch, answer with its summary and follow it
/// in a thread; or answer, ephemeral, what to fix.
async fn launch_and_follow(
    ctx: Context<'_>,
    input: LaunchInput,
    origin: &LaunchOrigin,
    has_project: bool,
) -> Result<(), Error> {
    let data = ctx.data();
    let prepared = match data.ops.launch(LaunchAsk::Input(input), origin).await? {
        Ok(prepared) => prepared,
        Err(refusal) => {
            return say_ephemeral(ctx, reply::refusal("launch", &refusal, has_project)).await
        }
    };
    let reply = ctx
        .send(
            poise::CreateReply::default()
                .content(summary(data, &prepared, &origin.launched_by))
                .allowed_mentions(CreateAllowedMentions::new()),
        )
        .await?;
    let message = reply.message().await?.into_owned();
    thread::follow(
        ctx.serenity_context().http.clone(),
        data.ops.clone(),
        ctx.channel_id(),
        message.id,
        prepared,
        ctx.author().id,
    )
    .await
}

/// Who launches, from where: for the record, and so the person's own keys apply.
pub fn origin(
    name: &str,
    user: UserId,
    guild: Option<GuildId>,
    channel: DiscordId,
    project: ProjectChoice,
) -> LaunchOrigin {
    LaunchOrigin {
        launched_by: name.to_string(),
        discord: Some(DiscordOrigin {
            user_id: DiscordId(user.get()),
            guild_id: guild.map(|g| DiscordId(g.get())),
            channel_id: channel,
        }),
        project,
        keys_of: Some(DiscordId(user.get())),
        issue_session: None,
        workflow: None,
    }
}

/// Who launches again on `record` (Retry, Follow up): the presser, for the record and their own
/// cap; the requester's keys and the record's project (or none), never the presser's keys.
fn again(name: &str, user: UserId, guild: Option<GuildId>, record: &SandboxRecord) -> LaunchOrigin {
    let channel = record.discord.channel_id.unwrap_or(DiscordId(0));
    LaunchOrigin {
        keys_of: record.discord.user_id,
        ..origin(
            name,
            user,
            guild,
            channel,
            record
                .project_id
                .map_or(ProjectChoice::Nothing, ProjectChoice::Project),
        )
    }
}

/// The channel reply that starts a launch's thread.
pub fn summary(data: &Data, prepared: &Prepared, launched_by: &str) -> String {
    let request = prepared.request();
    let tool = data
        .ops
        .catalog()
        .tool(&request.tool)
        .expect("a prepared launch's tool is in the catalog");
    let mut text = render::launch_summary(request, tool, launched_by);
    if prepared.settings_of().is_none() {
        text.push_str("\nRuns with no project's variables or keys: this repository is not this channel's project.");
    }
    text
}

/// A press on the dialog's menus or its button.
pub async fn on_dialog_press(
    ctx: &serenity::Context,
    press: &serenity::ComponentInteraction,
    data: &Data,
    part: DialogPart,
    id: &str,
) -> Result<(), Error> {
    let Some(dialog) = data.dialogs.get(id) else {
        press
            .create_response(&ctx.http, ephemeral(DIALOG_EXPIRED))
            .await?;
        return Ok(());
    };
    if !access::owns_dialog(&dialog, press.user.id) {
        press
            .create_response(&ctx.http, ephemeral(NOT_YOUR_DIALOG))
            .await?;
        return Ok(());
    }
    if let Some(refusal) = access::launch_refusal(&data.config, &access::Actor::of_press(press)) {
        press.create_response(&ctx.http, ephemeral(refusal)).await?;
        return Ok(());
    }
    let catalog = data.ops.catalog();
    let response = if part == DialogPart::Open {
        dialog::modal(catalog, id, &dialog)
    } else {
        let dialog = dialog::choose(&data.dialogs, catalog, part, id, press).unwrap_or(dialog);
        CreateInteractionResponse::UpdateMessage(dialog::message(catalog, id, &dialog))
    };
    press.create_response(&ctx.http, response).await?;
    Ok(())
}

/// The dialog's form, submitted: the launch, or what to fix (what was typed is kept meanwhile).
pub async fn on_dialog_submit(
    ctx: &serenity::Context,
    submit: &serenity::ModalInteraction,
    data: &Data,
    id: &str,
) -> Result<(), Error> {
    let Some(mut dialog) = data.dialogs.get(id) else {
        submit
            .create_response(&ctx.http, ephemeral(DIALOG_EXPIRED))
            .await?;
        return Ok(());
    };
    // The form re-checks what the dialog's command checked: its opener, their roles.
    if !access::owns_dialog(&dialog, submit.user.id) {
        submit
            .create_response(&ctx.http, ephemeral(NOT_YOUR_DIALOG))
            .await?;
        return Ok(());
    }
    let actor = access::Actor::of_submit(submit);
    if let Some(refusal) = access::launch_refusal(&data.config, &actor) {
        submit
            .create_response(&ctx.http, ephemeral(refusal))
            .await?;
        return Ok(());
    }
    dialog::submitted(submit, &mut dialog.input);
    let channel = DiscordId(submit.channel_id.get());
    let project = data.ops.store().project_for_channel(channel).await?;
    let chosen = dialog
        .input
        .repo
        .as_deref()
        .map_or(ProjectChoice::Nothing, |repo| {
            access::project_for(project.as_ref(), repo)
        });
    let origin = origin(
        &submit.user.name,
        submit.user.id,
        submit.guild_id,
        channel,
        chosen,
    );
    // Keep what was typed while the person fixes a mistake; the dialog ends once the launch is recorded.
    data.dialogs
        .update(id, |input| *input = dialog.input.clone());
    let ask = LaunchAsk::Input(dialog.input.clone());
    let prepared = match data.ops.launch(ask, &origin).await? {
        Ok(prepared) => prepared,
        Err(refusal) => {
            let text = reply::refusal("launch", &refusal, project.is_some());
            submit.create_response(&ctx.http, ephemeral(text)).await?;
            return Ok(());
        }
    };
    data.dialogs.take(id);
    let public = CreateInteractionResponseMessage::new()
        .content(summary(data, &prepared, &origin.launched_by))
        .allowed_mentions(CreateAllowedMentions::new());
    submit
        .create_response(&ctx.http, CreateInteractionResponse::Message(public))
        .await?;
    let message = submit.get_response(&ctx.http).await?;
    thread::follow(
        ctx.http.clone(),
        data.ops.clone(),
        submit.channel_id,
        message.id,
        prepared,
        submit.user.id,
    )
    .await
}

/// Retry (for someone allowed to): the same request again, in a new thread off the launch's channel.
pub async fn retry(
    ctx: &serenity::Context,
    press: &serenity::ComponentInteraction,
    data: &Data,
    record: &SandboxRecord,
) -> Result<(), Error> {
    if let Some(refusal) = access::cap_refusal(data, DiscordId(press.user.id.get()), 1).await? {
        press.create_response(&ctx.http, ephemeral(refusal)).await?;
        return Ok(());
    }
    let channel = record
        .discord
        .channel_id
        .map(|c| ChannelId::new(c.0))
        .unwrap_or(press.channel_id);
    let origin = again(&press.user.name, press.user.id, press.guild_id, record);
    let request = data.ops.retry(record).await?;
    let prepared = match data
        .ops
        .launch(LaunchAsk::Request(request), &origin)
        .await?
    {
        Ok(prepared) => prepared,
        Err(refusal) => {
            let text = reply::refusal("launch", &refusal, true);
            press.create_response(&ctx.http, ephemeral(text)).await?;
            return Ok(());
        }
    };
    let id = record.id.short();
    press
        .create_response(
            &ctx.http,
            ephemeral(format!("Launching sandbox {id} again…")),
        )
        .await?;
    let text = format!(
        "🔁 Retry of `{id}`\n{}",
        summary(data, &prepared, &origin.launched_by)
    );
    let message = channel
        .send_message(
            &ctx.http,
            serenity::CreateMessage::new()
                .content(render::cut(&text, render::MAX_CONTENT))
                .allowed_mentions(CreateAllowedMentions::new()),
        )
        .await?;
    thread::follow(
        ctx.http.clone(),
        data.ops.clone(),
        channel,
        message.id,
        prepared,
        press.user.id,
    )
    .await
}

/// The Follow up form: the next instruction for the agent.
pub fn follow_up_form(of: SandboxId) -> CreateInteractionResponse {
    let prompt = serenity::CreateInputText::new(
        serenity::InputTextStyle::Paragraph,
        "What should the agent do next?",
        "prompt",
    )
    .required(true)
    .max_length(4000);
    let modal = serenity::CreateModal::new(CustomId::FollowUpForm(of).encode(), "Follow up")
        .components(vec![serenity::CreateActionRow::InputText(prompt)]);
    CreateInteractionResponse::Modal(modal)
}

/// The Follow up form, submitted: the follow-up runs in the same thread as the launch it continues.
pub async fn on_follow_up_submit(
    ctx: &serenity::Context,
    submit: &serenity::ModalInteraction,
    data: &Data,
    of: SandboxId,
) -> Result<(), Error> {
    let Some(record) = data.ops.store().get_sandbox(of).await? else {
        let text = format!("Sandbox {} is not in this bot's records.", of.short());
        submit.create_response(&ctx.http, ephemeral(text)).await?;
        return Ok(());
    };
    // The form re-checks what its button checked.
    let actor = access::Actor::of_submit(submit);
    if !actor.owns_or_manages(record.discord.user_id, record.discord.guild_id) {
        let text =
            "Only the person who launched this sandbox, or a server manager, can follow it up.";
        submit.create_response(&ctx.http, ephemeral(text)).await?;
        return Ok(());
    }
    if let Some(refusal) = access::launch_refusal(&data.config, &actor) {
        submit
            .create_response(&ctx.http, ephemeral(refusal))
            .await?;
        return Ok(());
    }
    let user = DiscordId(submit.user.id.get());
    if let Some(refusal) = access::cap_refusal(data, user, 1).await? {
        submit
            .create_response(&ctx.http, ephemeral(refusal))
            .await?;
        return Ok(());
    }
    let origin = again(&submit.user.name, submit.user.id, submit.guild_id, &record);
    let asked = match data
        .ops
        .follow_up(&record, &dialog::submitted_prompt(submit))
        .await?
    {
        Ok(request) => {
            data.ops
                .launch(LaunchAsk::Request(request), &origin)
                .await?
        }
        Err(refusal) => Err(refusal),
    };
    let prepared = match asked {
        Ok(prepared) => prepared,
        Err(refusal) => {
            let text = reply::refusal("launch", &refusal, true);
            submit.create_response(&ctx.http, ephemeral(text)).await?;
            return Ok(());
        }
    };
    let text = format!(
        "↪️ Follow-up of `{}`\n{}",
        of.short(),
        summary(data, &prepared, &origin.launched_by)
    );
    let public = CreateInteractionResponseMessage::new()
        .content(render::cut(&text, render::MAX_CONTENT))
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
        data.ops.clone(),
        thread,
        prepared,
        submit.user.id,
    )
    .await
}
