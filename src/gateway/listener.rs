//! The gateway's HTTP server: accept loops on TCP and Unix sockets, the routing of each request to
//! the model proxy, the git proxy or the egress proxy, and the small HTTP helpers they share.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::{egress, git, model, Shared};

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every answer's body: a whole text, or a stream forwarded from upstream.
pub(super) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Accepts connections until `stop` is cancelled; each is served on its own task.
pub(super) async fn accept_tcp(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, shared.clone()));
            }
            Err(e) => tracing::warn!("gateway: accept failed: {e}"),
        }
    }
}

pub(super) async fn accept_unix(
    listener: tokio::net::UnixListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, shared.clone()));
            }
            Err(e) => tracing::warn!("gateway: accept failed: {e}"),
        }
    }
}

async fn serve_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(&shared, request).await) }
    });
    // Upgrades carry CONNECT tunnels; the timer bounds how long a client may take to send its
    // headers; a client that hangs up mid-request is no error of ours.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

/// One request to the part that answers it: CONNECT and absolute URIs are proxy requests, the rest
/// name a model API or `/git/` in their path.
async fn route(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    if request.method() == Method::CONNECT {
        return egress::connect(shared, request).await;
    }
    if request.uri().scheme().is_some() {
        return egress::forward_http(shared, request).await;
    }
    let path = request.uri().path().to_string();
    if path.starts_with("/git/") {
        return git::forward(shared, request).await;
    }
    let (segment, rest) = match path[1..].split_once('/') {
        Some((segment, rest)) => (segment, format!("/{rest}")),
        None => (&path[1..], String::new()),
    };
    match model::ModelApi::from_path_segment(segment) {
        Some(api) => model::forward(shared, api, &rest, request).await,
        None => text(
            StatusCode::NOT_FOUND,
            "CodeCourier gateway: no such route; model APIs are under /anthropic, /openai and /openrouter, git under /git/",
        ),
    }
}

/// A plain-text answer; git shows such a body to the user as `remote: …` lines.
pub(super) fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(full(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(super) fn empty() -> Body {
    full(Bytes::new())
}

/// Headers that belong to one connection, never forwarded (RFC 9110 section 7.6.1, and the
/// `Proxy-Connection` some clients still send), plus `Host` (set by the client that forwards).
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// The password of a Basic credential (the user name is ignored: git and proxies put anything
/// there).
pub(super) fn basic_password(value: Option<&HeaderValue>) -> Option<String> {
    let encoded = value?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_, password) = decoded.split_once(':')?;
    Some(password.to_string())
}

/// `Basic base64(user:password)`, marked sensitive so hyper never logs it.
pub(super) fn basic_credential(user: &str, password: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value =
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header");
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn basic_credentials_round_trip_and_keep_colons_in_the_password() {
        let value = basic_credential("x-access-token", "a:b");
        assert_eq!(basic_password(Some(&value)).as_deref(), Some("a:b"));
        assert_eq!(
            basic_password(Some(&HeaderValue::from_static("Bearer x"))),
            None
        );
        assert_eq!(basic_password(None), None);
    }
}
