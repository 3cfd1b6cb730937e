//! `/project`: bind a channel to a repository with its instructions and variables, and store the
//! keys its launches use. Keys and variable values go in through modals, are stored encrypted, and
//! are never shown again: `/project show` lists names only. The project's skills, commands and
//! learnings are managed in `library.rs`. Changes need Manage Server.

mod library;

use poise::Modal;

use super::access::command_by_manager;
use super::modal;
use super::reply::{field_errors, say_ephemeral};
use super::{render, Context, Error};
use crate::catalog::{usd, Budget, LaunchInput, RepoRef};
use crate::config::AGENT_KEY_VARS;
use crate::ids::DiscordId;
use crate::pipeline::{project_scope, user_scope};
use crate::secret::Secret;
use crate::store::ProjectChange;

#[derive(Debug, Default, Modal)]
#[name = "Project for this channel"]
struct ProjectSetup {
    #[name = "Repository (owner/name or GitHub URL)"]
    #[placeholder = "acme/widgets"]
    repo: String,
    #[name = "Base branch (empty: the default branch)"]
    base_branch: Option<String>,
    #[name = "Instructions for every agent"]
    #[paragraph]
    #[max_length = 4000]
    system_prompt: Option<String>,
    #[name = "Variables, one KEY=VALUE per line"]
    #[paragraph]
    #[placeholder = "NODE_ENV=test"]
    variables: Option<String>,
    #[name = "Setup script (empty: .codecourier/setup.sh)"]
    #[paragraph]
    #[max_length = 4000]
    #[placeholder = "npm ci && npm run build"]
    setup_script: Option<String>,
}

#[derive(Debug, Default, Modal)]
#[name = "API keys (stored encrypted)"]
struct Keys {
    #[name = "ANTHROPIC_API_KEY (Claude Code)"]
    anthropic: Option<String>,
    #[name = "CLAUDE_CODE_OAUTH_TOKEN (Claude Code)"]
    claude_oauth: Option<String>,
    #[name = "OPENAI_API_KEY (Codex)"]
    openai: Option<String>,
    #[name = "OPENROUTER_API_KEY (OpenCode, Pi)"]
    openrouter: Option<String>,
}

