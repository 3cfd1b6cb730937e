//! The credential gateway against real clients on loopback: reqwest for the model APIs, the git
//! CLI for clone and push (to a git host served by `git http-backend` behind a token, as GitHub
//! serves a private repository), and CONNECT tunnels and reqwest's proxy support for the egress
//! proxy.

mod support;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Response, Uri};
use codecourier::gateway::{
    EgressPolicy, Gateway, GatewaySettings, GitGrant, Grant, GrantGuard, HostPattern, ModelApi,
    ModelGrant, ModelKey, ModelRequest, ModelTraffic, Push, Refusal, ResponseObserver, Upstreams,
};
use codecourier::secret::Secret;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use url::Url;

use support::git_http::GitHost;

const ANTHROPIC_KEY: &str = "sk-ant-api03-the-real-key-stays-on-the-host";
const OPENAI_KEY: &str = "sk-proj-the-real-openai-key";
const GITHUB_TOKEN: &str = "ghp_realtoken0123456789abcdefghijklmnopq";
const BRANCH: &str = "codecourier/ab12-fix-the-bug";
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Logs: every line any crate logs in this test binary, to show no key or placeholder is in them.

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static START: Once = Once::new();
    START.call_once(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| LogSink)
            .init();
    });
}

fn assert_logs_hold_none_of(secrets: &[&str]) {
    let logs = String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned();
    assert!(logs.contains("gateway:"), "the gateway logged nothing");
    for secret in secrets {
        assert!(!logs.contains(secret), "a secret is in the logs:\n{logs}");
    }
}

// ---------------------------------------------------------------------------------------------
// A fake model API: records each call and streams an SSE answer.

const FIRST_EVENT: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n";
const LAST_EVENTS: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":30}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
const REQUEST: &str = r#"{"model":"claude-sonnet-4-6","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[derive(Debug, Clone)]
struct ModelCall {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl ModelCall {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn carries(&self, text: &str) -> bool {
        self.headers
            .values()
            .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(text))
            || self.query.as_deref().unwrap_or_default().contains(text)
    }
}

struct FakeModel {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<ModelCall>>>,
    release: Arc<tokio::sync::Notify>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeModel {
    /// Answers each call with the whole stream at once.
    async fn start() -> Self {
        Self::serve(false).await
    }

    /// Sends the first event of each answer, and the rest only after `release_rest`.
    async fn holding() -> Self {
        Self::serve(true).await
    }

    async fn serve(hold: bool) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (recorded, held) = (calls.clone(), release.clone());
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (recorded, held) = (recorded.clone(), held.clone());
            async move {
                recorded.lock().unwrap().push(ModelCall {
                    path: uri.path().to_string(),
                    query: uri.query().map(str::to_string),
                    headers,
                    body,
                });
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
                tokio::spawn(async move {
                    let _ = tx
                        .send(Ok(Bytes::from_static(FIRST_EVENT.as_bytes())))
                        .await;
                    if hold {
                        held.notified().await;
                    }
                    let _ = tx
                        .send(Ok(Bytes::from_static(LAST_EVENTS.as_bytes())))
                        .await;
                });
                let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .header("request-id", "req_fake_1")
                    .body(Body::from_stream(stream))
                    .unwrap()
            }
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            calls,
            release,
            server,
        }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    fn release_rest(&self) {
        self.release.notify_one();
    }

    fn calls(&self) -> Vec<ModelCall> {
        self.calls.lock().unwrap().clone()
    }
}

fn settings(anthropic: Url, openai: Url, egress: EgressPolicy) -> GatewaySettings {
    GatewaySettings {
        upstreams: Upstreams {
            anthropic,
            openai,
            openrouter: Url::parse("http://127.0.0.1:9/api/v1").unwrap(),
        },
        egress,
    }
}

fn list_only(extra: &[&str]) -> EgressPolicy {
    let extra: Vec<HostPattern> = extra
        .iter()
        .map(|h| HostPattern::parse(h).unwrap())
        .collect();
    EgressPolicy::registries_and(&extra, false)
}

async fn model_gateway(upstream: &FakeModel) -> Gateway {
    capture_logs();
    Gateway::start(settings(
        upstream.url(""),
        upstream.url("/v1"),
        list_only(&[]),
    ))
    .await
    .unwrap()
}

