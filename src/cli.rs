//! Subcommands and their terminal output.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use clap::{Parser, Subcommand};
use sandwatch_collector::{Collector, CollectorConfig, CollectorError, Summary, WatchTarget};
use sandwatch_runner::{CgroupRoot, JobCgroup};
use tokio::signal::unix::{SignalKind, signal};

/// Exit code for bad input and for a host that cannot run sandwatch (no root, no BPF).
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "sandwatch",
    version,
    about = "Run untrusted jobs, record what they do with eBPF, keep it as a Parquet audit log"
)]
pub struct Args {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RecordOptions {
    /// Audit log directory (created if missing).
    #[arg(long, value_name = "DIR", default_value = "./sandwatch-data")]
    pub data: PathBuf,
    /// Size of the kernel's event ring buffer, in bytes (a power of two; K/M/G suffixes work).
    #[arg(long, value_name = "BYTES", default_value = "16M", value_parser = parse_size)]
    pub ring_buffer_size: u32,
    /// Count every syscall of watched cgroups, not only the traced ones. Costs every syscall on
    /// the host a BPF program run (see the README's performance section).
    #[arg(long)]
    pub count_all_syscalls: bool,
    /// Window of the syscall_counts table, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub counts_window_ms: u64,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command in its own cgroup and record everything it and its children do.
    Run {
        #[command(flatten)]
        record: RecordOptions,
        /// Sandbox id for the job's rows (default: a fresh sw-XXXXXXXX).
        #[arg(long, value_name = "ID")]
        sandbox_id: Option<String>,
        /// The command and its arguments.
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Sandbox policies.
    Policy {
        #[command(subcommand)]
        action: PolicyCommand,
    },
    /// Record existing cgroups (a service, a container) until SIGINT or SIGTERM.
    Watch {
        #[command(flatten)]
        record: RecordOptions,
        /// A cgroup in the unified hierarchy: an absolute path, or relative to its root
        /// (e.g. /system.slice/nginx.service). Repeatable.
        #[arg(long = "cgroup", value_name = "PATH", required = true)]
        cgroups: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a policy file (or name a preset: strict, default, permissive) and print it with
    /// every default filled in.
    Check {
        #[arg(value_name = "FILE|PRESET")]
        policy: String,
    },
}

/// A failure with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        error: error.into(),
    }
}

fn runtime(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 1,
        error: error.into(),
    }
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn parse_size(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let mult = match s[i..]
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                other => return Err(format!("unknown size suffix {other:?} (use K, M or G)")),
            };
            (&s[..i], mult)
        }
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let bytes = n
        .checked_mul(mult)
        .filter(|b| *b <= u32::MAX as u64)
        .ok_or_else(|| format!("{s} is too large"))?;
    if !bytes.is_power_of_two() || bytes < 4096 {
        return Err(format!(
            "{s} = {bytes} bytes: the ring buffer size must be a power of two of at least 4096"
        ));
    }
    Ok(bytes as u32)
}

pub async fn dispatch(args: Args) -> Result<u8, Failure> {
    match args.command {
        Command::Run {
            record,
            sandbox_id,
            command,
        } => run(record, sandbox_id, command).await,
        Command::Watch { record, cgroups } => watch(record, cgroups).await,
        Command::Policy {
            action: PolicyCommand::Check { policy },
        } => policy_check(&policy),
    }
}

fn require_root() -> Result<(), Failure> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(usage(anyhow!(
            "sandwatch must run as root: it loads eBPF programs (CAP_BPF, CAP_PERFMON) and creates cgroups; run it with sudo"
        )));
    }
    Ok(())
}

fn start_collector(record: &RecordOptions) -> Result<Collector, Failure> {
    let mut config = CollectorConfig::new(record.data.clone());
    config.probes.ring_buffer_bytes = record.ring_buffer_size;
    config.probes.full_counting = record.count_all_syscalls;
    config.counts_window = Duration::from_millis(record.counts_window_ms.max(10));
    Collector::start(config).map_err(|e| match e {
        CollectorError::Io { .. } => usage(anyhow!(e).context(format!("the data directory {} is not usable", record.data.display()))),
        CollectorError::Probe(_) => usage(anyhow!(e).context("cannot load sandwatch's eBPF probes (does this kernel have BPF ring buffers and syscall tracepoints?)")),
        other => usage(other),
    })
}

fn new_sandbox_id() -> String {
    format!("sw-{:08x}", rand::random::<u32>())
}

async fn run(
    record: RecordOptions,
    sandbox_id: Option<String>,
    command: Vec<String>,
) -> Result<u8, Failure> {
    require_root()?;
    let sandbox_id = sandbox_id.unwrap_or_else(new_sandbox_id);
    if sandbox_id.is_empty() || sandbox_id.contains('/') || sandbox_id.starts_with('.') {
        return Err(usage(anyhow!(
            "sandbox id {sandbox_id:?}: use letters, digits, '-' and '_' only"
        )));
    }
    let root = CgroupRoot::discover().map_err(usage)?;
    let collector = start_collector(&record)?;
    let job = JobCgroup::create(&root, &sandbox_id).map_err(usage)?;
    let target = WatchTarget {
        cgroup_id: job.cgroup().id,
        level: job.cgroup().level,
        sandbox_id: sandbox_id.clone(),
    };
    collector.watch(&target).map_err(usage)?;

    let started = Instant::now();
    let outcome = run_job(&job, &command).await;
    // Whatever happened to the job, what was recorded reaches the disk.
    let _ = collector.unwatch(&target);
    let summary = collector.shutdown().await;
    if let Err(e) = job.remove() {
        eprintln!("sandwatch: {e}");
    }
    let summary = summary.map_err(runtime)?;
    let code = outcome?;
    eprintln!(
        "sandwatch: {} exited with status {code} after {:.2} s (sandbox {sandbox_id})",
        command[0],
        started.elapsed().as_secs_f64()
    );
    print_summary(&summary);
    Ok(code)
}

