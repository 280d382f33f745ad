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
        _ => {
            eprintln!(
                "usage: sw-test-job script TCP_PORT UDP_PORT FILE | burst N | open PATH | edge | alloc MIB | forks N | spin THREADS | count FILE"
            );
            std::process::exit(2);
        }
    }
}
