//! The sources of a root-run sandbox's mounts, staged where its user can reach them. A sandbox's
//! host user (see `identity`) cannot walk into a data directory or repository below a private
//! parent, or tools under `/root`, and bwrap resolves every source as that user. So the child
//! process, still root, makes a mount namespace of its own (changes there never reach the host),
//! mounts a tmpfs on a directory everyone can walk into, binds each source below it, and only
//! then drops to the sandbox's user and starts bwrap, which takes the sources from there. Mounts
//! the sandbox's user must own (a repository it pushes into) are id-mapped: their owner appears
//! as that user, and what it writes is stored as the owner's.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// Where the staged sources are mounted, in the child's own mount namespace: the first of these
/// that exists (its host contents are hidden only there, and bwrap mounts none of them whole).
const STAGE_DIRS: [&str; 4] = ["/mnt", "/media", "/srv", "/opt"];

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Most sources one sandbox stages (its directories, tools, repositories, files of /etc).
const MAX_SOURCES: usize = 64;

/// One source, and where it appears in the stage.
struct Entry {
    source: CString,
    target: CString,
    target_path: String,
    dir: bool,
    idmap: Option<OwnedFd>,
}

pub(super) struct Stage {
    root: CString,
    entries: Vec<Entry>,
}

impl Stage {
    /// `idmap` gives the user namespace to map a source's owner through.
    pub fn new(sources: Vec<(PathBuf, Option<OwnedFd>)>) -> io::Result<Self> {
        let root = STAGE_DIRS
            .iter()
            .find(|d| Path::new(d).is_dir())
            .ok_or_else(|| {
                io::Error::other(format!(
                    "none of {} exists to stage a sandbox's mounts in",
                    STAGE_DIRS.join(", ")
                ))
            })?;
        if sources.len() > MAX_SOURCES {
            return Err(io::Error::other(format!(
                "a sandbox takes at most {MAX_SOURCES} mounts"
            )));
        }
        let mut entries = Vec::new();
        for (index, (path, idmap)) in sources.into_iter().enumerate() {
            let target_path = format!("{root}/{index}");
            entries.push(Entry {
                source: CString::new(path.as_os_str().as_bytes())
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?,
                target: cstring(&target_path)?,
                target_path,
                dir: path.is_dir(),
                idmap,
            });
        }
        Ok(Self {
            root: cstring(root)?,
            entries,
        })
    }

    /// Where bwrap finds source `index`.
    pub fn path(&self, index: usize) -> &str {
        &self.entries[index].target_path
    }

    /// In the child between fork and exec, as root: the private mount namespace with every source
    /// in place. Copies of the sources are taken first (a source may lie where the stage goes),
    /// then the stage is mounted and they are attached below it. Only async-signal-safe calls.
    pub fn enter(&self) -> io::Result<()> {
        let mut trees = [-1 as RawFd; MAX_SOURCES];
        // SAFETY: plain syscalls on C strings and descriptors this struct owns.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            for (entry, tree) in self.entries.iter().zip(trees.iter_mut()) {
                *tree = clone_tree(libc::AT_FDCWD, &entry.source, 0)?;
                if let Some(userns) = &entry.idmap {
                    set_idmap(*tree, userns.as_raw_fd())?;
                }
            }
            check(libc::mount(
                c"tmpfs".as_ptr(),
                self.root.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=0755".as_ptr().cast(),
            ))?;
            for (entry, tree) in self.entries.iter().zip(trees) {
                if entry.dir {
                    check(libc::mkdir(entry.target.as_ptr(), 0o755))?;
                } else {
                    let fd = libc::open(
                        entry.target.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    );
                    check(fd)?;
                    libc::close(fd);
                }
                move_tree(tree, &entry.target)?;
                libc::close(tree);
            }
        }
        Ok(())
    }
}

fn cstring(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn check(result: i32) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A detached copy of the mount at `path` (closed when dropped), for trying an id-mapping.
pub(super) fn open_tree(path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    let tree = clone_tree(libc::AT_FDCWD, &path, 0)?;
    // SAFETY: clone_tree just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(tree) })
}

/// A detached recursive copy of the mount tree at `path` (relative to `dir`).
fn clone_tree(dir: RawFd, path: &CString, flags: libc::c_uint) -> io::Result<RawFd> {
    // SAFETY: a valid C string; the flags are open_tree's.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dir,
            path.as_ptr(),
            flags
                | OPEN_TREE_CLONE
                | libc::O_CLOEXEC as libc::c_uint
                | libc::AT_RECURSIVE as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd as RawFd)
}

/// Id-maps a detached mount through `userns`.
pub(super) fn set_idmap(tree: RawFd, userns: RawFd) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    // SAFETY: attr is a valid mount_attr of the size given; the path is empty with AT_EMPTY_PATH.
    let result = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn move_tree(tree: RawFd, target: &CString) -> io::Result<()> {
    // SAFETY: the tree is a detached mount we hold; target is a valid C string.
    let result = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
