//! Loading and attaching the kernel programs, and the watch list they filter on.

use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf,
        lpm_trie::{Key as LpmKey, LpmTrie},
    },
    programs::{
        CgroupAttachMode, CgroupSockAddr, ProgramError, RawTracePoint, TracePoint,
        trace_point::{TracePointError, TracePointLink},
    },
};
use sandwatch_probes_abi::{
    BlockedPortKey, COUNT_SLOTS, KILL_PATHS_CAP, KillOrderKey, NR_SLOTS, PATH_KEY_CAP,
    PATH_KEY_DATA, PathOrder, SyscallSet, TRACED, decides_paths, kind, path_key, settings,
};
use tracing::{debug, info, warn};

use crate::{
    CollectorError,
    kernel_offsets::{Btf, FieldOffsets, VMLINUX_BTF},
};

/// The compiled kernel programs, built by this crate's build script.
static PROBES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sandwatch-probes"));

/// Deepest cgroup level the probes check ancestors at (see the kernel side's MAX_WATCH_LEVEL).
pub const MAX_WATCH_LEVEL: u32 = 31;

#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Size of the event ring buffer in bytes: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Count every syscall of watched cgroups (a raw `sys_enter` program, which every syscall on
    /// the host pays for), instead of only the syscalls the probes trace anyway.
    pub full_counting: bool,
    /// Syscalls whose `-EPERM` is a policy refusal (the runner's seccomp deny-list, which the
    /// binary passes): marked `refused`, and traced at exit for it where no probe records them
    /// otherwise. Empty: no refusal is marked.
    pub refusal_syscalls: Vec<String>,
    /// The cgroup that holds every sandbox's cgroup (the runner's `<cgroup2>/sandwatch`), where
    /// the port-policy programs attach. None: ports cannot be blocked (`watch` needs none).
    pub sandbox_parent: Option<SandboxParent>,
}

/// A cgroup in the unified hierarchy, by path and depth below the hierarchy's root.
#[derive(Clone, Debug)]
pub struct SandboxParent {
    pub path: PathBuf,
    pub level: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: 16 << 20,
            full_counting: false,
            refusal_syscalls: Vec::new(),
            sandbox_parent: None,
        }
    }
}

/// Which row of the in-kernel `COUNTS` array each watched cgroup counts into.
///
/// A slot is taken on watch; on unwatch it is retired, and the pipeline frees it after reading
/// its last counts and zeroing it, so no count is lost and no slot is reused dirty.
#[derive(Debug)]
pub struct CounterSlots {
    free: Vec<u32>,
    pub active: StdHashMap<u64, u32>,
    pub retired: Vec<(u64, u32)>,
}

impl CounterSlots {
    fn new() -> Self {
        Self {
            free: (0..COUNT_SLOTS).rev().collect(),
            active: StdHashMap::new(),
            retired: Vec::new(),
        }
    }

    /// A retired slot, read and zeroed, can be used again.
    pub fn release(&mut self, slot: u32) {
        self.free.push(slot);
    }
}

/// The in-kernel `COUNTS` array (`BPF_F_MMAPABLE`), mapped into this process: a window's
/// counts are read from memory, with no syscall per cgroup and syscall number, and a retired
/// slot is zeroed the same way. The probes add to the counters atomically; this side reads and
/// (for slots no probe writes any more) stores them atomically too.
pub struct MappedCounts {
    ptr: std::ptr::NonNull<std::sync::atomic::AtomicU64>,
    entries: usize,
    bytes: usize,
    /// The map the mapping is of (the mapping holds a reference of its own; kept for clarity).
    _map: Array<MapData, u64>,
}

// SAFETY: the mapping is plain shared memory of atomics, valid until drop, from any thread.
unsafe impl Send for MappedCounts {}
// SAFETY: as above: every access is an atomic load or store.
unsafe impl Sync for MappedCounts {}

