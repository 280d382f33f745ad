//! The unified (v2) cgroup hierarchy: finding it, naming cgroups in it, and the job cgroups
//! sandwatch creates there.
//!
//! Hosts differ: pure cgroup2 mounts it at `/sys/fs/cgroup`; hybrid hosts (these machines) mount
//! it at `/sys/fs/cgroup/unified` with no controllers. Either way the unified hierarchy gives the
//! ids `bpf_get_current_cgroup_id()` returns, `cgroup.procs`, `cgroup.events` and `cgroup.kill`.
//! We never touch a cgroup we did not create, and never mount or unmount a hierarchy.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::{fd::AsRawFd, unix::fs::MetadataExt as _},
    path::{Component, Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup2 (unified) hierarchy is mounted (looked in /proc/self/mountinfo); sandwatch needs one to attribute events to jobs"
    )]
    NoUnifiedHierarchy,
    #[error(
        "cgroup {path} does not exist (give a path under {root}, or one relative to it such as /system.slice/foo.service)"
    )]
    NotFound { path: PathBuf, root: PathBuf },
    #[error("{path} is not a cgroup in the unified hierarchy mounted at {root}")]
    NotACgroup { path: PathBuf, root: PathBuf },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cgroup {path} still has processes after {waited:?}; it was left in place")]
    Busy { path: PathBuf, waited: Duration },
}

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Where the unified hierarchy is mounted.
#[derive(Clone, Debug)]
pub struct CgroupRoot {
    mount: PathBuf,
}

/// A cgroup in the unified hierarchy, by path, id and depth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupRef {
    /// Absolute path in the mounted hierarchy.
    pub path: PathBuf,
    /// The cgroup's id: the inode of its directory, as the kernel's BPF helpers report it.
    pub id: u64,
    /// Depth below the root (the root is level 0).
    pub level: u32,
    /// The path relative to the hierarchy's root, starting with `/`.
    pub name: String,
}

impl CgroupRoot {
    /// Finds the cgroup2 mount of this mount namespace.
    pub fn discover() -> Result<Self, CgroupError> {
        let info = fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_err("read", Path::new("/proc/self/mountinfo")))?;
        // mountinfo: "id parent major:minor root mountpoint options ... - fstype source superopts"
        let mut mounts: Vec<PathBuf> = info
            .lines()
            .filter_map(|line| {
                let (pre, post) = line.split_once(" - ")?;
                let fstype = post.split_whitespace().next()?;
                let fields: Vec<&str> = pre.split_whitespace().collect();
                let mountpoint = fields.get(4)?;
                (fstype == "cgroup2" && fields.get(3) == Some(&"/"))
                    .then(|| PathBuf::from(unescape_mount_path(mountpoint)))
            })
            .collect();
        // Prefer the conventional places when a hierarchy is mounted more than once.
        mounts.sort_by_key(|p| match p.to_str() {
            Some("/sys/fs/cgroup") => 0,
            Some("/sys/fs/cgroup/unified") => 1,
            _ => 2,
        });
        mounts
            .into_iter()
            .next()
            .map(|mount| Self { mount })
            .ok_or(CgroupError::NoUnifiedHierarchy)
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The cgroup that holds every sandbox's (`<mount>/sandwatch`), made if missing: where
    /// cgroup programs that concern all sandboxes attach.
    pub fn sandbox_parent(&self) -> Result<CgroupRef, CgroupError> {
        let path = self.mount.join(PARENT);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create cgroup", &path)(e)),
        }
        self.resolve(&path)
    }

    /// Names an existing cgroup: an absolute path under the mount, or a path relative to the
    /// hierarchy's root (`/system.slice/ssh.service`).
    pub fn resolve(&self, path: &Path) -> Result<CgroupRef, CgroupError> {
        let full = if path.starts_with(&self.mount) {
            path.to_owned()
        } else {
            self.mount.join(path.strip_prefix("/").unwrap_or(path))
        };
        let not_found = || CgroupError::NotFound {
            path: path.to_owned(),
            root: self.mount.clone(),
        };
        if full.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(not_found());
        }
        let meta = match fs::metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(io_err("stat", &full)(e)),
        };
        if !meta.is_dir() || !full.join("cgroup.procs").exists() {
            return Err(CgroupError::NotACgroup {
                path: path.to_owned(),
                root: self.mount.clone(),
            });
        }
        let rel = full.strip_prefix(&self.mount).unwrap_or(Path::new(""));
        let level = rel.components().count() as u32;
        Ok(CgroupRef {
            id: meta.ino(),
            level,
            name: format!("/{}", rel.display()),
            path: full,
        })
    }
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mountinfo.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup sandwatch created for one job, under `<root>/sandwatch/`. Removed on [`remove`] or
/// drop, after killing whatever is left in it.
///
/// [`remove`]: JobCgroup::remove
#[derive(Debug)]
pub struct JobCgroup {
    cgroup: CgroupRef,
    procs: File,
    /// The v1 controller cgroups that carry the limits on a hybrid host.
    v1: Option<crate::limits::V1Cgroups>,
    removed: bool,
}

