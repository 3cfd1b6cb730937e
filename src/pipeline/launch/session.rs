//! The agent's session archive: kept encrypted after a launch whose tool can resume a session, and
//! put back in a follow-up's new sandbox so the conversation continues.

use super::{Ending, Launch, Launcher};
use crate::pipeline::Phase;
use crate::sandbox::{run_captured, Exec, HOME};
use crate::secret::Secret;

/// Session archives beyond this (base64 bytes) are not kept: a follow-up then starts afresh.
const MAX_SESSION_ARCHIVE: usize = 32 * 1024 * 1024;
/// Where a restored archive is unpacked from.
const ARCHIVE_PATH: &str = "/home/user/.codecourier/session.tgz";

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
        match run_captured(self.provider.as_ref(), handle, &exec).await {
            Ok(out)
                if out.status.success()
                    && !out.stdout.is_empty()
                    && out.stdout.len() < MAX_SESSION_ARCHIVE =>
            {
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
        self.provider
            .write_file(launch.handle(), ARCHIVE_PATH, &bytes, 0o600)
            .await
            .map_err(|e| Ending::from_sandbox(Phase::ToolSetup, e))?;
        let mut unpack = Exec::script(format!(
            "tar -xzf {ARCHIVE_PATH} -C /home/user && rm {ARCHIVE_PATH}"
        ));
        unpack.cwd = Some(HOME.into());
        self.sh(
            launch,
            Phase::ToolSetup,
            "restoring the agent session",
            unpack,
        )
        .await?;
        Ok(Some(session.clone()))
    }
}
