//! The detector: one task that evaluates the collector's live batches and raises what fires.
//!
//! For each batch, in order: kills the kernel already made (kill orders) are raised first, then
//! the rule engine's matches, then the baseline scorer's anomalies. Each becomes one alert, after
//! the rule's actions were carried out on the sandbox the event came from (by id: one detector
//! serves every sandbox of its collector). The rules reload on SIGHUP, when a rules file changes
//! (checked every second) or on [`Detector::request_reload`]; the new engine takes over the old
//! one's process tree and windows; rules that do not load are reported and the old ones keep
//! running.
//!
//! Ownership: once started, the task alone owns the engine, the baseline scorer, the alert
//! outputs and the summary; the [`Detector`] handle can only ask for a reload, read the current
//! kernel plan, and wait for the end (the live stream closes when the collector shuts down).
//! Everything a person should see comes out as values: [`Notice`]s through the callback given in
//! [`DetectorConfig::on_notice`], [`ActionEvent`]s through [`DetectorConfig::action_events`], and
//! the [`DetectSummary`] at the end; the task itself prints nothing.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::Arc,
    time::Duration,
};

use sandwatch_analytics::baseline::{Anomaly, BaselineScorer};
use sandwatch_collector::KernelKill;
use sandwatch_hooks::{
    ActionTaken, Alert, DeliveryRecord, DispatchSummary, HooksError, RecoveryReport,
};
use sandwatch_rules::{Action, Engine, Match};
use sandwatch_schema::{Table, TableBatch};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
    time::{Interval, MissedTickBehavior},
};

use crate::{
    DetectError,
    actions::{ActionError, ActionEvent, ActionKind, ActionTarget},
    alert::{alert_record, anomaly_alert},
    error_chain,
    kernel::{KernelKillPlan, KernelKills, kill_match},
    now_ns,
    outputs::{AlertOutputs, Outputs},
    sources::{RuleSources, RulesError, SourcesStamp},
};

/// What the detector did, for the run's summary.
#[derive(Default, Debug)]
pub struct DetectSummary {
    pub alerts: u64,
    pub by_priority: BTreeMap<String, u64>,
    /// Rules that killed a sandbox, with the sandbox (each pair once).
    pub kills: Vec<(String, String)>,
    /// Rules that froze a sandbox, with the sandbox (each pair once).
    pub freezes: Vec<(String, String)>,
    /// Actions that could not be carried out (each is in its alert's `actions_taken`).
    pub actions_failed: u64,
    pub reloads: u64,
    pub rejected_reloads: u64,
    /// Rows written to the `alerts` and `alert_deliveries` tables.
    pub alert_rows: u64,
    pub delivery_rows: u64,
    /// The hooks' totals, when there are hooks.
    pub hooks: Option<DispatchSummary>,
}

/// What made the detector reload its rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadCause {
    Sighup,
    FileChanged,
    /// [`Detector::request_reload`].
    Requested,
}

impl fmt::Display for ReloadCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReloadCause::Sighup => "SIGHUP",
            ReloadCause::FileChanged => "a rules file changed",
            ReloadCause::Requested => "requested",
        })
    }
}

/// Something the owner should tell a person while the detector runs. `Display` gives the
/// sentence (without a program-name prefix).
#[derive(Debug)]
pub enum Notice {
    /// New rules run from now on.
    Reloaded { cause: ReloadCause, rules: usize },
    /// The rules files do not load; the `kept` rules loaded before keep running.
    ReloadRejected {
        cause: ReloadCause,
        kept: usize,
        error: RulesError,
    },
    /// An alert could not be queued for the hooks (it is in the alerts file and table).
    HooksRefused { error: HooksError },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Reloaded { cause, rules } => {
                write!(f, "rules reloaded ({cause}): {rules} rules active")
            }
            Notice::ReloadRejected { cause, kept, error } => write!(
                f,
                "rules reload ({cause}) rejected, the {kept} rules loaded before keep running:\n{error}"
            ),
            Notice::HooksRefused { error } => {
                write!(f, "an alert could not be queued for the hooks: {error}")
            }
        }
    }
}

type NoticeFn = Box<dyn FnMut(Notice) + Send>;

