//! Benchmark of a sandbox's life, run by `cargo xtask bench sandbox` (root only).
//!
//! `sw-sandbox-bench [OPTIONS]`:
//!
//! 1. **Sequential**: `--iterations` (default 200, after `--warmup` 20 discarded) of, in one
//!    loop, each contender once, the order rotated every iteration so that each goes first as
//!    often as the others and all share the machine's noise:
//!    - `sandwatch`: `Sandbox::create` (the strict preset: every namespace including the
//!      network's, cgroups with limits, ephemeral workspace) → `Sandbox::run(/bin/true)` with
//!      its output into `tokio::io::sink()` → `destroy`, timed as a whole. Its init is this
//!      binary (small), unless:
//!    - `sandwatch-init` (with `--sandwatch-init PATH`): the same with `init_exe` = the real
//!      `sandwatch` binary, as `sandwatch run` does: the realistic figure;
//!    - `bwrap`: spawn `bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true` and wait;
//!    - `bare`: spawn `/bin/true` and wait: the floor.
//! 2. **Burst** (`--rounds` 10 of `--concurrency` 20): that many `create` + `spawn(/bin/true)`
//!    tasks at once on the multi-thread runtime; per round, the time from the start until every
//!    command has started (init's `Started` reply) and until every sandbox is destroyed. For
//!    reference, the same count of `bwrap ... echo` at once: "started" is the first byte of
//!    echo's output (so it includes echo's own start, ~0.5 ms), "done" its exit.
//! 3. **Phases** (`--phases N`, instead of 1 and 2): N sandwatch iterations with a tracing layer
//!    that times the runner's spans and collects init's own step marks (CLOCK_MONOTONIC), then
//!    the median of each phase.
//!
//! Progress goes to stderr; the last line on stdout is `SW_SANDBOX_BENCH_JSON {...}` (times in
//! ms), which xtask parses.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, ExitCode, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sandwatch_runner::{
    CgroupRoot, SandboxPolicy,
    sandbox::{self, CommandRequest, Sandbox, SandboxOptions},
};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

const BWRAP_ARGS: &[&str] = &[
    "--unshare-all",
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
];

static STOP: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

struct Args {
    iterations: usize,
    warmup: usize,
    concurrency: usize,
    rounds: usize,
    sandwatch_init: Option<PathBuf>,
    phases: usize,
    bwrap: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: sw-sandbox-bench [--iterations N] [--warmup N] [--concurrency N] [--rounds N] \
         [--sandwatch-init PATH] [--phases N] [--no-bwrap]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        iterations: 200,
        warmup: 20,
        concurrency: 20,
        rounds: 10,
        sandwatch_init: None,
        phases: 0,
        bwrap: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match arg.as_str() {
            "--iterations" => a.iterations = num(),
            "--warmup" => a.warmup = num(),
            "--concurrency" => a.concurrency = num(),
            "--rounds" => a.rounds = num(),
            "--phases" => a.phases = num(),
            "--sandwatch-init" => {
                a.sandwatch_init = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage()))
            }
            "--no-bwrap" => a.bwrap = false,
            _ => usage(),
        }
    }
    a
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("sw-sandbox-bench: {}", msg.as_ref());
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

