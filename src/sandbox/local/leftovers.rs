//! What finished local sandboxes leave under the data directory (their state, their end's marker,
//! and whatever a failed clean-up kept), found by age for the retention; a running sandbox is
//! never among them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{process_alive, unix_ms, State};

/// The directories of sandboxes that ended at least `age` ago, with the bytes each holds.
pub fn finished_before(data_dir: &Path, age: Duration) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("sandboxes")) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| {
            dir.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("local-"))
        })
        .filter(|dir| {
            ended_at(dir, now).is_some_and(|at| now.duration_since(at).unwrap_or_default() >= age)
        })
        .map(|dir| {
            let bytes = crate::caches::size_of(&dir);
            (dir, bytes)
        })
        .collect()
}

/// When the sandbox in `dir` ended, or `None` while it may still run: its stop's marker; else,
/// when its owner is gone or its deadline passed, the later of its state's last write and the
/// deadline; a directory without state (a create that failed) at its own last change.
fn ended_at(dir: &Path, now: SystemTime) -> Option<SystemTime> {
    let modified = |path: &Path| {
        std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
    };
    if let Some(at) = modified(&dir.join("killed")) {
        return Some(at);
    }
    let state_path = dir.join("state.json");
    let Some(text) = std::fs::read_to_string(&state_path).ok() else {
        return modified(dir);
    };
    let state: State = serde_json::from_str(&text).ok()?;
    let expired = state.deadline_unix_ms <= unix_ms(now);
    if !expired && process_alive(state.owner_pid) {
        return None;
    }
    let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(state.deadline_unix_ms);
    let written = modified(&state_path)?;
    Some(if expired {
        written.max(deadline)
    } else {
        written
    })
}
