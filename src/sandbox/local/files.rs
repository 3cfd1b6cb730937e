//! Files the host writes into a sandbox. Everything below a sandbox's home and `/tmp` belongs to the
//! agent, links included, so a write opens each step beneath the sandbox's directory and refuses
//! every link: `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it, else
//! one component at a time with `O_NOFOLLOW`. A file is written only when it is a plain file with
//! no other name (a hard link would carry the write elsewhere).

use std::ffi::{CStr, CString};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Who owns what the host creates in a sandbox (its own user when CodeCourier runs as root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Writes `contents` to `relative` below `root`, creating missing parent directories, with `mode`.
pub fn write_beneath(
    root: &Path,
    relative: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> io::Result<()> {
    let names = names(relative)?;
    let Some((file, dirs)) = names.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name"));
    };
    let root = open_at(
        None,
        &cstring(root.as_os_str().as_bytes())?,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )?;
    let dir = open_dirs(root.as_fd(), dirs, owner)?;
    let fd = open_at(
        Some(dir.as_fd()),
        file,
        libc::O_WRONLY | libc::O_CREAT | libc::O_NONBLOCK,
        mode & 0o7777,
    )?;
    plain_file_of_its_own(&fd)?;
    let mut file = std::fs::File::from(fd);
    file.set_len(0)?;
    file.write_all(contents)?;
    // SAFETY: plain syscalls on a file descriptor we own.
    unsafe {
        check(libc::fchmod(file.as_raw_fd(), mode & 0o7777))?;
        if let Some(owner) = owner {
            check(libc::fchown(file.as_raw_fd(), owner.uid, owner.gid))?;
        }
    }
    Ok(())
}

/// `fd`'s status, if it is a plain file with no other name: never a device, a pipe, or a hard
/// link to a file outside the sandbox.
fn plain_file_of_its_own(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: fstat writes into the zeroed struct we own; fd is open.
    let stat = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        check(libc::fstat(fd.as_raw_fd(), &mut stat))?;
        stat
    };
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG || stat.st_nlink != 1 {
        return Err(io::Error::other(
            "it is not a plain file of its own (a device, a pipe or a hard link)",
        ));
    }
    Ok(stat)
}

/// Reads `relative` below `root`: a plain file of its own, reached without following a link, of at
/// most `max` bytes (a larger one is an error rather than a part).
pub fn read_beneath(root: &Path, relative: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let names = names(relative)?;
    let Some((file, dirs)) = names.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name"));
    };
    let mut dir = open_at(
        None,
        &cstring(root.as_os_str().as_bytes())?,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )?;
    for name in dirs {
        dir = open_at(Some(dir.as_fd()), name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    }
    // O_NONBLOCK: a pipe planted under the name must not hang the host.
    let fd = open_at(
        Some(dir.as_fd()),
        file,
        libc::O_RDONLY | libc::O_NONBLOCK,
        0,
    )?;
    let stat = plain_file_of_its_own(&fd)?;
    if stat.st_size as u64 > max {
        return Err(io::Error::other(format!(
            "it holds {} bytes, more than the {max} read from a sandbox",
            stat.st_size
        )));
    }
    let mut contents = Vec::new();
    // The file may grow while it is read: never more than the bound.
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut contents)?;
    if contents.len() as u64 > max {
        return Err(io::Error::other(format!(
            "it grew past the {max} bytes read from a sandbox"
        )));
    }
    Ok(contents)
}

/// The first link on the way to `relative` below `root`, for an error message that names it.
pub fn first_link(root: &Path, relative: &Path) -> Option<PathBuf> {
    let mut path = PathBuf::new();
    for part in relative.components() {
        path.push(part);
        match std::fs::symlink_metadata(root.join(&path)) {
            Ok(meta) if meta.file_type().is_symlink() => return Some(path),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// The path's components as C strings: plain names only (no `..`, no root).
fn names(relative: &Path) -> io::Result<Vec<CString>> {
    relative
        .components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| match c {
            Component::Normal(name) => cstring(name.as_bytes()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path must stay below the sandbox's directory",
            )),
        })
        .collect()
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the path"))
}

/// Opens the directory `dirs` below `root`, creating what is missing (owned by `owner`).
fn open_dirs(root: BorrowedFd, dirs: &[CString], owner: Option<Owner>) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    if dirs.is_empty() {
        return root.try_clone_to_owned();
    }
    // Most writes go into a directory that exists: one call resolves it, refusing links.
    let joined = cstring(
        &dirs
            .iter()
            .map(|d| d.as_bytes())
            .collect::<Vec<_>>()
            .join(&b'/'),
    )?;
    match open_beneath(root, &joined, flags) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) || unavailable(&e) => {}
        result => return result,
    }
    let mut dir = root.try_clone_to_owned()?;
    for name in dirs {
        dir = match open_at(Some(dir.as_fd()), name, flags, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // SAFETY: name is a valid C string; dir is an open directory.
                let made = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) };
                if made != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                    return Err(io::Error::last_os_error());
                }
                let created = open_at(Some(dir.as_fd()), name, flags, 0)?;
                if let (0, Some(owner)) = (made, owner) {
                    // SAFETY: an O_PATH descriptor we own, with AT_EMPTY_PATH and an empty path.
                    check(unsafe {
                        libc::fchownat(
                            created.as_raw_fd(),
                            c"".as_ptr(),
                            owner.uid,
                            owner.gid,
                            libc::AT_EMPTY_PATH,
                        )
                    })?;
                }
                created
            }
            result => result?,
        };
    }
    Ok(dir)
}

