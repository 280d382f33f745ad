//! The escape battery: run INSIDE a sandbox, it tries to get out of it, one real system call or
//! file operation at a time, and prints one JSON line per attempt:
//!
//! `{"attempt": NAME, "outcome": "blocked"|"ESCAPED"|"allowed", "errno": N|null, "detail": TEXT}`
//!
//! `blocked`: the attempt failed (`errno` says how, when a call failed); `ESCAPED`: it worked;
//! `allowed`: the control, what the sandbox must permit (writing the workspace). The battery only
//! reports: the test that runs it (tests/tests/escape.rs) decides whether each attempt was stopped
//! by the mechanism that should stop it, and checks the host side. A last line
//! `{"done": true, "attempts": N}` says the battery ran to its end.
//!
//! `sw-escape host-pid=PID marker-hex=HEX tcp-port=PORT abstract=NAME msg-key=KEY
//! etc-target=PATH usr-target=PATH`: PID is a host process the test started, whose command line
//! holds the marker (hex-encoded here so that this process's own command line does not); PORT a
//! TCP listener on the host's 127.0.0.1; NAME an abstract unix socket the host listens on; KEY a
//! System V message queue of the host; the targets are a host file under /etc (owned by the
//! sandbox's root, so only the read-only mount stands in the way) and a path under /usr that
//! must not come to exist.
//!
//! Calls that change the caller on success (unshare, setns, chroot, keyrings, rlimits) run in a
//! forked child, so a hole in one attempt does not taint the next. Nothing destructive is ever
//! written to a host target: a write that gets through writes the word `escaped`.

use std::{
    collections::BTreeMap, ffi::CString, fs, io, io::Write as _, os::unix::fs::MetadataExt as _,
};

/// A system call's result: its return value, or the errno it failed with.
type Sys = Result<i64, i32>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Blocked,
    Escaped,
    Allowed,
}

struct Report {
    outcome: Outcome,
    errno: Option<i32>,
    detail: String,
}

impl Report {
    fn blocked(errno: Option<i32>, detail: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Blocked,
            errno,
            detail: detail.into(),
        }
    }

    fn escaped(detail: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Escaped,
            errno: None,
            detail: detail.into(),
        }
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn sys(ret: i64) -> Sys {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

fn strerror(e: i32) -> String {
    io::Error::from_raw_os_error(e).to_string()
}

/// A call that must fail: its errno is how it was stopped; success is an escape.
fn refused(what: &str, r: Sys) -> Report {
    match r {
        Err(e) => Report::blocked(Some(e), format!("{what}: {}", strerror(e))),
        Ok(v) => Report::escaped(format!("{what} succeeded (returned {v})")),
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in a path")
}

fn open(path: &str, flags: i32, mode: u32) -> Sys {
    let p = cstr(path);
    // SAFETY: a NUL-terminated path.
    sys(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, mode) } as i64)
}

fn close(fd: i64) {
    // SAFETY: closing a descriptor this process opened.
    unsafe { libc::close(fd as i32) };
}

fn write_fd(fd: i64, bytes: &[u8]) -> Sys {
    // SAFETY: writing from a live buffer of that length.
    sys(unsafe { libc::write(fd as i32, bytes.as_ptr().cast(), bytes.len()) } as i64)
}

fn read_fd(fd: i64, buf: &mut [u8]) -> Sys {
    // SAFETY: reading into a live buffer of that length.
    sys(unsafe { libc::read(fd as i32, buf.as_mut_ptr().cast(), buf.len()) } as i64)
}

