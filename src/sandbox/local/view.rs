//! What a local sandbox sees of the host: the system directories, the parts of `/etc` a toolchain
//! needs (not the rest: no shadow, no host keys, no host tool configuration with tokens), a
//! passwd and group of its own, and its binds (home, /tmp, tools, repositories). None of it may
//! hold CodeCourier's own files: a data directory, `.env` or key below what the provider shows is
//! refused, and below a repository the launch mounts it is hidden.

use std::path::{Path, PathBuf};

use super::identity::INSIDE_ID;
use super::tools::HostTool;
use super::TOOLS_MOUNT;
use crate::sandbox::{Mount, SandboxError, HOME};

/// Host directories shown read-only in every sandbox.
pub(super) const SYSTEM_DIRS: [&str; 6] = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"];

/// The parts of `/etc` shown (those that exist): name resolution, CA certificates, the dynamic
/// linker, links that programs in /usr/bin go through, time and locale, shells and interpreters.
const ETC_ENTRIES: [&str; 30] = [
    "resolv.conf",
    "hosts",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "pki/tls/certs",
    "pki/ca-trust",
    "crypto-policies",
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "locale.alias",
    "os-release",
    "debian_version",
    "bash.bashrc",
    "profile",
    "inputrc",
    "shells",
    "mime.types",
    "magic",
    "perl",
];

/// Interpreters' own configuration directories (`/etc/python3.11`), shown when they exist.
const ETC_PREFIXES: [&str; 1] = ["python3"];

/// A system path as the sandbox sees it: bound read-only, or a link to the same target.
#[derive(Debug, Clone)]
pub(super) enum SystemPath {
    Bind { source: PathBuf, dest: String },
    Link { target: String, dest: String },
}

impl SystemPath {
    fn source(&self) -> Option<&Path> {
        match self {
            SystemPath::Bind { source, .. } => Some(source),
            SystemPath::Link { .. } => None,
        }
    }
}

/// The system directories and `/etc` entries of this machine, in mount order.
fn system() -> Vec<SystemPath> {
    let mut paths = Vec::new();
    for dir in SYSTEM_DIRS {
        match std::fs::read_link(dir) {
            Ok(target) => paths.push(SystemPath::Link {
                target: target.to_string_lossy().into_owned(),
                dest: dir.to_string(),
            }),
            Err(_) if Path::new(dir).is_dir() => paths.push(SystemPath::Bind {
                source: dir.into(),
                dest: dir.to_string(),
            }),
            Err(_) => {}
        }
    }
    let mut etc: Vec<String> = ETC_ENTRIES.iter().map(|e| e.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir("/etc") {
        let mut extra: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| ETC_PREFIXES.iter().any(|p| name.starts_with(p)))
            .collect();
        extra.sort();
        etc.extend(extra);
    }
    for entry in etc {
        let dest = format!("/etc/{entry}");
        // A link is followed on the host: its target may lie where the sandbox has a tmpfs (/run).
        if let Ok(source) = Path::new(&dest).canonicalize() {
            paths.push(SystemPath::Bind { source, dest });
        }
    }
    paths
}

/// A host path shown inside, staged for a root-run sandbox.
#[derive(Debug, Clone)]
pub(super) struct Bind {
    pub source: PathBuf,
    pub dest: String,
    pub writable: bool,
    /// The sandbox's user must own what it holds (a repository it works in).
    pub owned: bool,
}

/// The sandbox's own paths and what the launch asked for, in mount order.
fn binds(
    dir: &Path,
    tools_dir: Option<&Path>,
    host_tools: &[HostTool],
    mounts: &[Mount],
) -> Vec<Bind> {
    let bind = |source: &Path, dest: &str, writable: bool| Bind {
        source: source.to_path_buf(),
        dest: dest.to_string(),
        writable,
        owned: false,
    };
    let mut binds = vec![
        bind(&dir.join("home"), HOME, true),
        bind(&dir.join("tmp"), "/tmp", true),
        bind(&dir.join("etc/passwd"), "/etc/passwd", false),
        bind(&dir.join("etc/group"), "/etc/group", false),
    ];
    binds.extend(tools_dir.map(|tools| bind(tools, TOOLS_MOUNT, false)));
    for root in host_tools.iter().filter_map(|t| t.install_root.as_ref()) {
        binds.push(bind(root, &root.to_string_lossy(), false));
    }
    binds.extend(mounts.iter().map(|m| Bind {
        owned: true,
        ..bind(&m.host, &m.guest, m.writable)
    }));
    binds
}

/// An empty file of the sandbox's, shown over files of CodeCourier's that must stay hidden.
const EMPTY_FILE: &str = "etc/empty";

/// Writes the sandbox's own passwd and group (its user, root and nobody) and its empty file.
pub(super) fn write_accounts(dir: &Path) -> std::io::Result<()> {
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc)?;
    std::fs::write(dir.join(EMPTY_FILE), "")?;
    std::fs::write(
        etc.join("passwd"),
        format!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n\
             user:x:{INSIDE_ID}:{INSIDE_ID}:CodeCourier sandbox:{HOME}:/bin/bash\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
    )?;
    std::fs::write(
        etc.join("group"),
        format!("root:x:0:\nuser:x:{INSIDE_ID}:\nnogroup:x:65534:\n"),
    )
}

