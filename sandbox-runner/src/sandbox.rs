//! A sandbox's life on the runner's side: create (cgroups with limits, namespaces, init), run
//! commands in it with their output captured and bounded, kill, freeze and thaw it, destroy it,
//! and clean up after runners that died without destroying theirs.
//!
//! On disk a sandbox is `<runtime>/<id>/` (default runtime `/run/sandwatch`): a `lock` the
//! runner holds while the sandbox lives (a later runner that can take it knows the sandbox is
//! stale), `meta.json` (policy hash, profile and labels, for whoever finds the sandbox stale),
//! the ephemeral `workspace/` when none was given, and `kill-reason` when `sandwatch kill`
//! ended it. The cgroups are `<hierarchy>/sandwatch/<id>`.
//!
//! File operations on a sandbox (`stat`, `read_file`, ...) are `files`' part of `Sandbox`.

use std::{
    collections::HashMap,
    ffi::CString,
    fs, io,
    os::{
        fd::{AsRawFd, OwnedFd, RawFd},
        unix::{ffi::OsStrExt as _, fs::OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use nix::fcntl::{Flock, FlockArg};
use sha2::Digest as _;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    io::{Interest, unix::AsyncFd},
    net::unix::pipe,
    sync::{Notify, oneshot},
};
use tracing::Instrument as _;

use crate::{
    cgroup::{CgroupError, CgroupRef, CgroupRoot, JobCgroup, PARENT},
    files::{EndProbe, FileError, FileOp, ReplyReader},
    limits::ResourceLimits,
    policy::{NetworkMode, SandboxPolicy},
    protocol::{self, FromInit, SetupPlan, ToInit},
};

/// Where sandboxes keep their lock, ephemeral workspace and staging root.
pub const DEFAULT_RUNTIME_DIR: &str = "/run/sandwatch";

/// First host uid (and gid) of the range a sandbox's ids map onto: the sandbox's root is this
/// unprivileged host uid. Far above the ranges distributions hand out in /etc/subuid.
pub const DEFAULT_HOST_ID_BASE: u32 = 1_000_000_000;

/// How many ids inside a sandbox map to host ids (0..65536).
const ID_RANGE: u32 = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox id {0:?}: use letters, digits, '-' and '_' (at most 64)")]
    BadId(String),
    #[error("sandbox {0} already exists (another runner has it)")]
    Exists(String),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("sandbox {id} failed to start: {step}: {error}")]
    Setup {
        id: String,
        step: String,
        error: String,
    },
    #[error("sandbox {0} has ended (killed, or its init died)")]
    Ended(String),
    #[error("the workspace {path} is not usable: {reason}")]
    Workspace { path: PathBuf, reason: String },
}

fn io_ctx(action: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let action = action.into();
    move |source| SandboxError::Io { action, source }
}

/// Everything a sandbox is made from.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub id: String,
    pub policy: SandboxPolicy,
    /// Host directory mounted as the `workspace` volume. None: a fresh one, removed at destroy.
    pub workspace: Option<PathBuf>,
    /// Host directories for other named volumes of the policy (`cache`); missing ones are private tmpfs.
    pub volumes: Vec<(String, PathBuf)>,
    pub runtime_dir: PathBuf,
    pub host_id_base: u32,
    /// The binary that becomes init: one that calls [`crate::init::run_if_init`] first thing.
    pub init_exe: PathBuf,
    /// Whatever the caller wants to find again about the sandbox, kept in `meta.json` (a
    /// restarted daemon reads them back from [`clean_stale`]).
    pub labels: Vec<(String, String)>,
}

impl SandboxOptions {
    pub fn new(id: impl Into<String>, policy: SandboxPolicy) -> Self {
        Self {
            id: id.into(),
            policy,
            workspace: None,
            volumes: Vec::new(),
            runtime_dir: PathBuf::from(DEFAULT_RUNTIME_DIR),
            host_id_base: DEFAULT_HOST_ID_BASE,
            init_exe: PathBuf::from("/proc/self/exe"),
            labels: Vec::new(),
        }
    }
}

/// Hex SHA-256 of the policy as `policy check` prints it: two sandboxes with the same hash ran
/// under the same rules.
pub fn policy_hash(policy: &SandboxPolicy) -> String {
    let digest = sha2::Sha256::digest(policy.to_yaml().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `id` can name a sandbox (it becomes a cgroup and a directory name).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// It exited or died of a signal on its own.
    Exited,
    /// The wall-clock limit ran out; the whole sandbox was killed.
    Timeout,
    /// The memory limit's OOM killer killed it.
    Oom,
    /// `kill` from outside (`sandwatch kill`, an operator).
    Order,
    /// A rule's action.
    Rule,
    /// The sandbox's init is gone (killed from outside the runner's knowledge).
    SandboxEnded,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Exited => "exited",
            EndReason::Timeout => "timeout",
            EndReason::Oom => "oom",
            EndReason::Order => "order",
            EndReason::Rule => "rule",
            EndReason::SandboxEnded => "sandbox_ended",
        }
    }

    fn parse(s: &str) -> Self {
        match s.trim() {
            "rule" => EndReason::Rule,
            "timeout" => EndReason::Timeout,
            _ => EndReason::Order,
        }
    }
}

/// A command to run in a sandbox.
#[derive(Debug, Clone, Default)]
pub struct CommandRequest {
    /// Whether the command's stdin is a pipe ([`RunningCommand::stdin`]); `false`: /dev/null.
    /// [`Sandbox::run`] always gives /dev/null, [`Sandbox::run_with_input`] always a pipe.
    pub stdin: bool,
    pub argv: Vec<String>,
    /// Added to (and overriding) the policy's environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside; default the workspace volume's mount point.
    pub cwd: Option<PathBuf>,
    /// Wall-clock limit; default the policy's `limits.timeout`.
    pub timeout: Option<Duration>,
}

