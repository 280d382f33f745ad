//! `cargo xtask bench rules`: the rule engine's throughput on one core, and detection-to-kill
//! latency through `sandwatch run`.
//!
//! 1. **Throughput.** A realistic audit log is recorded once: the demo's ten jobs (each in its
//!    own sandbox) and a busy agent job (a Python worker writing, reading, renaming and deleting
//!    JSON files and talking to loopback services over TCP and UDP, beside a shell loop starting
//!    short programs). The engine benchmark (`rules/benches/engine.rs`, built in release) then
//!    replays its batches, pinned to one core with `taskset`, through no engine (a scan of the
//!    `event` column: the baseline), the engine with no rule, the default ruleset, and the
//!    default ruleset plus every evaluable rule of Falco's three public rulesets (`--falco`,
//!    default `../shared/falco-rules`). Medians of the rounds; every batch size asked for.
//! 2. **Latency.** `--runs` times: `sandwatch run` with the built-in rules and one extra rule
//!    that kills on `proc.name = sw-victim`, whose job is a copy of `sleep` named `sw-victim`.
//!    From each run: the alert's `actions_taken` latency (the exec's kernel timestamp to the kill
//!    order given), and from the audit log the victim's `exit` row (the exec to the kernel's
//!    record of its death).
//!
//! The tables go to stdout and `target/bench/rules.md`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use arrow_array::{
    Array, TimestampNanosecondArray,
    cast::AsArray,
    types::{Int32Type, UInt32Type},
};
use serde_json::Value;

use crate::bench::{group, loadavg, machine_line, target_dir};
use crate::demo;

/// Targets of the issue.
const TARGET_EVENTS_PER_S: f64 = 1_000_000.0;
const TARGET_P99_MS: f64 = 10.0;
const JSON_PREFIX: &str = "SW_RULES_BENCH_JSON ";
/// The latency runs' sandbox ids start with this (and a number).
const LATENCY_ID: &str = "swb-kill";

#[derive(clap::Args, Clone, Debug)]
pub struct RulesArgs {
    /// Rounds of the throughput measurement (medians are reported).
    #[arg(long, value_name = "N", default_value_t = 11)]
    pub rounds: usize,
    /// Rows per replayed batch, comma-separated: 1024 is what `rules test` replays, 8192 the
    /// collector's largest batch.
    #[arg(long, value_name = "ROWS", value_delimiter = ',', default_values_t = [1024, 8192])]
    pub batch_rows: Vec<usize>,
    /// Iterations of the busy agent job's Python worker (about 3 events each).
    #[arg(long, value_name = "N", default_value_t = 80_000)]
    pub worker_iterations: u64,
    /// Replay this audit log instead of recording one.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Falco's rules files (falco_rules.yaml, falco-incubating_rules.yaml,
    /// falco-sandbox_rules.yaml) [default: ../shared/falco-rules or /work/shared/falco-rules].
    #[arg(long, value_name = "DIR")]
    pub falco: Option<PathBuf>,
    /// The CPU the throughput runs are pinned to.
    #[arg(long, value_name = "CPU", default_value_t = 0)]
    pub cpu: usize,
    /// Skip timing each rule alone.
    #[arg(long)]
    pub no_per_rule: bool,
    /// Detection-to-kill runs (p99 of 200 is the 198th value: less at the mercy of one outlier).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub runs: usize,
    /// Skip the throughput part.
    #[arg(long)]
    pub no_throughput: bool,
    /// Skip the latency part.
    #[arg(long)]
    pub no_latency: bool,
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("bench rules: {}", msg.as_ref());
}

// ---------------------------------------------------------------------------------------------
// Recording

const BUSY_PY: &str = r#"import json, os, socket, sys

