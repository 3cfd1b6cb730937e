//! A fake GitHub git host: bare repositories served over smart HTTP by the real `git http-backend`
//! CGI (clone, fetch and push), behind Basic auth with a token. Without the token it answers 401
//! with `WWW-Authenticate: Basic realm="GitHub"`, as GitHub does for a private repository, so git
//! takes the credential path it takes against GitHub. Every request it receives is recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use base64::Engine;
use tokio::io::AsyncWriteExt;

/// One request as the host received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Whether it carried the token.
    pub authorized: bool,
    /// Every header as `name: value` lines, to look for what must never arrive.
    pub headers: String,
    pub body_len: usize,
}

struct Host {
    token: String,
    /// `owner/name` → the bare repository on disk.
    repos: BTreeMap<String, PathBuf>,
    seen: Mutex<Vec<Seen>>,
}

pub struct GitHost {
    addr: SocketAddr,
    host: Arc<Host>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for GitHost {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl GitHost {
    /// Serves each `(owner/name, bare repository)` at `/<owner>/<name>.git`, for `token`.
    pub async fn start(token: &str, repos: &[(&str, &Path)]) -> Self {
        let host = Arc::new(Host {
            token: token.to_string(),
            repos: repos
                .iter()
                .map(|(name, path)| (name.to_string(), path.to_path_buf()))
                .collect(),
            seen: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(serve).with_state(host.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, host, server }
    }

    /// The clone URL of `owner/name`, as GitHub's API gives it (`clone_url`).
    pub fn clone_url(&self, repo: &str) -> String {
        format!("http://{}/{repo}.git", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.host.seen.lock().unwrap().clone()
    }
}

async fn serve(
    State(host): State<Arc<Host>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    // Read whole, without axum's default limit: a pack may be large (GitHub takes up to 2 GiB).
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Body::from("the request body broke off\n"))
            .unwrap();
    };
    let authorized = password(&headers).as_deref() == Some(host.token.as_str());
    host.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        authorized,
        headers: headers
            .iter()
            .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
            .collect(),
        body_len: body.len(),
    });
    if !authorized {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"GitHub\"")
            .body(Body::from("Invalid username or token. Password authentication is not supported for Git operations.\n"))
            .unwrap();
    }
    let found = host.repos.iter().find_map(|(name, path)| {
        uri.path()
            .strip_prefix(&format!("/{name}.git"))
            .map(|rest| (path, rest))
    });
    let Some((repo, rest)) = found else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("Repository not found.\n"))
            .unwrap();
    };
    http_backend(repo, rest, &method, uri.query(), &headers, body).await
}

fn password(headers: &HeaderMap) -> Option<String> {
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_, password) = decoded.split_once(':')?;
    Some(password.to_string())
}

/// Runs `git http-backend` for one request, with the CGI variables a web server sets.
async fn http_backend(
    repo: &Path,
    rest: &str,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", repo.parent().unwrap())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        // Partial clones, as GitHub serves them: filters, and the objects a lazy fetch asks for.
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "uploadpack.allowFilter")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GIT_CONFIG_KEY_1", "uploadpack.allowAnySHA1InWant")
        .env("GIT_CONFIG_VALUE_1", "true")
        .env(
            "PATH_INFO",
            format!("/{}{rest}", repo.file_name().unwrap().to_string_lossy()),
        )
        .env("QUERY_STRING", query.unwrap_or_default())
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_TYPE", header_text(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header_text(header::CONTENT_ENCODING),
        )
        .env(
            "GIT_PROTOCOL",
            header_text(header::HeaderName::from_static("git-protocol")),
        )
        // An authenticated user turns receive-pack on, as on GitHub for a token that may push.
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("git http-backend starts");
    let mut stdin = child.stdin.take().unwrap();
    tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await.unwrap();
    cgi_response(&output.stdout).unwrap_or_else(|| {
        Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from(format!(
                "git http-backend failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )))
            .unwrap()
    })
}

/// A CGI answer: header lines (`Status:` among them), a blank line, the body.
fn cgi_response(stdout: &[u8]) -> Option<Response<Body>> {
    let split = stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, 4))
        .or_else(|| {
            stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|at| (at, 2))
        })?;
    let (head, body) = (&stdout[..split.0], &stdout[split.0 + split.1..]);
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(head).lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next()?.parse::<u16>().ok()?;
            response = response.status(code);
        } else {
            response = response.header(name, HeaderValue::from_str(value).ok()?);
        }
    }
    response.body(Body::from(body.to_vec())).ok()
}
