//! What the collector adds to a kernel record: who the process is (parent, executable), what the
//! socket is (family, type, bound address), which sandbox the cgroup belongs to, and names a
//! person reads (flags, families, addresses).

use std::{
    collections::HashMap,
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

/// The per-record lookups' map: a fast, non-cryptographic hasher (keys are pids and cgroup ids
/// the kernel hands us, not attacker-chosen strings).
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Caches are cleared past this many entries: exit records lost to a full ring buffer must not
/// make them grow without bound.
const CACHE_CAP: usize = 1 << 20;

#[derive(Clone, Debug, Default)]
pub struct ProcInfo {
    pub ppid: Option<u32>,
    pub exe: Option<Arc<str>>,
}

impl ProcInfo {
    /// What /proc says of `pid` now (nothing once it is gone).
    fn from_proc(pid: u32) -> Self {
        Self {
            ppid: proc_ppid(pid),
            exe: proc_exe(pid).map(Arc::from),
        }
    }
}

/// pid → parent and executable, learned from fork and exec records, and from /proc for
/// processes that were running before they were watched.
#[derive(Default)]
pub struct ProcessTable {
    map: FastMap<u32, ProcInfo>,
    /// Where runners note the processes they started out of view.
    registry: SandboxRegistry,
}

impl ProcessTable {
    pub fn new(registry: SandboxRegistry) -> Self {
        Self {
            map: FastMap::default(),
            registry,
        }
    }

    /// What is known of `pid`; on first sight, what its runner noted of it, else /proc while
    /// the process lives.
    pub fn get(&mut self, pid: u32) -> &ProcInfo {
        if self.map.len() > CACHE_CAP {
            self.map.clear();
        }
        let registry = &self.registry;
        self.map.entry(pid).or_insert_with(|| {
            registry
                .started(pid)
                .unwrap_or_else(|| ProcInfo::from_proc(pid))
        })
    }

    pub fn on_fork(&mut self, parent: u32, child: u32) {
        // The child's own records may have come first (vfork returns in the parent only after
        // the child's exec): keep what they taught, add the parent.
        if let Some(known) = self.map.get_mut(&child) {
            known.ppid = Some(parent);
            return;
        }
        let exe = self.get(parent).exe.clone();
        self.map.insert(
            child,
            ProcInfo {
                ppid: Some(parent),
                exe,
            },
        );
    }

    /// After a successful exec: the new executable, as the kernel resolved it when the process is
    /// still there to ask, else as given.
    pub fn on_exec(&mut self, pid: u32, filename: &str) -> Arc<str> {
        let exe: Arc<str> = proc_exe(pid)
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(filename));
        let ppid = self
            .map
            .get(&pid)
            .and_then(|p| p.ppid)
            .or_else(|| proc_ppid(pid));
        self.map.insert(
            pid,
            ProcInfo {
                ppid,
                exe: Some(exe.clone()),
            },
        );
        exe
    }

    pub fn on_exit(&mut self, pid: u32) {
        self.map.remove(&pid);
    }
}

