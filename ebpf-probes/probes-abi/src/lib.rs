//! The kernel/user ABI: the `#[repr(C)]` records sandwatch's kernel programs write into the ring
//! buffer, the keys and values of the maps the collector shares with them, and the syscall numbers
//! the probes dispatch on.
//!
//! This crate says what the kernel recorded and nothing about what it means: the collector
//! translates these records into the typed events and Arrow tables of `sandwatch-schema`. It is
//! `no_std` because the same definitions compile into the BPF object.
#![no_std]

/// Bytes of the task's `comm` (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;
/// Bytes captured of one path, NUL included. Longer paths are cut and flagged
/// [`flags::TRUNC_PATH`]: the record says so rather than pretending to be whole.
pub const PATH_CAP: usize = 512;
/// Bytes captured of argv (NUL-separated). A power of two: the kernel program masks offsets with it.
pub const ARGV_CAP: usize = 1024;
/// Bytes read of one argv element at most; the argv buffer has this much slack past [`ARGV_CAP`].
pub const ARG_CAP: usize = 256;
/// argv elements read at most.
pub const MAX_ARGS: usize = 32;
/// Bytes captured of a socket address (`sockaddr_un` is the largest we decode, 110 bytes).
pub const SOCKADDR_CAP: usize = 112;
/// Bytes captured of a mount's filesystem type.
pub const FSTYPE_CAP: usize = 32;

/// What a record is; the first byte of every record.
pub mod kind {
    pub const EXEC: u8 = 1;
    /// fork/clone, setuid family, ptrace, kill: an [`ArgsRecord`](super::ArgsRecord).
    pub const PROCESS: u8 = 2;
    /// A process (thread group) ended: [`ArgsRecord`](super::ArgsRecord) with code and signal.
    pub const EXIT: u8 = 3;
    /// One-path file syscalls: [`FileRecord`](super::FileRecord).
    pub const FILE: u8 = 4;
    /// Two-path file syscalls (rename, link, symlink, mount): [`File2Record`](super::File2Record).
    pub const FILE2: u8 = 5;
    pub const NET: u8 = 6;
    /// Security-sensitive syscalls and policy refusals: [`ArgsRecord`](super::ArgsRecord).
    pub const SYSCALL: u8 = 7;
    /// A new process (not a thread) was created: an [`ArgsRecord`](super::ArgsRecord) with the
    /// child's pid in `args[0]`, written before the child runs. Not a row: it tells the collector
    /// the child's parent before any of the child's own records arrive.
    pub const FORK: u8 = 8;
    /// Number of kinds + 1: the length of the per-kind drop counter array.
    pub const COUNT: u32 = 9;

    pub fn name(kind: u8) -> &'static str {
        match kind {
            EXEC => "exec",
            PROCESS => "process",
            EXIT => "exit",
            FILE => "file",
            FILE2 => "file2",
            NET => "network",
            SYSCALL => "syscall",
            FORK => "fork",
            _ => "unknown",
        }
    }
}

/// Bits of [`Header::flags`].
pub mod flags {
    /// The first path (or exec filename) did not fit [`PATH_CAP`](super::PATH_CAP).
    pub const TRUNC_PATH: u8 = 1;
    /// The second path did not fit.
    pub const TRUNC_PATH2: u8 = 2;
    /// argv had more than [`MAX_ARGS`](super::MAX_ARGS) elements or bytes than fit.
    pub const TRUNC_ARGV: u8 = 4;
    /// A user-memory read failed (e.g. a bad pointer passed to the syscall): the field is empty.
    pub const READ_FAULT: u8 = 8;
    /// Emitted by a refusal-only probe: the syscall was traced only to catch its `-EPERM`.
    pub const REFUSAL: u8 = 16;
}

