//! Issue sessions in Discord: `/scan run` starts one in a thread (progress exactly like a launch),
//! the result is the list of issues, paged within Discord's limits, with a select menu to choose
//! issues and buttons to file them on GitHub or launch a fix for each. Every custom id carries the
//! session (and the chosen issues), so the buttons work after a restart.

use std::fmt::Write as _;
use std::sync::Arc;

use poise::serenity_prelude as serenity;
use serenity::{
    ButtonStyle, ChannelId, ComponentInteraction, ComponentInteractionDataKind, CreateActionRow,
    CreateAllowedMentions, CreateAttachment, CreateButton, CreateInteractionResponse,
    CreateInteractionResponseMessage, CreateMessage, CreateSelectMenu, CreateSelectMenuKind,
    CreateSelectMenuOption, EditInteractionResponse, Http, Mentionable, UserId,
};

use super::render::{cut, inert, MAX_CONTENT};
use super::{
    ephemeral, field_errors, launch_origin, launch_refusal, model_autocomplete,
    running_cap_refusal, say_ephemeral, thread, Context, Data, Error,
};
use crate::catalog::{LaunchInput, LaunchRequest, Tool};
use crate::ids::{DiscordId, IssueSessionId};
use crate::pipeline::scan::{
    fix_prompt, severity_counts, FiledOutcome, IssueSessionStatus, ScanInput, MAX_MAX_ISSUES,
};
use crate::pipeline::{LaunchError, LaunchOrigin};
use crate::store::{DiscordOrigin, IssueRecord, IssueSession, SandboxRecord, Store};

/// Issues per page: ten compact entries stay well inside 2,000 characters.
pub const PAGE_SIZE: usize = 10;
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
    let user = DiscordId(ctx.author().id.get());
    if let Some(refusal) = launch_refusal(ctx, user).await? {
        say_ephemeral(ctx, refusal).await?;
        return Ok(());
    }
    let channel = DiscordId(ctx.channel_id().get());
    let project = data.store.project_for_channel(channel).await?;
    let input = ScanInput {
        repo: repo.or_else(|| project.as_ref().map(|p| p.repo.clone())),
        base_branch: base_branch.or_else(|| project.as_ref().and_then(|p| p.base_branch.clone())),
        focus,
        tool,
        model,
        max_issues,
        ..Default::default()
    };
    let request = match input.validate(&data.catalog, data.config.allow_local_repos) {
        Ok(request) => request,
        Err(errors) => {
            let mut text = field_errors(&errors.0).replace("That launch", "That scan");
            if errors.field("repo").is_some() && project.is_none() {
                text.push_str("\nThis channel has no project: pass `repo`, or a server manager can run `/project setup`.");
            }
            say_ephemeral(ctx, text).await?;
            return Ok(());
        }
    };
    let tool = data.catalog.tool(&request.tool).expect("validated").clone();
    let origin = launch_origin(
        &ctx.author().name,
        user,
        ctx.guild_id(),
        channel,
        project.as_ref(),
    );
    let summary = scan_summary(&request, &tool, &origin.launched_by);
    let prepared = match data.launcher.prepare(request, &origin).await {
        Ok(prepared) => prepared,
        Err(LaunchError::Invalid(message)) => {
            say_ephemeral(ctx, inert(&message)).await?;
            return Ok(());
        }
        Err(LaunchError::Store(e)) => return Err(e.into()),
    };
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
        data.handles(),
        ctx.channel_id(),
        message.id,
        prepared,
        ctx.author().id,
    )
    .await?;
    Ok(())
}

/// Earlier scans started in this channel, newest first.
#[poise::command(slash_command, rename = "history")]
async fn scan_history(ctx: Context<'_>) -> Result<(), Error> {
    let store = &ctx.data().store;
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

fn status_word(status: IssueSessionStatus) -> &'static str {
    match status {
        IssueSessionStatus::Running => "⏳ running",
        IssueSessionStatus::Completed => "✅ completed",
        IssueSessionStatus::Failed => "❌ failed",
        IssueSessionStatus::Stopped => "🛑 stopped",
    }
}

