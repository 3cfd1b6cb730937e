//! The agent's session archive: kept encrypted after a launch whose tool can resume a session, and
//! put back in a follow-up's new sandbox so the conversation continues.

use super::{Ending, Launch, Launcher};
use crate::model::Phase;
use crate::sandbox::{archive, run_captured_within, Exec, HOME};
use crate::secret::Secret;

/// Session archives beyond this (base64 bytes) are not kept: a follow-up then starts afresh.
const MAX_SESSION_ARCHIVE: usize = 32 * 1024 * 1024;

impl Launcher {
    /// Keeps the agent's session files (Claude Code's config directory) encrypted, so a follow-up
    /// can resume the conversation in a new sandbox.
    pub(super) async fn save_session(&self, launch: &Launch<'_>) {
        if !launch.tool.capabilities.resume_session {
            return;
        }
        let Some(handle) = launch.handle.as_ref() else {
            return;
        };
        let exec = Exec {
            cwd: Some(HOME.into()),
            ..Exec::script("tar -C /home/user -czf - .claude 2>/dev/null | base64 -w0")
        };
        match run_captured_within(self.provider.as_ref(), handle, &exec, MAX_SESSION_ARCHIVE).await
        {
            Ok(out) if out.status.success() && !out.stdout.is_empty() && !out.was_cut() => {
                if let Err(e) = self
                    .store
                    .save_agent_session(launch.id, &Secret::new(out.stdout))
                    .await
                {
                    tracing::warn!(sandbox = %launch.id, error = %e, "could not keep the agent session");
                }
            }
            _ => tracing::info!(sandbox = %launch.id, "no agent session kept"),
        }
    }

    /// For a follow-up: puts the earlier session's files back. Returns the session to resume, or
    /// `None` (a fresh session) when the CLI cannot resume or nothing was kept.
    pub(super) async fn restore_session(
        &self,
        launch: &Launch<'_>,
    ) -> Result<Option<String>, Ending> {
        let Some(follow_up) = &launch.request.follow_up else {
            return Ok(None);
        };
        let Some(session) = &follow_up.session_id else {
            return Ok(None);
        };
        if !launch.tool.capabilities.resume_session {
            return Ok(None);
        }
        let Some(of) = follow_up.of else {
            return Ok(None);
        };
        let archive = match self.store.agent_session(of).await {
            Ok(Some(archive)) => archive,
            _ => return Ok(None),
        };
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            archive.expose().trim(),
        )
        .map_err(|_| Ending::Failed {
            phase: Phase::ToolSetup,
            error: "the kept agent session is damaged".into(),
        })?;
        // Rebuilt on the way in: no entry may point or climb out of the home directory, whatever
        // the earlier agent left in it.
        let dropped =
            archive::restore_tar_gz(self.provider.as_ref(), launch.handle(), HOME, &bytes)
                .await
                .map_err(|e| Ending::from_sandbox(Phase::ToolSetup, e))?;
        if !dropped.is_empty() {
            self.note(
                launch,
                format!(
                    "the kept session had {} entr{} pointing out of the sandbox's home, left out: {}",
                    dropped.len(),
                    if dropped.len() == 1 { "y" } else { "ies" },
                    dropped.join(", ")
                ),
            )
            .await;
        }
        Ok(Some(session.clone()))
    }
}
