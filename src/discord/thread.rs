//! A launch's thread (a scan's too): the status message kept up to date as phases and agent
//! activity come in, then the result with its buttons; and after a restart, the word for threads
//! whose launch a crash ended.

use std::sync::Arc;

use poise::serenity_prelude as serenity;
use serenity::{
    AutoArchiveDuration, ButtonStyle, ChannelId, CreateActionRow, CreateAllowedMentions,
    CreateAttachment, CreateButton, CreateMessage, CreateThread, Http, Mentionable, MessageId,
    UserId,
};

use super::custom_id::{CustomId, SandboxAction};
use super::render::{self, StatusView};
use super::status_editor::{self, LiveView};
use super::{reply, Data};
use crate::ids::{DiscordId, SandboxId};
use crate::pipeline::{recover, Ops, Prepared, ProgressEvent};
use crate::sandbox::SandboxProvider;
use crate::store::SandboxRecord;

impl LiveView for StatusView {
    type Event = ProgressEvent;

    fn apply(&mut self, event: ProgressEvent) {
        StatusView::apply(self, event)
    }

    fn render(&self) -> String {
        render::status_message(self)
    }
}

fn button(action: SandboxAction, id: SandboxId) -> CreateButton {
    CreateButton::new(CustomId::Sandbox(action, id).encode())
}

fn stop_row(id: SandboxId) -> CreateActionRow {
    CreateActionRow::Buttons(vec![button(SandboxAction::Stop, id)
        .label("Stop")
        .style(ButtonStyle::Danger)])
}

/// Starts the thread on `message`, posts the status message, and runs the launch in the
/// background; the thread gets the result when it ends.
pub async fn follow(
    http: Arc<Http>,
    ops: Arc<Ops>,
    channel: ChannelId,
    message: MessageId,
    prepared: Prepared,
    requester: UserId,
) -> anyhow::Result<()> {
    let request = prepared.request();
    let title = match request.scan_task() {
        Some(task) => format!(
            "🔎 scan of {}{}",
            request.repo,
            task.focus
                .as_deref()
                .map(|f| format!(": {f}"))
                .unwrap_or_default()
        ),
        None => request.prompt.clone(),
    };
    let name = render::thread_name(prepared.id, &title);
    let thread = channel
        .create_thread_from_message(
            &http,
            message,
            CreateThread::new(name).auto_archive_duration(AutoArchiveDuration::OneDay),
        )
        .await?;
    run_in_thread(http, ops, thread.id, prepared, requester).await
}

/// Posts the status message in `thread` and runs the launch there (a follow-up stays in the thread
/// of the launch it continues).
pub async fn run_in_thread(
    http: Arc<Http>,
    ops: Arc<Ops>,
    thread: ChannelId,
    prepared: Prepared,
    requester: UserId,
) -> anyhow::Result<()> {
    let id = prepared.id;
    let status = thread
        .send_message(
            &http,
            CreateMessage::new()
                .content("⏳ starting…")
                .components(vec![stop_row(id)])
                .allowed_mentions(CreateAllowedMentions::new()),
        )
        .await?;
    ops.store()
        .set_discord_thread(id, DiscordId(thread.get()), DiscordId(status.id.get()))
        .await?;
    let tracked = ops.running().sandbox(id);
    tokio::spawn(async move {
        let (queue, editor) = status_editor::start(
            http.clone(),
            thread,
            status.id,
            StatusView::default(),
            vec![stop_row(id)],
        );
        let outcome = ops.launcher().run(prepared, &queue, tracked.token()).await;
        drop(queue);
        let _ = editor.await;
        drop(tracked);
        let record = match outcome {
            Ok(record) => record,
            Err(e) => {
                let text = reply::failed_on_our_side(&e, "a launch's run");
                let post = CreateMessage::new()
                    .content(format!("❌ {text}"))
                    .allowed_mentions(CreateAllowedMentions::new());
                if let Err(e) = thread.send_message(&http, post).await {
                    tracing::warn!(sandbox = %id, error = %e, "could not post the failure");
                }
                return;
            }
        };
        if record.request.scan_task().is_some() {
            if let Err(e) =
                super::scan::post_result(&http, ops.store(), thread, &record, Some(requester)).await
            {
                tracing::warn!(sandbox = %id, error = %format!("{e:#}"), "could not post the scan's result");
            }
            return;
        }
        let (text, attachment) =
            render::result_message(&record, Some(&requester.mention().to_string()));
        let mut post = CreateMessage::new()
            .content(text)
            .allowed_mentions(CreateAllowedMentions::new().users([requester]))
            .components(vec![CreateActionRow::Buttons(result_buttons(&record))]);
        if let Some(summary) = attachment {
            post = post.add_file(CreateAttachment::bytes(
                summary.into_bytes(),
                format!("result-{}.md", id.short()),
            ));
        }
        match thread.send_message(&http, post).await {
            Ok(message) => {
                let _ = ops
                    .store()
                    .set_discord_result_message(id, DiscordId(message.id.get()))
                    .await;
            }
            Err(e) => tracing::warn!(sandbox = %id, error = %e, "could not post the result"),
        }
    });
    Ok(())
}

/// Retry always; Open PR when a GitHub launch pushed commits but has no pull request; Follow up
/// when the branch was pushed.
pub fn result_buttons(record: &SandboxRecord) -> Vec<CreateButton> {
    let mut buttons = vec![button(SandboxAction::Retry, record.id)
        .label("Retry")
        .style(ButtonStyle::Secondary)];
    let github = matches!(record.request.repo, crate::catalog::RepoRef::Github { .. });
    if github
        && record.pr_url.is_none()
        && record.pushed == Some(true)
        && !record.commits.is_empty()
    {
        buttons.push(
            button(SandboxAction::OpenPr, record.id)
                .label("Open PR")
                .style(ButtonStyle::Success),
        );
    }
    // A follow-up continues on the branch, so there must be one on the remote.
    if record.pushed == Some(true) {
        buttons.push(
            button(SandboxAction::FollowUp, record.id)
                .label("Follow up")
                .style(ButtonStyle::Primary),
        );
    }
    buttons
}

/// After a restart: unfinished sandboxes nobody runs any more are ended, and their threads told.
pub async fn announce_recovered(
    ctx: &serenity::Context,
    data: &Data,
    provider: &dyn SandboxProvider,
) {
    let store = data.ops.store();
    let ended = match recover(store, provider).await {
        Ok(ended) => ended,
        Err(e) => {
            tracing::warn!(error = %e, "recovery failed");
            return;
        }
    };
    for id in ended {
        let Ok(Some(record)) = store.get_sandbox(id).await else {
            continue;
        };
        let Some(thread_id) = record.discord.thread_id else {
            continue;
        };
        let requester = record.discord.user_id.map(|u| UserId::new(u.0));
        let thread = ChannelId::new(thread_id.0);
        if record.request.scan_task().is_some() {
            if let Err(e) =
                super::scan::post_result(&ctx.http, store, thread, &record, requester).await
            {
                tracing::warn!(sandbox = %id, error = %format!("{e:#}"), "could not tell the scan's thread about the restart");
            }
            continue;
        }
        let mention = requester.map(|u| u.mention().to_string());
        let (text, _) = render::result_message(&record, mention.as_deref());
        let mut allowed = CreateAllowedMentions::new();
        if let Some(user) = requester {
            allowed = allowed.users([user]);
        }
        let post = CreateMessage::new().content(text).allowed_mentions(allowed);
        if let Err(e) = thread.send_message(&ctx.http, post).await {
            tracing::warn!(sandbox = %id, error = %e, "could not tell the thread about the restart");
        }
    }
}