/// Told what the detector does as it does it, for a daemon's metrics. Called on the detector's
/// task: keep each call quick (count, do not block).
pub trait DetectObserver: Send + Sync {
    /// One live batch went through the rules (and the baselines), taking `took`.
    fn batch_evaluated(&self, _table: Table, _rows: usize, _took: Duration) {}
    /// An alert was raised (before it is written and handed to the hooks).
    fn alert(&self, _alert: &Alert) {}
    /// A hook delivery attempt ended (delivered, retrying, failed).
    fn delivery(&self, _record: &DeliveryRecord) {}
}

/// How often the rules files are checked for changes unless told otherwise.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Everything a detector is started with. Required: the engine (already loaded from `sources`,
/// so that bad rules stop the caller before anything runs), the sources it reloads from, where
/// alerts go, and the host name alerts carry. The rest is optional.
pub struct DetectorConfig {
    engine: Engine,
    sources: RuleSources,
    /// The files as they were when the engine was handed over: a change after it reloads.
    stamp: SourcesStamp,
    outputs: AlertOutputs,
    host: String,
    baselines: Option<BaselineScorer>,
    target: Option<ActionTarget>,
    kernel: Option<KernelKills>,
    actions: Option<mpsc::UnboundedSender<ActionEvent>>,
    notices: Option<NoticeFn>,
    observer: Option<Arc<dyn DetectObserver>>,
    reload_every: Option<Duration>,
    sighup: bool,
    flush_every: Option<Duration>,
}

impl DetectorConfig {
    /// The rules files are stamped now: give an engine loaded from them just before, so that
    /// a change in between is not missed.
    pub fn new(
        engine: Engine,
        sources: RuleSources,
        outputs: AlertOutputs,
        host: impl Into<String>,
    ) -> Self {
        Self {
            engine,
            stamp: sources.stamp(),
            sources,
            outputs,
            host: host.into(),
            baselines: None,
            target: None,
            kernel: None,
            actions: None,
            notices: None,
            observer: None,
            reload_every: Some(RELOAD_CHECK),
            sighup: true,
            flush_every: None,
        }
    }

    /// Profiles' learned baselines: anomalies are alerts like a rule's.
    pub fn baselines(mut self, scorer: impl Into<Option<BaselineScorer>>) -> Self {
        self.baselines = scorer.into();
        self
    }

    /// Where `kill` and `freeze` act. Without one (watched cgroups), every action is recorded
    /// as failed.
    pub fn target(mut self, target: impl Into<Option<ActionTarget>>) -> Self {
        self.target = target.into();
        self
    }

    /// The kills of the kernel's kill orders, raised as their rule's alerts.
    pub fn kernel_kills(mut self, kills: impl Into<Option<KernelKills>>) -> Self {
        self.kernel = kills.into();
        self
    }

    /// Where each action taken is reported as it happens (a closed receiver is ignored).
    pub fn action_events(mut self, tx: mpsc::UnboundedSender<ActionEvent>) -> Self {
        self.actions = Some(tx);
        self
    }

    /// Called, on the detector's task, with each [`Notice`]; keep it quick.
    pub fn on_notice(mut self, f: impl FnMut(Notice) + Send + 'static) -> Self {
        self.notices = Some(Box::new(f));
        self
    }

