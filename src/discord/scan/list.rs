//! A scan's result message: the outcome and counts, and the issues ten to a page within Discord's
//! limits, with the menu to choose some and the buttons to page; posted in the scan's thread.

use std::fmt::Write as _;

use poise::serenity_prelude as serenity;
use serenity::{
    ButtonStyle, ChannelId, CreateActionRow, CreateAllowedMentions, CreateAttachment, CreateButton,
    CreateMessage, CreateSelectMenu, CreateSelectMenuKind, CreateSelectMenuOption, Http,
    Mentionable, UserId,
};

use crate::discord::custom_id::{CustomId, ScanAction};
use crate::discord::render::{cut, inert, MAX_CONTENT};
use crate::ids::{DiscordId, IssueSessionId};
use crate::model::scan::IssueSessionStatus;
use crate::pipeline::scan::severity_counts;
use crate::store::{IssueRecord, IssueSession, SandboxRecord, Store};

/// Issues per page: ten compact entries stay well inside 2,000 characters.
pub const PAGE_SIZE: usize = 10;

pub fn status_word(status: IssueSessionStatus) -> &'static str {
    match status {
        IssueSessionStatus::Running => "⏳ running",
        IssueSessionStatus::Completed => "✅ completed",
        IssueSessionStatus::Failed => "❌ failed",
        IssueSessionStatus::Stopped => "🛑 stopped",
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
        if let Some(cost) = s.shown_usage().0 {
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
        CustomId::Scan(session.id, ScanAction::Pick(page)).encode(),
        CreateSelectMenuKind::String { options },
    )
    .placeholder("Choose issues to file on GitHub or fix…")
    .min_values(1)
    .max_values(count);
    let previous = CreateButton::new(
        CustomId::Scan(session.id, ScanAction::Page(page.saturating_sub(1))).encode(),
    )
    .label("◀ Previous")
    .style(ButtonStyle::Secondary)
    .disabled(page == 0);
    let next = CreateButton::new(CustomId::Scan(session.id, ScanAction::Page(page + 1)).encode())
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
pub async fn load(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_long_issues_keeps_every_entry_within_discords_limit() {
        use crate::model::scan::{FileRange, ScannedIssue, Severity};
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
}
