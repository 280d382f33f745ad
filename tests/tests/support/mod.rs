//! What the integration tests share: running `sandwatch`, reading the audit log back, and
//! cgroups that clean themselves up.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The tests need root: they load BPF programs and create cgroups. They fail, never skip.
pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the integration tests load eBPF programs and create cgroups: run them as root (cargo xtask test)"
    );
}

pub fn sandwatch_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SANDWATCH_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/<test> → target/debug/sandwatch
    let exe = std::env::current_exe().expect("test executable path");
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("sandwatch"))
        .expect("target dir");
    assert!(
        candidate.exists(),
        "{} not built: run `cargo build --bin sandwatch` or `cargo xtask test`",
        candidate.display()
    );
    candidate
}

pub fn job_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sw-test-job")
}

pub fn sandwatch(args: &[&str]) -> Output {
    let out = Command::new(sandwatch_bin())
        .args(args)
        .output()
        .expect("running sandwatch");
    eprintln!(
        "sandwatch {args:?}: {}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One table read back from Parquet, every value rendered as text (lists as `[a, b]`), nulls
/// as None.
pub struct Rows {
    pub rows: Vec<HashMap<String, Option<String>>>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn filter(
        &self,
        pred: impl Fn(&HashMap<String, Option<String>>) -> bool,
    ) -> Vec<&HashMap<String, Option<String>>> {
        self.rows.iter().filter(|r| pred(r)).collect()
    }

    /// Rows whose `col` is `value`.
    pub fn with(&self, col: &str, value: &str) -> Vec<&HashMap<String, Option<String>>> {
        self.filter(|r| get(r, col) == Some(value))
    }
}

pub fn get<'a>(row: &'a HashMap<String, Option<String>>, col: &str) -> Option<&'a str> {
    row.get(col)
        .unwrap_or_else(|| panic!("no column {col}"))
        .as_deref()
}

pub fn parquet_files(data: &Path, table: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![data.join(table)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn read_table(data: &Path, table: &str) -> Rows {
    let mut rows = Vec::new();
    for path in parquet_files(data, table) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".parquet") && !name.starts_with('.'),
            "unexpected file in the audit log: {}",
            path.display()
        );
        let file = fs::File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            rows.extend(render(&batch.unwrap()));
        }
    }
    Rows { rows }
}

fn render(batch: &RecordBatch) -> Vec<HashMap<String, Option<String>>> {
    let opts = FormatOptions::default();
    let schema = batch.schema();
    // Times as integer nanoseconds: arrow's formatter needs chrono-tz for the "UTC" zone name.
    let columns: Vec<arrow_array::ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            arrow_schema::DataType::Timestamp(..) => {
                arrow_cast::cast(c, &arrow_schema::DataType::Int64).unwrap()
            }
            _ => c.clone(),
        })
        .collect();
    let formatters: Vec<_> = columns
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|i| {
            schema
                .fields()
                .iter()
                .enumerate()
                .map(|(c, f)| {
                    let v =
                        (!batch.column(c).is_null(i)).then(|| formatters[c].value(i).to_string());
                    (f.name().clone(), v)
                })
                .collect()
        })
        .collect()
}

/// Runs a SQL query with DuckDB (Python), an independent Parquet reader; returns its rows as
/// JSON arrays.
pub fn duckdb(sql: &str) -> Vec<serde_json::Value> {
    let script = format!(
        "import duckdb, json\nrows = duckdb.sql({sql:?}).fetchall()\nprint(json.dumps([list(r) for r in rows], default=str))"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "duckdb failed (is it installed? `cargo xtask setup` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

/// A cgroup the test creates in the unified hierarchy and removes on drop, killing what is left
/// in it first.
pub struct TestCgroup {
    pub path: PathBuf,
    /// Path relative to the hierarchy's root, as `sandwatch watch --cgroup` takes it.
    pub name: String,
}

pub fn unified_root() -> PathBuf {
    for p in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let p = Path::new(p);
        if p.join("cgroup.procs").exists()
            && fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .contains(&format!(" {} ", p.display()))
        {
            let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
            if mounts
                .lines()
                .any(|l| l.contains(&format!(" {} ", p.display())) && l.contains(" - cgroup2 "))
            {
                return p.to_owned();
            }
        }
    }
    panic!("no cgroup2 hierarchy mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified");
}

impl TestCgroup {
    pub fn create(name: &str) -> Self {
        let root = unified_root();
        let rel = format!("sandwatch-test-{}-{name}", std::process::id());
        let path = root.join(&rel);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self {
            path,
            name: format!("/{rel}"),
        }
    }

    pub fn child(&self, name: &str) -> TestCgroup {
        let path = self.path.join(name);
        fs::create_dir(&path).unwrap();
        TestCgroup {
            path,
            name: format!("{}/{name}", self.name),
        }
    }

    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(&self.path).unwrap().ino()
    }

    pub fn add(&self, pid: u32) {
        fs::write(self.path.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Children first (a depth-first walk), each killed and removed.
        let mut dirs = vec![self.path.clone()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(entries) = fs::read_dir(&dirs[i]) {
                dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            i += 1;
        }
        for dir in dirs.iter().rev() {
            let _ = fs::write(dir.join("cgroup.kill"), "1");
            for _ in 0..200 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}
