//! The daemon's sandboxes: create (from the warm pool or cold), find, list, pause, resume,
//! deadlines, and every way a sandbox ends, each recorded in the `sandboxes` table with why.
//!
//! Every hosted sandbox has a warden task that owns its end: it waits for the deadline (E2B's
//! timeout), for the sandbox's init to die (a rule's kill, `sandwatch kill`, a crash), and samples
//! the sandbox's metrics. Whoever ends a sandbox (an API kill, the warden, the drain at shutdown)
//! goes through [`Daemon::end`], which happens once per sandbox: it takes the sandbox out of the
//! registry first, so no API call finds it while it goes.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use sandwatch_collector::{SandboxLog, SandboxMetricsRecord};
use sandwatch_runner::{
    CgroupRoot,
    metrics::MetricsSample,
    policy::SandboxPolicy,
    sandbox::{self, EndReason, Sandbox, SandboxError, SandboxOptions},
};
use sandwatch_schema::SandboxLifecycle;
use tokio::sync::Notify;

use crate::{
    auth::{KeyId, new_access_token},
    host::{Host, HostError},
    hosted::{Hosted, Life, State},
    pool::{Pooled, SandboxMaker, WarmPool},
    processes::ProcessTable,
    stats::Stats,
    templates::{NetworkRequest, TemplateError, Templates},
};

/// Label keys a sandbox's `meta.json` carries, for the daemon that finds it after a crash.
pub const LABEL_TEMPLATE: &str = "template";
pub const LABEL_OWNER: &str = "owner";
pub const LABEL_DAEMON_PID: &str = "daemon_pid";

/// What the daemon's sandboxes are bounded by.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub runtime_dir: PathBuf,
    /// Live sandboxes one API key may have.
    pub max_sandboxes_per_key: usize,
    /// Commands one API key may have running at once, over all its sandboxes.
    pub max_commands_per_key: usize,
    /// A create's timeout when it gives none (E2B's API default: 15 s).
    pub default_timeout: Duration,
    /// The longest timeout a create, set_timeout or connect may ask for.
    pub max_timeout: Duration,
    /// How long a paused sandbox is kept before it is killed.
    pub paused_ttl: Duration,
    /// How often each sandbox's metrics are sampled.
    pub metrics_interval: Duration,
    /// Sandbox ids are this and 16 random hex digits (`sw-`).
    pub id_prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("the daemon is shutting down and takes no new sandboxes")]
    Draining,
    #[error("this API key already has {0} live sandboxes, its limit (--max-sandboxes-per-key)")]
    TooMany(usize),
    #[error("timeout {asked} s is above the daemon's limit of {max} s")]
    Timeout { asked: u64, max: u64 },
    #[error("the sandbox could not be made: {0}")]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Host(#[from] HostError),
}

/// A create request, as the control plane parsed it.
#[derive(Clone, Debug)]
pub struct CreateRequest {
    pub template_id: String,
    pub timeout: Option<Duration>,
    pub auto_pause: bool,
    pub metadata: BTreeMap<String, String>,
    pub env_vars: Vec<(String, String)>,
    pub network: NetworkRequest,
    /// A policy given inline (sandwatch's own `run --server --policy FILE`); it replaces the
    /// template's, and the template id only names it.
    pub policy: Option<SandboxPolicy>,
}

/// Counts per API key, for the per-key bounds.
#[derive(Default)]
struct KeyUse {
    sandboxes: usize,
    commands: usize,
}

pub struct Daemon {
    pub config: DaemonConfig,
    root: CgroupRoot,
    pub host: Host,
    pub templates: Templates,
    hosted: Mutex<HashMap<String, Arc<Hosted>>>,
    keys: Mutex<HashMap<KeyId, KeyUse>>,
    pub pool: Arc<WarmPool>,
    draining: AtomicBool,
    /// Notified whenever a sandbox ends (the drain waits on it).
    ended: Notify,
    /// Ended sandboxes whose destruction is still under way.
    destroying: std::sync::atomic::AtomicUsize,
    pub stats: Arc<Stats>,
    auto_pause: Mutex<HashMap<String, bool>>,
}

