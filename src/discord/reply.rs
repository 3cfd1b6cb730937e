//! Answers to one person: ephemeral replies with mentions off and Discord's length respected;
//! refusals (what the person can fix) shown as written; internal errors logged under a short
//! reference, which is all the person sees of them.

use poise::serenity_prelude as serenity;
use serenity::{
    CreateAllowedMentions, CreateInteractionResponse, CreateInteractionResponseMessage,
};

use super::render::{cut, inert, MAX_CONTENT};
use super::{Context, Error};
use crate::catalog::FieldError;
use crate::pipeline::ops::Refusal;

/// An answer only the person who asked sees.
pub async fn say_ephemeral(ctx: Context<'_>, text: impl Into<String>) -> Result<(), Error> {
    let text = text.into();
    ctx.send(
        poise::CreateReply::default()
            .content(cut(&text, MAX_CONTENT))
            .ephemeral(true)
            .allowed_mentions(CreateAllowedMentions::new()),
    )
    .await?;
    Ok(())
}

/// The same, as the response to a button or a form.
pub fn ephemeral(text: impl Into<String>) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(ephemeral_message(text))
}

pub fn ephemeral_message(text: impl Into<String>) -> CreateInteractionResponseMessage {
    CreateInteractionResponseMessage::new()
        .content(cut(&text.into(), MAX_CONTENT))
        .ephemeral(true)
        .allowed_mentions(CreateAllowedMentions::new())
}

/// Logs an internal error under a fresh reference and returns what the person is told: that it
/// failed on our side, and the reference the operator finds in the log. `what` names the command
/// or press, for the log.
pub fn failed_on_our_side(error: &anyhow::Error, what: &str) -> String {
    let reference = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    tracing::error!(reference, what, error = %format!("{error:#}"), "internal error");
    on_our_side(&reference)
}

fn on_our_side(reference: &str) -> String {
    format!("That failed on our side (ref {reference}). Try again; if it keeps failing, give the operator the ref.")
}

/// Discord's name for a launch field (the terminal's flags differ).
fn option_name(field: &str) -> &str {
    match field {
        "timeout" => "timeout_minutes",
        "max_cost_usd" => "budget_usd",
        other => other,
    }
}

/// Fields to correct, by the option names people type: "That launch is not valid: …".
pub fn field_errors(what: &str, errors: &[FieldError]) -> String {
    let mut text = format!("That {what} is not valid:\n");
    for e in errors {
        let message = e.message.replace('"', "`");
        text.push_str(&format!(
            "• **{}**: {}\n",
            option_name(e.field),
            inert(&message)
        ));
    }
    cut(&text, MAX_CONTENT)
}

/// A launch's or scan's refusal as the person who asked sees it; without a project in the channel
/// a bad repository also says how to get one.
pub fn refusal(what: &str, refusal: &Refusal, has_project: bool) -> String {
    match refusal {
        Refusal::Fields(errors) => {
            let mut text = field_errors(what, &errors.0);
            if errors.field("repo").is_some() && !has_project {
                text.push_str("\nThis channel has no project: pass `repo`, or a server manager can run `/project setup`.");
            }
            text
        }
        Refusal::Said(text) => inert(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ValidationErrors;

    #[test]
    fn an_internal_error_shows_only_a_reference() {
        let error = anyhow::anyhow!("database is locked")
            .context("token sk-ant-secret-value rejected @everyone");
        let text = failed_on_our_side(&error, "launch");
        let reference = text
            .strip_prefix("That failed on our side (ref ")
            .and_then(|rest| rest.split_once(')'))
            .map(|(r, _)| r)
            .unwrap_or_else(|| panic!("no reference in {text:?}"));
        assert_eq!(reference.len(), 8, "{text}");
        assert!(reference.chars().all(|c| c.is_ascii_hexdigit()), "{text}");
        for leaked in ["database", "sk-ant", "@everyone"] {
            assert!(!text.contains(leaked), "{leaked} shown: {text}");
        }
        assert_ne!(
            failed_on_our_side(&error, "launch"),
            text,
            "each failure has its own reference"
        );
    }

    #[test]
    fn a_refusal_is_shown_as_written_with_discords_option_names() {
        let fields = Refusal::Fields(ValidationErrors(vec![
            FieldError {
                field: "timeout",
                message: "must be at most 240 minutes".into(),
            },
            FieldError {
                field: "repo",
                message: "\"x\" is not owner/name @everyone".into(),
            },
        ]));
        assert_eq!(
            refusal("scan", &fields, false),
            "That scan is not valid:\n• **timeout_minutes**: must be at most 240 minutes\n• **repo**: `x` is not owner/name @\u{200b}everyone\n\nThis channel has no project: pass `repo`, or a server manager can run `/project setup`."
        );
        assert!(!refusal("launch", &fields, true).contains("no project"));
        assert_eq!(
            refusal(
                "launch",
                &Refusal::Said("No key for ```claude```".into()),
                true
            ),
            "No key for ʼʼʼclaudeʼʼʼ"
        );
    }
}
