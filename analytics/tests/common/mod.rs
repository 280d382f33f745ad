//! A small audit log written as the Parquet sink lays it out (`<table>/date=/hour=/N.parquet`),
//! from the schema crate's own builders: two sandboxes over three hours of two days.

// Each test file uses a part of this module.
#![allow(dead_code)]

pub mod servers;

use std::{fs::File, path::Path};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use sandwatch_schema::{
    AlertRow, AlertsBuilder, BatchBuilder, Common, FileEvent, FileEventsBuilder, NetworkEvent,
    NetworkEventsBuilder, ProcessEvent, ProcessEventsBuilder, SandboxEvent, SandboxLifecycle,
    SandboxesBuilder, Table,
};

/// 2026-12-01T10:00:00Z in ns.
pub const T0: i64 = 1_796_119_200_000_000_000;
pub const SEC: i64 = 1_000_000_000;
pub const HOUR: i64 = 3600 * SEC;

pub fn write(dir: &Path, table: Table, date: &str, hour: u32, name: &str, batch: &RecordBatch) {
    let part = dir
        .join(table.name())
        .join(format!("date={date}"))
        .join(format!("hour={hour:02}"));
    std::fs::create_dir_all(&part).unwrap();
    let file = File::create(part.join(name)).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

pub fn common<'a>(
    t: i64,
    sandbox: &'a str,
    pid: u32,
    ppid: u32,
    comm: &'a str,
    event: &'a str,
    ret: i64,
) -> Common<'a> {
    Common {
        time_ns: t,
        host: "h1",
        sandbox_id: Some(sandbox),
        cgroup_id: 7,
        pid,
        tid: pid,
        ppid: Some(ppid),
        uid: 1000,
        gid: 1000,
        comm,
        exe: None,
        event,
        syscall: Some(event),
        ret: Some(ret),
    }
}

fn exec<'a>(
    t: i64,
    sandbox: &'a str,
    pid: u32,
    ppid: u32,
    exe: &'a str,
    argv: &'a [u8],
) -> ProcessEvent<'a> {
    let comm = exe.rsplit('/').next().unwrap();
    ProcessEvent {
        common: Common {
            exe: Some(exe),
            ..common(t, sandbox, pid, ppid, comm, "execve", 0)
        },
        filename: Some(exe),
        argv: Some(argv),
        argv_truncated: Some(false),
        ..ProcessEvent::default()
    }
}

fn exit<'a>(
    t: i64,
    sandbox: &'a str,
    pid: u32,
    ppid: u32,
    comm: &'a str,
    code: i32,
) -> ProcessEvent<'a> {
    ProcessEvent {
        common: Common {
            syscall: None,
            ret: None,
            ..common(t, sandbox, pid, ppid, comm, "exit", 0)
        },
        exit_code: Some(code),
        ..ProcessEvent::default()
    }
}

fn file<'a>(
    t: i64,
    pid: u32,
    event: &'a str,
    path: &'a str,
    flags: i64,
    ret: i64,
) -> FileEvent<'a> {
    FileEvent {
        common: common(t, "sb-a", pid, 100, "python3", event, ret),
        path: Some(path),
        flags: Some(flags),
        dirfd: Some(-100),
        ..FileEvent::default()
    }
}

fn net<'a>(
    t: i64,
    event: &'a str,
    daddr: &'a str,
    dport: u16,
    proto: &'a str,
    ret: i64,
) -> NetworkEvent<'a> {
    NetworkEvent {
        common: common(t, "sb-a", 102, 101, "curl", event, ret),
        fd: Some(3),
        family: Some("inet"),
        protocol: Some(proto),
        daddr: Some(daddr),
        dport: Some(dport),
        ..NetworkEvent::default()
    }
}

fn lifecycle<'a>(
    t: i64,
    sandbox: &'a str,
    event: SandboxLifecycle,
    profile: &'a str,
) -> SandboxEvent<'a> {
    SandboxEvent {
        time_ns: t,
        host: "h1",
        sandbox_id: sandbox,
        event,
        command: None,
        exit_code: None,
        signal: None,
        reason: None,
        policy_hash: "00",
        profile: Some(profile),
        detail: None,
    }
}

fn finish(mut b: impl BatchBuilder) -> RecordBatch {
    b.finish().unwrap()
}

/// The connect the fixture's alert rests on.
pub const ALERT_EVENT_T: i64 = T0 + 30 * SEC;

