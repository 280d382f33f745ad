//! The event model of the audit log: the tables, their Arrow schemas, the typed events that fill
//! them, and the builders that turn typed events into `RecordBatch`es.
//!
//! This is the one place a column is defined. The collector decodes kernel records into the typed
//! events here; rules and analytics read the batches by these column names. The kernel ABI
//! (`sandwatch-probes-abi`) is a different thing on purpose: it says what the kernel wrote, this
//! crate says what a person queries.
//!
//! Conventions: times are UTC timestamps with nanoseconds; addresses are text a person reads
//! (`127.0.0.1`, `::1`); ports are integers; a value the kernel did not give is null, never a
//! made-up default. Sizes called `_mb` are MiB (2^20 bytes, the unit a policy's `512M` means) as
//! float64; byte counters called `_bytes` are exact integers.

mod builders;
mod events;

use std::{fmt, str::FromStr, sync::Arc};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub use builders::{
    AlertDeliveriesBuilder, AlertsBuilder, ApiCallsBuilder, BatchBuilder, CountsBuilder, DropsBuilder,
    FileEventsBuilder, NetworkEventsBuilder, ProcessEventsBuilder, SandboxMetricsBuilder,
    SandboxesBuilder, SyscallEventsBuilder,
};
pub use events::{
    AlertDeliveryRow, AlertRow, ApiCallRow, Common, CountRow, DeliveryState, DropRow, FileEvent, NetworkEvent,
    ProcessEvent, SandboxEvent, SandboxLifecycle, SandboxMetricsRow, SyscallEvent,
};

/// Every table of the audit log this build writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    ProcessEvents,
    FileEvents,
    NetworkEvents,
    SyscallEvents,
    SyscallCounts,
    /// Sandbox lifecycle, from the runner.
    Sandboxes,
    /// Sampled resource use per sandbox, from the runner.
    SandboxMetrics,
    /// Alerts raised by rules.
    Alerts,
    /// Delivery attempts of alerts to on-call hooks.
    AlertDeliveries,
    Drops,
    /// Calls to `sandwatch serve`'s APIs, one row per request.
    ApiCalls,
}

impl Table {
    pub const ALL: [Table; 11] = [
        Table::ProcessEvents,
        Table::FileEvents,
        Table::NetworkEvents,
        Table::SyscallEvents,
        Table::SyscallCounts,
        Table::Sandboxes,
        Table::SandboxMetrics,
        Table::Alerts,
        Table::AlertDeliveries,
        Table::Drops,
        Table::ApiCalls,
    ];

