//! Enforcement at file syscall exit: path kill orders, the rules on a file's path decided in the
//! kernel.
//!
//! The file exit probes (`sys_exit_file`, `sys_exit_file2`), which run for watched tasks anyway,
//! call [`check`] after writing their record. A task pays for more than one settings read only
//! when a cgroup with path orders sits at one of the levels in `settings::PATH_KILL_LEVELS`, and
//! for the decision only when it is in (or below) such a cgroup and makes a syscall one of its
//! orders names: [`check`] then hands the syscall over through this CPU's scratch and
//! tail-calls [`kill_on_path`]. A program of its own because
//! the verifier follows every path through a program: the walk and the lookups, inlined into
//! the exit probes after their per-syscall argument decoding, made more states than it accepts.
//!
//! What is decided: the path as the process passed it (the string the record carries, and the
//! one user space's rules read as `fd.name`), and, after an open that returned a descriptor, the
//! path of the file that descriptor names, rebuilt from the kernel's own dentries and mounts up
//! to the task's root. The second catches what the string hides (a relative path, `..`, `//`, a
//! symlink, a string rewritten by another thread after the kernel read it) and reads no user
//! memory. Both are looked up in `KILL_PATHS`, an LPM trie keyed by (ordered cgroup, path bytes):
//! its longest-prefix match is `startswith`, and `=` is a pattern ending in the NUL.
//!
//! On a hit the task's process is sent SIGKILL (`bpf_send_signal`). At syscall exit the signal is
//! acted on as the task returns to user mode: the process never sees the result nor runs another
//! instruction. The syscall has had its effect (the file is open, the directory made): a
//! tracepoint cannot refuse it.

use core::{
    ffi::c_void,
    ptr::{read_volatile, write_volatile},
};

use aya_ebpf::{
    EbpfContext,
    helpers::generated::{
        bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_user_str, bpf_send_signal,
    },
    macros::{map, tracepoint},
    maps::{HashMap, LpmTrie, PerCpuArray, ProgramArray, lpm_trie::Key},
    programs::TracePointContext,
};
use sandwatch_probes_abi::{
    KILL_PATHS_CAP, KillRecord, OFFSET_UNKNOWN, PATH_KEY_CAP, PATH_KEY_DATA, PathOrder, SyscallSet,
    kill_cause, kind, nr, settings, syscall_in,
};

use crate::{
    kill_orders::{SIGKILL, ordered_ancestor},
    probes::{
        BPF_RB_FORCE_WAKEUP, Exit, Watch, dropped, fill_header, read_at, read_field, reserve,
        setting,
    },
};

/// (cgroup, path pattern) → which syscalls are killed for it, and the rule. Written by the
/// collector.
#[map]
static KILL_PATHS: LpmTrie<[u8; PATH_KEY_DATA], PathOrder> =
    LpmTrie::with_max_entries(KILL_PATHS_CAP, 0);

/// Cgroups with path orders → the syscalls any of their orders names: a task below none of
/// them, or making another syscall, is not looked up.
#[map]
static PATH_ORDERED: HashMap<u64, SyscallSet> = HashMap::with_max_entries(4096, 0);

/// Slot 0: [`kill_on_path`], put there by the collector at load.
#[map]
static PATH_KILL: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Bytes of the rebuilt path (NUL excluded): a longer one is not decided on.
const WALK_CAP: usize = 512;
/// A path component's longest name (NAME_MAX).
const NAME_MAX: usize = 255;
/// Dentries and mount crossings walked at most from the file up to the task's root: a deeper
/// file is decided on its given path only.
const MAX_WALK: u32 = 40;
/// Trie lookups per path: the longest matching pattern may not apply to this syscall (another
/// rule's, for other syscalls) or be a directory's whose entry this is not; the next shorter
/// one is then looked up, this many times at most.
const MAX_LOOKUPS: u32 = 8;
/// `PathScratch::last_slash` before it is computed.
const UNSCANNED: u64 = u64::MAX;

