//! `/project skills|commands|learnings`: what a channel's project gives its agents, and what earlier
//! runs proposed to remember. Skills and commands come from an attached file or a form and are
//! checked by the same rules as from the terminal (`pipeline::extensions`); learnings wait for a
//! server manager to accept them. Changes need Manage Server; lists are for everyone.

use poise::serenity_prelude as serenity;

use super::super::access::command_by_manager;
use super::super::modal;
use super::super::reply::say_ephemeral;
use super::super::{render, Context, Error};
use crate::ids::DiscordId;
use crate::model::NamedText;
use crate::pipeline::extensions;
use crate::store::Project;

#[derive(Debug, Default, poise::Modal)]
#[name = "Add a skill"]
struct SkillForm {
    #[name = "Name (lowercase, digits, hyphens)"]
    #[placeholder = "run-tests"]
    #[max_length = 64]
    name: String,
    #[name = "When should an agent use it?"]
    #[max_length = 300]
    description: String,
    #[name = "What the skill says (SKILL.md body)"]
    #[paragraph]
    #[max_length = 4000]
    body: String,
}

#[derive(Debug, Default, poise::Modal)]
#[name = "Add a command"]
struct CommandForm {
    #[name = "Name (run as /name)"]
    #[placeholder = "review"]
    #[max_length = 64]
    name: String,
    #[name = "The prompt it runs"]
    #[paragraph]
    #[max_length = 4000]
    body: String,
}

/// The channel's project, or the sentence that says there is none.
async fn channel_project(ctx: Context<'_>) -> Result<Option<Project>, Error> {
    let project = ctx
        .data()
        .ops
        .store()
        .project_for_channel(DiscordId(ctx.channel_id().get()))
        .await?;
    if project.is_none() {
        say_ephemeral(
            ctx,
            "This channel has no project yet: a server manager can run `/project setup`.",
        )
        .await?;
    }
    Ok(project)
}

/// The project, when the person manages the server (else they are told).
async fn managed_project(ctx: Context<'_>, what: &str) -> Result<Option<Project>, Error> {
    if !command_by_manager(ctx) {
        say_ephemeral(
            ctx,
            format!("Only server managers can change a project's {what}."),
        )
        .await?;
        return Ok(None);
    }
    channel_project(ctx).await
}

/// An attached file's text, within the size a skill or command may have.
async fn attached_text(file: &serenity::Attachment) -> Result<String, String> {
    if file.size as usize > extensions::MAX_BYTES {
        return Err(format!(
            "{} is {} bytes; at most {} fit",
            file.filename,
            file.size,
            extensions::MAX_BYTES
        ));
    }
    let bytes = file
        .download()
        .await
        .map_err(|_| format!("{} could not be downloaded; attach it again", file.filename))?;
    if bytes.len() > extensions::MAX_BYTES {
        return Err(format!("{} is larger than it said", file.filename));
    }
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", file.filename))
}