/// Runs `f` in a forked child and returns its result: whatever `f` changes about the process
/// (namespaces, root, keyrings, limits) dies with the child.
fn isolated(f: impl FnOnce() -> Sys) -> Sys {
    let mut fds = [0; 2];
    // SAFETY: a pipe into a two-element array; fork in this single-threaded program; the child
    // only makes system calls and leaves with _exit.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            return Err(errno());
        }
        let pid = libc::fork();
        if pid < 0 {
            let e = errno();
            libc::close(fds[0]);
            libc::close(fds[1]);
            return Err(e);
        }
        if pid == 0 {
            let (tag, value) = match f() {
                Ok(v) => (0i64, v),
                Err(e) => (1, e as i64),
            };
            let mut msg = [0u8; 16];
            msg[..8].copy_from_slice(&tag.to_ne_bytes());
            msg[8..].copy_from_slice(&value.to_ne_bytes());
            libc::write(fds[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut msg = [0u8; 16];
        let n = libc::read(fds[0], msg.as_mut_ptr().cast(), msg.len());
        libc::close(fds[0]);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        if n != 16 {
            eprintln!("sw-escape: an isolated attempt's child died without reporting");
            return Err(libc::ECHILD);
        }
        let tag = i64::from_ne_bytes(msg[..8].try_into().unwrap());
        let value = i64::from_ne_bytes(msg[8..].try_into().unwrap());
        if tag == 0 {
            Ok(value)
        } else {
            Err(value as i32)
        }
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Args {
    host_pid: i32,
    marker: String,
    tcp_port: u16,
    abstract_name: String,
    msg_key: i32,
    etc_target: String,
    usr_target: String,
}

fn parse_args() -> Args {
    let kv: BTreeMap<String, String> = std::env::args()
        .skip(1)
        .filter_map(|a| a.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let get = |k: &str| {
        kv.get(k)
            .unwrap_or_else(|| {
                eprintln!("sw-escape: missing {k}=...");
                std::process::exit(2)
            })
            .clone()
    };
    let num = |k: &str| -> i64 {
        get(k).parse().unwrap_or_else(|_| {
            eprintln!("sw-escape: {k} is not a number");
            std::process::exit(2)
        })
    };
    let hex = get("marker-hex");
    let marker = (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .map(char::from)
        .collect();
    Args {
        host_pid: num("host-pid") as i32,
        marker,
        tcp_port: num("tcp-port") as u16,
        abstract_name: get("abstract"),
        msg_key: num("msg-key") as i32,
        etc_target: get("etc-target"),
        usr_target: get("usr-target"),
    }
}

// ---------------------------------------------------------------------------------------------
// What this process holds.

/// Descriptors beyond 0-2 that reached us. Must run before the battery opens anything.
fn inherited_fds() -> Report {
    // SAFETY: F_GETFD on descriptor numbers only queries them.
    let open: Vec<i32> = (3..4096)
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect();
    let listed: Vec<String> = match fs::read_dir("/proc/self/fd") {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => return Report::blocked(e.raw_os_error(), format!("/proc/self/fd: {e}")),
    };
    let mut listed_nums: Vec<i32> = listed.iter().filter_map(|n| n.parse().ok()).collect();
    listed_nums.sort_unstable();
    // The listing's own descriptor is the one extra entry.
    let extra: Vec<i32> = listed_nums
        .iter()
        .copied()
        .filter(|fd| *fd > 2 && !open.contains(fd))
        .collect();
    let detail = format!(
        "open beyond 0-2 before the battery opened anything: {open:?}; /proc/self/fd lists {listed_nums:?} ({extra:?} = the listing itself)"
    );
    if open.is_empty() && listed_nums.len() == 4 && listed_nums[..3] == [0, 1, 2] {
        Report::blocked(None, detail)
    } else {
        Report::escaped(detail)
    }
}

fn status_fields() -> BTreeMap<String, String> {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

fn capabilities() -> Report {
    let st = status_fields();
    let sets = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];
    let detail = sets
        .iter()
        .map(|k| format!("{k}={}", st.get(*k).map_or("?", String::as_str)))
        .collect::<Vec<_>>()
        .join(" ");
    let all_zero = sets
        .iter()
        .all(|k| st.get(*k).is_some_and(|v| v.chars().all(|c| c == '0')));
    if all_zero {
        Report::blocked(None, detail)
    } else {
        Report::escaped(detail)
    }
}

fn no_new_privs() -> Report {
    // SAFETY: a query.
    let prctl = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    let st = status_fields();
    let status = st.get("NoNewPrivs").cloned().unwrap_or_default();
    let detail = format!("prctl(PR_GET_NO_NEW_PRIVS) = {prctl}; NoNewPrivs: {status}");
    if prctl == 1 && status == "1" {
        Report::blocked(None, detail)
    } else {
        Report::escaped(detail)
    }
}

fn seccomp_mode() -> Report {
    let st = status_fields();
    let mode = st.get("Seccomp").cloned().unwrap_or_default();
    let filters = st.get("Seccomp_filters").cloned().unwrap_or_default();
    let detail = format!("Seccomp: {mode}, Seccomp_filters: {filters}");
    if mode == "2" {
        Report::blocked(None, detail)
    } else {
        Report::escaped(format!("no seccomp filter: {detail}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Other processes.

/// (pid, command line) of every process this /proc shows.
fn proc_pids() -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .map(|pid| {
                    let cmd = fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|b| {
                            String::from_utf8_lossy(&b)
                                .replace('\0', " ")
                                .trim()
                                .to_owned()
                        })
                        .unwrap_or_else(|e| format!("<{e}>"));
                    (pid, cmd)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.to_owned()
    }
}

fn host_process_hidden(args: &Args, pids: &[(i32, String)]) -> Report {
    let me = std::process::id() as i32;
    let seen: Vec<_> = pids
        .iter()
        .filter(|(p, c)| *p != me && c.contains(&args.marker))
        .collect();
    if seen.is_empty() {
        Report::blocked(
            None,
            format!(
                "scanned {} pids' cmdline, none has the host process's marker",
                pids.len()
            ),
        )
    } else {
        Report::escaped(format!("the host process is visible: {seen:?}"))
    }
}

fn only_sandbox_processes(pids: &[(i32, String)]) -> Report {
    let listing = pids
        .iter()
        .map(|(p, c)| format!("{p}: {}", short(c)))
        .collect::<Vec<_>>()
        .join("; ");
    let is_init = |p: i32, c: &str| p == 1 && c.starts_with("sandwatch-init");
    let init_is_ours = pids.iter().any(|(p, c)| is_init(*p, c));
    let foreign: Vec<_> = pids
        .iter()
        .filter(|(p, c)| !is_init(*p, c) && !c.starts_with("/workspace/sw-escape"))
        .collect();
    if init_is_ours && foreign.is_empty() {
        Report::blocked(None, format!("/proc shows {listing}"))
    } else {
        Report::escaped(format!(
            "/proc shows processes not of the sandbox: {listing}"
        ))
    }
}

fn kill_host_pid(args: &Args, pids: &[(i32, String)]) -> Report {
    if pids.iter().any(|(p, _)| *p == args.host_pid) {
        return Report::blocked(
            None,
            format!(
                "host pid {} is also a pid in the sandbox: not sent",
                args.host_pid
            ),
        );
    }
    // SAFETY: a signal to a pid number.
    let r = sys(unsafe { libc::kill(args.host_pid, libc::SIGKILL) } as i64);
    refused(&format!("kill({}, SIGKILL)", args.host_pid), r)
}

fn ptrace_host_pid(args: &Args) -> Report {
    // SAFETY: ptrace requests with null addresses.
    let r = sys(unsafe {
        libc::ptrace(
            libc::PTRACE_ATTACH,
            args.host_pid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    });
    if r.is_ok() {
        // SAFETY: as above.
        unsafe {
            libc::ptrace(
                libc::PTRACE_DETACH,
                args.host_pid,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
    }
    refused(&format!("ptrace(PTRACE_ATTACH, {})", args.host_pid), r)
}

fn process_vm_readv_init() -> Report {
    let mut buf = [0u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: 0x40_0000 as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: one local iovec over a live buffer; the remote one is only read by the kernel.
    let r = sys(unsafe {
        libc::syscall(
            libc::SYS_process_vm_readv,
            1,
            &local as *const libc::iovec,
            1,
            &remote as *const libc::iovec,
            1,
            0,
        )
    });
    refused("process_vm_readv(init)", r)
}

fn read_init_mem() -> Report {
    let r = open("/proc/1/mem", libc::O_RDONLY, 0);
    if let Ok(fd) = r {
        close(fd);
    }
    refused("open /proc/1/mem read-only", r)
}

fn write_init_mem() -> Report {
    let r = open("/proc/1/mem", libc::O_RDWR, 0);
    if let Ok(fd) = r {
        close(fd);
    }
    refused("open /proc/1/mem read-write", r)
}

fn init_control_socket() -> Report {
    let r = open("/proc/1/fd/3", libc::O_RDWR, 0);
    if let Ok(fd) = r {
        close(fd);
    }
    refused("open init's control socket /proc/1/fd/3", r)
}

fn open_init_ns() -> Report {
    let r = open("/proc/1/ns/mnt", libc::O_RDONLY, 0);
    if let Ok(fd) = r {
        close(fd);
    }
    refused("open /proc/1/ns/mnt", r)
}

fn overwrite_init_exe() -> Report {
    let r = open("/proc/1/exe", libc::O_WRONLY, 0);
    if let Ok(fd) = r {
        close(fd);
    }
    refused("open init's executable /proc/1/exe for writing", r)
}

fn pidfd_getfd_init() -> Report {
    // SAFETY: a pidfd for pid 1 of our pid namespace.
    let pidfd = match sys(unsafe { libc::syscall(libc::SYS_pidfd_open, 1, 0) }) {
        Ok(fd) => fd,
        Err(e) => return Report::blocked(Some(e), format!("pidfd_open(1): {}", strerror(e))),
    };
    // SAFETY: asks for a copy of init's descriptor 3, its control socket.
    let r = sys(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, 3, 0) });
    close(pidfd);
    if let Ok(fd) = r {
        close(fd);
    }
    refused("pidfd_getfd(init, 3): a copy of init's control socket", r)
}

fn kill_init() -> Report {
    // SAFETY: signals to pid 1 of our pid namespace.
    let r = sys(unsafe { libc::kill(1, libc::SIGKILL) } as i64);
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: as above, signal 0 only checks.
    let alive = unsafe { libc::kill(1, 0) } == 0 || errno() == libc::EPERM;
    match r {
        Err(e) => Report::blocked(Some(e), format!("kill(1, SIGKILL): {}", strerror(e))),
        Ok(_) if alive => Report::blocked(
            None,
            "kill(1, SIGKILL) returned 0 and init is still alive (a pid namespace's init ignores signals from inside)",
        ),
        Ok(_) => Report::escaped("kill(1, SIGKILL) killed the sandbox's init"),
    }
}

// ---------------------------------------------------------------------------------------------
// Files.

fn write_new_file(path: &str) -> Report {
    let r = open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644);
    if let Ok(fd) = r {
        let _ = write_fd(fd, b"escaped\n");
        close(fd);
    }
    refused(&format!("create {path}"), r)
}

fn write_existing_file(path: &str) -> Report {
    let r = open(path, libc::O_WRONLY, 0);
    if let Ok(fd) = r {
        let _ = write_fd(fd, b"escaped\n");
        close(fd);
    }
    refused(&format!("open {path} for writing"), r)
}

fn read_file(path: &str) -> Report {
    let r = open(path, libc::O_RDONLY, 0);
    match r {
        Ok(fd) => {
            let mut buf = [0u8; 64];
            let n = read_fd(fd, &mut buf);
            close(fd);
            Report::escaped(format!("read {path}: {n:?} bytes"))
        }
        Err(_) => refused(&format!("read {path}"), r),
    }
}

fn read_dir_path(path: &str) -> Report {
    match fs::read_dir(path) {
        Ok(d) => Report::escaped(format!("listed {path}: {} entries", d.count())),
        Err(e) => Report::blocked(e.raw_os_error(), format!("list {path}: {e}")),
    }
}

/// A kernel file that must be absent, or masked (reads nothing).
fn read_kernel_file(path: &str, flags: i32) -> Report {
    match open(path, flags, 0) {
        Err(e) => Report::blocked(Some(e), format!("open {path}: {}", strerror(e))),
        Ok(fd) => {
            let mut buf = [0u8; 64];
            let n = read_fd(fd, &mut buf);
            close(fd);
            if n == Ok(0) {
                Report::blocked(None, format!("{path} is masked: it reads nothing"))
            } else {
                Report::escaped(format!("{path} opened and read: {n:?}"))
            }
        }
    }
}

/// A /proc/sys knob opened for writing (and truncation, which a sysctl ignores). `write` says
/// whether to write `escaped` into it if it opens: never for host-wide knobs.
fn open_sysctl_for_write(path: &str, write: bool) -> Report {
    let r = open(path, libc::O_WRONLY | libc::O_TRUNC, 0);
    if let Ok(fd) = r {
        if write {
            let _ = write_fd(fd, b"escaped");
        }
        close(fd);
    }
    refused(&format!("open {path} for writing"), r)
}

fn sysrq_trigger() -> Report {
    let path = "/proc/sysrq-trigger";
    match open(path, libc::O_WRONLY, 0) {
        Err(e) => Report::blocked(Some(e), format!("open {path}: {}", strerror(e))),
        Ok(fd) => {
            // SAFETY: fstat into a zeroed struct.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            let r = unsafe { libc::fstat(fd as i32, &mut st) };
            close(fd);
            let is_null = r == 0
                && st.st_mode & libc::S_IFMT == libc::S_IFCHR
                && libc::major(st.st_rdev) == 1
                && libc::minor(st.st_rdev) == 3;
            if is_null {
                Report::blocked(None, format!("{path} is masked with /dev/null"))
            } else {
                Report::escaped(format!("{path} opened for writing (nothing written)"))
            }
        }
    }
}

fn stat_absent(path: &str) -> Report {
    match fs::symlink_metadata(path) {
        Ok(m) => Report::escaped(format!("{path} exists ({:?})", m.file_type())),
        Err(e) => Report::blocked(e.raw_os_error(), format!("stat {path}: {e}")),
    }
}

fn mknod_device() -> Report {
    let path = cstr("/workspace/sw-escape-mem");
    // SAFETY: a NUL-terminated path.
    let r = sys(
        unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 1)) } as i64,
    );
    if r.is_ok() {
        // SAFETY: as above.
        unsafe { libc::unlink(path.as_ptr()) };
    }
    refused("mknod /workspace/sw-escape-mem c 1 1 (/dev/mem)", r)
}

fn hardlink_host_file() -> Report {
    let (from, to) = (cstr("/etc/passwd"), cstr("/workspace/sw-escape-passwd"));
    // SAFETY: NUL-terminated paths.
    let r = sys(unsafe { libc::link(from.as_ptr(), to.as_ptr()) } as i64);
    if r.is_ok() {
        // SAFETY: as above.
        unsafe { libc::unlink(to.as_ptr()) };
    }
    refused("link /etc/passwd to /workspace/sw-escape-passwd", r)
}

fn open_by_handle() -> Report {
    #[repr(C)]
    struct FileHandle {
        handle_bytes: u32,
        handle_type: i32,
        f_handle: [u8; 8],
    }
    // ext4's root directory: inode 2, generation 0 (FILEID_INO32_GEN), the "shocker" exploit.
    let mut handle = FileHandle {
        handle_bytes: 8,
        handle_type: 1,
        f_handle: [2, 0, 0, 0, 0, 0, 0, 0],
    };
    let mount_fd = match open("/workspace", libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Ok(fd) => fd,
        Err(e) => return Report::blocked(Some(e), format!("open /workspace: {}", strerror(e))),
    };
    // SAFETY: a live file_handle with its size.
    let r = sys(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd,
            &mut handle as *mut FileHandle,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    });
    close(mount_fd);
    if let Ok(fd) = r {
        close(fd);
    }
    refused(
        "open_by_handle_at(/workspace, inode 2 of its filesystem)",
        r,
    )
}

fn workspace_writable() -> Report {
    let path = "/workspace/sw-escape-proof.txt";
    let content = b"written inside the sandbox\n";
    let result = (|| -> io::Result<()> {
        fs::write(path, content)?;
        let back = fs::read(path)?;
        if back != content {
            return Err(io::Error::other(format!("read back {back:?}")));
        }
        Ok(())
    })();
    match result {
        Ok(()) => Report {
            outcome: Outcome::Allowed,
            errno: None,
            detail: format!("created, wrote and read back {path}"),
        },
        Err(e) => Report::blocked(e.raw_os_error(), format!("{path}: {e}")),
    }
}

fn setuid_binary() -> Report {
    let Some(bin) = ["/bin/mount", "/usr/bin/mount"].into_iter().find(|p| {
        fs::metadata(p).is_ok_and(|m| m.mode() & libc::S_ISUID != 0 && m.mode() & 0o111 != 0)
    }) else {
        let st = status_fields();
        return Report::blocked(
            None,
            format!(
                "no setuid mount binary here; NoNewPrivs: {}",
                st.get("NoNewPrivs").map_or("?", String::as_str)
            ),
        );
    };
    let owner = fs::metadata(bin).map(|m| m.uid()).unwrap_or(u32::MAX);
    let dir = "/workspace/sw-escape-suid-mnt";
    let _ = fs::create_dir(dir);
    let dev_before = fs::metadata(dir).map(|m| m.dev()).ok();
    let argv: Vec<CString> = [bin, "-t", "tmpfs", "sw-escape", dir]
        .iter()
        .map(|s| cstr(s))
        .collect();
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: fork in this single-threaded program; the child only execs or leaves.
    let status = unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return Report::blocked(Some(errno()), "fork failed");
        }
        if pid == 0 {
            libc::execve(ptrs[0], ptrs.as_ptr(), env.as_ptr());
            libc::_exit(127);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        status
    };
    let dev_after = fs::metadata(dir).map(|m| m.dev()).ok();
    let in_mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .contains(&format!(" {dir} "));
    let _ = fs::remove_dir(dir);
    let how = if libc::WIFEXITED(status) {
        format!("exited {}", libc::WEXITSTATUS(status))
    } else {
        format!("wait status {status}")
    };
    let detail = format!(
        "{bin} (setuid, owner uid {owner} as seen inside) -t tmpfs on {dir}: {how}; mounted: {}",
        dev_before != dev_after || in_mountinfo
    );
    if dev_before != dev_after || in_mountinfo {
        Report::escaped(detail)
    } else {
        Report::blocked(None, detail)
    }
}

// ---------------------------------------------------------------------------------------------
// Mounts, namespaces, cgroups.

fn mount(source: &str, target: &str, fstype: &str, data: Option<&str>) -> Report {
    let (s, t, f) = (cstr(source), cstr(target), cstr(fstype));
    let d = data.map(cstr);
    // SAFETY: NUL-terminated strings, data optional.
    let r = sys(unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ptr(),
            0,
            d.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast::<libc::c_void>()),
        )
    } as i64);
    if r.is_ok() {
        // SAFETY: as above.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    }
    refused(&format!("mount -t {fstype} {source} {target}"), r)
}

fn fsopen() -> Report {
    let name = cstr("tmpfs");
    // SAFETY: a NUL-terminated name.
    let r = sys(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), 0) });
    if let Ok(fd) = r {
        close(fd);
    }
    refused("fsopen(tmpfs)", r)
}

