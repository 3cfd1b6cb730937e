//! The core: the operations front ends call (`ops`), the launch sequence, its phases, the sandbox
//! status state machine and the events it emits; issue scans and workflows.

mod events;
pub mod extensions;
mod launch;
pub mod lockfiles;
mod naming;
pub mod ops;
mod prompt;
mod recovery;
mod runner;
pub mod scan;
mod status;
pub mod workflow;

pub use events::{Fanout, NoProgress, ProgressEvent, ProgressSink};
pub use launch::{
    project_scope, user_scope, LaunchError, LaunchOrigin, Launcher, Prepared, ProjectChoice,
};
pub use naming::{branch_name, slug};
pub use ops::Ops;
pub use recovery::recover;
pub use runner::{step_line, NoWorkflowProgress, RunRequest, Runner, WorkflowEvent, WorkflowSink};
pub use status::{IllegalTransition, Phase, PhaseOutcome, SandboxStatus};