/// Writes the fixture into `dir`.
pub fn audit_log(dir: &Path) {
    let day1 = "2026-12-01";
    // Processes: sb-a's tree 100 (sh) → 101 (python3) → 102 (curl); sb-b's lone 200.
    let mut p = ProcessEventsBuilder::new(8);
    p.append(&exec(
        T0 + SEC,
        "sb-a",
        100,
        50,
        "/bin/sh",
        b"sh\0-c\0python3 job.py\0",
    ));
    p.append(&exec(
        T0 + 2 * SEC,
        "sb-a",
        101,
        100,
        "/usr/bin/python3",
        b"python3\0job.py\0",
    ));
    p.append(&exec(
        T0 + 3 * SEC,
        "sb-a",
        102,
        101,
        "/usr/bin/curl",
        b"curl\0https://example.com\0",
    ));
    p.append(&exit(T0 + 40 * SEC, "sb-a", 102, 101, "curl", 7));
    p.append(&exit(T0 + 41 * SEC, "sb-a", 101, 100, "python3", 0));
    p.append(&exec(
        T0 + HOUR + SEC,
        "sb-b",
        200,
        60,
        "/bin/sh",
        b"sh\0-c\0true\0",
    ));
    let p = finish(p);
    write(
        dir,
        Table::ProcessEvents,
        day1,
        10,
        "1.parquet",
        &p.slice(0, 5),
    );
    write(
        dir,
        Table::ProcessEvents,
        day1,
        11,
        "2.parquet",
        &p.slice(5, 1),
    );

    let mut f = FileEventsBuilder::new(8);
    f.append(&file(T0 + 4 * SEC, 101, "openat", "/etc/passwd", 0, 3));
    f.append(&file(
        T0 + 5 * SEC,
        101,
        "openat",
        "/workspace/out.json",
        577,
        4,
    ));
    f.append(&file(
        T0 + 6 * SEC,
        101,
        "openat",
        "/etc/cron.d/job",
        65,
        -13,
    ));
    f.append(&file(
        T0 + 7 * SEC,
        101,
        "unlinkat",
        "/usr/bin/tool",
        0,
        -30,
    ));
    f.append(&file(T0 + 8 * SEC, 101, "openat", "/dev/null", 1, 5));
    f.append(&file(
        T0 + 9 * SEC,
        101,
        "openat",
        "/usr/lib/python3/os.py",
        0,
        6,
    ));
    write(dir, Table::FileEvents, day1, 10, "1.parquet", &finish(f));

    let mut n = NetworkEventsBuilder::new(4);
    n.append(&net(
        ALERT_EVENT_T,
        "connect",
        "93.184.216.34",
        443,
        "tcp",
        -115,
    ));
    n.append(&net(
        T0 + 31 * SEC,
        "connect",
        "93.184.216.34",
        443,
        "tcp",
        0,
    ));
    n.append(&net(T0 + 32 * SEC, "connect", "127.0.0.1", 8080, "tcp", 0));
    n.append(&net(T0 + 33 * SEC, "sendto", "10.0.0.53", 53, "udp", 40));
    write(dir, Table::NetworkEvents, day1, 10, "1.parquet", &finish(n));

    let mut s = SandboxesBuilder::new(8);
    s.append(&lifecycle(T0, "sb-a", SandboxLifecycle::Created, "py"));
    s.append(&SandboxEvent {
        exit_code: Some(0),
        ..lifecycle(T0 + 50 * SEC, "sb-a", SandboxLifecycle::Exited, "py")
    });
    s.append(&lifecycle(
        T0 + 51 * SEC,
        "sb-a",
        SandboxLifecycle::Destroyed,
        "py",
    ));
    s.append(&lifecycle(
        T0 + HOUR,
        "sb-b",
        SandboxLifecycle::Created,
        "cc",
    ));
    s.append(&SandboxEvent {
        reason: Some("rule"),
        signal: Some(9),
        ..lifecycle(T0 + HOUR + 2 * SEC, "sb-b", SandboxLifecycle::Killed, "cc")
    });
    s.append(&lifecycle(
        T0 + HOUR + 3 * SEC,
        "sb-b",
        SandboxLifecycle::Destroyed,
        "cc",
    ));
    let s = finish(s);
    write(dir, Table::Sandboxes, day1, 10, "1.parquet", &s.slice(0, 3));
    write(dir, Table::Sandboxes, day1, 11, "2.parquet", &s.slice(3, 3));

    let mut a = AlertsBuilder::new(1);
    let (tags, actions) = (vec!["network".to_owned()], vec!["alert".to_owned()]);
    a.append(&AlertRow {
        time_ns: ALERT_EVENT_T + 1000,
        host: "h1",
        alert_id: "a-1",
        dedup_key: "k-1",
        sandbox_id: Some("sb-a"),
        rule: "Sandbox outbound connection",
        priority: "notice",
        tags: &tags,
        output: "curl connected out",
        evidence: "[]",
        actions: &actions,
        actions_taken: "[]",
        fields: "{}",
        event: Some(("network_events", ALERT_EVENT_T, 102, 102)),
        score: None,
    });
    write(dir, Table::Alerts, day1, 10, "1.parquet", &finish(a));
}
