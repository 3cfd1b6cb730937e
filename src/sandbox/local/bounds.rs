//! What a local sandbox is held to, in words: the provision phase shows the report, so it never
//! claims a limit that could not be set.

use std::time::Duration;

use crate::sandbox::cgroup;

/// Which limits hold, in words.
pub(super) fn limits_report(
    memory_mb: u32,
    memory: &Result<(), String>,
    cpus: usize,
    available: usize,
    cpu_quota: &Result<(), String>,
    timeout: Duration,
) -> String {
    let memory = match memory {
        Ok(()) => format!("memory {memory_mb} MB enforced (cgroup)"),
        Err(why) => format!("memory {memory_mb} MB NOT enforced ({why})"),
    };
    let affinity = if cpus < available {
        format!("affinity to {cpus} of {available} CPUs")
    } else {
        format!("all {available} CPUs of this machine")
    };
    let cpu = match cpu_quota {
        Ok(()) => format!("{cpus} CPUs enforced (cgroup quota; {affinity})"),
        Err(why) if cpus < available => format!("{cpus} CPUs by {affinity} only; no quota ({why})"),
        Err(why) => format!("{cpus} CPUs NOT enforced ({why}; {affinity})"),
    };
    let timeout = humantime::format_duration(Duration::from_secs(timeout.as_secs()));
    format!("{memory}; {cpu}; timeout {timeout} enforced")
}

/// Which resource limits a sandbox on this machine would get, found by creating a probe cgroup.
pub fn limits_available() -> (Result<(), String>, Result<(), String>) {
    let probe = cgroup::create(&format!("doctor-{}", std::process::id()), 256, 1);
    probe.cgroup.remove();
    (probe.memory, probe.cpu_quota)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_limits_that_do_not_hold() {
        let none = Err("no cgroup memory controller".to_string());
        let report = limits_report(
            1024,
            &none,
            2,
            2,
            &Err("no cpu controller".into()),
            Duration::from_secs(900),
        );
        assert_eq!(
            report,
            "memory 1024 MB NOT enforced (no cgroup memory controller); 2 CPUs NOT enforced (no cpu controller; all 2 CPUs of this machine); timeout 15m enforced"
        );
        let report = limits_report(
            512,
            &Ok(()),
            1,
            4,
            &Err("no cpu controller".into()),
            Duration::from_secs(60),
        );
        assert_eq!(
            report,
            "memory 512 MB enforced (cgroup); 1 CPUs by affinity to 1 of 4 CPUs only; no quota (no cpu controller); timeout 1m enforced"
        );
    }
}
