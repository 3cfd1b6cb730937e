//! One GitHub REST call with the retry policy: 5xx and transport errors back off and retry; a
//! secondary rate limit (`retry-after`) or an exhausted primary limit (`x-ratelimit-remaining: 0`)
//! waits as GitHub asks, up to `MAX_WAIT`. Other statuses are returned for the caller to judge.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::{GithubError, Result};
use crate::secret::Secret;

/// How many times one call is tried when GitHub answers 5xx or asks us to wait.
const ATTEMPTS: u32 = 4;
/// Waits GitHub asks for beyond this are reported instead of slept through.
const MAX_WAIT: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("codecourier/", env!("CARGO_PKG_VERSION"));

/// How requests are signed.
#[derive(Clone)]
pub(super) enum Auth {
    /// A personal token or an installation token.
    Token(Secret),
    /// A GitHub App: each request carries a fresh JWT signed with the App's key.
    App(u64, jsonwebtoken::EncodingKey),
}

#[derive(Clone)]
pub(super) struct Api {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

#[derive(Clone, Copy)]
pub(super) enum Method {
    Get,
    Post,
    Delete,
}

/// GitHub's answer: its status and body.
pub(super) struct Answer {
    pub status: u16,
    body: Vec<u8>,
}

/// The error body GitHub sends: a message and, for validation failures, details.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

impl Answer {
    /// The body as `T`; a body GitHub would never send is reported as refused.
    pub fn parse<T: DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| GithubError::Refused {
            what: what.into(),
            status: self.status,
            message: format!("the answer could not be read: {e}"),
        })
    }

    /// GitHub's message, with the details of a validation failure joined on.
    pub fn message(&self) -> String {
        let body: ErrorBody = serde_json::from_slice(&self.body).unwrap_or_default();
        let mut text = body.message.unwrap_or_else(|| "no message".into());
        let details: Vec<String> = body.errors.into_iter().filter_map(|e| e.message).collect();
        if !details.is_empty() {
            text.push_str(&format!(" ({})", details.join("; ")));
        }
        text
    }

    pub fn refused(&self, what: &str) -> GithubError {
        GithubError::Refused {
            what: what.into(),
            status: self.status,
            message: self.message(),
        }
    }
}

/// The claims of a GitHub App's JWT: issued a minute ago (clock drift), valid for nine minutes.
#[derive(serde::Serialize)]
struct AppClaims {
    iat: u64,
    exp: u64,
    iss: String,
}

impl Api {
    pub fn new(base: &str, auth: Auth) -> Result<Self> {
        if reqwest::Url::parse(base).is_err() {
            return Err(GithubError::Unreachable(format!(
                "GITHUB_API_URL {base} is not a URL"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| GithubError::Unreachable(e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            auth,
        })
    }

    fn authorization(&self) -> Result<String> {
        match &self.auth {
            Auth::Token(token) => Ok(format!("Bearer {}", token.expose())),
            Auth::App(app_id, key) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let claims = AppClaims {
                    iat: now.saturating_sub(60),
                    exp: now + 9 * 60,
                    iss: app_id.to_string(),
                };
                let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                let jwt = jsonwebtoken::encode(&header, &claims, key).map_err(|_| {
                    GithubError::Unreachable("the GitHub App key cannot sign a token".into())
                })?;
                Ok(format!("Bearer {jwt}"))
            }
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut last_status = 0;
        for attempt in 0..ATTEMPTS {
            let backoff = Duration::from_millis(250 * 2u64.pow(attempt));
            let mut request = match method {
                Method::Get => self.http.get(&url),
                Method::Post => self.http.post(&url),
                Method::Delete => self.http.delete(&url),
            }
            .header("authorization", self.authorization()?)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    let error = short_error(e);
                    tracing::debug!(path, error, "GitHub request failed; retrying");
                    if attempt + 1 == ATTEMPTS {
                        return Err(GithubError::Unreachable(format!("{path}: {error}")));
                    }
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
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
}

/// How long GitHub asks us to wait, if this answer is a rate limit.
fn rate_limit_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
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

/// A transport error in a few words: never the request (whose headers carry the token).
fn short_error(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        e.without_url().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_waits_come_from_the_headers() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(rate_limit_wait(&headers), None);
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(rate_limit_wait(&headers), Some(Duration::from_secs(7)));
        let mut headers = reqwest::header::HeaderMap::new();
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
        let answer = Answer {
            status: 422,
            body: br#"{"message": "Validation Failed", "errors": [{"message": "A pull request already exists for acme:x."}]}"#.to_vec(),
        };
        assert_eq!(
            answer.message(),
            "Validation Failed (A pull request already exists for acme:x.)"
        );
        let empty = Answer {
            status: 502,
            body: b"<html>".to_vec(),
        };
        assert_eq!(empty.message(), "no message");
    }
}
