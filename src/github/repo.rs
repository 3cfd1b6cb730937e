//! What CodeCourier asks of one repository: its details, branch heads and refs, compare, pull
//! requests and issues. GitHub's answers are read into small wire types holding only the fields
//! used, and turned into ours.

use serde::Deserialize;
use serde_json::json;

use super::api::Method;
use super::{Comparison, GithubError, IssueLink, PullRequest, RepoClient, Repository, Result};

/// `GET /repos/{owner}/{repo}`.
#[derive(Deserialize)]
struct RepoWire {
    full_name: String,
    default_branch: String,
    clone_url: String,
    html_url: String,
    #[serde(default)]
    permissions: Option<Permissions>,
    /// In KB, as GitHub counts it.
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Deserialize)]
struct Permissions {
    #[serde(default)]
    push: Option<bool>,
}

/// `GET /repos/{owner}/{repo}/branches/{branch}`.
#[derive(Deserialize)]
struct BranchWire {
    commit: CommitRef,
}

#[derive(Deserialize)]
struct CommitRef {
    sha: String,
}

/// `GET /repos/{owner}/{repo}/compare/{base}...{head}`.
#[derive(Deserialize)]
struct CompareWire {
    #[serde(default)]
    ahead_by: u64,
    #[serde(default)]
    files: Vec<ChangedFile>,
    html_url: String,
}

#[derive(Deserialize)]
struct ChangedFile {
    #[serde(default)]
    additions: u64,
    #[serde(default)]
    deletions: u64,
}

/// A pull request or an issue: what links to it.
#[derive(Deserialize)]
struct Numbered {
    number: u64,
    html_url: String,
}

/// `GET /repos/{owner}/{repo}/issues/{number}`.
#[derive(Deserialize)]
struct IssueWire {
    title: String,
    #[serde(default)]
    body: Option<String>,
}

/// `GET /search/issues`.
#[derive(Deserialize)]
struct SearchWire {
    #[serde(default)]
    items: Vec<SearchItem>,
}

#[derive(Deserialize)]
struct SearchItem {
    number: u64,
    title: String,
    html_url: String,
    /// Present when the item is a pull request.
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

impl RepoClient {
    fn repo(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    fn path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.name)
    }

    /// The repository, or why this token cannot use it.
    pub async fn repository(&self) -> Result<Repository> {
        let answer = self.api.call(Method::Get, &self.path(""), None).await?;
        match answer.status {
            200 => {
                let r: RepoWire = answer.parse("the repository lookup")?;
                Ok(Repository {
                    full_name: r.full_name,
                    default_branch: r.default_branch,
                    clone_url: r.clone_url,
                    html_url: r.html_url,
                    can_push: r.permissions.and_then(|p| p.push),
                    size_kb: r.size,
                })
            }
            404 | 403 => Err(GithubError::NotFound { repo: self.repo() }),
            _ => Err(answer.refused("the repository lookup")),
        }
    }

    /// The commit a branch points at.
    pub async fn branch_head(&self, branch: &str) -> Result<String> {
        let answer = self
            .api
            .call(
                Method::Get,
                &self.path(&format!("/branches/{branch}")),
                None,
            )
            .await?;
        match answer.status {
            200 => Ok(answer.parse::<BranchWire>("the branch lookup")?.commit.sha),
            404 => Err(GithubError::BranchNotFound {
                repo: self.repo(),
                branch: branch.into(),
            }),
            _ => Err(answer.refused("the branch lookup")),
        }
    }

    /// Creates `branch` at `sha`; when the name is taken, `branch-2`, `branch-3`… Returns the name
    /// created.
    pub async fn create_branch(&self, branch: &str, sha: &str) -> Result<String> {
        for n in 1..=5 {
            let name = if n == 1 {
                branch.to_string()
            } else {
                format!("{branch}-{n}")
            };
            let body = json!({"ref": format!("refs/heads/{name}"), "sha": sha});
            let answer = self
                .api
                .call(Method::Post, &self.path("/git/refs"), Some(&body))
                .await?;
            match answer.status {
                201 => return Ok(name),
                422 if answer.message().contains("already exists") => continue,
                403 | 404 => return Err(GithubError::CannotPush { repo: self.repo() }),
                _ => return Err(answer.refused("the branch creation")),
            }
        }
        Err(GithubError::Refused {
            what: "the branch creation".into(),
            status: 422,
            message: format!("{branch} and four numbered variants already exist"),
        })
    }

