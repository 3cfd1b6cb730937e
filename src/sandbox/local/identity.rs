//! Who a local sandbox's commands run as. Inside, always `user` (uid 1000) in a user namespace of
//! its own. On the host: CodeCourier's own user when it is not root; when it is root, a uid of the
//! sandbox's own that owns nothing on this machine, dropped to just before bwrap starts (bwrap run
//! as root would map the sandbox's user to root, which still reads root's files).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::Owner;

/// The sandbox's user and group inside.
pub const INSIDE_ID: u32 = 1000;
/// Host ids of sandboxes run by root: far above any account a system hands out.
const HOST_ID_BASE: u32 = 2_000_000_000;
const HOST_ID_SPAN: u32 = 1 << 24;

/// The host side of the sandbox's user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostUser {
    /// CodeCourier is not root: commands run as its own user.
    Own,
    /// CodeCourier is root: commands run as this uid and gid, owner of the sandbox's directories.
    Dedicated(u32),
    /// CodeCourier is root and could not give the sandbox a user of its own (the reason): commands
    /// run as root with every capability dropped.
    Root(String),
}

impl HostUser {
    /// The user for a new sandbox: its own when CodeCourier runs as root.
    pub fn for_sandbox(sandbox_id: &str) -> Self {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return HostUser::Own;
        }
        // FNV-1a: stable across runs and versions, unlike the standard hasher.
        let hash = sandbox_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        HostUser::Dedicated(HOST_ID_BASE + (hash % u64::from(HOST_ID_SPAN)) as u32)
    }

    /// Who owns what the host creates in the sandbox (`None`: CodeCourier's own user).
    pub fn owner(&self) -> Option<Owner> {
        match self {
            HostUser::Own => None,
            HostUser::Dedicated(id) => Some(Owner { uid: *id, gid: *id }),
            HostUser::Root(_) => None,
        }
    }

    /// For the limits report.
    pub fn describe(&self) -> String {
        match self {
            HostUser::Own => {
                "user: CodeCourier's own, mapped to an unprivileged user inside".into()
            }
            HostUser::Dedicated(id) => {
                format!("user: uid {id} of its own (owns nothing else here), user inside")
            }
            HostUser::Root(why) => {
                format!("user: root with capabilities dropped, NOT a user of its own ({why})")
            }
        }
    }
}

/// Gives the sandbox's user the directory it runs in.
pub fn hand_over(path: &Path, user: &HostUser) -> io::Result<()> {
    if let Some(owner) = user.owner() {
        std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))?;
    }
    Ok(())
}

