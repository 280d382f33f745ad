//! What an exec row says of the process after exec, read in the kernel: its controlling
//! terminal, capability sets and login uid, and where its executable comes from (a memfd, a file
//! written since the sandbox started). Each value is checked against what the process itself
//! reads from /proc after the exec (`sw-test-job facts LABEL` prints it), in a sandbox and for a
//! root process in a watched cgroup; the audit log is read with our reader and with DuckDB.

mod support;

use std::{
    collections::HashMap,
    io::Read as _,
    process::{Command, Stdio},
};

use serde_json::Value;
use support::*;

type Row = HashMap<String, Option<String>>;

/// The JSON lines `sw-test-job facts LABEL` printed, by label.
fn printed_facts(stdout: &[u8]) -> HashMap<String, Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|v| Some((v["label"].as_str()?.to_owned(), v)))
        .collect()
}

/// The one successful exec row whose argv is `[PROGRAM, facts, LABEL]`.
fn exec_of<'a>(rows: &'a Rows, label: &str) -> &'a Row {
    let want = format!("facts, {label}]");
    let found = rows.filter(|r| {
        get(r, "event").is_some_and(|e| e.starts_with("exec"))
            && get(r, "ret") == Some("0")
            && get(r, "argv")
                .and_then(|a| a.split_once(", "))
                .is_some_and(|(_, rest)| rest == want)
    });
    assert_eq!(found.len(), 1, "exec rows of `facts {label}`: {found:#?}");
    found[0]
}