fn median(v: &[f64]) -> f64 {
    let s = sorted(v);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn distribution(v: &[f64]) -> Value {
    let s = sorted(v);
    json!({
        "n": s.len(),
        "min": r3(pct(&s, 0.0)),
        "p50": r3(pct(&s, 0.50)),
        "p90": r3(pct(&s, 0.90)),
        "p99": r3(pct(&s, 0.99)),
        "max": r3(s.last().copied().unwrap_or(f64::NAN)),
        "mean": r3(s.iter().sum::<f64>() / s.len().max(1) as f64),
        "samples": v.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
    })
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Contender {
    Sandwatch,
    SandwatchInit,
    Bwrap,
    Bare,
}

impl Contender {
    fn key(self) -> &'static str {
        match self {
            Contender::Sandwatch => "sandwatch",
            Contender::SandwatchInit => "sandwatch_init",
            Contender::Bwrap => "bwrap",
            Contender::Bare => "bare",
        }
    }
}

/// What every sandbox of the benchmark is made from.
#[derive(Clone)]
struct Setup {
    root: CgroupRoot,
    policy: SandboxPolicy,
    self_exe: PathBuf,
    sandwatch_init: Option<PathBuf>,
}

impl Setup {
    fn options(&self, c: Contender) -> SandboxOptions {
        let id = format!(
            "swbench-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let mut opts = SandboxOptions::new(id, self.policy.clone());
        opts.init_exe = match c {
            Contender::SandwatchInit => self.sandwatch_init.clone().expect("given"),
            _ => self.self_exe.clone(),
        };
        opts
    }
}

fn request(argv: &[&str]) -> CommandRequest {
    CommandRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..CommandRequest::default()
    }
}

/// One sandbox's whole life: create, run /bin/true, destroy.
async fn sandbox_once(setup: &Setup, c: Contender) -> anyhow::Result<Duration> {
    let opts = setup.options(c);
    let req = request(&["/bin/true"]);
    let (mut out, mut err) = (tokio::io::sink(), tokio::io::sink());
    let start = Instant::now();
    let sb = Sandbox::create(&setup.root, opts).await?;
    let outcome = sb.run(&req, &mut out, &mut err).await?;
    sb.destroy().await?;
    let took = start.elapsed();
    anyhow::ensure!(
        outcome.status == 0,
        "/bin/true in the sandbox ended with status {} ({:?})",
        outcome.status,
        outcome.start_error
    );
    Ok(took)
}

fn spawn_once(program: &str, args: &[&str]) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let took = start.elapsed();
    anyhow::ensure!(status.success(), "{program} {args:?}: {status}");
    Ok(took)
}

async fn once(setup: &Setup, c: Contender) -> anyhow::Result<Duration> {
    match c {
        Contender::Sandwatch | Contender::SandwatchInit => sandbox_once(setup, c).await,
        Contender::Bwrap => {
            let mut args = BWRAP_ARGS.to_vec();
            args.push("true");
            spawn_once("bwrap", &args)
        }
        Contender::Bare => spawn_once("/bin/true", &[]),
    }
}

