//! `cargo xtask bench sandbox`: how fast a fully isolated sandbox is made, used and removed,
//! against bubblewrap in the same run.
//!
//! The measuring is `sw-sandbox-bench` (tests/src/bin/sw-sandbox-bench.rs, built in release); this
//! module installs bubblewrap if it is missing, runs the benchmark twice (the figures, then the
//! phase breakdown, which times the runner's tracing spans and so is kept out of the figures),
//! writes `target/bench/sandbox.md` and prints the verdicts against the README's targets.
//!
//! The sandboxes' zygote (which clones every init) is the benchmark binary itself (small), and,
//! in the same interleaved loop, the real release `sandwatch` binary, as `sandwatch run` uses: the
//! realistic figure.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::bench::{command_output, loadavg, machine_line, target_dir};

/// Targets of the issue: create + run /bin/true + destroy.
const TARGET_P50_MS: f64 = 10.0;
const STRETCH_P50_MS: f64 = 5.0;
/// 20 sandboxes started at once: every command running within.
const TARGET_BURST_MS: f64 = 200.0;
const BWRAP_ARGS: &str = "--unshare-all --ro-bind / / --dev /dev --proc /proc";
const JSON_PREFIX: &str = "SW_SANDBOX_BENCH_JSON ";

#[derive(clap::Args, Clone, Debug)]
pub struct SandboxArgs {
    /// Measured iterations of the sequential loop (after the warm-up).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub iterations: usize,
    /// Warm-up iterations, discarded.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub warmup: usize,
    /// Sandboxes started at once in the burst test.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub concurrency: usize,
    /// Rounds of the burst test (medians and maxima are reported).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub rounds: usize,
    /// Iterations of the phase breakdown (0: skip it).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub phases: usize,
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("bench sandbox: {}", msg.as_ref());
}

/// bwrap's version, installing Debian's `bubblewrap` when it is missing.
fn ensure_bwrap() -> anyhow::Result<String> {
    let version = || command_output(Command::new("bwrap").arg("--version"));
    if let Some(v) = version() {
        return Ok(v);
    }
    const INSTALL: &str = "apt-get install -y bubblewrap";
    progress(format!("bwrap is not installed: {INSTALL}"));
    let mut installed = Command::new("apt-get")
        .args(["install", "-y", "bubblewrap"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        // A stale package list is the usual reason.
        progress("retrying after apt-get update");
        installed = Command::new("apt-get")
            .arg("update")
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("apt-get")
                .args(["install", "-y", "bubblewrap"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success());
    }
    match version() {
        Some(v) if installed => Ok(v),
        _ => bail!(
            "bubblewrap (bwrap) is needed as the reference and could not be installed; run `apt-get update && {INSTALL}`"
        ),
    }
}

/// Runs the benchmark binary and returns its JSON summary.
fn run_bench(bin: &Path, args: &[String]) -> anyhow::Result<Value> {
    progress(format!("{} {}", bin.display(), args.join(" ")));
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{} failed ({})", bin.display(), out.status);
    }
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(JSON_PREFIX))
        .with_context(|| format!("no {JSON_PREFIX:?} line in the output of {}", bin.display()))?;
    serde_json::from_str(line).context("the benchmark's summary is not JSON")
}

fn f(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
}

fn file_size_mib(p: &Path) -> String {
    fs::metadata(p)
        .map(|m| format!("{:.1} MiB", m.len() as f64 / (1 << 20) as f64))
        .unwrap_or_else(|_| "?".into())
}

struct Report<'a> {
    args: &'a SandboxArgs,
    bench_bin: &'a Path,
    sandwatch_bin: &'a Path,
    bwrap_version: String,
    main: &'a Value,
    phases: Option<&'a Value>,
    load_start: String,
    started: Instant,
}

