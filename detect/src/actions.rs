//! Carrying out a rule's `kill` or `freeze` on a sandbox, by its id, and telling the owner.
//!
//! [`ActionTarget`] is where actions act: the runner's sandboxes under one cgroup root and runtime
//! directory, any number of them, each found by id (`sandbox::kill_by_id`, `freeze_by_id`). The
//! detector is its only caller while running; a detector without a target (`sandwatch watch`:
//! watched cgroups are not sandboxes) still records each action it could not take, as failed.
//! [`ActionEvent`]s go, as each action is taken, to the channel the owner gave the detector, so
//! a daemon learns which rule ended which sandbox before the sandbox's runner reports it.
//! [`wait_for_kill_reason`] is for the runner's side: the command's end seen before the
//! detector recorded why.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use sandwatch_runner::{
    CgroupRoot,
    sandbox::{self, CommandOutcome, EndReason, Sandbox, SandboxError},
};

/// Where rule actions act: the runner's sandboxes, by id.
#[derive(Clone, Debug)]
pub struct ActionTarget {
    pub root: CgroupRoot,
    /// The runners' runtime directory (`--runtime-dir`), where each sandbox has its directory.
    pub runtime_dir: PathBuf,
}

/// Why an action could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no sandbox to act on (watched cgroups are not sandboxes)")]
    NoTarget,
    #[error("the event belongs to no sandbox")]
    NoSandbox,
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// What a rule asked to be done to a sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// Every process of the sandbox at once (`cgroup.kill`); its end reason becomes `rule`.
    Kill,
    /// Every process stopped (`cgroup.freeze`) until thawed.
    Freeze,
}

impl ActionKind {
    /// `kill` or `freeze`, as the alert's `actions_taken` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Kill => "kill",
            ActionKind::Freeze => "freeze",
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One action taken (or attempted) for a rule, as it happens: the same facts as one entry of
/// the alert's `actions_taken`, with the sandbox and rule it concerns.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionEvent {
    /// The sandbox the event that fired came from (None: a row of no sandbox; nothing was done).
    pub sandbox_id: Option<String>,
    pub rule: String,
    pub action: ActionKind,
    /// The kernel's own kill of the offending process (a kill order), rather than the
    /// detector's action on the whole sandbox.
    pub in_kernel: bool,
    pub ok: bool,
    /// What was done, or why it failed.
    pub detail: Option<String>,
    /// When the event that fired happened, and when the action was taken (ns since the epoch).
    pub event_time_ns: i64,
    pub at_ns: i64,
    /// The alert that records it (its `alert_id` in the `alerts` table).
    pub alert_id: String,
}

impl ActionTarget {
    pub fn new(root: CgroupRoot, runtime_dir: impl Into<PathBuf>) -> Self {
        Self {
            root,
            runtime_dir: runtime_dir.into(),
        }
    }

    /// Kills every process of sandbox `id`; its runner reports reason `rule`.
    pub fn kill(&self, id: &str) -> Result<(), ActionError> {
        sandbox::kill_by_id(&self.root, &self.runtime_dir, id, EndReason::Rule)?;
        Ok(())
    }

    /// Freezes every process of sandbox `id`.
    pub fn freeze(&self, id: &str) -> Result<(), ActionError> {
        sandbox::freeze_by_id(&self.root, &self.runtime_dir, id, true)?;
        Ok(())
    }

    /// `kind` on sandbox `id`.
    pub fn act(&self, kind: ActionKind, id: &str) -> Result<(), ActionError> {
        match kind {
            ActionKind::Kill => self.kill(id),
            ActionKind::Freeze => self.freeze(id),
        }
    }
}

/// How long [`wait_for_kill_reason`] waits for the detector.
pub const KILL_REASON_WAIT: Duration = Duration::from_secs(1);

/// A command that died of SIGKILL in a sandbox with kernel kill orders: the kernel may have
/// killed it for a rule, before the detector (which acts on the kill record a moment later) said
/// so. The record was written before the process died; this gives the detector a bounded moment
/// ([`KILL_REASON_WAIT`]) to kill the sandbox and record why, and returns the outcome with that
/// reason, or unchanged.
pub async fn wait_for_kill_reason(sandbox: &Sandbox, mut o: CommandOutcome) -> CommandOutcome {
    let deadline = Instant::now() + KILL_REASON_WAIT;
    while Instant::now() < deadline {
        if let Some(reason) = sandbox.kill_reason() {
            o.reason = reason;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    o
}
