//! A sandbox's init: pid 1 of its pid namespace, the one process inside that the runner talks to.
//!
//! The runner's zygote (see `zygote`) clones it into fresh namespaces; being a copy of a
//! single-threaded process, it can allocate, build the root and fork freely, which a child of the
//! runner, a multi-threaded tokio program, could not do without executing a binary first.
//!
//! Init builds the sandbox's root (see `mounts`), reports ready, then runs commands on request:
//! init enters the sandbox's Landlock domain once; each command is forked,
//! confined (rlimits, no_new_privs, no capabilities, seccomp, in that order: each step needs
//! privileges the next one removes) and executed. A file operation (see `files`) is forked and
//! confined the same way, but the child performs it itself (`init_files`) instead of executing
//! anything. Init reaps every process (orphans and file children included, as pid 1 must) and
//! reports the commands' exits. When the runner's end of the control socket closes, init exits,
//! and the kernel kills everything left in the pid namespace: a sandbox does not outlive its
//! runner.

use std::{
    collections::HashMap,
    ffi::{CString, OsStr},
    io,
    os::{
        fd::{AsFd as _, AsRawFd, OwnedFd, RawFd},
        unix::{ffi::OsStrExt as _, fs::PermissionsExt as _},
    },
    path::{Path, PathBuf},
};

use nix::{
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::{
        signal::{SigSet, Signal},
        signalfd::{SfdFlags, SignalFd},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};

use crate::{
    files::{FileOp, WireError},
    fs_access::{FsAccess, FsAccessStatus},
    init_files, mounts,
    policy::SandboxPolicy,
    protocol::{self, FromInit, SetupPlan, ToInit},
    seccomp::SyscallFilter,
};

/// The control socket's descriptor in init.
pub const CONTROL_FD: RawFd = 3;

/// If this process was started as the runner's zygote (which makes every sandbox's init), runs
/// it and exits; otherwise returns. A binary embedding this crate calls it first thing in `main`.
pub fn run_if_init() {
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new(crate::zygote::ZYGOTE_ARG)) {
        std::process::exit(crate::zygote::main());
    }
}

/// Init's life, in a process the zygote has just cloned into new namespaces.
pub(crate) fn main_in_namespaces() -> i32 {
    Init::main()
}

/// What a command gets confined with, prepared once at setup.
struct Confinement {
    filter: SyscallFilter,
    rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    uid: u32,
}

impl Confinement {
    /// The last steps before a forked child runs anything of the sandbox's (a command's
    /// program, a file operation): limits, no_new_privs, the policy's user without
    /// capabilities, the seccomp filters, in that order (each step needs privileges the next
    /// one removes). Returns the errno of the step that failed.
    fn apply(&self) -> Result<(), i32> {
        // SAFETY: plain syscalls on this process's own limits and flags.
        unsafe {
            for &(resource, value) in &self.rlimits {
                let lim = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &lim) < 0 {
                    return Err(nix::errno::Errno::last_raw());
                }
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                return Err(nix::errno::Errno::last_raw());
            }
        }
        drop_privileges(self.uid).map_err(|e| e as i32)?;
        self.filter.apply().map_err(|_| libc::EPERM)
    }
}

struct Init {
    confinement: Confinement,
    /// Running commands: pid → request id.
    commands: HashMap<i32, u64>,
}

fn send(msg: &FromInit) -> bool {
    protocol::send(CONTROL_FD, msg, &[]).is_ok()
}

