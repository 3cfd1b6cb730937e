//! A workflow job's thread: the timeline message kept up to date while the job runs here, its
//! Stop button, the result when it ends; and after a restart, the jobs nobody drives any more
//! resumed in their threads.

use std::sync::Arc;

use poise::serenity_prelude as serenity;
use serenity::{
    ButtonStyle, ChannelId, CreateActionRow, CreateAllowedMentions, CreateButton, CreateMessage,
    Http, Mentionable, UserId,
};

use super::timeline::{self, Timeline};
use crate::discord::custom_id::CustomId;
use crate::discord::render::{cut, inert, MAX_CONTENT};
use crate::discord::reply::{self, ephemeral};
use crate::discord::{access, status_editor, Data, Error};
use crate::ids::{DiscordId, JobId};
use crate::pipeline::ops::JobStop;
use crate::pipeline::Ops;
use crate::store::Work;

fn stop_row(job: JobId) -> CreateActionRow {
    CreateActionRow::Buttons(vec![CreateButton::new(CustomId::StopJob(job).encode())
        .label("Stop")
        .style(ButtonStyle::Danger)])
}

/// Posts the timeline message in `thread` and drives the job there; the thread gets the result.
pub async fn follow(
    http: Arc<Http>,
    ops: &Arc<Ops>,
    thread: ChannelId,
    job: JobId,
    requester: Option<UserId>,
    resumed: bool,
) -> Result<(), Error> {
    let first = if resumed {
        "↻ CodeCourier restarted: resuming at the interrupted step…"
    } else {
        "⏳ starting…"
    };
    let status = thread
        .send_message(
            &http,
            CreateMessage::new()
                .content(first)
                .components(vec![stop_row(job)])
                .allowed_mentions(CreateAllowedMentions::new()),
        )
        .await?;
    let store = ops.store();
    let (thread_id, message_id) = (DiscordId(thread.get()), DiscordId(status.id.get()));
    store.set_job_discord(job, thread_id, message_id).await?;
    // The timeline's heading, and a chain's issues.
    let (title, items): (String, Vec<String>) = match store.get_job(job).await? {
        Some(record) => match &record.work {
            Work::Run(_) => (
                format!(
                    "🔁 **Workflow `{}`** · run `{}`",
                    inert(&record.workflow.name),
                    job.short()
                ),
                Vec::new(),
            ),
            Work::Chain(chain) => (
                format!(
                    "⛓ **Work chain** · `{}` · workflow `{}`",
                    job.short(),
                    inert(&record.workflow.name)
                ),
                chain.items.iter().map(|t| t.title.clone()).collect(),
            ),
        },
        None => Default::default(),
    };
    let tool_names = ops
        .catalog()
        .tools
        .iter()
        .map(|t| (t.id.clone(), t.name.clone()))
        .collect();
    let view = Timeline::new(title, items, tool_names);
    let tracked = ops.running().job(job);
    let ops = ops.clone();
    tokio::spawn(async move {
        let (queue, editor) =
            status_editor::start(http.clone(), thread, status.id, view, vec![stop_row(job)]);
        let text = ops
            .runner()
            .drive(job, &queue, tracked.token())
            .await
            .map(|record| timeline::result(&record));
        drop(queue);
        let _ = editor.await;
        drop(tracked);
        let text = match text {
            Ok(text) => text,
            Err(e) => format!(
                "❌ {}",
                reply::failed_on_our_side(&e, &format!("driving {job}"))
            ),
        };
        let mut allowed = CreateAllowedMentions::new();
        if let Some(user) = requester {
            allowed = allowed.users([user]);
        }
        let content = match requester {
            Some(user) => format!("{} {text}", user.mention()),
            None => text,
        };
        if let Err(e) = thread
            .send_message(
                &http,
                CreateMessage::new()
                    .content(cut(&content, MAX_CONTENT))
                    .allowed_mentions(allowed),
            )
            .await
        {
            tracing::warn!(error = %e, "could not post the workflow's result");
        }
    });
    Ok(())
}

/// A press on a run's or chain's Stop button.
pub async fn on_stop(
    ctx: &serenity::Context,
    press: &serenity::ComponentInteraction,
    data: &Data,
    job: JobId,
) -> Result<(), Error> {
    let meta = data.ops.job_state(job).await?.map(|s| s.meta);
    let (owner, guild) = meta
        .map(|m| (m.discord_user_id, m.discord_guild_id))
        .unwrap_or_default();
    let text = if !access::Actor::of_press(press).owns_or_manages(owner, guild) {
        "Only the person who started this, or a server manager, can stop it."
    } else {
        let by = format!("{} from Discord", press.user.name);
        match data.ops.stop_job(job, &by).await? {
            JobStop::AlreadyEnded => "This has already ended.",
            JobStop::Stopping => "Stopping: the current step's sandbox ends, then the run.",
            JobStop::Stopped => "Stopped.",
        }
    };
    press.create_response(&ctx.http, ephemeral(text)).await?;
    Ok(())
}

/// Runs and chains from Discord that nobody drives any more (CodeCourier restarted, or another
/// instance stopped) go on in their threads, at the interrupted step.
pub async fn resume_all(http: Arc<Http>, ops: &Arc<Ops>) {
    let jobs = match ops.runner().resumable().await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for workflow runs to resume");
            return;
        }
    };
    for record in &jobs {
        let Some(thread) = record.meta.discord_thread_id else {
            continue;
        };
        let job = record.id();
        let requester = record.meta.discord_user_id.map(|u| UserId::new(u.0));
        let thread = ChannelId::new(thread.0);
        if let Err(e) = follow(http.clone(), ops, thread, job, requester, true).await {
            tracing::warn!(%job, error = %e, "could not resume");
        }
    }
}

/// Looks for runs nobody drives once a minute (another instance may have stopped), for as long as
/// the bot runs.
pub fn keep_resuming(http: Arc<Http>, ops: Arc<Ops>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            resume_all(http.clone(), &ops).await;
        }
    });
}
