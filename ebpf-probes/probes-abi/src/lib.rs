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
    /// A kill order fired: the task was sent SIGKILL at the entry of an ordered syscall. A
    /// [`KillRecord`](super::KillRecord), submitted with a wakeup so the reader acts at once.
    pub const KILL: u8 = 9;
    /// Number of kinds + 1: the length of the per-kind drop counter array.
    pub const COUNT: u32 = 10;

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
            KILL => "kill",
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

    // Byte offsets of the kernel struct fields the exec probe reads after a successful exec
    // (aya-ebpf has no CO-RE relocations: the collector finds them in the running kernel's BTF at
    // load time). [`OFFSET_UNKNOWN`](super::OFFSET_UNKNOWN) where this kernel lacks the field:
    // the fact it serves is then not read, and its column is null.
    /// `task_struct.signal`
    pub const TASK_SIGNAL: u32 = 4;
    /// `signal_struct.tty`
    pub const SIGNAL_TTY: u32 = 5;
    /// `tty_struct.index`
    pub const TTY_INDEX: u32 = 6;
    /// `tty_struct.driver`
    pub const TTY_DRIVER: u32 = 7;
    /// `tty_driver.major`
    pub const DRIVER_MAJOR: u32 = 8;
    /// `tty_driver.minor_start`
    pub const DRIVER_MINOR_START: u32 = 9;
    /// `task_struct.cred`
    pub const TASK_CRED: u32 = 10;
    /// `cred.cap_inheritable`
    pub const CRED_CAP_INHERITABLE: u32 = 11;
    /// `cred.cap_permitted`
    pub const CRED_CAP_PERMITTED: u32 = 12;
    /// `cred.cap_effective`
    pub const CRED_CAP_EFFECTIVE: u32 = 13;
    /// `task_struct.loginuid` (kernels built with CONFIG_AUDIT only)
    pub const TASK_LOGINUID: u32 = 14;
    /// `task_struct.mm`
    pub const TASK_MM: u32 = 15;
    /// `mm_struct.exe_file`
    pub const MM_EXE_FILE: u32 = 16;
    /// `file.f_path.dentry`
    pub const FILE_DENTRY: u32 = 17;
    /// `dentry.d_name.name`
    pub const DENTRY_NAME: u32 = 18;
    /// `file.f_inode`
    pub const FILE_INODE: u32 = 19;
    /// `inode.i_ctime_sec` (6.11 and later; `__i_ctime.tv_sec` or `i_ctime.tv_sec` before)
    pub const INODE_CTIME_SEC: u32 = 20;
    /// `inode.i_ctime_nsec` (or the `tv_nsec` of the older timespec64)
    pub const INODE_CTIME_NSEC: u32 = 21;
    /// The first offset key; the offsets run to [`INODE_CTIME_NSEC`].
    pub const FIRST_OFFSET: u32 = TASK_SIGNAL;
    /// Bitmask of the cgroup-tree levels (1..=63) at which a cgroup with kill orders sits; the
    /// kill program checks a process's ancestors only at these levels.
    pub const KILL_LEVELS: u32 = 22;
    /// Bitmask of the cgroup-tree levels (1..=63) at which a cgroup with path kill orders sits;
    /// the file exit probes check a process's ancestors only at these levels (none: no check).
    pub const PATH_KILL_LEVELS: u32 = 23;

    // Byte offsets of what the file exit probes follow to rebuild the path an opened descriptor
    // names (path kill orders decide on it), found in BTF like the exec facts' offsets. One
    // unknown offset: orders decide on the path as given only.
    /// `task_struct.files`
    pub const TASK_FILES: u32 = 24;
    /// `files_struct.fdt`
    pub const FILES_FDT: u32 = 25;
    /// `fdtable.max_fds`
    pub const FDTABLE_MAX_FDS: u32 = 26;
    /// `fdtable.fd`
    pub const FDTABLE_FD: u32 = 27;
    /// `file.f_path.mnt`
    pub const FILE_VFSMOUNT: u32 = 28;
    /// `dentry.d_parent`
    pub const DENTRY_PARENT: u32 = 29;
    /// `dentry.d_name.len`
    pub const DENTRY_NAME_LEN: u32 = 30;
    /// `vfsmount.mnt_root`
    pub const VFSMOUNT_ROOT: u32 = 31;
    /// `mount.mnt`: where the `vfsmount` sits in its `struct mount` (container_of).
    pub const MOUNT_MNT: u32 = 32;
    /// `mount.mnt_parent`
    pub const MOUNT_PARENT: u32 = 33;
    /// `mount.mnt_mountpoint`
    pub const MOUNT_MOUNTPOINT: u32 = 34;
    /// `task_struct.fs`
    pub const TASK_FS: u32 = 35;
    /// `fs_struct.root.mnt`
    pub const FS_ROOT_MNT: u32 = 36;
    /// `fs_struct.root.dentry`
    pub const FS_ROOT_DENTRY: u32 = 37;
    pub const LEN: u32 = 38;
}

