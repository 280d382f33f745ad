//! Detection wiring: the live batches of a run go through the rule engine; each match becomes an
//! alert, its actions (kill, freeze) are carried out on the sandbox, and the alert is written
//! (`--alerts FILE`, one JSON object per line). The rules reload on SIGHUP or when a rules file
//! changes; a file that does not load is reported and the running rules stay.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, anyhow};
use sandwatch_analytics::baseline::{Anomaly, AnomalyKind, BaselineModel, BaselineScorer};
use sandwatch_collector::{KernelKill, KillCause, ParquetOptions, ParquetSink};
use sandwatch_hooks::{
    ActionTaken, Alert, DeliveryRecord, DispatchSummary, Dispatcher, DispatcherHandle, EventRef,
    HooksConfig,
};
use sandwatch_rules::{Action, Engine, LoadError, Match, RuleSet, ruleset::Loader};
use sandwatch_runner::{
    CgroupRoot,
    sandbox::{self, EndReason},
};
use sandwatch_schema::{AlertDeliveriesBuilder, AlertsBuilder, Table, TableBatch};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
};

/// The word that names the embedded default ruleset among `--rules` paths.
pub const BUILTIN: &str = "builtin";

/// Which rules files, in order; empty means the built-in ruleset.
#[derive(Clone, Debug)]
pub struct RuleSources(pub Vec<PathBuf>);

impl RuleSources {
    fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.0.iter().filter(|p| p.as_os_str() != BUILTIN)
    }

    /// Loads every source in order, as Falco loads its rules files.
    pub fn load(&self) -> (RuleSet, Vec<LoadError>) {
        let builtin = [PathBuf::from(BUILTIN)];
        let sources = if self.0.is_empty() {
            &builtin[..]
        } else {
            &self.0
        };
        let mut loader = Loader::default();
        for p in sources {
            if p.as_os_str() == BUILTIN {
                loader.add_source(
                    Path::new(sandwatch_rules::DEFAULT_RULES_NAME),
                    sandwatch_rules::DEFAULT_RULES,
                );
            } else {
                loader.add_file(p);
            }
        }
        loader.finish()
    }

    /// An engine over the sources' rules, or every error, each naming file, line and column.
    pub fn engine(&self) -> anyhow::Result<Engine> {
        let (set, errors) = self.load();
        if !errors.is_empty() {
            let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(anyhow!("{}", all.join("\n")));
        }
        Engine::new(&set).map_err(|errors| {
            let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow!("{}", all.join("\n"))
        })
    }

    fn mtimes(&self) -> Vec<Option<SystemTime>> {
        self.files()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// Where rule actions act: the runner's sandboxes, by id.
#[derive(Clone)]
pub struct ActionTarget {
    pub root: CgroupRoot,
    pub runtime_dir: PathBuf,
}

/// What the detector did, for the run's summary.
#[derive(Default, Debug)]
pub struct DetectSummary {
    pub alerts: u64,
    pub by_priority: BTreeMap<String, u64>,
    /// Rules that killed a sandbox, with the sandbox.
    pub kills: Vec<(String, String)>,
    pub freezes: Vec<(String, String)>,
    pub reloads: u64,
    pub rejected_reloads: u64,
    /// Rows written to the `alerts` and `alert_deliveries` tables.
    pub alert_rows: u64,
    pub delivery_rows: u64,
    /// The hooks' totals, when there are hooks.
    pub hooks: Option<DispatchSummary>,
}

/// Kill rules placed in the kernel: their kills as they happen, and rule id → rule.
pub struct KernelKills {
    pub kills: mpsc::UnboundedReceiver<KernelKill>,
    pub rules: std::collections::HashMap<u32, sandwatch_rules::Rule>,
}

/// Where alerts go besides the terminal.
pub struct AlertOutputs {
    /// `--alerts FILE`: one JSON object per line.
    pub file: Option<PathBuf>,
    /// The audit log: `alerts` and `alert_deliveries` tables.
    pub data: PathBuf,
    /// `--hooks FILE` and the outbox directory.
    pub hooks: Option<(PathBuf, PathBuf)>,
}

/// The `alerts` and `alert_deliveries` tables of a run, written by the detector itself: alerts
/// raised while the collector flushes its last batches must still be recorded.
struct AlertLog {
    sink: ParquetSink,
    alerts: AlertsBuilder,
    deliveries: AlertDeliveriesBuilder,
    rows: (u64, u64),
}

impl AlertLog {
    fn open(data: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            sink: ParquetSink::open(data, ParquetOptions::default())
                .with_context(|| format!("cannot write alerts into {}", data.display()))?,
            alerts: AlertsBuilder::new(16),
            deliveries: AlertDeliveriesBuilder::new(16),
            rows: (0, 0),
        })
    }

    fn alert(&mut self, a: &Alert) {
        let json = a.row_json();
        self.alerts.append(&a.row(&json));
        self.rows.0 += 1;
    }

    fn delivery(&mut self, r: &DeliveryRecord) {
        self.deliveries.append(&r.row());
        self.rows.1 += 1;
    }

    /// Writes what is pending; the files stay open.
    fn flush(&mut self) -> anyhow::Result<()> {
        for (table, batch) in [
            (
                Table::Alerts,
                (!self.alerts.is_empty()).then(|| self.alerts.finish()),
            ),
            (
                Table::AlertDeliveries,
                (!self.deliveries.is_empty()).then(|| self.deliveries.finish()),
            ),
        ] {
            if let Some(batch) = batch {
                let batch = batch.context("building an alerts batch")?;
                self.sink
                    .write(&TableBatch { table, batch })
                    .context("writing the alerts table")?;
            }
        }
        Ok(())
    }

    fn close(mut self) -> anyhow::Result<(u64, u64)> {
        self.flush()?;
        self.sink.close().context("closing the alerts table")?;
        Ok(self.rows)
    }
}