fn unshare_user() -> Report {
    // SAFETY: in a child that exits right after.
    let r = isolated(|| sys(unsafe { libc::unshare(libc::CLONE_NEWUSER) } as i64));
    refused("unshare(CLONE_NEWUSER)", r)
}

fn setns_mnt() -> Report {
    let fd = match open("/proc/self/ns/mnt", libc::O_RDONLY, 0) {
        Ok(fd) => fd,
        Err(e) => {
            return Report::blocked(Some(e), format!("open /proc/self/ns/mnt: {}", strerror(e)));
        }
    };
    // SAFETY: in a child that exits right after.
    let r = isolated(|| sys(unsafe { libc::setns(fd as i32, libc::CLONE_NEWNS) } as i64));
    close(fd);
    refused("setns(/proc/self/ns/mnt, CLONE_NEWNS)", r)
}

fn clone_newuser() -> Report {
    // SAFETY: clone without a stack is fork: the child leaves at once.
    let r = sys(unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_NEWUSER | libc::SIGCHLD,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    });
    reap_clone("clone(CLONE_NEWUSER)", r)
}

fn clone3_newuser() -> Report {
    // struct clone_args (CLONE_ARGS_SIZE_VER0 = 64 bytes): flags, pidfd, child_tid, parent_tid,
    // exit_signal, stack, stack_size, tls.
    let mut args = [0u64; 8];
    args[0] = libc::CLONE_NEWUSER as u64;
    args[4] = libc::SIGCHLD as u64;
    // SAFETY: clone3 without a stack is fork: the child leaves at once.
    let r = sys(unsafe { libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), size_of_val(&args)) });
    reap_clone("clone3(CLONE_NEWUSER)", r)
}

