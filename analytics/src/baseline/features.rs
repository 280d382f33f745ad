//! Feature vectors: per sandbox, per window of its life (counted from its first event), what it
//! did in numbers: process, file and network activity, bytes sent, distinct paths, destinations
//! and executables, and the syscall mix from `syscall_counts`. Counts enter as `ln(1 + n)`, so a
//! job twice as busy is one step away, not a thousand.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use datafusion::arrow::{
    array::{Array, AsArray, RecordBatch},
    compute::cast,
    datatypes::{DataType, UInt64Type},
};
use sandwatch_schema::Table;

use super::terms::{Columns, int, is_write, text};

/// The fixed features, in vector order; the syscall mix follows (`syscall:<name>`).
pub const BASE_FEATURES: [&str; 16] = [
    "execs",
    "clones",
    "exits",
    "file_reads",
    "file_writes",
    "file_failures",
    "distinct_paths",
    "connects",
    "datagrams_sent",
    "other_network",
    "network_failures",
    "bytes_sent",
    "destinations",
    "sensitive_syscalls",
    "refused_syscalls",
    "distinct_executables",
];

#[derive(Default, Clone, Debug)]
struct Window {
    base: [u64; BASE_FEATURES.len()],
    paths: BTreeSet<String>,
    destinations: BTreeSet<String>,
    executables: BTreeSet<String>,
    syscalls: HashMap<String, u64>,
    /// Time of the last row that fell in the window.
    last_ns: i64,
}

/// A finished window of one sandbox.
#[derive(Clone, Debug)]
pub struct WindowVector {
    pub sandbox_id: String,
    /// Index of the window in the sandbox's life (0: its first `window_ms`).
    pub window: u64,
    pub start_ns: i64,
    pub values: Vec<f64>,
}

/// Counts rows into windows, per sandbox.
pub struct FeatureAccumulator {
    window_ms: i64,
    /// Each sandbox's first event: where its windows start.
    starts: HashMap<String, i64>,
    windows: BTreeMap<(String, u64), Window>,
}

impl FeatureAccumulator {
    pub fn new(window_ms: i64) -> Self {
        Self {
            window_ms: window_ms.max(1),
            starts: HashMap::new(),
            windows: BTreeMap::new(),
        }
    }

    /// Where a sandbox's windows start (its `created` row), when known before its events.
    pub fn set_start(&mut self, sandbox: &str, t: i64) {
        let s = self.starts.entry(sandbox.to_owned()).or_insert(t);
        *s = (*s).min(t);
    }

    fn window(&mut self, sandbox: &str, t: i64) -> &mut Window {
        let start = *self.starts.entry(sandbox.to_owned()).or_insert(t);
        let idx = u64::try_from((t - start).max(0) / (self.window_ms * 1_000_000)).unwrap_or(0);
        let w = self.windows.entry((sandbox.to_owned(), idx)).or_default();
        w.last_ns = w.last_ns.max(t);
        w
    }

