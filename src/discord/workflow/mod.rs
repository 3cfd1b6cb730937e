//! Workflow runs and work chains from chat: `/workflow run` and `/workflow chain`, and "Fix as a
//! chain" from a scan's list. Each checks who may start one, names the task through the pipeline,
//! records the job and follows it in a thread (`thread`, whose message is the `timeline`); the
//! definitions themselves are in `define`.

mod define;
mod thread;
mod timeline;

use std::fmt::Write as _;
use std::sync::Arc;

use poise::serenity_prelude as serenity;
use serenity::{
    AutoArchiveDuration, ChannelId, CreateAllowedMentions, CreateMessage, CreateThread, Http,
    MessageId,
};

use super::launch::origin;
use super::render::{self, cut, inert, MAX_CONTENT};
use super::reply::{self, say_ephemeral};
use super::{access, Context, Data, Error};
use crate::ids::{DiscordId, IssueSessionId, JobId};
use crate::model::workflow::WorkflowDef;
use crate::pipeline::ops::{TaskRef, TaskRefusal};
use crate::pipeline::{JobRequest, LaunchError, ProjectChoice};
use crate::store::{JobOwner, Project};
pub use define::on_create_submit;
use define::steps_summary;
pub use thread::{keep_resuming, on_stop, resume_all};

