//! Saved investigations: the questions an analyst asks first, as SQL over the catalog.
//! `sandwatch sql --saved NAME [--param KEY=VALUE]...` runs one; parameters are bound as
//! values (`$sandbox`), never pasted into the text.

use crate::AnalyticsError;

/// One saved investigation.
#[derive(Clone, Copy, Debug)]
pub struct SavedQuery {
    pub name: &'static str,
    pub description: &'static str,
    /// Parameters it needs, with what each is.
    pub params: &'static [(&'static str, &'static str)],
    pub sql: &'static str,
}

pub const SAVED: &[SavedQuery] = &[
    SavedQuery {
        name: "activity",
        description: "per sandbox: profile, start and end, how it ended, events of each kind, \
                      executables run, outbound destinations, alerts",
        params: &[],
        sql: ACTIVITY,
    },
    SavedQuery {
        name: "process-tree",
        description: "the process tree of one sandbox: who started whom, with the command line \
                      and how each process ended",
        params: &[("sandbox", "the sandbox id")],
        sql: PROCESS_TREE,
    },
    SavedQuery {
        name: "outbound",
        description: "outbound destinations (connects and datagrams to a named address, not \
                      loopback) per sandbox, with attempts, successes and the processes",
        params: &[],
        sql: OUTBOUND,
    },
    SavedQuery {
        name: "writes-outside-workspace",
        description: "files written, created, removed, renamed or re-permissioned outside \
                      /workspace and /tmp (absolute paths; /dev and /proc/self left out), \
                      with the result",
        params: &[],
        sql: WRITES_OUTSIDE_WORKSPACE,
    },
    SavedQuery {
        name: "alert-evidence",
        description: "every alert with the event row it rests on",
        params: &[],
        sql: ALERT_EVIDENCE,
    },
];

pub fn find(name: &str) -> Option<&'static SavedQuery> {
    SAVED.iter().find(|q| q.name == name)
}

/// The saved query `name`, once every parameter it needs is among the `given` names.
pub fn resolve(name: &str, given: &[&str]) -> Result<&'static SavedQuery, AnalyticsError> {
    let q = find(name).ok_or_else(|| AnalyticsError::UnknownSaved {
        name: name.to_owned(),
        known: SAVED.iter().map(|q| q.name.to_owned()).collect(),
    })?;
    if let Some((param, what)) = q.params.iter().find(|(p, _)| !given.contains(p)) {
        return Err(AnalyticsError::MissingParam {
            query: q.name.into(),
            param: (*param).into(),
            what: (*what).into(),
        });
    }
    Ok(q)
}

const ACTIVITY: &str = "
WITH life AS (
    SELECT sandbox_id,
           min(time) AS started,
           max(time) FILTER (WHERE event = 'destroyed') AS ended,
           max(profile) AS profile,
           max(reason) FILTER (WHERE event = 'killed') AS killed_for,
           last_value(exit_code ORDER BY time) FILTER (WHERE event = 'exited') AS exit_code
    FROM sandboxes GROUP BY sandbox_id
), ev AS (
    SELECT sandbox_id,
           count(*) FILTER (WHERE kind = 'process') AS process,
           count(*) FILTER (WHERE kind = 'file') AS file,
           count(*) FILTER (WHERE kind = 'network') AS network,
           count(*) FILTER (WHERE kind = 'syscall') AS syscall,
           count(DISTINCT exe) AS executables
    FROM events GROUP BY sandbox_id
), net AS (
    SELECT sandbox_id, count(DISTINCT daddr || ':' || CAST(dport AS VARCHAR)) AS destinations
    FROM network_events
    WHERE event IN ('connect', 'sendto', 'sendmsg') AND daddr IS NOT NULL
      AND NOT cidr_match(daddr, '127.0.0.0/8') AND NOT cidr_match(daddr, '::1')
    GROUP BY sandbox_id
), al AS (
    SELECT sandbox_id, count(*) AS alerts, array_agg(DISTINCT rule) AS rules
    FROM alerts GROUP BY sandbox_id
)
SELECT life.sandbox_id, profile, started, ended, killed_for, exit_code,
       coalesce(process, 0) AS process, coalesce(file, 0) AS file,
       coalesce(network, 0) AS network, coalesce(syscall, 0) AS syscall,
       coalesce(executables, 0) AS executables, coalesce(destinations, 0) AS destinations,
       coalesce(alerts, 0) AS alerts, rules