/// Runs the command in the job cgroup, forwards SIGINT/SIGTERM to it, and waits for it and for
/// every process it left behind. Returns the exit code to report (128+N for signal N).
async fn run_job(job: &JobCgroup, command: &[String]) -> Result<u8, Failure> {
    use std::os::unix::process::ExitStatusExt as _;

    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    let procs = job.procs_fds();
    // SAFETY: between fork and exec only async-signal-safe calls: write(2) of a constant.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &procs {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            eprintln!("sandwatch: cannot run {:?}: {e}", command[0]);
            return Ok(code);
        }
    };
    let pid = child.id().map(|p| p as i32);
    let mut sigint = signal(SignalKind::interrupt()).map_err(runtime)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(runtime)?;
    let forward = |sig: i32| {
        if let Some(pid) = pid {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, sig) };
        }
    };
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the job").map_err(runtime)?,
            _ = sigint.recv() => forward(libc::SIGINT),
            _ = sigterm.recv() => forward(libc::SIGTERM),
        }
    };
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128u8.saturating_add(s as u8),
        _ => 1,
    };
    // The job is over when its last process is: wait for what it left running.
    let mut announced = false;
    let waiting_since = Instant::now();
    let mut interrupts = 0;
    while job.populated().map_err(runtime)? {
        if !announced && waiting_since.elapsed() > Duration::from_secs(2) {
            let n = job.process_count().unwrap_or(0);
            eprintln!(
                "sandwatch: the job left {n} process(es) running; waiting for them (Ctrl-C twice kills them)"
            );
            announced = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = sigint.recv() => { interrupts += 1; if interrupts >= 2 { job.kill().map_err(runtime)?; } }
            _ = sigterm.recv() => job.kill().map_err(runtime)?,
        }
    }
    Ok(code)
}

async fn watch(record: RecordOptions, cgroups: Vec<PathBuf>) -> Result<u8, Failure> {
    require_root()?;
    let root = CgroupRoot::discover().map_err(usage)?;
    let mut targets = Vec::new();
    for path in &cgroups {
        let cg = root.resolve(path).map_err(usage)?;
        if cg.level == 0 {
            return Err(usage(anyhow!(
                "{}: the root cgroup is the whole host; watch a cgroup below it",
                path.display()
            )));
        }
        targets.push(WatchTarget {
            cgroup_id: cg.id,
            level: cg.level,
            sandbox_id: cg.name.clone(),
        });
    }
    let mut sigint = signal(SignalKind::interrupt()).map_err(runtime)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(runtime)?;
    let collector = start_collector(&record)?;
    for t in &targets {
        collector.watch(t).map_err(usage)?;
    }
    eprintln!(
        "sandwatch: watching {} cgroup(s) ({}); Ctrl-C or SIGTERM stops and flushes",
        targets.len(),
        targets
            .iter()
            .map(|t| t.sandbox_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    for t in &targets {
        let _ = collector.unwatch(t);
    }
    let summary = collector.shutdown().await.map_err(runtime)?;
    print_summary(&summary);
    Ok(0)
}

fn policy_check(name_or_path: &str) -> Result<u8, Failure> {
    let policy = sandwatch_runner::SandboxPolicy::load(name_or_path).map_err(usage)?;
    let origin = if sandwatch_runner::policy::PRESETS.contains(&name_or_path) {
        "built-in preset"
    } else {
        "valid"
    };
    print!(
        "# {name_or_path}: {origin}; resolved (null = no limit)\n{}",
        policy.to_yaml()
    );
    Ok(0)
}

fn print_summary(s: &Summary) {
    use sandwatch_schema::Table;
    let rows: Vec<String> = Table::ALL
        .iter()
        .map(|t| format!("{} {}", t.name(), s.rows.get(t).copied().unwrap_or(0)))
        .collect();
    let total: u64 = s.rows.values().sum();
    eprintln!("sandwatch: recorded {total} rows: {}", rows.join(", "));
    if s.drops.total() == 0 {
        eprintln!("sandwatch: no records lost");
    } else {
        let list = |m: &std::collections::HashMap<&'static str, u64>| {
            let mut v: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
            v.sort();
            v.join(", ")
        };
        if !s.drops.kernel.is_empty() {
            eprintln!(
                "sandwatch: LOST {} records in the kernel (ring buffer full): {}; they are counted in the drops table; a larger --ring-buffer-size helps",
                s.drops.kernel.values().sum::<u64>(),
                list(&s.drops.kernel)
            );
        }
        if !s.drops.collector.is_empty() {
            eprintln!(
                "sandwatch: LOST {} undecodable records: {}",
                s.drops.collector.values().sum::<u64>(),
                list(&s.drops.collector)
            );
        }
    }
    eprintln!(
        "sandwatch: audit log in {} ({} new files, {} KiB)",
        s.data_dir.display(),
        s.files.len(),
        s.bytes.div_ceil(1024)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert!(parse_size("1000").is_err());
        assert!(parse_size("8G").is_err());
        assert!(parse_size("3X").is_err());
    }
}