/// Run workflows: designer → optimizer → checker, each step in its own sandbox.
#[poise::command(
    slash_command,
    guild_only,
    subcommands(
        "workflow_run",
        "workflow_chain",
        "define::workflow_list",
        "define::workflow_show",
        "define::workflow_create"
    ),
    subcommand_required
)]
pub async fn workflow(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Run a workflow on a task, in a thread.
#[allow(clippy::too_many_arguments)]
#[poise::command(slash_command, rename = "run")]
async fn workflow_run(
    ctx: Context<'_>,
    #[description = "What to do (or give issue / github_issue)"] task: Option<String>,
    #[description = "Workflow name (default: default)"] workflow: Option<String>,
    #[description = "An issue from a scan: SESSION#N"] issue: Option<String>,
    #[description = "A GitHub issue number of the repository"] github_issue: Option<i64>,
    #[description = "owner/name or a GitHub URL (default: this channel's project)"] repo: Option<
        String,
    >,
    #[description = "Branch to start from (default: the repository's default branch)"]
    base_branch: Option<String>,
    #[description = "The most the whole run may spend, in dollars (default: the workflow's)"]
    budget_usd: Option<f64>,
) -> Result<(), Error> {
    let data = ctx.data();
    let Some(mut setting) = setting(ctx, repo, workflow.as_deref()).await? else {
        return Ok(());
    };
    if let Some(refusal) = setting.budget_refusal(ctx, budget_usd).await? {
        return say_ephemeral(ctx, refusal).await;
    }
    setting.definition.max_cost_usd = budget_usd.or(setting.definition.max_cost_usd);
    let github_issue = github_issue.and_then(|n| u64::try_from(n).ok());
    let named = match TaskRef::for_run(task.as_deref(), issue.as_deref(), github_issue) {
        Ok(named) => named,
        Err(TaskRefusal::Blank) => {
            let text = "Give the task: `task`, `issue` (SESSION#N from a scan) or `github_issue`.";
            return say_ephemeral(ctx, text).await;
        }
        Err(TaskRefusal::NotSessionIssue(issue)) => {
            let text = format!(
                "`issue` must be SESSION#N, like `1a2b3c4d#3`; got `{}`.",
                inert(&issue)
            );
            return say_ephemeral(ctx, text).await;
        }
    };
    let repo = &setting.repo;
    let task = match data.ops.run_task(&named, repo, Some(setting.channel)).await {
        Ok(task) => task,
        Err(e) => return refuse(ctx, e).await,
    };
    let launched_by = ctx.author().name.clone();
    let owner = setting.owner(ctx, &launched_by);
    let request = setting.request(data, base_branch.as_deref(), &owner);
    let id = match data.ops.runner().start_run(&request, task.clone()).await {
        Ok(id) => id,
        Err(e) => return refuse(ctx, e).await,
    };
    let summary = format!(
        "🔁 **Workflow `{}`** on {} · run `{}`\n{}\nstarted by {}\n> {}",
        inert(&setting.definition.name),
        inert(repo),
        id.short(),
        steps_summary(data.ops.catalog(), &setting.definition),
        inert(&launched_by),
        inert(&cut(&task.title, 300))
    );
    let name = format!("🔁 {} · {}", id.short(), task.title);
    announce(ctx, id, &summary, &name).await
}

/// Run a list of issues one after another on one branch (a work chain).
#[poise::command(slash_command, rename = "chain")]
async fn workflow_chain(
    ctx: Context<'_>,
    #[description = "The issues in order, separated by ; — text, or GitHub numbers like #12"]
    issues: String,
    #[description = "Workflow name (default: default)"] workflow: Option<String>,
    #[description = "Go on after an issue fails (default: stop there)"] continue_on_failure: Option<
        bool,
    >,
    #[description = "owner/name or a GitHub URL (default: this channel's project)"] repo: Option<
        String,
    >,
    #[description = "Branch to start from (default: the repository's default branch)"]
    base_branch: Option<String>,
    #[description = "The most the whole chain may spend, in dollars (default: the workflow's)"]
    budget_usd: Option<f64>,
) -> Result<(), Error> {
    let data = ctx.data();
    let Some(mut setting) = setting(ctx, repo, workflow.as_deref()).await? else {
        return Ok(());
    };
    if let Some(refusal) = setting.budget_refusal(ctx, budget_usd).await? {
        return say_ephemeral(ctx, refusal).await;
    }
    setting.definition.max_cost_usd = budget_usd.or(setting.definition.max_cost_usd);
    let repo = &setting.repo;
    let items = match data
        .ops
        .chain_tasks(&TaskRef::list(&issues), repo, Some(setting.channel))
        .await
    {
        Ok(items) => items,
        Err(e) => return refuse(ctx, e).await,
    };
    let launched_by = ctx.author().name.clone();
    let owner = setting.owner(ctx, &launched_by);
    let request = setting.request(data, base_branch.as_deref(), &owner);
    let titles: Vec<String> = items.iter().map(|t| t.title.clone()).collect();
    let id = match data
        .ops
        .runner()
        .start_chain(
            &request,
            items,
            continue_on_failure.unwrap_or(false),
            None,
            data.config.max_chain_items as usize,
        )
        .await
    {
        Ok(id) => id,
        Err(e) => return refuse(ctx, e).await,
    };
    let mut summary = format!(
        "⛓ **Work chain** on {} · chain `{}` · workflow `{}`\nstarted by {}\n",
        inert(repo),
        id.short(),
        inert(&setting.definition.name),
        inert(&launched_by)
    );
    for (i, t) in titles.iter().enumerate() {
        let _ = writeln!(summary, "{}. {}", i + 1, inert(&cut(t, 100)));
    }
    let name = format!("⛓ {} · {} issues", id.short(), titles.len());
    announce(ctx, id, &summary, &name).await
}

/// Where a chat command's run or chain starts: in this channel, with the channel's project.
struct Setting {
    channel: DiscordId,
    project: Option<Project>,
    repo: String,
    definition: WorkflowDef,
}

impl Setting {
    /// Why the person may not give the job this budget: above the workflow's own (else the
    /// project's or the deployment's default) only a manager may go.
    async fn budget_refusal(
        &self,
        ctx: Context<'_>,
        asked: Option<f64>,
    ) -> Result<Option<String>, Error> {
        let project = self
            .project
            .as_ref()
            .map_or(ProjectChoice::Nothing, |p| ProjectChoice::Project(p.id));
        if asked.is_none() {
            return Ok(None);
        }
        let cap = match self.definition.max_cost_usd {
            Some(usd) => Some(usd),
            None => access::default_budget(ctx.data(), &project).await?,
        };
        Ok(access::budget_refusal(
            &access::Actor::of_command(ctx),
            asked,
            cap,
        ))
    }

    /// Who starts the job, for its record.
    fn owner<'a>(&self, ctx: Context<'_>, launched_by: &'a str) -> JobOwner<'a> {
        let project_id = self.project.as_ref().map(|p| p.id);
        let origin = origin(
            launched_by,
            ctx.author().id,
            ctx.guild_id(),
            self.channel,
            project_id.map_or(ProjectChoice::Nothing, ProjectChoice::Project),
        );
        JobOwner {
            project_id,
            launched_by,
            discord: origin.discord,
        }
    }

    fn request<'a>(
        &'a self,
        data: &Data,
        base_branch: Option<&'a str>,
        owner: &'a JobOwner<'a>,
    ) -> JobRequest<'a> {
        JobRequest {
            workflow: &self.definition,
            repo: &self.repo,
            base_branch,
            env: &[],
            owner,
            allow_local: data.config.allow_local_repos,
        }
    }
}

