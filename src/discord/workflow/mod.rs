//! Workflow runs and work chains in Discord: `/workflow run|list|show|create`, "Fix as a chain"
//! from a scan's list, and a thread per run or chain whose status message shows the steps (and a
//! chain's issues) with their state, tool, duration and cost, plus the current step's live phases.
//! Stop ends the current sandbox and the run. After a restart, runs left unfinished resume in
//! their threads.

use std::fmt::Write as _;
use std::sync::Arc;

use poise::serenity_prelude as serenity;
use serenity::{
    AutoArchiveDuration, ButtonStyle, ChannelId, CreateActionRow, CreateAllowedMentions,
    CreateButton, CreateInputText, CreateMessage, CreateModal, CreateThread, EditMessage, Http,
    InputTextStyle, Mentionable, MessageId, UserId,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::render::{self, cut, inert, StatusView, MAX_CONTENT};
use super::thread::EDIT_INTERVAL;
use super::{ephemeral, launch_origin, launch_refusal, say_ephemeral, Context, Data, Error};
use crate::catalog::Catalog;
use crate::ids::{DiscordId, IssueSessionId, WorkChainId, WorkflowRunId};
use crate::pipeline::workflow::{StepKind, Task, WorkflowDef};
use crate::pipeline::{
    LaunchError, ProgressEvent, RunRequest, Runner, WorkflowEvent, WorkflowSink,
};
use crate::store::{ChainRecord, RunOwner, RunRecord, RunStatus, StepStatus};

/// What following a workflow thread needs from the bot; cheap to clone into background tasks.
#[derive(Clone)]
pub struct Followers {
    pub runner: Arc<Runner>,
    /// Runs and chains driven in this process, by "run:<id>" / "chain:<id>".
    pub workflows: Arc<std::sync::Mutex<std::collections::HashMap<String, CancellationToken>>>,
    /// Tool ids to the names people know them by.
    pub tool_names: Arc<std::collections::HashMap<String, String>>,
}

/// What a workflow thread follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Run(WorkflowRunId),
    Chain(WorkChainId),
}

impl Job {
    fn key(self) -> String {
        match self {
            Job::Run(id) => format!("run:{id}"),
            Job::Chain(id) => format!("chain:{id}"),
        }
    }

    fn stop_id(self) -> String {
        format!("cc:wfstop:{}", self.key())
    }
}

/// The job a Stop button's custom id names.
pub fn parse_stop_id(custom_id: &str) -> Option<Job> {
    let rest = custom_id.strip_prefix("cc:wfstop:")?;
    let (kind, id) = rest.split_once(':')?;
    match kind {
        "run" => Some(Job::Run(id.parse().ok()?)),
        "chain" => Some(Job::Chain(id.parse().ok()?)),
        _ => None,
    }
}

/// Run workflows: designer → optimizer → checker, each step in its own sandbox.
#[poise::command(
    slash_command,
    guild_only,
    subcommands(
        "workflow_run",
        "workflow_chain",
        "workflow_list",
        "workflow_show",
        "workflow_create"
    ),
    subcommand_required
)]
pub async fn workflow(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Run a workflow on a task, in a thread.
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
) -> Result<(), Error> {
    let data = ctx.data();
    let Some(Setting {
        channel,
        project,
        repo,
        definition,
    }) = setting(ctx, repo, workflow.as_deref()).await?
    else {
        return Ok(());
    };
    let runner = &data.runner;
    let project_id = project.as_ref().map(|p| p.id);
    let task = match (task, issue, github_issue) {
        (Some(t), _, _) if !t.trim().is_empty() => Task::from_prompt(&t, "prompt"),
        (_, Some(issue), _) => {
            let parsed = issue
                .split_once('#')
                .and_then(|(s, n)| Some((s.to_string(), n.parse::<u32>().ok()?)));
            let Some((session, position)) = parsed else {
                say_ephemeral(
                    ctx,
                    format!(
                        "`issue` must be SESSION#N, like `1a2b3c4d#3`; got `{}`.",
                        inert(&issue)
                    ),
                )
                .await?;
                return Ok(());
            };
            match runner
                .task_from_issue(&session, position, &repo, Some(channel))
                .await
            {
                Ok(t) => t,
                Err(e) => return refuse(ctx, e).await,
            }
        }
        (_, _, Some(n)) if n > 0 => match runner.task_from_github(&repo, n as u64).await {
            Ok(t) => t,
            Err(e) => return refuse(ctx, e).await,
        },
        _ => {
            say_ephemeral(
                ctx,
                "Give the task: `task`, `issue` (SESSION#N from a scan) or `github_issue`.",
            )
            .await?;
            return Ok(());
        }
    };
    let origin = launch_origin(
        &ctx.author().name,
        DiscordId(ctx.author().id.get()),
        ctx.guild_id(),
        channel,
        project.as_ref(),
    );
    let owner = RunOwner {
        project_id,
        launched_by: &origin.launched_by,
        discord: origin.discord,
    };
    let request = RunRequest {
        workflow: &definition,
        repo: &repo,
        base_branch: base_branch.as_deref(),
        env: &[],
        owner: &owner,
        allow_local: data.config.allow_local_repos,
    };
    let id = match runner.start_run(&request, task.clone()).await {
        Ok(id) => id,
        Err(e) => return refuse(ctx, e).await,
    };
    let summary = format!(
        "🔁 **Workflow `{}`** on {} · run `{}`\n{}\nstarted by {}\n> {}",
        inert(&definition.name),
        inert(&repo),
        id.short(),
        steps_summary(&data.catalog, &definition),
        inert(&origin.launched_by),
        inert(&cut(&task.title, 300))
    );
    announce(
        ctx,
        Job::Run(id),
        &summary,
        &format!("🔁 {} · {}", id.short(), task.title),
    )
    .await
}

