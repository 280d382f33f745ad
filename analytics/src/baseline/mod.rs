//! Baselines: what a job profile normally does, learned from its past sandboxes in the audit log,
//! and what is unusual in a new one.
//!
//! Two parts, both learned per profile (the policy's `profile:`):
//! - **New terms** ([`terms`]): the executables, file path prefixes read and written,
//!   destinations and syscalls of every training sandbox. A term no training sandbox had is an
//!   anomaly at once, with its rarity as evidence (score: `ln(1 + sandboxes trained on)`).
//! - **Windows** ([`features`], [`model`]): per sandbox, per window of its life, a vector of
//!   counts, standardized and scored by a linfa model; above the threshold learned from
//!   leave-one-out training scores, the window is an anomaly, with the features furthest out.
//!
//! [`train`] reads the audit log through SQL and returns a [`BaselineModel`], which
//! [`store::ModelStore`] keeps as versioned files; [`explain`] scores a finished sandbox;
//! [`BaselineScorer`] scores live batches in the pipeline.

pub mod features;
pub mod model;
pub mod store;
pub mod terms;

use std::collections::{BTreeMap, HashMap, HashSet};

use datafusion::arrow::{
    array::{Array, AsArray, RecordBatch},
    compute::cast,
    datatypes::{DataType, Int64Type},
};
use futures::StreamExt as _;
use sandwatch_schema::Table;
use serde::{Deserialize, Serialize};

use crate::{AnalyticsError, SqlSession};
use features::{FeatureAccumulator, WindowVector, feature_names};
use model::{ModelKind, WindowModel};
use terms::{TermHit, TermKind};

/// The model file format this build writes and reads.
pub const MODEL_FORMAT: u32 = 1;

/// The model kind `train` uses unless told otherwise: chosen by `cargo xtask eval baseline`
/// (docs/architecture.md, Baselines, has the figures).
pub const DEFAULT_MODEL: ModelKind = ModelKind::Pca;

/// Window of the per-sandbox feature vectors unless told otherwise.
pub const DEFAULT_WINDOW_MS: i64 = 10_000;

/// What a model learned from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataRange {
    /// The first and last event time of the training sandboxes (RFC 3339).
    pub from: String,
    pub to: String,
    /// `--since`, when given.
    pub since: Option<String>,
    pub sandboxes: usize,
    pub windows: usize,
}

/// A profile's learned baseline, as its model file holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BaselineModel {
    pub format: u32,
    pub profile: String,
    /// Set by the store when saved.
    pub version: u32,
    pub trained_at: String,
    pub sandwatch_version: String,
    pub data: DataRange,
    pub window_ms: i64,
    /// Per kind, each term with the number of training sandboxes that had it.
    pub terms: BTreeMap<TermKind, BTreeMap<String, u32>>,
    /// The syscalls whose counts are features (`syscall:<name>`), then `syscall:other`.
    pub syscall_vocab: Vec<String>,
    pub features: Vec<String>,
    pub model_kind: ModelKind,
    pub model: WindowModel,
}

impl BaselineModel {
    pub fn knows(&self, kind: TermKind, term: &str) -> bool {
        self.terms.get(&kind).is_some_and(|t| t.contains_key(term))
    }

    /// A never-seen term's score: its surprisal with one pseudo-count.
    pub fn new_term_score(&self) -> f64 {
        (1.0 + self.data.sandboxes as f64).ln()
    }
}

/// How a model is trained.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub profile: String,
    /// Only sandboxes created at or after this time (RFC 3339).
    pub since: Option<String>,
    pub kind: ModelKind,
    pub window_ms: i64,
}

impl TrainOptions {
    pub fn new(profile: impl Into<String>) -> Self {
        Self {
            profile: profile.into(),
            since: None,
            kind: DEFAULT_MODEL,
            window_ms: DEFAULT_WINDOW_MS,
        }
    }
}

