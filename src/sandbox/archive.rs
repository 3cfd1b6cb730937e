//! Archives of an agent's files restored into a sandbox (Claude Code's `~/.claude` on a follow-up).
//! The archive came out of an earlier sandbox, so what goes back in is rebuilt from it: plain files
//! and directories below the directory it is unpacked in, links only where they point further
//! down, and nothing else — no absolute paths, no `..`, no hard links, devices or pipes.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use tar::EntryType;

use super::{run_captured, Exec, SandboxError, SandboxHandle, SandboxProvider};

/// What an archive may unpack to at most.
pub const MAX_UNPACKED_BYTES: u64 = 512 * 1024 * 1024;
pub const MAX_ENTRIES: usize = 100_000;

/// An archive rebuilt from a sandbox's, safe to unpack.
#[derive(Debug)]
pub struct CleanArchive {
    pub tar_gz: Vec<u8>,
    /// Entries left out, each with the reason.
    pub dropped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the archive cannot be read: {0}")]
    Unreadable(String),
    #[error("the archive unpacks to more than {0}")]
    TooLarge(String),
}

fn unreadable(e: std::io::Error) -> ArchiveError {
    ArchiveError::Unreadable(e.to_string())
}

/// Rebuilds a gzip-compressed tar archive keeping only what cannot reach out of the directory it
/// is unpacked in.
pub fn clean_tar_gz(bytes: &[u8]) -> Result<CleanArchive, ArchiveError> {
    let mut archive = tar::Archive::new(GzDecoder::new(bytes));
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let mut dropped = Vec::new();
    let mut unpacked = 0u64;
    for (count, entry) in archive.entries().map_err(unreadable)?.enumerate() {
        if count >= MAX_ENTRIES {
            return Err(ArchiveError::TooLarge(format!("{MAX_ENTRIES} entries")));
        }
        let mut entry = entry.map_err(unreadable)?;
        let raw_path = entry.path().map_err(unreadable)?.into_owned();
        let Some(path) = descending(&raw_path) else {
            dropped.push(format!(
                "{}: leaves the directory it is unpacked in",
                raw_path.display()
            ));
            continue;
        };
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(entry.header().mtime().unwrap_or(0));
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Directory => {
                header.set_entry_type(EntryType::Directory);
                header.set_mode(mode | 0o700);
                header.set_size(0);
                builder
                    .append_data(&mut header, &path, std::io::empty())
                    .map_err(unreadable)?;
            }
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.size();
                unpacked += size;
                if unpacked > MAX_UNPACKED_BYTES {
                    return Err(ArchiveError::TooLarge(format!(
                        "{} MB",
                        MAX_UNPACKED_BYTES / 1024 / 1024
                    )));
                }
                header.set_entry_type(EntryType::Regular);
                header.set_mode(mode);
                header.set_size(size);
                builder
                    .append_data(&mut header, &path, (&mut entry).take(size))
                    .map_err(unreadable)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(unreadable)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                match descending(&target) {
                    Some(target) => {
                        header.set_entry_type(EntryType::Symlink);
                        header.set_mode(0o777);
                        header.set_size(0);
                        builder
                            .append_link(&mut header, &path, &target)
                            .map_err(unreadable)?;
                    }
                    None => dropped.push(format!(
                        "{}: a link to {}, which is not further down",
                        path.display(),
                        target.display()
                    )),
                }
            }
            EntryType::Link => dropped.push(format!("{}: a hard link", path.display())),
            other => dropped.push(format!(
                "{}: not a file, directory or link ({other:?})",
                path.display()
            )),
        }
    }
    let tar_gz = builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .map_err(unreadable)?;
    Ok(CleanArchive { tar_gz, dropped })
}

/// The path when it only goes down (plain names, `.` ignored), else `None`.
fn descending(path: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => clean.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!clean.as_os_str().is_empty()).then_some(clean)
}

