//! The dispatcher: routes each alert to the hooks that take it, owes it durably in the outbox,
//! and delivers it with one task per hook (grouping window, rate limit, timeout, retries with
//! exponential back-off and jitter). Every attempt's outcome becomes a [`DeliveryRecord`]: logged
//! through `tracing` and, when asked for, sent on a channel (for the `alert_deliveries` table).
//!
//! Per hook, one request is in flight at a time; a failing message waits for its back-off in a
//! schedule while the messages behind it go, so one poisoned message does not hold a hook up.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use backon::BackoffBuilder as _;
use sandwatch_schema::{AlertDeliveryRow, DeliveryState};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    HooksError,
    alert::{Alert, now_ns},
    config::{HookConfig, HooksConfig, RateLimit, RetryPolicy},
    format,
    outbox::{CorruptEntry, Failure, Outbox, OutboxEntry, OutboxStatus},
};

/// How much of an error answer's body goes into the record.
const MAX_ERROR_BODY: usize = 300;

/// The outcome of one delivery attempt of one alert to one hook.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    /// When the attempt ended, ns since the Unix epoch.
    pub time_ns: i64,
    pub host: String,
    pub alert_id: String,
    pub dedup_key: String,
    pub rule: String,
    pub hook: String,
    /// `webhook`, `slack`, `pagerduty`, `alertmanager`.
    pub hook_type: &'static str,
    pub state: DeliveryState,
    /// Attempts so far in this process, this one included.
    pub attempts: u32,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: Option<f64>,
    /// Alerts that went in the same message (1: not grouped).
    pub group_size: usize,
}

impl DeliveryRecord {
    /// The record's `alert_deliveries` row.
    pub fn row(&self) -> AlertDeliveryRow<'_> {
        AlertDeliveryRow {
            time_ns: self.time_ns,
            host: &self.host,
            alert_id: &self.alert_id,
            dedup_key: &self.dedup_key,
            hook: &self.hook,
            hook_type: self.hook_type,
            state: self.state,
            attempts: self.attempts,
            status_code: self.status_code,
            error: self.error.as_deref(),
            latency_ms: self.latency_ms,
        }
    }
}

/// Where an alert went when it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    pub alert_id: String,
    pub dedup_key: String,
    /// The hooks that take it (now owed in the outbox); empty: no hook takes it.
    pub hooks: Vec<String>,
}

/// What the outbox held when the dispatcher started.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Deliveries owed from before, handed to their hooks again.
    pub resumed: usize,
    /// Deliveries owed to hooks the configuration no longer has, by hook: kept, not sent.
    pub orphaned: BTreeMap<String, usize>,
    /// Unreadable entries found now, moved to `corrupt/`.
    pub corrupt: Vec<CorruptEntry>,
    pub corrupt_total: usize,
    /// Given-up deliveries kept in `failed/`.
    pub failed_kept: usize,
    /// Enqueues a crash interrupted before they returned.
    pub interrupted: usize,
}

/// Totals when the dispatcher has stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchSummary {
    /// Alert deliveries the hooks accepted.
    pub delivered: u64,
    /// Alert deliveries given up (kept in `failed/`).
    pub failed: u64,
    /// Deliveries still owed in the outbox, for the next start.
    pub left_pending: usize,
}

/// Builds and starts a dispatcher.
pub struct Dispatcher {
    config: HooksConfig,
    state_dir: PathBuf,
    records: Option<mpsc::UnboundedSender<DeliveryRecord>>,
}

impl Dispatcher {
    /// Starts delivering: opens `<state_dir>/outbox`, resumes what it owes, and spawns one task
    /// per hook on the current tokio runtime. The join handle yields the totals once
    /// [`DispatcherHandle::shutdown`] has run its course.
    pub fn start(
        config: HooksConfig,
        state_dir: impl Into<PathBuf>,
    ) -> Result<(DispatcherHandle, JoinHandle<DispatchSummary>), HooksError> {
        Dispatcher::new(config, state_dir).spawn()
    }