const CONTENDERS: [(&str, &str); 4] = [
    (
        "sandwatch",
        "sandwatch, init = the bench binary (`Sandbox::create` strict → `run /bin/true` → `destroy`)",
    ),
    (
        "sandwatch_init",
        "sandwatch, init = release `sandwatch` (as `sandwatch run`)",
    ),
    (
        "bwrap",
        "`bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true`",
    ),
    ("bare", "`/bin/true` spawned and waited for (the floor)"),
];

/// Phase keys of sw-sandbox-bench's breakdown, in the order they happen, with what each covers.
const PHASES: &[(&str, &str)] = &[
    (
        "dirs",
        "runtime dir (made locked, renamed), workspace mkdir + chown",
    ),
    (
        "init_clone",
        "the zygote clones init (NEWUSER|NEWPID|NEWNS|NEWUTS|NEWIPC|NEWNET), a pidfd on it",
    ),
    ("init_handoff", "uid/gid maps, the plan sent"),
    (
        "init_plan",
        "init: receives the plan, takes the namespace's root identity",
    ),
    (
        "cgroup_unified",
        "cgroup v2 (unified) mkdir, open cgroup.procs (while init builds the root)",
    ),
    (
        "cgroup_limits",
        "cgroup v1 cpu/memory/pids mkdir + limit writes (hybrid host; while init builds the root)",
    ),
    (
        "init_join",
        "init joined to every cgroup (an RCU grace period), `Joined` sent",
    ),
    (
        "init_mounts",
        "init: build the root (binds, tmpfs, /dev, /proc, masks, pivot_root, detach the host's)",
    ),
    ("init_net", "init: bring loopback up"),
    (
        "init_cgroupns",
        "init: seccomp filter, Landlock domain, rlimits; waits for `Joined`; cgroup namespace",
    ),
    ("init_rest", "init: until Ready"),
    ("ready_delivery", "Ready message until the runner wakes"),
    (
        "run_spawn",
        "`run`: Exec message, init forks + confines (caps, Landlock, seccomp) + execs, Started",
    ),
    (
        "run_wait",
        "`run`: command runs, exits, pipes drained, Exited",
    ),
    (
        "destroy",
        "destroy: cgroup.kill, init's exit (pidfd), rmdirs, the directory (a blocking thread only when slow)",
    ),
    ("destroy_kill", "destroy, slow path: write cgroup.kill"),
    (
        "destroy_waitpid",
        "destroy, slow path: wait for init (the namespaces' teardown)",
    ),
    (
        "destroy_rmdir_unified",
        "destroy, slow path: rmdir the unified cgroup (polling while busy)",
    ),
    (
        "destroy_rmdir_v1",
        "destroy, slow path: rmdir the v1 cpu/memory/pids cgroups",
    ),
    (
        "destroy_dir",
        "destroy, slow path: remove the runtime dir and workspace",
    ),
    (
        "other",
        "between the spans (create's and run's bookkeeping, task wake-ups)",
    ),
    ("total", "whole iteration (with the tracing layer on)"),
];

fn verdict_p50(p50: f64, bwrap: f64) -> String {
    let below = p50 < bwrap;
    if p50 <= STRETCH_P50_MS && below {
        "✅ target met (≤ 10 ms, below bwrap) and stretch (≤ 5 ms)".into()
    } else if p50 <= TARGET_P50_MS && below {
        "✅ target met (≤ 10 ms, below bwrap); stretch (≤ 5 ms) not".into()
    } else if p50 <= TARGET_P50_MS {
        "❌ missed: ≤ 10 ms but not below bwrap".into()
    } else {
        "❌ missed: above 10 ms".into()
    }
}

fn verdict_burst(median: f64, max: f64) -> String {
    if median <= TARGET_BURST_MS && max <= TARGET_BURST_MS {
        "✅ met (≤ 200 ms, every round)".into()
    } else if median <= TARGET_BURST_MS {
        format!("✅ met on the median (≤ 200 ms); the worst round took {max:.0} ms")
    } else {
        "❌ missed (median above 200 ms)".into()
    }
}

