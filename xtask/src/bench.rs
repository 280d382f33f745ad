//! Benchmarks (`cargo xtask bench ...`).
//!
//! `bench probes` measures, in one run so that every ratio compares like with like:
//!
//! 1. **Unwatched host**: what a running `sandwatch watch` costs processes it does not watch.
//!    W1 (`dd bs=512`, two cheap syscalls per block) and W2 (`sw-getppid-loop`, the cheapest
//!    syscall there is) run outside any watched cgroup, with no sandwatch running (baseline) and
//!    while `sandwatch watch` records a cgroup this benchmark creates and populates with a
//!    `sleep`.
//! 2. **Watched**: the same workloads inside `sandwatch run`, against the same baseline.
//! 3. **Full counting**: as 1, with `sandwatch watch --count-all-syscalls`.
//! 4. **Throughput**: `sandwatch run -- sw-event-gen TOTAL RATE` for increasing rates; the rows
//!    that reach the Parquet files are counted (from the summary and, with duckdb, from the files),
//!    and sandwatch's own CPU time is sampled from /proc.
//!
//! And, when `perf` is installed, a reference in the same rounds (not sandwatch): `perf stat -a`
//! counting one syscall's enter/exit tracepoints. Any enabled syscall tracepoint sets the
//! syscall-tracepoint work flag on every task, so this is the floor under section 1 for any
//! design built on syscall tracepoints.
//!
//! Method:
//!
//! - Every workload times itself (dd prints "copied, X s"; `sw-getppid-loop --elapsed` prints
//!   `elapsed_ns=`), so that process start-up and sandwatch's own start and stop are not timed.
//! - One *round* runs every (mode, workload) pair once; the order of the modes is reversed on every
//!   other round (and the workload order alternates), so that slow drift of a noisy host cancels.
//!   Medians over the rounds are reported.
//! - Contamination: when a sandwatch process exits, its probes are detached by a detached
//!   grandchild, one syscall tracepoint after another, for ~6 s; until it is gone the host still
//!   pays for them. Before every sample we therefore wait until no sandwatch process (found by
//!   `/proc/PID/exe`) is left other than the one the sample is about, whoever started it: other
//!   users of this host run sandwatch too. While a sample runs, a monitor thread watches for any
//!   other sandwatch process appearing; such a sample is retried (twice), and if it still was
//!   not clean it is kept but flagged (`*`) in the raw samples.
//! - Ctrl-C (or SIGTERM) stops at the next step; the guards then stop the background sandwatch
//!   with SIGINT and wait for it, kill the `sleep` and remove the cgroup and the scratch data.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, ErrorKind},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Subcommand;

#[derive(Subcommand, Clone, Debug)]
pub enum Suite {
    /// Probe overhead on watched and unwatched workloads, and the highest loss-free event rate.
    Probes(ProbesArgs),
    /// Create + run /bin/true + destroy and 20 sandboxes at once, against bubblewrap.
    Sandbox(crate::bench_sandbox::SandboxArgs),
    /// Rule-engine throughput on one core over a recorded audit log, and detection-to-kill
    /// latency.
    Rules(crate::bench_rules::RulesArgs),
    /// Five investigations over a generated audit log of 50M events, sandwatch's SQL against
    /// DuckDB on the same files.
    Sql(crate::bench_sql::SqlArgs),
}

#[derive(clap::Args, Clone, Debug)]
pub struct ProbesArgs {
    /// Rounds of every overhead measurement (medians are reported) [default: 5, --quick: 3].
    #[arg(long, value_name = "N")]
    pub reps: Option<usize>,
    /// A smoke run (~3 minutes): smaller workloads, fewer rounds and rates, shorter event runs.
    #[arg(long)]
    pub quick: bool,
    /// Target event rates of the throughput runs, events/s, comma-separated; 0 = unthrottled
    /// [default: 250000,500000,750000,1000000,1500000,2000000,0].
    #[arg(long, value_name = "RATES", value_delimiter = ',')]
    pub rates: Option<Vec<u64>>,
    /// Seconds' worth of events per throughput run (at the target rate, or at the generator's
    /// ceiling when that is lower) [default: 3, --quick: 1].
    #[arg(long, value_name = "SECS")]
    pub event_seconds: Option<f64>,
    /// Generator threads of the throughput runs: one thread's syscalls cannot keep sandwatch
    /// busy on this machine, two share the cores with the collector [default: 2].
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub generators: u64,
    /// Skip the overhead sections (1-3).
    #[arg(long)]
    pub no_overhead: bool,
    /// Skip the throughput section (4).
    #[arg(long)]
    pub no_throughput: bool,
}

pub fn run(suite: Suite) -> anyhow::Result<()> {
    match suite {
        Suite::Probes(args) => probes(args),
        Suite::Sandbox(args) => crate::bench_sandbox::run(args),
        Suite::Rules(args) => crate::bench_rules::run(args),
        Suite::Sql(args) => crate::bench_sql::run(args),
    }
}

// ---------------------------------------------------------------------------------------------
// Plan

const DEFAULT_RATES: &[u64] = &[
    250_000, 500_000, 750_000, 1_000_000, 1_500_000, 2_000_000, 0,
];
const QUICK_RATES: &[u64] = &[500_000, 1_000_000, 0];
/// Targets of the README's performance section.
const TARGET_UNWATCHED: f64 = 1.05;
const TARGET_WATCHED: f64 = 1.50;
const TARGET_RATE: f64 = 500_000.0;
const STRETCH_RATE: f64 = 1_000_000.0;
/// The path sw-event-gen opens (see tests/src/bin/sw-event-gen.rs).
const EVENT_PATH: &str = "nonexistent-sandwatch-bench";
/// How long to wait for other sandwatch processes to go before measuring anyway (flagged).
const QUIET_TIMEOUT: Duration = Duration::from_secs(180);
/// Attempts per sample when another sandwatch process shows up during it.
const ATTEMPTS: usize = 3;

struct Plan {
    quick: bool,
    reps: usize,
    dd_count: u64,
    getppid_n: u64,
    rates: Vec<u64>,
    event_secs: f64,
    min_total: u64,
    overhead: bool,
    throughput: bool,
    generators: u64,
}