/// What a scan's component does, from its custom id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanAction {
    /// Show page n (from 0) of the list.
    Page(IssueSessionId, usize),
    /// Issues chosen in the select menu.
    Pick(IssueSessionId),
    /// File the chosen issues on GitHub.
    File(IssueSessionId, Vec<u32>),
    /// Launch a fix for each chosen issue.
    Fix(IssueSessionId, Vec<u32>),
    /// Fix the chosen issues one after another on one branch (a work chain).
    Chain(IssueSessionId, Vec<u32>),
}

fn scan_id(action: &str, session: IssueSessionId, rest: &str) -> String {
    format!("cc:scan:{action}:{session}:{rest}")
}

/// Chosen positions (1–100) as a bit set in hexadecimal: short enough for a custom id.
pub fn encode_positions(positions: &[u32]) -> String {
    let mut bits: u128 = 0;
    for p in positions {
        if (1..=MAX_MAX_ISSUES).contains(p) {
            bits |= 1u128 << (p - 1);
        }
    }
    format!("{bits:x}")
}

pub fn decode_positions(text: &str) -> Option<Vec<u32>> {
    let bits = u128::from_str_radix(text, 16).ok()?;
    Some(
        (1..=MAX_MAX_ISSUES)
            .filter(|p| bits & (1u128 << (p - 1)) != 0)
            .collect(),
    )
}

pub fn parse_scan_id(custom_id: &str) -> Option<ScanAction> {
    let rest = custom_id.strip_prefix("cc:scan:")?;
    let mut parts = rest.splitn(3, ':');
    let action = parts.next()?;
    let session: IssueSessionId = parts.next()?.parse().ok()?;
    let arg = parts.next()?;
    match action {
        "page" => Some(ScanAction::Page(session, arg.parse().ok()?)),
        "pick" => Some(ScanAction::Pick(session)),
        "gh" => Some(ScanAction::File(session, decode_positions(arg)?)),
        "fix" => Some(ScanAction::Fix(session, decode_positions(arg)?)),
        "chain" => Some(ScanAction::Chain(session, decode_positions(arg)?)),
        _ => None,
    }
}

fn pages(issues: usize) -> usize {
    issues.div_ceil(PAGE_SIZE).max(1)
}