fn anthropic_grant(label: &str) -> Grant {
    Grant {
        label: label.into(),
        models: vec![ModelGrant::new(
            ModelApi::Anthropic,
            ModelKey::ApiKey(Secret::new(ANTHROPIC_KEY)),
        )],
        ..Grant::default()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn next_chunk(response: &mut reqwest::Response) -> Option<Bytes> {
    tokio::time::timeout(WAIT, response.chunk())
        .await
        .expect("no chunk within the wait")
        .expect("the stream broke")
}

async fn messages(gateway: &Gateway, key_header: (&str, String)) -> reqwest::Response {
    let base = gateway.reach_on_host().model_base_url(ModelApi::Anthropic);
    client()
        .post(format!("{base}/v1/messages?beta=true"))
        .header(key_header.0, key_header.1)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(REQUEST)
        .send()
        .await
        .unwrap()
}

fn x_api_key(guard: &GrantGuard) -> (&'static str, String) {
    ("x-api-key", guard.placeholder().expose().to_string())
}

// ---------------------------------------------------------------------------------------------
// Model APIs

#[tokio::test]
async fn a_streamed_answer_arrives_chunk_by_chunk_and_upstream_sees_the_real_key_only() {
    let upstream = FakeModel::holding().await;
    let gateway = model_gateway(&upstream).await;
    let guard = gateway.grant(anthropic_grant("sbx-stream"));
    let placeholder = guard.placeholder().expose().to_string();

    let mut response = messages(&gateway, x_api_key(&guard)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["request-id"], "req_fake_1");
    // Upstream holds back the rest of its answer until the first event has come through.
    let first = next_chunk(&mut response).await.expect("a first chunk");
    assert_eq!(String::from_utf8_lossy(&first), FIRST_EVENT);
    upstream.release_rest();
    let mut rest = Vec::new();
    while let Some(chunk) = next_chunk(&mut response).await {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8_lossy(&rest), LAST_EVENTS);

    let calls = upstream.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.path, "/v1/messages");
    assert_eq!(call.query.as_deref(), Some("beta=true"));
    assert_eq!(call.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(call.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(call.body, REQUEST.as_bytes());
    assert!(
        !call.carries(&placeholder),
        "the placeholder went upstream: {call:?}"
    );
    assert_logs_hold_none_of(&[ANTHROPIC_KEY, &placeholder]);
}

/// The real Claude Code CLI, given only the gateway's base URL and the placeholder, runs a turn
/// with a tool call against the fake Anthropic API, which sees the real key on every request.
#[tokio::test(flavor = "multi_thread")]
async fn claude_code_works_through_the_gateway_holding_only_the_placeholder() {
    capture_logs();
    let api = support::fake_anthropic::start(support::fake_anthropic::Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let gateway = Gateway::start(settings(
        Url::parse(&api.uri()).unwrap(),
        Url::parse("http://127.0.0.1:9/v1").unwrap(),
        list_only(&[]),
    ))
    .await
    .unwrap();
    let guard = gateway.grant(anthropic_grant("sbx-claude"));
    let placeholder = guard.placeholder().expose().to_string();
    let home = tempfile::tempdir().unwrap();
    let project = home.path().join("project");
    std::fs::create_dir(&project).unwrap();

    let mut claude = tokio::process::Command::new(support::claude_code_bin().join("claude"));
    claude
        .args(["-p", "--output-format", "stream-json", "--verbose"])
        .args([
            "--dangerously-skip-permissions",
            "--model",
            "claude-sonnet-4-6",
        ])
        .current_dir(&project)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", home.path())
        .env("IS_SANDBOX", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .env("DISABLE_AUTOUPDATER", "1")
        .env(
            "ANTHROPIC_BASE_URL",
            gateway.reach_on_host().model_base_url(ModelApi::Anthropic),
        )
        .env("ANTHROPIC_API_KEY", &placeholder)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = claude.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Create hello.txt").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("claude finished within two minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    let result: serde_json::Value = stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .find(|event: &serde_json::Value| event["type"] == "result")
        .unwrap_or_else(|| panic!("no result event: {stdout}"));
    assert_eq!(
        result["result"],
        support::fake_anthropic::FINAL_TEXT,
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("hello.txt")).unwrap(),
        "hello\n"
    );

    let requests = api.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "the tool call and the final answer");
    for request in &requests {
        assert_eq!(
            request
                .headers
                .get("x-api-key")
                .map(|v| v.to_str().unwrap()),
            Some(ANTHROPIC_KEY)
        );
        let headers = format!("{:?}", request.headers);
        assert!(!headers.contains(&placeholder), "{headers}");
    }
}

#[tokio::test]
async fn each_api_gets_its_own_upstream_and_credential_header() {
    let upstream = FakeModel::start().await;
    let gateway = model_gateway(&upstream).await;
    let guard = gateway.grant(Grant {
        label: "sbx-apis".into(),
        models: vec![
            ModelGrant::new(
                ModelApi::Anthropic,
                ModelKey::OAuthToken(Secret::new(ANTHROPIC_KEY)),
            ),
            ModelGrant::new(ModelApi::OpenAi, ModelKey::ApiKey(Secret::new(OPENAI_KEY))),
        ],
        ..Grant::default()
    });
    let placeholder = guard.placeholder().expose().to_string();

    // Claude Code with an OAuth token sends a bearer token; the real token goes on as one.
    let response = messages(&gateway, ("authorization", format!("Bearer {placeholder}"))).await;
    assert_eq!(response.status(), 200);
    // Codex calls <base>/responses; its base stands for https://api.openai.com/v1.
    let base = gateway.reach_on_host().model_base_url(ModelApi::OpenAi);
    let response = client()
        .post(format!("{base}/responses"))
        .bearer_auth(&placeholder)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let calls = upstream.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].path, "/v1/messages");
    assert_eq!(
        calls[0].header("authorization"),
        Some(format!("Bearer {ANTHROPIC_KEY}").as_str())
    );
    assert_eq!(calls[0].header("x-api-key"), None);
    assert_eq!(calls[1].path, "/v1/responses");
    assert_eq!(
        calls[1].header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert!(calls.iter().all(|c| !c.carries(&placeholder)));
}

#[tokio::test]
async fn a_wrong_or_revoked_placeholder_gets_401_and_upstream_sees_nothing() {
    let upstream = FakeModel::start().await;
    let gateway = model_gateway(&upstream).await;

    let response = messages(&gateway, ("anthropic-version", "2023-06-01".into())).await;
    assert_eq!(response.status(), 401, "no key at all");
    let response = messages(
        &gateway,
        ("x-api-key", "ccgw-0123456789abcdef0123456789abcdef".into()),
    )
    .await;
    assert_eq!(response.status(), 401, "a made-up placeholder");
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "authentication_error");
    let response = messages(&gateway, ("x-api-key", ANTHROPIC_KEY.into())).await;
    assert_eq!(
        response.status(),
        401,
        "the real key itself is no placeholder"
    );
    assert!(upstream.calls().is_empty());

    let guard = gateway.grant(anthropic_grant("sbx-revoked"));
    let key = x_api_key(&guard);
    let response = messages(&gateway, key.clone()).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    guard.revoke();
    let response = messages(&gateway, key).await;
    assert_eq!(
        response.status(),
        401,
        "the placeholder after its launch ended"
    );
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("stops working when its launch ends"));
    assert_eq!(upstream.calls().len(), 1);
}

