//! Resource limits of a sandbox: CPU quota and weight, memory (hard, soft, swap) and pids, written
//! to cgroup v2 controllers where the unified hierarchy has them, and to the v1 controllers where
//! the host is hybrid (these machines: cgroup2 without controllers, v1 `cpu`, `memory`, `pids`).
//!
//! On a hybrid host a sandbox is one cgroup per v1 controller, `<mount>/sandwatch/<id>`, beside
//! its unified-hierarchy cgroup; the process joins all of them between fork and exec. Only
//! cgroups created here are written to or removed.

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    cgroup::{CgroupError, create_under_parent, io_err, oom_kills, remove_cgroup},
    policy::SandboxPolicy,
};

/// The numbers a sandbox's cgroups get, derived from its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceLimits {
    /// CFS quota per period, µs (None: no CPU cap).
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: u64,
    /// v1 `cpu.shares` scale (1024 = normal).
    pub cpu_shares: Option<u64>,
    pub memory_max: Option<u64>,
    pub memory_low: Option<u64>,
    /// Swap allowed on top of `memory_max`.
    pub swap_max: u64,
    pub pids_max: Option<u64>,
}

impl ResourceLimits {
    pub fn from_policy(p: &SandboxPolicy) -> Self {
        let period = p.cpu.period.unwrap_or(100_000);
        let quota = p.cpu.quota.or_else(|| {
            p.cpu
                .limit
                .map(|cores| (cores * period as f64).round() as u64)
        });
        Self {
            cpu_quota_us: quota,
            cpu_period_us: period,
            cpu_shares: p.cpu.shares,
            memory_max: p.memory.limit.map(|b| b.0),
            memory_low: p.memory.reservation.map(|b| b.0),
            swap_max: p.memory.swap.0,
            pids_max: p.pids.max,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    Cpu,
    Memory,
    Pids,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
        }
    }
}

/// The v1 cgroups of one sandbox (empty on a pure cgroup v2 host).
#[derive(Debug)]
pub struct V1Cgroups {
    dirs: Vec<(Controller, PathBuf, File)>,
}

fn write(path: &Path, value: impl ToString) -> Result<(), CgroupError> {
    fs::write(path, value.to_string()).map_err(io_err("write", path))
}

/// Where each v1 controller is mounted (a `cgroup` mount whose options name it).
fn v1_mounts() -> Vec<(Controller, PathBuf)> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let opts = post.nth(1).unwrap_or("");
        let Some(mountpoint) = pre.split_whitespace().nth(4) else {
            continue;
        };
        for c in [Controller::Cpu, Controller::Memory, Controller::Pids] {
            if opts.split(',').any(|o| o == c.name()) && !out.iter().any(|(k, _)| *k == c) {
                out.push((c, PathBuf::from(mountpoint)));
            }
        }
    }
    out
}

/// Mount points of the v1 controllers sandwatch uses (empty on a pure cgroup v2 host).
pub(crate) fn v1_mount_points() -> Vec<PathBuf> {
    v1_mounts().into_iter().map(|(_, p)| p).collect()
}

/// Applies `limits` to a sandbox named `name` whose unified cgroup is `unified`: through v2
/// controllers the unified hierarchy delegates, through v1 controllers otherwise.
pub fn apply(
    unified: &Path,
    name: &str,
    limits: &ResourceLimits,
) -> Result<V1Cgroups, CgroupError> {
    let available = fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
    let v2 = |c: Controller| available.split_whitespace().any(|x| x == c.name());
    let mut v1 = V1Cgroups { dirs: Vec::new() };
    let mounts = v1_mounts();
    for c in [Controller::Cpu, Controller::Memory, Controller::Pids] {
        let wanted = match c {
            Controller::Cpu => limits.cpu_quota_us.is_some() || limits.cpu_shares.is_some(),
            Controller::Memory => limits.memory_max.is_some() || limits.memory_low.is_some(),
            Controller::Pids => limits.pids_max.is_some(),
        };
        if !wanted {
            continue;
        }
        if v2(c) {
            apply_v2(unified, c, limits)?;
        } else if let Some((_, mount)) = mounts.iter().find(|(k, _)| *k == c) {
            let dir = create_under_parent(mount, name)?;
            // Recorded before writing, so that a failed write still removes the directory.
            let procs = dir.join("cgroup.procs");
            let file = OpenOptions::new()
                .write(true)
                .open(&procs)
                .map_err(io_err("open", &procs))?;
            v1.dirs.push((c, dir.clone(), file));
            apply_v1(&dir, c, limits)?;
        } else {
            return Err(CgroupError::Io {
                action: "find a controller for the limits of",
                path: unified.to_owned(),
                source: io::Error::other(format!(
                    "neither cgroup v2 nor v1 offers the {} controller here",
                    c.name()
                )),
            });
        }
    }
    Ok(v1)
}

