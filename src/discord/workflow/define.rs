//! The workflows themselves: `/workflow list` and `/workflow show`, and `/workflow create` with
//! its form (server managers), which checks a definition and stores it on the channel's project.

use std::fmt::Write as _;

use poise::serenity_prelude as serenity;
use serenity::{CreateActionRow, CreateInputText, CreateModal, InputTextStyle};

use super::refuse;
use crate::catalog::Catalog;
use crate::discord::custom_id::CustomId;
use crate::discord::render::{cut, inert, MAX_CONTENT};
use crate::discord::reply::{ephemeral, say_ephemeral};
use crate::discord::{access, Context, Data, Error};
use crate::ids::DiscordId;
use crate::model::workflow::{StepKind, WorkflowDef};

/// The workflows this channel's project can run.
#[poise::command(slash_command, rename = "list")]
pub async fn workflow_list(ctx: Context<'_>) -> Result<(), Error> {
    let data = ctx.data();
    let project = data
        .ops
        .store()
        .project_for_channel(DiscordId(ctx.channel_id().get()))
        .await?;
    let mut all = vec![WorkflowDef::built_in()];
    all.extend(
        data.ops
            .store()
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
            steps_summary(data.ops.catalog(), w),
            w.max_rounds
        );
    }
    say_ephemeral(ctx, cut(&text, MAX_CONTENT)).await
}

/// One workflow's steps, tools, models and personas.
#[poise::command(slash_command, rename = "show")]
pub async fn workflow_show(
    ctx: Context<'_>,
    #[description = "Workflow name"] name: String,
) -> Result<(), Error> {
    let data = ctx.data();
    let project = data
        .ops
        .store()
        .project_for_channel(DiscordId(ctx.channel_id().get()))
        .await?;
    let w = match data
        .ops
        .runner()
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
        let (tool, model, template) = w.step_tool(data.ops.catalog(), kind);
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
pub async fn workflow_create(ctx: Context<'_>) -> Result<(), Error> {
    if !access::command_by_manager(ctx) {
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
    let modal = CreateModal::new(CustomId::WorkflowForm.encode(), "New workflow").components(vec![
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
    // The form re-checks what its command checked: a form is only as good as its submitter.
    if !access::Actor::of_submit(submit).manages_server() {
        let text = "Only a server manager can define workflows.";
        submit.create_response(&ctx.http, ephemeral(text)).await?;
        return Ok(());
    }
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
        None => match definition.validate(data.ops.catalog()) {
            Err(errors) => {
                let mut t = String::from("That workflow is not valid:\n");
                for e in &errors.0 {
                    let _ = writeln!(t, "• **{}**: {}", e.field, inert(&e.message));
                }
                t
            }
            Ok(()) => match data.ops.store()
                .project_for_channel(DiscordId(submit.channel_id.get()))
                .await?
            {
                None => "This channel has no project, and a workflow belongs to one: a server manager can run `/project setup` first.".to_string(),
                Some(project) => match data.ops.store()
                    .create_workflow(Some(project.id), &definition, &submit.user.name)
                    .await
                {
                    Ok(()) => format!(
                        "Workflow `{}` saved: {}. Run it with `/workflow run workflow:{}`.",
                        inert(&definition.name),
                        steps_summary(data.ops.catalog(), &definition),
                        inert(&definition.name)
                    ),
                    Err(e) => inert(&e.to_string()),
                },
            },
        },
    };
    submit.create_response(&ctx.http, ephemeral(text)).await?;
    Ok(())
}

/// "designer Claude Code → optimizer Claude Code → checker OpenCode".
pub fn steps_summary(catalog: &Catalog, w: &WorkflowDef) -> String {
    StepKind::ALL
        .iter()
        .map(|kind| format!("{kind} {}", w.step_tool(catalog, *kind).0))
        .collect::<Vec<_>>()
        .join(" → ")
        + &budget_summary(w)
}

/// " · budget $2.00 for the whole run", or nothing when the workflow sets none.
fn budget_summary(w: &WorkflowDef) -> String {
    let budget = w.budget();
    if budget.is_set() {
        format!(" · budget {} for the whole run", budget.describe())
    } else {
        String::new()
    }
}
