//! The mirror cache (sandboxes that can be shown host paths): one bare repository per upstream
//! under the data directory, holding only what was fetched from it — never CodeCourier's own
//! repository for pushes, which holds other launches' commits, refused ones among them. Each
//! launch fetches into it on the host, under a lock, then mounts it read-only and clones from it
//! with alternates, copying no object. Beside it, a checkout made ready while an agent runs is
//! moved whole into the next launch's sandbox: writing a large tree's files is what a clone from
//! a mirror still costs.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::host_repo::HostRepo;
use crate::sandbox::Mount;
use crate::secret::Secret;

/// Where the repository's mirror appears inside the sandbox (read-only).
pub(super) const MIRROR_MOUNT: &str = "/srv/mirror";
/// A prepared checkout older than this is not used (the mirror's housekeeping keeps objects no
/// branch holds for two weeks).
const MAX_CHECKOUT_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
/// Past this, a URL makes no file name: such a repository is cloned over the network.
const MAX_KEY_LEN: usize = 200;

#[derive(Clone)]
pub(super) struct Mirror {
    repo: HostRepo,
    upstream: url::Url,
    /// Held (flock) around every fetch into the mirror, by launches in any process.
    lock: PathBuf,
    /// Checkouts of the mirror: `ready-*` to be taken by one launch, `staging-<pid>-*` while one
    /// is made, `taken-<pid>-*` on its way into a sandbox.
    checkouts: PathBuf,
}

impl Mirror {
    /// The mirror of `upstream`, made empty if missing; `None` for a URL too long to name one.
    pub(super) async fn open(data_dir: &Path, upstream: &url::Url) -> Result<Option<Self>, String> {
        let Some(key) = key(upstream) else {
            return Ok(None);
        };
        let root = data_dir.join("mirrors");
        let repo = HostRepo::open_in(&root, &key).await?;
        Ok(Some(Self {
            repo,
            upstream: upstream.clone(),
            lock: root.join(format!("{key}.lock")),
            checkouts: root.join(format!("{key}.checkouts")),
        }))
    }

    /// The mirror as the sandbox sees it: read-only, at [`MIRROR_MOUNT`].
    pub(super) fn mount(&self) -> Mount {
        Mount {
            host: self.repo.dir.clone(),
            guest: MIRROR_MOUNT.into(),
            writable: false,
        }
    }

    /// Brings every branch and tag up to date with the upstream (a force-pushed branch is
    /// followed, a deleted one pruned), and its HEAD to `default_branch`. The objects of a commit
    /// no branch holds any more stay for git's prune expiry (two weeks): a sandbox cloned earlier
    /// keeps what it borrows.
    pub(super) async fn update(
        &self,
        token: Option<&Secret>,
        default_branch: &str,
    ) -> Result<(), String> {
        let _held = lock(self.lock.clone()).await?;
        self.repo
            .git(
                &[
                    // Housekeeping git starts after a fetch runs now, under the lock.
                    "-c".as_ref(),
                    "gc.autoDetach=false".as_ref(),
                    "-c".as_ref(),
                    "maintenance.autoDetach=false".as_ref(),
                    "fetch".as_ref(),
                    "--quiet".as_ref(),
                    "--prune".as_ref(),
                    "--no-write-fetch-head".as_ref(),
                    self.upstream.as_str().as_ref(),
                    "+refs/heads/*:refs/heads/*".as_ref(),
                    "+refs/tags/*:refs/tags/*".as_ref(),
                ],
                token,
            )
            .await?;
        self.repo
            .git(
                &[
                    "symbolic-ref".as_ref(),
                    "HEAD".as_ref(),
                    format!("refs/heads/{default_branch}").as_ref(),
                ],
                None,
            )
            .await?;
        Ok(())
    }