/// Keys of the `SETTINGS` array map.
pub mod settings {
    /// Bitmask of the cgroup-tree levels (1..=63) at which a watched cgroup sits; the probes check
    /// a process's ancestors only at these levels.
    pub const WATCH_LEVELS: u32 = 0;
    /// Non-zero: every syscall is counted by the raw `sys_enter` counter, so the traced-syscall
    /// probes must not count again.
    pub const FULL_COUNTING: u32 = 1;
    /// Unread bytes in the ring buffer past which a record wakes the reader. Below it records are
    /// submitted without a wakeup and the collector polls on a short timer: one wakeup per record
    /// would cost a context switch per event.
    pub const WAKEUP_BYTES: u32 = 2;
    /// Bitmask of the cgroup-tree levels (1..=63) at which a cgroup with blocked ports sits; the
    /// port-policy programs check a process's ancestors only at these levels.
    pub const BLOCK_LEVELS: u32 = 3;
    pub const LEN: u32 = 4;
}

/// The start of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub kind: u8,
    pub flags: u8,
    pub _pad: u16,
    /// The syscall number, or -1 for records that do not come from a syscall (process exit).
    pub syscall_nr: i32,
    /// `bpf_ktime_get_boot_ns()` when the syscall returned.
    pub ts_boot_ns: u64,
    /// The cgroup (unified hierarchy) the task was in.
    pub cgroup_id: u64,
    /// The watched cgroup that made this task interesting: the cgroup itself or an ancestor.
    pub watch_id: u64,
    /// Thread-group id (what userspace calls the pid).
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The syscall's return value (>= 0 result, < 0 -errno).
    pub ret: i64,
    pub comm: [u8; COMM_LEN],
}

/// execve/execveat: captured at entry (the old image's memory is gone at exit), sent at exit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecRecord {
    pub header: Header,
    pub argc: u32,
    /// Bytes of `argv` used (NUL-separated elements).
    pub argv_len: u32,
    pub dirfd: i64,
    pub exec_flags: u64,
    pub filename: [u8; PATH_CAP],
    pub argv: [u8; ARGV_CAP + ARG_CAP],
}

/// A syscall described by its raw arguments: process events, exits and sensitive syscalls.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ArgsRecord {
    pub header: Header,
    pub args: [u64; 6],
}

/// open/openat/openat2/creat, unlink, chmod, chown, mkdir, umount.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileRecord {
    pub header: Header,
    pub dirfd: i64,
    /// open flags (or unlinkat/fchmodat/fchownat flags).
    pub flags: u64,
    /// open/creat/mkdir/chmod mode.
    pub mode: u64,
    /// chown owner uid (u64::MAX when not applicable).
    pub owner: u64,
    /// chown group gid (u64::MAX when not applicable).
    pub group: u64,
    /// openat2's `resolve` flags.
    pub resolve: u64,
    pub path: [u8; PATH_CAP],
}

/// rename family (old, new), link/symlink (target, linkpath), mount (source, target, fstype).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct File2Record {
    pub header: Header,
    pub dirfd: i64,
    pub dirfd2: i64,
    pub flags: u64,
    pub path: [u8; PATH_CAP],
    pub path2: [u8; PATH_CAP],
    pub fstype: [u8; FSTYPE_CAP],
}

/// socket, connect, accept/accept4, bind, listen, sendto/sendmsg with a destination.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NetRecord {
    pub header: Header,
    pub fd: i64,
    /// socket: domain; listen: backlog; accept4: flags; sendto/sendmsg: flags.
    pub arg: u64,
    /// socket: type; sendto: length requested.
    pub arg2: u64,
    /// Bytes of `addr` that hold the address (0 when none was given or could be read).
    pub addr_len: u32,
    pub _pad: u32,
    pub addr: [u8; SOCKADDR_CAP],
}

/// Key of the `BLOCKED_PORTS` map: connect() and sendmsg()/sendto() from the processes of
/// `cgroup_id` (or of its descendants) to destination `port` are refused with EPERM.
///
/// Sixteen bytes with the padding spelled out: the kernel hashes every byte of a key, so both
/// sides must write the same zeroes where a compiler would leave padding undefined.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockedPortKey {
    /// A cgroup id (unified hierarchy): the inode of its directory.
    pub cgroup_id: u64,
    /// Destination port, host byte order.
    pub port: u16,
    pub _pad: [u8; 6],
}