/// The refusals and lookups `/workflow run` and `/workflow chain` share; `None` when the person
/// was told why not.
async fn setting(
    ctx: Context<'_>,
    repo: Option<String>,
    workflow: Option<&str>,
) -> Result<Option<Setting>, Error> {
    let data = ctx.data();
    if let Some(refusal) = access::command_launch_refusal(ctx) {
        say_ephemeral(ctx, refusal).await?;
        return Ok(None);
    }
    let channel = DiscordId(ctx.channel_id().get());
    let channel_project = data.ops.store().project_for_channel(channel).await?;
    let actor = access::Actor::of_command(ctx);
    let used = match access::repo_use(
        data,
        &actor,
        channel_project.as_ref(),
        repo.as_deref(),
        None,
    )
    .await?
    {
        Ok(used) => used,
        Err(refusal) => {
            say_ephemeral(ctx, refusal).await?;
            return Ok(None);
        }
    };
    let Some(repo) = used.repo else {
        say_ephemeral(ctx, "Which repository? Pass `repo`, or a server manager can bind this channel with `/project setup`.").await?;
        return Ok(None);
    };
    // Only the channel's own project's settings apply, and only to its repository.
    let project = channel_project.filter(|p| used.project == ProjectChoice::Project(p.id));
    let project_id = project.as_ref().map(|p| p.id);
    match data.ops.runner().find_workflow(project_id, workflow).await {
        Ok(definition) => Ok(Some(Setting {
            channel,
            project,
            repo,
            definition,
        })),
        Err(e) => {
            refuse(ctx, e).await?;
            Ok(None)
        }
    }
}

/// A refusal from the pipeline, as written; anything else failed on our side.
async fn refuse(ctx: Context<'_>, e: LaunchError) -> Result<(), Error> {
    match e {
        LaunchError::Invalid(message) => say_ephemeral(ctx, inert(&message)).await,
        LaunchError::Store(e) => Err(e.into()),
    }
}

/// Posts the public summary, opens its thread and follows the job there. A job whose thread
/// cannot open is ended, not left running unseen.
async fn announce(
    ctx: Context<'_>,
    job: JobId,
    summary: &str,
    thread_name: &str,
) -> Result<(), Error> {
    let data = ctx.data();
    let http = &ctx.serenity_context().http;
    let opened = async {
        let reply = ctx
            .send(
                poise::CreateReply::default()
                    .content(cut(summary, MAX_CONTENT))
                    .allowed_mentions(CreateAllowedMentions::new()),
            )
            .await?;
        let message = reply.message().await?.into_owned();
        open_thread(http, ctx.channel_id(), message.id, thread_name).await
    };
    let thread = match opened.await {
        Ok(thread) => thread,
        Err(e) => return say_ephemeral(ctx, abandon(data, job, e).await?).await,
    };
    let requester = Some(ctx.author().id);
    thread::follow(http.clone(), &data.ops, thread, job, requester, false).await
}

/// Ends a job whose thread could not open, and says so to the person who started it.
async fn abandon(data: &Data, job: JobId, error: Error) -> Result<String, Error> {
    let why = format!("its Discord thread could not be opened: {error}");
    data.ops.abandon_job(job, &why).await?;
    Ok(reply::failed_on_our_side(
        &error.context(format!("opening the thread of {job}")),
        "starting a workflow job",
    ))
}

async fn open_thread(
    http: &Http,
    channel: ChannelId,
    message: MessageId,
    name: &str,
) -> Result<ChannelId, Error> {
    let thread = channel
        .create_thread_from_message(
            http,
            message,
            CreateThread::new(cut(name, render::MAX_THREAD_NAME))
                .auto_archive_duration(AutoArchiveDuration::OneDay),
        )
        .await?;
    Ok(thread.id)
}

