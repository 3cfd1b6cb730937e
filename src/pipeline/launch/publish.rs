//! Publishing on GitHub after the push: the compare link, a pull request as the launch's policy
//! says (an open one for the branch is reused), removing a branch the launch left unused, and
//! opening a pull request later for a finished launch.

use std::time::Duration;

use super::{count, Launch, Launcher};
use crate::catalog::{PrPolicy, RepoRef};
use crate::github;
use crate::pipeline::naming::{pull_request_body, pull_request_title, PullRequestFacts};
use crate::store::{Commit, SandboxRecord};

/// What the finish phase published on GitHub.
#[derive(Default)]
pub(super) struct Links {
    pub(super) pr_url: Option<String>,
    pub(super) compare_url: Option<String>,
    /// A sentence for the finish phase's detail.
    pub(super) note: Option<String>,
}

impl Launcher {
    /// After the push: the compare link and, per the launch's policy, a pull request. A branch the
    /// launch left empty is removed again.
    pub(super) async fn publish(&self, launch: &Launch<'_>, commits: &[Commit]) -> Links {
        let Some(github) = &launch.remote.github else {
            return Links::default();
        };
        if commits.is_empty() {
            if launch.remote.branch_created {
                if let Err(e) = github.delete_branch(&launch.branch).await {
                    return Links {
                        note: Some(format!("the unused branch could not be removed: {e}")),
                        ..Default::default()
                    };
                }
            }
            return Links {
                note: Some("the unused branch was removed from GitHub".into()),
                ..Default::default()
            };
        }
        let mut links = Links::default();
        let mut notes = Vec::new();
        match github.compare(&launch.base_branch, &launch.branch).await {
            Ok(c) => {
                notes.push(format!(
                    "{} changed, +{} −{}",
                    count(c.files_changed as usize, "file"),
                    c.additions,
                    c.deletions
                ));
                links.compare_url = Some(c.html_url);
            }
            Err(e) => notes.push(format!("no compare link: {e}")),
        }
        let policy = launch.request.pr;
        if policy != PrPolicy::None {
            let agent = launch.agent.as_ref().map(|a| &a.result);
            let body = pull_request_body(&PullRequestFacts {
                prompt: &launch.request.prompt,
                summary: agent
                    .map(|r| launch.redactor.redact(&r.text))
                    .unwrap_or_default()
                    .as_str(),
                launched_by: launch.launched_by,
                sandbox: launch.id,
                // As metered at the gateway, where it saw traffic (as the result shows it);
                // else the CLI's word.
                cost_usd: match launch
                    .access
                    .as_ref()
                    .and_then(|a| a.meter())
                    .map(|m| m.spend())
                {
                    Some(spend) if spend.requests > 0 => Some(spend.cost_usd),
                    _ => agent.and_then(|r| r.cost_usd),
                },
                duration: launch.started.elapsed(),
            });
            let title = pull_request_title(&launch.request.prompt);
            match github
                .open_pull_request(
                    &launch.branch,
                    &launch.base_branch,
                    &title,
                    &body,
                    policy == PrPolicy::Draft,
                )
                .await
            {
                Ok(pr) => {
                    notes.insert(
                        0,
                        format!(
                            "{}{} pull request #{}",
                            if pr.reused { "reused " } else { "" },
                            policy.as_str(),
                            pr.number
                        ),
                    );
                    links.pr_url = Some(pr.html_url);
                }
                Err(e) => notes.insert(0, format!("pull request not opened: {e}")),
            }
        }
        links.note = Some(notes.join(" · "));
        links
    }

    /// Opens a draft pull request for a finished launch that pushed commits but has none (launched
    /// with `pr: none`, or the pull request failed then). Returns its address.
    pub async fn open_pull_request(&self, record: &SandboxRecord) -> Result<String, String> {
        let RepoRef::Github { owner, name } = &record.request.repo else {
            return Err("only GitHub repositories get pull requests".into());
        };
        let (Some(branch), Some(base)) = (&record.branch, &record.base_branch) else {
            return Err("this sandbox never got a branch".into());
        };
        if record.commits.is_empty() || record.pushed != Some(true) {
            return Err("this sandbox pushed no commits, so there is nothing to review".into());
        }
        if let Some(url) = &record.pr_url {
            return Ok(url.clone());
        }
        let github = github::connect(&self.github, owner, name)
            .await
            .map_err(|e| e.to_string())?;
        let body = pull_request_body(&PullRequestFacts {
            prompt: &record.request.prompt,
            summary: record.result_text.as_deref().unwrap_or(""),
            launched_by: &record.launched_by,
            sandbox: record.id,
            cost_usd: record.shown_usage().0,
            duration: Duration::from_millis(record.duration_ms.unwrap_or(0).max(0) as u64),
        });
        let pr = github
            .open_pull_request(
                branch,
                base,
                &pull_request_title(&record.request.prompt),
                &body,
                true,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .set_pr_url(record.id, &pr.html_url)
            .await
            .map_err(|e| e.to_string())?;
        Ok(pr.html_url)
    }
}
