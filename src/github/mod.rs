//! GitHub through octocrab: repository and branch checks before a sandbox is paid for, the feature
//! branch, a token scoped to one repository, compare links, pull requests and issues. Only our own
//! types leave this module. Primary and secondary rate limits are honoured and 5xx answers retried;
//! every other failure becomes a `GithubError` with a sentence the user can act on, and the token
//! never appears in one.

use std::time::Duration;

use octocrab::models::AppId;
use octocrab::Octocrab;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{AppKey, GithubConfig};
use crate::secret::Secret;

/// How many times one call is tried when GitHub answers 5xx or asks us to wait.
const ATTEMPTS: u32 = 4;
/// Waits GitHub asks for beyond this are reported instead of slept through.
const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GithubError {
    #[error("the GitHub token cannot see {repo}: the repository does not exist or the token has no access to it; check the name, or give the token access")]
    NotFound { repo: String },
    #[error("the GitHub token cannot push to {repo}: give it write access to the repository's contents (a fine-grained token with Contents: read and write, or the GitHub App installed on it)")]
    CannotPush { repo: String },
    #[error("{repo} has no branch {branch}; name an existing base branch or leave it out to use the default branch")]
    BranchNotFound { repo: String, branch: String },
    #[error(
        "GitHub refused the credentials (401): check GITHUB_TOKEN, or the GitHub App id and key"
    )]
    BadCredentials,
    #[error("the GitHub App is not installed on {repo}; install it on the repository in the App's settings")]
    AppNotInstalled { repo: String },
    #[error("GitHub's rate limit is used up; it resets in {wait_secs}s: try again then")]
    RateLimited { wait_secs: u64 },
    #[error("GitHub answered {status} several times; it may be having an outage (githubstatus.com): try again later")]
    Unavailable { status: u16 },
    #[error("GitHub refused {what} ({status}): {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    #[error("GitHub could not be reached: {0}")]
    Unreachable(String),
}

pub type Result<T, E = GithubError> = std::result::Result<T, E>;

/// What the launch needs to know about a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repository {
    pub full_name: String,
    pub default_branch: String,
    /// What git clones from: the API's own answer, so GitHub Enterprise works the same way.
    pub clone_url: String,
    pub html_url: String,
    /// `None` when GitHub did not say (App installation tokens): the push will tell.
    pub can_push: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub ahead_by: u64,
    pub files_changed: u64,
    pub additions: u64,
    pub deletions: u64,
    pub html_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
    /// An open pull request for the branch already existed and was reused.
    pub reused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueLink {
    pub number: u64,
    pub html_url: String,
    /// An open issue with the same title existed; no new one was made.
    pub existed: bool,
}

/// A client for one repository, with the token git should use for it.
#[derive(Clone)]
pub struct RepoClient {
    client: Octocrab,
    pub owner: String,
    pub name: String,
    /// For git's credential helper: the personal token, or an installation token scoped to this
    /// repository (contents, pull requests and issues).
    pub git_token: Secret,
}

impl std::fmt::Debug for RepoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RepoClient({}/{})", self.owner, self.name)
    }
}

struct Answer {
    status: u16,
    body: Value,
}

fn base(
    config: &GithubConfig,
) -> Result<
    octocrab::OctocrabBuilder<
        octocrab::NoSvc,
        octocrab::DefaultOctocrabBuilderConfig,
        octocrab::NoAuth,
        octocrab::NotLayerReady,
    >,
> {
    Octocrab::builder()
        .base_uri(config.api_url.as_str())
        .map_err(|_| {
            GithubError::Unreachable(format!("GITHUB_API_URL {} is not a URL", config.api_url))
        })
}