/// Where a chat command's run or chain starts: in this channel, with the channel's project.
struct Setting {
    channel: DiscordId,
    project: Option<crate::store::Project>,
    repo: String,
    definition: WorkflowDef,
}

/// The refusals and lookups `/workflow run` and `/workflow chain` share; `None` when the person
/// was told why not.
async fn setting(
    ctx: Context<'_>,
    repo: Option<String>,
    workflow: Option<&str>,
) -> Result<Option<Setting>, Error> {
    let data = ctx.data();
    let user = DiscordId(ctx.author().id.get());
    if let Some(refusal) = launch_refusal(ctx, user).await? {
        say_ephemeral(ctx, refusal).await?;
        return Ok(None);
    }
    let channel = DiscordId(ctx.channel_id().get());
    let project = data.store.project_for_channel(channel).await?;
    let Some(repo) = repo.or_else(|| project.as_ref().map(|p| p.repo.clone())) else {
        say_ephemeral(ctx, "Which repository? Pass `repo`, or a server manager can bind this channel with `/project setup`.").await?;
        return Ok(None);
    };
    match data
        .runner
        .find_workflow(project.as_ref().map(|p| p.id), workflow)
        .await
    {
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

/// Posts the public summary, opens its thread and follows the job there. A job whose thread
/// cannot open is ended, not left running unseen.
async fn announce(
    ctx: Context<'_>,
    job: Job,
    summary: &str,
    thread_name: &str,
) -> Result<(), Error> {
    let data = ctx.data();
    let opened = async {
        let reply = ctx
            .send(
                poise::CreateReply::default()
                    .content(cut(summary, MAX_CONTENT))
                    .allowed_mentions(CreateAllowedMentions::new()),
            )
            .await?;
        let message = reply.message().await?.into_owned();
        open_thread(
            &ctx.serenity_context().http,
            ctx.channel_id(),
            message.id,
            thread_name,
        )
        .await
    };
    let thread = match opened.await {
        Ok(thread) => thread,
        Err(e) => {
            let why = format!("its Discord thread could not be opened: {e}");
            match job {
                Job::Run(id) => {
                    data.store
                        .finish_run(id, RunStatus::Failed, Some(&why), &[], None)
                        .await?;
                }
                Job::Chain(id) => {
                    data.store
                        .finish_chain(id, RunStatus::Failed, Some(&why), None)
                        .await?;
                }
            }
            return Err(e);
        }
    };
    follow(
        ctx.serenity_context().http.clone(),
        &data.followers(),
        thread,
        job,
        Some(ctx.author().id),
        false,
    )
    .await
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
) -> Result<(), Error> {
    let data = ctx.data();
    let Some(Setting {
        channel,
        project,
        repo,
        definition,
    }) = setting(ctx, repo, workflow.as_deref()).await?
    else {
        return Ok(());
    };
    let mut items = Vec::new();
    for part in issues.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let github = part.strip_prefix('#').and_then(|n| n.parse::<u64>().ok());
        match github {
            Some(n) => match data.runner.task_from_github(&repo, n).await {
                Ok(task) => items.push(task),
                Err(e) => return refuse(ctx, e).await,
            },
            None => items.push(Task::from_prompt(part, "text")),
        }
    }
    let origin = launch_origin(
        &ctx.author().name,
        DiscordId(ctx.author().id.get()),
        ctx.guild_id(),
        channel,
        project.as_ref(),
    );
    let owner = RunOwner {
        project_id: project.as_ref().map(|p| p.id),
        launched_by: &origin.launched_by,
        discord: origin.discord,
    };
    let request = RunRequest {
        workflow: &definition,
        repo: &repo,
        base_branch: base_branch.as_deref(),
        env: &[],
        owner: &owner,
        allow_local: data.config.allow_local_repos,
    };
    let titles: Vec<String> = items.iter().map(|t| t.title.clone()).collect();
    let id = match data
        .runner
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
        inert(&repo),
        id.short(),
        inert(&definition.name),
        inert(&origin.launched_by)
    );
    for (i, t) in titles.iter().enumerate() {
        let _ = writeln!(summary, "{}. {}", i + 1, inert(&cut(t, 100)));
    }
    let count = titles.len();
    announce(
        ctx,
        Job::Chain(id),
        &summary,
        &format!("⛓ {} · {count} issues", id.short()),
    )
    .await
}

