//! A fake E2B on loopback: the control plane (REST) and envd (Connect protocol with 5-byte
//! envelopes, `/files`) on one server, framed as the spec says. Each "micro-VM" is a real local
//! sandbox, so commands really run. Switches make it misbehave the ways the real one does: errors
//! inside the final envelope, envd's plain-JSON 401, 502 before envd is ready, a stream cut in the
//! middle, a create refused. Templates are the team's: a create from one the team lacks is
//! answered 404 "template '…' not found", as E2B does; `base` (public) always exists and, as E2B's
//! base image, holds no agent CLI.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use codecourier::catalog::{build_custom_tag, Resources};
use codecourier::sandbox::e2b::{envelope, EnvelopeReader};
use codecourier::sandbox::local::LocalProvider;
use codecourier::sandbox::{
    Exec, Mount, Output, SandboxError, SandboxHandle, SandboxProvider, SandboxSpec,
};
use codecourier::secret::Secret;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

pub const API_KEY: &str = "e2b_0123456789abcdef0123456789abcdef01234567";

/// The environment a VM was created with.
type VmEnv = Vec<(String, Secret)>;

struct Vm {
    handle: SandboxHandle,
    /// Started from the public `base` template: runs without the tools directory.
    base: bool,
    metadata: BTreeMap<String, String>,
    token: String,
    env: Vec<(String, Secret)>,
}

/// A process waiting for its stdin to be closed before it runs.
struct Pending {
    input: Vec<u8>,
    close: Option<oneshot::Sender<Vec<u8>>>,
}

#[derive(Default)]
pub struct Switches {
    /// envd answers 502 to this many health checks first.
    pub envd_not_ready: AtomicU32,
    /// envd refuses every call with its plain-JSON 401.
    pub envd_unauthorized: AtomicBool,
    /// The next command's stream ends with an error inside the final envelope.
    pub error_in_final_envelope: AtomicBool,
    /// The next command's stream is cut in the middle of an envelope.
    pub cut_stream: AtomicBool,
    /// CPUs and memory the "template" provides (0: as asked).
    pub template_cpus: AtomicU32,
    pub template_memory_mb: AtomicU32,
}

pub struct FakeE2b {
    /// Runs VMs of the team's templates, with the tools directory on their PATH.
    local: LocalProvider,
    /// Runs VMs of E2B's `base` template: no agent CLI.
    bare: LocalProvider,
    /// The team's templates by name (the catalog's four unless a test changes it).
    pub team_templates: Mutex<Vec<String>>,
    /// The npm registry a VM's npm uses (a stand-in for the public one), when a test serves one.
    pub npm_registry: Mutex<Option<String>>,
    /// Mounted into every micro-VM: (host path, guest path).
    mounts: Vec<(PathBuf, String)>,
    vms: Mutex<HashMap<String, Vm>>,
    pending: Mutex<HashMap<u32, Pending>>,
    next_pid: AtomicU32,
    /// Every control-plane request: (method, spec path, body).
    pub requests: Mutex<Vec<(String, String, Value)>>,
    /// Every envd request that carries what a VM is given: file uploads (path, contents) and
    /// Process/Start requests as sent.
    pub uploads: Mutex<Vec<(String, Vec<u8>)>>,
    pub process_starts: Mutex<Vec<Value>>,
    pub switches: Switches,
}

pub struct Running {
    pub url: String,
    pub fake: Arc<FakeE2b>,
}

