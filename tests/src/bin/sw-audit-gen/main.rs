//! `sw-audit-gen --rows N --out DIR [--seed S] [--sandboxes K] [--days D] [--hosts H]`: writes a
//! realistic synthetic audit log of exactly N events through the collector's own Parquet sink
//! (`cargo xtask gen-audit` drives it; `cargo xtask bench sql` queries it).
//!
//! What it looks like: K sandboxes (thousands for tens of millions of events) of seven job
//! profiles spread over D days, on H hosts, each host one collector with its own sink writing
//! into DIR as `sandwatch watch` would: hive partitions `<table>/date=/hour=/`, batches of at
//! most 8192 rows sealed per hour, the sink's default Parquet layout. Per sandbox: its
//! lifecycle (`created`, `started`/`exited` per command, `killed` with a reason, `destroyed`),
//! a metric sample every second, and process trees that start from the sandbox's init (host
//! pids; `ppid` chains that form trees; a clone's `child_pid` in the sandbox's pid namespace;
//! execs with argv, filename, cwd and the exec facts; PATH misses; threads; an exit for every
//! process and thread). Their work is what real logs hold: file events dominate (the loader's
//! libraries, interpreters' modules, packages, workspace files, temporary files, a few writes
//! below /etc that mostly fail), connects to a few hundred destinations with a Zipf head after
//! a loopback DNS query, rare sensitive syscalls. Some sandboxes do something a rule catches
//! (a binary run from /tmp, /etc/shadow read, a reverse shell, a miner that gets the sandbox
//! killed, ...): the `alerts` table holds those alerts, each pointing at its event row through
//! `event_table`, `event_time`, `event_pid` and `event_tid`.
//!
//! Deterministic: the same arguments give the same rows (file names carry the time of writing,
//! as the sink names them). The Parquet encoding runs on its own thread, as in the collector;
//! at the end it prints the rows per table, the rows per second of the whole run and per
//! CPU-second of the sink thread alone (the ingest cost of the layout), and writes `DIR/sw-audit-gen.json` with the arguments and counts.

mod rng;
mod sandbox;
mod vocab;
mod writer;

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashSet},
    fs,
    path::PathBuf,
    rc::Rc,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use sandwatch_collector::{ParquetOptions, ParquetSink, SinkSummary};
use sandwatch_schema::TableBatch;

use crate::{
    rng::{Rng, Zipf},
    sandbox::{Act, End, HostState, SEC, Sim, Spec},
    vocab::PROFILES,
    writer::{TABLES, Writer},
};

#[derive(Parser, Debug)]
#[command(
    name = "sw-audit-gen",
    about = "Writes a synthetic audit log through the Parquet sink"
)]
struct Args {
    /// Event rows to write (process, file, network and syscall events together).
    #[arg(long)]
    rows: u64,
    /// The audit log's directory (must not hold one already).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Sandboxes [default: one per 10,000 events, at least 8].
    #[arg(long)]
    sandboxes: Option<u64>,
    /// Days the sandboxes' starts spread over.
    #[arg(long, default_value_t = 3)]
    days: u32,
    /// Hosts, each a collector with its own sink writing into the same directory.
    #[arg(long, default_value_t = 4)]
    hosts: u32,
    /// The first day, UTC.
    #[arg(long, default_value = "2026-11-23")]
    start: String,
}

/// The fewest event rows a sandbox writes (init's fork, the command's exec and exit, ...).
const MIN_BUDGET: u64 = 24;
/// Destinations in the log; connects follow Zipf(1.1) over them.
const DESTINATIONS: usize = 300;
const DAY_NS: i64 = 86_400 * SEC;
/// No sandbox runs longer than this.
const MAX_LIFE_NS: f64 = 6.0 * 3600.0 * SEC as f64;

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Howard Hinnant's algorithm: days since 1970-01-01.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_date(s: &str) -> anyhow::Result<i64> {
    let parts: Vec<i64> = s
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("--start {s}: not YYYY-MM-DD"))?;
    let [y, m, d] = parts[..] else {
        bail!("--start {s}: not YYYY-MM-DD");
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        bail!("--start {s}: not a date");
    }
    Ok(days_from_civil(y, m, d) * DAY_NS)
}