pub struct Detector {
    task: JoinHandle<anyhow::Result<DetectSummary>>,
}

impl Detector {
    /// Starts evaluating `batches` (the collector's live stream) with `engine`.
    #[expect(
        clippy::too_many_arguments,
        reason = "each is one independent part of the run the detector connects"
    )]
    pub fn start(
        engine: Engine,
        sources: RuleSources,
        batches: mpsc::Receiver<Arc<TableBatch>>,
        outputs: AlertOutputs,
        kernel: Option<KernelKills>,
        baselines: Option<BaselineScorer>,
        target: Option<ActionTarget>,
        host: String,
    ) -> anyhow::Result<Self> {
        let out = match &outputs.file {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open the alerts file {}", p.display()))?,
            ),
            None => None,
        };
        let (hooks, records) = match &outputs.hooks {
            None => (None, None),
            Some((file, state)) => {
                let config = HooksConfig::load(file)?;
                let (tx, rx) = mpsc::unbounded_channel();
                let (handle, done) = Dispatcher::new(config, state)
                    .with_records(tx)
                    .spawn()
                    .with_context(|| {
                        format!("cannot start the alert hooks (outbox {})", state.display())
                    })?;
                let r = handle.recovery();
                if r.resumed > 0 {
                    eprintln!(
                        "sandwatch: {} alert deliveries owed from an earlier run resume now",
                        r.resumed
                    );
                }
                (Some((handle, done)), Some(rx))
            }
        };
        let state = DetectorTask {
            engine,
            sources,
            out: out.map(std::io::BufWriter::new),
            log: AlertLog::open(&outputs.data)?,
            hooks,
            records,
            kernel,
            baselines,
            recent_kills: std::collections::HashMap::new(),
            target,
            host,
            summary: DetectSummary::default(),
        };
        Ok(Self {
            task: tokio::spawn(state.run(batches)),
        })
    }

    /// Waits for the stream's end (after the collector's shutdown) and returns what was done.
    pub async fn finish(self) -> anyhow::Result<DetectSummary> {
        self.task.await.context("the detector task failed")?
    }
}

