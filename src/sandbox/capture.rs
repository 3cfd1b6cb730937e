//! Collecting a short command's whole output, bounded: a sandbox decides what it prints, so the
//! host keeps at most a limit of each stream, counts the rest, and stops a command that goes on.

use tokio::sync::mpsc;

use super::{Exec, ExitStatus, Output, SandboxError, SandboxHandle, SandboxProvider};

/// How much of each stream `run_captured` keeps.
pub const CAPTURE_LIMIT: usize = 1024 * 1024;
/// A command that prints this many times its limit past the limit is stopped, not drained.
const STOP_AFTER_LIMITS: u64 = 8;

/// A command's output, for short commands (git, setup steps).
#[derive(Debug, Clone)]
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Bytes that came past the limit and were not kept (both streams); 0 when all was kept.
    /// A cut stream ends with a line saying so.
    pub cut: u64,
}

impl Captured {
    pub fn was_cut(&self) -> bool {
        self.cut > 0
    }
}

/// Runs a command and collects its output, keeping at most [`CAPTURE_LIMIT`] bytes of each stream.
pub async fn run_captured(
    provider: &dyn SandboxProvider,
    sandbox: &SandboxHandle,
    exec: &Exec,
) -> Result<Captured, SandboxError> {
    run_captured_within(provider, sandbox, exec, CAPTURE_LIMIT).await
}

/// Runs a command and keeps at most `limit` bytes of each stream. What comes after is counted and
/// dropped; past eight times the limit the command is stopped (its status then says killed).
pub async fn run_captured_within(
    provider: &dyn SandboxProvider,
    sandbox: &SandboxHandle,
    exec: &Exec,
    limit: usize,
) -> Result<Captured, SandboxError> {
    let (tx, mut rx) = mpsc::channel(64);
    let collect = async move {
        let mut out = Kept::new(limit);
        let mut err = Kept::new(limit);
        let mut stopped = false;
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Output::Stdout(b) => out.push(&b),
                Output::Stderr(b) => err.push(&b),
            }
            if out.dropped + err.dropped > limit as u64 * STOP_AFTER_LIMITS {
                // Closing the channel tells the provider nobody wants more: it ends the command.
                stopped = true;
                break;
            }
        }
        drop(rx);
        (out, err, stopped)
    };
    let (status, (out, err, stopped)) = tokio::join!(provider.run(sandbox, exec, tx), collect);
    Ok(Captured {
        status: status?,
        cut: out.dropped + err.dropped,
        stdout: out.text(stopped),
        stderr: err.text(stopped),
    })
}

/// One stream: the first `limit` bytes, and a count of the rest.
struct Kept {
    bytes: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl Kept {
    fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
            dropped: 0,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.bytes.len()).min(chunk.len());
        self.bytes.extend_from_slice(&chunk[..room]);
        self.dropped += (chunk.len() - room) as u64;
    }

    fn text(&self, stopped: bool) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!(
                "\n[output cut: the first {} bytes kept, {} more dropped{}]\n",
                self.limit,
                self.dropped,
                if stopped {
                    "; the command was stopped for printing too much"
                } else {
                    ""
                }
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_keeps_its_limit_and_counts_the_rest() {
        let mut kept = Kept::new(5);
        kept.push(b"abc");
        kept.push(b"defgh");
        kept.push(b"ij");
        assert_eq!(kept.bytes, b"abcde");
        assert_eq!(kept.dropped, 5);
        assert_eq!(
            kept.text(false),
            "abcde\n[output cut: the first 5 bytes kept, 5 more dropped]\n"
        );
        let mut whole = Kept::new(5);
        whole.push(b"abcde");
        assert_eq!(whole.text(true), "abcde");
    }
}