/// The directory under the hierarchy's root that holds every cgroup sandwatch creates.
pub const PARENT: &str = "sandwatch";

impl JobCgroup {
    pub fn create(root: &CgroupRoot, name: &str) -> Result<Self, CgroupError> {
        let path = create_under_parent(&root.mount, name)?;
        let cgroup = root.resolve(&path)?;
        let procs_path = path.join("cgroup.procs");
        let procs = OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .map_err(io_err("open", &procs_path))?;
        Ok(Self {
            cgroup,
            procs,
            v1: None,
            removed: false,
        })
    }

    /// A job cgroup with resource limits (see [`crate::limits`]). On failure nothing is left.
    pub fn create_with_limits(
        root: &CgroupRoot,
        name: &str,
        limits: &crate::limits::ResourceLimits,
    ) -> Result<Self, CgroupError> {
        let mut job = Self::create(root, name)?;
        let _span = tracing::trace_span!("cgroup.limits").entered();
        job.v1 = Some(crate::limits::apply(&job.cgroup.path, name, limits)?);
        Ok(job)
    }

    /// Every `cgroup.procs` a child must write "0" to between fork and exec: the unified
    /// cgroup's, and on a hybrid host those of the v1 controllers that carry the limits.
    pub fn procs_fds(&self) -> Vec<std::os::fd::RawFd> {
        let mut fds = vec![self.procs.as_raw_fd()];
        if let Some(v1) = &self.v1 {
            fds.extend(v1.procs_fds());
        }
        fds
    }

    /// Whether the memory limit has OOM-killed a process of the job.
    pub fn oom_killed(&self) -> bool {
        self.oom_kill_count() > 0
    }

    /// How many processes of the job the memory limit has killed so far.
    pub fn oom_kill_count(&self) -> u64 {
        oom_kills(&self.cgroup.path.join("memory.events"))
            + self.v1.as_ref().map_or(0, |v1| v1.oom_kill_count())
    }

    pub fn cgroup(&self) -> &CgroupRef {
        &self.cgroup
    }

    /// Moves a running process into the cgroup.
    pub fn add(&self, pid: u32) -> Result<(), CgroupError> {
        (&self.procs)
            .write_all(pid.to_string().as_bytes())
            .map_err(io_err("add a process to", &self.cgroup.path))
    }