/// A [`settings`] offset the running kernel does not have.
pub const OFFSET_UNKNOWN: u64 = u64::MAX;

/// Bits of [`ExecRecord::facts`]: which facts about the task after exec the probe could read.
/// A fact whose bit is clear was not read (the kernel lacks a field, or a read failed): its
/// column is null, never a made-up 0.
pub mod facts {
    /// `tty` holds the controlling terminal's device number (0: none).
    pub const TTY: u32 = 1;
    /// `cap_effective`, `cap_permitted` and `cap_inheritable` hold the capability sets.
    pub const CAPS: u32 = 2;
    /// `loginuid` holds the audit login uid (`u32::MAX`: never set).
    pub const LOGINUID: u32 = 4;
    /// The executable's dentry name was read: [`EXE_MEMFD`] says whether it is a memfd.
    pub const EXE_NAME: u32 = 8;
    /// The executable is a memfd (its dentry name starts with `memfd:`).
    pub const EXE_MEMFD: u32 = 16;
    /// `exe_ctime_sec` and `exe_ctime_nsec` hold the executable's inode change time.
    pub const EXE_CTIME: u32 = 32;
}

/// The first bytes of a memfd's dentry name, as one little-endian word masked to its 6 bytes:
/// the probe compares the executable's name against it in a single instruction.
pub const MEMFD_PREFIX: u64 = u64::from_le_bytes(*b"memfd:\0\0");
pub const MEMFD_PREFIX_MASK: u64 = 0xffff_ffff_ffff;

/// A terminal's device number as `/proc/<pid>/stat`'s `tty_nr` and Falco's `proc.tty` give it:
/// the kernel's `new_encode_dev(MKDEV(major, minor))` (minor = the driver's first minor plus the
/// tty's index).
pub const fn tty_nr(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
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
    /// Which of the facts below were read ([`facts`] bits); set at exit, after a successful exec.
    pub facts: u32,
    /// The controlling terminal's device number ([`tty_nr`]), 0 when the task has none.
    pub tty: u32,
    /// The audit login uid (`task_struct.loginuid`, host namespace); `u32::MAX` = unset.
    pub loginuid: u32,
    pub _pad: u32,
    /// The task's capability sets after exec (bit n = capability n).
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub cap_inheritable: u64,
    /// The executable's inode change time (CLOCK_REALTIME).
    pub exe_ctime_sec: i64,
    pub exe_ctime_nsec: u64,
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

/// Key of the `KILL_ORDERS` map (value: the rule id, `u32`): a process of `cgroup_id` (or of
/// its descendants) that enters syscall `syscall_nr` is sent SIGKILL.
///
/// Sixteen bytes, padding spelled out, as [`BlockedPortKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KillOrderKey {
    /// A cgroup id (unified hierarchy).
    pub cgroup_id: u64,
    /// The syscall number (the kernel's native numbers, as in [`nr`]).
    pub syscall_nr: u32,
    pub _pad: u32,
}

impl KillOrderKey {
    pub const fn new(cgroup_id: u64, syscall_nr: u32) -> Self {
        Self {
            cgroup_id,
            syscall_nr,
            _pad: 0,
        }
    }
}

