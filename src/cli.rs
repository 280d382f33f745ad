//! Subcommands and their terminal output.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::anyhow;

use clap::{Parser, Subcommand};
use sandwatch_collector::{
    Collector, CollectorConfig, CollectorError, SandboxLog, SandboxParent,
    Summary, WatchTarget, command_line,
};
use sandwatch_detect as detect;
use sandwatch_runner::metrics::MetricsSampler;
use sandwatch_runner::{
    CgroupRoot, SandboxPolicy,
    sandbox::{
        self, CommandOutcome, CommandRequest, EndReason, Sandbox, SandboxError, SandboxOptions,
    },
};
use sandwatch_schema::SandboxLifecycle;
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

#[derive(clap::Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Sandbox policy: a preset (strict, default, permissive) or a YAML file.
    #[arg(long, value_name = "NAME|FILE", default_value = "default")]
    pub policy: String,
    /// Host directory mounted as the sandbox's workspace (default: a fresh one, removed after).
    /// Its top directory is given to the sandbox's unprivileged uid.
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Wall-clock limit of the command (overrides the policy's limits.timeout), e.g. 30s, 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Sandbox id for the job's rows (default: a fresh sw-XXXXXXXX).
    #[arg(long, value_name = "ID")]
    pub sandbox_id: Option<String>,
    /// How often the sandbox_metrics table gets a row.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub metrics_interval: Duration,
    /// Where running sandboxes keep their lock and ephemeral workspace.
    #[arg(long, value_name = "DIR", default_value = sandwatch_runner::sandbox::DEFAULT_RUNTIME_DIR)]
    pub runtime_dir: PathBuf,
}

/// Where a run happens: alone (its own probes), or in a running daemon (`sandwatch serve`).
#[derive(clap::Args, Debug, Clone)]
pub struct RemoteArgs {
    /// Run through the daemon at URL: `unix:PATH` (its local socket) or `http://HOST:PORT` (its
    /// control plane; envd at the same host's port 49983 unless --server-envd says otherwise).
    /// Default: the daemon's local socket when one answers there and the run asks for nothing
    /// only a run of its own can do (--workspace, --sandbox-id, rules, alerts, hooks, baselines,
    /// --data); else a run of its own.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The daemon's envd, when --server is TCP and envd is not at port 49983 of the same host.
    #[arg(long, value_name = "URL", requires = "server")]
    pub server_envd: Option<String>,
    /// An API key for a TCP daemon: the first key of FILE (default: $E2B_API_KEY).
    #[arg(long, value_name = "FILE", requires = "server")]
    pub api_key_file: Option<PathBuf>,
    /// Never use a daemon: load the probes for this run alone.
    #[arg(long, conflicts_with = "server")]
    pub standalone: bool,
}

/// Rules and alerts of a run.
#[derive(clap::Args, Debug, Clone)]
pub struct DetectArgs {
    /// Falco-style rules file, repeatable, loaded in order (later files append to or override
    /// earlier ones); `builtin` names the embedded default ruleset. Default: the built-in rules.
    #[arg(long = "rules", value_name = "PATH|builtin")]
    pub rules: Vec<PathBuf>,
    /// Evaluate no rules at all.
    #[arg(long, conflicts_with = "rules")]
    pub no_rules: bool,
    /// Write every alert as one JSON object per line to FILE (appended).
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<PathBuf>,
    /// Deliver alerts to the on-call hooks of this YAML file (webhook, slack, pagerduty,
    /// alertmanager), through a durable outbox.
    #[arg(long, value_name = "FILE")]
    pub hooks: Option<PathBuf>,
    /// The hooks' outbox: deliveries owed survive a crash and resume at the next start.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/sandwatch/hooks")]
    pub hooks_state: PathBuf,
    /// Baseline models (`sandwatch baseline train`): when the sandbox's profile has one, what
    /// its job does is scored against it and anomalies are alerts. Default: `<data>/baselines`.
    #[arg(long, value_name = "DIR")]
    pub baselines: Option<PathBuf>,
    /// Score no baseline.
    #[arg(long, conflicts_with = "baselines")]
    pub no_baselines: bool,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration ({e}; e.g. 30s, 5m)"))
}