    pub fn new(config: HooksConfig, state_dir: impl Into<PathBuf>) -> Dispatcher {
        Dispatcher {
            config,
            state_dir: state_dir.into(),
            records: None,
        }
    }

    /// Also sends every [`DeliveryRecord`] to `records` (they are always logged).
    pub fn with_records(mut self, records: mpsc::UnboundedSender<DeliveryRecord>) -> Dispatcher {
        self.records = Some(records);
        self
    }

    /// See [`Dispatcher::start`].
    pub fn spawn(self) -> Result<(DispatcherHandle, JoinHandle<DispatchSummary>), HooksError> {
        let outbox_dir = self.state_dir.join("outbox");
        let (outbox, recovered) = Outbox::open(&outbox_dir, self.config.outbox)?;
        let outbox = Arc::new(outbox);
        let client = http_client()?;
        let (stop_tx, stop_rx) = watch::channel(None);
        let totals = Arc::new(Totals::default());

        let mut queues = HashMap::new();
        let mut workers = Vec::new();
        for hook in &self.config.hooks {
            let (tx, rx) = mpsc::unbounded_channel();
            queues.insert(hook.name.clone(), tx);
            workers.push(Worker {
                bucket: hook.rate_limit.map(TokenBucket::new),
                hook: hook.clone(),
                client: client.clone(),
                outbox: outbox.clone(),
                rx,
                rx_open: true,
                stop: stop_rx.clone(),
                stop_open: true,
                records: self.records.clone(),
                totals: totals.clone(),
                groups: Vec::new(),
                schedule: BTreeMap::new(),
                seq: 0,
            });
        }

        let mut report = RecoveryReport {
            corrupt: recovered.corrupt,
            corrupt_total: recovered.corrupt_total,
            failed_kept: recovered.failed,
            interrupted: recovered.interrupted,
            ..Default::default()
        };
        for entry in recovered.pending {
            match queues.get(&entry.hook) {
                Some(q) => {
                    report.resumed += 1;
                    let _ = q.send(entry);
                }
                None => *report.orphaned.entry(entry.hook.clone()).or_default() += 1,
            }
        }
        log_recovery(&report, &outbox);

        let handles: Vec<JoinHandle<()>> =
            workers.into_iter().map(|w| tokio::spawn(w.run())).collect();
        let shared = Arc::new(Shared {
            config: self.config,
            outbox: outbox.clone(),
            queues,
            stop: stop_tx,
            stopping: AtomicBool::new(false),
            report,
        });
        let join = tokio::spawn(async move {
            for h in handles {
                if let Err(e) = h.await {
                    tracing::error!("hooks: a delivery task ended abnormally: {e}");
                }
            }
            let summary = DispatchSummary {
                delivered: totals.delivered.load(Ordering::Relaxed),
                failed: totals.failed.load(Ordering::Relaxed),
                left_pending: outbox.status().pending,
            };
            tracing::info!(
                delivered = summary.delivered,
                failed = summary.failed,
                left_pending = summary.left_pending,
                "hooks: dispatcher stopped"
            );
            summary
        });
        Ok((DispatcherHandle { shared }, join))
    }
}

fn log_recovery(report: &RecoveryReport, outbox: &Outbox) {
    let dir = outbox.dir().display();
    if report.resumed > 0 {
        tracing::info!(outbox = %dir, "hooks: resuming {} pending deliveries", report.resumed);
    }
    for (hook, n) in &report.orphaned {
        tracing::warn!(
            outbox = %dir,
            "hooks: {n} pending deliveries for hook {hook:?}, which the configuration no longer has; kept, not sent"
        );
    }
    if report.corrupt_total > 0 {
        tracing::warn!(
            dir = %outbox.corrupt_dir().display(),
            "hooks: {} unreadable outbox entries set aside ({} found now)",
            report.corrupt_total,
            report.corrupt.len()
        );
    }
    if report.failed_kept > 0 {
        tracing::warn!(
            dir = %outbox.failed_dir().display(),
            "hooks: {} undeliverable alert deliveries kept",
            report.failed_kept
        );
    }
    if report.interrupted > 0 {
        tracing::info!(
            outbox = %dir,
            "hooks: removed {} enqueues interrupted before they returned",
            report.interrupted
        );
    }
}

