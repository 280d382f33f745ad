//! The catalogue of fields sandwatch can provide, under Falco's names, and where each one's data
//! lives in sandwatch's tables. A rule is evaluable only if every field of its expanded condition
//! is here; [`availability`] gives the reason when one is not.
//!
//! Tables: P = `process_events`, F = `file_events`, N = `network_events`, S = `syscall_events`,
//! SB = `sandboxes` (joined on `sandbox_id`). "Tree" means the evaluator rebuilds the process tree
//! from `process_events` (clone rows name a parent's `comm`/`exe`; exec rows give a process's
//! `comm`, `exe`, `argv`, `cwd`; every row's `ppid` links a child to its parent) and reads the
//! value from the process's or an ancestor's latest row; it is null for a process whose exec or
//! clone was not watched (the sandbox's first process's parent is the runner, outside the watch).
//!
//! | field | tables | from |
//! |---|---|---|
//! | `evt.type` | P F N S | `event` |
//! | `evt.res` | P F N S | `ret`: `SUCCESS` if ≥ 0, else the errno's name (`ENOENT`) |
//! | `evt.rawres` | P F N S | `ret` |
//! | `evt.failed` | P F N S | `ret` < 0 |
//! | `evt.time`, `evt.rawtime` | P F N S | `time` |
//! | `evt.hostname` | P F N S | `host` |
//! | `evt.dir` | P F N S | constant `<`: the probes record syscall exits only, so `evt.dir = <` is true and `evt.dir = >` false |
//! | `evt.num` | P F N S | the evaluator's row counter, from 1 (Falco's is the engine's event counter too; never 0) |
//! | `evt.is_open_read`, `evt.is_open_write` | F | `flags` & O_ACCMODE of open/openat/openat2/creat rows; false on other rows |
//! | `evt.is_open_exec` | F | open-family rows with `O_CREAT` in `flags` and an execute bit in `mode` (Falco: a file created executable) |
//! | `evt.arg.flags` | F | `flags_text` (`O_WRONLY\|O_CREAT`) |
//! | `evt.arg.mode` | F | `mode` |
//! | `evt.arg.name`, `evt.arg.path`, `evt.arg.oldpath`, `evt.arg.target` | F | `path` |
//! | `evt.arg.newpath`, `evt.arg.linkpath` | F | `path2` |
//! | `evt.arg.filename` | P | `filename` (exec) |
//! | `evt.arg.uid` | P F | `id_args[0]` (setuid family), `owner_uid` (chown family) |
//! | `evt.arg.request` | P | `ptrace_request`, rendered as its `PTRACE_*` name |
//! | `evt.arg.domain` | N | `family`, rendered as `AF_INET`, `AF_INET6`, `AF_UNIX`, `AF_PACKET`, ... |
//! | `evt.arg.fd` | N | `fd` |
//! | `evt.arg.cmd` | S | `args[0]` of `bpf` rows, rendered as its `BPF_*` command name |
//! | `proc.name` | P F N S | `comm` |
//! | `proc.exe`, `proc.exepath` | P F N S | `exe` (the executable's path: Falco's `proc.exe` is argv[0], usually the same) |
//! | `proc.cmdline` | Tree | `comm` + `argv[1..]` of the process's exec row |
//! | `proc.args` | Tree | `argv[1..]` joined by spaces |
//! | `proc.cwd` | Tree | `cwd` of the exec row (best effort) |
//! | `proc.pid`, `proc.ppid`, `thread.tid` | P F N S | `pid`, `ppid`, `tid` (host pids) |
//! | `proc.pname`, `proc.pexe`, `proc.pexepath`, `proc.pcmdline` | Tree | the parent's (`ppid`) `comm`, `exe`, `exe`, `comm` + `argv[1..]` |
//! | `proc.aname[n]`, `proc.aexe[n]`, `proc.aexepath[n]` | Tree | the n-th ancestor's `comm`/`exe` (n = 0 the process itself; no index: any ancestor) |
//! | `user.uid`, `group.gid` | P F N S | `uid`, `gid` (host ids: a sandbox's root is 1000000000) |
//! | `fd.name`, `fd.nameraw` | F N | F: `path` as the process gave it (not resolved); N: `saddr:sport->daddr:dport` |
//! | `fd.directory`, `fd.filename` | F | directory part and last component of `path` |
//! | `fd.typechar`, `fd.type` | F N | F: `f`/`file`; N: `family` inet → `4`/`ipv4`, inet6 → `6`/`ipv6`, unix → `u`/`unix` |
//! | `fd.sockfamily` | N | `family`: `ip` or `unix` |
//! | `fd.num` | F N | F: `ret` of open rows; N: `fd` |
//! | `fd.sip`, `fd.sport` | N | `daddr`, `dport` (connect: the destination; accept: the local side: the server either way) |
//! | `fd.cip`, `fd.cport` | N | `saddr`, `sport` (the client either way) |
//! | `fd.lip`, `fd.lport`, `fd.rip`, `fd.rport` | N | local/remote side: connect, sendto: `saddr`/`daddr`; accept: `daddr`/`saddr`; bind, listen: `saddr` local |
//! | `fd.ip`, `fd.port` | N | either side (`saddr`/`daddr`, `sport`/`dport`) |
//! | `fd.net`, `fd.snet`, `fd.cnet`, `fd.lnet`, `fd.rnet` | N | the same addresses, compared as CIDR ranges |
//! | `fd.l4proto` | N | `protocol` (`tcp`, `udp`, `raw`, …) |
//! | `container.id`, `sandbox.id` | P F N S | `sandbox_id` (never `host`: sandwatch watches sandboxes and named cgroups) |
//! | `sandbox.profile` | P F N S, SB | `profile` of the sandbox's `created` row |
//! | `sandbox.policy` | P F N S, SB | `policy_hash` of the sandbox's `created` row |
//! | `evt.refused` | S | `refused` (the policy's seccomp deny-list refused the call); false elsewhere |
//! | `user.name` | P F N S | the name /etc/passwd gives `uid` (a sandbox's ids are the host's minus 1000000000: the name the sandbox itself sees) |
//! | `proc.duration` | Tree | ns since the process's first fork or exec row |
//! | `fd.sip.name`, `fd.cip.name`, `fd.rip.name`, `fd.lip.name` | N | the address, compared with what the rule's names resolve to (as Falco does; resolved in the background at load and every 10 minutes) |
//! | `proc.tty` | Tree | `tty` of the process's exec row (the terminal's device number, 0 for none) |
//! | `user.loginuid` | Tree | `loginuid` of the exec row (-1: never set) |
//! | `thread.cap_effective`, `thread.cap_permitted`, `thread.cap_inheritable` | Tree | `cap_*` of the exec row, rendered as Falco does (`CAP_SYS_ADMIN CAP_...`); changes after exec (capset) are not seen |
//! | `proc.is_exe_from_memfd` | Tree | `exe_from_memfd` of the exec row |
//! | `proc.is_exe_upper_layer` | Tree | `exe_written_in_sandbox` of the exec row: the executable changed after the watch began (sandwatch's copy-up: a file the job wrote) |
//! | `fd.name_changed` | N | sendto/sendmsg rows naming a destination (the datagram's tuple is new) |
//! | `fd.connected` | N | connect that succeeded (or is in progress), accept, sendto/sendmsg on a connected socket |
//! | `container.privileged` | P F N S | false for the runner's sandboxes (never privileged); null for other watched cgroups |
//! | `container.image.*`, `k8s.*` | — | always empty: sandboxes have no image and no cluster (Falco's value outside containers) |
//! | `metrics.*` | SM | `sandbox_metrics` (rules with `source: sandbox_metrics`): `cpu_percent`, `memory_mb`, `memory_limit_mb`, `memory_percent` (used / limit × 100), `disk_mb`, `net_rx_bytes`, `net_tx_bytes`, `pids`, `fds` |
//!
//! Fields only in a rule's `output` are not needed to evaluate it: like Falco, output renders a
//! field it has no value for as `<NA>`.

