//! Kernel records → typed events: reads the ABI structs out of ring-buffer bytes, enriches them
//! and appends one row to the right table.

use std::{borrow::Cow, collections::HashSet, mem::size_of, sync::Arc};

use sandwatch_probes_abi::{
    ArgsRecord, ExecRecord, File2Record, FileRecord, Header, KillRecord, NetRecord, TRACED, facts,
    flags, kill_cause, kind, nr,
};
use sandwatch_schema::{Common, FileEvent, NetworkEvent, ProcessEvent, SyscallEvent};
use tokio::sync::mpsc::UnboundedSender;

use crate::{
    CollectorError,
    batcher::Batchers,
    clock::BootClock,
    enrich::{
        FastMap, ProcessTable, RegistryView, SandboxRegistry, SockInfo, SocketTable, cstr,
        decode_sockaddr, family_name, open_flags_text, proc_cwd, protocol_name, sock_type_name,
        written_since,
    },
};

const EPERM: i64 = 1;
const O_CREAT: u64 = 0o100;
const O_TMPFILE: u64 = 0o20000000;

/// Why a kill order fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillCause {
    /// A syscall order (`Collector::kill_on_syscalls`), at the syscall's entry.
    Syscall,
    /// A path order (`Collector::kill_on_paths`), as the file syscall returned: the path it
    /// matched (at most the bytes the kernel sees of it), and whether that is the path of the
    /// file the open's new descriptor names (`opened`) rather than the one the process gave.
    Path { path: String, opened: bool },
}

/// A process the kernel killed on a kill order (see `Collector::kill_on_syscalls` and
/// `Collector::kill_on_paths`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelKill {
    /// When the syscall was entered (a syscall order) or returned (a path order: the same time
    /// as the syscall's row), ns since the Unix epoch.
    pub time_ns: i64,
    /// The sandbox of the watched cgroup the order was given for (None if it is not watched).
    pub sandbox_id: Option<String>,
    /// The process's own cgroup.
    pub cgroup_id: u64,
    /// The cgroup the order was given for: `cgroup_id` itself or an ancestor.
    pub order_cgroup_id: u64,
    /// Host pid (thread group) and thread id.
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub syscall: String,
    pub syscall_nr: i32,
    /// The syscall's arguments as passed.
    pub args: [u64; 6],
    pub rule_id: u32,
    pub cause: KillCause,
    /// The syscall's result for a path order; None for a syscall order (it had not run).
    pub ret: Option<i64>,
    /// None: SIGKILL was sent. Some(errno): the kernel refused to send it (the process lives on,
    /// and user space must act).
    pub signal_error: Option<i32>,
}

/// A record that could not be decoded: counted as a collector-side drop, never ignored.
#[derive(Debug)]
pub struct Undecodable {
    pub kind: u8,
}

pub struct Decoder {
    host: Arc<str>,
    pub clock: BootClock,
    registry: RegistryView,
    /// `flags_text` per distinct flags value: a handful of values, millions of rows.
    flag_names: FastMap<u64, String>,
    procs: ProcessTable,
    sockets: SocketTable,
    /// Syscall numbers on the policy's deny-list: their -EPERM is a refusal.
    refusals: HashSet<i64>,
    /// Where kernel kills go, as soon as they are decoded.
    kills: UnboundedSender<KernelKill>,
}

/// The record at the start of `bytes`, borrowed in place: records are up to 2 KiB, and copying
/// each one out of the ring buffer was the collector's largest single cost.
fn view<T: Copy>(bytes: &[u8]) -> Option<Cow<'_, T>> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    let ptr = bytes.as_ptr().cast::<T>();
    // SAFETY: length checked; the ABI structs are plain #[repr(C)] data valid for any bit
    // pattern. The ring buffer hands out 8-byte aligned records; should one not be aligned, it
    // is copied instead.
    Some(if ptr.is_aligned() {
        Cow::Borrowed(unsafe { &*ptr })
    } else {
        Cow::Owned(unsafe { ptr.read_unaligned() })
    })
}

fn text(bytes: &[u8]) -> Cow<'_, str> {
    let bytes = cstr(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

fn syscall_name(syscall_nr: i32) -> &'static str {
    usize::try_from(syscall_nr)
        .ok()
        .and_then(syscalls::Sysno::new)
        .map_or("unknown", |s| s.name())
}

