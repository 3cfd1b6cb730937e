//! The repository's side of a launch inside the sandbox: where git clones from (GitHub, checked
//! through the API before a sandbox is paid for, reached through the gateway; or a local repository,
//! mounted read-only), the clone, the feature branch, git's identity, and the agent's work
//! committed at the end. Bringing the commits home and pushing them is `push`'s.

use std::path::PathBuf;
use std::time::Instant;

use super::mirror::{Mirror, MIRROR_MOUNT};
use super::push::Origin;
use super::{count, seconds, Detail, Ending, Launch, Launcher};
use crate::catalog::{LaunchMode, RepoRef};
use crate::github::{self, GithubError, RepoClient};
use crate::model::Phase;
use crate::pipeline::naming::{branch_name, commit_message};
use crate::sandbox::{Exec, Mount, HOME, PROJECT_DIR};
use crate::secret::Secret;
use crate::store::Commit;

/// Where a local repository appears inside the sandbox (read-only).
const REMOTE_MOUNT: &str = "/srv/origin";
/// The clone URL reaches git in this variable, never on a command line.
const CLONE_URL_VAR: &str = "CODECOURIER_CLONE_URL";

/// The repository as git sees it, found by the prepare phase.
#[derive(Default)]
pub(super) struct GitRemote {
    /// The sandbox's clone URL when the repository is mounted into it; else the gateway's.
    mounted_url: Option<String>,
    pub(super) mounts: Vec<Mount>,
    /// Where CodeCourier itself fetches from and pushes to, on the host.
    pub(super) origin: Option<Origin>,
    /// The token CodeCourier's own fetch and push carry, and the gateway adds for the sandbox
    /// (None for local repositories).
    pub(super) token: Option<Secret>,
    pub(super) github: Option<RepoClient>,
    /// The branch was created on GitHub by the prepare phase (and is removed again if unused).
    pub(super) branch_created: bool,
    /// Resolved through the API (GitHub only): the base branch and the feature branch reserved.
    base_branch: Option<String>,
    branch: Option<String>,
    /// The repository's default branch and size in KB, as GitHub reports them.
    default_branch: Option<String>,
    size_kb: Option<u64>,
    /// The repository's mirror on the host, mounted read-only into the sandbox.
    mirror: Option<Mirror>,
}

/// How the clone phase brings the repository into the sandbox.
enum CloneMethod {
    /// From the repository's mirror, fetched into on the host first.
    Mirror,
    /// A checkout of the mirror made ready beforehand, moved into the sandbox and brought to
    /// this branch.
    Prepared(String),
    /// From the network without files' contents, which git fetches when they are read.
    Partial,
    /// Everything from the network, or from the repository mounted into the sandbox.
    Full,
}

impl GitRemote {
    /// The repository's URL on its git host, when it is reached over the network.
    pub(super) fn upstream(&self) -> Option<&url::Url> {
        match &self.origin {
            Some(Origin::Url(url)) => Some(url),
            _ => None,
        }
    }

