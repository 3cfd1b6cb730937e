//! Bare repositories of CodeCourier's own on the host, under the data directory: the one each
//! repository's pushes go through (`repos/`) and the mirrors sandboxes clone from (`mirrors/`).
//! git runs in them with its system and global configuration, hooks, fsmonitor and a home of its
//! own out of play, and a token only ever in its environment.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;

use crate::secret::Secret;

#[derive(Clone)]
pub(super) struct HostRepo {
    pub(super) dir: PathBuf,
    home: PathBuf,
}

impl HostRepo {
    /// CodeCourier's repository for the pushes of `repo` (`owner/name` or a path).
    pub(super) async fn open(data_dir: &Path, repo: &str) -> Result<Self, String> {
        let name: String = repo
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        Self::open_in(&data_dir.join("repos"), &name).await
    }

    /// The bare repository `<name>.git` in `root`, made if missing.
    pub(super) async fn open_in(root: &Path, name: &str) -> Result<Self, String> {
        let dir = root.join(format!("{name}.git"));
        let home = root.join(".home");
        tokio::fs::create_dir_all(&home)
            .await
            .map_err(|e| format!("cannot create {}: {e}", home.display()))?;
        if !dir.join("HEAD").exists() {
            // Made whole under a name of its own, then renamed into place: launches of one
            // repository at once, in this process or another, never init over each other.
            static ATTEMPT: AtomicU64 = AtomicU64::new(0);
            let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
            let staging = Self {
                dir: root.join(format!(".init-{}-{attempt}", std::process::id())),
                home: home.clone(),
            };
            tokio::fs::create_dir_all(&staging.dir)
                .await
                .map_err(|e| format!("cannot create {}: {e}", staging.dir.display()))?;
            staging
                .git(
                    &["init".as_ref(), "--quiet".as_ref(), "--bare".as_ref()],
                    None,
                )
                .await?;
            if let Err(e) = tokio::fs::rename(&staging.dir, &dir).await {
                let _ = tokio::fs::remove_dir_all(&staging.dir).await;
                if !dir.join("HEAD").exists() {
                    return Err(format!(
                        "cannot create CodeCourier's repository {}: {e}",
                        dir.display()
                    ));
                }
            }
        }
        Ok(Self { dir, home })
    }

    /// Runs git in the repository. The token, when given, reaches git in its environment as an
    /// HTTP header (never on a command line, never in a file).
    pub(super) async fn git(
        &self,
        args: &[&std::ffi::OsStr],
        token: Option<&Secret>,
    ) -> Result<String, String> {
        let mut command = tokio::process::Command::new("git");
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "core.fsmonitor=false",
            ])
            .args(args)
            .current_dir(&self.dir)
            .kill_on_drop(true);
        if let Some(token) = token {
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("x-access-token:{}", token.expose()));
            command
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: Basic {basic}"),
                );
        }
        let out = command
            .output()
            .await
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn launches_of_one_repository_finishing_at_once_share_one_host_repository() {
        let data = tempfile::tempdir().unwrap();
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let dir = data.path().to_path_buf();
                tokio::spawn(async move { HostRepo::open(&dir, "acme/widgets").await })
            })
            .collect();
        for open in opens {
            let repo = open.await.unwrap().unwrap();
            assert!(repo.dir.join("HEAD").is_file());
        }
        let left: Vec<_> = std::fs::read_dir(data.path().join("repos"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(".init-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