/// Connects for one repository: with a personal token as is; with a GitHub App, by minting an
/// installation token restricted to this repository.
pub async fn connect(config: &GithubConfig, owner: &str, name: &str) -> Result<RepoClient> {
    let repo = format!("{owner}/{name}");
    if let Some(app) = &config.app {
        let pem = match &app.private_key {
            AppKey::Pem(pem) => pem.expose().as_bytes().to_vec(),
            AppKey::Path(path) => std::fs::read(path).map_err(|e| {
                GithubError::Unreachable(format!(
                    "cannot read the GitHub App key {}: {e}",
                    path.display()
                ))
            })?,
        };
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|_| {
            GithubError::Unreachable(
                "GITHUB_APP_PRIVATE_KEY is not an RSA private key in PEM form".into(),
            )
        })?;
        let as_app = base(config)?
            .app(AppId(app.app_id), key)
            .build()
            .map_err(|e| GithubError::Unreachable(e.to_string()))?;
        let installation = call(
            &as_app,
            Method::Get,
            &format!("/repos/{owner}/{name}/installation"),
            None,
        )
        .await?;
        let installation_id = match installation.status {
            200 => installation.body["id"].as_u64().unwrap_or_default(),
            404 => return Err(GithubError::AppNotInstalled { repo }),
            status => {
                return Err(refused(
                    "the installation lookup",
                    status,
                    &installation.body,
                ))
            }
        };
        let body = json!({
            "repositories": [name],
            "permissions": {"contents": "write", "pull_requests": "write", "issues": "write", "metadata": "read"},
        });
        let minted = call(
            &as_app,
            Method::Post,
            &format!("/app/installations/{installation_id}/access_tokens"),
            Some(&body),
        )
        .await?;
        if minted.status != 201 {
            return Err(refused(
                "an installation token",
                minted.status,
                &minted.body,
            ));
        }
        let token = Secret::new(minted.body["token"].as_str().unwrap_or_default());
        return Ok(RepoClient {
            client: with_token(config, &token)?,
            owner: owner.into(),
            name: name.into(),
            git_token: token,
        });
    }
    let token = config.token.clone().ok_or(GithubError::BadCredentials)?;
    Ok(RepoClient {
        client: with_token(config, &token)?,
        owner: owner.into(),
        name: name.into(),
        git_token: token,
    })
}

fn with_token(config: &GithubConfig, token: &Secret) -> Result<Octocrab> {
    base(config)?
        .personal_token(token.expose().to_string())
        .build()
        .map_err(|e| GithubError::Unreachable(e.to_string()))
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Delete,
}