    /// A ready checkout, taken for one launch (no other can take it too), if there is one. One
    /// older than a day is removed instead: the mirror's housekeeping may since have dropped the
    /// objects of a commit no branch holds any more, which it borrows.
    pub(super) async fn take_checkout(&self) -> Option<PathBuf> {
        let mut entries = tokio::fs::read_dir(&self.checkouts).await.ok()?;
        while let Ok(Some(entry)) = entries.next_entry().await {
            if !entry.file_name().to_string_lossy().starts_with("ready-") {
                continue;
            }
            let taken = self.checkouts.join(format!("taken-{}", unique()));
            if tokio::fs::rename(entry.path(), &taken).await.is_err() {
                continue;
            }
            let age = tokio::fs::metadata(&taken)
                .await
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| at.elapsed().ok());
            match age {
                Some(age) if age < MAX_CHECKOUT_AGE => return Some(taken),
                _ => {
                    let _ = tokio::fs::remove_dir_all(&taken).await;
                }
            }
        }
        None
    }

    /// Makes a checkout of the mirror's default branch ready for a later launch, unless one is
    /// ready or being made; what a process that ended left half-made is removed. The checkout
    /// borrows its objects from the mirror as a sandbox sees it, and names no host path.
    pub(super) async fn prepare_checkout(&self) -> Result<(), String> {
        tokio::fs::create_dir_all(&self.checkouts)
            .await
            .map_err(|e| format!("cannot create {}: {e}", self.checkouts.display()))?;
        let mut entries = tokio::fs::read_dir(&self.checkouts)
            .await
            .map_err(|e| e.to_string())?;
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("ready-") {
                return Ok(());
            }
            let pid = name
                .strip_prefix("staging-")
                .or_else(|| name.strip_prefix("taken-"))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            match pid {
                Some(pid) if Path::new(&format!("/proc/{pid}")).exists() => {
                    if name.starts_with("staging-") {
                        return Ok(());
                    }
                }
                _ => {
                    let _ = tokio::fs::remove_dir_all(entry.path()).await;
                }
            }
        }
        let staging = self.checkouts.join(format!("staging-{}", unique()));
        let made = self.make_checkout(&staging).await;
        if made.is_err() {
            let _ = tokio::fs::remove_dir_all(&staging).await;
        }
        made?;
        let ready = self.checkouts.join(format!("ready-{}", unique()));
        tokio::fs::rename(&staging, &ready)
            .await
            .map_err(|e| format!("cannot keep the prepared checkout: {e}"))
    }

    async fn make_checkout(&self, dir: &Path) -> Result<(), String> {
        let checkout = dir.as_os_str();
        self.repo
            .git(
                &[
                    "clone".as_ref(),
                    "--quiet".as_ref(),
                    "--shared".as_ref(),
                    self.repo.dir.as_os_str(),
                    checkout,
                ],
                None,
            )
            .await?;
        // A move into a sandbox changes what else git checks (ctime, owner): it looks at the
        // modification time, size and mode only, or every file would be read again.
        for (key, value) in [
            ("remote.origin.url", MIRROR_MOUNT),
            ("core.checkStat", "minimal"),
        ] {
            self.repo
                .git(
                    &[
                        "-C".as_ref(),
                        checkout,
                        "config".as_ref(),
                        key.as_ref(),
                        value.as_ref(),
                    ],
                    None,
                )
                .await?;
        }
        let git_dir = dir.join(".git");
        let mount_objects = format!("{MIRROR_MOUNT}/objects\n");
        tokio::fs::write(git_dir.join("objects/info/alternates"), mount_objects)
            .await
            .map_err(|e| format!("cannot point the checkout at the mirror: {e}"))?;
        // The reflogs say where the clone came from on the host.
        let _ = tokio::fs::remove_dir_all(git_dir.join("logs")).await;
        Ok(())
    }
}

/// A name no other process or call uses.
fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The mirror's file name for `upstream`: the URL (without credentials, query or fragment) with
/// every byte but letters, digits, `-` and `.` written as `_` and two hex digits, so two
/// different upstreams never share a mirror.
fn key(upstream: &url::Url) -> Option<String> {
    let mut url = upstream.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    let mut key = String::new();
    for byte in url.as_str().bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' => key.push(byte as char),
            other => key.push_str(&format!("_{other:02x}")),
        }
    }
    (key.len() <= MAX_KEY_LEN).then_some(key)
}

/// An exclusive lock on `path` (made if missing), released when the file is dropped.
async fn lock(path: PathBuf) -> Result<std::fs::File, String> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(file);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot lock the mirror: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_prepared_checkout_names_no_host_path_and_is_taken_by_one_launch_only() {
        let root = tempfile::tempdir().unwrap();
        let upstream = root.path().join("upstream");
        git(
            root.path(),
            &["init", "--quiet", "--initial-branch=main", "upstream"],
        );
        std::fs::write(upstream.join("a.txt"), "a\n").unwrap();
        git(&upstream, &["add", "a.txt"]);
        git(&upstream, &["commit", "--quiet", "-m", "a"]);
        let data = root.path().join("data");
        let url = url::Url::from_directory_path(&upstream).unwrap();
        let mirror = Mirror::open(&data, &url).await.unwrap().unwrap();
        mirror.update(None, "main").await.unwrap();
        // What a process that ended left half-made goes.
        let left = mirror.checkouts.join("staging-999999999-0");
        std::fs::create_dir_all(&left).unwrap();

        mirror.prepare_checkout().await.unwrap();
        assert!(!left.exists());
        let takers: Vec<_> = (0..4)
            .map(|_| {
                let mirror = mirror.clone();
                tokio::spawn(async move { mirror.take_checkout().await })
            })
            .collect();
        let mut taken = Vec::new();
        for taker in takers {
            taken.extend(taker.await.unwrap());
        }
        assert_eq!(taken.len(), 1, "{taken:?}");
        let git_dir = taken[0].join(".git");
        assert_eq!(
            std::fs::read_to_string(git_dir.join("objects/info/alternates")).unwrap(),
            "/srv/mirror/objects\n"
        );
        let config = std::fs::read_to_string(git_dir.join("config")).unwrap();
        assert!(!config.contains(root.path().to_str().unwrap()), "{config}");
        assert!(!git_dir.join("logs").exists());
        assert_eq!(
            std::fs::read_to_string(taken[0].join("a.txt")).unwrap(),
            "a\n"
        );
        assert!(mirror.take_checkout().await.is_none());
    }

    #[test]
    fn upstreams_that_differ_get_mirrors_of_their_own() {
        let key = |url: &str| key(&url::Url::parse(url).unwrap()).unwrap();
        assert_eq!(
            key("https://github.com/acme/widgets.git"),
            "https_3a_2f_2fgithub.com_2facme_2fwidgets.git"
        );
        // Names that a lossy mapping would merge stay apart.
        assert_ne!(
            key("https://github.com/a-b/c.git"),
            key("https://github.com/a/b-c.git")
        );
        assert_ne!(
            key("https://github.com/acme/widgets.git"),
            key("https://ghe.example.com/acme/widgets.git")
        );
        // Credentials never name (or split) a mirror.
        assert_eq!(
            key("https://x:secret@github.com/acme/widgets.git?a=1"),
            key("https://github.com/acme/widgets.git")
        );
        assert!(
            super::key(&url::Url::parse(&format!("https://h/{}", "a".repeat(300))).unwrap())
                .is_none()
        );
    }
}