    /// Removes a branch (one this launch created and left without commits).
    pub async fn delete_branch(&self, branch: &str) -> Result<()> {
        let answer = self
            .api
            .call(
                Method::Delete,
                &self.path(&format!("/git/refs/heads/{branch}")),
                None,
            )
            .await?;
        match answer.status {
            204 | 404 | 422 => Ok(()),
            _ => Err(answer.refused("the branch removal")),
        }
    }

    /// What `head` has that `base` lacks.
    pub async fn compare(&self, base: &str, head: &str) -> Result<Comparison> {
        let answer = self
            .api
            .call(
                Method::Get,
                &self.path(&format!("/compare/{base}...{head}")),
                None,
            )
            .await?;
        if answer.status != 200 {
            return Err(answer.refused("the comparison"));
        }
        let c: CompareWire = answer.parse("the comparison")?;
        Ok(Comparison {
            ahead_by: c.ahead_by,
            files_changed: c.files.len() as u64,
            additions: c.files.iter().map(|f| f.additions).sum(),
            deletions: c.files.iter().map(|f| f.deletions).sum(),
            html_url: c.html_url,
        })
    }

    /// Opens a pull request from `head` into `base`, or returns the open one the branch already has.
    pub async fn open_pull_request(
        &self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
        draft: bool,
    ) -> Result<PullRequest> {
        let request =
            json!({"title": title, "head": head, "base": base, "body": body, "draft": draft});
        let answer = self
            .api
            .call(Method::Post, &self.path("/pulls"), Some(&request))
            .await?;
        match answer.status {
            201 => {
                let pr: Numbered = answer.parse("the pull request")?;
                Ok(PullRequest {
                    number: pr.number,
                    html_url: pr.html_url,
                    reused: false,
                })
            }
            422 if answer.message().contains("pull request already exists") => {
                let existing = self
                    .api
                    .call(
                        Method::Get,
                        &self.path(&format!("/pulls?state=open&head={}:{head}", self.owner)),
                        None,
                    )
                    .await?;
                let open: Vec<Numbered> = if existing.status == 200 {
                    existing.parse("the open pull requests")?
                } else {
                    Vec::new()
                };
                match open.into_iter().next() {
                    Some(pr) => Ok(PullRequest {
                        number: pr.number,
                        html_url: pr.html_url,
                        reused: true,
                    }),
                    None => Err(answer.refused("the pull request")),
                }
            }
            403 | 404 => Err(GithubError::CannotPush { repo: self.repo() }),
            _ => Err(answer.refused("the pull request")),
        }
    }

    /// An issue's title and body (a task given as a GitHub issue number).
    pub async fn issue(&self, number: u64) -> Result<(String, String)> {
        let answer = self
            .api
            .call(Method::Get, &self.path(&format!("/issues/{number}")), None)
            .await?;
        match answer.status {
            200 => {
                let issue: IssueWire = answer.parse(&format!("issue #{number}"))?;
                Ok((issue.title, issue.body.unwrap_or_default()))
            }
            404 | 410 => Err(GithubError::Refused {
                what: format!("issue #{number}"),
                status: answer.status,
                message: format!("{} has no issue #{number}", self.repo()),
            }),
            _ => Err(answer.refused(&format!("issue #{number}"))),
        }
    }

    /// Creates an issue, unless an open issue with the same title exists: then its link.
    pub async fn create_issue(
        &self,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<IssueLink> {
        let query = format!(
            "repo:{}/{} is:issue is:open in:title \"{}\"",
            self.owner,
            self.name,
            title.replace('"', "")
        );
        let search_path = format!(
            "/search/issues?q={}",
            url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
        );
        let found = self.api.call(Method::Get, &search_path, None).await?;
        if found.status == 200 {
            let search: SearchWire = found.parse("the issue search")?;
            let same = search
                .items
                .into_iter()
                .find(|item| item.title == title && item.pull_request.is_none());
            if let Some(item) = same {
                return Ok(IssueLink {
                    number: item.number,
                    html_url: item.html_url,
                    existed: true,
                });
            }
        }
        let request = json!({"title": title, "body": body, "labels": labels});
        let answer = self
            .api
            .call(Method::Post, &self.path("/issues"), Some(&request))
            .await?;
        match answer.status {
            201 => {
                let issue: Numbered = answer.parse("the new issue")?;
                Ok(IssueLink {
                    number: issue.number,
                    html_url: issue.html_url,
                    existed: false,
                })
            }
            403 | 404 => Err(GithubError::Refused {
                what: "the new issue".into(),
                status: answer.status,
                message: format!(
                    "the token cannot create issues in {} (it needs Issues: read and write)",
                    self.repo()
                ),
            }),
            410 => Err(answer.refused("the new issue (issues are turned off for this repository)")),
            _ => Err(answer.refused("the new issue")),
        }
    }
}