impl MappedCounts {
    fn map(array: Array<MapData, u64>) -> Result<Self, CollectorError> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        use aya::maps::IterableMap as _;
        let entries = (COUNT_SLOTS * NR_SLOTS) as usize;
        // SAFETY: sysconf reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = (entries * 8).div_ceil(page) * page;
        let fd = array.map().fd().as_fd().as_raw_fd();
        // SAFETY: mapping `bytes` of a BPF array map created mappable, shared, from offset 0;
        // the result is checked before use and unmapped in `drop`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(CollectorError::Probe(format!(
                "mapping the COUNTS map into memory: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Self {
            ptr: std::ptr::NonNull::new(ptr.cast()).expect("mmap never returns null on success"),
            entries,
            bytes,
            _map: array,
        })
    }

    fn cell(&self, index: u32) -> &std::sync::atomic::AtomicU64 {
        let i = index as usize;
        assert!(i < self.entries, "COUNTS index {i} out of {}", self.entries);
        // SAFETY: `i` is within the mapped entries, u64-aligned (page-aligned base), and the
        // memory lives as long as `self`.
        unsafe { &*self.ptr.as_ptr().add(i) }
    }

    /// The count at `index` (`slot * NR_SLOTS + nr`).
    pub fn get(&self, index: u32) -> u64 {
        self.cell(index).load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Zeroes a slot no probe writes any more (its cgroup is unwatched), for reuse.
    pub fn clear_slot(&self, slot: u32) {
        for nr in 0..NR_SLOTS {
            self.cell(slot * NR_SLOTS + nr)
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Drop for MappedCounts {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped; nothing borrows it past `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

/// The maps the pipeline drains: events, syscall counts, drop counters.
pub struct ProbeStreams {
    pub events: RingBuf<MapData>,
    /// The probes' own log lines (aya-log), forwarded to `tracing`.
    pub log: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub counts: MappedCounts,
    pub slots: Arc<Mutex<CounterSlots>>,
    /// The syscall numbers whose counters are read each window.
    pub counted: Vec<u32>,
    pub drops: PerCpuArray<MapData, u64>,
}

/// The loaded, attached programs and the watch list. Dropping it detaches everything.
pub struct ProbeSet {
    _ebpf: Ebpf,
    watched: HashMap<MapData, u64, u32>,
    settings: Array<MapData, u64>,
    /// Watched cgroups per level: the kernel checks a task's ancestors only at these levels.
    levels: BTreeMap<u32, usize>,
    slots: Arc<Mutex<CounterSlots>>,
    ports: PortPolicy,
    kills: KillOrders,
    paths: PathOrders,
    /// Tracepoints attached, for the summary.
    pub attached: usize,
    /// Owned here so that they live exactly as long as the set (see `Drop`).
    _links: Vec<TracePointLink>,
}

impl Drop for ProbeSet {
    fn drop(&mut self) {
        // Detaching a syscall tracepoint program waits for RCU grace periods under the kernel's
        // event_mutex: ~40 ms each here, 6 s for all of them, one after another, whoever closes
        // the fds. Hand that wait to a detached grandchild holding its own copies of the fds;
        // our closes then only drop references and return at once.
        detach_in_background();
    }
}

fn detach_in_background() {
    let mut pipe = [0i32; 2];
    // SAFETY: plain syscalls; between fork and _exit the children call only async-signal-safe
    // functions.
    unsafe {
        if libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            warn!("pipe failed; detaching the probes in this process (takes a few seconds)");
            return;
        }
        let child = libc::fork();
        if child == 0 {
            if libc::fork() == 0 {
                libc::setsid();
                // Keep nothing the caller waits on (pipes to a terminal or a test harness).
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                for fd in 0..3 {
                    libc::dup2(null, fd);
                }
                libc::close(pipe[1]);
                // Wait until this process is gone: its closes then were mere reference drops,
                // and ours are the last, slow ones.
                let mut byte = 0u8;
                while libc::read(pipe[0], (&mut byte as *mut u8).cast(), 1) != 0 {
                    if *libc::__errno_location() != libc::EINTR {
                        break;
                    }
                }
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                libc::_exit(0);
            }
            libc::_exit(0);
        } else if child > 0 {
            let mut status = 0;
            libc::waitpid(child, &mut status, 0);
            libc::close(pipe[0]);
            // The write end stays open until this process exits.
        } else {
            libc::close(pipe[0]);
            libc::close(pipe[1]);
            warn!("fork failed; detaching the probes in this process (takes a few seconds)");
        }
    }
}

/// The enforcement programs of a sandbox policy's `network.blocked_ports` (kernel side:
/// `ebpf-probes/probes/src/port_policy.rs`), one per attach type.
const PORT_POLICY_PROGRAMS: [&str; 4] = [
    "block_connect4",
    "block_connect6",
    "block_sendmsg4",
    "block_sendmsg6",
];

/// [`BlockedPortKey`] as an aya map key (the trait is aya's and the type the ABI crate's).
#[derive(Clone, Copy)]
#[repr(transparent)]
struct PortKey(BlockedPortKey);

// SAFETY: repr(C), 16 bytes, padding spelled out as a field (asserted in the ABI crate); every
// bit pattern is a valid value.
unsafe impl aya::Pod for PortKey {}

/// The blocked-ports map and what the collector put in it.
struct PortPolicy {
    map: HashMap<MapData, PortKey, u8>,
    /// Where the programs are attached, or why they are not: blocking a port then fails, so a
    /// policy is never silently unenforced.
    attached_at: Result<SandboxParent, String>,
    /// Ports blocked per cgroup id, with the cgroup's level.
    blocked: StdHashMap<u64, (u32, Vec<u16>)>,
    /// Cgroups with blocked ports per level (the kernel's `settings::BLOCK_LEVELS`).
    levels: BTreeMap<u32, usize>,
}

/// Attaches the port-policy programs (loaded already) to the sandboxes' parent cgroup.
fn attach_port_policy(
    ebpf: &mut Ebpf,
    at: Option<&SandboxParent>,
) -> Result<SandboxParent, String> {
    let at = at.ok_or("no sandbox parent cgroup was given")?;
    let parent = &at.path;
    let dir = std::fs::File::open(parent)
        .map_err(|e| format!("opening cgroup {}: {e}", parent.display()))?;
    for name in PORT_POLICY_PROGRAMS {
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .expect("loaded before")
            .try_into()
            .map_err(|e| format!("{name}: {e}"))?;
        // A BPF link (kernel 5.7 and later, which aya uses when it can): always multi-attach, so
        // programs others attach to this cgroup or its ancestors keep running and ours never
        // replaces one. The link takes no flags: AllowMultiple would be refused with EINVAL
        // (aya-rs/aya#1078), so the mode given is the one that passes none.
        prog.attach(&dir, CgroupAttachMode::Single)
            .map_err(|e| format!("attaching {name} to {}: {e}", parent.display()))?;
    }
    Ok(at.clone())
}

/// The kill program (kernel side: `ebpf-probes/probes/src/kill_orders.rs`).
const KILL_PROGRAM: &str = "kill_on_syscall";

/// [`KillOrderKey`] as an aya map key.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct OrderKey(KillOrderKey);

// SAFETY: repr(C), 16 bytes, padding spelled out as a field (asserted in the ABI crate); every
// bit pattern is a valid value.
unsafe impl aya::Pod for OrderKey {}

/// One kill order: a process entering `syscall` (its name, as in `syscalls:sys_enter_<name>`) is
/// killed, and the kill is reported with `rule_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelKillOrder {
    pub syscall: String,
    pub rule_id: u32,
}

/// A syscall whose entry tracepoint carries the kill program, and how many cgroups order it.
struct KillAttachment {
    name: String,
    link: TracePointLink,
    cgroups: usize,
}

/// The kill-orders map, what the collector put in it, and where the kill program is attached.
struct KillOrders {
    map: HashMap<MapData, OrderKey, u32>,
    /// Orders per cgroup id: its level and rule id per syscall number.
    orders: StdHashMap<u64, (u32, BTreeMap<u32, u32>)>,
    /// Cgroups with orders per level (the kernel's `settings::KILL_LEVELS`).
    levels: BTreeMap<u32, usize>,
    /// Per syscall number: only syscalls that some order names.
    attached: BTreeMap<u32, KillAttachment>,
    /// Whether the kernel's missing entry tracepoints were reported: once per collector, not
    /// once per sandbox of a daemon.
    warned_unsupported: bool,
}

/// What a path kill order matches in the path a file syscall names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// The path starts with this.
    Prefix(String),
    /// The path is this.
    Exact(String),
    /// The path is an entry of this directory: the directory, one `/` (none more after the root
    /// directory `/`), then a name holding no `/`.
    InDirectory(String),
}

impl PathMatch {
    /// The trie's pattern for it and whether it matches a directory's entries only, or why the
    /// kernel cannot hold it. The kernel sees a path's first `PATH_KEY_CAP - 1` bytes.
    fn pattern(&self) -> Result<(Vec<u8>, bool), String> {
        let seen = PATH_KEY_CAP - 1;
        let (text, mut bytes, entries, room) = match self {
            PathMatch::Prefix(p) => (p, p.as_bytes().to_vec(), false, seen),
            // The NUL ends the path: nothing may follow.
            PathMatch::Exact(p) => (p, [p.as_bytes(), b"\0"].concat(), false, seen + 1),
            // An entry needs a byte of name after the directory's '/'.
            PathMatch::InDirectory(d) if d == "/" => (d, b"/".to_vec(), true, seen - 1),
            PathMatch::InDirectory(d) => (d, [d.as_bytes(), b"/"].concat(), true, seen - 1),
        };
        if text.is_empty() {
            return Err("an empty pattern".into());
        }
        if text.contains('\0') {
            return Err(format!("{text:?} holds a NUL byte"));
        }
        if bytes.len() > room {
            return Err(format!(
                "{text:?} is longer than the {seen} bytes of a path the kernel sees"
            ));
        }
        bytes.shrink_to_fit();
        Ok((bytes, entries))
    }
}

/// One path kill order: a process of the ordered cgroup whose file syscall (one of `syscalls`,
/// by name; None: every syscall the file probes decide paths on) names a path `path` matches is
/// killed as the syscall returns, and the kill is reported with `rule_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPathOrder {
    pub path: PathMatch,
    pub syscalls: Option<Vec<String>>,
    pub rule_id: u32,
}

/// What of a path order the kernel does not decide (the whole order, or some of its syscalls),
/// and why; `order` is its index among the orders given. The caller decides it in user space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathOrderLeft {
    pub order: usize,
    pub reason: String,
}

/// [`PathOrder`] as an aya map value.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
struct PathValue(PathOrder);

// SAFETY: repr(C), 144 bytes, padding spelled out as a field (asserted in the ABI crate); every
// bit pattern is a valid value.
unsafe impl aya::Pod for PathValue {}

/// The path kill program (kernel side: `ebpf-probes/probes/src/path_orders.rs`), which the file
/// exit probes tail-call.
const PATH_KILL_PROGRAM: &str = "kill_on_path";

/// The path-orders trie, the cgroups that have orders, and what the collector put in them.
struct PathOrders {
    /// Holds [`PATH_KILL_PROGRAM`] for the tail call; the kernel empties a program array when
    /// user space lets go of it.
    _tail: ProgramArray<MapData>,
    /// Why [`PATH_KILL_PROGRAM`] did not load, if it did not: no order is then placed.
    unavailable: Option<String>,
    map: LpmTrie<MapData, [u8; PATH_KEY_DATA], PathValue>,
    /// Per ordered cgroup, the syscalls its orders name (the probes skip the others).
    ordered: HashMap<MapData, u64, SyscallSet>,
    /// Per cgroup id: its level, and the trie's entries by pattern.
    orders: StdHashMap<u64, (u32, BTreeMap<Vec<u8>, PathOrder>)>,
    /// Cgroups with path orders per level (the kernel's `settings::PATH_KILL_LEVELS`).
    levels: BTreeMap<u32, usize>,
    /// The syscalls whose exit probe decides paths on this kernel, by name.
    syscalls: StdHashMap<&'static str, u32>,
}

impl PathOrders {
    fn key(id: u64, pattern: &[u8]) -> LpmKey<[u8; PATH_KEY_DATA]> {
        let (bits, data) = path_key(id, pattern).expect("patterns are checked to fit");
        LpmKey::new(bits, data)
    }

    /// Puts `entries` in the trie in place of `before` (cgroup `id`'s entries), all or none.
    fn write(
        &mut self,
        id: u64,
        before: &BTreeMap<Vec<u8>, PathOrder>,
        entries: &BTreeMap<Vec<u8>, PathOrder>,
    ) -> Result<(), CollectorError> {
        let mut written: Vec<&[u8]> = Vec::new();
        for (pattern, order) in entries {
            if before.get(pattern) == Some(order) {
                continue;
            }
            if let Err(e) = self
                .map
                .insert(&Self::key(id, pattern), PathValue(*order), 0)
            {
                for p in written {
                    let key = Self::key(id, p);
                    let _ = match before.get(p) {
                        Some(old) => self.map.insert(&key, PathValue(*old), 0),
                        None => self.map.remove(&key),
                    };
                }
                return Err(CollectorError::Probe(format!("path kill orders map: {e}")));
            }
            written.push(pattern);
        }
        for pattern in before.keys().filter(|p| !entries.contains_key(*p)) {
            let _ = self.map.remove(&Self::key(id, pattern));
        }
        Ok(())
    }

    fn entries(&self) -> usize {
        self.orders.values().map(|(_, e)| e.len()).sum()
    }
}

/// Kill orders are for cgroups at the depths the probes check ancestors at.
fn order_level(level: u32) -> Result<(), CollectorError> {
    if level == 0 || level > MAX_WATCH_LEVEL {
        return Err(CollectorError::Config(format!(
            "cgroup at depth {level}: kill orders are for cgroups at depth 1..={MAX_WATCH_LEVEL}"
        )));
    }
    Ok(())
}

/// Sets syscall `nr`'s bit in `set`.
fn add_syscall(set: &mut SyscallSet, nr: u32) {
    set[(nr / 64) as usize % 8] |= 1 << (nr % 64);
}

/// Drops tracepoint links on a thread of their own: detaching waits for RCU grace periods under
/// the kernel's event_mutex (~40 ms each here), which the caller (holding the probe lock, on an
/// async task) should not wait for. The program keeps running until then, but its map entries
/// are gone, so it kills no one.
fn detach_later(links: Vec<TracePointLink>) {
    if links.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("kill-detach".into())
        .spawn(move || drop(links));
    if let Err(e) = spawned {
        warn!("cannot start a thread to detach kill probes ({e}); they stay attached, inert");
    }
}

/// Whether cgroup `id` sits exactly `depth` levels below `dir`.
fn cgroup_below(dir: &Path, depth: u32, id: u64) -> bool {
    if depth == 0 {
        return std::fs::metadata(dir).is_ok_and(|m| m.ino() == id);
    }
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_type().is_ok_and(|t| t.is_dir()) && cgroup_below(&e.path(), depth - 1, id)
        })
    })
}