/// Starts the fake. `data_dir` holds its micro-VMs; `tools_dir` is on their PATH; `mounts` are shown
/// inside every one (a bare repository at /srv/origin, say).
pub async fn start(
    data_dir: PathBuf,
    tools_dir: PathBuf,
    mounts: Vec<(PathBuf, String)>,
) -> Running {
    let fake = Arc::new(FakeE2b {
        // A micro-VM reaches the internet; here, this machine's network (the tests' servers).
        local: LocalProvider::new(&data_dir, Some(tools_dir)).with_egress_open(true),
        bare: LocalProvider::new(&data_dir, None).with_egress_open(true),
        team_templates: Mutex::new(
            codecourier::catalog::Catalog::built_in()
                .tools
                .iter()
                .map(|t| t.default_template.clone())
                .collect(),
        ),
        npm_registry: Mutex::new(None),
        mounts,
        vms: Mutex::new(HashMap::new()),
        pending: Mutex::new(HashMap::new()),
        next_pid: AtomicU32::new(400),
        requests: Mutex::new(Vec::new()),
        uploads: Mutex::new(Vec::new()),
        process_starts: Mutex::new(Vec::new()),
        switches: Switches::default(),
    });
    let app = Router::new()
        .route("/sandboxes", post(create))
        .route("/sandboxes/{id}", get(detail).delete(kill))
        .route("/sandboxes/{id}/timeout", post(set_timeout))
        .route("/v2/sandboxes", get(list))
        .route("/templates", get(templates))
        .route("/health", get(health))
        .route("/files", post(upload).get(download))
        .route("/process.Process/Start", post(start_process))
        .route("/process.Process/SendInput", post(send_input))
        .route("/process.Process/CloseStdin", post(close_stdin))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Running { url, fake }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"code": status.as_u16(), "message": message})),
    )
        .into_response()
}

fn api_key_ok(headers: &HeaderMap) -> bool {
    headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(API_KEY)
}

impl FakeE2b {
    fn record(&self, method: &str, path: &str, body: Value) {
        self.requests
            .lock()
            .unwrap()
            .push((method.into(), path.into(), body));
    }

    /// The provider that runs a VM.
    fn runner(&self, base: bool) -> &LocalProvider {
        if base {
            &self.bare
        } else {
            &self.local
        }
    }

    /// The VM an envd request is for (its handle, environment and whether it is a `base` VM), if
    /// its token is right; else envd's plain-JSON 401.
    fn envd_vm(&self, headers: &HeaderMap) -> Result<(SandboxHandle, VmEnv, bool), Box<Response>> {
        let unauthorized = || {
            error(StatusCode::UNAUTHORIZED, "unauthorized access, please provide a valid access token or method signing if supported")
        };
        if self.switches.envd_unauthorized.load(Ordering::SeqCst) {
            return Err(Box::new(unauthorized()));
        }
        let id = headers
            .get("e2b-sandbox-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let vms = self.vms.lock().unwrap();
        let Some(vm) = vms.get(id) else {
            return Err(Box::new(
                (
                    StatusCode::BAD_GATEWAY,
                    Json(json!({"sandboxId": id, "message": "The sandbox was not found", "code": 502})),
                )
                    .into_response(),
            ));
        };
        if headers.get("x-access-token").and_then(|v| v.to_str().ok()) != Some(vm.token.as_str()) {
            return Err(Box::new(unauthorized()));
        }
        Ok((vm.handle.clone(), vm.env.clone(), vm.base))
    }

    pub fn vm_count(&self) -> usize {
        self.vms.lock().unwrap().len()
    }
}

async fn create(
    State(fake): State<Arc<FakeE2b>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    fake.record("POST", "/sandboxes", body.clone());
    if !api_key_ok(&headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Invalid API key, please visit https://e2b.dev/docs/api-key for more information.",
        );
    }
    let template = body["templateID"].as_str().unwrap_or_default();
    let base = template == "base";
    if !base
        && !fake
            .team_templates
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == template)
    {
        return error(
            StatusCode::NOT_FOUND,
            &format!("template '{template}' not found"),
        );
    }
    let timeout = body["timeout"].as_u64().unwrap_or(15);
    if timeout > 3600 {
        return error(
            StatusCode::BAD_REQUEST,
            "Timeout cannot be greater than 1 hours",
        );
    }
    let metadata: BTreeMap<String, String> =
        serde_json::from_value(body["metadata"].clone()).unwrap_or_default();
    let env: Vec<(String, Secret)> = body["envVars"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), Secret::new(v.as_str().unwrap_or_default())))
                .collect()
        })
        .unwrap_or_default();
    let mut env = env;
    if let Some(registry) = fake.npm_registry.lock().unwrap().clone() {
        env.push(("npm_config_registry".into(), Secret::new(registry)));
    }
    if let Some(network) = body.get("network") {
        // E2B's egress proxy, as the VM meets it: every request leaves through it.
        let proxy = egress_proxy(network).await;
        for name in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"] {
            env.push((name.into(), Secret::new(proxy.as_str())));
        }
    }
    let spec = SandboxSpec {
        template: build_custom_tag("base").unwrap(),
        resources: Resources {
            memory_mb: 1024,
            cpus: 2,
            timeout_ms: timeout * 1000,
        },
        env: Vec::new(),
        metadata: BTreeMap::new(),
        mounts: fake
            .mounts
            .iter()
            .map(|(host, guest)| Mount {
                host: host.clone(),
                guest: guest.clone(),
                writable: true,
            })
            .collect(),
        host_tools: Vec::new(),
        network: None,
    };
    let runner = fake.runner(base);
    let handle = match runner.create(&spec, Duration::from_secs(timeout)).await {
        Ok(h) => h,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let id = format!("i{}", &handle.provider_id.replace("local-", "")[..20]);
    let token = format!("envd-token-{id}");
    fake.vms.lock().unwrap().insert(
        id.clone(),
        Vm {
            handle,
            base,
            metadata,
            token: token.clone(),
            env,
        },
    );
    (
        StatusCode::CREATED,
        Json(json!({"templateID": "rki5dems9wqfm4r03t7g", "alias": template, "sandboxID": id, "clientID": "6532622b",
            "envdVersion": "0.6.13", "envdAccessToken": token, "trafficAccessToken": null, "domain": null})),
    )
        .into_response()
}