impl Report<'_> {
    fn verdicts(&self) -> Vec<String> {
        let m = self.main;
        let bwrap = f(m, &["sequential", "bwrap", "p50"]);
        let mut out = Vec::new();
        for (key, label) in [
            ("sandwatch_init", "init = sandwatch (realistic)"),
            ("sandwatch", "init = bench binary"),
        ] {
            let p50 = f(m, &["sequential", key, "p50"]);
            if p50.is_nan() {
                continue;
            }
            out.push(format!(
                "create+run+destroy p50, {label}: {p50:.2} ms (p99 {:.2} ms) vs bwrap {bwrap:.2} ms: {}",
                f(m, &["sequential", key, "p99"]),
                verdict_p50(p50, bwrap)
            ));
        }
        for (key, label) in [
            ("sandwatch_init", "init = sandwatch (realistic)"),
            ("sandwatch", "init = bench binary"),
        ] {
            let med = f(m, &["burst", key, "started", "median"]);
            if med.is_nan() {
                continue;
            }
            let max = f(m, &["burst", key, "started", "max"]);
            out.push(format!(
                "{} at once, all commands started, {label}: median {med:.1} ms, max {max:.1} ms: {}",
                self.args.concurrency,
                verdict_burst(med, max)
            ));
        }
        out
    }

    fn render(&self) -> String {
        let a = self.args;
        let m = self.main;
        let mut md = String::new();
        let _ = writeln!(md, "### Sandbox benchmarks (`cargo xtask bench sandbox`)\n");
        let _ = writeln!(
            md,
            "Machine: {}; load average {} at the start, {} at the end. bwrap: {}. Runtime: tokio multi-thread, {} worker threads.\n",
            machine_line(),
            self.load_start,
            loadavg(),
            self.bwrap_version,
            m.get("worker_threads").and_then(Value::as_u64).unwrap_or(0)
        );
        let _ = writeln!(
            md,
            "Command: `{} --iterations {} --warmup {} --concurrency {} --rounds {} --sandwatch-init {}` (release builds; \
             init binaries: bench {}, sandwatch {}).\n",
            self.bench_bin.display(),
            a.iterations,
            a.warmup,
            a.concurrency,
            a.rounds,
            self.sandwatch_bin.display(),
            file_size_mib(self.bench_bin),
            file_size_mib(self.sandwatch_bin)
        );
        let _ = writeln!(
            md,
            "#### 1. Create + run `/bin/true` + destroy, one at a time\n\n\
             Every iteration runs each contender once, the order rotated each iteration, so they share the host's \
             noise; {} warm-up iterations discarded, {} measured. A sandbox here is the `strict` preset: user, pid, \
             mount, UTS, IPC, network and cgroup namespaces, cgroups with CPU/memory/pids limits (v1 controllers on this \
             hybrid host), a minimal read-only root, an ephemeral workspace; the command's output goes through \
             `Sandbox::run` into `tokio::io::sink()`. Times in ms; nearest-rank percentiles.\n",
            a.warmup, a.iterations
        );
        let _ = writeln!(
            md,
            "| Contender | p50 | p90 | p99 | max | min | p50 / bwrap p50 |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        let bwrap = f(m, &["sequential", "bwrap", "p50"]);
        for (key, label) in CONTENDERS {
            let s = |k: &str| f(m, &["sequential", key, k]);
            if s("p50").is_nan() {
                continue;
            }
            let _ = writeln!(
                md,
                "| {label} | **{:.2}** | {:.2} | **{:.2}** | {:.2} | {:.2} | {:.2} |",
                s("p50"),
                s("p90"),
                s("p99"),
                s("max"),
                s("min"),
                s("p50") / bwrap
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "#### 2. {} sandboxes started at once\n\n\
             {} rounds (after one unrecorded warm-up round of each), alternating. sandwatch: {} tokio tasks each \
             `create` + `spawn(/bin/true)`; \"all started\" is when the last init answered `Started` (the command \
             was executed), \"all done\" when the last one was drained, exited and destroyed. bwrap (reference): {} \
             `bwrap {BWRAP_ARGS} echo x` at once; \"started\" is echo's first byte (echo's own start included), \
             \"done\" its exit. Times in ms.\n",
            a.concurrency, a.rounds, a.concurrency, a.concurrency
        );
        let _ = writeln!(
            md,
            "| Contender | all started, median | all started, max | all done, median | all done, max |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for (key, label) in [
            ("sandwatch", "sandwatch, init = bench binary"),
            ("sandwatch_init", "sandwatch, init = release `sandwatch`"),
            ("bwrap", "bwrap … echo x"),
        ] {
            let b = |k: &str, s: &str| f(m, &["burst", key, k, s]);
            if b("started", "median").is_nan() {
                continue;
            }
            let _ = writeln!(
                md,
                "| {label} | **{:.1}** | {:.1} | {:.1} | {:.1} |",
                b("started", "median"),
                b("started", "max"),
                b("done", "median"),
                b("done", "max")
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(md, "#### Verdicts\n");
        for v in self.verdicts() {
            let _ = writeln!(md, "- {v}");
        }
        let _ = writeln!(
            md,
            "\nNot like for like, in sandwatch's disfavour: the sandbox does more (cgroups with limits, an init that \
             stays to run commands, seccomp, Landlock, no capabilities) and the `strict` preset's `cpu.shares: 512` \
             and 1-core quota hold init and the command, so on a busy host they get half the CPU weight bwrap and \
             the bare spawn get. The zygote that clones each sandbox's init (started once per run, not \
             timed) is the benchmark binary in the first row and the release `sandwatch` binary, as `sandwatch run` \
             uses, in the second. bwrap's network namespace is torn down \
             asynchronously by the kernel, as the sandbox's is.\n"
        );
        if let Some(p) = self.phases {
            let n = p
                .get("phase_iterations")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let _ = writeln!(
                md,
                "#### 3. Where the time goes (separate run: `{} --phases {n} --sandwatch-init …`)\n\n\
                 {n} iterations per init, interleaved, with a tracing layer timing the runner's spans \
                 (`sandbox.*`, `init.*`, `cgroup.*`, `destroy.*`) and init's own step marks (CLOCK_MONOTONIC, sent \
                 with Ready). The phases partition each iteration's wall time along its critical path: a phase runs \
                 from where the previous one ended, so work hidden behind an earlier phase counts 0 (the runner makes \
                 and joins the cgroups while init builds the root; init's steps run while the runner waits for Ready). \
                 Medians in ms, so the column does not add up exactly to the total's median.\n",
                self.bench_bin.display()
            );
            let _ = writeln!(
                md,
                "| Phase | What | init = bench binary | init = sandwatch |"
            );
            let _ = writeln!(md, "|---|---|---:|---:|");
            let get = |c: &str, phase: &str| {
                p.get("phases")
                    .and_then(|x| x.get(c))
                    .and_then(Value::as_array)
                    .and_then(|l| {
                        l.iter()
                            .find(|e| e.get("phase").and_then(Value::as_str) == Some(phase))
                    })
                    .and_then(|e| e.get("median"))
                    .and_then(Value::as_f64)
            };
            let cell = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.3}"));
            for (key, what) in PHASES {
                let bold = *key == "total";
                let (x, y) = (
                    cell(get("sandwatch", key)),
                    cell(get("sandwatch_init", key)),
                );
                if bold {
                    let _ = writeln!(md, "| **{key}** | {what} | **{x}** | **{y}** |");
                } else {
                    let _ = writeln!(md, "| {key} | {what} | {x} | {y} |");
                }
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(
            md,
            "<details><summary>Raw samples (ms, in order)</summary>\n"
        );
        for (key, _) in CONTENDERS {
            if let Some(s) = m
                .get("sequential")
                .and_then(|x| x.get(key))
                .and_then(|x| x.get("samples"))
                .and_then(Value::as_array)
            {
                let list: Vec<String> = s.iter().map(|v| v.to_string()).collect();
                let _ = writeln!(md, "- sequential {key}: {}", list.join(" "));
            }
        }
        for key in ["sandwatch", "sandwatch_init", "bwrap"] {
            for what in ["started", "done"] {
                if let Some(s) = m
                    .get("burst")
                    .and_then(|x| x.get(key))
                    .and_then(|x| x.get(what))
                    .and_then(|x| x.get("samples"))
                    .and_then(Value::as_array)
                {
                    let list: Vec<String> = s.iter().map(|v| v.to_string()).collect();
                    let _ = writeln!(md, "- burst {key} {what}: {}", list.join(" "));
                }
            }
        }
        let _ = writeln!(md, "\n</details>\n");
        let _ = writeln!(
            md,
            "_Suite time {:.0} s._",
            self.started.elapsed().as_secs_f64()
        );
        md
    }
}

pub fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.iterations == 0 || args.concurrency == 0 || args.rounds == 0 {
        bail!("--iterations, --concurrency and --rounds must be at least 1");
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "bench sandbox creates cgroups and namespaces: run it as root (sudo -E cargo xtask bench sandbox)"
        );
    }
    let bwrap_version = ensure_bwrap()?;
    progress(format!(
        "{bwrap_version}; building the benchmark and sandwatch (release)"
    ));
    crate::run(crate::cargo().args([
        "build",
        "--release",
        "-p",
        "sandwatch",
        "--bin",
        "sandwatch",
        "-p",
        "sandwatch-tests",
        "--bin",
        "sw-sandbox-bench",
    ]))?;
    let release = target_dir().join("release");
    let bench_bin: PathBuf = release.join("sw-sandbox-bench");
    let sandwatch_bin: PathBuf = release.join("sandwatch");
    for b in [&bench_bin, &sandwatch_bin] {
        if !b.exists() {
            bail!("{} is missing after the build", b.display());
        }
    }
    // Ctrl-C reaches the benchmark too, which stops and cleans up; we only report.
    crate::bench::install_signal_handlers();

    let load_start = loadavg();
    let sw = sandwatch_bin.display().to_string();
    let main_args: Vec<String> = [
        "--iterations",
        &args.iterations.to_string(),
        "--warmup",
        &args.warmup.to_string(),
        "--concurrency",
        &args.concurrency.to_string(),
        "--rounds",
        &args.rounds.to_string(),
        "--sandwatch-init",
        &sw,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let main = run_bench(&bench_bin, &main_args)?;
    let phases = if args.phases > 0 {
        let phase_args: Vec<String> = [
            "--phases",
            &args.phases.to_string(),
            "--sandwatch-init",
            &sw,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Some(run_bench(&bench_bin, &phase_args)?)
    } else {
        None
    };
    let report = Report {
        args: &args,
        bench_bin: &bench_bin,
        sandwatch_bin: &sandwatch_bin,
        bwrap_version,
        main: &main,
        phases: phases.as_ref(),
        load_start,
        started,
    };
    let md = report.render();
    println!("{md}");
    let out_dir = target_dir().join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join("sandbox.md");
    fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    progress(format!("table written to {}", out.display()));
    for v in report.verdicts() {
        progress(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_targets() {
        assert!(verdict_p50(4.0, 12.0).contains("stretch (≤ 5 ms)"));
        assert!(verdict_p50(8.0, 12.0).starts_with("✅"));
        assert!(verdict_p50(8.0, 7.0).starts_with("❌"));
        assert!(verdict_p50(11.0, 12.0).starts_with("❌"));
        assert!(verdict_burst(150.0, 180.0).starts_with("✅ met (≤"));
        assert!(verdict_burst(250.0, 300.0).starts_with("❌"));
        let v: Value = serde_json::from_str(r#"{"a":{"b":1.5}}"#).unwrap();
        assert_eq!(f(&v, &["a", "b"]), 1.5);
        assert!(f(&v, &["a", "c"]).is_nan());
    }
}