/// Bytes of one output stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputStats {
    /// Bytes the command wrote.
    pub bytes: u64,
    /// Whether the output limit cut it (what came after the limit was read and discarded).
    pub truncated: bool,
}

/// What became of a command.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    /// Shell-style status: the exit code, 128+N for death by signal N, 124 on timeout, 126/127
    /// when it could not start.
    pub status: i32,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: EndReason,
    /// Why it could not start, when it could not.
    pub start_error: Option<String>,
    pub stdout: OutputStats,
    pub stderr: OutputStats,
    pub duration: Duration,
}

type ExitSender = oneshot::Sender<(Option<i32>, Option<i32>)>;
type StartSender = oneshot::Sender<Result<i32, (String, i32)>>;

#[derive(Default)]
struct Pending {
    starts: HashMap<u64, StartSender>,
    exits: HashMap<u64, ExitSender>,
}

struct Shared {
    pending: Mutex<Pending>,
    ended: AtomicBool,
    ended_notify: Notify,
}

/// A running sandbox. Destroy it with [`Sandbox::destroy`]; dropping it kills and removes it
/// too, without waiting politely.
pub struct Sandbox {
    id: String,
    policy: SandboxPolicy,
    policy_hash: String,
    cgroup: Option<JobCgroup>,
    control: Arc<AsyncFd<OwnedFd>>,
    shared: Arc<Shared>,
    reader: Option<tokio::task::JoinHandle<()>>,
    init_pid: i32,
    /// Readable once init has exited (it is the zygote's child, reaped by the kernel). Shared
    /// with file operations in flight, which ask it whether an early end was the sandbox's.
    init_pidfd: Arc<AsyncFd<OwnedFd>>,
    dir: PathBuf,
    workspace: PathBuf,
    _lock: Flock<fs::File>,
    next_id: AtomicU64,
    warnings: Vec<String>,
    labels: Vec<(String, String)>,
    destroyed: bool,
}

