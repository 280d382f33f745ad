//! A policy's `network.blocked_ports`, enforced in the kernel: connect() and sendto() to a
//! blocked port fail with EPERM inside the sandbox, other ports work, and the audit log shows
//! the refused calls with ret -1 (-EPERM).
//!
//! The job is Python (the system's /usr/bin/python3, which the sandbox sees read-only): it
//! reports each call's errno as one JSON line, so the tests compare facts, not guesses.

mod support;

use std::{
    collections::HashMap,
    fs,
    io::Read as _,
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;

const PYTHON: &str = "/usr/bin/python3";
const EPERM: i64 = 1;

/// Python helpers the jobs share: `tcp(family, addr)` and `udp(family, addr)` return the errno
/// of a connect / sendto (0 on success).
const HELPERS: &str = r#"
import json, os, socket, sys, time
def tcp(fam, addr):
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.connect(addr)
        return 0
    except OSError as e:
        return e.errno
    finally:
        s.close()
def udp(fam, addr):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.sendto(b"sandwatch", addr)
        return 0
    except OSError as e:
        return e.errno
    finally:
        s.close()
"#;

fn require_python() {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: these tests run it inside the sandbox (`apt-get install python3`)"
    );
}

fn last_json_line(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in the job's output: {text}"));
    serde_json::from_str(line).unwrap()
}

type Row = HashMap<String, Option<String>>;

fn rows_of<'a>(rows: &'a Rows, sandbox: &str, event: &str, dport: u16) -> Vec<&'a Row> {
    rows.filter(|r| {
        get(r, "sandbox_id") == Some(sandbox)
            && get(r, "event") == Some(event)
            && get(r, "dport") == Some(dport.to_string().as_str())
    })
}

fn rets(rows: &[&Row]) -> Vec<String> {
    rows.iter()
        .map(|r| get(r, "ret").unwrap_or("null").to_owned())
        .collect()
}

/// Connections waiting in a listener's queue, taken without blocking.
fn pending(listener: &TcpListener) -> usize {
    listener.set_nonblocking(true).unwrap();
    let mut n = 0;
    while listener.accept().is_ok() {
        n += 1;
    }
    n
}

