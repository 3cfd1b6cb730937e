//! What a local sandbox is held to: the report of which limits hold (the provision phase shows it,
//! so it never claims a limit that could not be set), the disk its home and /tmp take, and the
//! per-process limits set before bwrap starts.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::sandbox::cgroup;

/// How the process limit holds: by the cgroup, by a per-user limit on the sandbox's own uid, or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PidsBound {
    Cgroup,
    OwnUid,
    None(String),
}

/// What a new sandbox got, for the report.
pub(super) struct Held<'a> {
    pub memory_mb: u32,
    pub memory: &'a Result<(), String>,
    pub cpus: usize,
    pub available: usize,
    pub cpu_quota: &'a Result<(), String>,
    pub pids_max: u32,
    pub pids: &'a PidsBound,
    pub disk_mb: u64,
    pub timeout: Duration,
}

/// Which limits hold, in words.
pub(super) fn limits_report(held: &Held) -> String {
    let (memory_mb, cpus, available) = (held.memory_mb, held.cpus, held.available);
    let memory = match held.memory {
        Ok(()) => format!("memory {memory_mb} MB enforced (cgroup)"),
        Err(why) => format!("memory {memory_mb} MB NOT enforced ({why})"),
    };
    let affinity = if cpus < available {
        format!("affinity to {cpus} of {available} CPUs")
    } else {
        format!("all {available} CPUs of this machine")
    };
    let cpu = match held.cpu_quota {
        Ok(()) => format!("{cpus} CPUs enforced (cgroup quota; {affinity})"),
        Err(why) if cpus < available => format!("{cpus} CPUs by {affinity} only; no quota ({why})"),
        Err(why) => format!("{cpus} CPUs NOT enforced ({why}; {affinity})"),
    };
    let pids = match held.pids {
        PidsBound::Cgroup => format!("{} processes enforced (cgroup)", held.pids_max),
        PidsBound::OwnUid => format!(
            "{} processes enforced (a per-user limit on its own uid)",
            held.pids_max
        ),
        PidsBound::None(why) => format!("{} processes NOT enforced ({why})", held.pids_max),
    };
    let timeout = humantime::format_duration(Duration::from_secs(held.timeout.as_secs()));
    format!(
        "{memory}; {cpu}; {pids}; disk {} MB enforced (checked while it runs); timeout {timeout} enforced",
        held.disk_mb
    )
}

/// Which resource limits a sandbox on this machine would get, found by creating a probe cgroup.
pub fn limits_available() -> (Result<(), String>, Result<(), String>) {
    let probe = cgroup::create(&format!("doctor-{}", std::process::id()), 256, 1, 64);
    probe.cgroup.remove();
    (probe.memory, probe.cpu_quota)
}

/// The disk the given directories take: allocated blocks, each file once however many names it
/// has, links not followed, other file systems not entered.
pub(super) fn disk_usage(dirs: &[PathBuf]) -> u64 {
    let mut total = 0;
    let mut seen = HashSet::new();
    for dir in dirs {
        let Ok(top) = std::fs::symlink_metadata(dir) else {
            continue;
        };
        let mut pending = vec![dir.clone()];
        while let Some(path) = pending.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.dev() != top.dev() || (meta.nlink() > 1 && !seen.insert(meta.ino())) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                if let Ok(entries) = std::fs::read_dir(&path) {
                    pending.extend(entries.flatten().map(|e| e.path()));
                }
            }
        }
    }
    total
}

/// How long to wait before measuring again: a walk should cost a small part of the time.
pub(super) fn next_check(walk: Duration) -> Duration {
    (walk * 20).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// In the child between fork and exec: no file larger than the disk bound, and, where the
/// sandbox has a uid of its own and no cgroup holds its processes, a limit on that uid's
/// processes. Only async-signal-safe calls.
pub(super) fn limit_in_child(disk_bytes: u64, own_uid_pids: Option<u32>) -> std::io::Result<()> {
    let set = |resource, value: u64| {
        let limit = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: a valid rlimit we own.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    set(libc::RLIMIT_FSIZE, disk_bytes)?;
    if let Some(pids) = own_uid_pids {
        set(libc::RLIMIT_NPROC, u64::from(pids))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_limits_that_do_not_hold() {
        let none = Err("no cgroup memory controller".to_string());
        let report = limits_report(&Held {
            memory_mb: 1024,
            memory: &none,
            cpus: 2,
            available: 2,
            cpu_quota: &Err("no cpu controller".into()),
            pids_max: 2048,
            pids: &PidsBound::None("no cgroup pids controller".into()),
            disk_mb: 10240,
            timeout: Duration::from_secs(900),
        });
        assert_eq!(
            report,
            "memory 1024 MB NOT enforced (no cgroup memory controller); 2 CPUs NOT enforced (no cpu controller; all 2 CPUs of this machine); 2048 processes NOT enforced (no cgroup pids controller); disk 10240 MB enforced (checked while it runs); timeout 15m enforced"
        );
        let report = limits_report(&Held {
            memory_mb: 512,
            memory: &Ok(()),
            cpus: 1,
            available: 4,
            cpu_quota: &Err("no cpu controller".into()),
            pids_max: 64,
            pids: &PidsBound::OwnUid,
            disk_mb: 100,
            timeout: Duration::from_secs(60),
        });
        assert_eq!(
            report,
            "memory 512 MB enforced (cgroup); 1 CPUs by affinity to 1 of 4 CPUs only; no quota (no cpu controller); 64 processes enforced (a per-user limit on its own uid); disk 100 MB enforced (checked while it runs); timeout 1m enforced"
        );
    }

    #[test]
    fn disk_usage_counts_blocks_once_and_follows_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("f"), vec![1u8; 256 * 1024]).unwrap();
        let before = disk_usage(&[dir.path().to_path_buf()]);
        assert!(before >= 256 * 1024, "{before}");
        std::fs::hard_link(sub.join("f"), dir.path().join("again")).unwrap();
        std::os::unix::fs::symlink("/usr", dir.path().join("usr")).unwrap();
        let after = disk_usage(&[dir.path().to_path_buf()]);
        assert!(after - before < 64 * 1024, "{before} then {after}");
    }
}
