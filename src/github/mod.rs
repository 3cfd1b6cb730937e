//! GitHub's REST API: repository and branch checks before a sandbox is paid for, the feature
//! branch, a token scoped to one repository, compare links, pull requests and issues. Only our own
//! types leave this module. Primary and secondary rate limits are honoured and 5xx answers retried
//! (`api.rs`); every other failure becomes a `GithubError` with a sentence the user can act on, and
//! the token never appears in one.

mod api;
mod repo;

use serde::Serialize;

use crate::config::{AppKey, GithubConfig};
use crate::secret::Secret;
use api::{Api, Auth, Method};

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
    /// The repository's size in KB as GitHub reports it (`None` when it did not say).
    pub size_kb: Option<u64>,
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
    api: Api,
    pub owner: String,
    pub name: String,
    /// For git: the personal token, or an installation token scoped to this repository
    /// (contents, pull requests and issues).
    pub git_token: Secret,
}

impl std::fmt::Debug for RepoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RepoClient({}/{})", self.owner, self.name)
    }
}

/// `GET /repos/{owner}/{repo}/installation`: the App's installation on the repository.
#[derive(serde::Deserialize)]
struct Installation {
    id: u64,
}

/// `POST /app/installations/{id}/access_tokens`.
#[derive(serde::Deserialize)]
struct AccessToken {
    token: String,
}

/// Connects for one repository: with a personal token as is; with a GitHub App, by minting an
/// installation token restricted to this repository.
pub async fn connect(config: &GithubConfig, owner: &str, name: &str) -> Result<RepoClient> {
    let repo = format!("{owner}/{name}");
    let Some(app) = &config.app else {
        let token = config.token.clone().ok_or(GithubError::BadCredentials)?;
        return Ok(RepoClient {
            api: Api::new(&config.api_url, Auth::Token(token.clone()))?,
            owner: owner.into(),
            name: name.into(),
            git_token: token,
        });
    };
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
    let as_app = Api::new(&config.api_url, Auth::App(app.app_id, key))?;
    let installation = as_app
        .call(
            Method::Get,
            &format!("/repos/{owner}/{name}/installation"),
            None,
        )
        .await?;
    let installation: Installation = match installation.status {
        200 => installation.parse("the installation lookup")?,
        404 => return Err(GithubError::AppNotInstalled { repo }),
        _ => return Err(installation.refused("the installation lookup")),
    };
    let body = serde_json::json!({
        "repositories": [name],
        "permissions": {"contents": "write", "pull_requests": "write", "issues": "write", "metadata": "read"},
    });
    let minted = as_app
        .call(
            Method::Post,
            &format!("/app/installations/{}/access_tokens", installation.id),
            Some(&body),
        )
        .await?;
    if minted.status != 201 {
        return Err(minted.refused("an installation token"));
    }
    let minted: AccessToken = minted.parse("an installation token")?;
    let token = Secret::new(minted.token);
    Ok(RepoClient {
        api: Api::new(&config.api_url, Auth::Token(token.clone()))?,
        owner: owner.into(),
        name: name.into(),
        git_token: token,
    })
}