/// The workflows this channel's project can run.
#[poise::command(slash_command, rename = "list")]
async fn workflow_list(ctx: Context<'_>) -> Result<(), Error> {
    let data = ctx.data();
    let project = data
        .store
        .project_for_channel(DiscordId(ctx.channel_id().get()))
        .await?;
    let mut all = vec![WorkflowDef::built_in()];
    all.extend(
        data.store
            .list_workflows(project.map(|p| p.id))
            .await?
            .into_iter()
            .map(|w| w.definition),
    );
    let mut text = String::from("**Workflows**\n");
    for w in &all {
        let _ = writeln!(
            text,
            "• `{}` — {} · up to {} rounds",
            inert(&w.name),
            steps_summary(&data.catalog, w),
            w.max_rounds
        );
    }
    say_ephemeral(ctx, cut(&text, MAX_CONTENT)).await
}

/// One workflow's steps, tools, models and personas.
#[poise::command(slash_command, rename = "show")]
async fn workflow_show(
    ctx: Context<'_>,
    #[description = "Workflow name"] name: String,
) -> Result<(), Error> {
    let data = ctx.data();
    let project = data
        .store
        .project_for_channel(DiscordId(ctx.channel_id().get()))
        .await?;
    let w = match data
        .runner
        .find_workflow(project.map(|p| p.id), Some(&name))
        .await
    {
        Ok(w) => w,
        Err(e) => return refuse(ctx, e).await,
    };
    let mut text = format!(
        "**Workflow `{}`** · up to {} optimizer rounds\n",
        inert(&w.name),
        w.max_rounds
    );
    for kind in StepKind::ALL {
        let (tool, model, template) = w.step_tool(&data.catalog, kind);
        let _ = writeln!(
            text,
            "**{kind}** · {tool} · `{model}`{}\n> {}",
            template
                .map(|t| format!(" · template `{t}`"))
                .unwrap_or_default(),
            inert(&cut(w.persona(kind), 300))
        );
    }
    say_ephemeral(ctx, cut(&text, MAX_CONTENT)).await
}

/// Define a workflow for this channel's project (a form opens).
#[poise::command(slash_command, rename = "create")]
async fn workflow_create(ctx: Context<'_>) -> Result<(), Error> {
    if !super::is_admin(ctx) {
        say_ephemeral(ctx, "Only a server manager can define workflows.").await?;
        return Ok(());
    }
    let input = |id: &str, label: &str, placeholder: &str, required: bool| {
        CreateActionRow::InputText(
            CreateInputText::new(InputTextStyle::Short, label, id)
                .placeholder(placeholder)
                .required(required)
                .max_length(100),
        )
    };
    let modal = CreateModal::new("cc:wfcreate", "New workflow").components(vec![
        input("name", "Name", "careful-review", true),
        input(
            "tools",
            "Tools: designer, optimizer, checker",
            "claude-code, claude-code, opencode",
            false,
        ),
        input(
            "models",
            "Models, same order (blank = default)",
            "claude-opus-4-6, , ",
            false,
        ),
        input(
            "checker_template",
            "Checker template (blank: the main one)",
            "acme/checker:v2",
            false,
        ),
        input("max_rounds", "Optimizer rounds at most (1–10)", "3", false),
    ]);
    if let poise::Context::Application(app) = ctx {
        app.interaction
            .create_response(
                ctx.http(),
                serenity::CreateInteractionResponse::Modal(modal),
            )
            .await?;
    }
    Ok(())
}

