//! Delivers sandwatch's alerts to on-call: a generic webhook (JSON, optionally HMAC-signed),
//! Slack incoming webhooks, PagerDuty Events API v2 and Alertmanager API v2.
//!
//! An alert handed to [`DispatcherHandle::send`] is first owed durably in an outbox on disk
//! (`outbox`), then delivered by one task per hook (`dispatch`) with the hook's filters, grouping
//! window, rate limit, timeout and retries (`config`), in the hook's format (`format`). A process
//! killed mid-delivery resends after restart, with the same dedup key: at least once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sandwatch_hooks::HooksError> {
//! use sandwatch_hooks::{Alert, Dispatcher, HooksConfig, Priority};
//! let config = HooksConfig::load("/etc/sandwatch/hooks.yaml")?;
//! let (records_tx, mut records) = tokio::sync::mpsc::unbounded_channel();
//! let (hooks, done) = Dispatcher::new(config, "/var/lib/sandwatch")
//!     .with_records(records_tx)
//!     .spawn()?;
//! let alert = Alert::new(0, "host", "Sandbox read of private key", Priority::Warning,
//!     Some("sb-1".into()), "private key read", vec![]);
//! hooks.send(alert).await?;
//! hooks.shutdown(std::time::Duration::from_secs(5));
//! let summary = done.await.expect("dispatcher task");
//! # let _ = (summary, records.recv().await);
//! # Ok(()) }
//! ```

pub mod alert;
pub mod config;
pub mod dispatch;
pub mod format;
pub mod outbox;

pub use alert::{ActionTaken, Alert, AlertRowJson, EventRef, Priority, UnknownPriority};
pub use config::{
    ConfigError, HookConfig, HookKind, HooksConfig, OutboxLimits, RateLimit, RetryPolicy,
};
pub use dispatch::{
    DeliveryRecord, DispatchSummary, Dispatcher, DispatcherHandle, RecoveryReport, Routed,
};
pub use outbox::{Outbox, OutboxError, OutboxStatus};
pub use sandwatch_schema::DeliveryState;

/// Why the dispatcher could not start or take an alert.
#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("hooks: HTTP client: {0}")]
    Http(String),
    #[error("hooks: the dispatcher is shutting down and takes no more alerts")]
    Stopped,
    #[error("hooks: {0}")]
    Internal(String),
}
