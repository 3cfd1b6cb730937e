//! The operations front ends call: a launch checked and recorded (or refused with what to fix),
//! retry and follow up, stopping a sandbox or a workflow job, and naming a workflow's task. Front
//! ends parse what people type, check who may act, and render; every status these operations
//! change is written here or below, never in a front end.

mod job;
mod launch;
mod stop;
mod task;

use std::sync::Arc;

pub use job::{JobState, JobStop};
pub use launch::{continuing, LaunchAsk, Refusal};
pub use stop::{Running, SandboxStop, Tracked};
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

#[cfg(test)]
mod tests {
    //! Stopping, against a real SQLite file and real providers: the local one (bubblewrap), and
    //! the E2B client pointed at a port nothing listens on (E2B unreachable).

    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::catalog::{build_custom_tag, LaunchInput, Resources};
    use crate::config::Config;
    use crate::ids::{JobId, WorkflowRunId};
    use crate::model::workflow::{Task, WorkflowDef};
    use crate::model::SandboxStatus;
    use crate::sandbox::local::LocalProvider;
    use crate::sandbox::{provider_for, SandboxProvider, SandboxSpec};
    use crate::store::{JobOwner, JobStatus, NewJob, NewSandbox, NewWork, SandboxRecord};

    struct World {
        ops: Ops,
        data: tempfile::TempDir,
    }

    async fn world(vars: &[(&str, String)]) -> World {
        let data = tempfile::tempdir().unwrap();
        let mut env: BTreeMap<&str, String> = vars.iter().cloned().collect();
        env.insert("CODECOURIER_DATA_DIR", data.path().display().to_string());
        let config = Config::from_lookup(|name| env.get(name).cloned()).unwrap();
        let store = Store::open(&config).await.unwrap();
        let provider = provider_for(&config).unwrap();
        let catalog = Catalog::built_in();
        let launcher = Arc::new(Launcher::new(&config, store, provider, catalog.clone()));
        World {
            ops: Ops::new(launcher, catalog, false),
            data,
        }
    }

    /// A launch recorded as running, with its sandbox at the provider when it has one.
    async fn running(ops: &Ops, provider_id: Option<&str>) -> SandboxRecord {
        let request = LaunchInput {
            prompt: Some("Hang around".into()),
            repo: Some("acme/widgets".into()),
            ..Default::default()
        }
        .validate(ops.catalog(), false)
        .unwrap();
        let store = ops.store();
        let id = store
            .insert_sandbox(&NewSandbox {
                request: &request,
                launched_by: "alice",
                discord: None,
                project_id: None,
                issue_session: None,
                workflow: None,
                caps: Default::default(),
            })
            .await
            .unwrap();
        for status in [
            SandboxStatus::Provisioning,
            SandboxStatus::SettingUp,
            SandboxStatus::Running,
        ] {
            store.transition(id, status).await.unwrap();
        }
        if let Some(provider_id) = provider_id {
            store.set_provider(id, "local", provider_id).await.unwrap();
        }
        store.get_sandbox(id).await.unwrap().unwrap()
    }