/// "Fix as a chain" from a scan: the chosen issues, in list order, as one work chain.
pub async fn chain_from_scan(
    http: Arc<Http>,
    press: &serenity::ComponentInteraction,
    data: &Data,
    session: IssueSessionId,
    positions: &[u32],
) -> Result<String, Error> {
    let store = data.ops.store();
    let Some(scan) = store.get_issue_session(session).await? else {
        return Ok("That scan is no longer in the records.".into());
    };
    let scanned = match scan.sandbox_id {
        Some(id) => store.get_sandbox(id).await?,
        None => None,
    };
    // The repository and branch the scan looked at.
    let repo = scanned
        .as_ref()
        .map(|r| r.request.repo.to_string())
        .unwrap_or_else(|| scan.repo.clone());
    let base_branch = scanned.and_then(|r| r.request.base_branch);
    let chosen: Vec<TaskRef> = positions
        .iter()
        .map(|&position| TaskRef::ScanIssue {
            session: session.to_string(),
            position,
        })
        .collect();
    let items = match data.ops.chain_tasks(&chosen, &repo, None).await {
        Ok(items) => items,
        Err(LaunchError::Invalid(message)) => return Ok(inert(&message)),
        Err(LaunchError::Store(e)) => return Err(e.into()),
    };
    let channel = scan
        .discord_channel_id
        .map(|c| ChannelId::new(c.0))
        .unwrap_or(press.channel_id);
    let channel_id = DiscordId(channel.get());
    let project = store.project_for_channel(channel_id).await?;
    let chosen = access::project_for(project.as_ref(), &repo);
    let project_id = match chosen {
        ProjectChoice::Project(id) => Some(id),
        _ => None,
    };
    let definition = match data.ops.runner().find_workflow(project_id, None).await {
        Ok(d) => d,
        Err(LaunchError::Invalid(message)) => return Ok(inert(&message)),
        Err(LaunchError::Store(e)) => return Err(e.into()),
    };
    let by = &press.user.name;
    let origin = origin(by, press.user.id, press.guild_id, channel_id, chosen);
    let owner = JobOwner {
        project_id,
        launched_by: by,
        discord: origin.discord,
    };
    let request = JobRequest {
        workflow: &definition,
        repo: &repo,
        base_branch: base_branch.as_deref(),
        env: &[],
        owner: &owner,
        allow_local: data.config.allow_local_repos,
    };
    let count = items.len();
    let titles: Vec<String> = items.iter().map(|t| t.title.clone()).collect();
    let id = match data
        .ops
        .runner()
        .start_chain(
            &request,
            items,
            false,
            Some(session),
            data.config.max_chain_items as usize,
        )
        .await
    {
        Ok(id) => id,
        Err(LaunchError::Invalid(message)) => return Ok(inert(&message)),
        Err(LaunchError::Store(e)) => return Err(e.into()),
    };
    let mut summary = format!(
        "⛓ **Work chain** of {count} issue{} from scan `{}` · chain `{}` · workflow `{}`\nstarted by {}\n",
        if count == 1 { "" } else { "s" },
        session.short(),
        id.short(),
        inert(&definition.name),
        inert(&press.user.name)
    );
    for (i, t) in titles.iter().enumerate() {
        let _ = writeln!(summary, "{}. {}", i + 1, inert(&cut(t, 100)));
    }
    let opened = async {
        let message = channel
            .send_message(
                &http,
                CreateMessage::new()
                    .content(cut(&summary, MAX_CONTENT))
                    .allowed_mentions(CreateAllowedMentions::new()),
            )
            .await?;
        open_thread(
            &http,
            channel,
            message.id,
            &format!("⛓ {} · {count} issues", id.short()),
        )
        .await
    };
    let thread = match opened.await {
        Ok(thread) => thread,
        Err(e) => return abandon(data, id, e).await,
    };
    thread::follow(http, &data.ops, thread, id, Some(press.user.id), false).await?;
    Ok(format!(
        "Work chain `{}` started with {count} issue{}: follow it in <#{thread}>.",
        id.short(),
        if count == 1 { "" } else { "s" }
    ))
}
