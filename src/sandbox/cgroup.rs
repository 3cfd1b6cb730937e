//! Memory, CPU and process limits through cgroups, v2 or v1, where this machine lets us create one.
//! What could not be set is reported in words, never claimed.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CPU_PERIOD_US: u64 = 100_000;

/// The cgroup directories a sandbox's processes join (one on v2; memory and cpu on v1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cgroup {
    pub dirs: Vec<PathBuf>,
    /// Where the OOM-kill counter lives (`memory.events` on v2, `memory.oom_control` on v1).
    pub oom_file: Option<PathBuf>,
    /// Where the count of refused forks lives (`pids.events`, v2 and v1).
    #[serde(default)]
    pub pids_events: Option<PathBuf>,
}

/// What `create` managed to enforce.
#[derive(Debug, Clone)]
pub struct Enforced {
    pub cgroup: Cgroup,
    pub memory: Result<(), String>,
    pub cpu_quota: Result<(), String>,
    pub pids: Result<(), String>,
}

fn is_cgroup2() -> bool {
    let Ok(path) = CString::new(ROOT) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; the path is a valid C string.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        libc::statfs(path.as_ptr(), &mut fs) == 0 && fs.f_type as i64 == CGROUP2_SUPER_MAGIC
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates `codecourier/<name>` with the limits. Never fails: each limit says whether it holds.
pub fn create(name: &str, memory_mb: u32, cpus: u32, pids_max: u32) -> Enforced {
    let memory_bytes = u64::from(memory_mb) * 1024 * 1024;
    let quota = u64::from(cpus) * CPU_PERIOD_US;
    if is_cgroup2() {
        let parent = Path::new(ROOT).join("codecourier");
        let setup = (|| {
            // Controllers must be enabled on every level above the cgroup that uses them.
            let _ = write(
                &Path::new(ROOT).join("cgroup.subtree_control"),
                "+memory +cpu +pids",
            );
            std::fs::create_dir_all(&parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            let _ = write(&parent.join("cgroup.subtree_control"), "+memory +cpu +pids");
            let dir = parent.join(name);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            Ok::<_, String>(dir)
        })();
        return match setup {
            Err(e) => Enforced {
                cgroup: Cgroup::default(),
                memory: Err(e.clone()),
                cpu_quota: Err(e.clone()),
                pids: Err(e),
            },
            Ok(dir) => {
                let memory = write(&dir.join("memory.max"), &memory_bytes.to_string()).map(|_| {
                    let _ = write(&dir.join("memory.swap.max"), "0");
                });
                let cpu_quota = write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"));
                let pids = write(&dir.join("pids.max"), &pids_max.to_string());
                Enforced {
                    cgroup: Cgroup {
                        oom_file: Some(dir.join("memory.events")),
                        pids_events: pids.is_ok().then(|| dir.join("pids.events")),
                        dirs: vec![dir],
                    },
                    memory,
                    cpu_quota,
                    pids,
                }
            }
        };
    }

    // v1: one hierarchy per controller, when the machine mounts them.
    let mut cgroup = Cgroup::default();
    let memory_root = Path::new(ROOT).join("memory");
    let memory = if memory_root.join("memory.limit_in_bytes").exists() {
        let dir = memory_root.join("codecourier").join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
            .and_then(|_| {
                write(
                    &dir.join("memory.limit_in_bytes"),
                    &memory_bytes.to_string(),
                )
            })
            .map(|_| {
                // Without swap accounting this file is absent; the memory limit still holds.
                let _ = write(
                    &dir.join("memory.memsw.limit_in_bytes"),
                    &memory_bytes.to_string(),
                );
                cgroup.oom_file = Some(dir.join("memory.oom_control"));
                cgroup.dirs.push(dir);
            })
    } else {
        Err("this machine has no cgroup memory controller that CodeCourier can use".into())
    };
    let cpu_root = Path::new(ROOT).join("cpu");
    let cpu_quota = if cpu_root.join("cpu.cfs_quota_us").exists() {
        let dir = cpu_root.join("codecourier").join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
            .and_then(|_| write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string()))
            .and_then(|_| write(&dir.join("cpu.cfs_quota_us"), &quota.to_string()))
            .map(|_| cgroup.dirs.push(dir))
    } else {
        Err("this machine has no cgroup cpu controller that CodeCourier can use".into())
    };
    let pids_root = Path::new(ROOT).join("pids");
    let pids = if pids_root.join("cgroup.procs").exists() {
        let dir = pids_root.join("codecourier").join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
            .and_then(|_| write(&dir.join("pids.max"), &pids_max.to_string()))
            .map(|_| {
                cgroup.pids_events = Some(dir.join("pids.events"));
                cgroup.dirs.push(dir);
            })
    } else {
        Err("this machine has no cgroup pids controller that CodeCourier can use".into())
    };
    Enforced {
        cgroup,
        memory,
        cpu_quota,
        pids,
    }
}

impl Cgroup {
    /// The `cgroup.procs` files a new process writes its pid into, as C strings for `pre_exec`.
    pub fn procs_files(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .filter_map(|d| {
                CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes()).ok()
            })
            .collect()
    }

    /// How many times the kernel killed a process here for exceeding the memory limit.
    pub fn oom_kills(&self) -> u64 {
        let Some(file) = &self.oom_file else { return 0 };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// How many forks the process limit refused.
    pub fn refused_forks(&self) -> u64 {
        let Some(file) = &self.pids_events else {
            return 0;
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("max ").and_then(|n| n.trim().parse().ok()))
            })
            .unwrap_or(0)
    }

    /// Kills every process in the cgroup, repeating until none is left (a process may fork meanwhile).
    pub fn kill_all(&self) {
        for dir in &self.dirs {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        }
        for _ in 0..50 {
            let mut any = false;
            for dir in &self.dirs {
                for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                {
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        any = true;
                        // SAFETY: sending a signal has no memory effects on this process.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            if !any {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn remove(&self) {
        for dir in &self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// Runs in the child between fork and exec: joins the cgroups and pins the CPUs. Only
/// async-signal-safe calls (open, write, close, sched_setaffinity).
pub fn enter_in_child(procs_files: &[CString], cpus: usize) -> std::io::Result<()> {
    // The pid as decimal text, without allocating.
    // SAFETY: getpid has no preconditions.
    let mut pid = unsafe { libc::getpid() } as u32;
    let mut digits = [0u8; 12];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    for file in procs_files {
        // SAFETY: file is a valid C string; the buffer outlives the write.
        unsafe {
            let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, digits[start..].as_ptr().cast(), digits.len() - start);
            libc::close(fd);
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    if cpus > 0 {
        // SAFETY: the set is a zeroed cpu_set_t we own; CPU_SET stays within its bounds.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for cpu in 0..cpus.min(libc::CPU_SETSIZE as usize) {
                libc::CPU_SET(cpu, &mut set);
            }
            // Affinity is best effort: a machine with fewer CPUs than asked keeps what it has.
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    Ok(())
}
