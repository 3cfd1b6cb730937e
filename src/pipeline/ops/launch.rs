//! Launching: what was asked, checked field by field and recorded, or refused with what to fix;
//! and the requests of Retry and Follow up, built from the launch they repeat or continue.

use std::fmt;

use super::Ops;
use crate::catalog::{FollowUp, LaunchInput, LaunchRequest, ValidationErrors};
use crate::pipeline::scan::ScanInput;
use crate::pipeline::{LaunchError, LaunchOrigin, Prepared};
use crate::store::{SandboxRecord, StoreError};

/// What a front end asks to launch.
#[derive(Debug)]
pub enum LaunchAsk {
    /// A launch as typed: every field is checked.
    Input(LaunchInput),
    /// An issue scan as typed.
    Scan(ScanInput),
    /// A request checked before: a retry, a follow-up, or the terminal's (checked first for
    /// `--dry-run`).
    Request(LaunchRequest),
}

/// Why a launch was not recorded, in a form the person can act on: shown as written, never as
/// an internal error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Fields to correct, each by its name (front ends show the name their people type).
    Fields(ValidationErrors),
    /// A sentence to show as written.
    Said(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Fields(errors) => write!(f, "{errors}"),
            Refusal::Said(text) => f.write_str(text),
        }
    }
}

impl Ops {
    /// The validate and record phases of a launch: the prepared launch, ready to run, or the
    /// refusal. Nothing is recorded when it is refused.
    pub async fn launch(
        &self,
        ask: LaunchAsk,
        origin: &LaunchOrigin,
    ) -> Result<Result<Prepared, Refusal>, StoreError> {
        let checked = match ask {
            LaunchAsk::Input(input) => input.validate(&self.catalog, self.allow_local_repos),
            LaunchAsk::Scan(input) => input.validate(&self.catalog, self.allow_local_repos),
            LaunchAsk::Request(request) => Ok(request),
        };
        let request = match checked {
            Ok(request) => request,
            Err(errors) => return Ok(Err(Refusal::Fields(errors))),
        };
        match self.launcher.prepare(request, origin).await {
            Ok(prepared) => Ok(Ok(prepared)),
            Err(LaunchError::Invalid(message)) => Ok(Err(Refusal::Said(message))),
            // A cap reached as the launch was recorded is an answer, not a failure.
            Err(LaunchError::Store(StoreError::AtCapacity(cap))) => {
                Ok(Err(Refusal::Said(cap.to_string())))
            }
            Err(LaunchError::Store(e)) => Err(e),
        }
    }

    /// What Retry launches: the earlier launch's request again, with its variables.
    pub async fn retry(&self, record: &SandboxRecord) -> Result<LaunchRequest, StoreError> {
        let mut request = record.request.clone();
        request.env = self.store().sandbox_env(record.id).await?;
        Ok(request)
    }

    /// What Follow up launches: the earlier launch's request with the new prompt, on its branch,
    /// resuming the agent's session where the CLI can.
    pub async fn follow_up(
        &self,
        record: &SandboxRecord,
        prompt: &str,
    ) -> Result<Result<LaunchRequest, Refusal>, StoreError> {
        let (Some(branch), Some(base_branch)) = (record.branch.clone(), record.base_branch.clone())
        else {
            return Ok(Err(Refusal::Said(
                "That launch never got a branch to continue.".into(),
            )));
        };
        if prompt.trim().is_empty() {
            return Ok(Err(Refusal::Said("The follow-up needs a prompt.".into())));
        }
        let on = FollowUp {
            of: Some(record.id),
            branch,
            base_branch,
            session_id: record.session_id.clone(),
        };
        let request = LaunchRequest {
            prompt: prompt.to_string(),
            ..self.retry(record).await?
        };
        Ok(Ok(continuing(request, on)))
    }
}

/// A launch that continues on an existing branch where an earlier one left it: a Follow up, and
/// every workflow step (each starts from the branch as the previous step left it).
pub fn continuing(request: LaunchRequest, on: FollowUp) -> LaunchRequest {
    LaunchRequest {
        follow_up: Some(on),
        ..request
    }
}
