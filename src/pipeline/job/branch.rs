//! A job's feature branch, made before its first step (on GitHub through the API, for a local
//! repository with git), and the draft pull request it ends with.

use super::Runner;
use crate::catalog::RepoRef;
use crate::ids::JobKind;
use crate::pipeline::naming::{pull_request_title, slug};
use crate::store::JobRecord;

impl Runner {
    /// Creates the job's feature branch from its base. Returns (base, branch).
    pub(super) async fn prepare_branch(&self, job: &JobRecord) -> Result<(String, String), String> {
        let id = job.id();
        let prefix = match id.kind() {
            JobKind::Run => format!("wf-{}", id.short()),
            JobKind::Chain => format!("chain-{}", id.short()),
        };
        let wanted = match slug(job.title(), 30) {
            s if s.is_empty() => format!("codecourier/{prefix}"),
            s => format!("codecourier/{prefix}-{s}"),
        };
        let base = job.base_branch.as_deref();
        match RepoRef::parse(&job.repo) {
            Some(RepoRef::Github { owner, name }) => {
                let github = crate::github::connect(&self.launcher.github, &owner, &name)
                    .await
                    .map_err(|e| e.to_string())?;
                let repository = github.repository().await.map_err(|e| e.to_string())?;
                let base = base
                    .map(str::to_string)
                    .unwrap_or(repository.default_branch);
                let sha = github.branch_head(&base).await.map_err(|e| e.to_string())?;
                let branch = github
                    .create_branch(&wanted, &sha)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((base, branch))
            }
            Some(RepoRef::Local { path }) => {
                // Hooks and configuration other than the repository's own out of play.
                let git = |args: &[&str]| {
                    std::process::Command::new("git")
                        .env("GIT_CONFIG_NOSYSTEM", "1")
                        .env("GIT_CONFIG_GLOBAL", "/dev/null")
                        .args([
                            "-c",
                            "core.hooksPath=/dev/null",
                            "-c",
                            "core.fsmonitor=false",
                        ])
                        .arg("-C")
                        .arg(&path)
                        .args(args)
                        .output()
                        .map_err(|e| format!("cannot run git: {e}"))
                };
                let base = match base {
                    Some(b) => b.to_string(),
                    None => {
                        let out = git(&["symbolic-ref", "--short", "HEAD"])?;
                        String::from_utf8_lossy(&out.stdout).trim().to_string()
                    }
                };
                let exists = git(&[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/heads/{base}"),
                ])?;
                if !exists.status.success() {
                    return Err(format!("{} has no branch {base}", path.display()));
                }
                for n in 1..=5 {
                    let name = if n == 1 {
                        wanted.clone()
                    } else {
                        format!("{wanted}-{n}")
                    };
                    let out = git(&["branch", &name, &base])?;
                    if out.status.success() {
                        return Ok((base, name));
                    }
                    if !String::from_utf8_lossy(&out.stderr).contains("already exists") {
                        return Err(format!(
                            "creating the branch {name} failed: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ));
                    }
                }
                Err(format!("{wanted} and four numbered variants already exist"))
            }
            None => Err(format!(
                "{} is not a repository CodeCourier can reach",
                job.repo
            )),
        }
    }

    /// A draft pull request for the job's branch on GitHub (None for a local repository).
    pub(super) async fn open_pull_request(
        &self,
        job: &JobRecord,
        title: &str,
        body: &str,
    ) -> Result<Option<String>, String> {
        let Some(RepoRef::Github { owner, name }) = RepoRef::parse(&job.repo) else {
            return Ok(None);
        };
        let (Some(branch), Some(base)) = (&job.branch, &job.base_branch) else {
            return Ok(None);
        };
        let github = crate::github::connect(&self.launcher.github, &owner, &name)
            .await
            .map_err(|e| e.to_string())?;
        let pr = github
            .open_pull_request(branch, base, &pull_request_title(title), body, true)
            .await
            .map_err(|e| self.launcher.redact(&e.to_string()))?;
        Ok(Some(pr.html_url))
    }
}
