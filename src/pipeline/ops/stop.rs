//! What runs in this process, each with the token that stops it; and stopping a sandbox. One this
//! process runs is cancelled through its token, and its launcher records the end as it winds
//! down; one another process runs is ended through its provider and recorded here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::Ops;
use crate::ids::{JobId, SandboxId};
use crate::model::SandboxStatus;
use crate::sandbox::SandboxError;
use crate::store::{Finish, SandboxRecord, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Sandbox(SandboxId),
    Job(JobId),
}

/// Launches and jobs running in this process, each with the token that stops it.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<Registry>>);

#[derive(Default)]
struct Registry {
    tokens: HashMap<Key, (u64, CancellationToken)>,
    serial: u64,
}

/// A launch or job registered as running here; forgotten when dropped.
pub struct Tracked {
    key: Key,
    serial: u64,
    token: CancellationToken,
    running: Running,
}

impl Tracked {
    /// The token a stop cancels: hand it to the launcher or the runner.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut registry = self.running.0.lock().expect("lock");
        // Only our own entry: the same job may have been taken up again since.
        if registry
            .tokens
            .get(&self.key)
            .is_some_and(|(serial, _)| *serial == self.serial)
        {
            registry.tokens.remove(&self.key);
        }
    }
}

impl Running {
    pub fn sandbox(&self, id: SandboxId) -> Tracked {
        self.track(Key::Sandbox(id))
    }

    pub fn job(&self, job: JobId) -> Tracked {
        self.track(Key::Job(job))
    }

    fn track(&self, key: Key) -> Tracked {
        let token = CancellationToken::new();
        let mut registry = self.0.lock().expect("lock");
        registry.serial += 1;
        let serial = registry.serial;
        registry.tokens.insert(key, (serial, token.clone()));
        Tracked {
            key,
            serial,
            token,
            running: self.clone(),
        }
    }

    pub(super) fn token_of_job(&self, job: JobId) -> Option<CancellationToken> {
        self.token(Key::Job(job))
    }

    fn token(&self, key: Key) -> Option<CancellationToken> {
        let registry = self.0.lock().expect("lock");
        registry.tokens.get(&key).map(|(_, token)| token.clone())
    }
}

/// How a sandbox's stop went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxStop {
    /// It had already ended, with this status.
    AlreadyEnded(SandboxStatus),
    /// It runs in this process: cancelled, and its launcher records the end.
    Stopping,
    /// Another process runs it (or nobody does any more): its sandbox was ended and its record
    /// says so — or says the end it reached first.
    Stopped(SandboxStatus),
    /// The provider could not end its sandbox. Nothing was recorded, so the record never says
    /// `stopped` while the sandbox runs on, and the person can try again.
    NotStopped(String),
}

impl Ops {
    /// Stops a sandbox: `by` says who and from where ("alice from Discord"), for the record.
    pub async fn stop_sandbox(
        &self,
        record: &SandboxRecord,
        by: &str,
    ) -> Result<SandboxStop, StoreError> {
        if record.status.is_terminal() {
            return Ok(SandboxStop::AlreadyEnded(record.status));
        }
        if let Some(token) = self.running.token(Key::Sandbox(record.id)) {
            token.cancel();
            return Ok(SandboxStop::Stopping);
        }
        if let Some(provider_id) = &record.provider_sandbox_id {
            match self.launcher.provider().kill(provider_id).await {
                Ok(()) | Err(SandboxError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(sandbox = %record.id, error = %e, "could not kill the sandbox");
                    return Ok(SandboxStop::NotStopped(
                        self.launcher.redact(&e.to_string()),
                    ));
                }
            }
        }
        let finish = Finish {
            failed_phase: record.current_phase,
            error: Some(format!("stopped by {by}")),
            ..Default::default()
        };
        let status = self
            .store()
            .finish(record.id, SandboxStatus::Stopped, &finish)
            .await?;
        Ok(SandboxStop::Stopped(status))
    }
}