/// What the exit probe hands over, the lookup key, and the buffer the opened path is rebuilt in
/// (backwards from its end; the name slack after `WALK_CAP` lets the verifier see every write in
/// bounds). `pos` and `last_slash` are read and written through volatile accesses: kept in map
/// memory, whose contents the verifier does not track, the loops' iterations look alike to it
/// and it can prune them; in registers, each iteration's exact values made new states.
#[repr(C)]
pub(crate) struct PathScratch {
    key: Key<[u8; PATH_KEY_DATA]>,
    _pad: [u8; 4],
    order_cgroup: u64,
    leaf: u64,
    syscall: i64,
    ret: i64,
    /// The user pointer of the syscall's (first) path; 0: it has none.
    path: u64,
    /// The syscall record's timestamp: the kill record takes it, so both name one moment.
    at: u64,
    args: [u64; 6],
    pos: u64,
    last_slash: u64,
    walk: [u8; WALK_CAP + NAME_MAX + 1],
}

#[map]
static PATH_SCRATCH: PerCpuArray<PathScratch> = PerCpuArray::with_max_entries(1, 0);

/// Called by the file exit probes after their record (stamped `at`): when the current task's
/// cgroup (or an ancestor at a level in `settings::PATH_KILL_LEVELS`) has path orders, hands the
/// syscall to [`kill_on_path`]. `path` is the user pointer of the syscall's (first) path, 0 when
/// it has none. Does not return then.
#[inline(always)]
pub(crate) fn check<C: EbpfContext>(ctx: &C, exit: &Exit, path: u64, at: u64) {
    let levels = setting(settings::PATH_KILL_LEVELS);
    if levels == 0 {
        return;
    }
    // The outermost ordered cgroup with an order for this syscall decides (a sandbox's cgroup;
    // nested ordered cgroups are not merged).
    let Some((order_cgroup, ())) = ordered_ancestor(levels, |id| {
        // SAFETY: a lookup; the value is read in place.
        let set = unsafe { PATH_ORDERED.get(&id) }?;
        syscall_in(set, exit.syscall).then_some(())
    }) else {
        return;
    };
    let Some(scratch) = PATH_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch; a tracepoint program is not preempted on it.
    let s = unsafe { &mut *scratch };
    s.order_cgroup = order_cgroup;
    s.leaf = exit.watch.leaf;
    s.syscall = exit.syscall;
    s.ret = exit.ret;
    s.path = path;
    s.at = at;
    s.args = exit.args;
    // SAFETY: a tail call with this program's own context.
    unsafe { PATH_KILL.tail_call(ctx, 0) };
    // Reached only when the tail call failed: a decision not made is counted, never silent.
    dropped(kind::KILL);
}

/// Decides the path orders of the syscall [`check`] handed over, and kills on a hit.
#[tracepoint]
pub fn kill_on_path(_ctx: TracePointContext) -> u32 {
    if let Some(scratch) = PATH_SCRATCH.get_ptr_mut(0) {
        // SAFETY: this CPU's scratch, filled by `check` just before the tail call.
        decide(unsafe { &mut *scratch });
    }
    0
}