/// After a fork-like clone: the child (0) leaves, the parent reaps it.
fn reap_clone(what: &str, r: Sys) -> Report {
    match r {
        // SAFETY: the child of a fork-like clone leaves without running anything else.
        Ok(0) => unsafe { libc::_exit(0) },
        // SAFETY: reaping our own child.
        Ok(pid) => unsafe {
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        },
        Err(_) => {}
    }
    refused(what, r)
}

fn personality() -> Report {
    // SAFETY: in a child that exits right after.
    let r = isolated(|| {
        sys(unsafe { libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong) } as i64)
    });
    refused("personality(ADDR_NO_RANDOMIZE)", r)
}

fn chroot() -> Report {
    let p = cstr("/tmp");
    // SAFETY: in a child that exits right after.
    let r = isolated(|| sys(unsafe { libc::chroot(p.as_ptr()) } as i64));
    refused("chroot(/tmp)", r)
}

fn pivot_root() -> Report {
    let p = cstr("/tmp");
    // SAFETY: in a child that exits right after.
    let r =
        isolated(|| sys(unsafe { libc::syscall(libc::SYS_pivot_root, p.as_ptr(), p.as_ptr()) }));
    refused("pivot_root(/tmp, /tmp)", r)
}

fn host_cgroup_procs() -> Report {
    let candidates = [
        "/sys/fs/cgroup/cgroup.procs",
        "/sys/fs/cgroup/unified/cgroup.procs",
        "/sys/fs/cgroup/pids/cgroup.procs",
        "/sys/fs/cgroup/memory/cgroup.procs",
        "/sys/fs/cgroup/cpu/cgroup.procs",
    ];
    let mut first = None;
    let mut tried = Vec::new();
    for path in candidates {
        match open(path, libc::O_WRONLY, 0) {
            Ok(fd) => {
                let r = write_fd(fd, b"0");
                close(fd);
                return Report::escaped(format!("opened {path} for writing; wrote 0: {r:?}"));
            }
            Err(e) => {
                first.get_or_insert(e);
                tried.push(format!("{path}: {}", strerror(e)));
            }
        }
    }
    let cgroup_mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
        .map(str::to_owned)
        .collect();
    if !cgroup_mounts.is_empty() {
        return Report::escaped(format!("cgroup filesystems mounted: {cgroup_mounts:?}"));
    }
    Report::blocked(
        first,
        format!("no cgroup filesystem mounted; {}", tried.join("; ")),
    )
}

