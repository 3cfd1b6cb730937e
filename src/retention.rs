//! Removal of what CodeCourier keeps on disk past its use, after `CODECOURIER_RETENTION_DAYS`: the
//! dependency caches of projects without a launch, the directories finished local sandboxes
//! leave, and the agent session archives of sandboxes that ended (their records stay). `serve`
//! runs it at start and then daily; `doctor` shows what it would free.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::caches::{self, Caches};
use crate::config::Config;
use crate::sandbox::local;
use crate::store::{SessionArchives, Store};

const DAILY: Duration = Duration::from_secs(24 * 60 * 60);

/// What the retention finds past its days.
#[derive(Debug, Default)]
pub struct Expired {
    /// Projects' cache directories, with their bytes.
    pub caches: Vec<(PathBuf, u64)>,
    /// Finished sandboxes' directories, with their bytes.
    pub sandboxes: Vec<(PathBuf, u64)>,
    pub sessions: SessionArchives,
}

impl Expired {
    /// What is past `days` now.
    pub async fn find(store: &Store, data_dir: &Path, days: u32) -> anyhow::Result<Self> {
        let age = Duration::from_secs(u64::from(days) * 24 * 60 * 60);
        let dir = data_dir.to_path_buf();
        let (caches, sandboxes) = tokio::task::spawn_blocking(move || {
            let caches = Caches::new(&dir).unused(days);
            (caches, local::finished_before(&dir, age))
        })
        .await?;
        let sessions = store.old_agent_sessions(cutoff(days)).await?;
        Ok(Self {
            caches: caches?,
            sandboxes,
            sessions,
        })
    }

    /// The bytes it holds.
    pub fn bytes(&self) -> u64 {
        let sum = |dirs: &[(PathBuf, u64)]| dirs.iter().map(|(_, b)| b).sum::<u64>();
        sum(&self.caches) + sum(&self.sandboxes) + self.sessions.bytes
    }

    /// In words: "the dependency caches of 1 project, 3 finished sandboxes' directories and
    /// 2 session archives (14 MB)", or "nothing".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.caches.is_empty() {
            parts.push(format!(
                "the dependency caches of {} project(s)",
                self.caches.len()
            ));
        }
        if !self.sandboxes.is_empty() {
            parts.push(format!(
                "{} finished sandboxes' directories",
                self.sandboxes.len()
            ));
        }
        if self.sessions.count > 0 {
            parts.push(format!("{} session archive(s)", self.sessions.count));
        }
        if parts.is_empty() {
            return "nothing".into();
        }
        format!("{} ({})", parts.join(", "), megabytes(self.bytes()))
    }
}

/// Removes what is past `days`; a sentence on what went, for the log.
pub async fn run_once(store: &Store, data_dir: &Path, days: u32) -> String {
    let expired = match Expired::find(store, data_dir, days).await {
        Ok(expired) => expired,
        Err(e) => return format!("retention: cannot look for what is past {days} days: {e:#}"),
    };
    let dirs: Vec<PathBuf> = expired
        .caches
        .iter()
        .chain(&expired.sandboxes)
        .map(|(dir, _)| dir.clone())
        .collect();
    let removed = tokio::task::spawn_blocking(move || {
        dirs.iter()
            .filter_map(|dir| caches::remove_all(dir).err().map(|e| (dir.clone(), e)))
            .map(|(dir, e)| format!("cannot remove {}: {e}", dir.display()))
            .collect::<Vec<_>>()
    })
    .await;
    let sessions = store.remove_old_agent_sessions(cutoff(days)).await;
    let mut said = format!(
        "retention: removed what was past {days} days: {}",
        expired.describe()
    );
    match removed {
        Ok(failures) if failures.is_empty() => {}
        Ok(failures) => said.push_str(&format!("; {}", failures.join("; "))),
        Err(e) => said.push_str(&format!("; {e}")),
    }
    if let Err(e) = sessions {
        said.push_str(&format!("; cannot remove session archives: {e}"));
    }
    said
}

/// Runs the retention now and then once a day, in the background.
pub fn keep_running(store: Store, config: &Config) {
    let (data_dir, days) = (config.data_dir.clone(), config.retention_days);
    tokio::spawn(async move {
        let mut daily = tokio::time::interval(DAILY);
        loop {
            daily.tick().await;
            let said = run_once(&store, &data_dir, days).await;
            tracing::info!("{said}");
        }
    });
}

/// The moment `days` ago.
fn cutoff(days: u32) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::days(days.into())
}

/// Bytes as megabytes for people: "14 MB", "0.2 MB".
pub fn megabytes(bytes: u64) -> String {
    let mb = bytes as f64 / (1024.0 * 1024.0);
    if mb < 10.0 {
        format!("{mb:.1} MB")
    } else {
        format!("{mb:.0} MB")
    }
}