/// How long a run's end waits for hooks still delivering; what is left stays in the outbox
/// for the next start.
const HOOKS_GRACE: Duration = Duration::from_secs(5);

struct DetectorTask {
    engine: Engine,
    sources: RuleSources,
    out: Option<std::io::BufWriter<std::fs::File>>,
    log: AlertLog,
    hooks: Option<(DispatcherHandle, JoinHandle<DispatchSummary>)>,
    records: Option<mpsc::UnboundedReceiver<DeliveryRecord>>,
    kernel: Option<KernelKills>,
    /// Profiles' learned baselines: anomalies are alerts like a rule's.
    baselines: Option<BaselineScorer>,
    /// (rule, thread) → when, for kills the kernel already made: the same syscall's row, when
    /// it reaches the engine, is the same alert and is not raised twice.
    recent_kills: std::collections::HashMap<(String, u32), i64>,
    target: Option<ActionTarget>,
    host: String,
    summary: DetectSummary,
}

impl DetectorTask {
    async fn run(
        mut self,
        mut batches: mpsc::Receiver<Arc<TableBatch>>,
    ) -> anyhow::Result<DetectSummary> {
        let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = self.sources.mtimes();
        loop {
            tokio::select! {
                b = batches.recv() => match b {
                    Some(b) => self.evaluate(&b).await?,
                    None => break,
                },
                Some(r) = async { self.records.as_mut()?.recv().await }, if self.records.is_some() => {
                    self.log.delivery(&r);
                }
                Some(k) = async { self.kernel.as_mut()?.kills.recv().await }, if self.kernel.is_some() => {
                    self.kernel_kill(k).await?;
                }
                _ = hup.recv() => {
                    self.reload("SIGHUP");
                    seen = self.sources.mtimes();
                }
                _ = check.tick() => {
                    let now = self.sources.mtimes();
                    if now != seen {
                        seen = now;
                        self.reload("a rules file changed");
                    }
                }
            }
        }
        // Windows still open at the stream's end are complete now.
        if let Some(mut scorer) = self.baselines.take() {
            for a in scorer.finish() {
                self.raise_anomaly(&scorer, a).await?;
            }
            self.baselines = Some(scorer);
        }
        if let Some(out) = &mut self.out {
            out.flush().context("cannot write the alerts file")?;
        }
        if let Some((handle, done)) = self.hooks.take() {
            handle.shutdown(HOOKS_GRACE);
            drop(handle);
            let hooks = done.await.context("the hooks dispatcher failed")?;
            if let Some(rx) = &mut self.records {
                while let Ok(r) = rx.try_recv() {
                    self.log.delivery(&r);
                }
            }
            self.summary.hooks = Some(hooks);
        }
        let (a, d) = self.log.close()?;
        self.summary.alert_rows = a;
        self.summary.delivery_rows = d;
        Ok(self.summary)
    }

    fn reload(&mut self, why: &str) {
        match self.sources.engine() {
            Ok(mut new) => {
                let old = std::mem::replace(&mut self.engine, Engine::empty());
                new.take_state_from(old);
                self.engine = new;
                self.summary.reloads += 1;
                eprintln!(
                    "sandwatch: rules reloaded ({why}): {} rules active",
                    self.engine.len()
                );
            }
            Err(e) => {
                self.summary.rejected_reloads += 1;
                eprintln!(
                    "sandwatch: rules reload ({why}) rejected, the {} rules loaded before keep running:\n{e:#}",
                    self.engine.len()
                );
            }
        }
    }

