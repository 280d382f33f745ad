//! Per-sandbox metrics: one sample of a running sandbox's CPU, memory, disk, network, process and
//! open-file counts, read from its cgroups, its workspace and `/proc`.
//!
//! A sampler is made once per sandbox and asked every second or so; it keeps the previous CPU
//! reading (to turn a running total into a percentage) and its scratch buffers, so a sample makes
//! no allocation per line, file or process once warm. The pseudo-files it reads at every sample
//! stay open between samples, since opening one costs several times reading it; they do not keep
//! a cgroup from being removed, but the open `net/dev` keeps the sandbox's network namespace alive
//! until the sampler is dropped. A sample of one process with a small workspace costs ~40 µs here
//! (half of it `net/dev` and the workspace walk). Sampling is blocking file-system work: call it
//! from a blocking thread.
//!
//! Where each number comes from:
//! - CPU: `usage_usec` of the unified cgroup's `cpu.stat` (present in every cgroup2 cgroup, with or
//!   without the cpu controller), as a share of the wall time since the previous sample: 100 = one
//!   core busy all along. The first sample covers the time since [`MetricsSampler::new`].
//! - Memory: the v1 memory cgroup's `memory.usage_in_bytes` / `memory.limit_in_bytes` when there
//!   is one (hybrid hosts), else the unified cgroup's `memory.current` / `memory.max` when the
//!   memory controller is enabled there. With neither (a hybrid host where the sandbox got no v1
//!   memory cgroup because its policy sets no memory limit), usage is the sum of its processes'
//!   resident sets (`/proc/<pid>/statm`: no page cache, shared pages once per process) and the
//!   limit is None.
//! - Disk: the blocks allocated to the workspace tree (`st_blocks * 512`, what `du` counts): not
//!   following symlinks, not entering other mounts, each hard-linked file once, and at most
//!   [`MAX_WALK_ENTRIES`] entries and [`MAX_WALK_DEPTH`] levels (beyond that the sum is partial and
//!   a warning is logged once per sampler).
//! - Network: every interface of the sandbox's network namespace summed from
//!   `/proc/<net_pid>/net/dev`, loopback included (so traffic a sandbox sends itself counts both
//!   ways). Counters run from the namespace's creation. None for a sandbox on the host network.
//! - Processes: the pids in `cgroup.procs` of the unified cgroup and every cgroup below it.
//! - Open files: the sum over those processes of their `/proc/<pid>/fd` entries. Processes that
//!   exit during the sample are skipped.