impl Sandbox {
    /// Creates a sandbox and waits until its init is ready for commands.
    pub async fn create(root: &CgroupRoot, opts: SandboxOptions) -> Result<Self, SandboxError> {
        if !valid_id(&opts.id) {
            return Err(SandboxError::BadId(opts.id));
        }
        let span = tracing::trace_span!("sandbox.dirs").entered();
        let dir = opts.runtime_dir.join(&opts.id);
        let staging = opts.runtime_dir.join(".root");
        for d in [&opts.runtime_dir, &staging] {
            match fs::create_dir(d) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(io_ctx(format!("create {}", d.display()))(e));
                }
                _ => {}
            }
        }
        // The directory appears under its id already locked (made under a hidden name, then
        // renamed), so a `clean_stale` elsewhere never sees it unlocked.
        let fresh = opts
            .runtime_dir
            .join(format!(".new-{}-{}", opts.id, std::process::id()));
        fs::create_dir(&fresh).map_err(io_ctx(format!("create {}", fresh.display())))?;
        let mut guard = DirGuard(Some(fresh.clone()));
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(fresh.join("lock"))
            .map_err(io_ctx("create the sandbox's lock"))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| io_ctx("lock the sandbox")(e.into()))?;
        let (from, to) = (c_path(&fresh)?, c_path(&dir)?);
        // SAFETY: renaming between two NUL-terminated paths.
        if unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        } != 0
        {
            let e = io::Error::last_os_error();
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                SandboxError::Exists(opts.id)
            } else {
                io_ctx(format!("create {}", dir.display()))(e)
            });
        }
        // From here on, a failure removes what was made.
        guard.0 = Some(dir.clone());
        let meta = SandboxMeta {
            id: opts.id.clone(),
            policy_hash: Some(policy_hash(&opts.policy)),
            profile: opts.policy.profile.clone(),
            labels: opts.labels.clone(),
        };
        fs::write(
            dir.join(META_FILE),
            serde_json::to_vec(&meta).map_err(|e| io_ctx("encode meta.json")(e.into()))?,
        )
        .map_err(io_ctx("write the sandbox's meta.json"))?;

        let host_uid = opts.host_id_base + opts.policy.user;
        let workspace = match &opts.workspace {
            Some(w) => {
                let meta = fs::metadata(w).map_err(|e| SandboxError::Workspace {
                    path: w.clone(),
                    reason: e.to_string(),
                })?;
                if !meta.is_dir() {
                    return Err(SandboxError::Workspace {
                        path: w.clone(),
                        reason: "not a directory".into(),
                    });
                }
                w.canonicalize().map_err(io_ctx("resolve the workspace"))?
            }
            None => {
                let w = dir.join("workspace");
                fs::create_dir(&w).map_err(io_ctx("create the workspace"))?;
                w
            }
        };
        // The sandbox's root is an unprivileged host uid: the workspace must be its own to be
        // writable. A given workspace keeps the owners of what is already inside it.
        std::os::unix::fs::chown(&workspace, Some(host_uid), Some(host_uid)).map_err(io_ctx(
            format!("give the workspace {} to the sandbox", workspace.display()),
        ))?;
        let mut volumes = vec![("workspace".to_string(), workspace.clone())];
        volumes.extend(opts.volumes.iter().cloned());
        if volumes.len() > protocol::MAX_FDS {
            return Err(io_ctx("pass the sandbox its volumes")(io::Error::other(
                format!(
                    "{} volumes; at most {} are supported",
                    volumes.len(),
                    protocol::MAX_FDS
                ),
            )));
        }
        let volume_mounts = volumes
            .iter()
            .map(|(name, host)| {
                crate::mounts::detached_volume(host).map_err(io_ctx(format!(
                    "clone volume {name} ({}) into a mount for the sandbox",
                    host.display()
                )))
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(span);

        let limits = ResourceLimits::from_policy(&opts.policy);
        let make_cgroup = || {
            tracing::trace_span!("sandbox.cgroup")
                .in_scope(|| JobCgroup::create_with_limits(root, &opts.id, &limits))
                .map_err(SandboxError::from)
        };
        let private_network = opts.policy.network.mode == NetworkMode::None;
        let plan = SetupPlan {
            policy: opts.policy.clone(),
            staging,
            volumes,
            private_network,
        };

        let (runner_end, init_end) =
            protocol::socket_pair().map_err(io_ctx("create the control socket"))?;
        let (init_pid, init_pidfd, cgroup) =
            tracing::trace_span!("sandbox.start_init").in_scope(|| {
                start_init(
                    &opts,
                    make_cgroup,
                    plan,
                    &volume_mounts,
                    runner_end.as_raw_fd(),
                    init_end,
                )
            })?;
        drop(volume_mounts);
        let init_pidfd = Arc::new(
            // SAFETY: the AsyncFd owns the pidfd for its whole life.
            unsafe { AsyncFd::register_with_interest(init_pidfd, Interest::READABLE) }
                .map_err(|e| io_ctx("watch the sandbox's init")(e.into()))?,
        );
        set_nonblocking(runner_end.as_raw_fd()).map_err(io_ctx("set up the control socket"))?;
        // SAFETY: the AsyncFd owns the socket, which stays open and the same for its lifetime.
        let control = Arc::new(
            unsafe { AsyncFd::register(runner_end) }
                .map_err(|e| io_ctx("register the control socket")(e.into()))?,
        );
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            ended: AtomicBool::new(false),
            ended_notify: Notify::new(),
        });
        let mut sandbox = Self {
            id: opts.id.clone(),
            policy_hash: policy_hash(&opts.policy),
            policy: opts.policy,
            cgroup: Some(cgroup),
            control: control.clone(),
            shared: shared.clone(),
            reader: None,
            init_pid,
            init_pidfd,
            dir,
            workspace,
            _lock: lock,
            next_id: AtomicU64::new(1),
            warnings: Vec::new(),
            labels: opts.labels,
            destroyed: false,
        };
        guard.0 = None;
        match wait_ready(&control, &opts.id)
            .instrument(tracing::trace_span!("sandbox.wait_ready"))
            .await
        {
            Ok(w) => sandbox.warnings = w,
            Err(e) => {
                sandbox.teardown();
                return Err(e);
            }
        }
        sandbox.reader = Some(tokio::spawn(read_control(control, shared)));
        Ok(sandbox)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn policy(&self) -> &SandboxPolicy {
        &self.policy
    }

    pub fn policy_hash(&self) -> &str {
        &self.policy_hash
    }

    /// The sandbox's cgroup in the unified hierarchy: the id the probes filter on.
    pub fn cgroup(&self) -> &CgroupRef {
        self.job().cgroup()
    }

    fn job(&self) -> &JobCgroup {
        self.cgroup.as_ref().expect("a live sandbox has its cgroup")
    }

    /// Host pid of the sandbox's init (in the sandbox's namespaces).
    pub fn init_pid(&self) -> i32 {
        self.init_pid
    }

    /// Host path of the workspace.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// What the sandbox got weaker than the policy asked (old kernel features), for the log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The labels it was created with (also in its `meta.json`).
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }

    /// Where the sandbox's numbers are, for [`crate::metrics`].
    pub fn metrics_source(&self) -> crate::metrics::MetricsSource {
        crate::metrics::MetricsSource {
            unified_cgroup: self.cgroup().path.clone(),
            memory_cgroup: self.job().v1_memory_dir().map(Path::to_owned),
            workspace: self.workspace.clone(),
            net_pid: (self.policy.network.mode == NetworkMode::None).then_some(self.init_pid),
        }
    }

    /// Whether the sandbox's init is gone.
    pub fn has_ended(&self) -> bool {
        self.shared.ended.load(Ordering::Acquire)
    }

    /// Runs a command to its end: output streamed to `stdout`/`stderr` up to the policy's
    /// `limits.output_bytes` each, the wall-clock limit enforced by killing the whole sandbox
    /// (status 124, as timeout(1)). Its stdin is /dev/null, whatever `request.stdin` says.
    pub async fn run<O, E>(
        &self,
        request: &CommandRequest,
        stdout: &mut O,
        stderr: &mut E,
    ) -> Result<CommandOutcome, SandboxError>
    where
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        self.run_impl(request, None::<tokio::io::Empty>, stdout, stderr)
            .await
    }

    /// [`Sandbox::run`] with `stdin` fed to the command's stdin (a pipe, closed at `stdin`'s
    /// end of file). A command that exits, or closes its stdin, without reading it all is
    /// fine: what is left is not read. A failure reading `stdin` closes the command's stdin
    /// (logged); the command's outcome is still returned.
    pub async fn run_with_input<I, O, E>(
        &self,
        request: &CommandRequest,
        stdin: I,
        stdout: &mut O,
        stderr: &mut E,
    ) -> Result<CommandOutcome, SandboxError>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        self.run_impl(request, Some(stdin), stdout, stderr).await
    }

    async fn run_impl<I, O, E>(
        &self,
        request: &CommandRequest,
        input: Option<I>,
        stdout: &mut O,
        stderr: &mut E,
    ) -> Result<CommandOutcome, SandboxError>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let limit = self.policy.limits.output_bytes.map_or(u64::MAX, |b| b.0);
        let timeout = request.timeout.or(self.policy.limits.timeout);
        let oom_before = self.job().oom_kill_count();
        let ended_before = self.has_ended();
        let spawned = match self
            .spawn_with(request, input.is_some())
            .instrument(tracing::trace_span!("sandbox.spawn"))
            .await
        {
            // Killed while the command was starting (init gone before it reported the start):
            // the same outcome as a kill a moment later, not an error.
            Err(SandboxError::Ended(_)) if !ended_before => match self.read_kill_reason() {
                Some(reason) => {
                    return Ok(CommandOutcome {
                        status: 128 + libc::SIGKILL,
                        code: None,
                        signal: Some(libc::SIGKILL),
                        reason,
                        start_error: None,
                        stdout: OutputStats::default(),
                        stderr: OutputStats::default(),
                        duration: started.elapsed(),
                    });
                }
                None => return Err(SandboxError::Ended(self.id.clone())),
            },
            other => other?,
        };
        let running = match spawned {
            Ok(r) => r,
            Err((error, status)) => {
                return Ok(CommandOutcome {
                    status,
                    code: None,
                    signal: None,
                    reason: EndReason::Exited,
                    start_error: Some(error),
                    stdout: OutputStats::default(),
                    stderr: OutputStats::default(),
                    duration: started.elapsed(),
                });
            }
        };
        let RunningCommand {
            stdin: in_pipe,
            stdout: out_pipe,
            stderr: err_pipe,
            exit,
            ..
        } = running;
        let feed = async {
            if let (Some(input), Some(pipe)) = (input, in_pipe) {
                feed_stdin(input, pipe).await;
            }
        };
        let pump_out = pump(out_pipe, stdout, limit);
        let pump_err = pump(err_pipe, stderr, limit);
        let ended = async { exit.await.ok() };
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let mut timed_out = false;
        let (exit, out_stats, err_stats) = {
            let waiter = async {
                tokio::select! {
                    e = ended => e,
                    () = deadline => {
                        timed_out = true;
                        // The limit is the sandbox's: everything in it dies at once.
                        let _ = self.write_kill_reason("timeout");
                        let _ = self.job().kill();
                        None
                    }
                }
            };
            let outputs = async { tokio::join!(waiter, pump_out, pump_err) }
                .instrument(tracing::trace_span!("sandbox.wait"));
            // The input is fed alongside, and given up once the command is over and its
            // output drained: a command that never read it must not wait for a reader that
            // may never end.
            tokio::pin!(outputs, feed);
            let mut feeding = true;
            loop {
                tokio::select! {
                    done = &mut outputs => break done,
                    () = &mut feed, if feeding => feeding = false,
                }
            }
        };
        let (code, signal) = exit.unwrap_or((None, Some(libc::SIGKILL)));
        let reason = if timed_out {
            EndReason::Timeout
        } else if exit.is_none() {
            self.read_kill_reason().unwrap_or(EndReason::SandboxEnded)
        } else if signal == Some(libc::SIGKILL)
            && let Some(reason) = self.read_kill_reason()
        {
            // Init reported the command's death before the sandbox-wide kill reached init.
            reason
        } else if signal == Some(libc::SIGKILL) && self.job().oom_kill_count() > oom_before {
            EndReason::Oom
        } else {
            EndReason::Exited
        };
        let status = match (reason, code, signal) {
            (EndReason::Timeout, _, _) => 124,
            (_, Some(c), _) => c,
            (_, None, Some(s)) => 128 + s,
            _ => 1,
        };
        Ok(CommandOutcome {
            status,
            code: if timed_out { None } else { code },
            signal: if timed_out {
                Some(libc::SIGKILL)
            } else {
                signal
            },
            reason,
            start_error: None,
            stdout: out_stats.map_err(io_ctx("read the command's stdout"))?,
            stderr: err_stats.map_err(io_ctx("read the command's stderr"))?,
            duration: started.elapsed(),
        })
    }

    /// Starts a command with its stdout and stderr as pipes, and its stdin a pipe too when
    /// `request.stdin` (else /dev/null). The inner error is why it could not start and the
    /// shell-style status for that (126, 127).
    pub async fn spawn(
        &self,
        request: &CommandRequest,
    ) -> Result<Result<RunningCommand, (String, i32)>, SandboxError> {
        self.spawn_with(request, request.stdin).await
    }

    async fn spawn_with(
        &self,
        request: &CommandRequest,
        stdin_pipe: bool,
    ) -> Result<Result<RunningCommand, (String, i32)>, SandboxError> {
        if self.has_ended() {
            return Err(SandboxError::Ended(self.id.clone()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut env: Vec<(String, String)> = self
            .policy
            .env
            .iter()
            .filter(|(k, _)| !request.env.iter().any(|(rk, _)| rk == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend(request.env.iter().cloned());
        let cwd = request.cwd.clone().unwrap_or_else(|| {
            self.policy
                .filesystem
                .volume_mounts
                .get("workspace")
                .cloned()
                .unwrap_or_else(|| PathBuf::from("/"))
        });
        let (out_tx, out_rx) = pipe::pipe().map_err(io_ctx("create the stdout pipe"))?;
        let (err_tx, err_rx) = pipe::pipe().map_err(io_ctx("create the stderr pipe"))?;
        let (stdin_fd, stdin_tx): (OwnedFd, Option<pipe::Sender>) = if stdin_pipe {
            let (tx, rx) = pipe::pipe().map_err(io_ctx("create the stdin pipe"))?;
            (
                rx.into_blocking_fd().map_err(io_ctx("stdin pipe"))?,
                Some(tx),
            )
        } else {
            (
                fs::File::open("/dev/null")
                    .map_err(io_ctx("open /dev/null"))?
                    .into(),
                None,
            )
        };
        let out_fd = out_tx.into_blocking_fd().map_err(io_ctx("stdout pipe"))?;
        let err_fd = err_tx.into_blocking_fd().map_err(io_ctx("stderr pipe"))?;
        let (start_tx, start_rx) = oneshot::channel();
        let (exit_tx, exit_rx) = oneshot::channel();
        {
            let mut p = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            p.starts.insert(id, start_tx);
            p.exits.insert(id, exit_tx);
        }
        let msg = ToInit::Exec {
            id,
            argv: request.argv.clone(),
            env,
            cwd,
        };
        let fds = [stdin_fd.as_raw_fd(), out_fd.as_raw_fd(), err_fd.as_raw_fd()];
        send_async(&self.control, &msg, &fds)
            .await
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EPIPE) | Some(libc::ECONNRESET) => SandboxError::Ended(self.id.clone()),
                _ => io_ctx("send a command to the sandbox")(e),
            })?;
        // Init has its own copies now; ours would keep the pipes open forever.
        drop((stdin_fd, out_fd, err_fd));
        match start_rx.await {
            Ok(Ok(pid)) => Ok(Ok(RunningCommand {
                id,
                pid,
                stdin: stdin_tx,
                stdout: out_rx,
                stderr: err_rx,
                exit: exit_rx,
            })),
            Ok(Err(e)) => Ok(Err(e)),
            Err(_) => Err(SandboxError::Ended(self.id.clone())),
        }
    }

    /// Sends a signal to a command's process group.
    pub async fn signal(&self, command: &RunningCommand, signal: i32) -> Result<(), SandboxError> {
        self.signal_command(command.handle(), signal).await
    }

    /// Sends a signal to the process group of the command `command` names (one that has
    /// exited is no longer signalled: init forgets a command once it has reaped it).
    pub async fn signal_command(
        &self,
        command: CommandHandle,
        signal: i32,
    ) -> Result<(), SandboxError> {
        self.send_signal(Some(command.id), signal).await
    }

    /// Sends a signal to every running command's process group (a Ctrl-C to forward).
    pub async fn signal_all(&self, signal: i32) -> Result<(), SandboxError> {
        self.send_signal(None, signal).await
    }

    async fn send_signal(&self, id: Option<u64>, signal: i32) -> Result<(), SandboxError> {
        send_async(&self.control, &ToInit::Signal { id, signal }, &[])
            .await
            .map_err(|e| self.send_error(e, "signal a command"))
    }

    /// A failed send on the control socket: the sandbox's end when init is gone.
    fn send_error(&self, e: io::Error, action: &str) -> SandboxError {
        match e.raw_os_error() {
            Some(libc::EPIPE) | Some(libc::ECONNRESET) => SandboxError::Ended(self.id.clone()),
            _ => io_ctx(action)(e),
        }
    }

    /// Sends a file operation to init with a fresh reply pipe (and `content`, a write's
    /// content pipe) and returns the reader of the answer.
    pub(crate) async fn start_file_op(
        &self,
        op: FileOp,
        content: Option<OwnedFd>,
    ) -> Result<ReplyReader, FileError> {
        let ended = || FileError::Ended(self.id.clone());
        if self.has_ended() {
            return Err(ended());
        }
        let io = |action: &'static str| {
            move |source| FileError::Io {
                action: action.into(),
                source,
            }
        };
        let (tx, rx) = pipe::pipe().map_err(io("create a reply pipe"))?;
        crate::files::grow_pipe(rx.as_raw_fd());
        let tx = tx.into_blocking_fd().map_err(io("create a reply pipe"))?;
        let mut fds = vec![tx.as_raw_fd()];
        fds.extend(content.as_ref().map(AsRawFd::as_raw_fd));
        let path = op.path().to_string();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        send_async(&self.control, &ToInit::File { id, op }, &fds)
            .await
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EPIPE) | Some(libc::ECONNRESET) => ended(),
                _ => FileError::Io {
                    action: "send a file operation to the sandbox".into(),
                    source: e,
                },
            })?;
        // Init has its own copies now: ours would keep the pipes open after the child's end.
        drop((tx, content));
        Ok(ReplyReader::new(rx, path, self.end_probe()))
    }

    fn end_probe(&self) -> EndProbe {
        EndProbe {
            id: self.id.clone(),
            init: self.init_pidfd.clone(),
        }
    }

    fn write_kill_reason(&self, reason: &str) -> io::Result<()> {
        fs::write(self.dir.join("kill-reason"), reason)
    }

    /// Why the sandbox was killed (by [`Sandbox::kill`], `sandwatch kill`, a rule, its
    /// wall-clock limit), once it has been.
    pub fn kill_reason(&self) -> Option<EndReason> {
        self.read_kill_reason()
    }

    fn read_kill_reason(&self) -> Option<EndReason> {
        fs::read_to_string(self.dir.join("kill-reason"))
            .ok()
            .map(|s| EndReason::parse(&s))
    }

    /// Kills every process of the sandbox at once; the sandbox is over.
    pub fn kill(&self, reason: EndReason) -> Result<(), SandboxError> {
        let _ = self.write_kill_reason(reason.as_str());
        Ok(self.job().kill()?)
    }

    /// Stops every process of the sandbox (`true`) or lets them go on.
    pub fn freeze(&self, frozen: bool) -> Result<(), SandboxError> {
        Ok(self.job().freeze(frozen)?)
    }

    /// Waits until the sandbox's init is gone (killed, or crashed).
    pub async fn ended(&self) {
        loop {
            let notified = self.shared.ended_notify.notified();
            if self.has_ended() {
                return;
            }
            notified.await;
        }
    }

    /// Kills whatever runs, waits for it to go, removes the cgroups and the ephemeral workspace.
    pub async fn destroy(mut self) -> Result<(), SandboxError> {
        async {
            // The common case never blocks: init's exit is awaited on a pidfd, and its cgroups are
            // empty once it is reaped (it is the pid namespace's init: the kernel has killed and
            // reaped everything else before init's exit completes). Anything slower (a cgroup
            // still draining, a big ephemeral workspace) goes to a blocking thread.
            self.destroyed = true;
            if let Some(r) = self.reader.take() {
                r.abort();
            }
            if let Some(job) = &self.cgroup {
                let _ = job.kill();
            }
            let _ = self.init_pidfd.readable().await;
            let reaped = init_exited(self.init_pidfd.get_ref(), 0);
            let quick = reaped
                && self
                    .cgroup
                    .as_mut()
                    .is_none_or(|job| job.try_remove().unwrap_or(false))
                && fs::read_dir(self.workspace_if_ephemeral())
                    .map_or(true, |mut d| d.next().is_none());
            if quick {
                self.cgroup = None;
                return match fs::remove_dir_all(&self.dir) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        Err(io_ctx(format!("remove {}", self.dir.display()))(e))
                    }
                    _ => Ok(()),
                };
            }
            let id = self.id.clone();
            tokio::task::spawn_blocking(move || self.teardown_after())
                .await
                .map_err(|e| io_ctx(format!("destroy sandbox {id}"))(io::Error::other(e)))?
        }
        .instrument(tracing::trace_span!("sandbox.destroy"))
        .await
    }

    /// The workspace directory when it is ours to remove (inside the sandbox's directory).
    fn workspace_if_ephemeral(&self) -> PathBuf {
        if self.workspace.starts_with(&self.dir) {
            self.workspace.clone()
        } else {
            self.dir.join("workspace")
        }
    }

    fn teardown_checked(&mut self) -> Result<(), SandboxError> {
        self.destroyed = true;
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        if let Some(job) = &self.cgroup {
            let _span = tracing::trace_span!("destroy.kill").entered();
            let _ = job.kill();
        }
        self.teardown_after()
    }

    fn teardown_after(&mut self) -> Result<(), SandboxError> {
        let job = self.cgroup.take();
        tracing::trace_span!("destroy.waitpid").in_scope(|| {
            // The kernel reaps init (the zygote ignores SIGCHLD); its exit includes the pid
            // namespace's teardown, after which the cgroups are empty.
            if !init_exited(self.init_pidfd.get_ref(), 10_000) {
                tracing::warn!("sandbox {}: init still alive 10 s after the kill", self.id);
            }
        });

        let mut result = Ok(());
        if let Some(job) = job
            && let Err(e) = job.remove()
        {
            result = Err(e.into());
        }
        let _span = tracing::trace_span!("destroy.dir").entered();
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != io::ErrorKind::NotFound
            && result.is_ok()
        {
            result = Err(io_ctx(format!("remove {}", self.dir.display()))(e));
        }
        result
    }

    fn teardown(&mut self) {
        if let Err(e) = self.teardown_checked() {
            tracing::warn!("sandbox {}: {e}", self.id);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.destroyed {
            self.teardown();
        }
    }
}