n = int(sys.argv[1])
# The sandbox's tmpfs: on the host's disk, metadata writes would be the bottleneck.
d = "/tmp/busy"
os.makedirs(d, exist_ok=True)
for i in range(n):
    p = f"{d}/f{i % 100}.json"
    with open(p, "w") as f:
        json.dump({"i": i, "name": f"item-{i}"}, f)
    with open(p) as f:
        json.load(f)
    if i % 4 == 0:
        os.rename(p, p + ".old")
        os.unlink(p + ".old")
    if i % 8 == 0:
        s = socket.socket()
        s.connect_ex(("127.0.0.1", 8000 + i % 50))
        s.close()
    if i % 16 == 0:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"agent.step:1|c", ("127.0.0.1", 8125))
        s.close()
    if i % 50 == 0:
        os.listdir("/usr/lib")
    if i % 100 == 0:
        os.mkdir(f"{d}/x{i}")
        os.rmdir(f"{d}/x{i}")
print("worker done:", n, "iterations")
"#;

/// The busy agent job: the Python worker beside a shell loop of short programs.
fn busy_job(iterations: u64) -> demo::Job {
    let script = format!(
        "python3 /workspace/busy.py {iterations} & \
         for i in $(seq 300); do ls /usr/lib > /dev/null; grep -c root /etc/passwd > /dev/null; \
         sed -n 1p /etc/hostname > /dev/null; done; wait"
    );
    demo::Job {
        name: "busy-agent",
        kind: demo::Kind::Benign,
        what: "file, network and process churn",
        argv: vec!["sh".into(), "-c".into(), script],
        files: vec![("busy.py", BUSY_PY)],
        policy: None,
        expect: vec![],
        expect_kill: None,
    }
}

/// Records the throughput log into `dir/data`: the demo's jobs, then the busy job.
fn record(bin: &Path, dir: &Path, iterations: u64) -> anyhow::Result<PathBuf> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let data = dir.join("data");
    let mut jobs = demo::jobs();
    jobs.push(busy_job(iterations));
    for job in &jobs {
        let started = Instant::now();
        let out = Command::new(bin)
            .arg("run")
            .arg("--data")
            .arg(&data)
            .arg("--alerts")
            .arg(dir.join("alerts.jsonl"))
            .args(["--sandbox-id", &format!("swb-{}", job.name)])
            .args(demo::prepare(job, dir)?)
            .arg("--")
            .args(&job.argv)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let recorded = stderr
            .lines()
            .find(|l| l.starts_with("sandwatch: recorded "))
            .unwrap_or("sandwatch: (no summary)");
        if !stderr.contains("(sandbox swb-") {
            bail!(
                "recording job {} failed ({}):\n{stderr}",
                job.name,
                out.status
            );
        }
        if stderr.contains("LOST") {
            progress(format!("job {} lost records:\n{stderr}", job.name));
        }
        progress(format!(
            "recorded job {} in {:.1} s: {}",
            job.name,
            started.elapsed().as_secs_f64(),
            recorded.trim_start_matches("sandwatch: ")
        ));
    }
    Ok(data)
}

// ---------------------------------------------------------------------------------------------
// Throughput

/// Builds the engine benchmark in release and returns its executable.
fn engine_bench_binary() -> anyhow::Result<PathBuf> {
    crate::bench::bench_executable(&["sandwatch-rules"], "engine")
}

fn falco_dir(arg: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(d) = arg {
        if !d.join("falco_rules.yaml").is_file() {
            bail!("--falco {}: no falco_rules.yaml there", d.display());
        }
        return Ok(Some(d));
    }
    let found = [
        crate::workspace_root().join("../shared/falco-rules"),
        PathBuf::from("/work/shared/falco-rules"),
    ]
    .into_iter()
    .find(|d| d.join("falco_rules.yaml").is_file());
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            bail!("../shared/falco-rules (Falco's rules files) is missing: CI must have them");
        }
        progress(
            "!!! Falco's rules files not found (../shared/falco-rules): measuring the default ruleset only !!!",
        );
    }
    Ok(found)
}

