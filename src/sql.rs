//! `sandwatch sql`: SQL over the audit log, printed as a table, CSV or JSON lines.

use std::{io::Write as _, path::PathBuf, time::Duration};

use anyhow::anyhow;
use sandwatch_analytics::{
    AnalyticsError, QueryLimits, SqlSession, functions,
    output::{self, Format},
    saved,
};

use crate::cli::{EXIT_USAGE, Failure};

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// The audit log (`run --data`).
    #[arg(long, value_name = "DIR", default_value = "./sandwatch-data")]
    pub data: PathBuf,
    /// How to print the result: table, csv or json (one object per line).
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: Format,
    /// Run a saved investigation instead of SQL (`--list` names them).
    #[arg(long, value_name = "NAME", conflicts_with = "sql")]
    pub saved: Option<String>,
    /// A value for a `$KEY` placeholder of the query, e.g. `--param sandbox=sw-1a2b3c4d`.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Stop a query that runs longer than this.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Memory a query may hold for sorts, joins and aggregates (past it, they spill to disk or
    /// fail), e.g. 512M, 4G.
    #[arg(long, value_name = "BYTES", default_value = "2G", value_parser = parse_bytes)]
    pub memory_limit: usize,
    /// List the tables (with their columns), the saved investigations and the functions.
    #[arg(long, conflicts_with_all = ["sql", "saved"])]
    pub list: bool,
    /// The query (one statement; read-only).
    #[arg(value_name = "SQL")]
    pub sql: Option<String>,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    let k = k.trim().trim_start_matches('$');
    if k.is_empty() {
        return Err(format!("{s:?} has no KEY"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration ({e}; e.g. 30s, 5m)"))
}

/// `512M`, `4G`, `1048576`: binary units.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let mult: usize = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?} (K, M, G, T)")),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 512M, 4G)"))
}

pub fn query_failure(e: AnalyticsError) -> Failure {
    // A query the user can fix (bad SQL, unknown name, a missing parameter) is bad input.
    let code = match e {
        AnalyticsError::Io { .. } | AnalyticsError::Output(_) => 1,
        _ => EXIT_USAGE,
    };
    Failure {
        code,
        error: anyhow!(e),
    }
}

pub async fn sql(args: SqlArgs) -> Result<u8, Failure> {
    let limits = QueryLimits {
        memory_bytes: args.memory_limit,
        timeout: args.timeout,
    };
    let session = SqlSession::open(&args.data, limits)
        .await
        .map_err(query_failure)?;
    if args.list {
        return list(&session).await;
    }
    let text = match (&args.saved, &args.sql) {
        (Some(name), _) => {
            let given: Vec<&str> = args.params.iter().map(|(k, _)| k.as_str()).collect();
            saved::resolve(name, &given)
                .map_err(query_failure)?
                .sql
                .to_owned()
        }
        (None, Some(sql)) => sql.clone(),
        (None, None) => {
            return Err(Failure {
                code: EXIT_USAGE,
                error: anyhow!("no query: give SQL, --saved NAME or --list"),
            });
        }
    };
    let result = session
        .query(&text, &args.params)
        .await
        .map_err(query_failure)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    output::write(&mut out, args.format, &result.schema, &result.batches).map_err(query_failure)?;
    let _ = out.flush();
    if args.format == Format::Table {
        let n = result.num_rows();
        eprintln!("({n} row{})", if n == 1 { "" } else { "s" });
    }
    Ok(0)
}

async fn list(session: &SqlSession) -> Result<u8, Failure> {
    let columns = session
        .query(
            "SELECT table_name, string_agg(column_name || ' ' || lower(data_type), ', ' ORDER BY ordinal_position) AS columns \
             FROM information_schema.columns WHERE table_schema = 'public' GROUP BY table_name ORDER BY table_name",
            &[],
        )
        .await
        .map_err(query_failure)?;
    let mut out = std::io::stdout().lock();
    let w = |out: &mut std::io::StdoutLock<'_>, s: String| {
        let _ = writeln!(out, "{s}");
    };
    w(&mut out, "Tables (and the events view):".into());
    output::write(&mut out, Format::Table, &columns.schema, &columns.batches)
        .map_err(query_failure)?;
    w(&mut out, "\nSaved investigations (--saved NAME):".into());
    for q in saved::SAVED {
        let params: String = q
            .params
            .iter()
            .map(|(p, what)| format!(" --param {p}=... ({what})"))
            .collect();
        w(
            &mut out,
            format!("  {:<26} {}{params}", q.name, q.description),
        );
    }
    w(&mut out, "\nFunctions beside DataFusion's own:".into());
    for f in functions::all() {
        w(&mut out, format!("  {}", f.name()));
    }
    Ok(0)
}
