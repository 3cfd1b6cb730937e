//! The launch dialog: `/launch` without a prompt opens an ephemeral message with select menus for
//! the tool, model and effort (pre-set to the defaults, the effort to the model's) and a button that opens a modal for the
//! prompt and resources (pre-filled). The dialog's state lives in memory under a short id carried
//! by every component's custom id; a dialog older than a restart says so and asks to start again.

use std::collections::HashMap;
use std::sync::Mutex;

use poise::serenity_prelude as serenity;
use serenity::{
    ButtonStyle, ComponentInteraction, ComponentInteractionDataKind, CreateActionRow,
    CreateAllowedMentions, CreateButton, CreateInputText, CreateInteractionResponse,
    CreateInteractionResponseMessage, CreateModal, CreateSelectMenu, CreateSelectMenuKind,
    CreateSelectMenuOption, InputTextStyle, ModalInteraction,
};

use super::custom_id::{CustomId, DialogPart};
use crate::catalog::{Catalog, LaunchInput};

/// What the person has chosen so far, and the options they gave to `/launch`.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub user: u64,
    pub input: LaunchInput,
}

#[derive(Default)]
pub struct Dialogs(Mutex<HashMap<String, Dialog>>);

impl Dialogs {
    /// Opens a dialog with the catalog's defaults filled in where `/launch` left options out.
    pub fn open(&self, catalog: &Catalog, user: u64, mut input: LaunchInput) -> (String, Dialog) {
        let tool = input
            .tool
            .clone()
            .and_then(|t| catalog.tool(&t).cloned())
            .unwrap_or_else(|| catalog.default_tool().clone());
        input.tool = Some(tool.id.clone());
        if input.model.is_none() {
            input.model = Some(tool.default_model().to_string());
        }
        if input.effort.is_none() {
            let model = input.model.as_deref().unwrap_or(tool.default_model());
            input.effort = Some(tool.default_effort(model).to_string());
        }
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let dialog = Dialog { user, input };
        self.0
            .lock()
            .expect("lock")
            .insert(id.clone(), dialog.clone());
        (id, dialog)
    }

    pub fn get(&self, id: &str) -> Option<Dialog> {
        self.0.lock().expect("lock").get(id).cloned()
    }

    pub fn update(&self, id: &str, change: impl FnOnce(&mut LaunchInput)) -> Option<Dialog> {
        let mut dialogs = self.0.lock().expect("lock");
        let dialog = dialogs.get_mut(id)?;
        change(&mut dialog.input);
        Some(dialog.clone())
    }

    pub fn take(&self, id: &str) -> Option<Dialog> {
        self.0.lock().expect("lock").remove(id)
    }
}

fn id(part: DialogPart, dialog: &str) -> String {
    CustomId::Dialog(part, dialog.to_string()).encode()
}

fn select(
    custom_id: String,
    placeholder: &str,
    options: Vec<(String, String)>,
    chosen: Option<&str>,
) -> CreateActionRow {
    let options = options
        .into_iter()
        .take(25)
        .map(|(label, value)| {
            let default = chosen == Some(value.as_str());
            CreateSelectMenuOption::new(label, value).default_selection(default)
        })
        .collect();
    CreateActionRow::SelectMenu(
        CreateSelectMenu::new(custom_id, CreateSelectMenuKind::String { options })
            .placeholder(placeholder),
    )
}

/// The dialog message: up to three selects and the button that opens the modal.
pub fn message(
    catalog: &Catalog,
    dialog_id: &str,
    dialog: &Dialog,
) -> CreateInteractionResponseMessage {
    let input = &dialog.input;
    let tool = input
        .tool
        .as_deref()
        .and_then(|t| catalog.tool(t))
        .unwrap_or_else(|| catalog.default_tool());
    let mut rows = vec![
        select(
            id(DialogPart::Tool, dialog_id),
            "Agent",
            catalog
                .tools
                .iter()
                .map(|t| (t.name.clone(), t.id.clone()))
                .collect(),
            Some(&tool.id),
        ),
        select(
            id(DialogPart::Model, dialog_id),
            "Model",
            tool.models.iter().map(|m| (m.clone(), m.clone())).collect(),
            input.model.as_deref(),
        ),
    ];
    if tool.capabilities.effort {
        let default = input
            .model
            .as_deref()
            .map(|m| tool.default_effort(m).as_str());
        let efforts = ["none", "low", "medium", "high"]
            .iter()
            .map(|e| match Some(*e) == default {
                true => (format!("{e} (the model's default)"), e.to_string()),
                false => (e.to_string(), e.to_string()),
            })
            .collect();
        rows.push(select(
            id(DialogPart::Effort, dialog_id),
            "Thinking effort",
            efforts,
            input.effort.as_deref(),
        ));
    }
    rows.push(CreateActionRow::Buttons(vec![CreateButton::new(id(
        DialogPart::Open,
        dialog_id,
    ))
    .label("Write the prompt…")
    .style(ButtonStyle::Primary)]));
    CreateInteractionResponseMessage::new()
        .content("Choose the agent, then write the prompt.")
        .components(rows)
        .ephemeral(true)
        .allowed_mentions(CreateAllowedMentions::new())
}

