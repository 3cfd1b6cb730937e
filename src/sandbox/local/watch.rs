//! The ends a sandbox is brought to from outside its commands: its deadline (which `set_timeout`
//! moves), the disk its home and /tmp take, forks refused at its process limit without pause (a
//! fork bomb), and a stop. Each records why, first one wins, and kills everything in the sandbox.

use std::sync::Weak;
use std::time::{Duration, Instant as StdInstant};

use tokio::sync::watch;
use tokio::time::Instant;

use super::{bounds, Live};
use crate::sandbox::SandboxError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    Expired,
    Stopped,
    OverDisk,
    OverProcesses,
}

/// Forks refused at the process limit in most seconds of a while: a fork bomb, not a burst
/// (bash, say, retries a refused fork after 1, 2, 4… seconds, so not every second sees one).
const REFUSED_CHECK: Duration = Duration::from_secs(1);
const REFUSED_WINDOW: usize = 10;
const REFUSED_IN: usize = 7;

impl Live {
    pub(super) fn ending(&self) -> Option<Ending> {
        *self.ending.lock().expect("lock")
    }

    /// Why the sandbox can run nothing any more, as the error a command gets.
    pub(super) fn ended(&self) -> Option<SandboxError> {
        self.ending().map(|ending| match ending {
            Ending::Expired => SandboxError::Expired,
            Ending::Stopped => SandboxError::Killed,
            Ending::OverDisk => SandboxError::DiskLimit {
                limit_mb: self.disk_limit_mb,
            },
            Ending::OverProcesses => SandboxError::ProcessLimit {
                limit: self.pids_max,
            },
        })
    }

    /// Records why (unless an earlier reason stands) and kills everything in the sandbox.
    pub(super) fn end(&self, why: Ending) {
        self.ending.lock().expect("lock").get_or_insert(why);
        for pid in self.children.lock().expect("lock").iter() {
            // SAFETY: sending a signal has no memory effects on this process. bwrap dies and, with
            // it, the pid namespace and everything in it.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        self.cgroup.kill_all();
    }

    /// Measures the disk the sandbox takes, and ends it when that is more than its bound.
    pub(super) fn check_disk(&self) -> bool {
        let used = bounds::disk_usage(&[self.dir.join("home"), self.dir.join("tmp")]);
        let over = used > self.disk_limit_mb * 1024 * 1024;
        if over {
            tracing::info!(sandbox = %self.dir.display(), used, "sandbox over its disk bound");
            self.end(Ending::OverDisk);
        }
        over
    }
}

/// Sleeps until the deadline (which may move) and then ends the sandbox as expired.
pub(super) async fn deadline(live: Weak<Live>, mut deadline: watch::Receiver<Instant>) {
    loop {
        let at = *deadline.borrow_and_update();
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {
                if *deadline.borrow() <= Instant::now() {
                    if let Some(live) = live.upgrade() {
                        tracing::info!(sandbox = %live.dir.display(), "sandbox timed out");
                        let _ = tokio::task::spawn_blocking(move || {
                            live.end(Ending::Expired);
                            live.cgroup.remove();
                        })
                        .await;
                    }
                    return;
                }
            }
            changed = deadline.changed() => if changed.is_err() { return },
        }
    }
}

/// Measures the sandbox's disk now and then, as long as it lives and runs.
pub(super) async fn disk(live: Weak<Live>) {
    let mut pause = bounds::next_check(std::time::Duration::ZERO);
    loop {
        tokio::time::sleep(pause).await;
        let Some(live) = live.upgrade() else { return };
        if live.ending().is_some() {
            return;
        }
        let measured = tokio::task::spawn_blocking(move || {
            let started = StdInstant::now();
            let over = live.check_disk();
            (over, started.elapsed())
        })
        .await;
        match measured {
            Ok((false, took)) => pause = bounds::next_check(took),
            _ => return,
        }
    }
}

/// Watches the forks the cgroup's process limit refuses, and ends the sandbox when they go on
/// being refused (where no cgroup counts them, the limit still holds but nothing ends it).
pub(super) async fn processes(live: Weak<Live>) {
    let mut last = 0;
    // Whether forks were refused in each of the last seconds, newest last.
    let mut seconds = std::collections::VecDeque::with_capacity(REFUSED_WINDOW);
    loop {
        tokio::time::sleep(REFUSED_CHECK).await;
        let Some(live) = live.upgrade() else { return };
        if live.ending().is_some() {
            return;
        }
        let refused = live.cgroup.refused_forks();
        if seconds.len() == REFUSED_WINDOW {
            seconds.pop_front();
        }
        seconds.push_back(refused > last);
        last = refused;
        if seconds.iter().filter(|r| **r).count() >= REFUSED_IN {
            tracing::info!(sandbox = %live.dir.display(), refused, "sandbox kept hitting its process limit");
            let _ = tokio::task::spawn_blocking(move || live.end(Ending::OverProcesses)).await;
            return;
        }
    }
}