/// The `/workflow create` form, submitted: checked, then stored on the channel's project.
pub async fn on_create_submit(
    ctx: &serenity::Context,
    submit: &serenity::ModalInteraction,
    data: &Data,
) -> Result<(), Error> {
    let value = |id: &str| -> String {
        submit
            .data
            .components
            .iter()
            .flat_map(|row| row.components.iter())
            .find_map(|c| match c {
                serenity::ActionRowComponent::InputText(t) if t.custom_id == id => t.value.clone(),
                _ => None,
            })
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let per_step = |text: String| -> Vec<Option<String>> {
        let mut parts: Vec<Option<String>> = text
            .split(',')
            .map(|p| Some(p.trim().to_string()).filter(|p| !p.is_empty()))
            .collect();
        parts.resize(3, None);
        parts
    };
    let tools = per_step(value("tools"));
    let models = per_step(value("models"));
    let mut definition = WorkflowDef::built_in();
    definition.name = value("name");
    definition.designer_cli_id = tools[0].clone();
    definition.optimizer_cli_id = tools[1].clone();
    definition.checker_cli_id = tools[2].clone();
    definition.designer_model = models[0].clone();
    definition.optimizer_model = models[1].clone();
    definition.checker_model = models[2].clone();
    definition.checker_template_id = Some(value("checker_template")).filter(|t| !t.is_empty());
    let rounds = value("max_rounds");
    let text = match (rounds.is_empty(), rounds.parse::<u32>()) {
        (true, _) => None,
        (false, Ok(n)) => {
            definition.max_rounds = n;
            None
        }
        (false, Err(_)) => Some(format!(
            "**max_rounds**: `{}` is not a number from 1 to 10",
            inert(&rounds)
        )),
    };
    let text = match text {
        Some(problem) => format!("That workflow is not valid:\n• {problem}"),
        None => match definition.validate(&data.catalog) {
            Err(errors) => {
                let mut t = String::from("That workflow is not valid:\n");
                for e in &errors.0 {
                    let _ = writeln!(t, "• **{}**: {}", e.field, inert(&e.message));
                }
                t
            }
            Ok(()) => match data
                .store
                .project_for_channel(DiscordId(submit.channel_id.get()))
                .await?
            {
                None => "This channel has no project, and a workflow belongs to one: a server manager can run `/project setup` first.".to_string(),
                Some(project) => match data
                    .store
                    .create_workflow(Some(project.id), &definition, &submit.user.name)
                    .await
                {
                    Ok(()) => format!(
                        "Workflow `{}` saved: {}. Run it with `/workflow run workflow:{}`.",
                        inert(&definition.name),
                        steps_summary(&data.catalog, &definition),
                        inert(&definition.name)
                    ),
                    Err(e) => inert(&e.to_string()),
                },
            },
        },
    };
    submit
        .create_response(&ctx.http, ephemeral(cut(&text, MAX_CONTENT)))
        .await?;
    Ok(())
}

async fn refuse(ctx: Context<'_>, e: LaunchError) -> Result<(), Error> {
    match e {
        LaunchError::Invalid(message) => say_ephemeral(ctx, inert(&message)).await,
        LaunchError::Store(e) => Err(e.into()),
    }
}

/// "designer Claude Code → optimizer Claude Code → checker OpenCode".
fn steps_summary(catalog: &Catalog, w: &WorkflowDef) -> String {
    StepKind::ALL
        .iter()
        .map(|kind| format!("{kind} {}", w.step_tool(catalog, *kind).0))
        .collect::<Vec<_>>()
        .join(" → ")
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
    let Some(scan) = data.store.get_issue_session(session).await? else {
        return Ok("That scan is no longer in the records.".into());
    };
    let scanned = match scan.sandbox_id {
        Some(id) => data.store.get_sandbox(id).await?,
        None => None,
    };
    // The repository and branch the scan looked at.
    let repo = scanned
        .as_ref()
        .map(|r| r.request.repo.to_string())
        .unwrap_or_else(|| scan.repo.clone());
    let base_branch = scanned.and_then(|r| r.request.base_branch);
    let mut items = Vec::new();
    for position in positions {
        match data
            .runner
            .task_from_issue(&session.to_string(), *position, &repo, None)
            .await
        {
            Ok(task) => items.push(task),
            Err(LaunchError::Invalid(message)) => return Ok(inert(&message)),
            Err(LaunchError::Store(e)) => return Err(e.into()),
        }
    }
    let channel = scan
        .discord_channel_id
        .map(|c| ChannelId::new(c.0))
        .unwrap_or(press.channel_id);
    let project = data
        .store
        .project_for_channel(DiscordId(channel.get()))
        .await?;
    let project_id = project.map(|p| p.id).or(scan.project_id);
    let definition = match data.runner.find_workflow(project_id, None).await {
        Ok(d) => d,
        Err(LaunchError::Invalid(message)) => return Ok(inert(&message)),
        Err(LaunchError::Store(e)) => return Err(e.into()),
    };
    let origin = crate::store::DiscordOrigin {
        user_id: DiscordId(press.user.id.get()),
        guild_id: press.guild_id.map(|g| DiscordId(g.get())),
        channel_id: DiscordId(channel.get()),
    };
    let owner = RunOwner {
        project_id,
        launched_by: &press.user.name,
        discord: Some(origin),
    };
    let request = RunRequest {
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
        .runner
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
        Err(e) => {
            let why = format!("its Discord thread could not be opened: {e}");
            data.store
                .finish_chain(id, RunStatus::Failed, Some(&why), None)
                .await?;
            return Ok(format!("The chain could not start: {}", inert(&why)));
        }
    };
    follow(
        http,
        &data.followers(),
        thread,
        Job::Chain(id),
        Some(press.user.id),
        false,
    )
    .await?;
    Ok(format!(
        "Work chain `{}` started with {count} issue{}: follow it in <#{thread}>.",
        id.short(),
        if count == 1 { "" } else { "s" }
    ))
}

/// Posts the timeline message in `thread` and drives the job there; the thread gets the result.
pub async fn follow(
    http: Arc<Http>,
    f: &Followers,
    thread: ChannelId,
    job: Job,
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
    let (thread_id, message_id) = (DiscordId(thread.get()), DiscordId(status.id.get()));
    match job {
        Job::Run(id) => {
            f.runner
                .store()
                .set_run_discord(id, thread_id, message_id)
                .await?
        }
        Job::Chain(id) => {
            f.runner
                .store()
                .set_chain_discord(id, thread_id, message_id)
                .await?
        }
    }
    let token = CancellationToken::new();
    f.workflows
        .lock()
        .expect("lock")
        .insert(job.key(), token.clone());
    let runner = f.runner.clone();
    let workflows = f.workflows.clone();
    // The timeline's heading, and a chain's issues.
    let (title, items): (String, Vec<String>) = match job {
        Job::Run(id) => match f.runner.store().get_run(id).await? {
            Some(r) => (
                format!(
                    "🔁 **Workflow `{}`** · run `{}`",
                    inert(&r.workflow.name),
                    id.short()
                ),
                Vec::new(),
            ),
            None => Default::default(),
        },
        Job::Chain(id) => match f.runner.store().get_chain(id).await? {
            Some(c) => (
                format!(
                    "⛓ **Work chain** · `{}` · workflow `{}`",
                    id.short(),
                    inert(&c.workflow.name)
                ),
                c.items.iter().map(|t| t.title.clone()).collect(),
            ),
            None => Default::default(),
        },
    };
    let tool_names = (*f.tool_names).clone();
    tokio::spawn(async move {
        let (tx, rx) = mpsc::unbounded_channel();
        let view = Timeline {
            title,
            items: items.into_iter().map(|t| (t, ItemState::Waiting)).collect(),
            tool_names,
            ..Default::default()
        };
        let updater = tokio::spawn(update_timeline(
            http.clone(),
            thread,
            status.id,
            rx,
            view,
            job,
        ));
        let sink = ChannelSink(tx);
        let text = match job {
            Job::Run(id) => runner
                .drive_run(id, &sink, token)
                .await
                .map(|r| run_result(&r)),
            Job::Chain(id) => runner
                .drive_chain(id, &sink, token)
                .await
                .map(|c| chain_result(&c)),
        };
        drop(sink);
        let _ = updater.await;
        workflows.lock().expect("lock").remove(&job.key());
        let text = match text {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(job = %job.key(), error = %format!("{e:#}"), "workflow ended without a record");
                format!(
                    "❌ CodeCourier could not finish this: {}",
                    inert(&e.to_string())
                )
            }
        };
        let mention = requester.map(|u| u.mention().to_string());
        let mut allowed = CreateAllowedMentions::new();
        if let Some(user) = requester {
            allowed = allowed.users([user]);
        }
        let content = match mention {
            Some(m) => format!("{m} {text}"),
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

fn stop_row(job: Job) -> CreateActionRow {
    CreateActionRow::Buttons(vec![CreateButton::new(job.stop_id())
        .label("Stop")
        .style(ButtonStyle::Danger)])
}

/// A press on a run's or chain's Stop button.
pub async fn on_stop(
    ctx: &serenity::Context,
    press: &serenity::ComponentInteraction,
    data: &Data,
    job: Job,
) -> Result<(), Error> {
    let (owner, running) = match job {
        Job::Run(id) => match data.store.get_run(id).await? {
            Some(r) => (r.meta.discord_user_id, r.status == RunStatus::Running),
            None => (None, false),
        },
        Job::Chain(id) => match data.store.get_chain(id).await? {
            Some(c) => (c.meta.discord_user_id, c.status == RunStatus::Running),
            None => (None, false),
        },
    };
    let allowed = owner == Some(DiscordId(press.user.id.get()))
        || press
            .member
            .as_ref()
            .and_then(|m| m.permissions)
            .is_some_and(|p| p.manage_guild());
    let text = if !allowed {
        "Only the person who started this, or a server manager, can stop it.".to_string()
    } else if !running {
        "This has already ended.".to_string()
    } else {
        let token = data
            .workflows
            .lock()
            .expect("lock")
            .get(&job.key())
            .cloned();
        match token {
            Some(token) => {
                token.cancel();
                "Stopping: the current step's sandbox ends, then the run.".to_string()
            }
            None => {
                // Not driven here (a restart in between): record the stop.
                let by = format!("stopped by {} from Discord", press.user.name);
                match job {
                    Job::Run(id) => {
                        data.store
                            .finish_run(id, RunStatus::Stopped, Some(&by), &[], None)
                            .await?;
                    }
                    Job::Chain(id) => {
                        data.store
                            .finish_chain(id, RunStatus::Stopped, Some(&by), None)
                            .await?;
                    }
                }
                "Stopped.".to_string()
            }
        }
    };
    press.create_response(&ctx.http, ephemeral(text)).await?;
    Ok(())
}

/// Runs and chains from Discord that nobody drives any more (CodeCourier restarted, or another
/// instance stopped) go on in their threads, at the interrupted step.
pub async fn resume_all(http: Arc<Http>, f: &Followers) {
    let (runs, chains) = match f.runner.resumable().await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for workflow runs to resume");
            return;
        }
    };
    let jobs = runs
        .iter()
        .map(|r| {
            (
                Job::Run(r.id),
                r.meta.discord_thread_id,
                r.meta.discord_user_id,
            )
        })
        .chain(chains.iter().map(|c| {
            (
                Job::Chain(c.id),
                c.meta.discord_thread_id,
                c.meta.discord_user_id,
            )
        }));
    for (job, thread, user) in jobs {
        let Some(thread) = thread else { continue };
        let requester = user.map(|u| UserId::new(u.0));
        if let Err(e) = follow(
            http.clone(),
            f,
            ChannelId::new(thread.0),
            job,
            requester,
            true,
        )
        .await
        {
            tracing::warn!(job = %job.key(), error = %e, "could not resume");
        }
    }
}

/// Looks for runs nobody drives once a minute (another instance may have stopped), for as long as
/// the bot runs.
pub fn keep_resuming(http: Arc<Http>, f: Followers) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            resume_all(http.clone(), &f).await;
        }
    });
}

