//! Who may do what from Discord, in one place: the roles that may launch, server managers (Discord's
//! Manage Server permission), the person who started something, and the per-user cap on running
//! sandboxes; a launch dialog is its opener's. Every command, button and form asks here; each
//! rule is one function.

use poise::serenity_prelude as serenity;

use super::dialog::Dialog;
use super::{Context, Data, Error};
use crate::ids::DiscordId;

/// Whether a member may manage the server, as the interaction carries their permissions.
pub fn manages_server(member: Option<&serenity::Member>) -> bool {
    member
        .and_then(|m| m.permissions)
        .is_some_and(|p| p.manage_guild())
}

/// The member who invoked a command, as the interaction carries them (with their permissions).
pub fn command_member(ctx: Context<'_>) -> Option<&serenity::Member> {
    match ctx {
        poise::Context::Application(app) => app.interaction.member.as_deref(),
        _ => None,
    }
}

/// Whether the member who invoked a command may manage the server.
pub fn command_by_manager(ctx: Context<'_>) -> bool {
    manages_server(command_member(ctx))
}

/// Whether `user` may act on what `owner` started (stop, retry, follow up, file or fix its
/// issues): the person who started it, or a server manager.
pub fn owner_or_manager(
    owner: Option<DiscordId>,
    user: serenity::UserId,
    member: Option<&serenity::Member>,
) -> bool {
    owner == Some(DiscordId(user.get())) || manages_server(member)
}

/// Whether `user` opened the launch dialog `dialog`: a dialog belongs to the person who opened it.
pub fn owns_dialog(dialog: &Dialog, user: serenity::UserId) -> bool {
    dialog.user == user.get()
}

/// Why the person who invoked a command may not start sandboxes now (their roles, or the cap),
/// if they may not.
pub async fn launch_refusal(ctx: Context<'_>) -> Result<Option<String>, Error> {
    if let Some(refusal) = role_refusal(ctx).await {
        return Ok(Some(refusal));
    }
    cap_refusal(ctx.data(), DiscordId(ctx.author().id.get()), 1).await
}

/// With `CODECOURIER_ALLOWED_ROLES` set, only members with one of those roles (by id or name)
/// may launch.
async fn role_refusal(ctx: Context<'_>) -> Option<String> {
    let allowed = &ctx.data().config.allowed_roles;
    if allowed.is_empty() {
        return None;
    }
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
    (!permitted).then(|| {
        format!(
            "Only members with one of these roles may launch: {}. Ask a server manager.",
            allowed.join(", ")
        )
    })
}

/// Why `user` may not start `wanted` more sandboxes now, if it would pass the per-user cap.
pub async fn cap_refusal(
    data: &Data,
    user: DiscordId,
    wanted: usize,
) -> Result<Option<String>, Error> {
    let running = data.ops.store().unfinished_for_user(user).await?;
    let cap = i64::from(data.config.max_running_per_user);
    if running >= cap {
        return Ok(Some(format!(
            "You already have {running} sandboxes running (the limit is {cap}). Stop one with its Stop button, or wait for one to finish."
        )));
    }
    if running + wanted as i64 > cap {
        return Ok(Some(format!(
            "{wanted} fixes would take you past the limit of {cap} running sandboxes (you have {running}). Choose fewer, or wait for one to finish."
        )));
    }
    Ok(None)
}
