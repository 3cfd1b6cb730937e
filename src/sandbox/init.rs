//! The first process of a local sandbox's command when the sandbox has forwards: inside the
//! sandbox's own network namespace it listens on the loopback for each forward and pipes every
//! connection to the Unix socket bind-mounted from the host (CodeCourier's gateway or proxy), then
//! runs the command as its child with the same stdin, stdout and stderr, passes signals on and
//! exits as the command did. It is CodeCourier's own binary, mounted read-only, run as the hidden
//! `codecourier sandbox-init --forward PORT=SOCKET… -- COMMAND…`.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::net::{TcpListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};

/// The command could not be started (as `env` and shells say).
const CANNOT_RUN: u8 = 126;
const NOT_FOUND: u8 = 127;
/// The forwards could not be set up.
const INIT_FAILED: u8 = 125;

/// One forward: a port on the sandbox's loopback and the socket behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub port: u16,
    pub socket: PathBuf,
}

impl Forward {
    /// The command-line form, `PORT=SOCKET`.
    pub fn arg(&self) -> String {
        format!("{}={}", self.port, self.socket.display())
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let (port, socket) = text
            .split_once('=')
            .ok_or_else(|| format!("{text}: a forward is PORT=SOCKET"))?;
        let port = port
            .parse()
            .map_err(|_| format!("{text}: {port} is not a port"))?;
        Ok(Self {
            port,
            socket: socket.into(),
        })
    }
}

/// `codecourier sandbox-init`.
pub fn main(forwards: &[String], argv: &[String]) -> ExitCode {
    let forwards = match forwards
        .iter()
        .map(|f| Forward::parse(f))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(forwards) => forwards,
        Err(e) => return fail(INIT_FAILED, &e),
    };
    let Some((program, args)) = argv.split_first() else {
        return fail(INIT_FAILED, "no command to run");
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(INIT_FAILED, &e.to_string()),
    };
    runtime.block_on(run(forwards, program, args))
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("codecourier sandbox-init: {message}");
    ExitCode::from(code)
}

async fn run(forwards: Vec<Forward>, program: &str, args: &[String]) -> ExitCode {
    // Every listener is up before the command starts: it may connect at once.
    for forward in forwards {
        let v4 = match TcpListener::bind(("127.0.0.1", forward.port)).await {
            Ok(listener) => listener,
            Err(e) => {
                return fail(
                    INIT_FAILED,
                    &format!("cannot listen on 127.0.0.1:{}: {e}", forward.port),
                )
            }
        };
        tokio::spawn(serve(v4, forward.socket.clone()));
        // `localhost` may resolve to ::1 first; where the sandbox has IPv6, listen there too.
        if let Ok(v6) = TcpListener::bind(("::1", forward.port)).await {
            tokio::spawn(serve(v6, forward.socket));
        }
    }
    let mut child = match tokio::process::Command::new(program).args(args).spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail(NOT_FOUND, &format!("{program}: not found"))
        }
        Err(e) => return fail(CANNOT_RUN, &format!("cannot run {program}: {e}")),
    };
    let pid = child.id().unwrap_or(0) as i32;
    let kinds = [
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
    ];
    let (tx, mut passed_on) = tokio::sync::mpsc::unbounded_channel();
    for (kind, number) in kinds {
        if let Ok(mut stream) = signal(kind) {
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    let _ = tx.send(number);
                }
            });
        }
    }
    loop {
        tokio::select! {
            status = child.wait() => return exit_code(status),
            Some(number) = passed_on.recv() => {
                // SAFETY: sending a signal has no memory effects on this process.
                unsafe { libc::kill(pid, number) };
            }
        }
    }
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitCode::from(code as u8),
            (None, Some(signal)) => ExitCode::from(128u8.wrapping_add(signal as u8)),
            (None, None) => ExitCode::FAILURE,
        },
        Err(e) => fail(INIT_FAILED, &format!("waiting for the command: {e}")),
    }
}

/// Pipes each connection on `listener` to a new connection to `socket`.
async fn serve(listener: TcpListener, socket: PathBuf) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            continue;
        };
        let socket = socket.clone();
        tokio::spawn(async move {
            match UnixStream::connect(&socket).await {
                Ok(mut unix) => {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
                Err(e) => eprintln!(
                    "codecourier sandbox-init: cannot reach {}: {e}",
                    socket.display()
                ),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_read_as_they_are_written() {
        let forward = Forward {
            port: 8080,
            socket: "/run/codecourier/forward/8080.sock".into(),
        };
        assert_eq!(Forward::parse(&forward.arg()), Ok(forward));
        assert!(Forward::parse("8080").is_err());
        assert!(Forward::parse("http=/x.sock").is_err());
    }
}