/// Where the exec probe finds the task's terminal, credentials, login uid and executable in this
/// kernel, and the file probes an open descriptor's path. What cannot be found is said once,
/// here: those columns stay null, those orders decide on given paths only.
fn field_offsets() -> FieldOffsets {
    let found = match Btf::from_file(VMLINUX_BTF) {
        Ok(btf) => FieldOffsets::find(&btf),
        Err(e) => FieldOffsets::none(&format!("the kernel's BTF ({e})")),
    };
    if !found.missing.is_empty() {
        warn!(
            "kernel fields not found, what they serve is unavailable: {}",
            found.missing.join(", ")
        );
    }
    found
}

/// Program `name` of the object, as the program type `P` it must be.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, CollectorError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| CollectorError::Probe(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(prog_err(name))
}

fn verifier_refused(name: &str) -> impl FnOnce(ProgramError) -> CollectorError + '_ {
    move |e| CollectorError::Probe(format!("verifier refused {name}: {e:#}"))
}

fn prog_err(what: &str) -> impl FnOnce(ProgramError) -> CollectorError + '_ {
    move |e| CollectorError::Probe(format!("{what}: {e}"))
}

/// Makes sure tracefs is reachable: aya finds tracepoint ids there. Mounting tracefs at its
/// standard place is what systemd does at boot; some minimal hosts skip it.
fn ensure_tracefs() -> Result<(), CollectorError> {
    if Path::new("/sys/kernel/tracing/events").exists()
        || Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return Ok(());
    }
    info!("tracefs is not mounted; mounting it at /sys/kernel/tracing");
    // SAFETY: constant NUL-terminated strings, no data argument.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(CollectorError::Probe(format!(
            "tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {}; mount it with `mount -t tracefs nodev /sys/kernel/tracing`",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

