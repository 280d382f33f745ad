//! The Flight SQL server over a real Parquet audit log, driven by arrow-flight's own
//! `FlightSqlServiceClient` over TCP; answers are checked against `SqlSession::query`.

mod common;

use std::{sync::Arc, time::Duration};

use arrow_flight::{
    FlightInfo,
    error::FlightError,
    sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo, client::FlightSqlServiceClient},
};
use datafusion::arrow::{
    array::{Array, AsArray, RecordBatch, StringArray},
    compute::concat_batches,
    datatypes::{DataType, Field, Schema, UInt32Type},
    ipc::convert::try_schema_from_ipc_buffer,
};
use futures::TryStreamExt as _;
use sandwatch_analytics::{QueryLimits, SqlSession, saved};
use tonic::{Code, transport::Channel};

use common::servers::{self, Running};

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::audit_log(dir.path());
    dir
}

async fn client(server: &Running) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .expect("connecting to the Flight SQL server");
    FlightSqlServiceClient::new(channel)
}

/// Every endpoint's batches, in order.
async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, FlightError> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("an endpoint with a ticket");
        let stream = client.do_get(ticket).await?;
        out.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok(out)
}

fn one(batches: &[RecordBatch]) -> RecordBatch {
    assert!(!batches.is_empty(), "no batch");
    concat_batches(&batches[0].schema(), batches).unwrap()
}

fn code(e: &FlightError) -> Code {
    match e {
        FlightError::Tonic(status) => status.code(),
        other => panic!("not a gRPC status: {other}"),
    }
}

fn strings(b: &RecordBatch, column: &str) -> Vec<String> {
    let c = b
        .column_by_name(column)
        .unwrap_or_else(|| panic!("no column {column}"));
    let c = datafusion::arrow::compute::cast(c, &DataType::Utf8).unwrap();
    let c = c.as_string::<i32>();
    (0..c.len()).map(|i| c.value(i).to_owned()).collect()
}

#[tokio::test]
async fn queries_answer_what_the_session_answers() {
    let dir = fixture();
    let server = servers::flight_sql(dir.path(), QueryLimits::default(), None).await;
    let session = SqlSession::open(dir.path(), QueryLimits::default())
        .await
        .unwrap();
    let mut client = client(&server).await;
    let queries = [
        "SELECT * FROM process_events ORDER BY time",
        "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
        "SELECT path, errno_name(ret) AS result FROM file_events WHERE ret < 0 ORDER BY time",
        saved::find("activity").unwrap().sql,
        saved::find("outbound").unwrap().sql,
    ];
    for sql in queries {
        let info = client.execute(sql.to_owned(), None).await.unwrap();
        let expected = session.query(sql, &[]).await.unwrap();
        // The FlightInfo announces the schema the batches have.
        let announced = info.clone().try_decode_schema().unwrap();
        assert_eq!(announced.fields(), expected.schema.fields(), "{sql}");
        let got = fetch(&mut client, info).await.unwrap();
        assert_eq!(
            one(&got),
            concat_batches(&expected.schema, &expected.batches).unwrap(),
            "{sql}"
        );
    }
    // A result larger than one Flight message arrives whole.
    let info = client
        .execute(
            "SELECT value, value * 2 AS twice FROM range(300000)".into(),
            None,
        )
        .await
        .unwrap();
    let got = one(&fetch(&mut client, info).await.unwrap());
    assert_eq!(got.num_rows(), 300_000);
}

#[tokio::test]
async fn prepared_statements_bind_parameters() {
    let dir = fixture();
    let server = servers::flight_sql(dir.path(), QueryLimits::default(), None).await;
    let mut client = client(&server).await;

    let mut stmt = client
        .prepare(
            "SELECT pid, comm FROM process_events WHERE sandbox_id = $1 AND event = 'execve' ORDER BY time"
                .into(),
            None,
        )
        .await
        .unwrap();
    let params = stmt.parameter_schema().unwrap().clone();
    assert_eq!(params.fields().len(), 1, "{params:?}");
    assert_eq!(
        stmt.dataset_schema().unwrap().field(0).data_type(),
        &DataType::UInt32
    );
    // Executing before binding says what is missing.
    let e = stmt.execute().await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("$1"), "{e}");

    let bind = |sandbox: &str| {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("0", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(vec![sandbox]))],
        )
        .unwrap()
    };
    for (sandbox, pids) in [("sb-a", vec![100, 101, 102]), ("sb-b", vec![200])] {
        stmt.set_parameters(bind(sandbox)).unwrap();
        let info = stmt.execute().await.unwrap();
        let b = one(&fetch(&mut client, info).await.unwrap());
        let got: Vec<u32> = b.column(0).as_primitive::<UInt32Type>().values().to_vec();
        assert_eq!(got, pids, "{sandbox}");
    }
    stmt.close().await.unwrap();

    // A saved investigation's named parameter, bound by its name.
    let q = saved::find("process-tree").unwrap();
    let mut stmt = client.prepare(q.sql.into(), None).await.unwrap();
    assert_eq!(stmt.parameter_schema().unwrap().field(0).name(), "sandbox");
    stmt.set_parameters(
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "sandbox",
                DataType::Utf8,
                false,
            )])),
            vec![Arc::new(StringArray::from(vec!["sb-a"]))],
        )
        .unwrap(),
    )
    .unwrap();
    let info = stmt.execute().await.unwrap();
    let b = one(&fetch(&mut client, info).await.unwrap());
    assert_eq!(strings(&b, "process"), ["100", "  101", "    102"]);
    stmt.close().await.unwrap();
}

