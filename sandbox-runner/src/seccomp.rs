//! The seccomp filter every sandboxed command runs under: the default deny-list, the policy's
//! additions to it, their compilation to BPF and installing it between fork and exec.
//!
//! The filter allows by default and refuses what no agent job needs. Two programs are installed:
//!
//! - the deny-list (compiled by seccompiler), refusing with `EPERM`: every name in
//!   [`DEFAULT_DENIED`], every name the policy adds (whatever the arguments), and these calls for
//!   some arguments only:
//!   - `unshare` and `clone` whose flags include `CLONE_NEWUSER`;
//!   - `personality` with any persona but `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
//!     `PER_LINUX32|UNAME26` and `0xffffffff` (the query), the set Docker's default profile allows;
//!   - `ioctl(fd, TIOCSTI, ..)`;
//!   - `socket(AF_PACKET, ..)` and `socket(AF_VSOCK, ..)`;
//! - a second program refusing with `ENOSYS`: `clone3`, and on x86_64 every x32-ABI syscall.
//!
//! Both programs kill the process on a syscall made through another architecture's ABI (on
//! x86_64: `int 0x80`, the i386 ABI), whose numbers differ and would slip past the deny-list: a
//! 32-bit x86 program cannot run in a sandbox.
//!
//! Syscall names are those of the architecture the runner is built for; x86_64 and aarch64 are
//! supported.

use std::collections::{BTreeMap, BTreeSet};

use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch, sock_filter,
};

/// Syscalls no agent job needs; refused with EPERM.
///
/// Most of them need a capability the sandbox has dropped, so the kernel would refuse them
/// anyway: the filter still refuses them in case a capability leaks, and a refusal by the filter
/// is the same `-EPERM` the audit collector marks as refused. A name this architecture does not
/// have is skipped (it cannot be called).
pub const DEFAULT_DENIED: &[&str] = &[
    // Changing the running kernel (CAP_SYS_MODULE, CAP_SYS_BOOT).
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    // Reachable without privileges where the host allows it, and the usual first step of a kernel
    // exploit: BPF programs (verifier bugs), perf events (side channels, PMU driver bugs),
    // userfaultfd (stalls the kernel in the middle of a copy from user memory to win races).
    "bpf",
    "perf_event_open",
    "userfaultfd",
    // io_uring does file and network I/O without making the syscalls the probes trace: a job
    // using it would be missing from the audit log. It has also had a long run of privilege
    // escalations.
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    // The kernel keyring is shared by everything that runs as the same host uid, not kept per
    // sandbox.
    "keyctl",
    "add_key",
    "request_key",
    // Reading and rewriting another process's memory and registers lets one process of a job act
    // as another (the audit log names the process that made each syscall); kcmp compares kernel
    // object addresses. This costs strace and gdb inside sandboxes.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    // The runner builds the job's filesystem view before exec, and landlock's path rules assume
    // it stays that way (CAP_SYS_ADMIN, CAP_SYS_CHROOT). open_tree_attr is open_tree and
    // mount_setattr in one call.
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "open_tree_attr",
    "mount_setattr",
    // The sandbox's namespaces are its boundary: no joining others.
    "setns",
    // Host-wide state that no job owns: power, swap, the clocks (the read-only use of
    // adjtimex/clock_adjtime too: nothing an agent runs reads NTP state), process accounting,
    // disk quotas, the host name the runner set, the kernel log (it shows kernel addresses), and
    // hanging up the terminal.
    "reboot",
    "swapon",
    "swapoff",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "acct",
    "quotactl",
    "quotactl_fd",
    "sethostname",
    "setdomainname",
    "syslog",
    "vhangup",
    // I/O ports and 16-bit segments: for hardware access, Wine and DOSEMU, none of which run in
    // a sandbox; the LDT code has had privilege escalations of its own.
    "iopl",
    "ioperm",
    "modify_ldt",
    // A file handle opens a file without a path lookup, so path-based rules (landlock, the
    // mount view) never see it: the "shocker" container escape (CAP_DAC_READ_SEARCH). Making
    // handles is refused with it.
    "open_by_handle_at",
    "name_to_handle_at",
    // Obsolete calls that kernels still in service implement (uselib where CONFIG_USELIB is set,
    // lookup_dcookie before 6.8): no use, only attack surface. create_module, get_kernel_syms,
    // query_module and nfsservctl are not listed: no kernel since 2.6 (3.1 for nfsservctl) has
    // them, the kernel answers ENOSYS already, and without a tracepoint the collector cannot
    // watch them. x86_64 has no pciconfig_* calls.
    "uselib",
    "lookup_dcookie",
];

