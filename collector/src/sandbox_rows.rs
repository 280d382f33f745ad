//! Rows that come from user space, not from the kernel: sandbox lifecycle events (`sandboxes`)
//! and metrics samples (`sandbox_metrics`) from the runner, and the requests `sandwatch serve`
//! answered (`api_calls`).
//!
//! They reach the reader task through a queue and take the same path as kernel events from there:
//! the task's batchers, the bus, every sink, the summary's row counts. The queue is unbounded on
//! purpose: these rows come at a few per sandbox per second, so a send is a cheap synchronous call
//! that works from async code, blocking threads and `Drop` alike and never waits; the reader takes
//! everything waiting each time it wakes. A row is never lost silently: once the collector has
//! stopped (or its reader has failed) a send returns [`CollectorError::Stopped`], and whatever was
//! queued before the stop is written.

use std::time::{SystemTime, UNIX_EPOCH};

use sandwatch_schema::{ApiCallRow, SandboxEvent, SandboxLifecycle, SandboxMetricsRow, Table};
use tokio::sync::mpsc;

use crate::{CollectorError, batcher::Batchers};

/// One lifecycle event of a sandbox, as the runner reports it; the collector adds the host.
#[derive(Clone, Debug)]
pub struct SandboxEventRecord {
    pub time: SystemTime,
    pub sandbox_id: String,
    pub event: SandboxLifecycle,
    /// The command line of the command concerned.
    pub command: Option<String>,
    pub exit_code: Option<i32>,
    /// `exited`: the signal that ended the command; `killed`: the signal sent.
    pub signal: Option<i32>,
    /// `timeout`, `oom`, `order`, `rule`, `error`, `runner_exit`, ...
    pub reason: Option<String>,
    /// Hex SHA-256 of the resolved policy YAML.
    pub policy_hash: String,
    pub profile: Option<String>,
    pub detail: Option<String>,
}

/// One metrics sample of a sandbox, in the units the runner measures (bytes); the table stores
/// sizes in MiB (see `sandwatch_schema`).
#[derive(Clone, Debug)]
pub struct SandboxMetricsRecord {
    pub time: SystemTime,
    pub sandbox_id: String,
    /// 100 = one full core.
    pub cpu_usage_percent: f64,
    pub memory_usage_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub disk_usage_bytes: u64,
    /// None when the sandbox shares the host's network.
    pub network_rx_bytes: Option<u64>,
    pub network_tx_bytes: Option<u64>,
    pub process_count: u32,
    pub file_descriptors: u32,
}

/// One request to `sandwatch serve`'s APIs, as it was answered; the collector adds the host.
#[derive(Clone, Debug)]
pub struct ApiCallRecord {
    pub time: SystemTime,
    /// A fingerprint of the credential presented, never the credential.
    pub key_fingerprint: Option<String>,
    /// `control`, `envd`, `local` or `ops`.
    pub api: &'static str,
    pub method: String,
    pub path: String,
    pub sandbox_id: Option<String>,
    pub status: u16,
    pub latency_ms: f64,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug)]
pub(crate) enum SandboxRow {
    Event(SandboxEventRecord),
    Metrics(SandboxMetricsRecord),
    ApiCall(ApiCallRecord),
}

/// Hands runner rows to a running collector. Cheap to clone; keep one per task that reports.
#[derive(Clone, Debug)]
pub struct SandboxRecorder {
    tx: mpsc::UnboundedSender<SandboxRow>,
}

impl SandboxRecorder {
    /// Queues a `sandboxes` row. Never waits; fails only once the collector has stopped.
    pub fn record_sandbox_event(&self, event: SandboxEventRecord) -> Result<(), CollectorError> {
        self.tx
            .send(SandboxRow::Event(event))
            .map_err(|_| CollectorError::Stopped(Table::Sandboxes))
    }

