//! sandwatch's kernel programs: what the kernel records about processes in watched cgroups.
//!
//! Attach points, chosen for their cost on everyone else (see docs/architecture.md):
//! - `syscalls:sys_exit_*` tracepoints for the syscalls in [`sandwatch_probes_abi::TRACED`] only.
//!   The exit probe of the syscall's family takes the arguments from the task's saved user
//!   registers (`bpf_task_pt_regs`: a syscall does not change them), reads strings and addresses
//!   (the memory is paged in by then) and writes ONE record carrying arguments and result. No
//!   entry probe, no per-thread map between entry and exit. The exceptions: execve, whose
//!   arguments live in the old image and are captured at entry, and exit/exit_group, which never
//!   return and are seen at entry only. After a successful exec, the exit probe also reads what
//!   the task now is from task_struct (terminal, capabilities, login uid, the executable's name
//!   and inode change time) at offsets the collector found in the kernel's BTF (`SETTINGS`).
//! - `sched:sched_process_exit` and `signal:signal_deliver` (not syscall tracepoints: they cost
//!   nothing on the syscall path) for how a process ended.
//! - optionally a raw `sys_enter` that counts every syscall of watched cgroups (full counting).
//! - `cgroup_sock_addr` programs that enforce a sandbox policy's blocked ports (`port_policy.rs`)
//!   and a `syscalls:sys_enter_*` program that kills on kill orders (`kill_orders.rs`), attached
//!   only to the syscalls some order names, and the file exit probes' path kill orders
//!   (`path_orders.rs`): the only code here that changes what a process can do.
//!
//! Every failed ring-buffer reservation or map insert is counted per record kind in `DROPS`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// An atomic add on a map value: core's AtomicU64 has no fetch_add on this target (no CAS), but
// the BPF instruction set has atomic add, which the intrinsic lowers to.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

#[cfg(target_arch = "bpf")]
mod probes {
    use core::{ffi::c_void, intrinsics::AtomicOrdering};