/// One API call with the retry policy: 5xx and transport errors back off and retry; a secondary
/// rate limit (`retry-after`) or an exhausted primary limit (`x-ratelimit-remaining: 0`) waits as
/// GitHub asks, up to `MAX_WAIT`. Other statuses are returned for the caller to judge.
async fn call(
    client: &Octocrab,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Answer> {
    let mut last_status = 0;
    for attempt in 0..ATTEMPTS {
        let backoff = Duration::from_millis(250 * 2u64.pow(attempt));
        let response = match method {
            Method::Get => client._get(path).await,
            Method::Post => client._post(path, body).await,
            Method::Delete => client._delete(path, body).await,
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(path, error = %e, "GitHub request failed; retrying");
                if attempt + 1 == ATTEMPTS {
                    return Err(GithubError::Unreachable(format!(
                        "{path}: {}",
                        short_error(&e)
                    )));
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = client.body_to_string(response).await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        last_status = status;
        if status >= 500 {
            tracing::debug!(path, status, "GitHub server error; retrying");
            if attempt + 1 < ATTEMPTS {
                tokio::time::sleep(backoff).await;
            }
            continue;
        }
        if status == 401 {
            return Err(GithubError::BadCredentials);
        }
        if status == 403 || status == 429 {
            if let Some(wait) = rate_limit_wait(&headers) {
                if wait > MAX_WAIT || attempt + 1 == ATTEMPTS {
                    return Err(GithubError::RateLimited {
                        wait_secs: wait.as_secs().max(1),
                    });
                }
                tracing::info!(
                    path,
                    wait_secs = wait.as_secs(),
                    "GitHub rate limit; waiting"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        return Ok(Answer { status, body });
    }
    Err(GithubError::Unavailable {
        status: last_status,
    })
}

/// How long GitHub asks us to wait, if this answer is a rate limit.
fn rate_limit_wait(headers: &http::HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if let Some(secs) = number("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    if number("x-ratelimit-remaining") == Some(0) {
        let reset = number("x-ratelimit-reset")?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        return Some(Duration::from_secs(reset.saturating_sub(now).max(1)));
    }
    None
}

/// octocrab's error without anything that could carry a credential.
fn short_error(e: &octocrab::Error) -> String {
    match e {
        octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. } => {
            "connection failed".into()
        }
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

fn message(body: &Value) -> String {
    let mut text = body["message"].as_str().unwrap_or("no message").to_string();
    if let Some(errors) = body["errors"].as_array() {
        let details: Vec<&str> = errors
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect();
        if !details.is_empty() {
            text.push_str(&format!(" ({})", details.join("; ")));
        }
    }
    text
}

fn refused(what: &str, status: u16, body: &Value) -> GithubError {
    GithubError::Refused {
        what: what.into(),
        status,
        message: message(body),
    }
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
        let answer = call(&self.client, Method::Get, &self.path(""), None).await?;
        match answer.status {
            200 => {
                let b = &answer.body;
                let text = |key: &str| b[key].as_str().unwrap_or_default().to_string();
                Ok(Repository {
                    full_name: text("full_name"),
                    default_branch: text("default_branch"),
                    clone_url: text("clone_url"),
                    html_url: text("html_url"),
                    can_push: b["permissions"]["push"].as_bool(),
                })
            }
            404 | 403 => Err(GithubError::NotFound { repo: self.repo() }),
            status => Err(refused("the repository lookup", status, &answer.body)),
        }
    }

    /// The commit a branch points at.
    pub async fn branch_head(&self, branch: &str) -> Result<String> {
        let answer = call(
            &self.client,
            Method::Get,
            &self.path(&format!("/branches/{branch}")),
            None,
        )
        .await?;
        match answer.status {
            200 => Ok(answer.body["commit"]["sha"]
                .as_str()
                .unwrap_or_default()
                .to_string()),
            404 => Err(GithubError::BranchNotFound {
                repo: self.repo(),
                branch: branch.into(),
            }),
            status => Err(refused("the branch lookup", status, &answer.body)),
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
            let answer = call(
                &self.client,
                Method::Post,
                &self.path("/git/refs"),
                Some(&body),
            )
            .await?;
            match answer.status {
                201 => return Ok(name),
                422 if message(&answer.body).contains("already exists") => continue,
                403 | 404 => return Err(GithubError::CannotPush { repo: self.repo() }),
                status => return Err(refused("the branch creation", status, &answer.body)),
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
        let answer = call(
            &self.client,
            Method::Delete,
            &self.path(&format!("/git/refs/heads/{branch}")),
            None,
        )
        .await?;
        match answer.status {
            204 | 404 | 422 => Ok(()),
            status => Err(refused("the branch removal", status, &answer.body)),
        }
    }

    /// What `head` has that `base` lacks.
    pub async fn compare(&self, base: &str, head: &str) -> Result<Comparison> {
        let answer = call(
            &self.client,
            Method::Get,
            &self.path(&format!("/compare/{base}...{head}")),
            None,
        )
        .await?;
        if answer.status != 200 {
            return Err(refused("the comparison", answer.status, &answer.body));
        }
        let b = &answer.body;
        let files = b["files"].as_array().cloned().unwrap_or_default();
        let sum = |key: &str| files.iter().filter_map(|f| f[key].as_u64()).sum();
        Ok(Comparison {
            ahead_by: b["ahead_by"].as_u64().unwrap_or_default(),
            files_changed: files.len() as u64,
            additions: sum("additions"),
            deletions: sum("deletions"),
            html_url: b["html_url"].as_str().unwrap_or_default().to_string(),
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
        let answer = call(
            &self.client,
            Method::Post,
            &self.path("/pulls"),
            Some(&request),
        )
        .await?;
        match answer.status {
            201 => Ok(PullRequest {
                number: answer.body["number"].as_u64().unwrap_or_default(),
                html_url: answer.body["html_url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                reused: false,
            }),
            422 if message(&answer.body).contains("pull request already exists") => {
                let existing = call(
                    &self.client,
                    Method::Get,
                    &self.path(&format!("/pulls?state=open&head={}:{head}", self.owner)),
                    None,
                )
                .await?;
                let first = existing
                    .body
                    .as_array()
                    .and_then(|prs| prs.first())
                    .cloned();
                match first {
                    Some(pr) => Ok(PullRequest {
                        number: pr["number"].as_u64().unwrap_or_default(),
                        html_url: pr["html_url"].as_str().unwrap_or_default().to_string(),
                        reused: true,
                    }),
                    None => Err(refused("the pull request", 422, &answer.body)),
                }
            }
            403 | 404 => Err(GithubError::CannotPush { repo: self.repo() }),
            status => Err(refused("the pull request", status, &answer.body)),
        }
    }

    /// An issue's title and body (a task given as a GitHub issue number).
    pub async fn issue(&self, number: u64) -> Result<(String, String)> {
        let answer = call(
            &self.client,
            Method::Get,
            &self.path(&format!("/issues/{number}")),
            None,
        )
        .await?;
        match answer.status {
            200 => Ok((
                answer.body["title"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                answer.body["body"].as_str().unwrap_or_default().to_string(),
            )),
            404 | 410 => Err(GithubError::Refused {
                what: format!("issue #{number}"),
                status: answer.status,
                message: format!("{} has no issue #{number}", self.repo()),
            }),
            status => Err(refused(&format!("issue #{number}"), status, &answer.body)),
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
        let found = call(&self.client, Method::Get, &search_path, None).await?;
        if found.status == 200 {
            let same = found.body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|item| {
                    item["title"].as_str() == Some(title) && item["pull_request"].is_null()
                });
            if let Some(item) = same {
                return Ok(IssueLink {
                    number: item["number"].as_u64().unwrap_or_default(),
                    html_url: item["html_url"].as_str().unwrap_or_default().to_string(),
                    existed: true,
                });
            }
        }
        let request = json!({"title": title, "body": body, "labels": labels});
        let answer = call(
            &self.client,
            Method::Post,
            &self.path("/issues"),
            Some(&request),
        )
        .await?;
        match answer.status {
            201 => Ok(IssueLink {
                number: answer.body["number"].as_u64().unwrap_or_default(),
                html_url: answer.body["html_url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                existed: false,
            }),
            403 | 404 => Err(GithubError::Refused {
                what: "the new issue".into(),
                status: answer.status,
                message: format!(
                    "the token cannot create issues in {} (it needs Issues: read and write)",
                    self.repo()
                ),
            }),
            410 => Err(refused(
                "the new issue (issues are turned off for this repository)",
                410,
                &answer.body,
            )),
            status => Err(refused("the new issue", status, &answer.body)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_waits_come_from_the_headers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(rate_limit_wait(&headers), None);
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(rate_limit_wait(&headers), Some(Duration::from_secs(7)));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        let reset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 30;
        headers.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        let wait = rate_limit_wait(&headers).unwrap();
        assert!(
            wait <= Duration::from_secs(30) && wait >= Duration::from_secs(28),
            "{wait:?}"
        );
    }

    #[test]
    fn error_messages_join_githubs_details() {
        let body = json!({"message": "Validation Failed", "errors": [{"message": "A pull request already exists for acme:x."}]});
        assert_eq!(
            message(&body),
            "Validation Failed (A pull request already exists for acme:x.)"
        );
    }
}