impl BlockedPortKey {
    pub const fn new(cgroup_id: u64, port: u16) -> Self {
        Self {
            cgroup_id,
            port,
            _pad: [0; 6],
        }
    }
}

// The layout both sides agree on; a change here changes the map's key size.
const _: () = {
    assert!(core::mem::size_of::<BlockedPortKey>() == 16);
    assert!(core::mem::align_of::<BlockedPortKey>() == 8);
    assert!(core::mem::offset_of!(BlockedPortKey, cgroup_id) == 0);
    assert!(core::mem::offset_of!(BlockedPortKey, port) == 8);
    assert!(core::mem::offset_of!(BlockedPortKey, _pad) == 10);
};

/// Entries of the `BLOCKED_PORTS` map: (cgroup, port) pairs over all sandboxes at once.
pub const BLOCKED_PORTS_CAP: u32 = 16384;

/// Watched cgroups that can hold a counter slot at once (the `COUNTS` array's rows).
pub const COUNT_SLOTS: u32 = 1024;
/// Counters per slot: one per syscall number (x86_64 numbers are below 512).
pub const NR_SLOTS: u32 = 512;

/// One syscall the probes trace: its tracepoint name, its number and the record kind it yields.
#[derive(Clone, Copy, Debug)]
pub struct Traced {
    pub name: &'static str,
    pub nr: i64,
    pub kind: u8,
}

macro_rules! traced_syscalls {
    ($( ($konst:ident, $name:literal, $nr:literal, $kind:ident) ),* $(,)?) => {
        /// Syscall numbers the probes dispatch on. The kernel programs see the native numbers of
        /// the machine they run on; only x86_64 is mapped so far.
        pub mod nr {
            $( pub const $konst: i64 = $nr; )*
        }

        /// Every syscall with a probe: the exit probe of `kind`, plus an entry probe for exec
        /// (arguments) and only an entry probe for `exit`/`exit_group` (they never return).
        pub const TRACED: &[Traced] = &[
            $( Traced { name: $name, nr: $nr, kind: kind::$kind }, )*
        ];
    };
}