fn apply_v2(dir: &Path, c: Controller, l: &ResourceLimits) -> Result<(), CgroupError> {
    match c {
        Controller::Cpu => {
            if let Some(q) = l.cpu_quota_us {
                write(&dir.join("cpu.max"), format!("{q} {}", l.cpu_period_us))?;
            }
            if let Some(s) = l.cpu_shares {
                // v1 shares 2..262144 onto v2 weight 1..10000 (the kernel's own conversion).
                write(
                    &dir.join("cpu.weight"),
                    1 + (s.clamp(2, 262_144) - 2) * 9999 / 262_142,
                )?;
            }
        }
        Controller::Memory => {
            if let Some(m) = l.memory_max {
                write(&dir.join("memory.max"), m)?;
                write(&dir.join("memory.swap.max"), l.swap_max)?;
            }
            if let Some(low) = l.memory_low {
                write(&dir.join("memory.low"), low)?;
            }
        }
        Controller::Pids => {
            if let Some(p) = l.pids_max {
                write(&dir.join("pids.max"), p)?;
            }
        }
    }
    Ok(())
}

fn apply_v1(dir: &Path, c: Controller, l: &ResourceLimits) -> Result<(), CgroupError> {
    match c {
        Controller::Cpu => {
            if let Some(q) = l.cpu_quota_us {
                write(&dir.join("cpu.cfs_period_us"), l.cpu_period_us)?;
                write(&dir.join("cpu.cfs_quota_us"), q)?;
            }
            if let Some(s) = l.cpu_shares {
                write(&dir.join("cpu.shares"), s)?;
            }
        }
        Controller::Memory => {
            if let Some(m) = l.memory_max {
                write(&dir.join("memory.limit_in_bytes"), m)?;
                // memory+swap must be at least the memory limit; without swap accounting the
                // file is absent and swappiness 0 is the closest to "no swap".
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, m + l.swap_max)?;
                } else if l.swap_max == 0 {
                    write(&dir.join("memory.swappiness"), 0)?;
                }
            }
            if let Some(low) = l.memory_low {
                write(&dir.join("memory.soft_limit_in_bytes"), low)?;
            }
        }
        Controller::Pids => {
            if let Some(p) = l.pids_max {
                write(&dir.join("pids.max"), p)?;
            }
        }
    }
    Ok(())
}

impl V1Cgroups {
    /// Open `cgroup.procs` of each v1 cgroup, for a child to write "0" to between fork and exec.
    pub fn procs_fds(&self) -> Vec<RawFd> {
        self.dirs.iter().map(|(_, _, f)| f.as_raw_fd()).collect()
    }

    /// The memory controller's cgroup, if this sandbox has one.
    pub fn memory_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _, _)| *c == Controller::Memory)
            .map(|(_, d, _)| d.as_path())
    }

    /// How many processes the memory controller has OOM-killed in this sandbox.
    pub fn oom_kill_count(&self) -> u64 {
        self.memory_dir()
            .map_or(0, |d| oom_kills(&d.join("memory.oom_control")))
    }

    /// Removes the v1 cgroups once their processes are gone (the unified cgroup's `cgroup.kill`
    /// has already killed them: the same processes).
    /// Removes the cgroups that are already empty; true when none is left.
    pub fn try_remove(&mut self) -> Result<bool, CgroupError> {
        let mut result = Ok(());
        self.dirs.retain(|(_, dir, _)| match fs::remove_dir(dir) {
            Ok(()) => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => true,
            Err(e) => {
                result = Err(io_err("remove cgroup", dir)(e));
                true
            }
        });
        result.map(|()| self.dirs.is_empty())
    }

    pub fn remove(&mut self) -> Result<(), CgroupError> {
        let mut first_err = None;
        for (_, dir, _) in self.dirs.drain(..) {
            if let Err(e) = remove_cgroup(&dir, Duration::from_secs(5)) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for V1Cgroups {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!("leaving a v1 cgroup behind: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_policy() {
        let strict = SandboxPolicy::preset("strict").unwrap();
        let l = ResourceLimits::from_policy(&strict);
        assert_eq!(
            (l.cpu_quota_us, l.cpu_period_us),
            (Some(100_000), 100_000),
            "1 core"
        );
        assert_eq!(l.memory_max, Some(512 << 20));
        assert_eq!((l.swap_max, l.pids_max), (0, Some(128)));
        let half = SandboxPolicy::from_yaml("p", "cpu: { limit: 0.5, period: 50000 }").unwrap();
        assert_eq!(
            ResourceLimits::from_policy(&half).cpu_quota_us,
            Some(25_000)
        );
        let none = SandboxPolicy::preset("permissive").unwrap();
        assert_eq!(ResourceLimits::from_policy(&none).cpu_quota_us, None);
    }
}
