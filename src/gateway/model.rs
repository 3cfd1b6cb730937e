//! The model API proxy: a CLI in a sandbox calls `http://<gateway>/<api>/…` with the placeholder as
//! its key; the request goes on to the grant's upstream with the real key, and the answer streams
//! back chunk by chunk. Also the seam for budgets and metering (`ModelTraffic`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::grants::ModelKey;
use super::listener::{full, strip_hop_by_hop, Body};
use super::Shared;
use crate::secret::Secret;

/// The model APIs the agent CLIs speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelApi {
    /// Anthropic Messages (Claude Code).
    Anthropic,
    /// OpenAI Responses (Codex).
    OpenAi,
    /// OpenRouter's OpenAI-compatible chat completions (OpenCode, Pi).
    OpenRouter,
}

impl ModelApi {
    pub const ALL: [ModelApi; 3] = [ModelApi::Anthropic, ModelApi::OpenAi, ModelApi::OpenRouter];

    /// The first path segment of this API on the gateway: `http://<gateway>/anthropic`.
    pub fn path_segment(self) -> &'static str {
        match self {
            ModelApi::Anthropic => "anthropic",
            ModelApi::OpenAi => "openai",
            ModelApi::OpenRouter => "openrouter",
        }
    }

    pub fn from_path_segment(segment: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|api| api.path_segment() == segment)
    }

    /// The variable that names this API's upstream base URL, in CodeCourier's environment and in
    /// a launch's.
    pub fn base_url_var(self) -> &'static str {
        match self {
            ModelApi::Anthropic => "ANTHROPIC_BASE_URL",
            ModelApi::OpenAi => "OPENAI_BASE_URL",
            ModelApi::OpenRouter => "OPENROUTER_BASE_URL",
        }
    }

    /// The API a key variable of the catalog is for, and the key as that API takes it.
    pub fn of_key(var: &str, value: &Secret) -> Option<(ModelApi, ModelKey)> {
        let key = ModelKey::ApiKey(value.clone());
        match var {
            "ANTHROPIC_API_KEY" => Some((ModelApi::Anthropic, key)),
            "CLAUDE_CODE_OAUTH_TOKEN" => {
                Some((ModelApi::Anthropic, ModelKey::OAuthToken(value.clone())))
            }
            "OPENAI_API_KEY" => Some((ModelApi::OpenAi, key)),
            "OPENROUTER_API_KEY" => Some((ModelApi::OpenRouter, key)),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ModelApi::Anthropic => "Anthropic",
            ModelApi::OpenAi => "OpenAI",
            ModelApi::OpenRouter => "OpenRouter",
        }
    }
}

/// A model request as the admission check and the observer see it.
pub struct ModelRequest<'a> {
    pub api: ModelApi,
    pub method: &'a Method,
    /// The path below the API's base URL, such as `/v1/messages`.
    pub path: &'a str,
    pub body: &'a Bytes,
}

/// Why a request is not sent upstream, in the API's own error shape.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

/// One launch's model traffic, seen by whoever budgets or meters it. Both methods run on the
/// request's task, so they must be quick.
pub trait ModelTraffic: Send + Sync {
    /// The turns a request must wait for before it is admitted: answers in flight at once are
    /// bounded, so a budget is passed by at most those already running when it is reached.
    fn turns(&self, _request: &ModelRequest<'_>) -> Option<Arc<Semaphore>> {
        None
    }

    /// Before anything goes upstream: a refusal is answered to the CLI instead (a spent budget).
    fn admit(&self, _request: &ModelRequest<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    /// When upstream has answered with `status`: an observer for the bytes of this response.
    fn observe(
        &self,
        _request: &ModelRequest<'_>,
        _status: StatusCode,
    ) -> Option<Box<dyn ResponseObserver>> {
        None
    }
}

/// Sees a response's bytes as they are forwarded (an SSE stream's usage events, for metering).
pub trait ResponseObserver: Send {
    fn chunk(&mut self, bytes: &[u8]);
    /// `complete` is false when the stream broke or the grant was revoked. When the client leaves
    /// early, the rest of the answer is still read for the observer (`Observed`'s drop).
    fn end(self: Box<Self>, complete: bool);
}

/// The largest request body forwarded (Anthropic's own limit for the Messages API).
const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// Headers that carry credentials or would undo the forwarding; the real key is set afresh.
const NOT_FORWARDED: [HeaderName; 5] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    header::COOKIE,
    header::CONTENT_LENGTH,
    // Identity bytes, so an observer reads the events themselves.
    header::ACCEPT_ENCODING,
];

