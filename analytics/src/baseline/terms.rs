//! New terms: what a sandbox did, as a set of comparable words per kind (executables run, file
//! path prefixes read and written, destinations contacted, syscalls used), read off the event
//! tables' batches.
//!
//! A term must be the same in two runs of the same job, or every run looks new: paths are
//! normalized. Below the trees a job owns (`/workspace`, `/tmp`, `/var/tmp`, `/dev/shm`, and
//! relative paths, which are relative to the workspace), file names are the job's own choice
//! and vary run to run, so only the tree is kept, plus the first hidden component (`.bashrc`,
//! `.git`, `.ssh`): dotfiles are where persistence and credentials live. Elsewhere the first
//! three components are kept, with digit runs folded to `#` (`/proc/#/status`,
//! `/usr/lib/python#.#`).

use std::collections::BTreeSet;

use datafusion::arrow::{
    array::{Array, ArrayRef, AsArray, RecordBatch},
    compute::cast,
    datatypes::{DataType, Int64Type, UInt64Type},
};
use sandwatch_schema::Table;

use crate::AnalyticsError;

/// What a term names.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TermKind {
    Executable,
    FileRead,
    FileWrite,
    Destination,
    Syscall,
}

impl TermKind {
    pub const ALL: [TermKind; 5] = [
        TermKind::Executable,
        TermKind::FileRead,
        TermKind::FileWrite,
        TermKind::Destination,
        TermKind::Syscall,
    ];

    /// How an alert says it: "new executable".
    pub fn describe(self) -> &'static str {
        match self {
            TermKind::Executable => "executable",
            TermKind::FileRead => "file read",
            TermKind::FileWrite => "file write",
            TermKind::Destination => "destination",
            TermKind::Syscall => "syscall",
        }
    }
}

/// One term seen in one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermHit {
    pub sandbox_id: String,
    pub kind: TermKind,
    pub term: String,
    pub time_ns: i64,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub event: String,
}

const OWNED_TREES: [&str; 4] = ["workspace", "tmp", "var/tmp", "dev/shm"];

/// Open-family syscalls: read or write by their flags; the other file syscalls change a path.
const OPEN_FAMILY: [&str; 3] = ["open", "openat", "openat2"];
const O_ACCMODE: i64 = 3;
const O_CREAT: i64 = 0o100;

fn fold_digits(c: &str) -> String {
    let mut out = String::with_capacity(c.len());
    let mut in_digits = false;
    for ch in c.chars() {
        if ch.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(ch);
            in_digits = false;
        }
    }
    out
}

/// A path as a term (see the module docs).
pub fn normalize_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let owned = if absolute {
        OWNED_TREES.iter().find_map(|t| {
            let n = t.split('/').count();
            (parts.len() >= n && parts[..n].join("/") == *t).then_some(n)
        })
    } else {
        Some(0)
    };
    if let Some(n) = owned {
        let root = if absolute {
            format!("/{}", parts[..n].join("/"))
        } else {
            ".".to_owned()
        };
        let rest = &parts[n..];
        return match rest.iter().position(|c| c.starts_with('.') && *c != "..") {
            Some(0) => format!("{root}/{}", rest[0]),
            Some(i) => format!("{root}/*/{}", rest[i]),
            None if rest.is_empty() => root,
            None => format!("{root}/*"),
        };
    }
    let kept: Vec<String> = parts.iter().take(3).map(|c| fold_digits(c)).collect();
    format!("/{}", kept.join("/"))
}

/// An executable as a term: its normalized path, but the file name is kept below the trees a job
/// owns (a job's own `./build/app` is the same program in every run; `/tmp/x` run from /tmp is
/// worth a word of its own).
pub fn normalize_executable(path: &str) -> String {
    let dir = normalize_path(path);
    let name = path.rsplit('/').next().unwrap_or(path);
    if dir.starts_with('/') && !OWNED_TREES.iter().any(|t| dir[1..].starts_with(t)) {
        // A system path: keep it whole, with digits folded (python3.11 → python#.#).
        let parts: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(fold_digits)
            .collect();
        return format!("/{}", parts.join("/"));
    }
    let dir = dir.trim_end_matches("/*");
    format!("{dir}/…/{}", fold_digits(name))
}

