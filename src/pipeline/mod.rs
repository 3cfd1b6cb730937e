//! The launch sequence: its phases and the sandbox status state machine.

mod status;

pub use status::{IllegalTransition, Phase, PhaseOutcome, SandboxStatus};