#[tokio::test]
async fn revoking_a_grant_cuts_its_open_stream() {
    let upstream = FakeModel::holding().await;
    let gateway = model_gateway(&upstream).await;
    let guard = gateway.grant(anthropic_grant("sbx-cut"));
    let mut response = messages(&gateway, x_api_key(&guard)).await;
    next_chunk(&mut response).await.expect("a first chunk");
    drop(guard);
    assert_eq!(
        next_chunk(&mut response).await,
        None,
        "the stream ends with its launch"
    );
}

#[tokio::test]
async fn a_grant_may_send_its_launch_to_another_upstream() {
    let configured = FakeModel::start().await;
    let operator = FakeModel::start().await;
    let gateway = model_gateway(&configured).await;
    let mut grant = anthropic_grant("sbx-override");
    grant.models[0].upstream = Some(operator.url("/llm-gateway/anthropic"));
    let guard = gateway.grant(grant);

    let response = messages(&gateway, x_api_key(&guard)).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("message_stop"));
    assert!(configured.calls().is_empty());
    let calls = operator.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/llm-gateway/anthropic/v1/messages");
    assert_eq!(calls[0].header("x-api-key"), Some(ANTHROPIC_KEY));
}

#[tokio::test]
async fn unknown_api_paths_and_apis_the_launch_was_not_given_are_refused() {
    let upstream = FakeModel::start().await;
    let gateway = model_gateway(&upstream).await;
    let guard = gateway.grant(anthropic_grant("sbx-paths"));
    let placeholder = guard.placeholder().expose().to_string();
    let root = format!("http://{}", gateway.addr());

    let response = client()
        .post(format!("{root}/gemini/v1beta/models"))
        .bearer_auth(&placeholder)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = client()
        .post(format!("{root}/openai/responses"))
        .bearer_auth(&placeholder)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "no OpenAI key in this grant");
    assert!(response.text().await.unwrap().contains("no OpenAI key"));
    // Sent as written (an HTTP client would resolve the dot segments itself).
    let mut raw = TcpStream::connect(gateway.addr()).await.unwrap();
    let request = format!(
        "GET /anthropic/v1/%2e%2e/%2E%2E/admin HTTP/1.1\r\nHost: x\r\nx-api-key: {placeholder}\r\nConnection: close\r\n\r\n"
    );
    raw.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "a path above the base URL: {answer}"
    );
    assert!(upstream.calls().is_empty());
}