impl Init {
    fn main() -> i32 {
        let mut marks = vec![mark("main")];
        // SAFETY: closing descriptors this fresh process does not use; making it undumpable so
        // that a command running as the same uid cannot read or write init's memory through
        // /proc/1/mem (init holds the namespace's capabilities).
        unsafe {
            libc::syscall(libc::SYS_close_range, CONTROL_FD + 1, u32::MAX, 0);
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        }
        let mut buf = Vec::new();
        let (plan, volumes) = match protocol::recv::<ToInit>(CONTROL_FD, &mut buf) {
            Ok(Some((ToInit::Setup(plan), volumes))) => (plan, volumes),
            _ => return 1,
        };
        marks.push(mark("plan"));
        // The runner wrote our uid/gid maps before sending the plan: become the namespace's root
        // (an unprivileged host uid), keeping the namespace's capabilities, holding none on the
        // host, and no supplementary group of the runner.
        let root_gid = nix::unistd::Gid::from_raw(0);
        let root_uid = nix::unistd::Uid::from_raw(0);
        if let Err(e) = nix::unistd::setgroups(&[])
            .and_then(|()| nix::unistd::setresgid(root_gid, root_gid, root_gid))
            .and_then(|()| nix::unistd::setresuid(root_uid, root_uid, root_uid))
        {
            send(&FromInit::SetupFailed {
                step: "take the namespace's root identity".into(),
                error: e.to_string(),
            });
            return 1;
        }
        let mut warnings = Vec::new();
        let confinement = match setup(&plan, &volumes, &mut warnings, &mut marks) {
            Ok(c) => c,
            Err((step, error)) => {
                send(&FromInit::SetupFailed { step, error });
                return 1;
            }
        };
        // The runner makes the cgroups and joins us to them while we build the root; nothing
        // runs in the sandbox before they are joined. Then a cgroup namespace rooted at the
        // sandbox's cgroup hides the host's hierarchy.
        match protocol::recv::<ToInit>(CONTROL_FD, &mut buf) {
            Ok(Some((ToInit::Joined, _))) => {}
            _ => return 1,
        }
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP) {
            send(&FromInit::SetupFailed {
                step: "unshare the cgroup namespace".into(),
                error: e.to_string(),
            });
            return 1;
        }
        marks.push(mark("cgroupns"));
        let mut init = Init {
            confinement,
            commands: HashMap::new(),
        };
        marks.push(mark("ready"));
        if !send(&FromInit::Ready { warnings, marks }) {
            return 1;
        }
        init.serve(&mut buf)
    }

    fn serve(&mut self, buf: &mut Vec<u8>) -> i32 {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        if mask.thread_block().is_err() {
            return 1;
        }
        let Ok(sigfd) = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        else {
            return 1;
        };
        loop {
            let (control_ready, child_ready) = {
                // SAFETY: the control descriptor lives as long as init.
                let control = unsafe { std::os::fd::BorrowedFd::borrow_raw(CONTROL_FD) };
                let mut fds = [
                    PollFd::new(control, PollFlags::POLLIN),
                    PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return 1,
                }
                (
                    fds[0].revents().is_some_and(|r| !r.is_empty()),
                    fds[1].revents().is_some_and(|r| !r.is_empty()),
                )
            };
            if child_ready {
                while let Ok(Some(_)) = sigfd.read_signal() {}
                self.reap();
            }
            if control_ready {
                match protocol::recv::<ToInit>(CONTROL_FD, buf) {
                    Ok(Some((msg, fds))) => self.handle(msg, fds),
                    // The runner is gone (or talks nonsense): end the sandbox.
                    _ => return 0,
                }
            }
        }
    }

    fn handle(&mut self, msg: ToInit, fds: Vec<OwnedFd>) {
        match msg {
            ToInit::Setup(_) | ToInit::Joined => {}
            ToInit::Exec { id, argv, env, cwd } => {
                let reply = match self.spawn(&argv, &env, &cwd, fds) {
                    Ok(pid) => {
                        self.commands.insert(pid, id);
                        FromInit::Started { id, pid }
                    }
                    Err((error, code)) => FromInit::ExecFailed { id, error, code },
                };
                send(&reply);
            }
            ToInit::Signal { id, signal } => {
                for (&pid, &cmd) in &self.commands {
                    if id.is_none_or(|id| id == cmd) {
                        // SAFETY: signalling a command's process group (it leads a session).
                        unsafe { libc::kill(-pid, signal) };
                    }
                }
            }
            ToInit::File { id: _, op } => self.file_op(op, fds),
        }
    }

    /// Forks a child that confines itself and performs `op`, answering on the reply pipe
    /// (`fds[0]`; a write's content pipe is `fds[1]`). Init does not wait for it: it is reaped
    /// like any orphan and, not being a command, not reported.
    fn file_op(&self, op: FileOp, fds: Vec<OwnedFd>) {
        let mut fds = fds.into_iter();
        let Some(reply) = fds.next() else {
            return; // nowhere to answer
        };
        let content = fds.next();
        // SAFETY: init is single-threaded, so the child may allocate and run ordinary Rust.
        match unsafe { nix::unistd::fork() } {
            Err(e) => init_files::refuse(&reply, WireError::new(e as i32, op.path(), "fork")),
            Ok(nix::unistd::ForkResult::Child) => {
                let mut keep = vec![reply.as_raw_fd()];
                keep.extend(content.as_ref().map(AsRawFd::as_raw_fd));
                let code = match self.confine_file_child(&keep) {
                    Ok(()) => init_files::serve(op, reply, content),
                    Err(errno) => {
                        let doing = "confine the file operation's process";
                        init_files::refuse(&reply, WireError::new(errno, op.path(), doing));
                        126
                    }
                };
                // SAFETY: leaving the child without running init's exit handlers.
                unsafe { libc::_exit(code) }
            }
            // Our copies of the pipes close here: the child holds its own.
            Ok(nix::unistd::ForkResult::Parent { .. }) => {}
        }
    }

    /// A file operation's child, before it touches anything of the sandbox's: only its pipes
    /// open (not init's control socket nor its signalfd), confined as a command is.
    fn confine_file_child(&self, keep: &[RawFd]) -> Result<(), i32> {
        if SigSet::empty().thread_set_mask().is_err() {
            return Err(libc::EINVAL);
        }
        // SAFETY: signal dispositions and descriptors of this process alone.
        unsafe {
            // Writes past `limits.file_size` fail with EFBIG, reported to the runner, instead
            // of killing the child; a reply pipe the runner closed fails with EPIPE, and the
            // child exits (SIGPIPE is ignored in init already: Rust's runtime did that).
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        close_all_except(keep);
        self.confinement.apply()
    }

    fn reap(&mut self) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.exited(pid, Some(code), None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => self.exited(pid, None, Some(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn exited(&mut self, pid: Pid, code: Option<i32>, signal: Option<i32>) {
        if let Some(id) = self.commands.remove(&pid.as_raw()) {
            send(&FromInit::Exited { id, code, signal });
        }
    }

    /// Forks, confines and executes one command. Returns its pid, or why it could not run and
    /// the shell-style exit code for that.
    fn spawn(
        &self,
        argv: &[String],
        env: &[(String, String)],
        cwd: &Path,
        stdio: Vec<OwnedFd>,
    ) -> Result<i32, (String, i32)> {
        let Some(program) = argv.first() else {
            return Err(("empty command".into(), 127));
        };
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or("/usr/local/bin:/usr/bin:/bin", |(_, v)| v.as_str());
        let exe = resolve(program, path_var)
            .ok_or_else(|| (format!("{program}: command not found in the sandbox"), 127))?;
        let cstr = |s: &[u8]| {
            CString::new(s).map_err(|_| {
                (
                    format!("{program}: a NUL byte in the command or its environment"),
                    126,
                )
            })
        };
        let exe_c = cstr(exe.as_os_str().as_bytes())?;
        let cwd_c = cstr(cwd.as_os_str().as_bytes())?;
        let args: Vec<CString> = argv
            .iter()
            .map(|a| cstr(a.as_bytes()))
            .collect::<Result<_, _>>()?;
        let envs: Vec<CString> = env
            .iter()
            .map(|(k, v)| cstr(format!("{k}={v}").as_bytes()))
            .collect::<Result<_, _>>()?;
        if stdio.len() != 3 {
            return Err(("the runner sent no stdio".into(), 126));
        }
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| (format!("pipe: {e}"), 126))?;
        // SAFETY: init is single-threaded, so the child may do anything before exec.
        match unsafe { nix::unistd::fork() } {
            Err(e) => Err((format!("fork: {e}"), 126)),
            Ok(nix::unistd::ForkResult::Child) => {
                drop(err_r);
                let errno = self.exec_child(&exe_c, &args, &envs, &cwd_c, &stdio);
                let bytes = errno.to_ne_bytes();
                // SAFETY: reporting the failure to init and leaving without running destructors.
                unsafe {
                    libc::write(err_w.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                    libc::_exit(127);
                }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                drop(err_w);
                drop(stdio);
                let mut bytes = [0u8; 4];
                let n = nix::unistd::read(&err_r, &mut bytes).unwrap_or(0);
                if n < bytes.len() {
                    return Ok(child.as_raw());
                }
                let _ = waitpid(child, None);
                let errno = i32::from_ne_bytes(bytes);
                let code = if errno == libc::ENOENT { 127 } else { 126 };
                Err((
                    format!("{program}: {}", io::Error::from_raw_os_error(errno)),
                    code,
                ))
            }
        }
    }

    /// The child's side: returns only on failure, with the errno.
    fn exec_child(
        &self,
        exe: &CString,
        args: &[CString],
        envs: &[CString],
        cwd: &CString,
        stdio: &[OwnedFd],
    ) -> i32 {
        if SigSet::empty().thread_set_mask().is_err() {
            return libc::EINVAL;
        }
        // SAFETY: plain syscalls on descriptors and ids this process owns.
        unsafe {
            if libc::setsid() < 0 {
                return nix::errno::Errno::last_raw();
            }
            for (i, fd) in stdio.iter().enumerate() {
                if libc::dup2(fd.as_raw_fd(), i as i32) < 0 {
                    return nix::errno::Errno::last_raw();
                }
            }
            // Only 0-2 reach the command; the failure pipe closes itself at exec.
            libc::syscall(
                libc::SYS_close_range,
                3,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if libc::chdir(cwd.as_ptr()) < 0 {
                return nix::errno::Errno::last_raw();
            }
            // An ignored signal stays ignored across exec, and init ignores SIGPIPE (Rust's
            // runtime did that in the zygote), plus whatever the runner was started ignoring
            // (SIGINT and SIGQUIT for a background job, SIGHUP under nohup). A command starts
            // with every disposition at its default, as in any container: one writing into a
            // closed pipe dies of it (`yes | head -1`). libc refuses its own reserved signals
            // (32, 33), which a runner may still have been started ignoring (cargo's test
            // harness does), so this talks to the kernel directly. EINVAL for SIGKILL and
            // SIGSTOP is expected.
            reset_signal_dispositions();
        }
        if let Err(errno) = self.confinement.apply() {
            return errno;
        }
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = envs.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: NUL-terminated arrays of pointers to live C strings.
        unsafe { libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        nix::errno::Errno::last_raw()
    }
}

/// Closes every descriptor from 3 up except `keep`.
fn close_all_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep.iter().map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for fd in keep {
        if fd >= from {
            if fd > from {
                // SAFETY: closing descriptors of this process that nothing here uses.
                unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
            }
            from = fd + 1;
        }
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0) };
}

/// Every signal's disposition back to the default (`SIG_DFL`), through `rt_sigaction` itself:
/// libc's `signal` and `sigaction` refuse the real-time signals it reserves for its threads.
fn reset_signal_dispositions() {
    /// The kernel's `struct sigaction` on x86_64 (handler, flags, restorer, mask).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // The kernel's _NSIG: signals 1 to 64.
    for sig in 1..=64 {
        // SAFETY: rt_sigaction with a valid struct, no old action asked for, and the kernel's
        // sigset size (8 bytes).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
}

/// Empties every capability set (bounding and ambient included) and takes the sandbox's uid.
/// The bounding set goes first: dropping it needs CAP_SETPCAP, which the rest removes.
fn drop_privileges(uid: u32) -> Result<(), nix::errno::Errno> {
    use caps::CapSet;
    caps::clear(None, CapSet::Bounding).map_err(|_| nix::errno::Errno::EPERM)?;
    caps::clear(None, CapSet::Ambient).map_err(|_| nix::errno::Errno::EPERM)?;
    nix::unistd::setgroups(&[])?;
    let gid = nix::unistd::Gid::from_raw(uid);
    nix::unistd::setresgid(gid, gid, gid)?;
    let u = nix::unistd::Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u)?;
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        caps::clear(None, set).map_err(|_| nix::errno::Errno::EPERM)?;
    }
    Ok(())
}

/// Finds a program the way execvp does: a name with a slash is a path, others are looked up in
/// `PATH`.
fn resolve(program: &str, path_var: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A step of init's setup and when it was reached (CLOCK_MONOTONIC, the runner's clock too).
fn mark(step: &str) -> (String, u64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: reading a clock into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (
        step.to_string(),
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
    )
}

/// Builds everything a command will be confined in. Errors name the step.
fn setup(
    plan: &SetupPlan,
    volumes: &[OwnedFd],
    warnings: &mut Vec<String>,
    marks: &mut Vec<(String, u64)>,
) -> Result<Confinement, (String, String)> {
    let err = |step: &str| {
        let step = step.to_string();
        move |e: nix::errno::Errno| (step, e.to_string())
    };
    let policy: &SandboxPolicy = &plan.policy;
    mounts::build_root(plan, volumes).map_err(|e| (e.step, e.error.to_string()))?;
    marks.push(mark("root"));
    if let Some(name) = &policy.hostname {
        nix::unistd::sethostname(name).map_err(err("sethostname"))?;
    }
    if plan.private_network {
        mounts::loopback_up().map_err(|e| ("bring loopback up".to_string(), e.to_string()))?;
    }
    marks.push(mark("net"));
    let filter = SyscallFilter::new(&policy.seccomp.deny)
        .map_err(|e| ("compile the seccomp filter".to_string(), e.to_string()))?;
    // One Landlock domain for the whole sandbox, entered by init: commands inherit it, so they
    // may signal each other (a domain per command would forbid that) and nothing outside.
    match FsAccess::from_policy(&policy.filesystem).restrict_self() {
        Ok(FsAccessStatus::Full { .. }) => {}
        Ok(status) => warnings.push(format!("Landlock: {status}")),
        Err(e) => return Err(("Landlock".to_string(), e.to_string())),
    }
    let mut rlimits = vec![(libc::RLIMIT_CORE, 0)];
    if let Some(n) = policy.limits.open_files {
        rlimits.push((
            libc::RLIMIT_NOFILE,
            clamp_to_hard(libc::RLIMIT_NOFILE, n, "open_files", warnings),
        ));
    }
    if let Some(b) = policy.limits.file_size {
        rlimits.push((
            libc::RLIMIT_FSIZE,
            clamp_to_hard(libc::RLIMIT_FSIZE, b.0, "file_size", warnings),
        ));
    }
    Ok(Confinement {
        filter,
        rlimits,
        uid: policy.user,
    })
}

/// Without CAP_SYS_RESOURCE in the host's namespace a limit cannot exceed the inherited hard one.
fn clamp_to_hard(
    resource: libc::__rlimit_resource_t,
    wanted: u64,
    key: &str,
    warnings: &mut Vec<String>,
) -> u64 {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reading a resource limit into a local.
    if unsafe { libc::getrlimit(resource, &mut cur) } == 0 && wanted > cur.rlim_max {
        warnings.push(format!(
            "limits.{key} {wanted} is above the runner's hard limit {}; using that",
            cur.rlim_max
        ));
        return cur.rlim_max;
    }
    wanted
}