fn cgroup_paths_hidden() -> Report {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let detail = format!("/proc/self/cgroup: {}", lines.join(" | "));
    if !lines.is_empty() && lines.iter().all(|l| l.ends_with(":/")) {
        Report::blocked(None, detail)
    } else {
        Report::escaped(detail)
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel.

fn init_module() -> Report {
    let image = [0u8; 64];
    let params = cstr("");
    // SAFETY: a live buffer of that length and a NUL-terminated string.
    let r = sys(unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            params.as_ptr(),
        )
    });
    refused("init_module", r)
}

fn finit_module() -> Report {
    let fd = match open("/proc/self/exe", libc::O_RDONLY, 0) {
        Ok(fd) => fd,
        Err(e) => return Report::blocked(Some(e), format!("open /proc/self/exe: {}", strerror(e))),
    };
    let params = cstr("");
    // SAFETY: a descriptor and a NUL-terminated string.
    let r = sys(unsafe { libc::syscall(libc::SYS_finit_module, fd, params.as_ptr(), 0) });
    close(fd);
    refused("finit_module(this program)", r)
}

fn kexec_load() -> Report {
    // SAFETY: no segments.
    let r = sys(unsafe {
        libc::syscall(
            libc::SYS_kexec_load,
            0usize,
            0usize,
            std::ptr::null::<libc::c_void>(),
            0usize,
        )
    });
    refused("kexec_load", r)
}