/// Each observed response's bytes, and whether it ended complete.
type Observed = Arc<Mutex<Vec<(Vec<u8>, bool)>>>;

/// A budget of a number of requests, and a meter of the bytes each response carried.
struct Metered {
    requests_left: Mutex<u32>,
    seen: Observed,
}

struct Meter {
    bytes: Vec<u8>,
    seen: Observed,
}

impl ModelTraffic for Metered {
    fn admit(&self, request: &ModelRequest<'_>) -> Result<(), Refusal> {
        assert_eq!(request.path, "/v1/messages");
        assert_eq!(request.body, REQUEST.as_bytes());
        let mut left = self.requests_left.lock().unwrap();
        if *left == 0 {
            return Err(Refusal {
                status: http::StatusCode::TOO_MANY_REQUESTS,
                message: "this launch's budget is spent".into(),
            });
        }
        *left -= 1;
        Ok(())
    }

    fn observe(
        &self,
        _request: &ModelRequest<'_>,
        status: http::StatusCode,
    ) -> Option<Box<dyn ResponseObserver>> {
        assert_eq!(status, 200);
        Some(Box::new(Meter {
            bytes: Vec::new(),
            seen: self.seen.clone(),
        }))
    }
}

impl ResponseObserver for Meter {
    fn chunk(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    fn end(self: Box<Self>, complete: bool) {
        self.seen.lock().unwrap().push((self.bytes, complete));
    }
}

#[tokio::test]
async fn a_grant_s_traffic_seam_admits_requests_and_sees_every_response_byte() {
    let upstream = FakeModel::start().await;
    let gateway = model_gateway(&upstream).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut grant = anthropic_grant("sbx-metered");
    grant.traffic = Some(Arc::new(Metered {
        requests_left: Mutex::new(1),
        seen: seen.clone(),
    }));
    let guard = gateway.grant(grant);

    let response = messages(&gateway, x_api_key(&guard)).await;
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(body.to_vec(), true)],
        "the observer saw exactly what the client got, to its end"
    );

    let response = messages(&gateway, x_api_key(&guard)).await;
    assert_eq!(response.status(), 429);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert_eq!(error["error"]["message"], "this launch's budget is spent");
    assert_eq!(upstream.calls().len(), 1, "the refused request stayed here");
}

