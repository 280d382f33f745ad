//! `cargo xtask gen-audit` and `cargo xtask bench sql`: a realistic synthetic audit log, and
//! five typical investigations over it through sandwatch's SQL engine and DuckDB, on the same
//! files in the same run.
//!
//! - **The log.** `tests/src/bin/sw-audit-gen` writes N events through the collector's own
//!   Parquet sink (thousands of sandboxes over days, hive partitions, the sink's layout). The
//!   bench reuses a log whose `sw-audit-gen.json` names the same arguments.
//! - **The engines.** sandwatch: `analytics/benches/sql.rs` (release), one `SqlSession` opened
//!   once, each query timed in-process from its text to its whole result as Arrow batches.
//!   DuckDB: Python `duckdb` in one long-lived process, views over
//!   `read_parquet('<data>/<table>/**/*.parquet', hive_partitioning = true)` with the same
//!   partition types, each query timed from its text to its whole result as an Arrow table.
//!   Both get the machine's cores and the session's 2 GiB memory limit; neither process start
//!   is timed. The files are read from the page cache in both (a first, untimed round warms it
//!   and checks the answers).
//! - **Fairness of answers.** Each query's answer from both engines is reduced to its rows as a
//!   set (values as text, timestamps as integers) and a checksum; the bench fails if the row
//!   counts or the checksums differ.
//! - **Method.** `--rounds` rounds; in each, every query runs on both engines one after the
//!   other, the engine going first alternating from query to query and round to round, so that
//!   a noisy host's drift falls on both. Medians are reported, with every sample.
//! - **Bytes.** Parquet bytes of the four event tables per event, against a JSON-lines copy of a
//!   sample (DuckDB's `COPY ... (FORMAT JSON)`: one object per event with every column of its
//!   table, nulls included) extrapolated per event, raw and gzip'd.
//!
//! Output: a table on stdout and `target/bench/sql.md` with the raw samples.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::bench::{group, loadavg, machine_line, median, target_dir};

const TARGET_RATIO: f64 = 2.0;

fn progress(msg: impl AsRef<str>) {
    eprintln!("bench sql: {}", msg.as_ref());
}

#[derive(clap::Args, Clone, Debug)]
pub struct GenAuditArgs {
    /// Event rows (process, file, network and syscall events together).
    #[arg(long, value_name = "N")]
    pub rows: u64,
    /// The audit log's directory [default: target/bench/audit-<rows>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Sandboxes [default: one per 10,000 events].
    #[arg(long, value_name = "K")]
    pub sandboxes: Option<u64>,
    /// Days the sandboxes spread over.
    #[arg(long, value_name = "D", default_value_t = 3)]
    pub days: u32,
    /// Hosts, each a collector writing into the log.
    #[arg(long, value_name = "H", default_value_t = 4)]
    pub hosts: u32,
}

#[derive(clap::Args, Clone, Debug)]
pub struct SqlArgs {
    /// Events of the generated log.
    #[arg(long, value_name = "N", default_value_t = 50_000_000)]
    pub rows: u64,
    /// Query this log instead of generating one (or reuse the one generated there before).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Timed rounds (medians are reported), after one untimed round that warms the page cache
    /// and checks the answers.
    #[arg(long, value_name = "R", default_value_t = 5)]
    pub rounds: usize,
    /// Seed of a generated log.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Events of the JSON-lines sample the bytes per event are compared with.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub json_sample: u64,
    /// Only these queries (q1..q5), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Also print sandwatch's EXPLAIN ANALYZE of each query (to stderr and the report).
    #[arg(long)]
    pub explain: bool,
}

fn generator_binary() -> anyhow::Result<PathBuf> {
    crate::run(crate::cargo().args([
        "build",
        "--release",
        "-p",
        "sandwatch-tests",
        "--bin",
        "sw-audit-gen",
    ]))?;
    Ok(target_dir().join("release/sw-audit-gen"))
}

