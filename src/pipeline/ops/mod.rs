//! The operations front ends call: a launch checked and recorded (or refused with what to fix),
//! retry and follow up, stopping a sandbox or a workflow job, and naming a workflow's task. Front
//! ends parse what people type, check who may act, and render; every status these operations
//! change is written here or below, never in a front end.

mod launch;
mod stop;
mod task;

use std::sync::Arc;

pub use launch::{continuing, LaunchAsk, Refusal};
pub use stop::{Job, JobState, JobStop, Running, SandboxStop, Tracked};
pub use task::{TaskRef, TaskRefusal};

use super::{Launcher, Runner};
use crate::catalog::Catalog;
use crate::store::Store;

/// What a front end holds to act: the launcher, the workflow runner, and what runs in this process.
pub struct Ops {
    launcher: Arc<Launcher>,
    runner: Arc<Runner>,
    catalog: Catalog,
    /// Whether a repository may be a path on this machine (the terminal's user always may; chat
    /// users only when the operator allows it).
    allow_local_repos: bool,
    running: Running,
}

impl Ops {
    pub fn new(launcher: Arc<Launcher>, catalog: Catalog, allow_local_repos: bool) -> Self {
        let runner = Arc::new(Runner::new(launcher.clone(), catalog.clone()));
        Self {
            launcher,
            runner,
            catalog,
            allow_local_repos,
            running: Running::default(),
        }
    }

    pub fn launcher(&self) -> &Arc<Launcher> {
        &self.launcher
    }

    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    pub fn store(&self) -> &Store {
        self.launcher.store()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Launches and jobs this process runs, so a stop can end them at once.
    pub fn running(&self) -> &Running {
        &self.running
    }
}