/// Names a running command for [`Sandbox::signal_command`], after its [`RunningCommand`] has
/// gone to [`RunningCommand::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandHandle {
    /// The runner's id for the command, unique in its sandbox.
    pub id: u64,
    /// Pid inside the sandbox.
    pub pid: i32,
}

/// A command that is running, with its pipes.
pub struct RunningCommand {
    id: u64,
    /// Pid inside the sandbox.
    pub pid: i32,
    /// The command's stdin when [`CommandRequest::stdin`] asked for a pipe; dropping it is the
    /// command's end of file. A write fails with `BrokenPipe` once the command closed its end.
    pub stdin: Option<pipe::Sender>,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    exit: oneshot::Receiver<(Option<i32>, Option<i32>)>,
}

impl RunningCommand {
    /// What [`Sandbox::signal_command`] needs, kept after `wait` has taken the command.
    pub fn handle(&self) -> CommandHandle {
        CommandHandle {
            id: self.id,
            pid: self.pid,
        }
    }

    /// Exit code and signal; `None` when the sandbox ended first.
    pub async fn wait(self) -> Option<(Option<i32>, Option<i32>)> {
        self.exit.await.ok()
    }

    /// The command's pipes and its exit apart, for a caller that hands each to its own task.
    pub fn into_parts(self) -> CommandParts {
        CommandParts {
            handle: CommandHandle {
                id: self.id,
                pid: self.pid,
            },
            stdin: self.stdin,
            stdout: self.stdout,
            stderr: self.stderr,
            exit: CommandExit(self.exit),
        }
    }
}