use crate::{ast::FieldRef, ruleset::EventSource};

/// Which of a field's forms are valid: Falco rejects `proc.aname[x]`-style arguments on fields
/// that take none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    None,
    /// `proc.aname` alone or `proc.aname[n]` with n a number.
    OptionalNumber,
}

/// Every field sandwatch provides, with its argument form (the table above says where from).
const PROVIDED: &[(&str, Arg)] = &[
    ("evt.type", Arg::None),
    ("evt.res", Arg::None),
    ("evt.rawres", Arg::None),
    ("evt.failed", Arg::None),
    ("evt.time", Arg::None),
    ("evt.rawtime", Arg::None),
    ("evt.hostname", Arg::None),
    ("evt.dir", Arg::None),
    ("evt.num", Arg::None),
    ("evt.is_open_read", Arg::None),
    ("evt.is_open_write", Arg::None),
    ("evt.is_open_exec", Arg::None),
    ("evt.arg.flags", Arg::None),
    ("evt.arg.mode", Arg::None),
    ("evt.arg.name", Arg::None),
    ("evt.arg.path", Arg::None),
    ("evt.arg.oldpath", Arg::None),
    ("evt.arg.target", Arg::None),
    ("evt.arg.newpath", Arg::None),
    ("evt.arg.linkpath", Arg::None),
    ("evt.arg.filename", Arg::None),
    ("evt.arg.uid", Arg::None),
    ("evt.arg.request", Arg::None),
    ("evt.arg.domain", Arg::None),
    ("evt.arg.fd", Arg::None),
    ("evt.arg.cmd", Arg::None),
    ("proc.name", Arg::None),
    ("proc.exe", Arg::None),
    ("proc.exepath", Arg::None),
    ("proc.cmdline", Arg::None),
    ("proc.args", Arg::None),
    ("proc.cwd", Arg::None),
    ("proc.pid", Arg::None),
    ("proc.ppid", Arg::None),
    ("thread.tid", Arg::None),
    ("proc.pname", Arg::None),
    ("proc.pexe", Arg::None),
    ("proc.pexepath", Arg::None),
    ("proc.pcmdline", Arg::None),
    ("proc.aname", Arg::OptionalNumber),
    ("proc.aexe", Arg::OptionalNumber),
    ("proc.aexepath", Arg::OptionalNumber),
    ("user.uid", Arg::None),
    ("group.gid", Arg::None),
    ("fd.name", Arg::None),
    ("fd.nameraw", Arg::None),
    ("fd.directory", Arg::None),
    ("fd.filename", Arg::None),
    ("fd.typechar", Arg::None),
    ("fd.type", Arg::None),
    ("fd.sockfamily", Arg::None),
    ("fd.num", Arg::None),
    ("fd.sip", Arg::None),
    ("fd.sport", Arg::None),
    ("fd.cip", Arg::None),
    ("fd.cport", Arg::None),
    ("fd.lip", Arg::None),
    ("fd.lport", Arg::None),
    ("fd.rip", Arg::None),
    ("fd.rport", Arg::None),
    ("fd.ip", Arg::None),
    ("fd.port", Arg::None),
    ("fd.net", Arg::None),
    ("fd.snet", Arg::None),
    ("fd.cnet", Arg::None),
    ("fd.lnet", Arg::None),
    ("fd.rnet", Arg::None),
    ("fd.l4proto", Arg::None),
    ("container.id", Arg::None),
    ("sandbox.id", Arg::None),
    ("sandbox.profile", Arg::None),
    ("sandbox.policy", Arg::None),
    ("evt.refused", Arg::None),
    ("user.name", Arg::None),
    ("proc.duration", Arg::None),
    ("fd.connected", Arg::None),
    ("fd.name_changed", Arg::None),
    ("proc.tty", Arg::None),
    ("user.loginuid", Arg::None),
    ("thread.cap_effective", Arg::None),
    ("thread.cap_permitted", Arg::None),
    ("thread.cap_inheritable", Arg::None),
    ("proc.is_exe_from_memfd", Arg::None),
    ("proc.is_exe_upper_layer", Arg::None),
    ("fd.sip.name", Arg::None),
    ("fd.cip.name", Arg::None),
    ("fd.rip.name", Arg::None),
    ("fd.lip.name", Arg::None),
    ("container.privileged", Arg::None),
];

