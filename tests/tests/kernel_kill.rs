//! Kill orders decided in the kernel, through a real collector (`sandwatch_collector`), real
//! cgroups and the real kill program: a process of an ordered cgroup (or of a child cgroup) that
//! enters an ordered syscall dies of SIGKILL before running the next instruction, and the kill is
//! reported with its rule; the same syscall from another cgroup, or after the orders are lifted,
//! goes through; the kill program is attached only to ordered syscalls and only while ordered;
//! the audit log keeps the syscall's rows.
//!
//! The test's processes are forked from the test itself and make raw syscalls, so that exactly
//! one known syscall separates "joined the cgroup" from "wrote the marker".

mod support;

use std::{
    collections::BTreeSet, ffi::CString, fs, os::unix::ffi::OsStrExt as _, path::Path,
    time::Duration,
};

use sandwatch_collector::{
    Collector, CollectorConfig, CollectorError, KernelKill, KernelKillOrder, KernelPathOrder,
    KillCause, PathMatch, WatchTarget,
};
use support::*;
use tokio::sync::mpsc::UnboundedReceiver;

const GETPRIORITY_RULE: u32 = 7;
const MKDIRAT_RULE: u32 = 8;
const INIT_MODULE_RULE: u32 = 9;
/// getpriority(PRIO_PROCESS, WHO): a recognisable argument in the kill's report.
const WHO: u64 = 4242;
const AT_FDCWD: i64 = -100;

/// The syscall a forked child makes between joining its cgroup and writing its marker.
#[derive(Clone, Copy, Debug)]
enum Act {
    Getpriority,
    Mkdirat,
}

/// How a forked child ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Exited(i32),
    Signalled(i32),
}

/// Forks a child that moves itself into `cgroup`, makes `act`'s syscall (mkdirat creates
/// `dir`), then writes `marker` and exits 0. Waits for it; returns its pid and how it ended.
fn run_child(cgroup: &TestCgroup, act: Act, dir: &Path, marker: &Path) -> (i32, End) {
    let dir = CString::new(dir.as_os_str().as_bytes()).unwrap();
    run_child_doing(cgroup, marker, || unsafe {
        match act {
            Act::Getpriority => {
                libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, WHO);
            }
            Act::Mkdirat => {
                libc::syscall(libc::SYS_mkdirat, AT_FDCWD, dir.as_ptr(), 0o700);
            }
        }
    })
}

/// Forks a child that moves itself into `cgroup`, runs `act`, then writes `marker` and exits 0.
/// Waits for it; returns its pid and how it ended. `act` must make raw syscalls only, on memory
/// prepared before the fork (the test process has other threads: no allocation, no locks).
fn run_child_doing(cgroup: &TestCgroup, marker: &Path, act: impl FnOnce()) -> (i32, End) {
    let procs = CString::new(cgroup.path.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
    let marker = CString::new(marker.as_os_str().as_bytes()).unwrap();
    // SAFETY: between fork and _exit the child makes raw syscalls only (see above).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            // "0": the writing process itself.
            if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(101);
            }
            libc::close(fd);
            act();
            let fd = libc::open(
                marker.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                0o600,
            );
            if fd < 0 || libc::write(fd, c"ran".as_ptr().cast(), 3) != 3 {
                libc::_exit(102);
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());
    let end = if libc::WIFSIGNALED(status) {
        End::Signalled(libc::WTERMSIG(status))
    } else {
        End::Exited(libc::WEXITSTATUS(status))
    };
    (pid, end)
}

/// BPF links this process holds that attach the program `prog_id`, read from the kernel's
/// fdinfo of each descriptor (a tracepoint attachment is a perf_event link).
fn links_of(prog_id: u32) -> usize {
    let want = format!("prog_id:\t{prog_id}");
    fs::read_dir("/proc/self/fdinfo")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter(|info| info.contains("link_type:") && info.lines().any(|l| l == want))
        .count()
}

async fn next_kill(kills: &mut UnboundedReceiver<KernelKill>) -> KernelKill {
    tokio::time::timeout(Duration::from_secs(5), kills.recv())
        .await
        .expect("a kernel kill reported within 5 s")
        .expect("the kill queue is open")
}

