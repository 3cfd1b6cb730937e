//! A launch's thread: the status message edited in place as phases and agent activity come in
//! (at most one edit per ~1.5 s, however fast the agent talks), then the result message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poise::serenity_prelude as serenity;
use serenity::{
    AutoArchiveDuration, ButtonStyle, ChannelId, CreateActionRow, CreateAllowedMentions,
    CreateAttachment, CreateButton, CreateMessage, CreateThread, EditMessage, Http, Mentionable,
    MessageId, UserId,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::render::{self, button_id, ButtonAction, StatusView};
use crate::ids::{DiscordId, SandboxId};
use crate::pipeline::{Launcher, Prepared, ProgressEvent, ProgressSink};
use crate::store::Store;

/// At most one status edit per this long per thread.
pub const EDIT_INTERVAL: Duration = Duration::from_millis(1500);

/// What a launch in a thread needs from the bot.
#[derive(Clone)]
pub struct Handles {
    pub launcher: Arc<Launcher>,
    pub store: Store,
    pub running: Arc<Mutex<HashMap<SandboxId, CancellationToken>>>,
}

/// Queues progress for the thread's updater: the launcher never waits on Discord.
struct ThreadSink(mpsc::UnboundedSender<ProgressEvent>);

impl ProgressSink for ThreadSink {
    fn emit(&self, _: SandboxId, event: &ProgressEvent) {
        let _ = self.0.send(event.clone());
    }
}

fn stop_row(id: SandboxId) -> CreateActionRow {
    CreateActionRow::Buttons(vec![CreateButton::new(button_id(ButtonAction::Stop, id))
        .label("Stop")
        .style(ButtonStyle::Danger)])
}

/// Starts the thread on `message`, posts the status message, and runs the launch in the
/// background; the thread gets the result when it ends.
pub async fn follow(
    http: Arc<Http>,
    handles: Handles,
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
    run_in_thread(http, handles, thread.id, prepared, requester).await
}

/// Posts the status message in `thread` and runs the launch there (a follow-up stays in the thread
/// of the launch it continues).
pub async fn run_in_thread(
    http: Arc<Http>,
    handles: Handles,
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
    handles
        .store
        .set_discord_thread(id, DiscordId(thread.get()), DiscordId(status.id.get()))
        .await?;

    let token = CancellationToken::new();
    handles
        .running
        .lock()
        .expect("lock")
        .insert(id, token.clone());
    tokio::spawn(async move {
        let (tx, rx) = mpsc::unbounded_channel();
        let updater = tokio::spawn(update_status(http.clone(), thread, status.id, rx, id));
        let outcome = handles.launcher.run(prepared, &ThreadSink(tx), token).await;
        let _ = updater.await;
        handles.running.lock().expect("lock").remove(&id);
        let record = match outcome {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(sandbox = %id, error = %format!("{e:#}"), "launch ended without a record");
                return;
            }
        };
        if record.request.scan_task().is_some() {
            if let Err(e) =
                super::scan::post_result(&http, &handles.store, thread, &record, Some(requester))
                    .await
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
                let _ = handles
                    .store
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
pub fn result_buttons(record: &crate::store::SandboxRecord) -> Vec<CreateButton> {
    let mut buttons = vec![CreateButton::new(button_id(ButtonAction::Retry, record.id))
        .label("Retry")
        .style(ButtonStyle::Secondary)];
    let github = matches!(record.request.repo, crate::catalog::RepoRef::Github { .. });
    if github
        && record.pr_url.is_none()
        && record.pushed == Some(true)
        && !record.commits.is_empty()
    {
        buttons.push(
            CreateButton::new(button_id(ButtonAction::OpenPr, record.id))
                .label("Open PR")
                .style(ButtonStyle::Success),
        );
    }
    // A follow-up continues on the branch, so there must be one on the remote.
    if record.pushed == Some(true) {
        buttons.push(
            CreateButton::new(button_id(ButtonAction::FollowUp, record.id))
                .label("Follow up")
                .style(ButtonStyle::Primary),
        );
    }
    buttons
}

fn apply(view: &mut StatusView, event: ProgressEvent) {
    match event {
        ProgressEvent::PhaseStarted { phase } => view.started(phase),
        ProgressEvent::PhaseFinished {
            phase,
            outcome,
            detail,
            duration_ms,
        } => view.finished(phase, outcome, duration_ms, detail),
        ProgressEvent::Status { status } => view.status = Some(status),
        ProgressEvent::Agent { event } => {
            if let Some(line) = event.activity() {
                view.activity = Some(line);
            }
        }
        ProgressEvent::Note { message } => view.activity = Some(format!("⏳ {message}")),
    }
}

/// Edits the status message as events arrive, no more than once per `EDIT_INTERVAL`, and once more
/// at the end (without the Stop button).
async fn update_status(
    http: Arc<Http>,
    thread: ChannelId,
    message: MessageId,
    mut rx: mpsc::UnboundedReceiver<ProgressEvent>,
    id: SandboxId,
) {
    let mut view = StatusView::default();
    let mut dirty = false;
    let mut last_edit: Option<Instant> = None;
    loop {
        let due = last_edit
            .map(|t| t + EDIT_INTERVAL)
            .unwrap_or_else(Instant::now);
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => {
                    apply(&mut view, event);
                    dirty = true;
                }
                None => break,
            },
            _ = tokio::time::sleep_until(due), if dirty => {
                let edit = EditMessage::new().content(render::status_message(&view)).components(vec![stop_row(id)]);
                if let Err(e) = thread.edit_message(&http, message, edit).await {
                    tracing::warn!(sandbox = %id, error = %e, "could not edit the status message");
                }
                last_edit = Some(Instant::now());
                dirty = false;
            }
        }
    }
    if let Some(at) = last_edit {
        tokio::time::sleep_until(at + EDIT_INTERVAL).await;
    }
    let edit = EditMessage::new()
        .content(render::status_message(&view))
        .components(Vec::new());
    if let Err(e) = thread.edit_message(&http, message, edit).await {
        tracing::warn!(sandbox = %id, error = %e, "could not edit the status message");
    }
}
