//! The host's one set of probes, shared by every sandbox the daemon runs: the collector (loaded
//! and attached once, at start) and what starting or stopping to watch one sandbox means for it.
//!
//! Watching a sandbox is map updates only: its cgroup into the watch map, its blocked ports
//! (the policy's, and in host-network mode the daemon's own ports) and the kernel kill orders of
//! the rules loaded at start, all keyed by its cgroup. No program is loaded or attached after
//! start. Only the daemon calls [`Host::watch`] and [`Host::unwatch`].

use std::sync::Mutex;

use std::sync::Arc;

use sandwatch_collector::{Collector, CollectorError, SandboxRecorder, Summary, WatchTarget};
use sandwatch_detect::KernelKillPlan;
use sandwatch_runner::{policy::NetworkMode, sandbox::Sandbox};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("the collector has stopped")]
    Stopped,
    #[error("watching sandbox {id}: {source}")]
    Watch {
        id: String,
        #[source]
        source: Box<CollectorError>,
    },
    #[error("placing the kernel kill orders of sandbox {id}: {source}")]
    Orders {
        id: String,
        #[source]
        source: Box<sandwatch_detect::DetectError>,
    },
}

/// The probes and what every sandbox gets from them.
pub struct Host {
    collector: Mutex<Option<Collector>>,
    recorder: SandboxRecorder,
    /// What the kernel can decide of the kill rules running now (a rules reload changes it),
    /// placed on every sandbox when it is watched. None: no rules, or no kernel kills.
    plans: Option<watch::Receiver<Arc<KernelKillPlan>>>,
    /// The daemon's own TCP ports: a sandbox on the host's network may not connect to them.
    own_ports: Vec<u16>,
    /// Whether what the kernel leaves to user space was reported (once, not per sandbox).
    reported_left: std::sync::atomic::AtomicBool,
}

impl Host {
    pub fn new(
        collector: Collector,
        plans: Option<watch::Receiver<Arc<KernelKillPlan>>>,
        own_ports: Vec<u16>,
    ) -> Self {
        Self {
            recorder: collector.sandbox_recorder(),
            collector: Mutex::new(Some(collector)),
            plans,
            own_ports,
            reported_left: Default::default(),
        }
    }

    pub fn recorder(&self) -> SandboxRecorder {
        self.recorder.clone()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Collector) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let guard = self.collector.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.as_ref().ok_or(HostError::Stopped)?)
    }

    /// Starts recording a sandbox and puts its kernel-side policy in place, before any command of
    /// it runs.
    pub fn watch(&self, sandbox: &Sandbox) -> Result<WatchTarget, HostError> {
        let target = WatchTarget {
            cgroup_id: sandbox.cgroup().id,
            level: sandbox.cgroup().level,
            sandbox_id: sandbox.id().to_owned(),
        };
        let id = || sandbox.id().to_owned();
        let plan = self.plans.as_ref().map(|p| p.borrow().clone());
        let mut ports = sandbox.policy().blocked_ports();
        if sandbox.policy().network.mode == NetworkMode::Host {
            ports.extend(&self.own_ports);
            ports.sort_unstable();
            ports.dedup();
        }
        self.with(|c| {
            c.note_process(sandbox.init_pid().unsigned_abs());
            c.watch(&target)
                .and_then(|()| c.block_ports(target.cgroup_id, target.level, &ports))
                .map_err(|source| HostError::Watch {
                    id: id(),
                    source: Box::new(source),
                })?;
            if let Some(plan) = plan.filter(|p| !p.is_empty()) {
                let placement = sandwatch_detect::place_kernel_kills(c, &target, &plan)
                    .map_err(|source| HostError::Orders {
                        id: id(),
                        source: Box::new(source),
                    })?;
                if !placement.paths_left.is_empty()
                    && !self
                        .reported_left
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    for (rule, pattern, why) in &placement.paths_left {
                        tracing::warn!("rule {rule:?}: {pattern} is not decided in the kernel ({why}): user space kills on it");
                    }
                }
            }
            Ok(())
        })
        .inspect_err(|_| self.unwatch(&target))?;
        Ok(target)
    }

    /// Stops recording a sandbox and lifts its orders. Failures are logged: the sandbox is gone,
    /// and what is left in the maps is keyed by a cgroup id the kernel never reuses.
    pub fn unwatch(&self, target: &WatchTarget) {
        let r = self.with(|c| {
            let results = [
                c.unblock_ports(target.cgroup_id),
                c.clear_kill_orders(target.cgroup_id),
                c.unwatch(target),
            ];
            for r in results {
                if let Err(e) = r {
                    tracing::warn!(sandbox = %target.sandbox_id, "unwatch: {e}");
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            tracing::debug!(sandbox = %target.sandbox_id, "unwatch: {e}");
        }
    }

    /// Flushes and stops the collector: the last rows are on disk when this returns.
    pub async fn shutdown(&self) -> Result<Option<Summary>, CollectorError> {
        let collector = self
            .collector
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match collector {
            Some(c) => c.shutdown().await.map(Some),
            None => Ok(None),
        }
    }
}
