//! The job the integration tests run, in a sandbox (copied into its workspace and run as
//! `/workspace/sw-test-job`) or on the host: fixed scripts of syscalls whose exact records the
//! tests assert. It prints what it did (pids, fds, errnos) as one JSON line, so the tests compare
//! the audit log with facts rather than guesses. Pids it prints are as it sees them: in a sandbox,
//! pids of the sandbox's pid namespace.
//!
//! `sw-test-job script TCP_PORT UDP_PORT FILE`: cat /etc/hostname, create FILE and read it back,
//! TCP connect to 127.0.0.1:TCP_PORT, one UDP datagram to 127.0.0.1:UDP_PORT, ptrace attach and
//! detach of a child (reporting the errnos: a sandbox refuses ptrace), kill it; exit 7.
//! `sw-test-job burst N`: N openat calls of a path that does not exist, as fast as possible.
//! `sw-test-job open PATH`: open PATH read-only once (for the watch tests); exit 0.
//! `sw-test-job edge`: the corner cases: an exec whose argv does not fit the capture, an open of
//! a path longer than the capture, unshare(CLONE_NEWUSER) (its errno reported: a sandbox refuses
//! it), a sethostname that must be refused; then it kills itself with SIGKILL.
//! `sw-test-job alloc MIB`: allocates and touches MIB MiB, printing the MiB reached every 4 MiB.
//! `sw-test-job forks N`: forks up to N children that wait; reports how many forks succeeded
//! and the errno of the first that failed (0 if none), then kills and reaps them.
//! `sw-test-job spin THREADS`: THREADS threads spin until killed.
//! `sw-test-job count FILE`: writes 1, 2, 3, ... to FILE (atomically: write then rename) every
//! 5 ms until killed.
//! `sw-test-job facts LABEL`: prints what the kernel says of this process as one JSON line: its
//! terminal (`tty_nr` of /proc/self/stat), capability sets (CapEff, CapPrm, CapInh of
//! /proc/self/status) and login uid (/proc/self/loginuid, as this process's namespace shows it).
//! `sw-test-job pty-exec PROGRAM ARGS...`: a child in a new session takes a new pseudo-terminal
//! as its controlling terminal and executes PROGRAM ARGS; exits with the child's status.
//! `sw-test-job memfd-exec ARGS...`: copies its own executable into a memfd and executes that
//! (fileless execution) with ARGS.
//! `sw-test-job copy-exec PATH ARGS...`: copies its own executable to PATH (mode 755) and
//! executes PATH with ARGS.

use std::{ffi::CString, process::Command};

fn check(what: &str, rc: i64) -> i64 {
    if rc < 0 {
        eprintln!(
            "sw-test-job: {what} failed: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(90);
    }
    rc
}

/// 0 when `rc` is not negative, else the errno it left.
fn errno_of(rc: i64) -> i32 {
    if rc < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

fn sockaddr_v4(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    }
}

fn script(tcp_port: u16, udp_port: u16, file: &str) {
    let cat = if std::path::Path::new("/usr/bin/cat").exists() {
        "/usr/bin/cat"
    } else {
        "/bin/cat"
    };
    let child = Command::new(cat)
        .arg("/etc/hostname")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running cat");
    let cat_pid = child.id();
    let out = child.wait_with_output().expect("waiting for cat");
    assert!(out.status.success());

    let path = CString::new(file).unwrap();
    // SAFETY (all blocks below): plain syscalls with valid pointers and lengths.
    let wfd = check("open for writing", unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o640,
        )
    } as i64);
    check(
        "write",
        unsafe { libc::write(wfd as i32, b"sandwatch\n".as_ptr().cast(), 10) } as i64,
    );
    unsafe { libc::close(wfd as i32) };
    let rfd = check(
        "open for reading",
        unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) } as i64,
    );
    unsafe { libc::close(rfd as i32) };

    let tcp_fd = check(
        "socket tcp",
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) } as i64,
    );
    let addr = sockaddr_v4(tcp_port);
    check("connect", unsafe {
        libc::connect(
            tcp_fd as i32,
            (&addr as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        )
    } as i64);
    unsafe { libc::close(tcp_fd as i32) };

    let udp_fd = check(
        "socket udp",
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) } as i64,
    );
    let uaddr = sockaddr_v4(udp_port);
    let payload = b"sandwatch-udp";
    let sent = check("sendto", unsafe {
        libc::sendto(
            udp_fd as i32,
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&uaddr as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        )
    } as i64);
    unsafe { libc::close(udp_fd as i32) };

    let tracee = check("fork", unsafe { libc::fork() } as i64) as i32;
    if tracee == 0 {
        loop {
            unsafe { libc::pause() };
        }
    }
    // Refused in a sandbox (seccomp): the errnos are reported, not fatal.
    let attach = unsafe { libc::ptrace(libc::PTRACE_ATTACH, tracee, 0, 0) };
    let attach_errno = errno_of(attach);
    let mut status = 0;
    if attach == 0 {
        unsafe { libc::waitpid(tracee, &mut status, 0) };
    }
    let detach = unsafe { libc::ptrace(libc::PTRACE_DETACH, tracee, 0, 0) };
    let detach_errno = errno_of(detach);
    check("kill", unsafe { libc::kill(tracee, libc::SIGKILL) } as i64);
    unsafe { libc::waitpid(tracee, &mut status, 0) };

    println!(
        "{{\"pid\":{},\"cat\":\"{cat}\",\"cat_pid\":{cat_pid},\"wfd\":{wfd},\"rfd\":{rfd},\"tcp_fd\":{tcp_fd},\"udp_fd\":{udp_fd},\"sent\":{sent},\"tracee\":{tracee},\"attach_errno\":{attach_errno},\"detach_errno\":{detach_errno}}}",
        std::process::id()
    );
    std::process::exit(7);
}