    /// The table's name: its directory in the audit log and its name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Table::ProcessEvents => "process_events",
            Table::FileEvents => "file_events",
            Table::NetworkEvents => "network_events",
            Table::SyscallEvents => "syscall_events",
            Table::SyscallCounts => "syscall_counts",
            Table::Sandboxes => "sandboxes",
            Table::SandboxMetrics => "sandbox_metrics",
            Table::Alerts => "alerts",
            Table::AlertDeliveries => "alert_deliveries",
            Table::Drops => "drops",
            Table::ApiCalls => "api_calls",
        }
    }

    pub fn schema(self) -> SchemaRef {
        // Built once per call site that needs it; callers keep the Arc.
        let mut fields = match self {
            Table::ProcessEvents
            | Table::FileEvents
            | Table::NetworkEvents
            | Table::SyscallEvents => common_fields(),
            Table::SyscallCounts
            | Table::Sandboxes
            | Table::SandboxMetrics
            | Table::Alerts
            | Table::AlertDeliveries
            | Table::Drops
            | Table::ApiCalls => vec![time_field()],
        };
        fields.extend(match self {
            Table::ProcessEvents => vec![
                Field::new("filename", DataType::Utf8, true),
                Field::new("argv", list_of(DataType::Utf8), true),
                Field::new("argv_truncated", DataType::Boolean, true),
                Field::new("cwd", DataType::Utf8, true),
                Field::new("child_pid", DataType::UInt32, true),
                Field::new("clone_flags", DataType::UInt64, true),
                Field::new("exit_code", DataType::Int32, true),
                Field::new("exit_signal", DataType::Int32, true),
                Field::new("target_pid", DataType::Int64, true),
                Field::new("signal", DataType::Int32, true),
                Field::new("ptrace_request", DataType::Int64, true),
                Field::new("id_args", list_of(DataType::Int64), true),
                Field::new("tty", DataType::UInt32, true),
                Field::new("loginuid", DataType::Int64, true),
                Field::new("cap_effective", DataType::UInt64, true),
                Field::new("cap_permitted", DataType::UInt64, true),
                Field::new("cap_inheritable", DataType::UInt64, true),
                Field::new("exe_from_memfd", DataType::Boolean, true),
                Field::new("exe_written_in_sandbox", DataType::Boolean, true),
                Field::new(
                    "exe_ctime",
                    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                    true,
                ),
            ],
            Table::FileEvents => vec![
                Field::new("path", DataType::Utf8, true),
                Field::new("path2", DataType::Utf8, true),
                Field::new("path_truncated", DataType::Boolean, false),
                Field::new("dirfd", DataType::Int32, true),
                Field::new("flags", DataType::Int64, true),
                Field::new("flags_text", DataType::Utf8, true),
                Field::new("mode", DataType::UInt32, true),
                Field::new("owner_uid", DataType::Int64, true),
                Field::new("owner_gid", DataType::Int64, true),
                Field::new("fstype", DataType::Utf8, true),
            ],
            Table::NetworkEvents => vec![
                Field::new("fd", DataType::Int64, true),
                Field::new("family", DataType::Utf8, true),
                Field::new("sock_type", DataType::Utf8, true),
                Field::new("protocol", DataType::Utf8, true),
                Field::new("saddr", DataType::Utf8, true),
                Field::new("sport", DataType::UInt16, true),
                Field::new("daddr", DataType::Utf8, true),
                Field::new("dport", DataType::UInt16, true),
                Field::new("verdict", DataType::Utf8, true),
                Field::new("bytes", DataType::Int64, true),
            ],
            Table::SyscallEvents => vec![
                Field::new("args", list_of(DataType::UInt64), true),
                Field::new("refused", DataType::Boolean, false),
            ],
            Table::SyscallCounts => vec![
                Field::new("host", DataType::Utf8, false),
                Field::new("sandbox_id", DataType::Utf8, true),
                Field::new("cgroup_id", DataType::UInt64, false),
                Field::new("syscall", DataType::Utf8, false),
                Field::new("syscall_nr", DataType::Int32, false),
                Field::new("count", DataType::UInt64, false),
                Field::new("window_ms", DataType::UInt32, false),
            ],
            Table::Sandboxes => vec![
                Field::new("host", DataType::Utf8, false),
                Field::new("sandbox_id", DataType::Utf8, false),
                Field::new("event", DataType::Utf8, false),
                Field::new("command", DataType::Utf8, true),
                Field::new("exit_code", DataType::Int32, true),
                Field::new("signal", DataType::Int32, true),
                Field::new("reason", DataType::Utf8, true),
                Field::new("policy_hash", DataType::Utf8, false),
                Field::new("profile", DataType::Utf8, true),
                Field::new("detail", DataType::Utf8, true),
            ],
            Table::SandboxMetrics => vec![
                Field::new("host", DataType::Utf8, false),
                Field::new("sandbox_id", DataType::Utf8, false),
                Field::new("cpu_usage_percent", DataType::Float64, false),
                Field::new("memory_usage_mb", DataType::Float64, false),
                Field::new("memory_limit_mb", DataType::Float64, true),
                Field::new("disk_usage_mb", DataType::Float64, false),
                Field::new("network_rx_bytes", DataType::UInt64, true),
                Field::new("network_tx_bytes", DataType::UInt64, true),
                Field::new("process_count", DataType::UInt32, false),
                Field::new("file_descriptors", DataType::UInt32, false),
            ],
            Table::Alerts => vec![
                Field::new("host", DataType::Utf8, false),
                Field::new("alert_id", DataType::Utf8, false),
                Field::new("dedup_key", DataType::Utf8, false),
                Field::new("sandbox_id", DataType::Utf8, true),
                Field::new("rule", DataType::Utf8, false),
                Field::new("priority", DataType::Utf8, false),
                Field::new("tags", list_of(DataType::Utf8), false),
                Field::new("output", DataType::Utf8, false),
                Field::new("evidence", DataType::Utf8, false),
                Field::new("actions", list_of(DataType::Utf8), false),
                Field::new("actions_taken", DataType::Utf8, false),
                Field::new("fields", DataType::Utf8, false),
                // The triggering event (the first of `evidence`), typed for joins with the
                // event tables; null when the alert rests on no event (a metric rule).
                Field::new("event_table", DataType::Utf8, true),
                Field::new(
                    "event_time",
                    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                    true,
                ),
                Field::new("event_pid", DataType::UInt32, true),
                Field::new("event_tid", DataType::UInt32, true),
                // How unusual, for a baseline's alert (higher: further from normal); null for
                // a rule's.
                Field::new("score", DataType::Float64, true),
            ],
            Table::AlertDeliveries => vec![
                Field::new("host", DataType::Utf8, false),
                Field::new("alert_id", DataType::Utf8, false),
                Field::new("dedup_key", DataType::Utf8, false),
                Field::new("hook", DataType::Utf8, false),
                Field::new("hook_type", DataType::Utf8, false),
                Field::new("state", DataType::Utf8, false),
                Field::new("attempts", DataType::UInt32, false),
                Field::new("status_code", DataType::UInt16, true),
                Field::new("error", DataType::Utf8, true),
                Field::new("latency_ms", DataType::Float64, true),
            ],
            Table::Drops => vec![
                Field::new("host", DataType::Utf8, false),
                Field::new("source", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("count", DataType::UInt64, false),
                Field::new("total", DataType::UInt64, false),
            ],
            Table::ApiCalls => vec![
                Field::new("host", DataType::Utf8, false),
                // Who called: the first 16 hex digits of the API key's SHA-256 (never the key),
                // `envd-token` for a sandbox's own access token, `local` for the daemon's unix
                // socket, null when the call presented nothing valid.
                Field::new("key_fingerprint", DataType::Utf8, true),
                Field::new("api", DataType::Utf8, false),
                Field::new("method", DataType::Utf8, false),
                Field::new("path", DataType::Utf8, false),
                Field::new("sandbox_id", DataType::Utf8, true),
                Field::new("status", DataType::UInt16, false),
                Field::new("latency_ms", DataType::Float64, false),
                Field::new("remote_addr", DataType::Utf8, true),
                Field::new("user_agent", DataType::Utf8, true),
            ],
        });
        Arc::new(Schema::new(fields))
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown table {0:?} (tables: process_events, file_events, network_events, syscall_events, syscall_counts, sandboxes, sandbox_metrics, alerts, alert_deliveries, drops, api_calls)"
)]
pub struct UnknownTable(pub String);