#[tokio::test]
async fn a_client_that_hangs_up_before_the_usage_still_pays_for_the_whole_answer() {
    let upstream = FakeModel::holding().await;
    let gateway = model_gateway(&upstream).await;
    let (meter, mut recorded) = codecourier::gateway::Meter::new(
        codecourier::catalog::Catalog::built_in().prices,
        codecourier::catalog::Budget::default(),
    );
    let mut grant = anthropic_grant("sbx-hang-up");
    grant.traffic = Some(Arc::new(meter));
    let guard = gateway.grant(grant);
    let mut response = messages(&gateway, x_api_key(&guard)).await;
    next_chunk(&mut response).await.expect("a first chunk");
    // The agent has what it wanted and leaves before `message_delta` says what the output cost.
    drop(response);
    upstream.release_rest();
    let record = tokio::time::timeout(WAIT, recorded.recv())
        .await
        .expect("nothing metered within the wait")
        .unwrap();
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        (12, 30),
        "the rest of the answer was read for its usage"
    );
}

#[tokio::test]
async fn the_gateway_also_answers_on_a_unix_socket_until_its_guard_drops() {
    let upstream = FakeModel::start().await;
    let gateway = model_gateway(&upstream).await;
    let grant = gateway.grant(anthropic_grant("sbx-bridged"));
    let dir = tempfile::tempdir().unwrap();
    let socket = gateway
        .listen_unix(&dir.path().join("gateway.sock"))
        .unwrap();

    // What a bridge inside the sandbox sends on: the request as the CLI wrote it.
    let mut stream = tokio::net::UnixStream::connect(socket.path())
        .await
        .unwrap();
    let request = format!(
        "POST /anthropic/v1/messages HTTP/1.1\r\nHost: 127.0.0.1:3128\r\nx-api-key: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{REQUEST}",
        grant.placeholder().expose(),
        REQUEST.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("message_stop"), "{answer}");
    assert_eq!(upstream.calls()[0].header("x-api-key"), Some(ANTHROPIC_KEY));

    let path = socket.path().to_path_buf();
    drop(socket);
    assert!(!path.exists(), "the socket is removed with its guard");
}

// ---------------------------------------------------------------------------------------------
// Git

/// A bare repository `<dir>/<name>.git` whose `main` holds one commit.
fn bare_repository(dir: &Path, name: &str) -> PathBuf {
    let bare = dir.join(format!("{name}.git"));
    support::git(
        dir,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            bare.to_str().unwrap(),
        ],
    );
    let seed = dir.join(format!("{name}-seed"));
    support::git(
        dir,
        &[
            "init",
            "--quiet",
            "--initial-branch=main",
            seed.to_str().unwrap(),
        ],
    );
    std::fs::write(seed.join("README.md"), format!("# {name}\n")).unwrap();
    support::git(&seed, &["add", "README.md"]);
    support::git(&seed, &["commit", "--quiet", "-m", "Initial commit"]);
    support::git(&seed, &["push", "--quiet", bare.to_str().unwrap(), "main"]);
    bare
}

fn refs(bare: &Path) -> String {
    support::git(bare, &["for-each-ref", "--format=%(refname) %(objectname)"])
}

struct GitWorld {
    dir: tempfile::TempDir,
    widgets: PathBuf,
    host: GitHost,
    gateway: Gateway,
}

async fn git_world() -> GitWorld {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let widgets = bare_repository(dir.path(), "widgets");
    let secrets = bare_repository(dir.path(), "secrets");
    let host = GitHost::start(
        GITHUB_TOKEN,
        &[("acme/widgets", &widgets), ("acme/secrets", &secrets)],
    )
    .await;
    let unused = Url::parse("http://127.0.0.1:9").unwrap();
    let gateway = Gateway::start(settings(unused.clone(), unused, list_only(&[])))
        .await
        .unwrap();
    GitWorld {
        dir,
        widgets,
        host,
        gateway,
    }
}

impl GitWorld {
    fn grant(&self, push: Push) -> GrantGuard {
        self.gateway.grant(Grant {
            label: "sbx-git".into(),
            git: Some(GitGrant {
                upstream: Url::parse(&self.host.clone_url("acme/widgets")).unwrap(),
                token: Secret::new(GITHUB_TOKEN),
                push,
            }),
            ..Grant::default()
        })
    }

    fn remote(&self, guard: &GrantGuard) -> String {
        self.gateway
            .reach_on_host()
            .git_remote_url(guard)
            .unwrap()
            .expose()
            .to_string()
    }

