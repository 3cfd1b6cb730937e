//! A launch's metered spend: the meter its grant carries at the gateway, each response written to
//! the record as it ends (so the spend survives a crash), the spend shown as it grows, and the end
//! a reached budget makes.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::{Launch, Launcher};
use crate::catalog::LaunchRequest;
use crate::gateway::{Meter, Spend};
use crate::pipeline::events::ProgressEvent;

/// How long the end of a launch waits for its last responses to be recorded.
const SETTLE: Duration = Duration::from_secs(10);

/// The meter of a launch whose model traffic goes through CodeCourier's gateway, and the task
/// that records what it counts.
pub(super) struct Metering {
    pub(super) meter: Meter,
    recorder: JoinHandle<()>,
}

impl Launcher {
    /// A meter for the launch, priced from the catalog and held to the launch's budget.
    pub(super) fn start_metering(&self, launch: &Launch<'_>) -> Metering {
        let (meter, mut responses) = Meter::new(self.catalog.prices.clone(), launch.request.budget);
        let (store, id) = (self.store.clone(), launch.id);
        let recorder = tokio::spawn(async move {
            while let Some(response) = responses.recv().await {
                let added = store
                    .add_model_usage(
                        id,
                        response.api.path_segment(),
                        &response.model,
                        &response.usage,
                    )
                    .await;
                if let Err(e) = added {
                    tracing::warn!(sandbox = %id, error = %e, "could not record metered usage");
                }
            }
        });
        Metering { meter, recorder }
    }

    /// Ends the launch's grant and waits until what its last responses counted is recorded.
    /// Returns the words of a reached budget.
    pub(super) async fn settle_metering(&self, launch: &mut Launch<'_>) -> Option<String> {
        let metering = launch.access.take()?.end()?;
        let words = metering.meter.reached_words();
        let Metering { meter, recorder } = metering;
        drop(meter);
        // The recorder ends once the gateway's streams of this launch (cut by the revoke) let go
        // of the meter.
        if tokio::time::timeout(SETTLE, recorder).await.is_err() {
            tracing::warn!(sandbox = %launch.id, "metered usage still being recorded after the launch ended");
        }
        words
    }

    /// Tells the front ends what the launch has spent so far.
    pub(super) fn show_spend(&self, launch: &Launch<'_>, spend: &Spend) {
        launch
            .sink
            .emit(launch.id, &spend_event(launch.request, spend));
    }
}

fn spend_event(request: &LaunchRequest, spend: &Spend) -> ProgressEvent {
    ProgressEvent::Spend {
        cost_usd: spend.cost_usd,
        tokens: spend.tokens,
        unpriced: spend.unpriced.clone(),
        budget: request.budget,
    }
}