const _: () = {
    assert!(core::mem::size_of::<KillOrderKey>() == 16);
    assert!(core::mem::align_of::<KillOrderKey>() == 8);
    assert!(core::mem::offset_of!(KillOrderKey, cgroup_id) == 0);
    assert!(core::mem::offset_of!(KillOrderKey, syscall_nr) == 8);
    assert!(core::mem::offset_of!(KillOrderKey, _pad) == 12);
};

/// Entries of the `KILL_ORDERS` map: (cgroup, syscall) pairs over all sandboxes at once.
pub const KILL_ORDERS_CAP: u32 = 16384;

/// What made a kill order fire: [`KillRecord::cause`].
pub mod kill_cause {
    /// A syscall kill order, at the syscall's entry.
    pub const SYSCALL: u32 = 0;
    /// A path kill order, at the file syscall's exit, on the path as the process passed it.
    pub const GIVEN_PATH: u32 = 1;
    /// A path kill order, at the exit of an open that succeeded, on the path of the file the new
    /// descriptor names (rebuilt from its dentries up to the task's root).
    pub const OPENED_PATH: u32 = 2;
}

/// A kill order fired ([`kind::KILL`]): the task was sent SIGKILL for rule `rule_id`, at the
/// entry of syscall `header.syscall_nr` (a syscall order: `header.ret` is 0, the syscall has not
/// run yet) or at its exit (a path order: `header.ret` is its result). `header.watch_id` is the
/// cgroup the order was given for (the task's own cgroup or an ancestor).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KillRecord {
    pub header: Header,
    pub rule_id: u32,
    /// `bpf_send_signal`'s result: 0 when SIGKILL was sent, else -errno (the task lives on).
    pub signal_result: i32,
    /// The syscall's six arguments as the task passed them.
    pub args: [u64; 6],
    /// A [`kill_cause`].
    pub cause: u32,
    pub _pad: u32,
    /// A path order's path, NUL-terminated (cut at [`PATH_KEY_CAP`] - 1 bytes); empty for a
    /// syscall order.
    pub path: [u8; PATH_KEY_CAP],
}

/// Bytes of a path kill order key's data: the LPM trie's limit (`LPM_DATA_SIZE_MAX`).
pub const PATH_KEY_DATA: usize = 256;
/// Bytes of path in a key: what follows the cgroup id. A path is decided on its first
/// `PATH_KEY_CAP - 1` bytes; a pattern must fit them (an exact one with its NUL).
pub const PATH_KEY_CAP: usize = PATH_KEY_DATA - 8;

/// Key data of the `KILL_PATHS` LPM trie: the cgroup id (native byte order), then the path
/// bytes. An order's prefix length covers the cgroup id and the pattern's bytes (a pattern that
/// must match a whole path includes its NUL), so a lookup with the task's cgroup and path finds
/// the longest pattern that starts the path, in that cgroup only.
pub fn path_key(cgroup_id: u64, path: &[u8]) -> Option<(u32, [u8; PATH_KEY_DATA])> {
    if path.len() > PATH_KEY_CAP {
        return None;
    }
    let mut data = [0u8; PATH_KEY_DATA];
    data[..8].copy_from_slice(&cgroup_id.to_ne_bytes());
    data[8..8 + path.len()].copy_from_slice(path);
    Some((8 * (8 + path.len() as u32), data))
}

/// One bit per syscall number (x86_64 numbers are below 512).
pub type SyscallSet = [u64; 8];

/// Whether syscall `nr` is in `set`.
#[inline(always)]
pub fn syscall_in(set: &SyscallSet, nr: i64) -> bool {
    let nr = nr as u64 & 511;
    set[(nr >> 6) as usize] >> (nr & 63) & 1 != 0
}

/// Value of the `KILL_PATHS` LPM trie: which file syscalls a path starting with this entry's
/// pattern is killed on, and for which rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathOrder {
    /// Killed whatever follows the pattern (`startswith`; `=` when the pattern holds its NUL).
    pub prefix_syscalls: SyscallSet,
    /// Killed when what follows the pattern holds no `/`: a directory's own entries
    /// (`fd.directory`; the pattern is the directory with its trailing `/`).
    pub entry_syscalls: SyscallSet,
    pub prefix_rule: u32,
    pub entry_rule: u32,
    /// This entry's prefix length in bits: when it does not apply to the syscall, the probe looks
    /// again below it for a shorter pattern that does.
    pub prefix_len: u32,
    pub _pad: u32,
}

