//! Issue sessions in Discord: `/scan run` starts one in a thread (progress exactly like a launch),
//! `/scan history` lists them; the result is the list of issues (`list`), whose menu and buttons
//! file chosen issues on GitHub, launch a fix for each, or fix them as a work chain.

mod list;

use std::fmt::Write as _;
use std::sync::Arc;

use poise::serenity_prelude as serenity;
use serenity::{
    ButtonStyle, ChannelId, ComponentInteraction, ComponentInteractionDataKind, CreateActionRow,
    CreateAllowedMentions, CreateButton, CreateInteractionResponse,
    CreateInteractionResponseMessage, CreateMessage, EditInteractionResponse, Http,
};

use super::custom_id::{CustomId, ScanAction};
use super::launch::{model_autocomplete, origin};
use super::render::{cut, inert, MAX_CONTENT};
use super::reply::{self, ephemeral, say_ephemeral};
use super::{access, thread, Context, Data, Error};
use crate::catalog::{LaunchInput, LaunchRequest, Tool};
use crate::ids::{DiscordId, IssueSessionId};
use crate::model::scan::IssueSessionStatus;
use crate::pipeline::ops::LaunchAsk;
use crate::pipeline::scan::{fix_prompt, FiledOutcome, ScanInput};
use crate::pipeline::LaunchOrigin;
use crate::store::{IssueRecord, IssueSession, SandboxRecord};
pub use list::post_result;
use list::{load, result_page, status_word};

/// The most issues one press may launch fixes for.
const MAX_FIXES_AT_ONCE: usize = 5;

