//! Talking to one sandbox's envd: the requests' headers and access token, unary Connect calls,
//! the files API (upload and bounded download), the Connect envelopes of a command's stream, what
//! a failed call means (the sandbox ended, or a stated error), and waiting for envd to come up
//! after a create.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::E2bProvider;
use crate::sandbox::SandboxError;
use crate::secret::Secret;

const ENVD_PORT: u16 = 49983;

/// Basic auth for the sandbox user `user` with an empty password: `base64("user:")`.
const USER_AUTH: &str = "Basic dXNlcjo=";
/// How long envd may answer 502 (not up yet) right after a create before we give up.
const ENVD_READY_ATTEMPTS: u32 = 20;

/// What we need to talk to one sandbox's envd.
#[derive(Debug, Clone)]
pub(super) struct Envd {
    pub(super) base: String,
    pub(super) sandbox_id: String,
    pub(super) token: Option<Secret>,
    pub(super) deadline: Instant,
    pub(super) killed: bool,
}

impl E2bProvider {
    pub(super) fn envd_base(&self, sandbox_id: &str, domain: Option<&str>) -> String {
        match &self.sandbox_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!(
                "https://{ENVD_PORT}-{sandbox_id}.{}",
                domain.filter(|d| !d.is_empty()).unwrap_or(&self.domain)
            ),
        }
    }

    pub(super) fn envd(&self, id: &str) -> Result<Envd, SandboxError> {
        self.sandboxes
            .lock()
            .expect("lock")
            .get(id)
            .cloned()
            .ok_or_else(|| SandboxError::NotFound(id.to_string()))
    }

    pub(super) fn envd_request(&self, envd: &Envd, path: &str) -> reqwest::RequestBuilder {
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
    pub(super) async fn unary(
        &self,
        envd: &Envd,
        method: &str,
        body: &Value,
    ) -> Result<Value, SandboxError> {
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
    pub(super) async fn envd_error(
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
    pub(super) async fn ended(&self, envd: &Envd) -> Option<SandboxError> {
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

    /// A request to envd's files API for `path`, as the sandbox user.
    fn files_request(
        &self,
        envd: &Envd,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, SandboxError> {
        let mut url = reqwest::Url::parse(&format!("{}/files", envd.base))
            .map_err(|e| SandboxError::Other(e.into()))?;
        url.query_pairs_mut()
            .append_pair("path", path)
            .append_pair("username", "user");
        let mut request = self
            .http
            .request(method, url)
            .header("E2b-Sandbox-Id", &envd.sandbox_id)
            .header("E2b-Sandbox-Port", ENVD_PORT.to_string());
        if let Some(token) = &envd.token {
            request = request.header("X-Access-Token", token.expose());
        }
        Ok(request)
    }

    /// Writes `contents` to `path` (envd's default mode).
    pub(super) async fn upload(
        &self,
        envd: &Envd,
        path: &str,
        contents: &[u8],
    ) -> Result<(), SandboxError> {
        let response = self
            .files_request(envd, reqwest::Method::POST, path)?
            .header("Content-Type", "application/octet-stream")
            .body(contents.to_vec())
            .send()
            .await
            .map_err(|e| {
                SandboxError::Transient(format!("envd could not take {path}: {}", without_url(&e)))
            })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(self
                .envd_error(envd, status, &text, &format!("writing {path}"))
                .await);
        }
        Ok(())
    }

    /// Reads `path`, refusing a file over `max_bytes` without holding more than that.
    pub(super) async fn download(
        &self,
        envd: &Envd,
        path: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, SandboxError> {
        let mut response = self
            .files_request(envd, reqwest::Method::GET, path)?
            .send()
            .await
            .map_err(|e| {
                SandboxError::Transient(format!("envd could not send {path}: {}", without_url(&e)))
            })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(self
                .envd_error(envd, status, &text, &format!("reading {path}"))
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

    pub(super) async fn wait_for_envd(&self, envd: &Envd) -> Result<(), SandboxError> {
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
pub(super) fn without_url(e: &reqwest::Error) -> &'static str {
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
}
