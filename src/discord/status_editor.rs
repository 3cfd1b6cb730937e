//! One status message kept up to date from a stream of events: at most one edit per
//! `EDIT_INTERVAL` however fast the events come (the latest state wins), and a last edit without
//! the buttons once the stream ends. Launch, scan and workflow threads all show progress so.

use std::sync::Arc;
use std::time::Duration;

use poise::serenity_prelude as serenity;
use serenity::{ChannelId, CreateActionRow, EditMessage, Http, MessageId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::ids::SandboxId;
use crate::pipeline::{ProgressEvent, ProgressSink, WorkflowEvent, WorkflowSink};

/// At most one status edit per this long per message.
pub const EDIT_INTERVAL: Duration = Duration::from_millis(1500);

/// What a status message shows, kept up to date from events.
pub trait LiveView: Send + 'static {
    type Event: Send + 'static;
    fn apply(&mut self, event: Self::Event);
    fn render(&self) -> String;
}

/// Hands events to the editor: the launcher and the runner never wait on Discord.
pub struct Queue<E>(mpsc::UnboundedSender<E>);

impl ProgressSink for Queue<ProgressEvent> {
    fn emit(&self, _: SandboxId, event: &ProgressEvent) {
        let _ = self.0.send(event.clone());
    }
}

impl WorkflowSink for Queue<WorkflowEvent> {
    fn emit(&self, event: &WorkflowEvent) {
        let _ = self.0.send(event.clone());
    }
}

/// Starts editing `message` in `channel` from what the returned queue receives, with `buttons`
/// under it while it runs. The task ends after the last edit, once the queue is dropped.
pub fn start<V: LiveView>(
    http: Arc<Http>,
    channel: ChannelId,
    message: MessageId,
    view: V,
    buttons: Vec<CreateActionRow>,
) -> (Queue<V::Event>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let editor = tokio::spawn(edit(http, channel, message, view, buttons, rx));
    (Queue(tx), editor)
}

async fn edit<V: LiveView>(
    http: Arc<Http>,
    channel: ChannelId,
    message: MessageId,
    mut view: V,
    buttons: Vec<CreateActionRow>,
    mut rx: mpsc::UnboundedReceiver<V::Event>,
) {
    let put = |content: String, components: Vec<CreateActionRow>| {
        let http = http.clone();
        async move {
            let edit = EditMessage::new().content(content).components(components);
            if let Err(e) = channel.edit_message(&http, message, edit).await {
                tracing::warn!(%channel, %message, error = %e, "could not edit the status message");
            }
        }
    };
    let mut dirty = false;
    let mut last_edit: Option<Instant> = None;
    loop {
        let due = last_edit
            .map(|t| t + EDIT_INTERVAL)
            .unwrap_or_else(Instant::now);
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => {
                    view.apply(event);
                    dirty = true;
                }
                None => break,
            },
            _ = tokio::time::sleep_until(due), if dirty => {
                put(view.render(), buttons.clone()).await;
                last_edit = Some(Instant::now());
                dirty = false;
            }
        }
    }
    if let Some(at) = last_edit {
        tokio::time::sleep_until(at + EDIT_INTERVAL).await;
    }
    put(view.render(), Vec::new()).await;
}