#[cfg(any(target_arch = "x86_64", bpf_target_arch = "x86_64"))]
traced_syscalls! {
    (OPEN, "open", 2, FILE),
    (SOCKET, "socket", 41, NET),
    (CONNECT, "connect", 42, NET),
    (ACCEPT, "accept", 43, NET),
    (SENDTO, "sendto", 44, NET),
    (SENDMSG, "sendmsg", 46, NET),
    (BIND, "bind", 49, NET),
    (LISTEN, "listen", 50, NET),
    (CLONE, "clone", 56, PROCESS),
    (FORK, "fork", 57, PROCESS),
    (VFORK, "vfork", 58, PROCESS),
    (EXECVE, "execve", 59, EXEC),
    (EXIT, "exit", 60, EXIT),
    (KILL, "kill", 62, PROCESS),
    (RENAME, "rename", 82, FILE2),
    (MKDIR, "mkdir", 83, FILE),
    (RMDIR, "rmdir", 84, FILE),
    (CREAT, "creat", 85, FILE),
    (LINK, "link", 86, FILE2),
    (UNLINK, "unlink", 87, FILE),
    (SYMLINK, "symlink", 88, FILE2),
    (CHMOD, "chmod", 90, FILE),
    (FCHMOD, "fchmod", 91, FILE),
    (CHOWN, "chown", 92, FILE),
    (FCHOWN, "fchown", 93, FILE),
    (LCHOWN, "lchown", 94, FILE),
    (PTRACE, "ptrace", 101, PROCESS),
    (SETUID, "setuid", 105, PROCESS),
    (SETGID, "setgid", 106, PROCESS),
    (SETREUID, "setreuid", 113, PROCESS),
    (SETREGID, "setregid", 114, PROCESS),
    (SETRESUID, "setresuid", 117, PROCESS),
    (SETRESGID, "setresgid", 119, PROCESS),
    (SETFSUID, "setfsuid", 122, PROCESS),
    (SETFSGID, "setfsgid", 123, PROCESS),
    (PERSONALITY, "personality", 135, SYSCALL),
    (PIVOT_ROOT, "pivot_root", 155, SYSCALL),
    (CHROOT, "chroot", 161, SYSCALL),
    (MOUNT, "mount", 165, FILE2),
    (UMOUNT2, "umount2", 166, FILE),
    (INIT_MODULE, "init_module", 175, SYSCALL),
    (TKILL, "tkill", 200, PROCESS),
    (EXIT_GROUP, "exit_group", 231, EXIT),
    (TGKILL, "tgkill", 234, PROCESS),
    (KEXEC_LOAD, "kexec_load", 246, SYSCALL),
    (ADD_KEY, "add_key", 248, SYSCALL),
    (REQUEST_KEY, "request_key", 249, SYSCALL),
    (KEYCTL, "keyctl", 250, SYSCALL),
    (OPENAT, "openat", 257, FILE),
    (MKDIRAT, "mkdirat", 258, FILE),
    (FCHOWNAT, "fchownat", 260, FILE),
    (UNLINKAT, "unlinkat", 263, FILE),
    (RENAMEAT, "renameat", 264, FILE2),
    (LINKAT, "linkat", 265, FILE2),
    (SYMLINKAT, "symlinkat", 266, FILE2),
    (FCHMODAT, "fchmodat", 268, FILE),
    (UNSHARE, "unshare", 272, SYSCALL),
    (ACCEPT4, "accept4", 288, NET),
    (PERF_EVENT_OPEN, "perf_event_open", 298, SYSCALL),
    (SETNS, "setns", 308, SYSCALL),
    (FINIT_MODULE, "finit_module", 313, SYSCALL),
    (RENAMEAT2, "renameat2", 316, FILE2),
    (KEXEC_FILE_LOAD, "kexec_file_load", 320, SYSCALL),
    (BPF, "bpf", 321, SYSCALL),
    (EXECVEAT, "execveat", 322, EXEC),
    (USERFAULTFD, "userfaultfd", 323, SYSCALL),
    (CLONE3, "clone3", 435, PROCESS),
    (OPENAT2, "openat2", 437, FILE),
    (FCHMODAT2, "fchmodat2", 452, FILE),
}

#[cfg(not(any(target_arch = "x86_64", bpf_target_arch = "x86_64")))]
compile_error!("sandwatch's probes map syscall numbers for x86_64 only so far");

/// Signals whose default action ends the process (terminate or core dump), as a bitmask by number.
pub const FATAL_BY_DEFAULT: u64 = {
    let mut m = 0u64;
    let sigs = [
        1u64, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 24, 25, 26, 27, 29, 30, 31,
    ];
    let mut i = 0;
    while i < sigs.len() {
        m |= 1 << sigs[i];
        i += 1;
    }
    m
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The key the collector writes is byte for byte the key the kernel program builds: same
    /// size, the port in host order at offset 8, zero padding.
    #[test]
    fn blocked_port_key_layout_is_fixed() {
        assert_eq!(core::mem::size_of::<BlockedPortKey>(), 16);
        let key = BlockedPortKey::new(0x0102_0304_0506_0708, 22);
        // SAFETY: a 16-byte repr(C) value with no undefined padding, read as bytes.
        let bytes: [u8; 16] = unsafe { core::mem::transmute(key) };
        let mut want = [0u8; 16];
        want[..8].copy_from_slice(&0x0102_0304_0506_0708u64.to_ne_bytes());
        want[8..10].copy_from_slice(&22u16.to_ne_bytes());
        assert_eq!(bytes, want);
    }
}