const _: () = {
    assert!(core::mem::size_of::<PathOrder>() == 144);
    assert!(core::mem::offset_of!(PathOrder, prefix_rule) == 128);
    assert!(core::mem::offset_of!(PathOrder, _pad) == 140);
};

/// Entries of the `KILL_PATHS` trie: (cgroup, pattern) pairs over all sandboxes at once.
pub const KILL_PATHS_CAP: u32 = 16384;

/// Whether the file exit probes decide path kill orders on this traced syscall: the file
/// syscalls with a (first) path argument, the one rules read as `fd.name` (fchmod and fchown
/// take a descriptor instead).
pub fn decides_paths(t: &Traced) -> bool {
    matches!(t.kind, kind::FILE | kind::FILE2) && !matches!(t.nr, nr::FCHMOD | nr::FCHOWN)
}

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
    /// The encoding /proc/<pid>/stat uses: pseudo-terminal 3 is 136:3, a minor past 255 keeps
    /// its low byte in place and moves the rest above the major.
    #[test]
    fn tty_numbers_encode_like_the_kernel() {
        assert_eq!(tty_nr(136, 3), 34819);
        assert_eq!(tty_nr(4, 1), 1025);
        assert_eq!(tty_nr(136, 0x1ff), (0x100 << 12) | (136 << 8) | 0xff);
        assert_eq!(tty_nr(0, 0), 0);
    }

    #[test]
    fn memfd_prefix_matches_memfd_names_only() {
        let word = |name: &[u8]| {
            let mut b = [0u8; 8];
            b[..name.len().min(8)].copy_from_slice(&name[..name.len().min(8)]);
            u64::from_le_bytes(b) & MEMFD_PREFIX_MASK == MEMFD_PREFIX
        };
        assert!(word(b"memfd:payload"));
        assert!(word(b"memfd:"));
        assert!(!word(b"memfd"));
        assert!(!word(b"true"));
    }

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

    #[test]
    fn path_keys_put_the_cgroup_first_and_count_bits() {
        let (len, data) = path_key(0x0102_0304_0506_0708, b"/etc/\0").unwrap();
        assert_eq!(len, 8 * (8 + 6));
        assert_eq!(&data[..8], &0x0102_0304_0506_0708u64.to_ne_bytes());
        assert_eq!(&data[8..14], b"/etc/\0");
        assert!(data[14..].iter().all(|&b| b == 0));
        assert!(path_key(1, &[b'a'; PATH_KEY_CAP]).is_some());
        assert!(path_key(1, &[b'a'; PATH_KEY_CAP + 1]).is_none());
    }

    #[test]
    fn syscall_sets_hold_numbers_below_512() {
        let mut set: SyscallSet = [0; 8];
        for nr in [0i64, 2, 63, 64, 257, 511] {
            set[(nr / 64) as usize] |= 1 << (nr % 64);
        }
        for nr in [0i64, 2, 63, 64, 257, 511] {
            assert!(syscall_in(&set, nr), "{nr}");
        }
        for nr in [1i64, 62, 65, 256, 510] {
            assert!(!syscall_in(&set, nr), "{nr}");
        }
    }

    #[test]
    fn kill_order_key_layout_is_fixed() {
        let key = KillOrderKey::new(0x0102_0304_0506_0708, 140);
        // SAFETY: a 16-byte repr(C) value with no undefined padding, read as bytes.
        let bytes: [u8; 16] = unsafe { core::mem::transmute(key) };
        let mut want = [0u8; 16];
        want[..8].copy_from_slice(&0x0102_0304_0506_0708u64.to_ne_bytes());
        want[8..12].copy_from_slice(&140u32.to_ne_bytes());
        assert_eq!(bytes, want);
    }
}