    /// Queues a `sandbox_metrics` row. Never waits; fails only once the collector has stopped.
    pub fn record_sandbox_metrics(
        &self,
        sample: SandboxMetricsRecord,
    ) -> Result<(), CollectorError> {
        self.tx
            .send(SandboxRow::Metrics(sample))
            .map_err(|_| CollectorError::Stopped(Table::SandboxMetrics))
    }

    /// Queues an `api_calls` row. Never waits; fails only once the collector has stopped.
    pub fn record_api_call(&self, call: ApiCallRecord) -> Result<(), CollectorError> {
        self.tx
            .send(SandboxRow::ApiCall(call))
            .map_err(|_| CollectorError::Stopped(Table::ApiCalls))
    }
}

/// The `sandboxes` rows of one sandbox: what every row of it shares (id, policy hash, profile),
/// filled in once. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SandboxLog {
    recorder: SandboxRecorder,
    sandbox_id: String,
    policy_hash: String,
    profile: Option<String>,
}

impl SandboxLog {
    pub fn new(
        recorder: SandboxRecorder,
        sandbox_id: impl Into<String>,
        policy_hash: impl Into<String>,
        profile: Option<String>,
    ) -> Self {
        Self {
            recorder,
            sandbox_id: sandbox_id.into(),
            policy_hash: policy_hash.into(),
            profile,
        }
    }

    pub fn sandbox_id(&self) -> &str {
        &self.sandbox_id
    }

    /// A row of this sandbox, stamped now, with nothing but the event set.
    pub fn row(&self, event: SandboxLifecycle) -> SandboxEventRecord {
        SandboxEventRecord {
            time: SystemTime::now(),
            sandbox_id: self.sandbox_id.clone(),
            event,
            command: None,
            exit_code: None,
            signal: None,
            reason: None,
            policy_hash: self.policy_hash.clone(),
            profile: self.profile.clone(),
            detail: None,
        }
    }

    /// Queues a row. Only a stopped collector refuses one, and it stops after the last sandbox:
    /// a refusal is logged, never silent.
    pub fn record(&self, row: SandboxEventRecord) {
        if let Err(e) = self.recorder.record_sandbox_event(row) {
            tracing::warn!(sandbox = %self.sandbox_id, "sandboxes row lost: {e}");
        }
    }

    /// A row with an optional command line, reason and detail.
    pub fn event(
        &self,
        event: SandboxLifecycle,
        command: Option<String>,
        reason: Option<&str>,
        detail: Option<String>,
    ) {
        let mut row = self.row(event);
        row.command = command;
        row.reason = reason.map(str::to_owned);
        row.detail = detail;
        self.record(row);
    }
}

/// A command line as the `sandboxes` table's `command` column holds it: the words joined by
/// spaces, each quoted as a POSIX shell would need it.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The reader's end of the queue.
pub(crate) struct SandboxRowQueue {
    rx: mpsc::UnboundedReceiver<SandboxRow>,
}

pub(crate) fn queue() -> (SandboxRecorder, SandboxRowQueue) {
    let (tx, rx) = mpsc::unbounded_channel();
    (SandboxRecorder { tx }, SandboxRowQueue { rx })
}

impl SandboxRowQueue {
    /// Waits for the next row.
    pub async fn recv(&mut self) -> Option<SandboxRow> {
        self.rx.recv().await
    }

    /// Appends `first` and every row already waiting behind it.
    pub fn append_waiting(
        &mut self,
        first: SandboxRow,
        batchers: &mut Batchers,
        host: &str,
    ) -> Result<(), CollectorError> {
        append(&first, batchers, host)?;
        while let Ok(row) = self.rx.try_recv() {
            append(&row, batchers, host)?;
        }
        Ok(())
    }

    /// Refuses further rows, then appends every row queued before that.
    pub fn close_and_drain(
        &mut self,
        batchers: &mut Batchers,
        host: &str,
    ) -> Result<(), CollectorError> {
        self.rx.close();
        while let Ok(row) = self.rx.try_recv() {
            append(&row, batchers, host)?;
        }
        Ok(())
    }
}