#[inline(always)]
fn decide(s: &mut PathScratch) -> Option<()> {
    s.key.data[..8].copy_from_slice(&s.order_cgroup.to_ne_bytes());
    let syscall = s.syscall;
    let mut found = None;
    if s.path != 0 {
        let n = unsafe {
            bpf_probe_read_user_str(
                s.key.data.as_mut_ptr().add(8).cast::<c_void>(),
                PATH_KEY_CAP as u32,
                s.path as *const c_void,
            )
        };
        if n > 0 {
            found = lookup(s, n as usize, syscall).map(|r| (r, kill_cause::GIVEN_PATH));
        }
    }
    if found.is_none()
        && s.ret >= 0
        && matches!(syscall, nr::OPEN | nr::OPENAT | nr::OPENAT2 | nr::CREAT)
        && let Some(n) = opened_path(s, s.ret as u64)
    {
        found = lookup(s, n, syscall).map(|r| (r, kill_cause::OPENED_PATH));
    }
    let (rule, cause) = found?;
    // SAFETY: a helper call; it signals the current task's thread group.
    let sent = unsafe { bpf_send_signal(SIGKILL) } as i32;
    let mut entry = reserve::<KillRecord>(kind::KILL)?;
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    let watch = Watch {
        id: s.order_cgroup,
        slot: 0,
        leaf: s.leaf,
    };
    fill_header(&mut rec.header, kind::KILL, syscall, watch, s.ret);
    rec.header.ts_boot_ns = s.at;
    rec.rule_id = rule;
    rec.signal_result = sent;
    rec.args = s.args;
    rec.cause = cause;
    rec._pad = 0;
    // SAFETY: kernel-to-kernel copy of the key's path bytes (always NUL-terminated in them).
    unsafe {
        bpf_probe_read_kernel(
            rec.path.as_mut_ptr().cast::<c_void>(),
            PATH_KEY_CAP as u32,
            s.key.data.as_ptr().add(8).cast::<c_void>(),
        )
    };
    // Rare and urgent: wake the reader now rather than at its next poll.
    entry.submit(BPF_RB_FORCE_WAKEUP);
    Some(())
}

/// The rule whose order covers the path in the key (`n` bytes after the cgroup id, its NUL
/// included; `PATH_KEY_CAP` when the path was cut) for `syscall`.
#[inline(always)]
fn lookup(s: &mut PathScratch, n: usize, syscall: i64) -> Option<u32> {
    let cut = n >= PATH_KEY_CAP;
    // A cut path is matched on the bytes it has, without the NUL the copy put after them: no
    // pattern ending in a NUL (a whole path) can match it.
    let bytes = if cut { PATH_KEY_CAP - 1 } else { n };
    let mut prefix_len = 8 * (8 + bytes as u32);
    unsafe { write_volatile(&mut s.last_slash, UNSCANNED) };
    let mut tries = 0;
    while tries < MAX_LOOKUPS {
        s.key.prefix_len = prefix_len;
        let order = KILL_PATHS.get(&s.key)?;
        let (prefix, entry, len) = (order.prefix_rule, order.entry_rule, order.prefix_len);
        if syscall_in(&order.prefix_syscalls, syscall) {
            return Some(prefix);
        }
        // A directory's entry: the pattern (which ends in '/') holds the path's last '/'. A cut
        // path may hold one past the cut, so it is not decided on.
        if !cut && syscall_in(&order.entry_syscalls, syscall) {
            if unsafe { read_volatile(&s.last_slash) } == UNSCANNED {
                scan_last_slash(s);
            }
            if unsafe { read_volatile(&s.last_slash) } < u64::from(len / 8) {
                return Some(entry);
            }
        }
        // The next shorter pattern: every entry is longer than the cgroup id alone.
        if len <= 8 * 9 {
            return None;
        }
        prefix_len = len - 1;
        tries += 1;
    }
    None
}

/// Sets `s.last_slash` to the index in the key's data of the path's last '/' (0: none).
#[inline(always)]
fn scan_last_slash(s: &mut PathScratch) {
    unsafe { write_volatile(&mut s.last_slash, 0) };
    let mut i = 8;
    while i < PATH_KEY_DATA {
        match s.key.data[i] {
            0 => break,
            b'/' => unsafe { write_volatile(&mut s.last_slash, i as u64) },
            _ => {}
        }
        i += 1;
    }
}

