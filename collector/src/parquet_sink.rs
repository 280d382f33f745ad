//! The Parquet audit log: `<data>/<table>/date=YYYY-MM-DD/hour=HH/<seq>.parquet`.
//!
//! A file is written under a `.tmp` name and renamed when its footer is on disk, so a reader
//! (DuckDB, pandas, Spark, our own SQL) never sees a partial file. Files rotate when they reach a
//! size, an age, or when rows move to another hour. Closing the sink closes every open file.

use std::{
    collections::HashMap,
    fs::{self, File},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use arrow_array::{Array, TimestampNanosecondArray};
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::properties::WriterProperties,
    schema::types::ColumnPath,
};
use sandwatch_schema::{Table, TableBatch};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::CollectorError;

#[derive(Clone, Debug)]
pub struct ParquetOptions {
    /// Close a file once this many bytes are written to it.
    pub max_file_bytes: u64,
    /// Close a file this long after it was opened, so readers see recent data.
    pub max_file_age: Duration,
    /// Rows per row group.
    pub row_group_rows: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: 128 << 20,
            max_file_age: Duration::from_secs(60),
            row_group_rows: 128 * 1024,
        }
    }
}

/// The most sandboxes a row group's bloom filter on `sandbox_id` is sized for before the
/// writer folds it down to what the row group held (more only raise its false positives).
const SANDBOXES_PER_ROW_GROUP: u64 = 4096;

struct OpenFile {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    opened: Instant,
    partition: (i32, u32, u32, u32),
    rows: u64,
}

/// What the sink wrote, for the summary.
#[derive(Clone, Debug, Default)]
pub struct SinkSummary {
    pub files: Vec<PathBuf>,
    pub rows: HashMap<Table, u64>,
    pub bytes: u64,
}