async fn detail(State(fake): State<Arc<FakeE2b>>, Path(id): Path<String>) -> Response {
    let vms = fake.vms.lock().unwrap();
    let Some(vm) = vms.get(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Sandbox \"{id}\" doesn't exist or you don't have access to it"),
        );
    };
    let cpus = match fake.switches.template_cpus.load(Ordering::SeqCst) {
        0 => 2,
        n => n,
    };
    let memory = match fake.switches.template_memory_mb.load(Ordering::SeqCst) {
        0 => 1024,
        n => n,
    };
    Json(json!({"templateID": "rki5dems9wqfm4r03t7g", "sandboxID": id, "clientID": "6532622b", "startedAt": "2026-11-26T10:00:00Z",
        "endAt": "2026-11-26T10:15:00Z", "cpuCount": cpus, "memoryMB": memory, "diskSizeMB": 10240, "state": "running",
        "envdVersion": "0.6.13", "envdAccessToken": vm.token, "metadata": vm.metadata}))
    .into_response()
}

async fn kill(State(fake): State<Arc<FakeE2b>>, Path(id): Path<String>) -> Response {
    fake.record("DELETE", "/sandboxes/{sandboxID}", Value::Null);
    let vm = fake.vms.lock().unwrap().remove(&id);
    match vm {
        Some(vm) => {
            let _ = fake.runner(vm.base).kill(&vm.handle.provider_id).await;
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            &format!("Sandbox \"{id}\" doesn't exist or you don't have access to it"),
        ),
    }
}

async fn set_timeout(
    State(fake): State<Arc<FakeE2b>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    fake.record("POST", "/sandboxes/{sandboxID}/timeout", body.clone());
    let vm = fake
        .vms
        .lock()
        .unwrap()
        .get(&id)
        .map(|vm| (vm.handle.clone(), vm.base));
    match vm {
        Some((handle, base)) => {
            let secs = body["timeout"].as_u64().unwrap_or(0);
            let _ = fake
                .runner(base)
                .set_timeout(&handle, Duration::from_secs(secs))
                .await;
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            &format!("Sandbox \"{id}\" doesn't exist or you don't have access to it"),
        ),
    }
}

