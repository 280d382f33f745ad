//! Live detection for sandwatch: the collector's live batches go through the rule engine and the
//! profiles' learned baselines; each match or anomaly becomes an [`Alert`](sandwatch_hooks::Alert)
//! written to the alerts file, the `alerts` table and the hooks, and a rule's `kill` or `freeze`
//! is carried out on the sandbox the event came from.
//!
//! One [`Detector`] serves every sandbox the collector watches: it acts by sandbox id, counts per
//! sandbox, and tells its owner about each action as it happens ([`ActionEvent`]). `sandwatch run`
//! starts one for its one sandbox, `sandwatch watch` one for its cgroups, `sandwatch serve` one for
//! all of its sandboxes.
//!
//! ```text
//!   Collector::take_live_batches ──► Detector task ──► alerts file (JSON lines)
//!   Collector::take_kernel_kills ──►  (detector.rs)   ──► `alerts`/`alert_deliveries` tables
//!   RuleSources (reload on change) ─►                 ──► hooks (durable outbox)
//!                                                     ──► ActionTarget: kill/freeze by sandbox id
//!                                                     ──► ActionEvent channel, Notice callback
//! ```
//!
//! # Modules, and who touches what
//! - [`sources`]: which rules files, loading them into an [`Engine`](sandwatch_rules::Engine),
//!   telling when they changed. Pure functions of the files; anyone may call them.
//! - [`detector`]: the task. It alone owns the engine, the baseline scorer and the alert
//!   outputs once started; its owner talks to it only through the [`Detector`] handle (reload
//!   requests, the kernel plan, `finish`) and hears from it through the channel and callback it
//!   gave in [`DetectorConfig`].
//! - [`alert`]: pure conversions from a match or an anomaly to an alert (also used by
//!   `sandwatch rules test`, which replays without a detector).
//! - [`kernel`]: what of the kill rules the kernel can decide, and placing those orders on one
//!   sandbox's cgroup; the owner calls [`place_kernel_kills`] once per sandbox it watches, the
//!   detector resolves the kills they make through the shared [`KernelRules`].
//! - [`actions`]: kill and freeze by sandbox id ([`ActionTarget`]), and the events that report
//!   them.
//! - `outputs` (private): the alerts file, the alert tables' own Parquet sink, the hooks
//!   dispatcher; only the detector task writes them.
//! - [`baseline`]: finding a profile's latest model.
//!
//! Nothing here prints: what a person should read comes back as values ([`DetectSummary`],
//! [`Notice`], [`ActionEvent`], [`Detector::hooks_recovery`]) for the caller to show. Logs go
//! through `tracing`.

pub mod actions;
pub mod alert;
pub mod baseline;
pub mod detector;
pub mod kernel;
mod outputs;
pub mod sources;

use std::{path::PathBuf, time::Duration};

pub use actions::{ActionError, ActionEvent, ActionKind, ActionTarget, wait_for_kill_reason};
pub use alert::{alert_record, anomaly_alert, hook_priority};
pub use detector::{
    DetectObserver, DetectSummary, Detector, DetectorConfig, Notice, ReloadCause,
};
pub use kernel::{KernelKillPlan, KernelKills, KernelPlacement, KernelRules, place_kernel_kills};
pub use outputs::{AlertOutputs, HookOutputs};
pub use sources::{BUILTIN, RuleSources, RulesError, SourcesStamp};

/// How long a row may wait before the rules see it: the bound on detection latency that the
/// collector's batching adds (`CollectorConfig::live`).
pub const LIVE_LATENCY: Duration = Duration::from_millis(1);

/// Why the detector could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("cannot open the alerts file {}", path.display())]
    OpenAlertsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the alerts file")]
    WriteAlertsFile(#[source] std::io::Error),
    /// The hooks file does not load (its error names file, line and column).
    #[error(transparent)]
    HooksConfig(#[from] sandwatch_hooks::ConfigError),
    #[error("cannot start the alert hooks (outbox {})", state.display())]
    StartHooks {
        state: PathBuf,
        #[source]
        source: sandwatch_hooks::HooksError,
    },
    #[error("the hooks dispatcher failed")]
    HooksTask(#[source] tokio::task::JoinError),
    #[error("cannot write alerts into {}", data.display())]
    OpenAlertLog {
        data: PathBuf,
        #[source]
        source: sandwatch_collector::CollectorError,
    },
    #[error("building an alerts batch")]
    BuildAlertBatch(#[source] arrow_schema::ArrowError),
    #[error("writing the alerts table")]
    WriteAlertLog(#[source] sandwatch_collector::CollectorError),
    #[error("closing the alerts table")]
    CloseAlertLog(#[source] sandwatch_collector::CollectorError),
    #[error("cannot watch SIGHUP")]
    Signal(#[source] std::io::Error),
    #[error("the detector task failed")]
    Task(#[source] tokio::task::JoinError),
    /// Placing kill orders in the kernel.
    #[error(transparent)]
    KillOrders(sandwatch_collector::CollectorError),
    /// Reading the baseline models.
    #[error(transparent)]
    Baseline(#[from] sandwatch_analytics::AnalyticsError),
}

/// `error` and its causes as one line, `outer: cause: cause` (what `anyhow`'s `{:#}` prints):
/// the text of an action's `detail`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