/// What an exec record says of the process after a successful exec, as column values: None
/// where the probe could not read it (see [`facts`]).
#[derive(Debug, Default, PartialEq, Eq)]
struct ExecFacts {
    tty: Option<u32>,
    loginuid: Option<i64>,
    /// (effective, permitted, inheritable)
    caps: Option<(u64, u64, u64)>,
    exe_from_memfd: Option<bool>,
    exe_written_in_sandbox: Option<bool>,
    exe_ctime_ns: Option<i64>,
}

impl ExecFacts {
    /// `resolved_exe`: the executable's path from /proc, when the exec succeeded; it decides
    /// `exe_from_memfd` only when the probe could not read the executable's name itself.
    /// `watched_since`: when the record's watched cgroup was first watched.
    fn of(r: &ExecRecord, resolved_exe: Option<&str>, watched_since: Option<i64>) -> Self {
        if r.header.ret != 0 {
            return Self::default();
        }
        let has = |bit: u32| r.facts & bit != 0;
        let exe_ctime_ns = has(facts::EXE_CTIME).then(|| {
            r.exe_ctime_sec
                .saturating_mul(1_000_000_000)
                .saturating_add(r.exe_ctime_nsec as i64)
        });
        Self {
            tty: has(facts::TTY).then_some(r.tty),
            // Falco's user.loginuid: the kernel's "unset" (uid_t)-1 reads as -1.
            loginuid: has(facts::LOGINUID).then_some(if r.loginuid == u32::MAX {
                -1
            } else {
                i64::from(r.loginuid)
            }),
            caps: has(facts::CAPS).then_some((r.cap_effective, r.cap_permitted, r.cap_inheritable)),
            exe_from_memfd: if has(facts::EXE_NAME) {
                Some(has(facts::EXE_MEMFD))
            } else {
                // /proc names a memfd executable "/memfd:NAME (deleted)".
                resolved_exe.map(|exe| exe.starts_with("/memfd:"))
            },
            exe_written_in_sandbox: exe_ctime_ns
                .zip(watched_since)
                .map(|(ctime, since)| written_since(ctime, since)),
            exe_ctime_ns,
        }
    }
}

impl Decoder {
    pub fn new(
        host: &str,
        registry: SandboxRegistry,
        refusals: HashSet<i64>,
        kills: UnboundedSender<KernelKill>,
    ) -> Self {
        Self {
            host: Arc::from(host),
            clock: BootClock::now(),
            registry: registry.view(),
            flag_names: FastMap::default(),
            procs: ProcessTable::new(registry),
            sockets: SocketTable::default(),
            refusals,
            kills,
        }
    }