use std::{
    collections::HashSet,
    ffi::{CStr, OsStr},
    fs::File,
    io::{self, Write as _},
    mem::MaybeUninit,
    os::{
        fd::{AsFd as _, AsRawFd as _, BorrowedFd, RawFd},
        unix::{ffi::OsStrExt as _, fs::FileExt as _},
    },
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use nix::{
    dir::{Dir, OwningIter, Type},
    errno::Errno,
    fcntl::OFlag,
    sys::stat::Mode,
};

/// Entries of the workspace walked per sample at most.
pub const MAX_WALK_ENTRIES: usize = 1 << 20;
/// Directory levels of the workspace walked at most: the walk holds one open directory per level.
pub const MAX_WALK_DEPTH: usize = 128;

/// v1 reports "no limit" as the page counter's maximum (`0x7FFFFFFFFFFFF000` with 4 KiB pages);
/// anything this large is no limit on any machine.
const V1_UNLIMITED: u64 = 1 << 62;

/// Where a sandbox's numbers live.
#[derive(Clone, Debug)]
pub struct MetricsSource {
    /// The sandbox's cgroup2 directory.
    pub unified_cgroup: PathBuf,
    /// The v1 memory cgroup directory on hybrid hosts (None: read `memory.*` from the unified
    /// directory when present, else sum the processes' resident sets).
    pub memory_cgroup: Option<PathBuf>,
    /// Host path of the workspace directory.
    pub workspace: PathBuf,
    /// Host pid of a process inside the sandbox's network namespace; None = host network.
    pub net_pid: Option<i32>,
}

/// One sample of a sandbox.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricsSample {
    /// When the sample was taken (its start).
    pub time: SystemTime,
    /// 100 = one full core over the interval since the previous sample.
    pub cpu_usage_percent: f64,
    pub memory_usage_bytes: u64,
    /// None: no memory limit.
    pub memory_limit_bytes: Option<u64>,
    pub disk_usage_bytes: u64,
    /// None when the sandbox shares the host's network.
    pub network_rx_bytes: Option<u64>,
    pub network_tx_bytes: Option<u64>,
    pub process_count: u32,
    pub file_descriptors: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: no {what} in it")]
    Parse { path: PathBuf, what: &'static str },
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> MetricsError + '_ {
    move |source| MetricsError::Read {
        path: path.to_owned(),
        source,
    }
}

/// A pseudo-file read at every sample: opened once, then re-read from its start. Opening a cgroup
/// or `/proc` file costs several times what reading it does (here ~13 µs against ~3 µs).
#[derive(Debug)]
struct Reread {
    path: PathBuf,
    file: Option<File>,
}

impl Reread {
    fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    /// The whole file into `buf` (cleared first).
    fn read(&mut self, buf: &mut Vec<u8>) -> Result<(), MetricsError> {
        let file = match &self.file {
            Some(f) => f,
            None => self
                .file
                .insert(File::open(&self.path).map_err(read_err(&self.path))?),
        };
        if let Err(e) = read_from_start(file, buf) {
            // Open it afresh next time, in case the failure belongs to this open file.
            self.file = None;
            return Err(read_err(&self.path)(e));
        }
        Ok(())
    }

    /// A file holding one number, or `max` (None).
    fn number(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>, MetricsError> {
        self.read(buf)?;
        if buf.trim_ascii() == b"max" {
            return Ok(None);
        }
        parse_u64(buf).map(Some).ok_or_else(|| MetricsError::Parse {
            path: self.path.clone(),
            what: "number",
        })
    }

    /// The value of a `key value` line.
    fn keyed(&mut self, buf: &mut Vec<u8>, key: &'static str) -> Result<u64, MetricsError> {
        self.read(buf)?;
        keyed_value(buf, key.as_bytes()).ok_or_else(|| MetricsError::Parse {
            path: self.path.clone(),
            what: key,
        })
    }
}

/// Where memory is read from, decided once per sampler.
#[derive(Debug)]
enum Memory {
    Cgroup {
        usage: Reread,
        limit: Reread,
        /// v1 writes "no limit" as a huge number, v2 as `max`.
        v1: bool,
    },
    ProcessRss {
        page_size: u64,
    },
}

/// Samples one sandbox. See the module documentation for what each number means.
#[derive(Debug)]
pub struct MetricsSampler {
    source: MetricsSource,
    cpu_stat: Reread,
    procs: Reread,
    cgroup_stat: Reread,
    memory: Memory,
    net_dev: Option<Reread>,
    /// `usage_usec` and when it was read, for the next percentage.
    last_cpu: Option<(u64, Instant)>,
    /// File contents, reused across reads.
    buf: Vec<u8>,
    /// `/proc/<pid>/...` paths, reused across processes.
    proc_path: Vec<u8>,
    pids: Vec<i32>,
    /// Inodes of multiply-linked files seen in this walk.
    linked: HashSet<u64>,
    warned_partial_walk: bool,
}

impl MetricsSampler {
    /// Reads the CPU total now, so that the first sample's percentage covers the time from here.
    pub fn new(source: MetricsSource) -> Self {
        let unified = &source.unified_cgroup;
        let memory = match &source.memory_cgroup {
            Some(dir) => Memory::Cgroup {
                usage: Reread::new(dir.join("memory.usage_in_bytes")),
                limit: Reread::new(dir.join("memory.limit_in_bytes")),
                v1: true,
            },
            None if unified.join("memory.current").exists() => Memory::Cgroup {
                usage: Reread::new(unified.join("memory.current")),
                limit: Reread::new(unified.join("memory.max")),
                v1: false,
            },
            None => Memory::ProcessRss {
                page_size: nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                    .ok()
                    .flatten()
                    .map_or(4096, |p| p as u64),
            },
        };
        let mut sampler = Self {
            cpu_stat: Reread::new(unified.join("cpu.stat")),
            procs: Reread::new(unified.join("cgroup.procs")),
            cgroup_stat: Reread::new(unified.join("cgroup.stat")),
            memory,
            net_dev: source
                .net_pid
                .map(|pid| Reread::new(PathBuf::from(format!("/proc/{pid}/net/dev")))),
            source,
            last_cpu: None,
            buf: Vec::with_capacity(4096),
            proc_path: Vec::with_capacity(32),
            pids: Vec::new(),
            linked: HashSet::new(),
            warned_partial_walk: false,
        };
        // Unreadable now (the cgroup not made yet?): the first sample then starts the clock.
        sampler.last_cpu = sampler
            .cpu_stat
            .keyed(&mut sampler.buf, "usage_usec")
            .ok()
            .map(|u| (u, Instant::now()));
        sampler
    }

    /// Takes one sample.
    pub fn sample(&mut self) -> Result<MetricsSample, MetricsError> {
        let time = SystemTime::now();
        let usage = self.cpu_stat.keyed(&mut self.buf, "usage_usec")?;
        let now = Instant::now();
        let cpu_usage_percent = match self.last_cpu.replace((usage, now)) {
            Some((last, then)) => {
                let wall_us = now.duration_since(then).as_micros();
                if wall_us == 0 {
                    0.0
                } else {
                    usage.saturating_sub(last) as f64 * 100.0 / wall_us as f64
                }
            }
            None => 0.0,
        };
        self.cgroup_pids()?;
        let mut file_descriptors = 0u32;
        let mut rss_pages = 0u64;
        let rss = matches!(self.memory, Memory::ProcessRss { .. });
        for i in 0..self.pids.len() {
            let pid = self.pids[i];
            file_descriptors = file_descriptors.saturating_add(self.open_files(pid)?);
            if rss {
                rss_pages += self.resident_pages(pid)?;
            }
        }
        let (memory_usage_bytes, memory_limit_bytes) = match &mut self.memory {
            Memory::Cgroup { usage, limit, v1 } => {
                let used = usage
                    .number(&mut self.buf)?
                    .ok_or_else(|| MetricsError::Parse {
                        path: usage.path.clone(),
                        what: "byte count",
                    })?;
                let limit = limit.number(&mut self.buf)?;
                (used, limit.filter(|&l| !*v1 || l < V1_UNLIMITED))
            }
            Memory::ProcessRss { page_size } => (rss_pages * *page_size, None),
        };
        let disk_usage_bytes = self.disk_usage()?;
        let (network_rx_bytes, network_tx_bytes) = match &mut self.net_dev {
            Some(net_dev) => {
                net_dev.read(&mut self.buf)?;
                let (rx, tx) = net_dev_totals(&self.buf);
                (Some(rx), Some(tx))
            }
            None => (None, None),
        };
        Ok(MetricsSample {
            time,
            cpu_usage_percent,
            memory_usage_bytes,
            memory_limit_bytes,
            disk_usage_bytes,
            network_rx_bytes,
            network_tx_bytes,
            process_count: self.pids.len().min(u32::MAX as usize) as u32,
            file_descriptors,
        })
    }

    /// Fills `pids` from `cgroup.procs` of the unified cgroup and every cgroup below it.
    fn cgroup_pids(&mut self) -> Result<(), MetricsError> {
        self.pids.clear();
        self.procs.read(&mut self.buf)?;
        self.pids.extend(pids_in(&self.buf));
        // The walk below costs a directory read per cgroup; most sandboxes have no cgroup below.
        if self.cgroup_stat.keyed(&mut self.buf, "nr_descendants")? == 0 {
            return Ok(());
        }
        let root = &self.source.unified_cgroup;
        let walk_err = |e: io::Error| MetricsError::Read {
            path: root.clone(),
            source: e,
        };
        let mut pending =
            vec![Dir::open(root, dir_flags(), Mode::empty()).map_err(|e| walk_err(e.into()))?];
        let mut below = false;
        while let Some(mut dir) = pending.pop() {
            if below {
                let procs = nix::fcntl::openat(
                    dir.as_fd(),
                    c"cgroup.procs",
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                );
                match procs {
                    Ok(fd) => {
                        read_from_start(&File::from(fd), &mut self.buf).map_err(walk_err)?;
                        self.pids.extend(pids_in(&self.buf));
                    }
                    // Removed during the walk.
                    Err(Errno::ENOENT) => {}
                    Err(e) => return Err(walk_err(e.into())),
                }
            }
            below = true;
            let fd = dir.as_raw_fd();
            for entry in dir.iter() {
                let entry = entry.map_err(|e| walk_err(e.into()))?;
                let name = entry.file_name();
                if entry.file_type() != Some(Type::Directory) || is_dot(name) {
                    continue;
                }
                match open_dir_at(fd, name) {
                    Ok(child) => pending.push(child),
                    Err(Errno::ENOENT) => {}
                    Err(e) => return Err(walk_err(e.into())),
                }
            }
        }
        Ok(())
    }

    /// Open files of one process; 0 when it has exited meanwhile.
    fn open_files(&mut self, pid: i32) -> Result<u32, MetricsError> {
        self.proc_path.clear();
        let _ = write!(self.proc_path, "/proc/{pid}/fd");
        let path = self.proc_path.as_slice();
        // Since Linux 6.2 the directory's size is its number of open files: one syscall, not a
        // directory read. Earlier kernels say 0, and so does a process with no files; both are
        // then counted entry by entry.
        match nix::sys::stat::stat(path) {
            Ok(st) if st.st_size > 0 => return Ok(st.st_size.min(u32::MAX as i64) as u32),
            Ok(_) => {}
            Err(Errno::ENOENT | Errno::ESRCH) => return Ok(0),
            Err(e) => return Err(proc_err(path, e)),
        }
        let mut dir = match Dir::open(path, dir_flags(), Mode::empty()) {
            Ok(d) => d,
            Err(Errno::ENOENT | Errno::ESRCH) => return Ok(0),
            Err(e) => return Err(proc_err(path, e)),
        };
        let mut n = 0u32;
        for entry in dir.iter() {
            match entry {
                Ok(e) if !is_dot(e.file_name()) => n += 1,
                Ok(_) => {}
                Err(Errno::ENOENT | Errno::ESRCH) => return Ok(0),
                Err(e) => return Err(proc_err(path, e)),
            }
        }
        Ok(n)
    }

    /// Resident pages of one process; 0 when it has exited meanwhile.
    fn resident_pages(&mut self, pid: i32) -> Result<u64, MetricsError> {
        self.proc_path.clear();
        let _ = write!(self.proc_path, "/proc/{pid}/statm");
        let path = Path::new(OsStr::from_bytes(&self.proc_path));
        match File::open(path).and_then(|f| read_from_start(&f, &mut self.buf)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(0),
            Err(e) => return Err(read_err(path)(e)),
        }
        // "size resident shared text lib data dt", in pages.
        self.buf
            .split(|&b| b == b' ')
            .nth(1)
            .and_then(parse_u64)
            .ok_or_else(|| MetricsError::Parse {
                path: path.to_owned(),
                what: "resident page count",
            })
    }

    /// Bytes allocated to the workspace tree.
    fn disk_usage(&mut self) -> Result<u64, MetricsError> {
        let root = &self.source.workspace;
        let walk_err = |e: io::Error| MetricsError::Read {
            path: root.clone(),
            source: e,
        };
        let top = Dir::open(root, dir_flags(), Mode::empty()).map_err(|e| walk_err(e.into()))?;
        let st = stat_at(top.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map_err(walk_err)?;
        let mount = mount_of(&st);
        let mut total = allocated(&st);
        self.linked.clear();
        let mut stack: Vec<OwningIter> = vec![top.into_iter()];
        let mut entries = 0usize;
        let mut partial = false;
        while let Some(dir) = stack.last_mut() {
            let Some(entry) = dir.next() else {
                stack.pop();
                continue;
            };
            let entry = match entry {
                Ok(e) => e,
                // The directory was removed while we read it.
                Err(Errno::ENOENT) => {
                    stack.pop();
                    continue;
                }
                Err(e) => return Err(walk_err(e.into())),
            };
            let name = entry.file_name();
            if is_dot(name) {
                continue;
            }
            entries += 1;
            if entries > MAX_WALK_ENTRIES {
                partial = true;
                break;
            }
            let parent = dir.as_raw_fd();
            let st = match stat_at(parent, name, 0) {
                Ok(st) => st,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(walk_err(e)),
            };
            // Another file system, or a bind mount: not the workspace's.
            if mount_of(&st) != mount {
                continue;
            }
            let is_dir = u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFDIR;
            if !is_dir && st.stx_nlink > 1 && !self.linked.insert(st.stx_ino) {
                continue;
            }
            total += allocated(&st);
            if is_dir {
                if stack.len() >= MAX_WALK_DEPTH {
                    partial = true;
                    continue;
                }
                match open_dir_at(parent, name) {
                    Ok(sub) => stack.push(sub.into_iter()),
                    // Removed, or replaced by something else, since the stat.
                    Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {}
                    Err(e) => return Err(walk_err(e.into())),
                }
            }
        }
        if partial && !self.warned_partial_walk {
            self.warned_partial_walk = true;
            tracing::warn!(
                workspace = %root.display(),
                max_entries = MAX_WALK_ENTRIES,
                max_depth = MAX_WALK_DEPTH,
                "workspace too large or too deep to walk whole: disk usage is a lower bound"
            );
        }
        Ok(total)
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn is_dot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

fn proc_err(path: &[u8], e: Errno) -> MetricsError {
    read_err(Path::new(OsStr::from_bytes(path)))(e.into())
}

/// Opens the directory `name` in the open directory `parent`, not following a symlink.
fn open_dir_at(parent: RawFd, name: &CStr) -> nix::Result<Dir> {
    // SAFETY: `parent` is the fd of a directory the caller holds open for this call.
    let parent = unsafe { BorrowedFd::borrow_raw(parent) };
    Dir::openat(parent, name, dir_flags(), Mode::empty())
}

/// `statx` of `name` in the open directory `dir`, not following a symlink; `flags` may add
/// `AT_EMPTY_PATH` to stat `dir` itself.
fn stat_at(dir: RawFd, name: &CStr, flags: i32) -> io::Result<libc::statx> {
    let mut st = MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `name` is NUL-terminated and `st` is a statx buffer the kernel fills.
    let r = unsafe {
        libc::statx(
            dir,
            name.as_ptr(),
            flags | libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC,
            libc::STATX_TYPE
                | libc::STATX_MODE
                | libc::STATX_NLINK
                | libc::STATX_INO
                | libc::STATX_BLOCKS
                | libc::STATX_MNT_ID,
            st.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx succeeded and filled the buffer (zeroed before, so fields the kernel did not
    // report are 0, not garbage).
    Ok(unsafe { st.assume_init() })
}

/// Which mount a file is on: the mount id, and the device for kernels before 5.8 that report no
/// mount id.
fn mount_of(st: &libc::statx) -> (u64, u32, u32) {
    (st.stx_mnt_id, st.stx_dev_major, st.stx_dev_minor)
}

fn allocated(st: &libc::statx) -> u64 {
    st.stx_blocks * 512
}

/// Reads a pseudo-file whole into `buf` (cleared first). Such a file is generated afresh by a read
/// at offset 0, and a read shorter than asked is its end, so one `pread` usually does it.
fn read_from_start(file: &File, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = file.read_at(&mut chunk, buf.len() as u64)?;
        buf.extend_from_slice(&chunk[..n]);
        if n < chunk.len() {
            return Ok(());
        }
    }
}

/// The pids of a `cgroup.procs`.
fn pids_in(procs: &[u8]) -> impl Iterator<Item = i32> + '_ {
    procs
        .split(|&b| b == b'\n')
        .filter_map(|l| parse_u64(l).and_then(|p| i32::try_from(p).ok()))
}

fn parse_u64(text: &[u8]) -> Option<u64> {
    let text = text.trim_ascii();
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(c - b'0')))
            .flatten()
    })
}

/// The value of a `key value` line (`cpu.stat`, `memory.stat`, ...).
fn keyed_value(text: &[u8], key: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n').find_map(|line| {
        line.strip_prefix(key)
            .filter(|rest| rest.first() == Some(&b' '))
            .and_then(parse_u64)
    })
}