#[derive(Subcommand, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing the flattened argument groups buys nothing"
)]
pub enum Command {
    /// Run a command in a new sandbox (namespaces, cgroup limits, seccomp, no capabilities,
    /// Landlock) and record everything it and its children do.
    Run {
        #[command(flatten)]
        record: RecordOptions,
        #[command(flatten)]
        sandbox: SandboxArgs,
        #[command(flatten)]
        detect: DetectArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        /// The command and its arguments.
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Run the host daemon: one set of probes for every sandbox of this host, driven over E2B's
    /// API (E2B's SDKs work against it), until SIGTERM.
    Serve(Box<crate::serve::ServeArgs>),
    /// Kill every process of a running sandbox at once (its runner reports reason "order").
    Kill {
        #[arg(value_name = "ID")]
        id: String,
        #[arg(long, value_name = "DIR", default_value = sandwatch_runner::sandbox::DEFAULT_RUNTIME_DIR)]
        runtime_dir: PathBuf,
    },
    /// Stop every process of a running sandbox until `thaw`.
    Freeze {
        #[arg(value_name = "ID")]
        id: String,
        #[arg(long, value_name = "DIR", default_value = sandwatch_runner::sandbox::DEFAULT_RUNTIME_DIR)]
        runtime_dir: PathBuf,
    },
    /// Resume a frozen sandbox.
    Thaw {
        #[arg(value_name = "ID")]
        id: String,
        #[arg(long, value_name = "DIR", default_value = sandwatch_runner::sandbox::DEFAULT_RUNTIME_DIR)]
        runtime_dir: PathBuf,
    },
    /// Sandbox policies.
    Policy {
        #[command(subcommand)]
        action: PolicyCommand,
    },
    /// Falco-style rules files.
    Rules {
        #[command(subcommand)]
        action: RulesCommand,
    },
    /// SQL over the audit log (read-only): a query, a saved investigation, or --list.
    Sql(crate::sql::SqlArgs),
    /// Serve the audit log over Arrow Flight SQL (ADBC, JDBC, DBeaver, pandas) and, with
    /// --http, an HTTP SQL endpoint, read-only, until SIGINT or SIGTERM.
    SqlServer(crate::sql_server::SqlServerArgs),
    /// Learned baselines per job profile: train, score a sandbox, list.
    Baseline {
        #[command(subcommand)]
        action: crate::baseline::BaselineCommand,
    },
    /// Record existing cgroups (a service, a container) until SIGINT or SIGTERM.
    Watch {
        #[command(flatten)]
        record: RecordOptions,
        /// A cgroup in the unified hierarchy: an absolute path, or relative to its root
        /// (e.g. /system.slice/nginx.service). Repeatable.
        #[arg(long = "cgroup", value_name = "PATH", required = true)]
        cgroups: Vec<PathBuf>,
        /// Rules (alerts only: kill and freeze act on sandboxes). Without --rules, none run.
        #[command(flatten)]
        detect: DetectArgs,
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

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Load rules files in order (as Falco does) and print each rule's status: evaluable, or
    /// disabled with the field sandwatch cannot provide. No PATH: the built-in default rules.
    Check {
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Replay a recorded audit log through rules and print what would fire: one JSON alert per
    /// line on stdout (as `run --alerts` writes), a count per rule on stderr. No action is
    /// taken. No PATH: the built-in rules (`builtin` names them among PATHs).
    Test {
        /// The audit log (`run --data`).
        #[arg(long, value_name = "DIR", default_value = "./sandwatch-data")]
        data: PathBuf,
        #[arg(value_name = "PATH|builtin")]
        paths: Vec<PathBuf>,
    },
}

/// A failure with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        error: error.into(),
    }
}

pub(crate) fn runtime(error: impl Into<anyhow::Error>) -> Failure {
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
            sandbox,
            detect,
            remote,
            command,
        } => run(record, sandbox, detect, remote, command).await,
        Command::Serve(args) => crate::serve::serve(*args).await,
        Command::Kill { id, runtime_dir } => control(&runtime_dir, &id, Order::Kill),
        Command::Freeze { id, runtime_dir } => control(&runtime_dir, &id, Order::Freeze),
        Command::Thaw { id, runtime_dir } => control(&runtime_dir, &id, Order::Thaw),
        Command::Watch {
            record,
            cgroups,
            detect,
        } => watch(record, cgroups, detect).await,
        Command::Policy {
            action: PolicyCommand::Check { policy },
        } => policy_check(&policy),
        Command::Rules {
            action: RulesCommand::Check { paths },
        } => rules_check(&paths),
        Command::Rules {
            action: RulesCommand::Test { data, paths },
        } => rules_test(&data, paths),
        Command::Sql(args) => crate::sql::sql(args).await,
        Command::SqlServer(args) => crate::sql_server::sql_server(args).await,
        Command::Baseline { action } => crate::baseline::baseline(action).await,
    }
}