/// A sandbox id: the prefix and 16 random hex digits.
pub fn new_sandbox_id(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

struct Maker {
    root: CgroupRoot,
    runtime_dir: PathBuf,
    id_prefix: String,
}

impl SandboxMaker for Maker {
    fn options(&self, policy: SandboxPolicy) -> SandboxOptions {
        let mut o = SandboxOptions::new(new_sandbox_id(&self.id_prefix), policy);
        o.runtime_dir = self.runtime_dir.clone();
        o.labels = vec![(LABEL_DAEMON_PID.into(), std::process::id().to_string())];
        o
    }

    fn root(&self) -> &CgroupRoot {
        &self.root
    }
}

impl Daemon {
    pub fn new(
        config: DaemonConfig,
        root: CgroupRoot,
        host: Host,
        templates: Templates,
        warm: &[(String, usize)],
        stats: Arc<Stats>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            root,
            host,
            templates,
            hosted: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            pool: Arc::new(WarmPool::new(warm)),
            draining: AtomicBool::new(false),
            ended: Notify::new(),
            destroying: Default::default(),
            stats,
            auto_pause: Mutex::new(HashMap::new()),
        })
    }

    /// Starts keeping the warm pool full, until `stop`.
    pub fn start_pool(self: &Arc<Self>, stop: Arc<Notify>) {
        let maker: Arc<dyn SandboxMaker> = Arc::new(Maker {
            root: self.root.clone(),
            runtime_dir: self.config.runtime_dir.clone(),
            id_prefix: self.config.id_prefix.clone(),
        });
        let me = Arc::downgrade(self);
        let policy_of = move |t: &str| me.upgrade()?.templates.policy(t).ok();
        tokio::spawn(self.pool.clone().keep_full(maker, policy_of, stop));
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Hosted>>> {
        self.hosted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key_use(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, KeyUse>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Refuses new sandboxes from now on.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// A live sandbox `owner` may see (`None`: any owner, for the local socket).
    pub fn get(&self, owner: Option<&KeyId>, id: &str) -> Option<Arc<Hosted>> {
        self.registry()
            .get(id)
            .filter(|h| owner.is_none_or(|o| &h.owner == o || o == &KeyId::local()))
            .filter(|h| h.state() != State::Ending)
            .cloned()
    }

    /// Every live sandbox `owner` may see, newest first.
    pub fn list(&self, owner: Option<&KeyId>) -> Vec<Arc<Hosted>> {
        let mut all: Vec<_> = self
            .registry()
            .values()
            .filter(|h| owner.is_none_or(|o| &h.owner == o || o == &KeyId::local()))
            .filter(|h| h.state() != State::Ending)
            .cloned()
            .collect();
        all.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(a.id.cmp(&b.id)));
        all
    }

    pub fn live(&self) -> usize {
        self.registry().len()
    }

    /// Counts by state, for the metrics endpoint.
    pub fn by_state(&self) -> [(State, usize); 2] {
        let reg = self.registry();
        let paused = reg.values().filter(|h| h.state() == State::Paused).count();
        [(State::Running, reg.len() - paused), (State::Paused, paused)]
    }

    fn clamp_timeout(&self, t: Duration) -> Result<Duration, CreateError> {
        if t > self.config.max_timeout {
            return Err(CreateError::Timeout {
                asked: t.as_secs(),
                max: self.config.max_timeout.as_secs(),
            });
        }
        Ok(t)
    }

    /// Makes a sandbox for `owner`, watched and recorded before it is returned.
    pub async fn create(
        self: &Arc<Self>,
        owner: KeyId,
        req: CreateRequest,
    ) -> Result<Arc<Hosted>, CreateError> {
        if self.is_draining() {
            return Err(CreateError::Draining);
        }
        let timeout =
            self.clamp_timeout(req.timeout.unwrap_or(self.config.default_timeout))?;
        let policy = match req.policy.clone() {
            Some(mut p) => {
                crate::templates::narrow(&mut p, &req.network)?;
                p
            }
            None => self.templates.for_request(&req.template_id, &req.network)?,
        };
        {
            let mut keys = self.key_use();
            let used = keys.entry(owner.clone()).or_default();
            if used.sandboxes >= self.config.max_sandboxes_per_key {
                return Err(CreateError::TooMany(self.config.max_sandboxes_per_key));
            }
            used.sandboxes += 1;
        }
        let made = self.make(&owner, &req, policy).await;
        let (sandbox, made_at) = match made {
            Ok(m) => m,
            Err(e) => {
                self.release_sandbox(&owner);
                return Err(e);
            }
        };
        let target = match self.host.watch(&sandbox) {
            Ok(t) => t,
            Err(e) => {
                self.release_sandbox(&owner);
                let _ = sandbox.destroy().await;
                return Err(e.into());
            }
        };
        let now = SystemTime::now();
        let log = SandboxLog::new(
            self.host.recorder(),
            sandbox.id(),
            sandbox.policy_hash(),
            sandbox.policy().profile.clone(),
        );
        let mut detail = vec![format!("template {}", req.template_id), format!("key {owner}")];
        if let Some(t) = made_at {
            let ago = now.duration_since(t).unwrap_or_default();
            detail.push(format!("from the warm pool, made {:.1} s before", ago.as_secs_f64()));
        }
        log.event(SandboxLifecycle::Created, None, None, Some(detail.join("; ")));
        for w in sandbox.warnings() {
            tracing::warn!(sandbox = %sandbox.id(), "{w}");
        }
        let hosted = Arc::new(Hosted {
            id: sandbox.id().to_owned(),
            template_id: req.template_id.clone(),
            owner,
            metadata: req.metadata,
            env_vars: req.env_vars,
            started_at: now,
            envd_token: new_access_token(),
            sandbox: Arc::new(sandbox),
            target,
            log,
            processes: Arc::new(ProcessTable::default()),
            life: Mutex::new(Life {
                state: State::Running,
                end_at: now + timeout,
                paused_at: None,
            }),
            changed: Notify::new(),
            samples: Mutex::new(Default::default()),
            sampler: Mutex::new(None),
        });
        self.auto_pause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hosted.id.clone(), req.auto_pause);
        self.registry().insert(hosted.id.clone(), hosted.clone());
        self.stats.created(&hosted.template_id, made_at.is_some());
        tokio::spawn(self.clone().warden(hosted.clone()));
        Ok(hosted)
    }

    /// A sandbox under `policy`: from the warm pool when it has one made under the same policy.
    async fn make(
        &self,
        owner: &KeyId,
        req: &CreateRequest,
        policy: SandboxPolicy,
    ) -> Result<(Sandbox, Option<SystemTime>), CreateError> {
        if req.policy.is_none()
            && let Some(Pooled { sandbox, made_at }) = self.pool.take(&req.template_id, &policy)
        {
            return Ok((sandbox, Some(made_at)));
        }
        let mut opts = SandboxOptions::new(new_sandbox_id(&self.config.id_prefix), policy);
        opts.runtime_dir = self.config.runtime_dir.clone();
        opts.labels = vec![
            (LABEL_TEMPLATE.into(), req.template_id.clone()),
            (LABEL_OWNER.into(), owner.to_string()),
            (LABEL_DAEMON_PID.into(), std::process::id().to_string()),
        ];
        Ok((Sandbox::create(&self.root, opts).await?, None))
    }

    fn release_sandbox(&self, owner: &KeyId) {
        if let Some(u) = self.key_use().get_mut(owner) {
            u.sandboxes = u.sandboxes.saturating_sub(1);
        }
    }

    /// Takes one of `owner`'s command slots, or says the limit is reached.
    pub fn claim_command(&self, owner: &KeyId) -> bool {
        let mut keys = self.key_use();
        let used = keys.entry(owner.clone()).or_default();
        if used.commands >= self.config.max_commands_per_key {
            return false;
        }
        used.commands += 1;
        true
    }

    pub fn release_command(&self, owner: &KeyId) {
        if let Some(u) = self.key_use().get_mut(owner) {
            u.commands = u.commands.saturating_sub(1);
        }
    }

    /// Sets the sandbox to expire `timeout` from now (longer or shorter than before).
    pub fn set_timeout(&self, hosted: &Hosted, timeout: Duration) -> Result<(), CreateError> {
        let timeout = self.clamp_timeout(timeout)?;
        hosted.life().end_at = SystemTime::now() + timeout;
        hosted.changed.notify_one();
        Ok(())
    }

    /// Extends the sandbox's life to at least `duration` from now (E2B's refresh: never shorter).
    pub fn refresh(&self, hosted: &Hosted, duration: Duration) -> Result<(), CreateError> {
        let duration = self.clamp_timeout(duration)?;
        let mut life = hosted.life();
        life.end_at = life.end_at.max(SystemTime::now() + duration);
        drop(life);
        hosted.changed.notify_one();
        Ok(())
    }

    /// Freezes every process of the sandbox. `Ok(false)`: it was paused already (or is ending).
    /// The state changes with the freeze under the sandbox's lock: two pauses make one.
    pub fn pause(&self, hosted: &Hosted, why: &str) -> Result<bool, SandboxError> {
        {
            let mut life = hosted.life();
            if life.state != State::Running {
                return Ok(false);
            }
            hosted.sandbox.freeze(true)?;
            life.state = State::Paused;
            life.paused_at = Some(SystemTime::now());
        }
        hosted
            .log
            .event(SandboxLifecycle::Paused, None, Some(why), None);
        hosted.changed.notify_one();
        Ok(true)
    }

    /// A rule froze sandbox `id` (its cgroup is frozen already): it is paused now, for the API
    /// and the record (reason `rule`).
    pub fn frozen_by_rule(&self, id: &str, rule: &str) {
        if let Some(h) = self.get(None, id) {
            match self.pause(&h, "rule") {
                Ok(_) => tracing::info!(sandbox = id, rule, "paused by a rule's freeze"),
                Err(e) => tracing::warn!(sandbox = id, rule, "a rule froze it, and: {e}"),
            }
        }
    }

    /// Lets a paused sandbox go on, expiring `timeout` from now (default: `--default-timeout`).
    /// `Ok(false)`: it was running, and only its life is extended (never shortened).
    pub fn resume(&self, hosted: &Hosted, timeout: Option<Duration>) -> Result<bool, CreateError> {
        let timeout = timeout.map(|t| self.clamp_timeout(t)).transpose()?;
        let resumed = {
            let mut life = hosted.life();
            match life.state {
                State::Paused => {
                    hosted.sandbox.freeze(false)?;
                    life.state = State::Running;
                    life.paused_at = None;
                    life.end_at =
                        SystemTime::now() + timeout.unwrap_or(self.config.default_timeout);
                    true
                }
                State::Running => {
                    if let Some(t) = timeout {
                        life.end_at = life.end_at.max(SystemTime::now() + t);
                    }
                    false
                }
                State::Ending => false,
            }
        };
        if resumed {
            hosted.log.event(SandboxLifecycle::Resumed, None, None, None);
        }
        hosted.changed.notify_one();
        Ok(resumed)
    }

    /// Ends a sandbox for `reason` (killing whatever runs in it unless it is already dead),
    /// records it, stops watching it and takes it out of the registry; its destruction (cgroups,
    /// directory, the `destroyed` row) follows in the background, once no call holds it. Runs
    /// once per sandbox; later calls return at once.
    pub fn end(self: &Arc<Self>, hosted: &Arc<Hosted>, reason: EndReason, why: Option<String>) {
        {
            let mut life = hosted.life();
            if life.state == State::Ending {
                return;
            }
            life.state = State::Ending;
        }
        self.registry().remove(&hosted.id);
        self.auto_pause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&hosted.id);
        hosted.changed.notify_one();
        let already_dead = hosted.sandbox.has_ended();
        // A frozen sandbox is killed all the same (cgroup.kill reaches frozen tasks).
        if !already_dead
            && reason != EndReason::SandboxEnded
            && let Err(e) = hosted.sandbox.kill(reason)
        {
            tracing::warn!(sandbox = %hosted.id, "kill: {e}");
        }
        let mut row = hosted.log.row(SandboxLifecycle::Killed);
        row.reason = Some(reason.as_str().to_owned());
        row.signal = Some(libc::SIGKILL);
        row.detail = why;
        hosted.log.record(row);
        self.host.unwatch(&hosted.target);
        self.release_sandbox(&hosted.owner);
        self.stats.ended(reason.as_str());
        self.destroying.fetch_add(1, Ordering::AcqRel);
        let me = self.clone();
        let hosted = hosted.clone();
        tokio::spawn(async move {
            let log = hosted.log.clone();
            // The runner's destroy needs the sandbox itself: wait (briefly) for the calls still
            // holding it to notice it is gone.
            let destroyed = destroy_when_free(hosted).await;
            log.event(
                SandboxLifecycle::Destroyed,
                None,
                None,
                destroyed.err().map(|e| e.to_string()),
            );
            me.destroying.fetch_sub(1, Ordering::AcqRel);
            me.ended.notify_waiters();
        });
    }

    /// Ends every live sandbox (at shutdown).
    pub fn end_all(self: &Arc<Self>, reason: EndReason, why: &str) {
        let all: Vec<_> = self.registry().values().cloned().collect();
        for h in &all {
            self.end(h, reason, Some(why.to_owned()));
        }
    }

    /// Waits until no sandbox is left and every ended one is destroyed.
    pub async fn wait_empty(&self) {
        loop {
            let notified = self.ended.notified();
            if self.registry().is_empty() && self.destroying.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Samples every running sandbox's metrics each `--metrics-interval`, in one pass on a
    /// blocking thread: one wake-up per interval for the whole host, not one per sandbox (a
    /// hundred idle sandboxes must cost the host what one does).
    pub fn start_sampler(self: &Arc<Self>, stop: Arc<Notify>) {
        let me = Arc::downgrade(self);
        let every = self.config.metrics_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.notified() => return,
                }
                let Some(daemon) = me.upgrade() else { return };
                let running: Vec<Arc<Hosted>> = daemon
                    .registry()
                    .values()
                    .filter(|h| h.state() == State::Running)
                    .cloned()
                    .collect();
                let recorder = daemon.host.recorder();
                drop(daemon);
                let pass = tokio::task::spawn_blocking(move || {
                    for h in running {
                        let sample = h.sample();
                        match sample {
                            Ok(s) => {
                                let _ = recorder.record_sandbox_metrics(metrics_record(&h.id, &s));
                            }
                            Err(e) => tracing::debug!(sandbox = %h.id, "metrics: {e}"),
                        }
                    }
                });
                if let Err(e) = pass.await {
                    tracing::warn!("metrics pass: {e}");
                }
            }
        });
    }

    /// The sandbox's warden: its deadline and its death.
    async fn warden(self: Arc<Self>, hosted: Arc<Hosted>) {
        loop {
            let (state, wake_at) = {
                let life = hosted.life();
                let at = match life.state {
                    State::Running => life.end_at,
                    State::Paused => {
                        life.paused_at.unwrap_or_else(SystemTime::now) + self.config.paused_ttl
                    }
                    State::Ending => return,
                };
                (life.state, at)
            };
            let sleep = wake_at
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let changed = hosted.changed.notified();
            tokio::select! {
                () = hosted.sandbox.ended() => {
                    let reason = hosted.sandbox.kill_reason().unwrap_or(EndReason::SandboxEnded);
                    let why = match reason {
                        EndReason::Rule => "a rule's kill action",
                        EndReason::SandboxEnded => "its init exited (killed from outside sandwatch, or crashed)",
                        EndReason::Order => "a kill order (sandwatch kill)",
                        _ => "its processes were killed",
                    };
                    self.end(&hosted, reason, Some(why.into()));
                    return;
                }
                () = tokio::time::sleep(sleep) => {
                    if SystemTime::now() < wake_at { continue; }
                    match state {
                        State::Running if self.auto_pauses(&hosted.id) => {
                            if let Err(e) = self.pause(&hosted, "timeout") {
                                tracing::warn!(sandbox = %hosted.id, "auto-pause at timeout: {e}");
                                self.end(&hosted, EndReason::Timeout, Some(format!("auto-pause failed: {e}")));
                                return;
                            }
                        }
                        State::Running => {
                            self.end(&hosted, EndReason::Timeout, Some("its timeout (E2B endAt) passed".into()));
                            return;
                        }
                        _ => {
                            self.end(&hosted, EndReason::Timeout, Some(format!(
                                "paused longer than --paused-ttl ({} s)", self.config.paused_ttl.as_secs())));
                            return;
                        }
                    }
                }
                () = changed => {}
            }
        }
    }

    fn auto_pauses(&self, id: &str) -> bool {
        self.auto_pause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
            .unwrap_or(false)
    }

    /// Finds the sandboxes a daemon that died (SIGKILL, a crash) left, ends what is left of them
    /// and records why. Their processes died with that daemon: a sandbox's init exits when its
    /// runner's end of the control socket closes.
    pub fn recover(&self) -> Vec<String> {
        let mut ended = Vec::new();
        for stale in sandbox::clean_stale(&self.root, &self.config.runtime_dir) {
            let label = |k: &str| {
                stale
                    .labels
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            let log = SandboxLog::new(
                self.host.recorder(),
                &stale.id,
                stale.policy_hash.clone().unwrap_or_default(),
                stale.profile.clone(),
            );
            let who = match label(LABEL_DAEMON_PID) {
                Some(pid) => format!("the sandwatch (pid {pid}) that ran it"),
                None => "the sandwatch that ran it".into(),
            };
            log.event(
                SandboxLifecycle::Killed,
                None,
                Some("runner_exit"),
                Some(format!(
                    "{who} ended without destroying it; its processes ended with it; removed by the daemon started at pid {}",
                    std::process::id()
                )),
            );
            log.event(SandboxLifecycle::Destroyed, None, None, None);
            ended.push(stale.id);
        }
        ended
    }
}