/// Writes into the key the path of the file descriptor `fd` of the current task names, as the
/// task sees it (up to its root: a sandbox's paths are its own): the kernel's d_path walk, from
/// the file's dentry through its parents, crossing from a mount's root to where it is mounted.
/// Returns the bytes written with the NUL (`PATH_KEY_CAP` when cut), or None when the file is not
/// reachable from the task's root (a pipe, a socket, an internal mount), too deep, too long, or
/// the kernel lacks an offset.
#[inline(always)]
fn opened_path(s: &mut PathScratch, fd: u64) -> Option<usize> {
    let task = unsafe { bpf_get_current_task() };
    let files = read_field::<u64>(task, settings::TASK_FILES)?;
    let fdt = read_field::<u64>(files, settings::FILES_FDT)?;
    let max_fds = read_field::<u32>(fdt, settings::FDTABLE_MAX_FDS)?;
    if fd >= u64::from(max_fds) {
        return None;
    }
    let fds = read_field::<u64>(fdt, settings::FDTABLE_FD)?;
    let file = read_at::<u64>(fds.wrapping_add(fd * 8))?;
    let mut mnt = read_field::<u64>(file, settings::FILE_VFSMOUNT)?;
    let mut dentry = read_field::<u64>(file, settings::FILE_DENTRY)?;
    let fs = read_field::<u64>(task, settings::TASK_FS)?;
    let root_mnt = read_field::<u64>(fs, settings::FS_ROOT_MNT)?;
    let root_dentry = read_field::<u64>(fs, settings::FS_ROOT_DENTRY)?;
    let mount_mnt = setting(settings::MOUNT_MNT);
    if mount_mnt == OFFSET_UNKNOWN {
        return None;
    }
    unsafe { write_volatile(&mut s.pos, WALK_CAP as u64) };
    // Read again only when the walk crosses into another mount.
    let mut mnt_root = read_field::<u64>(mnt, settings::VFSMOUNT_ROOT)?;
    let mut steps = 0;
    let mut at_root = false;
    while steps < MAX_WALK {
        if dentry == root_dentry && mnt == root_mnt {
            at_root = true;
            break;
        }
        if dentry == mnt_root {
            // The root of a mount: go on from where it is mounted, in its parent mount.
            let mount = mnt.wrapping_sub(mount_mnt);
            let parent = read_field::<u64>(mount, settings::MOUNT_PARENT)?;
            if parent == mount {
                // The top of a mount tree the task's root is not in.
                return None;
            }
            dentry = read_field::<u64>(mount, settings::MOUNT_MOUNTPOINT)?;
            mnt = parent.wrapping_add(mount_mnt);
            mnt_root = read_field::<u64>(mnt, settings::VFSMOUNT_ROOT)?;
        } else {
            let parent = read_field::<u64>(dentry, settings::DENTRY_PARENT)?;
            if parent == dentry {
                return None;
            }
            let len = read_field::<u32>(dentry, settings::DENTRY_NAME_LEN)? as usize;
            let name = read_field::<u64>(dentry, settings::DENTRY_NAME)?;
            let pos = unsafe { read_volatile(&s.pos) } as usize;
            if len == 0 || len > NAME_MAX || len + 1 > pos {
                return None;
            }
            // The masks prove to the verifier what the checks above already ensure.
            let pos = (pos - (len + 1)) & (WALK_CAP - 1);
            unsafe { write_volatile(&mut s.pos, pos as u64) };
            s.walk[pos] = b'/';
            let read = unsafe {
                bpf_probe_read_kernel(
                    s.walk.as_mut_ptr().add(pos + 1).cast::<c_void>(),
                    (len & NAME_MAX) as u32,
                    name as *const c_void,
                )
            };
            if read != 0 {
                return None;
            }
            dentry = parent;
        }
        steps += 1;
    }
    if !at_root {
        return None;
    }
    let mut pos = unsafe { read_volatile(&s.pos) } as usize;
    if pos >= WALK_CAP {
        // The root directory itself.
        pos = WALK_CAP - 1;
        s.walk[pos] = b'/';
    }
    let pos = pos & (WALK_CAP - 1);
    let len = WALK_CAP - pos;
    let n = if len >= PATH_KEY_CAP {
        PATH_KEY_CAP - 1
    } else {
        len
    };
    let copied = unsafe {
        bpf_probe_read_kernel(
            s.key.data.as_mut_ptr().add(8).cast::<c_void>(),
            (n & 0xff) as u32,
            s.walk.as_ptr().add(pos).cast::<c_void>(),
        )
    };
    if copied != 0 {
        return None;
    }
    s.key.data[(8 + n) & (PATH_KEY_DATA - 1)] = 0;
    Some(if len >= PATH_KEY_CAP {
        PATH_KEY_CAP
    } else {
        n + 1
    })
}