/// `name: evaluable|disabled (reason)|error` per rule, a count per file, then every load error
/// as `file:line:column: message`; exit 2 if there was any.
fn rules_check(paths: &[PathBuf]) -> Result<u8, Failure> {
    use sandwatch_rules::{LoadError, RuleSet, Status};
    let builtin = [PathBuf::from(sandwatch_rules::DEFAULT_RULES_NAME)];
    let (set, errors, paths) = if paths.is_empty() {
        let (set, errors) = RuleSet::builtin();
        (set, errors, &builtin[..])
    } else {
        let (set, errors) = sandwatch_rules::load_files(paths);
        (set, errors, paths)
    };
    for path in paths {
        let rules: Vec<_> = set
            .rules
            .iter()
            .filter(|r| &r.source.file == path)
            .collect();
        let failed: Vec<&str> = errors
            .iter()
            .filter_map(|e| match e {
                LoadError::Invalid {
                    file,
                    rule: Some(name),
                    ..
                } if file == path => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let mut evaluable = 0;
        for r in &rules {
            let off = if r.enabled { "" } else { ", enabled: false" };
            match &r.status {
                Status::Evaluable => {
                    evaluable += 1;
                    println!("{}: evaluable{off}", r.name);
                }
                Status::Disabled { reason } => println!("{}: disabled ({reason}){off}", r.name),
            }
        }
        for name in &failed {
            println!("{name}: error");
        }
        let name = path
            .file_name()
            .map_or(path.as_os_str(), |n| n)
            .to_string_lossy();
        let total = rules.len() + failed.len();
        let disabled = rules.len() - evaluable;
        let errs = if failed.is_empty() {
            String::new()
        } else {
            format!(", {} errors", failed.len())
        };
        println!("{name}: {total} rules, {evaluable} evaluable, {disabled} disabled{errs}");
    }
    for e in &errors {
        eprintln!("{e}");
    }
    Ok(if errors.is_empty() { 0 } else { EXIT_USAGE })
}

fn rules_test(data: &std::path::Path, paths: Vec<PathBuf>) -> Result<u8, Failure> {
    use std::io::Write as _;
    let sources = detect::RuleSources::new(paths);
    let mut engine = sources.engine().map_err(rules_do_not_load)?;
    let host = sandwatch_collector::hostname();
    let mut per_rule: std::collections::BTreeMap<String, u64> = Default::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = crate::replay::replay(data, &mut engine, |engine, m| {
        let rule = engine.rule(m.rule);
        *per_rule.entry(rule.name.clone()).or_default() += 1;
        let alert = detect::alert_record(rule, m, &host);
        writeln!(out, "{}", alert.to_json_line())?;
        Ok(())
    })
    .map_err(usage)?;
    out.flush().map_err(runtime)?;
    for (rule, n) in &per_rule {
        eprintln!("{n:6}  {rule}");
    }
    eprintln!(
        "sandwatch: replayed {} events from {} files in {} through {} rules: {} alerts",
        summary.events,
        summary.files,
        data.display(),
        engine.len(),
        summary.alerts
    );
    Ok(0)
}

pub(crate) fn require_root() -> Result<(), Failure> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(usage(anyhow!(
            "sandwatch must run as root: it loads eBPF programs (CAP_BPF, CAP_PERFMON) and creates cgroups; run it with sudo"
        )));
    }
    Ok(())
}