/// Everything a new sandbox is shown, in mount order.
pub(super) struct Shown {
    pub system: Vec<SystemPath>,
    pub binds: Vec<Bind>,
    /// Directories of CodeCourier's inside a repository, covered by a tmpfs.
    pub hidden: Vec<Hidden>,
}

/// What the sandbox in `dir` is shown; refused when that would include a `protected` path.
pub(super) fn shown(
    dir: &Path,
    tools_dir: Option<&Path>,
    host_tools: &[HostTool],
    mounts: &[Mount],
    protected: &[PathBuf],
) -> Result<Shown, SandboxError> {
    let system = system();
    let mut binds = binds(dir, tools_dir, host_tools, mounts);
    let (hidden, files): (Vec<Hidden>, Vec<Hidden>) = protect(protected, &system, &binds)?
        .into_iter()
        .partition(|h| h.dir);
    // A file is covered by an empty one (a device would not open on the sandbox's mounts).
    binds.extend(files.into_iter().map(|h| Bind {
        source: dir.join(EMPTY_FILE),
        dest: h.guest,
        writable: false,
        owned: false,
    }));
    Ok(Shown {
        system,
        binds,
        hidden,
    })
}

/// A path of CodeCourier's hidden inside a mount that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hidden {
    pub guest: String,
    pub dir: bool,
}

/// Checks that no mounted path holds a protected one (the data directory, `.env`, a key file).
/// Below what the provider shows of its own accord that is refused; below a repository the launch
/// mounts (a data directory inside the repository, as `launch --repo .` has it) it is hidden.
fn protect(
    protected: &[PathBuf],
    system: &[SystemPath],
    binds: &[Bind],
) -> Result<Vec<Hidden>, SandboxError> {
    let mut hidden = Vec::new();
    for path in protected {
        let Ok(path) = path.canonicalize() else {
            continue;
        };
        let shown = system
            .iter()
            .filter_map(|s| s.source().map(|src| (src, None)))
            .chain(binds.iter().map(|b| (b.source.as_path(), Some(b))));
        for (source, bind) in shown {
            let Ok(source) = source.canonicalize() else {
                continue;
            };
            let Ok(below) = path.strip_prefix(&source) else {
                continue;
            };
            match bind {
                Some(bind) if bind.owned => hidden.push(Hidden {
                    guest: Path::new(&bind.dest).join(below).display().to_string(),
                    dir: path.is_dir(),
                }),
                _ => {
                    return Err(SandboxError::Unsupported(format!(
                        "refusing to create a sandbox: {} (CodeCourier's own) lies under {}, which sandboxes see; move it out (CODECOURIER_DATA_DIR, the tools directory)",
                        path.display(),
                        source.display()
                    )))
                }
            }
        }
    }
    Ok(hidden)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_provider_shows_never_holds_codecourier_files_and_repositories_hide_them() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("repo");
        let data = repo.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(repo.join(".env"), "KEY=1").unwrap();
        let sandbox = data.join("sandboxes/local-x");
        let mounts = [Mount {
            host: repo.clone(),
            guest: "/srv/origin".into(),
            writable: true,
        }];
        let binds = binds(&sandbox, None, &[], &mounts);
        let hidden = protect(&[data.clone(), repo.join(".env")], &system(), &binds).unwrap();
        assert_eq!(
            hidden,
            [
                Hidden {
                    guest: "/srv/origin/data".into(),
                    dir: true
                },
                Hidden {
                    guest: "/srv/origin/.env".into(),
                    dir: false
                }
            ]
        );

        let tools = binds_with_tools(&sandbox, root.path());
        let refused = protect(&[data], &system(), &tools).unwrap_err().to_string();
        assert!(
            refused.starts_with("refusing to create a sandbox: "),
            "{refused}"
        );
        assert!(refused.contains("which sandboxes see"), "{refused}");
    }

    fn binds_with_tools(sandbox: &Path, tools: &Path) -> Vec<Bind> {
        binds(sandbox, Some(tools), &[], &[])
    }

    #[test]
    fn etc_holds_only_what_toolchains_need() {
        let shown: Vec<String> = system()
            .into_iter()
            .filter_map(|s| match s {
                SystemPath::Bind { dest, .. } => Some(dest),
                SystemPath::Link { .. } => None,
            })
            .filter(|d| d.starts_with("/etc"))
            .collect();
        for secret in ["/etc/shadow", "/etc/ssl/private", "/etc/ssh", "/etc/npmrc"] {
            assert!(!shown.iter().any(|d| d == secret), "{secret} in {shown:?}");
        }
        assert!(
            shown.iter().any(|d| d == "/etc/resolv.conf")
                || !Path::new("/etc/resolv.conf").exists()
        );
    }
}