    /// Real git with no configuration of the machine's or the user's, and no prompts.
    async fn git(&self, cwd: &Path, args: &[&str]) -> std::process::Output {
        let run = tokio::process::Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Agent")
            .env("GIT_AUTHOR_EMAIL", "agent@example.com")
            .env("GIT_COMMITTER_NAME", "Agent")
            .env("GIT_COMMITTER_EMAIL", "agent@example.com")
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(WAIT, run)
            .await
            .unwrap_or_else(|_| panic!("git {args:?} did not finish within {WAIT:?}"))
            .unwrap()
    }

    async fn clone(&self, url: &str, into: &str) -> std::process::Output {
        self.git(self.dir.path(), &["clone", url, into]).await
    }

    /// A clone through the gateway with one new commit on top of `main`.
    async fn clone_with_a_commit(&self, guard: &GrantGuard) -> PathBuf {
        let out = self.clone(&self.remote(guard), "work").await;
        assert!(out.status.success(), "clone: {}", stderr(&out));
        let work = self.dir.path().join("work");
        std::fs::write(work.join("fix.txt"), "fixed\n").unwrap();
        for args in [
            &["add", "fix.txt"][..],
            &["commit", "--quiet", "-m", "Fix the bug"],
        ] {
            let out = self.git(&work, args).await;
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        }
        work
    }

    /// Commits 3 MiB that do not compress, so git sends its pack in chunks of unknown length.
    async fn commit_noise(&self, work: &Path) -> Vec<u8> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..3 * 1024 * 1024)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect();
        std::fs::write(work.join("noise.bin"), &noise).unwrap();
        for args in [
            &["add", "noise.bin"][..],
            &["commit", "--quiet", "-m", "Add noise"],
        ] {
            let out = self.git(work, args).await;
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        }
        noise
    }

    /// Whether a receive-pack request with ref updates reached the host. Before a large push git
    /// sends a probe, a lone flush packet (`0000`, nothing to update), which may pass.
    fn upstream_received_a_push(&self) -> bool {
        self.host
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/git-receive-pack") && r.body_len > 4)
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_clone_through_the_gateway_needs_the_live_placeholder() {
    let world = git_world().await;
    let guard = world.grant(Push::Refused);
    let placeholder = guard.placeholder().expose().to_string();

    let out = world.clone(&world.remote(&guard), "clone").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(world.dir.path().join("clone/README.md")).unwrap(),
        "# widgets\n"
    );
    let requests = world.host.requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.authorized && !r.headers.contains(&placeholder)),
        "every request upstream carried the token and none the placeholder: {requests:?}"
    );

    let bare = format!("http://{}/git/acme/widgets.git", world.gateway.addr());
    let out = world.clone(&bare, "no-credentials").await;
    assert!(!out.status.success());
    let wrong = format!(
        "http://x-access-token:ccgw-0123456789abcdef0123456789abcdef@{}/git/acme/widgets.git",
        world.gateway.addr()
    );
    let out = world.clone(&wrong, "wrong-placeholder").await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Authentication failed"),
        "{}",
        stderr(&out)
    );
    let remote = world.remote(&guard);
    drop(guard);
    let out = world.clone(&remote, "after-the-launch").await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Authentication failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        world.host.requests().len(),
        requests.len(),
        "no refused clone reached the host"
    );
    assert_logs_hold_none_of(&[GITHUB_TOKEN, &placeholder]);
}

#[tokio::test]
async fn another_repository_on_the_same_host_is_refused() {
    let world = git_world().await;
    let guard = world.grant(Push::Refused);
    let other = world
        .remote(&guard)
        .replace("/acme/widgets.git", "/acme/secrets.git");

    let out = world.clone(&other, "secrets").await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("may reach only its own repository"),
        "{}",
        stderr(&out)
    );
    assert!(world
        .host
        .requests()
        .iter()
        .all(|r| !r.path.contains("secrets")));
}