pub(crate) fn start_collector(
    record: &RecordOptions,
    refusals: &[String],
    sandbox_parent: Option<SandboxParent>,
    live: Option<Duration>,
) -> Result<Collector, Failure> {
    let mut config = CollectorConfig::new(record.data.clone());
    config.live = live;
    config.probes.sandbox_parent = sandbox_parent;
    config.probes.ring_buffer_bytes = record.ring_buffer_size;
    config.probes.full_counting = record.count_all_syscalls;
    config.probes.refusal_syscalls = refusals.to_vec();
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

enum Order {
    Kill,
    Freeze,
    Thaw,
}

fn control(runtime_dir: &std::path::Path, id: &str, order: Order) -> Result<u8, Failure> {
    require_root()?;
    let root = CgroupRoot::discover().map_err(usage)?;
    match order {
        Order::Kill => sandbox::kill_by_id(&root, runtime_dir, id, EndReason::Order),
        Order::Freeze => sandbox::freeze_by_id(&root, runtime_dir, id, true),
        Order::Thaw => sandbox::freeze_by_id(&root, runtime_dir, id, false),
    }
    .map_err(usage)?;
    Ok(0)
}

/// What a run asks for that only a run with its own probes can do, if anything.
fn standalone_only(record: &RecordOptions, args: &SandboxArgs, detect: &DetectArgs) -> Option<&'static str> {
    let default_data = record.data == std::path::Path::new("./sandwatch-data");
    [
        (args.workspace.is_some(), "--workspace"),
        (args.sandbox_id.is_some(), "--sandbox-id"),
        (!detect.rules.is_empty() || detect.no_rules, "--rules/--no-rules"),
        (detect.alerts.is_some(), "--alerts"),
        (detect.hooks.is_some(), "--hooks"),
        (detect.baselines.is_some() || detect.no_baselines, "--baselines/--no-baselines"),
        (!default_data, "--data"),
        (record.count_all_syscalls, "--count-all-syscalls"),
    ]
    .into_iter()
    .find_map(|(asked, flag)| asked.then_some(flag))
}

