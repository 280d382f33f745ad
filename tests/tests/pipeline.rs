//! The audit pipeline end to end: real probes in this kernel, real cgroups, Parquet read back
//! with our reader and with DuckDB.

mod support;

use std::{
    io::Read as _,
    net::{TcpListener, UdpSocket},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use support::*;

fn last_json_line(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in job output: {text}"));
    serde_json::from_str(line).unwrap()
}

fn one<'a>(
    rows: Vec<&'a std::collections::HashMap<String, Option<String>>>,
    what: &str,
) -> &'a std::collections::HashMap<String, Option<String>> {
    assert_eq!(
        rows.len(),
        1,
        "expected exactly one row for {what}, got {rows:#?}"
    );
    rows[0]
}

/// The policy the recorded job runs under: the default preset (seccomp, no capabilities,
/// private mounts, pid and user namespaces) with the host's network, so that the job reaches
/// the test's listeners on the host's loopback (the default, `mode: none`, has a loopback of its
/// own).
const HOST_NETWORK_POLICY: &str = "extends: default\nnetwork: { mode: host }\n";

#[test]
fn a_job_is_recorded_with_arguments_and_results() {
    require_root();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tport = tcp.local_addr().unwrap().port();
    let accepter = std::thread::spawn(move || tcp.accept().map(|_| ()));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let uport = udp.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = policy_file(dir.path(), "host-net.yaml", HOST_NETWORK_POLICY);
    // The job runs in a sandbox, which cannot see the target directory: a copy in its workspace.
    let workspace = job_workspace();
    // The file the job creates, by its path inside the sandbox (what the probes see) and on the
    // host (the workspace volume).
    let file = "/workspace/created.txt";
    let host_file = workspace.path().join("created.txt");
    let sandbox = unique_id("script");
    let (tport_s, uport_s) = (tport.to_string(), uport.to_string());
    let started_ns = chrono_now_ns();
    let (runner_pid, out) = sandwatch_with_pid(&[
        "run",
        "--data",
        data.to_str().unwrap(),
        "--sandbox-id",
        &sandbox,
        "--policy",
        policy.to_str().unwrap(),
        "--workspace",
        workspace.path().to_str().unwrap(),
        "--",
        SANDBOXED_JOB,
        "script",
        &tport_s,
        &uport_s,
        file,
    ]);
    let ended_ns = chrono_now_ns();
    assert_eq!(
        out.status.code(),
        Some(7),
        "sandwatch run exits with the job's status"
    );
    let facts = last_json_line(&out.stdout);
    let mut buf = [0u8; 64];
    let (n, _) = udp.recv_from(&mut buf).expect("the datagram arrived");
    assert_eq!(&buf[..n], b"sandwatch-udp");
    accepter
        .join()
        .unwrap()
        .expect("the TCP connection arrived");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no records lost"), "{stderr}");
    // What the job wrote is on the host, owned by the unprivileged uid the sandbox's root maps to.
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(&host_file).expect("the job's file is in the workspace");
        assert_eq!(std::fs::read(&host_file).unwrap(), b"sandwatch\n");
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (MAPPED_ROOT, MAPPED_ROOT, 0o640)
        );
    }

    // The job reports pids as it sees them, in the sandbox's pid namespace; the probes record
    // host pids (pid, ppid, tid) and the syscalls' own arguments and results (clone's return
    // value, kill's and ptrace's target), which are the job's namespace pids.
    let ns_pid = facts["pid"].as_u64().unwrap().to_string();
    let ns_tracee = facts["tracee"].as_i64().unwrap().to_string();
    let ns_cat = facts["cat_pid"].as_u64().unwrap().to_string();
    let cat = facts["cat"].as_str().unwrap();

    // process_events
    let procs = read_table(&data, "process_events");
    let job_exec = one(
        procs.filter(|r| {
            get(r, "event") == Some("execve")
                && get(r, "filename") == Some(SANDBOXED_JOB)
                && get(r, "ret") == Some("0")
        }),
        "the job's exec",
    );
    let pid = get(job_exec, "pid").unwrap().to_owned();
    assert_ne!(
        pid, ns_pid,
        "the pid column is the host's pid, not the namespace's"
    );
    assert_eq!(
        get(job_exec, "argv"),
        Some(format!("[{SANDBOXED_JOB}, script, {tport}, {uport}, {file}]").as_str())
    );
    assert_eq!(get(job_exec, "argv_truncated"), Some("false"));
    assert_eq!(get(job_exec, "exe"), Some(SANDBOXED_JOB));
    assert_eq!(get(job_exec, "sandbox_id"), Some(sandbox.as_str()));
    // The job's parent is the sandbox's init, by its host pid: the process whose clone returned
    // the job's namespace pid.
    let init_pid = get(job_exec, "ppid").unwrap().to_owned();
    let init_clone = one(
        procs.filter(|r| {
            get(r, "pid") == Some(&init_pid)
                && get(r, "child_pid") == Some(&ns_pid)
                && matches!(get(r, "event"), Some("clone" | "clone3" | "fork" | "vfork"))
        }),
        "init's clone of the job",
    );
    // init's parent is the runner's zygote (a child of the runner, not watched, so it has no
    // rows of its own): a host pid, neither the runner's nor one of the sandbox's.
    let init_parent = get(init_clone, "ppid").unwrap();
    assert!(
        init_parent.parse::<u32>().unwrap() > 1
            && init_parent != runner_pid.to_string()
            && init_parent != init_pid
            && init_parent != pid,
        "init's parent is the zygote, by host pid: {init_parent}"
    );
    // init never executes anything (it is a clone of the zygote, made before it joined the
    // watched cgroup): the runner tells the collector who it is while it lives, so its rows name
    // the runner's own binary even when they are decoded after init is gone.
    assert_eq!(
        get(init_clone, "exe").map(std::path::PathBuf::from),
        Some(sandwatch_bin().canonicalize().unwrap()),
        "init is the runner's own binary"
    );
    let cat_exec = one(
        procs.filter(|r| {
            get(r, "event") == Some("execve")
                && get(r, "argv") == Some(&format!("[{cat}, /etc/hostname]"))
        }),
        "cat's exec",
    );
    assert_eq!(get(cat_exec, "ret"), Some("0"));
    assert_eq!(get(cat_exec, "filename"), Some(cat));
    assert_eq!(
        get(cat_exec, "ppid"),
        Some(pid.as_str()),
        "cat's parent is the job"
    );
    assert_eq!(get(cat_exec, "comm"), Some("cat"));
    let cat_pid = get(cat_exec, "pid").unwrap().to_owned();
    let spawn = one(
        procs.filter(|r| get(r, "pid") == Some(&pid) && get(r, "child_pid") == Some(&ns_cat)),
        "the clone that made cat",
    );
    assert!(
        matches!(
            get(spawn, "event"),
            Some("clone" | "clone3" | "fork" | "vfork")
        ),
        "{spawn:?}"
    );
    assert_eq!(get(spawn, "ret"), Some(ns_cat.as_str()));
    one(
        procs.filter(|r| get(r, "pid") == Some(&pid) && get(r, "child_pid") == Some(&ns_tracee)),
        "the fork of the tracee",
    );
    // Changed with the sandbox: its seccomp filter refuses ptrace with EPERM (no job may act on
    // another process's memory and registers). Both calls are still recorded, with the kernel's
    // -EPERM; PTRACE_DETACH is refused the same way.
    assert_eq!(
        (
            facts["attach_errno"].as_i64(),
            facts["detach_errno"].as_i64()
        ),
        (Some(libc::EPERM as i64), Some(libc::EPERM as i64)),
        "ptrace is refused in a sandbox"
    );
    let attach = one(
        procs
            .with("event", "ptrace")
            .into_iter()
            .filter(|r| get(r, "ptrace_request") == Some("16"))
            .collect(),
        "PTRACE_ATTACH",
    );
    assert_eq!(
        (
            get(attach, "target_pid"),
            get(attach, "ret"),
            get(attach, "pid")
        ),
        (Some(ns_tracee.as_str()), Some("-1"), Some(pid.as_str()))
    );
    let detach = one(
        procs
            .with("event", "ptrace")
            .into_iter()
            .filter(|r| get(r, "ptrace_request") == Some("17"))
            .collect(),
        "PTRACE_DETACH",
    );
    assert_eq!(get(detach, "ret"), Some("-1"));
    let kill = one(
        procs.filter(|r| get(r, "event") == Some("kill") && get(r, "pid") == Some(&pid)),
        "the kill",
    );
    assert_eq!(
        (
            get(kill, "target_pid"),
            get(kill, "signal"),
            get(kill, "ret")
        ),
        (Some(ns_tracee.as_str()), Some("9"), Some("0"))
    );
    let exits = procs.with("event", "exit");
    let exit_of = |p: &str| {
        one(
            exits
                .iter()
                .copied()
                .filter(|r| get(r, "pid") == Some(p))
                .collect(),
            "an exit",
        )
    };
    assert_eq!(
        (
            get(exit_of(&pid), "exit_code"),
            get(exit_of(&pid), "exit_signal")
        ),
        (Some("7"), None)
    );
    assert_eq!(get(exit_of(&cat_pid), "exit_code"), Some("0"));
    // The tracee never executes anything: its host pid is that of the job's other child.
    let tracee = one(
        exits
            .iter()
            .copied()
            .filter(|r| get(r, "ppid") == Some(&pid) && get(r, "pid") != Some(&cat_pid))
            .collect(),
        "the tracee's exit",
    );
    assert_eq!(
        (get(tracee, "exit_code"), get(tracee, "exit_signal")),
        (None, Some("9"))
    );

    // file_events
    let files = read_table(&data, "file_events");
    let hostname = one(
        files
            .filter(|r| get(r, "pid") == Some(&cat_pid) && get(r, "path") == Some("/etc/hostname")),
        "cat's open",
    );
    assert_eq!(get(hostname, "event"), Some("openat"));
    assert!(get(hostname, "ret").unwrap().parse::<i64>().unwrap() >= 0);
    assert!(get(hostname, "flags_text").unwrap().starts_with("O_RDONLY"));
    let mine = files.filter(|r| get(r, "path") == Some(file));
    assert_eq!(mine.len(), 2, "{mine:#?}");
    let (w, r) = (mine[0], mine[1]);
    assert_eq!(get(w, "pid"), Some(pid.as_str()));
    assert_eq!(get(w, "flags_text"), Some("O_WRONLY|O_CREAT|O_TRUNC"));
    assert_eq!(get(w, "mode"), Some("416"), "0o640");
    assert_eq!(get(w, "ret"), Some(facts["wfd"].to_string().as_str()));
    assert_eq!(
        get(w, "dirfd"),
        Some("-100"),
        "AT_FDCWD: open(2) is openat(AT_FDCWD)"
    );
    assert_eq!(get(r, "flags_text"), Some("O_RDONLY"));
    assert_eq!(get(r, "mode"), None, "no mode without O_CREAT");
    assert_eq!(get(r, "ret"), Some(facts["rfd"].to_string().as_str()));
    assert_eq!(get(r, "path_truncated"), Some("false"));

    // network_events
    let net = read_table(&data, "network_events");
    let tcp_fd = facts["tcp_fd"].to_string();
    let udp_fd = facts["udp_fd"].to_string();
    let sock = one(
        net.filter(|r| {
            get(r, "event") == Some("socket")
                && get(r, "ret") == Some(&tcp_fd)
                && get(r, "sock_type") == Some("stream")
        }),
        "the TCP socket",
    );
    assert_eq!(
        (get(sock, "family"), get(sock, "protocol")),
        (Some("inet"), Some("tcp"))
    );
    let connect = one(net.with("event", "connect"), "the connect");
    assert_eq!(get(connect, "daddr"), Some("127.0.0.1"));
    assert_eq!(get(connect, "dport"), Some(tport_s.as_str()));
    assert_eq!(get(connect, "ret"), Some("0"));
    assert_eq!(get(connect, "fd"), Some(tcp_fd.as_str()));
    assert_eq!(
        (get(connect, "family"), get(connect, "protocol")),
        (Some("inet"), Some("tcp"))
    );
    let send = one(net.with("event", "sendto"), "the datagram");
    assert_eq!(
        (get(send, "daddr"), get(send, "dport")),
        (Some("127.0.0.1"), Some(uport_s.as_str()))
    );
    assert_eq!(get(send, "fd"), Some(udp_fd.as_str()));
    assert_eq!(get(send, "ret"), Some(facts["sent"].to_string().as_str()));
    assert_eq!(get(send, "bytes"), Some("13"));
    assert_eq!(get(send, "protocol"), Some("udp"));

    // Every event row is the sandbox's, with the common columns filled, made by a process that
    // is uid 0 in the sandbox and the unprivileged mapped uid on the host (what the probes see).
    let mapped = MAPPED_ROOT.to_string();
    for (name, t) in [
        ("process_events", &procs),
        ("file_events", &files),
        ("network_events", &net),
    ] {
        for row in &t.rows {
            assert_eq!(
                get(row, "sandbox_id"),
                Some(sandbox.as_str()),
                "{name}: {row:?}"
            );
            assert_eq!(
                get(row, "host"),
                Some(
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .unwrap()
                        .trim()
                )
            );
            assert_eq!(
                (get(row, "uid"), get(row, "gid")),
                (Some(mapped.as_str()), Some(mapped.as_str())),
                "{name}: {row:?}"
            );
            for col in [
                "time",
                "cgroup_id",
                "pid",
                "tid",
                "uid",
                "gid",
                "comm",
                "event",
            ] {
                assert!(get(row, col).is_some(), "{name}.{col} is null: {row:?}");
            }
        }
    }

    // syscall_counts: counted in the kernel, at least what the rows show.
    let counts = read_table(&data, "syscall_counts");
    let openats: u64 = counts
        .with("syscall", "openat")
        .iter()
        .map(|r| get(r, "count").unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        openats,
        files.with("event", "openat").len() as u64,
        "every counted openat has its row"
    );
    assert!(
        counts
            .rows
            .iter()
            .all(|r| get(r, "sandbox_id") == Some(sandbox.as_str()))
    );
    assert_eq!(read_table(&data, "drops").len(), 0);

    // An independent reader agrees, and times are UTC nanoseconds within the run.
    let glob = |t: &str| format!("{}/{t}/**/*.parquet", data.display());
    for (t, rows) in [
        ("process_events", procs.len()),
        ("file_events", files.len()),
        ("network_events", net.len()),
    ] {
        let got = duckdb(&format!("select count(*) from read_parquet('{}')", glob(t)));
        assert_eq!(
            got[0][0].as_u64(),
            Some(rows as u64),
            "duckdb row count of {t}"
        );
    }
    let got = duckdb(&format!(
        "select daddr, dport, epoch_ns(time) from read_parquet('{}', hive_partitioning = true) where event = 'connect'",
        glob("network_events")
    ));
    assert_eq!(got[0][0].as_str(), Some("127.0.0.1"));
    assert_eq!(got[0][1].as_u64(), Some(tport as u64));
    let t = got[0][2].as_i64().unwrap();
    assert!(
        t >= started_ns && t <= ended_ns,
        "connect time {t} outside the run [{started_ns}, {ended_ns}]"
    );
    let partitions = duckdb(&format!(
        "select distinct date, hour from read_parquet('{}', hive_partitioning = true)",
        glob("file_events")
    ));
    assert!(
        !partitions.is_empty(),
        "hive partitions date=/hour= are readable"
    );
}