/// The result message of a scan: the outcome, the counts, and one page of issues (with the
/// select menu and paging buttons), or what went wrong. The second value is a file to attach (the
/// unusable answer of a failed scan).
pub fn result_page(
    session: &IssueSession,
    issues: &[IssueRecord],
    sandbox: Option<&SandboxRecord>,
    page: usize,
    mention: Option<&str>,
) -> (String, Vec<CreateActionRow>, Option<String>) {
    let mut text = String::new();
    if let Some(mention) = mention {
        let _ = write!(text, "{mention} ");
    }
    let _ = write!(
        text,
        "**{} scan** · session `{}` · {}",
        status_word(session.status),
        session.id.short(),
        inert(&session.repo)
    );
    if let Some(focus) = &session.focus {
        let _ = write!(text, " · focus: {}", inert(&cut(focus, 100)));
    }
    text.push('\n');
    let mut usage = Vec::new();
    if let Some(s) = sandbox {
        if let Some(cost) = s.cost_usd {
            usage.push(format!("${cost:.4}"));
        }
        if let Some(ms) = s.duration_ms {
            usage.push(format!("{:.1}s", ms as f64 / 1000.0));
        }
    }
    let usage = usage.join(" · ");
    if session.status != IssueSessionStatus::Completed {
        if !usage.is_empty() {
            let _ = writeln!(text, "{usage}");
        }
        if let Some(error) = &session.error {
            let _ = writeln!(text, "{}", inert(&cut(error, 900)));
        }
        let attachment = session.raw_output.clone();
        if attachment.is_some() {
            text.push_str("*(the agent's answer, as given, is attached)*\n");
        }
        return (cut(text.trim_end(), MAX_CONTENT), Vec::new(), attachment);
    }
    if issues.is_empty() {
        let _ = writeln!(
            text,
            "Nothing found: the scan reported no issues{}.{}",
            if session.focus.is_some() {
                " for this focus"
            } else {
                ""
            },
            if usage.is_empty() {
                String::new()
            } else {
                format!(" ({usage})")
            }
        );
        return (cut(text.trim_end(), MAX_CONTENT), Vec::new(), None);
    }
    let total_pages = pages(issues.len());
    let page = page.min(total_pages - 1);
    let _ = writeln!(
        text,
        "{} issue{}: {}{}",
        issues.len(),
        if issues.len() == 1 { "" } else { "s" },
        severity_counts(issues.iter().map(|i| &i.issue.severity)),
        if usage.is_empty() {
            String::new()
        } else {
            format!(" · {usage}")
        }
    );
    let shown = &issues[page * PAGE_SIZE..((page + 1) * PAGE_SIZE).min(issues.len())];
    let _ = writeln!(
        text,
        "**Issues {}–{} of {}** (page {}/{total_pages})",
        page * PAGE_SIZE + 1,
        page * PAGE_SIZE + shown.len(),
        issues.len(),
        page + 1
    );
    // Every entry of the page fits: each gets an equal share of what the header leaves.
    let budget = (MAX_CONTENT - 20).saturating_sub(text.chars().count()) / shown.len().max(1);
    for record in shown {
        let i = &record.issue;
        let mut entry = format!(
            "`{}` {} **{}** · {} — {}",
            record.position,
            i.severity.emoji(),
            i.severity,
            inert(&cut(&i.category, 30)),
            inert(&cut(&i.title, 110))
        );
        let files: Vec<String> = i.files.iter().take(2).map(|f| f.to_string()).collect();
        let mut details = Vec::new();
        if let Some(number) = record.github_issue_number {
            details.push(format!("GitHub #{number}"));
        }
        details.push(format!("effort {}", inert(&cut(&i.effort, 20))));
        if !files.is_empty() {
            details.push(format!(
                "`{}`",
                cut(&files.join(", "), 70).replace('`', "'")
            ));
        }
        let _ = write!(entry, "\n\u{2003}{}", details.join(" · "));
        let _ = writeln!(text, "{}", cut(&entry, budget));
    }
    let options = shown
        .iter()
        .map(|record| {
            CreateSelectMenuOption::new(
                cut(&format!("{}. {}", record.position, record.issue.title), 100),
                record.position.to_string(),
            )
            .description(cut(
                &format!("{} · {}", record.issue.severity, record.issue.category),
                100,
            ))
        })
        .collect::<Vec<_>>();
    let count = options.len() as u8;
    let select = CreateSelectMenu::new(
        scan_id("pick", session.id, &page.to_string()),
        CreateSelectMenuKind::String { options },
    )
    .placeholder("Choose issues to file on GitHub or fix…")
    .min_values(1)
    .max_values(count);
    let previous = CreateButton::new(scan_id(
        "page",
        session.id,
        &page.saturating_sub(1).to_string(),
    ))
    .label("◀ Previous")
    .style(ButtonStyle::Secondary)
    .disabled(page == 0);
    let next = CreateButton::new(scan_id("page", session.id, &(page + 1).to_string()))
        .label("Next ▶")
        .style(ButtonStyle::Secondary)
        .disabled(page + 1 >= total_pages);
    let mut rows = vec![CreateActionRow::SelectMenu(select)];
    if total_pages > 1 {
        rows.push(CreateActionRow::Buttons(vec![previous, next]));
    }
    (cut(text.trim_end(), MAX_CONTENT), rows, None)
}

/// Loads what a scan's result message shows.
async fn load(
    store: &Store,
    id: IssueSessionId,
) -> anyhow::Result<Option<(IssueSession, Vec<IssueRecord>, Option<SandboxRecord>)>> {
    let Some(session) = store.get_issue_session(id).await? else {
        return Ok(None);
    };
    let issues = store.issues(id).await?;
    let sandbox = match session.sandbox_id {
        Some(s) => store.get_sandbox(s).await?,
        None => None,
    };
    Ok(Some((session, issues, sandbox)))
}