FROM life
LEFT JOIN ev ON ev.sandbox_id = life.sandbox_id
LEFT JOIN net ON net.sandbox_id = life.sandbox_id
LEFT JOIN al ON al.sandbox_id = life.sandbox_id
ORDER BY started";

// A process is a host pid seen in the sandbox; its parent is its `ppid` (a clone's
// `child_pid` is the sandbox's own pid namespace). Roots: processes whose parent is not in the
// sandbox (its init). Rows come out in tree order through the path of zero-padded pids.
const PROCESS_TREE: &str = "
WITH RECURSIVE procs AS (
    SELECT pid,
           first_value(ppid ORDER BY time) AS ppid,
           min(time) AS first_seen,
           last_value(exe ORDER BY time) AS exe,
           last_value(array_to_string(argv, ' ') ORDER BY time)
               FILTER (WHERE event IN ('execve', 'execveat') AND ret = 0) AS command,
           max(exit_code) FILTER (WHERE event = 'exit') AS exit_code,
           max(exit_signal) FILTER (WHERE event = 'exit') AS exit_signal
    FROM process_events WHERE sandbox_id = $sandbox GROUP BY pid
), tree AS (
    SELECT pid, ppid, 0 AS depth, lpad(CAST(pid AS VARCHAR), 10, '0') AS path
    FROM procs WHERE ppid IS NULL OR ppid NOT IN (SELECT pid FROM procs)
    UNION ALL
    SELECT p.pid, p.ppid, t.depth + 1, t.path || '/' || lpad(CAST(p.pid AS VARCHAR), 10, '0')
    FROM procs p JOIN tree t ON p.ppid = t.pid
    WHERE t.depth < 64
)
SELECT repeat('  ', tree.depth) || CAST(tree.pid AS VARCHAR) AS process, tree.ppid,
       procs.first_seen, procs.exe, procs.command, procs.exit_code, procs.exit_signal
FROM tree JOIN procs ON procs.pid = tree.pid
ORDER BY tree.path";

const OUTBOUND: &str = "
SELECT sandbox_id, daddr, dport, protocol,
       count(*) AS attempts,
       count(*) FILTER (WHERE ret >= 0 OR ret = -115) AS succeeded,
       min(time) AS first_seen, max(time) AS last_seen,
       array_agg(DISTINCT comm) AS processes
FROM network_events
WHERE event IN ('connect', 'sendto', 'sendmsg') AND daddr IS NOT NULL
  AND family IN ('inet', 'inet6')
  AND NOT cidr_match(daddr, '127.0.0.0/8') AND NOT cidr_match(daddr, '::1')
GROUP BY sandbox_id, daddr, dport, protocol
ORDER BY attempts DESC, sandbox_id, daddr, dport";

// Writes: an open family call asking for write access or creation, and the calls that change a
// path (O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0o100).
const WRITES_OUTSIDE_WORKSPACE: &str = "
SELECT sandbox_id, path, event,
       coalesce(errno_name(ret), 'ok') AS result,
       count(*) AS times, min(time) AS first_seen,
       array_agg(DISTINCT comm) AS processes
FROM file_events
WHERE (
        (event IN ('open', 'openat', 'openat2') AND ((flags & 3) <> 0 OR (flags & 64) <> 0))
        OR event IN ('creat', 'unlink', 'unlinkat', 'rmdir', 'rename', 'renameat', 'renameat2',
                     'chmod', 'fchmodat', 'fchmodat2', 'chown', 'lchown', 'fchownat',
                     'mkdir', 'mkdirat', 'link', 'linkat', 'symlink', 'symlinkat', 'mknod',
                     'mknodat', 'truncate')
      )
  AND path LIKE '/%'
  AND path <> '/workspace' AND path NOT LIKE '/workspace/%'
  AND path <> '/tmp' AND path NOT LIKE '/tmp/%'
  AND path NOT LIKE '/dev/%' AND path NOT LIKE '/proc/self/%'
GROUP BY sandbox_id, path, event, result
ORDER BY first_seen";

const ALERT_EVIDENCE: &str = "
SELECT a.time AS alert_time, a.sandbox_id, a.rule, a.priority, a.actions,
       e.kind, e.time AS event_time, e.pid, e.ppid, e.comm, e.exe, e.event, e.ret,
       a.output
FROM alerts a
LEFT JOIN events e
  ON e.sandbox_id = a.sandbox_id AND e.time = a.event_time AND e.tid = a.event_tid
 AND e.kind || '_events' = a.event_table
ORDER BY a.time";
