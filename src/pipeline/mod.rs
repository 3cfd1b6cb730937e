//! The launch sequence: its phases, the sandbox status state machine, and the events it emits.

mod events;
mod launch;
mod naming;
mod prompt;
mod recovery;
mod runner;
pub mod scan;
mod status;
pub mod workflow;

pub use events::{Fanout, NoProgress, ProgressEvent, ProgressSink};
pub use launch::{project_scope, user_scope, LaunchError, LaunchOrigin, Launcher, Prepared};
pub use naming::{branch_name, slug};
pub use recovery::recover;
pub use runner::{step_line, NoWorkflowProgress, RunRequest, Runner, WorkflowEvent, WorkflowSink};
pub use status::{IllegalTransition, Phase, PhaseOutcome, SandboxStatus};