/// This test process's login uid as the kernel holds it, in Falco's form: -1 when never set.
fn own_loginuid() -> i64 {
    let raw: u32 = std::fs::read_to_string("/proc/self/loginuid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if raw == u32::MAX { -1 } else { raw.into() }
}

/// The recorded terminal and capability sets are what the process read of itself.
fn assert_matches_printed(row: &Row, printed: &Value, label: &str) {
    for (column, key) in [
        ("tty", "tty_nr"),
        ("cap_effective", "cap_eff"),
        ("cap_permitted", "cap_prm"),
        ("cap_inheritable", "cap_inh"),
    ] {
        assert_eq!(
            get(row, column),
            Some(printed[key].to_string().as_str()),
            "{column} of `facts {label}` (the process read {printed})"
        );
    }
}

#[test]
fn exec_rows_carry_terminal_capabilities_and_where_the_executable_came_from() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The job's own copy in the workspace predates the sandbox: not written in it.
    let workspace = job_workspace();
    let sandbox = unique_id("exec-facts");
    let j = SANDBOXED_JOB;
    let script = format!(
        "{j} facts plain; \
         {j} pty-exec {j} facts pty; \
         {j} memfd-exec facts memfd; \
         {j} copy-exec /workspace/dropped facts dropped; \
         /bin/true"
    );
    let out = sandwatch(&[
        "run",
        "--data",
        data.to_str().unwrap(),
        "--sandbox-id",
        &sandbox,
        "--workspace",
        workspace.path().to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.status.code(), Some(0), "the job succeeds");
    let printed = printed_facts(&out.stdout);
    let rows = read_table(&data, "process_events");

    // No terminal: a sandbox's commands run in a session of their own, without one.
    let plain = exec_of(&rows, "plain");
    assert_matches_printed(plain, &printed["plain"], "plain");
    assert_eq!(get(plain, "tty"), Some("0"));
    // A sandbox drops every capability: all three sets are empty after exec.
    for caps in ["cap_effective", "cap_permitted", "cap_inheritable"] {
        assert_eq!(get(plain, caps), Some("0"), "{caps} in a sandbox");
    }
    // The login uid is inherited from whoever started sandwatch (this test), whatever the
    // sandbox's user namespace shows of it.
    assert_eq!(
        get(plain, "loginuid"),
        Some(own_loginuid().to_string().as_str())
    );
    assert_eq!(get(plain, "exe_from_memfd"), Some("false"));
    assert_eq!(get(plain, "exe_written_in_sandbox"), Some("false"));
    assert!(get(plain, "exe_ctime").is_some());

    // A new session that took a pseudo-terminal of the sandbox's devpts as its controlling
    // terminal: the device number /proc/<pid>/stat shows, major 136 (Unix98 pty slaves).
    let pty = exec_of(&rows, "pty");
    assert_matches_printed(pty, &printed["pty"], "pty");
    let tty: u32 = get(pty, "tty").unwrap().parse().unwrap();
    assert_eq!((tty >> 8) & 0xfff, 136, "a pty slave: {tty}");

    // Fileless execution: the job copied itself into a memfd and executed that (execveat with
    // AT_EMPTY_PATH). The memfd is new, so it also counts as written in the sandbox.
    let memfd = exec_of(&rows, "memfd");
    assert_eq!(get(memfd, "syscall"), Some("execveat"));
    assert_eq!(get(memfd, "exe_from_memfd"), Some("true"));
    assert_eq!(get(memfd, "exe_written_in_sandbox"), Some("true"));
    assert_matches_printed(memfd, &printed["memfd"], "memfd");

    // Drop and execute: a file the job wrote into its workspace, then executed.
    let dropped = exec_of(&rows, "dropped");
    assert_eq!(get(dropped, "filename"), Some("/workspace/dropped"));
    assert_eq!(get(dropped, "exe_written_in_sandbox"), Some("true"));
    assert_eq!(get(dropped, "exe_from_memfd"), Some("false"));

    // A system binary from the read-only root: neither.
    let bin_true =
        rows.filter(|r| get(r, "filename") == Some("/bin/true") && get(r, "ret") == Some("0"));
    assert_eq!(bin_true.len(), 1, "{bin_true:#?}");
    assert_eq!(get(bin_true[0], "exe_written_in_sandbox"), Some("false"));
    assert_eq!(get(bin_true[0], "exe_from_memfd"), Some("false"));
    assert_eq!(get(bin_true[0], "tty"), Some("0"));

    // Rows that are not successful execs carry none of these facts.
    let others = rows.filter(|r| {
        !(get(r, "event").is_some_and(|e| e.starts_with("exec")) && get(r, "ret") == Some("0"))
    });
    assert!(!others.is_empty());
    for r in others {
        for column in [
            "tty",
            "loginuid",
            "cap_effective",
            "exe_from_memfd",
            "exe_written_in_sandbox",
        ] {
            assert_eq!(get(r, column), None, "{column} on {r:#?}");
        }
    }

    // An independent reader sees the same typed columns.
    let glob = data.join("process_events/**/*.parquet");
    let duck = duckdb(&format!(
        "select argv[-1], tty, cap_effective, exe_from_memfd, exe_written_in_sandbox, \
         typeof(exe_ctime), typeof(loginuid) from '{}' \
         where len(argv) = 3 and argv[2] = 'facts' and ret = 0 order by argv[-1]",
        glob.display()
    ));
    let pty_tty = printed["pty"]["tty_nr"].clone();
    let want = |label: &str, tty: Value, memfd: bool, written: bool| {
        serde_json::json!([label, tty, 0, memfd, written, "TIMESTAMPTZ_NS", "BIGINT"])
    };
    assert_eq!(
        duck,
        vec![
            want("dropped", 0.into(), false, true),
            want("memfd", 0.into(), true, true),
            want("plain", 0.into(), false, false),
            want("pty", pty_tty, false, false),
        ]
    );
}

#[test]
fn a_root_process_in_a_watched_cgroup_keeps_its_capabilities() {
    require_root();
    let watched = TestCgroup::create("exec-facts");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let go = dir.path().join("go");
    // Waits in the cgroup until the watch is on, then executes the job as root.
    let mut job = Command::new("sh")
        .args([
            "-c",
            &format!(
                "while [ ! -e {} ]; do sleep 0.02; done; exec {} facts root",
                go.display(),
                job_bin()
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    watched.add(job.id());

    let watch = WatchRun::start(&data, &watched.name);
    std::fs::write(&go, "").unwrap();
    let mut stdout = String::new();
    job.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(job.wait().unwrap().success());

    let (status, log) = watch.stop();
    assert_eq!(status.code(), Some(0));
    assert!(
        !log.contains("kernel fields not found"),
        "every field the probes read was found in this kernel's BTF: {log}"
    );

    let printed = printed_facts(stdout.as_bytes());
    let rows = read_table(&data, "process_events");
    let root = exec_of(&rows, "root");
    assert_matches_printed(root, &printed["root"], "root");
    let effective: u64 = get(root, "cap_effective").unwrap().parse().unwrap();
    const CAP_SYS_ADMIN: u32 = 21;
    assert_ne!(
        effective & (1 << CAP_SYS_ADMIN),
        0,
        "root on the host has CAP_SYS_ADMIN: {effective:#x}"
    );
    assert_eq!(
        get(root, "loginuid"),
        Some(own_loginuid().to_string().as_str())
    );
    // Built before the watch began, and a regular file.
    assert_eq!(get(root, "exe_written_in_sandbox"), Some("false"));
    assert_eq!(get(root, "exe_from_memfd"), Some("false"));
}