impl FromStr for Table {
    type Err = UnknownTable;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Table::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTable(s.to_owned()))
    }
}

/// A sealed batch of one table: what travels on the bus to every sink.
#[derive(Clone, Debug)]
pub struct TableBatch {
    pub table: Table,
    pub batch: RecordBatch,
}

/// The columns every event table starts with, in this order.
pub const COMMON_COLUMNS: [&str; 14] = [
    "time",
    "host",
    "sandbox_id",
    "cgroup_id",
    "pid",
    "tid",
    "ppid",
    "uid",
    "gid",
    "comm",
    "exe",
    "event",
    "syscall",
    "ret",
];

fn time_field() -> Field {
    Field::new(
        "time",
        DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        false,
    )
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

fn common_fields() -> Vec<Field> {
    vec![
        time_field(),
        Field::new("host", DataType::Utf8, false),
        Field::new("sandbox_id", DataType::Utf8, true),
        Field::new("cgroup_id", DataType::UInt64, false),
        Field::new("pid", DataType::UInt32, false),
        Field::new("tid", DataType::UInt32, false),
        Field::new("ppid", DataType::UInt32, true),
        Field::new("uid", DataType::UInt32, false),
        Field::new("gid", DataType::UInt32, false),
        Field::new("comm", DataType::Utf8, false),
        Field::new("exe", DataType::Utf8, true),
        Field::new("event", DataType::Utf8, false),
        Field::new("syscall", DataType::Utf8, true),
        Field::new("ret", DataType::Int64, true),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_table_starts_with_the_common_columns() {
        for t in [
            Table::ProcessEvents,
            Table::FileEvents,
            Table::NetworkEvents,
            Table::SyscallEvents,
        ] {
            let schema = t.schema();
            let names: Vec<&str> = schema
                .fields()
                .iter()
                .take(COMMON_COLUMNS.len())
                .map(|f| f.name().as_str())
                .collect();
            assert_eq!(names, COMMON_COLUMNS, "{t}");
        }
    }

    #[test]
    fn runner_tables_start_with_time_host_and_a_sandbox() {
        for t in [Table::Sandboxes, Table::SandboxMetrics] {
            let schema = t.schema();
            let first: Vec<(&str, bool)> = schema
                .fields()
                .iter()
                .take(3)
                .map(|f| (f.name().as_str(), f.is_nullable()))
                .collect();
            assert_eq!(
                first,
                [("time", false), ("host", false), ("sandbox_id", false)],
                "{t}"
            );
            assert_eq!(schema.field(0).data_type(), time_field().data_type());
        }
    }

    #[test]
    fn alert_tables_start_with_time_host_and_the_alert() {
        for t in [Table::Alerts, Table::AlertDeliveries] {
            let schema = t.schema();
            let first: Vec<&str> = schema
                .fields()
                .iter()
                .take(4)
                .map(|f| f.name().as_str())
                .collect();
            assert_eq!(first, ["time", "host", "alert_id", "dedup_key"], "{t}");
        }
    }

    #[test]
    fn table_names_round_trip() {
        for t in Table::ALL {
            assert_eq!(t.name().parse::<Table>().unwrap(), t);
        }
        assert!("nope".parse::<Table>().is_err());
    }
}