fn has_enter_tracepoint(syscall: &str) -> bool {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .any(|t| Path::new(&format!("{t}/events/syscalls/sys_enter_{syscall}")).exists())
}

#[test]
fn kill_orders_kill_in_the_kernel_only_where_ordered() {
    require_root();
    let ordered = TestCgroup::create("kkill");
    let inner = ordered.child("inner");
    let other = TestCgroup::create("kkill-other");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sandbox = unique_id("kkill");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let (summary, pids) = runtime.block_on(async {
        let mut collector = Collector::start(CollectorConfig::new(data.clone()))
            .expect("the collector starts (root, BPF)");
        let mut kills = collector.take_kernel_kills().expect("kills taken once");
        assert!(collector.take_kernel_kills().is_none());
        let prog = collector.kill_program_id().unwrap();
        assert!(collector.kill_tracepoints().is_empty());
        assert_eq!(
            links_of(prog),
            0,
            "no order: the kill program is attached nowhere"
        );

        let target = WatchTarget {
            cgroup_id: ordered.id(),
            level: 1,
            sandbox_id: sandbox.clone(),
        };
        collector.watch(&target).unwrap();
        let order = |syscall: &str, rule_id| KernelKillOrder {
            syscall: syscall.into(),
            rule_id,
        };
        let bad = collector
            .kill_on_syscalls(ordered.id(), 1, &[order("no_such_syscall", 1)])
            .unwrap_err();
        assert!(
            matches!(&bad, CollectorError::Config(m) if m.contains("no_such_syscall")),
            "{bad}"
        );
        let unsupported = collector
            .kill_on_syscalls(
                ordered.id(),
                1,
                &[
                    order("getpriority", GETPRIORITY_RULE),
                    order("mkdirat", MKDIRAT_RULE),
                    order("init_module", INIT_MODULE_RULE),
                ],
            )
            .unwrap();
        let expected: Vec<String> = if has_enter_tracepoint("init_module") {
            vec![]
        } else {
            vec!["init_module".into()]
        };
        assert_eq!(
            unsupported, expected,
            "syscalls without an entry tracepoint"
        );
        let attached: BTreeSet<String> = collector.kill_tracepoints().into_iter().collect();
        let mut want: BTreeSet<String> = ["getpriority", "mkdirat"].map(String::from).into();
        if expected.is_empty() {
            want.insert("init_module".into());
        }
        assert_eq!(attached, want);
        assert_eq!(
            links_of(prog),
            want.len(),
            "the kernel holds one link per ordered syscall"
        );

        // An ordered process: killed inside getpriority, the marker never written.
        let marker_a = tmp.path().join("a");
        let (pid_a, end) = run_child(&ordered, Act::Getpriority, Path::new("/"), &marker_a);
        assert_eq!(end, End::Signalled(libc::SIGKILL));
        assert!(
            !marker_a.exists(),
            "the killed process ran past the syscall"
        );
        let kill = next_kill(&mut kills).await;
        assert_eq!(kill.pid, pid_a as u32);
        assert_eq!(kill.tid, pid_a as u32);
        assert_eq!(kill.rule_id, GETPRIORITY_RULE);
        assert_eq!(kill.syscall, "getpriority");
        assert_eq!(kill.syscall_nr, libc::SYS_getpriority as i32);
        assert_eq!(&kill.args[..2], &[libc::PRIO_PROCESS as u64, WHO]);
        assert_eq!(kill.cgroup_id, ordered.id());
        assert_eq!(kill.order_cgroup_id, ordered.id());
        assert_eq!(kill.sandbox_id.as_deref(), Some(sandbox.as_str()));
        assert_eq!(kill.signal_error, None);

        // A process of a child cgroup is held to its ancestor's orders. mkdirat is traced by the
        // probes too: it still gets its row. The syscall itself ran (a tracepoint cannot cancel
        // it): the directory exists, the process never learnt it.
        let made = tmp.path().join("made-by-killed");
        let marker_b = tmp.path().join("b");
        let (pid_b, end) = run_child(&inner, Act::Mkdirat, &made, &marker_b);
        assert_eq!(end, End::Signalled(libc::SIGKILL));
        assert!(
            !marker_b.exists(),
            "the killed process ran past the syscall"
        );
        let kill = next_kill(&mut kills).await;
        assert_eq!(
            (kill.pid, kill.rule_id, kill.syscall.as_str()),
            (pid_b as u32, MKDIRAT_RULE, "mkdirat")
        );
        assert_eq!(kill.cgroup_id, inner.id());
        assert_eq!(kill.order_cgroup_id, ordered.id());
        assert_eq!(kill.args[0] as i64, AT_FDCWD);
        assert!(made.is_dir(), "the syscall ran before the process died");

        // Another cgroup, same syscalls: nothing happens to it.
        let marker_c = tmp.path().join("c");
        let (_, end) = run_child(&other, Act::Getpriority, Path::new("/"), &marker_c);
        assert_eq!(end, End::Exited(0));
        assert!(marker_c.exists());
        let made_d = tmp.path().join("made-by-other");
        let marker_d = tmp.path().join("d");
        let (_, end) = run_child(&other, Act::Mkdirat, &made_d, &marker_d);
        assert_eq!(end, End::Exited(0));
        assert!(marker_d.exists() && made_d.is_dir());
        // Records leave the ring buffer in order: the next kill reported is the next ordered
        // process's, so none was reported for the other cgroup's.
        let marker_e = tmp.path().join("e");
        let (pid_e, end) = run_child(&ordered, Act::Getpriority, Path::new("/"), &marker_e);
        assert_eq!(end, End::Signalled(libc::SIGKILL));
        assert!(!marker_e.exists());
        assert_eq!(next_kill(&mut kills).await.pid, pid_e as u32);

        // Orders lifted: the same process lives, and the program leaves the tracepoints.
        collector.clear_kill_orders(ordered.id()).unwrap();
        assert!(collector.kill_tracepoints().is_empty());
        let marker_f = tmp.path().join("f");
        let (_, end) = run_child(&ordered, Act::Getpriority, Path::new("/"), &marker_f);
        assert_eq!(end, End::Exited(0), "no order left for getpriority");
        assert!(marker_f.exists());
        let made_g = tmp.path().join("made-after-clear");
        let marker_g = tmp.path().join("g");
        let (pid_g, end) = run_child(&inner, Act::Mkdirat, &made_g, &marker_g);
        assert_eq!(end, End::Exited(0), "no order left for mkdirat");
        assert!(marker_g.exists());
        wait_for(
            "the kill program's links to close",
            Duration::from_secs(20),
            || links_of(prog) == 0,
        );
        assert!(
            kills.try_recv().is_err(),
            "no kill after the orders were lifted"
        );

        collector.unwatch(&target).unwrap();
        (
            collector.shutdown().await.unwrap(),
            (pid_a, pid_b, pid_e, pid_g),
        )
    });
    let (pid_a, pid_b, pid_e, pid_g) = pids;
    assert_eq!(summary.drops.total(), 0, "{summary:?}");

    // The audit log: getpriority is not traced by the probes, so the kill record is its row
    // (arguments, no result); mkdirat's row comes from its exit probe, with its result.
    let syscalls = read_table(&data, "syscall_events");
    for pid in [pid_a, pid_e] {
        let rows = syscalls.filter(|r| {
            get(r, "pid") == Some(&pid.to_string()) && get(r, "syscall") == Some("getpriority")
        });
        assert_eq!(rows.len(), 1, "one getpriority row for {pid}: {rows:#?}");
        assert_eq!(get(rows[0], "ret"), None);
        assert_eq!(get(rows[0], "sandbox_id"), Some(sandbox.as_str()));
        let args = get(rows[0], "args").unwrap();
        assert!(args.starts_with(&format!("[0, {WHO},")), "{args}");
    }
    let files = read_table(&data, "file_events");
    let mkdir_b = files.filter(|r| {
        get(r, "pid") == Some(&pid_b.to_string()) && get(r, "syscall") == Some("mkdirat")
    });
    assert_eq!(mkdir_b.len(), 1, "{mkdir_b:#?}");
    assert_eq!(get(mkdir_b[0], "ret"), Some("0"));
    assert_eq!(
        get(mkdir_b[0], "path"),
        Some(tmp.path().join("made-by-killed").to_str().unwrap())
    );
    let mkdir_g = files.filter(|r| {
        get(r, "pid") == Some(&pid_g.to_string()) && get(r, "syscall") == Some("mkdirat")
    });
    assert_eq!(
        mkdir_g.len(),
        1,
        "the process after the orders: {mkdir_g:#?}"
    );
    let procs = read_table(&data, "process_events");
    for pid in [pid_a, pid_b, pid_e] {
        let exits = procs
            .filter(|r| get(r, "pid") == Some(&pid.to_string()) && get(r, "event") == Some("exit"));
        assert_eq!(exits.len(), 1, "{exits:#?}");
        assert_eq!(
            get(exits[0], "exit_signal"),
            Some("9"),
            "{pid} died of SIGKILL"
        );
    }
}

