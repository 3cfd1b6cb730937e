//! Plain types the layers share: sandbox statuses and launch phases, workflow definitions,
//! scanned issues, a project's skills and commands. No I/O and no imports from `store`,
//! `pipeline` or `agent`, so each of those can use them without a cycle.

mod named_text;
pub mod scan;
mod status;
pub mod usage;
pub mod workflow;

pub use named_text::NamedText;
pub use status::{IllegalTransition, Phase, PhaseOutcome, SandboxStatus};