#[tokio::test]
async fn the_catalog_lists_every_table_with_its_schema() {
    let dir = fixture();
    let server = servers::flight_sql(dir.path(), QueryLimits::default(), None).await;
    let session = SqlSession::open(dir.path(), QueryLimits::default())
        .await
        .unwrap();
    let mut client = client(&server).await;

    let info = client.get_catalogs().await.unwrap();
    let catalogs = one(&fetch(&mut client, info).await.unwrap());
    assert_eq!(strings(&catalogs, "catalog_name"), ["datafusion"]);

    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("datafusion".into()),
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = strings(
        &one(&fetch(&mut client, info).await.unwrap()),
        "db_schema_name",
    );
    assert!(schemas.contains(&"public".to_owned()), "{schemas:?}");

    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = one(&fetch(&mut client, info).await.unwrap());
    let names = strings(&tables, "table_name");
    let mut expected = session.table_names();
    expected.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    for t in sandwatch_schema::Table::ALL {
        assert!(names.iter().any(|n| n == t.name()), "{} missing", t.name());
    }
    let types = strings(&tables, "table_type");
    let schemas = tables
        .column_by_name("table_schema")
        .unwrap()
        .as_binary::<i32>()
        .clone();
    for (i, name) in names.iter().enumerate() {
        let announced = try_schema_from_ipc_buffer(schemas.value(i)).unwrap();
        let table = session
            .context()
            .table_provider(name.as_str())
            .await
            .unwrap();
        assert_eq!(announced.fields(), table.schema().fields(), "{name}");
        let kind = if name == "events" { "VIEW" } else { "TABLE" };
        assert_eq!(types[i], kind, "{name}");
    }

    let info = client.get_table_types().await.unwrap();
    let types = strings(&one(&fetch(&mut client, info).await.unwrap()), "table_type");
    assert!(types.contains(&"TABLE".to_owned()) && types.contains(&"VIEW".to_owned()));

    let info = client
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .unwrap();
    let info = one(&fetch(&mut client, info).await.unwrap());
    assert_eq!(info.num_rows(), 2);
    let values = info.column_by_name("value").unwrap().as_union();
    for row in 0..2 {
        let id = info
            .column_by_name("info_name")
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::UInt32Type>()
            .value(row);
        let v = values.value(row);
        if id == SqlInfo::FlightSqlServerName as u32 {
            assert_eq!(v.as_string::<i32>().value(0), "sandwatch");
        } else {
            assert!(v.as_boolean().value(0), "read-only");
        }
    }

    // No keys: an empty answer in the protocol's shape.
    let info = client
        .get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "process_events".into(),
        })
        .await
        .unwrap();
    let keys = fetch(&mut client, info).await.unwrap();
    assert_eq!(keys.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
}