/// The arguments a log was generated with, as its manifest records them.
fn same_log(manifest: &Value, rows: u64, seed: u64) -> bool {
    manifest["rows"].as_u64() == Some(rows)
        && manifest["seed"].as_u64() == Some(seed)
        && manifest["days"].as_u64() == Some(3)
        && manifest["hosts"].as_u64() == Some(4)
        && manifest["sandboxes"].as_u64() == Some((rows / 10_000).max(8))
}

fn read_manifest(dir: &Path) -> Option<Value> {
    let text = fs::read_to_string(dir.join("sw-audit-gen.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Free bytes on the filesystem of `path` (or its nearest existing parent).
fn free_bytes(path: &Path) -> Option<u64> {
    let mut p = path.to_owned();
    while !p.exists() {
        p = p.parent()?.to_owned();
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path and a zeroed statvfs to fill.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0).then(|| s.f_bavail * s.f_frsize)
}

pub fn gen_audit(args: GenAuditArgs) -> anyhow::Result<()> {
    let out = args
        .out
        .unwrap_or_else(|| target_dir().join(format!("bench/audit-{}", args.rows)));
    let bin = generator_binary()?;
    let mut cmd = Command::new(bin);
    cmd.args(["--rows", &args.rows.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--days", &args.days.to_string()])
        .args(["--hosts", &args.hosts.to_string()])
        .arg("--out")
        .arg(&out);
    if let Some(k) = args.sandboxes {
        cmd.args(["--sandboxes", &k.to_string()]);
    }
    check_space(&out, args.rows)?;
    crate::run(cmd.stdout(Stdio::null()))?;
    eprintln!("xtask gen-audit: the log is in {}", out.display());
    Ok(())
}

fn check_space(out: &Path, rows: u64) -> anyhow::Result<()> {
    // ~30-40 bytes per event on disk, twice that to be safe.
    let need = rows * 80;
    if let Some(free) = free_bytes(out)
        && free < need
    {
        bail!(
            "{} has {} MiB free; {rows} events need about {} MiB",
            out.display(),
            free >> 20,
            need >> 20
        );
    }
    Ok(())
}

fn generate(dir: &Path, rows: u64, seed: u64) -> anyhow::Result<()> {
    let _ = fs::remove_dir_all(dir);
    check_space(dir, rows)?;
    progress(format!(
        "generating {} events into {}",
        group(rows),
        dir.display()
    ));
    let bin = generator_binary()?;
    crate::run(
        Command::new(bin)
            .args(["--rows", &rows.to_string(), "--seed", &seed.to_string()])
            .arg("--out")
            .arg(dir)
            .stdout(Stdio::null()),
    )
}

fn sql_bench_binary() -> anyhow::Result<PathBuf> {
    // With the collector in the same build: its Parquet features then unify with DataFusion's
    // as in the other release builds, and DataFusion is not built a second time.
    crate::bench::bench_executable(&["sandwatch-analytics", "sandwatch-collector"], "sql")
}

// ---------------------------------------------------------------------------------------------
// The investigations

struct Investigation {
    name: &'static str,
    what: &'static str,
    /// sandwatch's SQL (`$sandbox` bound as a parameter), or [`SAVED_PROCESS_TREE`].
    sandwatch: &'static str,
    /// The same question in DuckDB's dialect, where it differs.
    duckdb: Option<&'static str>,
}

/// The saved investigation itself: the benchmark binary runs `saved::find("process-tree")`.
const SAVED_PROCESS_TREE: &str = "saved:process-tree";

const Q1: &str = "
SELECT sandbox_id, kind, count(*) AS events
FROM events
GROUP BY sandbox_id, kind
ORDER BY sandbox_id, kind";

const Q2: &str = "
SELECT daddr, dport, count(*) AS attempts,
       count(*) FILTER (WHERE ret >= 0 OR ret = -115) AS succeeded,
       count(DISTINCT sandbox_id) AS sandboxes
FROM network_events
WHERE event IN ('connect', 'sendto', 'sendmsg') AND family IN ('inet', 'inet6')
  AND daddr NOT LIKE '127.%' AND daddr <> '::1'
GROUP BY daddr, dport
ORDER BY attempts DESC, daddr, dport
LIMIT 25";

/// DuckDB's spelling of the saved `process-tree` (analytics/src/saved.rs): its ordered
/// aggregates are `first`/`last`.
const Q3_DUCKDB: &str = "
WITH RECURSIVE procs AS (
    SELECT pid,
           first(ppid ORDER BY time) AS ppid,
           min(time) AS first_seen,
           last(exe ORDER BY time) AS exe,
           last(array_to_string(argv, ' ') ORDER BY time)
               FILTER (WHERE event IN ('execve', 'execveat') AND ret = 0) AS command,
           max(exit_code) FILTER (WHERE event = 'exit') AS exit_code,
           max(exit_signal) FILTER (WHERE event = 'exit') AS exit_signal
    FROM process_events WHERE sandbox_id = $sandbox GROUP BY pid
), tree AS (
    SELECT pid, ppid, 0 AS depth, lpad(CAST(pid AS VARCHAR), 10, '0') AS path
    FROM procs WHERE ppid IS NULL OR ppid NOT IN (SELECT pid FROM procs)
    UNION ALL
    SELECT p.pid, p.ppid, t.depth + 1, t.path || '/' || lpad(CAST(p.pid AS VARCHAR), 10, '0')
    FROM procs p JOIN tree t ON p.ppid = t.pid
    WHERE t.depth < 64
)
SELECT repeat('  ', tree.depth) || CAST(tree.pid AS VARCHAR) AS process, tree.ppid,
       procs.first_seen, procs.exe, procs.command, procs.exit_code, procs.exit_signal
FROM tree JOIN procs ON procs.pid = tree.pid
ORDER BY tree.path";

const Q4: &str = "
SELECT date, hour, count(*) AS writes,
       count(*) FILTER (WHERE ret >= 0) AS succeeded,
       count(DISTINCT sandbox_id) AS sandboxes
FROM file_events
WHERE path LIKE '/etc/%'
  AND ((event IN ('open', 'openat', 'openat2') AND ((flags & 3) <> 0 OR (flags & 64) <> 0))
       OR event IN ('creat', 'unlink', 'unlinkat', 'rmdir', 'rename', 'renameat', 'renameat2',
                    'chmod', 'fchmodat', 'fchmodat2', 'mkdir', 'mkdirat', 'truncate'))
GROUP BY date, hour
ORDER BY date, hour";

const Q5: &str = "
SELECT a.time AS alert_time, a.sandbox_id, a.rule, a.priority,
       p.time AS event_time, p.pid, p.ppid, p.comm, p.exe, p.filename,
       array_to_string(p.argv, ' ') AS command, p.ret
FROM alerts a
JOIN process_events p
  ON p.sandbox_id = a.sandbox_id AND p.time = a.event_time
 AND p.pid = a.event_pid AND p.tid = a.event_tid
WHERE a.event_table = 'process_events'
ORDER BY a.time, a.sandbox_id";

fn investigations() -> Vec<Investigation> {
    vec![
        Investigation {
            name: "q1",
            what: "events per sandbox and kind (the `events` view: four tables)",
            sandwatch: Q1,
            duckdb: None,
        },
        Investigation {
            name: "q2",
            what: "top 25 outbound destinations (connects and datagrams, not loopback)",
            sandwatch: Q2,
            duckdb: None,
        },
        Investigation {
            name: "q3",
            what: "the exec tree of one sandbox (the saved `process-tree`)",
            sandwatch: SAVED_PROCESS_TREE,
            duckdb: Some(Q3_DUCKDB),
        },
        Investigation {
            name: "q4",
            what: "files written under /etc, by hour",
            sandwatch: Q4,
            duckdb: None,
        },
        Investigation {
            name: "q5",
            what: "alerts joined with their process events",
            sandwatch: Q5,
            duckdb: None,
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// The two engines, each a long-lived process answering one JSON line per order

const DUCKDB_PY: &str = r#"# cargo xtask bench sql: DuckDB's half. Orders on stdin, one JSON answer per line.
import gzip, json, os, shutil, sys, time
import duckdb
import pyarrow.parquet as pq

data, threads, memory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
con = duckdb.connect()
# DuckDB 2 keeps a statement's result open until it is read: read every one.
con.execute(f"SET threads = {threads}").fetchall()
con.execute(f"SET memory_limit = '{memory}'").fetchall()
tables = sorted(t for t in os.listdir(data) if os.path.isdir(os.path.join(data, t)))
for t in tables:
    con.execute(
        f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data}/{t}/**/*.parquet', "
        "hive_partitioning = true, hive_types = {'date': DATE, 'hour': INTEGER})"
    ).fetchall()
queries = {}
print(json.dumps({"ready": True, "tables": tables, "version": duckdb.__version__}), flush=True)
for line in sys.stdin:
    if not line.startswith("{"):
        break
    order = json.loads(line)
    try:
        if order["do"] == "sql":
            con.execute(order["sql"]).fetchall()
            answer = {"ok": True}
        elif order["do"] == "value":
            answer = {"value": str(con.execute(order["sql"]).fetchall()[0][0])}
        elif order["do"] == "load":
            for q in order["queries"]:
                sql = q["sql"]
                for k, v in q.get("params", []):
                    sql = sql.replace("$" + k, "'" + v.replace("'", "''") + "'")
                queries[q["name"]] = sql
            answer = {"ok": True}
        elif order["do"] == "run":
            started = time.perf_counter()
            table = con.sql(queries[order["query"]]).to_arrow_table()
            secs = time.perf_counter() - started
            if order.get("out"):
                pq.write_table(table, order["out"])
            answer = {"query": order["query"], "secs": secs, "rows": table.num_rows}
        elif order["do"] == "jsonl":
            out, fraction = order["dir"], order["percent"]
            os.makedirs(out, exist_ok=True)
            answer = {"tables": {}}
            for t in order["tables"]:
                path = os.path.join(out, f"{t}.jsonl")
                con.execute(
                    f"COPY (SELECT * EXCLUDE (date, hour) FROM {t} "
                    f"USING SAMPLE {fraction} PERCENT (bernoulli, 42)) TO '{path}' (FORMAT JSON)"
                ).fetchall()
                rows = con.execute(f"SELECT count(*) FROM read_json_auto('{path}')").fetchall()[0][0]
                gz = path + ".gz"
                with open(path, "rb") as src, gzip.open(gz, "wb", compresslevel=6) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                answer["tables"][t] = {
                    "rows": rows,
                    "bytes": os.path.getsize(path),
                    "gzip_bytes": os.path.getsize(gz),
                }
                os.remove(gz)
        elif order["do"] == "quit":
            break
        else:
            answer = {"error": f"unknown order {order['do']}"}
    except Exception as e:  # the bench reports it and stops
        answer = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(answer), flush=True)
"#;

struct Engine {
    name: &'static str,
    /// What the engine said it is when it started.
    version: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Engine {
    fn start(name: &'static str, mut cmd: Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut e = Self {
            name,
            version: String::new(),
            child,
            stdin,
            stdout,
        };
        let hello = e.read()?;
        if hello["ready"] != true {
            bail!("{name} did not start: {hello}");
        }
        e.version = hello["version"].as_str().unwrap_or("").to_owned();
        Ok(e)
    }

    fn read(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("{} stopped (see its error above)", self.name);
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{} answered {line:?}", self.name))?;
        if let Some(e) = v.get("error") {
            bail!("{}: {e}", self.name);
        }
        Ok(v)
    }

    fn ask(&mut self, order: &str) -> anyhow::Result<Value> {
        writeln!(self.stdin, "{order}")?;
        self.stdin.flush()?;
        self.read()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = writeln!(self.stdin, r#"{{"do": "quit"}}"#);
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Report

fn dir_bytes(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                files += 1;
            }
        }
    }
    (bytes, files)
}

fn ms(secs: f64) -> String {
    if secs >= 10.0 {
        format!("{:.1} s", secs)
    } else {
        format!("{:.0} ms", secs * 1e3)
    }
}

struct Timings {
    rows: u64,
    checksum: String,
    sandwatch: Vec<f64>,
    duckdb: Vec<f64>,
}

/// sandwatch's `events` view (analytics/src/catalog.rs), for DuckDB.
fn events_view() -> String {
    // sandwatch_schema::COMMON_COLUMNS.
    let cols = "time, host, sandbox_id, cgroup_id, pid, tid, ppid, uid, gid, comm, exe, event, syscall, ret";
    let parts: Vec<String> = EVENT_TABLES
        .iter()
        .map(|t| {
            let kind = t.trim_end_matches("_events");
            format!("SELECT '{kind}' AS kind, {cols}, date, hour FROM {t}")
        })
        .collect();
    format!("CREATE VIEW events AS {}", parts.join(" UNION ALL "))
}

const EVENT_TABLES: [&str; 4] = [
    "process_events",
    "file_events",
    "network_events",
    "syscall_events",
];

pub fn run(args: SqlArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let data = match &args.data {
        Some(d) => {
            if !d.join("file_events").is_dir() {
                bail!("--data {}: no audit log there", d.display());
            }
            d.clone()
        }
        None => {
            let dir = target_dir().join(format!("bench/audit-{}", args.rows));
            match read_manifest(&dir) {
                Some(m) if same_log(&m, args.rows, args.seed) => {
                    progress(format!("reusing the log in {}", dir.display()));
                }
                _ => generate(&dir, args.rows, args.seed)?,
            }
            dir
        }
    };
    let manifest = read_manifest(&data);
    let load_start = loadavg();
    let out_dir = target_dir().join("bench");
    let results = out_dir.join("sql-results");
    fs::create_dir_all(&results).with_context(|| format!("creating {}", results.display()))?;
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);

    // DuckDB first: it picks the sandbox of query 3 (untimed), then every query is loaded.
    let script = out_dir.join("sql-duckdb.py");
    fs::write(&script, DUCKDB_PY).with_context(|| format!("writing {}", script.display()))?;
    let mut py = Command::new("python3");
    py.arg(&script)
        .arg(&data)
        .arg(threads.to_string())
        .arg("2GB");
    let mut duck = Engine::start("duckdb", py)?;
    let duck_version = format!("{} (Python `duckdb`)", duck.version);
    duck.ask(&json!({"do": "sql", "sql": events_view()}).to_string())?;
    // The sandbox an analyst opens first: of those with a critical alert, the busiest.
    let sandbox = duck.ask(
        &json!({"do": "value", "sql":
        "SELECT p.sandbox_id FROM process_events p
         WHERE p.sandbox_id IN (SELECT sandbox_id FROM alerts WHERE priority = 'critical')
         GROUP BY p.sandbox_id ORDER BY count(*) DESC, p.sandbox_id LIMIT 1"})
        .to_string(),
    )?["value"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if sandbox.is_empty() || sandbox == "None" {
        bail!("the log has no sandbox with a critical alert for query 3");
    }
    let mut chosen = investigations();
    if !args.only.is_empty() {
        chosen.retain(|q| args.only.iter().any(|o| o == q.name));
    }
    let params = json!([["sandbox", sandbox]]);
    let sw_queries: Vec<Value> = chosen
        .iter()
        .map(|q| json!({"name": q.name, "sql": q.sandwatch, "params": params}))
        .collect();
    let duck_queries: Vec<Value> = chosen
        .iter()
        .map(|q| json!({"name": q.name, "sql": q.duckdb.unwrap_or(q.sandwatch), "params": params}))
        .collect();
    let queries_file = out_dir.join("sql-queries.json");
    fs::write(&queries_file, serde_json::to_string_pretty(&sw_queries)?)?;
    duck.ask(&json!({"do": "load", "queries": duck_queries}).to_string())?;
    let exe = sql_bench_binary()?;
    let mut sw_cmd = Command::new(&exe);
    sw_cmd
        .arg("--data")
        .arg(&data)
        .arg("--queries")
        .arg(&queries_file);
    let mut sw = Engine::start("sandwatch", sw_cmd)?;

    // Round 0: untimed; warms the page cache and checks that both engines answer alike.
    let mut timings: Vec<Timings> = Vec::new();
    for q in &chosen {
        progress(format!("{}: checking the answers", q.name));
        let mine = sw.ask(&format!("run {}", q.name))?;
        let path = results.join(format!("{}.duckdb.parquet", q.name));
        duck.ask(&json!({"do": "run", "query": q.name, "out": path}).to_string())?;
        let theirs = sw.ask(&format!("checksum {}", path.display()))?;
        if mine["rows"] != theirs["rows"] || mine["checksum"] != theirs["checksum"] {
            bail!(
                "{}: the engines disagree: sandwatch {} rows (checksum {}), DuckDB {} rows (checksum {}); DuckDB's answer is in {}",
                q.name,
                mine["rows"],
                mine["checksum"],
                theirs["rows"],
                theirs["checksum"],
                path.display()
            );
        }
        timings.push(Timings {
            rows: mine["rows"].as_u64().unwrap_or(0),
            checksum: mine["checksum"].as_str().unwrap_or("?").to_owned(),
            sandwatch: Vec::new(),
            duckdb: Vec::new(),
        });
    }
    let mut plans = Vec::new();
    if args.explain {
        for q in &chosen {
            let plan = sw.ask(&format!("explain {}", q.name))?;
            let text = plan["plan"].as_str().unwrap_or("").to_owned();
            eprintln!("{}:\n{text}", q.name);
            plans.push((q.name, text));
        }
    }
    for round in 0..args.rounds {
        progress(format!("round {} of {}", round + 1, args.rounds));
        for (i, q) in chosen.iter().enumerate() {
            let sandwatch_first = (round + i) % 2 == 0;
            for k in 0..2 {
                if (k == 0) == sandwatch_first {
                    let a = sw.ask(&format!("run {}", q.name))?;
                    timings[i]
                        .sandwatch
                        .push(a["secs"].as_f64().unwrap_or(f64::NAN));
                } else {
                    let a = duck.ask(&json!({"do": "run", "query": q.name}).to_string())?;
                    timings[i]
                        .duckdb
                        .push(a["secs"].as_f64().unwrap_or(f64::NAN));
                }
            }
        }
    }
    drop(sw);

    // Bytes on disk per event, against JSON lines.
    let mut table_bytes = Vec::new();
    for t in EVENT_TABLES {
        table_bytes.push((t, dir_bytes(&data.join(t))));
    }
    let events: u64 = match &manifest {
        Some(m) => EVENT_TABLES
            .iter()
            .map(|t| m["rows_by_table"][t].as_u64().unwrap_or(0))
            .sum(),
        None => duck
            .ask(&json!({"do": "value", "sql": "SELECT (SELECT count(*) FROM process_events) + (SELECT count(*) FROM file_events) + (SELECT count(*) FROM network_events) + (SELECT count(*) FROM syscall_events)"}).to_string())?["value"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    };
    let percent = (100.0 * args.json_sample as f64 * 1.02 / events.max(1) as f64).min(100.0);
    progress(format!(
        "writing a JSON-lines sample ({percent:.3}% of every event table) with DuckDB"
    ));
    let jsonl_dir = out_dir.join("sql-jsonl");
    let jsonl = duck.ask(
        &json!({"do": "jsonl", "dir": jsonl_dir, "percent": format!("{percent:.6}"), "tables": EVENT_TABLES})
            .to_string(),
    )?;
    let _ = fs::remove_dir_all(&jsonl_dir);
    drop(duck);

    // The report.
    let mut md = String::new();
    let _ = writeln!(md, "### SQL benchmark (`cargo xtask bench sql`)\n");
    let _ = writeln!(
        md,
        "Machine: {}; load average {load_start} at the start, {} at the end.\n",
        machine_line(),
        loadavg()
    );
    let (all_bytes, all_files) = dir_bytes(&data);
    match &manifest {
        Some(m) => {
            let per_table: Vec<String> = m["rows_by_table"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k} {}", group(v.as_u64().unwrap_or(0))))
                        .collect()
                })
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "The log: **{} events** from {} sandboxes on {} hosts over {} days (`sw-audit-gen --rows {} --seed {}`, \
                 written through the collector's `ParquetSink`): {}; {} Parquet files, {} MiB. Generated at {} rows/s \
                 (the sink thread alone: {} rows per CPU-second).\n",
                group(events),
                m["sandboxes"],
                m["hosts"],
                m["days"],
                m["rows"],
                m["seed"],
                per_table.join(", "),
                all_files,
                all_bytes >> 20,
                group(m["rows_per_sec"].as_f64().unwrap_or(0.0) as u64),
                group(m["sink_rows_per_cpu_sec"].as_f64().unwrap_or(0.0) as u64),
            );
        }
        None => {
            let _ = writeln!(
                md,
                "The log: `{}`, {} events, {} Parquet files, {} MiB.\n",
                data.display(),
                group(events),
                all_files,
                all_bytes >> 20
            );
        }
    }
    let _ = writeln!(
        md,
        "Each engine runs in its own long-lived process and times each query in-process, from its SQL text to \
         its whole result in memory as Arrow (sandwatch: `SqlSession::query`, release build; DuckDB {}: \
         `con.sql(q).to_arrow_table()` over `read_parquet(..., hive_partitioning = true)` views); process start \
         is not timed. Both use {threads} threads and a 2 GiB memory limit, and read the files from the page \
         cache (an untimed first round warmed it and checked that both engines return the same rows: same count, \
         same checksum of the sorted rows). Medians of {} rounds; in each round every query runs on both \
         engines back to back, the first engine alternating. Query 3's sandbox: `{sandbox}` (of the sandboxes \
         with a critical alert, the one with the most process events).\n",
        duck_version, args.rounds
    );
    let _ = writeln!(
        md,
        "| Query | Rows | sandwatch p50 | DuckDB p50 | **sandwatch / DuckDB** | Target ≤ 2× | Stretch ≤ 1× |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|---|");
    for (q, t) in chosen.iter().zip(&timings) {
        let (s, d) = (median(&t.sandwatch), median(&t.duckdb));
        let ratio = s / d;
        let _ = writeln!(
            md,
            "| {} {} | {} | {} | {} | **{:.2}×** | {} | {} |",
            q.name,
            q.what,
            group(t.rows),
            ms(s),
            ms(d),
            ratio,
            if ratio <= TARGET_RATIO {
                "✅ met"
            } else {
                "❌ missed"
            },
            if ratio <= 1.0 { "✅" } else { "—" },
        );
    }
    let _ = writeln!(md);
    // Bytes.
    let parquet_bytes: u64 = table_bytes.iter().map(|(_, (b, _))| b).sum();
    let tables = &jsonl["tables"];
    let (mut j_rows, mut j_bytes, mut j_gz) = (0u64, 0u64, 0u64);
    for t in EVENT_TABLES {
        j_rows += tables[t]["rows"].as_u64().unwrap_or(0);
        j_bytes += tables[t]["bytes"].as_u64().unwrap_or(0);
        j_gz += tables[t]["gzip_bytes"].as_u64().unwrap_or(0);
    }
    let per = |b: u64, n: u64| b as f64 / n.max(1) as f64;
    let pq_per = per(parquet_bytes, events);
    let js_per = per(j_bytes, j_rows);
    let gz_per = per(j_gz, j_rows);
    let _ = writeln!(
        md,
        "Bytes on disk per event: the Parquet files of the four event tables ({} MiB for {} events), against a \
         JSON-lines copy of a sample of {} events (every event table sampled alike, with every column of its \
         table, nulls included; written by DuckDB's `COPY ... (FORMAT JSON)`), extrapolated per event:\n",
        parquet_bytes >> 20,
        group(events),
        group(j_rows)
    );
    let _ = writeln!(
        md,
        "| Format | Bytes per event | × Parquet | For all {} events (extrapolated) |",
        group(events)
    );
    let _ = writeln!(md, "|---|---:|---:|---:|");
    let _ = writeln!(
        md,
        "| Parquet (the sink's layout) | **{pq_per:.1}** | 1.0 | {} MiB |",
        parquet_bytes >> 20
    );
    let _ = writeln!(
        md,
        "| JSON lines | {js_per:.1} | {:.1} | {} MiB |",
        js_per / pq_per,
        (js_per * events as f64) as u64 >> 20
    );
    let _ = writeln!(
        md,
        "| JSON lines, gzip -6 | {gz_per:.1} | {:.1} | {} MiB |",
        gz_per / pq_per,
        (gz_per * events as f64) as u64 >> 20
    );
    let _ = writeln!(md);
    let per_table: Vec<String> = table_bytes
        .iter()
        .map(|(t, (b, f))| format!("{t} {} MiB in {f} files", b >> 20))
        .collect();
    let _ = writeln!(md, "Per table: {}.\n", per_table.join(", "));
    let _ = writeln!(
        md,
        "<details><summary>Raw samples, ms (sandwatch / DuckDB, in round order), and the queries</summary>\n"
    );
    for (q, t) in chosen.iter().zip(&timings) {
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|s| format!("{:.0}", s * 1e3))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            md,
            "- {}: sandwatch {} / DuckDB {} (answer: {} rows, checksum `{}`)",
            q.name,
            fmt(&t.sandwatch),
            fmt(&t.duckdb),
            t.rows,
            t.checksum
        );
    }
    let _ = writeln!(md);
    for q in &chosen {
        if q.sandwatch == SAVED_PROCESS_TREE {
            let _ = writeln!(
                md,
                "{} (sandwatch): `sandwatch sql --saved process-tree --param sandbox={sandbox}` (analytics/src/saved.rs)",
                q.name
            );
        } else {
            let _ = writeln!(md, "{} (sandwatch):\n```sql{}\n```", q.name, q.sandwatch);
        }
        if let Some(d) = q.duckdb {
            let _ = writeln!(md, "{} (DuckDB's dialect):\n```sql{d}\n```", q.name);
        }
    }
    let _ = writeln!(md, "\n</details>\n");
    if !plans.is_empty() {
        let _ = writeln!(
            md,
            "<details><summary>sandwatch's EXPLAIN ANALYZE</summary>\n"
        );
        for (name, plan) in &plans {
            let _ = writeln!(md, "{name}:\n```\n{plan}\n```");
        }
        let _ = writeln!(md, "\n</details>\n");
    }
    let _ = writeln!(md, "_Suite time {:.0} s._", started.elapsed().as_secs_f64());
    println!("{md}");
    let out = out_dir.join("sql.md");
    fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    progress(format!("table written to {}", out.display()));
    Ok(())
}