fn run_engine_bench(
    exe: &Path,
    cpu: usize,
    data: &Path,
    falco: Option<&Path>,
    rounds: usize,
    batch_rows: usize,
    per_rule: bool,
) -> anyhow::Result<Value> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &cpu.to_string()])
        .arg(exe)
        .arg("--data")
        .arg(data)
        .args(["--rounds", &rounds.to_string()])
        .args(["--batch-rows", &batch_rows.to_string()]);
    if let Some(f) = falco {
        cmd.arg("--falco").arg(f);
    }
    if per_rule {
        cmd.arg("--per-rule");
    }
    progress(format!("{cmd:?}"));
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("starting taskset (util-linux) with the engine benchmark")?;
    if !out.status.success() {
        bail!("the engine benchmark failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(JSON_PREFIX))
        .context("no result line from the engine benchmark")?;
    serde_json::from_str(line).context("the engine benchmark's result is not JSON")
}

// ---------------------------------------------------------------------------------------------
// Latency

const VICTIM_RULE: &str = r#"# cargo xtask bench rules: a rule that kills as soon as its program starts.
- rule: Bench victim started
  desc: The benchmark's victim program (a copy of sleep named sw-victim) started.
  condition: evt.type in (execve, execveat) and evt.res = SUCCESS and proc.name = sw-victim
  output: Victim started (pid=%proc.pid exe=%proc.exe sandbox=%sandbox.id)
  priority: CRITICAL
  tags: [bench]
  actions: [alert, kill]
"#;

struct LatencySample {
    /// The exec's kernel timestamp to the kill order (the alert's actions_taken).
    order_ms: f64,
    /// The exec to the victim's exit row (kernel timestamps both).
    death_ms: Option<f64>,
    /// `sandwatch run` start to its exit, for the record.
    run_secs: f64,
}

struct Latency {
    samples: Vec<LatencySample>,
    failures: Vec<String>,
}

fn latency(bin: &Path, dir: &Path, runs: usize) -> anyhow::Result<Latency> {
    let _ = fs::remove_dir_all(dir);
    let ws = dir.join("workspace");
    fs::create_dir_all(&ws).with_context(|| format!("creating {}", ws.display()))?;
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("no sleep binary to copy as the victim")?;
    fs::copy(sleep, ws.join("sw-victim")).context("copying sleep as sw-victim")?;
    let rules = dir.join("victim.yaml");
    fs::write(&rules, VICTIM_RULE).with_context(|| format!("writing {}", rules.display()))?;
    let data = dir.join("data");
    let alerts = dir.join("alerts.jsonl");
    let mut pending: Vec<(String, i64, u32, f64, f64)> = Vec::new();
    let mut failures = Vec::new();
    for i in 0..runs {
        let id = format!("{LATENCY_ID}-{i:03}");
        let started = Instant::now();
        let out = Command::new(bin)
            .arg("run")
            .arg("--data")
            .arg(&data)
            .arg("--alerts")
            .arg(&alerts)
            .args(["--rules", "builtin", "--rules"])
            .arg(&rules)
            .args(["--sandbox-id", &id, "--timeout", "30s", "--workspace"])
            .arg(&ws)
            .args(["--", "/workspace/sw-victim", "20"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting {}", bin.display()))?;
        let run_secs = started.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(137) || !stderr.contains("\"Bench victim started\" killed") {
            failures.push(format!(
                "run {i}: status {}, not killed by the rule: {}",
                out.status,
                stderr.lines().last().unwrap_or("")
            ));
            continue;
        }
        let alert = fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|a| a["sandbox_id"] == id.as_str() && a["rule"] == "Bench victim started");
        let Some(a) = alert else {
            failures.push(format!("run {i}: no alert in {}", alerts.display()));
            continue;
        };
        let order = a["actions_taken"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["action"] == "kill" && t["ok"] == true))
            .and_then(|t| t["latency_ms"].as_f64());
        let (Some(order), Some(t), Some(pid)) = (
            order,
            a["time_ns"].as_i64(),
            a["evidence"][0]["pid"].as_u64(),
        ) else {
            failures.push(format!(
                "run {i}: the alert lacks a kill latency or its event: {a}"
            ));
            continue;
        };
        pending.push((id, t, pid as u32, order, run_secs));
        if (i + 1) % 50 == 0 {
            progress(format!("latency: {} of {runs} runs", i + 1));
        }
    }
    // The victims' deaths, from the audit log: the exit row of the exec'd pid in its sandbox.
    let mut exits: BTreeMap<(String, u32), i64> = BTreeMap::new();
    for b in demo::read_table(&data, "process_events")? {
        let (Some(ids), Some(events), Some(pids), Some(times)) = (
            b.column_by_name("sandbox_id")
                .and_then(|c| c.as_string_opt::<i32>()),
            b.column_by_name("event")
                .and_then(|c| c.as_string_opt::<i32>()),
            b.column_by_name("pid")
                .and_then(|c| c.as_primitive_opt::<UInt32Type>()),
            b.column_by_name("time")
                .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>()),
        ) else {
            bail!("process_events: unexpected schema");
        };
        let signals = b
            .column_by_name("exit_signal")
            .and_then(|c| c.as_primitive_opt::<Int32Type>());
        for r in 0..b.num_rows() {
            if events.value(r) == "exit"
                && ids.is_valid(r)
                && signals.is_none_or(|s| s.is_valid(r) && s.value(r) == libc::SIGKILL)
            {
                exits
                    .entry((ids.value(r).to_owned(), pids.value(r)))
                    .or_insert(times.value(r));
            }
        }
    }
    let samples = pending
        .into_iter()
        .map(|(id, t, pid, order_ms, run_secs)| LatencySample {
            order_ms,
            death_ms: exits.get(&(id, pid)).map(|end| (end - t) as f64 / 1e6),
            run_secs,
        })
        .collect();
    Ok(Latency { samples, failures })
}