fn proc_exe(pid: u32) -> Option<String> {
    let link = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

pub fn proc_cwd(pid: u32) -> Option<String> {
    let link = fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

fn proc_ppid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// What a socket is, from its socket() and bind() records.
#[derive(Clone, Debug, Default)]
pub struct SockInfo {
    pub domain: Option<u16>,
    pub sock_type: Option<u32>,
    /// The bound address; the port is unknown (None) when bind asked for any port (0).
    pub local: Option<(String, Option<u16>)>,
}

/// (pid, fd) → socket facts, so that connect/listen/accept records can say tcp or udp and which
/// local address a listener is on.
#[derive(Default)]
pub struct SocketTable {
    map: FastMap<(u32, i64), SockInfo>,
}

impl SocketTable {
    pub fn get(&self, pid: u32, fd: i64) -> Option<&SockInfo> {
        self.map.get(&(pid, fd))
    }

    pub fn entry(&mut self, pid: u32, fd: i64) -> &mut SockInfo {
        if self.map.len() > CACHE_CAP {
            self.map.clear();
        }
        self.map.entry((pid, fd)).or_default()
    }

    /// A new socket on `fd` replaces whatever was known about the fd before.
    pub fn created(&mut self, pid: u32, fd: i64, info: SockInfo) {
        self.map.insert((pid, fd), info);
    }

    pub fn forget_process(&mut self, pid: u32) {
        if !self.map.is_empty() {
            self.map.retain(|(p, _), _| *p != pid);
        }
    }
}

/// A watched cgroup: its sandbox id and when it was first watched.
#[derive(Clone, Debug)]
struct Watched {
    sandbox_id: Arc<str>,
    /// CLOCK_REALTIME_COARSE at the first watch, ns: the clock the kernel stamps inode change
    /// times with, so that a file changed after the watch began never compares as older.
    since_ns: i64,
}

/// Watched cgroup id → sandbox id, and the processes a runner started before it watched them.
/// Written by the handle that adds watches, read by the pipeline through a [`RegistryView`].
#[derive(Clone, Default)]
pub struct SandboxRegistry {
    inner: Arc<RwLock<HashMap<u64, Watched>>>,
    /// A sandbox's init is cloned before its cgroup is watched and never executes: no fork or
    /// exec record teaches who it is, and /proc may be gone by the time its first record is
    /// decoded. The runner knows; it says so here.
    started: Arc<RwLock<FastMap<u32, ProcInfo>>>,
    version: Arc<AtomicU64>,
}

impl SandboxRegistry {
    /// Remembers who `pid` is now, from /proc, for records decoded after it is gone.
    pub fn note_process(&self, pid: u32) {
        let info = ProcInfo::from_proc(pid);
        let mut started = self.started.write().expect("registry lock");
        if started.len() > CACHE_CAP {
            started.clear();
        }
        started.insert(pid, info);
    }

    /// What the runner said of `pid`, if anything.
    pub fn started(&self, pid: u32) -> Option<ProcInfo> {
        self.started
            .read()
            .expect("registry lock")
            .get(&pid)
            .cloned()
    }

    pub fn insert(&self, cgroup_id: u64, sandbox_id: &str) {
        let now = coarse_realtime_ns();
        let mut inner = self.inner.write().expect("registry lock");
        // A cgroup watched again keeps its first start: its files written since still count.
        let since_ns = inner.get(&cgroup_id).map_or(now, |w| w.since_ns);
        inner.insert(
            cgroup_id,
            Watched {
                sandbox_id: Arc::from(sandbox_id),
                since_ns,
            },
        );
        drop(inner);
        self.version.fetch_add(1, Ordering::Release);
    }

    pub fn view(&self) -> RegistryView {
        RegistryView {
            registry: self.clone(),
            seen: u64::MAX,
            local: FastMap::default(),
        }
    }
}

/// The pipeline's copy of the registry: a lookup per record without a lock, refreshed when a
/// watch was added.
pub struct RegistryView {
    registry: SandboxRegistry,
    seen: u64,
    local: FastMap<u64, Watched>,
}

impl RegistryView {
    fn refresh(&mut self) {
        let now = self.registry.version.load(Ordering::Acquire);
        if now != self.seen {
            self.local = self
                .registry
                .inner
                .read()
                .expect("registry lock")
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            self.seen = now;
        }
    }

    pub fn get(&mut self, cgroup_id: u64) -> Option<Arc<str>> {
        self.refresh();
        self.local.get(&cgroup_id).map(|w| w.sandbox_id.clone())
    }

    /// When watched cgroup `cgroup_id` was first watched (CLOCK_REALTIME_COARSE, ns).
    pub fn watched_since(&mut self, cgroup_id: u64) -> Option<i64> {
        self.refresh();
        self.local.get(&cgroup_id).map(|w| w.since_ns)
    }
}

/// CLOCK_REALTIME_COARSE in ns: what the kernel's inode timestamps are taken from (a fine-grained
/// inode time is never earlier than it).
fn coarse_realtime_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_REALTIME_COARSE exists on every supported kernel.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Whether an executable whose inode changed at `exe_ctime_ns` was written after its sandbox was
/// first watched at `watched_since_ns`. Equal counts as after: both clocks tick by the coarse
/// clock's jiffy, and a file written in the watch's first jiffy must not be missed.
pub fn written_since(exe_ctime_ns: i64, watched_since_ns: i64) -> bool {
    exe_ctime_ns >= watched_since_ns
}

pub const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

pub fn family_name(family: u16) -> &'static str {
    match family {
        0 => "unspec",
        AF_UNIX => "unix",
        AF_INET => "inet",
        AF_INET6 => "inet6",
        16 => "netlink",
        17 => "packet",
        40 => "vsock",
        _ => "other",
    }
}

pub fn sock_type_name(sock_type: u32) -> &'static str {
    match sock_type & 0xf {
        1 => "stream",
        2 => "dgram",
        3 => "raw",
        4 => "rdm",
        5 => "seqpacket",
        10 => "packet",
        _ => "other",
    }
}

/// The transport a socket speaks, when its family and type say it.
pub fn protocol_name(domain: u16, sock_type: u32) -> Option<&'static str> {
    match (domain, sock_type & 0xf) {
        (AF_INET | AF_INET6, 1) => Some("tcp"),
        (AF_INET | AF_INET6, 2) => Some("udp"),
        (AF_INET | AF_INET6, 3) => Some("raw"),
        (17, _) => Some("packet"),
        (AF_UNIX, _) => Some("unix"),
        _ => None,
    }
}

/// A decoded socket address: family, printable address, port.
#[derive(Debug, PartialEq, Eq)]
pub struct SockAddr {
    pub family: u16,
    pub addr: Option<String>,
    pub port: Option<u16>,
}