fn bpf() -> Report {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
    let mut attr = [0u32; 32];
    attr[..4].copy_from_slice(&[2 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1]);
    // SAFETY: a live attribute buffer with its size.
    let r = sys(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0, /* BPF_MAP_CREATE */
            attr.as_mut_ptr(),
            size_of_val(&attr),
        )
    });
    if let Ok(fd) = r {
        close(fd);
    }
    refused("bpf(BPF_MAP_CREATE, array)", r)
}

fn perf_event_open() -> Report {
    // struct perf_event_attr (PERF_ATTR_SIZE_VER0 = 64 bytes): type PERF_TYPE_SOFTWARE, size,
    // config PERF_COUNT_SW_CPU_CLOCK, flags disabled|exclude_kernel|exclude_hv. A self-monitoring
    // user-only event: what perf_event_paranoid=2 lets anyone open.
    let mut attr = [0u64; 16];
    attr[0] = 1 | (64 << 32);
    attr[5] = 1 | (1 << 5) | (1 << 6);
    // SAFETY: a live attribute buffer; pid 0 = this process, cpu -1 = any.
    let r = sys(unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_mut_ptr(),
            0,
            -1,
            -1,
            8, /* PERF_FLAG_FD_CLOEXEC */
        )
    });
    if let Ok(fd) = r {
        close(fd);
    }
    refused("perf_event_open(software cpu-clock, this process)", r)
}

fn userfaultfd() -> Report {
    // UFFD_USER_MODE_ONLY: what an unprivileged process may create when
    // vm.unprivileged_userfaultfd is 0.
    // SAFETY: flags only.
    let r = sys(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | 1) });
    if let Ok(fd) = r {
        close(fd);
    }
    refused("userfaultfd(UFFD_USER_MODE_ONLY)", r)
}

fn add_key() -> Report {
    let (ty, desc) = (cstr("user"), cstr("sw-escape"));
    // SAFETY: in a child that exits right after; NUL-terminated strings, a 1-byte payload.
    let r = isolated(|| {
        sys(unsafe {
            libc::syscall(
                libc::SYS_add_key,
                ty.as_ptr(),
                desc.as_ptr(),
                b"x".as_ptr(),
                1usize,
                -2i32, /* KEY_SPEC_PROCESS_KEYRING */
            )
        })
    });
    refused("add_key(user, process keyring)", r)
}

fn keyctl() -> Report {
    let name = cstr("sw-escape");
    // SAFETY: in a child that exits right after; a NUL-terminated name.
    let r = isolated(|| {
        sys(unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                1, /* KEYCTL_JOIN_SESSION_KEYRING */
                name.as_ptr(),
            )
        })
    });
    refused("keyctl(KEYCTL_JOIN_SESSION_KEYRING)", r)
}

fn clock_settime() -> Report {
    // SAFETY: reading the clock into a zeroed struct, then setting it to what it says.
    let r = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
        sys(libc::syscall(
            libc::SYS_clock_settime,
            libc::CLOCK_REALTIME,
            &ts as *const libc::timespec,
        ))
    };
    refused("clock_settime(CLOCK_REALTIME, now)", r)
}

fn settimeofday() -> Report {
    // SAFETY: reading the time into a zeroed struct, then setting it to what it says.
    let r = unsafe {
        let mut tv: libc::timeval = std::mem::zeroed();
        libc::gettimeofday(&mut tv, std::ptr::null_mut());
        sys(libc::syscall(
            libc::SYS_settimeofday,
            &tv as *const libc::timeval,
            std::ptr::null::<libc::c_void>(),
        ))
    };
    refused("settimeofday(now)", r)
}