const SECRET_RULE: u32 = 21;
const SHADOW_RULE: u32 = 22;
const ENTRIES_RULE: u32 = 23;

fn cstring(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// A child in `cgroup` that, after `chdir(cwd)` when given, calls `openat(AT_FDCWD, path,
/// O_RDONLY)` (`path` may be relative), then writes `marker`.
fn open_child(cgroup: &TestCgroup, cwd: Option<&Path>, path: &Path, marker: &Path) -> (i32, End) {
    let cwd = cwd.map(cstring);
    let path = cstring(path);
    run_child_doing(cgroup, marker, || unsafe {
        if let Some(cwd) = &cwd
            && libc::syscall(libc::SYS_chdir, cwd.as_ptr()) != 0
        {
            libc::_exit(103);
        }
        libc::syscall(libc::SYS_openat, AT_FDCWD, path.as_ptr(), libc::O_RDONLY);
    })
}

/// What a path kill reported: (pid, rule, syscall, path, whether it is the opened file's path).
fn path_kill(kill: &KernelKill) -> (u32, u32, &str, &str, bool) {
    match &kill.cause {
        KillCause::Path { path, opened } => (
            kill.pid,
            kill.rule_id,
            kill.syscall.as_str(),
            path.as_str(),
            *opened,
        ),
        KillCause::Syscall => panic!("a syscall kill where a path kill was due: {kill:?}"),
    }
}

#[test]
fn path_orders_kill_as_the_file_syscall_returns() {
    require_root();
    let ordered = TestCgroup::create("kpath");
    let inner = ordered.child("inner");
    let other = TestCgroup::create("kpath-other");
    let tmp = tempfile::tempdir().unwrap();
    // The kernel names files by their real path: no symlink in the base.
    let base = fs::canonicalize(tmp.path()).unwrap();
    let data = base.join("data");
    let secret = base.join("secret");
    fs::create_dir(&secret).unwrap();
    fs::write(secret.join("file"), "s").unwrap();
    let shadow = base.join("shadow");
    fs::write(&shadow, "x").unwrap();
    fs::write(base.join("shadow-"), "x").unwrap();
    let entries = base.join("entries");
    fs::create_dir_all(entries.join("sub")).unwrap();
    fs::write(entries.join("a"), "a").unwrap();
    fs::write(entries.join("sub/b"), "b").unwrap();
    fs::create_dir(base.join("ok")).unwrap();
    std::os::unix::fs::symlink(secret.join("file"), base.join("link")).unwrap();
    let text = |p: &Path| p.to_str().unwrap().to_owned();
    let marker = |name: &str| base.join(format!("marker-{name}"));
    let sandbox = unique_id("kpath");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let (summary, pid_a) = runtime.block_on(async {
        let mut collector = Collector::start(CollectorConfig::new(data.clone()))
            .expect("the collector starts (root, BPF)");
        let mut kills = collector.take_kernel_kills().expect("kills taken once");
        let orders = [
            KernelPathOrder {
                path: PathMatch::Prefix(format!("{}/", text(&secret))),
                syscalls: None,
                rule_id: SECRET_RULE,
            },
            KernelPathOrder {
                path: PathMatch::Exact(text(&shadow)),
                syscalls: Some(vec!["openat".into(), "connect".into()]),
                rule_id: SHADOW_RULE,
            },
            KernelPathOrder {
                path: PathMatch::InDirectory(text(&entries)),
                syscalls: Some(vec!["openat".into()]),
                rule_id: ENTRIES_RULE,
            },
            KernelPathOrder {
                path: PathMatch::Exact("/x".repeat(200)),
                syscalls: None,
                rule_id: 99,
            },
        ];
        let refused = collector
            .kill_on_paths(ordered.id(), 1, &orders)
            .unwrap_err();
        assert!(
            matches!(&refused, CollectorError::Config(m) if m.contains("not watched")),
            "path orders act in the file probes, which record watched cgroups only: {refused}"
        );
        let target = WatchTarget {
            cgroup_id: ordered.id(),
            level: 1,
            sandbox_id: sandbox.clone(),
        };
        let other_target = WatchTarget {
            cgroup_id: other.id(),
            level: 1,
            sandbox_id: unique_id("kpath-other"),
        };
        collector.watch(&target).unwrap();
        collector.watch(&other_target).unwrap();
        let left = collector.kill_on_paths(ordered.id(), 1, &orders).unwrap();
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(left[0].order, 1);
        assert!(left[0].reason.starts_with("connect: "), "{left:?}");
        assert_eq!(left[1].order, 3);
        assert!(left[1].reason.contains("longer than"), "{left:?}");
        assert_eq!(collector.path_order_patterns(ordered.id()), 3);

        // An absolute path under the prefix: killed as openat returns, the marker never written.
        let (pid_a, end) = open_child(&ordered, None, &secret.join("file"), &marker("a"));
        assert_eq!(end, End::Signalled(libc::SIGKILL));
        assert!(
            !marker("a").exists(),
            "the killed process ran past the open"
        );
        let kill = next_kill(&mut kills).await;
        let file = text(&secret.join("file"));
        assert_eq!(
            path_kill(&kill),
            (pid_a as u32, SECRET_RULE, "openat", file.as_str(), false)
        );
        assert!(
            kill.ret.is_some_and(|fd| fd >= 0),
            "the open succeeded: {kill:?}"
        );
        assert_eq!(kill.cgroup_id, ordered.id());
        assert_eq!(kill.order_cgroup_id, ordered.id());
        assert_eq!(kill.sandbox_id.as_deref(), Some(sandbox.as_str()));
        assert_eq!(kill.signal_error, None);

        // Another (watched) cgroup opening the same path lives.
        let (_, end) = open_child(&other, None, &secret.join("file"), &marker("b"));
        assert_eq!(end, End::Exited(0));
        assert!(marker("b").exists());

        // A child cgroup is held to its ancestor's orders, on every file syscall with a path
        // (the order names none): mkdirat under the prefix kills, after making the directory.
        let made = secret.join("made");
        let made_c = cstring(&made);
        let (pid_c, end) = run_child_doing(&inner, &marker("c"), || unsafe {
            libc::syscall(libc::SYS_mkdirat, AT_FDCWD, made_c.as_ptr(), 0o700);
        });
        assert_eq!(end, End::Signalled(libc::SIGKILL));
        assert!(!marker("c").exists());
        assert!(
            made.is_dir(),
            "the syscall had its effect before the process died"
        );
        let kill = next_kill(&mut kills).await;
        assert_eq!(
            path_kill(&kill),
            (
                pid_c as u32,
                SECRET_RULE,
                "mkdirat",
                text(&made).as_str(),
                false
            )
        );
        assert_eq!(kill.cgroup_id, inner.id());
        assert_eq!(kill.order_cgroup_id, ordered.id());

        // A whole path: its sibling `shadow-` lives, `shadow` itself dies; on openat only, as
        // ordered (fchmodat of it lives).
        let (_, end) = open_child(&ordered, None, &base.join("shadow-"), &marker("d"));
        assert_eq!(
            end,
            End::Exited(0),
            "an exact order does not match a longer path"
        );
        let shadow_c = cstring(&shadow);
        let (_, end) = run_child_doing(&ordered, &marker("e"), || unsafe {
            libc::syscall(libc::SYS_fchmodat, AT_FDCWD, shadow_c.as_ptr(), 0o600);
        });
        assert_eq!(end, End::Exited(0), "the order names openat only");
        let (pid_f, end) = open_child(&ordered, None, &shadow, &marker("f"));
        assert_eq!(end, End::Signalled(libc::SIGKILL));
        assert_eq!(
            path_kill(&next_kill(&mut kills).await),
            (
                pid_f as u32,
                SHADOW_RULE,
                "openat",
                text(&shadow).as_str(),
                false
            )
        );

        // What the string hides, the opened descriptor tells: a relative path, a symlink, `..`.
        let (pid_g, end) = open_child(&ordered, Some(&secret), Path::new("file"), &marker("g"));
        assert_eq!(end, End::Signalled(libc::SIGKILL), "relative path");
        assert!(!marker("g").exists());
        assert_eq!(
            path_kill(&next_kill(&mut kills).await),
            (pid_g as u32, SECRET_RULE, "openat", file.as_str(), true)
        );
        let (pid_h, end) = open_child(&ordered, None, &base.join("link"), &marker("h"));
        assert_eq!(end, End::Signalled(libc::SIGKILL), "symlink");
        assert_eq!(
            path_kill(&next_kill(&mut kills).await),
            (pid_h as u32, SECRET_RULE, "openat", file.as_str(), true)
        );
        let (pid_i, end) = open_child(
            &ordered,
            None,
            &base.join("ok/../secret/file"),
            &marker("i"),
        );
        assert_eq!(end, End::Signalled(libc::SIGKILL), "..");
        assert_eq!(
            path_kill(&next_kill(&mut kills).await),
            (pid_i as u32, SECRET_RULE, "openat", file.as_str(), true)
        );
        // A relative path that opens nothing has no descriptor to tell: only its string, which
        // matches no absolute pattern (user space sees the same string).
        let (_, end) = open_child(&ordered, Some(&secret), Path::new("missing"), &marker("j"));
        assert_eq!(end, End::Exited(0));

        // A directory's entries: its own file dies, a file of a subdirectory lives.
        let (pid_k, end) = open_child(&ordered, None, &entries.join("a"), &marker("k"));
        assert_eq!(end, End::Signalled(libc::SIGKILL));
        assert_eq!(
            path_kill(&next_kill(&mut kills).await),
            (
                pid_k as u32,
                ENTRIES_RULE,
                "openat",
                text(&entries.join("a")).as_str(),
                false
            )
        );
        let (_, end) = open_child(&ordered, None, &entries.join("sub/b"), &marker("l"));
        assert_eq!(end, End::Exited(0), "not an entry of the directory itself");

        // Orders lifted: the same open lives.
        collector.clear_kill_orders(ordered.id()).unwrap();
        assert_eq!(collector.path_order_patterns(ordered.id()), 0);
        let (_, end) = open_child(&ordered, None, &secret.join("file"), &marker("m"));
        assert_eq!(end, End::Exited(0), "no order left");
        assert!(marker("m").exists());
        // Unwatching lifts them too: they act in the file probes.
        collector
            .kill_on_paths(ordered.id(), 1, &orders[..1])
            .unwrap();
        assert_eq!(collector.path_order_patterns(ordered.id()), 1);
        collector.unwatch(&target).unwrap();
        assert_eq!(collector.path_order_patterns(ordered.id()), 0);
        assert!(
            kills.try_recv().is_err(),
            "no kill but those above: {:?}",
            kills.try_recv()
        );
        collector.unwatch(&other_target).unwrap();
        (collector.shutdown().await.unwrap(), pid_a)
    });
    assert_eq!(summary.drops.total(), 0, "{summary:?}");

    // The audit log keeps the killed open with its result, at the kill's time.
    let files = read_table(&data, "file_events");
    let opens = files.filter(|r| {
        get(r, "pid") == Some(&pid_a.to_string()) && get(r, "syscall") == Some("openat")
    });
    let file = text(&secret.join("file"));
    let killed: Vec<_> = opens
        .iter()
        .filter(|r| get(r, "path") == Some(file.as_str()))
        .collect();
    assert_eq!(killed.len(), 1, "{opens:#?}");
    assert!(
        get(killed[0], "ret").unwrap().parse::<i64>().unwrap() >= 0,
        "{killed:#?}"
    );
}
