//! Bringing a launch's commits home: the branch's new commits bundled in the sandbox and read out
//! (bounded, never through a link), fetched into a repository of CodeCourier's own with hooks and
//! every configuration but its own out of play, checked before they leave (no secret in the diff,
//! no workflow change unless the project allows it), and pushed from there with the token in git's
//! environment — never from the agent's `.git`, never through its `pushurl` or `insteadOf`.

use std::path::PathBuf;

use super::git::{git, shell_quote};
use super::host_repo::HostRepo;
use super::{Ending, Launch, Launcher};
use crate::model::Phase;
use crate::redact::Redactor;
use crate::store::Commit;

/// Where the sandbox leaves its bundle.
const BUNDLE: &str = "/tmp/codecourier-push.bundle";
/// The largest bundle read out of a sandbox.
const MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;
/// Where a workflow change would run with the repository's CI secrets.
const WORKFLOWS: &str = ".github/workflows/";

/// Where CodeCourier fetches a launch's base from and pushes its branch to.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// A repository on this machine.
    Path(PathBuf),
    /// A git host, reached with the token.
    Url(url::Url),
}

impl Origin {
    fn arg(&self) -> &std::ffi::OsStr {
        match self {
            Origin::Path(path) => path.as_os_str(),
            Origin::Url(url) => std::ffi::OsStr::new(url.as_str()),
        }
    }
}

/// What the finish phase's push came to.
pub(super) struct Pushed {
    pub(super) commits: Vec<Commit>,
    /// None: nothing to push; Some(false): refused by the check before the push.
    pub(super) pushed: Option<bool>,
    /// Why the push was refused (the commits stay in CodeCourier's repository).
    pub(super) refusal: Option<String>,
}

impl Launcher {
    /// Commits the agent's work in the sandbox, brings the branch's new commits home, checks them
    /// and pushes them to the launch's branch.
    pub(super) async fn commit_and_push(&self, launch: &Launch<'_>) -> Result<Pushed, Ending> {
        self.commit_leftovers(launch).await?;
        let fail = Ending::failed(Phase::Finish);
        let Some(origin) = launch.remote.origin.clone() else {
            return Err(fail("the repository has no origin to push to".into()));
        };
        let branch_ref = format!("refs/heads/{}", launch.branch);
        // Only when there is something new: git refuses an empty bundle.
        let bundle = git(format!(
            "rm -f {BUNDLE} && n=$(git rev-list --count {base}..{branch}) && echo \"$n\" && if [ \"$n\" != 0 ]; then git bundle create --quiet {BUNDLE} {branch} ^{base}; fi",
            base = shell_quote(&launch.base_sha),
            branch = shell_quote(&branch_ref),
        ));
        let count = self
            .sh(launch, Phase::Finish, "bundling the commits", bundle)
            .await?;
        if count.lines().last().unwrap_or("0").trim() == "0" {
            return Ok(Pushed {
                commits: Vec::new(),
                pushed: None,
                refusal: None,
            });
        }
        let bytes = self
            .provider
            .read_file(launch.handle(), BUNDLE, MAX_BUNDLE_BYTES)
            .await
            .map_err(|e| Ending::from_sandbox(Phase::Finish, e))?;

        let home = HostRepo::open(&self.data_dir, &launch.request.repo.to_string())
            .await
            .map_err(&fail)?;
        let token = launch.remote.token.as_ref();
        let keep = format!("refs/codecourier/{}", launch.id);
        // The bundle's prerequisite (the commit the launch started from) comes from the origin.
        let start = match &launch.request.follow_up {
            Some(_) => &launch.branch,
            None => &launch.base_branch,
        };
        home.git(
            &[
                "fetch".as_ref(),
                "--quiet".as_ref(),
                "--no-tags".as_ref(),
                origin.arg(),
                format!("+refs/heads/{start}:{keep}/base").as_ref(),
            ],
            token,
        )
        .await
        .map_err(|e| {
            fail(format!(
                "fetching {start} into CodeCourier's repository failed: {e}"
            ))
        })?;
        let bundle_path = home.dir.join(format!("{}.bundle", launch.id));
        tokio::fs::write(&bundle_path, &bytes)
            .await
            .map_err(|e| fail(format!("cannot keep the bundle: {e}")))?;
        let fetched = home
            .git(
                &[
                    "fetch".as_ref(),
                    "--quiet".as_ref(),
                    "--no-tags".as_ref(),
                    bundle_path.as_os_str(),
                    format!("+{branch_ref}:{keep}/head").as_ref(),
                ],
                None,
            )
            .await;
        let _ = tokio::fs::remove_file(&bundle_path).await;
        fetched.map_err(|e| fail(format!("the sandbox's bundle could not be fetched: {e}")))?;

        let range = format!("{}..{keep}/head", launch.base_sha);
        let log = home
            .git(
                &[
                    "log".as_ref(),
                    "--reverse".as_ref(),
                    "--format=%H%x09%s".as_ref(),
                    range.as_ref(),
                ],
                None,
            )
            .await
            .map_err(|e| fail(format!("listing the commits failed: {e}")))?;
        let commits: Vec<Commit> = log
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(sha, subject)| Commit {
                sha: sha.to_string(),
                subject: launch.redactor.redact(subject),
            })
            .collect();
        if commits.is_empty() {
            return Ok(Pushed {
                commits,
                pushed: None,
                refusal: None,
            });
        }
        if let Some(refusal) = self.push_check(launch, &home, &range).await? {
            return Ok(Pushed {
                commits,
                pushed: Some(false),
                refusal: Some(refusal),
            });
        }
        home.git(
            &[
                "push".as_ref(),
                "--quiet".as_ref(),
                origin.arg(),
                format!("{keep}/head:{branch_ref}").as_ref(),
            ],
            token,
        )
        .await
        .map_err(|e| fail(format!("git push failed: {e}")))?;
        Ok(Pushed {
            commits,
            pushed: Some(true),
            refusal: None,
        })
    }

    /// The check before a push: the words refusing it, or None. No line the launch adds holds a
    /// secret CodeCourier knows or one shaped like a token, and nothing under `.github/workflows/`
    /// changes unless the project allows it.
    async fn push_check(
        &self,
        launch: &Launch<'_>,
        home: &HostRepo,
        range: &str,
    ) -> Result<Option<String>, Ending> {
        let fail = Ending::failed(Phase::Finish);
        let diff = home
            .git(
                &[
                    "diff".as_ref(),
                    "--no-color".as_ref(),
                    "--no-ext-diff".as_ref(),
                    "--no-renames".as_ref(),
                    "--unified=0".as_ref(),
                    range.as_ref(),
                ],
                None,
            )
            .await
            .map_err(|e| fail(format!("reading the diff to check failed: {e}")))?;
        let found = secrets_added(&diff, &launch.redactor);
        if !found.is_empty() {
            let places: Vec<String> = found
                .iter()
                .take(5)
                .map(|(f, l)| format!("{f} line {l}"))
                .collect();
            return Ok(Some(format!(
                "push refused: what would be pushed holds a secret ({}); the commits stay in CodeCourier's repository, nothing was pushed",
                places.join(", ")
            )));
        }
        if !launch.project.allow_workflow_changes {
            let workflows = changed_workflows(&diff);
            if !workflows.is_empty() {
                return Ok(Some(format!(
                    "push refused: it changes {} under {WORKFLOWS}, which run with the repository's CI secrets, and this project does not allow workflow changes (`codecourier project setup --repo … --allow-workflow-changes on`); the commits stay in CodeCourier's repository, nothing was pushed",
                    workflows.join(", ")
                )));
            }
        }
        Ok(None)
    }
}

