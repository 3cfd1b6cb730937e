//! Progress events: what the launch sequence tells its front ends (terminal display, Discord thread).

use std::sync::Arc;

use serde::Serialize;

use crate::agent::AgentEvent;
use crate::catalog::{describe_spend, Budget};
use crate::ids::SandboxId;
use crate::model::{Phase, PhaseOutcome, SandboxStatus};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProgressEvent {
    PhaseStarted {
        phase: Phase,
    },
    PhaseFinished {
        phase: Phase,
        outcome: PhaseOutcome,
        detail: Option<String>,
        duration_ms: i64,
    },
    Status {
        status: SandboxStatus,
    },
    /// Already redacted.
    Agent {
        event: AgentEvent,
    },
    /// Something the person watching should know that is neither a phase nor an agent event.
    Note {
        message: String,
    },
    /// A line a phase's command printed (the setup script's output), already redacted.
    Output {
        phase: Phase,
        line: String,
    },
    /// What the launch's model calls have cost so far, as the gateway metered them.
    Spend {
        cost_usd: f64,
        tokens: u64,
        /// Models without a price: counted in tokens only.
        unpriced: Vec<String>,
        budget: Budget,
    },
}

impl ProgressEvent {
    /// A spend event in words: "$0.42 of $2.00 · 12345 tokens".
    pub fn spend_words(&self) -> Option<String> {
        match self {
            ProgressEvent::Spend {
                cost_usd,
                tokens,
                unpriced,
                budget,
            } => Some(describe_spend(*cost_usd, *tokens, unpriced, budget)),
            _ => None,
        }
    }
}

/// A front end's view of a launch. Called inline by the launcher: keep it quick (queue, don't post).
pub trait ProgressSink: Send + Sync {
    fn emit(&self, sandbox: SandboxId, event: &ProgressEvent);
}

/// For callers that only want the final record.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn emit(&self, _: SandboxId, _: &ProgressEvent) {}
}

/// Sends every event to several sinks (a Discord thread and the log, say).
pub struct Fanout(pub Vec<Arc<dyn ProgressSink>>);

impl ProgressSink for Fanout {
    fn emit(&self, sandbox: SandboxId, event: &ProgressEvent) {
        for sink in &self.0 {
            sink.emit(sandbox, event);
        }
    }
}