/// A [`RunningCommand`] taken apart ([`RunningCommand::into_parts`]).
pub struct CommandParts {
    pub handle: CommandHandle,
    pub stdin: Option<pipe::Sender>,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    pub exit: CommandExit,
}

/// A command's exit, as a future: exit code and signal, `None` when the sandbox ended first.
pub struct CommandExit(oneshot::Receiver<(Option<i32>, Option<i32>)>);

impl std::future::Future for CommandExit {
    type Output = Option<(Option<i32>, Option<i32>)>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(Result::ok)
    }
}

/// Copies `input` to a command's stdin until its end of file, then closes the pipe. The
/// command closing its end first (it exited, or had read enough) ends the copy quietly.
async fn feed_stdin<I: AsyncRead + Unpin>(mut input: I, mut pipe: pipe::Sender) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("reading a command's input: {e}; closing its stdin");
                return;
            }
        };
        if let Err(e) = pipe.write_all(&buf[..n]).await {
            if e.kind() != io::ErrorKind::BrokenPipe {
                tracing::warn!("writing a command's stdin: {e}");
            }
            return;
        }
    }
}

/// Copies a stream to `sink` up to `limit` bytes, then reads and discards the rest so the
/// writer never blocks on a full pipe.
async fn pump<R, W>(mut from: R, sink: &mut W, limit: u64) -> io::Result<OutputStats>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    let mut stats = OutputStats::default();
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let kept = limit.saturating_sub(stats.bytes).min(n as u64) as usize;
        if kept > 0 {
            sink.write_all(&buf[..kept]).await?;
        }
        if kept < n {
            stats.truncated = true;
        }
        stats.bytes += n as u64;
    }
    sink.flush().await?;
    Ok(stats)
}

