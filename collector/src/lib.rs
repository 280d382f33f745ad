//! The collector: loads sandwatch's probes into the kernel, reads what they record, and turns it
//! into the audit log.
//!
//! Data path, one record at a time only inside the first box:
//! ```text
//! ring buffer ──► decode (ABI record → typed event) ──► enrich (process, socket, sandbox)
//!   ──► Batchers (one Arrow builder per table; sealed by rows, age, hour)
//!   ──► BatchBus (Arc<TableBatch> to every sink) ──► ParquetSink (<data>/<table>/date=/hour=/)
//! ```
//! Kernel-side counters (syscall counts, drops) are drained every window into their own tables.
//! Rows the runner reports (sandbox lifecycle, metrics samples) join at the batchers, through a
//! queue into the reader task ([`SandboxRecorder`]).
//! Kill orders ([`Collector::kill_on_syscalls`] at a syscall's entry, [`Collector::kill_on_paths`]
//! at a file syscall's exit) are enforced in the kernel; each kill they make leaves the reader as
//! a [`KernelKill`] on its own channel as soon as it is read, besides its row.
//! Nothing is lost silently: a record the kernel could not write, or that the collector could not
//! decode, is counted in the `drops` table and in the [`Summary`].

mod batcher;
mod bus;
mod clock;
mod decode;
mod enrich;
mod kernel_offsets;
mod parquet_sink;
mod pipeline;
mod probes;
mod sandbox_rows;

use std::{io, path::PathBuf};

pub use batcher::BatchLimits;
pub use decode::{KernelKill, KillCause};
pub use parquet_sink::{ParquetOptions, ParquetSink, SinkSummary};
pub use pipeline::{Collector, CollectorConfig, DropTotals, Summary, WatchTarget, hostname};
pub use probes::{
    KernelKillOrder, KernelPathOrder, MAX_WATCH_LEVEL, PathMatch, PathOrderLeft, ProbeConfig,
    SandboxParent,
};
pub use sandbox_rows::{
    ApiCallRecord, SandboxEventRecord, SandboxLog, SandboxMetricsRecord, SandboxRecorder,
    command_line,
};

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// Loading, attaching or reading the kernel programs.
    #[error("{0}")]
    Probe(String),
    /// A setting that cannot work.
    #[error("{0}")]
    Config(String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("writing Parquet file {path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// A row handed in after the collector stopped (or after its reader failed).
    #[error("the collector has stopped: this {0} row was not recorded")]
    Stopped(sandwatch_schema::Table),
}