    /// A repository on this machine, mounted read-only into the sandbox and pushed to from the
    /// host.
    fn mounted(path: PathBuf) -> Self {
        GitRemote {
            mounted_url: Some(format!("file://{REMOTE_MOUNT}")),
            mounts: vec![Mount {
                host: path.clone(),
                guest: REMOTE_MOUNT.into(),
                writable: false,
            }],
            origin: Some(Origin::Path(path)),
            ..Default::default()
        }
    }
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
                    base_branch: request.follow_up.as_ref().map(|f| f.base_branch.clone()),
                    branch: request.follow_up.as_ref().map(|f| f.branch.clone()),
                    ..GitRemote::mounted(path.clone())
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
        let mut source = self.clone_source(&repo.clone_url).map_err(&fail)?;
        source.default_branch = Some(repo.default_branch.clone());
        source.size_kb = repo.size_kb;
        if let Some(upstream) = source.upstream() {
            if self.catalog.clone.mirror && self.provider.capabilities().host_mounts {
                source.mirror = Mirror::open(&self.data_dir, upstream)
                    .await
                    .map_err(|e| fail(format!("cannot make the repository's mirror: {e}")))?;
            }
        }
        if let Some(mirror) = &source.mirror {
            source.mounts.push(mirror.mount());
        }
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
                token: source.upstream().map(|_| github.git_token.clone()),
                github: Some(github),
                branch_created: false,
                base_branch: Some(base),
                branch: None,
                ..source
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
            token: source.upstream().map(|_| github.git_token.clone()),
            github: Some(github),
            branch_created: request.follow_up.is_none(),
            base_branch: Some(base),
            branch: Some(branch),
            ..source
        };
        Ok((remote, Ok(detail)))
    }

    /// A clone URL on this machine (a mirror, or a repository served from disk) is mounted
    /// read-only into a sandbox that can show host paths, like a local repository; any other is
    /// reached over the network, through the gateway.
    fn clone_source(&self, clone_url: &str) -> Result<GitRemote, String> {
        match clone_url.strip_prefix("file://") {
            Some(path) if self.provider.capabilities().host_mounts => {
                Ok(GitRemote::mounted(path.into()))
            }
            _ => {
                let url = url::Url::parse(clone_url).map_err(|e| {
                    format!("GitHub gave the clone URL {clone_url}, which is not a URL: {e}")
                })?;
                Ok(GitRemote {
                    origin: Some(Origin::Url(url)),
                    ..Default::default()
                })
            }
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
                // Through the gateway (its placeholder as the password), or the mounted repository.
                let url = match (launch.access.as_ref().and_then(|a| a.clone_url()), &launch.remote.mounted_url) {
                    (Some(url), _) => url,
                    (None, Some(url)) => Secret::new(url.as_str()),
                    (None, None) => return Err(Ending::Failed {
                        phase: Phase::Clone,
                        error: format!("{} cannot be reached from this sandbox", request.repo),
                    }),
                };
                let (mut method, mut how) = self.update_mirror(launch).await;
                let started = Instant::now();
                if let (CloneMethod::Mirror, Some(branch)) = (&method, &branch_to_clone) {
                    if self.adopt_checkout(launch).await {
                        method = CloneMethod::Prepared(branch.clone());
                    }
                }
                let clone = match &method {
                    // Moved in whole: the branch checked out (only files that differ are
                    // written), its refs those of the mirror now, nothing else of the checkout's
                    // own.
                    CloneMethod::Prepared(branch) => format!(
                        "cd {PROJECT_DIR} && git fetch --quiet --prune --no-tags {MIRROR_MOUNT} '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*' && git checkout --quiet -B {branch} --track {origin} && for other in $(git for-each-ref --format='%(refname:short)' refs/heads); do [ \"$other\" = {branch} ] || git branch --quiet -D \"$other\" || exit 1; done && git remote set-url origin \"${CLONE_URL_VAR}\"",
                        branch = shell_quote(branch),
                        origin = shell_quote(&format!("origin/{branch}")),
                    ),
                    // The mirror lends its objects (alternates); origin is the real remote, as
                    // after any other clone.
                    CloneMethod::Mirror => format!(
                        "git clone --quiet --shared {branch_arg}{MIRROR_MOUNT} {PROJECT_DIR} && git -C {PROJECT_DIR} remote set-url origin \"${CLONE_URL_VAR}\""
                    ),
                    CloneMethod::Partial => format!(
                        "git clone --quiet --filter=blob:none {branch_arg}\"${CLONE_URL_VAR}\" {PROJECT_DIR}"
                    ),
                    CloneMethod::Full => format!(
                        "git clone --quiet {branch_arg}\"${CLONE_URL_VAR}\" {PROJECT_DIR}"
                    ),
                };
                let script = format!(
                    "{clone} && cd {PROJECT_DIR} && git rev-parse --abbrev-ref HEAD && git rev-parse HEAD",
                );
                let mut exec = git(script);
                exec.env.push((CLONE_URL_VAR.into(), url));
                exec.cwd = Some(HOME.into());
                let out = self.sh(launch, Phase::Clone, "git clone", exec).await?;
                let took = seconds(started.elapsed());
                how.push_str(&match &method {
                    CloneMethod::Prepared(branch) => {
                        format!("checkout prepared beforehand, brought to {branch} in {took}")
                    }
                    CloneMethod::Mirror => format!("cloned in {took}"),
                    CloneMethod::Partial => format!("partial clone (blob:none) in {took}"),
                    CloneMethod::Full => format!("full clone in {took}"),
                });
                let mut lines = out.lines();
                let base = lines.next().unwrap_or_default().to_string();
                let sha = lines.next().unwrap_or_default().to_string();
                if base == "HEAD" || sha.is_empty() {
                    return Err(Ending::Failed {
                        phase: Phase::Clone,
                        error: format!("{} has no commits to start from; commit something first", request.repo),
                    });
                }
                let detail = format!("{} at {base} ({}) · {how}", request.repo, &sha[..sha.len().min(8)]);
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

    /// The mirror brought up to date, when the repository has one: how the sandbox then clones,
    /// and the detail's words so far. A mirror that cannot be updated is passed by: the sandbox
    /// clones over the network as it would without one.
    async fn update_mirror(&self, launch: &Launch<'_>) -> (CloneMethod, String) {
        let remote = &launch.remote;
        let over_network = || {
            let partial = remote.upstream().is_some()
                && remote.size_kb.unwrap_or(0) >= self.catalog.clone.partial_from_kb;
            if partial {
                CloneMethod::Partial
            } else {
                CloneMethod::Full
            }
        };
        let Some(mirror) = &remote.mirror else {
            return (over_network(), String::new());
        };
        let started = Instant::now();
        let default_branch = remote
            .default_branch
            .as_deref()
            .unwrap_or(&launch.base_branch);
        match mirror.update(remote.token.as_ref(), default_branch).await {
            Ok(()) => (
                CloneMethod::Mirror,
                format!("mirror (fetched in {}) · ", seconds(started.elapsed())),
            ),
            Err(e) => (
                over_network(),
                format!(
                    "the mirror could not be updated ({}), so not used · ",
                    launch.redactor.redact(e.trim())
                ),
            ),
        }
    }

    /// Moves a checkout of the mirror made ready beforehand into the sandbox as its project
    /// directory: whether one was there to take.
    async fn adopt_checkout(&self, launch: &Launch<'_>) -> bool {
        let Some(mirror) = &launch.remote.mirror else {
            return false;
        };
        let Some(taken) = mirror.take_checkout().await else {
            return false;
        };
        match self
            .provider
            .adopt(launch.handle(), &taken, PROJECT_DIR)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(launch = %launch.id, "a prepared checkout was not used: {e}");
                let _ = tokio::fs::remove_dir_all(&taken).await;
                false
            }
        }
    }

    /// While the agent runs: a checkout of the mirror made ready for the repository's next
    /// launch (the launch waits for it before it returns).
    pub(super) fn prepare_next_checkout(
        &self,
        launch: &Launch<'_>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let mirror = launch.remote.mirror.clone()?;
        let id = launch.id;
        Some(tokio::spawn(async move {
            if let Err(e) = mirror.prepare_checkout().await {
                tracing::warn!(launch = %id, "no checkout prepared for the next launch: {e}");
            }
        }))
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
                let checkout = git(format!("git checkout --quiet -b {}", shell_quote(&branch)));
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

    /// The credentials phase: git's identity. No credential enters the sandbox: its remote is
    /// the gateway, which adds the token to the launch's own repository's requests only.
    pub(super) async fn install_credentials(&self, launch: &Launch<'_>) -> Result<(), Ending> {
        self.phase(launch, Phase::Credentials, async {
            let gitconfig = "[user]\n\tname = CodeCourier\n\temail = codecourier@users.noreply.github.com\n[safe]\n\tdirectory = *\n";
            self.provider
                .write_file(launch.handle(), "/home/user/.gitconfig", gitconfig.as_bytes(), 0o644)
                .await
                .map_err(|e| Ending::from_sandbox(Phase::Credentials, e))?;
            let detail = if launch.remote.upstream().is_some() {
                "git reaches the repository through CodeCourier's gateway with the launch's placeholder; no token in the sandbox"
            } else {
                "local repository, mounted read-only: no token needed, pushed from CodeCourier's own copy"
            };
            Ok(((), Ok(detail.to_string())))
        })
        .await
    }

    /// What `git status --porcelain` lists: empty when the agent changed nothing.
    pub(super) async fn changed_files(&self, launch: &Launch<'_>) -> Result<String, Ending> {
        let status = git("git status --porcelain".into());
        self.sh(launch, Phase::Finish, "git status", status).await
    }

    /// In the finish phase: commits what the agent left uncommitted, in the sandbox.
    pub(super) async fn commit_leftovers(&self, launch: &Launch<'_>) -> Result<(), Ending> {
        if self.changed_files(launch).await?.is_empty() {
            return Ok(());
        }
        let message = commit_message(launch.id, &launch.request.prompt);
        let commit = git(format!(
            "git add -A && git commit --quiet -m {}",
            shell_quote(&message)
        ));
        self.sh(
            launch,
            Phase::Finish,
            "committing the agent's changes",
            commit,
        )
        .await?;
        Ok(())
    }
}

/// "3 commits pushed to BRANCH", or that there was nothing to push.
pub(super) fn push_summary(commits: &[Commit], branch: &str) -> String {
    match commits.len() {
        0 => "no changes to push".to_string(),
        n => format!("{} pushed to {branch}", count(n, "commit")),
    }
}

/// A git command line for the sandbox, never asking for a password.
pub(super) fn git(script: String) -> Exec {
    let mut exec = Exec::script(script);
    exec.env
        .push(("GIT_TERMINAL_PROMPT".into(), Secret::new("0")));
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