pub struct ParquetSink {
    root: PathBuf,
    options: ParquetOptions,
    props: WriterProperties,
    open: HashMap<Table, OpenFile>,
    next_seq: u64,
    summary: SinkSummary,
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CollectorError + 'a {
    move |source| CollectorError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The partition of a batch: the hour of its first row (the batcher keeps a batch in one hour).
fn partition_of(batch: &TableBatch) -> (i32, u32, u32, u32) {
    let ns = batch
        .batch
        .column_by_name("time")
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .filter(|a| !a.is_empty())
        .map_or(0, |a| a.value(0));
    let t: DateTime<Utc> = DateTime::from_timestamp_nanos(ns);
    (t.year(), t.month(), t.day(), t.hour())
}

impl ParquetSink {
    /// Opens the audit log at `root`, creating it if needed. Fails now, before anything is
    /// recorded, if the directory cannot be written.
    pub fn open(root: &Path, options: ParquetOptions) -> Result<Self, CollectorError> {
        fs::create_dir_all(root).map_err(io_err("create the data directory", root))?;
        let probe = root.join(format!(".sandwatch-write-test-{}", std::process::id()));
        fs::write(&probe, b"").map_err(io_err("write into the data directory", root))?;
        let _ = fs::remove_file(&probe);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("level 1 is valid"),
            ))
            .set_max_row_group_row_count(Some(options.row_group_rows))
            .set_created_by(format!("sandwatch {}", env!("CARGO_PKG_VERSION")));
        // Dictionary-encoding paths costs a hash and a compare per row, the largest part of the
        // sink's CPU; zstd already folds their repetition. Low-cardinality text keeps it.
        // (Measured: the same bytes on disk for a python/coreutils job, 15k file rows.)
        let props = ["path", "path2"].into_iter().fold(props, |p, c| {
            p.set_column_dictionary_enabled(ColumnPath::from(c), false)
        });
        // Investigations start from a sandbox (`WHERE sandbox_id = ...`, its process tree, its
        // alerts). Its rows sit in every row group of the hours it ran, among the other
        // sandboxes', and ids are random, so min/max statistics skip nothing; a bloom filter per
        // row group lets readers (DataFusion, DuckDB) skip the row groups without it. Small: a
        // row group holds tens to hundreds of sandboxes; at 1% false positives, folded to its
        // sandboxes, that is well under a KiB to a few KiB.
        // (Measured on 50M generated events: one sandbox's process tree 1,083 → 937 ms; the
        // sink thread's rows per CPU-second 1.19M → 1.22M, i.e. no cost within the noise.)
        let sandbox = ColumnPath::from("sandbox_id");
        let props = props
            .set_column_bloom_filter_enabled(sandbox.clone(), true)
            .set_column_bloom_filter_max_ndv(sandbox.clone(), SANDBOXES_PER_ROW_GROUP)
            .set_column_bloom_filter_fpp(sandbox, 0.01)
            .build();
        Ok(Self {
            root: root.to_owned(),
            options,
            props,
            open: HashMap::new(),
            next_seq: 0,
            summary: SinkSummary::default(),
        })
    }

    pub fn write(&mut self, batch: &TableBatch) -> Result<(), CollectorError> {
        if batch.batch.num_rows() == 0 {
            return Ok(());
        }
        let partition = partition_of(batch);
        if self
            .open
            .get(&batch.table)
            .is_some_and(|f| f.partition != partition)
        {
            self.close_file(batch.table)?;
        }
        if !self.open.contains_key(&batch.table) {
            let file = self.new_file(batch.table, partition)?;
            self.open.insert(batch.table, file);
        }
        let f = self.open.get_mut(&batch.table).expect("opened above");
        f.writer
            .write(&batch.batch)
            .map_err(|source| CollectorError::Parquet {
                path: f.tmp.clone(),
                source,
            })?;
        f.rows += batch.batch.num_rows() as u64;
        *self.summary.rows.entry(batch.table).or_default() += batch.batch.num_rows() as u64;
        if f.writer.bytes_written() as u64 + f.writer.in_progress_size() as u64
            >= self.options.max_file_bytes
        {
            self.close_file(batch.table)?;
        }
        Ok(())
    }

    /// Closes the files that have been open for `max_file_age`.
    pub fn rotate_aged(&mut self, now: Instant) -> Result<(), CollectorError> {
        let aged: Vec<Table> = self
            .open
            .iter()
            .filter(|(_, f)| now.duration_since(f.opened) >= self.options.max_file_age)
            .map(|(t, _)| *t)
            .collect();
        for t in aged {
            self.close_file(t)?;
        }
        Ok(())
    }

    fn new_file(
        &mut self,
        table: Table,
        (y, m, d, h): (i32, u32, u32, u32),
    ) -> Result<OpenFile, CollectorError> {
        let dir = self
            .root
            .join(table.name())
            .join(format!("date={y:04}-{m:02}-{d:02}"))
            .join(format!("hour={h:02}"));
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        // Sortable by creation time, unique across concurrent writers on one host.
        let name = format!(
            "{:013}-{:06}-{:04}.parquet",
            Utc::now().timestamp_millis(),
            std::process::id(),
            self.next_seq
        );
        self.next_seq += 1;
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        let writer = ArrowWriter::try_new(file, table.schema(), Some(self.props.clone())).map_err(
            |source| CollectorError::Parquet {
                path: tmp.clone(),
                source,
            },
        )?;
        debug!(path = %path.display(), "parquet file opened");
        Ok(OpenFile {
            writer,
            tmp,
            path,
            opened: Instant::now(),
            partition: (y, m, d, h),
            rows: 0,
        })
    }

    fn close_file(&mut self, table: Table) -> Result<(), CollectorError> {
        let Some(f) = self.open.remove(&table) else {
            return Ok(());
        };
        let file = f
            .writer
            .into_inner()
            .map_err(|source| CollectorError::Parquet {
                path: f.tmp.clone(),
                source,
            })?;
        // The rename publishes the file; make its bytes durable first.
        file.sync_all().map_err(io_err("sync", &f.tmp))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        fs::rename(&f.tmp, &f.path).map_err(io_err("rename", &f.tmp))?;
        debug!(path = %f.path.display(), rows = f.rows, bytes, "parquet file closed");
        self.summary.bytes += bytes;
        self.summary.files.push(f.path);
        Ok(())
    }

    /// Closes every open file; returns what was written.
    pub fn close(mut self) -> Result<SinkSummary, CollectorError> {
        let tables: Vec<Table> = self.open.keys().copied().collect();
        let mut first_err = None;
        for t in tables {
            if let Err(e) = self.close_file(t) {
                warn!("closing the {t} file: {e}");
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut self.summary)),
        }
    }
}