fn run_result(run: &RunRecord) -> String {
    let mut text = format!(
        "**{}** · workflow `{}` · run `{}` · {} step{}{}",
        status_word(run.status),
        inert(&run.workflow.name),
        run.id.short(),
        run.steps.len(),
        if run.steps.len() == 1 { "" } else { "s" },
        usage(&[run])
    );
    if let Some(branch) = &run.branch {
        let _ = write!(text, "\n🌿 `{}`", inert(branch));
    }
    if let Some(url) = &run.pr_url {
        let _ = write!(text, "\n🔀 {url}");
    }
    if let Some(error) = &run.error {
        let _ = write!(text, "\n{}", inert(&cut(error, 600)));
    }
    for f in run.findings.iter().take(10) {
        let _ = write!(text, "\n• {}", inert(&cut(f, 200)));
    }
    text
}

fn chain_result(chain: &ChainRecord) -> String {
    let runs: Vec<&RunRecord> = chain.runs.iter().collect();
    let mut text = format!(
        "**{}** · work chain `{}` · {} issue{}{}",
        status_word(chain.status),
        chain.id.short(),
        chain.items.len(),
        if chain.items.len() == 1 { "" } else { "s" },
        usage(&runs)
    );
    for (i, item) in chain.items.iter().enumerate() {
        let state = chain
            .runs
            .iter()
            .find(|r| r.chain_position == Some(i as u32))
            .map(|r| status_word(r.status))
            .unwrap_or("▫️ not run");
        let _ = write!(
            text,
            "\n{}. {} — {state}",
            i + 1,
            inert(&cut(&item.title, 100))
        );
    }
    if let Some(url) = &chain.pr_url {
        let _ = write!(text, "\n🔀 {url}");
    }
    if let Some(error) = &chain.error {
        let _ = write!(text, "\n{}", inert(&cut(error, 600)));
    }
    text
}