#[tokio::test]
async fn writes_are_refused_and_errors_name_the_problem() {
    let dir = fixture();
    let server = servers::flight_sql(dir.path(), QueryLimits::default(), None).await;
    let mut client = client(&server).await;
    let copy_target = dir.path().join("copy.csv");
    let refused = [
        "CREATE TABLE t AS SELECT 1".to_owned(),
        "DROP TABLE file_events".to_owned(),
        "INSERT INTO file_events SELECT * FROM file_events".to_owned(),
        format!("COPY (SELECT 1) TO '{}'", copy_target.display()),
    ];
    for sql in &refused {
        let e = client.execute(sql.clone(), None).await.unwrap_err();
        assert_eq!(code(&e), Code::InvalidArgument, "{sql}: {e}");
        assert!(e.to_string().contains("read-only"), "{sql}: {e}");
        let e = client.prepare(sql.clone(), None).await.unwrap_err();
        assert_eq!(code(&e), Code::InvalidArgument, "{sql}: {e}");
        let e = client.execute_update(sql.clone(), None).await.unwrap_err();
        assert_eq!(code(&e), Code::InvalidArgument, "{sql}: {e}");
        assert!(e.to_string().contains("read-only"), "{sql}: {e}");
    }
    assert!(!copy_target.exists());
    assert!(!dir.path().join("t").exists());

    let e = client
        .execute("SELECT pidd FROM process_events".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    assert!(
        e.to_string()
            .contains("unknown column pidd (did you mean pid?)"),
        "{e}"
    );
    let e = client
        .execute("SELECT count(*) FROM proces_events".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    assert!(e.to_string().contains("did you mean process_events"), "{e}");
    let e = client.begin_transaction().await.unwrap_err();
    assert_eq!(code(&e), Code::Unimplemented, "{e}");
}

#[tokio::test]
async fn a_query_past_its_limits_ends_with_the_limit_named() {
    let dir = fixture();
    let limits = QueryLimits {
        timeout: Duration::from_secs(1),
        ..QueryLimits::default()
    };
    let server = servers::flight_sql(dir.path(), limits, None).await;
    let mut client = client(&server).await;
    let info = client
        .execute(
            "SELECT max(value % 7) FROM range(100000000000)".into(),
            None,
        )
        .await
        .expect("planning is quick");
    let started = std::time::Instant::now();
    let e = fetch(&mut client, info).await.unwrap_err();
    assert_eq!(code(&e), Code::DeadlineExceeded, "{e}");
    assert!(e.to_string().contains("time limit"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A stream that has sent rows already ends with the error too, not silently.
    let info = client
        .execute("SELECT value FROM range(100000000000)".into(), None)
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await.unwrap();
    let mut rows = 0;
    let e = loop {
        match stream.try_next().await {
            Ok(Some(b)) => rows += b.num_rows(),
            Ok(None) => panic!("the stream ended cleanly after {rows} rows"),
            Err(e) => break e,
        }
    };
    assert!(rows > 0);
    assert_eq!(code(&e), Code::DeadlineExceeded, "{e}");

    let limits = QueryLimits {
        memory_bytes: 1 << 20,
        ..QueryLimits::default()
    };
    let server = servers::flight_sql(dir.path(), limits, None).await;
    let mut client = self::client(&server).await;
    let info = client
        .execute(
            "SELECT array_agg(value ORDER BY value DESC) FROM range(5000000)".into(),
            None,
        )
        .await
        .unwrap();
    let e = fetch(&mut client, info).await.unwrap_err();
    assert_eq!(code(&e), Code::ResourceExhausted, "{e}");
    assert!(e.to_string().contains("memory limit"), "{e}");
}

#[tokio::test]
async fn with_a_token_every_call_needs_it() {
    let dir = fixture();
    let server = servers::flight_sql(dir.path(), QueryLimits::default(), Some("t0ken-xyz")).await;
    let sql = "SELECT count(*) AS n FROM file_events";

    let mut anonymous = client(&server).await;
    let e = anonymous.execute(sql.into(), None).await.unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated, "{e}");
    assert!(e.to_string().contains("Bearer"), "{e}");
    assert!(anonymous.get_catalogs().await.is_err());

    let mut wrong = client(&server).await;
    wrong.set_token("t0ken-xy".into());
    let e = wrong.execute(sql.into(), None).await.unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated, "{e}");
    assert!(wrong.handshake("sandwatch", "nope").await.is_err());
    assert!(wrong.handshake("admin", "t0ken-xyz").await.is_err());

    // Handshake with Basic auth: the server hands back the bearer token the client then sends.
    let mut good = client(&server).await;
    let payload = good.handshake("sandwatch", "t0ken-xyz").await.unwrap();
    assert_eq!(&payload[..], b"t0ken-xyz");
    assert_eq!(good.token().map(String::as_str), Some("t0ken-xyz"));
    let info = good.execute(sql.into(), None).await.unwrap();
    let b = one(&fetch(&mut good, info).await.unwrap());
    assert_eq!(
        b.column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0),
        6
    );

    // A ticket is no way around the token.
    let info = good.execute(sql.into(), None).await.unwrap();
    let e = fetch(&mut anonymous, info).await.unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated, "{e}");
}
