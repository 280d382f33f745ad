//! SQL over a real Parquet audit log laid out as the sink writes it.

mod common;

use std::time::Duration;

use arrow_array::{Array, RecordBatch, cast::AsArray, types::Int64Type};
use sandwatch_analytics::{AnalyticsError, QueryLimits, SqlSession, saved};
use sandwatch_schema::{ProcessEventsBuilder, Table};

async fn session(dir: &std::path::Path) -> SqlSession {
    SqlSession::open(dir, QueryLimits::default()).await.unwrap()
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::audit_log(dir.path());
    dir
}

async fn rows(s: &SqlSession, sql: &str) -> Vec<RecordBatch> {
    s.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .batches
}

/// The single Int64 a query returns.
async fn count(s: &SqlSession, sql: &str) -> i64 {
    let b = rows(s, sql).await;
    assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 1, "{sql}");
    let b = b.into_iter().find(|b| b.num_rows() == 1).unwrap();
    b.column(0).as_primitive::<Int64Type>().value(0)
}

/// Column `col` of every row as text (nulls as "NULL").
async fn texts(s: &SqlSession, sql: &str, col: &str) -> Vec<String> {
    let opts = arrow_cast::display::FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in rows(s, sql).await {
        let c = b
            .column_by_name(col)
            .unwrap_or_else(|| panic!("{sql}: no column {col}"));
        let f = arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &opts).unwrap();
        out.extend((0..c.len()).map(|i| f.value(i).to_string()));
    }
    out
}

#[tokio::test]
async fn every_table_is_queryable_and_the_events_view_unions_the_event_tables() {
    let dir = fixture();
    let s = session(dir.path()).await;
    assert_eq!(count(&s, "SELECT count(*) FROM process_events").await, 6);
    assert_eq!(count(&s, "SELECT count(*) FROM file_events").await, 6);
    assert_eq!(count(&s, "SELECT count(*) FROM network_events").await, 4);
    // Tables with no file yet are empty tables, not errors.
    assert_eq!(count(&s, "SELECT count(*) FROM syscall_events").await, 0);
    assert_eq!(count(&s, "SELECT count(*) FROM drops").await, 0);
    assert_eq!(count(&s, "SELECT count(*) FROM events").await, 16);
    let kinds = texts(
        &s,
        "SELECT kind || ':' || CAST(count(*) AS VARCHAR) AS k FROM events GROUP BY kind ORDER BY kind",
        "k",
    )
    .await;
    assert_eq!(kinds, ["file:6", "network:4", "process:6"]);
    // Partition columns are typed: a date and an hour.
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM process_events WHERE date = DATE '2026-12-01' AND hour = 11"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM sandboxes WHERE date >= '2026-12-01'"
        )
        .await,
        6
    );
    assert!(
        !dir.path().join("syscall_events").exists(),
        "reading creates nothing"
    );
}

#[tokio::test]
async fn date_and_hour_prune_partitions() {
    let dir = fixture();
    // A file that is not Parquet, in a partition the filtered queries must never open.
    let bad = dir.path().join("file_events/date=2026-11-30/hour=23");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("9.parquet"), b"not parquet").unwrap();
    let s = session(dir.path()).await;
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM file_events WHERE date = '2026-12-01'"
        )
        .await,
        6
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM file_events WHERE date > '2026-11-30' AND hour = 10"
        )
        .await,
        6
    );
    // Without the filter the broken file is read, and the error names it.
    let err = s
        .query(
            "SELECT count(*) FROM file_events WHERE path LIKE '/etc/%'",
            &[],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("9.parquet") || err.to_lowercase().contains("parquet"),
        "{err}"
    );
}

#[tokio::test]
async fn files_written_before_a_column_was_added_read_it_as_null() {
    let dir = fixture();
    // A process_events file of an older build: without the columns added after `id_args`.
    let schema = Table::ProcessEvents.schema();
    let keep = schema.index_of("id_args").unwrap() + 1;
    let mut b = ProcessEventsBuilder::new(1);
    b.append(&sandwatch_schema::ProcessEvent {
        common: common::common(
            common::T0 + 2 * common::HOUR,
            "sb-old",
            300,
            1,
            "make",
            "execve",
            0,
        ),
        filename: Some("/usr/bin/make"),
        ..Default::default()
    });
    let old = b
        .finish()
        .unwrap()
        .project(&(0..keep).collect::<Vec<_>>())
        .unwrap();
    assert!(old.schema().index_of("exe_ctime").is_err());
    common::write(
        dir.path(),
        Table::ProcessEvents,
        "2026-12-01",
        12,
        "3.parquet",
        &old,
    );
    let s = session(dir.path()).await;
    assert_eq!(count(&s, "SELECT count(*) FROM process_events").await, 7);
    let v = texts(
        &s,
        "SELECT exe_ctime, tty FROM process_events WHERE sandbox_id = 'sb-old'",
        "exe_ctime",
    )
    .await;
    assert_eq!(v, ["NULL"]);
    assert_eq!(
        texts(
            &s,
            "SELECT filename FROM process_events WHERE hour = 12",
            "filename"
        )
        .await,
        ["/usr/bin/make"]
    );
}