pub(super) async fn forward(
    shared: &Arc<Shared>,
    api: ModelApi,
    rest: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let Some(placeholder) = presented_key(request.headers()) else {
        return api_error(
            api,
            StatusCode::UNAUTHORIZED,
            "no API key: the CodeCourier gateway expects this launch's placeholder key",
        );
    };
    let Some(live) = shared.grants.lookup(&placeholder) else {
        return api_error(
            api,
            StatusCode::UNAUTHORIZED,
            "invalid API key: not a live CodeCourier launch's placeholder (a placeholder stops working when its launch ends)",
        );
    };
    let Some(grant) = live.model(api) else {
        return api_error(
            api,
            StatusCode::FORBIDDEN,
            &format!("this launch has no {} key at the gateway", api.name()),
        );
    };
    if has_dot_segment(rest) {
        return api_error(
            api,
            StatusCode::BAD_REQUEST,
            "the path may not climb above the API's base URL",
        );
    }
    let upstream_base = grant
        .upstream
        .as_ref()
        .unwrap_or_else(|| shared.upstreams.get(api));
    let mut url = format!("{}{rest}", upstream_base.as_str().trim_end_matches('/'));
    if let Some(query) = request.uri().query() {
        url.push('?');
        url.push_str(query);
    }

    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return api_error(
                api,
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than 32 MiB or broke off",
            )
        }
    };
    let model_request = ModelRequest {
        api,
        method: &parts.method,
        path: rest,
        body: &body,
    };
    let traffic = live.grant.traffic.clone();
    let turns = traffic.as_ref().and_then(|t| t.turns(&model_request));
    let turn = match turns {
        Some(turns) => tokio::select! {
            turn = turns.acquire_owned() => turn.ok(),
            _ = live.revoked.cancelled() => return api_error(
                api,
                StatusCode::UNAUTHORIZED,
                "the launch ended while this request waited for its turn",
            ),
        },
        None => None,
    };
    if let Some(traffic) = &traffic {
        if let Err(refusal) = traffic.admit(&model_request) {
            return api_error(api, refusal.status, &refusal.message);
        }
    }

    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    for name in &NOT_FORWARDED {
        headers.remove(name);
    }
    remove_values_containing(&mut headers, &placeholder);
    let (name, value) = credential_header(api, &grant.key);
    headers.insert(name, value);

    let sent = shared
        .http
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body.clone())
        .send()
        .await;
    let upstream = match sent {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::warn!(launch = %live.grant.label, api = api.path_segment(), "gateway: model upstream unreachable: {}", e.without_url());
            return api_error(
                api,
                StatusCode::BAD_GATEWAY,
                &format!(
                    "the CodeCourier gateway cannot reach the {} upstream",
                    api.name()
                ),
            );
        }
    };
    let status = upstream.status();
    tracing::debug!(launch = %live.grant.label, api = api.path_segment(), method = %parts.method, path = rest, status = status.as_u16(), "gateway: model request");
    let observer = traffic
        .as_ref()
        .and_then(|t| t.observe(&model_request, status));

    let mut response_headers = upstream.headers().clone();
    strip_hop_by_hop(&mut response_headers);
    let stream = Observed {
        inner: Some(upstream.bytes_stream().boxed()),
        observer,
        revoked: live.revoked.clone(),
        turn,
    }
    .take_until(live.revoked.clone().cancelled_owned())
    .map_ok(Frame::data)
    .map_err(Into::into);
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

/// The key the CLI sent: `x-api-key` (Anthropic) or a bearer token (all of them).
fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim().to_string());
    }
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))?;
    Some(token.trim().to_string())
}

/// The real credential, in the header its API takes for its kind.
pub fn credential_header(api: ModelApi, key: &ModelKey) -> (HeaderName, HeaderValue) {
    let (name, text) = match (api, key) {
        (ModelApi::Anthropic, ModelKey::ApiKey(key)) => (
            HeaderName::from_static("x-api-key"),
            key.expose().to_string(),
        ),
        (_, ModelKey::ApiKey(key) | ModelKey::OAuthToken(key)) => {
            (header::AUTHORIZATION, format!("Bearer {}", key.expose()))
        }
    };
    // A key with a byte a header cannot hold is sent as nothing (upstream then answers 401)
    // rather than echoed into an error.
    let mut value = HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(true);
    (name, value)
}

