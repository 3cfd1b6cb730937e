//! Workflow jobs — a run or a chain — as front ends act on them: where one stands, stopping it,
//! ending one that cannot be followed, and whether another process drives it. One this process
//! drives is stopped through its token; one another process drives is ended in its record, which
//! that process notices at its next heartbeat, stopping its current step.

use std::fmt;

use super::Ops;
use crate::ids::{WorkChainId, WorkflowRunId};
use crate::store::{RunMeta, RunStatus, StoreError};

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
        if let Some(token) = self.running.token_of_job(job) {
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

    /// Who drives a running job right now, when that is another process that is still alive: a
    /// job to leave alone. `None` when nobody does (it can be resumed) or it is not running.
    pub async fn driven_elsewhere(&self, job: Job) -> anyhow::Result<Option<String>> {
        let Some(state) = self.job_state(job).await? else {
            return Ok(None);
        };
        if state.status != RunStatus::Running {
            return Ok(None);
        }
        let (runs, chains) = self.runner.resumable().await?;
        let stale = match job {
            Job::Run(id) => runs.iter().any(|r| r.id == id),
            Job::Chain(id) => chains.iter().any(|c| c.id == id),
        };
        Ok((!stale).then(|| {
            state
                .meta
                .runner
                .unwrap_or_else(|| "another CodeCourier".into())
        }))
    }
}
