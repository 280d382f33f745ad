//! Enforcement at syscall entry: kill orders, the rules decided in the kernel.
//!
//! One `syscalls:sys_enter_*` tracepoint program, attached by the collector only to the syscalls
//! some order names (and detached when none does), so that no other syscall runs it and nothing
//! runs while there are no orders. For a task whose cgroup, or an ancestor at a level in
//! `settings::KILL_LEVELS`, has an order for the syscall it is entering, it sends SIGKILL to the
//! task's process (`bpf_send_signal`: with interrupts on, as at syscall entry, the signal is
//! queued before the helper returns, so the process never runs another user instruction) and
//! writes a [`KillRecord`] that names the rule.
//!
//! The syscall itself still runs (a tracepoint cannot cancel it) and returns into the pending
//! SIGKILL: the exit probes still record it, and the process dies before user space sees the
//! result. A blocking syscall is cut short by the pending signal.

use aya_ebpf::{
    EbpfContext as _,
    helpers::generated::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_send_signal,
    },
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use sandwatch_probes_abi::{KILL_ORDERS_CAP, KillOrderKey, KillRecord, kill_cause, kind, settings};

use crate::probes::{BPF_RB_FORCE_WAKEUP, SETTINGS, Watch, fill_header, reserve, syscall_args};

/// (cgroup, syscall number) → rule id. Written by the collector.
#[map]
static KILL_ORDERS: HashMap<KillOrderKey, u32> = HashMap::with_max_entries(KILL_ORDERS_CAP, 0);

/// Deepest cgroup level checked (the collector refuses deeper ones); path orders' too.
const MAX_KILL_LEVEL: u32 = 32;

pub(crate) const SIGKILL: u32 = 9;

#[inline(always)]
fn order(cgroup_id: u64, syscall: u32) -> Option<u32> {
    // SAFETY: a lookup; the value is copied out.
    unsafe { KILL_ORDERS.get(&KillOrderKey::new(cgroup_id, syscall)) }.copied()
}

/// The first cgroup among the current task's ancestors at the levels in `levels` (a
/// `settings` bitmask) for which `lookup` finds something, with what it found.
///
/// Orders are keyed by cgroups at their own level, so the task's ancestor at each ordered level
/// is the only candidate there (the task's own cgroup when it sits at that level): one helper
/// call and one lookup per ordered level, none for a task above them (the helper returns 0 past
/// the task's depth).
#[inline(always)]
pub(crate) fn ordered_ancestor<T>(
    levels: u64,
    lookup: impl Fn(u64) -> Option<T>,
) -> Option<(u64, T)> {
    let mut level = 1u32;
    while level < MAX_KILL_LEVEL && levels >> level != 0 {
        if levels & (1u64 << level) != 0 {
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
            if id == 0 {
                // The task's cgroup is shallower than this level, and than every deeper one.
                return None;
            }
            if let Some(found) = lookup(id) {
                return Some((id, found));
            }
        }
        level += 1;
    }
    None
}

/// The order the current task is under for `syscall`: the cgroup it was given for and the rule.
/// Every ordered syscall on the host pays this, ordered cgroup or not.
#[inline(always)]
fn ordered(syscall: u32) -> Option<(u64, u32)> {
    let levels = SETTINGS.get(settings::KILL_LEVELS).copied().unwrap_or(0);
    ordered_ancestor(levels, |id| order(id, syscall))
}

#[tracepoint]
pub fn kill_on_syscall(ctx: TracePointContext) -> u32 {
    // Every sys_enter record starts with the common fields and `__syscall_nr` at offset 8: a
    // direct read within the smallest record, so the program attaches to any syscall.
    let syscall = unsafe { *(ctx.as_ptr().cast::<u8>().add(8).cast::<i32>()) };
    let Some((order_cgroup, rule)) = ordered(syscall as u32) else {
        return 0;
    };
    // SAFETY: a helper call; it signals the current task's thread group.
    let sent = unsafe { bpf_send_signal(SIGKILL) } as i32;
    let Some(mut entry) = reserve::<KillRecord>(kind::KILL) else {
        return 0;
    };
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    let watch = Watch {
        id: order_cgroup,
        slot: 0,
        leaf: unsafe { bpf_get_current_cgroup_id() },
    };
    fill_header(&mut rec.header, kind::KILL, syscall as i64, watch, 0);
    rec.rule_id = rule;
    rec.signal_result = sent;
    rec.args = syscall_args();
    rec.cause = kill_cause::SYSCALL;
    rec._pad = 0;
    rec.path[0] = 0;
    // Rare and urgent: wake the reader now rather than at its next poll.
    entry.submit(BPF_RB_FORCE_WAKEUP);
    0
}
