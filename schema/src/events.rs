//! Typed events: one struct per table row. They borrow their text from wherever it was decoded
//! (the ring buffer, the collector's caches), so decoding an event allocates nothing; the builders
//! copy the bytes once, into Arrow buffers.

/// The columns every event table carries.
#[derive(Clone, Copy, Debug, Default)]
pub struct Common<'a> {
    /// Nanoseconds since the Unix epoch, UTC.
    pub time_ns: i64,
    pub host: &'a str,
    pub sandbox_id: Option<&'a str>,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    pub comm: &'a str,
    pub exe: Option<&'a str>,
    /// What happened: the syscall's name for syscall events, or `exit` for a process end.
    pub event: &'a str,
    pub syscall: Option<&'a str>,
    /// The syscall's result: >= 0 success, < 0 -errno.
    pub ret: Option<i64>,
}

/// exec, fork/clone, exit, setuid family, ptrace, kill.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEvent<'a> {
    pub common: Common<'a>,
    /// exec: the program as given to execve.
    pub filename: Option<&'a str>,
    /// exec: argv, NUL-separated as captured (a trailing NUL is ignored).
    pub argv: Option<&'a [u8]>,
    pub argv_truncated: Option<bool>,
    pub cwd: Option<&'a str>,
    pub child_pid: Option<u32>,
    pub clone_flags: Option<u64>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub target_pid: Option<i64>,
    pub signal: Option<i32>,
    pub ptrace_request: Option<i64>,
    /// setuid family: the ids as passed (-1 = unchanged).
    pub id_args: Option<&'a [i64]>,
    // What the process is after a successful exec, read from the kernel at the exec's return
    // (null on other rows, and where this kernel did not give it).
    /// The controlling terminal's device number (`tty_nr` of /proc/<pid>/stat); 0 = none.
    pub tty: Option<u32>,
    /// The audit login uid (host namespace); -1 = never set.
    pub loginuid: Option<i64>,
    /// Capability sets, bit n = capability n (CAP_SYS_ADMIN = bit 21).
    pub cap_effective: Option<u64>,
    pub cap_permitted: Option<u64>,
    pub cap_inheritable: Option<u64>,
    /// The executable is a memfd (fileless execution).
    pub exe_from_memfd: Option<bool>,
    /// The executable's inode was created or changed (written, renamed, chmod'ed) after its
    /// sandbox (or watched cgroup) was first watched.
    pub exe_written_in_sandbox: Option<bool>,
    /// The executable's inode change time, ns since the Unix epoch.
    pub exe_ctime_ns: Option<i64>,
}

/// open/openat/openat2/creat, unlink, rename, chmod, chown, mkdir, link/symlink, mount/umount.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileEvent<'a> {
    pub common: Common<'a>,
    pub path: Option<&'a str>,
    /// rename: the new path; link/symlink: the link's path; mount: the source.
    pub path2: Option<&'a str>,
    pub path_truncated: bool,
    pub dirfd: Option<i32>,
    pub flags: Option<i64>,
    pub flags_text: Option<&'a str>,
    pub mode: Option<u32>,
    pub owner_uid: Option<i64>,
    pub owner_gid: Option<i64>,
    pub fstype: Option<&'a str>,
}

/// socket, connect, accept, bind, listen, sendto/sendmsg with a destination.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetworkEvent<'a> {
    pub common: Common<'a>,
    pub fd: Option<i64>,
    /// `inet`, `inet6`, `unix`, `netlink`, `packet`, or the number.
    pub family: Option<&'a str>,
    /// `stream`, `dgram`, `raw`, `seqpacket`, ...
    pub sock_type: Option<&'a str>,
    /// `tcp`, `udp`, `icmp`, `raw`, ... when the socket's type is known.
    pub protocol: Option<&'a str>,
    /// Local side (bind, listen) or the client (accept).
    pub saddr: Option<&'a str>,
    pub sport: Option<u16>,
    /// The destination (connect, sendto/sendmsg) or the local side of an accepted connection.
    pub daddr: Option<&'a str>,
    pub dport: Option<u16>,
    /// allowed/denied by network policy, once a policy is enforced.
    pub verdict: Option<&'a str>,
    pub bytes: Option<i64>,
}

