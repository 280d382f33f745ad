//! The HTTP SQL endpoint over a real Parquet audit log, through reqwest over TCP; answers are
//! checked against `SqlSession::query` rendered by `output::write` (what `sandwatch sql` prints).

mod common;

use std::time::Duration;

use datafusion::arrow::{compute::concat_batches, ipc::reader::StreamReader};
use reqwest::{StatusCode, header};
use sandwatch_analytics::{
    QueryLimits, SqlSession,
    output::{self, Format},
};
use serde_json::{Value, json};

use common::servers::{self, Running};

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::audit_log(dir.path());
    dir
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn url(server: &Running, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

async fn post(
    client: &reqwest::Client,
    server: &Running,
    accept: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut req = client.post(url(server, "/v1/sql")).body(body.to_string());
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    req.send().await.expect("the request")
}

/// What `sandwatch sql --format FORMAT` prints for `sql`.
async fn printed(session: &SqlSession, sql: &str, format: Format) -> String {
    let r = session.query(sql, &[]).await.unwrap();
    let mut out = Vec::new();
    output::write(&mut out, format, &r.schema, &r.batches).unwrap();
    String::from_utf8(out).unwrap()
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/json",
        "errors are JSON"
    );
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    (
        status,
        body["error"].as_str().expect("an error text").to_owned(),
    )
}