fn policy_hash(profile: &str) -> String {
    let mut rng = Rng::new(profile.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }));
    rng.hex(64)
}

/// Every sandbox, decided before any runs: who it is, where, when, how much it does.
fn plan(args: &Args, start_ns: i64) -> anyhow::Result<Vec<(usize, Spec)>> {
    let mut k = args
        .sandboxes
        .unwrap_or_else(|| (args.rows / 10_000).max(8));
    if k == 0 {
        bail!("--sandboxes must be at least 1");
    }
    if args.rows < MIN_BUDGET * k {
        k = (args.rows / MIN_BUDGET).max(1);
        eprintln!(
            "sw-audit-gen: {} rows are too few for that many sandboxes: {k} sandboxes",
            args.rows
        );
    }
    if args.rows < MIN_BUDGET {
        bail!("--rows must be at least {MIN_BUDGET}");
    }
    let hashes: Vec<Rc<str>> = PROFILES
        .iter()
        .map(|p| Rc::from(policy_hash(p.name)))
        .collect();
    let profile_weights: Vec<(usize, u32)> = PROFILES
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.weight))
        .collect();
    let mut rng = Rng::new(args.seed);
    // Budgets: log-normal weights (a few busy sandboxes, many small ones), at least MIN_BUDGET
    // each, adjusted to add up to exactly --rows.
    let weights: Vec<f64> = (0..k).map(|_| rng.lognormal(1.0, 1.2)).collect();
    let total_w: f64 = weights.iter().sum();
    let spare = args.rows - MIN_BUDGET * k;
    let mut budgets: Vec<u64> = weights
        .iter()
        .map(|w| MIN_BUDGET + (spare as f64 * w / total_w) as u64)
        .collect();
    let mut sum: u64 = budgets.iter().sum();
    let mut order: Vec<usize> = (0..k as usize).collect();
    order.sort_by(|a, b| budgets[*b].cmp(&budgets[*a]));
    let mut i = 0;
    while sum != args.rows {
        let b = &mut budgets[order[i % order.len()]];
        if sum < args.rows {
            *b += 1;
            sum += 1;
        } else if *b > MIN_BUDGET {
            *b -= 1;
            sum -= 1;
        }
        i += 1;
    }
    let span = i64::from(args.days.max(1)) * DAY_NS;
    let mut ids = HashSet::new();
    let mut specs = Vec::with_capacity(k as usize);
    for (index, budget) in budgets.into_iter().enumerate() {
        let seed = args
            .seed
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(index as u64 * 7919 + 1);
        let mut r = Rng::new(seed);
        let id = loop {
            let id = format!("sw-{}", r.hex(8));
            if ids.insert(id.clone()) {
                break id;
            }
        };
        let profile = *r.weighted(&profile_weights);
        let mut rate = r.lognormal(25.0, 0.8).clamp(2.0, 3000.0);
        let mut life = budget as f64 / rate * SEC as f64;
        if life > MAX_LIFE_NS {
            rate = budget as f64 * SEC as f64 / MAX_LIFE_NS;
            life = MAX_LIFE_NS;
        }
        // Starts follow the working day (UTC 08-20 busiest), never past the span's end.
        let latest = (span - life as i64).max(1);
        let start = loop {
            let t = r.below(latest as u64) as i64;
            let hour = (t % DAY_NS) as f64 / 3600.0 / SEC as f64;
            let busy = 0.3 + 0.7 * (-((hour - 14.0) / 5.0).powi(2)).exp();
            if r.chance(busy) {
                break start_ns + t;
            }
        };
        let commands = match r.below(10) {
            0..=6 => 1,
            7..=8 => 2,
            _ => 3,
        }
        .min((budget / 12).max(1) as u32);
        let end = match r.below(1000) {
            0..=9 => End::Timeout,
            10..=16 => End::Oom,
            _ => End::Normal,
        };
        let mut acts = Vec::new();
        if budget >= 60 && r.chance(0.3) {
            let kinds = [
                (Act::TmpBinary, 3),
                (Act::ShadowRead, 3),
                (Act::EtcWrite, 2),
                (Act::ReverseShell, 1),
                (Act::Sudo, 2),
                (Act::Listener, 4),
                (Act::Miner, 1),
                (Act::SetuidRoot, 1),
            ];
            for _ in 0..1 + r.below(4) {
                let act = *r.weighted(&kinds);
                if !(act.kills() && acts.iter().any(|a: &Act| a.kills())) {
                    acts.push(act);
                }
            }
        }
        let host = index % args.hosts.max(1) as usize;
        specs.push((
            host,
            Spec {
                id,
                profile: &PROFILES[profile],
                policy_hash: hashes[profile].clone(),
                start_ns: start,
                budget,
                rate,
                cgroup_id: 4096 + index as u64 * 2,
                seed,
                commands,
                end: if acts.iter().any(|a| a.kills()) {
                    End::Normal
                } else {
                    end
                },
                acts,
            },
        ));
    }
    Ok(specs)
}

