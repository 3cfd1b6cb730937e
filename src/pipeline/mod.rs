//! The core: the operations front ends call (`ops`), the launch sequence, its phases, the sandbox
//! status state machine and the events it emits; issue scans, workflows and their jobs (runs and
//! chains).

mod events;
pub mod extensions;
mod job;
mod launch;
pub mod lockfiles;
mod naming;
pub mod ops;
mod prompt;
mod recovery;
pub mod scan;
pub mod workflow;

pub use events::{Fanout, NoProgress, ProgressEvent, ProgressSink};
pub use job::{step_line, JobRequest, NoWorkflowProgress, Runner, WorkflowEvent, WorkflowSink};
pub use launch::{
    project_scope, user_scope, LaunchError, LaunchOrigin, Launcher, Prepared, ProjectChoice,
};
pub use naming::{branch_name, slug};
pub use ops::Ops;
pub use recovery::recover;