    /// Decodes one ring-buffer record into a row of its table.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        out: &mut Batchers,
    ) -> Result<Result<(), Undecodable>, CollectorError> {
        let Some(h) = view::<Header>(bytes) else {
            return Ok(Err(Undecodable { kind: 0 }));
        };
        let bad = Undecodable { kind: h.kind };
        match h.kind {
            kind::EXEC => match view::<ExecRecord>(bytes) {
                Some(r) => self.exec(&r, out).map(Ok),
                None => Ok(Err(bad)),
            },
            kind::PROCESS | kind::EXIT => match view::<ArgsRecord>(bytes) {
                Some(r) => self.process(&r, out).map(Ok),
                None => Ok(Err(bad)),
            },
            kind::FORK => match view::<ArgsRecord>(bytes) {
                Some(r) => {
                    self.procs.on_fork(r.header.pid, r.args[0] as u32);
                    Ok(Ok(()))
                }
                None => Ok(Err(bad)),
            },
            kind::SYSCALL => match view::<ArgsRecord>(bytes) {
                Some(r) => self.syscall(&r, out).map(Ok),
                None => Ok(Err(bad)),
            },
            kind::FILE => match view::<FileRecord>(bytes) {
                Some(r) => self.file(&r, out).map(Ok),
                None => Ok(Err(bad)),
            },
            kind::FILE2 => match view::<File2Record>(bytes) {
                Some(r) => self.file2(&r, out).map(Ok),
                None => Ok(Err(bad)),
            },
            kind::NET => match view::<NetRecord>(bytes) {
                Some(r) => self.net(&r, out).map(Ok),
                None => Ok(Err(bad)),
            },
            kind::KILL => match view::<KillRecord>(bytes) {
                Some(r) => self.kill(&r, out).map(Ok),
                None => Ok(Err(bad)),
            },
            _ => Ok(Err(bad)),
        }
    }

    /// The common columns, with the strings they borrow kept alive by the caller.
    fn common<'a>(
        &'a self,
        h: &Header,
        comm: &'a str,
        sandbox: &'a Option<Arc<str>>,
        exe: &'a Option<Arc<str>>,
        ppid: Option<u32>,
    ) -> Common<'a> {
        let syscall = (h.syscall_nr >= 0).then(|| syscall_name(h.syscall_nr));
        Common {
            time_ns: self.clock.to_unix_ns(h.ts_boot_ns),
            host: &self.host,
            sandbox_id: sandbox.as_deref(),
            cgroup_id: h.cgroup_id,
            pid: h.pid,
            tid: h.tid,
            ppid,
            uid: h.uid,
            gid: h.gid,
            comm,
            exe: exe.as_deref(),
            event: syscall.unwrap_or("exit"),
            syscall,
            ret: syscall.map(|_| h.ret),
        }
    }

    /// Looks up what the row needs besides the record: sandbox, executable, parent.
    fn context(&mut self, h: &Header) -> (Option<Arc<str>>, Option<Arc<str>>, Option<u32>) {
        let info = self.procs.get(h.pid);
        let (exe, ppid) = (info.exe.clone(), info.ppid);
        (self.registry.get(h.watch_id), exe, ppid)
    }

    fn exec(&mut self, r: &ExecRecord, out: &mut Batchers) -> Result<(), CollectorError> {
        let h = r.header;
        let filename = text(&r.filename);
        let resolved_exe = (h.ret == 0).then(|| self.procs.on_exec(h.pid, &filename));
        let (sandbox, exe, ppid) = self.context(&h);
        let comm = text(&h.comm);
        let cwd = if h.ret == 0 { proc_cwd(h.pid) } else { None };
        let argv_len = (r.argv_len as usize).min(r.argv.len());
        let watched_since = self.registry.watched_since(h.watch_id);
        let common = self.common(&h, &comm, &sandbox, &exe, ppid);
        let exec_facts = ExecFacts::of(r, resolved_exe.as_deref(), watched_since);
        out.process(&ProcessEvent {
            common,
            filename: Some(&filename),
            argv: Some(&r.argv[..argv_len]),
            argv_truncated: Some(h.flags & flags::TRUNC_ARGV != 0),
            cwd: cwd.as_deref(),
            tty: exec_facts.tty,
            loginuid: exec_facts.loginuid,
            cap_effective: exec_facts.caps.map(|c| c.0),
            cap_permitted: exec_facts.caps.map(|c| c.1),
            cap_inheritable: exec_facts.caps.map(|c| c.2),
            exe_from_memfd: exec_facts.exe_from_memfd,
            exe_written_in_sandbox: exec_facts.exe_written_in_sandbox,
            exe_ctime_ns: exec_facts.exe_ctime_ns,
            ..Default::default()
        })
    }

    fn process(&mut self, r: &ArgsRecord, out: &mut Batchers) -> Result<(), CollectorError> {
        let h = r.header;
        let a = r.args;
        let syscall = h.syscall_nr as i64;
        // The parent of a new process comes from its sched_process_fork record, in host pids: the
        // clone's return value is the child's pid in the caller's pid namespace (a sandbox's).
        let (sandbox, exe, ppid) = self.context(&h);
        let comm = text(&h.comm);
        let common = self.common(&h, &comm, &sandbox, &exe, ppid);
        let signed = |v: u64| v as u32 as i32 as i64;
        let ids: Vec<i64>;
        let mut e = ProcessEvent {
            common,
            ..Default::default()
        };
        if h.kind == kind::EXIT {
            // Prefer the status the process gave exit_group: a fatal signal recorded after it
            // is the group exit reaching the other threads.
            if a[0] != u64::MAX {
                e.exit_code = Some(a[0] as i32);
            } else if a[1] != 0 {
                e.exit_signal = Some(a[1] as i32);
            }
        } else {
            match syscall {
                nr::CLONE | nr::CLONE3 | nr::FORK | nr::VFORK => {
                    e.clone_flags = Some(match syscall {
                        nr::FORK => libc::SIGCHLD as u64,
                        nr::VFORK => (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64,
                        _ => a[0],
                    });
                    e.child_pid = (h.ret > 0).then_some(h.ret as u32);
                }
                nr::PTRACE => {
                    e.ptrace_request = Some(a[0] as i64);
                    e.target_pid = Some(signed(a[1]));
                }
                nr::KILL | nr::TKILL => {
                    e.target_pid = Some(signed(a[0]));
                    e.signal = Some(a[1] as i32);
                }
                nr::TGKILL => {
                    e.target_pid = Some(signed(a[0]));
                    e.signal = Some(a[2] as i32);
                }
                _ => {
                    let n = match syscall {
                        nr::SETRESUID | nr::SETRESGID => 3,
                        nr::SETREUID | nr::SETREGID => 2,
                        _ => 1,
                    };
                    ids = a[..n].iter().map(|&v| signed(v)).collect();
                    e.id_args = Some(&ids);
                }
            }
        }
        out.process(&e)?;
        if h.kind == kind::EXIT {
            self.procs.on_exit(h.pid);
            self.sockets.forget_process(h.pid);
        }
        Ok(())
    }

    fn syscall(&mut self, r: &ArgsRecord, out: &mut Batchers) -> Result<(), CollectorError> {
        let h = r.header;
        let (sandbox, exe, ppid) = self.context(&h);
        let comm = text(&h.comm);
        let common = self.common(&h, &comm, &sandbox, &exe, ppid);
        let refusal_only = h.flags & flags::REFUSAL != 0;
        out.syscall(&SyscallEvent {
            common,
            // A refusal-only probe has no entry probe, hence no arguments.
            args: (!refusal_only).then_some(&r.args[..]),
            refused: h.ret == -EPERM
                && (refusal_only || self.refusals.contains(&(h.syscall_nr as i64))),
        })
    }

    /// A kill order fired: reported at once to whoever takes kernel kills. The syscall's own row
    /// comes from its exit probe when the probes trace it; otherwise this record is the only
    /// trace of the attempt, and becomes a `syscall_events` row with its arguments and no result
    /// (the process died before seeing one).
    fn kill(&mut self, r: &KillRecord, out: &mut Batchers) -> Result<(), CollectorError> {
        let h = r.header;
        let (sandbox, exe, ppid) = self.context(&h);
        let comm = text(&h.comm);
        let name = syscall_name(h.syscall_nr);
        // A closed receiver (nobody takes kills) is not an error: the row below still records it.
        let _ = self.kills.send(KernelKill {
            time_ns: self.clock.to_unix_ns(h.ts_boot_ns),
            sandbox_id: sandbox.as_deref().map(str::to_owned),
            cgroup_id: h.cgroup_id,
            order_cgroup_id: h.watch_id,
            pid: h.pid,
            tid: h.tid,
            uid: h.uid,
            comm: comm.to_string(),
            exe: exe.as_deref().map(str::to_owned),
            syscall: name.to_owned(),
            syscall_nr: h.syscall_nr,
            args: r.args,
            rule_id: r.rule_id,
            cause: match r.cause {
                kill_cause::SYSCALL => KillCause::Syscall,
                cause => KillCause::Path {
                    path: text(&r.path).into_owned(),
                    opened: cause == kill_cause::OPENED_PATH,
                },
            },
            ret: (r.cause != kill_cause::SYSCALL).then_some(h.ret),
            signal_error: (r.signal_result < 0).then_some(-r.signal_result),
        });
        if TRACED.iter().any(|t| t.nr == h.syscall_nr as i64) {
            return Ok(());
        }
        let mut common = self.common(&h, &comm, &sandbox, &exe, ppid);
        common.ret = None;
        out.syscall(&SyscallEvent {
            common,
            args: Some(&r.args[..]),
            refused: false,
        })
    }

    fn file(&mut self, r: &FileRecord, out: &mut Batchers) -> Result<(), CollectorError> {
        let h = r.header;
        let syscall = h.syscall_nr as i64;
        let (sandbox, exe, ppid) = self.context(&h);
        let comm = text(&h.comm);
        let path = text(&r.path);
        let is_open = matches!(syscall, nr::OPEN | nr::OPENAT | nr::OPENAT2 | nr::CREAT);
        if is_open && !self.flag_names.contains_key(&r.flags) {
            self.flag_names.insert(r.flags, open_flags_text(r.flags));
        }
        let common = self.common(&h, &comm, &sandbox, &exe, ppid);
        let has_path = !matches!(syscall, nr::FCHMOD | nr::FCHOWN);
        let flags_text = if is_open {
            self.flag_names.get(&r.flags).map(String::as_str)
        } else {
            None
        };
        let creates = r.flags & (O_CREAT | O_TMPFILE) != 0;
        let mode = match syscall {
            _ if is_open => creates.then_some(r.mode as u32),
            nr::CHMOD | nr::FCHMOD | nr::FCHMODAT | nr::FCHMODAT2 | nr::MKDIR | nr::MKDIRAT => {
                Some(r.mode as u32)
            }
            _ => None,
        };
        let has_flags = is_open
            || matches!(
                syscall,
                nr::UNLINKAT | nr::FCHMODAT2 | nr::FCHOWNAT | nr::UMOUNT2
            );
        let owner = |v: u64| (v != u64::MAX).then_some(v as u32 as i32 as i64);
        out.file(&FileEvent {
            common,
            path: has_path.then_some(&*path),
            path2: None,
            path_truncated: h.flags & flags::TRUNC_PATH != 0,
            dirfd: Some(r.dirfd as i32),
            flags: has_flags.then_some(r.flags as i64),
            flags_text,
            mode,
            owner_uid: owner(r.owner),
            owner_gid: owner(r.group),
            fstype: None,
        })
    }

    fn file2(&mut self, r: &File2Record, out: &mut Batchers) -> Result<(), CollectorError> {
        let h = r.header;
        let syscall = h.syscall_nr as i64;
        let (sandbox, exe, ppid) = self.context(&h);
        let comm = text(&h.comm);
        let (path, path2, fstype) = (text(&r.path), text(&r.path2), text(&r.fstype));
        let common = self.common(&h, &comm, &sandbox, &exe, ppid);
        let is_mount = syscall == nr::MOUNT;
        out.file(&FileEvent {
            common,
            path: Some(&path),
            path2: Some(&path2),
            path_truncated: h.flags & (flags::TRUNC_PATH | flags::TRUNC_PATH2) != 0,
            dirfd: Some(r.dirfd as i32),
            flags: matches!(syscall, nr::RENAMEAT2 | nr::LINKAT | nr::MOUNT)
                .then_some(r.flags as i64),
            flags_text: None,
            mode: None,
            owner_uid: None,
            owner_gid: None,
            fstype: (is_mount && !fstype.is_empty()).then_some(&*fstype),
        })
    }

    fn net(&mut self, r: &NetRecord, out: &mut Batchers) -> Result<(), CollectorError> {
        let h = r.header;
        let syscall = h.syscall_nr as i64;
        let addr = decode_sockaddr(&r.addr[..(r.addr_len as usize).min(r.addr.len())]);
        let ok = h.ret >= 0;
        // Learn about the socket first, so this very row can say what it is.
        match syscall {
            nr::SOCKET if ok => self.sockets.created(
                h.pid,
                h.ret,
                SockInfo {
                    domain: Some(r.arg as u16),
                    sock_type: Some(r.arg2 as u32),
                    local: None,
                },
            ),
            nr::BIND if ok => {
                if let Some(a) = &addr {
                    let s = self.sockets.entry(h.pid, r.fd);
                    s.domain.get_or_insert(a.family);
                    s.local = a.addr.clone().map(|ad| (ad, a.port.filter(|p| *p != 0)));
                }
            }
            _ => {}
        }
        let sock = self.sockets.get(h.pid, r.fd).cloned().unwrap_or_default();
        if matches!(syscall, nr::ACCEPT | nr::ACCEPT4) && ok {
            // The accepted connection: same family, a stream, the listener's local address.
            self.sockets.created(
                h.pid,
                h.ret,
                SockInfo {
                    domain: sock.domain,
                    sock_type: Some(1),
                    local: sock.local.clone(),
                },
            );
        }
        let (sandbox, exe, ppid) = self.context(&h);
        let comm = text(&h.comm);
        let common = self.common(&h, &comm, &sandbox, &exe, ppid);
        // A socket() row says what was asked for from its own arguments, refused or not: a
        // refused raw or packet socket is what the rules look for, and it has no fd to remember.
        let (family, sock_type) = if syscall == nr::SOCKET {
            (Some(r.arg as u16), Some(r.arg2 as u32))
        } else {
            (
                addr.as_ref().map(|a| a.family).or(sock.domain),
                sock.sock_type,
            )
        };
        let remote = addr.as_ref().and_then(|a| a.addr.as_deref());
        let remote_port = addr.as_ref().and_then(|a| a.port);
        let local = sock.local.as_ref().map(|(a, p)| (a.as_str(), *p));
        let mut e = NetworkEvent {
            common,
            fd: Some(if syscall == nr::SOCKET { h.ret } else { r.fd }),
            family: family.map(family_name),
            sock_type: sock_type.map(sock_type_name),
            protocol: family.zip(sock_type).and_then(|(f, t)| protocol_name(f, t)),
            ..Default::default()
        };
        match syscall {
            nr::CONNECT => (e.daddr, e.dport) = (remote, remote_port),
            nr::SENDTO | nr::SENDMSG => {
                (e.daddr, e.dport) = (remote, remote_port);
                e.bytes = ok.then_some(h.ret);
            }
            nr::BIND => (e.saddr, e.sport) = (remote, remote_port),
            nr::LISTEN => (e.saddr, e.sport) = (local.map(|l| l.0), local.and_then(|l| l.1)),
            nr::ACCEPT | nr::ACCEPT4 => {
                (e.saddr, e.sport) = (remote, remote_port);
                (e.daddr, e.dport) = (local.map(|l| l.0), local.and_then(|l| l.1));
            }
            _ => {}
        }
        out.network(&e)
    }
}