/// A column as text, whatever string type the batch carries it in.
fn strings(batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    let c = batch.column_by_name(name)?;
    match c.data_type() {
        DataType::Utf8 => Some(c.clone()),
        _ => cast(c, &DataType::Utf8).ok(),
    }
}

fn ints(batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    let c = batch.column_by_name(name)?;
    cast(c, &DataType::Int64).ok()
}

/// The columns term and feature extraction read, resolved once per batch.
pub(crate) struct Columns {
    pub sandbox: Option<ArrayRef>,
    pub time: Option<ArrayRef>,
    pub event: Option<ArrayRef>,
    pub ret: Option<ArrayRef>,
    pub pid: Option<ArrayRef>,
    pub tid: Option<ArrayRef>,
}

impl Columns {
    pub fn of(batch: &RecordBatch) -> Self {
        Self {
            sandbox: strings(batch, "sandbox_id"),
            time: ints(batch, "time"),
            event: strings(batch, "event"),
            ret: ints(batch, "ret"),
            pid: ints(batch, "pid"),
            tid: ints(batch, "tid"),
        }
    }

    pub fn sandbox(&self, i: usize) -> Option<&str> {
        text(self.sandbox.as_ref(), i)
    }
    pub fn event(&self, i: usize) -> Option<&str> {
        text(self.event.as_ref(), i)
    }
    pub fn time(&self, i: usize) -> i64 {
        int(self.time.as_ref(), i).unwrap_or(0)
    }
    pub fn ret(&self, i: usize) -> Option<i64> {
        int(self.ret.as_ref(), i)
    }
    fn pid(&self, i: usize) -> Option<u32> {
        int(self.pid.as_ref(), i).and_then(|v| u32::try_from(v).ok())
    }
    fn tid(&self, i: usize) -> Option<u32> {
        int(self.tid.as_ref(), i).and_then(|v| u32::try_from(v).ok())
    }
}

pub(crate) fn text(a: Option<&ArrayRef>, i: usize) -> Option<&str> {
    let a = a?.as_string::<i32>();
    a.is_valid(i).then(|| a.value(i))
}

pub(crate) fn int(a: Option<&ArrayRef>, i: usize) -> Option<i64> {
    let a = a?.as_primitive::<Int64Type>();
    a.is_valid(i).then(|| a.value(i))
}

/// Whether a file row writes: an open asking for write access or creation; every other
/// syscall of `file_events` (creat, unlink, rename, chmod, mkdir, link, mount, ...) changes a path.
pub(crate) fn is_write(event: &str, flags: Option<i64>) -> bool {
    if OPEN_FAMILY.contains(&event) {
        let f = flags.unwrap_or(0);
        return f & O_ACCMODE != 0 || f & O_CREAT != 0;
    }
    true
}