async fn sequential(
    setup: &Setup,
    contenders: &[Contender],
    a: &Args,
) -> anyhow::Result<BTreeMap<Contender, Vec<f64>>> {
    let mut samples: BTreeMap<Contender, Vec<f64>> = BTreeMap::new();
    let total = a.warmup + a.iterations;
    let started = Instant::now();
    for i in 0..total {
        if STOP.load(Ordering::Relaxed) {
            anyhow::bail!("interrupted");
        }
        for k in 0..contenders.len() {
            let c = contenders[(i + k) % contenders.len()];
            let took = once(setup, c).await?;
            if i >= a.warmup {
                samples.entry(c).or_default().push(ms(took));
            }
        }
        if (i + 1) % 50 == 0 {
            progress(format!(
                "sequential: {}/{total} iterations ({:.0} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(samples)
}

/// Times of one burst: until every command started, until every sandbox (or bwrap) was done.
struct Burst {
    started: Duration,
    done: Duration,
}

async fn sandbox_burst(setup: &Setup, c: Contender, n: usize) -> anyhow::Result<Burst> {
    let opts: Vec<SandboxOptions> = (0..n).map(|_| setup.options(c)).collect();
    let root = Arc::new(setup.root.clone());
    let t0 = Instant::now();
    let tasks: Vec<_> = opts
        .into_iter()
        .map(|opts| {
            let root = root.clone();
            tokio::spawn(async move {
                let sb = Sandbox::create(&root, opts).await?;
                let mut running = match sb.spawn(&request(&["/bin/true"])).await? {
                    Ok(r) => r,
                    Err((e, _)) => anyhow::bail!("/bin/true did not start: {e}"),
                };
                let started = t0.elapsed();
                let mut sink = Vec::new();
                running.stdout.read_to_end(&mut sink).await?;
                running.stderr.read_to_end(&mut sink).await?;
                let exit = running.wait().await;
                anyhow::ensure!(
                    exit == Some((Some(0), None)),
                    "/bin/true in the sandbox: {exit:?}"
                );
                sb.destroy().await?;
                anyhow::Ok((started, t0.elapsed()))
            })
        })
        .collect();
    let mut burst = Burst {
        started: Duration::ZERO,
        done: Duration::ZERO,
    };
    for t in tasks {
        let (s, d) = t.await??;
        burst.started = burst.started.max(s);
        burst.done = burst.done.max(d);
    }
    Ok(burst)
}

async fn bwrap_burst(n: usize) -> anyhow::Result<Burst> {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                let mut child = tokio::process::Command::new("bwrap")
                    .args(BWRAP_ARGS)
                    .args(["echo", "x"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()?;
                let mut out = child.stdout.take().expect("piped");
                let mut byte = [0u8; 1];
                out.read_exact(&mut byte).await?;
                let started = t0.elapsed();
                let mut rest = Vec::new();
                out.read_to_end(&mut rest).await?;
                let status = child.wait().await?;
                anyhow::ensure!(status.success(), "bwrap: {status}");
                anyhow::Ok((started, t0.elapsed()))
            })
        })
        .collect();
    let mut burst = Burst {
        started: Duration::ZERO,
        done: Duration::ZERO,
    };
    for t in tasks {
        let (s, d) = t.await??;
        burst.started = burst.started.max(s);
        burst.done = burst.done.max(d);
    }
    Ok(burst)
}

async fn bursts(
    setup: &Setup,
    contenders: &[Contender],
    a: &Args,
) -> anyhow::Result<BTreeMap<Contender, Vec<Burst>>> {
    let mut out: BTreeMap<Contender, Vec<Burst>> = BTreeMap::new();
    // One unrecorded round of each first: the first burst pays for cold caches.
    for round in 0..=a.rounds {
        if STOP.load(Ordering::Relaxed) {
            anyhow::bail!("interrupted");
        }
        for k in 0..contenders.len() {
            let c = contenders[(round + k) % contenders.len()];
            let b = match c {
                Contender::Bwrap => bwrap_burst(a.concurrency).await?,
                _ => sandbox_burst(setup, c, a.concurrency).await?,
            };
            // Let the bursts' teardown work (network namespaces are freed asynchronously)
            // settle before the next one.
            tokio::time::sleep(Duration::from_millis(200)).await;
            if round > 0 {
                out.entry(c).or_default().push(b);
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Phases: a tracing layer that times the runner's spans and collects init's marks.

mod phases {
    use super::*;
    use tracing::{
        Subscriber,
        field::{Field, Visit},
        span,
    };
    use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

    pub const MARKS_TARGET: &str = "sandwatch_runner::init_marks";

    #[derive(Debug, Clone)]
    pub enum Rec {
        /// A runner span: name, start, end (CLOCK_MONOTONIC ns).
        Span(&'static str, u64, u64),
        /// One of init's steps and when it was reached.
        Mark(String, u64),
    }

    pub static RECORDS: Mutex<Vec<Rec>> = Mutex::new(Vec::new());

    struct Start(u64);

    pub struct PhaseLayer;

    #[derive(Default)]
    struct MarkVisitor {
        mark: Option<String>,
        ns: Option<u64>,
    }

    impl Visit for MarkVisitor {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "mark" {
                self.mark = Some(value.to_owned());
            }
        }
        fn record_u64(&mut self, field: &Field, value: u64) {
            if field.name() == "ns" {
                self.ns = Some(value);
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for PhaseLayer {
        fn on_new_span(&self, _: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(Start(now_ns()));
            }
        }

        fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
            let end = now_ns();
            if let Some(span) = ctx.span(&id)
                && let Some(Start(start)) = span.extensions().get::<Start>()
            {
                let rec = Rec::Span(span.name(), *start, end);
                RECORDS.lock().unwrap().push(rec);
            }
        }

        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if event.metadata().target() != MARKS_TARGET {
                return;
            }
            let mut v = MarkVisitor::default();
            event.record(&mut v);
            if let (Some(m), Some(ns)) = (v.mark, v.ns) {
                RECORDS.lock().unwrap().push(Rec::Mark(m, ns));
            }
        }
    }

    pub fn install() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let filter = tracing_subscriber::filter::Targets::new()
            .with_target("sandwatch_runner", tracing::Level::TRACE);
        let subscriber = tracing_subscriber::registry().with(PhaseLayer.with_filter(filter));
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
    }

    /// A point of an iteration's timeline.
    #[derive(Clone, Copy)]
    enum At {
        Start(&'static str),
        End(&'static str),
        /// One of init's marks.
        Mark(&'static str),
    }

    /// The phases: each ends at its second point; time before its first point (when given),
    /// since the previous phase, is "other".
    const PHASES: &[(&str, Option<At>, At)] = {
        use At::*;
        &[
            ("dirs", Some(Start("sandbox.dirs")), End("sandbox.dirs")),
            ("init_clone", Some(Start("init.clone")), End("init.clone")),
            (
                "init_handoff",
                Some(Start("init.handoff")),
                End("init.handoff"),
            ),
            ("init_plan", None, Mark("plan")),
            (
                "cgroup_unified",
                Some(Start("sandbox.cgroup")),
                Start("cgroup.limits"),
            ),
            ("cgroup_limits", None, End("cgroup.limits")),
            ("init_join", None, End("init.join")),
            ("init_mounts", None, Mark("root")),
            ("init_net", None, Mark("net")),
            ("init_cgroupns", None, Mark("cgroupns")),
            ("init_rest", None, Mark("ready")),
            ("ready_delivery", None, End("sandbox.wait_ready")),
            (
                "run_spawn",
                Some(Start("sandbox.spawn")),
                End("sandbox.spawn"),
            ),
            ("run_wait", Some(Start("sandbox.wait")), End("sandbox.wait")),
            (
                "destroy",
                Some(Start("sandbox.destroy")),
                Start("destroy.kill"),
            ),
            ("destroy_kill", None, End("destroy.kill")),
            (
                "destroy_waitpid",
                Some(Start("destroy.waitpid")),
                End("destroy.waitpid"),
            ),
            (
                "destroy_rmdir_unified",
                Some(Start("cgroup.rmdir")),
                End("cgroup.rmdir"),
            ),
            (
                "destroy_rmdir_v1",
                Some(Start("cgroup.rmdir_v1")),
                End("cgroup.rmdir_v1"),
            ),
            (
                "destroy_dir",
                Some(Start("destroy.dir")),
                End("destroy.dir"),
            ),
            ("destroy", None, End("sandbox.destroy")),
        ]
    };

    /// The phases of one iteration along its critical path, in the order they happen, as
    /// (key, ms). A phase runs from where the previous one (in time) ended: work that overlapped
    /// an earlier phase counts 0, so the phases add up to the whole iteration.
    pub fn breakdown(start: u64, end: u64, recs: &[Rec]) -> Vec<(&'static str, f64)> {
        let time = |at: At| {
            recs.iter().find_map(|r| match (r, at) {
                (Rec::Span(n, s, _), At::Start(w)) if *n == w => Some(*s),
                (Rec::Span(n, _, e), At::End(w)) if *n == w => Some(*e),
                (Rec::Mark(n, t), At::Mark(w)) if n == w => Some(*t),
                _ => None,
            })
        };
        let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6;
        let mut out: Vec<(&'static str, f64)> = Vec::new();
        for (key, _, _) in PHASES {
            if !out.iter().any(|(k, _)| k == key) {
                out.push((key, 0.0));
            }
        }
        // In the order they ended: the runner may make its cgroups before or after the clone.
        let mut timed: Vec<(&'static str, Option<u64>, u64)> = PHASES
            .iter()
            .filter_map(|(k, gap, to)| Some((*k, gap.and_then(time), time(*to)?)))
            .collect();
        timed.sort_by_key(|(_, _, t)| *t);
        let mut other = 0.0;
        let mut prev = start;
        for (key, gap, to) in timed {
            if let Some(g) = gap {
                other += ms(prev, g);
                prev = prev.max(g);
            }
            if let Some((_, v)) = out.iter_mut().find(|(k, _)| *k == key) {
                *v += ms(prev, to);
            }
            prev = prev.max(to);
        }
        other += ms(prev, end);
        out.push(("other", other));
        out.push(("total", ms(start, end)));
        out
    }
}

async fn profile(setup: &Setup, contenders: &[Contender], a: &Args) -> anyhow::Result<Value> {
    phases::install();
    let mut per: BTreeMap<Contender, BTreeMap<&'static str, Vec<f64>>> = BTreeMap::new();
    let mut order: Vec<&'static str> = Vec::new();
    let total = a.warmup.min(10) + a.phases;
    for i in 0..total {
        if STOP.load(Ordering::Relaxed) {
            anyhow::bail!("interrupted");
        }
        for k in 0..contenders.len() {
            let c = contenders[(i + k) % contenders.len()];
            phases::RECORDS.lock().unwrap().clear();
            let start = now_ns();
            sandbox_once(setup, c).await?;
            let end = now_ns();
            let recs = std::mem::take(&mut *phases::RECORDS.lock().unwrap());
            if i < total - a.phases {
                continue;
            }
            let b = phases::breakdown(start, end, &recs);
            if order.is_empty() {
                order = b.iter().map(|(k, _)| *k).collect();
            }
            for (k, v) in b {
                per.entry(c).or_default().entry(k).or_default().push(v);
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (c, phases) in per {
        let list: Vec<Value> = order
            .iter()
            .map(|k| {
                let v = phases.get(k).cloned().unwrap_or_default();
                json!({"phase": k, "median": r3(median(&v)), "mean": r3(v.iter().sum::<f64>() / v.len().max(1) as f64)})
            })
            .collect();
        out.insert(c.key().into(), Value::Array(list));
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------------------

async fn bench(a: Args) -> anyhow::Result<Value> {
    let root = CgroupRoot::discover()?;
    let runtime_dir = PathBuf::from(sandbox::DEFAULT_RUNTIME_DIR);
    for id in sandbox::clean_stale(&root, &runtime_dir) {
        progress(format!("removed the remains of sandbox {id}"));
    }
    let setup = Setup {
        root,
        policy: SandboxPolicy::preset("strict").expect("built in"),
        self_exe: std::env::current_exe()?,
        sandwatch_init: a.sandwatch_init.clone(),
    };
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            STOP.store(true, Ordering::Relaxed);
        }
    });
    let mut sandboxes = vec![Contender::Sandwatch];
    if setup.sandwatch_init.is_some() {
        sandboxes.push(Contender::SandwatchInit);
    }
    if a.phases > 0 {
        progress(format!(
            "phases: {} iterations of {:?}",
            a.phases, sandboxes
        ));
        let p = profile(&setup, &sandboxes, &a).await?;
        return Ok(json!({ "phases": p, "phase_iterations": a.phases }));
    }
    let mut contenders = sandboxes.clone();
    if a.bwrap {
        contenders.push(Contender::Bwrap);
    }
    contenders.push(Contender::Bare);
    progress(format!(
        "sequential: {} warm-up + {} iterations of {:?}, interleaved",
        a.warmup, a.iterations, contenders
    ));
    let seq = sequential(&setup, &contenders, &a).await?;
    let mut burst_contenders = sandboxes.clone();
    if a.bwrap {
        burst_contenders.push(Contender::Bwrap);
    }
    progress(format!(
        "burst: {} at once, {} rounds (+1 warm-up) of {:?}",
        a.concurrency, a.rounds, burst_contenders
    ));
    let bursts = bursts(&setup, &burst_contenders, &a).await?;

    let mut seq_json = serde_json::Map::new();
    for (c, v) in &seq {
        seq_json.insert(c.key().into(), distribution(v));
    }
    let mut burst_json = serde_json::Map::new();
    for (c, v) in &bursts {
        let started: Vec<f64> = v.iter().map(|b| ms(b.started)).collect();
        let done: Vec<f64> = v.iter().map(|b| ms(b.done)).collect();
        let summary = |x: &[f64]| {
            json!({
                "median": r3(median(x)),
                "max": r3(x.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                "samples": x.iter().map(|s| r3(*s)).collect::<Vec<_>>(),
            })
        };
        burst_json.insert(
            c.key().into(),
            json!({"started": summary(&started), "done": summary(&done)}),
        );
    }
    Ok(json!({
        "iterations": a.iterations,
        "warmup": a.warmup,
        "concurrency": a.concurrency,
        "rounds": a.rounds,
        "worker_threads": worker_threads(),
        "sequential": seq_json,
        "burst": burst_json,
    }))
}

fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn main() -> ExitCode {
    // This binary is also the benchmark's sandbox init.
    sandwatch_runner::init::run_if_init();
    let args = parse_args();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        progress("run as root: sandboxes need cgroups and namespaces");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(bench(args)) {
        Ok(v) => {
            println!("SW_SANDBOX_BENCH_JSON {v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            progress(format!("failed: {e:#}"));
            ExitCode::FAILURE
        }
    }
}
