//! Workflow jobs — a run or a chain — as front ends act on them: where one stands, stopping it,
//! ending one that cannot be followed, and whether another process drives it. One this process
//! drives is stopped through its token; one another process drives is ended in its record, which
//! that process notices at its next heartbeat, stopping its current step.

use super::Ops;
use crate::ids::JobId;
use crate::store::{JobEnd, JobMeta, JobStatus, StoreError};

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
    pub status: JobStatus,
    pub meta: JobMeta,
}

impl Ops {
    /// A job's status and who started it; `None` when it is not in the records.
    pub async fn job_state(&self, job: JobId) -> Result<Option<JobState>, StoreError> {
        Ok(self.store().get_job(job).await?.map(|r| JobState {
            status: r.status,
            meta: r.meta,
        }))
    }

    /// Stops a workflow run or chain: `by` says who and from where, for the record.
    pub async fn stop_job(&self, job: JobId, by: &str) -> Result<JobStop, StoreError> {
        let running = self
            .job_state(job)
            .await?
            .is_some_and(|s| s.status == JobStatus::Running);
        if !running {
            return Ok(JobStop::AlreadyEnded);
        }
        if let Some(token) = self.running.token_of_job(job) {
            token.cancel();
            return Ok(JobStop::Stopping);
        }
        self.end_job(job, JobStatus::Stopped, &format!("stopped by {by}"))
            .await?;
        Ok(JobStop::Stopped)
    }

    /// Ends a job that was recorded but cannot be followed (its thread could not open), so it is
    /// not left running unseen.
    pub async fn abandon_job(&self, job: JobId, why: &str) -> Result<(), StoreError> {
        self.end_job(job, JobStatus::Failed, why).await
    }

    async fn end_job(&self, job: JobId, status: JobStatus, why: &str) -> Result<(), StoreError> {
        let end = JobEnd::new(status, Some(why.to_string()));
        self.store().finish_job(job, &end).await?;
        Ok(())
    }

    /// Who drives a running job right now, when that is another process that is still alive: a
    /// job to leave alone. `None` when nobody does (it can be resumed) or it is not running.
    pub async fn driven_elsewhere(&self, job: JobId) -> anyhow::Result<Option<String>> {
        let Some(state) = self.job_state(job).await? else {
            return Ok(None);
        };
        if state.status != JobStatus::Running {
            return Ok(None);
        }
        let stale = self.runner.resumable().await?.iter().any(|j| j.id() == job);
        Ok((!stale).then(|| {
            state
                .meta
                .runner
                .unwrap_or_else(|| "another CodeCourier".into())
        }))
    }
}