#[cfg(test)]
mod tests {
    use sandwatch_probes_abi::TRACED;

    use super::*;

    fn exec_record(ret: i64, facts_read: u32) -> ExecRecord {
        // SAFETY: a plain repr(C) record, valid all zeroes.
        let mut r: ExecRecord = unsafe { std::mem::zeroed() };
        r.header.kind = kind::EXEC;
        r.header.ret = ret;
        r.facts = facts_read;
        r.tty = 34817;
        r.loginuid = u32::MAX;
        r.cap_effective = 1 << 21;
        r.cap_permitted = 3 << 20;
        r.cap_inheritable = 0;
        r.exe_ctime_sec = 1_700_000_000;
        r.exe_ctime_nsec = 5;
        r
    }

    #[test]
    fn exec_facts_become_columns_only_where_read() {
        let all = facts::TTY
            | facts::CAPS
            | facts::LOGINUID
            | facts::EXE_NAME
            | facts::EXE_MEMFD
            | facts::EXE_CTIME;
        let ctime = 1_700_000_000_000_000_005;
        assert_eq!(
            ExecFacts::of(&exec_record(0, all), Some("/bin/true"), Some(ctime)),
            ExecFacts {
                tty: Some(34817),
                loginuid: Some(-1),
                caps: Some((1 << 21, 3 << 20, 0)),
                exe_from_memfd: Some(true),
                exe_written_in_sandbox: Some(true),
                exe_ctime_ns: Some(ctime),
            },
            "the probe's name check wins over /proc's path"
        );
        let older = ExecFacts::of(&exec_record(0, all), None, Some(ctime + 1));
        assert_eq!(older.exe_written_in_sandbox, Some(false));
        let unwatched = ExecFacts::of(&exec_record(0, all), None, None);
        assert_eq!(unwatched.exe_written_in_sandbox, None);

        let nothing = ExecFacts::of(&exec_record(0, 0), Some("/memfd:x (deleted)"), Some(0));
        assert_eq!(
            nothing,
            ExecFacts {
                exe_from_memfd: Some(true),
                ..Default::default()
            },
            "unread facts are null; memfd falls back to the path /proc gave"
        );
        assert_eq!(
            ExecFacts::of(&exec_record(0, 0), Some("/usr/bin/true"), None).exe_from_memfd,
            Some(false)
        );
        assert_eq!(
            ExecFacts::of(&exec_record(-2, all), None, Some(0)),
            ExecFacts::default(),
            "a failed exec changed nothing: no facts"
        );
        let mut uid = exec_record(0, facts::LOGINUID);
        uid.loginuid = 1000;
        assert_eq!(ExecFacts::of(&uid, None, None).loginuid, Some(1000));
    }

    /// The kernel programs dispatch on the ABI's syscall numbers; they must be this machine's.
    #[test]
    fn abi_syscall_numbers_match_the_architecture() {
        for t in TRACED {
            assert_eq!(syscall_name(t.nr as i32), t.name, "syscall number {}", t.nr);
        }
    }
}
