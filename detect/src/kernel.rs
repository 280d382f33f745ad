//! Kill rules the kernel decides: what of them it can decide ([`KernelKillPlan`]), placing those
//! orders on one sandbox's cgroup ([`place_kernel_kills`]), and turning the kills they make back
//! into the rule's alert (for the detector).
//!
//! The orders carry a rule id, not the rule: [`KernelRules`] is the table of ids, shared (a cheap
//! clone) between whoever places orders and the detector that receives the kills
//! ([`KernelKills`]). Ids are given when a plan is made and never reused or changed in the
//! process, so orders placed under the rules loaded at start keep naming the rule they were
//! placed for after a reload changed or removed it (the orders stay until the sandbox's cgroup
//! is unwatched).
//!
//! Who calls what: the owner makes a plan from the engine it starts the detector with (or takes
//! the detector's current one, [`Detector::kernel_plan`](crate::Detector::kernel_plan)) and calls
//! [`place_kernel_kills`] once for each sandbox it starts watching, before the job runs; it
//! clears them with `Collector::clear_kill_orders` when the sandbox ends. Only the detector reads
//! the kills.

use std::sync::{Arc, Mutex};

use sandwatch_collector::{
    Collector, KernelKill, KernelKillOrder, KernelPathOrder, KillCause, PathMatch, WatchTarget,
};
use sandwatch_hooks::ActionTaken;
use sandwatch_rules::{
    Engine, Match, Rule,
    kernel_orders::{KernelOrders, PathTest},
};
use sandwatch_schema::Table;
use tokio::sync::mpsc;

use crate::DetectError;

/// Rule ids of kill orders → the rule, for the life of the process. Clones share one table.
#[derive(Clone, Debug, Default)]
pub struct KernelRules(Arc<Mutex<Vec<Rule>>>);

impl KernelRules {
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `rule`: the one it already has when the same rule (name, description,
    /// condition, output, actions) was registered before, else a new one.
    pub fn register(&self, rule: &Rule) -> u32 {
        let mut rules = self.0.lock().expect("kernel rules lock");
        let same = |r: &Rule| {
            r.name == rule.name
                && r.desc == rule.desc
                && r.condition == rule.condition
                && r.output == rule.output
                && r.actions == rule.actions
        };
        if let Some(i) = rules.iter().position(same) {
            return i as u32;
        }
        rules.push(rule.clone());
        (rules.len() - 1) as u32
    }

    /// The rule orders with this id were placed for.
    pub fn get(&self, id: u32) -> Option<Rule> {
        self.0
            .lock()
            .expect("kernel rules lock")
            .get(id as usize)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("kernel rules lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One kill rule's orders under its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedKill {
    pub id: u32,
    pub rule: String,
    pub orders: KernelOrders,
}

/// What the kernel can decide of an engine's kill rules (`Engine::kernel_kill_rules`), with the
/// ids their orders carry. Independent of the engine once made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelKillPlan {
    rules: Vec<PlannedKill>,
}

impl KernelKillPlan {
    /// The plan of `engine`'s rules, their ids registered in `ids`.
    pub fn new(engine: &Engine, ids: &KernelRules) -> Self {
        let rules = engine
            .kernel_kill_rules()
            .into_iter()
            .map(|k| {
                let rule = engine.rule(k.rule);
                PlannedKill {
                    id: ids.register(rule),
                    rule: rule.name.clone(),
                    orders: k.orders,
                }
            })
            .collect();
        Self { rules }
    }

    /// Whether no rule has anything for the kernel.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[PlannedKill] {
        &self.rules
    }
}

/// The kills kill orders made (`Collector::take_kernel_kills`) and the ids they carry: what the
/// detector needs to raise them.
pub struct KernelKills {
    pub kills: mpsc::UnboundedReceiver<KernelKill>,
    pub rules: KernelRules,
}

/// What of a plan the kernel did not take for one cgroup; user space kills on it when its row
/// arrives. Each is also logged (warn).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelPlacement {
    /// Syscalls with no entry tracepoint on this kernel, each with the rules that name it.
    pub unsupported_syscalls: Vec<(String, Vec<String>)>,
    /// Path orders the kernel does not decide (or not for all their syscalls): rule, pattern,
    /// why.
    pub paths_left: Vec<(String, String, String)>,
}