    /// Told of every batch evaluated, alert raised and delivery attempt (see [`DetectObserver`]).
    pub fn observer(mut self, observer: Arc<dyn DetectObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// How often the rules files are checked for changes (default [`RELOAD_CHECK`]; None: never).
    pub fn reload_every(mut self, every: Option<Duration>) -> Self {
        self.reload_every = every;
        self
    }

    /// Whether SIGHUP reloads the rules (default: yes).
    pub fn reload_on_sighup(mut self, yes: bool) -> Self {
        self.sighup = yes;
        self
    }

    /// Writes the alert tables' pending rows this often, and closes their files once a minute
    /// old, so that a long-lived detector's alerts reach the audit log while it runs. Default:
    /// none (a run's alerts are written when it ends).
    pub fn flush_alerts_every(mut self, every: Option<Duration>) -> Self {
        self.flush_every = every;
        self
    }
}

/// A running detector.
pub struct Detector {
    task: JoinHandle<Result<DetectSummary, DetectError>>,
    reload: Arc<Notify>,
    recovery: Option<RecoveryReport>,
    plan: Option<watch::Receiver<Arc<KernelKillPlan>>>,
}

impl Detector {
    /// Opens the outputs (alerts file, alert tables, hooks) and starts evaluating `batches`
    /// (the collector's live stream) on the current tokio runtime.
    pub fn start(
        config: DetectorConfig,
        batches: mpsc::Receiver<Arc<TableBatch>>,
    ) -> Result<Self, DetectError> {
        let (outputs, recovery) = Outputs::open(&config.outputs)?;
        let hup = if config.sighup {
            Some(signal(SignalKind::hangup()).map_err(DetectError::Signal)?)
        } else {
            None
        };
        let (plan_tx, plan) = match &config.kernel {
            Some(k) => {
                let (tx, rx) =
                    watch::channel(Arc::new(KernelKillPlan::new(&config.engine, &k.rules)));
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let reload = Arc::new(Notify::new());
        let task = DetectorTask {
            engine: config.engine,
            sources: config.sources,
            outputs,
            kernel: config.kernel,
            baselines: config.baselines,
            recent_kills: HashMap::new(),
            target: config.target,
            host: config.host,
            summary: DetectSummary::default(),
            actions: config.actions,
            notices: config.notices,
            observer: config.observer,
            plan: plan_tx,
        };
        let timers = Timers {
            hup,
            check: config.reload_every.map(interval),
            flush: config.flush_every.map(interval),
            reload: reload.clone(),
            seen: config.stamp,
        };
        Ok(Self {
            task: tokio::spawn(task.run(batches, timers)),
            reload,
            recovery,
            plan,
        })
    }

    /// What the hooks' outbox held at start (`resumed`: deliveries owed from an earlier run,
    /// sent again now), when there are hooks.
    pub fn hooks_recovery(&self) -> Option<&RecoveryReport> {
        self.recovery.as_ref()
    }

    /// Reloads the rules files soon, as SIGHUP does.
    pub fn request_reload(&self) {
        self.reload.notify_one();
    }

    /// What the kernel can decide of the kill rules running now (they change with a reload),
    /// for [`place_kernel_kills`](crate::place_kernel_kills) on a sandbox started from now on;
    /// None when the detector was given no kernel kills.
    pub fn kernel_plan(&self) -> Option<Arc<KernelKillPlan>> {
        self.plan.as_ref().map(|p| p.borrow().clone())
    }

    /// [`Detector::kernel_plan`] for a holder that outlives the borrow of the detector (a daemon
    /// placing orders on each new sandbox): always the plan of the rules running now.
    pub fn kernel_plans(&self) -> Option<watch::Receiver<Arc<KernelKillPlan>>> {
        self.plan.clone()
    }

    /// Waits for the stream's end (after the collector's shutdown), writes what is pending,
    /// gives the hooks their grace, and returns what was done.
    pub async fn finish(self) -> Result<DetectSummary, DetectError> {
        self.task.await.map_err(DetectError::Task)?
    }
}

fn interval(every: Duration) -> Interval {
    let mut i = tokio::time::interval(every);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

/// What wakes the task besides batches.
struct Timers {
    hup: Option<Signal>,
    check: Option<Interval>,
    flush: Option<Interval>,
    reload: Arc<Notify>,
    /// The rules files as last looked at.
    seen: SourcesStamp,
}

async fn recv_from<T>(rx: Option<&mut mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn tick(i: Option<&mut Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn hangup(s: Option<&mut Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

struct DetectorTask {
    engine: Engine,
    sources: RuleSources,
    outputs: Outputs,
    kernel: Option<KernelKills>,
    /// Profiles' learned baselines: anomalies are alerts like a rule's.
    baselines: Option<BaselineScorer>,
    /// (rule, thread) → when, for kills the kernel already made: the same syscall's row, when
    /// it reaches the engine, is the same alert and is not raised twice.
    recent_kills: HashMap<(String, u32), i64>,
    target: Option<ActionTarget>,
    host: String,
    summary: DetectSummary,
    actions: Option<mpsc::UnboundedSender<ActionEvent>>,
    notices: Option<NoticeFn>,
    observer: Option<Arc<dyn DetectObserver>>,
    /// The kernel plan of the rules running now, when there are kernel kills.
    plan: Option<watch::Sender<Arc<KernelKillPlan>>>,
}

impl DetectorTask {
    async fn run(
        mut self,
        mut batches: mpsc::Receiver<Arc<TableBatch>>,
        mut timers: Timers,
    ) -> Result<DetectSummary, DetectError> {
        loop {
            tokio::select! {
                b = batches.recv() => match b {
                    Some(b) => self.evaluate(&b).await?,
                    None => break,
                },
                Some(r) = recv_from(self.outputs.records.as_mut()) => {
                    if let Some(o) = &self.observer {
                        o.delivery(&r);
                    }
                    self.outputs.delivery(&r);
                }
                Some(k) = recv_from(self.kernel.as_mut().map(|k| &mut k.kills)) => {
                    self.kernel_kill(k).await?;
                }
                Some(()) = hangup(timers.hup.as_mut()) => {
                    self.reload(ReloadCause::Sighup);
                    timers.seen = self.sources.stamp();
                }
                () = timers.reload.notified() => {
                    self.reload(ReloadCause::Requested);
                    timers.seen = self.sources.stamp();
                }
                () = tick(timers.check.as_mut()) => {
                    let now = self.sources.stamp();
                    if now != timers.seen {
                        timers.seen = now;
                        self.reload(ReloadCause::FileChanged);
                    }
                }
                () = tick(timers.flush.as_mut()) => {
                    self.outputs.flush_tables()?;
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
        let closed = self.outputs.close().await?;
        self.summary.hooks = closed.hooks;
        self.summary.alert_rows = closed.alert_rows;
        self.summary.delivery_rows = closed.delivery_rows;
        Ok(self.summary)
    }

    fn notice(&mut self, n: Notice) {
        if let Some(f) = &mut self.notices {
            f(n);
        }
    }

    fn reload(&mut self, cause: ReloadCause) {
        match self.sources.engine() {
            Ok(mut new) => {
                let old = std::mem::replace(&mut self.engine, Engine::empty());
                new.take_state_from(old);
                self.engine = new;
                self.summary.reloads += 1;
                if let (Some(plan), Some(k)) = (&self.plan, &self.kernel) {
                    plan.send_replace(Arc::new(KernelKillPlan::new(&self.engine, &k.rules)));
                }
                let rules = self.engine.len();
                tracing::info!("rules reloaded ({cause}): {rules} rules active");
                self.notice(Notice::Reloaded { cause, rules });
            }
            Err(error) => {
                self.summary.rejected_reloads += 1;
                let kept = self.engine.len();
                tracing::info!("rules reload ({cause}) rejected, {kept} rules keep running");
                self.notice(Notice::ReloadRejected { cause, kept, error });
            }
        }
    }

    async fn evaluate(&mut self, b: &TableBatch) -> Result<(), DetectError> {
        let started = std::time::Instant::now();
        let r = self.evaluate_batch(b).await;
        if let Some(o) = &self.observer {
            o.batch_evaluated(b.table, b.batch.num_rows(), started.elapsed());
        }
        r
    }

    async fn evaluate_batch(&mut self, b: &TableBatch) -> Result<(), DetectError> {
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
    async fn raise_anomaly(
        &mut self,
        scorer: &BaselineScorer,
        a: Anomaly,
    ) -> Result<(), DetectError> {
        let Some(model) = scorer.model(&a.profile) else {
            return Ok(());
        };
        let alert = anomaly_alert(model, &a, &self.host);
        self.emit(alert).await
    }

    /// A kill the probes made before the process saw the syscall's result (at its entry, or as
    /// a file syscall on an ordered path returned): the rest of the sandbox dies too (the rule's
    /// `kill` is the sandbox's), and the alert says the kernel acted.
    async fn kernel_kill(&mut self, k: KernelKill) -> Result<(), DetectError> {
        let Some(rule) = self.kernel.as_ref().and_then(|kk| kk.rules.get(k.rule_id)) else {
            tracing::warn!("a kernel kill for unknown rule id {}", k.rule_id);
            return Ok(());
        };
        let key = (rule.name.clone(), k.tid);
        if self.recent_kills.contains_key(&key) {
            return Ok(());
        }
        self.remember_kill(key, k.time_ns);
        let (m, in_kernel) = kill_match(&rule, &k);
        let mut alert = alert_record(&rule, &m, &self.host);
        self.taken(
            &alert,
            m.sandbox_id.as_deref(),
            ActionKind::Kill,
            true,
            &in_kernel,
        );
        let result = self.act(m.sandbox_id.as_deref(), ActionKind::Kill);
        let at_ns = now_ns();
        let (ok, detail) = match result {
            Ok(()) => (true, "the whole sandbox (cgroup.kill)".to_owned()),
            Err(e) => (false, error_chain(&e)),
        };
        let on_sandbox = ActionTaken {
            action: ActionKind::Kill.as_str().into(),
            at_ns,
            ok,
            detail: Some(detail),
            latency_ms: Some((at_ns - k.time_ns) as f64 / 1e6),
        };
        self.taken(
            &alert,
            m.sandbox_id.as_deref(),
            ActionKind::Kill,
            false,
            &on_sandbox,
        );
        alert.actions_taken = vec![in_kernel, on_sandbox];
        self.emit(alert).await
    }

    fn remember_kill(&mut self, key: (String, u32), at: i64) {
        // Forgotten after a minute: the same thread cannot make the same call twice once dead.
        self.recent_kills.retain(|_, t| *t > at - 60_000_000_000);
        self.recent_kills.insert(key, at);
    }

    async fn raise(&mut self, m: &Match) -> Result<(), DetectError> {
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
        let mut alert = alert_record(&rule, m, &self.host);
        for action in &rule.actions {
            let kind = match action {
                Action::Alert => continue,
                Action::Kill => ActionKind::Kill,
                Action::Freeze => ActionKind::Freeze,
            };
            let result = self.act(m.sandbox_id.as_deref(), kind);
            let at_ns = now_ns();
            let (ok, detail) = match result {
                Ok(()) => (true, None),
                Err(e) => (false, Some(error_chain(&e))),
            };
            let taken = ActionTaken {
                action: kind.as_str().to_owned(),
                at_ns,
                ok,
                detail,
                // From the event's kernel timestamp to the order given.
                latency_ms: Some((at_ns - m.time_ns) as f64 / 1e6),
            };
            self.taken(&alert, m.sandbox_id.as_deref(), kind, false, &taken);
            alert.actions_taken.push(taken);
        }
        self.emit(alert).await
    }

    /// Counts an action taken for `alert` and reports it to the owner.
    fn taken(
        &mut self,
        alert: &Alert,
        sandbox_id: Option<&str>,
        kind: ActionKind,
        in_kernel: bool,
        t: &ActionTaken,
    ) {
        if !t.ok {
            self.summary.actions_failed += 1;
        } else if !in_kernel && let Some(id) = sandbox_id {
            let list = match kind {
                ActionKind::Kill => &mut self.summary.kills,
                ActionKind::Freeze => &mut self.summary.freezes,
            };
            if !list.iter().any(|(r, s)| r == &alert.rule && s == id) {
                list.push((alert.rule.clone(), id.to_owned()));
            }
        }
        if let Some(tx) = &self.actions {
            let _ = tx.send(ActionEvent {
                sandbox_id: sandbox_id.map(str::to_owned),
                rule: alert.rule.clone(),
                action: kind,
                in_kernel,
                ok: t.ok,
                detail: t.detail.clone(),
                event_time_ns: alert.time_ns,
                at_ns: t.at_ns,
                alert_id: alert.id.clone(),
            });
        }
    }

    /// Counts, logs and writes an alert, and hands it to the hooks.
    async fn emit(&mut self, alert: Alert) -> Result<(), DetectError> {
        self.summary.alerts += 1;
        *self
            .summary
            .by_priority
            .entry(alert.priority.name().to_owned())
            .or_default() += 1;
        tracing::info!(rule = %alert.rule, sandbox = ?alert.sandbox_id, "{}", alert.output);
        if let Some(o) = &self.observer {
            o.alert(&alert);
        }
        if let Some(error) = self.outputs.write(alert).await? {
            tracing::error!("alert not handed to the hooks: {error}");
            self.notice(Notice::HooksRefused { error });
        }
        Ok(())
    }

    /// Kills (or freezes) the sandbox the matched event came from.
    fn act(&self, sandbox_id: Option<&str>, kind: ActionKind) -> Result<(), ActionError> {
        let target = self.target.as_ref().ok_or(ActionError::NoTarget)?;
        let id = sandbox_id.ok_or(ActionError::NoSandbox)?;
        target.act(kind, id)
    }
}