async fn list(
    State(fake): State<Arc<FakeE2b>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let wanted: Vec<(String, String)> = url::form_urlencoded::parse(
        query
            .get("metadata")
            .map(String::as_str)
            .unwrap_or("")
            .as_bytes(),
    )
    .map(|(k, v)| (k.into_owned(), v.into_owned()))
    .collect();
    let vms = fake.vms.lock().unwrap();
    let items: Vec<Value> = vms
        .iter()
        .filter(|(_, vm)| wanted.iter().all(|(k, v)| vm.metadata.get(k) == Some(v)))
        .map(|(id, vm)| json!({"templateID": "rki5dems9wqfm4r03t7g", "sandboxID": id, "clientID": "6532622b",
            "startedAt": "2026-11-26T10:00:00Z", "endAt": "2026-11-26T10:15:00Z", "cpuCount": 2, "memoryMB": 1024,
            "diskSizeMB": 10240, "state": "running", "envdVersion": "0.6.13", "metadata": vm.metadata}))
        .collect();
    Json(items).into_response()
}

/// `GET /templates`: the team's templates (`Template` in the spec), public ones not listed.
async fn templates(State(fake): State<Arc<FakeE2b>>, headers: HeaderMap) -> Response {
    fake.record("GET", "/templates", Value::Null);
    if !api_key_ok(&headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Invalid API key, please visit https://e2b.dev/docs/api-key for more information.",
        );
    }
    let names = fake.team_templates.lock().unwrap().clone();
    let items: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"templateID": format!("tpl{i:017}"), "buildID": format!("8f3e1c2a-0000-4000-8000-{i:012}"),
            "cpuCount": 2, "memoryMB": 1024, "diskSizeMB": 10240, "public": false, "aliases": [name], "names": [name],
            "createdAt": "2026-11-20T09:00:00Z", "updatedAt": "2026-11-20T09:00:00Z", "createdBy": null,
            "lastSpawnedAt": null, "spawnCount": 0, "buildCount": 1, "envdVersion": "0.6.13", "buildStatus": "ready"}))
        .collect();
    Json(items).into_response()
}

