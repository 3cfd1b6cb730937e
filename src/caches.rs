//! Package managers' download caches kept between the launches of one project (local sandboxes):
//! where they live under the data directory, the mounts that show them at the paths each package
//! manager uses inside a sandbox, when each project's were last used (the retention removes those unused).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sandbox::Mount;

/// Each cache: its directory's name on this machine, and where the package manager looks for it
/// inside the sandbox (its default under `HOME=/home/user`).
pub const CACHES: [(&str, &str); 6] = [
    ("npm", "/home/user/.npm"),
    ("pip", "/home/user/.cache/pip"),
    ("uv", "/home/user/.cache/uv"),
    ("cargo-registry", "/home/user/.cargo/registry"),
    ("cargo-git", "/home/user/.cargo/git"),
    ("go-mod", "/home/user/go/pkg/mod"),
];

/// When a project's caches were last mounted, in seconds since the epoch.
const LAST_USED: &str = ".last-used";

/// The caches directory of one data directory.
#[derive(Debug, Clone)]
pub struct Caches {
    root: PathBuf,
}

impl Caches {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("caches"),
        }
    }

    fn project_dir(&self, project_id: i64) -> PathBuf {
        self.root.join(format!("project-{project_id}"))
    }

    /// The project's cache directories (created when missing) as writable mounts, marked used now.
    pub fn mounts(&self, project_id: i64) -> io::Result<Vec<Mount>> {
        let dir = self.project_dir(project_id);
        let mut mounts = Vec::new();
        for (name, guest) in CACHES {
            let host = dir.join(name);
            std::fs::create_dir_all(&host)?;
            mounts.push(Mount {
                host,
                guest: guest.to_string(),
                writable: true,
            });
        }
        std::fs::write(dir.join(LAST_USED), now_secs().to_string())?;
        Ok(mounts)
    }

    /// Bytes held by every project's caches.
    pub fn size(&self) -> u64 {
        size_of(&self.root)
    }

    /// The caches of projects that were not used for `days` days, with the bytes each holds.
    pub fn unused(&self, days: u32) -> io::Result<Vec<(PathBuf, u64)>> {
        let mut unused = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(unused),
            Err(e) => return Err(e),
        };
        let limit = Duration::from_secs(u64::from(days) * 24 * 60 * 60);
        for entry in entries {
            let dir = entry?.path();
            if !dir.is_dir() || !is_project_dir(&dir) {
                continue;
            }
            // A project whose marker is missing or unreadable counts as used at its directory's
            // last change.
            let last_used = std::fs::read_to_string(dir.join(LAST_USED))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .or_else(|| {
                    let modified = dir.metadata().and_then(|m| m.modified()).ok()?;
                    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_secs())
                })
                .unwrap_or(0);
            if now_secs().saturating_sub(last_used) < limit.as_secs() {
                continue;
            }
            let bytes = size_of(&dir);
            unused.push((dir, bytes));
        }
        Ok(unused)
    }
}

fn is_project_dir(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("project-"))
        .is_some_and(|id| id.parse::<i64>().is_ok())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The bytes of the files under `path` (symbolic links not followed).
pub(crate) fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes a directory tree, also where a package manager left directories read-only (Go's
/// module cache does).
pub(crate) fn remove_all(dir: &Path) -> io::Result<()> {
    if std::fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    make_writable(dir);
    std::fs::remove_dir_all(dir)
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let mode = meta.permissions().mode() | 0o700;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            make_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn each_project_gets_its_caches_at_the_package_managers_paths() {
        let data = tempfile::tempdir().unwrap();
        let caches = Caches::new(data.path());
        let mounts = caches.mounts(7).unwrap();
        let guests: Vec<&str> = mounts.iter().map(|m| m.guest.as_str()).collect();
        assert!(guests.contains(&"/home/user/.npm") && guests.contains(&"/home/user/go/pkg/mod"));
        assert!(mounts.iter().all(|m| m.writable && m.host.is_dir()));
        assert!(mounts[0]
            .host
            .starts_with(data.path().join("caches/project-7")));
    }

    #[test]
    fn caches_unused_past_the_retention_are_found_and_others_kept() {
        let data = tempfile::tempdir().unwrap();
        let caches = Caches::new(data.path());
        assert!(caches.unused(14).unwrap().is_empty());
        caches.mounts(1).unwrap();
        caches.mounts(2).unwrap();
        // Project 1 was last used 15 days ago, and Go left its modules read-only.
        let old = caches.project_dir(1);
        std::fs::write(old.join(LAST_USED), (now_secs() - 15 * 86_400).to_string()).unwrap();
        let module = old.join("go-mod/example.com/m@v1");
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(module.join("go.mod"), "module m\n").unwrap();
        std::fs::set_permissions(&module, std::fs::Permissions::from_mode(0o555)).unwrap();
        std::fs::write(caches.project_dir(2).join("npm/blob"), "x".repeat(100)).unwrap();
        // Something else in the caches directory is left alone.
        std::fs::create_dir_all(caches.root.join("not-a-project")).unwrap();

        let unused = caches.unused(14).unwrap();
        assert_eq!(unused, vec![(old.clone(), 9 + 10)]);
        remove_all(&old).unwrap();
        assert!(!old.exists());
        assert!(caches.project_dir(2).join("npm/blob").exists());
        assert!(caches.root.join("not-a-project").exists());
        assert!(caches.size() >= 100);
    }
}
