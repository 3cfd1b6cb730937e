//! Forms (Discord modals) a command opens and waits for. Like `poise::execute_modal`, except that
//! it listens for the submit before the form goes out: poise starts its collector only once the
//! modal was sent, so a quick submit could be missed, and nothing on the wire says when it listens.

use std::time::Duration;

use futures_util::StreamExt;
use poise::serenity_prelude as serenity;

use super::{Data, Error};

/// How long a person has to fill a form.
const FILL_IN: Duration = Duration::from_secs(3600);

/// Opens `M` (pre-filled with `defaults`) in answer to the command and waits for its submit;
/// `None` when nobody submitted it in time.
pub async fn ask<M: poise::Modal>(
    app: poise::ApplicationContext<'_, Data, Error>,
    defaults: Option<M>,
) -> Result<Option<M>, Error> {
    // poise's naming: the form is called after the interaction that opened it.
    let custom_id = app.interaction.id.to_string();
    let wanted = custom_id.clone();
    // The form is its opener's: a submit from anyone else is not this form's answer.
    let opener = app.interaction.user.id;
    let mut submits = serenity::ModalInteractionCollector::new(app.serenity_context())
        .filter(move |submit| submit.data.custom_id == wanted && submit.user.id == opener)
        .timeout(FILL_IN)
        .stream();
    app.interaction
        .create_response(app.http(), M::create(defaults, custom_id))
        .await?;
    app.has_sent_initial_response
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let Some(submit) = submits.next().await else {
        return Ok(None);
    };
    submit
        .create_response(app.http(), serenity::CreateInteractionResponse::Acknowledge)
        .await?;
    Ok(Some(
        M::parse(submit.data.clone()).map_err(anyhow::Error::msg)?,
    ))
}
