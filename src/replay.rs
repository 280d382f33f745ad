//! `sandwatch rules test --data DIR`: the audit log's recorded events replayed through rules, to
//! see what would fire before deploying them (as Kunai's log replay does).
//!
//! Batches of every table are read back from Parquet and fed in time order (by each batch's
//! first row; process rows first on ties), as the live stream would have delivered them.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow};
use arrow_array::{Array, RecordBatch, TimestampNanosecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sandwatch_rules::Engine;
use sandwatch_schema::Table;

/// Rows per batch read back: small enough that tables interleave in time order finely.
const REPLAY_BATCH_ROWS: usize = 1024;

/// Tables the rules read, in the order they go first on equal times.
const REPLAYED: [Table; 6] = [
    Table::Sandboxes,
    Table::ProcessEvents,
    Table::FileEvents,
    Table::NetworkEvents,
    Table::SyscallEvents,
    Table::SandboxMetrics,
];

pub struct ReplaySummary {
    pub events: u64,
    pub files: usize,
    pub alerts: u64,
}

/// Every Parquet file of `table` under `data`, in path order (date, hour, sequence).
fn table_files(data: &Path, table: Table) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![data.join(table.name())];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for e in entries {
            let p = e
                .with_context(|| format!("cannot read {}", dir.display()))?
                .path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn first_time(b: &RecordBatch) -> i64 {
    b.column_by_name("time")
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .filter(|t| !t.is_empty())
        .map_or(i64::MIN, |t| t.value(0))
}

/// Replays `data` through `engine`, calling `on_alert` per match.
pub fn replay(
    data: &Path,
    engine: &mut Engine,
    mut on_alert: impl FnMut(&Engine, &sandwatch_rules::Match) -> anyhow::Result<()>,
) -> anyhow::Result<ReplaySummary> {
    if !data.is_dir() {
        return Err(anyhow!(
            "--data {}: not a directory (an audit log written by `sandwatch run --data`)",
            data.display()
        ));
    }
    let mut batches: Vec<(i64, usize, Table, RecordBatch)> = Vec::new();
    let mut files = 0;
    for (order, table) in REPLAYED.into_iter().enumerate() {
        for path in table_files(data, table)? {
            files += 1;
            let file =
                fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(REPLAY_BATCH_ROWS).build())
                .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
            for b in reader {
                let b =
                    b.with_context(|| format!("{}: cannot read a row group", path.display()))?;
                batches.push((first_time(&b), order, table, b));
            }
        }
    }
    batches.sort_by_key(|(t, order, _, _)| (*t, *order));
    let mut summary = ReplaySummary {
        events: 0,
        files,
        alerts: 0,
    };
    for (_, _, table, batch) in &batches {
        if *table != Table::Sandboxes {
            summary.events += batch.num_rows() as u64;
        }
        for m in engine.evaluate(*table, batch) {
            summary.alerts += 1;
            on_alert(engine, &m)?;
        }
    }
    Ok(summary)
}