async fn run(
    record: RecordOptions,
    args: SandboxArgs,
    detect: DetectArgs,
    remote: RemoteArgs,
    command: Vec<String>,
) -> Result<u8, Failure> {
    let own = standalone_only(&record, &args, &detect);
    if let Some(server) = &remote.server {
        if let Some(flag) = own {
            return Err(usage(anyhow!(
                "{flag} is for a run with its own probes: the daemon at {server} records with its own (drop --server, or {flag})"
            )));
        }
        let endpoint = crate::remote::endpoint(server, remote.server_envd.as_deref())?;
        let key = crate::remote::api_key(remote.api_key_file.as_deref())?;
        return crate::remote::run(endpoint, key, &args.policy, args.timeout, command).await;
    }
    let socket = std::path::Path::new(crate::serve::DEFAULT_SOCKET);
    if !remote.standalone && own.is_none() && crate::remote::daemon_at(socket) {
        let endpoint = sandwatch_serve::client::Endpoint::Unix(socket.to_owned());
        return crate::remote::run(endpoint, None, &args.policy, args.timeout, command).await;
    }
    require_root()?;
    let sources = detect::RuleSources::new(detect.rules.clone());
    let engine = if detect.no_rules {
        None
    } else {
        Some(sources.engine().map_err(rules_do_not_load)?)
    };
    let mut policy = SandboxPolicy::load(&args.policy).map_err(usage)?;
    if let Some(t) = args.timeout {
        policy.limits.timeout = Some(t);
    }
    let filter =
        sandwatch_runner::seccomp::SyscallFilter::new(&policy.seccomp.deny).map_err(usage)?;
    if let Some(w) = &args.workspace
        && !w.is_dir()
    {
        return Err(usage(anyhow!(
            "--workspace {}: not a directory (give an existing directory, or none for a fresh one)",
            w.display()
        )));
    }
    let sandbox_id = args.sandbox_id.clone().unwrap_or_else(new_sandbox_id);
    if !sandbox::valid_id(&sandbox_id) {
        return Err(usage(SandboxError::BadId(sandbox_id)));
    }
    let root = CgroupRoot::discover().map_err(usage)?;
    for id in sandbox::clean_stale(&root, &args.runtime_dir) {
        eprintln!("sandwatch: removed the remains of sandbox {id}, whose runner died");
    }
    let parent = root.sandbox_parent().map_err(usage)?;
    let parent = SandboxParent {
        path: parent.path,
        level: parent.level,
    };
    let live = engine.as_ref().map(|_| detect::LIVE_LATENCY);
    // Kill orders come from the rules loaded at start (a reload changes the user-space rules
    // only); their ids are the detector's too.
    let kernel_rules = detect::KernelRules::new();
    let kill_plan = engine
        .as_ref()
        .map(|e| detect::KernelKillPlan::new(e, &kernel_rules))
        .unwrap_or_default();
    let baselines = load_baselines(&detect, &record.data, policy.profile.as_deref())?;
    let live = live.or(baselines.as_ref().map(|_| detect::LIVE_LATENCY));
    let mut collector = start_collector(&record, filter.denied(), Some(parent), live)?;
    let detector = start_detector(
        engine,
        baselines,
        sources,
        &mut collector,
        &record.data,
        &detect,
        Some((
            detect::ActionTarget::new(root.clone(), args.runtime_dir.clone()),
            kernel_rules,
        )),
        DetectorFeed {
            batches: None,
            flush_alerts_every: None,
            observer: None,
            actions: None,
        },
    )?;
    let mut options = SandboxOptions::new(sandbox_id.clone(), policy);
    options.workspace = args.workspace.clone();
    options.runtime_dir = args.runtime_dir.clone();
    let sandbox = match Sandbox::create(&root, options).await {
        Ok(s) => s,
        Err(e) => {
            let _ = collector.shutdown().await;
            return Err(match e {
                SandboxError::BadId(_)
                | SandboxError::Exists(_)
                | SandboxError::Workspace { .. } => usage(e),
                other => runtime(other),
            });
        }
    };
    for w in sandbox.warnings() {
        eprintln!("sandwatch: warning: {w}");
    }
    let target = WatchTarget {
        cgroup_id: sandbox.cgroup().id,
        level: sandbox.cgroup().level,
        sandbox_id: sandbox_id.clone(),
    };
    collector.note_process(sandbox.init_pid().unsigned_abs());
    collector.watch(&target).map_err(usage)?;
    // The policy's network.blocked_ports, refused in the kernel (EPERM) before the job starts.
    let ports = sandbox.policy().blocked_ports();
    collector
        .block_ports(target.cgroup_id, target.level, &ports)
        .map_err(usage)?;
    let placement = detect::place_kernel_kills(&collector, &target, &kill_plan).map_err(usage)?;
    for (rule, pattern, why) in &placement.paths_left {
        tracing::warn!("rule {rule:?}: {pattern} is not decided in the kernel ({why}): user space kills on it");
    }
    let kernel_kills = !kill_plan.is_empty();
    let log = SandboxLog::new(
        collector.sandbox_recorder(),
        sandbox.id(),
        sandbox.policy_hash(),
        sandbox.policy().profile.clone(),
    );
    log.event(SandboxLifecycle::Created, None, None, None);

    let metrics = spawn_metrics(&collector, &sandbox, args.metrics_interval);
    let request = CommandRequest {
        argv: command.clone(),
        ..CommandRequest::default()
    };
    let started = Instant::now();
    log.event(
        SandboxLifecycle::Started,
        Some(command_line(&command)),
        None,
        None,
    );
    let mut sigint = signal(SignalKind::interrupt()).map_err(runtime)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(runtime)?;
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    let outcome = {
        // Our stdin is the job's, unless it is a terminal whose foreground we are not in.
        let input: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> =
            if crate::remote::forward_stdin() {
                Box::pin(tokio::io::stdin())
            } else {
                Box::pin(tokio::io::empty())
            };
        let run = sandbox.run_with_input(&request, input, &mut out, &mut err);
        tokio::pin!(run);
        let mut interrupts = 0;
        loop {
            tokio::select! {
                o = &mut run => break o,
                _ = sigint.recv() => {
                    interrupts += 1;
                    // First Ctrl-C: the job's own SIGINT handling gets a chance; second: all dies.
                    if interrupts >= 2 { let _ = sandbox.kill(EndReason::Order); }
                    else { let _ = sandbox.signal_all(libc::SIGINT).await; }
                }
                _ = sigterm.recv() => { let _ = sandbox.kill(EndReason::Order); }
            }
        }
    };
    metrics.abort();
    let outcome = match outcome {
        Ok(o)
            if kernel_kills && o.signal == Some(libc::SIGKILL) && o.reason == EndReason::Exited =>
        {
            Ok(detect::wait_for_kill_reason(&sandbox, o).await)
        }
        other => other,
    };
    let result = match outcome {
        Ok(o) => {
            record_outcome(&log, &command, &o);
            Ok(o)
        }
        Err(e) => {
            let mut row = log.row(SandboxLifecycle::Killed);
            row.command = Some(command_line(&command));
            row.reason = Some("error".into());
            row.detail = Some(e.to_string());
            log.record(row);
            Err(e)
        }
    };
    let destroyed = sandbox.destroy().await;
    log.event(
        SandboxLifecycle::Destroyed,
        None,
        None,
        destroyed.as_ref().err().map(|e| e.to_string()),
    );
    let _ = collector.unblock_ports(target.cgroup_id);
    let _ = collector.clear_kill_orders(target.cgroup_id);
    let _ = collector.unwatch(&target);
    let summary = collector.shutdown().await.map_err(runtime)?;
    let detected = match detector {
        Some(d) => Some(d.finish().await.map_err(runtime)?),
        None => None,
    };
    if let Err(e) = destroyed {
        eprintln!("sandwatch: {e}");
    }
    let outcome = result.map_err(runtime)?;
    report_outcome(&command[0], &sandbox_id, &outcome, started.elapsed());
    print_summary(&with_alert_rows(summary, detected.as_ref()));
    if let Some(d) = &detected {
        print_detections(d, detect.alerts.as_deref());
    }
    Ok(outcome.status.clamp(0, 255) as u8)
}