/// Security-sensitive syscalls and refusals.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyscallEvent<'a> {
    pub common: Common<'a>,
    pub args: Option<&'a [u64]>,
    /// The syscall is on the policy's deny-list and came back -EPERM.
    pub refused: bool,
}

/// One `syscall_counts` row: a syscall's count in one window for one watched cgroup.
#[derive(Clone, Copy, Debug)]
pub struct CountRow<'a> {
    /// End of the window, ns since the Unix epoch.
    pub time_ns: i64,
    pub host: &'a str,
    pub sandbox_id: Option<&'a str>,
    pub cgroup_id: u64,
    pub syscall: &'a str,
    pub syscall_nr: i32,
    pub count: u64,
    pub window_ms: u32,
}

/// One `drops` row: what was lost, where, since the last row of the same source and kind.
#[derive(Clone, Copy, Debug)]
pub struct DropRow<'a> {
    pub time_ns: i64,
    pub host: &'a str,
    /// `kernel` (ring buffer full or probe map full) or `collector` (undecodable record).
    pub source: &'a str,
    /// The record kind lost: `exec`, `file`, `network`, ...
    pub kind: &'a str,
    pub count: u64,
    /// Running total for this source and kind since the collector started.
    pub total: u64,
}

/// What happened to a sandbox, the `event` column of `sandboxes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SandboxLifecycle {
    /// Its cgroups, namespaces and workspace exist; nothing runs yet.
    Created,
    /// A command started in it.
    Started,
    /// A command ended (by itself, or by a signal it did not get from sandwatch).
    Exited,
    /// sandwatch killed it (timeout, OOM, an order, a rule, ...).
    Killed,
    /// Every process in it was stopped (`cgroup.freeze`): an API pause, a rule's `freeze`.
    Paused,
    /// Its processes go on again after a pause.
    Resumed,
    /// It is gone: cgroups removed, workspace released.
    Destroyed,
}

impl SandboxLifecycle {
    pub fn name(self) -> &'static str {
        match self {
            SandboxLifecycle::Created => "created",
            SandboxLifecycle::Started => "started",
            SandboxLifecycle::Exited => "exited",
            SandboxLifecycle::Killed => "killed",
            SandboxLifecycle::Paused => "paused",
            SandboxLifecycle::Resumed => "resumed",
            SandboxLifecycle::Destroyed => "destroyed",
        }
    }
}

/// One `sandboxes` row: one lifecycle event of one sandbox. These rows come from the runner, not
/// from the kernel.
#[derive(Clone, Copy, Debug)]
pub struct SandboxEvent<'a> {
    pub time_ns: i64,
    pub host: &'a str,
    pub sandbox_id: &'a str,
    pub event: SandboxLifecycle,
    /// The command line of the command concerned (`started`, `exited`, a `killed` command).
    pub command: Option<&'a str>,
    pub exit_code: Option<i32>,
    /// `exited`: the signal that ended the command; `killed`: the signal sandwatch sent.
    pub signal: Option<i32>,
    /// Why: `timeout`, `oom`, `order`, `rule`, `error`, `runner_exit`, ...
    pub reason: Option<&'a str>,
    /// Hex SHA-256 of the resolved policy YAML.
    pub policy_hash: &'a str,
    pub profile: Option<&'a str>,
    /// Free text: an error message, "output truncated", ...
    pub detail: Option<&'a str>,
}

