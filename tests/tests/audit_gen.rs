//! `sw-audit-gen`: the synthetic audit log `cargo xtask bench sql` queries is a log our own SQL
//! reads as it reads a recorded one, with exactly the events asked for, process trees that are
//! trees, alerts that point at real event rows, and the same rows for the same seed. No root
//! needed: nothing here touches the kernel.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use arrow_array::{Array, cast::AsArray, types::Int64Type};
use sandwatch_analytics::{QueryLimits, SqlSession};

const ROWS: u64 = 40_000;

fn generate(dir: &Path, seed: u64) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sw-audit-gen"))
        .args(["--rows", &ROWS.to_string(), "--seed", &seed.to_string()])
        .args(["--sandboxes", "16", "--days", "1", "--hosts", "2", "--out"])
        .arg(dir)
        .output()
        .expect("running sw-audit-gen");
    assert!(
        out.status.success(),
        "sw-audit-gen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = std::fs::read_to_string(dir.join("sw-audit-gen.json")).expect("its manifest");
    serde_json::from_str(&manifest).expect("the manifest is JSON")
}

/// The query's rows, each column as an i64 (the queries below cast what they return).
async fn ints(session: &SqlSession, sql: &str) -> Vec<Vec<i64>> {
    let result = session
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = Vec::new();
    for b in &result.batches {
        for r in 0..b.num_rows() {
            rows.push(
                (0..b.num_columns())
                    .map(|c| {
                        let col = b.column(c).as_primitive::<Int64Type>();
                        if col.is_null(r) {
                            i64::MIN
                        } else {
                            col.value(r)
                        }
                    })
                    .collect(),
            );
        }
    }
    rows
}

async fn one(session: &SqlSession, sql: &str) -> i64 {
    ints(session, sql).await[0][0]
}

fn tmp(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(name);
    (dir, data)
}