struct DirGuard(Option<PathBuf>);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// Whether the process behind `pidfd` has exited, waiting up to `timeout_ms`.
fn init_exited(pidfd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling one descriptor we own.
    unsafe { libc::poll(&mut p, 1, timeout_ms) == 1 }
}

fn c_path(p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        io_ctx(format!("{}: a NUL byte in a path", p.display()))(io::ErrorKind::InvalidInput.into())
    })
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: flag changes on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Has the zygote clone init into new namespaces, maps its ids, hands it the plan, then makes the
/// cgroups and joins init to them while init builds the root. Returns init's host pid and a pidfd on it.
fn start_init(
    opts: &SandboxOptions,
    make_cgroup: impl FnOnce() -> Result<JobCgroup, SandboxError>,
    plan: SetupPlan,
    volume_mounts: &[OwnedFd],
    runner_end: RawFd,
    init_end: OwnedFd,
) -> Result<(i32, OwnedFd, JobCgroup), SandboxError> {
    let clone_span = tracing::trace_span!("init.clone").entered();
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC;
    if plan.private_network {
        flags |= libc::CLONE_NEWNET;
    }
    let zygote = crate::zygote::for_binary(&opts.init_exe).map_err(io_ctx(format!(
        "start the sandbox zygote ({})",
        opts.init_exe.display()
    )))?;
    let (pid, pidfd) = zygote
        .clone_init(flags, &init_end)
        .map_err(io_ctx("clone the sandbox's init into new namespaces"))?;
    drop(init_end);
    drop(clone_span);
    // Until it has its plan, init waits: on any failure it is killed, then the cgroups are
    // removed as they drop.
    let kill_init = |e: SandboxError| {
        // SAFETY: signalling the init we just made (its pidfd pins the pid).
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        e
    };
    let map = format!("0 {} {ID_RANGE}\n", opts.host_id_base);
    tracing::trace_span!("init.handoff")
        .in_scope(|| -> Result<(), SandboxError> {
            for file in ["uid_map", "gid_map"] {
                let path = format!("/proc/{pid}/{file}");
                fs::write(&path, &map).map_err(io_ctx(format!("write {path}")))?;
            }
            Ok(())
        })
        .map_err(kill_init)?;
    // The plan goes first: init builds the root while the cgroups are made and it is joined to
    // them; it runs nothing of the sandbox's before `Joined`.
    let volume_fds: Vec<RawFd> = volume_mounts.iter().map(AsRawFd::as_raw_fd).collect();
    protocol::send(runner_end, &ToInit::Setup(Box::new(plan)), &volume_fds)
        .map_err(io_ctx("send the sandbox's setup plan"))
        .map_err(kill_init)?;
    let _join_span = tracing::trace_span!("init.join").entered();
    let cgroup = make_cgroup().map_err(kill_init)?;
    cgroup
        .add_everywhere(pid as u32)
        .map_err(SandboxError::from)
        .and_then(|()| {
            protocol::send(runner_end, &ToInit::Joined, &[])
                .map_err(io_ctx("tell init it is in its cgroups"))
        })
        // Init builds the root meanwhile: when it gave up on that, it said why before exiting,
        // and that (not "no such process" from the cgroup) is the error.
        .map_err(|e| setup_failure(runner_end, &opts.id).unwrap_or(e))
        .map_err(kill_init)?;
    Ok((pid, pidfd, cgroup))
}

