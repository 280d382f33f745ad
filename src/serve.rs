//! `sandwatch serve`: the host daemon's command line. Parses the flags, starts the probes, the
//! detector and the daemon (`sandwatch_serve`), prints where it listens and, at the end, what it
//! recorded.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, anyhow};
use sandwatch_collector::SandboxParent;
use sandwatch_detect as detect;
use sandwatch_runner::{CgroupRoot, policy::ByteSize, sandbox};
use sandwatch_serve::{
    Drain, Listen, Server,
    api::ApiState,
    auth::ApiKeys,
    daemon::{Daemon, DaemonConfig},
    host::Host,
    stats::Stats,
    templates::Templates,
};

use crate::cli::{
    DetectArgs, DetectorFeed, Failure, RecordOptions, load_baselines_all, parse_duration,
    print_summary, require_root, rules_do_not_load, runtime, start_collector, start_detector,
    usage,
};

/// The default local socket: root's own, where `sandwatch run` finds the daemon.
pub const DEFAULT_SOCKET: &str = "/run/sandwatch/serve.sock";

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub record: RecordOptions,
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Where E2B's control plane listens (E2B_API_URL=http://ADDR).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    pub api_listen: SocketAddr,
    /// Where envd listens for every sandbox (E2B_SANDBOX_URL=http://ADDR), routed by the
    /// E2b-Sandbox-Id header.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:49983")]
    pub envd_listen: SocketAddr,
    /// A unix socket serving both APIs to root on this host, without keys (`sandwatch run`
    /// finds the daemon there).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Serve no unix socket.
    #[arg(long)]
    pub no_socket: bool,
    /// API keys, one `e2b_<hex>` per line (# comments): a call must present one in X-API-Key.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Serve without API keys (every caller is the same one); loopback addresses only.
    #[arg(long, conflicts_with = "api_key_file")]
    pub insecure_no_auth: bool,
    /// Templates beyond the presets: `<DIR>/<templateID>.yaml`, sandbox policies.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Keep N sandboxes of TEMPLATE made ahead, so that a create is a hand-over (repeatable;
    /// `--warm default=0` for none). Each costs an idle init (1-2 MiB of its own memory) and
    /// its cgroups; N is the burst of creates served at the pool's speed.
    #[arg(long, value_name = "TEMPLATE=N", value_parser = parse_warm, default_value = "default=16")]
    pub warm: Vec<(String, usize)>,
    /// What SIGTERM does to running sandboxes: kill them, or wait for them to end (a second
    /// SIGTERM kills them).
    #[arg(long, value_enum, default_value = "kill")]
    pub drain: DrainArg,
    /// A sandbox's life when its create asks for none (E2B's default: 15 s).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub default_timeout: Duration,
    /// The longest life a create, set_timeout or connect may ask for.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub max_timeout: Duration,
    /// How long a paused sandbox is kept before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub paused_ttl: Duration,
    /// Live sandboxes per API key.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_sandboxes_per_key: usize,
    /// Commands running at once per API key, over all its sandboxes.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_commands_per_key: usize,
    /// The largest request body (a file upload), e.g. 256M.
    #[arg(long, value_name = "BYTES", default_value = "256M", value_parser = parse_body)]
    pub max_body: usize,
    /// How often each sandbox's metrics are sampled (sandbox_metrics, GET .../metrics).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub metrics_interval: Duration,
    /// Where sandboxes keep their lock and ephemeral workspace.
    #[arg(long, value_name = "DIR", default_value = sandbox::DEFAULT_RUNTIME_DIR)]
    pub runtime_dir: PathBuf,
    /// Sandbox ids start with this.
    #[arg(long, value_name = "PREFIX", default_value = "sw-", hide = true)]
    pub sandbox_id_prefix: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DrainArg {
    Kill,
    Wait,
}