/// Runs the sink on its own thread (Parquet encoding is CPU work that must not stall the reader),
/// until the bus closes; then closes every file.
pub fn spawn(
    mut sink: ParquetSink,
    mut rx: mpsc::Receiver<Arc<TableBatch>>,
    runtime: tokio::runtime::Handle,
) -> std::thread::JoinHandle<Result<SinkSummary, CollectorError>> {
    std::thread::Builder::new()
        .name("parquet-sink".into())
        .spawn(move || {
            let tick = sink.options.max_file_age.min(Duration::from_secs(1));
            loop {
                match runtime.block_on(async { tokio::time::timeout(tick, rx.recv()).await }) {
                    Ok(Some(batch)) => {
                        if let Err(e) = sink.write(&batch) {
                            // Keep what is already on disk readable before reporting.
                            let _ = sink.close();
                            return Err(e);
                        }
                    }
                    Ok(None) => break,
                    Err(_elapsed) => {}
                }
                sink.rotate_aged(Instant::now())?;
            }
            sink.close()
        })
        .expect("spawning the parquet sink thread")
}

#[cfg(test)]
mod tests {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use sandwatch_schema::{Common, FileEvent, FileEventsBuilder};

    use super::*;

    const HOUR_NS: i64 = 3_600_000_000_000;

    fn batch(time_ns: i64, rows: usize) -> TableBatch {
        let mut b = FileEventsBuilder::new(rows);
        for i in 0..rows {
            let path = format!("/tmp/file-{i}");
            b.append(&FileEvent {
                common: Common {
                    time_ns,
                    host: "h",
                    comm: "c",
                    event: "openat",
                    ..Default::default()
                },
                path: Some(&path),
                ..Default::default()
            });
        }
        TableBatch {
            table: Table::FileEvents,
            batch: b.finish().unwrap(),
        }
    }