/// The places (file, line) where a `--unified=0` diff adds a line holding a secret.
fn secrets_added(diff: &str, redactor: &Redactor) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut file = String::new();
    let mut line = 0usize;
    for text in diff.lines() {
        if let Some(path) = text.strip_prefix("+++ ") {
            file = path.strip_prefix("b/").unwrap_or(path).to_string();
        } else if let Some(hunk) = text.strip_prefix("@@ ") {
            // "@@ -a,b +c,d @@": the new side starts at line c.
            line = hunk
                .split_whitespace()
                .find_map(|part| part.strip_prefix('+'))
                .and_then(|new| new.split(',').next())
                .and_then(|start| start.parse().ok())
                .unwrap_or(0);
        } else if let Some(added) = text.strip_prefix('+') {
            if redactor.redact(added) != added {
                found.push((file.clone(), line));
            }
            line += 1;
        }
    }
    found
}

/// The workflow files a diff adds, changes or removes.
fn changed_workflows(diff: &str) -> Vec<String> {
    let mut files: Vec<String> = diff
        .lines()
        .filter_map(|l| l.strip_prefix("diff --git a/"))
        .filter_map(|l| l.split_once(" b/").map(|(a, _)| a.to_string()))
        .filter(|path| path.starts_with(WORKFLOWS))
        .collect();
    files.dedup();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "diff --git a/src/lib.rs b/src/lib.rs
index 1..2 100644
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -3,0 +4,2 @@ fn x() {
+let ok = 1;
+let key = \"ghp_abcdefghijklmnopqrstuvwxyz0123456789\";
diff --git a/.github/workflows/ci.yml b/.github/workflows/ci.yml
new file mode 100644
--- /dev/null
+++ b/.github/workflows/ci.yml
@@ -0,0 +1 @@
+on: push
";

    #[test]
    fn added_secrets_are_found_by_file_and_line_and_known_values_too() {
        assert_eq!(
            secrets_added(DIFF, &Redactor::default()),
            vec![("src/lib.rs".to_string(), 5)]
        );
        let known = Redactor::new(["on: push"]);
        assert_eq!(secrets_added(DIFF, &known).len(), 2);
        assert!(secrets_added("+++ b/a\n@@ -0,0 +1 @@\n+fine\n", &known).is_empty());
    }

    #[test]
    fn workflow_changes_are_named() {
        assert_eq!(changed_workflows(DIFF), vec![".github/workflows/ci.yml"]);
    }
}
