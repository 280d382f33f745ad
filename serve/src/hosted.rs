//! One sandbox the daemon hosts: the runner's sandbox, what E2B's API knows about it (template,
//! metadata, owner, deadline, state, envd token), its commands and its recent metrics.
//!
//! Only [`crate::daemon`] changes a hosted sandbox's life (pause, resume, deadline, end); the API
//! modules read it and start commands in it.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use sandwatch_collector::{SandboxLog, WatchTarget};
use sandwatch_runner::{
    metrics::{MetricsSample, MetricsSampler},
    policy::SandboxPolicy,
    sandbox::Sandbox,
};
use tokio::sync::Notify;

use crate::{auth::KeyId, processes::ProcessTable};

/// Metrics samples kept per sandbox for `GET /sandboxes/{id}/metrics` (an hour at 1 s); the audit
/// log's `sandbox_metrics` table has them all.
pub const KEPT_SAMPLES: usize = 3600;

/// Where a hosted sandbox is in its life, as E2B's API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
    /// Being ended: no longer listed, no longer answering.
    Ending,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused => "paused",
            State::Ending => "ending",
        }
    }
}

pub struct Life {
    pub state: State,
    /// When the sandbox expires (E2B's `endAt`). A paused sandbox's clock is stopped: on resume
    /// it gets the timeout the resume asks for.
    pub end_at: SystemTime,
    /// When it was paused, for `--paused-ttl`.
    pub paused_at: Option<SystemTime>,
}

pub struct Hosted {
    pub id: String,
    pub template_id: String,
    pub owner: KeyId,
    pub metadata: BTreeMap<String, String>,
    /// The create request's `envVars`: every command's environment, under the request's own.
    pub env_vars: Vec<(String, String)>,
    pub started_at: SystemTime,
    pub envd_token: String,
    pub sandbox: Arc<Sandbox>,
    pub target: WatchTarget,
    pub log: SandboxLog,
    pub processes: Arc<ProcessTable>,
    pub(crate) life: Mutex<Life>,
    /// Wakes the sandbox's warden when its deadline or state changed.
    pub(crate) changed: Notify,
    pub(crate) samples: Mutex<VecDeque<MetricsSample>>,
    /// Made on the first sample (its first CPU reading starts the first interval).
    pub(crate) sampler: Mutex<Option<MetricsSampler>>,
}

impl Hosted {
    pub fn policy(&self) -> &SandboxPolicy {
        self.sandbox.policy()
    }

    pub fn state(&self) -> State {
        self.life().state
    }

    pub fn end_at(&self) -> SystemTime {
        self.life().end_at
    }

    pub(crate) fn life(&self) -> std::sync::MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Samples taken between `from` and `to` (inclusive), oldest first.
    pub fn samples(&self, from: Option<SystemTime>, to: Option<SystemTime>) -> Vec<MetricsSample> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| from.is_none_or(|f| s.time >= f) && to.is_none_or(|t| s.time <= t))
            .cloned()
            .collect()
    }

    /// Takes a metrics sample now and keeps it (blocking: reads cgroup and /proc files).
    pub(crate) fn sample(&self) -> Result<MetricsSample, sandwatch_runner::metrics::MetricsError> {
        let sample = {
            let mut sampler = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
            sampler
                .get_or_insert_with(|| MetricsSampler::new(self.sandbox.metrics_source()))
                .sample()?
        };
        self.keep_sample(sample);
        Ok(sample)
    }

    pub(crate) fn keep_sample(&self, s: MetricsSample) {
        let mut q = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == KEPT_SAMPLES {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// The CPU cores the policy gives (E2B's `cpuCount`): its quota, rounded up, at least 1.
    pub fn cpu_count(&self) -> u32 {
        self.policy()
            .cpu
            .limit
            .map_or_else(host_cpus, |c| (c.ceil() as u32).max(1))
    }

    /// Memory limit in MiB (E2B's `memoryMB`); the host's memory when the policy sets none.
    pub fn memory_mb(&self) -> u64 {
        self.policy()
            .memory
            .limit
            .map_or_else(host_memory_bytes, |b| b.0)
            >> 20
    }

    /// The size of the writable tmpfs areas in MiB (E2B's `diskSizeMB`).
    pub fn disk_mb(&self) -> u64 {
        self.policy().filesystem.tmpfs_size.map_or(0, |b| b.0 >> 20)
    }

    /// How long until the sandbox expires (zero when past).
    pub fn remaining(&self) -> Duration {
        self.end_at()
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }
}

pub fn host_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

pub fn host_memory_bytes() -> u64 {
    // SAFETY: sysconf reads system constants.
    let (pages, size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    (pages.max(0) as u64).saturating_mul(size.max(0) as u64)
}
