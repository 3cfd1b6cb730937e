//! What a launch leaves behind as it goes: each phase's start, end and outcome, status changes,
//! notes and agent events — persisted in the record's event log and sent to the sink, redacted.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::Utc;

use super::{Detail, Ending, Launch, Launcher};
use crate::agent::AgentEvent;
use crate::ids::SandboxId;
use crate::model::{Phase, PhaseOutcome, SandboxStatus};
use crate::pipeline::events::ProgressEvent;
use crate::redact::Redactor;
use crate::store::StoreError;

impl Launcher {
    /// Runs one phase: records its start, its end and outcome, and emits both. The work returns its
    /// value and a detail line; a detail given as `Err` marks the phase failed without ending the
    /// launch.
    pub(super) async fn phase<T>(
        &self,
        launch: &Launch<'_>,
        phase: Phase,
        work: impl Future<Output = Result<(T, Detail), Ending>>,
    ) -> Result<T, Ending> {
        let started = Instant::now();
        self.store
            .start_phase(launch.id, phase)
            .await
            .map_err(|e| Ending::failed(phase)(e.to_string()))?;
        self.emit(launch, ProgressEvent::PhaseStarted { phase })
            .await;
        let result = work.await;
        let redact = |text: &str| launch.redactor.redact(text);
        let (outcome, detail) = match &result {
            Ok((_, Ok(detail))) => (PhaseOutcome::Ok, redact(detail)),
            Ok((_, Err(detail))) => (PhaseOutcome::Failed, redact(detail)),
            Err(Ending::Failed { error, .. }) => (PhaseOutcome::Failed, redact(error)),
            Err(Ending::TimedOut { .. }) => (PhaseOutcome::Failed, "timed out".into()),
            Err(Ending::Stopped { .. }) => (PhaseOutcome::Failed, "stopped".into()),
        };
        let _ = self
            .store
            .end_phase(launch.id, phase, outcome, Some(&detail))
            .await;
        self.emit(
            launch,
            ProgressEvent::PhaseFinished {
                phase,
                outcome,
                detail: Some(detail),
                duration_ms: started.elapsed().as_millis() as i64,
            },
        )
        .await;
        result.map(|(value, _)| value)
    }

    /// Moves the record to `status`, on the way into `phase`.
    pub(super) async fn set_status(
        &self,
        launch: &Launch<'_>,
        status: SandboxStatus,
        phase: Phase,
    ) -> Result<(), Ending> {
        match self.store.transition(launch.id, status).await {
            Ok(()) => {
                self.emit(launch, ProgressEvent::Status { status }).await;
                Ok(())
            }
            // Ended from elsewhere (`sandboxes stop`): stop here.
            Err(StoreError::IllegalTransition { source, .. }) if source.from.is_terminal() => {
                Err(Ending::Stopped { phase })
            }
            Err(e) => Err(Ending::failed(phase)(e.to_string())),
        }
    }

    /// A sentence for the people watching, between phase lines.
    pub(super) async fn note(&self, launch: &Launch<'_>, message: String) {
        let message = launch.redactor.redact(&message);
        self.emit(launch, ProgressEvent::Note { message }).await;
    }

    /// A line a phase's command printed, redacted.
    pub(super) async fn output(&self, launch: &Launch<'_>, phase: Phase, line: &str) {
        let line = launch.redactor.redact(line);
        self.emit(launch, ProgressEvent::Output { phase, line })
            .await;
    }

    pub(super) async fn agent_event(&self, launch: &Launch<'_>, event: AgentEvent) {
        let event = redact_event(&launch.redactor, event);
        self.emit(launch, ProgressEvent::Agent { event }).await;
    }

    /// The phase a launch was in when it was stopped or ran out of time from outside the sequence.
    pub(super) async fn current_phase(&self, id: SandboxId) -> Phase {
        self.store
            .get_sandbox(id)
            .await
            .ok()
            .flatten()
            .and_then(|r| r.current_phase)
            .unwrap_or(Phase::Provision)
    }

