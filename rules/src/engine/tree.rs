//! The process tree the tree fields (`proc.cmdline`, `proc.pname`, `proc.aname[n]`, ...) read:
//! who each watched process is (name, executable, arguments, working directory) and who its
//! parent is, learned from `process_events` batches as they pass.
//!
//! A process's exec row sets what it is; a process first seen without one (a fork that has not
//! executed) inherits its parent's, as Falco's does. Exits are reaped after the batch that holds
//! them has been evaluated, so that the exit row and its batch-mates still see the process.

use std::sync::Arc;

use arrow_array::{
    Array, BooleanArray, Int64Array, ListArray, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt32Array, UInt64Array, cast::AsArray,
};

use crate::engine::FastMap;

/// Processes are forgotten past this many (exit rows lost to a full ring buffer must not make
/// the tree grow without bound); the oldest-seen half goes.
const TREE_CAP: usize = 1 << 18;

/// How long an exited process is remembered: rows of other tables from before its exit may
/// arrive after the exit row (tables are batched apart).
const REAP_AFTER_NS: i64 = 5_000_000_000;

#[derive(Clone, Debug, Default)]
pub struct ProcNode {
    pub comm: Option<Arc<str>>,
    pub exe: Option<Arc<str>>,
    /// `argv[1..]` joined by spaces (Falco's `proc.args`).
    pub args: Option<Arc<str>>,
    pub cwd: Option<Arc<str>>,
    pub ppid: Option<u32>,
    /// When the process started (its fork or exec row, whichever was seen first), for
    /// `proc.duration`.
    pub start_ns: Option<i64>,
    /// What its exec row said of its credentials and executable (null when not read).
    pub tty: Option<u32>,
    pub caps: [Option<u64>; 3],
    pub loginuid: Option<i64>,
    pub exe_from_memfd: Option<bool>,
    pub exe_written: Option<bool>,
    /// The tree's clock when the process was last seen, for trimming.
    seen: u64,
}

impl ProcNode {
    /// Falco's `proc.cmdline`: the name, then the arguments.
    pub fn cmdline(&self) -> Option<String> {
        let comm = self.comm.as_deref()?;
        Some(match self.args.as_deref() {
            Some(a) if !a.is_empty() => format!("{comm} {a}"),
            _ => comm.to_owned(),
        })
    }
}

#[derive(Default)]
pub struct ProcessTree {
    nodes: FastMap<u32, ProcNode>,
    /// Exited processes and when, oldest first: forgotten [`REAP_AFTER_NS`] later.
    exited: std::collections::VecDeque<(u32, i64)>,
    /// The latest event time seen.
    now_ns: i64,
    clock: u64,
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    batch.column_by_name(name).map(|c| c.as_string::<i32>())
}

fn u32s<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a UInt32Array> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
}

/// The exec row's credential and executable columns.
struct ExecFacts<'a> {
    tty: Option<&'a UInt32Array>,
    caps: [Option<&'a UInt64Array>; 3],
    loginuid: Option<&'a Int64Array>,
    memfd: Option<&'a BooleanArray>,
    written: Option<&'a BooleanArray>,
}