/// The columns each table's extraction reads, and the tables in the order they are read.
const EXTRACT: [(Table, &str); 5] = [
    (
        Table::ProcessEvents,
        "sandbox_id, time, pid, tid, event, ret, filename, exe",
    ),
    (
        Table::FileEvents,
        "sandbox_id, time, pid, tid, event, ret, path, flags",
    ),
    (
        Table::NetworkEvents,
        "sandbox_id, time, pid, tid, event, ret, daddr, dport, protocol, family, bytes",
    ),
    (
        Table::SyscallEvents,
        "sandbox_id, time, pid, tid, event, refused",
    ),
    (Table::SyscallCounts, "sandbox_id, time, syscall, count"),
];

/// What one pass over some sandboxes' rows gathers.
struct Extract {
    /// Per sandbox: its terms, each with its first hit.
    terms: BTreeMap<String, BTreeMap<(TermKind, String), TermHit>>,
    features: FeatureAccumulator,
    first_ns: i64,
    last_ns: i64,
}

/// Reads the rows of the sandboxes `filter` selects (a SQL condition on `sandbox_id`) from every
/// event table, with `params` bound.
async fn extract(
    session: &SqlSession,
    filter: &str,
    params: &[(String, String)],
    window_ms: i64,
) -> Result<Extract, AnalyticsError> {
    let mut out = Extract {
        terms: BTreeMap::new(),
        features: FeatureAccumulator::new(window_ms),
        first_ns: i64::MAX,
        last_ns: i64::MIN,
    };
    // Windows start at each sandbox's creation.
    let starts = session
        .query(
            &format!(
                "SELECT sandbox_id, CAST(min(time) AS BIGINT) AS t FROM sandboxes WHERE {filter} GROUP BY sandbox_id"
            ),
            params,
        )
        .await?;
    for b in &starts.batches {
        let ids = cast(b.column(0), &DataType::Utf8).map_err(arrow_err)?;
        let ids = ids.as_string::<i32>();
        let t = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            if ids.is_valid(i) && t.is_valid(i) {
                out.features.set_start(ids.value(i), t.value(i));
            }
        }
    }
    for (table, cols) in EXTRACT {
        let sql = format!("SELECT {cols} FROM {} WHERE {filter}", table.name());
        let mut stream = session.stream(&sql, params).await?;
        while let Some(b) = stream.next().await {
            let b = b.map_err(|e| session.explain(e))?;
            out.add(table, &b)?;
        }
    }
    Ok(out)
}

fn arrow_err(e: impl std::fmt::Display) -> AnalyticsError {
    AnalyticsError::Baseline(format!("reading the log: {e}"))
}

impl Extract {
    fn add(&mut self, table: Table, b: &RecordBatch) -> Result<(), AnalyticsError> {
        for hit in terms::terms_of(table, b)? {
            self.first_ns = self.first_ns.min(hit.time_ns);
            self.last_ns = self.last_ns.max(hit.time_ns);
            let per = self.terms.entry(hit.sandbox_id.clone()).or_default();
            let key = (hit.kind, hit.term.clone());
            match per.get(&key) {
                Some(h) if h.time_ns <= hit.time_ns => {}
                _ => {
                    per.insert(key, hit);
                }
            }
        }
        self.features.add(table, b);
        Ok(())
    }
}

/// RFC 3339 in UTC, by arrow's own formatting.
fn rfc3339(ns: i64) -> String {
    use datafusion::arrow::{array::TimestampNanosecondArray, util::display::ArrayFormatter};
    let a = TimestampNanosecondArray::from(vec![ns]).with_timezone("UTC");
    ArrayFormatter::try_new(&a, &Default::default())
        .map(|f| f.value(0).to_string())
        .unwrap_or_else(|_| ns.to_string())
}

const PROFILE_FILTER: &str = "sandbox_id IN (SELECT sandbox_id FROM sandboxes \
     WHERE profile = $profile AND time >= CAST($since AS TIMESTAMP))";

