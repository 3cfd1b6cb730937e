//! The repository's side of a launch: where git clones from and pushes to (GitHub, checked through
//! the API before a sandbox is paid for, or a local repository), the clone, the feature branch, the
//! credentials our own git commands carry, and the commit and push at the end. The clone URL, the
//! token and the push all live here.

use super::{count, Detail, Ending, Launch, Launcher};
use crate::catalog::{LaunchMode, RepoRef};
use crate::github::{self, GithubError, RepoClient};
use crate::model::Phase;
use crate::pipeline::naming::{branch_name, commit_message};
use crate::sandbox::{Exec, Mount, HOME, PROJECT_DIR};
use crate::secret::Secret;
use crate::store::Commit;

/// Where a local repository appears inside the sandbox.
const REMOTE_MOUNT: &str = "/srv/origin";
/// Our git commands carry the token in this variable; the agent's environment never does.
const TOKEN_VAR: &str = "CODECOURIER_GIT_TOKEN";
const CREDENTIAL_HELPER: &str = "!f() { test -n \"$CODECOURIER_GIT_TOKEN\" || exit 0; echo username=x-access-token; echo \"password=$CODECOURIER_GIT_TOKEN\"; }; f";

/// The repository as git sees it, found by the prepare phase.
#[derive(Default)]
pub(super) struct GitRemote {
    clone_url: String,
    pub(super) mounts: Vec<Mount>,
    /// The token our clone and push carry (None for local repositories).
    token: Option<Secret>,
    pub(super) github: Option<RepoClient>,
    /// The branch was created on GitHub by the prepare phase (and is removed again if unused).
    pub(super) branch_created: bool,
    /// Resolved through the API (GitHub only): the base branch and the feature branch reserved.
    base_branch: Option<String>,
    branch: Option<String>,
}

impl Launcher {
    /// The prepare phase: where git will clone from.
    pub(super) async fn prepare_remote(&self, launch: &mut Launch<'_>) -> Result<(), Ending> {
        let remote = self
            .phase(launch, Phase::Prepare, self.find_remote(launch))
            .await?;
        if let Some(token) = &remote.token {
            launch.redactor.add(token.expose());
        }
        if let Some(base) = &remote.base_branch {
            launch.base_branch = base.clone();
        }
        if let Some(branch) = &remote.branch {
            launch.branch = branch.clone();
        }
        launch.remote = remote;
        Ok(())
    }

    /// A local repository is mounted into the sandbox. A GitHub repository is checked through the
    /// API (it exists, the token can push, the base branch exists) and the feature branch is
    /// created there.
    async fn find_remote(&self, launch: &Launch<'_>) -> Result<(GitRemote, Detail), Ending> {
        let request = launch.request;
        let fail = Ending::failed(Phase::Prepare);
        let (owner, name) = match &request.repo {
            RepoRef::Local { path } => {
                let remote = GitRemote {
                    clone_url: format!("file://{REMOTE_MOUNT}"),
                    mounts: vec![Mount {
                        host: path.clone(),
                        guest: REMOTE_MOUNT.into(),
                        writable: true,
                    }],
                    base_branch: request.follow_up.as_ref().map(|f| f.base_branch.clone()),
                    branch: request.follow_up.as_ref().map(|f| f.branch.clone()),
                    ..Default::default()
                };
                return Ok((remote, Ok(format!("local repository {}", path.display()))));
            }
            RepoRef::Github { owner, name } => (owner, name),
        };
        let github = github::connect(&self.github, owner, name)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let repo = github.repository().await.map_err(|e| fail(e.to_string()))?;
        let scanning = matches!(request.mode, LaunchMode::Scan(_));
        if repo.can_push == Some(false) && !scanning {
            return Err(fail(
                GithubError::CannotPush {
                    repo: repo.full_name.clone(),
                }
                .to_string(),
            ));
        }
        let (clone_url, mounts) = self.clone_source(&repo.clone_url);
        if scanning {
            // A read-only scan: the base branch must exist; no branch is made.
            let base = request
                .base_branch
                .clone()
                .unwrap_or_else(|| repo.default_branch.clone());
            let base_sha = github
                .branch_head(&base)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let detail = format!(
                "{} · base {base} ({}) · read-only scan",
                repo.full_name,
                &base_sha[..base_sha.len().min(8)]
            );
            let remote = GitRemote {
                clone_url,
                mounts,
                token: Some(github.git_token.clone()),
                github: Some(github),
                branch_created: false,
                base_branch: Some(base),
                branch: None,
            };
            return Ok((remote, Ok(detail)));
        }
        let (base, base_sha, branch) = match &request.follow_up {
            // A follow-up continues on the earlier launch's branch, which must still exist.
            Some(f) => {
                let head = github.branch_head(&f.branch).await.map_err(|e| match e {
                    GithubError::BranchNotFound { .. } => fail(format!(
                        "the branch {} of the launch being followed up no longer exists on GitHub; launch afresh instead",
                        f.branch
                    )),
                    other => fail(other.to_string()),
                })?;
                (f.base_branch.clone(), head, f.branch.clone())
            }
            None => {
                let base = request
                    .base_branch
                    .clone()
                    .unwrap_or_else(|| repo.default_branch.clone());
                let base_sha = github
                    .branch_head(&base)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let branch = github
                    .create_branch(&branch_name(launch.id, &request.prompt), &base_sha)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                (base, base_sha, branch)
            }
        };
        self.store
            .set_branches(launch.id, &base, &branch)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let sha = &base_sha[..base_sha.len().min(8)];
        let detail = match request.follow_up {
            Some(_) => format!(
                "{} · base {base} · branch {branch} continued at {sha}",
                repo.full_name
            ),
            None => format!(
                "{} · base {base} ({sha}) · branch {branch} created",
                repo.full_name
            ),
        };
        let remote = GitRemote {
            clone_url,
            mounts,
            token: Some(github.git_token.clone()),
            github: Some(github),
            branch_created: request.follow_up.is_none(),
            base_branch: Some(base),
            branch: Some(branch),
        };
        Ok((remote, Ok(detail)))
    }