    use aya_ebpf::{
        EbpfContext as _,
        helpers::{
            bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
            generated::{
                bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id,
                bpf_get_current_task, bpf_get_current_task_btf, bpf_ktime_get_boot_ns,
                bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
                bpf_probe_read_user_str, bpf_task_pt_regs,
            },
        },
        macros::{map, raw_tracepoint, tracepoint},
        maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, ring_buf::RingBufEntry},
        programs::{RawTracePointContext, TracePointContext},
    };
    use sandwatch_probes_abi::{
        ARG_CAP, ARGV_CAP, ArgsRecord, COMM_LEN, COUNT_SLOTS, ExecRecord, FATAL_BY_DEFAULT,
        FSTYPE_CAP, File2Record, FileRecord, Header, MAX_ARGS, MEMFD_PREFIX, MEMFD_PREFIX_MASK,
        NR_SLOTS, NetRecord, OFFSET_UNKNOWN, PATH_CAP, SOCKADDR_CAP, facts, flags, kind, nr,
        settings, tty_nr,
    };

    const AT_FDCWD: i64 = -100;
    const CLONE_THREAD: u64 = 0x10000;
    const NONE: u64 = u64::MAX;
    /// Deepest cgroup level a watched cgroup may sit at; the collector refuses deeper ones.
    const MAX_WATCH_LEVEL: u32 = 32;

    /// The event stream. Its size is set by the collector at load time.
    #[map]
    static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 24, 0);

    /// Watched cgroup ids (unified hierarchy). Updated by the collector at run time.
    #[map]
    static WATCHED: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

    /// Read by `port_policy` too (its levels).
    #[map]
    pub(crate) static SETTINGS: Array<u64> = Array::with_max_entries(settings::LEN, 0);

    /// Lost records per kind: failed ring-buffer reservations and failed map inserts.
    #[map]
    static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(kind::COUNT, 0);

    /// Syscall counts: `[slot * NR_SLOTS + nr]`, the slot being the watched cgroup's (the value
    /// of its WATCHED entry). An array, not a hash: its lookups are inlined by the verifier, and
    /// an atomic add needs no per-CPU copy. Mappable: user space reads every slot's counts from
    /// memory each window, not with one bpf syscall per cgroup and syscall (which a daemon with
    /// a hundred sandboxes paid every second).
    #[map]
    static COUNTS: Array<u64> = Array::with_max_entries(
        COUNT_SLOTS * NR_SLOTS,
        aya_ebpf::bindings::BPF_F_MMAPABLE as u32,
    );

    /// exec records captured at entry, per thread group (a multithreaded exec returns in the
    /// thread that took over the group leader's pid, so the tid is not stable; the tgid is).
    #[map]
    static EXEC_PENDING: LruHashMap<u32, ExecRecord> = LruHashMap::with_max_entries(4096, 0);

    #[map]
    static EXEC_SCRATCH: PerCpuArray<ExecRecord> = PerCpuArray::with_max_entries(1, 0);

    /// exit/exit_group status per thread group, for the process-exit record.
    #[map]
    static EXIT_CODES: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

    /// Last fatal signal delivered (default action) per thread group.
    #[map]
    static FATAL_SIGNALS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

    #[inline(always)]
    pub(crate) fn setting(key: u32) -> u64 {
        SETTINGS.get(key).copied().unwrap_or(0)
    }

    /// Why a task is recorded: the watched cgroup (itself or an ancestor of the task's cgroup),
    /// its counter slot, and the task's own cgroup.
    #[derive(Clone, Copy)]
    pub(crate) struct Watch {
        pub(crate) id: u64,
        pub(crate) slot: u32,
        pub(crate) leaf: u64,
    }

    /// The watched cgroup this task belongs to: its own cgroup or an ancestor at a watched level.
    #[inline(always)]
    fn watched() -> Option<Watch> {
        let leaf = unsafe { bpf_get_current_cgroup_id() };
        if let Some(slot) = unsafe { WATCHED.get(&leaf) } {
            return Some(Watch {
                id: leaf,
                slot: *slot,
                leaf,
            });
        }
        let levels = setting(settings::WATCH_LEVELS);
        if levels == 0 {
            return None;
        }
        let mut level = 1u32;
        while level < MAX_WATCH_LEVEL {
            if levels & (1u64 << level) != 0 {
                let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
                if id != 0
                    && let Some(slot) = unsafe { WATCHED.get(&id) }
                {
                    return Some(Watch {
                        id,
                        slot: *slot,
                        leaf,
                    });
                }
            }
            level += 1;
        }
        None
    }

    const BPF_RB_AVAIL_DATA: u64 = 0;
    const BPF_RB_NO_WAKEUP: u64 = 1;
    pub(crate) const BPF_RB_FORCE_WAKEUP: u64 = 2;

    /// Submit flags: wake the reader only once enough is waiting (see settings::WAKEUP_BYTES).
    #[inline(always)]
    fn wakeup_flags() -> u64 {
        if EVENTS.query(BPF_RB_AVAIL_DATA) >= setting(settings::WAKEUP_BYTES) {
            BPF_RB_FORCE_WAKEUP
        } else {
            BPF_RB_NO_WAKEUP
        }
    }

    /// A ring-buffer slot for one record, or the loss counted.
    #[inline(always)]
    pub(crate) fn reserve<T: 'static>(record_kind: u8) -> Option<RingBufEntry<T>> {
        let entry = EVENTS.reserve::<T>(0);
        if entry.is_none() {
            dropped(record_kind);
        }
        entry
    }

    #[inline(always)]
    pub(crate) fn dropped(record_kind: u8) {
        if let Some(p) = DROPS.get_ptr_mut(record_kind as u32) {
            unsafe { *p += 1 };
        }
    }

    #[inline(always)]
    fn count(watch: Watch, syscall: i64) {
        if setting(settings::FULL_COUNTING) != 0 {
            return;
        }
        count_always(watch, syscall);
    }

    #[inline(always)]
    fn count_always(watch: Watch, syscall: i64) {
        let index = watch
            .slot
            .wrapping_mul(NR_SLOTS)
            .wrapping_add(syscall as u32 & (NR_SLOTS - 1));
        if let Some(p) = COUNTS.get_ptr_mut(index) {
            // SAFETY: a valid, aligned u64 in the map's value area.
            unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, 1) };
        }
    }

    #[inline(always)]
    pub(crate) fn fill_header(
        h: &mut Header,
        record_kind: u8,
        syscall: i64,
        watch: Watch,
        ret: i64,
    ) {
        let pid_tgid = bpf_get_current_pid_tgid();
        let uid_gid = bpf_get_current_uid_gid();
        h.kind = record_kind;
        h.flags = 0;
        h._pad = 0;
        h.syscall_nr = syscall as i32;
        h.ts_boot_ns = unsafe { bpf_ktime_get_boot_ns() };
        h.cgroup_id = watch.leaf;
        h.watch_id = watch.id;
        h.pid = (pid_tgid >> 32) as u32;
        h.tid = pid_tgid as u32;
        h.uid = uid_gid as u32;
        h.gid = (uid_gid >> 32) as u32;
        h.ret = ret;
        h.comm = bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]);
    }

    /// Reads a NUL-terminated user string into `dst`; returns the flag bits to set on the record
    /// (`trunc` when it filled the buffer, READ_FAULT when it could not be read).
    #[inline(always)]
    unsafe fn read_user_str(dst: *mut u8, cap: usize, src: u64, trunc: u8) -> u8 {
        unsafe { *dst = 0 };
        if src == 0 {
            return 0;
        }
        let n = unsafe {
            bpf_probe_read_user_str(dst.cast::<c_void>(), cap as u32, src as *const c_void)
        };
        if n < 0 {
            unsafe { *dst = 0 };
            flags::READ_FAULT
        } else if n as usize >= cap {
            trunc
        } else {
            0
        }
    }

    /// Reads a socket address of `len` bytes into `dst`; returns the bytes read (0 on failure).
    #[inline(always)]
    unsafe fn read_sockaddr(dst: *mut u8, src: u64, len: u64) -> u32 {
        if src == 0 || len == 0 {
            return 0;
        }
        let n = if len > SOCKADDR_CAP as u64 {
            SOCKADDR_CAP as u32
        } else {
            len as u32
        };
        let n = n & 0x7f;
        if n == 0 {
            return 0;
        }
        if unsafe { bpf_probe_read_user(dst.cast::<c_void>(), n, src as *const c_void) } < 0 {
            return 0;
        }
        n
    }

    /// Exit tracepoints share one layout: `__syscall_nr` at 8, `ret` at 16. Direct context reads:
    /// they are within every exit tracepoint's record, and cheaper than a helper call.
    #[inline(always)]
    fn exit_nr_ret(ctx: &TracePointContext) -> (i64, i64) {
        let base = ctx.as_ptr().cast::<u8>();
        unsafe {
            (
                *(base.add(8).cast::<i32>()) as i64,
                *(base.add(16).cast::<i64>()),
            )
        }
    }

    /// What a syscall exit probe starts from.
    pub(crate) struct Exit {
        pub(crate) watch: Watch,
        pub(crate) syscall: i64,
        pub(crate) ret: i64,
        pub(crate) args: [u64; 6],
    }

    /// The syscall's six arguments, from the user registers saved at entry (x86_64: rdi, rsi,
    /// rdx, r10, r8, r9). One read covers them: in `struct pt_regs` they lie between offsets 56
    /// (r10) and 120 (end of rdi).
    #[cfg(bpf_target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) fn syscall_args() -> [u64; 6] {
        // r10, r9, r8, ax, cx, dx, si, di. Not zeroed first: the helper writes all 64 bytes (or
        // zeroes them on failure), and a zeroing loop is a memset call in BPF.
        let mut regs = core::mem::MaybeUninit::<[u64; 8]>::uninit();
        let regs = unsafe {
            let task = bpf_get_current_task_btf();
            let pt_regs = bpf_task_pt_regs(task) as *const u8;
            bpf_probe_read_kernel(
                regs.as_mut_ptr().cast::<c_void>(),
                64,
                pt_regs.add(56).cast::<c_void>(),
            );
            regs.assume_init()
        };
        [regs[7], regs[6], regs[5], regs[0], regs[2], regs[1]]
    }

    /// The start of every exit probe: is the task watched, which syscall returned what, and with
    /// which arguments. Counts the syscall.
    #[inline(always)]
    fn exit_of(ctx: &TracePointContext) -> Option<Exit> {
        let watch = watched()?;
        let (syscall, ret) = exit_nr_ret(ctx);
        count(watch, syscall);
        Some(Exit {
            watch,
            syscall,
            ret,
            args: syscall_args(),
        })
    }

    /// Entry of exit/exit_group: they never return, so remember the status for the process-exit
    /// record.
    #[tracepoint]
    pub fn sys_enter_exit(ctx: TracePointContext) -> u32 {
        let Some(watch) = watched() else { return 0 };
        let syscall = unsafe { *(ctx.as_ptr().cast::<u8>().add(8).cast::<i32>()) } as i64;
        count(watch, syscall);
        // Both take the status as their only argument, at offset 16 of the record.
        let status: u64 = unsafe { *(ctx.as_ptr().cast::<u8>().add(16).cast::<u64>()) };
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let _ = EXIT_CODES.insert(&tgid, &(status & 0xff), 0);
        0
    }

    /// Entry of execve/execveat: capture filename and argv while the old image still exists.
    #[tracepoint]
    pub fn sys_enter_exec(ctx: TracePointContext) -> u32 {
        let Some(watch) = watched() else { return 0 };
        let syscall = unsafe { *(ctx.as_ptr().cast::<u8>().add(8).cast::<i32>()) } as i64;
        count(watch, syscall);
        let args: [u64; 6] = unsafe { ctx.read_at(16) }.unwrap_or([0; 6]);
        let (dirfd, filename, argv, exec_flags) = if syscall == nr::EXECVEAT {
            (args[0] as i64, args[1], args[2], args[4])
        } else {
            (AT_FDCWD, args[0], args[1], 0)
        };
        let Some(rec) = EXEC_SCRATCH.get_ptr_mut(0) else {
            return 0;
        };
        let rec = unsafe { &mut *rec };
        fill_header(&mut rec.header, kind::EXEC, syscall, watch, 0);
        rec.dirfd = dirfd;
        rec.exec_flags = exec_flags;
        // The scratch record is reused: no fact of an earlier exec may ride along.
        rec.facts = 0;
        rec.tty = 0;
        rec.loginuid = 0;
        rec._pad = 0;
        rec.cap_effective = 0;
        rec.cap_permitted = 0;
        rec.cap_inheritable = 0;
        rec.exe_ctime_sec = 0;
        rec.exe_ctime_nsec = 0;
        let mut fl = unsafe {
            read_user_str(
                rec.filename.as_mut_ptr(),
                PATH_CAP,
                filename,
                flags::TRUNC_PATH,
            )
        };
        let mut off: usize = 0;
        let mut argc: u32 = 0;
        let mut i = 0usize;
        while i < MAX_ARGS {
            let mut p: u64 = 0;
            if argv == 0
                || unsafe {
                    bpf_probe_read_user(
                        (&mut p as *mut u64).cast::<c_void>(),
                        8,
                        (argv + (i as u64) * 8) as *const c_void,
                    )
                } < 0
            {
                break;
            }
            if p == 0 {
                break;
            }
            if off >= ARGV_CAP {
                fl |= flags::TRUNC_ARGV;
                break;
            }
            // The mask proves to the verifier that the write stays inside argv (ARGV_CAP + ARG_CAP).
            let at = off & (ARGV_CAP - 1);
            let n = unsafe {
                bpf_probe_read_user_str(
                    rec.argv.as_mut_ptr().add(at).cast::<c_void>(),
                    ARG_CAP as u32,
                    p as *const c_void,
                )
            };
            if n <= 0 {
                fl |= flags::READ_FAULT;
                break;
            }
            if n as usize >= ARG_CAP {
                fl |= flags::TRUNC_ARGV;
            }
            off = at + n as usize;
            argc += 1;
            i += 1;
        }
        if i == MAX_ARGS {
            fl |= flags::TRUNC_ARGV;
        }
        rec.argc = argc;
        rec.argv_len = off as u32;
        rec.header.flags = fl;
        let tgid = rec.header.pid;
        if EXEC_PENDING.insert(&tgid, &*rec, 0).is_err() {
            dropped(kind::EXEC);
            aya_log_ebpf::warn!(&ctx, "exec map full: exec of pid {} not recorded", tgid);
        }
        0
    }

    #[tracepoint]
    pub fn sys_exit_exec(ctx: TracePointContext) -> u32 {
        let (syscall, ret) = exit_nr_ret(&ctx);
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let Some(rec) = EXEC_PENDING.get_ptr_mut(&tgid) else {
            return 0;
        };
        let rec = unsafe { &mut *rec };
        // A successful execveat can return through execve's exit tracepoint, numbered execve
        // (seen on Linux 6.18 x86_64): any exec exit closes the thread group's pending exec,
        // whose record keeps the number it was entered by.
        if matches!(syscall, nr::EXECVE | nr::EXECVEAT) {
            let entered = rec.header.syscall_nr as i64;
            // Identity after exec: the new comm, and setuid binaries change the credentials.
            let fl = rec.header.flags;
            let leaf = unsafe { bpf_get_current_cgroup_id() };
            let watch = Watch {
                id: rec.header.watch_id,
                slot: 0,
                leaf,
            };
            fill_header(&mut rec.header, kind::EXEC, entered, watch, ret);
            rec.header.flags = fl;
            if ret == 0 {
                read_exec_facts(rec);
            }
            if EVENTS.output::<ExecRecord>(&*rec, wakeup_flags()).is_err() {
                dropped(kind::EXEC);
            }
        }
        let _ = EXEC_PENDING.remove(&tgid);
        0
    }

    /// The value of type `T` at `base` + the offset under `key` in SETTINGS, or None when the
    /// offset is unknown, `base` is null or the read faults.
    #[inline(always)]
    pub(crate) fn read_field<T: Copy>(base: u64, key: u32) -> Option<T> {
        let off = setting(key);
        if base == 0 || off == OFFSET_UNKNOWN {
            return None;
        }
        read_at(base.wrapping_add(off))
    }

    /// The value of type `T` at kernel address `addr`, or None when the read faults.
    #[inline(always)]
    pub(crate) fn read_at<T: Copy>(addr: u64) -> Option<T> {
        let mut value = core::mem::MaybeUninit::<T>::uninit();
        let rc = unsafe {
            bpf_probe_read_kernel(
                value.as_mut_ptr().cast::<c_void>(),
                core::mem::size_of::<T>() as u32,
                addr as *const c_void,
            )
        };
        (rc == 0).then(|| unsafe { value.assume_init() })
    }

    /// What the task is after a successful exec, from task_struct by the BTF offsets in SETTINGS:
    /// controlling terminal, capability sets, login uid, and whether the executable is a memfd
    /// and when its inode last changed. Each fact read sets its bit in `rec.facts`.
    #[inline(always)]
    fn read_exec_facts(rec: &mut ExecRecord) {
        // The plain (not BTF-typed) task pointer: a scalar the offsets can be added to.
        let task = unsafe { bpf_get_current_task() };
        let mut got = 0u32;
        if let Some(signal) = read_field::<u64>(task, settings::TASK_SIGNAL)
            && let Some(tty) = read_field::<u64>(signal, settings::SIGNAL_TTY)
        {
            if tty == 0 {
                rec.tty = 0;
                got |= facts::TTY;
            } else if let Some(index) = read_field::<i32>(tty, settings::TTY_INDEX)
                && let Some(driver) = read_field::<u64>(tty, settings::TTY_DRIVER)
                && let Some(major) = read_field::<i32>(driver, settings::DRIVER_MAJOR)
                && let Some(minor_start) = read_field::<i32>(driver, settings::DRIVER_MINOR_START)
            {
                rec.tty = tty_nr(major as u32, minor_start.wrapping_add(index) as u32);
                got |= facts::TTY;
            }
        }
        if let Some(cred) = read_field::<u64>(task, settings::TASK_CRED)
            && let Some(effective) = read_field::<u64>(cred, settings::CRED_CAP_EFFECTIVE)
            && let Some(permitted) = read_field::<u64>(cred, settings::CRED_CAP_PERMITTED)
            && let Some(inheritable) = read_field::<u64>(cred, settings::CRED_CAP_INHERITABLE)
        {
            rec.cap_effective = effective;
            rec.cap_permitted = permitted;
            rec.cap_inheritable = inheritable;
            got |= facts::CAPS;
        }
        if let Some(loginuid) = read_field::<u32>(task, settings::TASK_LOGINUID) {
            rec.loginuid = loginuid;
            got |= facts::LOGINUID;
        }
        if let Some(mm) = read_field::<u64>(task, settings::TASK_MM)
            && let Some(exe) = read_field::<u64>(mm, settings::MM_EXE_FILE)
        {
            if let Some(dentry) = read_field::<u64>(exe, settings::FILE_DENTRY)
                && let Some(name) = read_field::<u64>(dentry, settings::DENTRY_NAME)
                && name != 0
            {
                let mut head = [0u8; 8];
                let n = unsafe {
                    bpf_probe_read_kernel_str(
                        head.as_mut_ptr().cast::<c_void>(),
                        8,
                        name as *const c_void,
                    )
                };
                if n > 0 {
                    got |= facts::EXE_NAME;
                    if u64::from_le_bytes(head) & MEMFD_PREFIX_MASK == MEMFD_PREFIX {
                        got |= facts::EXE_MEMFD;
                    }
                }
            }
            if let Some(inode) = read_field::<u64>(exe, settings::FILE_INODE)
                && let Some(sec) = read_field::<i64>(inode, settings::INODE_CTIME_SEC)
                && let Some(nsec) = read_field::<u32>(inode, settings::INODE_CTIME_NSEC)
            {
                rec.exe_ctime_sec = sec;
                // Since 6.13 the top bit of i_ctime_nsec flags "ctime was queried" (multigrain
                // timestamps); nanoseconds fit in 30 bits.
                rec.exe_ctime_nsec = (nsec & 0x3fff_ffff) as u64;
                got |= facts::EXE_CTIME;
            }
        }
        rec.facts = got;
    }

    /// fork/clone, setuid family, ptrace, kill.
    #[tracepoint]
    pub fn sys_exit_process(ctx: TracePointContext) -> u32 {
        let Some(mut exit) = exit_of(&ctx) else {
            return 0;
        };
        if exit.syscall == nr::CLONE3 {
            // clone3 passes a struct clone_args; its first field is the flags.
            let mut cl_flags: u64 = 0;
            unsafe {
                bpf_probe_read_user(
                    (&mut cl_flags as *mut u64).cast::<c_void>(),
                    8,
                    exit.args[0] as *const c_void,
                )
            };
            exit.args[0] = cl_flags;
        }
        emit_args(kind::PROCESS, &exit, 0)
    }

    /// Security-sensitive syscalls: recorded with their raw arguments.
    #[tracepoint]
    pub fn sys_exit_sensitive(ctx: TracePointContext) -> u32 {
        let Some(exit) = exit_of(&ctx) else { return 0 };
        emit_args(kind::SYSCALL, &exit, 0)
    }

    /// Syscalls traced only for their refusals: no entry probe, a record only for -EPERM, so the
    /// syscalls a policy denies cost nothing but this exit check.
    #[tracepoint]
    pub fn sys_exit_refusal(ctx: TracePointContext) -> u32 {
        let Some(exit) = exit_of(&ctx) else { return 0 };
        if exit.ret != -1 {
            return 0;
        }
        emit_args(kind::SYSCALL, &exit, flags::REFUSAL)
    }

    /// Writes an [`ArgsRecord`]: the syscall with its raw arguments and result.
    #[inline(always)]
    fn emit_args(record_kind: u8, exit: &Exit, header_flags: u8) -> u32 {
        let Some(mut entry) = reserve::<ArgsRecord>(record_kind) else {
            return 0;
        };
        let rec = unsafe { &mut *entry.as_mut_ptr() };
        fill_header(
            &mut rec.header,
            record_kind,
            exit.syscall,
            exit.watch,
            exit.ret,
        );
        rec.header.flags = header_flags;
        rec.args = exit.args;
        entry.submit(wakeup_flags());
        0
    }

    /// One-path file syscalls; then path kill orders (`path_orders`).
    #[tracepoint]
    pub fn sys_exit_file(ctx: TracePointContext) -> u32 {
        let Some(exit) = exit_of(&ctx) else {
            return 0;
        };
        let (syscall, a) = (exit.syscall, exit.args);
        // (dirfd, path, flags, mode, owner, group) per syscall's argument order.
        let (dirfd, path, fl, mode, owner, group) = match syscall {
            nr::OPEN => (AT_FDCWD, a[0], a[1], a[2], NONE, NONE),
            nr::OPENAT => (a[0] as i64, a[1], a[2], a[3], NONE, NONE),
            nr::OPENAT2 => (a[0] as i64, a[1], 0, 0, NONE, NONE),
            // creat(path, mode) is open(path, O_CREAT|O_WRONLY|O_TRUNC, mode).
            nr::CREAT => (AT_FDCWD, a[0], 0o1101, a[1], NONE, NONE),
            nr::UNLINK | nr::RMDIR => (AT_FDCWD, a[0], 0, 0, NONE, NONE),
            nr::UNLINKAT => (a[0] as i64, a[1], a[2], 0, NONE, NONE),
            nr::CHMOD => (AT_FDCWD, a[0], 0, a[1], NONE, NONE),
            nr::FCHMOD => (a[0] as i64, 0, 0, a[1], NONE, NONE),
            nr::FCHMODAT => (a[0] as i64, a[1], 0, a[2], NONE, NONE),
            nr::FCHMODAT2 => (a[0] as i64, a[1], a[3], a[2], NONE, NONE),
            nr::CHOWN | nr::LCHOWN => (AT_FDCWD, a[0], 0, 0, a[1], a[2]),
            nr::FCHOWN => (a[0] as i64, 0, 0, 0, a[1], a[2]),
            nr::FCHOWNAT => (a[0] as i64, a[1], a[4], 0, a[2], a[3]),
            nr::MKDIR => (AT_FDCWD, a[0], 0, a[1], NONE, NONE),
            nr::MKDIRAT => (a[0] as i64, a[1], 0, a[2], NONE, NONE),
            nr::UMOUNT2 => (AT_FDCWD, a[0], a[1], 0, NONE, NONE),
            _ => (AT_FDCWD, 0, 0, 0, NONE, NONE),
        };
        let at = match reserve::<FileRecord>(kind::FILE) {
            Some(entry) => file_record(entry, &exit, (dirfd, path, fl, mode, owner, group)),
            None => unsafe { bpf_ktime_get_boot_ns() },
        };
        // A full ring buffer cost the record, not the decision.
        crate::path_orders::check(&ctx, &exit, path, at);
        0
    }

    /// Fills and submits a [`FileRecord`]; returns its timestamp.
    #[inline(always)]
    fn file_record(
        mut entry: RingBufEntry<FileRecord>,
        exit: &Exit,
        (dirfd, path, fl, mode, owner, group): (i64, u64, u64, u64, u64, u64),
    ) -> u64 {
        let (syscall, a) = (exit.syscall, exit.args);
        let rec = unsafe { &mut *entry.as_mut_ptr() };
        fill_header(&mut rec.header, kind::FILE, syscall, exit.watch, exit.ret);
        rec.dirfd = dirfd;
        rec.flags = fl;
        rec.mode = mode;
        rec.owner = owner;
        rec.group = group;
        rec.resolve = 0;
        if syscall == nr::OPENAT2 {
            // struct open_how { u64 flags; u64 mode; u64 resolve; }
            let mut how = [0u64; 3];
            unsafe {
                bpf_probe_read_user(how.as_mut_ptr().cast::<c_void>(), 24, a[2] as *const c_void)
            };
            rec.flags = how[0];
            rec.mode = how[1];
            rec.resolve = how[2];
        }
        rec.header.flags =
            unsafe { read_user_str(rec.path.as_mut_ptr(), PATH_CAP, path, flags::TRUNC_PATH) };
        let at = rec.header.ts_boot_ns;
        entry.submit(wakeup_flags());
        at
    }

    /// Two-path file syscalls: rename family, link, symlink, mount; then path kill orders, on
    /// the first path (what rules read as `fd.name`).
    #[tracepoint]
    pub fn sys_exit_file2(ctx: TracePointContext) -> u32 {
        let Some(exit) = exit_of(&ctx) else {
            return 0;
        };
        let (syscall, a) = (exit.syscall, exit.args);
        // (dirfd, path, dirfd2, path2, flags, fstype)
        let (dirfd, path, dirfd2, path2, fl, fstype) = match syscall {
            nr::RENAME | nr::LINK | nr::SYMLINK => (AT_FDCWD, a[0], AT_FDCWD, a[1], 0, 0),
            nr::RENAMEAT => (a[0] as i64, a[1], a[2] as i64, a[3], 0, 0),
            nr::RENAMEAT2 | nr::LINKAT => (a[0] as i64, a[1], a[2] as i64, a[3], a[4], 0),
            // symlinkat(target, newdirfd, linkpath): the target is a string, not resolved.
            nr::SYMLINKAT => (AT_FDCWD, a[0], a[1] as i64, a[2], 0, 0),
            // mount(source, target, fstype, flags, data): path = where it is mounted.
            nr::MOUNT => (AT_FDCWD, a[1], AT_FDCWD, a[0], a[3], a[2]),
            _ => (AT_FDCWD, 0, AT_FDCWD, 0, 0, 0),
        };
        let at = match reserve::<File2Record>(kind::FILE2) {
            Some(mut entry) => {
                let rec = unsafe { &mut *entry.as_mut_ptr() };
                fill_header(&mut rec.header, kind::FILE2, syscall, exit.watch, exit.ret);
                rec.dirfd = dirfd;
                rec.dirfd2 = dirfd2;
                rec.flags = fl;
                let mut hf = unsafe {
                    read_user_str(rec.path.as_mut_ptr(), PATH_CAP, path, flags::TRUNC_PATH)
                };
                hf |= unsafe {
                    read_user_str(rec.path2.as_mut_ptr(), PATH_CAP, path2, flags::TRUNC_PATH2)
                };
                unsafe { read_user_str(rec.fstype.as_mut_ptr(), FSTYPE_CAP, fstype, 0) };
                rec.header.flags = hf;
                let at = rec.header.ts_boot_ns;
                entry.submit(wakeup_flags());
                at
            }
            None => unsafe { bpf_ktime_get_boot_ns() },
        };
        // A full ring buffer cost the record, not the decision.
        crate::path_orders::check(&ctx, &exit, path, at);
        0
    }

    /// socket, connect, accept/accept4, bind, listen, and sendto/sendmsg that name a destination
    /// (datagrams: DNS and other UDP; a connected socket's sends are covered by its connect).
    #[tracepoint]
    pub fn sys_exit_net(ctx: TracePointContext) -> u32 {
        let Some(Exit {
            watch,
            syscall,
            ret,
            args,
        }) = exit_of(&ctx)
        else {
            return 0;
        };
        let a = args;
        // (address pointer, its length, whether the length is a pointer to it)
        let (addr, addr_len, fd, arg, arg2) = match syscall {
            nr::SOCKET => (0, 0, ret, a[0], a[1]),
            nr::CONNECT | nr::BIND => (a[1], a[2], a[0] as i64, 0, 0),
            nr::LISTEN => (0, 0, a[0] as i64, a[1], 0),
            nr::ACCEPT | nr::ACCEPT4 => {
                // The peer's address is an output: read its length back from user memory.
                let mut len: u32 = 0;
                if a[2] != 0 {
                    unsafe {
                        bpf_probe_read_user(
                            (&mut len as *mut u32).cast::<c_void>(),
                            4,
                            a[2] as *const c_void,
                        )
                    };
                }
                (
                    a[1],
                    len as u64,
                    a[0] as i64,
                    if syscall == nr::ACCEPT4 { a[3] } else { 0 },
                    0,
                )
            }
            nr::SENDTO => {
                if a[4] == 0 {
                    return 0;
                }
                (a[4], a[5], a[0] as i64, a[3], a[2])
            }
            nr::SENDMSG => {
                // struct msghdr { void *msg_name; int msg_namelen; ... }
                let mut head = [0u64; 2];
                if unsafe {
                    bpf_probe_read_user(
                        head.as_mut_ptr().cast::<c_void>(),
                        16,
                        a[1] as *const c_void,
                    )
                } < 0
                    || head[0] == 0
                {
                    return 0;
                }
                (head[0], head[1] & 0xffff_ffff, a[0] as i64, a[2], 0)
            }
            _ => (0, 0, -1, 0, 0),
        };
        let Some(mut entry) = reserve::<NetRecord>(kind::NET) else {
            return 0;
        };
        let rec = unsafe { &mut *entry.as_mut_ptr() };
        fill_header(&mut rec.header, kind::NET, syscall, watch, ret);
        rec.fd = fd;
        rec.arg = arg;
        rec.arg2 = arg2;
        rec._pad = 0;
        rec.addr_len = unsafe { read_sockaddr(rec.addr.as_mut_ptr(), addr, addr_len) };
        entry.submit(wakeup_flags());
        0
    }

    /// A task ended; when it was the last of its thread group, the process ended.
    #[tracepoint]
    pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
        let group_dead: u8 = unsafe { *(ctx.as_ptr().cast::<u8>().add(32)) };
        if group_dead == 0 {
            return 0;
        }
        let Some(watch) = watched() else { return 0 };
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let code = unsafe { EXIT_CODES.get(&tgid) }.copied().unwrap_or(NONE);
        let signal = unsafe { FATAL_SIGNALS.get(&tgid) }.copied().unwrap_or(0);
        let _ = EXIT_CODES.remove(&tgid);
        let _ = FATAL_SIGNALS.remove(&tgid);
        let Some(mut entry) = reserve::<ArgsRecord>(kind::EXIT) else {
            return 0;
        };
        let rec = unsafe { &mut *entry.as_mut_ptr() };
        fill_header(&mut rec.header, kind::EXIT, -1, watch, 0);
        rec.args = [code, signal, 0, 0, 0, 0];
        entry.submit(wakeup_flags());
        0
    }

    /// A task was created. In the parent, before the child can run: so the child's parent is
    /// known to the collector before any record of the child arrives (a vfork parent's own clone
    /// record comes only after the child has exec'd, and a short-lived child is gone from /proc by
    /// the time its records are read). Threads are skipped.
    #[tracepoint]
    pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
        let Some(watch) = watched() else { return 0 };
        let child: u32 = unsafe { *(ctx.as_ptr().cast::<u8>().add(20).cast::<u32>()) };
        // The syscall that forks, from the saved registers: orig_ax at 120, its first argument
        // (rdi) at 112.
        let (syscall, arg0) = unsafe {
            let pt_regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8;
            let mut regs = core::mem::MaybeUninit::<[u64; 2]>::uninit();
            bpf_probe_read_kernel(
                regs.as_mut_ptr().cast::<c_void>(),
                16,
                pt_regs.add(112).cast::<c_void>(),
            );
            let regs = regs.assume_init();
            (regs[1] as i64, regs[0])
        };
        let clone_flags = match syscall {
            nr::CLONE => arg0,
            nr::CLONE3 => {
                let mut flags: u64 = 0;
                unsafe {
                    bpf_probe_read_user(
                        (&mut flags as *mut u64).cast::<c_void>(),
                        8,
                        arg0 as *const c_void,
                    )
                };
                flags
            }
            _ => 0,
        };
        if clone_flags & CLONE_THREAD != 0 {
            return 0;
        }
        let Some(mut entry) = reserve::<ArgsRecord>(kind::FORK) else {
            return 0;
        };
        let rec = unsafe { &mut *entry.as_mut_ptr() };
        fill_header(&mut rec.header, kind::FORK, -1, watch, 0);
        rec.args = [child as u64, clone_flags, 0, 0, 0, 0];
        entry.submit(wakeup_flags());
        0
    }

    /// A signal is being acted on. With the default action and a fatal signal, the process is
    /// about to die of it: remember which, for the exit record.
    #[tracepoint]
    pub fn signal_deliver(ctx: TracePointContext) -> u32 {
        let base = ctx.as_ptr().cast::<u8>();
        let sig = unsafe { *(base.add(8).cast::<i32>()) };
        let handler = unsafe { *(base.add(24).cast::<u64>()) };
        if handler != 0 || !(1..64).contains(&sig) || FATAL_BY_DEFAULT & (1u64 << sig) == 0 {
            return 0;
        }
        if watched().is_none() {
            return 0;
        }
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let _ = FATAL_SIGNALS.insert(&tgid, &(sig as u64), 0);
        0
    }

    /// Full counting mode: every syscall of watched cgroups, from the raw `sys_enter`. Costs every
    /// syscall on the host a program run; attached only when asked for.
    #[raw_tracepoint(tracepoint = "sys_enter")]
    pub fn count_all_syscalls(ctx: RawTracePointContext) -> i32 {
        let Some(watch) = watched() else { return 0 };
        let syscall: i64 = ctx.arg(1);
        count_always(watch, syscall);
        0
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 4] = *b"GPL\0";
}

#[cfg(target_arch = "bpf")]
mod port_policy;

#[cfg(target_arch = "bpf")]
mod kill_orders;

#[cfg(target_arch = "bpf")]
mod path_orders;

#[cfg(not(target_arch = "bpf"))]
fn main() {}