/// Scan a repository for issues, or list earlier scans.
#[poise::command(
    slash_command,
    guild_only,
    subcommands("scan_run", "scan_history"),
    subcommand_required
)]
pub async fn scan(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Scan a repository with an agent and get a list of issues to file or fix.
#[poise::command(slash_command, rename = "run")]
async fn scan_run(
    ctx: Context<'_>,
    #[description = "owner/name or a GitHub URL (default: this channel's project)"] repo: Option<
        String,
    >,
    #[description = "What to look at, in a few words (security, tests, …)"] focus: Option<String>,
    #[description = "Agent CLI (default: the catalog's default)"] tool: Option<String>,
    #[description = "Model for the chosen tool"]
    #[autocomplete = "model_autocomplete"]
    model: Option<String>,
    #[description = "At most this many issues (default 20)"]
    #[min = 1]
    #[max = 100]
    max_issues: Option<i64>,
    #[description = "Branch to scan (default: the repository's default branch)"]
    base_branch: Option<String>,
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
    let input = ScanInput {
        repo: used.repo,
        base_branch: used.base_branch,
        focus,
        tool,
        model,
        max_issues,
        ..Default::default()
    };
    let origin = origin(
        &ctx.author().name,
        ctx.author().id,
        ctx.guild_id(),
        channel,
        used.project,
    );
    let prepared = match data.ops.launch(LaunchAsk::Scan(input), &origin).await? {
        Ok(prepared) => prepared,
        Err(refusal) => {
            let text = reply::refusal("scan", &refusal, project.is_some());
            return say_ephemeral(ctx, text).await;
        }
    };
    let request = prepared.request();
    let tool = data
        .ops
        .catalog()
        .tool(&request.tool)
        .expect("a prepared scan's tool is in the catalog");
    let summary = scan_summary(request, tool, &origin.launched_by);
    let reply = ctx
        .send(
            poise::CreateReply::default()
                .content(summary)
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

/// Earlier scans started in this channel, newest first.
#[poise::command(slash_command, rename = "history")]
async fn scan_history(ctx: Context<'_>) -> Result<(), Error> {
    let store = ctx.data().ops.store();
    let channel = DiscordId(ctx.channel_id().get());
    let sessions = store.list_issue_sessions(Some(channel), 15).await?;
    if sessions.is_empty() {
        say_ephemeral(
            ctx,
            "No scans from this channel yet: `/scan run` starts one.",
        )
        .await?;
        return Ok(());
    }
    let mut text = String::from("**Scans from this channel**, newest first:\n");
    for s in &sessions {
        let issues = store.issues(s.id).await?;
        let found = match s.status {
            IssueSessionStatus::Completed => format!(
                "{} issue{}",
                issues.len(),
                if issues.len() == 1 { "" } else { "s" }
            ),
            _ => String::new(),
        };
        let filed = issues
            .iter()
            .filter(|i| i.github_issue_url.is_some())
            .count();
        let _ = writeln!(
            text,
            "`{}` {} · {}{} · {}{}{} · <t:{}:R>",
            s.id.short(),
            status_word(s.status),
            inert(&s.repo),
            s.focus
                .as_deref()
                .map(|f| format!(" · {}", inert(&cut(f, 40))))
                .unwrap_or_default(),
            found,
            if filed > 0 {
                format!(" ({filed} on GitHub)")
            } else {
                String::new()
            },
            s.discord_thread_id
                .map(|t| format!(" · <#{t}>"))
                .unwrap_or_default(),
            s.created_at.timestamp(),
        );
    }
    say_ephemeral(ctx, cut(&text, MAX_CONTENT)).await?;
    Ok(())
}

/// The channel reply that starts a scan's thread.
fn scan_summary(request: &LaunchRequest, tool: &Tool, launched_by: &str) -> String {
    let task = request.scan_task().expect("a scan request");
    let text = format!(
        "🔎 **Scan of {}** · {} · read-only\n{} · `{}` · at most {} issues{}\nstarted by {}",
        inert(&request.repo.to_string()),
        request.base_branch.as_deref().unwrap_or("default branch"),
        tool.name,
        request.model,
        task.max_issues,
        task.focus
            .as_deref()
            .map(|f| format!("\nfocus: {}", inert(&cut(f, 300))))
            .unwrap_or_default(),
        inert(launched_by),
    );
    cut(&text, MAX_CONTENT)
}

/// A press on a scan's select menu or buttons.
pub async fn on_press(
    ctx: &serenity::Context,
    press: &ComponentInteraction,
    data: &Data,
    session_id: IssueSessionId,
    action: ScanAction,
) -> Result<(), Error> {
    let Some((session, issues, sandbox)) = load(data.ops.store(), session_id).await? else {
        press
            .create_response(
                &ctx.http,
                ephemeral(format!(
                    "Scan {} is not in this bot's records.",
                    session_id.short()
                )),
            )
            .await?;
        return Ok(());
    };
    let actor = access::Actor::of_press(press);
    // The scan's server is its sandbox's.
    let guild = sandbox.as_ref().and_then(|s| s.discord.guild_id);
    let may_act = actor.owns_or_manages(session.discord_user_id, guild);
    // Fixes launch: the same rule as every launch.
    let launch_refusal = access::launch_refusal(&data.config, &actor);
    match action {
        ScanAction::Page(page) => {
            let (text, rows, _) = result_page(&session, &issues, sandbox.as_ref(), page, None);
            let update = CreateInteractionResponseMessage::new()
                .content(text)
                .components(rows)
                .allowed_mentions(CreateAllowedMentions::new());
            press
                .create_response(&ctx.http, CreateInteractionResponse::UpdateMessage(update))
                .await?;
        }
        ScanAction::Pick(_) => {
            let ComponentInteractionDataKind::StringSelect { values } = &press.data.kind else {
                return Ok(());
            };
            let positions: Vec<u32> = values.iter().filter_map(|v| v.parse().ok()).collect();
            let chosen: Vec<&IssueRecord> = issues
                .iter()
                .filter(|i| positions.contains(&i.position))
                .collect();
            let mut text = format!("Chosen from scan `{}`:\n", session.id.short());
            for record in &chosen {
                let _ = writeln!(
                    text,
                    "• `{}` {} {}{}",
                    record.position,
                    record.issue.severity.emoji(),
                    inert(&cut(&record.issue.title, 120)),
                    record
                        .github_issue_url
                        .as_deref()
                        .map(|u| format!(" — {u}"))
                        .unwrap_or_default()
                );
            }
            text.push_str("File them as GitHub issues, launch a sandbox to fix each one, or fix them one after another on one branch (a work chain, one pull request).");
            let id = |action: ScanAction| CustomId::Scan(session.id, action).encode();
            let buttons = vec![
                CreateButton::new(id(ScanAction::File(positions.clone())))
                    .label("Create GitHub issues")
                    .style(ButtonStyle::Primary),
                CreateButton::new(id(ScanAction::Fix(positions.clone())))
                    .label(if chosen.len() == 1 {
                        "Launch fix".to_string()
                    } else {
                        format!("Launch {} fixes", chosen.len())
                    })
                    .style(ButtonStyle::Success),
                CreateButton::new(id(ScanAction::Chain(positions)))
                    .label("Fix as a chain")
                    .style(ButtonStyle::Secondary),
            ];
            let reply = CreateInteractionResponseMessage::new()
                .content(cut(&text, MAX_CONTENT))
                .components(vec![CreateActionRow::Buttons(buttons)])
                .ephemeral(true)
                .allowed_mentions(CreateAllowedMentions::new());
            press
                .create_response(&ctx.http, CreateInteractionResponse::Message(reply))
                .await?;
        }
        ScanAction::File(positions) => {
            if !may_act {
                press.create_response(&ctx.http, ephemeral("Only the person who started this scan, or a server manager, can file its issues.")).await?;
                return Ok(());
            }
            // Filing calls GitHub once or twice per issue: acknowledge first.
            press.defer_ephemeral(&ctx.http).await?;
            let launcher = data.ops.launcher();
            let text = match launcher.file_issues(&session, &positions).await {
                Err(why) => format!("No GitHub issues filed: {}", inert(&launcher.redact(&why))),
                Ok(filed) => {
                    let mut text = format!(
                        "📝 GitHub issues for scan `{}`, filed by {}:\n",
                        session.id.short(),
                        inert(&press.user.name)
                    );
                    for f in &filed {
                        let link = match (&f.number, &f.url) {
                            (Some(n), Some(url)) => format!("#{n} {url}"),
                            _ => String::new(),
                        };
                        let what = match &f.outcome {
                            FiledOutcome::Created => format!("created {link}"),
                            FiledOutcome::Linked => {
                                format!("already open on GitHub, linked: {link}")
                            }
                            FiledOutcome::AlreadyFiled => format!("filed before: {link}"),
                            FiledOutcome::Failed(why) => format!("not filed: {}", inert(why)),
                        };
                        let _ = writeln!(
                            text,
                            "• `{}` {} — {what}",
                            f.position,
                            inert(&cut(&f.title, 100))
                        );
                    }
                    // Everyone in the thread sees the links; the presser gets them too.
                    let public = CreateMessage::new()
                        .content(cut(&text, MAX_CONTENT))
                        .allowed_mentions(CreateAllowedMentions::new());
                    if let Err(e) = press.channel_id.send_message(&ctx.http, public).await {
                        tracing::warn!(error = %e, "could not post the GitHub links");
                    }
                    text
                }
            };
            press
                .edit_response(
                    &ctx.http,
                    EditInteractionResponse::new().content(cut(&text, MAX_CONTENT)),
                )
                .await?;
        }
        ScanAction::Chain(positions) => {
            if !may_act {
                press.create_response(&ctx.http, ephemeral("Only the person who started this scan, or a server manager, can fix its issues.")).await?;
                return Ok(());
            }
            if let Some(refusal) = launch_refusal {
                press.create_response(&ctx.http, ephemeral(refusal)).await?;
                return Ok(());
            }
            let user = DiscordId(press.user.id.get());
            if let Some(refusal) = access::cap_refusal(data, user, 1).await? {
                press.create_response(&ctx.http, ephemeral(refusal)).await?;
                return Ok(());
            }
            press.defer_ephemeral(&ctx.http).await?;
            let text = super::workflow::chain_from_scan(
                ctx.http.clone(),
                press,
                data,
                session.id,
                &positions,
            )
            .await?;
            press
                .edit_response(
                    &ctx.http,
                    EditInteractionResponse::new().content(cut(&text, MAX_CONTENT)),
                )
                .await?;
        }
        ScanAction::Fix(positions) => {
            if !may_act {
                press.create_response(&ctx.http, ephemeral("Only the person who started this scan, or a server manager, can launch fixes from it.")).await?;
                return Ok(());
            }
            if let Some(refusal) = launch_refusal {
                press.create_response(&ctx.http, ephemeral(refusal)).await?;
                return Ok(());
            }
            let chosen: Vec<&IssueRecord> = issues
                .iter()
                .filter(|i| positions.contains(&i.position))
                .collect();
            if chosen.len() > MAX_FIXES_AT_ONCE {
                press
                    .create_response(
                        &ctx.http,
                        ephemeral(format!(
                            "That is {} issues; launch at most {MAX_FIXES_AT_ONCE} fixes at once.",
                            chosen.len()
                        )),
                    )
                    .await?;
                return Ok(());
            }
            let user = DiscordId(press.user.id.get());
            if let Some(refusal) = access::cap_refusal(data, user, chosen.len()).await? {
                press.create_response(&ctx.http, ephemeral(refusal)).await?;
                return Ok(());
            }
            press.defer_ephemeral(&ctx.http).await?;
            let text = launch_fixes(
                ctx.http.clone(),
                press,
                data,
                &session,
                sandbox.as_ref(),
                &chosen,
            )
            .await?;
            press
                .edit_response(
                    &ctx.http,
                    EditInteractionResponse::new().content(cut(&text, MAX_CONTENT)),
                )
                .await?;
        }
    }
    Ok(())
}

/// Starts a launch per chosen issue, each in its own thread off the scan's channel, linked to the
/// session. Returns what to tell the person who pressed.
async fn launch_fixes(
    http: Arc<Http>,
    press: &ComponentInteraction,
    data: &Data,
    session: &IssueSession,
    scan: Option<&SandboxRecord>,
    chosen: &[&IssueRecord],
) -> Result<String, Error> {
    let channel = session
        .discord_channel_id
        .map(|c| ChannelId::new(c.0))
        .unwrap_or(press.channel_id);
    // The channel's project, as for any launch from it: its keys and variables apply.
    let project = data
        .ops
        .store()
        .project_for_channel(DiscordId(channel.get()))
        .await?;
    let origin = LaunchOrigin {
        issue_session: Some(session.id),
        ..origin(
            &press.user.name,
            press.user.id,
            press.guild_id,
            DiscordId(channel.get()),
            access::project_for(project.as_ref(), &session.repo),
        )
    };
    let mut lines = Vec::new();
    for record in chosen {
        let input = LaunchInput {
            prompt: Some(fix_prompt(&record.issue)),
            repo: Some(
                scan.map(|s| s.request.repo.to_string())
                    .unwrap_or_else(|| session.repo.clone()),
            ),
            base_branch: scan.and_then(|s| s.request.base_branch.clone()),
            tool: Some(session.tool.clone()),
            model: Some(session.model.clone()),
            ..Default::default()
        };
        let label = format!(
            "`{}` {}",
            record.position,
            inert(&cut(&record.issue.title, 80))
        );
        let prepared = match data.ops.launch(LaunchAsk::Input(input), &origin).await? {
            Ok(prepared) => prepared,
            Err(refusal) => {
                lines.push(format!("{label}: {}", inert(&refusal.to_string())));
                continue;
            }
        };
        let summary = super::launch::summary(data, &prepared, &origin.launched_by);
        let id = prepared.id;
        let message = channel
            .send_message(
                &http,
                CreateMessage::new()
                    .content(cut(
                        &format!(
                            "🔧 Fix for issue {label} of scan `{}`\n{summary}",
                            session.id.short()
                        ),
                        MAX_CONTENT,
                    ))
                    .allowed_mentions(CreateAllowedMentions::new()),
            )
            .await?;
        thread::follow(
            http.clone(),
            data.ops.clone(),
            channel,
            message.id,
            prepared,
            press.user.id,
        )
        .await?;
        lines.push(format!("{label}: sandbox `{}` launched", id.short()));
    }
    Ok(format!(
        "Fixes for scan `{}`:\n{}",
        session.id.short(),
        lines.join("\n")
    ))
}