async fn health(State(fake): State<Arc<FakeE2b>>) -> Response {
    let left = fake.switches.envd_not_ready.load(Ordering::SeqCst);
    if left > 0 {
        fake.switches
            .envd_not_ready
            .store(left - 1, Ordering::SeqCst);
        return (StatusCode::BAD_GATEWAY, Json(json!({"sandboxId": "", "message": "The sandbox is running but port is not open", "code": 502}))).into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn upload(
    State(fake): State<Arc<FakeE2b>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let (handle, _, base) = match fake.envd_vm(&headers) {
        Ok(vm) => vm,
        Err(response) => return *response,
    };
    let path = query.get("path").cloned().unwrap_or_default();
    fake.uploads
        .lock()
        .unwrap()
        .push((path.clone(), body.to_vec()));
    match fake
        .runner(base)
        .write_file(&handle, &path, &body, 0o644)
        .await
    {
        Ok(()) => Json(json!([{"path": path, "name": path.rsplit('/').next(), "type": "file"}]))
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": e.to_string(), "code": 400})),
        )
            .into_response(),
    }
}

/// envd's download: the file's bytes, 404 when it is not there.
async fn download(
    State(fake): State<Arc<FakeE2b>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (handle, _, base) = match fake.envd_vm(&headers) {
        Ok(vm) => vm,
        Err(response) => return *response,
    };
    let path = query.get("path").cloned().unwrap_or_default();
    match fake.runner(base).read_file(&handle, &path, 1 << 30).await {
        Ok(bytes) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

/// A VM's egress as E2B's proxy handles it for `network` (`SandboxNetworkConfig`): plain-HTTP
/// requests only (what the tests' servers speak), each rule's headers set on its host's requests,
/// and, with `denyOut`, only `allowOut` hosts reached. Returns the proxy's URL.
async fn egress_proxy(network: &Value) -> String {
    #[derive(Default)]
    struct Egress {
        rules: Vec<(String, Vec<(String, String)>)>,
        allow: Option<Vec<String>>,
    }
    let mut egress = Egress::default();
    if let Some(rules) = network["rules"].as_object() {
        for (host, list) in rules {
            let headers = list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|rule| rule["transform"]["headers"].as_object())
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            egress.rules.push((host.clone(), headers));
        }
    }
    if network["denyOut"].as_array().is_some_and(|d| !d.is_empty()) {
        let allow = network["allowOut"].as_array().into_iter().flatten();
        egress.allow = Some(
            allow
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
        );
    }
    let egress = Arc::new(egress);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let handler = move |request: axum::http::Request<Body>| {
        let (egress, client) = (egress.clone(), client.clone());
        async move {
            let (parts, body) = request.into_parts();
            let host = parts.uri.host().unwrap_or_default().to_string();
            let allowed = egress.allow.as_ref().is_none_or(|list| {
                list.iter().any(|a| match a.strip_prefix("*.") {
                    Some(suffix) => host.ends_with(&format!(".{suffix}")),
                    None => *a == host,
                })
            });
            if !allowed {
                return error(
                    StatusCode::FORBIDDEN,
                    &format!("egress to {host} is denied"),
                );
            }
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let mut headers = parts.headers.clone();
            for hop in [
                "host",
                "proxy-authorization",
                "proxy-connection",
                "connection",
            ] {
                headers.remove(hop);
            }
            for (rule_host, set) in &egress.rules {
                if *rule_host == host {
                    for (name, value) in set {
                        // An existing header of the same name is replaced, as the spec says.
                        headers.insert(
                            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                            value.parse().unwrap(),
                        );
                    }
                }
            }
            let out = client
                .request(parts.method, parts.uri.to_string())
                .headers(headers)
                .body(body);
            let Ok(answer) = out.send().await else {
                return error(StatusCode::BAD_GATEWAY, "upstream unreachable");
            };
            let mut response = Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers() {
                if !matches!(
                    name.as_str(),
                    "transfer-encoding" | "content-length" | "connection"
                ) {
                    response = response.header(name.as_str(), value.as_bytes());
                }
            }
            response
                .body(Body::from(answer.bytes().await.unwrap_or_default()))
                .unwrap()
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(handler);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn event(value: Value) -> Bytes {
    Bytes::from(envelope(0, value.to_string().as_bytes()))
}

async fn start_process(
    State(fake): State<Arc<FakeE2b>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (handle, vm_env, base) = match fake.envd_vm(&headers) {
        Ok(vm) => vm,
        Err(response) => return *response,
    };
    assert!(
        headers.get("connect-timeout-ms").is_none(),
        "Connect-Timeout-Ms must never be sent"
    );
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/connect+json"
    );
    let mut reader = EnvelopeReader::default();
    let (_, payload) = reader.push(&body).pop().expect("one request envelope");
    let request: Value = serde_json::from_slice(&payload).unwrap();
    fake.process_starts.lock().unwrap().push(request.clone());
    assert!(
        request["tag"].as_str().is_some_and(|t| !t.is_empty()),
        "every process is tagged"
    );
    let pid = fake.next_pid.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });

    let process = &request["process"];
    let mut argv = vec![process["cmd"].as_str().unwrap().to_string()];
    argv.extend(
        process["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    let mut env = vm_env;
    env.extend(
        process["envs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), Secret::new(v.as_str().unwrap_or_default()))),
    );
    let cwd = process["cwd"].as_str().map(str::to_string);
    let wants_stdin = request["stdin"].as_bool().unwrap_or(true);
    let stdin = if wants_stdin {
        let (close_tx, close_rx) = oneshot::channel();
        fake.pending.lock().unwrap().insert(
            pid,
            Pending {
                input: Vec::new(),
                close: Some(close_tx),
            },
        );
        Some(close_rx)
    } else {
        None
    };
    let error_in_final = fake
        .switches
        .error_in_final_envelope
        .swap(false, Ordering::SeqCst);
    let cut = fake.switches.cut_stream.swap(false, Ordering::SeqCst);
    let fake = fake.clone();
    tokio::spawn(async move {
        let _ = tx
            .send(event(json!({"event": {"start": {"pid": pid}}})))
            .await;
        if error_in_final {
            let _ = tx
                .send(Bytes::from(envelope(
                    2,
                    br#"{"error":{"code":"internal","message":"process exploded"}}"#,
                )))
                .await;
            return;
        }
        if cut {
            let _ = tx
                .send(event(
                    json!({"event": {"data": {"stdout": BASE64.encode("partial\n")}}}),
                ))
                .await;
            let half = envelope(0, br#"{"event":{"data":{"stdout":"aGkK"}}}"#);
            let _ = tx.send(Bytes::from(half[..half.len() / 2].to_vec())).await;
            return;
        }
        let input = match stdin {
            Some(close) => Some(close.await.unwrap_or_default()),
            None => None,
        };
        let exec = Exec {
            argv,
            cwd,
            env,
            stdin: input,
        };
        let (out_tx, mut out_rx) = mpsc::channel::<Output>(64);
        let forward = async {
            while let Some(chunk) = out_rx.recv().await {
                let data = match chunk {
                    Output::Stdout(b) => json!({"stdout": BASE64.encode(b)}),
                    Output::Stderr(b) => json!({"stderr": BASE64.encode(b)}),
                };
                let _ = tx.send(event(json!({"event": {"data": data}}))).await;
            }
        };
        let (result, _) = tokio::join!(fake.runner(base).run(&handle, &exec, out_tx), forward);
        match result {
            Ok(status) => {
                // protojson style: exitCode left out when 0.
                let mut end = json!({"exited": status.code.is_some(), "status": match status.code { Some(c) => format!("exit status {c}"), None => "signal: killed".into() }});
                match status.code {
                    Some(0) => {}
                    Some(c) => end["exitCode"] = json!(c),
                    None => end["exitCode"] = json!(-1),
                }
                let _ = tx.send(event(json!({"event": {"end": end}}))).await;
                let _ = tx.send(Bytes::from(envelope(2, b"{}"))).await;
            }
            // The VM is gone (killed or timed out): the connection just drops, as the proxy's would,
            // and a timed-out VM no longer exists.
            Err(SandboxError::Expired) => {
                fake.vms
                    .lock()
                    .unwrap()
                    .retain(|_, vm| vm.handle.provider_id != handle.provider_id);
            }
            Err(SandboxError::Killed | SandboxError::NotFound(_)) => {}
            Err(e) => {
                let _ = tx
                    .send(Bytes::from(envelope(
                        2,
                        json!({"error": {"code": "internal", "message": e.to_string()}})
                            .to_string()
                            .as_bytes(),
                    )))
                    .await;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/connect+json")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn send_input(
    State(fake): State<Arc<FakeE2b>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(response) = fake.envd_vm(&headers) {
        return *response;
    }
    let pid = body["process"]["pid"].as_u64().unwrap_or_default() as u32;
    let bytes = BASE64
        .decode(body["input"]["stdin"].as_str().unwrap_or_default())
        .unwrap_or_default();
    match fake.pending.lock().unwrap().get_mut(&pid) {
        Some(pending) => {
            pending.input.extend(bytes);
            Json(json!({})).into_response()
        }
        None => (StatusCode::NOT_FOUND, Json(json!({"code": "not_found", "message": format!("process with pid {pid} not found")}))).into_response(),
    }
}

async fn close_stdin(
    State(fake): State<Arc<FakeE2b>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(response) = fake.envd_vm(&headers) {
        return *response;
    }
    let pid = body["process"]["pid"].as_u64().unwrap_or_default() as u32;
    let pending = fake.pending.lock().unwrap().remove(&pid);
    match pending {
        Some(mut pending) => {
            if let Some(close) = pending.close.take() {
                let _ = close.send(pending.input);
            }
            Json(json!({})).into_response()
        }
        None => (StatusCode::NOT_FOUND, Json(json!({"code": "not_found", "message": format!("process with pid {pid} not found")}))).into_response(),
    }
}
