//! Who drives a job: the process that does keeps a heartbeat on its record, and a job whose driver
//! is gone (its heartbeat old, or its process no longer there) can be resumed by another.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::Runner;
use crate::ids::JobId;
use crate::store::{JobRecord, Store};

/// A job nobody has reported driving for this long is resumed by whoever asks.
const STALE_AFTER: chrono::Duration = chrono::Duration::seconds(30);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// This process as a job's driver: "host:pid:nonce".
pub(super) fn runner_id() -> String {
    format!(
        "{}:{}:{}",
        this_host(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether the runner recorded on a job ("host:pid:nonce") is gone: its heartbeat is old, or it
/// was a process on this machine that no longer exists — or an earlier process with our own pid (a
/// container restarted as pid 1). `me` is this process's own runner id.
fn is_stale(runner: Option<&str>, heartbeat: Option<chrono::DateTime<Utc>>, me: &str) -> bool {
    let Some(runner) = runner else {
        return true;
    };
    if heartbeat.is_none_or(|at| Utc::now() - at > STALE_AFTER) {
        return true;
    }
    if runner == me {
        return false;
    }
    let mut parts = runner.splitn(3, ':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return true;
    };
    if host != this_host() {
        return false;
    }
    match pid.parse::<i32>() {
        Ok(pid) if pid as u32 == std::process::id() => true,
        // SAFETY: signal 0 only asks whether the process exists.
        Ok(pid) => {
            let alive = unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            !alive
        }
        Err(_) => true,
    }
}

impl Runner {
    /// Jobs left running by a CodeCourier that is gone: runs first, then chains.
    pub async fn resumable(&self) -> anyhow::Result<Vec<JobRecord>> {
        let jobs = self.store().unfinished_jobs().await?;
        Ok(jobs
            .into_iter()
            .filter(|j| is_stale(j.meta.runner.as_deref(), j.meta.heartbeat_at, &self.me))
            .collect())
    }

    /// Keeps telling the store that this process drives the job, until dropped; when the record
    /// was ended or taken from elsewhere (a Stop from another process), `stop` is cancelled.
    pub(super) fn heartbeat(&self, job: JobId, stop: CancellationToken) -> Heartbeat {
        Heartbeat(tokio::spawn(beat(
            self.store().clone(),
            job,
            self.me.clone(),
            stop,
        )))
    }
}

async fn beat(store: Store, job: JobId, me: String, stop: CancellationToken) {
    loop {
        match store.job_heartbeat(job, &me).await {
            Ok(true) => {}
            Ok(false) => {
                stop.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "could not record the heartbeat"),
        }
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
}

/// A job's heartbeat; it stops when dropped.
pub(super) struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_is_stale_when_its_heartbeat_is_old_or_its_process_is_gone() {
        let now = Some(Utc::now());
        let me = format!("{}:{}:abc", this_host(), std::process::id());
        assert!(!is_stale(Some(&me), now, &me));
        let old = Some(Utc::now() - chrono::Duration::minutes(5));
        assert!(is_stale(Some(&me), old, &me));
        assert!(is_stale(None, None, &me));
        // A process id that cannot exist on this machine.
        let gone = format!("{}:999999999:x", this_host());
        assert!(is_stale(Some(&gone), now, &me));
        // An earlier process that had our pid (a restarted container).
        let earlier = format!("{}:{}:old", this_host(), std::process::id());
        assert!(is_stale(Some(&earlier), now, &me));
        // A live process here, and another machine's runner, are trusted while fresh.
        assert!(!is_stale(Some(&format!("{}:1:x", this_host())), now, &me));
        assert!(!is_stale(Some("elsewhere:1:x"), now, &me));
    }
}