impl Plan {
    fn new(a: &ProbesArgs) -> anyhow::Result<Self> {
        let plan = Self {
            quick: a.quick,
            reps: a.reps.unwrap_or(if a.quick { 3 } else { 5 }),
            dd_count: if a.quick { 500_000 } else { 2_000_000 },
            getppid_n: if a.quick { 1_500_000 } else { 5_000_000 },
            rates: a.rates.clone().unwrap_or_else(|| {
                if a.quick {
                    QUICK_RATES.to_vec()
                } else {
                    DEFAULT_RATES.to_vec()
                }
            }),
            event_secs: a.event_seconds.unwrap_or(if a.quick { 1.0 } else { 3.0 }),
            min_total: if a.quick { 300_000 } else { 1_000_000 },
            overhead: !a.no_overhead,
            throughput: !a.no_throughput,
            generators: a.generators.max(1),
        };
        if plan.reps == 0 {
            bail!("--reps must be at least 1");
        }
        if !(plan.event_secs > 0.0 && plan.event_secs <= 60.0) {
            bail!("--event-seconds must be in (0, 60]");
        }
        if plan.rates.is_empty() {
            bail!("--rates: give at least one rate");
        }
        Ok(plan)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Workload {
    Dd,
    Getppid,
}

impl Workload {
    fn label(self, plan: &Plan) -> String {
        match self {
            Workload::Dd => format!(
                "W1 `dd if=/dev/zero of=/dev/null bs=512 count={}`",
                plan.dd_count
            ),
            Workload::Getppid => format!("W2 `sw-getppid-loop {}`", plan.getppid_n),
        }
    }

    fn short(self) -> &'static str {
        match self {
            Workload::Dd => "W1 dd",
            Workload::Getppid => "W2 getppid",
        }
    }

    fn argv(self, plan: &Plan, bins: &Bins) -> Vec<OsString> {
        match self {
            Workload::Dd => ["dd", "if=/dev/zero", "of=/dev/null", "bs=512"]
                .into_iter()
                .map(OsString::from)
                .chain([format!("count={}", plan.dd_count).into()])
                .collect(),
            Workload::Getppid => vec![
                bins.getppid.clone().into(),
                plan.getppid_n.to_string().into(),
                "--elapsed".into(),
            ],
        }
    }

    /// Syscalls the timed part makes: dd reads and writes once per block.
    fn syscalls(self, plan: &Plan) -> u64 {
        match self {
            Workload::Dd => 2 * plan.dd_count,
            Workload::Getppid => plan.getppid_n,
        }
    }

    /// The workload's own measure of its elapsed time, in seconds.
    fn elapsed(self, out: &Output) -> anyhow::Result<f64> {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let found = match self {
            Workload::Dd => parse_dd_seconds(&stderr),
            Workload::Getppid => stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix("elapsed_ns=")?.parse::<u64>().ok())
                .map(|ns| ns as f64 / 1e9),
        };
        found.with_context(|| {
            format!(
                "{}: no elapsed time in its output\nstdout: {stdout}\nstderr: {stderr}",
                self.short()
            )
        })
    }
}

/// dd's "... copied, 1.80313 s, 568 MB/s" (C locale).
fn parse_dd_seconds(stderr: &str) -> Option<f64> {
    stderr.lines().find_map(|l| {
        let rest = &l[l.find("copied, ")? + "copied, ".len()..];
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    /// No sandwatch anywhere.
    Baseline,
    /// `sandwatch watch` of another cgroup runs in the background.
    Watch,
    /// The same with `--count-all-syscalls`.
    WatchFull,
    /// The workload runs under `sandwatch run`.
    Run,
    /// Reference, not sandwatch: `perf stat -a` counts the enter and exit tracepoints of one
    /// syscall nobody makes (reboot). That sets the syscall-tracepoint work flag on every task and
    /// hooks perf's callbacks on the raw sys_enter/sys_exit tracepoints, as any set of attached
    /// syscall tracepoints does: the floor under every probe design built on them.
    Reference,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Baseline => "baseline",
            Mode::Watch => "watch",
            Mode::WatchFull => "watch --count-all-syscalls",
            Mode::Run => "sandwatch run",
            Mode::Reference => "reference: perf, 1 syscall",
        }
    }
}

struct Bins {
    sandwatch: PathBuf,
    getppid: PathBuf,
    event_gen: PathBuf,
}

pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(t) if t.is_absolute() => t,
        Some(t) => crate::workspace_root().join(t),
        None => crate::workspace_root().join("target"),
    }
}

// ---------------------------------------------------------------------------------------------
// Interruption

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub(crate) fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

fn check_interrupt() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaning up");
    }
    Ok(())
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("bench probes: {}", msg.as_ref());
}

// ---------------------------------------------------------------------------------------------
// Other sandwatch processes

struct SwProc {
    pid: i32,
    cmdline: String,
}

/// Every process running a `sandwatch` binary, ours or not (detach grandchildren included: they
/// are forks of sandwatch and keep its executable and command line).
fn sandwatch_procs() -> Vec<SwProc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            let name = exe.file_name()?.to_string_lossy().into_owned();
            if name.strip_suffix(" (deleted)").unwrap_or(&name) != "sandwatch" {
                return None;
            }
            let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw)
                .replace('\0', " ")
                .trim()
                .to_owned();
            Some(SwProc { pid, cmdline })
        })
        .collect()
}

/// Whether `p` belongs to the sample with this marker (its unique data directory).
fn allowed(p: &SwProc, marker: Option<&str>) -> bool {
    marker.is_some_and(|m| p.cmdline.contains(m))
}

/// Samples `sandwatch_procs` while a measurement runs and remembers any process not allowed.
struct Monitor {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<String>>,
}