    /// A clone URL on this machine (a mirror, or a test's bare repository) is mounted into a
    /// sandbox that can show host paths, like a local repository; another provider gets the URL
    /// as it is.
    fn clone_source(&self, clone_url: &str) -> (String, Vec<Mount>) {
        match clone_url.strip_prefix("file://") {
            Some(path) if self.provider.capabilities().host_mounts => (
                format!("file://{REMOTE_MOUNT}"),
                vec![Mount {
                    host: path.into(),
                    guest: REMOTE_MOUNT.into(),
                    writable: true,
                }],
            ),
            _ => (clone_url.to_string(), Vec::new()),
        }
    }

    /// The clone phase: the repository into the project directory, at the base branch (or the
    /// branch a follow-up continues).
    pub(super) async fn clone_repository(&self, launch: &mut Launch<'_>) -> Result<(), Ending> {
        let request = launch.request;
        // GitHub: the prepare phase resolved the base branch; local: as asked, else the default.
        let branch_to_clone = match (&request.follow_up, &launch.remote.github) {
            (Some(f), _) => Some(f.branch.clone()),
            (None, Some(_)) => Some(launch.base_branch.clone()),
            (None, None) => request.base_branch.clone(),
        };
        let (base_branch, base_sha) = self
            .phase(launch, Phase::Clone, async {
                let branch_arg = branch_to_clone
                    .as_deref()
                    .map(|b| format!("--branch {} ", shell_quote(b)))
                    .unwrap_or_default();
                let script = format!(
                    "git -c credential.helper={helper} clone --quiet {branch_arg}{url} {PROJECT_DIR} && cd {PROJECT_DIR} && git rev-parse --abbrev-ref HEAD && git rev-parse HEAD",
                    helper = shell_quote(CREDENTIAL_HELPER),
                    url = shell_quote(&launch.remote.clone_url),
                );
                let mut exec = git(script, launch.remote.token.as_ref());
                exec.cwd = Some(HOME.into());
                let out = self.sh(launch, Phase::Clone, "git clone", exec).await?;
                let mut lines = out.lines();
                let base = lines.next().unwrap_or_default().to_string();
                let sha = lines.next().unwrap_or_default().to_string();
                if base == "HEAD" || sha.is_empty() {
                    return Err(Ending::Failed {
                        phase: Phase::Clone,
                        error: format!("{} has no commits to start from; commit something first", request.repo),
                    });
                }
                let detail = format!("{} at {base} ({})", request.repo, &sha[..sha.len().min(8)]);
                Ok(((base, sha), Ok(detail)))
            })
            .await?;
        // A follow-up's commits are the ones after the branch as it was; its base stays the original.
        launch.base_branch = match &request.follow_up {
            Some(f) => f.base_branch.clone(),
            None => base_branch,
        };
        launch.base_sha = base_sha;
        Ok(())
    }