fn http_client() -> Result<reqwest::Client, HooksError> {
    // reqwest is built without a bundled crypto provider; ring is ours. Another part of the
    // process may have installed one first, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("sandwatch/", env!("CARGO_PKG_VERSION")))
        // A hook that redirects a POST is misconfigured; following it would resend the alert
        // somewhere nobody named.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| HooksError::Http(error_chain(&e)))
}

#[derive(Default)]
struct Totals {
    delivered: AtomicU64,
    failed: AtomicU64,
}

struct Shared {
    config: HooksConfig,
    outbox: Arc<Outbox>,
    queues: HashMap<String, mpsc::UnboundedSender<OutboxEntry>>,
    stop: watch::Sender<Option<Instant>>,
    stopping: AtomicBool,
    report: RecoveryReport,
}

/// Sends alerts to a running dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct DispatcherHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DispatcherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherHandle")
            .field("hooks", &self.shared.queues.keys().collect::<Vec<_>>())
            .field("outbox", &self.shared.outbox)
            .finish()
    }
}

impl DispatcherHandle {
    /// Routes `alert` (its empty id, dedup key or time filled first, see [`Alert::complete`]) to
    /// the hooks that take it and owes it to each of them durably: when this returns Ok, the
    /// alert will be delivered at least once even if the process dies right after.
    pub async fn send(&self, alert: Alert) -> Result<Routed, HooksError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.send_blocking(alert))
            .await
            .map_err(|e| HooksError::Internal(format!("enqueue task: {e}")))?
    }

    /// [`send`](Self::send) for code outside the runtime's async tasks (it does file I/O and
    /// fsyncs, so not on an async worker thread).
    pub fn send_blocking(&self, alert: Alert) -> Result<Routed, HooksError> {
        if self.shared.stopping.load(Ordering::Relaxed) {
            return Err(HooksError::Stopped);
        }
        let alert = alert.complete();
        let hooks: Vec<&str> = self.hooks_for(&alert);
        let routed = Routed {
            alert_id: alert.id.clone(),
            dedup_key: alert.dedup_key.clone(),
            hooks: hooks.iter().map(|h| (*h).to_owned()).collect(),
        };
        if hooks.is_empty() {
            tracing::debug!(alert_id = %alert.id, rule = %alert.rule, "hooks: no hook takes this alert");
            return Ok(routed);
        }
        let entries = self.shared.outbox.enqueue(&alert, &hooks)?;
        for entry in entries {
            if let Some(q) = self.shared.queues.get(&entry.hook) {
                // A stopped worker leaves it owed on disk for the next start.
                let _ = q.send(entry);
            }
        }
        Ok(routed)
    }

    /// The names of the hooks that take `alert`.
    pub fn hooks_for(&self, alert: &Alert) -> Vec<&str> {
        self.shared
            .config
            .hooks
            .iter()
            .filter(|h| h.accepts(alert))
            .map(|h| h.name.as_str())
            .collect()
    }

    /// Stops taking alerts and delivers what it can (grouping windows cut short) until `grace`
    /// has passed; what is left stays owed in the outbox for the next start. Returns at once:
    /// await the join handle [`Dispatcher::start`] gave for the end.
    pub fn shutdown(&self, grace: Duration) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.stop.send_replace(Some(Instant::now() + grace));
    }

    pub fn outbox_status(&self) -> OutboxStatus {
        self.shared.outbox.status()
    }

    /// What the outbox held at start.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.shared.report
    }

    pub fn config(&self) -> &HooksConfig {
        &self.shared.config
    }
}

