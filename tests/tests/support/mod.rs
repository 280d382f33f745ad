//! What the integration tests share: running `sandwatch`, reading the audit log back, cgroups
//! that clean themselves up, workspaces holding the test job, and guards for sandboxes.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
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

/// The test job on the host (for `sandwatch watch` and unsandboxed runs).
pub fn job_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sw-test-job")
}

/// The test job as a sandbox sees it, once [`job_workspace`] put it in the workspace: the target
/// directory is not visible inside a sandbox.
pub const SANDBOXED_JOB: &str = "/workspace/sw-test-job";

/// The host uid (and gid) the sandbox's uid 0 maps to by default.
pub const MAPPED_ROOT: u32 = sandwatch_runner::sandbox::DEFAULT_HOST_ID_BASE;

/// A fresh directory to give a sandbox as its workspace, holding a copy of the test job (see
/// [`SANDBOXED_JOB`]). Removed on drop.
pub fn job_workspace() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("sw-test-job");
    fs::copy(job_bin(), &job).unwrap();
    fs::set_permissions(&job, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Writes a policy file `name` in `dir` and returns its path.
pub fn policy_file(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, yaml).unwrap();
    path
}

pub fn sandwatch(args: &[&str]) -> Output {
    sandwatch_with_pid(args).1
}