/// A sandbox before its start (a spec) and while it runs (a simulation with its buffers).
enum Slot {
    Planned(Spec),
    Running(Box<Sim>),
}

struct SinkRun {
    summary: SinkSummary,
    /// The sink thread's CPU time: encoding, compression, writing (not waiting for fsync).
    cpu: Duration,
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; the thread CPU clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The sink on its own thread, as the collector runs it; its CPU time is the ingest cost.
fn spawn_sink(
    sink: ParquetSink,
    rx: mpsc::Receiver<TableBatch>,
) -> std::thread::JoinHandle<anyhow::Result<SinkRun>> {
    std::thread::Builder::new()
        .name("parquet-sink".into())
        .spawn(move || {
            let mut sink = sink;
            for batch in rx {
                sink.write(&batch)?;
            }
            let summary = sink.close()?;
            Ok(SinkRun {
                summary,
                cpu: thread_cpu_time(),
            })
        })
        .expect("spawning the sink thread")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let start_ns = parse_date(&args.start)?;
    if args.out.join("process_events").exists() || args.out.join("file_events").exists() {
        bail!(
            "{} already holds an audit log: give an empty or new directory",
            args.out.display()
        );
    }
    let started = Instant::now();
    let specs = plan(&args, start_ns)?;
    let n_sandboxes = specs.len();
    let destinations: Rc<[(Rc<str>, u16)]> = sandbox::destinations(DESTINATIONS).into();
    let zipf = Rc::new(Zipf::new(DESTINATIONS, 1.1));
    let mut by_host: Vec<Vec<Spec>> = (0..args.hosts.max(1)).map(|_| Vec::new()).collect();
    for (h, s) in specs {
        by_host[h].push(s);
    }
    let mut rows = [0u64; 7];
    let mut sink_cpu = Duration::ZERO;
    let mut bytes = 0;
    let mut files = 0;
    let mut events_done = 0u64;
    let mut last_report = Instant::now();
    // One collector per host, one after the other: each sink names its files by time, pid and
    // sequence, so two sinks of one process must not write the same hour at the same moment.
    for (h, specs) in by_host.into_iter().enumerate() {
        let host_name = format!("worker-{:02}", h + 1);
        let sink = ParquetSink::open(&args.out, ParquetOptions::default())
            .with_context(|| format!("opening the audit log at {}", args.out.display()))?;
        let (tx, rx) = mpsc::sync_channel::<TableBatch>(32);
        let sink_thread = spawn_sink(sink, rx);
        let mut writer = Writer::new(&host_name, args.seed ^ (h as u64) << 32, tx);
        let mut host = HostState::new(1000 + 7919 * h as u32, destinations.clone(), zipf.clone());
        let mut heap = BinaryHeap::with_capacity(specs.len());
        let mut slots: Vec<Option<Slot>> = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                heap.push(Reverse((spec.start_ns, i)));
                Some(Slot::Planned(spec))
            })
            .collect();
        let result = (|| -> anyhow::Result<()> {
            while let Some(Reverse((_, i))) = heap.pop() {
                if let Some(Slot::Planned(_)) = &slots[i] {
                    let Some(Slot::Planned(spec)) = slots[i].take() else {
                        unreachable!("just matched")
                    };
                    slots[i] = Some(Slot::Running(Box::new(Sim::new(spec, &mut host))));
                }
                let Some(Slot::Running(sim)) = slots[i].as_mut() else {
                    continue;
                };
                if sim.next_time(&mut host).is_none() {
                    slots[i] = None;
                    continue;
                }
                let row = sim.pop().expect("a row is due");
                if row.is_event() {
                    events_done += 1;
                }
                writer.append(&sim.spec, &row)?;
                match sim.next_time(&mut host) {
                    Some(t) => heap.push(Reverse((t, i))),
                    None => slots[i] = None,
                }
                if events_done.is_multiple_of(1 << 16)
                    && last_report.elapsed() >= Duration::from_secs(5)
                {
                    last_report = Instant::now();
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "sw-audit-gen: {:.1}% ({events_done} of {} events, host {} of {}), {:.0} events/s",
                        100.0 * events_done as f64 / args.rows as f64,
                        args.rows,
                        h + 1,
                        args.hosts,
                        events_done as f64 / secs
                    );
                }
            }
            writer.finish()
        })();
        let written = writer.rows;
        drop(writer);
        let run = sink_thread
            .join()
            .map_err(|_| anyhow::anyhow!("the sink thread panicked"))??;
        result?;
        for (total, n) in rows.iter_mut().zip(written) {
            *total += n;
        }
        sink_cpu += run.cpu;
        bytes += run.summary.bytes;
        files += run.summary.files.len();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let events: u64 = rows[..4].iter().sum();
    let all: u64 = rows.iter().sum();
    if events != args.rows {
        bail!(
            "wrote {events} events instead of {} (a generator bug)",
            args.rows
        );
    }
    let per_table: Vec<String> = TABLES
        .iter()
        .zip(rows)
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    eprintln!(
        "sw-audit-gen: {events} events and {} other rows ({}) from {n_sandboxes} sandboxes on {} hosts in {elapsed:.1} s: {:.0} events/s, {:.0} rows/s; the sink alone {:.0} rows per CPU-second ({:.1} s of CPU); {files} files, {} MiB",
        all - events,
        per_table.join(", "),
        args.hosts,
        events as f64 / elapsed,
        all as f64 / elapsed,
        all as f64 / sink_cpu.as_secs_f64(),
        sink_cpu.as_secs_f64(),
        bytes >> 20
    );
    let manifest = serde_json::json!({
        "generator": "sw-audit-gen",
        "rows": args.rows,
        "seed": args.seed,
        "sandboxes": n_sandboxes,
        "days": args.days,
        "hosts": args.hosts,
        "start": args.start,
        "rows_by_table": TABLES.iter().zip(rows).map(|(t, n)| (t.name().to_owned(), serde_json::Value::from(n))).collect::<serde_json::Map<_, _>>(),
        "files": files,
        "bytes": bytes,
        "elapsed_secs": elapsed,
        "sink_cpu_secs": sink_cpu.as_secs_f64(),
        "rows_per_sec": all as f64 / elapsed,
        "sink_rows_per_cpu_sec": all as f64 / sink_cpu.as_secs_f64(),
    });
    let path = args.out.join("sw-audit-gen.json");
    fs::write(&path, serde_json::to_string_pretty(&manifest)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{manifest}");
    Ok(())
}
