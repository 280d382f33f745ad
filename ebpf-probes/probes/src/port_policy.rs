//! Enforcement, not observation: a sandbox policy's `network.blocked_ports`.
//!
//! Four `cgroup_sock_addr` programs (connect4, connect6, sendmsg4, sendmsg6), attached once by
//! the collector to `<unified>/sandwatch`, the parent of every sandbox cgroup, so that they run
//! for sockets of sandboxes only and cost nothing elsewhere. They refuse (return 0: the syscall
//! fails with EPERM) a TCP or UDP connect, and a UDP sendmsg/sendto naming a destination, whose
//! destination port is blocked for the calling process's cgroup or for one of its ancestors at a
//! level in `settings::BLOCK_LEVELS`; anything else is allowed (return 1). A cgroup with no entry
//! in `BLOCKED_PORTS` is never refused anything, so programs attached by others to the same
//! cgroups keep their own verdicts (the kernel refuses when any program refuses).
//!
//! Whose policy: the *calling task's* cgroup (`bpf_get_current_cgroup_id`), like the observing
//! probes, rather than the socket's; a process in a child cgroup of a sandbox's cgroup is matched
//! through its ancestor at the sandbox's level, as `watched()` does for watch levels.

use aya_ebpf::{
    helpers::generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id},
    macros::{cgroup_sock_addr, map},
    maps::HashMap,
    programs::SockAddrContext,
};
use sandwatch_probes_abi::{BLOCKED_PORTS_CAP, BlockedPortKey, settings};

use crate::probes::SETTINGS;

/// (cgroup, destination port) pairs to refuse. Written by the collector.
#[map]
static BLOCKED_PORTS: HashMap<BlockedPortKey, u8> = HashMap::with_max_entries(BLOCKED_PORTS_CAP, 0);

/// Deepest cgroup level checked (the collector refuses deeper ones).
const MAX_BLOCK_LEVEL: u32 = 32;

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[inline(always)]
fn hit(cgroup_id: u64, port: u16) -> bool {
    // SAFETY: a lookup; the value is not kept.
    unsafe { BLOCKED_PORTS.get(&BlockedPortKey::new(cgroup_id, port)) }.is_some()
}

/// Whether `port` is blocked for the current task: for its own cgroup, or for an ancestor at one
/// of the levels where a cgroup with blocked ports sits.
#[inline(always)]
fn blocked(port: u16) -> bool {
    let leaf = unsafe { bpf_get_current_cgroup_id() };
    if hit(leaf, port) {
        return true;
    }
    let levels = SETTINGS.get(settings::BLOCK_LEVELS).copied().unwrap_or(0);
    if levels == 0 {
        return false;
    }
    let mut level = 1u32;
    while level < MAX_BLOCK_LEVEL {
        if levels & (1u64 << level) != 0 {
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
            if id != 0 && id != leaf && hit(id, port) {
                return true;
            }
        }
        level += 1;
    }
    false
}

/// The verdict for the destination in the context. `user_port` holds the port in network byte
/// order in its low 16 bits (the kernel's 4-byte field, as the caller's sockaddr had it).
#[inline(always)]
fn verdict(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the context the kernel passed; user_port is readable in all four attach types.
    let user_port = unsafe { (*ctx.sock_addr).user_port };
    let port = u16::from_be(user_port as u16);
    if blocked(port) { DENY } else { ALLOW }
}

#[cgroup_sock_addr(connect4)]
pub fn block_connect4(ctx: SockAddrContext) -> i32 {
    verdict(&ctx)
}

#[cgroup_sock_addr(connect6)]
pub fn block_connect6(ctx: SockAddrContext) -> i32 {
    verdict(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn block_sendmsg4(ctx: SockAddrContext) -> i32 {
    verdict(&ctx)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn block_sendmsg6(ctx: SockAddrContext) -> i32 {
    verdict(&ctx)
}