#[tokio::test]
async fn only_reading_the_log_is_allowed() {
    let dir = fixture();
    let s = session(dir.path()).await;
    let refused = [
        "CREATE TABLE t AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "DROP TABLE file_events",
        "INSERT INTO file_events SELECT * FROM file_events",
        "COPY (SELECT 1) TO '/tmp/sandwatch-copy-test.csv'",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'file_events/date=2026-12-01/hour=10/1.parquet'",
    ];
    for sql in refused {
        let e = s.query(sql, &[]).await;
        assert!(e.is_err(), "{sql} was allowed");
    }
    assert!(!std::path::Path::new("/tmp/sandwatch-copy-test.csv").exists());
    // The log itself is untouched and still readable.
    assert_eq!(count(&s, "SELECT count(*) FROM file_events").await, 6);
}

#[tokio::test]
async fn errors_name_the_unknown_column_or_table_with_the_closest_match() {
    let dir = fixture();
    let s = session(dir.path()).await;
    let e = s
        .query("SELECT pidd FROM process_events", &[])
        .await
        .unwrap_err();
    match &e {
        AnalyticsError::UnknownColumn { column, suggestion } => {
            assert_eq!(column, "pidd");
            assert!(
                suggestion.as_deref().is_some_and(|s| s.ends_with("pid")),
                "{e}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("did you mean"), "{e}");
    let e = s
        .query("SELECT count(*) FROM proces_events", &[])
        .await
        .unwrap_err();
    match &e {
        AnalyticsError::UnknownTable {
            name, suggestion, ..
        } => {
            assert_eq!(name, "proces_events");
            assert_eq!(suggestion.as_deref(), Some("process_events"));
        }
        other => panic!("{other}"),
    }
    let e = s.query("SELEC 1", &[]).await.unwrap_err();
    assert!(matches!(e, AnalyticsError::Query(_)), "{e}");
}

#[tokio::test]
async fn a_query_past_its_limits_is_stopped() {
    let dir = fixture();
    let s = SqlSession::open(
        dir.path(),
        QueryLimits {
            timeout: Duration::from_millis(200),
            ..QueryLimits::default()
        },
    )
    .await
    .unwrap();
    let e = s
        .query("SELECT max(value % 7) FROM range(100000000000)", &[])
        .await
        .unwrap_err();
    assert!(matches!(e, AnalyticsError::Timeout(_)), "{e}");

    let s = SqlSession::open(
        dir.path(),
        QueryLimits {
            memory_bytes: 1 << 20,
            ..QueryLimits::default()
        },
    )
    .await
    .unwrap();
    let e = s
        .query(
            "SELECT array_agg(value ORDER BY value DESC) FROM range(5000000)",
            &[],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, AnalyticsError::MemoryLimit { .. }), "{e}");
}

#[tokio::test]
async fn investigation_functions() {
    let dir = fixture();
    let s = session(dir.path()).await;
    assert_eq!(
        texts(
            &s,
            "SELECT daddr FROM network_events WHERE cidr_match(daddr, '10.0.0.0/8')",
            "daddr"
        )
        .await,
        ["10.0.0.53"]
    );
    assert_eq!(
        texts(
            &s,
            "SELECT path_prefix(path, 2) AS p, count(*) AS n FROM file_events GROUP BY p ORDER BY p",
            "p"
        )
        .await,
        ["/dev/null", "/etc/cron.d", "/etc/passwd", "/usr/bin", "/usr/lib", "/workspace/out.json"]
    );
    assert_eq!(
        texts(
            &s,
            "SELECT syscall_name(257) AS n, errno_name(-13) AS e",
            "n"
        )
        .await,
        ["openat"]
    );
    assert_eq!(
        texts(
            &s,
            "SELECT errno_name(ret) AS e FROM file_events WHERE ret < 0 ORDER BY time",
            "e"
        )
        .await,
        ["EACCES", "EROFS"]
    );
    let e = s
        .query(
            "SELECT cidr_match(daddr, '10.0.0/8') FROM network_events",
            &[],
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("10.0.0/8"), "{e}");
}

async fn run_saved(s: &SqlSession, name: &str, params: &[(&str, &str)]) -> Vec<RecordBatch> {
    let q = saved::find(name).unwrap();
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    s.query(q.sql, &params)
        .await
        .unwrap_or_else(|e| panic!("saved {name}: {e}"))
        .batches
}

fn column_text(batches: &[RecordBatch], col: &str) -> Vec<String> {
    let opts = arrow_cast::display::FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let c = b
            .column_by_name(col)
            .unwrap_or_else(|| panic!("no column {col}"));
        let f = arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &opts).unwrap();
        out.extend((0..c.len()).map(|i| f.value(i).to_string()));
    }
    out
}