    fn files(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut dirs = vec![root.to_owned()];
        while let Some(d) = dirs.pop() {
            for e in fs::read_dir(d).unwrap().flatten() {
                if e.path().is_dir() {
                    dirs.push(e.path());
                } else {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    fn rows_in(path: &Path) -> usize {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        reader.map(|b| b.unwrap().num_rows()).sum()
    }

    #[test]
    fn files_are_partitioned_by_hour_and_published_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = ParquetSink::open(dir.path(), ParquetOptions::default()).unwrap();
        // 2026-11-27 01:xx and 02:xx UTC.
        let t = 1_795_741_200 * 1_000_000_000;
        sink.write(&batch(t, 10)).unwrap();
        let open = files(dir.path());
        assert_eq!(open.len(), 1);
        assert!(
            open[0]
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with(".tmp"),
            "in progress: hidden .tmp"
        );
        sink.write(&batch(t + HOUR_NS, 5)).unwrap();
        let summary = sink.close().unwrap();
        let done = files(dir.path());
        assert_eq!(
            done,
            summary
                .files
                .iter()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
        assert_eq!(done.len(), 2);
        let names: Vec<String> = done
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert!(
            names[0].starts_with("file_events/date=2026-11-27/hour=01/")
                && names[0].ends_with(".parquet"),
            "{names:?}"
        );
        assert!(
            names[1].starts_with("file_events/date=2026-11-27/hour=02/"),
            "{names:?}"
        );
        assert_eq!((rows_in(&done[0]), rows_in(&done[1])), (10, 5));
        assert_eq!(summary.rows[&Table::FileEvents], 15);
    }

    #[test]
    fn files_rotate_by_size_and_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let options = ParquetOptions {
            max_file_bytes: 1,
            max_file_age: Duration::from_secs(3600),
            row_group_rows: 1024,
        };
        let mut sink = ParquetSink::open(dir.path(), options).unwrap();
        let t = 1_795_741_200 * 1_000_000_000;
        for _ in 0..3 {
            sink.write(&batch(t, 100)).unwrap();
        }
        assert_eq!(
            files(dir.path()).len(),
            3,
            "every write passed the 1-byte size limit"
        );
        sink.close().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let options = ParquetOptions {
            max_file_bytes: u64::MAX,
            max_file_age: Duration::from_millis(1),
            row_group_rows: 1024,
        };
        let mut sink = ParquetSink::open(dir.path(), options).unwrap();
        sink.write(&batch(t, 100)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        sink.rotate_aged(Instant::now()).unwrap();
        let done = files(dir.path());
        assert_eq!(done.len(), 1);
        assert!(
            done[0].extension().is_some_and(|e| e == "parquet"),
            "aged file closed and published: {done:?}"
        );
        sink.close().unwrap();
    }

    /// Readers skip a row group by its bloom filter on `sandbox_id`: the filter is there, holds
    /// the row group's sandboxes and (with 1% false positives) not another.
    #[test]
    fn every_row_group_has_a_bloom_filter_on_the_sandbox() {
        use parquet::file::{
            properties::ReaderProperties,
            reader::FileReader as _,
            serialized_reader::{ReadOptionsBuilder, SerializedFileReader},
        };
        let dir = tempfile::tempdir().unwrap();
        let mut sink = ParquetSink::open(dir.path(), ParquetOptions::default()).unwrap();
        let mut b = FileEventsBuilder::new(100);
        for i in 0..100 {
            let sandbox = format!("sw-{:08x}", i % 7);
            b.append(&FileEvent {
                common: Common {
                    time_ns: 1_795_741_200 * 1_000_000_000,
                    host: "h",
                    sandbox_id: Some(&sandbox),
                    comm: "c",
                    event: "openat",
                    ..Default::default()
                },
                path: Some("/etc/hosts"),
                ..Default::default()
            });
        }
        sink.write(&TableBatch {
            table: Table::FileEvents,
            batch: b.finish().unwrap(),
        })
        .unwrap();
        let summary = sink.close().unwrap();
        let options = ReadOptionsBuilder::new()
            .with_reader_properties(
                ReaderProperties::builder()
                    .set_read_bloom_filter(true)
                    .build(),
            )
            .build();
        let reader =
            SerializedFileReader::new_with_options(File::open(&summary.files[0]).unwrap(), options)
                .unwrap();
        let rg = reader.get_row_group(0).unwrap();
        let column = Table::FileEvents.schema().index_of("sandbox_id").unwrap();
        let bloom = rg
            .get_column_bloom_filter(column)
            .expect("a bloom filter on sandbox_id");
        for i in 0..7 {
            assert!(bloom.check(&format!("sw-{i:08x}").as_str()), "sandbox {i}");
        }
        let absent = (100..300)
            .filter(|i| bloom.check(&format!("sw-{i:08x}").as_str()))
            .count();
        assert!(
            absent <= 10,
            "{absent} of 200 absent sandboxes pass the filter"
        );
        let path = Table::FileEvents.schema().index_of("path").unwrap();
        assert!(
            rg.get_column_bloom_filter(path).is_none(),
            "only sandbox_id has one"
        );
    }

    #[test]
    fn an_unwritable_data_directory_is_refused_up_front() {
        let err = ParquetSink::open(Path::new("/proc/sandwatch-test"), ParquetOptions::default())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("/proc/sandwatch-test"), "{err}");
    }
}