    /// Moves a process into every cgroup of the job (unified and v1), as the runner does for a
    /// sandbox's init before it starts.
    pub fn add_everywhere(&self, pid: u32) -> Result<(), CgroupError> {
        let text = pid.to_string();
        for fd in self.procs_fds() {
            // SAFETY: writing to a cgroup.procs descriptor this job owns.
            if unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) } < 0 {
                return Err(io_err("add a process to", &self.cgroup.path)(
                    io::Error::last_os_error(),
                ));
            }
        }
        Ok(())
    }

    /// The v1 memory cgroup of a hybrid host, where memory is accounted.
    pub fn v1_memory_dir(&self) -> Option<&Path> {
        self.v1.as_ref().and_then(|v1| v1.memory_dir())
    }

    /// Stops (`true`) or resumes every process of the job (`cgroup.freeze`), and waits until
    /// the kernel reports the cgroup frozen or thawed.
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        freeze_cgroup(&self.cgroup.path, frozen)
    }

    /// Whether any process is still in the cgroup (or below it).
    pub fn populated(&self) -> Result<bool, CgroupError> {
        let events = self.cgroup.path.join("cgroup.events");
        let text = fs::read_to_string(&events).map_err(io_err("read", &events))?;
        Ok(text.lines().any(|l| l.trim() == "populated 1"))
    }

    /// Number of processes in the cgroup itself.
    pub fn process_count(&self) -> Result<usize, CgroupError> {
        let path = self.cgroup.path.join("cgroup.procs");
        Ok(fs::read_to_string(&path)
            .map_err(io_err("read", &path))?
            .lines()
            .count())
    }

    /// Kills every process in the cgroup at once (`cgroup.kill`).
    pub fn kill(&self) -> Result<(), CgroupError> {
        kill_cgroup(&self.cgroup.path)
    }

    /// Removes the job's cgroups if they are already empty, without waiting: true when all
    /// are gone. What it could not remove is left for [`remove`](Self::remove) or drop.
    pub fn try_remove(&mut self) -> Result<bool, CgroupError> {
        if !self.removed {
            match fs::remove_dir(&self.cgroup.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(false),
                Err(e) => return Err(io_err("remove cgroup", &self.cgroup.path)(e)),
            }
            self.removed = true;
        }
        match &mut self.v1 {
            Some(v1) => v1.try_remove(),
            None => Ok(true),
        }
    }

    /// Kills what is left, waits for the cgroup to empty and removes it.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        if !self.removed {
            self.removed = true;
            tracing::trace_span!("cgroup.rmdir")
                .in_scope(|| remove_cgroup(&self.cgroup.path, Duration::from_secs(5)))?;
        }
        let _span = tracing::trace_span!("cgroup.rmdir_v1").entered();
        match self.v1.take() {
            Some(mut v1) => v1.remove(),
            None => Ok(()),
        }
    }
}

impl Drop for JobCgroup {
    fn drop(&mut self) {
        if !self.removed
            && let Err(e) = remove_cgroup(&self.cgroup.path, Duration::from_secs(5))
        {
            tracing::warn!("leaving job cgroup behind: {e}");
        }
    }
}

/// Creates `<mount>/sandwatch/<name>` (and `<mount>/sandwatch` if needed): a cgroup of ours in
/// any hierarchy, unified or v1.
pub(crate) fn create_under_parent(mount: &Path, name: &str) -> Result<PathBuf, CgroupError> {
    let parent = mount.join(PARENT);
    match fs::create_dir(&parent) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("create cgroup", &parent)(e)),
    }
    let path = parent.join(name);
    fs::create_dir(&path).map_err(io_err("create cgroup", &path))?;
    Ok(path)
}

/// The `oom_kill` count of a `memory.events` (v2) or `memory.oom_control` (v1) file; 0 when
/// there is none.
pub(crate) fn oom_kills(file: &Path) -> u64 {
    fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Kills every process in the unified-hierarchy cgroup `dir` at once (`cgroup.kill`).
pub(crate) fn kill_cgroup(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.kill");
    fs::write(&path, "1").map_err(io_err("write", &path))
}

/// Stops (`true`) or resumes every process of the unified-hierarchy cgroup `dir`
/// (`cgroup.freeze`), and waits until the kernel reports it frozen or thawed.
pub(crate) fn freeze_cgroup(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.freeze");
    fs::write(&path, if frozen { "1" } else { "0" }).map_err(io_err("write", &path))?;
    let events = dir.join("cgroup.events");
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(&events).map_err(io_err("read", &events))?;
        if text.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(5) {
            return Err(io_err("wait for freezing to settle in", dir)(
                io::Error::from(io::ErrorKind::TimedOut),
            ));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Removes a cgroup of ours, killing what is left in it (`cgroup.kill`, where the hierarchy has
/// it) and waiting up to `patience` for it to empty.
pub(crate) fn remove_cgroup(path: &Path, patience: Duration) -> Result<(), CgroupError> {
    let start = Instant::now();
    let mut killed = false;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if !killed {
                    let _ = kill_cgroup(path);
                    killed = true;
                }
                if start.elapsed() > patience {
                    return Err(CgroupError::Busy {
                        path: path.to_owned(),
                        waited: patience,
                    });
                }
                // Exiting processes leave within a millisecond or two; back off after that.
                let waited = start.elapsed();
                thread::sleep(if waited < Duration::from_millis(20) {
                    Duration::from_micros(200)
                } else {
                    Duration::from_millis(10)
                });
            }
            Err(e) => return Err(io_err("remove cgroup", path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mount_path(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount_path("/sys/fs/cgroup"), "/sys/fs/cgroup");
    }
}