/// Runs sandwatch to its end; returns its pid (the runner's host pid) with its output.
pub fn sandwatch_with_pid(args: &[&str]) -> (u32, Output) {
    let child = Command::new(sandwatch_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running sandwatch");
    let pid = child.id();
    let out = child.wait_with_output().expect("running sandwatch");
    eprintln!(
        "sandwatch {args:?}: {}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (pid, out)
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A sandbox id no other test (nor another run of this one) uses.
pub fn unique_id(name: &str) -> String {
    format!("swt-{}-{name}", std::process::id())
}

/// Where a sandbox keeps its lock and ephemeral workspace by default.
pub fn runtime_dir(id: &str) -> PathBuf {
    Path::new(sandwatch_runner::sandbox::DEFAULT_RUNTIME_DIR).join(id)
}

/// Every cgroup directory sandbox `id` has or would have: the unified hierarchy's and those of
/// the v1 controllers that carry limits on a hybrid host (cpu, memory, pids).
pub fn sandbox_cgroups(id: &str) -> Vec<PathBuf> {
    let mut dirs = vec![unified_root().join("sandwatch").join(id)];
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mounts.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let opts = post.nth(1).unwrap_or("");
        if opts
            .split(',')
            .any(|o| matches!(o, "cpu" | "memory" | "pids"))
            && let Some(mountpoint) = pre.split_whitespace().nth(4)
        {
            dirs.push(Path::new(mountpoint).join("sandwatch").join(id));
        }
    }
    dirs
}

/// Host pids in sandbox `id`'s unified cgroup (empty when it has none or no longer exists).
pub fn sandbox_pids(id: &str) -> Vec<i32> {
    fs::read_to_string(
        unified_root()
            .join("sandwatch")
            .join(id)
            .join("cgroup.procs"),
    )
    .unwrap_or_default()
    .lines()
    .filter_map(|l| l.trim().parse().ok())
    .collect()
}

/// Whether a process named `comm` (its executable's name, as /proc shows it) runs in sandbox
/// `id`: the command has been executed, not only forked.
pub fn sandbox_runs(id: &str, comm: &str) -> bool {
    sandbox_pids(id)
        .iter()
        .any(|p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim_end() == comm))
}

/// Whether `pid` is a live process (a zombie waiting for its reaper counts as gone).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A `sandwatch run --sandbox-id ID` running in the background. On drop (a failed test too) it
/// is SIGKILLed and whatever its sandbox left is removed.
pub struct BackgroundRun {
    pub child: Child,
    pub id: String,
    pub runtime_dir: PathBuf,
}

impl BackgroundRun {
    /// Starts `sandwatch run --sandbox-id ID --data DATA [--runtime-dir DIR] EXTRA... -- CMD...`
    /// with its output piped, and waits until the command runs in the sandbox (a process named
    /// after `cmd[0]` is in its cgroup).
    pub fn start(
        id: &str,
        data: &Path,
        runtime_dir: Option<&Path>,
        extra: &[&str],
        cmd: &[&str],
    ) -> Self {
        let runtime = runtime_dir.map_or_else(
            || PathBuf::from(sandwatch_runner::sandbox::DEFAULT_RUNTIME_DIR),
            Path::to_owned,
        );
        let mut args = vec!["run", "--sandbox-id", id, "--data", data.to_str().unwrap()];
        args.extend_from_slice(&["--runtime-dir", runtime.to_str().unwrap()]);
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(cmd);
        let child = Command::new(sandwatch_bin())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running sandwatch");
        let run = Self {
            child,
            id: id.to_string(),
            runtime_dir: runtime,
        };
        let comm: String = Path::new(cmd[0])
            .file_name()
            .unwrap()
            .to_string_lossy()
            .chars()
            .take(15)
            .collect();
        wait_for(
            &format!("sandbox {id} to run {comm}"),
            Duration::from_secs(30),
            || sandbox_runs(id, &comm),
        );
        run
    }
}

impl BackgroundRun {
    /// Waits up to `timeout` for the runner to exit and returns its status and output (a runner
    /// still alive then is killed, and the test fails).
    #[allow(dead_code)]
    pub fn finish(mut self, timeout: Duration) -> Output {
        use std::io::Read as _;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("waiting for sandwatch") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "sandwatch run did not end within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_end(&mut stdout);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_end(&mut stderr);
        }
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

/// `sandwatch watch --data DATA --cgroup CGROUP` running in the background, its stderr collected.
/// Dropped before [`WatchRun::stop`] (a failed test), it is killed.
pub struct WatchRun {
    child: Child,
    logger: Option<std::thread::JoinHandle<String>>,
}

impl WatchRun {
    /// Starts the watch and waits until it says it is watching.
    pub fn start(data: &Path, cgroup: &str) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(sandwatch_bin())
            .args([
                "watch",
                "--data",
                data.to_str().unwrap(),
                "--cgroup",
                cgroup,
            ])
            .stderr(Stdio::piped())
            .spawn()
            .expect("running sandwatch watch");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let logger = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("watching") {
                    let _ = tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let run = Self {
            child,
            logger: Some(logger),
        };
        rx.recv_timeout(Duration::from_secs(30))
            .expect("sandwatch watch started");
        run
    }

    /// Stops it with SIGINT (it flushes and exits) and returns its status and stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "sandwatch watch did not stop on SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.logger.take().unwrap().join().unwrap();
        eprintln!("{log}");
        (status, log)
    }
}

impl Drop for WatchRun {
    fn drop(&mut self) {
        if self.logger.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for BackgroundRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.runtime_dir.join(&self.id).exists()
            || sandbox_cgroups(&self.id).iter().any(|d| d.exists())
        {
            // The runner is dead, so its lock is free: clean_stale takes the sandbox.
            if let Ok(root) = sandwatch_runner::CgroupRoot::discover() {
                sandwatch_runner::sandbox::clean_stale(&root, &self.runtime_dir);
            }
        }
    }
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

/// A sandbox made through the runner library. Keep `workspace` bound for the sandbox's life
/// (`workspace: _workspace`, not `..`, which drops it at once and removes the directory the
/// sandbox mounted).
pub struct Fixture {
    pub sandbox: sandwatch_runner::sandbox::Sandbox,
    pub workspace: tempfile::TempDir,
}

/// Creates sandbox `unique_id(name)` under the default preset overlaid with `policy_yaml`, with
/// `workspace` mounted as its workspace and the built `sandwatch` as its init.
pub async fn sandbox_in(name: &str, policy_yaml: &str, workspace: tempfile::TempDir) -> Fixture {
    use sandwatch_runner::{
        CgroupRoot, SandboxPolicy,
        sandbox::{Sandbox, SandboxOptions},
    };
    require_root();
    let policy = SandboxPolicy::from_yaml(name, policy_yaml).expect("a valid test policy");
    let mut opts = SandboxOptions::new(unique_id(name), policy);
    opts.workspace = Some(workspace.path().to_owned());
    opts.init_exe = sandwatch_bin();
    let root = CgroupRoot::discover().unwrap();
    let sandbox = Sandbox::create(&root, opts)
        .await
        .unwrap_or_else(|e| panic!("creating sandbox {name}: {e}"));
    Fixture { sandbox, workspace }
}

/// A command request for `argv`, everything else default.
pub fn request(argv: &[&str]) -> sandwatch_runner::sandbox::CommandRequest {
    sandwatch_runner::sandbox::CommandRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}
