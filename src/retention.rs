//! Removal of what CodeCourier keeps on disk past its use: the dependency caches of projects
//! without a launch for `CODECOURIER_RETENTION_DAYS`. `serve` runs it at start and then daily.

use std::path::PathBuf;
use std::time::Duration;

use crate::caches::Caches;
use crate::config::Config;

const DAILY: Duration = Duration::from_secs(24 * 60 * 60);

/// Removes what the retention allows; a sentence on what went, for the log.
pub fn run_once(data_dir: &std::path::Path, days: u32) -> String {
    match Caches::new(data_dir).remove_unused(days) {
        Ok(removed) if removed.projects == 0 => {
            format!("retention: no dependency caches unused for {days} days")
        }
        Ok(removed) => format!(
            "retention: removed the dependency caches of {} project(s) unused for {days} days ({} MB)",
            removed.projects,
            removed.bytes / (1024 * 1024)
        ),
        Err(e) => format!("retention: cannot remove unused dependency caches: {e}"),
    }
}

/// Runs the retention now and then once a day, in the background.
pub fn keep_running(config: &Config) {
    let (data_dir, days): (PathBuf, u32) = (config.data_dir.clone(), config.retention_days);
    tokio::spawn(async move {
        let mut daily = tokio::time::interval(DAILY);
        loop {
            daily.tick().await;
            let (dir, d) = (data_dir.clone(), days);
            match tokio::task::spawn_blocking(move || run_once(&dir, d)).await {
                Ok(said) => tracing::info!("{said}"),
                Err(e) => tracing::warn!("retention: {e}"),
            }
        }
    });
}