fn burst(n: u64) {
    let path = c"/nonexistent-sandwatch-burst";
    for _ in 0..n {
        // SAFETY: a constant path; the call fails with ENOENT, which is the point.
        unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    }
    println!("{{\"pid\":{},\"opens\":{n}}}", std::process::id());
}

fn edge() {
    let long_arg = "a".repeat(3000);
    let status = Command::new("/bin/true")
        .arg(&long_arg)
        .status()
        .expect("running /bin/true");
    assert!(status.success());
    let long_path = CString::new(format!("/tmp/{}", "p".repeat(700))).unwrap();
    // SAFETY (all blocks below): plain syscalls with valid arguments.
    let fd = unsafe { libc::open(long_path.as_ptr(), libc::O_RDONLY) };
    // Succeeds on a bare host, refused with EPERM in a sandbox: reported either way.
    let unshare_errno = errno_of(unsafe { libc::unshare(libc::CLONE_NEWUSER) } as i64);
    let refused = unsafe { libc::sethostname(b"sandwatch-edge".as_ptr().cast(), 14) };
    assert_eq!(
        refused, -1,
        "sethostname without CAP_SYS_ADMIN over the UTS namespace must be refused"
    );
    println!(
        "{{\"pid\":{},\"open_ret\":{fd},\"unshare_errno\":{unshare_errno}}}",
        std::process::id()
    );
    use std::io::Write as _;
    std::io::stdout().flush().unwrap();
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

fn alloc(mib: usize) {
    let mut held: Vec<Vec<u8>> = Vec::new();
    for i in 1..=mib {
        let mut chunk = vec![0u8; 1 << 20];
        // Touch every page so that it is really charged to the cgroup.
        for b in chunk.iter_mut().step_by(4096) {
            *b = 1;
        }
        held.push(std::hint::black_box(chunk));
        if i % 4 == 0 {
            println!("{i}");
        }
    }
    println!("survived {mib} MiB");
}

fn forks(n: usize) {
    let mut kids = Vec::new();
    let mut errno = 0;
    for _ in 0..n {
        // SAFETY: this process is single-threaded; the child only waits for its SIGKILL.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            errno = errno_of(-1);
            break;
        }
        if pid == 0 {
            loop {
                unsafe { libc::pause() };
            }
        }
        kids.push(pid);
    }
    for &k in &kids {
        // SAFETY: killing and reaping our own children.
        unsafe {
            libc::kill(k, libc::SIGKILL);
            libc::waitpid(k, std::ptr::null_mut(), 0);
        }
    }
    println!("{{\"forked\":{},\"errno\":{errno}}}", kids.len());
}

fn spin(threads: usize) -> ! {
    for _ in 1..threads {
        std::thread::spawn(|| {
            loop {
                std::hint::spin_loop();
            }
        });
    }
    loop {
        std::hint::spin_loop();
    }
}

fn count(file: &str) -> ! {
    let tmp = format!("{file}.tmp");
    let mut i: u64 = 0;
    loop {
        i += 1;
        std::fs::write(&tmp, i.to_string()).expect("write the counter");
        std::fs::rename(&tmp, file).expect("rename the counter");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The value of `key:` in /proc/self/status.
fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

fn facts(label: &str) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let cap = |key: &str| u64::from_str_radix(&status_field(&status, key), 16).expect("hex caps");
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // "pid (comm) state ppid pgrp session tty_nr ...": comm may hold anything; the last ')' ends it.
    let tty_nr: u32 = stat[stat.rfind(')').expect("comm") + 1..]
        .split_whitespace()
        .nth(4)
        .and_then(|v| v.parse().ok())
        .expect("tty_nr");
    let loginuid: u32 = std::fs::read_to_string("/proc/self/loginuid")
        .expect("/proc/self/loginuid")
        .trim()
        .parse()
        .expect("a uid");
    println!(
        "{{\"label\":\"{label}\",\"tty_nr\":{tty_nr},\"cap_eff\":{},\"cap_prm\":{},\"cap_inh\":{},\"loginuid\":{loginuid}}}",
        cap("CapEff:"),
        cap("CapPrm:"),
        cap("CapInh:")
    );
}

fn c_args(args: &[String]) -> (Vec<CString>, Vec<*const libc::c_char>) {
    let owned: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()).unwrap())
        .collect();
    let mut ptrs: Vec<*const libc::c_char> = owned.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    (owned, ptrs)
}