/// Learns `options.profile`'s baseline from its sandboxes in the audit log.
pub async fn train(
    session: &SqlSession,
    options: &TrainOptions,
) -> Result<BaselineModel, AnalyticsError> {
    let params = vec![
        ("profile".to_owned(), options.profile.clone()),
        (
            "since".to_owned(),
            options
                .since
                .clone()
                .unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
        ),
    ];
    let mut ex = extract(session, PROFILE_FILTER, &params, options.window_ms).await?;
    if ex.terms.is_empty() {
        return Err(AnalyticsError::Baseline(format!(
            "no recorded activity of profile {:?}{} in the audit log",
            options.profile,
            options
                .since
                .as_ref()
                .map(|s| format!(" since {s}"))
                .unwrap_or_default()
        )));
    }
    let mut terms: BTreeMap<TermKind, BTreeMap<String, u32>> = BTreeMap::new();
    for per in ex.terms.values() {
        for (kind, term) in per.keys() {
            *terms
                .entry(*kind)
                .or_default()
                .entry(term.clone())
                .or_default() += 1;
        }
    }
    let vocab: Vec<String> = ex.features.syscalls_seen().into_iter().collect();
    let windows = ex.features.take_finished(None, &vocab);
    let rows: Vec<Vec<f64>> = windows.iter().map(|w| w.values.clone()).collect();
    let model = WindowModel::fit(options.kind, &rows)?;
    Ok(BaselineModel {
        format: MODEL_FORMAT,
        profile: options.profile.clone(),
        version: 0,
        trained_at: rfc3339(now_ns()),
        sandwatch_version: env!("CARGO_PKG_VERSION").to_owned(),
        data: DataRange {
            from: rfc3339(ex.first_ns),
            to: rfc3339(ex.last_ns),
            since: options.since.clone(),
            sandboxes: ex.terms.len(),
            windows: windows.len(),
        },
        window_ms: options.window_ms,
        terms,
        features: feature_names(&vocab),
        syscall_vocab: vocab,
        model_kind: options.kind,
        model,
    })
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// One feature of a window, against training.
#[derive(Clone, Debug, Serialize)]
pub struct Deviation {
    pub feature: String,
    /// The window's count (back from `ln(1 + n)`), and the training mean's.
    pub count: f64,
    pub normal: f64,
    /// Standard deviations from the training mean.
    pub z: f64,
}

/// Something a sandbox did that its profile's baseline did not expect.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum AnomalyKind {
    NewTerm {
        kind: TermKind,
        term: String,
    },
    Window {
        window: u64,
        threshold: f64,
        deviations: Vec<Deviation>,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct Anomaly {
    pub sandbox_id: String,
    pub profile: String,
    pub model_version: u32,
    /// The triggering row's time (new term) or the window's start.
    pub time_ns: i64,
    pub score: f64,
    pub kind: AnomalyKind,
    /// The triggering row, for a new term.
    #[serde(skip)]
    pub hit: Option<TermHit>,
    #[serde(skip)]
    pub table: Option<Table>,
}

impl Anomaly {
    /// One line saying why: which term was new, or which features were how far out.
    pub fn reason(&self, model: &BaselineModel) -> String {
        match &self.kind {
            AnomalyKind::NewTerm { kind, term } => format!(
                "new {} {term} (in none of the {} sandboxes profile {} was trained on)",
                kind.describe(),
                model.data.sandboxes,
                self.profile
            ),
            AnomalyKind::Window {
                window,
                threshold,
                deviations,
            } => {
                let parts: Vec<String> = deviations
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {:.0} (normal {:.0}, {:+.1}σ)",
                            d.feature, d.count, d.normal, d.z
                        )
                    })
                    .collect();
                format!(
                    "window {window} scored {:.2} > {:.2} ({}): {}",
                    self.score,
                    threshold,
                    model.model_kind.name(),
                    parts.join(", ")
                )
            }
        }
    }
}

fn window_anomaly(model: &BaselineModel, w: &WindowVector) -> Option<Anomaly> {
    let score = model.model.score(&w.values);
    (score > model.model.threshold).then(|| Anomaly {
        sandbox_id: w.sandbox_id.clone(),
        profile: model.profile.clone(),
        model_version: model.version,
        time_ns: w.start_ns,
        score,
        kind: AnomalyKind::Window {
            window: w.window,
            threshold: model.model.threshold,
            deviations: deviations(model, &w.values, 3),
        },
        hit: None,
        table: None,
    })
}

fn deviations(model: &BaselineModel, values: &[f64], n: usize) -> Vec<Deviation> {
    model
        .model
        .outliers(values, n)
        .into_iter()
        .map(|(i, z)| Deviation {
            feature: model.features[i].clone(),
            count: values[i].exp_m1(),
            normal: model.model.scaler.mean[i].exp_m1(),
            z,
        })
        .collect()
}