// ---------------------------------------------------------------------------------------------
// Report

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn render_throughput(md: &mut String, results: &[Value], falco: Option<&Path>) {
    let Some(first) = results.first() else {
        return;
    };
    let _ = writeln!(md, "#### Throughput on one core\n");
    let rows: Vec<String> = first["rows_by_table"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {}", group(v.as_u64().unwrap_or(0))))
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "The recorded log: **{} events** ({}). Each configuration evaluates every batch of it in time \
         order with a fresh engine per pass, pinned with `taskset` to CPU {}; medians of {} rounds, the \
         configurations' order rotating every round. \"scan\" reads and hashes every row's `event` value \
         and nothing else: the floor under any engine that looks at every row. \"× scan\" = the \
         configuration's time / the scan's in the same run.\n",
        group(first["events"].as_u64().unwrap_or(0)),
        rows.join(", "),
        first["cpus_allowed"]
            .as_array()
            .map(|a| a
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_else(|| "?".into()),
        first["rounds"]
    );
    let _ = writeln!(
        md,
        "| Batch rows | Configuration | Rules | Alerts per pass | Median time | **Events/s** (median) | Best round | × scan | Target |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---|");
    for r in results {
        let configs = r["configs"].as_array().cloned().unwrap_or_default();
        let scan = configs
            .iter()
            .find(|c| c["name"] == "scan")
            .map_or(f64::NAN, |c| f(&c["median_secs"]));
        for c in &configs {
            let eps = f(&c["events_per_s"]);
            let target = if c["name"] == "default + falco" {
                if eps >= TARGET_EVENTS_PER_S {
                    "≥ 1,000,000/s ✅".to_owned()
                } else {
                    "≥ 1,000,000/s ❌ missed".to_owned()
                }
            } else {
                String::new()
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.1} ms | **{}** | {} | {:.1} | {target} |",
                r["batch_rows"],
                c["name"].as_str().unwrap_or("?"),
                c["rules"].as_u64().map_or("—".into(), |n| n.to_string()),
                c["alerts"],
                f(&c["median_secs"]) * 1e3,
                group(eps as u64),
                group(f(&c["best_events_per_s"]) as u64),
                f(&c["median_secs"]) / scan,
            );
        }
    }
    let _ = writeln!(md);
    if let Some(fi) = first["falco"].as_object() {
        let files: Vec<String> = fi["per_file"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| format!("{} {} of {}", x[0].as_str().unwrap_or("?"), x[2], x[1]))
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "\"default + falco\": the built-in rules and Falco's evaluable rules from {} ({}; {} of them ship \
             `enabled: false` and were switched on for this).",
            falco.map_or("?".into(), |p| format!("`{}`", p.display())),
            files.join(", "),
            fi["switched_on"]
        );
        if let Some(nc) = fi["not_compiled"].as_array().filter(|a| !a.is_empty()) {
            let _ = writeln!(
                md,
                "\n**Evaluable but refused by the engine** (left out; an engine bug to fix):\n"
            );
            for x in nc {
                let _ = writeln!(
                    md,
                    "- {}: {}",
                    x[0].as_str().unwrap_or("?"),
                    x[1].as_str().unwrap_or("?")
                );
            }
        }
        let _ = writeln!(md);
    } else {
        let _ = writeln!(
            md,
            "Falco's rules files were not found: the \"default + falco\" configuration was not measured.\n"
        );
    }
    let per_rule = first["per_rule"].as_array().cloned().unwrap_or_default();
    if !per_rule.is_empty() {
        let fixed = f(&per_rule[0]["secs"]);
        let total: f64 = per_rule[1..]
            .iter()
            .map(|r| f(&r["own_secs"]).max(0.0))
            .sum();
        let _ = writeln!(
            md,
            "<details><summary>Where the time goes ({} batch rows): each rule alone, its own time = an engine \
             holding only it minus the 0-rule engine ({:.1} ms); the 15 costliest of {}, summing to {:.1} ms of \
             the {:.1} ms all own times add up to (more than the whole: alone, a rule also pays for the derived \
             columns that rules evaluated together share)</summary>\n",
            first["batch_rows"],
            fixed * 1e3,
            per_rule.len() - 1,
            per_rule[1..]
                .iter()
                .take(15)
                .map(|r| f(&r["own_secs"]).max(0.0))
                .sum::<f64>()
                * 1e3,
            total * 1e3
        );
        let _ = writeln!(md, "| Rule | File | Own time | Share | Alerts |");
        let _ = writeln!(md, "|---|---|---:|---:|---:|");
        for r in per_rule[1..].iter().take(15) {
            let own = f(&r["own_secs"]);
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} ms | {:.1}% | {} |",
                r["rule"].as_str().unwrap_or("?"),
                r["file"].as_str().unwrap_or(""),
                own * 1e3,
                100.0 * own.max(0.0) / total,
                r["alerts"]
            );
        }
        let _ = writeln!(md, "\n</details>\n");
    }
}