/// Syscalls the filter refuses for some arguments only, with EPERM (see the module's doc).
const DENIED_BY_ARGUMENT: [&str; 5] = ["unshare", "clone", "personality", "ioctl", "socket"];

/// Syscalls refused with ENOSYS: `clone3` takes its flags in memory that seccomp cannot read, so
/// `CLONE_NEWUSER` could not be refused there. ENOSYS, not EPERM, because that is what makes
/// glibc and musl fall back to `clone`, where the flags are an argument.
const ENOSYS_DENIED: [&str; 1] = ["clone3"];

/// Syscalls newer than the `syscalls` crate's table, which ends at `lsm_list_modules` (461).
/// Numbers from 424 on are the same on every architecture but alpha.
const NEWER_SYSCALLS: [(&str, i64); 8] = [
    ("mseal", 462),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
    ("open_tree_attr", 467),
    ("file_getattr", 468),
    ("file_setattr", 469),
];

// Personas `personality` may set (linux/personality.h). Everything else is refused: the others
// turn off ASLR, make readable memory executable or map page zero at the next exec
// (MMAP_PAGE_ZERO is how NULL-dereference kernel bugs became exploits), or select foreign
// execution domains nothing runs under.
const PER_LINUX: u64 = 0x0000;
const PER_LINUX32: u64 = 0x0008;
const UNAME26: u64 = 0x0020000;
const PERSONALITY_QUERY: u64 = 0xffff_ffff;

/// Set in the number of an x32-ABI syscall on x86_64.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The architecture filters are built for, with its `AUDIT_ARCH_*` (linux/audit.h): EM_* |
/// __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
#[cfg(target_arch = "x86_64")]
const TARGET: Option<(TargetArch, u32)> = Some((TargetArch::x86_64, 0xc000_003e));
#[cfg(target_arch = "aarch64")]
const TARGET: Option<(TargetArch, u32)> = Some((TargetArch::aarch64, 0xc000_00b7));
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const TARGET: Option<(TargetArch, u32)> = None;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{name:?} is not a syscall on {arch}")]
    UnknownSyscall { name: String, arch: &'static str },
    #[error("seccomp filters are built for x86_64 and aarch64 only, not {0}")]
    UnsupportedArch(&'static str),
    #[error("compiling the seccomp filter: {0}")]
    Compile(#[from] BackendError),
    #[error("installing the seccomp filter: {0}")]
    Install(seccompiler::Error),
}

/// The number of syscall `name` on the architecture the runner is built for.
pub(crate) fn syscall_number(name: &str) -> Result<i64, SeccompError> {
    name.parse::<syscalls::Sysno>()
        .map(|s| i64::from(s.id()))
        .ok()
        .or_else(|| {
            NEWER_SYSCALLS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|&(_, nr)| nr)
        })
        .ok_or_else(|| SeccompError::UnknownSyscall {
            name: name.to_owned(),
            arch: std::env::consts::ARCH,
        })
}

/// The compiled filter of one sandbox: the defaults and its policy's additions.
#[derive(Debug, Clone)]
pub struct SyscallFilter {
    /// Refusals with EPERM: the deny-list and the refusals by argument.
    eperm: BpfProgram,
    /// Refusals with ENOSYS.
    enosys: BpfProgram,
    denied: Vec<String>,
}

impl SyscallFilter {
    /// The default deny-list plus `extra_denied` (names from the policy), which are refused
    /// whatever their arguments, also where the defaults refuse a call for some arguments only
    /// (`ioctl`). Names already refused are fine; `clone3` stays refused with ENOSYS. Unknown
    /// names → [`SeccompError::UnknownSyscall`] naming the first.
    pub fn new(extra_denied: &[String]) -> Result<Self, SeccompError> {
        let (arch, audit_arch) =
            TARGET.ok_or(SeccompError::UnsupportedArch(std::env::consts::ARCH))?;
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        let mut denied = BTreeSet::new();
        for name in DEFAULT_DENIED {
            if let Ok(nr) = syscall_number(name) {
                rules.insert(nr, Vec::new());
                denied.insert(name.to_string());
            }
        }
        for name in DENIED_BY_ARGUMENT {
            rules.insert(syscall_number(name)?, rules_by_argument(name)?);
            // The kernel's own EPERM from these in a capability-less sandbox is a refusal too
            // (namespaces and raw sockets need capabilities; personality never says EPERM).
            // ioctl is the exception: privileged driver requests say EPERM all the time, and
            // the collector would have to trace every ioctl on the host to catch the one
            // request refused here.
            if name != "ioctl" {
                denied.insert(name.to_owned());
            }
        }
        for name in extra_denied {
            let nr = syscall_number(name)?;
            if !ENOSYS_DENIED.contains(&name.as_str()) {
                rules.insert(nr, Vec::new());
                denied.insert(name.clone());
            }
        }
        let eperm = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )?
        .try_into()?;
        Ok(Self {
            eperm,
            enosys: enosys_program(audit_arch)?,
            denied: denied.into_iter().collect(),
        })
    }

    /// The syscalls whose `-EPERM` in a sandbox is a refusal, for the audit collector's "refused"
    /// marker, sorted: every syscall refused whatever its arguments (the defaults this
    /// architecture has, the policy's names) and `clone`, `personality`, `socket` and `unshare`,
    /// refused for some arguments. Not `ioctl` (unless the policy names it) nor `clone3`, which is
    /// refused with ENOSYS.
    pub fn denied(&self) -> &[String] {
        &self.denied
    }

    /// Installs the filter on the calling thread, to be inherited by what it execs. Sets
    /// no_new_privs first (seccompiler does, whatever the caller did; the kernel takes a filter
    /// from a thread without CAP_SYS_ADMIN only with it). Allocates nothing, so it may run in the
    /// forked child of a multi-threaded process.
    pub fn apply(&self) -> Result<(), SeccompError> {
        // The deny-list goes in last: the policy may name prctl or seccomp, which installing a
        // filter calls.
        seccompiler::apply_filter(&self.enosys).map_err(SeccompError::Install)?;
        seccompiler::apply_filter(&self.eperm).map_err(SeccompError::Install)
    }
}

