//! The E2B provider: cloud micro-VMs. The control plane is REST (`X-API-Key`); commands and files go
//! to envd inside the sandbox, commands as Connect-protocol server streams of 5-byte envelopes.
//! reference/e2b/CONTRACT.md is the contract; its traps are handled here: the timeout is always sent,
//! `Connect-Timeout-Ms` is never sent, stdin is closed explicitly, errors may arrive inside the last
//! envelope of an HTTP 200 stream, and envd may answer 502 for a moment after creation.

pub mod templates;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{
    Exec, ExitStatus, NetworkPolicy, Output, SandboxError, SandboxHandle, SandboxInfo,
    SandboxProvider, SandboxSpec,
};
use crate::config::E2bConfig;
use crate::secret::Secret;

const ENVD_PORT: u16 = 49983;
/// Basic auth for the sandbox user `user` with an empty password: `base64("user:")`.
const USER_AUTH: &str = "Basic dXNlcjo=";
const KEEPALIVE_SECS: &str = "50";
/// How long envd may answer 502 (not up yet) right after a create before we give up.
const ENVD_READY_ATTEMPTS: u32 = 20;

/// What we need to talk to one sandbox's envd.
#[derive(Debug, Clone)]
struct Envd {
    base: String,
    sandbox_id: String,
    token: Option<Secret>,
    deadline: Instant,
    killed: bool,
}

pub struct E2bProvider {
    http: reqwest::Client,
    api_url: String,
    api_key: Secret,
    domain: String,
    sandbox_url: Option<String>,
    sandboxes: Mutex<HashMap<String, Envd>>,
}

impl E2bProvider {
    pub fn new(config: &E2bConfig) -> Result<Self, String> {
        let api_key = config
            .api_key
            .clone()
            .ok_or("E2B_API_KEY is needed for E2B sandboxes; set it, or SANDBOX_PROVIDER=local")?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            api_url: config.api_url.trim_end_matches('/').to_string(),
            api_key,
            domain: config.domain.clone(),
            sandbox_url: config.sandbox_url.clone(),
            sandboxes: Mutex::new(HashMap::new()),
        })
    }

    fn envd_base(&self, sandbox_id: &str, domain: Option<&str>) -> String {
        match &self.sandbox_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!(
                "https://{ENVD_PORT}-{sandbox_id}.{}",
                domain.filter(|d| !d.is_empty()).unwrap_or(&self.domain)
            ),
        }
    }

    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api_url))
            .header("X-API-Key", self.api_key.expose())
            .header("Accept", "application/json")
    }

    fn envd(&self, id: &str) -> Result<Envd, SandboxError> {
        self.sandboxes
            .lock()
            .expect("lock")
            .get(id)
            .cloned()
            .ok_or_else(|| SandboxError::NotFound(id.to_string()))
    }

    fn envd_request(&self, envd: &Envd, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(format!("{}{path}", envd.base))
            .header("E2b-Sandbox-Id", &envd.sandbox_id)
            .header("E2b-Sandbox-Port", ENVD_PORT.to_string())
            .header("Authorization", USER_AUTH)
            .header("Accept", "application/json");
        if let Some(token) = &envd.token {
            request = request.header("X-Access-Token", token.expose());
        }
        request
    }

    /// A unary Connect call (`application/json`, bare message).
    async fn unary(&self, envd: &Envd, method: &str, body: &Value) -> Result<Value, SandboxError> {
        let response = self
            .envd_request(envd, &format!("/process.Process/{method}"))
            .header("Content-Type", "application/json")
            .header("Connect-Protocol-Version", "1")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| SandboxError::Transient(format!("envd {method}: {}", without_url(&e))))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        Err(self.envd_error(envd, status, &text, method).await)
    }

    /// What a failed envd call means: the sandbox's end (timeout, stop) or a stated error.
    async fn envd_error(
        &self,
        envd: &Envd,
        status: StatusCode,
        text: &str,
        what: &str,
    ) -> SandboxError {
        if status == StatusCode::BAD_GATEWAY || status == StatusCode::NOT_FOUND {
            if let Some(end) = self.ended(envd).await {
                return end;
            }
        }
        let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let message = body["message"].as_str().unwrap_or(text).to_string();
        if status == StatusCode::UNAUTHORIZED {
            return SandboxError::Other(anyhow::anyhow!(
                "envd refused the sandbox's access token during {what}: {message}"
            ));
        }
        SandboxError::Other(anyhow::anyhow!(
            "envd answered {} to {what}: {message}",
            status.as_u16()
        ))
    }

    /// If the sandbox is gone, why: we killed it, or its time ran out.
    async fn ended(&self, envd: &Envd) -> Option<SandboxError> {
        if self
            .envd(&envd.sandbox_id)
            .map(|e| e.killed)
            .unwrap_or(false)
        {
            return Some(SandboxError::Killed);
        }
        let response = self
            .api(
                reqwest::Method::GET,
                &format!("/sandboxes/{}", envd.sandbox_id),
            )
            .send()
            .await
            .ok()?;
        let gone = response.status() == StatusCode::NOT_FOUND
            || response
                .json::<Value>()
                .await
                .map(|b| b["state"] != "running")
                .unwrap_or(false);
        match gone {
            true if Instant::now() + Duration::from_secs(2) >= envd.deadline => {
                Some(SandboxError::Expired)
            }
            true => Some(SandboxError::Killed),
            false => None,
        }
    }

    async fn wait_for_envd(&self, envd: &Envd) -> Result<(), SandboxError> {
        for attempt in 0..ENVD_READY_ATTEMPTS {
            let mut request = self
                .http
                .get(format!("{}/health", envd.base))
                .header("E2b-Sandbox-Id", &envd.sandbox_id)
                .header("E2b-Sandbox-Port", ENVD_PORT.to_string());
            if let Some(token) = &envd.token {
                request = request.header("X-Access-Token", token.expose());
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r)
                    if r.status() != StatusCode::BAD_GATEWAY
                        && r.status() != StatusCode::SERVICE_UNAVAILABLE =>
                {
                    return Err(SandboxError::Other(anyhow::anyhow!(
                        "envd health check answered {}",
                        r.status().as_u16()
                    )))
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(5) + 1)))
                        .await
                }
            }
        }
        Err(SandboxError::Transient(
            "envd inside the new sandbox did not come up".into(),
        ))
    }
}

