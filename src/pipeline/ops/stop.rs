//! Stopping a sandbox or a workflow job (a run or a chain). What this process runs is cancelled
//! through its token, and its launcher or runner records the end as it winds down; what another
//! process runs is ended here: a sandbox through its provider, a job in its record, which the
//! process driving it notices at its next heartbeat and stops its current step.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::Ops;
use crate::ids::{SandboxId, WorkChainId, WorkflowRunId};
use crate::pipeline::SandboxStatus;
use crate::sandbox::SandboxError;
use crate::store::{Finish, RunMeta, RunStatus, SandboxRecord, StoreError};

/// A workflow run or a work chain: what a workflow thread follows and its Stop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    Run(WorkflowRunId),
    Chain(WorkChainId),
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Job::Run(id) => write!(f, "workflow run {id}"),
            Job::Chain(id) => write!(f, "work chain {id}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Sandbox(SandboxId),
    Job(Job),
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

    pub fn job(&self, job: Job) -> Tracked {
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

/// How a job's stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStop {
    /// It is not running (ended, or not in the records).
    AlreadyEnded,
    /// It runs in this process: cancelled; the current step's sandbox ends, then the job.
    Stopping,
    /// Another process drives it (or nobody does any more): recorded as stopped; a live driver
    /// stops its current step at its next heartbeat.
    Stopped,
}

/// Who started a job and where it stands: what a front end needs to decide who may stop it.
#[derive(Debug, Clone)]
pub struct JobState {
    pub status: RunStatus,
    pub meta: RunMeta,
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

    /// A job's status and who started it; `None` when it is not in the records.
    pub async fn job_state(&self, job: Job) -> Result<Option<JobState>, StoreError> {
        Ok(match job {
            Job::Run(id) => self.store().get_run(id).await?.map(|r| JobState {
                status: r.status,
                meta: r.meta,
            }),
            Job::Chain(id) => self.store().get_chain(id).await?.map(|c| JobState {
                status: c.status,
                meta: c.meta,
            }),
        })
    }

    /// Stops a workflow run or chain: `by` says who and from where, for the record.
    pub async fn stop_job(&self, job: Job, by: &str) -> Result<JobStop, StoreError> {
        let running = self
            .job_state(job)
            .await?
            .is_some_and(|s| s.status == RunStatus::Running);
        if !running {
            return Ok(JobStop::AlreadyEnded);
        }
        if let Some(token) = self.running.token(Key::Job(job)) {
            token.cancel();
            return Ok(JobStop::Stopping);
        }
        self.end_job(job, RunStatus::Stopped, &format!("stopped by {by}"))
            .await?;
        Ok(JobStop::Stopped)
    }

    /// Ends a job that was recorded but cannot be followed (its thread could not open), so it is
    /// not left running unseen.
    pub async fn abandon_job(&self, job: Job, why: &str) -> Result<(), StoreError> {
        self.end_job(job, RunStatus::Failed, why).await
    }

    async fn end_job(&self, job: Job, status: RunStatus, why: &str) -> Result<(), StoreError> {
        match job {
            Job::Run(id) => {
                self.store()
                    .finish_run(id, status, Some(why), &[], None)
                    .await?;
            }
            Job::Chain(id) => {
                self.store()
                    .finish_chain(id, status, Some(why), None)
                    .await?
            }
        }
        Ok(())
    }
}