/// Received and transmitted bytes summed over every interface of a `/proc/<pid>/net/dev`.
fn net_dev_totals(text: &[u8]) -> (u64, u64) {
    // Two header lines, then "  name: rx_bytes rx_packets ... (8 receive fields) tx_bytes ...".
    let (mut rx, mut tx) = (0u64, 0u64);
    for line in text.split(|&b| b == b'\n').skip(2) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let mut fields = line[colon + 1..]
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        rx = rx.saturating_add(fields.next().and_then(parse_u64).unwrap_or(0));
        tx = tx.saturating_add(fields.nth(7).and_then(parse_u64).unwrap_or(0));
    }
    (rx, tx)
}

#[cfg(test)]
mod tests {
    //! Real kernel, real cgroups: these tests need root. They create cgroups named
    //! `sandwatch-test-metrics-<pid>-<test>` and remove them, and the processes they start, even
    //! when an assertion fails.

    use std::{
        fs::{self, OpenOptions},
        os::unix::process::CommandExt as _,
        process::{Child, Command, Stdio},
        thread,
        time::Duration,
    };

    use super::*;

    const UNIFIED: &str = "/sys/fs/cgroup/unified";
    const V1_MEMORY: &str = "/sys/fs/cgroup/memory";

    /// What a test made: killed and removed on drop, children before cgroups, inner cgroups
    /// before outer ones.
    #[derive(Default)]
    struct Fixture {
        children: Vec<Child>,
        cgroups: Vec<PathBuf>,
    }