/// Gives a directory and everything below it to the sandbox's host user: links themselves, never
/// what they point at.
pub fn hand_over_tree(path: &Path, user: &HostUser) -> io::Result<()> {
    let Some(owner) = user.owner() else {
        return Ok(());
    };
    let give = |path: &Path| std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid));
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        give(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            } else {
                give(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// In the child between fork and exec: becomes the sandbox's host user. Only async-signal-safe
/// calls.
pub fn drop_to(id: u32) -> io::Result<()> {
    // SAFETY: plain syscalls; setgroups with an empty list reads nothing.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(id) != 0
            || libc::setuid(id) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A user namespace mapping the owner of `path` (its uid and gid) to `id`: the id-mapping of a
/// mount the sandbox's user must own (a repository it pushes into).
pub fn owner_mapping(path: &Path, id: u32) -> io::Result<OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    let (mut ready, mut done) = ([0i32; 2], [0i32; 2]);
    // SAFETY: pipe2 fills the arrays we own.
    unsafe {
        if libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::pipe2(done.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            let e = io::Error::last_os_error();
            libc::close(ready[0]);
            libc::close(ready[1]);
            return Err(e);
        }
    }
    // SAFETY: the child only makes async-signal-safe calls (unshare, write, read, _exit).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; the buffers live on this stack.
        unsafe {
            // Only this child's own ends stay open. It never execs, so O_CLOEXEC closes nothing
            // here: a copy of another thread's in-flight mapping pipes, kept by this child, would
            // keep that thread's child waiting for ever, and that child this one.
            close_all_but(ready[1], done[0]);
            let ok = [u8::from(libc::unshare(libc::CLONE_NEWUSER) == 0)];
            libc::write(ready[1], ok.as_ptr().cast(), 1);
            let mut byte = [0u8; 1];
            libc::read(done[0], byte.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    // SAFETY: closing the ends this process does not use.
    unsafe {
        libc::close(ready[1]);
        libc::close(done[0]);
    }
    let result = (|| {
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ok = [0u8; 1];
        // SAFETY: reading one byte into a buffer we own.
        let n = unsafe { libc::read(ready[0], ok.as_mut_ptr().cast(), 1) };
        if n != 1 || ok[0] != 1 {
            return Err(io::Error::other("cannot create a user namespace"));
        }
        std::fs::write(
            format!("/proc/{pid}/uid_map"),
            format!("{} {id} 1\n", meta.uid()),
        )?;
        std::fs::write(
            format!("/proc/{pid}/gid_map"),
            format!("{} {id} 1\n", meta.gid()),
        )?;
        Ok(OwnedFd::from(File::open(format!("/proc/{pid}/ns/user"))?))
    })();
    // SAFETY: a byte on `done` lets the child exit (closing our end would too, unless a copy of
    // it lingers somewhere); then it is reaped.
    unsafe {
        libc::write(done[1], [1u8].as_ptr().cast(), 1);
        libc::close(ready[0]);
        libc::close(done[1]);
        if pid > 0 {
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    result
}

/// In a forked child: closes every descriptor from 3 up but `a` and `b` (async-signal-safe:
/// `close_range`, or `close` one by one where the kernel lacks it). Unsafe: anywhere but a child
/// that is about to exit it would close descriptors others own.
unsafe fn close_all_but(a: i32, b: i32) {
    let (low, high) = (a.min(b) as u32, a.max(b) as u32);
    let ranges = [
        (3, low.wrapping_sub(1)),
        (low + 1, high - 1),
        (high + 1, u32::MAX),
    ];
    for (first, last) in ranges {
        if first > last {
            continue;
        }
        // SAFETY: close_range only closes descriptors; no memory is involved.
        if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } != 0 {
            for fd in first..=last.min(65_535) {
                // SAFETY: as above.
                unsafe { libc::close(fd as i32) };
            }
        }
    }
}

/// Whether a mount of `path` can be id-mapped through `userns` on this machine (kernel and file
/// system), tried on a detached copy that is thrown away.
pub fn can_idmap(path: &Path, userns: &OwnedFd) -> io::Result<()> {
    let tree = super::stage::open_tree(path)?;
    super::stage::set_idmap(tree.as_raw_fd(), userns.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mappings made at once on several threads (sandboxes created side by side, each with
    /// several owned mounts) all finish: no child keeps another's pipe open.
    #[test]
    fn mappings_made_at_once_on_several_threads_all_finish() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            // Only root may map another user's id; others get their own user and no mapping.
            assert!(owner_mapping(Path::new("/"), 1_000_000).is_err());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for thread in 0..8u32 {
            let (path, tx) = (dir.path().to_path_buf(), tx.clone());
            std::thread::spawn(move || {
                for i in 0..25u32 {
                    let mapped = owner_mapping(&path, HOST_ID_BASE + thread * 100 + i).is_ok();
                    tx.send(mapped).unwrap();
                }
            });
        }
        for n in 0..8 * 25 {
            let mapped = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("after {n} of 200 mappings the others hung"));
            assert!(mapped);
        }
    }

    #[test]
    fn a_root_sandbox_gets_a_stable_high_id_of_its_own() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert_eq!(HostUser::for_sandbox("local-a"), HostUser::Own);
            return;
        }
        let HostUser::Dedicated(a) = HostUser::for_sandbox("local-a") else {
            panic!("root gets a dedicated user");
        };
        assert_eq!(HostUser::for_sandbox("local-a"), HostUser::Dedicated(a));
        assert_ne!(HostUser::for_sandbox("local-b"), HostUser::Dedicated(a));
        assert!((HOST_ID_BASE..HOST_ID_BASE + HOST_ID_SPAN).contains(&a));
    }
}