/// reqwest's error in a few words, without the URL (it names the sandbox host: noise for users).
fn without_url(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "the request failed"
    }
}

/// A control-plane error as a sentence the user can act on.
fn api_error(status: StatusCode, text: &str, what: &str) -> SandboxError {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let message = body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| text.trim().to_string());
    let code = body["error_code"].as_str().unwrap_or_default();
    match status.as_u16() {
        401 => SandboxError::Other(anyhow::anyhow!("E2B refused E2B_API_KEY ({message}); create a key in the E2B dashboard")),
        400 if message.contains("Timeout cannot be greater") || message.contains("Max instance length") => {
            SandboxError::Unsupported(format!("E2B refused the timeout: {message}; your plan allows less, so launch with a shorter --timeout"))
        }
        404 if message.to_lowercase().contains("template") => SandboxError::TemplateNotFound(what.to_string()),
        400 if message.to_lowercase().contains("template") => SandboxError::Unsupported(format!(
            "E2B has no template for {what} ({message}); build it in your E2B team or choose another with --template"
        )),
        404 => SandboxError::NotFound(what.to_string()),
        429 => SandboxError::QuotaExceeded(message),
        503 | 504 if code.starts_with("sandbox_") => SandboxError::QuotaExceeded(format!("{message} ({code})")),
        500..=599 => SandboxError::Transient(format!("E2B answered {} to {what}: {message}", status.as_u16())),
        other => SandboxError::Other(anyhow::anyhow!("E2B answered {other} to {what}: {message}")),
    }
}

/// One Connect envelope: flags, big-endian length, JSON.
pub fn envelope(flags: u8, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + json.len());
    out.push(flags);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    out
}

/// Splits a byte stream into Connect envelopes: (flags, payload).
#[derive(Default)]
pub struct EnvelopeReader {
    buf: Vec<u8>,
}

impl EnvelopeReader {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while self.buf.len() >= 5 {
            let len =
                u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if self.buf.len() < 5 + len {
                break;
            }
            let flags = self.buf[0];
            let payload = self.buf[5..5 + len].to_vec();
            self.buf.drain(..5 + len);
            out.push((flags, payload));
        }
        out
    }

    /// Bytes left over when the stream ended: a cut envelope.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