fn names_list(what: &str, items: &[NamedText]) -> String {
    if items.is_empty() {
        return format!("The project has no {what} yet.");
    }
    items
        .iter()
        .map(|i| format!("• `{}` ({} bytes)", i.name, i.text.len()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The project's skills (SKILL.md files its agents get).
#[poise::command(
    slash_command,
    subcommands("skills_add", "skills_remove", "skills_list")
)]
pub async fn skills(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Add or replace a skill, from an attached SKILL.md or a form (Manage Server).
#[poise::command(slash_command, rename = "add")]
async fn skills_add(
    ctx: Context<'_>,
    #[description = "A SKILL.md (leave out to write it in a form)"] file: Option<
        serenity::Attachment,
    >,
    #[description = "Its name (default: the file's front matter)"] name: Option<String>,
    #[description = "When to use it (default: the file's front matter)"] description: Option<
        String,
    >,
) -> Result<(), Error> {
    let poise::Context::Application(app) = ctx else {
        return Ok(());
    };
    let Some(project) = managed_project(ctx, "skills").await? else {
        return Ok(());
    };
    let checked = match &file {
        Some(file) => match attached_text(file).await {
            Ok(text) => extensions::skill(name.as_deref(), description.as_deref(), &text),
            Err(why) => Err(why),
        },
        None => {
            let Some(form) = modal::ask::<SkillForm>(app, None).await? else {
                return Ok(());
            };
            extensions::skill(Some(&form.name), Some(&form.description), &form.body)
        }
    };
    let answer = match checked.and_then(|skill| {
        let name = skill.name.clone();
        extensions::with_added(project.skills(), skill).map(|list| (name, list))
    }) {
        Ok((name, list)) => {
            ctx.data().ops.store().set_skills(project.id, &list).await?;
            format!("Skill `{name}` stored: the project's agents get it from their next launch.")
        }
        Err(why) => format!("That skill was not stored: {}.", render::inert(&why)),
    };
    say_ephemeral(ctx, answer).await
}

/// Remove a skill (Manage Server).
#[poise::command(slash_command, rename = "remove")]
async fn skills_remove(
    ctx: Context<'_>,
    #[description = "The skill's name"] name: String,
) -> Result<(), Error> {
    let Some(project) = managed_project(ctx, "skills").await? else {
        return Ok(());
    };
    let mut list = project.skills();
    let before = list.len();
    list.retain(|s| s.name != name);
    ctx.data().ops.store().set_skills(project.id, &list).await?;
    let done = if list.len() < before {
        "removed"
    } else {
        "was not there"
    };
    say_ephemeral(ctx, format!("Skill `{}` {done}.", render::inert(&name))).await
}

/// List the project's skills.
#[poise::command(slash_command, rename = "list")]
async fn skills_list(ctx: Context<'_>) -> Result<(), Error> {
    let Some(project) = channel_project(ctx).await? else {
        return Ok(());
    };
    say_ephemeral(ctx, names_list("skills", &project.skills())).await
}

/// The project's commands (prompts its agents can run as /name).
#[poise::command(
    slash_command,
    subcommands("commands_add", "commands_remove", "commands_list")
)]
pub async fn commands(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Add or replace a command, from an attached markdown file or a form (Manage Server).
#[poise::command(slash_command, rename = "add")]
async fn commands_add(
    ctx: Context<'_>,
    #[description = "A markdown file with the prompt (leave out to write it in a form)"]
    file: Option<serenity::Attachment>,
    #[description = "Its name, run as /name (needed with a file)"] name: Option<String>,
) -> Result<(), Error> {
    let poise::Context::Application(app) = ctx else {
        return Ok(());
    };
    let Some(project) = managed_project(ctx, "commands").await? else {
        return Ok(());
    };
    let checked = match (&file, name) {
        (Some(_), None) => Err("give the command's name with the file".to_string()),
        (Some(file), Some(name)) => match attached_text(file).await {
            Ok(text) => extensions::command(&name, &text),
            Err(why) => Err(why),
        },
        (None, _) => {
            let Some(form) = modal::ask::<CommandForm>(app, None).await? else {
                return Ok(());
            };
            extensions::command(&form.name, &form.body)
        }
    };
    let answer = match checked.and_then(|item| {
        let name = item.name.clone();
        extensions::with_added(project.commands(), item).map(|list| (name, list))
    }) {
        Ok((name, list)) => {
            ctx.data()
                .ops
                .store()
                .set_commands(project.id, &list)
                .await?;
            format!("Command `/{name}` stored: the project's agents get it from their next launch.")
        }
        Err(why) => format!("That command was not stored: {}.", render::inert(&why)),
    };
    say_ephemeral(ctx, answer).await
}

/// Remove a command (Manage Server).
#[poise::command(slash_command, rename = "remove")]
async fn commands_remove(
    ctx: Context<'_>,
    #[description = "The command's name"] name: String,
) -> Result<(), Error> {
    let Some(project) = managed_project(ctx, "commands").await? else {
        return Ok(());
    };
    let mut list = project.commands();
    let before = list.len();
    list.retain(|s| s.name != name);
    ctx.data()
        .ops
        .store()
        .set_commands(project.id, &list)
        .await?;
    let done = if list.len() < before {
        "removed"
    } else {
        "was not there"
    };
    say_ephemeral(ctx, format!("Command `/{}` {done}.", render::inert(&name))).await
}

/// List the project's commands.
#[poise::command(slash_command, rename = "list")]
async fn commands_list(ctx: Context<'_>) -> Result<(), Error> {
    let Some(project) = channel_project(ctx).await? else {
        return Ok(());
    };
    say_ephemeral(ctx, names_list("commands", &project.commands())).await
}

/// What earlier runs proposed to remember: only accepted learnings reach later agents.
#[poise::command(
    slash_command,
    subcommands(
        "learnings_list",
        "learnings_accept",
        "learnings_remove",
        "learnings_auto"
    )
)]
pub async fn learnings(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Proposed and accepted learnings, with their ids.
#[poise::command(slash_command, rename = "list")]
async fn learnings_list(ctx: Context<'_>) -> Result<(), Error> {
    let Some(project) = channel_project(ctx).await? else {
        return Ok(());
    };
    let all = ctx.data().ops.store().learnings(project.id).await?;
    if all.is_empty() {
        return say_ephemeral(ctx, "No learnings yet.").await;
    }
    let mut text = String::from("Learnings (📝 proposed, ✅ accepted):\n");
    for l in &all {
        text.push_str(&format!(
            "{} `{}` {}\n",
            if l.accepted() { "✅" } else { "📝" },
            l.id,
            render::inert(&render::cut(&l.text, 200))
        ));
    }
    if project.auto_accept_learnings {
        text.push_str("New learnings are accepted automatically (`/project learnings auto`).");
    }
    say_ephemeral(ctx, render::cut(&text, render::MAX_CONTENT)).await
}

/// Accept a proposed learning, or all of them (Manage Server).
#[poise::command(slash_command, rename = "accept")]
async fn learnings_accept(
    ctx: Context<'_>,
    #[description = "The learning's id (from /project learnings list)"] id: Option<i64>,
    #[description = "Accept every proposal"] all: Option<bool>,
) -> Result<(), Error> {
    let Some(project) = managed_project(ctx, "learnings").await? else {
        return Ok(());
    };
    let store = ctx.data().ops.store();
    let ids: Vec<i64> = match (id, all.unwrap_or(false)) {
        (Some(id), _) => vec![id],
        (None, true) => store
            .learnings(project.id)
            .await?
            .into_iter()
            .filter(|l| !l.accepted())
            .map(|l| l.id)
            .collect(),
        (None, false) => {
            return say_ephemeral(ctx, "Give the learning's `id`, or `all: True`.").await;
        }
    };
    let by = ctx.author().name.clone();
    let mut accepted = 0;
    for id in ids {
        if store.accept_learning(project.id, id, &by).await? {
            accepted += 1;
        }
    }
    let text = match accepted {
        0 => "No such proposal in this channel's project.".to_string(),
        n => format!("{n} learning(s) accepted: later agents on this project read them as notes."),
    };
    say_ephemeral(ctx, text).await
}

/// Remove a learning (Manage Server).
#[poise::command(slash_command, rename = "remove")]
async fn learnings_remove(
    ctx: Context<'_>,
    #[description = "The learning's id (from /project learnings list)"] id: i64,
) -> Result<(), Error> {
    let Some(project) = managed_project(ctx, "learnings").await? else {
        return Ok(());
    };
    let removed = ctx
        .data()
        .ops
        .store()
        .remove_learning(project.id, id)
        .await?;
    let text = if removed {
        format!("Learning {id} removed.")
    } else {
        "No such learning in this channel's project.".to_string()
    };
    say_ephemeral(ctx, text).await
}

/// Whether new learnings are accepted without review (Manage Server).
#[poise::command(slash_command, rename = "auto")]
async fn learnings_auto(
    ctx: Context<'_>,
    #[description = "Accept new learnings without review"] on: bool,
) -> Result<(), Error> {
    let Some(project) = managed_project(ctx, "learnings").await? else {
        return Ok(());
    };
    ctx.data()
        .ops
        .store()
        .set_auto_accept_learnings(project.id, on)
        .await?;
    let text = if on {
        "New learnings are now accepted automatically: every later run on this project reads what earlier agents wrote."
    } else {
        "New learnings now wait for a manager's review (`/project learnings accept`)."
    };
    say_ephemeral(ctx, text).await
}