fn term_anomaly(model: &BaselineModel, hit: TermHit, table: Table) -> Anomaly {
    Anomaly {
        sandbox_id: hit.sandbox_id.clone(),
        profile: model.profile.clone(),
        model_version: model.version,
        time_ns: hit.time_ns,
        score: model.new_term_score(),
        kind: AnomalyKind::NewTerm {
            kind: hit.kind,
            term: hit.term.clone(),
        },
        hit: Some(hit),
        table: Some(table),
    }
}

/// A finished sandbox scored against a model.
#[derive(Clone, Debug, Serialize)]
pub struct SandboxScore {
    pub sandbox_id: String,
    pub profile: String,
    pub model_version: u32,
    pub new_terms: Vec<Anomaly>,
    /// Every window's score, anomalous or not, with its furthest features.
    pub windows: Vec<WindowScore>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WindowScore {
    pub window: u64,
    pub start_ns: i64,
    pub score: f64,
    pub threshold: f64,
    pub anomalous: bool,
    pub deviations: Vec<Deviation>,
}

impl SandboxScore {
    pub fn anomalous(&self) -> bool {
        !self.new_terms.is_empty() || self.windows.iter().any(|w| w.anomalous)
    }

    /// The highest score among its anomalies (terms and windows), 0 when it has none.
    pub fn score(&self) -> f64 {
        self.new_terms
            .iter()
            .map(|a| a.score)
            .chain(self.windows.iter().filter(|w| w.anomalous).map(|w| w.score))
            .fold(0.0, f64::max)
    }
}

/// Scores the recorded sandbox `sandbox_id` against `model`.
pub async fn explain(
    session: &SqlSession,
    model: &BaselineModel,
    sandbox_id: &str,
) -> Result<SandboxScore, AnalyticsError> {
    let params = vec![("sandbox".to_owned(), sandbox_id.to_owned())];
    let mut ex = extract(session, "sandbox_id = $sandbox", &params, model.window_ms).await?;
    let Some(terms) = ex.terms.remove(sandbox_id) else {
        return Err(AnalyticsError::Baseline(format!(
            "no recorded activity of sandbox {sandbox_id:?} in the audit log"
        )));
    };
    let mut new_terms: Vec<Anomaly> = terms
        .into_iter()
        .filter(|((kind, term), _)| !model.knows(*kind, term))
        .map(|(_, hit)| {
            let table = table_of(hit.kind, &hit.event);
            term_anomaly(model, hit, table)
        })
        .collect();
    new_terms.sort_by_key(|a| a.time_ns);
    let windows = ex
        .features
        .take_finished(None, &model.syscall_vocab)
        .into_iter()
        .map(|w| {
            let score = model.model.score(&w.values);
            WindowScore {
                window: w.window,
                start_ns: w.start_ns,
                score,
                threshold: model.model.threshold,
                anomalous: score > model.model.threshold,
                deviations: deviations(model, &w.values, 5),
            }
        })
        .collect();
    Ok(SandboxScore {
        sandbox_id: sandbox_id.to_owned(),
        profile: model.profile.clone(),
        model_version: model.version,
        new_terms,
        windows,
    })
}

fn table_of(kind: TermKind, event: &str) -> Table {
    match kind {
        TermKind::Executable => Table::ProcessEvents,
        TermKind::FileRead | TermKind::FileWrite => Table::FileEvents,
        TermKind::Destination => Table::NetworkEvents,
        TermKind::Syscall if event.is_empty() => Table::SyscallCounts,
        TermKind::Syscall => Table::SyscallEvents,
    }
}

/// Scores the pipeline's batches for the sandboxes whose profile has a model: a new term as soon
/// as its row arrives (once per sandbox and term), a window once it can grow no more.
pub struct BaselineScorer {
    models: HashMap<String, BaselineModel>,
    /// Sandbox → profile, for sandboxes whose profile has a model.
    sandboxes: HashMap<String, String>,
    accumulators: HashMap<String, FeatureAccumulator>,
    reported: HashSet<(String, TermKind, String)>,
    latest_ns: i64,
}

impl BaselineScorer {
    pub fn new(models: impl IntoIterator<Item = BaselineModel>) -> Self {
        let models: HashMap<String, BaselineModel> =
            models.into_iter().map(|m| (m.profile.clone(), m)).collect();
        let accumulators = models
            .iter()
            .map(|(p, m)| (p.clone(), FeatureAccumulator::new(m.window_ms)))
            .collect();
        Self {
            models,
            sandboxes: HashMap::new(),
            accumulators,
            reported: HashSet::new(),
            latest_ns: i64::MIN,
        }
    }