#[tokio::test]
async fn saved_investigations_answer_from_the_log() {
    let dir = fixture();
    let s = session(dir.path()).await;

    let act = run_saved(&s, "activity", &[]).await;
    assert_eq!(column_text(&act, "sandbox_id"), ["sb-a", "sb-b"]);
    assert_eq!(column_text(&act, "profile"), ["py", "cc"]);
    assert_eq!(column_text(&act, "killed_for"), ["NULL", "rule"]);
    assert_eq!(column_text(&act, "file"), ["6", "0"]);
    assert_eq!(column_text(&act, "process"), ["5", "1"]);
    // 93.184.216.34:443 and 10.0.0.53:53; loopback is not a destination.
    assert_eq!(column_text(&act, "destinations"), ["2", "0"]);
    assert_eq!(column_text(&act, "alerts"), ["1", "0"]);

    let tree = run_saved(&s, "process-tree", &[("sandbox", "sb-a")]).await;
    assert_eq!(column_text(&tree, "process"), ["100", "  101", "    102"]);
    assert_eq!(
        column_text(&tree, "command"),
        [
            "sh -c python3 job.py",
            "python3 job.py",
            "curl https://example.com"
        ]
    );
    assert_eq!(column_text(&tree, "exit_code"), ["NULL", "0", "7"]);

    let out = run_saved(&s, "outbound", &[]).await;
    assert_eq!(column_text(&out, "daddr"), ["93.184.216.34", "10.0.0.53"]);
    assert_eq!(column_text(&out, "attempts"), ["2", "1"]);
    assert_eq!(column_text(&out, "succeeded"), ["2", "1"]);

    let w = run_saved(&s, "writes-outside-workspace", &[]).await;
    assert_eq!(
        column_text(&w, "path"),
        ["/etc/cron.d/job", "/usr/bin/tool"]
    );
    assert_eq!(column_text(&w, "result"), ["EACCES", "EROFS"]);

    let ev = run_saved(&s, "alert-evidence", &[]).await;
    assert_eq!(column_text(&ev, "rule"), ["Sandbox outbound connection"]);
    assert_eq!(column_text(&ev, "kind"), ["network"]);
    assert_eq!(column_text(&ev, "comm"), ["curl"]);
    assert_eq!(column_text(&ev, "ret"), ["-115"]);
}

#[tokio::test]
async fn parameters_are_bound_as_values() {
    let dir = fixture();
    let s = session(dir.path()).await;
    let q = saved::find("process-tree").unwrap();
    // A value that would change the query if it were pasted into the text.
    let r = s
        .query(q.sql, &[("sandbox".into(), "sb-a' OR '1'='1".into())])
        .await
        .unwrap();
    assert_eq!(r.num_rows(), 0);
}

/// A CTE the statement reads more than once is computed once, into a temporary table the
/// statement then reads (DataFusion would plan it anew at each reading): the answer is the one
/// the query has without a CTE, names qualified by the CTE still resolve, and no temporary
/// table outlives the statement.
#[tokio::test]
async fn a_cte_read_twice_answers_as_written() {
    let dir = fixture();
    let s = session(dir.path()).await;
    let tables = s.table_names();
    let with_cte = s
        .query(
            "WITH f AS (SELECT sandbox_id, count(*) AS n FROM file_events GROUP BY sandbox_id)
             SELECT a.sandbox_id, a.n, b.n AS m FROM f a JOIN f b ON a.sandbox_id = b.sandbox_id
             ORDER BY a.sandbox_id",
            &[],
        )
        .await
        .unwrap();
    let plain = s
        .query(
            "SELECT sandbox_id, count(*) AS n, count(*) AS m FROM file_events
             GROUP BY sandbox_id ORDER BY sandbox_id",
            &[],
        )
        .await
        .unwrap();
    assert!(plain.num_rows() > 0);
    for col in ["sandbox_id", "n", "m"] {
        assert_eq!(
            column_text(&with_cte.batches, col),
            column_text(&plain.batches, col),
            "{col}"
        );
    }
    let qualified = s
        .query(
            "WITH f AS (SELECT sandbox_id FROM file_events)
             SELECT count(*) AS n FROM f WHERE f.sandbox_id IN (SELECT sandbox_id FROM f)",
            &[],
        )
        .await
        .unwrap();
    let rows = s
        .query(
            "SELECT count(*) AS n FROM file_events WHERE sandbox_id IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        column_text(&qualified.batches, "n"),
        column_text(&rows.batches, "n")
    );
    assert_eq!(s.table_names(), tables, "temporary tables left behind");
}