    impl Fixture {
        fn cgroup(&mut self, path: PathBuf) -> PathBuf {
            assert_eq!(
                // SAFETY: geteuid cannot fail.
                unsafe { libc::geteuid() },
                0,
                "these tests create cgroups: run them as root"
            );
            fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
            self.cgroups.push(path.clone());
            path
        }

        /// Starts `argv` inside `cgroups` (joined between fork and exec, as the runner does).
        fn spawn(&mut self, argv: &[&str], cgroups: &[&Path]) -> i32 {
            let procs: Vec<File> = cgroups
                .iter()
                .map(|c| {
                    OpenOptions::new()
                        .write(true)
                        .open(c.join("cgroup.procs"))
                        .unwrap()
                })
                .collect();
            let fds: Vec<RawFd> = procs.iter().map(|f| f.as_raw_fd()).collect();
            let mut cmd = Command::new(argv[0]);
            cmd.args(&argv[1..]).stdin(Stdio::null());
            // SAFETY: only write(2) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    for &fd in &fds {
                        if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
            let child = cmd.spawn().unwrap();
            let pid = child.id() as i32;
            self.children.push(child);
            pid
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            for child in &mut self.children {
                let _ = child.kill();
                let _ = child.wait();
            }
            for dir in self.cgroups.iter().rev() {
                for _ in 0..200 {
                    if fs::remove_dir(dir).is_ok() || !dir.exists() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    fn test_name(test: &str) -> String {
        format!("sandwatch-test-metrics-{}-{test}", std::process::id())
    }

    /// A workspace holding one file of `bytes` real (not sparse) bytes.
    fn workspace_with_file(bytes: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut f = File::create(dir.path().join("data.bin")).unwrap();
        f.write_all(&vec![0x5a; bytes]).unwrap();
        f.sync_all().unwrap();
        dir
    }

    fn net_dev_of(pid: i32) -> (u64, u64) {
        net_dev_totals(&fs::read(format!("/proc/{pid}/net/dev")).unwrap())
    }

    #[test]
    fn a_spinner_in_hybrid_cgroups_is_measured() {
        let mut fx = Fixture::default();
        let name = test_name("spinner");
        let unified = fx.cgroup(Path::new(UNIFIED).join(&name));
        let memory = fx.cgroup(Path::new(V1_MEMORY).join(&name));
        fs::write(
            memory.join("memory.limit_in_bytes"),
            (256u64 << 20).to_string(),
        )
        .unwrap();
        let pid = fx.spawn(&["sh", "-c", "while :; do :; done"], &[&unified, &memory]);
        let workspace = workspace_with_file(1 << 20);

        // The spinner's own run time (ns, from the scheduler), to check the percentages against
        // what it really got: these two cores are shared, so it may get well under one core.
        let ran_ns = || -> u64 {
            let text = fs::read(format!("/proc/{pid}/schedstat")).unwrap();
            parse_u64(text.split(|&b| b == b' ').next().unwrap()).unwrap()
        };
        let percent = |(ns0, t0): (u64, Instant), (ns1, t1): (u64, Instant)| {
            (ns1 - ns0) as f64 * 100.0 / (t1 - t0).as_nanos() as f64
        };
        let at_new = (ran_ns(), Instant::now());
        let mut sampler = MetricsSampler::new(MetricsSource {
            unified_cgroup: unified.clone(),
            memory_cgroup: Some(memory.clone()),
            workspace: workspace.path().to_owned(),
            net_pid: Some(pid),
        });
        thread::sleep(Duration::from_millis(400));
        let first = sampler.sample().unwrap();
        let at_first = (ran_ns(), Instant::now());
        thread::sleep(Duration::from_millis(400));
        let before = net_dev_of(pid);
        let s = sampler.sample().unwrap();
        let at_second = (ran_ns(), Instant::now());
        let after = net_dev_of(pid);

        let (ran_first, ran_second) = (percent(at_new, at_first), percent(at_first, at_second));
        eprintln!(
            "spinner: sampled {:.1}% then {:.1}%, scheduler says {ran_first:.1}% then {ran_second:.1}%",
            first.cpu_usage_percent, s.cpu_usage_percent
        );
        assert!(
            (first.cpu_usage_percent - ran_first).abs() < 10.0,
            "since new(): {first:?}, ran {ran_first:.1}%"
        );
        assert!(
            (s.cpu_usage_percent - ran_second).abs() < 10.0,
            "{s:?}, ran {ran_second:.1}%"
        );
        // On an idle machine both are ~100; on a loaded one the spinner still gets its share.
        assert!(s.cpu_usage_percent > 10.0, "a spinner: {s:?}");
        assert!(
            s.cpu_usage_percent <= 101.0,
            "one thread, one core at most: {s:?}"
        );
        assert_eq!(s.process_count, 1, "{s:?}");
        assert!(s.file_descriptors >= 3, "stdin, stdout, stderr: {s:?}");
        assert!(s.memory_usage_bytes > 0, "charged since exec: {s:?}");
        assert_eq!(s.memory_limit_bytes, Some(256 << 20));
        assert!(s.disk_usage_bytes >= 1 << 20, "{s:?}");
        assert!(s.disk_usage_bytes < 2 << 20, "{s:?}");
        // The spinner shares the host's namespace, whose counters move on their own.
        let (rx, tx) = (s.network_rx_bytes.unwrap(), s.network_tx_bytes.unwrap());
        assert!(
            (before.0..=after.0).contains(&rx),
            "{before:?} {rx} {after:?}"
        );
        assert!(
            (before.1..=after.1).contains(&tx),
            "{before:?} {tx} {after:?}"
        );
        assert!(s.time > first.time);

        // The cost of one sample, reported, not asserted (these cores are shared): this thread's
        // CPU time, which preemption by other work does not inflate, and the wall time.
        let cpu_now = || {
            let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
            Duration::from(t)
        };
        let n = 1000;
        let (wall, cpu) = (Instant::now(), cpu_now());
        for _ in 0..n {
            sampler.sample().unwrap();
        }
        eprintln!(
            "one sample (1 process, 1-file workspace, net/dev): {:?} CPU, {:?} wall",
            (cpu_now() - cpu) / n,
            wall.elapsed() / n
        );
    }

    #[test]
    fn nested_cgroups_without_memory_accounting_and_the_host_network() {
        let mut fx = Fixture::default();
        let unified = fx.cgroup(Path::new(UNIFIED).join(test_name("nested")));
        let inner = fx.cgroup(unified.join("inner"));
        fx.spawn(&["sleep", "30"], &[&unified]);
        fx.spawn(&["sleep", "30"], &[&inner]);
        let workspace = tempfile::tempdir().unwrap();
        let mut sampler = MetricsSampler::new(MetricsSource {
            unified_cgroup: unified.clone(),
            memory_cgroup: None,
            workspace: workspace.path().to_owned(),
            net_pid: None,
        });
        // Both children are past exec once each cgroup lists its pid.
        let deadline = Instant::now() + Duration::from_secs(5);
        let s = loop {
            let s = sampler.sample().unwrap();
            if s.process_count == 2 || Instant::now() > deadline {
                break s;
            }
            thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(s.process_count, 2, "this cgroup and the one below: {s:?}");
        assert!(s.cpu_usage_percent < 50.0, "sleepers: {s:?}");
        assert!(s.file_descriptors >= 6, "{s:?}");
        assert!(
            s.memory_usage_bytes > 0,
            "no memory controller here: the resident sets: {s:?}"
        );
        assert_eq!(s.memory_limit_bytes, None);
        assert_eq!((s.network_rx_bytes, s.network_tx_bytes), (None, None));
        assert!(s.disk_usage_bytes < 64 << 10, "an empty workspace: {s:?}");
    }

    #[test]
    fn disk_usage_skips_symlinks_other_mounts_and_second_hard_links() {
        let workspace = workspace_with_file(1 << 20);
        let ws = workspace.path().to_owned();
        let outside = workspace_with_file(4 << 20);
        std::os::unix::fs::symlink(outside.path(), ws.join("link-to-dir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("data.bin"), ws.join("link-to-file"))
            .unwrap();
        fs::hard_link(ws.join("data.bin"), ws.join("same-data.bin")).unwrap();
        fs::create_dir_all(ws.join("a/b/c")).unwrap();
        fs::write(ws.join("a/b/c/small"), vec![1u8; 100 << 10]).unwrap();
        fs::create_dir(ws.join("mnt")).unwrap();
        // A tmpfs mounted inside the workspace, in a mount namespace of this thread only: it
        // goes away with the thread, whatever the assertions do.
        let sample = thread::spawn(move || {
            use nix::mount::{MsFlags, mount};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            mount(
                Some("tmpfs"),
                &ws.join("mnt"),
                Some("tmpfs"),
                MsFlags::empty(),
                Some("size=16m"),
            )
            .unwrap();
            fs::write(ws.join("mnt/big"), vec![2u8; 8 << 20]).unwrap();
            MetricsSampler::new(MetricsSource {
                unified_cgroup: Path::new(UNIFIED).to_owned(),
                memory_cgroup: None,
                workspace: ws,
                net_pid: None,
            })
            .disk_usage()
            .unwrap()
        })
        .join()
        .unwrap();
        let expected = (1 << 20) + (100 << 10);
        assert!(sample >= expected, "{sample} < {expected}");
        assert!(
            sample < expected + (256 << 10),
            "{sample}: the symlinks' targets, the mount or the second link were counted"
        );
    }

    #[test]
    fn a_missing_cgroup_names_the_file() {
        let err = MetricsSampler::new(MetricsSource {
            unified_cgroup: PathBuf::from("/sys/fs/cgroup/unified/sandwatch-no-such-cgroup"),
            memory_cgroup: None,
            workspace: PathBuf::from("/nonexistent"),
            net_pid: None,
        })
        .sample()
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("/sys/fs/cgroup/unified/sandwatch-no-such-cgroup/cpu.stat"),
            "{err}"
        );
    }

    #[test]
    fn proc_and_cgroup_files_parse() {
        let dev = b"Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 123456789  100    0    0    0     0          0         0 987654     90    0    0    0     0       0          0
";
        assert_eq!(net_dev_totals(dev), (123_457_789, 988_654));
        let stat = b"usage_usec 6510935729\nuser_usec 4911039396\nsystem_usec 1599896332\n";
        assert_eq!(keyed_value(stat, b"usage_usec"), Some(6_510_935_729));
        assert_eq!(keyed_value(stat, b"usage"), None);
        assert_eq!(parse_u64(b" 42\n"), Some(42));
        assert_eq!(parse_u64(b"max\n"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None, "overflow");
    }
}