/// Configure this channel's project.
#[poise::command(
    slash_command,
    guild_only,
    subcommands(
        "setup",
        "keys",
        "show",
        "library::skills",
        "library::commands",
        "library::learnings"
    )
)]
pub async fn project(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Bind this channel to a repository, with instructions, variables and setup script (Manage Server).
#[poise::command(slash_command, guild_only)]
async fn setup(
    ctx: Context<'_>,
    #[description = "Without a setup script, install what the repository's lockfiles name (default: on)"]
    auto_setup: Option<bool>,
    #[description = "Stop each launch that sets no budget once its model calls cost this many US dollars (0 removes it)"]
    default_budget_usd: Option<f64>,
) -> Result<(), Error> {
    let poise::Context::Application(app) = ctx else {
        return Ok(());
    };
    if !command_by_manager(ctx) {
        return say_ephemeral(ctx, "Only server managers can set up a channel's project.").await;
    }
    let default_budget_usd = match default_budget_usd {
        None => None,
        Some(0.0) => Some(None),
        Some(usd) => match Budget::parse_usd(&usd.to_string(), "default_budget_usd") {
            Err(e) => return say_ephemeral(ctx, e).await,
            Ok(_)
                if ctx
                    .data()
                    .ops
                    .launcher()
                    .provider()
                    .capabilities()
                    .egress_rules =>
            {
                let provider = ctx.data().ops.launcher().provider().name();
                let text = format!("{}.", Budget::unenforceable("A budget", provider));
                return say_ephemeral(ctx, text).await;
            }
            Ok(usd) => Some(Some(usd)),
        },
    };
    let store = ctx.data().ops.store();
    let channel = DiscordId(ctx.channel_id().get());
    let current = store.project_for_channel(channel).await?;
    let defaults = ProjectSetup {
        repo: current.as_ref().map(|p| p.repo.clone()).unwrap_or_default(),
        base_branch: current.as_ref().and_then(|p| p.base_branch.clone()),
        system_prompt: current.as_ref().and_then(|p| p.system_prompt.clone()),
        // Values are secrets: never put back on screen.
        variables: None,
        setup_script: current.as_ref().and_then(|p| p.setup_script.clone()),
    };
    let Some(form) = modal::ask(app, Some(defaults)).await? else {
        return Ok(());
    };
    // The same rules as a launch, so a bad repository is caught now, not at the first /launch.
    let check = LaunchInput {
        prompt: Some("check".into()),
        repo: Some(form.repo.clone()),
        base_branch: form.base_branch.clone(),
        env: form
            .variables
            .as_deref()
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        ..Default::default()
    };
    let request = match check.validate(
        ctx.data().ops.catalog(),
        ctx.data().config.allow_local_repos,
    ) {
        Ok(r) => r,
        Err(errors) => return say_ephemeral(ctx, field_errors("launch", &errors.0)).await,
    };
    let repo = match &request.repo {
        RepoRef::Github { owner, name } => format!("{owner}/{name}"),
        RepoRef::Local { path } => path.display().to_string(),
    };
    let project = store
        .bind_channel_project(
            channel,
            ctx.guild_id().map(|g| DiscordId(g.get())),
            &repo,
            request.base_branch.as_deref(),
            form.system_prompt
                .as_deref()
                .filter(|p| !p.trim().is_empty()),
        )
        .await?;
    // The form shows the current script, so what comes back replaces it (empty clears it).
    let change = ProjectChange {
        setup_script: Some(form.setup_script.filter(|s| !s.trim().is_empty())),
        auto_setup,
        default_budget_usd,
        ..Default::default()
    };
    store.update_project(project.id, &change).await?;
    if form.variables.is_some() {
        store
            .put_env(&project_scope(project.id), &request.env)
            .await?;
    }
    let names: Vec<&str> = request.env.iter().map(|(n, _)| n.as_str()).collect();
    say_ephemeral(
        ctx,
        format!(
            "This channel now launches against **{}**{}.{}",
            render::inert(&project.repo),
            project
                .base_branch
                .as_deref()
                .map(|b| format!(" from `{b}`"))
                .unwrap_or_default(),
            if names.is_empty() {
                String::new()
            } else {
                format!(" Variables stored: {}.", names.join(", "))
            }
        ),
    )
    .await
}

/// Store API keys for this channel's project, or for yourself (they are never shown again).
#[poise::command(slash_command, guild_only)]
async fn keys(
    ctx: Context<'_>,
    #[description = "project (default, Manage Server) or me (only your launches use them)"]
    r#for: Option<String>,
) -> Result<(), Error> {
    let poise::Context::Application(app) = ctx else {
        return Ok(());
    };
    let store = ctx.data().ops.store();
    let (scope, whose) = if r#for.as_deref() == Some("me") {
        (
            user_scope(DiscordId(ctx.author().id.get())),
            "your".to_string(),
        )
    } else {
        if !command_by_manager(ctx) {
            return say_ephemeral(ctx, "Only server managers can set a project's keys; `for: me` stores keys only your launches use.").await;
        }
        let Some(project) = store
            .project_for_channel(DiscordId(ctx.channel_id().get()))
            .await?
        else {
            return say_ephemeral(
                ctx,
                "This channel has no project yet: run `/project setup` first.",
            )
            .await;
        };
        (project_scope(project.id), format!("{}'s", project.repo))
    };
    let Some(form) = modal::ask::<Keys>(app, None).await? else {
        return Ok(());
    };
    let given = [
        (AGENT_KEY_VARS[0], form.anthropic),
        (AGENT_KEY_VARS[1], form.claude_oauth),
        (AGENT_KEY_VARS[2], form.openai),
        (AGENT_KEY_VARS[3], form.openrouter),
    ];
    let mut stored = Vec::new();
    for (name, value) in given {
        if let Some(value) = value
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        {
            store.put_secret(&scope, name, &Secret::new(value)).await?;
            stored.push(name);
        }
    }
    let text = if stored.is_empty() {
        "No key given; nothing changed.".to_string()
    } else {
        format!(
            "Stored {} for {whose} launches (encrypted; never shown again): {}.",
            if stored.len() == 1 { "one key" } else { "keys" },
            stored.join(", ")
        )
    };
    say_ephemeral(ctx, text).await
}

/// What this channel's project uses: repository, instructions, variable and key names.
#[poise::command(slash_command, guild_only)]
async fn show(ctx: Context<'_>) -> Result<(), Error> {
    let store = ctx.data().ops.store();
    let Some(project) = store
        .project_for_channel(DiscordId(ctx.channel_id().get()))
        .await?
    else {
        return say_ephemeral(
            ctx,
            "This channel has no project yet: a server manager can run `/project setup`.",
        )
        .await;
    };
    let scope = project_scope(project.id);
    let (variables, keys) = store.setting_names(&scope).await?;
    let mine: Vec<String> = store
        .secret_names(&user_scope(DiscordId(ctx.author().id.get())))
        .await?;
    let learnings = store.learnings(project.id).await?;
    let accepted = learnings.iter().filter(|l| l.accepted()).count();
    let names = |items: Vec<crate::model::NamedText>| -> Vec<String> {
        items.into_iter().map(|i| i.name).collect()
    };
    let list = |names: &[String]| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let text = format!(
        "**{}** · base {}\nDefault budget: {}\nInstructions: {}\nVariables: {}\nProject keys: {}\nYour keys: {}\nSkills: {}\nCommands: {}\nLearnings: {} accepted, {} to review (`/project learnings list`)",
        render::inert(&project.repo),
        project.base_branch.as_deref().unwrap_or("default branch"),
        project.default_budget_usd.map(usd).unwrap_or_else(|| "none".into()),
        project.system_prompt.as_deref().map(|p| render::inert(&render::cut(p, 300))).unwrap_or_else(|| "none".into()),
        list(&variables),
        list(&keys),
        list(&mine),
        list(&names(project.skills())),
        list(&names(project.commands())),
        accepted,
        learnings.len() - accepted,
    );
    say_ephemeral(ctx, text).await
}