#[tokio::test]
async fn a_push_to_the_launch_branch_lands_upstream() {
    let world = git_world().await;
    let guard = world.grant(Push::Branch(BRANCH.into()));
    let work = world.clone_with_a_commit(&guard).await;
    let noise = world.commit_noise(&work).await;

    let out = world
        .git(
            &work,
            &["push", "origin", &format!("HEAD:refs/heads/{BRANCH}")],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let pushed = support::git(&work, &["rev-parse", "HEAD"]);
    let upstream = support::git(
        &world.widgets,
        &["rev-parse", &format!("refs/heads/{BRANCH}")],
    );
    assert_eq!(upstream, pushed);
    let size = support::git(
        &world.widgets,
        &["cat-file", "-s", &format!("{BRANCH}:noise.bin")],
    );
    assert_eq!(size.trim(), noise.len().to_string());
    let requests = world.host.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.path.ends_with("/git-receive-pack")
                && r.headers.contains("transfer-encoding: chunked")),
        "the pack went upstream as a stream: {requests:?}"
    );
}

#[tokio::test]
async fn pushes_anywhere_else_are_refused_with_a_message_git_prints_and_upstream_is_unchanged() {
    let world = git_world().await;
    let guard = world.grant(Push::Branch(BRANCH.into()));
    let work = world.clone_with_a_commit(&guard).await;
    world.commit_noise(&work).await;
    let before = refs(&world.widgets);

    for refspec in [
        "HEAD:refs/heads/other".to_string(),
        "HEAD:refs/heads/main".to_string(),
        "HEAD:refs/tags/v1".to_string(),
        format!("HEAD:refs/tags/{BRANCH}"),
    ] {
        let out = world.git(&work, &["push", "origin", &refspec]).await;
        let text = stderr(&out);
        assert!(!out.status.success(), "{refspec} was accepted");
        assert!(text.contains("[remote rejected]"), "{refspec}: {text}");
        assert!(
            text.contains(&format!("this launch may push only to refs/heads/{BRANCH}")),
            "{refspec}: {text}"
        );
        assert!(
            text.contains("remote: CodeCourier gateway: push refused"),
            "{text}"
        );
    }
    // Together with the launch's own branch: all or nothing.
    let out = world
        .git(
            &work,
            &[
                "push",
                "origin",
                &format!("HEAD:refs/heads/{BRANCH}"),
                "HEAD:refs/heads/main",
            ],
        )
        .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another ref in this push was refused"),
        "{}",
        stderr(&out)
    );

    assert_eq!(refs(&world.widgets), before);
    assert!(!world.upstream_received_a_push());
}

#[tokio::test]
async fn a_read_only_grant_refuses_every_push() {
    let world = git_world().await;
    let guard = world.grant(Push::Refused);
    let work = world.clone_with_a_commit(&guard).await;
    let before = refs(&world.widgets);

    let out = world
        .git(
            &work,
            &["push", "origin", &format!("HEAD:refs/heads/{BRANCH}")],
        )
        .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
    assert_eq!(refs(&world.widgets), before);
    assert!(world
        .host
        .requests()
        .iter()
        .all(|r| r.query.as_deref() != Some("service=git-receive-pack")));
}

// ---------------------------------------------------------------------------------------------
// Egress

/// A TCP service that greets, then echoes what it reads.
async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                stream.write_all(b"hello from upstream\n").await.unwrap();
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    port
}

async fn egress_gateway(policy: EgressPolicy) -> Gateway {
    capture_logs();
    let unused = Url::parse("http://127.0.0.1:9").unwrap();
    Gateway::start(settings(unused.clone(), unused, policy))
        .await
        .unwrap()
}

fn any_grant(gateway: &Gateway) -> GrantGuard {
    gateway.grant(Grant {
        label: "sbx-egress".into(),
        ..Grant::default()
    })
}

/// The password part of the proxy URL the sandbox is given.
fn proxy_password(gateway: &Gateway, guard: &GrantGuard) -> String {
    let url = Url::parse(gateway.reach_on_host().proxy_url(guard).expose()).unwrap();
    url.password().unwrap().to_string()
}

/// Sends `CONNECT target` and returns the status code, the answer's body (for a refusal) and
/// the connection (a tunnel when the status is 200).
async fn connect(
    gateway: &Gateway,
    target: &str,
    password: Option<&str>,
) -> (u16, String, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(password) = password {
        let mut credentials = Vec::new();
        write!(credentials, "ccgw:{password}").unwrap();
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await.unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {status_line:?}"));
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8(body).unwrap(), reader)
}