fn sethostname() -> Report {
    let name = b"escaped";
    // SAFETY: a live buffer of that length.
    let r = sys(unsafe { libc::syscall(libc::SYS_sethostname, name.as_ptr(), name.len()) });
    refused("sethostname(escaped)", r)
}

fn reboot() -> Report {
    // SAFETY: LINUX_REBOOT_CMD_CAD_OFF with the magic numbers: the mildest reboot command.
    let r = sys(unsafe {
        libc::syscall(
            libc::SYS_reboot,
            libc::LINUX_REBOOT_MAGIC1,
            libc::LINUX_REBOOT_MAGIC2,
            libc::LINUX_REBOOT_CMD_CAD_OFF,
            std::ptr::null::<libc::c_void>(),
        )
    });
    refused("reboot(LINUX_REBOOT_CMD_CAD_OFF)", r)
}

fn io_uring_setup() -> Report {
    let mut params = [0u8; 120];
    // SAFETY: a zeroed struct io_uring_params of its size.
    let r = sys(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) });
    if let Ok(fd) = r {
        close(fd);
    }
    refused("io_uring_setup(1 entry)", r)
}

fn syslog() -> Report {
    let mut buf = vec![0u8; 4096];
    // SAFETY: a live buffer of that length.
    let r = sys(unsafe {
        libc::syscall(
            libc::SYS_syslog,
            3, /* SYSLOG_ACTION_READ_ALL */
            buf.as_mut_ptr(),
            buf.len(),
        )
    });
    refused("syslog(SYSLOG_ACTION_READ_ALL)", r)
}

fn iopl() -> Report {
    // SAFETY: a request for I/O privilege level 3.
    let r = sys(unsafe { libc::syscall(libc::SYS_iopl, 3) });
    refused("iopl(3)", r)
}

fn raise_nofile() -> Report {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reading a limit into a local.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if lim.rlim_max == libc::RLIM_INFINITY {
        return Report::escaped("RLIMIT_NOFILE has no hard limit");
    }
    let want = libc::rlimit {
        rlim_cur: lim.rlim_max + 1,
        rlim_max: lim.rlim_max + 1,
    };
    // SAFETY: in a child that exits right after.
    let r = isolated(|| sys(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } as i64));
    refused(
        &format!(
            "setrlimit(RLIMIT_NOFILE) from hard {} to {}",
            lim.rlim_max, want.rlim_max
        ),
        r,
    )
}

fn tiocsti() -> Report {
    let c = b'x';
    // SAFETY: TIOCSTI reads one byte from a live variable.
    let r = sys(unsafe { libc::ioctl(0, libc::TIOCSTI, &c as *const u8) } as i64);
    let tty = open("/dev/tty", libc::O_RDWR, 0);
    if let Ok(fd) = tty {
        close(fd);
    }
    let mut report = refused("ioctl(stdin, TIOCSTI)", r);
    report.detail.push_str(&format!(
        "; open /dev/tty: {}",
        match tty {
            Ok(_) => "opened".to_string(),
            Err(e) => strerror(e),
        }
    ));
    report
}

// ---------------------------------------------------------------------------------------------
// The network and IPC.

fn socket(domain: i32, ty: i32, protocol: i32) -> Sys {
    // SAFETY: creating a socket.
    sys(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) } as i64)
}

fn new_socket(what: &str, domain: i32, ty: i32, protocol: i32) -> Report {
    let r = socket(domain, ty, protocol);
    if let Ok(fd) = r {
        close(fd);
    }
    refused(what, r)
}

/// AF_VSOCK has no network namespaces on this kernel: a stream socket's only transport is the
/// virtio device, to the hypervisor (CID 2), whatever the sandbox's network mode. The socket is
/// only created, never connected: what listens on the hypervisor's side is not ours to poke.
fn socket_vsock() -> Report {
    let r = socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0);
    match r {
        Ok(fd) => {
            close(fd);
            Report::escaped(
                "socket(AF_VSOCK, SOCK_STREAM) created: vsock is not network-namespaced, its transport leads to the hypervisor (not connected)",
            )
        }
        Err(_) => refused("socket(AF_VSOCK, SOCK_STREAM)", r),
    }
}

fn connect_v4(ty: i32, addr: [u8; 4], port: u16) -> Sys {
    let fd = socket(libc::AF_INET, ty, 0)?;
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a sockaddr_in with its size.
    let r = sys(unsafe {
        libc::connect(
            fd as i32,
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        )
    } as i64);
    close(fd);
    r
}

fn connect_abstract(name: &str) -> Report {
    let fd = match socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) {
        Ok(fd) => fd,
        Err(e) => return Report::blocked(Some(e), format!("socket(AF_UNIX): {}", strerror(e))),
    };
    // SAFETY: a zeroed sockaddr_un.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as u16;
    for (i, b) in name.bytes().take(sa.sun_path.len() - 1).enumerate() {
        sa.sun_path[i + 1] = b as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + 1 + name.len();
    // SAFETY: a sockaddr_un with the length of its abstract name.
    let r = sys(unsafe {
        libc::connect(
            fd as i32,
            (&sa as *const libc::sockaddr_un).cast(),
            len as u32,
        )
    } as i64);
    close(fd);
    refused(&format!("connect to the host's abstract socket @{name}"), r)
}