    /// The branch phase: a new feature branch for this launch's work, the branch a follow-up
    /// continues, or — read-only — none.
    pub(super) async fn create_branch(&self, launch: &mut Launch<'_>) -> Result<(), Ending> {
        let request = launch.request;
        // On GitHub the prepare phase reserved the name; a local repository gets it here.
        let branch = if launch.branch.is_empty() {
            branch_name(launch.id, &request.prompt)
        } else {
            launch.branch.clone()
        };
        let continuing = request.follow_up.is_some();
        let record_branches = || {
            self.store
                .set_branches(launch.id, &launch.base_branch, &branch)
        };
        let record_failed =
            |e: crate::store::StoreError| Ending::failed(Phase::Branch)(e.to_string());
        self.phase(launch, Phase::Branch, async {
            match request.mode {
                LaunchMode::Scan(_) => {
                    let detail = format!(
                        "read-only scan of {}: no branch is created or pushed",
                        launch.base_branch
                    );
                    return Ok(((), Ok(detail)));
                }
                LaunchMode::Check => {
                    // A checker reads the branch it checks: the record says which.
                    record_branches().await.map_err(record_failed)?;
                    let detail = format!("read-only check of {}: nothing is pushed", branch);
                    return Ok(((), Ok(detail)));
                }
                LaunchMode::Work => {}
            }
            if !continuing {
                let checkout = git(
                    format!("git checkout --quiet -b {}", shell_quote(&branch)),
                    None,
                );
                self.sh(launch, Phase::Branch, "creating the branch", checkout)
                    .await?;
            }
            record_branches().await.map_err(record_failed)?;
            let detail = if continuing {
                format!("continuing on {branch} (from {})", launch.base_branch)
            } else {
                format!("{} from {}", branch, launch.base_branch)
            };
            Ok(((), Ok(detail)))
        })
        .await?;
        launch.branch = branch;
        Ok(())
    }

    /// The credentials phase: git's identity and a credential helper that reads the token from a
    /// variable only our own git commands carry. The token is never written to disk, into the
    /// repository, or into the agent's environment.
    pub(super) async fn install_credentials(&self, launch: &Launch<'_>) -> Result<(), Ending> {
        self.phase(launch, Phase::Credentials, async {
            let gitconfig = format!(
                "[user]\n\tname = CodeCourier\n\temail = codecourier@users.noreply.github.com\n[safe]\n\tdirectory = *\n[credential]\n\thelper = {}\n",
                CREDENTIAL_HELPER.replace('\\', "\\\\").replace('"', "\\\"")
            );
            self.provider
                .write_file(launch.handle(), "/home/user/.gitconfig", gitconfig.as_bytes(), 0o644)
                .await
                .map_err(|e| Ending::from_sandbox(Phase::Credentials, e))?;
            let detail = if launch.remote.token.is_some() {
                "git credential helper installed; the token stays out of the sandbox's files and the agent's environment"
            } else {
                "local repository: no token needed"
            };
            Ok(((), Ok(detail.to_string())))
        })
        .await
    }

    /// What `git status --porcelain` lists: empty when the agent changed nothing.
    pub(super) async fn changed_files(&self, launch: &Launch<'_>) -> Result<String, Ending> {
        let status = git("git status --porcelain".into(), None);
        self.sh(launch, Phase::Finish, "git status", status).await
    }

    /// In the finish phase: commits what the agent left uncommitted, lists the launch's commits,
    /// and pushes them. Returns the commits and whether they were pushed (None: nothing to push).
    pub(super) async fn commit_and_push(
        &self,
        launch: &Launch<'_>,
    ) -> Result<(Vec<Commit>, Option<bool>), Ending> {
        if !self.changed_files(launch).await?.is_empty() {
            let message = commit_message(launch.id, &launch.request.prompt);
            let commit = git(
                format!(
                    "git add -A && git commit --quiet -m {}",
                    shell_quote(&message)
                ),
                None,
            );
            self.sh(
                launch,
                Phase::Finish,
                "committing the agent's changes",
                commit,
            )
            .await?;
        }
        let log = git(
            format!(
                "git log --reverse --format='%H%x09%s' {}..HEAD",
                launch.base_sha
            ),
            None,
        );
        let log = self
            .sh(launch, Phase::Finish, "listing commits", log)
            .await?;
        let commits: Vec<Commit> = log
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(sha, subject)| Commit {
                sha: sha.to_string(),
                subject: launch.redactor.redact(subject),
            })
            .collect();
        if commits.is_empty() {
            return Ok((commits, None));
        }
        let push = git(
            format!("git push --quiet origin {}", shell_quote(&launch.branch)),
            launch.remote.token.as_ref(),
        );
        self.sh(launch, Phase::Finish, "git push", push).await?;
        Ok((commits, Some(true)))
    }
}

/// "3 commits pushed to BRANCH", or that there was nothing to push.
pub(super) fn push_summary(commits: &[Commit], branch: &str) -> String {
    match commits.len() {
        0 => "no changes to push".to_string(),
        n => format!("{} pushed to {branch}", count(n, "commit")),
    }
}

/// A git command line for the sandbox, with the token in our variable when it needs one.
fn git(script: String, token: Option<&Secret>) -> Exec {
    let mut exec = Exec::script(script);
    exec.env
        .push(("GIT_TERMINAL_PROMPT".into(), Secret::new("0")));
    if let Some(token) = token {
        exec.env.push((TOKEN_VAR.into(), token.clone()));
    }
    exec
}

/// Quotes a string for a POSIX shell.
pub(super) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