#[tokio::test]
async fn connect_to_a_listed_host_tunnels_both_ways_until_the_launch_ends() {
    let port = echo_server().await;
    let gateway = egress_gateway(list_only(&[&format!("localhost:{port}")])).await;
    let guard = any_grant(&gateway);
    let password = proxy_password(&gateway, &guard);

    let (status, _, mut tunnel) =
        connect(&gateway, &format!("localhost:{port}"), Some(&password)).await;
    assert_eq!(status, 200);
    let mut greeting = String::new();
    tokio::time::timeout(WAIT, tunnel.read_line(&mut greeting))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(greeting, "hello from upstream\n");
    tunnel.write_all(b"ping\n").await.unwrap();
    let mut echo = String::new();
    tokio::time::timeout(WAIT, tunnel.read_line(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echo, "ping\n");

    drop(guard);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, tunnel.read_to_end(&mut rest))
        .await
        .expect("the tunnel closes when its launch ends");
    assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");
    let (status, _, _) = connect(&gateway, &format!("localhost:{port}"), Some(&password)).await;
    assert_eq!(status, 407, "the placeholder no longer opens the proxy");
}

#[tokio::test]
async fn a_host_off_the_list_gets_403_naming_the_list() {
    let port = echo_server().await;
    let gateway = egress_gateway(list_only(&[&format!("localhost:{port}")])).await;
    let guard = any_grant(&gateway);
    let password = proxy_password(&gateway, &guard);

    for target in [
        "example.com:443".to_string(),
        format!("localhost:{}", port + 1),
    ] {
        let (status, body, _) = connect(&gateway, &target, Some(&password)).await;
        assert_eq!(status, 403, "{target}: {body}");
        assert!(body.contains(&format!("refused {target}")), "{body}");
        assert!(body.contains("registry.npmjs.org, pypi.org"), "{body}");
        assert!(body.contains(&format!("localhost:{port}")), "{body}");
        assert!(body.contains("CODECOURIER_EGRESS_ALLOW"), "{body}");
    }
}

#[tokio::test]
async fn the_proxy_needs_a_live_placeholder() {
    let port = echo_server().await;
    let gateway = egress_gateway(list_only(&[&format!("localhost:{port}")])).await;
    let target = format!("localhost:{port}");

    let (status, body, _) = connect(&gateway, &target, None).await;
    assert_eq!(status, 407, "{body}");
    let (status, _, _) = connect(
        &gateway,
        &target,
        Some("ccgw-0123456789abcdef0123456789abcdef"),
    )
    .await;
    assert_eq!(status, 407);
}

#[tokio::test]
async fn open_egress_admits_hosts_off_the_list_but_not_the_host_s_loopback() {
    let port = echo_server().await;
    let gateway = egress_gateway(EgressPolicy::registries_and(
        &[HostPattern::parse(&format!("localhost:{port}")).unwrap()],
        true,
    ))
    .await;
    let guard = any_grant(&gateway);
    let password = proxy_password(&gateway, &guard);

    let (status, body, _) = connect(&gateway, &format!("127.0.0.1:{port}"), Some(&password)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("loopback, private or link-local"), "{body}");
    let (status, _, _) = connect(&gateway, &format!("localhost:{port}"), Some(&password)).await;
    assert_eq!(status, 200, "a listed host stays reachable in open mode");
}

#[tokio::test]
async fn plain_http_goes_through_the_proxy_to_a_listed_host() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|uri: Uri, headers: HeaderMap| async move {
        format!(
            "{} host={} proxy-auth={}",
            uri,
            headers["host"].to_str().unwrap(),
            headers.contains_key("proxy-authorization")
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let gateway = egress_gateway(list_only(&[&format!("localhost:{port}")])).await;
    let guard = any_grant(&gateway);

    let proxy = gateway.reach_on_host().proxy_url(&guard);
    let through_proxy = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(proxy.expose()).unwrap())
        .build()
        .unwrap();
    let answer = through_proxy
        .get(format!("http://localhost:{port}/simple/left-pad?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.text().await.unwrap(),
        format!("/simple/left-pad?x=1 host=localhost:{port} proxy-auth=false")
    );
    let refused = through_proxy
        .get("http://example.com/")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}