    async fn reread(ops: &Ops, record: &SandboxRecord) -> SandboxRecord {
        ops.store().get_sandbox(record.id).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_sandbox_running_here_is_cancelled_and_its_launcher_records_the_end() {
        let w = world(&[]).await;
        let record = running(&w.ops, None).await;
        let tracked = w.ops.running().sandbox(record.id);
        let stop = w
            .ops
            .stop_sandbox(&record, "bob from Discord")
            .await
            .unwrap();
        assert_eq!(stop, SandboxStop::Stopping);
        assert!(tracked.token().is_cancelled());
        assert_eq!(
            reread(&w.ops, &record).await.status,
            SandboxStatus::Running,
            "the launcher that runs it records the end, not the stop"
        );
        // Once its launcher is done with it, nobody here runs it: the stop is recorded.
        drop(tracked);
        let stop = w
            .ops
            .stop_sandbox(&record, "bob from Discord")
            .await
            .unwrap();
        assert_eq!(stop, SandboxStop::Stopped(SandboxStatus::Stopped));
        let ended = reread(&w.ops, &record).await;
        assert_eq!(ended.error.as_deref(), Some("stopped by bob from Discord"));
        assert_eq!(
            w.ops
                .stop_sandbox(&ended, "bob from Discord")
                .await
                .unwrap(),
            SandboxStop::AlreadyEnded(SandboxStatus::Stopped)
        );
    }

    #[tokio::test]
    async fn a_sandbox_another_process_runs_is_killed_through_its_provider_and_recorded() {
        let w = world(&[("SANDBOX_PROVIDER", "local".into())]).await;
        // Another process's provider on the same machine created it.
        let owner = LocalProvider::new(w.data.path(), None);
        let metadata = BTreeMap::from([("test".to_string(), "stop".to_string())]);
        let spec = SandboxSpec {
            template: build_custom_tag("base").unwrap(),
            resources: Resources {
                memory_mb: 256,
                cpus: 1,
                timeout_ms: 60_000,
            },
            env: Vec::new(),
            metadata: metadata.clone(),
            mounts: Vec::new(),
            host_tools: Vec::new(),
            network: None,
        };
        let sandbox = owner.create(&spec, Duration::from_secs(60)).await.unwrap();
        assert!(owner.list(&metadata).await.unwrap()[0].alive);
        let record = running(&w.ops, Some(&sandbox.provider_id)).await;

        let stop = w
            .ops
            .stop_sandbox(&record, "carol from the terminal")
            .await
            .unwrap();
        assert_eq!(stop, SandboxStop::Stopped(SandboxStatus::Stopped));
        assert!(!owner.list(&metadata).await.unwrap()[0].alive);
        let ended = reread(&w.ops, &record).await;
        assert_eq!(ended.status, SandboxStatus::Stopped);
        assert_eq!(
            ended.error.as_deref(),
            Some("stopped by carol from the terminal")
        );
    }

    #[tokio::test]
    async fn a_sandbox_whose_provider_cannot_be_reached_is_not_recorded_as_stopped() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let api = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let w = world(&[
            ("SANDBOX_PROVIDER", "e2b".into()),
            ("E2B_API_KEY", "e2b_test".into()),
            ("E2B_API_URL", api),
        ])
        .await;
        let record = running(&w.ops, Some("sbx-elsewhere")).await;
        let stop = w
            .ops
            .stop_sandbox(&record, "bob from Discord")
            .await
            .unwrap();
        let SandboxStop::NotStopped(why) = stop else {
            panic!("stopped without its sandbox ending: {stop:?}");
        };
        assert!(why.contains("E2B could not be reached"), "{why}");
        assert_eq!(reread(&w.ops, &record).await.status, SandboxStatus::Running);
    }

    async fn job(ops: &Ops) -> JobId {
        let owner = JobOwner {
            project_id: None,
            launched_by: "alice",
            discord: None,
        };
        let work = NewWork::Run {
            id: WorkflowRunId::new(),
            task: &Task::from_prompt("Add a README", "prompt"),
            branch: None,
            chain: None,
        };
        let job = work.id();
        ops.store()
            .insert_job(&NewJob {
                workflow: &WorkflowDef::built_in(),
                repo: "acme/widgets",
                base_branch: None,
                owner: &owner,
                work,
            })
            .await
            .unwrap();
        job
    }

    async fn job_status(ops: &Ops, job: JobId) -> (JobStatus, Option<String>) {
        let record = ops.store().get_job(job).await.unwrap().unwrap();
        (record.status, record.error)
    }

    #[tokio::test]
    async fn a_job_driven_here_is_cancelled_and_one_driven_elsewhere_is_recorded_stopped() {
        let w = world(&[]).await;
        let here = job(&w.ops).await;
        let tracked = w.ops.running().job(here);
        assert_eq!(
            w.ops.stop_job(here, "bob from Discord").await.unwrap(),
            JobStop::Stopping
        );
        assert!(tracked.token().is_cancelled());
        assert_eq!(job_status(&w.ops, here).await.0, JobStatus::Running);

        let elsewhere = job(&w.ops).await;
        assert_eq!(
            w.ops.stop_job(elsewhere, "bob from Discord").await.unwrap(),
            JobStop::Stopped
        );
        assert_eq!(
            job_status(&w.ops, elsewhere).await,
            (
                JobStatus::Stopped,
                Some("stopped by bob from Discord".into())
            )
        );
        assert_eq!(
            w.ops.stop_job(elsewhere, "bob from Discord").await.unwrap(),
            JobStop::AlreadyEnded
        );
    }
}