/// Places what the kernel can decide of the plan's kill rules as orders on `target`'s cgroup:
/// syscall orders kill at the entry of a syscall a rule names alone, path orders as a file
/// syscall on a matching path returns. Whatever the kernel does not take (no entry tracepoint
/// here, a pattern it cannot hold) stays with user space, which kills when it sees the row. Call
/// once per sandbox, after `Collector::watch` and before its job starts.
pub fn place_kernel_kills(
    collector: &Collector,
    target: &WatchTarget,
    plan: &KernelKillPlan,
) -> Result<KernelPlacement, DetectError> {
    let mut syscalls = Vec::new();
    let mut paths = Vec::new();
    let mut path_rules = Vec::new();
    for r in &plan.rules {
        syscalls.extend(r.orders.syscalls.iter().map(|s| KernelKillOrder {
            syscall: s.clone(),
            rule_id: r.id,
        }));
        for p in &r.orders.paths {
            paths.push(KernelPathOrder {
                path: match &p.test {
                    PathTest::Prefix(x) => PathMatch::Prefix(x.clone()),
                    PathTest::Exact(x) => PathMatch::Exact(x.clone()),
                    PathTest::InDirectory(x) => PathMatch::InDirectory(x.clone()),
                },
                syscalls: p.syscalls.clone(),
                rule_id: r.id,
            });
            path_rules.push(r.rule.as_str());
        }
        for why in &r.orders.undecided {
            tracing::debug!("rule {:?}: left to user space: {why}", r.rule);
        }
    }
    let mut placement = KernelPlacement::default();
    if !syscalls.is_empty() {
        let unsupported = collector
            .kill_on_syscalls(target.cgroup_id, target.level, &syscalls)
            .map_err(DetectError::KillOrders)?;
        for s in unsupported {
            let rules: Vec<String> = plan
                .rules
                .iter()
                .filter(|r| r.orders.syscalls.contains(&s))
                .map(|r| r.rule.clone())
                .collect();
            tracing::debug!(
                "no entry tracepoint for {s} here: rules {rules:?} kill from user space on it"
            );
            placement.unsupported_syscalls.push((s, rules));
        }
    }
    if !paths.is_empty() {
        let left = collector
            .kill_on_paths(target.cgroup_id, target.level, &paths)
            .map_err(DetectError::KillOrders)?;
        for l in left {
            let rule = path_rules[l.order];
            tracing::debug!(
                "rule {rule:?}: {:?} is not decided in the kernel ({}): user space kills on it",
                paths[l.order].path,
                l.reason
            );
            placement.paths_left.push((
                rule.to_owned(),
                format!("{:?}", paths[l.order].path),
                l.reason,
            ));
        }
    }
    Ok(placement)
}

/// The match a kernel kill stands for, and the kernel's own action (the process's kill): the
/// alert's output is the rule's `desc` and how the kernel killed. Its evidence is in the table the
/// syscall's own row is in (a path kill's has its time), so that replaying the audit log finds
/// the same alert.
pub(crate) fn kill_match(rule: &Rule, k: &KernelKill) -> (Match, ActionTaken) {
    let mut fields = vec![
        ("evt.type".into(), k.syscall.clone()),
        ("proc.name".into(), k.comm.clone()),
        ("proc.pid".into(), k.pid.to_string()),
    ];
    let (table, when, done) = match &k.cause {
        KillCause::Syscall => (
            Table::SyscallEvents,
            format!("at {} entry", k.syscall),
            format!("SIGKILL in the kernel before {} returned", k.syscall),
        ),
        KillCause::Path { path, opened } => {
            fields.push(("fd.name".into(), path.clone()));
            let which = if *opened { "the file it opened: " } else { "" };
            (
                Table::FileEvents,
                format!("as {} of {which}{path} returned", k.syscall),
                format!(
                    "SIGKILL in the kernel as {} of {which}{path} returned: the process never saw its result",
                    k.syscall
                ),
            )
        }
    };
    let m = Match {
        rule: usize::MAX,
        table,
        row: 0,
        time_ns: k.time_ns,
        sandbox_id: k.sandbox_id.clone(),
        pid: Some(k.pid),
        tid: Some(k.tid),
        event: Some(k.syscall.clone()),
        output: format!(
            "{} (killed in the kernel {when}: proc={} pid={} sandbox={})",
            rule.desc.trim(),
            k.comm,
            k.pid,
            k.sandbox_id.as_deref().unwrap_or("<NA>")
        ),
        fields,
    };
    let taken = ActionTaken {
        action: "kill".into(),
        at_ns: k.time_ns,
        ok: k.signal_error.is_none(),
        detail: Some(match k.signal_error {
            None => done,
            Some(e) => format!("the kernel could not signal the process (errno {e})"),
        }),
        latency_ms: Some(0.0),
    };
    (m, taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuleSources;

    #[test]
    fn the_builtin_plan_has_the_module_and_kernel_memory_rules_and_ids_are_stable() {
        let engine = RuleSources::builtin().engine().unwrap();
        let ids = KernelRules::new();
        let plan = KernelKillPlan::new(&engine, &ids);
        let names: Vec<&str> = plan.rules().iter().map(|r| r.rule.as_str()).collect();
        assert!(names.contains(&"Sandbox kernel memory access"), "{names:?}");
        let memory = plan
            .rules()
            .iter()
            .find(|r| r.rule == "Sandbox kernel memory access")
            .unwrap();
        assert!(!memory.orders.paths.is_empty());
        assert_eq!(ids.get(memory.id).unwrap().name, memory.rule);
        // The same rules again (a reload that changed nothing): the same ids, no new entries.
        let again = KernelKillPlan::new(&RuleSources::builtin().engine().unwrap(), &ids);
        assert_eq!(again, plan);
        assert_eq!(ids.len(), plan.rules().len());
    }
}