/// `NewSandbox.network`: E2B's egress proxy sets each rule's headers on the requests to its host
/// (the VM never holds the credential), and lets out only the allowed hosts (allow entries win
/// over `denyOut`).
pub fn network_config(policy: &NetworkPolicy) -> Value {
    let rules: serde_json::Map<String, Value> = policy
        .header_rules
        .iter()
        .map(|rule| {
            let headers: serde_json::Map<String, Value> = rule
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.expose().to_string())))
                .collect();
            (
                rule.host.clone(),
                json!([{ "transform": { "headers": headers } }]),
            )
        })
        .collect();
    let mut network = json!({ "rules": rules });
    if !policy.open {
        network["allowOut"] = json!(policy.allow_out);
        network["denyOut"] = json!(["0.0.0.0/0"]);
    }
    network
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[async_trait]
impl SandboxProvider for E2bProvider {
    fn name(&self) -> &'static str {
        "e2b"
    }

    fn capabilities(&self) -> super::ProviderCapabilities {
        super::ProviderCapabilities {
            host_mounts: false,
            host_network: false,
            dependency_caches: false,
            egress_rules: true,
        }
    }

    async fn create(
        &self,
        spec: &SandboxSpec,
        timeout: Duration,
    ) -> Result<SandboxHandle, SandboxError> {
        if !spec.mounts.is_empty() {
            return Err(SandboxError::Unsupported(
                "an E2B sandbox cannot reach this machine's directories; launch a GitHub repository, or use SANDBOX_PROVIDER=local".into(),
            ));
        }
        let mut metadata = spec.metadata.clone();
        metadata.insert("owner".into(), "codecourier".into());
        metadata.insert("owner_host".into(), this_host());
        metadata.insert("owner_pid".into(), std::process::id().to_string());
        let env: BTreeMap<&str, &str> = spec
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        let mut body = json!({
            "templateID": spec.template.to_string(),
            // Always sent: without it E2B's default lifetime is 15 seconds.
            "timeout": secs_ceil(timeout),
            "secure": true,
            "allow_internet_access": true,
            "metadata": metadata,
            "envVars": env,
        });
        if let Some(policy) = &spec.network {
            body["network"] = network_config(policy);
        }
        let mut attempt = 0;
        let created: Value = loop {
            attempt += 1;
            let response = self
                .api(reqwest::Method::POST, "/sandboxes")
                .json(&body)
                .send()
                .await
                .map_err(|e| {
                    SandboxError::Transient(format!(
                        "E2B could not be reached: {}",
                        without_url(&e)
                    ))
                })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let text = response.text().await.unwrap_or_default();
            if status == StatusCode::CREATED || status == StatusCode::OK {
                break serde_json::from_str(&text).map_err(|_| {
                    SandboxError::Other(anyhow::anyhow!("E2B's create answer is not JSON"))
                })?;
            }
            let error = api_error(status, &text, &spec.template.to_string());
            let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504) && attempt < 3;
            if !retryable {
                return Err(error);
            }
            tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1).min(10))).await;
        };
        let sandbox_id = created["sandboxID"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let envd = Envd {
            base: self.envd_base(&sandbox_id, created["domain"].as_str()),
            sandbox_id: sandbox_id.clone(),
            token: created["envdAccessToken"].as_str().map(Secret::new),
            deadline: Instant::now() + timeout,
            killed: false,
        };
        self.sandboxes
            .lock()
            .expect("lock")
            .insert(sandbox_id.clone(), envd.clone());
        if let Err(e) = self.wait_for_envd(&envd).await {
            let _ = self.kill(&sandbox_id).await;
            return Err(e);
        }

        // What the VM really got: the template decides CPUs and memory, not the request.
        let detail: Value = match self
            .api(reqwest::Method::GET, &format!("/sandboxes/{sandbox_id}"))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let wanted = spec.resources;
        let resources = match (detail["cpuCount"].as_u64(), detail["memoryMB"].as_u64()) {
            (Some(cpus), Some(mb))
                if cpus == u64::from(wanted.cpus) && mb == u64::from(wanted.memory_mb) =>
            {
                format!("{cpus} CPUs / {mb} MB as asked")
            }
            (Some(cpus), Some(mb)) => format!(
                "⚠️ asked for {} CPUs / {} MB, but template {} provides {cpus} CPUs / {mb} MB",
                wanted.cpus, wanted.memory_mb, spec.template
            ),
            _ => "⚠️ E2B did not report the sandbox's CPUs and memory".into(),
        };
        Ok(SandboxHandle {
            provider_id: sandbox_id,
            limits_report: format!(
                "E2B micro-VM ({}): {resources}; timeout {} enforced by E2B",
                spec.template,
                humantime::format_duration(Duration::from_secs(timeout.as_secs()))
            ),
        })
    }

    async fn run(
        &self,
        sandbox: &SandboxHandle,
        exec: &Exec,
        output: mpsc::Sender<Output>,
    ) -> Result<ExitStatus, SandboxError> {
        let envd = self.envd(&sandbox.provider_id)?;
        if envd.killed {
            return Err(SandboxError::Killed);
        }
        let (cmd, args) = exec
            .argv
            .split_first()
            .ok_or_else(|| SandboxError::Other(anyhow::anyhow!("empty command")))?;
        let envs: BTreeMap<&str, &str> = exec
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        let mut process = json!({"cmd": cmd, "args": args, "envs": envs});
        if let Some(cwd) = &exec.cwd {
            process["cwd"] = json!(cwd);
        }
        let tag = format!("codecourier-{}", uuid::Uuid::new_v4().simple());
        let request = json!({"process": process, "tag": tag, "stdin": exec.stdin.is_some()});
        let response = self
            .envd_request(&envd, "/process.Process/Start")
            .header("Content-Type", "application/connect+json")
            .header("Connect-Protocol-Version", "1")
            // No Connect-Timeout-Ms: envd would kill the process at that deadline (and 0 means now).
            .header("Keepalive-Ping-Interval", KEEPALIVE_SECS)
            .body(envelope(0, request.to_string().as_bytes()))
            .send()
            .await
            .map_err(|e| {
                SandboxError::Transient(format!(
                    "envd could not start the command: {}",
                    without_url(&e)
                ))
            })?;
        let status = response.status();
        if status != StatusCode::OK {
            let text = response.text().await.unwrap_or_default();
            return Err(self
                .envd_error(&envd, status, &text, "starting a command")
                .await);
        }
        let mut stream = response.bytes_stream();
        let mut reader = EnvelopeReader::default();
        let mut stdin = exec.stdin.clone();
        let mut exit: Option<ExitStatus> = None;
        let mut stream_error: Option<String> = None;
        'read: while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    stream_error = Some(format!(
                        "the command's output stream broke: {}",
                        without_url(&e)
                    ));
                    break;
                }
            };
            for (flags, payload) in reader.push(&chunk) {
                let message: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                if flags & 0x02 != 0 {
                    if let Some(error) = message.get("error") {
                        stream_error = Some(format!(
                            "envd ended the command with {}: {}",
                            error["code"].as_str().unwrap_or("an error"),
                            error["message"].as_str().unwrap_or_default()
                        ));
                    }
                    break 'read;
                }
                let event = &message["event"];
                if let Some(start) = event.get("start") {
                    // The prompt goes in once the process exists, then stdin is closed: agent CLIs
                    // wait for end of input.
                    if let Some(bytes) = stdin.take() {
                        let selector = json!({"pid": start["pid"]});
                        self.unary(&envd, "SendInput", &json!({"process": selector, "input": {"stdin": BASE64.encode(&bytes)}})).await?;
                        self.unary(&envd, "CloseStdin", &json!({"process": selector}))
                            .await?;
                    }
                } else if let Some(data) = event.get("data") {
                    for (key, wrap) in [
                        ("stdout", Output::Stdout as fn(Vec<u8>) -> Output),
                        ("stderr", Output::Stderr),
                    ] {
                        if let Some(encoded) = data[key].as_str() {
                            let bytes = BASE64.decode(encoded).unwrap_or_default();
                            if output.send(wrap(bytes)).await.is_err() {
                                // Nobody wants the rest: end the command rather than stream it.
                                let signal =
                                    json!({"process": {"tag": tag}, "signal": "SIGNAL_SIGKILL"});
                                let _ = self.unary(&envd, "SendSignal", &signal).await;
                                return Ok(ExitStatus {
                                    code: None,
                                    oom_killed: false,
                                    pids_limited: false,
                                });
                            }
                        }
                    }
                } else if let Some(end) = event.get("end") {
                    // protojson leaves out defaults: a missing exitCode is 0, a missing exited false.
                    let exited = end["exited"].as_bool().unwrap_or(false);
                    let code = end["exitCode"].as_i64().unwrap_or(0) as i32;
                    exit = Some(ExitStatus {
                        code: exited.then_some(code),
                        oom_killed: false,
                        pids_limited: false,
                    });
                }
            }
        }
        if let Some(exit) = exit {
            return Ok(exit);
        }
        if let Some(end) = self.ended(&envd).await {
            return Err(end);
        }
        let why = stream_error.unwrap_or_else(|| {
            if reader.has_partial() {
                "the command's output stream was cut in the middle of a message".into()
            } else {
                "the command's output stream ended without its exit status".into()
            }
        });
        Err(SandboxError::Transient(why))
    }

    async fn write_file(
        &self,
        sandbox: &SandboxHandle,
        path: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), SandboxError> {
        let envd = self.envd(&sandbox.provider_id)?;
        let mut url = reqwest::Url::parse(&format!("{}/files", envd.base))
            .map_err(|e| SandboxError::Other(e.into()))?;
        url.query_pairs_mut()
            .append_pair("path", path)
            .append_pair("username", "user");
        let mut request = self
            .http
            .post(url)
            .header("E2b-Sandbox-Id", &envd.sandbox_id)
            .header("E2b-Sandbox-Port", ENVD_PORT.to_string())
            .header("Content-Type", "application/octet-stream")
            .body(contents.to_vec());
        if let Some(token) = &envd.token {
            request = request.header("X-Access-Token", token.expose());
        }
        let response = request.send().await.map_err(|e| {
            SandboxError::Transient(format!("envd could not take {path}: {}", without_url(&e)))
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(self
                .envd_error(&envd, status, &text, &format!("writing {path}"))
                .await);
        }
        // The files API keeps envd's default mode; private files are narrowed afterwards.
        if mode != 0o644 {
            let exec = Exec {
                argv: vec!["chmod".into(), format!("{mode:o}"), path.into()],
                ..Default::default()
            };
            let (tx, mut rx) = mpsc::channel(8);
            let drain = async { while rx.recv().await.is_some() {} };
            let (status, _) = tokio::join!(self.run(sandbox, &exec, tx), drain);
            if !status?.success() {
                return Err(SandboxError::Other(anyhow::anyhow!(
                    "cannot set the mode of {path}"
                )));
            }
        }
        Ok(())
    }

    async fn read_file(
        &self,
        sandbox: &SandboxHandle,
        path: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, SandboxError> {
        let envd = self.envd(&sandbox.provider_id)?;
        let mut url = reqwest::Url::parse(&format!("{}/files", envd.base))
            .map_err(|e| SandboxError::Other(e.into()))?;
        url.query_pairs_mut()
            .append_pair("path", path)
            .append_pair("username", "user");
        let mut request = self
            .http
            .get(url)
            .header("E2b-Sandbox-Id", &envd.sandbox_id)
            .header("E2b-Sandbox-Port", ENVD_PORT.to_string());
        if let Some(token) = &envd.token {
            request = request.header("X-Access-Token", token.expose());
        }
        let mut response = request.send().await.map_err(|e| {
            SandboxError::Transient(format!("envd could not send {path}: {}", without_url(&e)))
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(self
                .envd_error(&envd, status, &text, &format!("reading {path}"))
                .await);
        }
        let too_large = || {
            SandboxError::Other(anyhow::anyhow!(
                "cannot read {path}: it holds more than the {max_bytes} bytes read from a sandbox"
            ))
        };
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(too_large());
        }
        let mut contents = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            SandboxError::Transient(format!("envd broke off {path}: {}", without_url(&e)))
        })? {
            if (contents.len() + chunk.len()) as u64 > max_bytes {
                return Err(too_large());
            }
            contents.extend_from_slice(&chunk);
        }
        Ok(contents)
    }

    async fn kill(&self, provider_id: &str) -> Result<(), SandboxError> {
        if let Some(envd) = self.sandboxes.lock().expect("lock").get_mut(provider_id) {
            envd.killed = true;
        }
        let response = self
            .api(
                reqwest::Method::DELETE,
                &format!("/sandboxes/{provider_id}"),
            )
            .send()
            .await
            .map_err(|e| {
                SandboxError::Transient(format!("E2B could not be reached: {}", without_url(&e)))
            })?;
        match response.status().as_u16() {
            204 | 200 => Ok(()),
            404 => Err(SandboxError::NotFound(provider_id.to_string())),
            status => Err(api_error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &response.text().await.unwrap_or_default(),
                provider_id,
            )),
        }
    }

    async fn set_timeout(
        &self,
        sandbox: &SandboxHandle,
        timeout: Duration,
    ) -> Result<(), SandboxError> {
        let response = self
            .api(
                reqwest::Method::POST,
                &format!("/sandboxes/{}/timeout", sandbox.provider_id),
            )
            .json(&json!({"timeout": secs_ceil(timeout)}))
            .send()
            .await
            .map_err(|e| {
                SandboxError::Transient(format!("E2B could not be reached: {}", without_url(&e)))
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(api_error(
                status,
                &response.text().await.unwrap_or_default(),
                &sandbox.provider_id,
            ));
        }
        if let Some(envd) = self
            .sandboxes
            .lock()
            .expect("lock")
            .get_mut(&sandbox.provider_id)
        {
            envd.deadline = Instant::now() + timeout;
        }
        Ok(())
    }

    async fn list(
        &self,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Vec<SandboxInfo>, SandboxError> {
        let mut filter = BTreeMap::from([("owner".to_string(), "codecourier".to_string())]);
        filter.extend(metadata.clone());
        let encoded: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&filter)
            .finish();
        let mut found = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut request = self.api(reqwest::Method::GET, "/v2/sandboxes").query(&[
                ("metadata", encoded.as_str()),
                ("state", "running,paused"),
                ("limit", "100"),
            ]);
            if let Some(token) = &next {
                request = request.query(&[("nextToken", token.as_str())]);
            }
            let response = request.send().await.map_err(|e| {
                SandboxError::Transient(format!("E2B could not be reached: {}", without_url(&e)))
            })?;
            let status = response.status();
            next = response
                .headers()
                .get("x-next-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = response.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(api_error(status, &text, "the sandbox list"));
            }
            let items: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
            for item in items {
                let metadata: BTreeMap<String, String> =
                    serde_json::from_value(item["metadata"].clone()).unwrap_or_default();
                // Running, and (when its owner ran on this machine) that owner still alive: else nobody
                // is driving it any more.
                let owner_alive = match (metadata.get("owner_host"), metadata.get("owner_pid")) {
                    (Some(host), Some(pid)) if *host == this_host() => {
                        std::path::Path::new(&format!("/proc/{pid}")).exists()
                    }
                    _ => true,
                };
                found.push(SandboxInfo {
                    provider_id: item["sandboxID"].as_str().unwrap_or_default().to_string(),
                    alive: item["state"] == "running" && owner_alive,
                    metadata,
                });
            }
            if next.is_none() {
                return Ok(found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_across_chunk_boundaries() {
        let mut bytes = envelope(0, br#"{"event":{"start":{"pid":412}}}"#);
        bytes.extend(envelope(2, b"{}"));
        let mut reader = EnvelopeReader::default();
        let mut got = Vec::new();
        for chunk in bytes.chunks(3) {
            got.extend(reader.push(chunk));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (0, br#"{"event":{"start":{"pid":412}}}"#.to_vec()));
        assert_eq!(got[1], (2, b"{}".to_vec()));
        assert!(!reader.has_partial());
        reader.push(&[0, 0, 0, 0, 9, b'{']);
        assert!(reader.has_partial());
    }

    #[test]
    fn control_plane_errors_become_sentences() {
        let e = api_error(
            StatusCode::BAD_REQUEST,
            r#"{"code":400,"message":"Timeout cannot be greater than 1 hours"}"#,
            "base",
        );
        assert!(
            e.to_string().contains("launch with a shorter --timeout"),
            "{e}"
        );
        let e = api_error(
            StatusCode::NOT_FOUND,
            r#"{"code":404,"message":"template 'nope' not found"}"#,
            "nope",
        );
        assert!(matches!(e, SandboxError::TemplateNotFound(ref t) if t == "nope"));
        assert!(
            e.to_string().contains("choose another with --template"),
            "{e}"
        );
        let e = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"code":429,"message":"you have reached the maximum number of concurrent E2B sandboxes (20)"}"#,
            "base",
        );
        assert!(matches!(e, SandboxError::QuotaExceeded(_)));
        let e = api_error(StatusCode::UNAUTHORIZED, "", "base");
        assert!(e.to_string().contains("E2B refused E2B_API_KEY"), "{e}");
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(secs_ceil(Duration::from_millis(900_001)), 901);
        assert_eq!(secs_ceil(Duration::from_millis(1)), 1);
    }
}