/// Fields of Falco's that describe things sandwatch's sandboxes do not have: always empty here,
/// as they are in Falco for a process outside any container or cluster. A comparison on them is
/// false (and its negation true), so rules using them evaluate, as Falco's do on a plain host.
const ALWAYS_EMPTY: &[&str] = &["container.image", "k8s."];

/// Metric sample fields (rules with `source: sandbox_metrics`, on the `sandbox_metrics` table).
const METRICS: &[&str] = &[
    "metrics.cpu_percent",
    "metrics.memory_mb",
    "metrics.memory_limit_mb",
    "metrics.memory_percent",
    "metrics.disk_mb",
    "metrics.net_rx_bytes",
    "metrics.net_tx_bytes",
    "metrics.pids",
    "metrics.fds",
];

/// Fields a metric rule may also use besides [`METRICS`]: which sandbox.
const METRICS_IDENTITY: &[&str] = &[
    "container.id",
    "sandbox.id",
    "sandbox.profile",
    "sandbox.policy",
];

/// Why whole families of Falco fields have no data in sandwatch, by name prefix.
const MISSING_FAMILIES: &[(&str, &str)] = &[
    (
        "container.mount",
        "sandwatch records no container mount table",
    ),
    (
        "container.privileged",
        "sandwatch has no privileged containers' flag (sandboxes are never privileged, but other watched cgroups may be)",
    ),
    ("container.", "sandwatch has no container runtime metadata"),
    ("user.", "the tables hold numeric uids only, not user names"),
    (
        "group.",
        "the tables hold numeric gids only, not group names",
    ),
    ("proc.env", "the probes do not record the environment"),
    ("proc.vpid", "the tables hold host pids only"),
    ("proc.sname", "the probes do not record sessions"),
    ("proc.vpgid", "the probes do not record process groups"),
    (
        "proc.is_vpgid_leader",
        "the probes do not record process groups",
    ),
    (
        "proc.duration",
        "the tables do not record when a process started",
    ),
    (
        "proc.exe_ino",
        "the probes do not record the executable's inode",
    ),
    (
        "proc.is_exe",
        "the probes do not record where the executable lives (overlay layer, memfd)",
    ),
    ("evt.buffer", "the probes do not record I/O buffers"),
    ("evt.arg", "the probes do not record this syscall argument"),
    (
        "fd.connected",
        "the tables do not record a socket's connection state",
    ),
    ("fd.", "the tables have no such file descriptor property"),
];