    async fn evaluate(&mut self, b: &TableBatch) -> anyhow::Result<()> {
        // Kills the kernel made are queued before the batch holding their syscall's row was
        // sealed: raised first, they are the alert, and the row's match is the same one.
        while let Some(k) = self.kernel.as_mut().and_then(|kk| kk.kills.try_recv().ok()) {
            self.kernel_kill(k).await?;
        }
        let matches = self.engine.evaluate(b.table, &b.batch);
        for m in matches {
            self.raise(&m).await?;
        }
        if let Some(mut scorer) = self.baselines.take() {
            let result = match scorer.observe(b.table, &b.batch) {
                Ok(found) => {
                    let mut r = Ok(());
                    for a in found {
                        r = self.raise_anomaly(&scorer, a).await;
                        if r.is_err() {
                            break;
                        }
                    }
                    r
                }
                Err(e) => {
                    tracing::warn!("baseline scoring skipped a batch: {e}");
                    Ok(())
                }
            };
            self.baselines = Some(scorer);
            result?;
        }
        Ok(())
    }

    /// A baseline anomaly as an alert, through the same outputs as a rule's.
    async fn raise_anomaly(&mut self, scorer: &BaselineScorer, a: Anomaly) -> anyhow::Result<()> {
        let Some(model) = scorer.model(&a.profile) else {
            return Ok(());
        };
        let alert = anomaly_alert(model, &a, &self.host);
        self.emit(alert).await
    }

    /// A kill the probes made before the process saw the syscall's result (at its entry, or as
    /// a file syscall on an ordered path returned): the rest of the sandbox dies too (the rule's
    /// `kill` is the sandbox's), and the alert says the kernel acted.
    async fn kernel_kill(&mut self, k: KernelKill) -> anyhow::Result<()> {
        let Some(rule) = self
            .kernel
            .as_ref()
            .and_then(|kk| kk.rules.get(&k.rule_id))
            .cloned()
        else {
            tracing::warn!("a kernel kill for unknown rule id {}", k.rule_id);
            return Ok(());
        };
        let key = (rule.name.clone(), k.tid);
        if self.recent_kills.contains_key(&key) {
            return Ok(());
        }
        self.remember_kill(key, k.time_ns);
        let mut fields = vec![
            ("evt.type".into(), k.syscall.clone()),
            ("proc.name".into(), k.comm.clone()),
            ("proc.pid".into(), k.pid.to_string()),
        ];
        // Evidence in the table the syscall's own row is in (a path kill's has its time), so
        // that replaying the audit log finds the same alert.
        let (table, when, done) = match &k.cause {
            KillCause::Syscall => (
                Table::SyscallEvents,
                format!("at {} entry", k.syscall),
                format!("SIGKILL in the kernel before {} returned", k.syscall),
            ),
            KillCause::Path { path, opened } => {
                fields.push(("fd.name".into(), path.clone()));
                let which = if *opened { "the file it opened: " } else { "" };
                (
                    Table::FileEvents,
                    format!("as {} of {which}{path} returned", k.syscall),
                    format!(
                        "SIGKILL in the kernel as {} of {which}{path} returned: the process never saw its result",
                        k.syscall
                    ),
                )
            }
        };
        let m = Match {
            rule: usize::MAX,
            table,
            row: 0,
            time_ns: k.time_ns,
            sandbox_id: k.sandbox_id.clone(),
            pid: Some(k.pid),
            tid: Some(k.tid),
            event: Some(k.syscall.clone()),
            output: format!(
                "{} (killed in the kernel {when}: proc={} pid={} sandbox={})",
                rule.desc.trim(),
                k.comm,
                k.pid,
                k.sandbox_id.as_deref().unwrap_or("<NA>")
            ),
            fields,
        };
        let mut taken = vec![ActionTaken {
            action: "kill".into(),
            at_ns: k.time_ns,
            ok: k.signal_error.is_none(),
            detail: Some(match k.signal_error {
                None => done,
                Some(e) => format!("the kernel could not signal the process (errno {e})"),
            }),
            latency_ms: Some(0.0),
        }];
        let result = self.act(&m, true);
        let at_ns = now_ns();
        if result.is_ok()
            && let Some(id) = &m.sandbox_id
            && !self
                .summary
                .kills
                .iter()
                .any(|(r, s)| r == &rule.name && s == id)
        {
            self.summary.kills.push((rule.name.clone(), id.clone()));
        }
        taken.push(ActionTaken {
            action: "kill".into(),
            at_ns,
            ok: result.is_ok(),
            detail: Some(match result {
                Ok(()) => "the whole sandbox (cgroup.kill)".into(),
                Err(e) => format!("{e:#}"),
            }),
            latency_ms: Some((at_ns - k.time_ns) as f64 / 1e6),
        });
        let mut alert = alert_record(&rule, &m, &self.host);
        alert.actions_taken = taken;
        self.emit(alert).await
    }