/// `openat2` beneath `dir`, refusing links; `ENOSYS` (or a filter's `EPERM`) when the kernel
/// cannot, and the caller walks instead.
fn open_beneath(dir: BorrowedFd, path: &CStr, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; all zeros is its empty value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the path is a valid C string and `how` a valid open_how of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn unavailable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM))
}

/// One `openat` that never follows a link at its last component (`dir` None: from the cwd, for
/// the sandbox's own directory, which the agent cannot reach).
fn open_at(dir: Option<BorrowedFd>, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let dir = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: name is a valid C string.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(result: i32) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    #[test]
    fn writes_create_parents_and_set_the_mode() {
        let root = tempfile::tempdir().unwrap();
        write_beneath(root.path(), Path::new("a/b/c.txt"), b"one", 0o600, None).unwrap();
        write_beneath(root.path(), Path::new("a/b/c.txt"), b"2", 0o640, None).unwrap();
        let path = root.path().join("a/b/c.txt");
        assert_eq!(std::fs::read(&path).unwrap(), b"2");
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn no_link_is_followed_anywhere_on_the_way() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("target.md");
        std::fs::write(&target, "host").unwrap();
        symlink(outside.path(), root.path().join("dir")).unwrap();
        symlink(&target, root.path().join("file.md")).unwrap();
        std::fs::create_dir(root.path().join("real")).unwrap();
        symlink("../dir", root.path().join("real/up")).unwrap();
        std::fs::hard_link(&target, root.path().join("hard.md")).unwrap();

        for path in [
            "dir/new.md",
            "dir/sub/new.md",
            "file.md",
            "real/up/new.md",
            "hard.md",
        ] {
            let err = write_beneath(root.path(), Path::new(path), b"x", 0o644, None).unwrap_err();
            assert!(!err.to_string().is_empty(), "{path}");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "host");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
        assert_eq!(
            first_link(root.path(), Path::new("real/up/new.md")),
            Some(PathBuf::from("real/up"))
        );
        assert!(write_beneath(root.path(), Path::new("../x"), b"x", 0o644, None).is_err());
    }

    #[test]
    fn reads_refuse_links_devices_hard_links_and_what_is_too_large() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("secret");
        std::fs::write(&target, "host secret").unwrap();
        std::fs::create_dir(root.path().join("dir")).unwrap();
        std::fs::write(root.path().join("dir/plain"), "mine").unwrap();
        symlink(&target, root.path().join("file")).unwrap();
        symlink(outside.path(), root.path().join("out")).unwrap();
        symlink("/dev/zero", root.path().join("zero")).unwrap();
        std::fs::hard_link(&target, root.path().join("hard")).unwrap();

        assert_eq!(
            read_beneath(root.path(), Path::new("dir/plain"), 4).unwrap(),
            b"mine"
        );
        assert!(read_beneath(root.path(), Path::new("dir/plain"), 3).is_err());
        for path in ["file", "out/secret", "zero", "hard", "../x", "dir"] {
            assert!(
                read_beneath(root.path(), Path::new(path), 1 << 20).is_err(),
                "{path}"
            );
        }
    }

    #[test]
    fn the_walk_alone_refuses_links_too() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), root.path().join("dir")).unwrap();
        let root_fd = open_at(
            None,
            &cstring(root.path().as_os_str().as_bytes()).unwrap(),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .unwrap();
        // What the fallback does when openat2 is missing: one step at a time.
        let mut dir = root_fd.try_clone().unwrap();
        let err = open_at(
            Some(dir.as_fd()),
            c"dir",
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        );
        assert!(err.is_err());
        dir = open_dirs(root_fd.as_fd(), &[c"made".to_owned()], None).unwrap();
        assert!(root.path().join("made").is_dir());
        drop(dir);
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(root.path().join("made").metadata().unwrap().uid(), me);
    }
}