fn exec(program: &str, args: &[String]) -> ! {
    let path = CString::new(program).unwrap();
    let (_owned, argv) = c_args(args);
    // SAFETY: NUL-terminated path and argv that outlive the call.
    unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
    check(&format!("exec {program}"), -1);
    unreachable!()
}

fn pty_exec(program: &str, args: &[String]) -> ! {
    // SAFETY (all blocks below): plain syscalls with valid arguments; the child of this
    // single-threaded process calls only syscalls before exec.
    let child = check("fork", unsafe { libc::fork() } as i64) as i32;
    if child == 0 {
        // A new session has no controlling terminal; its leader takes one with TIOCSCTTY.
        check("setsid", unsafe { libc::setsid() } as i64);
        let master = check("open /dev/ptmx", unsafe {
            libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY)
        } as i64) as i32;
        let unlock: libc::c_int = 0;
        check(
            "unlock the pty",
            unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) } as i64,
        );
        let mut n: libc::c_uint = 0;
        check(
            "pty number",
            unsafe { libc::ioctl(master, libc::TIOCGPTN, &mut n) } as i64,
        );
        let slave = CString::new(format!("/dev/pts/{n}")).unwrap();
        let fd = check("open the pty", unsafe {
            libc::open(slave.as_ptr(), libc::O_RDWR | libc::O_NOCTTY)
        } as i64) as i32;
        check("TIOCSCTTY", unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) }
            as i64);
        exec(program, args);
    }
    let mut status = 0;
    check("waitpid", unsafe { libc::waitpid(child, &mut status, 0) }
        as i64);
    std::process::exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    });
}

fn memfd_exec(args: &[String]) -> ! {
    use std::{io::Write as _, os::fd::FromRawFd as _};
    let image = std::fs::read("/proc/self/exe").expect("reading my own executable");
    // SAFETY: a constant name; the fd is owned by the File below until exec.
    let fd = check(
        "memfd_create",
        unsafe { libc::memfd_create(c"sw-payload".as_ptr(), 0) } as i64,
    ) as i32;
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(&image).expect("writing the memfd");
    let (_owned, argv) = c_args(args);
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: an open fd and NUL-terminated argv/envp that outlive the call.
    unsafe { libc::fexecve(fd, argv.as_ptr(), envp.as_ptr()) };
    check("fexecve", -1);
    unreachable!()
}

fn copy_exec(path: &str, args: &[String]) -> ! {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::copy("/proc/self/exe", path).expect("copying my own executable");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
    let mut argv = vec![path.to_owned()];
    argv.extend_from_slice(args);
    exec(path, &argv)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize| -> usize { args[i].parse().expect("a number") };
    match args.get(1).map(String::as_str) {
        Some("script") if args.len() == 5 => script(
            args[2].parse().expect("tcp port"),
            args[3].parse().expect("udp port"),
            &args[4],
        ),
        Some("burst") if args.len() == 3 => burst(args[2].parse().expect("count")),
        Some("edge") if args.len() == 2 => edge(),
        Some("open") if args.len() == 3 => {
            let p = CString::new(args[2].as_str()).unwrap();
            // SAFETY: valid path.
            let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
            println!("{{\"pid\":{},\"fd\":{fd}}}", std::process::id());
        }
        Some("alloc") if args.len() == 3 => alloc(num(2)),
        Some("forks") if args.len() == 3 => forks(num(2)),
        Some("spin") if args.len() == 3 => spin(num(2)),
        Some("count") if args.len() == 3 => count(&args[2]),
        Some("facts") if args.len() == 3 => facts(&args[2]),
        Some("pty-exec") if args.len() >= 3 => pty_exec(&args[2], &args[2..]),
        Some("memfd-exec") if args.len() >= 3 => {
            let mut argv = vec!["sw-test-job".to_owned()];
            argv.extend_from_slice(&args[2..]);
            memfd_exec(&argv)
        }
        Some("copy-exec") if args.len() >= 4 => copy_exec(&args[2], &args[3..]),
        _ => {
            eprintln!(
                "usage: sw-test-job script TCP_PORT UDP_PORT FILE | burst N | open PATH | edge | alloc MIB | forks N | spin THREADS | count FILE | facts LABEL | pty-exec PROGRAM ARGS... | memfd-exec ARGS... | copy-exec PATH ARGS..."
            );
            std::process::exit(2);
        }
    }
}