/// Whether a rule of `source` can use `field`; `Err` holds the reason, naming the field.
pub fn availability_in(field: &FieldRef, source: EventSource) -> Result<(), String> {
    let name = field.name.as_str();
    match source {
        EventSource::SandboxMetrics => {
            if METRICS.contains(&name) || METRICS_IDENTITY.contains(&name) {
                Ok(())
            } else {
                Err(format!(
                    "field {field}: a sandbox_metrics rule reads metrics.* and sandbox identity fields only"
                ))
            }
        }
        EventSource::Syscall => availability(field),
    }
}

/// Whether sandwatch can provide `field` for syscall-source rules; `Err` holds the reason,
/// naming the field.
pub fn availability(field: &FieldRef) -> Result<(), String> {
    let name = field.name.as_str();
    if ALWAYS_EMPTY.iter().any(|p| name.starts_with(p)) {
        return Ok(());
    }
    if METRICS.contains(&name) {
        return Err(format!(
            "field {field}: metrics fields need `source: sandbox_metrics`"
        ));
    }
    if let Some(&(_, arg)) = PROVIDED.iter().find(|(n, _)| *n == name) {
        return match (arg, &field.index) {
            (_, None) => Ok(()),
            (Arg::OptionalNumber, Some(i)) if i.parse::<u32>().is_ok() => Ok(()),
            (Arg::OptionalNumber, Some(i)) => {
                Err(format!("field {field}: {i:?} is not an ancestor number"))
            }
            (Arg::None, Some(_)) => Err(format!("field {field}: {name} takes no argument")),
        };
    }
    let why = MISSING_FAMILIES
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map_or("sandwatch does not provide it", |(_, why)| why);
    Err(format!("field {field}: {why}"))
}