/// Drops any header that carries the placeholder, whatever its name, so it never leaves the host.
fn remove_values_containing(headers: &mut HeaderMap, placeholder: &str) {
    let carrying: Vec<HeaderName> = headers
        .iter()
        .filter(|(_, v)| {
            v.as_bytes()
                .windows(placeholder.len())
                .any(|w| w == placeholder.as_bytes())
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in carrying {
        headers.remove(name);
    }
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// An error in the shape the API's clients parse, so the CLI shows the message.
fn api_error(api: ModelApi, status: StatusCode, message: &str) -> Response<Body> {
    let body = match api {
        ModelApi::Anthropic => serde_json::json!({
            "type": "error",
            "error": {"type": anthropic_error_type(status), "message": message},
        }),
        ModelApi::OpenAi | ModelApi::OpenRouter => serde_json::json!({
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "code": (status == StatusCode::UNAUTHORIZED).then_some("invalid_api_key"),
            },
        }),
    };
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn anthropic_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// How long an answer the client left is still read for its usage.
const DRAIN_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// A response stream that shows each chunk to the grant's observer on its way to the client.
struct Observed {
    /// None once handed to `drain`.
    inner: Option<Upstream>,
    observer: Option<Box<dyn ResponseObserver>>,
    revoked: tokio_util::sync::CancellationToken,
    /// The request's turn, given back when its answer has been read to the end.
    turn: Option<OwnedSemaphorePermit>,
}

/// An upstream answer's bytes.
type Upstream = futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>;

impl Stream for Observed {
    type Item = reqwest::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let item = std::task::ready!(inner.poll_next_unpin(cx));
        match &item {
            Some(Ok(bytes)) => {
                if let Some(observer) = self.observer.as_mut() {
                    observer.chunk(bytes);
                }
            }
            Some(Err(_)) | None => {
                if let Some(observer) = self.observer.take() {
                    observer.end(item.is_none());
                }
            }
        }
        Poll::Ready(item)
    }
}

impl Drop for Observed {
    /// The client left before the answer ended: upstream still bills what it goes on to
    /// generate, and its final usage comes at the end, so the rest is read (and dropped) for the
    /// observer — until it ends, the grant is revoked, or `DRAIN_FOR` passes. Otherwise an
    /// agent could hide an answer's output from the meter by hanging up before its usage.
    fn drop(&mut self) {
        let Some(observer) = self.observer.take() else {
            return;
        };
        match (self.inner.take(), tokio::runtime::Handle::try_current()) {
            (Some(inner), Ok(runtime)) if !self.revoked.is_cancelled() => {
                let turn = self.turn.take();
                runtime.spawn(drain(inner, observer, self.revoked.clone(), turn));
            }
            _ => observer.end(false),
        }
    }
}

async fn drain(
    mut inner: Upstream,
    mut observer: Box<dyn ResponseObserver>,
    revoked: tokio_util::sync::CancellationToken,
    _turn: Option<OwnedSemaphorePermit>,
) {
    let read = async {
        while let Some(chunk) = inner.next().await {
            match chunk {
                Ok(bytes) => observer.chunk(&bytes),
                Err(_) => return false,
            }
        }
        true
    };
    let complete = tokio::select! {
        complete = tokio::time::timeout(DRAIN_FOR, read) => complete.unwrap_or(false),
        _ = revoked.cancelled() => false,
    };
    observer.end(complete);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn the_key_is_read_from_either_header() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("ccgw-a"));
        assert_eq!(presented_key(&headers).as_deref(), Some("ccgw-a"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer ccgw-b"),
        );
        assert_eq!(presented_key(&headers).as_deref(), Some("ccgw-b"));
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }

    #[test]
    fn each_api_gets_the_credential_header_it_takes() {
        let key = |s: &str| ModelKey::ApiKey(Secret::new(s));
        let (name, value) = credential_header(ModelApi::Anthropic, &key("sk-ant"));
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("x-api-key", "sk-ant")
        );
        let (name, value) = credential_header(
            ModelApi::Anthropic,
            &ModelKey::OAuthToken(Secret::new("oat")),
        );
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("authorization", "Bearer oat")
        );
        let (name, value) = credential_header(ModelApi::OpenRouter, &key("sk-or"));
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("authorization", "Bearer sk-or")
        );
        assert!(value.is_sensitive());
    }

    #[test]
    fn paths_that_climb_out_of_the_base_url_are_caught() {
        assert!(has_dot_segment("/../admin"));
        assert!(has_dot_segment("/v1/%2E%2e/x"));
        assert!(!has_dot_segment("/v1/messages"));
        assert!(!has_dot_segment(""));
    }
}