    fn remember_kill(&mut self, key: (String, u32), at: i64) {
        // Forgotten after a minute: the same thread cannot make the same call twice once dead.
        self.recent_kills.retain(|_, t| *t > at - 60_000_000_000);
        self.recent_kills.insert(key, at);
    }

    async fn raise(&mut self, m: &Match) -> anyhow::Result<()> {
        let rule = self.engine.rule(m.rule).clone();
        if rule.actions.contains(&Action::Kill)
            && let Some(tid) = m.tid
        {
            let key = (rule.name.clone(), tid);
            if self.recent_kills.contains_key(&key) {
                // The kernel killed this thread for this rule already; that alert stands.
                return Ok(());
            }
            self.remember_kill(key, m.time_ns);
        }
        let mut taken = Vec::new();
        for action in &rule.actions {
            let (name, result) = match action {
                Action::Alert => continue,
                Action::Kill => ("kill", self.act(m, true)),
                Action::Freeze => ("freeze", self.act(m, false)),
            };
            let at_ns = now_ns();
            let (ok, detail) = match result {
                Ok(()) => (true, None),
                Err(e) => (false, Some(format!("{e:#}"))),
            };
            if ok && let Some(id) = &m.sandbox_id {
                let list = if name == "kill" {
                    &mut self.summary.kills
                } else {
                    &mut self.summary.freezes
                };
                if !list.iter().any(|(r, s)| r == &rule.name && s == id) {
                    list.push((rule.name.clone(), id.clone()));
                }
            }
            taken.push(ActionTaken {
                action: name.to_owned(),
                at_ns,
                ok,
                detail,
                // From the event's kernel timestamp to the order given.
                latency_ms: Some((at_ns - m.time_ns) as f64 / 1e6),
            });
        }
        let mut alert = alert_record(&rule, m, &self.host);
        alert.actions_taken = taken;
        self.emit(alert).await
    }