fn host_sysv_ipc(key: i32) -> Report {
    // SAFETY: looking a message queue up by key.
    let r = sys(unsafe { libc::msgget(key, 0) } as i64);
    if let Ok(id) = r {
        #[repr(C)]
        struct Msg {
            mtype: libc::c_long,
            text: [u8; 8],
        }
        let msg = Msg {
            mtype: 1,
            text: *b"escaped\0",
        };
        // SAFETY: a message of that size.
        unsafe { libc::msgsnd(id as i32, (&msg as *const Msg).cast(), 8, libc::IPC_NOWAIT) };
    }
    refused(&format!("msgget(host queue key {key:#x})"), r)
}

fn main() {
    let args = parse_args();
    let mut count = 0;
    let mut out = io::stdout().lock();
    let mut run = |name: &str, report: Report| {
        let outcome = match report.outcome {
            Outcome::Blocked => "blocked",
            Outcome::Escaped => "ESCAPED",
            Outcome::Allowed => "allowed",
        };
        let errno = report.errno.map_or("null".to_string(), |e| e.to_string());
        let _ = writeln!(
            out,
            "{{\"attempt\": {}, \"outcome\": \"{outcome}\", \"errno\": {errno}, \"detail\": {}}}",
            json_str(name),
            json_str(&report.detail)
        );
        let _ = out.flush();
        count += 1;
    };

    // First, before anything is opened.
    run("inherited_fds", inherited_fds());
    run("capabilities", capabilities());
    run("no_new_privs", no_new_privs());
    run("seccomp_mode", seccomp_mode());

    let pids = proc_pids();
    run("host_process_hidden", host_process_hidden(&args, &pids));
    run("proc_only_sandbox_processes", only_sandbox_processes(&pids));
    run("kill_host_pid", kill_host_pid(&args, &pids));
    run("ptrace_host_pid", ptrace_host_pid(&args));
    run("process_vm_readv_init", process_vm_readv_init());
    run("read_init_mem", read_init_mem());
    run("write_init_mem", write_init_mem());
    run("init_control_socket", init_control_socket());
    run("open_init_ns", open_init_ns());
    run("overwrite_init_exe", overwrite_init_exe());
    run("pidfd_getfd_init", pidfd_getfd_init());

    run("write_usr", write_new_file(&args.usr_target));
    run("write_etc", write_existing_file(&args.etc_target));
    run("read_root", read_dir_path("/root"));
    run("read_etc_shadow", read_file("/etc/shadow"));
    run(
        "open_proc_kcore",
        read_kernel_file("/proc/kcore", libc::O_RDONLY),
    );
    run("open_dev_mem", read_kernel_file("/dev/mem", libc::O_RDWR));
    run("read_proc_kmsg", read_file("/proc/kmsg"));
    run(
        "write_proc_sys_hostname",
        open_sysctl_for_write("/proc/sys/kernel/hostname", true),
    );
    run(
        "write_core_pattern",
        open_sysctl_for_write("/proc/sys/kernel/core_pattern", false),
    );
    run("write_sysrq_trigger", sysrq_trigger());
    run("sys_absent", stat_absent("/sys"));
    run("mknod_device", mknod_device());
    run("hardlink_host_file", hardlink_host_file());
    run("open_by_handle_at", open_by_handle());
    run("setuid_binary", setuid_binary());

    run("host_cgroup_procs", host_cgroup_procs());
    run("cgroup_paths_hidden", cgroup_paths_hidden());
    run("mount_cgroup2", mount("none", "/tmp", "cgroup2", None));
    run(
        "mount_tmpfs",
        mount("tmpfs", "/tmp", "tmpfs", Some("size=1m")),
    );
    run("fsopen", fsopen());
    run("unshare_user", unshare_user());
    run("clone_newuser", clone_newuser());
    run("clone3_newuser", clone3_newuser());
    run("setns", setns_mnt());
    run("chroot", chroot());
    run("pivot_root", pivot_root());

    run("init_module", init_module());
    run("finit_module", finit_module());
    run("kexec_load", kexec_load());
    run("bpf", bpf());
    run("perf_event_open", perf_event_open());
    run("userfaultfd", userfaultfd());
    run("add_key", add_key());
    run("keyctl", keyctl());
    run("clock_settime", clock_settime());
    run("settimeofday", settimeofday());
    run("sethostname", sethostname());
    run("reboot", reboot());
    run("io_uring_setup", io_uring_setup());
    run("syslog", syslog());
    run("iopl", iopl());
    run("personality", personality());
    run("raise_nofile", raise_nofile());
    run("tiocsti", tiocsti());

    run(
        "socket_packet",
        new_socket(
            "socket(AF_PACKET, SOCK_RAW)",
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        ),
    );
    run("socket_vsock", socket_vsock());
    run(
        "socket_raw",
        new_socket(
            "socket(AF_INET, SOCK_RAW, ICMP)",
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP,
        ),
    );
    run(
        "connect_host_tcp",
        refused(
            &format!("connect to 127.0.0.1:{}", args.tcp_port),
            connect_v4(libc::SOCK_STREAM, [127, 0, 0, 1], args.tcp_port),
        ),
    );
    run(
        "connect_host_abstract",
        connect_abstract(&args.abstract_name),
    );
    run(
        "connect_outside",
        refused(
            "connect UDP to 1.1.1.1:53",
            connect_v4(libc::SOCK_DGRAM, [1, 1, 1, 1], 53),
        ),
    );
    run("host_sysv_ipc", host_sysv_ipc(args.msg_key));

    run("workspace_writable", workspace_writable());
    // Last: if it worked, the sandbox (and this battery) would be over.
    run("kill_init", kill_init());

    let _ = writeln!(out, "{{\"done\": true, \"attempts\": {count}}}");
}