    pub fn profiles(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    pub fn model(&self, profile: &str) -> Option<&BaselineModel> {
        self.models.get(profile)
    }

    /// Scores `sandbox_id` from now on under `profile`'s model (also learned from the
    /// `sandboxes` table's `created` rows).
    pub fn watch(&mut self, sandbox_id: &str, profile: &str, start_ns: i64) {
        if let Some(acc) = self.accumulators.get_mut(profile) {
            self.sandboxes
                .insert(sandbox_id.to_owned(), profile.to_owned());
            acc.set_start(sandbox_id, start_ns);
        }
    }

    fn learn_sandboxes(&mut self, b: &RecordBatch) {
        let col = |n: &str| {
            b.column_by_name(n)
                .and_then(|c| cast(c, &DataType::Utf8).ok())
        };
        let (Some(ids), Some(events), Some(profiles)) =
            (col("sandbox_id"), col("event"), col("profile"))
        else {
            return;
        };
        let times = b
            .column_by_name("time")
            .and_then(|c| cast(c, &DataType::Int64).ok());
        for i in 0..b.num_rows() {
            let (ids, events, profiles) = (
                ids.as_string::<i32>(),
                events.as_string::<i32>(),
                profiles.as_string::<i32>(),
            );
            if events.value(i) != "created" || !profiles.is_valid(i) {
                continue;
            }
            let t = terms::int(times.as_ref(), i).unwrap_or(0);
            self.watch(ids.value(i), profiles.value(i), t);
        }
    }

    /// Scores one batch; returns what is anomalous now.
    pub fn observe(
        &mut self,
        table: Table,
        batch: &RecordBatch,
    ) -> Result<Vec<Anomaly>, AnalyticsError> {
        if table == Table::Sandboxes {
            self.learn_sandboxes(batch);
            return Ok(Vec::new());
        }
        if self.sandboxes.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for hit in terms::terms_of(table, batch)? {
            self.latest_ns = self.latest_ns.max(hit.time_ns);
            let Some(profile) = self.sandboxes.get(&hit.sandbox_id) else {
                continue;
            };
            let model = &self.models[profile];
            if model.knows(hit.kind, &hit.term) {
                continue;
            }
            let key = (hit.sandbox_id.clone(), hit.kind, hit.term.clone());
            if self.reported.insert(key) {
                out.push(term_anomaly(model, hit, table));
            }
        }
        for acc in self.accumulators.values_mut() {
            acc.add(table, batch);
        }
        if let Some(t) = batch
            .column_by_name("time")
            .and_then(|c| cast(c, &DataType::Int64).ok())
        {
            let t = t.as_primitive::<Int64Type>();
            if let Some(max) = datafusion::arrow::compute::max(t) {
                self.latest_ns = self.latest_ns.max(max);
            }
        }
        out.extend(self.windows(Some(self.latest_ns)));
        Ok(out)
    }

    fn windows(&mut self, now: Option<i64>) -> Vec<Anomaly> {
        let mut out = Vec::new();
        for (profile, acc) in &mut self.accumulators {
            let model = &self.models[profile];
            for w in acc.take_finished(now, &model.syscall_vocab) {
                // Every accumulator sees every row: score a window only under its own profile.
                if self.sandboxes.get(&w.sandbox_id) != Some(profile) {
                    continue;
                }
                out.extend(window_anomaly(model, &w));
            }
        }
        out
    }

    /// The stream's end: every window still open is scored.
    pub fn finish(&mut self) -> Vec<Anomaly> {
        self.windows(None)
    }
}