/// Unpacks an archive of an agent's files below `dir` in the sandbox (created if missing), after
/// rebuilding it with [`clean_tar_gz`]. Returns the entries left out.
pub async fn restore_tar_gz(
    provider: &dyn SandboxProvider,
    sandbox: &SandboxHandle,
    dir: &str,
    tar_gz: &[u8],
) -> Result<Vec<String>, SandboxError> {
    let bytes = tar_gz.to_vec();
    let clean = tokio::task::spawn_blocking(move || clean_tar_gz(&bytes))
        .await
        .map_err(|e| SandboxError::Other(e.into()))?
        .map_err(|e| SandboxError::Other(e.into()))?;
    let file = format!(
        "/tmp/codecourier-restore-{}.tgz",
        uuid::Uuid::new_v4().simple()
    );
    provider
        .write_file(sandbox, &file, &clean.tar_gz, 0o600)
        .await?;
    let unpack = Exec {
        argv: [
            "sh",
            "-c",
            "mkdir -p \"$1\" && tar -xzf \"$0\" -C \"$1\" --no-same-owner; status=$?; rm -f \"$0\"; exit $status",
            &file,
            dir,
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let out = run_captured(provider, sandbox, &unpack).await?;
    if !out.status.success() {
        return Err(SandboxError::Other(anyhow::anyhow!(
            "unpacking the archive in {dir} failed: {}",
            out.stderr.trim()
        )));
    }
    Ok(clean.dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tar.gz from (path, kind, target or contents) without the checks a builder makes,
    /// as a crafted archive would be.
    fn crafted(entries: &[(&str, EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o4755);
            // Written raw: set_path would refuse `..`, as a crafted archive does not.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            match kind {
                EntryType::Symlink | EntryType::Link => {
                    header.set_size(0);
                    header.as_old_mut().linkname[..data.len()].copy_from_slice(data.as_bytes());
                    header.set_cksum();
                    builder.append(&header, std::io::empty()).unwrap();
                }
                _ => {
                    header.set_size(data.len() as u64);
                    header.set_cksum();
                    builder.append(&header, data.as_bytes()).unwrap();
                }
            }
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn listing(tar_gz: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(GzDecoder::new(tar_gz));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| format!(" -> {}", l.display()))
                    .unwrap_or_default();
                format!(
                    "{} {:o}{link}",
                    e.path().unwrap().display(),
                    e.header().mode().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn only_what_stays_below_is_kept() {
        let archive = crafted(&[
            (".claude/", EntryType::Directory, ""),
            (".claude/CLAUDE.md", EntryType::Regular, "notes"),
            (".claude/latest", EntryType::Symlink, "projects/a.jsonl"),
            (".claude/home", EntryType::Symlink, "/root/.ssh"),
            (".claude/up", EntryType::Symlink, "../.bashrc"),
            (".claude/sneaky", EntryType::Symlink, "projects/../../x"),
            (".claude/shadow", EntryType::Link, "/etc/shadow"),
            (".claude/fifo", EntryType::Fifo, ""),
            ("/etc/cron.d/x", EntryType::Regular, "* * * * * root sh"),
            (".claude/../../x", EntryType::Regular, "x"),
        ]);
        let clean = clean_tar_gz(&archive).unwrap();
        assert_eq!(
            listing(&clean.tar_gz),
            [
                ".claude 755",
                ".claude/CLAUDE.md 755",
                ".claude/latest 777 -> projects/a.jsonl"
            ]
        );
        assert_eq!(
            clean.dropped,
            [
                ".claude/home: a link to /root/.ssh, which is not further down",
                ".claude/up: a link to ../.bashrc, which is not further down",
                ".claude/sneaky: a link to projects/../../x, which is not further down",
                ".claude/shadow: a hard link",
                ".claude/fifo: not a file, directory or link (Fifo)",
                "/etc/cron.d/x: leaves the directory it is unpacked in",
                ".claude/../../x: leaves the directory it is unpacked in",
            ]
        );
    }

    #[test]
    fn garbage_and_bombs_are_refused() {
        assert!(matches!(
            clean_tar_gz(b"not gzip at all"),
            Err(ArchiveError::Unreadable(_))
        ));
        let mut header = tar::Header::new_gnu();
        header.set_path("big").unwrap();
        header.set_size(MAX_UNPACKED_BYTES + 1);
        header.set_cksum();
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        std::io::Write::write_all(&mut gz, header.as_bytes()).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(matches!(
            clean_tar_gz(&bomb),
            Err(ArchiveError::TooLarge(_))
        ));
    }
}