    /// Marks the phase the launch ended in as failed, if its record still says running.
    pub(super) async fn close_open_phase(&self, launch: &Launch<'_>, phase: Phase, message: &str) {
        let open = self.store.phases(launch.id).await.ok().and_then(|phases| {
            phases
                .into_iter()
                .find(|p| p.phase == phase && p.outcome == PhaseOutcome::Running)
        });
        if let Some(open) = open {
            let _ = self
                .store
                .end_phase(launch.id, phase, PhaseOutcome::Failed, Some(message))
                .await;
            self.emit(
                launch,
                ProgressEvent::PhaseFinished {
                    phase,
                    outcome: PhaseOutcome::Failed,
                    detail: Some(message.to_string()),
                    duration_ms: (Utc::now() - open.started_at).num_milliseconds(),
                },
            )
            .await;
        }
    }

    /// Sends the event to the sink and stores it, unless it is an agent event or output line past
    /// the launch's cap: those are counted, and the log says once that they no longer go in.
    async fn emit(&self, launch: &Launch<'_>, event: ProgressEvent) {
        let streamed = matches!(
            event,
            ProgressEvent::Agent { .. } | ProgressEvent::Output { .. }
        );
        if !streamed || launch.events.admit(self.max_events) {
            self.persist(launch.id, &event).await;
        } else if launch.events.dropped() == 1 {
            let message = format!(
                "the event log keeps at most {} agent events and output lines (CODECOURIER_MAX_EVENTS): the rest are counted, not stored",
                self.max_events
            );
            self.persist(launch.id, &ProgressEvent::Note { message })
                .await;
        }
        launch.sink.emit(launch.id, &event);
    }

    /// At the end of a launch whose events went past the cap: how many were not stored.
    pub(super) async fn record_dropped_events(&self, launch: &Launch<'_>) {
        let dropped = launch.events.dropped();
        if dropped == 0 {
            return;
        }
        let message = format!(
            "{dropped} agent events and output lines past the cap of {} were counted, not stored",
            self.max_events
        );
        self.persist(launch.id, &ProgressEvent::Note { message })
            .await;
    }

    /// Appends an event to the record's log; a failure is logged, never fatal to the launch.
    pub(super) async fn persist(&self, id: SandboxId, event: &ProgressEvent) {
        let kind = match event {
            ProgressEvent::PhaseStarted { .. } => "phase_started".to_string(),
            ProgressEvent::PhaseFinished { .. } => "phase_finished".to_string(),
            ProgressEvent::Status { .. } => "status".to_string(),
            ProgressEvent::Note { .. } => "note".to_string(),
            ProgressEvent::Output { .. } => "output".to_string(),
            ProgressEvent::Spend { .. } => "spend".to_string(),
            ProgressEvent::Agent { event } => format!(
                "agent.{}",
                serde_json::to_value(event)
                    .ok()
                    .and_then(|v| v["kind"].as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
        };
        let payload = serde_json::to_value(event).unwrap_or_default();
        if let Err(e) = self.store.append_event(id, &kind, &payload).await {
            tracing::warn!(sandbox = %id, error = %e, "could not record an event");
        }
    }
}

fn redact_event(redactor: &Redactor, event: AgentEvent) -> AgentEvent {
    let value = serde_json::to_value(&event).unwrap_or_default();
    serde_json::from_value(redactor.redact_json(&value)).unwrap_or(event)
}

/// A launch's agent events and output lines: how many were stored, and how many went past the cap.
#[derive(Debug, Default)]
pub(super) struct EventCount {
    stored: AtomicU64,
    dropped: AtomicU64,
}

impl EventCount {
    /// Whether one more may be stored under `cap`; counts it either way.
    fn admit(&self, cap: u64) -> bool {
        let admitted = self
            .stored
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::EventCount;

    #[test]
    fn events_past_the_cap_are_counted_not_admitted() {
        let count = EventCount::default();
        let admitted = (0..5).filter(|_| count.admit(3)).count();
        assert_eq!((admitted, count.dropped()), (3, 2));
    }
}