fn usage(runs: &[&RunRecord]) -> String {
    let steps = runs.iter().flat_map(|r| r.steps.iter());
    let (cost, ms) = steps.fold((None::<f64>, 0i64), |(c, t), s| {
        (
            match (c, s.cost_usd) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            },
            t + s.duration_ms.unwrap_or(0),
        )
    });
    let mut text = String::new();
    if let Some(c) = cost {
        let _ = write!(text, " · ${c:.4}");
    }
    if ms > 0 {
        let _ = write!(text, " · {:.1}s in sandboxes", ms as f64 / 1000.0);
    }
    text
}

fn status_word(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "⏳ running",
        RunStatus::Passed => "✅ passed",
        RunStatus::Failed => "❌ failed",
        RunStatus::Stopped => "🛑 stopped",
    }
}

/// Queues the runner's events for the timeline's updater: the runner never waits on Discord.
struct ChannelSink(mpsc::UnboundedSender<WorkflowEvent>);

impl WorkflowSink for ChannelSink {
    fn emit(&self, event: &WorkflowEvent) {
        let _ = self.0.send(event.clone());
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ItemState {
    Waiting,
    Running,
    Done(RunStatus),
}

/// One step's line on the timeline.
#[derive(Debug, Clone)]
struct StepView {
    kind: StepKind,
    round: u32,
    tool: String,
    model: String,
    status: StepStatus,
    verdict: Option<bool>,
    findings: usize,
    cost_usd: Option<f64>,
    duration_ms: Option<i64>,
}

/// Everything the timeline message shows.
#[derive(Debug, Clone, Default)]
struct Timeline {
    title: String,
    branch: Option<String>,
    items: Vec<(String, ItemState)>,
    steps: Vec<StepView>,
    /// The current step's phases and activity.
    current: StatusView,
    finished: Option<RunStatus>,
    /// Tool ids to the names people know them by.
    tool_names: std::collections::HashMap<String, String>,
}

impl Timeline {
    fn apply(&mut self, event: WorkflowEvent) {
        match event {
            WorkflowEvent::BranchReady { base, branch } => {
                self.branch = Some(format!("`{}` from `{}`", inert(&branch), inert(&base)))
            }
            WorkflowEvent::ItemStarted { position, .. } => {
                if let Some(item) = self.items.get_mut(position as usize) {
                    item.1 = ItemState::Running;
                }
                self.steps.clear();
            }
            WorkflowEvent::StepStarted {
                kind,
                round,
                tool,
                model,
                ..
            } => {
                self.current = StatusView::default();
                self.steps.push(StepView {
                    kind,
                    round,
                    tool: self.tool_names.get(&tool).cloned().unwrap_or(tool),
                    model,
                    status: StepStatus::Running,
                    verdict: None,
                    findings: 0,
                    cost_usd: None,
                    duration_ms: None,
                });
            }
            WorkflowEvent::Progress { event, .. } => match event {
                ProgressEvent::PhaseStarted { phase } => self.current.started(phase),
                ProgressEvent::PhaseFinished {
                    phase,
                    outcome,
                    detail,
                    duration_ms,
                } => self.current.finished(phase, outcome, duration_ms, detail),
                ProgressEvent::Agent { event } => {
                    if let Some(line) = event.activity() {
                        self.current.activity = Some(line);
                    }
                }
                ProgressEvent::Note { message } => {
                    self.current.activity = Some(format!("⏳ {message}"))
                }
                ProgressEvent::Status { .. } => {}
            },
            WorkflowEvent::StepFinished {
                status,
                verdict,
                cost_usd,
                duration_ms,
                ..
            } => {
                if let Some(step) = self.steps.last_mut() {
                    step.status = status;
                    step.verdict = verdict.as_ref().map(|v| v.pass);
                    step.findings = verdict.map(|v| v.findings.len()).unwrap_or(0);
                    step.cost_usd = cost_usd;
                    step.duration_ms = duration_ms;
                }
                self.current = StatusView::default();
            }
            WorkflowEvent::RunFinished { status, .. } => {
                if let Some(item) = self
                    .items
                    .iter_mut()
                    .find(|(_, s)| *s == ItemState::Running)
                {
                    item.1 = ItemState::Done(status);
                } else {
                    self.finished = Some(status);
                }
            }
            WorkflowEvent::ChainFinished { status, .. } => self.finished = Some(status),
        }
    }

    fn render(&self) -> String {
        let mut text = format!(
            "{} — {}\n",
            self.title,
            self.finished.map(status_word).unwrap_or("⏳ running")
        );
        if let Some(branch) = &self.branch {
            let _ = writeln!(text, "🌿 {branch}");
        }
        if !self.items.is_empty() {
            text.push_str("**Issues**\n");
            for (i, (title, state)) in self.items.iter().enumerate() {
                let mark = match state {
                    ItemState::Waiting => "▫️",
                    ItemState::Running => "⏳",
                    ItemState::Done(s) => status_word(*s).split(' ').next().unwrap_or(""),
                };
                let _ = writeln!(text, "{mark} {}. {}", i + 1, inert(&cut(title, 90)));
            }
        }
        if !self.steps.is_empty() {
            text.push_str("**Steps**\n");
        }
        for step in &self.steps {
            let mark = match (step.status, step.verdict) {
                (StepStatus::Running, _) => "⏳",
                (StepStatus::Completed, Some(false)) => "❌",
                (StepStatus::Completed, _) => "✅",
                (StepStatus::Failed, _) => "❌",
                (StepStatus::Stopped, _) => "🛑",
                (StepStatus::Interrupted, _) => "↻",
            };
            let _ = write!(text, "{mark} **{}**", step.kind);
            if step.kind != StepKind::Designer {
                let _ = write!(text, " {}", step.round);
            }
            let _ = write!(text, " · {} · `{}`", inert(&step.tool), inert(&step.model));
            if let Some(pass) = step.verdict {
                let _ = write!(
                    text,
                    " · verdict {}",
                    if pass {
                        "pass".to_string()
                    } else {
                        format!(
                            "fail ({} finding{})",
                            step.findings,
                            if step.findings == 1 { "" } else { "s" }
                        )
                    }
                );
            }
            if let Some(ms) = step.duration_ms {
                let _ = write!(text, " · {:.1}s", ms as f64 / 1000.0);
            }
            if let Some(c) = step.cost_usd {
                let _ = write!(text, " · ${c:.4}");
            }
            text.push('\n');
        }
        if self
            .steps
            .last()
            .is_some_and(|s| s.status == StepStatus::Running)
        {
            // The current step's latest phases, as a launch's status message shows them.
            let mut current = self.current.clone();
            let skip = current.phases.len().saturating_sub(4);
            current.phases.drain(..skip);
            let live = render::status_message(&current);
            for line in live.lines().filter(|l| !l.trim().is_empty()) {
                let _ = writeln!(text, "\u{2003}{line}");
            }
        }
        cut(text.trim_end(), MAX_CONTENT)
    }
}

/// Edits the timeline message as events arrive, at most once per `EDIT_INTERVAL`, and once more
/// at the end without the Stop button.
async fn update_timeline(
    http: Arc<Http>,
    thread: ChannelId,
    message: MessageId,
    mut rx: mpsc::UnboundedReceiver<WorkflowEvent>,
    mut view: Timeline,
    job: Job,
) {
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
                let edit = EditMessage::new().content(view.render()).components(vec![stop_row(job)]);
                if let Err(e) = thread.edit_message(&http, message, edit).await {
                    tracing::warn!(error = %e, "could not edit the timeline");
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
        .content(view.render())
        .components(Vec::new());
    if let Err(e) = thread.edit_message(&http, message, edit).await {
        tracing::warn!(error = %e, "could not edit the timeline");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_ids_round_trip() {
        let run = Job::Run(WorkflowRunId::new());
        assert_eq!(parse_stop_id(&run.stop_id()), Some(run));
        let chain = Job::Chain(WorkChainId::new());
        assert_eq!(parse_stop_id(&chain.stop_id()), Some(chain));
        assert!(run.stop_id().len() <= 100);
        assert_eq!(parse_stop_id("cc:wfstop:run:nope"), None);
    }
}