#[tokio::test]
async fn results_come_as_json_lines_csv_or_arrow() {
    let dir = fixture();
    let server = servers::http(dir.path(), QueryLimits::default(), None).await;
    let session = SqlSession::open(dir.path(), QueryLimits::default())
        .await
        .unwrap();
    let client = http();
    let sql = "SELECT time, pid, comm, argv, exit_code, date FROM process_events ORDER BY time";

    // JSON lines by default, as `sandwatch sql --format json` prints them.
    let r = post(&client, &server, None, json!({ "sql": sql })).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/x-ndjson");
    let body = r.text().await.unwrap();
    assert_eq!(body, printed(&session, sql, Format::Json).await);
    assert_eq!(body.lines().count(), 6);
    let first: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(first["comm"], "sh");

    let r = post(&client, &server, Some("text/csv"), json!({ "sql": sql })).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(
        r.text().await.unwrap(),
        printed(&session, sql, Format::Csv).await
    );

    let r = post(
        &client,
        &server,
        Some("application/vnd.apache.arrow.stream"),
        json!({ "sql": sql }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = r.bytes().await.unwrap();
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).unwrap();
    let schema = reader.schema();
    let got: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    let expected = session.query(sql, &[]).await.unwrap();
    assert_eq!(schema.fields(), expected.schema.fields());
    assert_eq!(
        concat_batches(&schema, &got).unwrap(),
        concat_batches(&expected.schema, &expected.batches).unwrap()
    );

    // No rows: CSV keeps its header, JSON lines are empty, Arrow has the schema.
    let none = "SELECT pid, comm FROM process_events WHERE pid = 0";
    let r = post(&client, &server, Some("text/csv"), json!({ "sql": none })).await;
    assert_eq!(r.text().await.unwrap(), "pid,comm\n");
    let r = post(&client, &server, None, json!({ "sql": none })).await;
    assert_eq!(r.text().await.unwrap(), "");

    // Many batches stream through.
    let r = post(
        &client,
        &server,
        None,
        json!({ "sql": "SELECT value FROM range(100000)" }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap().lines().count(), 100_000);
}

#[tokio::test]
async fn saved_investigations_and_parameters() {
    let dir = fixture();
    let server = servers::http(dir.path(), QueryLimits::default(), None).await;
    let client = http();
    let r = post(
        &client,
        &server,
        None,
        json!({ "saved": "process-tree", "params": { "sandbox": "sb-a" } }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let rows: Vec<Value> = r
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let processes: Vec<&str> = rows
        .iter()
        .map(|r| r["process"].as_str().unwrap())
        .collect();
    assert_eq!(processes, ["100", "  101", "    102"]);

    // A parameter is a value, never text pasted into the query.
    let r = post(
        &client,
        &server,
        None,
        json!({ "saved": "process-tree", "params": { "sandbox": "sb-a' OR '1'='1" } }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "");

    // Typed parameters on SQL.
    let r = post(
        &client,
        &server,
        None,
        json!({
            "sql": "SELECT comm FROM process_events WHERE pid = $pid AND event = $event",
            "params": { "pid": 102, "event": "execve" }
        }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "{\"comm\":\"curl\"}\n");

    let (status, e) =
        error_of(post(&client, &server, None, json!({ "saved": "process-tree" })).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e.contains("sandbox"), "{e}");
    let (status, e) =
        error_of(post(&client, &server, None, json!({ "saved": "nope" })).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e.contains("activity"), "names the saved queries: {e}");
}

#[tokio::test]
async fn errors_have_status_codes_and_say_what_is_wrong() {
    let dir = fixture();
    let server = servers::http(dir.path(), QueryLimits::default(), None).await;
    let client = http();

    let (status, e) = error_of(
        post(
            &client,
            &server,
            None,
            json!({ "sql": "SELECT pidd FROM process_events" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e, "unknown column pidd (did you mean pid?)");

    let (status, e) = error_of(
        post(
            &client,
            &server,
            None,
            json!({ "sql": "DROP TABLE file_events" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e.contains("read-only"), "{e}");
    assert!(dir.path().join("file_events").exists());

    let r = client
        .post(url(&server, "/v1/sql"))
        .body("SELECT 1")
        .send()
        .await
        .unwrap();
    let (status, e) = error_of(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e.contains("\"sql\""), "says what the body should be: {e}");

    let (status, e) = error_of(
        post(
            &client,
            &server,
            Some("text/html"),
            json!({ "sql": "SELECT 1" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert!(e.contains("text/csv"), "{e}");

    // Past the limits.
    let slow = servers::http(
        dir.path(),
        QueryLimits {
            timeout: Duration::from_secs(1),
            ..QueryLimits::default()
        },
        None,
    )
    .await;
    let (status, e) = error_of(
        post(
            &client,
            &slow,
            None,
            json!({ "sql": "SELECT max(value % 7) FROM range(100000000000)" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(e.contains("time limit"), "{e}");
    // Rows sent already: the response is cut off, not ended as if it were whole.
    let r = post(
        &client,
        &slow,
        None,
        json!({ "sql": "SELECT value FROM range(100000000000)" }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.is_err(), "a cut-off body is an error");

    let small = servers::http(
        dir.path(),
        QueryLimits {
            memory_bytes: 1 << 20,
            ..QueryLimits::default()
        },
        None,
    )
    .await;
    let (status, e) = error_of(
        post(
            &client,
            &small,
            None,
            json!({ "sql": "SELECT array_agg(value ORDER BY value DESC) FROM range(5000000)" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    assert!(e.contains("memory limit"), "{e}");
}

#[tokio::test]
async fn tables_health_and_the_token() {
    let dir = fixture();
    let server = servers::http(dir.path(), QueryLimits::default(), Some("s3cret-token")).await;
    let client = http();

    let r = client.get(url(&server, "/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "health needs no token");

    let r = post(&client, &server, None, json!({ "sql": "SELECT 1 AS one" })).await;
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"sandwatch\""
    );
    let (status, e) = error_of(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(e.contains("Bearer"), "{e}");
    let r = client
        .get(url(&server, "/v1/tables"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = client
        .post(url(&server, "/v1/sql"))
        .bearer_auth("s3cret-token")
        .body(json!({ "sql": "SELECT 1 AS one" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "{\"one\":1}\n");
    let r = client
        .post(url(&server, "/v1/sql"))
        .basic_auth("sandwatch", Some("s3cret-token"))
        .body(json!({ "sql": "SELECT 1 AS one" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = client
        .get(url(&server, "/v1/tables"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let tables = body["tables"].as_array().unwrap();
    for t in sandwatch_schema::Table::ALL {
        let table = tables
            .iter()
            .find(|x| x["name"] == t.name())
            .unwrap_or_else(|| panic!("{} missing", t.name()));
        assert_eq!(table["kind"], "table");
        let columns: Vec<&str> = table["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = sandwatch_analytics::catalog::sql_schema(t)
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(columns, expected, "{}", t.name());
    }
    let events = tables.iter().find(|x| x["name"] == "events").unwrap();
    assert_eq!(events["kind"], "view");
    assert!(
        events["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "kind")
    );
}