fn render_latency(md: &mut String, l: &Latency, runs: usize) {
    let _ = writeln!(md, "#### Detection-to-kill latency\n");
    let _ = writeln!(
        md,
        "{runs} runs of `sandwatch run --rules builtin --rules victim.yaml -- /workspace/sw-victim 20`: the \
         built-in rules plus one rule with `actions: [alert, kill]` on `proc.name = sw-victim` (a copy of \
         `sleep`). \"The kill order\": from the exec's kernel timestamp to the return of the kill order \
         (`cgroup.kill` written; the alert's `actions_taken[].latency_ms`, taken after the order returned, so \
         it can come after the death); \"the victim's death\": from the exec to the victim's `exit` row \
         (SIGKILL), both kernel timestamps from the audit log. One run at a time, not pinned. {} of {runs} \
         runs gave a sample.\n",
        l.samples.len()
    );
    let order: Vec<f64> = l.samples.iter().map(|s| s.order_ms).collect();
    let death: Vec<f64> = l.samples.iter().filter_map(|s| s.death_ms).collect();
    let _ = writeln!(
        md,
        "| From the exec to | Samples | p50 | p90 | p99 | max | Target |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---|");
    for (what, v, target) in [
        ("the kill order (user-space rule)", &order, true),
        ("the victim's death (its exit row)", &death, false),
    ] {
        let p99 = percentile(v, 99.0);
        let t = if target {
            if p99 <= TARGET_P99_MS {
                "p99 ≤ 10 ms ✅".to_owned()
            } else {
                "p99 ≤ 10 ms ❌ missed".to_owned()
            }
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {what} | {} | {:.2} ms | {:.2} ms | **{:.2} ms** | {:.2} ms | {t} |",
            v.len(),
            percentile(v, 50.0),
            percentile(v, 90.0),
            p99,
            v.iter().copied().fold(f64::NAN, f64::max),
        );
    }
    let runs_secs: Vec<f64> = l.samples.iter().map(|s| s.run_secs).collect();
    let _ = writeln!(
        md,
        "\nA whole run (start, probes, sandbox, kill, flush) took {:.2} s at the median.",
        percentile(&runs_secs, 50.0)
    );
    if !l.failures.is_empty() {
        let _ = writeln!(md, "\nRuns without a sample:\n");
        for f in &l.failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    let _ = writeln!(
        md,
        "\n<details><summary>Raw samples, ms (to the kill order / to the death)</summary>\n\n{}\n\n</details>\n",
        l.samples
            .iter()
            .map(|s| format!(
                "{:.2}/{}",
                s.order_ms,
                s.death_ms.map_or("?".into(), |d| format!("{d:.2}"))
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

pub fn run(args: RulesArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench rules records jobs in sandboxes (eBPF, cgroups): run it as root");
    }
    if args.runs < 100 && !args.no_latency {
        progress(format!(
            "only {} latency runs: the README's p99 needs at least 100",
            args.runs
        ));
    }
    let bin = demo::release_binary(false, |m| progress(m))?;
    let load_start = loadavg();
    // The jobs run as a mapped uid and must reach their workspaces: a target directory below a
    // private home (mode 700) is out of their reach, the system's temporary directory is not.
    let scratch = std::env::temp_dir().join("sandwatch-bench-rules");
    let mut md = String::new();
    let _ = writeln!(md, "### Rule benchmarks (`cargo xtask bench rules`)\n");
    let mut throughput = Vec::new();
    let mut falco = None;
    if !args.no_throughput {
        let exe = engine_bench_binary()?;
        falco = falco_dir(args.falco.clone())?;
        let data = match &args.data {
            Some(d) => d.clone(),
            None => {
                progress("recording the workload (the demo's jobs and a busy agent job)");
                record(&bin, &scratch.join("log"), args.worker_iterations)?
            }
        };
        for (i, rows) in args.batch_rows.iter().enumerate() {
            throughput.push(run_engine_bench(
                &exe,
                args.cpu,
                &data,
                falco.as_deref(),
                args.rounds,
                *rows,
                i == 0 && !args.no_per_rule,
            )?);
        }
    }
    let lat = if args.no_latency {
        None
    } else {
        progress(format!("latency: {} runs", args.runs));
        Some(latency(&bin, &scratch.join("latency"), args.runs)?)
    };
    let _ = writeln!(
        md,
        "Machine: {}; load average {load_start} at the start, {} at the end.\n",
        machine_line(),
        loadavg()
    );
    render_throughput(&mut md, &throughput, falco.as_deref());
    if let Some(l) = &lat {
        render_latency(&mut md, l, args.runs);
    }
    let _ = writeln!(md, "_Suite time {:.0} s._", started.elapsed().as_secs_f64());
    println!("{md}");
    let out_dir = target_dir().join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join("rules.md");
    fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    progress(format!("table written to {}", out.display()));
    let _ = fs::remove_dir_all(scratch.join("latency"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