fn parse_warm(s: &str) -> Result<(String, usize), String> {
    let (t, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected TEMPLATE=N, e.g. default=4"))?;
    let n = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: N must be a whole number"))?;
    Ok((t.trim().to_owned(), n))
}

fn parse_body(s: &str) -> Result<usize, String> {
    ByteSize::parse(s).map(|b| b.0 as usize)
}

pub async fn serve(args: ServeArgs) -> Result<u8, Failure> {
    require_root()?;
    let (keys, key_warnings) = match (&args.api_key_file, args.insecure_no_auth) {
        (Some(f), _) => {
            let (k, w) = ApiKeys::load(f).map_err(usage)?;
            (Some(Arc::new(k)), w)
        }
        (None, true) => (None, Vec::new()),
        (None, false) => {
            return Err(usage(anyhow!(
                "no API keys: give --api-key-file FILE (one e2b_<hex> key per line), or --insecure-no-auth to serve loopback without keys"
            )));
        }
    };
    for w in key_warnings {
        eprintln!("sandwatch: warning: {w}");
    }
    let templates = Templates::new(args.templates.clone());
    for (t, _) in &args.warm {
        templates
            .policy(t)
            .map_err(|e| usage(anyhow!(e).context(format!("--warm {t}"))))?;
    }
    let sources = detect::RuleSources::new(args.detect.rules.clone());
    let engine = if args.detect.no_rules {
        None
    } else {
        Some(sources.engine().map_err(rules_do_not_load)?)
    };
    let baselines = load_baselines_all(&args.detect, &args.record.data)?;
    let root = CgroupRoot::discover().map_err(usage)?;
    let parent = root.sandbox_parent().map_err(usage)?;
    // The default seccomp deny-list marks refusals (`refused`); a template's own additions are
    // recorded as EPERM without the mark.
    let filter = sandwatch_runner::seccomp::SyscallFilter::new(&[]).map_err(usage)?;
    let mut collector = start_collector(
        &args.record,
        filter.denied(),
        Some(SandboxParent {
            path: parent.path,
            level: parent.level,
        }),
        Some(detect::LIVE_LATENCY),
    )?;
    let stats = Stats::new();
    let live = collector
        .take_live_batches()
        .context("the collector gave no live stream")
        .map_err(runtime)?;
    // Every live batch is counted (rows per table, records lost) on its way to the detector.
    let (to_detector, batches) = tokio::sync::mpsc::channel(1024);
    {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut live = live;
            while let Some(b) = live.recv().await {
                stats.batch(&b);
                if to_detector.send(b).await.is_err() {
                    // No detector: keep counting.
                    continue;
                }
            }
        });
    }
    let (actions_tx, mut actions) = tokio::sync::mpsc::unbounded_channel();
    let detector = start_detector(
        engine,
        baselines,
        sources,
        &mut collector,
        &args.record.data,
        &args.detect,
        Some((
            detect::ActionTarget::new(root.clone(), args.runtime_dir.clone()),
            detect::KernelRules::new(),
        )),
        DetectorFeed {
            batches: Some(batches),
            // A daemon's alerts reach the audit log while it runs, not at its end.
            flush_alerts_every: Some(Duration::from_secs(1)),
            observer: Some(stats.clone()),
            actions: Some(actions_tx),
        },
    )?;
    let own_ports = vec![args.api_listen.port(), args.envd_listen.port()];
    let host = Host::new(
        collector,
        detector.as_ref().and_then(|d| d.kernel_plans()),
        own_ports,
    );
    let recorder = host.recorder();
    let daemon = Daemon::new(
        DaemonConfig {
            runtime_dir: args.runtime_dir.clone(),
            max_sandboxes_per_key: args.max_sandboxes_per_key,
            max_commands_per_key: args.max_commands_per_key,
            default_timeout: args.default_timeout,
            max_timeout: args.max_timeout,
            paused_ttl: args.paused_ttl,
            metrics_interval: args.metrics_interval,
            id_prefix: args.sandbox_id_prefix.clone(),
        },
        root,
        host,
        templates,
        &args.warm,
        stats.clone(),
    );
    {
        // A rule's freeze is a pause the daemon must know of (envd answers "not running" and the
        // clock stops); its kills reach each sandbox's warden through the sandbox's end.
        let daemon = daemon.clone();
        tokio::spawn(async move {
            while let Some(a) = actions.recv().await {
                if a.ok
                    && a.action == detect::ActionKind::Freeze
                    && let Some(id) = &a.sandbox_id
                {
                    daemon.frozen_by_rule(id, &a.rule);
                }
            }
        });
    }
    let state = ApiState {
        daemon: daemon.clone(),
        keys,
        stats,
        recorder,
        max_body: args.max_body,
    };
    let listen = Listen {
        api: args.api_listen,
        envd: args.envd_listen,
        socket: (!args.no_socket).then(|| args.socket.clone()),
    };
    let drain = match args.drain {
        DrainArg::Kill => Drain::Kill,
        DrainArg::Wait => Drain::Wait,
    };
    let server = match Server::bind(state, &listen, drain).await {
        Ok(s) => s,
        Err(e) => {
            let _ = daemon.host.shutdown().await;
            return Err(usage(e));
        }
    };
    let keyed = args.api_key_file.is_some();
    let summary = server
        .run(|b, recovered| {
            for id in recovered {
                eprintln!(
                    "sandwatch: ended sandbox {id}, left by a daemon that died (recorded as runner_exit)"
                );
            }
            eprintln!(
                "sandwatch: serving E2B's API: control plane http://{}, envd http://{}{}",
                b.api,
                b.envd,
                b.socket
                    .as_ref()
                    .map(|p| format!(", local socket {}", p.display()))
                    .unwrap_or_default()
            );
            eprintln!(
                "sandwatch: for E2B's SDKs: E2B_API_URL=http://{} E2B_SANDBOX_URL=http://{} E2B_API_KEY={}",
                b.api,
                b.envd,
                if keyed { "<a key of the key file>" } else { "e2b_any" }
            );
        })
        .await
        .map_err(runtime)?;
    let detected = match detector {
        Some(d) => Some(d.finish().await.map_err(runtime)?),
        None => None,
    };
    eprintln!("sandwatch: {} received: drained and flushed", summary.signal);
    if let Some(s) = summary.collector {
        let mut s = s;
        if let Some(d) = &detected {
            use sandwatch_schema::Table;
            *s.rows.entry(Table::Alerts).or_default() += d.alert_rows;
            *s.rows.entry(Table::AlertDeliveries).or_default() += d.delivery_rows;
        }
        print_summary(&s);
    }
    Ok(0)
}