/// A select was changed: remember it; a new tool resets the model to its default, and a new
/// model the effort to the model's default.
pub fn choose(
    dialogs: &Dialogs,
    catalog: &Catalog,
    part: DialogPart,
    id: &str,
    press: &ComponentInteraction,
) -> Option<Dialog> {
    let ComponentInteractionDataKind::StringSelect { values } = &press.data.kind else {
        return dialogs.get(id);
    };
    let value = values.first()?.clone();
    dialogs.update(id, |input| match part {
        DialogPart::Tool => {
            if let Some(tool) = catalog.tool(&value) {
                input.model = Some(tool.default_model().to_string());
                input.effort = Some(tool.default_effort(tool.default_model()).to_string());
            }
            input.tool = Some(value);
        }
        DialogPart::Model => {
            if let Some(tool) = input.tool.as_deref().and_then(|t| catalog.tool(t)) {
                input.effort = Some(tool.default_effort(&value).to_string());
            }
            input.model = Some(value);
        }
        DialogPart::Effort => input.effort = Some(value),
        DialogPart::Open | DialogPart::Form => {}
    })
}

/// The modal: the prompt as a paragraph, and the resources pre-filled with the defaults.
pub fn modal(catalog: &Catalog, dialog_id: &str, dialog: &Dialog) -> CreateInteractionResponse {
    let input = &dialog.input;
    let limits = catalog.limits;
    let text = |custom: &str, label: String, value: Option<String>| {
        let mut field = CreateInputText::new(InputTextStyle::Short, label, custom).required(false);
        if let Some(value) = value {
            field = field.value(value);
        }
        CreateActionRow::InputText(field)
    };
    let prompt = CreateInputText::new(
        InputTextStyle::Paragraph,
        "What should the agent do?",
        "prompt",
    )
    .required(true)
    .max_length(4000)
    .value(input.prompt.clone().unwrap_or_default());
    CreateInteractionResponse::Modal(
        CreateModal::new(id(DialogPart::Form, dialog_id), "Launch").components(vec![
            CreateActionRow::InputText(prompt),
            text(
                "memory_mb",
                format!(
                    "Memory MB ({}–{})",
                    limits.memory_mb.min, limits.memory_mb.max
                ),
                Some(
                    input
                        .memory_mb
                        .unwrap_or(limits.memory_mb.default as i64)
                        .to_string(),
                ),
            ),
            text(
                "cpus",
                format!("CPUs ({}–{})", limits.cpus.min, limits.cpus.max),
                Some(input.cpus.unwrap_or(limits.cpus.default as i64).to_string()),
            ),
            text(
                "timeout_minutes",
                format!(
                    "Timeout in minutes ({}–{})",
                    limits.timeout_ms.min.div_ceil(60_000),
                    limits.timeout_ms.max / 60_000
                ),
                Some(
                    input
                        .timeout
                        .clone()
                        .unwrap_or_else(|| (limits.timeout_ms.default / 60_000).to_string())
                        .trim_end_matches('m')
                        .to_string(),
                ),
            ),
            text(
                "template",
                "Template (empty: the tool's default)".into(),
                input.template.clone(),
            ),
        ]),
    )
}

/// The `prompt` field of a submitted form (empty when there is none).
pub fn submitted_prompt(modal: &ModalInteraction) -> String {
    let mut input = LaunchInput::default();
    submitted(modal, &mut input);
    input.prompt.unwrap_or_default()
}

/// Reads the modal's fields into the launch input. Numbers that are not numbers are kept as an
/// out-of-range value so validation names the field.
pub fn submitted(modal: &ModalInteraction, input: &mut LaunchInput) {
    for row in &modal.data.components {
        for component in &row.components {
            let serenity::ActionRowComponent::InputText(field) = component else {
                continue;
            };
            let value = field.value.clone().unwrap_or_default();
            let value = value.trim();
            let number = || value.parse::<i64>().ok().or(Some(-1));
            match field.custom_id.as_str() {
                "prompt" => input.prompt = Some(value.to_string()),
                "memory_mb" if !value.is_empty() => input.memory_mb = number(),
                "cpus" if !value.is_empty() => input.cpus = number(),
                "timeout_minutes" if !value.is_empty() => input.timeout = Some(format!("{value}m")),
                "template" => input.template = Some(value.to_string()).filter(|t| !t.is_empty()),
                _ => {}
            }
        }
    }
}