/// The `exited` (or `killed`) row of a run's command.
fn record_outcome(log: &SandboxLog, command: &[String], o: &CommandOutcome) {
    let killed = !matches!(o.reason, EndReason::Exited);
    let mut row = log.row(if killed {
        SandboxLifecycle::Killed
    } else {
        SandboxLifecycle::Exited
    });
    row.command = Some(command_line(command));
    row.exit_code = o.code.or(o.start_error.as_ref().map(|_| o.status));
    row.signal = o.signal;
    row.reason = killed.then(|| o.reason.as_str().to_string());
    let mut detail = Vec::new();
    if let Some(e) = &o.start_error {
        detail.push(e.clone());
    }
    for (name, stats) in [("stdout", o.stdout), ("stderr", o.stderr)] {
        if stats.truncated {
            detail.push(format!(
                "{name} truncated at the output limit ({} bytes written)",
                stats.bytes
            ));
        }
    }
    row.detail = (!detail.is_empty()).then(|| detail.join("; "));
    log.record(row);
}

/// Samples the sandbox's metrics every `every` into `sandbox_metrics` until aborted.
fn spawn_metrics(
    collector: &Collector,
    sandbox: &Sandbox,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let recorder = collector.sandbox_recorder();
    let id = sandbox.id().to_string();
    let mut sampler = MetricsSampler::new(sandbox.metrics_source());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let sample = match tokio::task::block_in_place(|| sampler.sample()) {
                Ok(s) => s,
                Err(e) => {
                    // The sandbox is ending under us (its cgroup or processes just went).
                    tracing::debug!("metrics of sandbox {id}: {e}");
                    continue;
                }
            };
            let row = sandwatch_serve::daemon::metrics_record(&id, &sample);
            if recorder.record_sandbox_metrics(row).is_err() {
                return;
            }
        }
    })
}

fn report_outcome(program: &str, id: &str, o: &CommandOutcome, elapsed: Duration) {
    if let Some(e) = &o.start_error {
        eprintln!("sandwatch: cannot run {program:?} in sandbox {id}: {e}");
    }
    for (name, stats) in [("stdout", o.stdout), ("stderr", o.stderr)] {
        if stats.truncated {
            eprintln!(
                "sandwatch: {name} was cut at the policy's limits.output_bytes ({} bytes written in all)",
                stats.bytes
            );
        }
    }
    let how = match o.reason {
        EndReason::Timeout => "was killed at its wall-clock limit (status 124)".to_string(),
        EndReason::Oom => format!(
            "was killed by the OOM killer at the memory limit (status {})",
            o.status
        ),
        EndReason::Order => format!("was killed by order (status {})", o.status),
        EndReason::Rule => format!("was killed by a rule (status {})", o.status),
        EndReason::SandboxEnded => format!("ended with its sandbox (status {})", o.status),
        EndReason::Exited => format!("exited with status {}", o.status),
    };
    eprintln!(
        "sandwatch: {program} {how} after {:.2} s (sandbox {id})",
        elapsed.as_secs_f64()
    );
}