pub fn decode_sockaddr(raw: &[u8]) -> Option<SockAddr> {
    if raw.len() < 2 {
        return None;
    }
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    let port = || raw.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]]));
    Some(match family {
        AF_INET if raw.len() >= 8 => SockAddr {
            family,
            addr: Some(Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]).to_string()),
            port: port(),
        },
        AF_INET6 if raw.len() >= 24 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&raw[8..24]);
            SockAddr {
                family,
                addr: Some(Ipv6Addr::from(octets).to_string()),
                port: port(),
            }
        }
        AF_UNIX => {
            let path = &raw[2..];
            let addr = match path.first() {
                // Abstract socket: a leading NUL, shown the way ss(8) shows it.
                Some(0) => format!("@{}", String::from_utf8_lossy(cstr(&path[1..]))),
                _ => String::from_utf8_lossy(cstr(path)).into_owned(),
            };
            SockAddr {
                family,
                addr: Some(addr),
                port: None,
            }
        }
        _ => SockAddr {
            family,
            addr: None,
            port: None,
        },
    })
}

/// The bytes up to the first NUL.
pub fn cstr(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(n) => &bytes[..n],
        None => bytes,
    }
}

/// open(2) flags as the names a person greps for: `O_WRONLY|O_CREAT|O_TRUNC`.
pub fn open_flags_text(flags: u64) -> String {
    let mut out = String::from(match flags & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    });
    // O_TMPFILE includes O_DIRECTORY's bit; name it once.
    const TMPFILE: u64 = 0o20200000;
    let mut rest = flags & !3;
    if rest & TMPFILE == TMPFILE {
        out.push_str("|O_TMPFILE");
        rest &= !TMPFILE;
    }
    for (bit, name) in [
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o10000, "O_DSYNC"),
        (0o20000, "O_ASYNC"),
        (0o40000, "O_DIRECT"),
        (0o100000, "O_LARGEFILE"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"),
        (0o4000000, "O_SYNC"),
        (0o10000000, "O_PATH"),
    ] {
        if rest & bit != 0 {
            out.push('|');
            out.push_str(name);
            rest &= !bit;
        }
    }
    if rest != 0 {
        out.push_str(&format!("|0x{rest:x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_read_like_the_man_page() {
        assert_eq!(open_flags_text(0), "O_RDONLY");
        assert_eq!(open_flags_text(0o1101), "O_WRONLY|O_CREAT|O_TRUNC");
        assert_eq!(
            open_flags_text(0o2000000 | 0o200000),
            "O_RDONLY|O_DIRECTORY|O_CLOEXEC"
        );
        assert_eq!(open_flags_text(0o20200002), "O_RDWR|O_TMPFILE");
    }

    #[test]
    fn socket_addresses_decode_to_text() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&AF_INET.to_ne_bytes());
        v4[2..4].copy_from_slice(&53u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            decode_sockaddr(&v4),
            Some(SockAddr {
                family: AF_INET,
                addr: Some("127.0.0.1".into()),
                port: Some(53)
            })
        );
        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&AF_INET6.to_ne_bytes());
        v6[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(decode_sockaddr(&v6).unwrap().addr.as_deref(), Some("::1"));
        let mut un = AF_UNIX.to_ne_bytes().to_vec();
        un.extend_from_slice(b"\0hidden\0");
        assert_eq!(
            decode_sockaddr(&un).unwrap().addr.as_deref(),
            Some("@hidden")
        );
    }

    /// A file this process writes now has an inode change time at or after a watch started
    /// just before, on the same clock the registry uses; a file from before does not.
    #[test]
    fn files_written_after_a_watch_starts_are_told_from_older_ones() {
        use std::os::unix::fs::MetadataExt as _;
        let ctime_ns = |m: &fs::Metadata| m.ctime() * 1_000_000_000 + m.ctime_nsec();
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        fs::write(&old, "x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let registry = SandboxRegistry::default();
        registry.insert(7, "sw-test");
        let mut view = registry.view();
        let since = view.watched_since(7).unwrap();
        assert_eq!(view.get(7).as_deref(), Some("sw-test"));
        let new = dir.path().join("new");
        fs::write(&new, "y").unwrap();
        assert!(written_since(ctime_ns(&fs::metadata(&new).unwrap()), since));
        assert!(!written_since(
            ctime_ns(&fs::metadata(&old).unwrap()),
            since
        ));
        // Watching again keeps the first start.
        std::thread::sleep(std::time::Duration::from_millis(30));
        registry.insert(7, "sw-test");
        assert_eq!(view.watched_since(7), Some(since));
        assert_eq!(view.watched_since(8), None);
    }

    #[test]
    fn proc_ppid_reads_our_own_parent() {
        let me = std::process::id();
        assert_eq!(proc_ppid(me), Some(std::os::unix::process::parent_id()));
    }
}