impl Monitor {
    fn start(marker: Option<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut seen: BTreeMap<i32, String> = BTreeMap::new();
            while !flag.load(Ordering::SeqCst) {
                for p in sandwatch_procs() {
                    // An empty command line: a process past exit_mm, i.e. exiting (typically the
                    // short-lived middle process of a detach, whose closes are mere reference
                    // drops). Whoever's it is, it holds no probes a moment later.
                    if !p.cmdline.is_empty() && !allowed(&p, marker.as_deref()) {
                        seen.entry(p.pid).or_insert(p.cmdline);
                    }
                }
                // Four scans a second: a few hundred readlinks each, negligible next to the work.
                for _ in 0..5 {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
            seen.into_iter()
                .map(|(pid, c)| format!("{pid} `{c}`"))
                .collect()
        });
        Self { stop, handle }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Guards: scratch directory, cgroup, background sandwatch

struct Scratch {
    path: PathBuf,
    next: u32,
}

impl Scratch {
    fn create() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("sandwatch-bench-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path, next: 0 })
    }

    /// A fresh data directory path (not created: sandwatch creates it). Its path is unique, so it
    /// also identifies the sandwatch process using it (and that process's detach grandchild).
    fn data_dir(&mut self, what: &str) -> PathBuf {
        self.next += 1;
        self.path.join(format!("{what}-{:03}", self.next))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The unified hierarchy's mount point (cgroup2 mounted at its root), as sandwatch finds it.
fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    Ok(sandwatch_runner::CgroupRoot::discover()?.mount().to_owned())
}

/// `<cgroup2>/sandwatch-bench-<pid>` with a `sleep` in it: a real, populated cgroup to watch.
/// Dropping it kills the sleep (and anything else in the cgroup) and removes the cgroup.
struct BenchCgroup {
    path: PathBuf,
    sleeper: Option<Child>,
}

impl BenchCgroup {
    fn create() -> anyhow::Result<Self> {
        let path = cgroup2_mount()?.join(format!("sandwatch-bench-{}", std::process::id()));
        // create_dir, not create_dir_all: never adopt a cgroup someone else made.
        fs::create_dir(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        let mut cg = Self {
            path,
            sleeper: None,
        };
        let child = Command::new("sleep")
            .arg("infinity")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting `sleep infinity`")?;
        let pid = child.id();
        cg.sleeper = Some(child);
        let procs = cg.path.join("cgroup.procs");
        fs::write(&procs, pid.to_string())
            .with_context(|| format!("moving the sleep into {}", procs.display()))?;
        let events = fs::read_to_string(cg.path.join("cgroup.events")).unwrap_or_default();
        if !events.lines().any(|l| l.trim() == "populated 1") {
            bail!(
                "{} is not populated after moving a process into it",
                cg.path.display()
            );
        }
        Ok(cg)
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        if let Some(mut c) = self.sleeper.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let start = Instant::now();
        let mut killed = false;
        loop {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == ErrorKind::NotFound => return,
                Err(e) => {
                    if !killed {
                        let _ = fs::write(self.path.join("cgroup.kill"), "1");
                        killed = true;
                    }
                    if start.elapsed() > Duration::from_secs(5) {
                        eprintln!(
                            "bench probes: cannot remove cgroup {}: {e}; remove it by hand",
                            self.path.display()
                        );
                        return;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// A background `sandwatch watch`. Dropping it stops it with SIGINT and waits for it.
struct BgWatch {
    child: Option<Child>,
    reader: Option<thread::JoinHandle<()>>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl BgWatch {
    fn start(bin: &Path, data: &Path, cgroup: &Path, full: bool) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.arg("watch").arg("--data").arg(data);
        if full {
            cmd.arg("--count-all-syscalls");
        }
        cmd.arg("--cgroup")
            .arg(cgroup)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = lines.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("sandwatch: watching") {
                    let _ = tx.send(());
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut me = Self {
            child: Some(child),
            reader: Some(reader),
            lines,
        };
        let started = Instant::now();
        loop {
            check_interrupt()?;
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => return Ok(me),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = me.shutdown();
                    bail!(
                        "sandwatch watch exited ({status:?}) before watching:\n{}",
                        me.stderr_text()
                    );
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!(
                    "sandwatch watch is not watching after 120 s:\n{}",
                    me.stderr_text()
                );
            }
        }
    }

    fn stderr_text(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGINT, then up to 60 s for the flush, then SIGKILL.
    fn shutdown(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // SAFETY: signalling our own child, which we have not reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        eprintln!(
            "bench probes: sandwatch watch (pid {}) did not stop on SIGINT within 60 s; killing it",
            child.id()
        );
        let _ = child.kill();
        child.wait().ok()
    }

    /// Stops it and returns its stderr (the summary), failing if it did not exit cleanly.
    fn stop(mut self) -> anyhow::Result<String> {
        let status = self.shutdown();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let text = self.stderr_text();
        match status {
            Some(s) if s.success() => Ok(text),
            other => bail!("sandwatch watch ended with {other:?}:\n{text}"),
        }
    }
}

impl Drop for BgWatch {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The reference: `perf stat -a` counting one syscall's enter and exit tracepoints. Dropping it
/// stops perf with SIGINT and waits for it.
struct BgPerf {
    child: Option<Child>,
}

impl BgPerf {
    const ARGS: [&str; 6] = [
        "stat",
        "-a",
        "-e",
        "syscalls:sys_enter_reboot",
        "-e",
        "syscalls:sys_exit_reboot",
    ];

    /// Whether `perf stat` can count syscall tracepoints here (a 0.2 s trial).
    fn usable() -> anyhow::Result<()> {
        let out = Command::new("perf")
            .args(Self::ARGS)
            .args(["--", "sleep", "0.2"])
            .stdin(Stdio::null())
            .output()
            .context("perf is not installed")?;
        if !out.status.success() {
            bail!(
                "perf stat cannot count syscalls:sys_enter_reboot: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn start() -> anyhow::Result<Self> {
        let child = Command::new("perf")
            .args(Self::ARGS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf stat")?;
        let pid = child.id();
        let mut me = Self { child: Some(child) };
        // perf prints nothing until it stops: it is counting once it holds its perf events
        // (two events on every CPU).
        let want = 2 * thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let started = Instant::now();
        loop {
            check_interrupt()?;
            let events = fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .filter(|e| {
                            fs::read_link(e.path())
                                .is_ok_and(|l| l.to_string_lossy().contains("perf_event"))
                        })
                        .count()
                })
                .unwrap_or(0);
            if events >= want {
                thread::sleep(Duration::from_millis(100));
                return Ok(me);
            }
            me.check_alive()?;
            if started.elapsed() > Duration::from_secs(30) {
                bail!("perf stat holds {events} perf events after 30 s, not {want}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => Ok(()),
            other => bail!("perf stat is not running ({other:?})"),
        }
    }
}

impl Drop for BgPerf {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child, which we have not reaped yet.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What runs in the background during a sample.
enum Background {
    /// A sandwatch watch and its data directory (which identifies it among sandwatch processes).
    Watch(BgWatch, String),
    Perf(BgPerf),
}

impl Background {
    fn marker(&self) -> Option<&str> {
        match self {
            Background::Watch(_, m) => Some(m),
            Background::Perf(_) => None,
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self {
            Background::Watch(w, _) => {
                if !w.alive() {
                    bail!("the background sandwatch watch died:\n{}", w.stderr_text());
                }
                Ok(())
            }
            Background::Perf(p) => p.check_alive(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements

#[derive(Clone, Copy, Debug)]
struct Sample {
    secs: f64,
    /// Another sandwatch process ran during it (after every retry).
    flagged: bool,
}

struct Bench {
    plan: Plan,
    /// The modes of every round (the perf reference only when perf works here).
    modes: Vec<Mode>,
    bins: Bins,
    scratch: Scratch,
    samples: BTreeMap<(Mode, Workload), Vec<Sample>>,
    /// Things the reader of the table should know (waits that timed out, foreign processes...).
    notes: Vec<String>,
    /// Seconds spent waiting for other sandwatch processes to go.
    waited: f64,
    load_start: String,
}

impl Bench {
    /// Waits until no sandwatch process is left but the one this sample is about (`marker`).
    /// Returns false if it had to give up (the sample is then flagged).
    fn wait_quiet(&mut self, marker: Option<&str>) -> anyhow::Result<bool> {
        let start = Instant::now();
        let mut announced = false;
        loop {
            check_interrupt()?;
            let others: Vec<SwProc> = sandwatch_procs()
                .into_iter()
                .filter(|p| !allowed(p, marker))
                .collect();
            if others.is_empty() {
                let w = start.elapsed().as_secs_f64();
                self.waited += w;
                if announced {
                    progress(format!("  (waited {w:.1} s)"));
                }
                return Ok(true);
            }
            if !announced && start.elapsed() > Duration::from_millis(1500) {
                let ours = self.scratch.path.to_string_lossy().into_owned();
                let (mine, foreign): (Vec<&SwProc>, Vec<&SwProc>) =
                    others.iter().partition(|p| p.cmdline.contains(&ours));
                let mut msg = format!(
                    "waiting for {} sandwatch process(es) to exit (a probe detach takes ~6 s)",
                    others.len()
                );
                if !mine.is_empty() {
                    let _ = write!(
                        msg,
                        "; ours: {}",
                        mine.iter()
                            .map(|p| p.pid.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                }
                if !foreign.is_empty() {
                    let _ = write!(
                        msg,
                        "; NOT ours: {}",
                        foreign
                            .iter()
                            .map(|p| format!("{} `{}`", p.pid, p.cmdline))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                progress(msg);
                announced = true;
            }
            if start.elapsed() > QUIET_TIMEOUT {
                let list = others
                    .iter()
                    .map(|p| format!("{} `{}`", p.pid, p.cmdline))
                    .collect::<Vec<_>>()
                    .join(", ");
                progress(format!(
                    "gave up waiting after {} s for: {list}; measuring anyway (flagged)",
                    QUIET_TIMEOUT.as_secs()
                ));
                self.notes.push(format!("Gave up waiting for other sandwatch processes once ({list}); that sample is flagged."));
                self.waited += start.elapsed().as_secs_f64();
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// One timed run of `w` in `mode`, with `bg` running in the background for the watch and
    /// reference modes.
    fn sample(
        &mut self,
        mode: Mode,
        w: Workload,
        mut bg: Option<&mut Background>,
    ) -> anyhow::Result<Sample> {
        let mut last = None;
        for attempt in 1..=ATTEMPTS {
            check_interrupt()?;
            if let Some(b) = bg.as_mut() {
                b.check_alive()?;
            }
            let argv = w.argv(&self.plan, &self.bins);
            let (mut cmd, marker, data) = match mode {
                Mode::Run => {
                    let data = self.scratch.data_dir("run");
                    let mut cmd = Command::new(&self.bins.sandwatch);
                    cmd.arg("run")
                        .arg("--data")
                        .arg(&data)
                        .arg("--")
                        .args(&argv);
                    (cmd, Some(data.to_string_lossy().into_owned()), Some(data))
                }
                _ => {
                    let mut cmd = Command::new(&argv[0]);
                    cmd.args(&argv[1..]);
                    (
                        cmd,
                        bg.as_ref().and_then(|b| b.marker()).map(str::to_owned),
                        None,
                    )
                }
            };
            // The Run sample's own sandwatch does not exist yet: wait for everyone else.
            let quiet = self.wait_quiet(bg.as_ref().and_then(|b| b.marker()))?;
            cmd.env("LC_ALL", "C").stdin(Stdio::null());
            let monitor = Monitor::start(marker);
            let out = cmd.output().with_context(|| format!("running {cmd:?}"));
            let intruders = monitor.finish();
            if let Some(d) = data {
                let _ = fs::remove_dir_all(d);
            }
            let out = out?;
            check_interrupt()?;
            if !out.status.success() {
                bail!(
                    "{cmd:?} failed ({})\nstdout: {}\nstderr: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let secs = w.elapsed(&out)?;
            if quiet && intruders.is_empty() {
                return Ok(Sample {
                    secs,
                    flagged: false,
                });
            }
            if !intruders.is_empty() {
                progress(format!(
                    "  another sandwatch ran during this sample ({}); {}",
                    intruders.join(", "),
                    if attempt < ATTEMPTS {
                        "retrying"
                    } else {
                        "keeping it, flagged"
                    }
                ));
            }
            last = Some(Sample {
                secs,
                flagged: true,
            });
            if !quiet {
                break;
            }
        }
        Ok(last.expect("at least one attempt"))
    }

    fn record(&mut self, round: usize, mode: Mode, w: Workload, s: Sample) {
        progress(format!(
            "round {}/{} {:<27} {:<11} {:.3} s{}",
            round + 1,
            self.plan.reps,
            mode.name(),
            w.short(),
            s.secs,
            if s.flagged { " (flagged)" } else { "" }
        ));
        self.samples.entry((mode, w)).or_default().push(s);
    }

    fn overhead(&mut self, cgroup: &BenchCgroup) -> anyhow::Result<()> {
        for round in 0..self.plan.reps {
            let mut modes = self.modes.clone();
            if round % 2 == 1 {
                modes.reverse();
            }
            for (i, mode) in modes.into_iter().enumerate() {
                let mut order = [Workload::Dd, Workload::Getppid];
                if (round + i) % 2 == 1 {
                    order.reverse();
                }
                match mode {
                    Mode::Watch | Mode::WatchFull => {
                        // Start from a host with no probes attached at all.
                        self.wait_quiet(None)?;
                        let data = self.scratch.data_dir(if mode == Mode::Watch {
                            "watch"
                        } else {
                            "watch-full"
                        });
                        let marker = data.to_string_lossy().into_owned();
                        let watch = BgWatch::start(
                            &self.bins.sandwatch,
                            &data,
                            &cgroup.path,
                            mode == Mode::WatchFull,
                        )?;
                        let mut bg = Background::Watch(watch, marker);
                        for w in order {
                            let s = self.sample(mode, w, Some(&mut bg))?;
                            self.record(round, mode, w, s);
                        }
                        let Background::Watch(watch, _) = bg else {
                            unreachable!()
                        };
                        let summary = watch.stop()?;
                        if !summary.contains("no records lost") {
                            self.notes.push(format!(
                                "A `{}` lost records: {}",
                                mode.name(),
                                summary.replace('\n', " / ")
                            ));
                        }
                        let _ = fs::remove_dir_all(&data);
                    }
                    Mode::Reference => {
                        self.wait_quiet(None)?;
                        let mut bg = Background::Perf(BgPerf::start()?);
                        for w in order {
                            let s = self.sample(mode, w, Some(&mut bg))?;
                            self.record(round, mode, w, s);
                        }
                    }
                    Mode::Baseline | Mode::Run => {
                        for w in order {
                            let s = self.sample(mode, w, None)?;
                            self.record(round, mode, w, s);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput

#[derive(Debug, Default)]
struct RunSummary {
    file_events: Option<u64>,
    kernel_lost: u64,
    undecodable_lost: u64,
    says_no_loss: bool,
}

fn parse_summary(stderr: &str) -> RunSummary {
    let mut s = RunSummary::default();
    for line in stderr.lines() {
        if let Some(rest) = line
            .split_once("sandwatch: recorded ")
            .and_then(|(_, r)| r.split_once("rows: "))
            .map(|(_, r)| r)
        {
            s.file_events = rest
                .split(", ")
                .find_map(|kv| kv.trim().strip_prefix("file_events ")?.parse().ok());
        } else if let Some(rest) = line.split_once("sandwatch: LOST ").map(|(_, r)| r) {
            let n: u64 = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if rest.contains("in the kernel") {
                s.kernel_lost += n;
            } else {
                s.undecodable_lost += n;
            }
        } else if line.contains("sandwatch: no records lost") {
            s.says_no_loss = true;
        }
    }
    s
}

/// Counts from the Parquet files themselves, with duckdb: (file_events rows, rows of the
/// generator's path, sum of the drops table's counts).
fn parquet_counts(data: &Path) -> Result<(u64, u64, u64), String> {
    const SCRIPT: &str = r#"
import glob, sys
import duckdb
d, path = sys.argv[1], sys.argv[2]
def files(table):
    return sorted(glob.glob(f"{d}/{table}/**/*.parquet", recursive=True))
def lit(fs):
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in fs) + "]"
rows = gen = drops = 0
fe = files("file_events")
if fe:
    rows, gen = duckdb.execute(f"select count(*), count(*) filter (where path = ?) from read_parquet({lit(fe)})", [path]).fetchone()
dr = files("drops")
if dr:
    drops = duckdb.execute(f"select coalesce(sum(count), 0) from read_parquet({lit(dr)})").fetchone()[0]
print(f"rows={rows} gen={gen} drops={drops}")
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(data)
        .arg(EVENT_PATH)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("python3 failed")
            .to_owned());
    }
    let get = |k: &str| -> Option<u64> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
    };
    match (get("rows"), get("gen"), get("drops")) {
        (Some(r), Some(g), Some(d)) => Ok((r, g, d)),
        _ => Err(format!("unexpected output {text:?}")),
    }
}

fn parse_gen(stdout: &str) -> Option<(u64, u64)> {
    stdout.lines().find_map(|l| {
        let mut sent = None;
        let mut ns = None;
        for kv in l.split_whitespace() {
            if let Some(v) = kv.strip_prefix("sent=") {
                sent = v.parse().ok();
            } else if let Some(v) = kv.strip_prefix("elapsed_ns=") {
                ns = v.parse().ok();
            }
        }
        sent.zip(ns)
    })
}

struct RateRow {
    target: u64,
    sent: u64,
    gen_secs: f64,
    /// Rows of the generator's events in the Parquet files (duckdb), else file_events rows from
    /// the summary.
    rows: u64,
    rows_from_parquet: bool,
    /// Kernel + undecodable losses the summary reports.
    drops: u64,
    parquet_drops: Option<u64>,
    /// sent - rows, when the Parquet files could be counted.
    missing: Option<i64>,
    wall_secs: f64,
    /// CPU time of the sandwatch process (all its threads) from the job's start to its exit.
    collector_cpu: Option<f64>,
    flagged: bool,
}

/// Samples the CPU time (utime + stime of all its threads) a process uses from the moment its
/// first child (the job) appears until it exits: sandwatch's own cost of collecting and writing
/// the events, without the probe loading before the job starts. The BPF programs themselves run
/// in the job's syscalls and are not part of it.
struct CpuSampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Option<f64>>,
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    Some(
        text[text.rfind(')')? + 1..]
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// utime + stime in clock ticks (fields 14 and 15).
fn cpu_ticks(pid: i32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn has_child(pid: i32) -> bool {
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .any(|p| stat_fields(p).and_then(|f| f.get(1)?.parse::<i32>().ok()) == Some(pid))
}

impl CpuSampler {
    fn start(pid: u32) -> Self {
        let pid = pid as i32;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            let mut first = None;
            let mut last = None;
            while !flag.load(Ordering::SeqCst) {
                // A zombie's times stay readable until it is reaped, which is when we stop.
                if let Some(t) = cpu_ticks(pid) {
                    if first.is_none() && has_child(pid) {
                        first = Some(t);
                    }
                    last = Some(t);
                }
                thread::sleep(Duration::from_millis(20));
            }
            Some((last? - first?) as f64 / hz)
        });
        Self { stop, handle }
    }

    fn finish(self) -> Option<f64> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().ok().flatten()
    }
}

impl RateRow {
    fn achieved(&self) -> f64 {
        self.rows as f64 / self.gen_secs
    }

    fn loss_free(&self) -> bool {
        self.drops == 0
            && self.parquet_drops.unwrap_or(0) == 0
            && self.missing.is_none_or(|m| m == 0)
    }
}

struct Throughput {
    ceiling: f64,
    rows: Vec<RateRow>,
    parquet_note: Option<String>,
}

impl Bench {
    fn throughput(&mut self) -> anyhow::Result<Throughput> {
        // The generator's own ceiling, with no probes attached: faster targets are meaningless.
        self.wait_quiet(None)?;
        let out = Command::new(&self.bins.event_gen)
            .args([
                self.plan.min_total.to_string(),
                "0".into(),
                self.plan.generators.to_string(),
            ])
            .output()
            .context("running sw-event-gen")?;
        let (sent, ns) = parse_gen(&String::from_utf8_lossy(&out.stdout))
            .context("sw-event-gen printed no sent=/elapsed_ns=")?;
        let ceiling = sent as f64 / (ns as f64 / 1e9);
        progress(format!(
            "sw-event-gen unthrottled, no sandwatch: {:.0} events/s",
            ceiling
        ));

        let mut rows = Vec::new();
        let mut parquet_note = None;
        for target in self.plan.rates.clone() {
            check_interrupt()?;
            let effective = if target == 0 {
                ceiling
            } else {
                (target as f64).min(ceiling)
            };
            let total = ((effective * self.plan.event_secs / 1000.0).ceil() as u64 * 1000)
                .max(self.plan.min_total);
            let data = self.scratch.data_dir("rate");
            let marker = data.to_string_lossy().into_owned();
            let quiet = self.wait_quiet(None)?;
            progress(format!(
                "throughput: target {} events/s, {total} events under sandwatch run",
                rate_name(target)
            ));
            let monitor = Monitor::start(Some(marker));
            let started = Instant::now();
            let child = Command::new(&self.bins.sandwatch)
                .arg("run")
                .arg("--data")
                .arg(&data)
                .arg("--")
                .arg(&self.bins.event_gen)
                .args([
                    total.to_string(),
                    target.to_string(),
                    self.plan.generators.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting sandwatch run -- sw-event-gen");
            let (out, collector_cpu) = match child {
                Ok(child) => {
                    let cpu = CpuSampler::start(child.id());
                    let out = child
                        .wait_with_output()
                        .context("waiting for sandwatch run -- sw-event-gen");
                    (out, cpu.finish())
                }
                Err(e) => (Err(e), None),
            };
            let wall_secs = started.elapsed().as_secs_f64();
            let intruders = monitor.finish();
            let out = out?;
            check_interrupt()?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() {
                let _ = fs::remove_dir_all(&data);
                bail!(
                    "sandwatch run -- sw-event-gen failed ({}):\n{stdout}\n{stderr}",
                    out.status
                );
            }
            let (sent, ns) = parse_gen(&stdout).with_context(|| {
                format!("no sent=/elapsed_ns= from sw-event-gen:\n{stdout}\n{stderr}")
            })?;
            let summary = parse_summary(&stderr);
            let summary_rows = summary.file_events.with_context(|| {
                format!("no 'recorded N rows' summary from sandwatch:\n{stderr}")
            })?;
            let counted = parquet_counts(&data);
            let _ = fs::remove_dir_all(&data);
            let (rows_n, from_parquet, parquet_drops, missing) = match counted {
                Ok((_all, generated, drops)) => (
                    generated,
                    true,
                    Some(drops),
                    Some(sent as i64 - generated as i64),
                ),
                Err(e) => {
                    parquet_note.get_or_insert_with(|| format!("Parquet files not counted with duckdb ({e}); rows are the summary's file_events."));
                    (summary_rows, false, None, None)
                }
            };
            let drops = summary.kernel_lost + summary.undecodable_lost;
            if drops == 0 && !summary.says_no_loss {
                self.notes.push(format!(
                    "Rate {}: the summary neither reports losses nor says none were lost.",
                    rate_name(target)
                ));
            }
            let row = RateRow {
                target,
                sent,
                gen_secs: ns as f64 / 1e9,
                rows: rows_n,
                rows_from_parquet: from_parquet,
                drops,
                parquet_drops,
                missing,
                wall_secs,
                collector_cpu,
                flagged: !quiet || !intruders.is_empty(),
            };
            if !intruders.is_empty() {
                progress(format!(
                    "  another sandwatch ran meanwhile: {}",
                    intruders.join(", ")
                ));
            }
            progress(format!(
                "  sent {} in {:.2} s, {} rows -> {:.0} events/s, drops {}{}, sandwatch wall {:.2} s",
                row.sent,
                row.gen_secs,
                row.rows,
                row.achieved(),
                row.drops,
                row.missing
                    .map(|m| format!(", missing {m}"))
                    .unwrap_or_default(),
                row.wall_secs
            ));
            rows.push(row);
        }
        Ok(Throughput {
            ceiling,
            rows,
            parquet_note,
        })
    }
}

fn rate_name(r: u64) -> String {
    if r == 0 {
        "unthrottled".into()
    } else {
        group(r)
    }
}

/// 1234567 -> "1,234,567".
pub(crate) fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Report

/// The median of `v` (NaN when empty): what every benchmark here reports over its rounds.
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Builds criterion benchmark `bench` of `packages` in release and returns its executable, as
/// cargo names it. Several packages in one build let their features unify as in the other
/// release builds, so heavy dependencies (DataFusion) are not built twice.
pub(crate) fn bench_executable(packages: &[&str], bench: &str) -> anyhow::Result<PathBuf> {
    progress(format!("building the {bench} benchmark (release)"));
    let mut cmd = crate::cargo();
    cmd.arg("bench");
    for p in packages {
        cmd.args(["-p", p]);
    }
    let out = cmd
        .args(["--bench", bench, "--no-run", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo bench --no-run")?;
    if !out.status.success() {
        bail!("building the {bench} benchmark failed ({})", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == bench)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo did not name the {bench} benchmark's executable"))
}

pub(crate) fn command_output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub(crate) fn machine_line() -> String {
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                Some(
                    l.strip_prefix("model name")?
                        .split_once(':')?
                        .1
                        .trim()
                        .to_owned(),
                )
            })
        })
        .unwrap_or_else(|| "?".into());
    let date = command_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .unwrap_or_else(|| "?".into());
    let root = crate::workspace_root();
    let rev = command_output(Command::new("git").arg("-C").arg(&root).args([
        "rev-parse",
        "--short",
        "HEAD",
    ]));
    let dirty = command_output(
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["status", "--porcelain"]),
    )
    .is_some_and(|s| !s.is_empty());
    let rev = rev
        .map(|r| {
            format!(
                ", sandwatch {r}{}",
                if dirty { " + uncommitted changes" } else { "" }
            )
        })
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), Linux {kernel}, {date}{rev}")
}

struct Section {
    title: &'static str,
    mode: Mode,
    /// Header of the measured column.
    with: &'static str,
    target: Option<f64>,
    explain: &'static str,
}

const SECTIONS: [Section; 4] = [
    Section {
        title: "1. Unwatched host: `sandwatch watch` of another cgroup running",
        mode: Mode::Watch,
        with: "With sandwatch median",
        target: Some(TARGET_UNWATCHED),
        explain: "The workload runs outside the watched cgroup (which holds a `sleep`), so sandwatch records \
                  nothing of it: this is what the attached probes cost every other process on the host.",
    },
    Section {
        title: "1r. Reference, not sandwatch: one syscall's tracepoints enabled with `perf stat -a`",
        mode: Mode::Reference,
        with: "With perf median",
        target: None,
        explain: "`perf stat -a -e syscalls:sys_enter_reboot -e syscalls:sys_exit_reboot` counts a syscall nobody \
                  makes. Enabling any syscall tracepoint sets the syscall-tracepoint work flag on every task, so every \
                  syscall takes the slow entry/exit path and calls the tracepoint callbacks: the floor of any probe \
                  design built on syscall tracepoints, measured in the same rounds as 1.",
    },
    Section {
        title: "2. Watched: the workload under `sandwatch run`",
        mode: Mode::Run,
        with: "With sandwatch median",
        target: Some(TARGET_WATCHED),
        explain: "The workload runs in sandwatch's job cgroup and is recorded; its own elapsed time is compared \
                  (sandwatch's start and flush are not timed).",
    },
    Section {
        title: "3. Full counting: `sandwatch watch --count-all-syscalls` of another cgroup running",
        mode: Mode::WatchFull,
        with: "With sandwatch median",
        target: None,
        explain: "As 1, with a BPF program on the raw `sys_enter` tracepoint counting every syscall of watched \
                  cgroups: every syscall on the host runs it. No target; this states the cost.",
    },
];

fn render(plan: &Plan, bench: &Bench, throughput: Option<&Throughput>, started: Instant) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### Probe benchmarks (`cargo xtask bench probes{}`)\n",
        if plan.quick { " --quick" } else { "" }
    );
    let _ = writeln!(
        md,
        "Machine: {}; load average {} at the start, {} at the end.\n",
        machine_line(),
        bench.load_start,
        loadavg()
    );
    if plan.overhead {
        let _ = writeln!(
            md,
            "Overhead: medians of {} rounds; each round runs every workload once in every mode, the order of the modes \
             reversed every other round; times are the workloads' own (dd's \"copied, X s\", \
             `sw-getppid-loop --elapsed`). Before every sample the benchmark waits until no other sandwatch process \
             (including the background detach of one that exited) is left. \"Δ/syscall\" is the median difference \
             divided by the syscalls the workload makes (W1: a read and a write per block). \
             \"Ratio of minima\" (fastest with / fastest without) is less exposed to a noisy host, which only ever \
             adds time; the target applies to the median ratio.\n",
            plan.reps
        );
        for sec in SECTIONS.iter().filter(|s| bench.modes.contains(&s.mode)) {
            let _ = writeln!(md, "#### {}\n\n{}\n", sec.title, sec.explain);
            let _ = writeln!(
                md,
                "| Workload | Baseline median | {} | Ratio | Δ/syscall | Ratio of minima | Target |",
                sec.with
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---|");
            for w in [Workload::Dd, Workload::Getppid] {
                let base: Vec<f64> = bench
                    .samples
                    .get(&(Mode::Baseline, w))
                    .map(|v| v.iter().map(|s| s.secs).collect())
                    .unwrap_or_default();
                let with: Vec<f64> = bench
                    .samples
                    .get(&(sec.mode, w))
                    .map(|v| v.iter().map(|s| s.secs).collect())
                    .unwrap_or_default();
                let (a, b) = (median(&base), median(&with));
                let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
                let ratio_min = min(&with) / min(&base);
                let ratio = b / a;
                let per_syscall = (b - a) * 1e9 / w.syscalls(plan) as f64;
                let target = match sec.target {
                    Some(t) => format!("≤ {t:.2} {}", if ratio <= t { "✅" } else { "❌ missed" }),
                    None => "— (cost stated)".into(),
                };
                let _ = writeln!(
                    md,
                    "| {} | {:.3} s | {:.3} s | **{:.3}** | {:+.0} ns | {:.3} | {} |",
                    w.label(plan),
                    a,
                    b,
                    ratio,
                    per_syscall,
                    ratio_min,
                    target
                );
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(
            md,
            "<details><summary>Raw samples (seconds, in round order; * = another sandwatch ran meanwhile)</summary>\n"
        );
        let _ = writeln!(md, "| Mode | Workload | Samples |");
        let _ = writeln!(md, "|---|---|---|");
        for ((mode, w), v) in &bench.samples {
            let list: Vec<String> = v
                .iter()
                .map(|s| format!("{:.3}{}", s.secs, if s.flagged { "*" } else { "" }))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                mode.name(),
                w.short(),
                list.join(" ")
            );
        }
        let _ = writeln!(md, "\n</details>\n");
    }
    if let Some(t) = throughput {
        let _ = writeln!(
            md,
            "#### 4. Highest sustained loss-free event rate written to Parquet\n"
        );
        let _ = writeln!(
            md,
            "`sandwatch run --data DIR -- sw-event-gen TOTAL RATE {}` (default 16 MiB ring buffer; {} generator thread(s)): `openat` calls of a \
             relative path against an invalid directory fd (refused with EBADF before any lookup: the cheapest \
             recorded file event) paced by a busy-wait, ~{} s' worth each (at least {} events). \"Rows\" are the generator's events found \
             in the Parquet files{}; \"Achieved\" = rows / the generator's elapsed time; \"Drops\" are the losses the \
             summary reports; \"Missing\" = sent − rows. The generator alone, unthrottled and unwatched, makes {} \
             events/s on this machine.\n",
            plan.generators,
            plan.generators,
            plan.event_secs,
            group(plan.min_total),
            if t.rows.iter().all(|r| r.rows_from_parquet) {
                " (counted with duckdb)"
            } else {
                ""
            },
            group(t.ceiling as u64)
        );
        let _ = writeln!(
            md,
            "| Target rate | Events sent | Generator time | Rows in Parquet | Achieved | Drops | Missing | sandwatch wall time | sandwatch CPU | Loss-free |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &t.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} s | {} | **{}/s** | {} | {} | {:.2} s | {} | {}{} |",
                rate_name(r.target),
                group(r.sent),
                r.gen_secs,
                group(r.rows),
                group(r.achieved() as u64),
                group(r.drops),
                r.missing
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "?".into()),
                r.wall_secs,
                r.collector_cpu
                    .map(|c| format!("{c:.2} s"))
                    .unwrap_or_else(|| "?".into()),
                if r.loss_free() { "yes" } else { "**no**" },
                if r.flagged {
                    " (another sandwatch ran meanwhile)"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            md,
            "\n\"sandwatch CPU\" is the CPU time of the sandwatch process (reading the ring buffer, decoding, \
             writing Parquet) from the job's start to its exit; the probes' own cost is in the generator's syscalls."
        );
        let best = t
            .rows
            .iter()
            .filter(|r| r.loss_free())
            .max_by(|a, b| a.achieved().total_cmp(&b.achieved()));
        let _ = writeln!(md);
        match best {
            Some(b) => {
                let a = b.achieved();
                let verdict = if a >= STRETCH_RATE {
                    "meets the target (500,000/s) and the stretch goal (1,000,000/s) ✅"
                } else if a >= TARGET_RATE {
                    "meets the target (500,000/s) ✅, not the stretch goal (1,000,000/s)"
                } else {
                    "misses the target (500,000/s) ❌"
                };
                let _ = writeln!(
                    md,
                    "Highest loss-free rate: **{}/s** (in the run paced at {}): {verdict}.\n",
                    group(a as u64),
                    rate_name(b.target)
                );
            }
            None => {
                let _ = writeln!(md, "No run was loss-free ❌.\n");
            }
        }
        if !t.rows.is_empty() && t.rows.iter().all(RateRow::loss_free) {
            let _ = writeln!(
                md,
                "Every run was loss-free, the unthrottled one included: the highest rate measured here is the \
                 generators' ceiling (threads making recorded `openat` calls on the same two cores), not \
                 sandwatch's.\n"
            );
        }
        let per_event: Vec<f64> = t
            .rows
            .iter()
            .filter_map(|r| Some(r.collector_cpu? / r.rows.max(1) as f64))
            .filter(|c| *c > 0.0)
            .collect();
        if !per_event.is_empty() {
            let m = median(&per_event);
            let _ = writeln!(
                md,
                "sandwatch spent a median {:.2} µs of CPU per recorded event: one fully busy CPU would absorb \
                 ~{}/s (an extrapolation, not a measurement).\n",
                m * 1e6,
                group((1.0 / m) as u64)
            );
        }
        // The machine's own limit: what one event costs in CPU, producing it and recording it.
        if let Some(r) = t.rows.iter().find(|r| r.target == 0)
            && let Some(cpu) = r.collector_cpu
        {
            let cores = thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1) as f64;
            let gen_cost = r.gen_secs / r.sent.max(1) as f64;
            let sw_cost = cpu / r.rows.max(1) as f64;
            let _ = writeln!(
                md,
                "Unthrottled, one event took {:.2} µs of the generator's time (the recorded `openat`, probes included) \
                 and {:.2} µs of sandwatch's CPU: on {} cores no generator on this same machine can produce and record \
                 more than ~{}/s, whatever the pipeline's capacity.\n",
                gen_cost * 1e6,
                sw_cost * 1e6,
                cores,
                group((cores / (gen_cost + sw_cost)) as u64)
            );
        }
        if let Some(n) = &t.parquet_note {
            let _ = writeln!(md, "{n}\n");
        }
    }
    if !bench.notes.is_empty() {
        let _ = writeln!(md, "Notes:\n");
        for n in &bench.notes {
            let _ = writeln!(md, "- {n}");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "_Suite time {:.0} s, of which {:.0} s waiting for sandwatch processes (probe detach) to exit._",
        started.elapsed().as_secs_f64(),
        bench.waited
    );
    md
}

// ---------------------------------------------------------------------------------------------

fn probes(args: ProbesArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let plan = Plan::new(&args)?;
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench probes loads eBPF programs and creates a cgroup: run it as root");
    }
    progress("building sandwatch and the workloads (release)");
    crate::run(crate::cargo().args([
        "build",
        "--release",
        "-p",
        "sandwatch",
        "-p",
        "sandwatch-tests",
        "--bins",
    ]))?;
    let release = target_dir().join("release");
    let bins = Bins {
        sandwatch: release.join("sandwatch"),
        getppid: release.join("sw-getppid-loop"),
        event_gen: release.join("sw-event-gen"),
    };
    for b in [&bins.sandwatch, &bins.getppid, &bins.event_gen] {
        if !b.exists() {
            bail!("{} is missing after the build", b.display());
        }
    }
    install_signal_handlers();

    let load_start = loadavg();
    let mut modes = vec![Mode::Baseline, Mode::Watch, Mode::WatchFull, Mode::Run];
    if plan.overhead {
        match BgPerf::usable() {
            Ok(()) => modes.push(Mode::Reference),
            Err(e) => progress(format!("no perf reference rows: {e:#}")),
        }
    }
    let mut bench = Bench {
        plan,
        modes,
        bins,
        scratch: Scratch::create()?,
        samples: BTreeMap::new(),
        notes: Vec::new(),
        waited: 0.0,
        load_start,
    };
    let foreign = sandwatch_procs();
    if !foreign.is_empty() {
        let list = foreign
            .iter()
            .map(|p| format!("{} `{}`", p.pid, p.cmdline))
            .collect::<Vec<_>>()
            .join(", ");
        progress(format!(
            "other sandwatch processes are running ({list}); every sample waits for them to go"
        ));
    }
    let plan = &bench.plan;
    progress(format!(
        "plan: {} rounds × {} modes × 2 workloads (dd count={}, getppid {}), then {} throughput runs; expect ~{} minutes",
        plan.reps,
        bench.modes.len(),
        plan.dd_count,
        plan.getppid_n,
        plan.rates.len(),
        if plan.quick { 3 } else { 4 + plan.reps }
    ));

    if bench.plan.overhead {
        let cgroup = BenchCgroup::create()?;
        progress(format!(
            "watched cgroup {} (a `sleep` in it)",
            cgroup.path.display()
        ));
        bench.overhead(&cgroup)?;
        drop(cgroup);
    }
    let throughput = if bench.plan.throughput {
        Some(bench.throughput()?)
    } else {
        None
    };

    let md = render(&bench.plan, &bench, throughput.as_ref(), started);
    println!("{md}");
    let out_dir = target_dir().join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join("probes.md");
    fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    progress(format!("table written to {}", out.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn parses_dd_and_summaries() {
        let dd = "2000000+0 records in\n2000000+0 records out\n1024000000 bytes (1.0 GB, 977 MiB) copied, 1.80313 s, 568 MB/s\n";
        assert_eq!(parse_dd_seconds(dd), Some(1.80313));
        let s = parse_summary(
            "sandwatch: recorded 48 rows: process_events 10, file_events 35, network_events 0, syscall_counts 3, drops 0\n\
             sandwatch: LOST 12 records in the kernel (ring buffer full): file 12; they are counted\n\
             sandwatch: LOST 3 undecodable records: file 3\n",
        );
        assert_eq!(s.file_events, Some(35));
        assert_eq!(
            (s.kernel_lost, s.undecodable_lost, s.says_no_loss),
            (12, 3, false)
        );
        assert!(parse_summary("sandwatch: no records lost").says_no_loss);
        assert_eq!(parse_gen("sent=1000 elapsed_ns=2000\n"), Some((1000, 2000)));
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
