//! The job the integration tests run under `sandwatch run`: a fixed script of syscalls whose
//! exact records the tests assert. It prints what it did (pids, fds) as one JSON line, so the
//! tests compare the audit log with facts rather than guesses.
//!
//! `sw-test-job script TCP_PORT UDP_PORT FILE`: cat /etc/hostname, create FILE and read it back,
//! TCP connect to 127.0.0.1:TCP_PORT, one UDP datagram to 127.0.0.1:UDP_PORT, ptrace attach and
//! detach of a child, kill it; exit 7.
//! `sw-test-job burst N`: N openat calls of a path that does not exist, as fast as possible.
//! `sw-test-job open PATH`: open PATH read-only once (for the watch tests); exit 0.
//! `sw-test-job edge`: the corner cases: an exec whose argv does not fit the capture, an open of
//! a path longer than the capture, unshare(CLONE_NEWUSER), a sethostname refused with EPERM
//! inside that user namespace; then it kills itself with SIGKILL.

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
        .output()
        .expect("running cat");
    assert!(child.status.success());

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

    let tracee = unsafe { libc::fork() };
    if tracee == 0 {
        loop {
            unsafe { libc::pause() };
        }
    }
    check("ptrace attach", unsafe {
        libc::ptrace(libc::PTRACE_ATTACH, tracee, 0, 0)
    });
    let mut status = 0;
    unsafe { libc::waitpid(tracee, &mut status, 0) };
    check("ptrace detach", unsafe {
        libc::ptrace(libc::PTRACE_DETACH, tracee, 0, 0)
    });
    check("kill", unsafe { libc::kill(tracee, libc::SIGKILL) } as i64);
    unsafe { libc::waitpid(tracee, &mut status, 0) };

    println!(
        "{{\"pid\":{},\"cat\":\"{cat}\",\"wfd\":{wfd},\"rfd\":{rfd},\"tcp_fd\":{tcp_fd},\"udp_fd\":{udp_fd},\"sent\":{sent},\"tracee\":{tracee}}}",
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
    check("unshare", unsafe { libc::unshare(libc::CLONE_NEWUSER) }
        as i64);
    let refused = unsafe { libc::sethostname(b"sandwatch-edge".as_ptr().cast(), 14) };
    assert_eq!(
        refused, -1,
        "sethostname from a new user namespace must be refused"
    );
    println!("{{\"pid\":{},\"open_ret\":{fd}}}", std::process::id());
    use std::io::Write as _;
    std::io::stdout().flush().unwrap();
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
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
        _ => {
            eprintln!(
                "usage: sw-test-job script TCP_PORT UDP_PORT FILE | burst N | open PATH | edge"
            );
            std::process::exit(2);
        }
    }
}
