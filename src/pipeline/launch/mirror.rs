//! The mirror cache (sandboxes that can be shown host paths): one bare repository per upstream
//! under the data directory, holding only what was fetched from it — never CodeCourier's own
//! repository for pushes, which holds other launches' commits, refused ones among them. Each
//! launch fetches into it on the host, under a lock, then mounts it read-only and clones from it
//! with alternates, copying no object.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::host_repo::HostRepo;
use crate::sandbox::Mount;
use crate::secret::Secret;

/// Where the repository's mirror appears inside the sandbox (read-only).
pub(super) const MIRROR_MOUNT: &str = "/srv/mirror";
/// Past this, a URL makes no file name: such a repository is cloned over the network.
const MAX_KEY_LEN: usize = 200;

pub(super) struct Mirror {
    repo: HostRepo,
    upstream: url::Url,
    /// Held (flock) around every fetch into the mirror, by launches in any process.
    lock: PathBuf,
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
    /// followed, a deleted one pruned), and its HEAD to `default_branch`. Objects are only ever
    /// added here: a sandbox cloned earlier keeps what it borrows.
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
