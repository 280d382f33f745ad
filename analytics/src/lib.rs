//! SQL over the audit log, and learned baselines per job profile.
//!
//! - [`catalog`]: the audit log's Parquet partitions as DataFusion tables (schema from
//!   `sandwatch_schema`, pruning by `date` and `hour`), and the `events` view.
//! - [`session`]: [`SqlSession`], read-only queries with a memory limit and a timeout, and errors
//!   a person can act on (the unknown column with its closest match).
//! - [`functions`]: SQL functions for investigations (`cidr_match`, `path_prefix`,
//!   `syscall_name`, `errno_name`).
//! - [`saved`]: the saved investigations `sandwatch sql --saved NAME` runs.
//! - [`output`]: a result as a table, CSV or JSON lines.
//! - [`flight_sql`]: an Arrow Flight SQL server over a session (ADBC, JDBC, DBeaver, pandas).
//! - [`sql_http`]: an HTTP SQL endpoint over a session (JSON lines, CSV, Arrow IPC).
//! - [`union_aggregate`]: the optimizer rule that groups each branch of a `UNION ALL` (the
//!   `events` view) on its own when a grouping key tells the branches apart.
//! - [`access`]: the bearer token both servers may require.
//! - [`baseline`]: per-profile baselines learned from the log (new terms and a linfa model over
//!   per-window feature vectors), their model files, and scoring of finished and live sandboxes.
//!
//! Nothing here writes to the audit log.

pub mod access;
pub mod baseline;
pub mod catalog;
pub mod flight_sql;
pub mod functions;
pub mod output;
pub mod saved;
pub mod session;
pub mod sql_http;
pub mod union_aggregate;

use std::{path::PathBuf, time::Duration};

pub use saved::SavedQuery;
pub use session::{QueryLimits, QueryResult, QueryStream, SqlSession};

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("no audit log at {0} (a directory `sandwatch run --data` wrote)")]
    NoAuditLog(PathBuf),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the audit log: {0}")]
    Catalog(String),
    #[error("unknown column {column}{}", suggest(suggestion))]
    UnknownColumn {
        column: String,
        suggestion: Option<String>,
    },
    #[error("unknown table {name}{} (tables: {})", suggest(suggestion), tables.join(", "))]
    UnknownTable {
        name: String,
        suggestion: Option<String>,
        tables: Vec<String>,
    },
    #[error(
        "the query needs more than its memory limit of {} MiB ({detail}); narrow it (a `date` or `time` range, fewer columns) or raise --memory-limit",
        limit >> 20
    )]
    MemoryLimit { limit: usize, detail: String },
    #[error(
        "the query ran past its time limit of {}; narrow it or raise --timeout",
        humantime::format_duration(*.0)
    )]
    Timeout(Duration),
    #[error("{0}")]
    Query(String),
    #[error(
        "the audit log is read-only: {what} is refused; only queries (SELECT, WITH, EXPLAIN) run"
    )]
    ReadOnly { what: String },
    #[error("unknown saved query {name:?} (saved: {})", known.join(", "))]
    UnknownSaved { name: String, known: Vec<String> },
    #[error("saved query {query:?} needs --param {param}=VALUE ({what})")]
    MissingParam {
        query: String,
        param: String,
        what: String,
    },
    #[error("writing the result: {0}")]
    Output(String),
    #[error("baseline: {0}")]
    Baseline(String),
    #[error("the access token: {0}")]
    AccessToken(String),
    #[error("the {server} server: {detail}")]
    Server {
        server: &'static str,
        detail: String,
    },
}

/// Who can act on an error, which the servers turn into a status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The query's author: bad SQL, an unknown name, a missing parameter, a write.
    Query,
    /// The query ran past its time limit.
    TimeLimit,
    /// The query needed more memory than its limit.
    MemoryLimit,
    /// The server or its audit log.
    Server,
}

impl AnalyticsError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::UnknownColumn { .. }
            | Self::UnknownTable { .. }
            | Self::Query(_)
            | Self::ReadOnly { .. }
            | Self::UnknownSaved { .. }
            | Self::MissingParam { .. } => ErrorClass::Query,
            Self::Timeout(_) => ErrorClass::TimeLimit,
            Self::MemoryLimit { .. } => ErrorClass::MemoryLimit,
            Self::NoAuditLog(_)
            | Self::Io { .. }
            | Self::Catalog(_)
            | Self::Output(_)
            | Self::Baseline(_)
            | Self::AccessToken(_)
            | Self::Server { .. } => ErrorClass::Server,
        }
    }
}

fn suggest(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}
