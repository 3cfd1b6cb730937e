//! The end of a launch: the finish phase (the work committed, pushed and published, learnings and
//! the agent's session kept; or a read-only launch's answer recorded), then the terminal status with
//! the result, and the sandbox removed.

use std::time::Duration;

use super::git::push_summary;
use super::publish::Links;
use super::push::Pushed;
use super::{answers, count, Ending, Launch, Launcher};
use crate::agent::{AgentResult, LEARNINGS_FILE};
use crate::model::{Phase, SandboxStatus};
use crate::pipeline::events::ProgressEvent;
use crate::sandbox::SandboxError;
use crate::store::{Finish, SandboxRecord};

/// The most of a learnings file read out of a sandbox.
const MAX_LEARNINGS_BYTES: u64 = 64 * 1024;

impl Launcher {
    /// The finish phase. A push refused by the check before it ends the launch with the reason,
    /// its commits kept in CodeCourier's repository.
    pub(super) async fn finish(&self, launch: &mut Launch<'_>) -> Result<(), Ending> {
        let (commits, pushed, links, refusal) = self
            .phase(launch, Phase::Finish, async {
                if launch.form.is_some() {
                    let detail = self.finish_read_only(launch).await?;
                    return Ok(((Vec::new(), None, Links::default(), None), Ok(detail)));
                }
                let Pushed {
                    commits,
                    pushed,
                    refusal,
                } = self.commit_and_push(launch).await?;
                let learned = self.save_learnings(launch).await;
                self.save_session(launch).await;
                if let Some(refusal) = refusal {
                    let detail = Err(refusal.clone());
                    return Ok(((commits, pushed, Links::default(), Some(refusal)), detail));
                }
                let mut detail = push_summary(&commits, &launch.branch);
                let links = self.publish(launch, &commits).await;
                if let Some(note) = &links.note {
                    detail.push_str(&format!("; {note}"));
                }
                if learned > 0 {
                    detail.push_str(&format!("; {}", count(learned, "new learning")));
                }
                Ok(((commits, pushed, links, None), Ok(detail)))
            })
            .await?;
        launch.commits = commits;
        launch.pushed = pushed;
        launch.links = links;
        match refusal {
            Some(error) => Err(Ending::Failed {
                phase: Phase::Finish,
                error,
            }),
            None => Ok(()),
        }
    }

    /// Reads what the agent wrote to the learnings file and stores it on the project. Returns how
    /// many learnings were new.
    pub(super) async fn save_learnings(&self, launch: &Launch<'_>) -> usize {
        let Some(handle) = launch.handle.as_ref() else {
            return 0;
        };
        // Bounded, and never through a link: the file is the agent's to make.
        let Ok(bytes) = self
            .provider
            .read_file(handle, LEARNINGS_FILE, MAX_LEARNINGS_BYTES)
            .await
        else {
            return 0;
        };
        let text = launch.redactor.redact(&String::from_utf8_lossy(&bytes));
        if text.trim().is_empty() {
            return 0;
        }
        self.store
            .add_learnings(launch.project.id, &text)
            .await
            .unwrap_or(0)
    }

    /// Records how the launch ended (its terminal status, result, commits and links), ends a
    /// scan's issue session with it, removes the sandbox, and returns the final record.
    pub(super) async fn conclude(
        &self,
        launch: &mut Launch<'_>,
        outcome: Result<(), Ending>,
    ) -> anyhow::Result<SandboxRecord> {
        // The grant ends here, and the result shows what the gateway counted to the last response.
        let budget_reached = self.settle_metering(launch).await;
        let launch = &*launch;
        let id = launch.id;
        let redactor = &launch.redactor;
        let mut finish = Finish {
            duration_ms: Some(launch.started.elapsed().as_millis() as i64),
            commits: launch.commits.clone(),
            pushed: launch.pushed,
            pr_url: launch.links.pr_url.clone(),
            compare_url: launch.links.compare_url.clone(),
            result: launch.agent.as_ref().map(|a| AgentResult {
                // A checked structured answer is the result, whatever text came with it.
                text: redactor.redact(
                    match (&a.answer, &a.result.structured_output) {
                        (Some(_), Some(_)) => answers::raw_answer(&a.result),
                        _ => a.result.text.clone(),
                    }
                    .as_str(),
                ),
                ..a.result.clone()
            }),
            ..Default::default()
        };
        let status = match &outcome {
            // Reached while the agent ran: its work so far was saved by the finish phase.
            Ok(()) if budget_reached.is_some() => {
                finish.failed_phase = Some(Phase::Agent);
                finish.error = budget_reached;
                SandboxStatus::Stopped
            }
            Ok(()) => match launch.agent.as_ref().and_then(|a| a.failure.as_deref()) {
                None => SandboxStatus::Completed,
                Some(error) => {
                    finish.failed_phase = Some(Phase::Agent);
                    finish.error = Some(redactor.redact(error));
                    SandboxStatus::Failed
                }
            },
            Err(ending) => {
                let (phase, status, message) = self.ending_words(launch, ending);
                self.close_open_phase(launch, phase, &message).await;
                finish.failed_phase = Some(phase);
                finish.error = Some(message);
                status
            }
        };
        let final_status = self.store.finish(id, status, &finish).await?;
        if let (Some(_), Some(session)) = (launch.request.scan_task(), launch.issue_session) {
            self.finish_issue_session(
                session,
                final_status,
                &finish,
                launch.agent.as_ref(),
                redactor,
            )
            .await?;
        }
        // The end is recorded before the sandbox goes: a recovery running meanwhile in another
        // process sees a finished record, not a running one whose sandbox has vanished.
        self.remove_sandbox(launch).await?;
        self.record_dropped_events(launch).await;
        let event = ProgressEvent::Status {
            status: final_status,
        };
        self.persist(id, &event).await;
        launch.sink.emit(id, &event);
        self.store
            .get_sandbox(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("sandbox {id} disappeared from the database"))
    }

    /// The phase a launch ended in, its status, and the message saying why (redacted).
    fn ending_words(&self, launch: &Launch<'_>, ending: &Ending) -> (Phase, SandboxStatus, String) {
        match ending {
            Ending::Failed { phase, error } => {
                (*phase, SandboxStatus::Failed, launch.redactor.redact(error))
            }
            Ending::TimedOut { phase } => (
                *phase,
                SandboxStatus::TimedOut,
                format!(
                    "the sandbox's time limit of {} ran out during {phase}",
                    humantime::format_duration(Duration::from_millis(
                        launch.request.resources.timeout_ms
                    ))
                ),
            ),
            Ending::Stopped { phase } => (
                *phase,
                SandboxStatus::Stopped,
                format!("stopped during {phase}"),
            ),
        }
    }

    /// Kills the launch's sandbox, as its record names it (one that is already gone is fine).
    async fn remove_sandbox(&self, launch: &Launch<'_>) -> anyhow::Result<()> {
        let id = launch.id;
        let provider_id = self
            .store
            .get_sandbox(id)
            .await?
            .and_then(|r| r.provider_sandbox_id);
        if let Some(provider_id) = &provider_id {
            if let Err(e) = self.provider.kill(provider_id).await {
                if !matches!(e, SandboxError::NotFound(_)) {
                    tracing::warn!(sandbox = %id, error = %e, "could not clean up the sandbox");
                }
            }
        }
        Ok(())
    }
}