impl<'a> ExecFacts<'a> {
    fn of(batch: &'a RecordBatch) -> Self {
        fn col<'b, T: 'static>(batch: &'b RecordBatch, name: &str) -> Option<&'b T> {
            batch.column_by_name(name)?.as_any().downcast_ref::<T>()
        }
        Self {
            tty: col(batch, "tty"),
            caps: [
                col(batch, "cap_effective"),
                col(batch, "cap_permitted"),
                col(batch, "cap_inheritable"),
            ],
            loginuid: col(batch, "loginuid"),
            memfd: col(batch, "exe_from_memfd"),
            written: col(batch, "exe_written_in_sandbox"),
        }
    }

    fn apply(&self, i: usize, node: &mut ProcNode) {
        fn at<A: Array>(a: Option<&A>, i: usize) -> Option<&A> {
            a.filter(|a| a.is_valid(i))
        }
        node.tty = at(self.tty, i).map(|a| a.value(i));
        for (k, c) in self.caps.iter().enumerate() {
            node.caps[k] = at(*c, i).map(|a| a.value(i));
        }
        node.loginuid = at(self.loginuid, i).map(|a| a.value(i));
        node.exe_from_memfd = at(self.memfd, i).map(|a| a.value(i));
        node.exe_written = at(self.written, i).map(|a| a.value(i));
    }
}

fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

impl ProcessTree {
    pub fn get(&self, pid: u32) -> Option<&ProcNode> {
        self.nodes.get(&pid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The `n`-th ancestor of a process whose parent is `ppid` (n = 1: the parent).
    pub fn ancestor(&self, ppid: Option<u32>, n: u32) -> Option<&ProcNode> {
        let mut node = self.nodes.get(&ppid?)?;
        for _ in 1..n {
            node = self.nodes.get(&node.ppid?)?;
        }
        Some(node)
    }

    /// Learns from a `process_events` batch, in row order.
    pub fn update(&mut self, batch: &RecordBatch) {
        let (Some(pid), Some(event), Some(comm)) = (
            u32s(batch, "pid"),
            strings(batch, "event"),
            strings(batch, "comm"),
        ) else {
            return;
        };
        let ppid = u32s(batch, "ppid");
        let tid = u32s(batch, "tid");
        let exe = strings(batch, "exe");
        let cwd = strings(batch, "cwd");
        let time = batch
            .column_by_name("time")
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>());
        let ret = batch
            .column_by_name("ret")
            .map(|c| c.as_primitive::<arrow_array::types::Int64Type>());
        let argv = batch
            .column_by_name("argv")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>());
        let facts = ExecFacts::of(batch);
        if self.nodes.len() > TREE_CAP {
            let cut = self.clock.saturating_sub(TREE_CAP as u64 / 2);
            self.nodes.retain(|_, n| n.seen >= cut);
        }
        for i in 0..batch.num_rows() {
            self.clock += 1;
            let p = pid.value(i);
            let parent = ppid.and_then(|a| a.is_valid(i).then(|| a.value(i)));
            let now = time.map(|t| t.value(i));
            if let Some(t) = now {
                self.now_ns = self.now_ns.max(t);
            }
            let known = self.nodes.contains_key(&p);
            if !known {
                // First sight: what the parent is (a fork that has not executed yet).
                let inherited = parent
                    .and_then(|pp| self.nodes.get(&pp))
                    .cloned()
                    .unwrap_or_default();
                self.nodes.insert(
                    p,
                    ProcNode {
                        comm: Some(Arc::from(comm.value(i))),
                        exe: exe.and_then(|e| opt_str(e, i)).map(Arc::from),
                        args: inherited.args,
                        cwd: inherited.cwd,
                        ppid: parent,
                        start_ns: now,
                        tty: inherited.tty,
                        caps: inherited.caps,
                        loginuid: inherited.loginuid,
                        exe_from_memfd: inherited.exe_from_memfd,
                        exe_written: inherited.exe_written,
                        seen: self.clock,
                    },
                );
            }
            let node = self.nodes.get_mut(&p).expect("inserted above");
            node.seen = self.clock;
            if parent.is_some() {
                node.ppid = parent;
            }
            let ok = ret.is_some_and(|r| r.is_valid(i) && r.value(i) == 0);
            match event.value(i) {
                "execve" | "execveat" if ok => {
                    node.comm = Some(Arc::from(comm.value(i)));
                    node.exe = exe.and_then(|e| opt_str(e, i)).map(Arc::from);
                    node.cwd = cwd
                        .and_then(|c| opt_str(c, i))
                        .map(Arc::from)
                        .or(node.cwd.take());
                    node.args = argv.and_then(|a| {
                        a.is_valid(i).then(|| {
                            let v = a.value(i);
                            let v = v.as_string::<i32>();
                            let parts: Vec<&str> = (1..v.len())
                                .filter(|j| v.is_valid(*j))
                                .map(|j| v.value(j))
                                .collect();
                            Arc::from(parts.join(" "))
                        })
                    });
                    if node.start_ns.is_none() {
                        node.start_ns = now;
                    }
                    facts.apply(i, node);
                }
                // A thread's end is not its process's.
                "exit" if tid.is_none_or(|t| t.value(i) == p) => {
                    self.exited.push_back((p, now.unwrap_or(self.now_ns)))
                }
                _ => {}
            }
        }
    }

    /// Forgets the processes that exited long enough ago.
    pub fn reap(&mut self) {
        while let Some(&(p, at)) = self.exited.front() {
            if at > self.now_ns - REAP_AFTER_NS {
                break;
            }
            self.exited.pop_front();
            // The pid may have been reused since: a live successor keeps its node.
            if self
                .nodes
                .get(&p)
                .is_some_and(|n| n.start_ns.is_some_and(|s| s > at))
            {
                continue;
            }
            self.nodes.remove(&p);
        }
    }
}