fn chrono_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn only_watched_cgroups_and_their_children_are_recorded() {
    require_root();
    let watched = TestCgroup::create("watched");
    let inner = watched.child("inner");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let go = dir.path().join("go");
    let marker = dir.path().join("marker-inside");
    std::fs::write(&marker, "x").unwrap();
    // A process in a CHILD cgroup of the watched one, which acts only after the watch is on.
    let mut inside = Command::new("sh")
        .args([
            "-c",
            &format!(
                "while [ ! -e {} ]; do sleep 0.02; done; exec {} open {}",
                go.display(),
                job_bin(),
                marker.display()
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    inner.add(inside.id());

    let watch = WatchRun::start(&data, &watched.name);

    // The same actions as the recorded job, from outside the watched cgroup.
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tport = tcp.local_addr().unwrap().port();
    let accepter = std::thread::spawn(move || tcp.accept().map(|_| ()));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uport = udp.local_addr().unwrap().port();
    let outside_file = dir.path().join("outside.txt");
    let out = Command::new(job_bin())
        .args([
            "script",
            &tport.to_string(),
            &uport.to_string(),
            outside_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    accepter.join().unwrap().unwrap();
    let outside_pid = last_json_line(&out.stdout)["pid"].to_string();

    std::fs::write(&go, "").unwrap();
    let mut inside_out = String::new();
    inside
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut inside_out)
        .unwrap();
    assert!(inside.wait().unwrap().success());
    let inside_pid = last_json_line(inside_out.as_bytes())["pid"].to_string();

    let (status, _) = watch.stop();
    assert_eq!(status.code(), Some(0), "watch exits 0 after SIGINT");

    let files = read_table(&data, "file_events");
    let seen = one(
        files.filter(|r| get(r, "path") == Some(marker.to_str().unwrap())),
        "the inside process's open",
    );
    assert_eq!(get(seen, "pid"), Some(inside_pid.as_str()));
    assert_eq!(
        get(seen, "sandbox_id"),
        Some(watched.name.as_str()),
        "attributed to the watched cgroup"
    );
    assert_eq!(
        get(seen, "cgroup_id"),
        Some(inner.id().to_string().as_str()),
        "cgroup_id is the process's own cgroup"
    );
    for table in [
        "process_events",
        "file_events",
        "network_events",
        "syscall_events",
    ] {
        let rows = read_table(&data, table);
        let leaked = rows.filter(|r| {
            get(r, "pid") == Some(&outside_pid) || get(r, "ppid") == Some(&outside_pid)
        });
        assert!(
            leaked.is_empty(),
            "{table} recorded the unwatched process: {leaked:#?}"
        );
    }
    assert!(
        files
            .with("path", outside_file.to_str().unwrap())
            .is_empty()
    );
    let net = read_table(&data, "network_events");
    assert!(
        net.with("dport", &tport.to_string()).is_empty()
            && net.with("dport", &uport.to_string()).is_empty()
    );
}

#[test]
fn ring_buffer_overflow_is_counted_exactly() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The job runs in a sandbox, which cannot see the target directory: a copy in its workspace.
    let workspace = job_workspace();
    let opens = 200_000u64;
    let out = sandwatch(&[
        "run",
        "--data",
        data.to_str().unwrap(),
        "--ring-buffer-size",
        "4096",
        "--workspace",
        workspace.path().to_str().unwrap(),
        "--",
        SANDBOXED_JOB,
        "burst",
        &opens.to_string(),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lost: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("sandwatch: LOST "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the summary reports the loss: {stderr}"))
        .parse()
        .unwrap();
    assert!(lost > 0);

    let drops = read_table(&data, "drops");
    let dropped: u64 = drops
        .with("source", "kernel")
        .iter()
        .map(|r| get(r, "count").unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        dropped, lost,
        "the drops table holds exactly what the kernel counted"
    );
    let file_drops: u64 = drops
        .filter(|r| get(r, "source") == Some("kernel") && get(r, "kind") == Some("file"))
        .iter()
        .map(|r| get(r, "count").unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(file_drops > 0);

    // The in-kernel syscall counter is not subject to ring-buffer space: every openat it counted
    // is either a row or a counted drop.
    let files = read_table(&data, "file_events");
    let counted: u64 = read_table(&data, "syscall_counts")
        .with("syscall", "openat")
        .iter()
        .map(|r| get(r, "count").unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(counted >= opens);
    assert!(
        files
            .filter(|r| get(r, "event") != Some("openat"))
            .is_empty(),
        "the burst only opens"
    );
    assert_eq!(
        counted,
        files.len() as u64 + file_drops,
        "counted = recorded + dropped"
    );
}

#[test]
fn bad_input_gets_one_clear_line_and_exit_code_2() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let missing_cmd = sandwatch(&["run", "--data", data]);
    assert_eq!(missing_cmd.status.code(), Some(2));

    let no_cgroup = sandwatch(&[
        "watch",
        "--data",
        data,
        "--cgroup",
        "/sandwatch-no-such-cgroup",
    ]);
    assert_eq!(no_cgroup.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&no_cgroup.stderr);
    assert!(
        msg.contains("/sandwatch-no-such-cgroup") && msg.contains("does not exist"),
        "{msg}"
    );
    assert_eq!(
        msg.lines().filter(|l| l.starts_with("sandwatch:")).count(),
        1,
        "{msg}"
    );

    let bad_dir = sandwatch(&["run", "--data", "/proc/sandwatch-data", "--", "true"]);
    assert_eq!(bad_dir.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&bad_dir.stderr);
    assert!(msg.contains("/proc/sandwatch-data"), "{msg}");

    let bad_size = sandwatch(&[
        "run",
        "--data",
        data,
        "--ring-buffer-size",
        "1000",
        "--",
        "true",
    ]);
    assert_eq!(bad_size.status.code(), Some(2));

    let not_found = sandwatch(&["run", "--data", data, "--", "/sandwatch/no/such/program"]);
    assert_eq!(
        not_found.status.code(),
        Some(127),
        "like a shell: command not found"
    );
    // The failed exec attempt itself is in the audit log.
    let procs = read_table(std::path::Path::new(data), "process_events");
    assert!(
        !procs
            .filter(|r| get(r, "filename") == Some("/sandwatch/no/such/program")
                && get(r, "ret") == Some("-2"))
            .is_empty()
    );
}

#[test]
fn truncation_refusals_and_signals_are_recorded_faithfully() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The job runs in a sandbox (default preset), which cannot see the target directory.
    let workspace = job_workspace();
    let out = sandwatch(&[
        "run",
        "--data",
        data.to_str().unwrap(),
        "--workspace",
        workspace.path().to_str().unwrap(),
        "--",
        SANDBOXED_JOB,
        "edge",
    ]);
    assert_eq!(
        out.status.code(),
        Some(128 + 9),
        "killed by SIGKILL: 128+9, as a shell reports it"
    );
    let facts = last_json_line(&out.stdout);
    // The job's pid in its pid namespace (what kill(getpid()) names) and on the host (the pid
    // column).
    let ns_pid = facts["pid"].to_string();
    let procs = read_table(&data, "process_events");
    let pid = get(
        one(
            procs.filter(|r| {
                get(r, "event") == Some("execve")
                    && get(r, "filename") == Some(SANDBOXED_JOB)
                    && get(r, "ret") == Some("0")
            }),
            "the job's exec",
        ),
        "pid",
    )
    .unwrap()
    .to_owned();
    let long_exec = one(
        procs.filter(|r| {
            get(r, "event") == Some("execve") && get(r, "filename") == Some("/bin/true")
        }),
        "the exec with a 3000-byte argument",
    );
    assert_eq!(get(long_exec, "argv_truncated"), Some("true"));
    let argv = get(long_exec, "argv").unwrap();
    assert!(
        argv.starts_with("[/bin/true, aaaa") && argv.len() < 400,
        "argv kept its head, cut at the capture: {argv}"
    );
    let exit = one(
        procs.filter(|r| get(r, "event") == Some("exit") && get(r, "pid") == Some(&pid)),
        "the job's exit",
    );
    assert_eq!(
        (get(exit, "exit_code"), get(exit, "exit_signal")),
        (None, Some("9"))
    );
    let kill = one(
        procs.filter(|r| get(r, "event") == Some("kill") && get(r, "pid") == Some(&pid)),
        "the kill",
    );
    assert_eq!(
        (get(kill, "target_pid"), get(kill, "signal")),
        (Some(ns_pid.as_str()), Some("9")),
        "kill's argument, the job's own pid as it knows it: the namespace's"
    );

    let files = read_table(&data, "file_events");
    let long_open = one(
        files.filter(|r| {
            get(r, "pid") == Some(&pid)
                && get(r, "path").is_some_and(|p| p.starts_with("/tmp/pppp"))
        }),
        "the long open",
    );
    assert_eq!(get(long_open, "path_truncated"), Some("true"));
    assert_eq!(
        get(long_open, "path").unwrap().len(),
        511,
        "512-byte capture, NUL included"
    );
    assert_eq!(facts["open_ret"], -1, "libc says -1 and sets errno...");
    assert_eq!(
        get(long_open, "ret"),
        Some("-36"),
        "...the record has the kernel's -ENAMETOOLONG (a 700-byte name)"
    );

    let sys = read_table(&data, "syscall_events");
    let unshare = one(
        sys.filter(|r| get(r, "event") == Some("unshare") && get(r, "pid") == Some(&pid)),
        "unshare",
    );
    // Changed with the sandbox: its seccomp filter refuses unshare(CLONE_NEWUSER) with EPERM (a
    // new user namespace would give the job back every capability inside it), and unshare is on
    // the runner's deny-list, so the row is a refusal. On a bare host it succeeded (ret 0,
    // refused false).
    assert_eq!(facts["unshare_errno"], libc::EPERM);
    assert_eq!(get(unshare, "ret"), Some("-1"));
    assert!(
        get(unshare, "args")
            .unwrap()
            .starts_with(&format!("[{}, ", libc::CLONE_NEWUSER)),
        "{unshare:?}"
    );
    assert_eq!(get(unshare, "refused"), Some("true"));
    let refusal = one(
        sys.filter(|r| get(r, "event") == Some("sethostname") && get(r, "pid") == Some(&pid)),
        "the refused sethostname",
    );
    assert_eq!(
        (get(refusal, "ret"), get(refusal, "refused")),
        (Some("-1"), Some("true"))
    );
}
