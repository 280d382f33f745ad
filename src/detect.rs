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
use sandwatch_rules::{Action, Engine, LoadError, Match, RuleSet, ruleset::Loader};
use sandwatch_runner::{
    CgroupRoot,
    sandbox::{self, EndReason},
};
use sandwatch_schema::TableBatch;
use serde_json::json;
use sha2::{Digest as _, Sha256};
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
        let mut loader = Loader::default();
        if self.0.is_empty() {
            loader.add_source(
                Path::new(sandwatch_rules::DEFAULT_RULES_NAME),
                sandwatch_rules::DEFAULT_RULES,
            );
        }
        for p in &self.0 {
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
}

pub struct Detector {
    task: JoinHandle<anyhow::Result<DetectSummary>>,
}

impl Detector {
    /// Starts evaluating `batches` (the collector's live stream) with `engine`.
    pub fn start(
        engine: Engine,
        sources: RuleSources,
        batches: mpsc::Receiver<Arc<TableBatch>>,
        alerts: Option<PathBuf>,
        target: Option<ActionTarget>,
        host: String,
    ) -> anyhow::Result<Self> {
        let out = match &alerts {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open the alerts file {}", p.display()))?,
            ),
            None => None,
        };
        let state = DetectorTask {
            engine,
            sources,
            out: out.map(std::io::BufWriter::new),
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

struct DetectorTask {
    engine: Engine,
    sources: RuleSources,
    out: Option<std::io::BufWriter<std::fs::File>>,
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
                    Some(b) => self.evaluate(&b)?,
                    None => break,
                },
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
        if let Some(out) = &mut self.out {
            out.flush().context("cannot write the alerts file")?;
        }
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

    fn evaluate(&mut self, b: &TableBatch) -> anyhow::Result<()> {
        let matches = self.engine.evaluate(b.table, &b.batch);
        for m in matches {
            self.raise(&m)?;
        }
        Ok(())
    }

    fn raise(&mut self, m: &Match) -> anyhow::Result<()> {
        let rule = self.engine.rule(m.rule).clone();
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
            taken.push(json!({
                "action": name,
                "at_ns": at_ns,
                "ok": ok,
                // From the event's kernel timestamp to the order given.
                "latency_ms": (at_ns - m.time_ns) as f64 / 1e6,
                "detail": detail,
            }));
        }
        let priority = priority_name(rule.priority);
        self.summary.alerts += 1;
        *self
            .summary
            .by_priority
            .entry(priority.to_owned())
            .or_default() += 1;
        let alert = alert_record(&rule, m, taken, &self.host);
        tracing::info!(rule = %rule.name, sandbox = ?m.sandbox_id, "{}", m.output);
        if let Some(out) = &mut self.out {
            serde_json::to_writer(&mut *out, &alert).context("cannot write the alerts file")?;
            out.write_all(b"\n")
                .and_then(|()| out.flush())
                .context("cannot write the alerts file")?;
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

/// The alert as JSON: what `--alerts` writes and `rules test` prints, one object per line.
pub fn alert_record(
    rule: &sandwatch_rules::Rule,
    m: &Match,
    taken: Vec<serde_json::Value>,
    host: &str,
) -> serde_json::Value {
    let evidence = json!([{
        "table": m.table.name(),
        "time_ns": m.time_ns,
        "pid": m.pid,
        "tid": m.tid,
        "event": m.event,
    }]);
    let actions: Vec<&str> = rule
        .actions
        .iter()
        .map(|a| match a {
            Action::Alert => "alert",
            Action::Kill => "kill",
            Action::Freeze => "freeze",
        })
        .collect();
    let fields: BTreeMap<&str, &str> = m
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    json!({
        "time": rfc3339(m.time_ns),
        "time_ns": m.time_ns,
        "host": host,
        "rule": rule.name,
        "priority": priority_name(rule.priority),
        "tags": rule.tags,
        "sandbox_id": m.sandbox_id,
        "output": m.output,
        "actions": actions,
        "actions_taken": taken,
        "evidence": evidence,
        "fields": fields,
        "dedup_key": dedup_key(&rule.name, m),
    })
}

fn priority_name(p: sandwatch_rules::Priority) -> &'static str {
    use sandwatch_rules::Priority as P;
    match p {
        P::Emergency => "emergency",
        P::Alert => "alert",
        P::Critical => "critical",
        P::Error => "error",
        P::Warning => "warning",
        P::Notice => "notice",
        P::Informational => "informational",
        P::Debug => "debug",
    }
}

/// The same alert (rule, sandbox, triggering event) always has the same key, so that a hook
/// receiving it twice (redelivery after a crash) can tell.
fn dedup_key(rule: &str, m: &Match) -> String {
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    h.update([0]);
    h.update(m.sandbox_id.as_deref().unwrap_or("").as_bytes());
    h.update([0]);
    h.update(m.table.name().as_bytes());
    h.update(m.time_ns.to_le_bytes());
    h.update(m.tid.unwrap_or(0).to_le_bytes());
    let d = h.finalize();
    d[..12].iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