    /// Counts, logs and writes an alert, and hands it to the hooks.
    async fn emit(&mut self, alert: Alert) -> anyhow::Result<()> {
        self.summary.alerts += 1;
        *self
            .summary
            .by_priority
            .entry(alert.priority.name().to_owned())
            .or_default() += 1;
        tracing::info!(rule = %alert.rule, sandbox = ?alert.sandbox_id, "{}", alert.output);
        if let Some(out) = &mut self.out {
            out.write_all(alert.to_json_line().as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .context("cannot write the alerts file")?;
        }
        self.log.alert(&alert);
        if let Some((hooks, _)) = &self.hooks {
            // Durable in the outbox before this returns; delivery goes on in the background.
            if let Err(e) = hooks.send(alert).await {
                tracing::error!("alert not handed to the hooks: {e}");
                eprintln!("sandwatch: an alert could not be queued for the hooks: {e}");
            }
        }
        Ok(())
    }

    /// Kills (or freezes) the sandbox the matched event came from.
    fn act(&self, m: &Match, kill: bool) -> anyhow::Result<()> {
        let target = self
            .target
            .as_ref()
            .ok_or_else(|| anyhow!("no sandbox to act on (watched cgroups are not sandboxes)"))?;
        let id = m
            .sandbox_id
            .as_deref()
            .ok_or_else(|| anyhow!("the event belongs to no sandbox"))?;
        if kill {
            sandbox::kill_by_id(&target.root, &target.runtime_dir, id, EndReason::Rule)?;
        } else {
            sandbox::freeze_by_id(&target.root, &target.runtime_dir, id, true)?;
        }
        Ok(())
    }
}

/// The alert a baseline anomaly raises: rule `Baseline: new <kind>` or `Baseline: unusual
/// activity`, the reason as output, and the score.
pub fn anomaly_alert(model: &BaselineModel, a: &Anomaly, host: &str) -> Alert {
    let (rule, fields) = match &a.kind {
        AnomalyKind::NewTerm { kind, term } => (
            format!("Baseline: new {}", kind.describe()),
            vec![
                ("term.kind", kind.describe().to_owned()),
                ("term", term.clone()),
            ],
        ),
        AnomalyKind::Window {
            window, threshold, ..
        } => (
            "Baseline: unusual activity".to_owned(),
            vec![
                ("window", window.to_string()),
                ("threshold", format!("{threshold:.3}")),
            ],
        ),
    };
    let evidence: Vec<EventRef> = a
        .hit
        .iter()
        .map(|h| EventRef {
            table: a.table.map_or("", |t| t.name()).to_owned(),
            time_ns: h.time_ns,
            pid: h.pid.unwrap_or(0),
            tid: h.tid.unwrap_or(0),
            event: h.event.clone(),
        })
        .collect();
    let mut output = format!("{} sandbox={}", a.reason(model), a.sandbox_id);
    if let Some(pid) = a.hit.as_ref().and_then(|h| h.pid) {
        output.push_str(&format!(" pid={pid}"));
    }
    let mut alert = Alert::new(
        a.time_ns,
        host,
        rule,
        sandwatch_hooks::Priority::Warning,
        Some(a.sandbox_id.clone()),
        output,
        evidence,
    );
    alert.tags = vec!["baseline".into(), format!("profile:{}", a.profile)];
    alert.actions = vec!["alert".into()];
    alert.score = Some(a.score);
    alert.fields = fields
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain([
            ("profile".to_owned(), a.profile.clone()),
            ("model_version".to_owned(), model.version.to_string()),
            ("model".to_owned(), model.model_kind.name().to_owned()),
            ("score".to_owned(), format!("{:.3}", a.score)),
        ])
        .collect();
    alert
}

/// The alert a match raises: what `--alerts` writes, `rules test` prints and hooks receive.
pub fn alert_record(rule: &sandwatch_rules::Rule, m: &Match, host: &str) -> Alert {
    let evidence = vec![EventRef {
        table: m.table.name().to_owned(),
        time_ns: m.time_ns,
        pid: m.pid.unwrap_or(0),
        tid: m.tid.unwrap_or(0),
        event: m.event.clone().unwrap_or_default(),
    }];
    let mut a = Alert::new(
        m.time_ns,
        host,
        rule.name.clone(),
        priority(rule.priority),
        m.sandbox_id.clone(),
        m.output.clone(),
        evidence,
    );
    a.tags = rule.tags.clone();
    a.actions = rule
        .actions
        .iter()
        .map(|x| {
            match x {
                Action::Alert => "alert",
                Action::Kill => "kill",
                Action::Freeze => "freeze",
            }
            .to_owned()
        })
        .collect();
    a.fields = m.fields.iter().cloned().collect();
    a
}

fn priority(p: sandwatch_rules::Priority) -> sandwatch_hooks::Priority {
    use sandwatch_hooks::Priority as H;
    use sandwatch_rules::Priority as P;
    match p {
        P::Emergency => H::Emergency,
        P::Alert => H::Alert,
        P::Critical => H::Critical,
        P::Error => H::Error,
        P::Warning => H::Warning,
        P::Notice => H::Notice,
        P::Informational => H::Informational,
        P::Debug => H::Debug,
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
