//! The E2B provider: cloud micro-VMs. The control plane is REST (`X-API-Key`); commands and files go
//! to envd inside the sandbox, commands as Connect-protocol server streams of 5-byte envelopes.
//! reference/e2b/CONTRACT.md is the contract; its traps are handled here: the timeout is always sent,
//! `Connect-Timeout-Ms` is never sent, stdin is closed explicitly, errors may arrive inside the last
//! envelope of an HTTP 200 stream, and envd may answer 502 for a moment after creation. Here: the
//! control plane and the provider; envd's requests and streams are in `envd.rs`.

mod envd;

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
use envd::{without_url, Envd};
// The Connect framing, which the tests' fake envd speaks too.
pub use envd::{envelope, EnvelopeReader};

const KEEPALIVE_SECS: &str = "50";

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

    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api_url))
            .header("X-API-Key", self.api_key.expose())
            .header("Accept", "application/json")
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
        self.upload(&envd, path, contents).await?;
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
        self.download(&envd, path, max_bytes).await
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
