//! The escape battery: `sw-escape` runs inside a `strict` sandbox and tries to get out, one real
//! system call at a time (see src/bin/sw-escape.rs). This test sets up what it aims at on the
//! host (a process, a TCP listener, an abstract unix socket, a System V message queue, a file
//! under /etc, a path under /usr), runs it once, and checks that every attempt was stopped by the
//! mechanism meant to stop it (an errno says which), that the host saw nothing of it, that the
//! audit log recorded the refusals, and that the sandbox left nothing behind.

mod support;

use std::{
    collections::BTreeMap,
    fs,
    io::ErrorKind,
    net::TcpListener,
    os::{
        linux::net::SocketAddrExt as _,
        unix::{
            fs::PermissionsExt as _,
            net::{SocketAddr, UnixListener},
            process::CommandExt as _,
        },
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use serde_json::Value;
use support::*;

fn escape_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sw-escape")
}

/// A host process the sandbox must neither see nor touch; killed and reaped on drop.
struct HostProcess(Child);

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A host path the test made (or that the sandbox must not make): removed on drop.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A System V message queue of the host, removed on drop.
struct MsgQueue {
    key: i32,
    id: i32,
}

impl MsgQueue {
    fn create(seed: i32) -> Self {
        for i in 0..64 {
            let key = 0x5357_0000 ^ seed.wrapping_add(i);
            // SAFETY: creating a message queue by key.
            let id = unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
            if id >= 0 {
                return Self { key, id };
            }
        }
        panic!(
            "cannot create a System V message queue: {}",
            std::io::Error::last_os_error()
        );
    }

    fn messages(&self) -> u64 {
        // SAFETY: IPC_STAT into a zeroed struct.
        unsafe {
            let mut ds: libc::msqid_ds = std::mem::zeroed();
            assert_eq!(libc::msgctl(self.id, libc::IPC_STAT, &mut ds), 0);
            ds.msg_qnum as u64
        }
    }
}

impl Drop for MsgQueue {
    fn drop(&mut self) {
        // SAFETY: removing our own queue.
        unsafe { libc::msgctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// What stops an attempt: the errnos it may fail with (None: it reports no errno, its check is
/// not a failed call) and the mechanism, named for the failure message.
struct Expect {
    errnos: Vec<Option<i32>>,
    mechanism: &'static str,
}

fn expect(errnos: &[Option<i32>], mechanism: &'static str) -> Expect {
    Expect {
        errnos: errnos.to_vec(),
        mechanism,
    }
}

const SECCOMP: &str = "seccomp deny-list (EPERM)";

#[rustfmt::skip]
fn expectations() -> BTreeMap<&'static str, Expect> {
    use libc::*;
    let e = Some;
    // Masked kernel files: absent where this kernel lacks them, /dev/null over them otherwise.
    let kernel_file = |path: &str| {
        if Path::new(path).exists() {
            vec![None]
        } else {
            vec![e(ENOENT)]
        }
    };
    let mut m = BTreeMap::new();
    let mut add = |name, x| {
        m.insert(name, x);
    };
    add("inherited_fds", expect(&[None], "init passes only fds 0-2 (close_range from 3 before exec)"));
    add("capabilities", expect(&[None], "every capability set emptied, bounding and ambient included"));
    add("no_new_privs", expect(&[None], "PR_SET_NO_NEW_PRIVS before exec"));
    add("seccomp_mode", expect(&[None], "a seccomp filter installed (Seccomp: 2)"));
    add("host_process_hidden", expect(&[None], "private pid namespace with a fresh /proc"));
    add("proc_only_sandbox_processes", expect(&[None], "private pid namespace with a fresh /proc"));
    add("kill_host_pid", expect(&[e(ESRCH)], "the host pid does not exist in the sandbox's pid namespace"));
    add("ptrace_host_pid", expect(&[e(EPERM)], SECCOMP));
    add("process_vm_readv_init", expect(&[e(EPERM)], SECCOMP));
    add("read_init_mem", expect(&[e(EACCES)], "init is not dumpable: /proc/1/mem fails the ptrace access check"));
    add("write_init_mem", expect(&[e(EACCES)], "Landlock grants no writes in /proc (and init is not dumpable)"));
    add("init_control_socket", expect(&[e(EACCES)], "init is not dumpable: /proc/1/fd fails the ptrace access check"));
    add("open_init_ns", expect(&[e(EACCES)], "init is not dumpable: /proc/1/ns fails the ptrace access check"));
    add("overwrite_init_exe", expect(&[e(EACCES)], "init is not dumpable: /proc/1/exe fails the ptrace access check"));
    add("pidfd_getfd_init", expect(&[e(EPERM)], "init is not dumpable: pidfd_getfd needs ptrace access to it"));
    add("write_usr", expect(&[e(EROFS)], "/usr is a read-only bind mount"));
    add("write_etc", expect(&[e(EROFS)], "/etc is a read-only bind mount (the target file belongs to the sandbox's root: only the mount stands in the way)"));
    add("read_root", expect(&[e(ENOENT)], "/root is not part of the sandbox's root"));
    add("read_etc_shadow", expect(&[e(EACCES)], "file permissions: /etc/shadow belongs to the host's root, unmapped in the sandbox, and the sandbox has no CAP_DAC_OVERRIDE"));
    add("open_proc_kcore", Expect { errnos: kernel_file("/proc/kcore"), mechanism: "/proc/kcore masked (or absent from this kernel)" });
    add("open_dev_mem", expect(&[e(ENOENT)], "minimal /dev without mem"));
    add("read_proc_kmsg", expect(&[e(EACCES)], "file permissions: /proc/kmsg is 0400 of the host's root"));
    add("write_proc_sys_hostname", expect(&[e(EROFS)], "/proc/sys is mounted read-only"));
    add("write_core_pattern", expect(&[e(EROFS)], "/proc/sys is mounted read-only"));
    add("write_sysrq_trigger", Expect { errnos: kernel_file("/proc/sysrq-trigger"), mechanism: "/proc/sysrq-trigger masked with /dev/null (or absent from this kernel)" });
    add("sys_absent", expect(&[e(ENOENT)], "no /sys in the sandbox"));
    add("mknod_device", expect(&[e(EACCES)], "Landlock grants no device creation in /workspace (behind it: no CAP_MKNOD, nodev)"));
    add("hardlink_host_file", expect(&[e(EXDEV)], "/etc and /workspace are different mounts"));
    add("open_by_handle_at", expect(&[e(EPERM)], SECCOMP));
    add("setuid_binary", expect(&[None], "nosuid mounts and no_new_privs: a setuid binary runs without privileges"));
    add("host_cgroup_procs", expect(&[e(ENOENT)], "no cgroup filesystem (and no /sys) in the sandbox"));
    add("cgroup_paths_hidden", expect(&[None], "cgroup namespace rooted at the sandbox's cgroup"));
    add("mount_cgroup2", expect(&[e(EPERM)], SECCOMP));
    add("mount_tmpfs", expect(&[e(EPERM)], SECCOMP));
    add("fsopen", expect(&[e(EPERM)], SECCOMP));
    add("unshare_user", expect(&[e(EPERM)], SECCOMP));
    add("clone_newuser", expect(&[e(EPERM)], SECCOMP));
    add("clone3_newuser", expect(&[e(ENOSYS)], "seccomp: clone3 refused with ENOSYS (its flags are out of a filter's reach)"));
    add("personality", expect(&[e(EPERM)], SECCOMP));
    add("setns", expect(&[e(EPERM)], SECCOMP));
    add("chroot", expect(&[e(EPERM)], SECCOMP));
    add("pivot_root", expect(&[e(EPERM)], SECCOMP));
    // This kernel has no modules nor kexec (ENOSYS without a filter): EPERM is the filter's.
    add("init_module", expect(&[e(EPERM)], SECCOMP));
    add("finit_module", expect(&[e(EPERM)], SECCOMP));
    add("kexec_load", expect(&[e(EPERM)], SECCOMP));
    add("bpf", expect(&[e(EPERM)], SECCOMP));
    add("perf_event_open", expect(&[e(EPERM)], SECCOMP));
    add("userfaultfd", expect(&[e(EPERM)], SECCOMP));
    add("add_key", expect(&[e(EPERM)], SECCOMP));
    add("keyctl", expect(&[e(EPERM)], SECCOMP));
    add("clock_settime", expect(&[e(EPERM)], SECCOMP));
    add("settimeofday", expect(&[e(EPERM)], SECCOMP));
    add("sethostname", expect(&[e(EPERM)], SECCOMP));
    add("reboot", expect(&[e(EPERM)], SECCOMP));
    add("io_uring_setup", expect(&[e(EPERM)], SECCOMP));
    add("syslog", expect(&[e(EPERM)], SECCOMP));
    add("iopl", expect(&[e(EPERM)], SECCOMP));
    add("raise_nofile", expect(&[e(EPERM)], "the hard RLIMIT_NOFILE, without CAP_SYS_RESOURCE"));
    add("tiocsti", expect(&[e(EPERM)], "seccomp (ioctl TIOCSTI)"));
    add("socket_packet", expect(&[e(EPERM)], "no CAP_NET_RAW / seccomp"));
    add("socket_vsock", expect(&[e(EPERM)], "seccomp (socket AF_VSOCK): vsock has no network namespaces, its transport reaches the hypervisor whatever the network mode"));
    add("socket_raw", expect(&[e(EPERM)], "no CAP_NET_RAW / seccomp"));
    add("connect_host_tcp", expect(&[e(ECONNREFUSED)], "private network namespace: its 127.0.0.1 is its own loopback"));
    add("connect_host_abstract", expect(&[e(ECONNREFUSED)], "private network namespace: abstract unix names are per namespace"));
    add("connect_outside", expect(&[e(ENETUNREACH)], "network mode none: only loopback, no route out"));
    add("host_sysv_ipc", expect(&[e(ENOENT)], "private IPC namespace"));
    add("kill_init", expect(&[None], "a pid namespace's init ignores signals from inside"));
    m
}

struct Attempt {
    outcome: String,
    errno: Option<i32>,
    detail: String,
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn errno_name(e: Option<i32>) -> String {
    match e {
        None => "no errno".into(),
        Some(e) => format!("{e} ({})", std::io::Error::from_raw_os_error(e)),
    }
}

#[test]
fn nothing_escapes_the_strict_sandbox() {
    require_root();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let tag = format!("{}-{nanos}", std::process::id());

    // Host-side targets.
    let marker = format!("sw-escape-marker-{tag}");
    let mut host = HostProcess(
        Command::new("sleep")
            .arg0(&marker)
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .expect("starting the host's sleep"),
    );
    let host_pid = host.0.id();
    // Once it has executed, its command line carries the marker (else the battery's scan of
    // /proc would prove nothing).
    let shows_marker = || {
        fs::read(format!("/proc/{host_pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !shows_marker() {
        assert!(
            std::time::Instant::now() < deadline,
            "the host process never showed its marker in /proc/{host_pid}/cmdline"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let abstract_name = format!("sandwatch-escape-{tag}");
    let unix =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap())
            .unwrap();
    unix.set_nonblocking(true).unwrap();
    let queue = MsgQueue::create(std::process::id() as i32);
    // Under /etc, owned by the sandbox's root (the host uid its root maps to): file permissions
    // would let it write, only the read-only mount must not.
    let etc_target = RemoveOnDrop(PathBuf::from(format!("/etc/sandwatch-escape-{tag}")));
    fs::write(&etc_target.0, "host original\n").unwrap();
    let sandbox_root = sandwatch_runner::sandbox::DEFAULT_HOST_ID_BASE;
    std::os::unix::fs::chown(&etc_target.0, Some(sandbox_root), Some(sandbox_root)).unwrap();
    let usr_target = RemoveOnDrop(PathBuf::from(format!("/usr/sandwatch-escape-{tag}")));
    assert!(!usr_target.0.exists());
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let core_pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();

    // The workspace: the sandbox's init (an unprivileged host uid) must be able to reach it.
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let workspace = dir.path().join("workspace");
    fs::create_dir(&workspace).unwrap();
    fs::copy(escape_bin(), workspace.join("sw-escape")).unwrap();
    let data = dir.path().join("data");
    let id = format!("swt-escape-{}", std::process::id());

    let args = [
        format!("host-pid={host_pid}"),
        format!("marker-hex={}", hex(&marker)),
        format!("tcp-port={tcp_port}"),
        format!("abstract={abstract_name}"),
        format!("msg-key={}", queue.key),
        format!("etc-target={}", etc_target.0.display()),
        format!("usr-target={}", usr_target.0.display()),
    ];
    let mut cmd = vec![
        "run",
        "--policy",
        "strict",
        "--workspace",
        workspace.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--sandbox-id",
        &id,
        // The battery tests isolation; the default rules would kill it at its first attempt.
        "--no-rules",
        "--",
        "/workspace/sw-escape",
    ];
    cmd.extend(args.iter().map(String::as_str));
    let out = sandwatch(&cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("--- battery ---\n{stdout}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "sandwatch run and the battery exit 0"
    );

    let mut attempts = BTreeMap::new();
    let mut done = None;
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        if v["done"] == Value::Bool(true) {
            done = v["attempts"].as_u64();
            continue;
        }
        let name = v["attempt"].as_str().expect("attempt name").to_owned();
        let attempt = Attempt {
            outcome: v["outcome"].as_str().expect("outcome").to_owned(),
            errno: v["errno"].as_i64().map(|e| e as i32),
            detail: v["detail"].as_str().unwrap_or_default().to_owned(),
        };
        assert!(
            attempts.insert(name.clone(), attempt).is_none(),
            "{name} reported twice"
        );
    }
    assert_eq!(
        done,
        Some(attempts.len() as u64),
        "the battery ran to its end"
    );
    assert!(attempts.len() >= 25, "at least 25 attempts");

    // Every attempt stopped, by the mechanism meant to stop it.
    let mut failures = Vec::new();
    let expected = expectations();
    for name in expected.keys() {
        if !attempts.contains_key(*name) {
            failures.push(format!("{name}: not attempted"));
        }
    }
    for (name, a) in &attempts {
        if name == "workspace_writable" {
            if a.outcome != "allowed" {
                failures.push(format!(
                    "{name}: the workspace must be writable: {} ({}): {}",
                    a.outcome,
                    errno_name(a.errno),
                    a.detail
                ));
            }
            continue;
        }
        let Some(x) = expected.get(name.as_str()) else {
            failures.push(format!(
                "{name}: an attempt this test has no expectation for"
            ));
            continue;
        };
        if a.outcome != "blocked" {
            failures.push(format!(
                "{name}: {} — should have been stopped by {}: {}",
                a.outcome, x.mechanism, a.detail
            ));
        } else if !x.errnos.contains(&a.errno) {
            failures.push(format!(
                "{name}: blocked, but with {} instead of {} — not by {}: {}",
                errno_name(a.errno),
                x.errnos
                    .iter()
                    .map(|e| errno_name(*e))
                    .collect::<Vec<_>>()
                    .join(" or "),
                x.mechanism,
                a.detail
            ));
        }
    }

    // The host saw nothing of it.
    let mut host_check = |ok: bool, what: String| {
        if !ok {
            failures.push(format!("host: {what}"));
        }
    };
    host_check(
        matches!(host.0.try_wait(), Ok(None)),
        format!("the host process {host_pid} must still be alive (kill from the sandbox)"),
    );
    host_check(
        matches!(tcp.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        format!("the host's listener on 127.0.0.1:{tcp_port} accepted a connection"),
    );
    host_check(
        matches!(unix.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        format!("the host's abstract socket @{abstract_name} accepted a connection"),
    );
    host_check(
        queue.messages() == 0,
        "the host's message queue received a message".into(),
    );
    host_check(
        fs::read_to_string(&etc_target.0).ok().as_deref() == Some("host original\n"),
        format!("{} was changed", etc_target.0.display()),
    );
    host_check(
        !usr_target.0.exists(),
        format!("{} was created", usr_target.0.display()),
    );
    host_check(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap() == hostname,
        "the host's hostname changed".into(),
    );
    host_check(
        fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap() == core_pattern,
        "the host's core_pattern changed".into(),
    );
    host_check(
        fs::read_to_string(workspace.join("sw-escape-proof.txt"))
            .ok()
            .as_deref()
            == Some("written inside the sandbox\n"),
        "the file written in /workspace is not in the host's workspace directory".into(),
    );

    // The audit log has the refusals.
    let brief = |rows: &[&std::collections::HashMap<String, Option<String>>]| {
        rows.iter()
            .map(|r| {
                format!(
                    "(pid {} ret {} refused {} args {})",
                    get(r, "pid").unwrap_or("null"),
                    get(r, "ret").unwrap_or("null"),
                    r.get("refused").cloned().flatten().unwrap_or("-".into()),
                    if r.get("args").cloned().flatten().is_some() {
                        "yes"
                    } else {
                        "null"
                    },
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sys = read_table(&data, "syscall_events");
    let ours = |r: &std::collections::HashMap<String, Option<String>>| {
        get(r, "sandbox_id") == Some(id.as_str())
    };
    // Traced with their arguments (security-sensitive) / only for their refusal (no arguments).
    let with_args = [
        "unshare",
        "setns",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "add_key",
        "keyctl",
        "chroot",
        "pivot_root",
        "personality",
    ];
    let refusal_only = [
        "reboot",
        "clock_settime",
        "settimeofday",
        "sethostname",
        "open_by_handle_at",
        "io_uring_setup",
        "process_vm_readv",
        "syslog",
        "iopl",
        "fsopen",
    ];
    for (names, has_args) in [(&with_args[..], true), (&refusal_only[..], false)] {
        for name in names {
            let rows: Vec<_> = sys
                .with("event", name)
                .into_iter()
                .filter(|r| ours(r))
                .collect();
            let refused = rows.iter().any(|r| {
                get(r, "ret") == Some("-1")
                    && get(r, "refused") == Some("true")
                    && get(r, "args").is_some() == has_args
            });
            if !refused {
                failures.push(format!(
                    "audit: syscall_events has no refused {name} (ret -1, refused=true, args {}); rows: [{}]",
                    if has_args { "present" } else { "null" },
                    brief(&rows)
                ));
            }
        }
    }
    let procs = read_table(&data, "process_events");
    let host_pid_s = host_pid.to_string();
    let ptrace = procs.filter(|r| {
        ours(r)
            && get(r, "event") == Some("ptrace")
            && get(r, "target_pid") == Some(&host_pid_s)
            && get(r, "ptrace_request") == Some("16")
    });
    if !ptrace.iter().any(|r| get(r, "ret") == Some("-1")) {
        failures.push(format!(
            "audit: process_events has no ptrace(PTRACE_ATTACH, {host_pid}) refused with -1; rows: [{}]",
            brief(&ptrace)
        ));
    }
    let kill = procs.filter(|r| {
        ours(r) && get(r, "event") == Some("kill") && get(r, "target_pid") == Some(&host_pid_s)
    });
    if !kill.iter().any(|r| get(r, "ret") == Some("-3")) {
        failures.push(format!(
            "audit: process_events has no kill({host_pid}) failed with -ESRCH; rows: [{}]",
            brief(&kill)
        ));
    }
    let files = read_table(&data, "file_events");
    for fstype in ["tmpfs", "cgroup2"] {
        let mounts = files.filter(|r| {
            ours(r) && get(r, "event") == Some("mount") && get(r, "fstype") == Some(fstype)
        });
        if !mounts.iter().any(|r| get(r, "ret") == Some("-1")) {
            failures.push(format!(
                "audit: file_events has no mount of {fstype} refused with -1; rows: [{}]",
                brief(&mounts)
            ));
        }
    }

    // Nothing of the sandbox is left.
    let mut cgroups = vec![unified_root().join("sandwatch").join(&id)];
    for v1 in ["cpu", "memory", "pids"] {
        cgroups.push(
            Path::new("/sys/fs/cgroup")
                .join(v1)
                .join("sandwatch")
                .join(&id),
        );
    }
    cgroups.push(Path::new(sandwatch_runner::sandbox::DEFAULT_RUNTIME_DIR).join(&id));
    for left in cgroups {
        if left.exists() {
            failures.push(format!("left behind: {}", left.display()));
        }
    }

    assert!(
        failures.is_empty(),
        "{} escape checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