#[tokio::test]
async fn the_generated_log_reads_back_whole_and_consistent() {
    let (_keep, data) = tmp("log");
    let manifest = generate(&data, 7);
    let session = SqlSession::open(&data, QueryLimits::default())
        .await
        .unwrap();

    // Exactly the events asked for, as many rows per table as the generator says it wrote.
    assert_eq!(
        one(&session, "SELECT CAST(count(*) AS BIGINT) FROM events").await,
        ROWS as i64
    );
    for (table, n) in manifest["rows_by_table"].as_object().unwrap() {
        let got = one(
            &session,
            &format!("SELECT CAST(count(*) AS BIGINT) FROM {table}"),
        )
        .await;
        assert_eq!(got, n.as_i64().unwrap(), "{table}");
    }
    // File events dominate; every table the investigations read has rows; many partitions.
    let file = one(&session, "SELECT CAST(count(*) AS BIGINT) FROM file_events").await;
    assert!(
        file * 100 >= ROWS as i64 * 70,
        "file events: {file} of {ROWS}"
    );
    for table in [
        "process_events",
        "network_events",
        "sandboxes",
        "sandbox_metrics",
        "alerts",
    ] {
        let n = one(
            &session,
            &format!("SELECT CAST(count(*) AS BIGINT) FROM {table}"),
        )
        .await;
        assert!(n > 0, "{table} is empty");
    }
    let partitions = one(
        &session,
        "SELECT CAST(count(DISTINCT CAST(date AS VARCHAR) || CAST(hour AS VARCHAR)) AS BIGINT) FROM file_events",
    )
    .await;
    assert!(partitions >= 4, "{partitions} hour partitions");

    // Every sandbox: created once, destroyed once, as many exits as starts of commands.
    let lifecycles = ints(
        &session,
        "SELECT CAST(count(*) FILTER (WHERE event = 'created') AS BIGINT),
                CAST(count(*) FILTER (WHERE event = 'destroyed') AS BIGINT),
                CAST(count(*) FILTER (WHERE event = 'started') AS BIGINT)
                  - CAST(count(*) FILTER (WHERE event = 'exited') AS BIGINT)
         FROM sandboxes GROUP BY sandbox_id",
    )
    .await;
    assert_eq!(lifecycles.len(), 16);
    assert!(lifecycles.iter().all(|r| r == &[1, 1, 0]), "{lifecycles:?}");

    // Process trees: in each sandbox one root (its init, whose parent is outside), every other
    // process's parent seen in the same sandbox, every process ended by an exit row, and every
    // process but init started by a clone (threads' clones aside) in its parent.
    let trees = ints(
        &session,
        "WITH procs AS (
            SELECT sandbox_id, pid, first_value(ppid ORDER BY time) AS ppid,
                   count(*) FILTER (WHERE event = 'exit' AND tid = pid) AS exits
            FROM process_events GROUP BY sandbox_id, pid
         ), forks AS (
            SELECT sandbox_id, count(*) AS n FROM process_events
            WHERE event IN ('clone', 'vfork') AND clone_flags <> 4001536 GROUP BY sandbox_id
         )
         SELECT CAST(count(*) FILTER (WHERE parent.pid IS NULL) AS BIGINT) AS roots,
                CAST(count(*) FILTER (WHERE p.exits <> 1) AS BIGINT) AS not_ended_once,
                CAST(count(*) AS BIGINT) - CAST(max(forks.n) AS BIGINT) AS unforked
         FROM procs p
         LEFT JOIN procs parent ON parent.sandbox_id = p.sandbox_id AND parent.pid = p.ppid
         JOIN forks ON forks.sandbox_id = p.sandbox_id
         GROUP BY p.sandbox_id",
    )
    .await;
    assert_eq!(trees.len(), 16);
    assert!(trees.iter().all(|r| r == &[1, 0, 1]), "{trees:?}");

    // A child's rows come after its parent's fork; an exec's row carries what it ran.
    let bad_execs = one(
        &session,
        "SELECT CAST(count(*) AS BIGINT) FROM process_events
         WHERE event = 'execve' AND ret = 0
           AND (filename IS NULL OR argv IS NULL OR cwd IS NULL OR exe_ctime IS NULL)",
    )
    .await;
    assert_eq!(bad_execs, 0);

    // Every alert rests on a real event row of its table, found through its event_* columns.
    let alerts = one(&session, "SELECT CAST(count(*) AS BIGINT) FROM alerts").await;
    let joined = one(
        &session,
        "SELECT CAST(count(*) AS BIGINT) FROM alerts a JOIN events e
           ON e.sandbox_id = a.sandbox_id AND e.time = a.event_time AND e.pid = a.event_pid
          AND e.tid = a.event_tid AND e.kind || '_events' = a.event_table",
    )
    .await;
    assert_eq!(joined, alerts, "alerts whose event row is missing");
    let after = one(
        &session,
        "SELECT CAST(count(*) AS BIGINT) FROM alerts WHERE time <= event_time",
    )
    .await;
    assert_eq!(after, 0, "an alert follows its event");
    let process_alerts = one(
        &session,
        "SELECT CAST(count(*) AS BIGINT) FROM alerts a JOIN process_events p
           ON p.sandbox_id = a.sandbox_id AND p.time = a.event_time AND p.tid = a.event_tid
         WHERE a.event_table = 'process_events'",
    )
    .await;
    assert!(process_alerts > 0, "no alert on a process event");

    // Outbound destinations have a heavy head: the top one takes a large share of connects.
    let dest = ints(
        &session,
        "SELECT CAST(count(*) AS BIGINT) AS n FROM network_events
         WHERE event = 'connect' AND family = 'inet' AND daddr NOT LIKE '127.%'
         GROUP BY daddr ORDER BY n DESC",
    )
    .await;
    assert!(dest.len() > 20 && dest[0][0] * 10 > dest.iter().map(|r| r[0]).sum::<i64>());
}

#[tokio::test]
async fn the_same_seed_writes_the_same_rows() {
    let (_a, first) = tmp("a");
    let (_b, second) = tmp("b");
    let (_c, other) = tmp("c");
    generate(&first, 3);
    generate(&second, 3);
    generate(&other, 4);
    // A fingerprint of every file event's time, sandbox, pid and path.
    let fingerprint = "SELECT CAST(count(*) AS BIGINT),
            CAST(sum(CAST(time AS BIGINT) % 1000003) AS BIGINT),
            CAST(sum(length(coalesce(path, '')) * pid) AS BIGINT),
            CAST(count(DISTINCT path) AS BIGINT),
            CAST(count(DISTINCT sandbox_id) AS BIGINT)
         FROM file_events";
    let mut seen = Vec::new();
    for dir in [&first, &second, &other] {
        let session = SqlSession::open(dir, QueryLimits::default()).await.unwrap();
        seen.push(ints(&session, fingerprint).await);
    }
    assert_eq!(seen[0], seen[1], "same seed, same rows");
    assert_ne!(seen[0], seen[2], "another seed, another log");
}