/// Every term in `batch` of `table`, in row order.
pub fn terms_of(table: Table, batch: &RecordBatch) -> Result<Vec<TermHit>, AnalyticsError> {
    let cols = Columns::of(batch);
    let mut out = Vec::new();
    let mut push = |i: usize, kind: TermKind, term: String| {
        let Some(sb) = cols.sandbox(i) else { return };
        out.push(TermHit {
            sandbox_id: sb.to_owned(),
            kind,
            term,
            time_ns: cols.time(i),
            pid: cols.pid(i),
            tid: cols.tid(i),
            event: cols.event(i).unwrap_or_default().to_owned(),
        });
    };
    match table {
        Table::ProcessEvents => {
            let filename = strings(batch, "filename");
            let exe = strings(batch, "exe");
            for i in 0..batch.num_rows() {
                if !matches!(cols.event(i), Some("execve" | "execveat")) || cols.ret(i) != Some(0) {
                    continue;
                }
                if let Some(p) = text(filename.as_ref(), i).or_else(|| text(exe.as_ref(), i)) {
                    push(i, TermKind::Executable, normalize_executable(p));
                }
            }
        }
        Table::FileEvents => {
            let path = strings(batch, "path");
            let flags = ints(batch, "flags");
            for i in 0..batch.num_rows() {
                let (Some(ev), Some(p)) = (cols.event(i), text(path.as_ref(), i)) else {
                    continue;
                };
                let kind = if is_write(ev, int(flags.as_ref(), i)) {
                    TermKind::FileWrite
                } else {
                    TermKind::FileRead
                };
                push(i, kind, normalize_path(p));
            }
        }
        Table::NetworkEvents => {
            let daddr = strings(batch, "daddr");
            let dport = ints(batch, "dport");
            let proto = strings(batch, "protocol");
            let family = strings(batch, "family");
            for i in 0..batch.num_rows() {
                if !matches!(cols.event(i), Some("connect" | "sendto" | "sendmsg")) {
                    continue;
                }
                let Some(d) = text(daddr.as_ref(), i) else {
                    continue;
                };
                let term = if text(family.as_ref(), i) == Some("unix") {
                    format!("unix:{}", normalize_path(d))
                } else {
                    let port = int(dport.as_ref(), i).map_or("?".into(), |p| p.to_string());
                    let proto = text(proto.as_ref(), i).unwrap_or("ip");
                    format!("{d}:{port}/{proto}")
                };
                push(i, TermKind::Destination, term);
            }
        }
        Table::SyscallEvents => {
            for i in 0..batch.num_rows() {
                if let Some(ev) = cols.event(i) {
                    push(i, TermKind::Syscall, ev.to_owned());
                }
            }
        }
        Table::SyscallCounts => {
            let name = strings(batch, "syscall");
            let count = batch
                .column_by_name("count")
                .and_then(|c| cast(c, &DataType::UInt64).ok());
            for i in 0..batch.num_rows() {
                let n = count
                    .as_ref()
                    .map(|c| c.as_primitive::<UInt64Type>())
                    .filter(|c| c.is_valid(i))
                    .map_or(0, |c| c.value(i));
                if n == 0 {
                    continue;
                }
                if let Some(s) = text(name.as_ref(), i) {
                    push(i, TermKind::Syscall, s.to_owned());
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// The distinct terms of each kind of one sandbox.
pub type TermSet = BTreeSet<(TermKind, String)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_owned_trees_keep_only_the_tree_and_dotfiles() {
        assert_eq!(
            normalize_path("/workspace/out/run_3/data.json"),
            "/workspace/*"
        );
        assert_eq!(normalize_path("/workspace/.bashrc"), "/workspace/.bashrc");
        assert_eq!(
            normalize_path("/workspace/repo/.git/objects/ab/cd"),
            "/workspace/*/.git"
        );
        assert_eq!(normalize_path("/tmp/tmpk2j_9x1a/x.py"), "/tmp/*");
        assert_eq!(normalize_path("/tmp"), "/tmp");
        assert_eq!(normalize_path("/var/tmp/a"), "/var/tmp/*");
        assert_eq!(normalize_path("out.txt"), "./*");
        assert_eq!(normalize_path("./.profile"), "./.profile");
        assert_eq!(normalize_path("../x/y"), "./*");
    }

    #[test]
    fn system_paths_keep_three_components_with_digits_folded() {
        assert_eq!(
            normalize_path("/usr/lib/python3.11/json/__init__.py"),
            "/usr/lib/python#.#"
        );
        assert_eq!(normalize_path("/proc/4711/status"), "/proc/#/status");
        assert_eq!(normalize_path("/etc/shadow"), "/etc/shadow");
        assert_eq!(
            normalize_path("/etc/ssh/sshd_config"),
            "/etc/ssh/sshd_config"
        );
        assert_eq!(normalize_path("/"), "/");
    }

    #[test]
    fn executables() {
        assert_eq!(
            normalize_executable("/usr/bin/python3.11"),
            "/usr/bin/python#.#"
        );
        assert_eq!(normalize_executable("/usr/bin/whoami"), "/usr/bin/whoami");
        assert_eq!(
            normalize_executable("/workspace/build/app"),
            "/workspace/…/app"
        );
        assert_eq!(normalize_executable("./a.out"), "./…/a.out");
        assert_eq!(normalize_executable("/tmp/x"), "/tmp/…/x");
        assert_eq!(
            normalize_executable("/usr/lib/gcc/x86_64-linux-gnu/12/cc1"),
            "/usr/lib/gcc/x#_#-linux-gnu/#/cc#"
        );
    }
}
