//! Sandboxes in chat: `/sandboxes`, `/sandbox status|stop|logs`, and the buttons under a launch
//! (Stop and Open PR here; Retry and Follow up launch again, in `launch`). One rule for all of
//! them: the person who launched the sandbox, or a server manager.

use poise::serenity_prelude as serenity;

use super::custom_id::SandboxAction;
use super::reply::{ephemeral, say_ephemeral};
use super::{access, launch, render, Context, Data, Error};
use crate::ids::{DiscordId, SandboxId};
use crate::pipeline::ops::SandboxStop;
use crate::store::{SandboxFilter, SandboxRecord, StoreError};

/// A press on a launch's Stop, Retry, Open PR or Follow up.
pub async fn on_button(
    ctx: &serenity::Context,
    press: &serenity::ComponentInteraction,
    data: &Data,
    action: SandboxAction,
    id: SandboxId,
) -> Result<(), Error> {
    let Some(record) = data.ops.store().get_sandbox(id).await? else {
        let text = format!("Sandbox {} is not in this bot's records.", id.short());
        press.create_response(&ctx.http, ephemeral(text)).await?;
        return Ok(());
    };
    let actor = access::Actor::of_press(press);
    if !actor.owns_or_manages(record.discord.user_id, record.discord.guild_id) {
        let what = match action {
            SandboxAction::Stop => "stop it",
            SandboxAction::Retry => "retry it",
            SandboxAction::OpenPr => "open its pull request",
            SandboxAction::FollowUp => "follow it up",
        };
        let text =
            format!("Only the person who launched this sandbox, or a server manager, can {what}.");
        press.create_response(&ctx.http, ephemeral(text)).await?;
        return Ok(());
    }
    // Retry and Follow up launch: the same rule as every launch.
    if matches!(action, SandboxAction::Retry | SandboxAction::FollowUp) {
        if let Some(refusal) = access::launch_refusal(&data.config, &actor) {
            press.create_response(&ctx.http, ephemeral(refusal)).await?;
            return Ok(());
        }
    }
    match action {
        SandboxAction::Stop => {
            let text = stop(data, &record, &press.user.name).await?;
            press.create_response(&ctx.http, ephemeral(text)).await?;
        }
        SandboxAction::FollowUp => {
            press
                .create_response(&ctx.http, launch::follow_up_form(id))
                .await?;
        }
        SandboxAction::Retry => launch::retry(ctx, press, data, &record).await?,
        SandboxAction::OpenPr => {
            // Opening a pull request calls GitHub: acknowledge first, answer when it is done.
            press.defer_ephemeral(&ctx.http).await?;
            let launcher = data.ops.launcher();
            let text = match launcher.open_pull_request(&record).await {
                Ok(url) => format!("Draft pull request: {url}"),
                Err(why) => format!("No pull request: {}", launcher.redact(&why)),
            };
            press
                .edit_response(
                    &ctx.http,
                    serenity::EditInteractionResponse::new()
                        .content(render::cut(&text, render::MAX_CONTENT)),
                )
                .await?;
        }
    }
    Ok(())
}

/// Stops a sandbox for someone allowed to; the answer says what happened.
async fn stop(data: &Data, record: &SandboxRecord, by: &str) -> Result<String, Error> {
    let id = record.id.short();
    let by = format!("{by} from Discord");
    Ok(match data.ops.stop_sandbox(record, &by).await? {
        SandboxStop::AlreadyEnded(status) => format!("Sandbox {id} already ended: {status}."),
        SandboxStop::Stopping | SandboxStop::Stopped(_) => format!("Stopping sandbox {id}…"),
        SandboxStop::NotStopped(why) => format!(
            "Sandbox {id} could not be stopped: {}. Nothing changed; try again in a moment.",
            render::inert(&why)
        ),
    })
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
        .ops
        .store()
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

/// The sandbox an id (or its first characters) names, if the person may see it here; `None`
/// once they were told. A record they may not see is answered exactly as one that does not exist.
async fn find(ctx: Context<'_>, id: &str) -> Result<Option<SandboxRecord>, Error> {
    let not_here = format!(
        "No sandbox of this channel (or of yours) matches \"{}\"; `/sandboxes` lists them.",
        render::inert(&render::cut(id.trim(), 40))
    );
    match ctx.data().ops.store().find_sandbox(id).await {
        Ok(record)
            if access::sees_sandbox(&access::Actor::of_command(ctx), ctx.channel_id(), &record) =>
        {
            Ok(Some(record))
        }
        Ok(_) | Err(StoreError::NotFound(_)) => {
            say_ephemeral(ctx, not_here).await?;
            Ok(None)
        }
        Err(StoreError::Ambiguous(..)) => {
            say_ephemeral(ctx, "Give more characters of the sandbox's id.").await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Recent sandboxes: this channel's (default), yours, or the whole server's (managers).
#[poise::command(slash_command, guild_only)]
pub async fn sandboxes(
    ctx: Context<'_>,
    #[description = "channel (default), mine, or all of this server (Manage Server)"] show: Option<
        String,
    >,
    #[description = "Only this status"] status: Option<String>,
) -> Result<(), Error> {
    // Always this server's only.
    let mut filter = SandboxFilter {
        limit: 15,
        discord_guild: ctx.guild_id().map(|g| DiscordId(g.get())),
        ..Default::default()
    };
    match show.as_deref().unwrap_or("channel") {
        "mine" => filter.discord_user = Some(DiscordId(ctx.author().id.get())),
        "all" if access::command_by_manager(ctx) => {}
        "all" => {
            return say_ephemeral(
                ctx,
                "Only server managers see every sandbox of the server; `show: mine` lists yours.",
            )
            .await
        }
        _ => filter.discord_channel = Some(DiscordId(ctx.channel_id().get())),
    }
    if let Some(status) = status {
        match status.parse() {
            Ok(s) => filter.status = Some(s),
            Err(e) => return say_ephemeral(ctx, e).await,
        }
    }
    let records = ctx.data().ops.store().list_sandboxes(&filter).await?;
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
    say_ephemeral(ctx, text).await
}

/// Inspect or control one sandbox.
#[poise::command(
    slash_command,
    guild_only,
    subcommands("sandbox_status", "sandbox_stop", "sandbox_logs")
)]
pub async fn sandbox(_ctx: Context<'_>) -> Result<(), Error> {
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
    say_ephemeral(ctx, text).await
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
    let actor = access::Actor::of_command(ctx);
    if !actor.owns_or_manages(record.discord.user_id, record.discord.guild_id) {
        return say_ephemeral(
            ctx,
            "Only the person who launched this sandbox, or a server manager, can stop it.",
        )
        .await;
    }
    let text = stop(ctx.data(), &record, &ctx.author().name).await?;
    say_ephemeral(ctx, text).await
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
    let events = ctx.data().ops.store().events(record.id, 0).await?;
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