/// The rules under which `name`, one of [`DENIED_BY_ARGUMENT`], is refused.
fn rules_by_argument(name: &str) -> Result<Vec<SeccompRule>, BackendError> {
    // Every argument compared here is an int to the kernel (clone's flags: their low half), so
    // only the low 32 bits are compared, as the kernel reads them.
    let arg = |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value);
    let user_ns = libc::CLONE_NEWUSER as u64;
    let conditions = match name {
        // A new user namespace gives back every capability inside it, and with them the kernel
        // code open to a namespace's root (nf_tables, mounts of several filesystems) where many
        // recent privilege escalations started. Other namespace flags need capabilities the
        // sandbox does not have, so the kernel refuses them already.
        "unshare" | "clone" => vec![arg(0, SeccompCmpOp::MaskedEq(user_ns), user_ns)?],
        "personality" => [
            PER_LINUX,
            PER_LINUX32,
            UNAME26,
            PER_LINUX32 | UNAME26,
            PERSONALITY_QUERY,
        ]
        .into_iter()
        .map(|persona| arg(0, SeccompCmpOp::Ne, persona))
        .collect::<Result<_, _>>()?,
        // Pushes characters into a terminal's input: a job given the user's terminal could type
        // commands into the shell that started it, to run after the job ends.
        "ioctl" => vec![arg(1, SeccompCmpOp::Eq, libc::TIOCSTI)?],
        // Raw packet sockets see and forge every frame of an interface; they need CAP_NET_RAW,
        // and AF_PACKET has had several privilege escalations reachable from user namespaces.
        // vsock ignores network namespaces: in a VM it is a way out to the hypervisor whatever
        // the sandbox's network mode. One rule per family: a rule's conditions all must hold.
        "socket" => {
            return [libc::AF_PACKET, libc::AF_VSOCK]
                .into_iter()
                .map(|family| SeccompRule::new(vec![arg(0, SeccompCmpOp::Eq, family as u64)?]))
                .collect();
        }
        _ => unreachable!("{name} is refused by argument"),
    };
    Ok(vec![SeccompRule::new(conditions)?])
}