async fn watch(
    record: RecordOptions,
    cgroups: Vec<PathBuf>,
    detect: DetectArgs,
) -> Result<u8, Failure> {
    require_root()?;
    let sources = detect::RuleSources::new(detect.rules.clone());
    let engine = if detect.no_rules || detect.rules.is_empty() {
        None
    } else {
        Some(sources.engine().map_err(rules_do_not_load)?)
    };
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
    // What a default sandbox refuses is what a refusal looks like in any cgroup.
    let filter = sandwatch_runner::seccomp::SyscallFilter::new(&[]).map_err(runtime)?;
    let live = engine.as_ref().map(|_| detect::LIVE_LATENCY);
    let mut collector = start_collector(&record, filter.denied(), None, live)?;
    // Watched cgroups have no profile: no baseline scores them.
    let detector = start_detector(
        engine,
        None,
        sources,
        &mut collector,
        &record.data,
        &detect,
        None,
        DetectorFeed {
            batches: None,
            flush_alerts_every: None,
            observer: None,
            actions: None,
        },
    )?;
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
    let detected = match detector {
        Some(d) => Some(d.finish().await.map_err(runtime)?),
        None => None,
    };
    print_summary(&with_alert_rows(summary, detected.as_ref()));
    if let Some(d) = &detected {
        print_detections(d, detect.alerts.as_deref());
    }
    Ok(0)
}

/// Rules that do not make an engine stop the command before anything is recorded (exit 2).
pub(crate) fn rules_do_not_load(e: detect::RulesError) -> Failure {
    usage(anyhow::Error::new(e).context("the rules do not load"))
}

/// The model of `profile`, when the baselines directory has one: the scorer a run's detector
/// feeds. A model that does not load stops the run (exit 2) before anything is recorded.
fn load_baselines(
    args: &DetectArgs,
    data: &std::path::Path,
    profile: Option<&str>,
) -> Result<Option<sandwatch_analytics::baseline::BaselineScorer>, Failure> {
    use sandwatch_analytics::baseline::BaselineScorer;
    let (false, Some(profile)) = (args.no_baselines, profile) else {
        return Ok(None);
    };
    let Some(model) =
        detect::baseline::latest_model(args.baselines.as_deref(), data, profile).map_err(usage)?
    else {
        return Ok(None);
    };
    eprintln!(
        "sandwatch: scoring against the baseline of profile {profile} (v{}, {} model, trained on {} sandboxes)",
        model.version,
        model.model_kind.name(),
        model.data.sandboxes
    );
    Ok(Some(BaselineScorer::new([model])))
}

/// Every profile's latest model (`sandwatch serve` scores whatever profile each sandbox has).
pub(crate) fn load_baselines_all(
    args: &DetectArgs,
    data: &std::path::Path,
) -> Result<Option<sandwatch_analytics::baseline::BaselineScorer>, Failure> {
    use sandwatch_analytics::baseline::{BaselineScorer, store::ModelStore};
    if args.no_baselines {
        return Ok(None);
    }
    let store = match &args.baselines {
        Some(dir) => ModelStore::new(dir.clone()),
        None => ModelStore::for_audit_log(data),
    };
    let mut models = Vec::new();
    for profile in store.profiles() {
        if let Some(model) =
            detect::baseline::latest_model(args.baselines.as_deref(), data, &profile)
                .map_err(usage)?
        {
            eprintln!(
                "sandwatch: scoring profile {profile} against its baseline (v{}, {} model, trained on {} sandboxes)",
                model.version,
                model.model_kind.name(),
                model.data.sandboxes
            );
            models.push(model);
        }
    }
    Ok((!models.is_empty()).then(|| BaselineScorer::new(models)))
}

/// The detector on the collector's live stream, when there are rules or a baseline. With a
/// target (a run's sandbox), rule actions act on it and the kernel's kill orders (their ids in
/// the `KernelRules` given) are raised as alerts. What the detector has to say while it runs is
/// printed here.
/// Which live batches the detector reads and how it writes alerts.
pub(crate) struct DetectorFeed {
    /// None: the collector's own live stream.
    pub batches: Option<tokio::sync::mpsc::Receiver<std::sync::Arc<sandwatch_schema::TableBatch>>>,
    /// Write pending alert rows this often (a long-lived daemon); None: at the end.
    pub flush_alerts_every: Option<Duration>,
    /// Told of each batch evaluated, alert and delivery (a daemon's metrics).
    pub observer: Option<std::sync::Arc<dyn detect::DetectObserver>>,
    /// Told of each action a rule took (a daemon keeps its sandboxes' states by them).
    pub actions: Option<tokio::sync::mpsc::UnboundedSender<detect::ActionEvent>>,
}