/// Posts a finished scan's result in its thread, pinging the requester once.
pub async fn post_result(
    http: &Http,
    store: &Store,
    thread: ChannelId,
    record: &SandboxRecord,
    requester: Option<UserId>,
) -> anyhow::Result<()> {
    let Some(id) = record
        .issue_session_id
        .as_deref()
        .and_then(|s| s.parse::<IssueSessionId>().ok())
    else {
        anyhow::bail!("sandbox {} has no issue session", record.id);
    };
    let Some((session, issues, sandbox)) = load(store, id).await? else {
        anyhow::bail!("issue session {id} is gone");
    };
    let mention = requester.map(|u| u.mention().to_string());
    let (text, rows, attachment) =
        result_page(&session, &issues, sandbox.as_ref(), 0, mention.as_deref());
    let mut allowed = CreateAllowedMentions::new();
    if let Some(user) = requester {
        allowed = allowed.users([user]);
    }
    let mut post = CreateMessage::new()
        .content(text)
        .allowed_mentions(allowed)
        .components(rows);
    if let Some(raw) = attachment {
        post = post.add_file(CreateAttachment::bytes(
            raw.into_bytes(),
            format!("scan-answer-{}.md", id.short()),
        ));
    }
    let message = thread.send_message(http, post).await?;
    store
        .set_issue_session_discord(id, DiscordId(thread.get()), DiscordId(message.id.get()))
        .await?;
    Ok(())
}

