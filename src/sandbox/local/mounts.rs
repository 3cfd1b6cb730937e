//! What the commands of one sandbox mount besides the system paths: its binds (home, /tmp, tools,
//! repositories, and for forwards the sockets and CodeCourier's own binary), the stage a root-run
//! sandbox takes them from, and the forwards. Rebuilt when a forward is added; each command takes
//! the set current when it starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::identity::{self, HostUser};
use super::stage::Stage;
use super::view::Bind;
use crate::sandbox::init::Forward;
use crate::sandbox::SandboxError;

/// Inside the sandbox: CodeCourier's binary (the forwarder) and the forwarded sockets.
pub(super) const INIT_BINARY: &str = "/run/codecourier/init";
const FORWARD_DIR: &str = "/run/codecourier/forward";

pub(super) struct Mounts {
    pub binds: Vec<Bind>,
    /// A root-run sandbox's bind sources, staged where its own user reaches them.
    pub stage: Option<Stage>,
    /// Ports on the sandbox's loopback and the sockets behind them, as the sandbox sees them.
    pub forwards: Vec<Forward>,
}

impl Mounts {
    /// Where bwrap finds the source of bind `index`.
    pub fn source(&self, index: usize) -> String {
        match &self.stage {
            Some(stage) => stage.path(index).to_string(),
            None => self.binds[index].source.to_string_lossy().into_owned(),
        }
    }

    /// The command to run: as given, or behind the forwarder when there are forwards.
    pub fn argv(&self, argv: &[String]) -> Vec<String> {
        if self.forwards.is_empty() {
            return argv.to_vec();
        }
        let mut wrapped = vec![INIT_BINARY.to_string(), "sandbox-init".to_string()];
        for forward in &self.forwards {
            wrapped.extend(["--forward".to_string(), forward.arg()]);
        }
        wrapped.push("--".into());
        wrapped.extend(argv.iter().cloned());
        wrapped
    }
}

/// Why a root-run sandbox cannot have a user of its own.
pub(super) struct NoOwnUser(pub String);

/// The mounts of a sandbox whose host user is `user`, with `forwards` as (port, host socket)
/// served by `init_binary`.
pub(super) fn build(
    base: &[Bind],
    forwards: &[(u16, PathBuf)],
    init_binary: Option<&Path>,
    user: &HostUser,
) -> Result<Result<Mounts, NoOwnUser>, SandboxError> {
    let mut binds = base.to_vec();
    let mut guest_forwards = Vec::new();
    if !forwards.is_empty() {
        let binary = init_binary.ok_or_else(|| {
            SandboxError::Unsupported("cannot forward into the sandbox: CodeCourier's own binary is unknown (this process is not `codecourier`; LocalProvider::with_init_binary names it)".into())
        })?;
        binds.push(Bind {
            source: binary.to_path_buf(),
            dest: INIT_BINARY.into(),
            writable: false,
            owned: false,
        });
        for (port, socket) in forwards {
            let guest = format!("{FORWARD_DIR}/{port}.sock");
            binds.push(Bind {
                source: socket.clone(),
                dest: guest.clone(),
                writable: false,
                owned: true,
            });
            guest_forwards.push(Forward {
                port: *port,
                socket: guest.into(),
            });
        }
    }
    let stage = match user {
        HostUser::Dedicated(uid) => match staged(&binds, *uid)? {
            Ok(stage) => Some(stage),
            Err(no) => return Ok(Err(no)),
        },
        HostUser::Own | HostUser::Root(_) => None,
    };
    Ok(Ok(Mounts {
        binds,
        stage,
        forwards: guest_forwards,
    }))
}

/// A root-run sandbox's staged sources. A mount the sandbox's user must own is id-mapped to it;
/// where this machine cannot, a mount that must stay writable means no user of its own, and a
/// socket must let others connect.
fn staged(binds: &[Bind], uid: u32) -> Result<Result<Stage, NoOwnUser>, SandboxError> {
    let mut sources = Vec::new();
    for bind in binds {
        let mapping = if bind.owned {
            match identity::owner_mapping(&bind.source, uid)
                .and_then(|ns| identity::can_idmap(&bind.source, &ns).map(|_| ns))
            {
                Ok(ns) => Some(ns),
                Err(e) if bind.writable => {
                    return Ok(Err(NoOwnUser(format!(
                        "{} must stay writable, and this machine cannot map its owner to the sandbox's user: {e}",
                        bind.source.display()
                    ))));
                }
                Err(e) if is_socket(&bind.source) && !others_may_write(&bind.source) => {
                    return Err(SandboxError::Unsupported(format!(
                        "cannot forward {}: this machine cannot map its owner to the sandbox's user ({e}), and others may not connect to it",
                        bind.source.display()
                    )));
                }
                Err(_) => None,
            }
        } else {
            None
        };
        sources.push((bind.source.clone(), mapping));
    }
    let stage = Stage::new(sources).map_err(|e| {
        SandboxError::Other(anyhow::anyhow!("cannot prepare the sandbox's mounts: {e}"))
    })?;
    Ok(Ok(stage))
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

fn others_may_write(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o002 != 0)
}
