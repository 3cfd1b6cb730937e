//! A work chain's own part: its issues, each a workflow run on the chain's branch, in order;
//! it stops at the first that fails unless told to go on, and ends with one pull request.

use std::fmt::Write as _;

use tokio_util::sync::CancellationToken;

use super::budget::JobBudget;
use super::events::{WorkflowEvent, WorkflowSink};
use super::{env_scope, Driving, PullRequest, Runner};
use crate::ids::WorkflowRunId;
use crate::pipeline::naming::pull_request_title;
use crate::store::{ChainWork, JobEnd, JobOwner, JobRecord, JobStatus, NewJob, NewWork};

impl Runner {
    /// Runs the chain's issues that have not ended yet, each as a run driven to its end.
    pub(super) async fn run_items(
        &self,
        on: &Driving<'_>,
        chain: &ChainWork,
        sink: &dyn WorkflowSink,
        stop: CancellationToken,
    ) -> anyhow::Result<JobEnd> {
        let job = on.record;
        let owner = JobOwner {
            project_id: job.project_id,
            launched_by: &job.meta.launched_by,
            discord: job.meta.discord(),
        };
        let budget = JobBudget::of(job);
        let mut first_failure = None;
        for (position, item) in chain.items.iter().enumerate() {
            let position = position as u32;
            if let Some(budget) = &budget {
                if let Err(spent) = budget.left(self.store()).await? {
                    let left = chain.items.len() as u32 - position;
                    let why = format!("{spent}; {left} of {} issues not run", chain.items.len());
                    return Ok(JobEnd::new(JobStatus::Stopped, Some(why)));
                }
            }
            let run = match chain.run_at(position) {
                Some(run) => run.id(),
                None => {
                    let work = NewWork::Run {
                        id: WorkflowRunId::new(),
                        task: item,
                        branch: Some(on.branch),
                        chain: Some((chain.id, position)),
                    };
                    let run = work.id();
                    self.store()
                        .insert_job(&NewJob {
                            workflow: &job.workflow,
                            repo: &job.repo,
                            base_branch: Some(on.base),
                            owner: &owner,
                            work,
                        })
                        .await?;
                    self.store().put_env(&env_scope(run), on.env).await?;
                    run
                }
            };
            sink.emit(&WorkflowEvent::ItemStarted {
                position,
                title: item.title.clone(),
                run,
            });
            // A run is a job too: driven here, through the same steps as one on its own.
            let record = Box::pin(self.drive(run, sink, stop.clone())).await?;
            match record.status {
                JobStatus::Passed => {}
                JobStatus::Stopped => {
                    let mut why = format!("stopped at issue {} ({})", position + 1, item.title);
                    if let Some(budget) = &budget {
                        if let Err(spent) = budget.left(self.store()).await? {
                            why = format!("{spent}; {why}");
                        }
                    }
                    return Ok(JobEnd::new(JobStatus::Stopped, Some(why)));
                }
                _ => {
                    let why = format!(
                        "issue {} ({}) failed: {}",
                        position + 1,
                        item.title,
                        record.error.as_deref().unwrap_or("failed")
                    );
                    if !chain.continue_on_failure {
                        let error = format!(
                            "{why}; the chain stopped there ({} of {} issues not run)",
                            chain.items.len() as u32 - position - 1,
                            chain.items.len()
                        );
                        return Ok(JobEnd::new(JobStatus::Failed, Some(error)));
                    }
                    first_failure.get_or_insert(why);
                }
            }
        }
        Ok(match first_failure {
            None => JobEnd::new(JobStatus::Passed, None),
            Some(why) => JobEnd::new(JobStatus::Failed, Some(why)),
        })
    }
}

/// The pull request a chain ends with when some issue passed: one, listing every issue and its
/// outcome.
pub(super) fn pull_request(job: &JobRecord, chain: &ChainWork) -> Option<PullRequest> {
    if !chain.runs.iter().any(|r| r.status == JobStatus::Passed) {
        return None;
    }
    let count = chain.items.len();
    let issues = if count == 1 { "issue" } else { "issues" };
    let title = format!("{} ({count} {issues})", pull_request_title(job.title()));
    let mut body = format!(
        "A CodeCourier work chain: {count} {issues} on one branch, each through the `{}` workflow.\n\n",
        job.workflow.name
    );
    for (i, item) in chain.items.iter().enumerate() {
        let outcome = match chain.run_at(i as u32) {
            Some(run) => match run.status {
                JobStatus::Passed => "✅ passed".to_string(),
                JobStatus::Failed => {
                    format!("❌ failed: {}", run.error.as_deref().unwrap_or("failed"))
                }
                JobStatus::Stopped => "🛑 stopped".to_string(),
                JobStatus::Running => "⏳ running".to_string(),
            },
            None => "not run".to_string(),
        };
        let _ = writeln!(body, "{}. **{}** — {outcome}", i + 1, item.title);
    }
    let _ = write!(
        body,
        "\nLaunched by {} via CodeCourier (work chain {}).",
        job.meta.launched_by, chain.id
    );
    Some(PullRequest { title, body })
}
