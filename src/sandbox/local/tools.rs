//! Host executables inside a local sandbox: where an agent CLI is found on this machine, and which
//! directory must be mounted for it to run.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::view::SYSTEM_DIRS;
use crate::sandbox::SandboxError;

/// A host executable made visible inside: the directory tree it needs, and the file to link to.
#[derive(Debug, Clone)]
pub(super) struct HostTool {
    pub name: String,
    pub target: PathBuf,
    pub install_root: Option<PathBuf>,
}

/// Where an agent executable was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolLocation {
    ToolsDir(PathBuf),
    HostPath(PathBuf),
}

/// Looks for an executable in `CODECOURIER_TOOLS_DIR` first, then on this process's PATH.
pub fn locate_tool(tools_dir: Option<&Path>, name: &str) -> Option<ToolLocation> {
    if let Some(path) = tools_dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
        return Some(ToolLocation::ToolsDir(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(ToolLocation::HostPath)
}

/// Finds `name` on the host PATH, to be linked into the sandbox. `None` when the tools directory
/// has it or it is nowhere (the tool-setup phase then installs it or says what to do).
pub(super) fn resolve_tool(
    tools_dir: Option<&Path>,
    name: &str,
) -> Result<Option<HostTool>, SandboxError> {
    let found = match locate_tool(tools_dir, name) {
        Some(ToolLocation::HostPath(found)) => found,
        Some(ToolLocation::ToolsDir(_)) | None => return Ok(None),
    };
    let target = found
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", found.display()))?;
    let install_root = install_root(&target);
    Ok(Some(HostTool {
        name: name.to_string(),
        target,
        install_root,
    }))
}

/// What must be mounted for a host executable to run inside: nothing under the system directories
/// (already visible); a whole npm install for a package's binary; else the executable's directory.
fn install_root(target: &Path) -> Option<PathBuf> {
    if SYSTEM_DIRS.iter().any(|d| target.starts_with(d)) {
        return None;
    }
    let text = target.to_string_lossy();
    Some(match text.find("/node_modules/") {
        Some(i) => PathBuf::from(&text[..i]),
        None => target.parent().unwrap_or(Path::new("/")).to_path_buf(),
    })
}

/// Whether bubblewrap can be run here; the error says how to install it.
pub fn check_bwrap() -> Result<String, String> {
    match std::process::Command::new("bwrap").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        _ => Err("bubblewrap (bwrap) is needed for local sandboxes: install it with `apt-get install bubblewrap`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npm_installs_are_mounted_whole() {
        assert_eq!(install_root(Path::new("/usr/local/bin/git")), None);
        assert_eq!(
            install_root(Path::new(
                "/srv/tools/claude/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
            )),
            Some(PathBuf::from("/srv/tools/claude"))
        );
        assert_eq!(
            install_root(Path::new("/srv/tools/bin/tool")),
            Some(PathBuf::from("/srv/tools/bin"))
        );
    }
}