/// One `sandbox_metrics` row: one sample of one sandbox's resource use. Sizes come in bytes, as
/// the kernel counts them; the builder writes the table's MiB columns.
#[derive(Clone, Copy, Debug)]
pub struct SandboxMetricsRow<'a> {
    pub time_ns: i64,
    pub host: &'a str,
    pub sandbox_id: &'a str,
    /// 100 = one core busy for the whole interval since the previous sample.
    pub cpu_usage_percent: f64,
    pub memory_usage_bytes: u64,
    /// None: no memory limit.
    pub memory_limit_bytes: Option<u64>,
    /// Space the workspace's files take on disk.
    pub disk_usage_bytes: u64,
    /// Totals since the sandbox's network namespace was made; None when it shares the host's.
    pub network_rx_bytes: Option<u64>,
    pub network_tx_bytes: Option<u64>,
    pub process_count: u32,
    pub file_descriptors: u32,
}

/// One `api_calls` row: one request to `sandwatch serve`, as it was answered.
#[derive(Clone, Copy, Debug)]
pub struct ApiCallRow<'a> {
    /// When the request arrived.
    pub time_ns: i64,
    pub host: &'a str,
    /// A fingerprint of the credential presented (never the credential itself).
    pub key_fingerprint: Option<&'a str>,
    /// Which API: `control` (E2B's control plane), `envd` (a sandbox's process and file API),
    /// `local` (the daemon's unix socket), `ops` (health and metrics).
    pub api: &'a str,
    pub method: &'a str,
    /// The request path without its query (`/sandboxes/{id}`, `/process.Process/Start`).
    pub path: &'a str,
    /// The sandbox the call concerned, when it named one.
    pub sandbox_id: Option<&'a str>,
    pub status: u16,
    /// From the request's arrival to the response's head (a stream's first message); streams
    /// that go on after it are not included.
    pub latency_ms: f64,
    pub remote_addr: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// One `alerts` row: an alert a rule raised. Lists and structured parts arrive as the alert
/// holds them: `tags` and `actions` become list columns, the rest is JSON text.
#[derive(Clone, Copy, Debug)]
pub struct AlertRow<'a> {
    /// When the rule fired.
    pub time_ns: i64,
    pub host: &'a str,
    pub alert_id: &'a str,
    /// Stable across resends and grouping: what on-call tools deduplicate on.
    pub dedup_key: &'a str,
    pub sandbox_id: Option<&'a str>,
    pub rule: &'a str,
    /// Falco's lower-case priority name.
    pub priority: &'a str,
    pub tags: &'a [String],
    pub output: &'a str,
    /// JSON array of event references (`table`, `time_ns`, `pid`, `tid`, `event`).
    pub evidence: &'a str,
    /// What the rule asked for: `alert`, `kill`, `freeze`.
    pub actions: &'a [String],
    /// JSON array of what was done (`action`, `at_ns`, `ok`, `detail`).
    pub actions_taken: &'a str,
    /// JSON object of the output's field values.
    pub fields: &'a str,
    /// The triggering event (the first of `evidence`): its table, time, pid and tid.
    pub event: Option<(&'a str, i64, u32, u32)>,
    /// A baseline's anomaly score; `None` for a rule's alert.
    pub score: Option<f64>,
}

/// Where a delivery of an alert to a hook stands, the `state` column of `alert_deliveries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// The hook accepted it.
    Delivered,
    /// An attempt failed; another follows after a back-off.
    Retrying,
    /// Given up: retries exhausted or the hook refused it for good. The outbox keeps it.
    Failed,
}

impl DeliveryState {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Delivered => "delivered",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One `alert_deliveries` row: the outcome of one delivery attempt of one alert to one hook.
#[derive(Clone, Copy, Debug)]
pub struct AlertDeliveryRow<'a> {
    /// When the attempt ended.
    pub time_ns: i64,
    pub host: &'a str,
    pub alert_id: &'a str,
    pub dedup_key: &'a str,
    /// The hook's name in the hooks file.
    pub hook: &'a str,
    /// `webhook`, `slack`, `pagerduty`, `alertmanager`.
    pub hook_type: &'a str,
    pub state: DeliveryState,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The HTTP status, when the hook answered.
    pub status_code: Option<u16>,
    pub error: Option<&'a str>,
    /// From sending the request to the end of the answer (or the failure).
    pub latency_ms: Option<f64>,
}