/// The program refusing [`ENOSYS_DENIED`] and (x86_64) x32-ABI syscalls with ENOSYS, written
/// by hand: seccompiler compares syscall numbers for equality only, and refuses with one errno
/// per program.
fn enosys_program(audit_arch: u32) -> Result<BpfProgram, SeccompError> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    // struct seccomp_data: int nr; __u32 arch; ...
    const NR_OFFSET: u32 = 0;
    const ARCH_OFFSET: u32 = 4;
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let numbers = ENOSYS_DENIED
        .iter()
        .map(|name| syscall_number(name).map(|nr| nr as u32))
        .collect::<Result<Vec<_>, _>>()?;
    let mut program = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, ARCH_OFFSET),
        jeq(audit_arch, 1, 0),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD | BPF_W | BPF_ABS, NR_OFFSET),
    ];
    // Each test below jumps to the ENOSYS return at the end when it holds, over the tests after
    // it and the allow.
    let tests = numbers.len() + usize::from(cfg!(target_arch = "x86_64"));
    let to_refusal = |i: usize| (tests - i) as u8;
    // The x32 ABI reaches the same kernel with different numbers (the bit set, and its own
    // numbers for some calls) under x86_64's audit arch, so the deny-list would miss them.
    // Kernels without x32 answer ENOSYS to them, so programs behave as they do there.
    #[cfg(target_arch = "x86_64")]
    program.push(sock_filter {
        code: (BPF_JMP | libc::BPF_JSET | BPF_K) as u16,
        jt: to_refusal(0),
        jf: 0,
        k: X32_SYSCALL_BIT,
    });
    let first = tests - numbers.len();
    for (i, nr) in numbers.into_iter().enumerate() {
        program.push(jeq(nr, to_refusal(first + i), 0));
    }
    program.push(stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW));
    program.push(stmt(
        BPF_RET | BPF_K,
        libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
    ));
    Ok(program)
}

#[cfg(test)]
mod tests {
    use nix::{
        sys::{
            signal::Signal,
            wait::{WaitStatus, waitpid},
        },
        unistd::{ForkResult, fork},
    };

    use super::*;