/// At most `count` messages per `per`, bursting up to `count`.
struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(limit: RateLimit) -> TokenBucket {
        let capacity = f64::from(limit.count);
        TokenBucket {
            capacity,
            tokens: capacity,
            per_second: capacity / limit.per.as_secs_f64(),
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

/// Alerts of one rule in one sandbox, gathering until `deadline`.
struct OpenGroup {
    key: (String, Option<String>),
    deadline: Instant,
    entries: Vec<OutboxEntry>,
}

/// What goes in one request, and how its delivery is going.
struct Message {
    entries: Vec<OutboxEntry>,
    attempts: u32,
    backoff: backon::ExponentialBackoff,
}

impl Message {
    fn new(entries: Vec<OutboxEntry>, retries: RetryPolicy) -> Message {
        Message {
            entries,
            attempts: 0,
            backoff: backon::ExponentialBuilder::default()
                .with_min_delay(retries.initial)
                .with_max_delay(retries.max_delay)
                .with_factor(2.0)
                .with_max_times(retries.max as usize)
                .with_jitter()
                .build(),
        }
    }
}

enum Outcome {
    Delivered {
        status: u16,
    },
    /// Worth another try (connection trouble, timeout, 5xx, 408, 429).
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// The hook refused it for good (other 4xx, a redirect).
    Refused {
        status: Option<u16>,
        error: String,
    },
}

struct Worker {
    hook: HookConfig,
    client: reqwest::Client,
    outbox: Arc<Outbox>,
    rx: mpsc::UnboundedReceiver<OutboxEntry>,
    rx_open: bool,
    stop: watch::Receiver<Option<Instant>>,
    stop_open: bool,
    records: Option<mpsc::UnboundedSender<DeliveryRecord>>,
    totals: Arc<Totals>,
    bucket: Option<TokenBucket>,
    groups: Vec<OpenGroup>,
    /// Messages by when they may go next.
    schedule: BTreeMap<(Instant, u64), Message>,
    seq: u64,
}

impl Worker {
    async fn run(mut self) {
        loop {
            let stop_at = *self.stop.borrow();
            let now = Instant::now();
            if let Some(deadline) = stop_at {
                while let Ok(e) = self.rx.try_recv() {
                    self.add(e);
                }
                self.close_groups(|_| true);
                let next = self.schedule.keys().next().map(|(t, _)| *t);
                if now >= deadline || next.is_none_or(|t| t > deadline) {
                    break;
                }
            } else if !self.rx_open && self.groups.is_empty() && self.schedule.is_empty() {
                // Every handle is gone and nothing is owed here.
                break;
            }
            self.close_groups(|g| g.deadline <= now);

            if let Some((&key, _)) = self.schedule.iter().next()
                && key.0 <= now
            {
                let msg = self.schedule.remove(&key).expect("present");
                if let Some(bucket) = self.bucket.as_mut()
                    && let Err(wait) = bucket.take(now)
                {
                    tracing::debug!(hook = %self.hook.name, "hooks: rate limit, next message in {wait:?}");
                    self.reschedule(now + wait, msg);
                    continue;
                }
                match stop_at {
                    // Past the deadline the attempt is dropped; its entries stay owed on disk.
                    Some(deadline) => {
                        if tokio::time::timeout_at(deadline.into(), self.attempt(msg))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    None => {
                        let mut stop = self.stop.clone();
                        let open = self.stop_open;
                        tokio::select! {
                            () = self.attempt(msg) => {}
                            () = stop_passes(&mut stop, open) => break,
                        }
                    }
                }
                continue;
            }

            let wake = self
                .groups
                .iter()
                .map(|g| g.deadline)
                .chain(self.schedule.keys().map(|(t, _)| *t))
                .chain(stop_at)
                .min();
            tokio::select! {
                changed = self.stop.changed(), if self.stop_open => {
                    if changed.is_err() {
                        self.stop_open = false;
                    }
                }
                entry = self.rx.recv(), if self.rx_open => match entry {
                    Some(e) => self.add(e),
                    None => self.rx_open = false,
                },
                () = sleep_until(wake) => {}
            }
        }
        let owed = self.groups.iter().map(|g| g.entries.len()).sum::<usize>()
            + self
                .schedule
                .values()
                .map(|m| m.entries.len())
                .sum::<usize>();
        if owed > 0 {
            tracing::info!(hook = %self.hook.name, "hooks: stopping with {owed} deliveries still owed (kept in the outbox)");
        }
    }

    fn add(&mut self, entry: OutboxEntry) {
        let window = self.hook.group_window;
        if window.is_zero() {
            let now = Instant::now();
            self.reschedule(now, Message::new(vec![entry], self.hook.retries));
            return;
        }
        let key = (entry.alert.rule.clone(), entry.alert.sandbox_id.clone());
        if let Some(g) = self.groups.iter_mut().find(|g| g.key == key) {
            g.entries.push(entry);
            return;
        }
        // The window runs from the enqueue, so entries resumed after a restart go at once.
        let waited = Duration::from_nanos(u64::try_from(now_ns() - entry.enqueued_ns).unwrap_or(0));
        let deadline = Instant::now() + window.saturating_sub(waited);
        self.groups.push(OpenGroup {
            key,
            deadline,
            entries: vec![entry],
        });
    }

    /// Turns the groups `due` says are ready into scheduled messages.
    fn close_groups(&mut self, due: impl Fn(&OpenGroup) -> bool) {
        let now = Instant::now();
        let (ready, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.groups)
            .into_iter()
            .partition(|g| due(g));
        self.groups = open;
        for g in ready {
            for entries in split_for(&self.hook, g.entries) {
                self.reschedule(now, Message::new(entries, self.hook.retries));
            }
        }
    }

    fn reschedule(&mut self, at: Instant, msg: Message) {
        self.seq += 1;
        self.schedule.insert((at, self.seq), msg);
    }

    async fn attempt(&mut self, mut msg: Message) {
        msg.attempts += 1;
        let alerts: Vec<&Alert> = msg.entries.iter().map(|e| &e.alert).collect();
        let request = format::render(&self.hook, &alerts);
        let started = Instant::now();
        let outcome = self.post(request).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Outcome::Delivered { status } => {
                let ids: Vec<String> = msg.entries.iter().map(|e| e.id.clone()).collect();
                let outbox = self.outbox.clone();
                let acked = tokio::task::spawn_blocking(move || {
                    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                    outbox.ack(&ids)
                })
                .await;
                match acked {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(hook = %self.hook.name, "hooks: delivered, but recording it failed (it will be sent again after a restart): {e}")
                    }
                    Err(e) => {
                        tracing::error!(hook = %self.hook.name, "hooks: delivered, but the ack task failed: {e}")
                    }
                }
                self.totals
                    .delivered
                    .fetch_add(msg.entries.len() as u64, Ordering::Relaxed);
                tracing::info!(
                    hook = %self.hook.name,
                    alerts = msg.entries.len(),
                    attempts = msg.attempts,
                    status,
                    latency_ms,
                    dedup_key = %msg.entries[0].alert.dedup_key,
                    "hooks: delivered"
                );
                self.emit(
                    &msg,
                    DeliveryState::Delivered,
                    Some(status),
                    None,
                    latency_ms,
                );
            }
            Outcome::Retry {
                status,
                error,
                retry_after,
            } => match msg.backoff.next() {
                Some(delay) => {
                    // backon's jitter adds up to one more delay; the configured cap holds.
                    let mut delay = delay.min(self.hook.retries.max_delay);
                    if let Some(asked) = retry_after {
                        delay = delay.max(asked.min(self.hook.retries.max_delay));
                    }
                    tracing::warn!(
                        hook = %self.hook.name,
                        attempts = msg.attempts,
                        status,
                        "hooks: delivery failed, retrying in {delay:?}: {error}"
                    );
                    self.emit(
                        &msg,
                        DeliveryState::Retrying,
                        status,
                        Some(error),
                        latency_ms,
                    );
                    self.reschedule(Instant::now() + delay, msg);
                }
                None => {
                    let error = format!("gave up after {} attempts: {error}", msg.attempts);
                    self.give_up(msg, status, error, latency_ms).await;
                }
            },
            Outcome::Refused { status, error } => {
                let error = format!("refused, not retried: {error}");
                self.give_up(msg, status, error, latency_ms).await;
            }
        }
    }

    async fn give_up(&mut self, msg: Message, status: Option<u16>, error: String, latency_ms: f64) {
        tracing::error!(
            hook = %self.hook.name,
            alerts = msg.entries.len(),
            attempts = msg.attempts,
            status,
            dir = %self.outbox.failed_dir().display(),
            "hooks: delivery given up, kept in the outbox's failed/: {error}"
        );
        self.totals
            .failed
            .fetch_add(msg.entries.len() as u64, Ordering::Relaxed);
        self.emit(
            &msg,
            DeliveryState::Failed,
            status,
            Some(error.clone()),
            latency_ms,
        );
        let failure = Failure {
            at_ns: now_ns(),
            attempts: msg.attempts,
            error,
        };
        let outbox = self.outbox.clone();
        let entries = msg.entries;
        let moved = tokio::task::spawn_blocking(move || {
            entries.iter().try_for_each(|e| outbox.give_up(e, &failure))
        })
        .await;
        match moved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(hook = %self.hook.name, "hooks: could not set a given-up delivery aside (it stays pending): {e}")
            }
            Err(e) => {
                tracing::error!(hook = %self.hook.name, "hooks: the give-up task failed: {e}")
            }
        }
    }

    fn emit(
        &self,
        msg: &Message,
        state: DeliveryState,
        status_code: Option<u16>,
        error: Option<String>,
        latency_ms: f64,
    ) {
        let Some(records) = &self.records else { return };
        let time_ns = now_ns();
        for e in &msg.entries {
            let _ = records.send(DeliveryRecord {
                time_ns,
                host: e.alert.host.clone(),
                alert_id: e.alert.id.clone(),
                dedup_key: e.alert.dedup_key.clone(),
                rule: e.alert.rule.clone(),
                hook: self.hook.name.clone(),
                hook_type: self.hook.kind.name(),
                state,
                attempts: msg.attempts,
                status_code,
                error: error.clone(),
                latency_ms: Some(latency_ms),
                group_size: msg.entries.len(),
            });
        }
    }

    async fn post(&self, request: format::HttpRequest) -> Outcome {
        let mut req = self
            .client
            .post(&request.url)
            .timeout(self.hook.timeout)
            .body(request.body);
        for (k, v) in &request.headers {
            req = req.header(k, v);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    status: None,
                    error: error_chain(&e),
                    retry_after: None,
                };
            }
        };
        let status = resp.status();
        let code = status.as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read the whole answer (within the timeout), so a half-read connection is not reused.
        let body = tokio::time::timeout(self.hook.timeout, resp.bytes()).await;
        if status.is_success() {
            return Outcome::Delivered { status: code };
        }
        let body = match body {
            Ok(Ok(b)) => String::from_utf8_lossy(&b[..b.len().min(MAX_ERROR_BODY)]).into_owned(),
            _ => String::new(),
        };
        let error = if body.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", body.trim())
        };
        if status.is_server_error() || matches!(code, 408 | 425 | 429) {
            Outcome::Retry {
                status: Some(code),
                error,
                retry_after,
            }
        } else {
            Outcome::Refused {
                status: Some(code),
                error,
            }
        }
    }
}

/// The messages a closed group becomes: one for most hook types; one per dedup key for
/// PagerDuty, whose events carry one each.
fn split_for(hook: &HookConfig, entries: Vec<OutboxEntry>) -> Vec<Vec<OutboxEntry>> {
    if !matches!(hook.kind, crate::config::HookKind::PagerDuty { .. }) {
        return vec![entries];
    }
    let mut by_key: Vec<Vec<OutboxEntry>> = Vec::new();
    for e in entries {
        match by_key
            .iter_mut()
            .find(|m| m[0].alert.dedup_key == e.alert.dedup_key)
        {
            Some(m) => m.push(e),
            None => by_key.push(vec![e]),
        }
    }
    by_key
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Resolves once a shutdown deadline is set and has passed.
async fn stop_passes(stop: &mut watch::Receiver<Option<Instant>>, open: bool) {
    loop {
        let deadline = *stop.borrow();
        if let Some(deadline) = deadline {
            tokio::time::sleep_until(deadline.into()).await;
            return;
        }
        if !open || stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// An error and its causes, one line: reqwest's own message alone says little.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}