    /// Counts every row of `batch`.
    pub fn add(&mut self, table: Table, batch: &RecordBatch) {
        let cols = Columns::of(batch);
        let n = batch.num_rows();
        let str_col = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| cast(c, &DataType::Utf8).ok())
        };
        let int_col = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| cast(c, &DataType::Int64).ok())
        };
        let feature = |name: &str| {
            BASE_FEATURES
                .iter()
                .position(|f| *f == name)
                .expect("a base feature")
        };
        match table {
            Table::ProcessEvents => {
                let filename = str_col("filename");
                for i in 0..n {
                    let (Some(sb), Some(ev)) = (cols.sandbox(i), cols.event(i)) else {
                        continue;
                    };
                    let ok = cols.ret(i).is_none_or(|r| r >= 0);
                    let file = text(filename.as_ref(), i).map(str::to_owned);
                    let w = self.window(sb, cols.time(i));
                    match ev {
                        "execve" | "execveat" if ok => {
                            w.base[feature("execs")] += 1;
                            if let Some(f) = file {
                                w.executables.insert(f);
                            }
                        }
                        "clone" | "clone3" | "fork" | "vfork" => w.base[feature("clones")] += 1,
                        "exit" => w.base[feature("exits")] += 1,
                        _ => {}
                    }
                }
            }
            Table::FileEvents => {
                let path = str_col("path");
                let flags = int_col("flags");
                for i in 0..n {
                    let (Some(sb), Some(ev)) = (cols.sandbox(i), cols.event(i)) else {
                        continue;
                    };
                    let write = is_write(ev, int(flags.as_ref(), i));
                    let failed = cols.ret(i).is_some_and(|r| r < 0);
                    let p = text(path.as_ref(), i).map(str::to_owned);
                    let w = self.window(sb, cols.time(i));
                    w.base[feature(if write { "file_writes" } else { "file_reads" })] += 1;
                    if failed {
                        w.base[feature("file_failures")] += 1;
                    }
                    if let Some(p) = p {
                        w.paths.insert(p);
                    }
                }
            }
            Table::NetworkEvents => {
                let daddr = str_col("daddr");
                let dport = int_col("dport");
                let bytes = int_col("bytes");
                for i in 0..n {
                    let (Some(sb), Some(ev)) = (cols.sandbox(i), cols.event(i)) else {
                        continue;
                    };
                    // EINPROGRESS is a non-blocking connect under way, not a failure.
                    let failed = cols.ret(i).is_some_and(|r| r < 0 && r != -115);
                    let dest = text(daddr.as_ref(), i)
                        .map(|d| format!("{d}:{}", int(dport.as_ref(), i).unwrap_or(0)));
                    let sent = int(bytes.as_ref(), i).unwrap_or(0).max(0) as u64;
                    let w = self.window(sb, cols.time(i));
                    match ev {
                        "connect" => w.base[feature("connects")] += 1,
                        "sendto" | "sendmsg" => w.base[feature("datagrams_sent")] += 1,
                        _ => w.base[feature("other_network")] += 1,
                    }
                    if failed {
                        w.base[feature("network_failures")] += 1;
                    }
                    w.base[feature("bytes_sent")] += sent;
                    if let Some(d) = dest {
                        w.destinations.insert(d);
                    }
                }
            }
            Table::SyscallEvents => {
                let refused = batch.column_by_name("refused").map(|c| c.as_boolean());
                for i in 0..n {
                    let Some(sb) = cols.sandbox(i) else { continue };
                    let r = refused.is_some_and(|a| a.is_valid(i) && a.value(i));
                    let w = self.window(sb, cols.time(i));
                    w.base[feature("sensitive_syscalls")] += 1;
                    if r {
                        w.base[feature("refused_syscalls")] += 1;
                    }
                }
            }
            Table::SyscallCounts => {
                let name = str_col("syscall");
                let count = batch
                    .column_by_name("count")
                    .and_then(|c| cast(c, &DataType::UInt64).ok());
                for i in 0..n {
                    let (Some(sb), Some(s)) = (cols.sandbox(i), text(name.as_ref(), i)) else {
                        continue;
                    };
                    let c = count
                        .as_ref()
                        .map(|c| c.as_primitive::<UInt64Type>())
                        .filter(|c| c.is_valid(i))
                        .map_or(0, |c| c.value(i));
                    // A count row closes its window: it belongs to the window it ends.
                    let t = cols.time(i) - 1;
                    *self.window(sb, t).syscalls.entry(s.to_owned()).or_default() += c;
                }
            }
            _ => {}
        }
    }

    /// Syscalls counted so far, for the model's vocabulary.
    pub fn syscalls_seen(&self) -> BTreeSet<String> {
        self.windows
            .values()
            .flat_map(|w| w.syscalls.keys().cloned())
            .collect()
    }

    /// Windows whose end is before `now_ns` (live scoring: they can grow no more), or every
    /// window with `None`; they are removed.
    pub fn take_finished(&mut self, now_ns: Option<i64>, vocab: &[String]) -> Vec<WindowVector> {
        let span = self.window_ms * 1_000_000;
        let done: Vec<(String, u64)> = self
            .windows
            .keys()
            .filter(|(sb, idx)| match now_ns {
                None => true,
                Some(now) => {
                    let start = self.starts.get(sb).copied().unwrap_or(0);
                    // A second of grace for the syscall counts of the window's last second.
                    start + (*idx as i64 + 1) * span + 1_000_000_000 < now
                }
            })
            .cloned()
            .collect();
        done.into_iter()
            .map(|key| {
                let w = self.windows.remove(&key).expect("listed");
                let start = self.starts.get(&key.0).copied().unwrap_or(0) + key.1 as i64 * span;
                WindowVector {
                    values: vector(&w, vocab),
                    sandbox_id: key.0,
                    window: key.1,
                    start_ns: start,
                }
            })
            .collect()
    }

    /// Every window of one sandbox, removed (its end: nothing more will come).
    pub fn take_sandbox(&mut self, sandbox: &str, vocab: &[String]) -> Vec<WindowVector> {
        let span = self.window_ms * 1_000_000;
        let keys: Vec<(String, u64)> = self
            .windows
            .keys()
            .filter(|(sb, _)| sb == sandbox)
            .cloned()
            .collect();
        let start = self.starts.remove(sandbox).unwrap_or(0);
        keys.into_iter()
            .map(|key| {
                let w = self.windows.remove(&key).expect("listed");
                WindowVector {
                    values: vector(&w, vocab),
                    start_ns: start + key.1 as i64 * span,
                    sandbox_id: key.0,
                    window: key.1,
                }
            })
            .collect()
    }
}

/// The names of a vector's values for a syscall vocabulary.
pub fn feature_names(vocab: &[String]) -> Vec<String> {
    BASE_FEATURES
        .iter()
        .map(|f| (*f).to_owned())
        .chain(vocab.iter().map(|s| format!("syscall:{s}")))
        .chain(std::iter::once("syscall:other".to_owned()))
        .collect()
}

fn vector(w: &Window, vocab: &[String]) -> Vec<f64> {
    let mut base = w.base;
    let distinct = |name: &str| BASE_FEATURES.iter().position(|f| *f == name).expect("base");
    base[distinct("distinct_paths")] = w.paths.len() as u64;
    base[distinct("destinations")] = w.destinations.len() as u64;
    base[distinct("distinct_executables")] = w.executables.len() as u64;
    let other: u64 = w
        .syscalls
        .iter()
        .filter(|(s, _)| !vocab.contains(s))
        .map(|(_, c)| c)
        .sum();
    base.iter()
        .copied()
        .chain(
            vocab
                .iter()
                .map(|s| w.syscalls.get(s).copied().unwrap_or(0)),
        )
        .chain(std::iter::once(other))
        .map(|c| (c as f64).ln_1p())
        .collect()
}
