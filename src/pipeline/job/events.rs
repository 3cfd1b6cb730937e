//! What a job reports as it goes, to a sink: its branch, a chain's issues, each step with its
//! launch's progress, and its end.

use crate::ids::{JobId, SandboxId};
use crate::model::workflow::{StepKind, Verdict};
use crate::pipeline::events::{ProgressEvent, ProgressSink};
use crate::store::{JobStatus, StepStatus};

/// What a run or chain reports as it goes (the current step's launch progress included).
#[derive(Debug, Clone)]
pub enum WorkflowEvent {
    BranchReady {
        base: String,
        branch: String,
    },
    /// A chain's issue starts, as this run.
    ItemStarted {
        position: u32,
        title: String,
        run: JobId,
    },
    StepStarted {
        seq: u32,
        kind: StepKind,
        round: u32,
        sandbox: SandboxId,
        tool: String,
        model: String,
        template: String,
    },
    /// The current step's launch progress.
    Progress {
        kind: StepKind,
        event: ProgressEvent,
    },
    StepFinished {
        seq: u32,
        kind: StepKind,
        round: u32,
        status: StepStatus,
        verdict: Option<Verdict>,
        error: Option<String>,
        cost_usd: Option<f64>,
        duration_ms: Option<i64>,
    },
    /// A job ended: a run (standalone, or a chain's issue) or a chain.
    JobFinished {
        job: JobId,
        status: JobStatus,
        error: Option<String>,
        findings: Vec<String>,
        pr_url: Option<String>,
    },
}

pub trait WorkflowSink: Send + Sync {
    fn emit(&self, event: &WorkflowEvent);
}

pub struct NoWorkflowProgress;

impl WorkflowSink for NoWorkflowProgress {
    fn emit(&self, _: &WorkflowEvent) {}
}

/// Hands a step's launch progress to the workflow sink.
pub(super) struct StepProgress<'a> {
    pub sink: &'a dyn WorkflowSink,
    pub kind: StepKind,
}

impl ProgressSink for StepProgress<'_> {
    fn emit(&self, _: SandboxId, event: &ProgressEvent) {
        self.sink.emit(&WorkflowEvent::Progress {
            kind: self.kind,
            event: event.clone(),
        });
    }
}