#[expect(
    clippy::too_many_arguments,
    reason = "each is one independent part of the run the detector connects"
)]
pub(crate) fn start_detector(
    engine: Option<sandwatch_rules::Engine>,
    baselines: Option<sandwatch_analytics::baseline::BaselineScorer>,
    sources: detect::RuleSources,
    collector: &mut Collector,
    data: &std::path::Path,
    args: &DetectArgs,
    target: Option<(detect::ActionTarget, detect::KernelRules)>,
    feed: DetectorFeed,
) -> Result<Option<detect::Detector>, Failure> {
    let engine = match (engine, &baselines) {
        (Some(e), _) => e,
        // Baselines alone: an engine with no rules carries the stream.
        (None, Some(_)) => sandwatch_rules::Engine::empty(),
        (None, None) => return Ok(None),
    };
    let Some(batches) = feed.batches.or_else(|| collector.take_live_batches()) else {
        return Ok(None);
    };
    let outputs = detect::AlertOutputs {
        file: args.alerts.clone(),
        data: data.to_owned(),
        hooks: args.hooks.clone().map(|config| detect::HookOutputs {
            config,
            state: args.hooks_state.clone(),
        }),
    };
    let mut config =
        detect::DetectorConfig::new(engine, sources, outputs, sandwatch_collector::hostname())
            .baselines(baselines)
            .flush_alerts_every(feed.flush_alerts_every)
            .on_notice(|n| eprintln!("sandwatch: {n}"));
    if let Some(o) = feed.observer {
        config = config.observer(o);
    }
    if let Some(tx) = feed.actions {
        config = config.action_events(tx);
    }
    if let Some((target, rules)) = target {
        // Kill rules the kernel can decide are placed per sandbox (`detect::place_kernel_kills`);
        // their kills come here.
        let kernel = collector
            .take_kernel_kills()
            .map(|kills| detect::KernelKills { kills, rules });
        config = config.target(target).kernel_kills(kernel);
    }
    let detector = detect::Detector::start(config, batches).map_err(usage)?;
    if let Some(r) = detector.hooks_recovery()
        && r.resumed > 0
    {
        eprintln!(
            "sandwatch: {} alert deliveries owed from an earlier run resume now",
            r.resumed
        );
    }
    Ok(Some(detector))
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

/// The collector's summary with the rows the detector wrote itself (alerts, deliveries).
fn with_alert_rows(mut s: Summary, d: Option<&detect::DetectSummary>) -> Summary {
    if let Some(d) = d {
        use sandwatch_schema::Table;
        *s.rows.entry(Table::Alerts).or_default() += d.alert_rows;
        *s.rows.entry(Table::AlertDeliveries).or_default() += d.delivery_rows;
    }
    s
}

fn print_detections(d: &detect::DetectSummary, file: Option<&std::path::Path>) {
    let by: Vec<String> = d
        .by_priority
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    let to = file.map_or(String::new(), |f| format!(", written to {}", f.display()));
    match d.alerts {
        0 => eprintln!("sandwatch: no alerts"),
        n => eprintln!(
            "sandwatch: {n} alert{} ({}){to}",
            if n == 1 { "" } else { "s" },
            by.join(", ")
        ),
    }
    for (rule, id) in &d.kills {
        eprintln!("sandwatch: rule {rule:?} killed sandbox {id}");
    }
    for (rule, id) in &d.freezes {
        eprintln!("sandwatch: rule {rule:?} froze sandbox {id}");
    }
    if let Some(h) = &d.hooks {
        let owed = if h.left_pending > 0 {
            format!(
                ", {} still owed (kept in the outbox, resent at the next start)",
                h.left_pending
            )
        } else {
            String::new()
        };
        eprintln!(
            "sandwatch: hooks: {} delivered, {} failed{owed}",
            h.delivered, h.failed
        );
    }
}

pub(crate) fn print_summary(s: &Summary) {
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
