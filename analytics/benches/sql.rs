//! SQL query times through [`SqlSession`]: the measuring half of `cargo xtask bench sql`, which
//! generates the audit log, starts this binary and DuckDB side by side, and renders the report.
//!
//! ```text
//! sql --data DIR --queries FILE
//! ```
//!
//! `FILE` is JSON: `[{"name": "q1", "sql": "...", "params": [["sandbox", "sw-..."]]}]`, where
//! `"sql": "saved:NAME"` is the saved investigation NAME (analytics/src/saved.rs). The
//! session is opened once; then each line on stdin is an order, and each answer one JSON line
//! on stdout:
//!
//! - `run NAME`: runs the query to its last batch (planning included: a query's time is from
//!   its text to its whole result in memory) and answers `{"query", "secs", "rows",
//!   "checksum"}`. The checksum is of the result as a set of rows (see [`canonical_rows`]), so
//!   two engines' answers compare whatever their order and their types' names.
//! - `checksum PATH`: the same rows and checksum of a Parquet file (another engine's answer).
//! - `explain NAME`: `EXPLAIN ANALYZE` of the query, as text in `{"plan"}`.
//! - `set KEY VALUE`: a DataFusion setting for the queries after it (for trying one out).
//! - `quit`.

use std::{
    fs::File,
    io::{BufRead as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use arrow_cast::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::{
    array::{Array, ArrayRef, RecordBatch},
    compute::cast,
    datatypes::DataType,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sandwatch_analytics::{QueryLimits, SqlSession};
use serde_json::{Value, json};

struct Query {
    name: String,
    sql: String,
    params: Vec<(String, String)>,
}

fn parse_args() -> Result<(PathBuf, Vec<Query>), String> {
    let mut data = None;
    let mut queries = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => data = args.next().map(PathBuf::from),
            "--queries" => queries = args.next().map(PathBuf::from),
            // `cargo bench` passes --bench to every harness-less bench.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let data = data.ok_or("--data DIR is required")?;
    let file = queries.ok_or("--queries FILE is required")?;
    let text =
        std::fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let queries = json
        .as_array()
        .ok_or("the queries file holds an array")?
        .iter()
        .map(|q| Query {
            name: q["name"].as_str().unwrap_or_default().to_owned(),
            sql: match q["sql"].as_str().unwrap_or_default() {
                // A saved investigation, as `sandwatch sql --saved NAME` runs it.
                s if s.starts_with("saved:") => sandwatch_analytics::saved::find(&s[6..])
                    .map(|saved| saved.sql.to_owned())
                    .unwrap_or_else(|| format!("unknown saved query {s}")),
                s => s.to_owned(),
            },
            params: q["params"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            (
                                p[0].as_str().unwrap_or_default().to_owned(),
                                p[1].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    Ok((data, queries))
}

/// A column as the text every engine's answer shares: timestamps as their integer (the
/// timezone's spelling differs between engines), floats to nine significant digits (sums may
/// add in another order), everything else as arrow displays it (integers of any width alike,
/// dates as dates, lists as `[a, b]`, null as `∅`).
fn canonical_column(col: &ArrayRef) -> Result<Vec<String>, String> {
    let col = match col.data_type() {
        DataType::Timestamp(_, _) => cast(col, &DataType::Int64).map_err(|e| e.to_string())?,
        DataType::Utf8View | DataType::LargeUtf8 => {
            cast(col, &DataType::Utf8).map_err(|e| e.to_string())?
        }
        DataType::Float32 | DataType::Float64 => {
            let f = cast(col, &DataType::Float64).map_err(|e| e.to_string())?;
            let f = f
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Float64Array>()
                .expect("cast to Float64");
            return Ok((0..f.len())
                .map(|i| {
                    if f.is_null(i) {
                        "∅".to_owned()
                    } else {
                        format!("{:.8e}", f.value(i))
                    }
                })
                .collect());
        }
        _ => col.clone(),
    };
    let options = FormatOptions::default().with_null("∅");
    let fmt = ArrayFormatter::try_new(col.as_ref(), &options).map_err(|e| e.to_string())?;
    Ok((0..col.len()).map(|i| fmt.value(i).to_string()).collect())
}

/// Each row as one line of its canonical values, sorted: the result as a set of rows.
fn canonical_rows(batches: &[RecordBatch]) -> Result<Vec<String>, String> {
    let mut rows = Vec::new();
    for b in batches {
        let cols: Vec<Vec<String>> = b
            .columns()
            .iter()
            .map(canonical_column)
            .collect::<Result<_, _>>()?;
        for r in 0..b.num_rows() {
            rows.push(
                cols.iter()
                    .map(|c| c[r].as_str())
                    .collect::<Vec<_>>()
                    .join("\u{1f}"),
            );
        }
    }
    rows.sort_unstable();
    Ok(rows)
}

/// FNV-1a over the sorted rows: stable across runs, builds and machines.
fn checksum(rows: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in rows {
        for b in r.bytes().chain([b'\n']) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn read_parquet(path: &str) -> Result<Vec<RecordBatch>, String> {
    let file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format!("{path}: {e}"))?
        .map(|b| b.map_err(|e| format!("{path}: {e}")))
        .collect()
}

async fn answer(session: &SqlSession, queries: &[Query], line: &str) -> Result<Value, String> {
    let mut words = line.split_whitespace();
    let order = words.next().unwrap_or_default();
    let find = |name: Option<&str>| {
        let name = name.ok_or("which query?")?;
        queries
            .iter()
            .find(|q| q.name == name)
            .ok_or_else(|| format!("no query {name}"))
    };
    match order {
        "run" => {
            let q = find(words.next())?;
            let started = Instant::now();
            let result = session
                .query(&q.sql, &q.params)
                .await
                .map_err(|e| format!("{}: {e}", q.name))?;
            let secs = started.elapsed().as_secs_f64();
            let rows = canonical_rows(&result.batches)?;
            Ok(
                json!({"query": q.name, "secs": secs, "rows": rows.len(), "checksum": checksum(&rows)}),
            )
        }
        "checksum" => {
            let path = words.next().ok_or("checksum PATH")?;
            let rows = canonical_rows(&read_parquet(path)?)?;
            Ok(json!({"rows": rows.len(), "checksum": checksum(&rows)}))
        }
        "set" => {
            // For trying a configuration without a rebuild: `set datafusion.x.y value`.
            let (key, value) = (
                words.next().ok_or("set KEY VALUE")?,
                words.next().ok_or("set KEY VALUE")?,
            );
            session
                .context()
                .sql(&format!("SET {key} = {value}"))
                .await
                .map_err(|e| e.to_string())?
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({"set": key, "value": value}))
        }
        "explain" => {
            let q = find(words.next())?;
            let result = session
                .query(&format!("EXPLAIN ANALYZE {}", q.sql), &q.params)
                .await
                .map_err(|e| format!("{}: {e}", q.name))?;
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&result.batches)
                .map_err(|e| e.to_string())?
                .to_string();
            Ok(json!({"query": q.name, "plan": text}))
        }
        other => Err(format!("unknown order {other:?}")),
    }
}

fn main() -> ExitCode {
    let (data, queries) = match parse_args() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("sql bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let limits = QueryLimits {
        timeout: Duration::from_secs(1800),
        ..QueryLimits::default()
    };
    let session = match runtime.block_on(SqlSession::open(&data, limits)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sql bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", json!({"ready": true}));
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "quit" {
            break;
        }
        let reply = runtime
            .block_on(answer(&session, &queries, &line))
            .unwrap_or_else(|e| json!({"error": e}));
        let _ = writeln!(out, "{reply}");
        let _ = out.flush();
    }
    ExitCode::SUCCESS
}