/// A press on a scan's select menu or buttons.
pub async fn on_component(
    ctx: &serenity::Context,
    press: &ComponentInteraction,
    data: &Data,
    action: ScanAction,
) -> Result<(), Error> {
    let session_id = match &action {
        ScanAction::Page(id, _)
        | ScanAction::Pick(id)
        | ScanAction::File(id, _)
        | ScanAction::Fix(id, _)
        | ScanAction::Chain(id, _) => *id,
    };
    let Some((session, issues, sandbox)) = load(&data.store, session_id).await? else {
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
    let may_act = session.discord_user_id == Some(DiscordId(press.user.id.get()))
        || press
            .member
            .as_ref()
            .and_then(|m| m.permissions)
            .is_some_and(|p| p.manage_guild());
    match action {
        ScanAction::Page(_, page) => {
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
            let bits = encode_positions(&positions);
            let buttons = vec![
                CreateButton::new(scan_id("gh", session.id, &bits))
                    .label("Create GitHub issues")
                    .style(ButtonStyle::Primary),
                CreateButton::new(scan_id("fix", session.id, &bits))
                    .label(if chosen.len() == 1 {
                        "Launch fix".to_string()
                    } else {
                        format!("Launch {} fixes", chosen.len())
                    })
                    .style(ButtonStyle::Success),
                CreateButton::new(scan_id("chain", session.id, &bits))
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
        ScanAction::File(_, positions) => {
            if !may_act {
                press.create_response(&ctx.http, ephemeral("Only the person who started this scan, or a server manager, can file its issues.".into())).await?;
                return Ok(());
            }
            // Filing calls GitHub once or twice per issue: acknowledge first.
            press.defer_ephemeral(&ctx.http).await?;
            let text = match data.launcher.file_issues(&session, &positions).await {
                Err(why) => format!(
                    "No GitHub issues filed: {}",
                    inert(&data.launcher.redact(&why))
                ),
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
        ScanAction::Chain(_, positions) => {
            if !may_act {
                press.create_response(&ctx.http, ephemeral("Only the person who started this scan, or a server manager, can fix its issues.".into())).await?;
                return Ok(());
            }
            if let Some(refusal) = running_cap_refusal(data, DiscordId(press.user.id.get())).await?
            {
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
        ScanAction::Fix(_, positions) => {
            if !may_act {
                press.create_response(&ctx.http, ephemeral("Only the person who started this scan, or a server manager, can launch fixes from it.".into())).await?;
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
            let running = data.store.unfinished_for_user(user).await?;
            let cap = i64::from(data.config.max_running_per_user);
            if running + chosen.len() as i64 > cap {
                let text = running_cap_refusal(data, user).await?.unwrap_or_else(|| {
                    format!(
                        "{} fixes would take you past the limit of {cap} running sandboxes (you have {running}). Choose fewer, or wait for one to finish.",
                        chosen.len()
                    )
                });
                press.create_response(&ctx.http, ephemeral(text)).await?;
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
        .store
        .project_for_channel(DiscordId(channel.get()))
        .await?;
    let origin = LaunchOrigin {
        launched_by: press.user.name.clone(),
        discord: Some(DiscordOrigin {
            user_id: DiscordId(press.user.id.get()),
            guild_id: press.guild_id.map(|g| DiscordId(g.get())),
            channel_id: DiscordId(channel.get()),
        }),
        project_id: project.map(|p| p.id).or(session.project_id),
        issue_session: Some(session.id),
        workflow: None,
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
        let request = match input.validate(&data.catalog, data.config.allow_local_repos) {
            Ok(request) => request,
            Err(errors) => {
                lines.push(format!("{label}: {}", inert(&errors.to_string())));
                continue;
            }
        };
        let tool = data.catalog.tool(&request.tool).expect("validated").clone();
        let summary = super::render::launch_summary(&request, &tool, &origin.launched_by);
        let prepared = match data.launcher.prepare(request, &origin).await {
            Ok(prepared) => prepared,
            Err(LaunchError::Invalid(message)) => {
                lines.push(format!("{label}: {}", inert(&message)));
                continue;
            }
            Err(LaunchError::Store(e)) => return Err(e.into()),
        };
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
            data.handles(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_long_issues_keeps_every_entry_within_discords_limit() {
        use crate::pipeline::scan::{FileRange, ScannedIssue, Severity};
        let long = "x".repeat(300);
        let issues: Vec<IssueRecord> = (1..=10)
            .map(|n| IssueRecord {
                id: n,
                position: n as u32,
                issue: ScannedIssue {
                    title: long.clone(),
                    description: long.clone(),
                    severity: Severity::High,
                    category: long.clone(),
                    files: vec![FileRange {
                        path: long.clone(),
                        start_line: Some(1),
                        end_line: Some(2),
                    }],
                    evidence: String::new(),
                    suggested_fix: String::new(),
                    effort: long.clone(),
                },
                github_issue_number: Some(12345),
                github_issue_url: None,
            })
            .collect();
        let session = IssueSession {
            id: IssueSessionId::new(),
            project_id: None,
            repo: long.clone(),
            focus: Some(long.clone()),
            tool: "claude-code".into(),
            model: "m".into(),
            max_issues: 10,
            status: IssueSessionStatus::Completed,
            error: None,
            raw_output: None,
            launched_by: "alice".into(),
            discord_user_id: None,
            discord_channel_id: None,
            discord_thread_id: None,
            discord_message_id: None,
            sandbox_id: None,
            created_at: chrono::Utc::now(),
            finished_at: None,
        };
        let (text, _, _) = result_page(&session, &issues, None, 0, Some("<@1>"));
        assert!(text.chars().count() <= MAX_CONTENT);
        for n in 1..=10 {
            assert!(
                text.contains(&format!("`{n}` 🟧")),
                "entry {n} missing:\n{text}"
            );
        }
    }

    #[test]
    fn chosen_issues_survive_the_custom_id() {
        let session = IssueSessionId::new();
        let positions = vec![1, 7, 64, 99, 100];
        let id = scan_id("fix", session, &encode_positions(&positions));
        assert!(id.len() <= 100, "{id}");
        assert_eq!(
            parse_scan_id(&id),
            Some(ScanAction::Fix(session, positions))
        );
        assert_eq!(
            parse_scan_id(&scan_id("page", session, "5")),
            Some(ScanAction::Page(session, 5))
        );
        assert_eq!(parse_scan_id("cc:scan:page:nope:1"), None);
        assert_eq!(parse_scan_id("cc:stop:x"), None);
    }
}