/// A runner's metrics sample as a `sandbox_metrics` row.
pub fn metrics_record(sandbox_id: &str, s: &MetricsSample) -> SandboxMetricsRecord {
    SandboxMetricsRecord {
        time: s.time,
        sandbox_id: sandbox_id.to_owned(),
        cpu_usage_percent: s.cpu_usage_percent,
        memory_usage_bytes: s.memory_usage_bytes,
        memory_limit_bytes: s.memory_limit_bytes,
        disk_usage_bytes: s.disk_usage_bytes,
        network_rx_bytes: s.network_rx_bytes,
        network_tx_bytes: s.network_tx_bytes,
        process_count: s.process_count,
        file_descriptors: s.file_descriptors,
    }
}

/// Destroys a hosted sandbox once no API call holds it any more (a few seconds at most: its init
/// is dead, so every call on it fails at once). If one still does after that, the runner's drop
/// tears the sandbox down on a blocking thread when the last holder lets go.
async fn destroy_when_free(mut hosted: Arc<Hosted>) -> Result<(), SandboxError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Arc::try_unwrap(hosted) {
            Ok(h) => {
                let mut sandbox = h.sandbox;
                loop {
                    match Arc::try_unwrap(sandbox) {
                        Ok(s) => return s.destroy().await,
                        Err(shared) if tokio::time::Instant::now() < deadline => {
                            sandbox = shared;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(shared) => {
                            tokio::task::spawn_blocking(move || drop(shared));
                            return Ok(());
                        }
                    }
                }
            }
            Err(shared) if tokio::time::Instant::now() < deadline => {
                hosted = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(shared) => {
                tokio::task::spawn_blocking(move || drop(shared));
                return Ok(());
            }
        }
    }
}
