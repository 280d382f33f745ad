//! The warm pool: sandboxes made ahead of demand for the templates the operator names
//! (`--warm TEMPLATE=N`), so that a create is a hand-over, not a build.
//!
//! A pooled sandbox is complete (cgroups with limits, namespaces, root, an init waiting for
//! commands) but not watched: nothing of a job has run in it, and its audit record starts when
//! it is handed over (its `created` row says when it was made). A create takes one only when the
//! request's policy is exactly the one it was made with (same hash); a template file that
//! changed makes the pooled sandboxes of its old policy go. After each hand-over a background
//! task makes a replacement, one at a time per template and [`REFILL_DELAY`] later (the sandbox
//! handed over is about to start its first command), so the pool never competes with creates for
//! more than one sandbox's work.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use sandwatch_runner::{
    CgroupRoot,
    policy::SandboxPolicy,
    sandbox::{Sandbox, SandboxOptions, policy_hash},
};
use tokio::sync::Notify;

/// How long after a hand-over the pool starts making its replacement.
pub const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// A sandbox made ahead, with when it was made.
pub struct Pooled {
    pub sandbox: Sandbox,
    pub made_at: SystemTime,
}

struct Slot {
    want: usize,
    ready: VecDeque<Pooled>,
    refilling: bool,
}

/// How a pooled sandbox is made: the daemon's id and directory conventions.
pub trait SandboxMaker: Send + Sync + 'static {
    fn options(&self, policy: SandboxPolicy) -> SandboxOptions;
    fn root(&self) -> &CgroupRoot;
}

pub struct WarmPool {
    slots: Mutex<HashMap<String, Slot>>,
    changed: Notify,
}

impl WarmPool {
    /// A pool holding `want` ready sandboxes for each template.
    pub fn new(wants: &[(String, usize)]) -> Self {
        Self {
            slots: Mutex::new(
                wants
                    .iter()
                    .map(|(t, n)| {
                        (
                            t.clone(),
                            Slot {
                                want: *n,
                                ready: VecDeque::new(),
                                refilling: false,
                            },
                        )
                    })
                    .collect(),
            ),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ready sandbox of `template` made under exactly `policy`, if the pool has one.
    pub fn take(&self, template: &str, policy: &SandboxPolicy) -> Option<Pooled> {
        let hash = policy_hash(policy);
        let mut slots = self.lock();
        let slot = slots.get_mut(template)?;
        // Sandboxes of an older version of the template are of no use any more.
        let stale: Vec<Pooled> = {
            let (keep, stale): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut slot.ready)
                .into_iter()
                .partition(|p| p.sandbox.policy_hash() == hash);
            slot.ready = keep;
            stale.into()
        };
        let got = slot.ready.pop_front();
        drop(slots);
        if !stale.is_empty() {
            tokio::spawn(destroy_all(stale));
        }
        self.changed.notify_one();
        got
    }

    /// How many sandboxes are ready, per template.
    pub fn ready(&self) -> Vec<(String, usize)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .map(|(t, s)| (t.clone(), s.ready.len()))
            .collect();
        v.sort();
        v
    }

    /// Keeps every template's pool full until `stop` is notified; `policy_of` resolves a template
    /// at the time each sandbox is made.
    pub async fn keep_full(
        self: Arc<Self>,
        maker: Arc<dyn SandboxMaker>,
        policy_of: impl Fn(&str) -> Option<SandboxPolicy> + Send + Sync + 'static,
        stop: Arc<Notify>,
    ) {
        loop {
            let todo: Vec<String> = {
                let mut slots = self.lock();
                slots
                    .iter_mut()
                    .filter(|(_, s)| s.ready.len() < s.want && !s.refilling)
                    .map(|(t, s)| {
                        s.refilling = true;
                        t.clone()
                    })
                    .collect()
            };
            for template in todo {
                let made = match policy_of(&template) {
                    Some(policy) => {
                        let opts = maker.options(policy);
                        match Sandbox::create(maker.root(), opts).await {
                            Ok(sandbox) => Some(Pooled {
                                sandbox,
                                made_at: SystemTime::now(),
                            }),
                            Err(e) => {
                                tracing::warn!("warm pool: a sandbox of template {template} could not be made: {e}");
                                None
                            }
                        }
                    }
                    None => None,
                };
                let failed = made.is_none();
                {
                    let mut slots = self.lock();
                    if let Some(s) = slots.get_mut(&template) {
                        s.refilling = false;
                        if let Some(p) = made {
                            s.ready.push_back(p);
                        }
                    }
                }
                if failed {
                    // Do not spin on a template that cannot be made; try again in a while.
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                        () = stop.notified() => return,
                    }
                }
            }
            let full = self
                .lock()
                .values()
                .all(|s| s.ready.len() >= s.want);
            if full {
                tokio::select! {
                    () = self.changed.notified() => {}
                    () = stop.notified() => return,
                }
                // A hand-over is followed at once by that sandbox's first command: making the
                // replacement right then would take the CPU from it (two cores here). Refills
                // wait a moment; a burst that empties the pool makes its own sandboxes anyway.
                tokio::select! {
                    () = tokio::time::sleep(REFILL_DELAY) => {}
                    () = stop.notified() => return,
                }
            } else {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Destroys every pooled sandbox (at shutdown).
    pub async fn drain(&self) {
        let all: Vec<Pooled> = self
            .lock()
            .values_mut()
            .flat_map(|s| {
                s.want = 0;
                std::mem::take(&mut s.ready)
            })
            .collect();
        destroy_all(all).await;
    }
}

async fn destroy_all(pooled: Vec<Pooled>) {
    for p in pooled {
        let id = p.sandbox.id().to_owned();
        if let Err(e) = p.sandbox.destroy().await {
            tracing::warn!("warm pool: destroying unused sandbox {id}: {e}");
        }
    }
}