/// The setup failure init reported, if it did, read without waiting.
fn setup_failure(control: RawFd, id: &str) -> Option<SandboxError> {
    let mut pfd = [nix::poll::PollFd::new(
        // SAFETY: the control socket outlives this call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(control) },
        nix::poll::PollFlags::POLLIN,
    )];
    // Init's message is already queued when its exit made the join fail.
    if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO).ok()? == 0 {
        return None;
    }
    let mut buf = Vec::new();
    match protocol::recv::<FromInit>(control, &mut buf) {
        Ok(Some((FromInit::SetupFailed { step, error }, _))) => Some(SandboxError::Setup {
            id: id.to_string(),
            step,
            error,
        }),
        _ => None,
    }
}

async fn send_async(control: &AsyncFd<OwnedFd>, msg: &ToInit, fds: &[RawFd]) -> io::Result<()> {
    loop {
        let mut guard = control.writable().await?;
        match guard.try_io(|fd| protocol::send(fd.as_raw_fd(), msg, fds)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn recv_async(control: &AsyncFd<OwnedFd>, buf: &mut Vec<u8>) -> io::Result<Option<FromInit>> {
    loop {
        let mut guard = control.readable().await?;
        match guard.try_io(|fd| protocol::recv::<FromInit>(fd.as_raw_fd(), buf)) {
            Ok(r) => return r.map(|m| m.map(|(msg, _)| msg)),
            Err(_would_block) => continue,
        }
    }
}

async fn wait_ready(control: &AsyncFd<OwnedFd>, id: &str) -> Result<Vec<String>, SandboxError> {
    let mut buf = Vec::new();
    let setup_error = |step: &str, error: String| SandboxError::Setup {
        id: id.to_string(),
        step: step.to_string(),
        error,
    };
    let reply = tokio::time::timeout(Duration::from_secs(30), recv_async(control, &mut buf))
        .await
        .map_err(|_| setup_error("wait for init", "no answer within 30 s".into()))?
        .map_err(|e| setup_error("wait for init", e.to_string()))?;
    match reply {
        Some(FromInit::Ready { warnings, marks }) => {
            for (mark, ns) in &marks {
                tracing::trace!(target: "sandwatch_runner::init_marks", mark = mark.as_str(), ns);
            }
            Ok(warnings)
        }
        Some(FromInit::SetupFailed { step, error }) => Err(setup_error(&step, error)),
        Some(other) => Err(setup_error(
            "wait for init",
            format!("unexpected {other:?}"),
        )),
        None => Err(setup_error(
            "wait for init",
            "init exited during setup".into(),
        )),
    }
}

async fn read_control(control: Arc<AsyncFd<OwnedFd>>, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    loop {
        let msg = match recv_async(&control, &mut buf).await {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => break,
        };
        let mut p = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        match msg {
            FromInit::Started { id, pid } => {
                if let Some(tx) = p.starts.remove(&id) {
                    let _ = tx.send(Ok(pid));
                }
            }
            FromInit::ExecFailed { id, error, code } => {
                p.exits.remove(&id);
                if let Some(tx) = p.starts.remove(&id) {
                    let _ = tx.send(Err((error, code)));
                }
            }
            FromInit::Exited { id, code, signal } => {
                if let Some(tx) = p.exits.remove(&id) {
                    let _ = tx.send((code, signal));
                }
            }
            FromInit::Ready { .. } | FromInit::SetupFailed { .. } => {}
        }
    }
    // Init is gone: nobody will answer what is pending.
    let mut p = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
    p.starts.clear();
    p.exits.clear();
    shared.ended.store(true, Ordering::Release);
    shared.ended_notify.notify_waiters();
}

/// Kills sandbox `id` of another runner from outside (`sandwatch kill`): the reason is left
/// for its runner to report, then every process in its cgroup dies at once.
pub fn kill_by_id(
    root: &CgroupRoot,
    runtime_dir: &Path,
    id: &str,
    reason: EndReason,
) -> Result<(), SandboxError> {
    let cg = sandbox_cgroup(root, runtime_dir, id)?;
    let _ = fs::write(runtime_dir.join(id).join("kill-reason"), reason.as_str());
    Ok(crate::cgroup::kill_cgroup(&cg)?)
}

/// Freezes or thaws sandbox `id` of another runner from outside, as [`Sandbox::freeze`] does.
pub fn freeze_by_id(
    root: &CgroupRoot,
    runtime_dir: &Path,
    id: &str,
    frozen: bool,
) -> Result<(), SandboxError> {
    let cg = sandbox_cgroup(root, runtime_dir, id)?;
    Ok(crate::cgroup::freeze_cgroup(&cg, frozen)?)
}

fn sandbox_cgroup(
    root: &CgroupRoot,
    runtime_dir: &Path,
    id: &str,
) -> Result<PathBuf, SandboxError> {
    if !valid_id(id) {
        return Err(SandboxError::BadId(id.to_string()));
    }
    let cg = root.mount().join(PARENT).join(id);
    if !runtime_dir.join(id).join("lock").exists() || !cg.is_dir() {
        return Err(SandboxError::Io {
            action: format!("find sandbox {id}"),
            source: io::Error::new(io::ErrorKind::NotFound, "no such running sandbox"),
        });
    }
    Ok(cg)
}

/// `<runtime>/<id>/meta.json`: what a later runner may want to know about a sandbox it finds.
const META_FILE: &str = "meta.json";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SandboxMeta {
    id: String,
    #[serde(default)]
    policy_hash: Option<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    labels: Vec<(String, String)>,
}

/// A sandbox whose runner died, as [`clean_stale`] found it (from its `meta.json`: `None` and
/// no labels when it had none, as a sandbox of an older runner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleSandbox {
    pub id: String,
    pub policy_hash: Option<String>,
    pub profile: Option<String>,
    pub labels: Vec<(String, String)>,
}

/// The id: callers that only report what was cleaned print it as it was.
impl std::fmt::Display for StaleSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

/// Removes what runners that died (SIGKILL, a crash) left behind: their sandboxes' cgroups
/// (killing anything still in them) and directories. A sandbox whose lock can be taken has no
/// runner. Returns the sandboxes cleaned, with what their `meta.json` said.
pub fn clean_stale(root: &CgroupRoot, runtime_dir: &Path) -> Vec<StaleSandbox> {
    let Ok(entries) = fs::read_dir(runtime_dir) else {
        return Vec::new();
    };
    let mut cleaned = Vec::new();
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let dir = entry.path();
        if id.starts_with(".new-") {
            // A runner died while creating one: no cgroup exists for it yet.
            if let Ok(file) = fs::OpenOptions::new().write(true).open(dir.join("lock"))
                && Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok()
            {
                let _ = fs::remove_dir_all(&dir);
            }
            continue;
        }
        if !valid_id(&id) {
            continue;
        }
        let Ok(file) = fs::OpenOptions::new().write(true).open(dir.join("lock")) else {
            continue;
        };
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue; // a live runner holds it
        };
        let meta = fs::read(dir.join(META_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<SandboxMeta>(&bytes).ok());
        let stale = match meta {
            Some(m) => StaleSandbox {
                id: id.clone(),
                policy_hash: m.policy_hash,
                profile: m.profile,
                labels: m.labels,
            },
            None => StaleSandbox {
                id: id.clone(),
                policy_hash: None,
                profile: None,
                labels: Vec::new(),
            },
        };
        let mut hierarchies = vec![root.mount().to_owned()];
        hierarchies.extend(crate::limits::v1_mount_points());
        for h in hierarchies {
            let cg = h.join(PARENT).join(&id);
            if cg.is_dir()
                && let Err(e) = crate::cgroup::remove_cgroup(&cg, Duration::from_secs(5))
            {
                tracing::warn!("stale sandbox {id}: {e}");
            }
        }
        let _ = fs::remove_dir_all(&dir);
        drop(lock);
        cleaned.push(stale);
    }
    cleaned
}