impl ProbeSet {
    /// Loads the programs into the kernel and attaches them. Nothing is recorded until a cgroup
    /// is [watched](Self::watch).
    pub fn load(config: &ProbeConfig) -> Result<(Self, ProbeStreams), CollectorError> {
        let rb = config.ring_buffer_bytes;
        if !rb.is_power_of_two() || rb < 4096 {
            return Err(CollectorError::Config(format!(
                "ring buffer size {rb} bytes: it must be a power of two of at least 4096"
            )));
        }
        ensure_tracefs()?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", rb)
            .load(PROBES_OBJECT)
            .map_err(|e| CollectorError::Probe(format!("loading the eBPF object: {e}")))?;

        // The probes log only on rare failures; without the logger those lines are lost, not fatal.
        let log = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                warn!("probe log unavailable: {e}");
                None
            }
        };
        let mut attached = 0usize;
        let mut links = Vec::new();
        let mut missing = Vec::new();
        let exit_prog = |k: u8| match k {
            kind::EXEC => "sys_exit_exec",
            kind::PROCESS => "sys_exit_process",
            kind::FILE => "sys_exit_file",
            kind::FILE2 => "sys_exit_file2",
            kind::NET => "sys_exit_net",
            _ => "sys_exit_sensitive",
        };
        let names = [
            "sys_enter_exit",
            "sys_enter_exec",
            "sys_exit_exec",
            "sys_exit_process",
            "sys_exit_file",
            "sys_exit_file2",
            "sys_exit_net",
            "sys_exit_sensitive",
            "sys_exit_refusal",
            "sched_process_exit",
            "sched_process_fork",
            "signal_deliver",
        ];
        for name in names {
            program::<TracePoint>(&mut ebpf, name)?
                .load()
                .map_err(verifier_refused(name))?;
        }
        for name in PORT_POLICY_PROGRAMS {
            program::<CgroupSockAddr>(&mut ebpf, name)?
                .load()
                .map_err(verifier_refused(name))?;
        }
        // Loaded now so that a refusal shows at start; attached only when an order names a
        // syscall.
        program::<TracePoint>(&mut ebpf, KILL_PROGRAM)?
            .load()
            .map_err(verifier_refused(KILL_PROGRAM))?;
        // Never attached: the file exit probes tail-call it for tasks under path orders. A
        // kernel whose verifier refuses it still records everything: path orders are then left
        // to user space.
        let path_kill = program::<TracePoint>(&mut ebpf, PATH_KILL_PROGRAM)?
            .load()
            .map_err(verifier_refused(PATH_KILL_PROGRAM));
        if let Err(e) = &path_kill {
            warn!("path kill orders unavailable, kill rules on paths act from user space: {e}");
        }
        let port_policy_at = attach_port_policy(&mut ebpf, config.sandbox_parent.as_ref());
        match &port_policy_at {
            Ok(p) => info!("port policy enforced below {}", p.path.display()),
            Err(e) => warn!("blocked ports cannot be enforced: {e}"),
        }
        let mut attach = |ebpf: &mut Ebpf,
                          prog: &str,
                          category: &str,
                          tp: &str|
         -> Result<bool, CollectorError> {
            let p = program::<TracePoint>(ebpf, prog)?;
            match p.attach(category, tp) {
                Ok(id) => {
                    links.push(p.take_link(id).map_err(prog_err(prog))?);
                    attached += 1;
                    Ok(true)
                }
                // A syscall this kernel does not have (or was built without): not an error.
                Err(e) => {
                    debug!("{category}:{tp}: {e}");
                    Ok(false)
                }
            }
        };
        // Exit probes only, but for exec (arguments captured at entry too) and exit/exit_group
        // (entry only: they never return).
        for t in TRACED {
            let ok = match t.kind {
                kind::EXIT => attach(
                    &mut ebpf,
                    "sys_enter_exit",
                    "syscalls",
                    &format!("sys_enter_{}", tracepoint_of(t.name)),
                )?,
                kind::EXEC => {
                    attach(
                        &mut ebpf,
                        "sys_enter_exec",
                        "syscalls",
                        &format!("sys_enter_{}", tracepoint_of(t.name)),
                    )? && attach(
                        &mut ebpf,
                        "sys_exit_exec",
                        "syscalls",
                        &format!("sys_exit_{}", tracepoint_of(t.name)),
                    )?
                }
                k => attach(
                    &mut ebpf,
                    exit_prog(k),
                    "syscalls",
                    &format!("sys_exit_{}", tracepoint_of(t.name)),
                )?,
            };
            if !ok {
                missing.push(t.name.to_string());
            }
        }
        for name in &config.refusal_syscalls {
            if TRACED.iter().any(|t| t.name == name) {
                continue;
            }
            if !attach(
                &mut ebpf,
                "sys_exit_refusal",
                "syscalls",
                &format!("sys_exit_{}", tracepoint_of(name)),
            )? {
                missing.push(name.clone());
            }
        }
        for (prog, category, tp) in [
            ("sched_process_exit", "sched", "sched_process_exit"),
            ("sched_process_fork", "sched", "sched_process_fork"),
            ("signal_deliver", "signal", "signal_deliver"),
        ] {
            if !attach(&mut ebpf, prog, category, tp)? {
                return Err(CollectorError::Probe(format!(
                    "cannot attach to tracepoint {category}:{tp}"
                )));
            }
        }
        if attached == 0 {
            return Err(CollectorError::Probe(
                "no syscall tracepoint could be attached (is CONFIG_FTRACE_SYSCALLS set?)".into(),
            ));
        }
        if !missing.is_empty() {
            warn!(
                "this kernel has no tracepoint for: {} (not recorded)",
                missing.join(", ")
            );
        }
        if config.full_counting {
            let p = program::<RawTracePoint>(&mut ebpf, "count_all_syscalls")?;
            p.load().map_err(verifier_refused("count_all_syscalls"))?;
            p.attach("sys_enter")
                .map_err(prog_err("attaching count_all_syscalls to sys_enter"))?;
            attached += 1;
        }

        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| CollectorError::Probe(format!("map {name} missing from the object")))
        };
        let map_err = |name: &'static str| {
            move |e: aya::maps::MapError| CollectorError::Probe(format!("map {name}: {e}"))
        };
        let mut settings_map: Array<MapData, u64> =
            Array::try_from(take(&mut ebpf, "SETTINGS")?).map_err(map_err("SETTINGS"))?;
        settings_map
            .set(settings::FULL_COUNTING, u64::from(config.full_counting), 0)
            .map_err(map_err("SETTINGS"))?;
        settings_map
            .set(settings::WAKEUP_BYTES, u64::from(rb / 16), 0)
            .map_err(map_err("SETTINGS"))?;
        for (key, offset) in field_offsets().values {
            settings_map
                .set(key, offset, 0)
                .map_err(map_err("SETTINGS"))?;
        }
        let watched = HashMap::try_from(take(&mut ebpf, "WATCHED")?).map_err(map_err("WATCHED"))?;
        let ports = PortPolicy {
            map: HashMap::try_from(take(&mut ebpf, "BLOCKED_PORTS")?)
                .map_err(map_err("BLOCKED_PORTS"))?,
            attached_at: port_policy_at,
            blocked: StdHashMap::new(),
            levels: BTreeMap::new(),
        };
        let kills = KillOrders {
            map: HashMap::try_from(take(&mut ebpf, "KILL_ORDERS")?)
                .map_err(map_err("KILL_ORDERS"))?,
            orders: StdHashMap::new(),
            levels: BTreeMap::new(),
            attached: BTreeMap::new(),
            warned_unsupported: false,
        };
        let mut tail: ProgramArray<MapData> =
            ProgramArray::try_from(take(&mut ebpf, "PATH_KILL")?).map_err(map_err("PATH_KILL"))?;
        if path_kill.is_ok() {
            let fd = program::<TracePoint>(&mut ebpf, PATH_KILL_PROGRAM)?
                .fd()
                .map_err(prog_err(PATH_KILL_PROGRAM))?;
            tail.set(0, fd, 0).map_err(map_err("PATH_KILL"))?;
        }
        let paths = PathOrders {
            _tail: tail,
            unavailable: path_kill.err().map(|e| e.to_string()),
            map: LpmTrie::try_from(take(&mut ebpf, "KILL_PATHS")?)
                .map_err(map_err("KILL_PATHS"))?,
            ordered: HashMap::try_from(take(&mut ebpf, "PATH_ORDERED")?)
                .map_err(map_err("PATH_ORDERED"))?,
            orders: StdHashMap::new(),
            levels: BTreeMap::new(),
            syscalls: TRACED
                .iter()
                .filter(|t| decides_paths(t) && !missing.iter().any(|m: &String| m == t.name))
                .map(|t| (t.name, t.nr as u32))
                .collect(),
        };
        let slots = Arc::new(Mutex::new(CounterSlots::new()));
        // Full counting counts every number; otherwise only the syscalls with probes can move.
        let counted: Vec<u32> = if config.full_counting {
            (0..NR_SLOTS).collect()
        } else {
            let mut nrs: Vec<u32> = TRACED.iter().map(|t| t.nr as u32).collect();
            nrs.extend(
                config
                    .refusal_syscalls
                    .iter()
                    .filter_map(|n| n.parse::<syscalls::Sysno>().ok())
                    .map(|s| s.id() as u32),
            );
            nrs.retain(|n| *n < NR_SLOTS);
            nrs.sort_unstable();
            nrs.dedup();
            nrs
        };
        let streams = ProbeStreams {
            events: RingBuf::try_from(take(&mut ebpf, "EVENTS")?).map_err(map_err("EVENTS"))?,
            log,
            counts: MappedCounts::map(
                Array::try_from(take(&mut ebpf, "COUNTS")?).map_err(map_err("COUNTS"))?,
            )?,
            slots: slots.clone(),
            counted,
            drops: PerCpuArray::try_from(take(&mut ebpf, "DROPS")?).map_err(map_err("DROPS"))?,
        };
        info!(attached, "probes attached");
        Ok((
            Self {
                _ebpf: ebpf,
                watched,
                settings: settings_map,
                levels: BTreeMap::new(),
                slots,
                ports,
                kills,
                paths,
                attached,
                _links: links,
            },
            streams,
        ))
    }

    /// Starts recording the processes of cgroup `id` (at depth `level`) and of its descendants.
    pub fn watch(&mut self, id: u64, level: u32) -> Result<(), CollectorError> {
        if level == 0 || level > MAX_WATCH_LEVEL {
            return Err(CollectorError::Config(format!(
                "cgroup at depth {level} cannot be watched: watch the root's descendants, at most {MAX_WATCH_LEVEL} deep"
            )));
        }
        let mut slots = self.slots.lock().expect("slot lock");
        if slots.active.contains_key(&id) {
            return Ok(());
        }
        let slot = slots.free.pop().ok_or_else(|| {
            CollectorError::Config(format!(
                "{COUNT_SLOTS} cgroups are watched already; unwatch one first"
            ))
        })?;
        if let Err(e) = self.watched.insert(id, slot, 0) {
            slots.free.push(slot);
            return Err(CollectorError::Probe(format!("watch list: {e}")));
        }
        slots.active.insert(id, slot);
        drop(slots);
        *self.levels.entry(level).or_default() += 1;
        self.write_levels()
    }

    /// Stops recording cgroup `id`. Its path kill orders go too: they act in the file probes,
    /// which run for watched cgroups only.
    pub fn unwatch(&mut self, id: u64, level: u32) -> Result<(), CollectorError> {
        self.clear_path_orders(id)?;
        let mut slots = self.slots.lock().expect("slot lock");
        if let Some(slot) = slots.active.remove(&id) {
            slots.retired.push((id, slot));
        }
        drop(slots);
        if self.watched.remove(&id).is_ok()
            && let Some(n) = self.levels.get_mut(&level)
        {
            *n -= 1;
            if *n == 0 {
                self.levels.remove(&level);
            }
        }
        self.write_levels()
    }

    /// Refuses, with EPERM, connect() (TCP and UDP) and sendmsg()/sendto() naming a destination
    /// (UDP) to any of `ports`, IPv4 and IPv6, for the processes of cgroup `id` (at depth `level`)
    /// and of its descendants. The cgroup must be below `<unified>/sandwatch`, where the programs
    /// run. Blocking more ports of the same cgroup adds to its list.
    pub fn block_ports(
        &mut self,
        id: u64,
        level: u32,
        ports: &[u16],
    ) -> Result<(), CollectorError> {
        if ports.is_empty() {
            return Ok(());
        }
        let parent =
            self.ports.attached_at.as_ref().map_err(|e| {
                CollectorError::Probe(format!("blocked ports cannot be enforced: {e}"))
            })?;
        if level <= parent.level || level > MAX_WATCH_LEVEL {
            return Err(CollectorError::Config(format!(
                "cgroup at depth {level}: ports can be blocked for cgroups below {} (depth {}..={MAX_WATCH_LEVEL})",
                parent.path.display(),
                parent.level + 1
            )));
        }
        if !cgroup_below(&parent.path, level - parent.level, id) {
            return Err(CollectorError::Config(format!(
                "cgroup {id} is not at depth {level} below {}: blocked ports are enforced there only",
                parent.path.display()
            )));
        }
        let known = self.ports.blocked.get(&id).map(|(l, p)| (*l, p.clone()));
        if let Some((l, _)) = &known
            && *l != level
        {
            return Err(CollectorError::Config(format!(
                "cgroup {id} has ports blocked at depth {l}, not {level}"
            )));
        }
        let mut list = known.map(|(_, p)| p).unwrap_or_default();
        let mut added = Vec::new();
        for &port in ports {
            if list.contains(&port) || added.contains(&port) {
                continue;
            }
            if let Err(e) = self
                .ports
                .map
                .insert(PortKey(BlockedPortKey::new(id, port)), 1, 0)
            {
                for &p in &added {
                    let _ = self.ports.map.remove(&PortKey(BlockedPortKey::new(id, p)));
                }
                return Err(CollectorError::Probe(format!("blocked ports map: {e}")));
            }
            added.push(port);
        }
        list.extend(added);
        list.sort_unstable();
        if self.ports.blocked.insert(id, (level, list)).is_none() {
            *self.ports.levels.entry(level).or_default() += 1;
        }
        self.write_block_levels()
    }

    /// Lifts every port blocked for cgroup `id`.
    pub fn unblock_ports(&mut self, id: u64) -> Result<(), CollectorError> {
        let Some((level, ports)) = self.ports.blocked.remove(&id) else {
            return Ok(());
        };
        for port in ports {
            let _ = self
                .ports
                .map
                .remove(&PortKey(BlockedPortKey::new(id, port)));
        }
        if let Some(n) = self.ports.levels.get_mut(&level) {
            *n -= 1;
            if *n == 0 {
                self.ports.levels.remove(&level);
            }
        }
        self.write_block_levels()
    }

    /// Kills, at the entry of the syscall, a process of cgroup `id` (at depth `level`) or of its
    /// descendants that enters a syscall named in `orders`, and reports it with the order's rule
    /// id. Adds to the cgroup's orders (an order for a syscall the cgroup has one for already
    /// replaces its rule id). Returns the names of the syscalls this kernel has no entry
    /// tracepoint for: no order is placed for them, and the caller must enforce them otherwise.
    pub fn kill_on_syscalls(
        &mut self,
        id: u64,
        level: u32,
        orders: &[KernelKillOrder],
    ) -> Result<Vec<String>, CollectorError> {
        order_level(level)?;
        if let Some((l, _)) = self.kills.orders.get(&id)
            && *l != level
        {
            return Err(CollectorError::Config(format!(
                "cgroup {id} has kill orders at depth {l}, not {level}"
            )));
        }
        let mut wanted: BTreeMap<u32, (String, u32)> = BTreeMap::new();
        for order in orders {
            let sysno: syscalls::Sysno = order.syscall.parse().map_err(|_| {
                CollectorError::Config(format!(
                    "kill order for rule {}: {:?} is not a syscall of this architecture",
                    order.rule_id, order.syscall
                ))
            })?;
            let nr = u32::try_from(sysno.id()).map_err(|_| {
                CollectorError::Config(format!("syscall {} has no number here", order.syscall))
            })?;
            wanted.insert(nr, (sysno.name().to_owned(), order.rule_id));
        }
        let mut unsupported = Vec::new();
        let mut new_links = Vec::new();
        let mut inserted: Vec<u32> = Vec::new();
        let had = self
            .kills
            .orders
            .get(&id)
            .map(|(_, o)| o.clone())
            .unwrap_or_default();
        let result = (|| {
            for (&nr, (name, rule)) in &wanted {
                if !self.kills.attached.contains_key(&nr) {
                    let prog = program::<TracePoint>(&mut self._ebpf, KILL_PROGRAM)?;
                    match prog.attach("syscalls", &format!("sys_enter_{}", tracepoint_of(name))) {
                        Ok(link) => {
                            let link = prog.take_link(link).map_err(prog_err(KILL_PROGRAM))?;
                            self.kills.attached.insert(
                                nr,
                                KillAttachment {
                                    name: name.clone(),
                                    link,
                                    cgroups: 0,
                                },
                            );
                            new_links.push(nr);
                        }
                        // No tracepoint for this syscall on this kernel (its id file is
                        // missing): not an error, the caller enforces it otherwise.
                        Err(ProgramError::TracePointError(TracePointError::FileError {
                            io_error,
                            ..
                        })) if io_error.kind() == std::io::ErrorKind::NotFound => {
                            debug!("syscalls:sys_enter_{name}: no such tracepoint");
                            unsupported.push(name.clone());
                            continue;
                        }
                        Err(e) => {
                            return Err(CollectorError::Probe(format!(
                                "attaching {KILL_PROGRAM} to syscalls:sys_enter_{name}: {e}"
                            )));
                        }
                    }
                }
                self.kills
                    .map
                    .insert(OrderKey(KillOrderKey::new(id, nr)), *rule, 0)
                    .map_err(|e| CollectorError::Probe(format!("kill orders map: {e}")))?;
                inserted.push(nr);
            }
            Ok::<(), CollectorError>(())
        })();
        if let Err(e) = result {
            // Undo this call: entries it added (those that replaced a rule id are put back),
            // and attachments nobody else needs.
            for nr in inserted {
                let key = OrderKey(KillOrderKey::new(id, nr));
                match had.get(&nr) {
                    Some(rule) => {
                        let _ = self.kills.map.insert(key, *rule, 0);
                    }
                    None => {
                        let _ = self.kills.map.remove(&key);
                    }
                }
            }
            let links = new_links
                .into_iter()
                .filter_map(|nr| self.kills.attached.remove(&nr))
                .map(|a| a.link)
                .collect();
            detach_later(links);
            return Err(e);
        }
        let mut now = had;
        for nr in inserted {
            if now.insert(nr, wanted[&nr].1).is_none()
                && let Some(a) = self.kills.attached.get_mut(&nr)
            {
                a.cgroups += 1;
            }
        }
        if !now.is_empty() && self.kills.orders.insert(id, (level, now)).is_none() {
            *self.kills.levels.entry(level).or_default() += 1;
        }
        if !unsupported.is_empty() {
            if std::mem::replace(&mut self.kills.warned_unsupported, true) {
                debug!(
                    cgroup = id,
                    "no entry tracepoint for {}: these kill orders are left to user space",
                    unsupported.join(", ")
                );
            } else {
                warn!(
                    cgroup = id,
                    "no entry tracepoint for {}: these kill orders are left to user space",
                    unsupported.join(", ")
                );
            }
        }
        self.write_kill_levels()?;
        Ok(unsupported)
    }

    /// Kills a process of cgroup `id` (at depth `level`, watched) or of its descendants as a file
    /// syscall it makes returns, when the path the syscall names matches an order for that
    /// syscall, and reports it with the order's rule id. The path is the one the process gave
    /// and, after an open that returned a descriptor, the one the descriptor names (its dentries
    /// up to the process's root). Adds to the cgroup's orders.
    ///
    /// Returns what the kernel does not decide, for the caller to decide in user space: patterns
    /// it cannot hold (empty, with a NUL, longer than the bytes of a path it sees) and syscalls
    /// whose exit probe does not decide paths here (not a file syscall with a path, or no
    /// tracepoint on this kernel); every order when the path kill program did not load here. A
    /// cgroup that is not watched is refused: the file probes run for watched cgroups only.
    pub fn kill_on_paths(
        &mut self,
        id: u64,
        level: u32,
        orders: &[KernelPathOrder],
    ) -> Result<Vec<PathOrderLeft>, CollectorError> {
        order_level(level)?;
        if !self
            .slots
            .lock()
            .expect("slot lock")
            .active
            .contains_key(&id)
        {
            return Err(CollectorError::Config(format!(
                "cgroup {id} is not watched: path kill orders act in the file probes, which run for watched cgroups; watch it first"
            )));
        }
        let before = match self.paths.orders.get(&id) {
            Some((l, _)) if *l != level => {
                return Err(CollectorError::Config(format!(
                    "cgroup {id} has path kill orders at depth {l}, not {level}"
                )));
            }
            Some((_, entries)) => entries.clone(),
            None => BTreeMap::new(),
        };
        if let Some(why) = &self.paths.unavailable {
            return Ok((0..orders.len())
                .map(|order| PathOrderLeft {
                    order,
                    reason: format!("the path kill program did not load: {why}"),
                })
                .collect());
        }
        let mut entries = before.clone();
        let mut left = Vec::new();
        for (i, order) in orders.iter().enumerate() {
            let (pattern, entries_only) = match order.path.pattern() {
                Ok(p) => p,
                Err(reason) => {
                    left.push(PathOrderLeft { order: i, reason });
                    continue;
                }
            };
            let mut nrs: Vec<u32> = Vec::new();
            match &order.syscalls {
                None => nrs.extend(self.paths.syscalls.values()),
                Some(names) => {
                    for name in names {
                        match self.paths.syscalls.get(name.as_str()) {
                            Some(nr) => nrs.push(*nr),
                            None => left.push(PathOrderLeft {
                                order: i,
                                reason: format!(
                                    "{name}: no file probe decides paths on it here (not a file syscall with a path, or no tracepoint)"
                                ),
                            }),
                        }
                    }
                }
            }
            if nrs.is_empty() {
                continue;
            }
            let bits = 8 * (8 + pattern.len() as u32);
            let entry = entries.entry(pattern).or_insert_with(|| PathOrder {
                prefix_len: bits,
                ..PathOrder::default()
            });
            let (set, rule) = if entries_only {
                (&mut entry.entry_syscalls, &mut entry.entry_rule)
            } else {
                (&mut entry.prefix_syscalls, &mut entry.prefix_rule)
            };
            // Two rules on one pattern share its entry; the first placed is reported.
            if set.iter().all(|w| *w == 0) {
                *rule = order.rule_id;
            }
            for nr in nrs {
                add_syscall(set, nr);
            }
        }
        if entries == before {
            return Ok(left);
        }
        let total = self.paths.entries() - before.len() + entries.len();
        if total > KILL_PATHS_CAP as usize {
            return Err(CollectorError::Config(format!(
                "{total} path kill order patterns: more than the {KILL_PATHS_CAP} the kernel map holds"
            )));
        }
        let new_cgroup = !self.paths.orders.contains_key(&id);
        self.paths.write(id, &before, &entries)?;
        let mut named: SyscallSet = [0; 8];
        for e in entries.values() {
            for (w, (p, d)) in named
                .iter_mut()
                .zip(e.prefix_syscalls.iter().zip(&e.entry_syscalls))
            {
                *w |= p | d;
            }
        }
        if let Err(e) = self.paths.ordered.insert(id, named, 0) {
            // Back to what was there: the entries, and the cgroup's old set stays.
            let _ = self.paths.write(id, &entries, &before);
            return Err(CollectorError::Probe(format!(
                "path-ordered cgroups map: {e}"
            )));
        }
        self.paths.orders.insert(id, (level, entries));
        if new_cgroup {
            *self.paths.levels.entry(level).or_default() += 1;
        }
        self.write_path_levels()?;
        Ok(left)
    }

    /// Lifts every path kill order of cgroup `id`.
    fn clear_path_orders(&mut self, id: u64) -> Result<(), CollectorError> {
        let Some((level, entries)) = self.paths.orders.remove(&id) else {
            return Ok(());
        };
        // The cgroup first: its tasks stop looking the trie up before its entries go.
        let _ = self.paths.ordered.remove(&id);
        for pattern in entries.keys() {
            let _ = self.paths.map.remove(&PathOrders::key(id, pattern));
        }
        if let Some(n) = self.paths.levels.get_mut(&level) {
            *n -= 1;
            if *n == 0 {
                self.paths.levels.remove(&level);
            }
        }
        self.write_path_levels()
    }

    /// Patterns in the path kill orders of cgroup `id` (one per distinct pattern).
    pub fn path_order_patterns(&self, id: u64) -> usize {
        self.paths.orders.get(&id).map_or(0, |(_, e)| e.len())
    }

    fn write_path_levels(&mut self) -> Result<(), CollectorError> {
        let mask = self.paths.levels.keys().fold(0u64, |m, l| m | (1 << l));
        self.settings
            .set(settings::PATH_KILL_LEVELS, mask, 0)
            .map_err(|e| CollectorError::Probe(format!("settings map: {e}")))
    }

    /// Lifts every kill order of cgroup `id`, syscall and path orders; the kill program leaves
    /// the syscalls no other cgroup's order names.
    pub fn clear_kill_orders(&mut self, id: u64) -> Result<(), CollectorError> {
        self.clear_path_orders(id)?;
        let Some((level, orders)) = self.kills.orders.remove(&id) else {
            return Ok(());
        };
        let mut unused = Vec::new();
        for nr in orders.keys() {
            let _ = self.kills.map.remove(&OrderKey(KillOrderKey::new(id, *nr)));
            if let Some(a) = self.kills.attached.get_mut(nr) {
                a.cgroups -= 1;
                if a.cgroups == 0 {
                    unused.push(*nr);
                }
            }
        }
        if let Some(n) = self.kills.levels.get_mut(&level) {
            *n -= 1;
            if *n == 0 {
                self.kills.levels.remove(&level);
            }
        }
        let links = unused
            .into_iter()
            .filter_map(|nr| self.kills.attached.remove(&nr))
            .map(|a| a.link)
            .collect();
        detach_later(links);
        self.write_kill_levels()
    }

    /// The syscalls whose entry tracepoint carries the kill program now.
    pub fn kill_tracepoints(&self) -> Vec<String> {
        self.kills
            .attached
            .values()
            .map(|a| a.name.clone())
            .collect()
    }

    /// The kernel's id of the loaded kill program (what `bpftool prog` and the links' fdinfo
    /// name it by).
    pub fn kill_program_id(&self) -> Result<u32, CollectorError> {
        let prog: &TracePoint = self
            ._ebpf
            .program(KILL_PROGRAM)
            .ok_or_else(|| CollectorError::Probe(format!("{KILL_PROGRAM} missing")))?
            .try_into()
            .map_err(prog_err(KILL_PROGRAM))?;
        Ok(prog.info().map_err(prog_err(KILL_PROGRAM))?.id())
    }

    fn write_kill_levels(&mut self) -> Result<(), CollectorError> {
        let mask = self.kills.levels.keys().fold(0u64, |m, l| m | (1 << l));
        self.settings
            .set(settings::KILL_LEVELS, mask, 0)
            .map_err(|e| CollectorError::Probe(format!("settings map: {e}")))
    }

    fn write_block_levels(&mut self) -> Result<(), CollectorError> {
        let mask = self.ports.levels.keys().fold(0u64, |m, l| m | (1 << l));
        self.settings
            .set(settings::BLOCK_LEVELS, mask, 0)
            .map_err(|e| CollectorError::Probe(format!("settings map: {e}")))
    }

    fn write_levels(&mut self) -> Result<(), CollectorError> {
        let mask = self.levels.keys().fold(0u64, |m, l| m | (1 << l));
        self.settings
            .set(settings::WATCH_LEVELS, mask, 0)
            .map_err(|e| CollectorError::Probe(format!("settings map: {e}")))
    }
}

/// The name of a syscall's tracepoints: the kernel names them after its `SYSCALL_DEFINE`, which
/// differs from the syscall's name for a few (x86_64's `umount2` is defined as `umount`).
fn tracepoint_of(syscall: &str) -> &str {
    match syscall {
        "umount2" => "umount",
        other => other,
    }
}