fn unix_ns(t: SystemTime) -> i64 {
    let clamp = |d: std::time::Duration| d.as_nanos().min(i64::MAX as u128) as i64;
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => clamp(d),
        Err(before) => -clamp(before.duration()),
    }
}

fn append(row: &SandboxRow, batchers: &mut Batchers, host: &str) -> Result<(), CollectorError> {
    match row {
        SandboxRow::Event(e) => batchers.sandbox_event(&SandboxEvent {
            time_ns: unix_ns(e.time),
            host,
            sandbox_id: &e.sandbox_id,
            event: e.event,
            command: e.command.as_deref(),
            exit_code: e.exit_code,
            signal: e.signal,
            reason: e.reason.as_deref(),
            policy_hash: &e.policy_hash,
            profile: e.profile.as_deref(),
            detail: e.detail.as_deref(),
        }),
        SandboxRow::Metrics(m) => batchers.sandbox_metrics(&SandboxMetricsRow {
            time_ns: unix_ns(m.time),
            host,
            sandbox_id: &m.sandbox_id,
            cpu_usage_percent: m.cpu_usage_percent,
            memory_usage_bytes: m.memory_usage_bytes,
            memory_limit_bytes: m.memory_limit_bytes,
            disk_usage_bytes: m.disk_usage_bytes,
            network_rx_bytes: m.network_rx_bytes,
            network_tx_bytes: m.network_tx_bytes,
            process_count: m.process_count,
            file_descriptors: m.file_descriptors,
        }),
        SandboxRow::ApiCall(c) => batchers.api_call(&ApiCallRow {
            time_ns: unix_ns(c.time),
            host,
            key_fingerprint: c.key_fingerprint.as_deref(),
            api: c.api,
            method: &c.method,
            path: &c.path,
            sandbox_id: c.sandbox_id.as_deref(),
            status: c.status,
            latency_ms: c.latency_ms,
            remote_addr: c.remote_addr.as_deref(),
            user_agent: c.user_agent.as_deref(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs::File,
        path::{Path, PathBuf},
        time::Duration,
    };

    use arrow_array::{Array, Float64Array, RecordBatch, StringArray, UInt64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::{
        batcher::BatchLimits,
        bus::BatchBus,
        parquet_sink::{self, ParquetOptions, ParquetSink},
    };

    fn event(sandbox: &str, what: SandboxLifecycle) -> SandboxEventRecord {
        SandboxEventRecord {
            time: SystemTime::now(),
            sandbox_id: sandbox.into(),
            event: what,
            command: None,
            exit_code: None,
            signal: None,
            reason: None,
            policy_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            profile: Some("default".into()),
            detail: None,
        }
    }

    fn sample(sandbox: &str, network: Option<u64>) -> SandboxMetricsRecord {
        SandboxMetricsRecord {
            time: SystemTime::now(),
            sandbox_id: sandbox.into(),
            cpu_usage_percent: 97.5,
            memory_usage_bytes: 64 << 20,
            memory_limit_bytes: Some(512 << 20),
            disk_usage_bytes: 1 << 20,
            network_rx_bytes: network,
            network_tx_bytes: network,
            process_count: 3,
            file_descriptors: 12,
        }
    }

    /// The batches of `table` in the files the sink wrote under `root`.
    fn read_back(root: &Path, files: &[PathBuf], table: Table) -> Vec<RecordBatch> {
        files
            .iter()
            .filter(|p| p.strip_prefix(root).unwrap().starts_with(table.name()))
            .flat_map(|p| {
                ParquetRecordBatchReaderBuilder::try_new(File::open(p).unwrap())
                    .unwrap()
                    .build()
                    .unwrap()
                    .map(|b| b.unwrap())
            })
            .collect()
    }

    fn strings<'a>(batch: &'a RecordBatch, col: &str) -> &'a StringArray {
        batch
            .column_by_name(col)
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
    }

    /// The reader task's path without the kernel: queue → batchers → bus → Parquet sink.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sandbox_rows_reach_parquet_and_are_refused_after_the_stop() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ParquetSink::open(dir.path(), ParquetOptions::default()).unwrap();
        let mut bus = BatchBus::default();
        let sink = parquet_sink::spawn(
            sink,
            bus.subscribe("parquet", 4),
            tokio::runtime::Handle::current(),
        );
        let mut batchers = Batchers::new(BatchLimits {
            max_rows: 2,
            max_age: Duration::from_secs(60),
        });
        let (recorder, mut queue) = queue();
        let other_task = recorder.clone();

        recorder
            .record_sandbox_event(event("sw-a", SandboxLifecycle::Created))
            .unwrap();
        other_task
            .record_sandbox_event(SandboxEventRecord {
                command: Some("python3 job.py".into()),
                ..event("sw-a", SandboxLifecycle::Started)
            })
            .unwrap();
        recorder
            .record_sandbox_metrics(sample("sw-a", Some(4096)))
            .unwrap();
        // What the reader does when it wakes: the first row, then everything behind it.
        let first = queue.recv().await.unwrap();
        queue
            .append_waiting(first, &mut batchers, "host-1")
            .unwrap();
        // Queued before the stop: still written.
        other_task
            .record_sandbox_event(SandboxEventRecord {
                command: Some("python3 job.py".into()),
                signal: Some(9),
                reason: Some("timeout".into()),
                ..event("sw-a", SandboxLifecycle::Killed)
            })
            .unwrap();
        recorder
            .record_sandbox_metrics(sample("sw-a", None))
            .unwrap();
        queue.close_and_drain(&mut batchers, "host-1").unwrap();
        let refused = recorder
            .record_sandbox_event(event("sw-a", SandboxLifecycle::Destroyed))
            .unwrap_err();
        assert!(
            matches!(refused, CollectorError::Stopped(Table::Sandboxes)),
            "{refused}"
        );
        assert!(matches!(
            other_task.record_sandbox_metrics(sample("sw-a", None)),
            Err(CollectorError::Stopped(Table::SandboxMetrics))
        ));

        batchers.seal_all().unwrap();
        for batch in batchers.take_sealed() {
            bus.publish(batch).await.unwrap();
        }
        drop(bus);
        let summary = tokio::task::spawn_blocking(move || sink.join())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(summary.rows[&Table::Sandboxes], 3);
        assert_eq!(summary.rows[&Table::SandboxMetrics], 2);

        let events = read_back(dir.path(), &summary.files, Table::Sandboxes);
        let kinds: Vec<&str> = events
            .iter()
            .flat_map(|b| strings(b, "event").iter().map(Option::unwrap))
            .collect();
        assert_eq!(kinds, ["created", "started", "killed"]);
        let last = events.last().unwrap();
        let i = last.num_rows() - 1;
        assert_eq!(strings(last, "reason").value(i), "timeout");
        assert_eq!(strings(last, "host").value(i), "host-1");
        assert!(strings(&events[0], "command").is_null(0));

        let metrics = read_back(dir.path(), &summary.files, Table::SandboxMetrics);
        assert_eq!(metrics.len(), 1, "two rows, one batch");
        let m = &metrics[0];
        let mb = m
            .column_by_name("memory_usage_mb")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(mb.value(0), 64.0);
        let rx = m
            .column_by_name("network_rx_bytes")
            .unwrap()
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap();
        assert_eq!((rx.value(0), rx.is_null(1)), (4096, true));
        for f in &summary.files {
            let rel = f.strip_prefix(dir.path()).unwrap().to_str().unwrap();
            assert!(
                rel.starts_with("sandboxes/date=") || rel.starts_with("sandbox_metrics/date="),
                "{rel}"
            );
            assert!(rel.contains("/hour=") && rel.ends_with(".parquet"), "{rel}");
        }
        assert_eq!(summary.files.len(), 2, "one file per table");
    }
}