    /// How a forked child that ran `call` ended.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        /// The call returned this errno (0: it succeeded).
        Errno(i32),
        Killed(Signal),
    }

    /// Runs `call` (a raw syscall) in a forked child, under `filter` when given. The test harness
    /// is multi-threaded, so the child allocates nothing: the filter is compiled before the fork
    /// and the child only installs it, makes the call and exits with the errno.
    fn run(filter: Option<&SyscallFilter>, call: impl Fn() -> libc::c_long) -> Outcome {
        // SAFETY: the child makes raw syscalls only and leaves with _exit.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                if let Some(f) = filter
                    && f.apply().is_err()
                {
                    // SAFETY: leaving the child without running the parent's destructors.
                    unsafe { libc::_exit(255) }
                }
                let code = if call() < 0 {
                    nix::errno::Errno::last_raw()
                } else {
                    0
                };
                // SAFETY: as above.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, 255) => panic!("the child could not install the filter"),
                WaitStatus::Exited(_, code) => Outcome::Errno(code),
                WaitStatus::Signaled(_, sig, _) => Outcome::Killed(sig),
                other => panic!("child ended as {other:?}"),
            },
        }
    }

    fn default_filter() -> SyscallFilter {
        SyscallFilter::new(&[]).unwrap()
    }

    /// Where a call is shown failing otherwise without the filter, or succeeding, its EPERM under
    /// the filter is the filter's.
    #[test]
    fn the_default_deny_list_answers_eperm() {
        let f = default_filter();
        // SAFETY (all calls): raw syscalls with null or invalid pointers the kernel checks.
        let bpf = || unsafe { libc::syscall(libc::SYS_bpf, -1, 0, 0) };
        assert_eq!(run(None, bpf), Outcome::Errno(libc::EINVAL));
        assert_eq!(run(Some(&f), bpf), Outcome::Errno(libc::EPERM));
        let mount = || unsafe { libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0) };
        assert_ne!(run(None, mount), Outcome::Errno(libc::EPERM));
        assert_eq!(run(Some(&f), mount), Outcome::Errno(libc::EPERM));
        let uring = || unsafe { libc::syscall(libc::SYS_io_uring_setup, 0, 0) };
        assert_eq!(run(Some(&f), uring), Outcome::Errno(libc::EPERM));
        let getpid = || unsafe { libc::syscall(libc::SYS_getpid) };
        assert_eq!(run(Some(&f), getpid), Outcome::Errno(0));
    }

    #[test]
    fn new_user_namespaces_are_refused_and_other_namespaces_left_to_capabilities() {
        let f = default_filter();
        let unshare = |flags| move || unsafe { libc::unshare(flags) }.into();
        assert_eq!(
            run(Some(&f), unshare(libc::CLONE_NEWUSER)),
            Outcome::Errno(libc::EPERM)
        );
        assert_eq!(
            run(Some(&f), unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS)),
            Outcome::Errno(libc::EPERM)
        );
        let uts = run(Some(&f), unshare(libc::CLONE_NEWUTS));
        if nix::unistd::geteuid().is_root() {
            assert_eq!(
                uts,
                Outcome::Errno(0),
                "the filter let CLONE_NEWUTS through"
            );
        } else {
            assert_eq!(
                uts,
                Outcome::Errno(libc::EPERM),
                "refused for lack of CAP_SYS_ADMIN"
            );
        }
        // clone's flags are its first argument on x86_64 and aarch64. Without the filter the
        // kernel refuses CLONE_NEWUSER with CLONE_FS as EINVAL before starting anything.
        let clone = || unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::CLONE_NEWUSER | libc::CLONE_FS,
                0,
                0,
                0,
                0,
            )
        };
        assert_eq!(run(None, clone), Outcome::Errno(libc::EINVAL));
        assert_eq!(run(Some(&f), clone), Outcome::Errno(libc::EPERM));
        // clone3's flags are out of the filter's reach: refused whole, with the errno that makes
        // libc fall back to clone.
        let clone3 = || unsafe { libc::syscall(libc::SYS_clone3, 0, 0) };
        assert_eq!(run(None, clone3), Outcome::Errno(libc::EINVAL));
        assert_eq!(run(Some(&f), clone3), Outcome::Errno(libc::ENOSYS));
    }

    /// glibc creates threads with clone3 and falls back to clone on ENOSYS only. This child does
    /// allocate (a thread's stack and TLS), which glibc's fork leaves safe to do.
    #[test]
    fn threads_still_start() {
        extern "C" fn thread(_: *mut libc::c_void) -> *mut libc::c_void {
            std::ptr::null_mut()
        }
        let pthread = || {
            let mut t: libc::pthread_t = 0;
            // SAFETY: a thread that returns at once, joined before the pointer goes away.
            let rc = unsafe {
                libc::pthread_create(&mut t, std::ptr::null(), thread, std::ptr::null_mut())
            };
            if rc != 0 {
                nix::errno::Errno::set_raw(rc);
                return -1;
            }
            // SAFETY: `t` was just started and is joined once.
            unsafe { libc::pthread_join(t, std::ptr::null_mut()) }.into()
        };
        assert_eq!(run(Some(&default_filter()), pthread), Outcome::Errno(0));
    }

    /// As the runner uses it: installed between fork and exec, inherited across exec and by
    /// children.
    #[test]
    fn a_shell_pipeline_runs_under_the_filter() {
        use std::os::unix::process::CommandExt;

        let f = default_filter();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args([
            "-c",
            "grep -E '^(NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status | cat",
        ]);
        // SAFETY: apply allocates nothing, and neither does the error it is turned into.
        unsafe {
            cmd.pre_exec(move || {
                f.apply()
                    .map_err(|_| std::io::ErrorKind::PermissionDenied.into())
            })
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t2\n"
        );
    }

    #[test]
    fn personality_may_be_queried_and_set_to_linux_only() {
        let f = default_filter();
        let personality = |p: libc::c_ulong| move || unsafe { libc::personality(p) }.into();
        assert_eq!(run(Some(&f), personality(0xffff_ffff)), Outcome::Errno(0));
        assert_eq!(run(Some(&f), personality(0)), Outcome::Errno(0));
        assert_eq!(run(Some(&f), personality(0x0008)), Outcome::Errno(0));
        const PER_BSD: libc::c_ulong = 0x0006;
        assert_eq!(run(None, personality(PER_BSD)), Outcome::Errno(0));
        assert_eq!(
            run(Some(&f), personality(PER_BSD)),
            Outcome::Errno(libc::EPERM)
        );
        let no_aslr = personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
        assert_eq!(run(Some(&f), no_aslr), Outcome::Errno(libc::EPERM));
    }

    #[test]
    fn terminal_injection_and_packet_sockets_are_refused() {
        let f = default_filter();
        let ioctl = |request| move || unsafe { libc::ioctl(-1, request, 0) }.into();
        assert_eq!(run(None, ioctl(libc::TIOCSTI)), Outcome::Errno(libc::EBADF));
        assert_eq!(
            run(Some(&f), ioctl(libc::TIOCSTI)),
            Outcome::Errno(libc::EPERM)
        );
        assert_eq!(
            run(Some(&f), ioctl(libc::TCGETS)),
            Outcome::Errno(libc::EBADF)
        );
        let socket = |domain| move || unsafe { libc::socket(domain, libc::SOCK_RAW, 0) }.into();
        assert_eq!(
            run(Some(&f), socket(libc::AF_PACKET)),
            Outcome::Errno(libc::EPERM)
        );
        let vsock = || unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) }.into();
        assert_eq!(run(Some(&f), vsock), Outcome::Errno(libc::EPERM));
        let unix = || unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) }.into();
        assert_eq!(run(Some(&f), unix), Outcome::Errno(0));
    }

    #[test]
    fn policy_names_are_added_and_unknown_names_refused() {
        let f = SyscallFilter::new(&["getcwd".into(), "bpf".into(), "ioctl".into()]).unwrap();
        let mut buf = [0u8; 256];
        let ptr = buf.as_mut_ptr();
        let getcwd = move || unsafe { libc::syscall(libc::SYS_getcwd, ptr, 256) };
        assert_eq!(run(Some(&default_filter()), getcwd), Outcome::Errno(0));
        assert_eq!(run(Some(&f), getcwd), Outcome::Errno(libc::EPERM));
        // Named by the policy, ioctl is refused whatever the request.
        let tcgets = || unsafe { libc::ioctl(-1, libc::TCGETS, 0) }.into();
        assert_eq!(run(Some(&f), tcgets), Outcome::Errno(libc::EPERM));

        let e = SyscallFilter::new(&["getcwd".into(), "fooo".into()]).unwrap_err();
        assert!(matches!(&e, SeccompError::UnknownSyscall { name, .. } if name == "fooo"));
        assert_eq!(
            e.to_string(),
            format!("\"fooo\" is not a syscall on {}", std::env::consts::ARCH)
        );
    }

    #[test]
    fn denied_lists_every_eperm_refusal_once() {
        let d = default_filter();
        let f = SyscallFilter::new(&["getcwd".into(), "bpf".into(), "clone3".into()]).unwrap();
        for filter in [&d, &f] {
            let denied = filter.denied();
            assert!(denied.is_sorted_by(|a, b| a < b), "sorted, no duplicates");
            for name in DEFAULT_DENIED
                .iter()
                .chain(&["unshare", "clone", "personality"])
            {
                assert!(denied.iter().any(|n| n == name), "{name}");
            }
            assert!(!denied.iter().any(|n| n == "ioctl" || n == "clone3"));
        }
        assert_eq!(f.denied().len(), d.denied().len() + 1, "getcwd");
    }

    #[test]
    fn every_default_name_is_a_syscall_here() {
        // The others are needed on every architecture: new() fails without them.
        for name in DENIED_BY_ARGUMENT.iter().chain(&ENOSYS_DENIED) {
            syscall_number(name).unwrap();
        }
        #[cfg(target_arch = "x86_64")]
        for name in DEFAULT_DENIED {
            syscall_number(name).unwrap();
        }
        assert_eq!(syscall_number("open_tree_attr").unwrap(), 467);
        assert_eq!(syscall_number("mount").unwrap(), libc::SYS_mount);
    }

    /// A syscall through the i386 ABI would be checked against x86_64 numbers: the filter kills
    /// the process instead.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn i386_syscalls_kill_the_process() {
        let getpid_i386 = || {
            let ret: libc::c_long;
            // SAFETY: i386 getpid (20) takes no arguments and touches no memory.
            unsafe {
                // The kernel zeroes r8-r11 on the way back from int 0x80 in a 64-bit process.
                std::arch::asm!(
                    "int 0x80",
                    inlateout("rax") 20 as libc::c_long => ret,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                    options(nostack),
                )
            };
            if ret < 0 {
                nix::errno::Errno::set_raw(-ret as i32);
            }
            ret
        };
        if run(None, getpid_i386) != Outcome::Errno(0) {
            eprintln!("this kernel has no i386 syscall entry; nothing to check");
            return;
        }
        assert_eq!(
            run(Some(&default_filter()), getpid_i386),
            Outcome::Killed(Signal::SIGSYS)
        );
    }
}
