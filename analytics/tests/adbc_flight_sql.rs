//! A real third-party client against the Flight SQL server: the ADBC Flight SQL driver from
//! Python (PyPI `adbc-driver-flightsql`), running `adbc_client.py` beside this file. Its answers
//! are checked against the session's own.
//!
//! Without python3 or the package this test fails under CI (CI=true) and says how to install
//! them; elsewhere it prints SKIP and passes.

mod common;

use std::{io::Write as _, path::Path, process::Stdio, time::Duration};

use datafusion::arrow::json::{WriterBuilder, writer::LineDelimited};
use sandwatch_analytics::{QueryLimits, SqlSession, catalog};
use serde_json::Value;

const INSTALL: &str = "python3 -m pip install adbc-driver-flightsql adbc-driver-manager pyarrow \
                       (or `cargo xtask setup`)";

/// Whether the client can run here; under CI a missing client is a failure, not a skip.
async fn client_available() -> bool {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import adbc_driver_flightsql.dbapi, pyarrow"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await;
    let why = match probe {
        Ok(out) if out.status.success() => return true,
        // The import error, not the whole traceback.
        Ok(out) => String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("python3 failed")
            .to_owned(),
        Err(e) => format!("python3: {e}"),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the ADBC Flight SQL client is missing ({why}); install it: {INSTALL}");
    }
    // Straight to stderr, past the test harness's capture: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIP adbc_flight_sql: the ADBC Flight SQL client is missing ({why}); install it: {INSTALL}"
    );
    false
}

/// Runs the script against `uri`; its JSON answer.
async fn adbc_client(uri: &str, token: Option<&str>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/adbc_client.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(&script).arg(uri);
    if let Some(t) = token {
        cmd.arg(t);
    }
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the ADBC client did not finish in 2 minutes")
        .expect("running python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the ADBC client failed ({}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the ADBC client's output is not JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The session's answer to `sql` as JSON objects, nulls included (as pyarrow's `to_pylist`).
async fn session_rows(session: &SqlSession, sql: &str) -> Vec<Value> {
    let r = session.query(sql, &[]).await.unwrap();
    let mut buf = Vec::new();
    let mut w: datafusion::arrow::json::Writer<_, LineDelimited> = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build(&mut buf);
    for b in &r.batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adbc_flight_sql_driver_reads_the_log() {
    if !client_available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    common::audit_log(dir.path());
    let session = SqlSession::open(dir.path(), QueryLimits::default())
        .await
        .unwrap();
    let server = common::servers::flight_sql(dir.path(), QueryLimits::default(), None).await;
    let got = adbc_client(&format!("grpc://{}", server.addr), None).await;

    assert_eq!(got["vendor_name"], "sandwatch");
    let sql = "SELECT pid, ppid, comm, sandbox_id, exit_code, event FROM process_events ORDER BY time, pid";
    let expected = session_rows(&session, sql).await;
    assert_eq!(expected.len(), 6);
    assert_eq!(got["rows"].as_array().unwrap(), &expected);
    assert_eq!(
        got["columns"],
        serde_json::json!(["pid", "ppid", "comm", "sandbox_id", "exit_code", "event"])
    );
    assert_eq!(
        got["param_counts"],
        serde_json::json!({"sb-a": 5, "sb-b": 1, "nobody": 0})
    );
    let drop = got["drop"].as_str().unwrap();
    assert!(drop.contains("read-only"), "{drop}");

    let objects = got["objects"].as_object().unwrap();
    let mut names: Vec<&String> = objects.keys().collect();
    names.sort();
    assert_eq!(
        names,
        session.table_names().iter().collect::<Vec<_>>(),
        "adbc_get_objects lists the catalog"
    );
    for t in sandwatch_schema::Table::ALL {
        let columns: Vec<String> = catalog::sql_schema(t)
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            objects[t.name()]["columns"],
            serde_json::json!(columns),
            "{}",
            t.name()
        );
        assert_eq!(objects[t.name()]["type"], "TABLE");
    }
    assert_eq!(objects["events"]["type"], "VIEW");
    let process_columns: Vec<String> = catalog::sql_schema(sandwatch_schema::Table::ProcessEvents)
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(got["table_schema"], serde_json::json!(process_columns));
    let types = got["table_types"].as_array().unwrap();
    assert!(types.contains(&"TABLE".into()) && types.contains(&"VIEW".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adbc_driver_logs_in_with_the_token() {
    if !client_available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    common::audit_log(dir.path());
    let server =
        common::servers::flight_sql(dir.path(), QueryLimits::default(), Some("adbc-t0ken")).await;
    let got = adbc_client(&format!("grpc://{}", server.addr), Some("adbc-t0ken")).await;
    assert_eq!(got["rows"].as_array().unwrap().len(), 6);
    assert_eq!(got["param_counts"]["sb-a"], 5);
}
