//! Recovery: records left unfinished by a CodeCourier that exited (crash, kill, reboot) get their
//! final status, so every run ends with a word on what happened.

use std::collections::BTreeMap;

use chrono::Utc;

use crate::ids::SandboxId;
use crate::model::scan::IssueSessionStatus;
use crate::model::SandboxStatus;
use crate::sandbox::SandboxProvider;
use crate::store::{Finish, Store};

/// A record with no sandbox yet is left alone this long: its launcher may still be validating.
const GRACE_WITHOUT_SANDBOX: chrono::Duration = chrono::Duration::minutes(10);

/// Ends every unfinished sandbox whose process is gone. Returns the ids it ended.
pub async fn recover(
    store: &Store,
    provider: &dyn SandboxProvider,
) -> anyhow::Result<Vec<SandboxId>> {
    let mut ended = Vec::new();
    for record in store.unfinished_sandboxes().await? {
        let alive = match &record.provider_sandbox_id {
            Some(provider_id) => {
                let filter =
                    BTreeMap::from([("codecourier_sandbox_id".to_string(), record.id.to_string())]);
                provider
                    .list(&filter)
                    .await
                    .map(|found| {
                        found
                            .iter()
                            .any(|s| &s.provider_id == provider_id && s.alive)
                    })
                    // Cannot tell (provider unreachable): leave it for the next check.
                    .unwrap_or(true)
            }
            None => Utc::now() - record.created_at < GRACE_WITHOUT_SANDBOX,
        };
        if alive {
            continue;
        }
        if let Some(provider_id) = &record.provider_sandbox_id {
            let _ = provider.kill(provider_id).await;
        }
        let phase = record.current_phase;
        let error = format!(
            "CodeCourier restarted during the run (while {}{}); its work was not saved. Launch it again.",
            record.status,
            phase.map(|p| format!(", in {p}")).unwrap_or_default()
        );
        store
            .finish(
                record.id,
                SandboxStatus::Failed,
                &Finish {
                    failed_phase: phase,
                    error: Some(error.clone()),
                    ..Default::default()
                },
            )
            .await?;
        // A scan ended this way ends its session, with the same reason.
        if let (Some(_), Some(session)) = (record.request.scan_task(), &record.issue_session_id) {
            if let Ok(session) = session.parse() {
                store
                    .finish_issue_session(session, IssueSessionStatus::Failed, Some(&error), None)
                    .await?;
            }
        }
        ended.push(record.id);
    }
    // A scan whose launcher stopped between ending the sandbox and ending its session.
    store.end_orphaned_issue_sessions().await?;
    Ok(ended)
}