/// Datagrams waiting on a socket, taken without blocking.
fn datagrams(socket: &UdpSocket) -> Vec<Vec<u8>> {
    socket.set_nonblocking(true).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

#[test]
fn blocked_ports_are_refused_with_eperm_in_host_network_mode() {
    require_root();
    require_python();
    // Host listeners: P1 blocked, P2 allowed (TCP); U1 blocked, U2 allowed (UDP).
    let p1 = TcpListener::bind("127.0.0.1:0").unwrap();
    let p2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let u1 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let u2 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = |a: std::io::Result<std::net::SocketAddr>| a.unwrap().port();
    let (p1_port, p2_port) = (port(p1.local_addr()), port(p2.local_addr()));
    let (u1_port, u2_port) = (port(u1.local_addr()), port(u2.local_addr()));

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = dir.path().join("policy.yaml");
    // Both spellings: the enforced list is their union.
    fs::write(
        &policy,
        format!(
            "extends: default\nnetwork:\n  mode: host\n  blocked_ports: [{p1_port}]\n  outbound:\n    blocked_ports: [{u1_port}]\n"
        ),
    )
    .unwrap();
    let script = format!(
        r#"{HELPERS}
I4, I6 = socket.AF_INET, socket.AF_INET6
print(json.dumps({{
    "tcp_blocked": tcp(I4, ("127.0.0.1", {p1_port})),
    "tcp_allowed": tcp(I4, ("127.0.0.1", {p2_port})),
    "tcp_blocked_v4mapped": tcp(I6, ("::ffff:127.0.0.1", {p1_port})),
    "tcp_blocked_v6": tcp(I6, ("::1", {p1_port})),
    "udp_blocked": udp(I4, ("127.0.0.1", {u1_port})),
    "udp_allowed": udp(I4, ("127.0.0.1", {u2_port})),
    "udp_blocked_v4mapped": udp(I6, ("::ffff:127.0.0.1", {u1_port})),
    "udp_blocked_v6": udp(I6, ("::1", {u1_port})),
}}))
"#
    );
    let sandbox = format!("swt-ports-host-{}", std::process::id());
    let out = sandwatch(&[
        "run",
        "--policy",
        policy.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--sandbox-id",
        &sandbox,
        "--",
        PYTHON,
        "-c",
        &script,
    ]);
    assert_eq!(out.status.code(), Some(0), "the job ran to its end");
    let facts = last_json_line(&out.stdout);
    let errno = |k: &str| {
        facts[k]
            .as_i64()
            .unwrap_or_else(|| panic!("{k} in {facts}"))
    };
    for k in [
        "tcp_blocked",
        "tcp_blocked_v4mapped",
        "tcp_blocked_v6",
        "udp_blocked",
        "udp_blocked_v4mapped",
        "udp_blocked_v6",
    ] {
        assert_eq!(errno(k), EPERM, "{k}: refused with EPERM ({facts})");
    }
    assert_eq!(errno("tcp_allowed"), 0, "{facts}");
    assert_eq!(errno("udp_allowed"), 0, "{facts}");

    // What reached the host: the allowed connection and datagram only.
    assert_eq!(pending(&p1), 0, "no connection reached the blocked port");
    assert_eq!(
        pending(&p2),
        1,
        "exactly one connection reached the allowed port"
    );
    assert!(
        datagrams(&u1).is_empty(),
        "no datagram reached the blocked port"
    );
    assert_eq!(datagrams(&u2), vec![b"sandwatch".to_vec()]);

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no records lost"), "{stderr}");
    let net = read_table(&data, "network_events");
    // connect to P1: IPv4, IPv4-mapped IPv6 and IPv6, each refused.
    let refused = rows_of(&net, &sandbox, "connect", p1_port);
    assert_eq!(rets(&refused), vec!["-1"; 3], "{refused:#?}");
    let allowed = rows_of(&net, &sandbox, "connect", p2_port);
    assert_eq!(rets(&allowed), vec!["0"], "{allowed:#?}");
    assert_eq!(get(allowed[0], "daddr"), Some("127.0.0.1"));
    let refused = rows_of(&net, &sandbox, "sendto", u1_port);
    assert_eq!(rets(&refused), vec!["-1"; 3], "{refused:#?}");
    let sent = rows_of(&net, &sandbox, "sendto", u2_port);
    assert_eq!(rets(&sent), vec!["9"], "{sent:#?}");
}

#[test]
fn blocked_ports_are_refused_in_a_private_network_too() {
    require_root();
    require_python();
    // The sandbox's own loopback: it listens on both ports itself. Any port is free there.
    let (blocked, allowed) = (40022u16, 40023u16);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = dir.path().join("policy.yaml");
    fs::write(
        &policy,
        format!("extends: default\nnetwork: {{ mode: none, blocked_ports: [{blocked}] }}\n"),
    )
    .unwrap();
    let script = format!(
        r#"{HELPERS}
def listener(port):
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    s.setblocking(False)
    return s
def accepted(s):
    n = 0
    while True:
        try:
            s.accept()
            n += 1
        except BlockingIOError:
            return n
lb, la = listener({blocked}), listener({allowed})
r = {{
    "tcp_blocked": tcp(socket.AF_INET, ("127.0.0.1", {blocked})),
    "tcp_allowed": tcp(socket.AF_INET, ("127.0.0.1", {allowed})),
    "udp_blocked": udp(socket.AF_INET, ("127.0.0.1", {blocked})),
}}
r["accepted_blocked"], r["accepted_allowed"] = accepted(lb), accepted(la)
print(json.dumps(r))
"#
    );
    let sandbox = format!("swt-ports-none-{}", std::process::id());
    let out = sandwatch(&[
        "run",
        "--policy",
        policy.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--sandbox-id",
        &sandbox,
        "--",
        PYTHON,
        "-c",
        &script,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let facts = last_json_line(&out.stdout);
    let n = |k: &str| {
        facts[k]
            .as_i64()
            .unwrap_or_else(|| panic!("{k} in {facts}"))
    };
    assert_eq!(
        [
            n("tcp_blocked"),
            n("udp_blocked"),
            n("tcp_allowed"),
            n("accepted_blocked"),
            n("accepted_allowed")
        ],
        [EPERM, EPERM, 0, 0, 1],
        "{facts}"
    );
    let net = read_table(&data, "network_events");
    assert_eq!(
        rets(&rows_of(&net, &sandbox, "connect", blocked)),
        vec!["-1"]
    );
    assert_eq!(
        rets(&rows_of(&net, &sandbox, "connect", allowed)),
        vec!["0"]
    );
}

/// Undoes what the child-cgroup test did to the sandbox, in the order that lets the sandbox be
/// removed, also when an assertion failed half way: the child cgroup emptied back into the
/// sandbox's cgroup and removed, then sandwatch stopped (SIGTERM: it kills and removes the
/// sandbox) if it still runs.
struct ChildCgroupGuard {
    sub: PathBuf,
    sandbox_cgroup: PathBuf,
    sandwatch: Option<Child>,
}

impl ChildCgroupGuard {
    fn empty_sub(&self) {
        if let Ok(procs) = fs::read_to_string(self.sub.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = fs::write(self.sandbox_cgroup.join("cgroup.procs"), pid);
            }
        }
        for _ in 0..200 {
            if fs::remove_dir(&self.sub).is_ok() || !self.sub.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildCgroupGuard {
    fn drop(&mut self) {
        self.empty_sub();
        if let Some(mut child) = self.sandwatch.take() {
            if child.try_wait().ok().flatten().is_none() {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(30);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process in a child cgroup of the sandbox's cgroup has another cgroup id: the programs find
/// the sandbox's policy through the process's ancestor at the sandbox's level.
#[test]
fn a_child_cgroup_of_a_sandbox_is_held_to_its_policy() {
    require_root();
    require_python();
    let (blocked, allowed) = (40022u16, 40023u16);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let workspace = dir.path().join("workspace");
    fs::create_dir(&workspace).unwrap();
    let policy = dir.path().join("policy.yaml");
    fs::write(
        &policy,
        format!("extends: default\nnetwork: {{ mode: none, blocked_ports: [{blocked}] }}\n"),
    )
    .unwrap();
    // Ready, wait for the test to move it, connect, report, wait until it is moved back.
    let script = format!(
        r#"{HELPERS}
def wait(name):
    end = time.time() + 30
    while not os.path.exists("/workspace/" + name) and time.time() < end:
        time.sleep(0.01)
la = socket.socket(); la.bind(("127.0.0.1", {allowed})); la.listen()
open("/workspace/ready", "w").close()
wait("go")
r = {{
    "cgroup": open("/proc/self/cgroup").read().strip(),
    "tcp_blocked": tcp(socket.AF_INET, ("127.0.0.1", {blocked})),
    "tcp_allowed": tcp(socket.AF_INET, ("127.0.0.1", {allowed})),
}}
with open("/workspace/result.tmp", "w") as f:
    json.dump(r, f)
os.rename("/workspace/result.tmp", "/workspace/result")
wait("done")
print(json.dumps(r))
"#
    );
    let sandbox = format!("swt-ports-child-{}", std::process::id());
    let sandbox_cgroup = unified_root().join("sandwatch").join(&sandbox);
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let child = Command::new(sandwatch_bin())
        .args([
            "run",
            "--policy",
            policy.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--sandbox-id",
            &sandbox,
            "--workspace",
            workspace.to_str().unwrap(),
            "--",
            PYTHON,
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).unwrap())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let sub = sandbox_cgroup.join("sub");
    let mut guard = ChildCgroupGuard {
        sub: sub.clone(),
        sandbox_cgroup: sandbox_cgroup.clone(),
        sandwatch: Some(child),
    };
    wait_for(&workspace.join("ready"), "the job to start");
    let procs = fs::read_to_string(sandbox_cgroup.join("cgroup.procs")).unwrap();
    let job = procs
        .lines()
        .find(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "python3")
        })
        .unwrap_or_else(|| panic!("no python3 among the sandbox's processes {procs:?}"))
        .to_owned();
    fs::create_dir(&sub).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    let sub_id = fs::metadata(&sub).unwrap().ino();
    fs::write(sub.join("cgroup.procs"), &job).unwrap();
    fs::write(workspace.join("go"), "").unwrap();
    wait_for(&workspace.join("result"), "the job's connects");
    // Back into the sandbox's own cgroup, so that the sandbox can be removed as usual.
    guard.empty_sub();
    assert!(!sub.exists(), "the child cgroup was removed");
    fs::write(workspace.join("done"), "").unwrap();
    let mut child = guard.sandwatch.take().unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    fs::File::open(&stderr_path)
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    eprintln!("sandwatch run: {status}\n--- stderr ---\n{stderr}");
    assert_eq!(status.code(), Some(0));

    let facts = last_json_line(&fs::read(&stdout_path).unwrap());
    assert!(
        facts["cgroup"].as_str().unwrap().ends_with("/sub"),
        "the job ran in the child cgroup: {facts}"
    );
    assert_eq!(facts["tcp_blocked"].as_i64(), Some(EPERM), "{facts}");
    assert_eq!(facts["tcp_allowed"].as_i64(), Some(0), "{facts}");
    let net = read_table(&data, "network_events");
    let refused = rows_of(&net, &sandbox, "connect", blocked);
    assert_eq!(rets(&refused), vec!["-1"], "{refused:#?}");
    assert_eq!(
        get(refused[0], "cgroup_id"),
        Some(sub_id.to_string().as_str()),
        "the refused connect came from the child cgroup"
    );
}
