//! Where each field's values come from in a batch of one of sandwatch's tables (the catalogue in
//! [`crate::fields`] says it in prose): a column as it is (zero copy), or one derived from the
//! batch's columns, the process tree or the sandboxes seen, built once per batch and shared by
//! every rule that reads it.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
    builder::StringBuilder,
    cast::AsArray,
    types::{Float64Type, Int64Type, UInt16Type, UInt32Type, UInt64Type},
};
use sandwatch_schema::Table;

use crate::ast::FieldRef;
use crate::engine::{EngineState, FastMap};

/// How a field's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Float,
    Bool,
    /// An address compared as text, or as a CIDR range by the `*.net` fields.
    Net,
}

/// Falco's kind of each field sandwatch provides.
pub fn kind(field: &FieldRef) -> Kind {
    match field.name.as_str() {
        "evt.rawres"
        | "evt.time"
        | "evt.rawtime"
        | "evt.num"
        | "evt.arg.mode"
        | "evt.arg.fd"
        | "proc.pid"
        | "proc.ppid"
        | "thread.tid"
        | "user.uid"
        | "group.gid"
        | "fd.num"
        | "fd.sport"
        | "fd.cport"
        | "fd.lport"
        | "fd.rport"
        | "fd.port"
        | "proc.duration"
        | "metrics.pids"
        | "metrics.fds"
        | "metrics.net_rx_bytes"
        | "metrics.net_tx_bytes" => Kind::Int,
        "evt.failed"
        | "evt.is_open_read"
        | "evt.is_open_write"
        | "evt.is_open_exec"
        | "evt.refused"
        | "fd.connected"
        | "fd.name_changed"
        | "container.privileged" => Kind::Bool,
        "metrics.cpu_percent"
        | "metrics.memory_mb"
        | "metrics.memory_limit_mb"
        | "metrics.memory_percent"
        | "metrics.disk_mb" => Kind::Float,
        "fd.net" | "fd.snet" | "fd.cnet" | "fd.lnet" | "fd.rnet" => Kind::Net,
        _ => Kind::Str,
    }
}

/// A field's values for every row of a batch.
#[derive(Clone, Debug)]
pub enum Col {
    /// The field has no value on this table.
    Null,
    Str(ArrayRef),
    Int(ArrayRef),
    Float(ArrayRef),
    Bool(ArrayRef),
    /// Several values per row (`proc.aname` without an index: every ancestor; `fd.ip`: either
    /// side): a test holds when it holds for one of them.
    Multi(Arc<Vec<Vec<Arc<str>>>>),
    /// A text column with few distinct values in the batch (event type, process name, sandbox):
    /// a test runs once per distinct value, then rows look their code up.
    Dict(Arc<Dict>),
}

#[derive(Debug)]
pub struct Dict {
    /// Per row: index into `values`.
    pub codes: Vec<u32>,
    /// Distinct values; `None` is null.
    pub values: Vec<Option<String>>,
}

/// Columns with more distinct values than rows / this stay plain text.
const DICT_MAX_SHARE: usize = 8;

fn dict_of(a: &StringArray) -> Option<Dict> {
    let n = a.len();
    let limit = (n / DICT_MAX_SHARE).max(16);
    let mut index: FastMap<&str, u32> = FastMap::default();
    let mut values: Vec<Option<String>> = Vec::new();
    let mut codes = Vec::with_capacity(n);
    let mut null_code = None;
    let mut last: Option<(&str, u32)> = None;
    for i in 0..n {
        if !a.is_valid(i) {
            let c = *null_code.get_or_insert_with(|| {
                values.push(None);
                (values.len() - 1) as u32
            });
            codes.push(c);
            continue;
        }
        let v = a.value(i);
        if let Some((prev, c)) = last
            && prev == v
        {
            codes.push(c);
            continue;
        }
        let c = match index.get(v) {
            Some(c) => *c,
            None => {
                if values.len() >= limit {
                    return None;
                }
                values.push(Some(v.to_owned()));
                let c = (values.len() - 1) as u32;
                index.insert(v, c);
                c
            }
        };
        last = Some((v, c));
        codes.push(c);
    }
    Some(Dict { codes, values })
}

impl Col {
    /// The value at `row` as Falco's output shows it; `None` renders as `<NA>`.
    pub fn display(&self, row: usize) -> Option<String> {
        match self {
            Col::Null => None,
            Col::Str(a) => {
                let a = a.as_string::<i32>();
                a.is_valid(row).then(|| a.value(row).to_owned())
            }
            Col::Int(a) => {
                let a = a.as_primitive::<Int64Type>();
                a.is_valid(row).then(|| a.value(row).to_string())
            }
            Col::Float(a) => {
                let a = a.as_primitive::<Float64Type>();
                a.is_valid(row).then(|| format!("{:.1}", a.value(row)))
            }
            Col::Bool(a) => {
                let a = a.as_boolean();
                a.is_valid(row).then(|| a.value(row).to_string())
            }
            Col::Multi(v) => {
                let vals = &v[row];
                (!vals.is_empty()).then(|| vals.join(","))
            }
            Col::Dict(d) => d.values[d.codes[row] as usize].clone(),
        }
    }
}

#[derive(Clone)]
struct OwnExec {
    comm: String,
    args: String,
    cwd: Option<String>,
}

impl OwnExec {
    fn cmdline(&self) -> String {
        if self.args.is_empty() {
            self.comm.clone()
        } else {
            format!("{} {}", self.comm, self.args)
        }
    }
}

/// One batch's columns, resolved lazily by field.
pub struct BatchColumns<'a> {
    pub table: Table,
    pub batch: &'a RecordBatch,
    /// `evt.num` of the batch's first row.
    pub first_num: u64,
    cache: FastMap<String, Col>,
}

const BASE_UID: u32 = 1_000_000_000;
const UID_RANGE: u32 = 65536;

fn ints<I: IntoIterator<Item = Option<i64>>>(it: I) -> Col {
    Col::Int(Arc::new(Int64Array::from_iter(it)))
}

fn strs<I: IntoIterator<Item = Option<S>>, S: AsRef<str>>(it: I) -> Col {
    let mut b = StringBuilder::new();
    for v in it {
        b.append_option(v);
    }
    Col::Str(Arc::new(b.finish()))
}

fn bools<I: IntoIterator<Item = Option<bool>>>(it: I) -> Col {
    Col::Bool(Arc::new(BooleanArray::from_iter(it)))
}

fn floats<I: IntoIterator<Item = Option<f64>>>(it: I) -> Col {
    Col::Float(Arc::new(Float64Array::from_iter(it)))
}

const OPEN_FAMILY: [&str; 4] = ["open", "openat", "openat2", "creat"];

impl<'a> BatchColumns<'a> {
    pub fn new(table: Table, batch: &'a RecordBatch, first_num: u64) -> Self {
        Self {
            table,
            batch,
            first_num,
            cache: FastMap::default(),
        }
    }

    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn get(&mut self, field: &FieldRef, key: &str, state: &EngineState) -> Col {
        if let Some(c) = self.cache.get(key) {
            return c.clone();
        }
        let c = self.resolve(field, state);
        self.cache.insert(key.to_owned(), c.clone());
        c
    }

    fn raw(&self, name: &str) -> Option<&'a ArrayRef> {
        self.batch.column_by_name(name)
    }

    fn raw_str(&self, name: &str) -> Option<&'a StringArray> {
        self.raw(name).map(|c| c.as_string::<i32>())
    }

    fn str_col(&self, name: &str) -> Col {
        self.raw(name).map_or(Col::Null, |c| Col::Str(c.clone()))
    }

    /// A text column that usually has few distinct values per batch, as a [`Dict`] when it does.
    fn dict_col(&self, name: &str) -> Col {
        let Some(c) = self.raw(name) else {
            return Col::Null;
        };
        match dict_of(c.as_string::<i32>()) {
            Some(d) => Col::Dict(Arc::new(d)),
            None => Col::Str(c.clone()),
        }
    }

    /// An integer column of any width, as Int64.
    fn int_col(&self, name: &str) -> Col {
        let Some(c) = self.raw(name) else {
            return Col::Null;
        };
        use arrow_schema::DataType as D;
        match c.data_type() {
            D::Int64 => Col::Int(c.clone()),
            D::UInt32 => ints(
                c.as_primitive::<UInt32Type>()
                    .iter()
                    .map(|v| v.map(i64::from)),
            ),
            D::UInt16 => ints(
                c.as_primitive::<UInt16Type>()
                    .iter()
                    .map(|v| v.map(i64::from)),
            ),
            D::UInt64 => ints(
                c.as_primitive::<UInt64Type>()
                    .iter()
                    .map(|v| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))),
            ),
            D::Int32 => ints(
                c.as_primitive::<arrow_array::types::Int32Type>()
                    .iter()
                    .map(|v| v.map(i64::from)),
            ),
            D::Timestamp(..) => ints(
                c.as_primitive::<arrow_array::types::TimestampNanosecondType>()
                    .iter(),
            ),
            _ => Col::Null,
        }
    }

    fn int_at(&self, name: &str) -> Vec<Option<i64>> {
        match self.int_col(name) {
            Col::Int(a) => a.as_primitive::<Int64Type>().iter().collect(),
            _ => vec![None; self.rows()],
        }
    }

    fn str_at(&self, name: &str) -> Vec<Option<&'a str>> {
        match self.raw_str(name) {
            Some(a) => a.iter().collect(),
            None => vec![None; self.rows()],
        }
    }

    fn is_event_table(&self) -> bool {
        matches!(
            self.table,
            Table::ProcessEvents | Table::FileEvents | Table::NetworkEvents | Table::SyscallEvents
        )
    }

    fn resolve(&self, field: &FieldRef, state: &EngineState) -> Col {
        if let Some(addr) = crate::engine::compile::resolved_field(field) {
            let f = FieldRef {
                name: addr.into(),
                index: None,
            };
            return self.resolve(&f, state);
        }
        let n = self.rows();
        let t = self.table;
        if !self.is_event_table() && t != Table::SandboxMetrics {
            return Col::Null;
        }
        match field.name.as_str() {
            // Sandbox and container identity, every table.
            "container.id" | "sandbox.id" => self.dict_col("sandbox_id"),
            "sandbox.profile" | "sandbox.policy" => {
                let ids = self.str_at("sandbox_id");
                let profile = field.name == "sandbox.profile";
                strs(ids.iter().map(|id| {
                    let info = state.sandboxes.get(*id.as_ref()?)?;
                    if profile {
                        info.profile.clone()
                    } else {
                        Some(info.policy_hash.clone())
                    }
                }))
            }
            "container.privileged" => {
                // sandwatch never runs a sandbox privileged; a watched cgroup that is not one
                // of the runner's sandboxes is unknown.
                let ids = self.str_at("sandbox_id");
                bools(
                    ids.iter()
                        .map(|id| id.and_then(|id| state.sandboxes.get(id)).map(|_| false)),
                )
            }
            name if name.starts_with("container.image") || name.starts_with("k8s.") => Col::Null,
            // Metric samples.
            "metrics.cpu_percent" => self.float_col("cpu_usage_percent"),
            "metrics.memory_mb" => self.float_col("memory_usage_mb"),
            "metrics.memory_limit_mb" => self.float_col("memory_limit_mb"),
            "metrics.disk_mb" => self.float_col("disk_usage_mb"),
            "metrics.memory_percent" => {
                let (Col::Float(used), Col::Float(limit)) = (
                    self.float_col("memory_usage_mb"),
                    self.float_col("memory_limit_mb"),
                ) else {
                    return Col::Null;
                };
                let (used, limit) = (
                    used.as_primitive::<Float64Type>(),
                    limit.as_primitive::<Float64Type>(),
                );
                floats((0..n).map(|i| {
                    (used.is_valid(i) && limit.is_valid(i) && limit.value(i) > 0.0)
                        .then(|| used.value(i) * 100.0 / limit.value(i))
                }))
            }
            "metrics.pids" => self.int_col("process_count"),
            "metrics.fds" => self.int_col("file_descriptors"),
            "metrics.net_rx_bytes" => self.int_col("network_rx_bytes"),
            "metrics.net_tx_bytes" => self.int_col("network_tx_bytes"),
            _ if t == Table::SandboxMetrics => Col::Null,
            // Event fields.
            "evt.type" => self.dict_col("event"),
            "evt.res" => strs(self.int_at("ret").iter().map(|r| r.map(errno_name))),
            "evt.rawres" => self.int_col("ret"),
            "evt.failed" => bools(self.int_at("ret").iter().map(|r| r.map(|r| r < 0))),
            "evt.time" | "evt.rawtime" => self.int_col("time"),
            "evt.hostname" => self.str_col("host"),
            "evt.dir" => strs((0..n).map(|_| Some("<"))),
            "evt.num" => ints((0..n).map(|i| Some((self.first_num + i as u64) as i64))),
            "evt.refused" => match self.raw("refused") {
                Some(c) => Col::Bool(c.clone()),
                None => bools((0..n).map(|_| Some(false))),
            },
            "proc.name" => self.dict_col("comm"),
            "proc.exe" | "proc.exepath" => self.dict_col("exe"),
            "proc.pid" => self.int_col("pid"),
            "proc.ppid" => self.int_col("ppid"),
            "thread.tid" => self.int_col("tid"),
            "user.uid" => self.int_col("uid"),
            "group.gid" => self.int_col("gid"),
            "user.name" => {
                let uids = self.int_at("uid");
                strs(uids.iter().map(|u| user_name(state, (*u)? as u32)))
            }
            "proc.tty"
            | "user.loginuid"
            | "proc.is_exe_from_memfd"
            | "proc.is_exe_upper_layer"
            | "thread.cap_effective"
            | "thread.cap_permitted"
            | "thread.cap_inheritable" => {
                let pids = self.int_at("pid");
                let tree = &state.tree;
                let node = |i: usize| tree.get(pids[i]? as u32);
                match field.name.as_str() {
                    "proc.tty" => ints((0..n).map(|i| node(i)?.tty.map(i64::from))),
                    "user.loginuid" => ints((0..n).map(|i| node(i)?.loginuid)),
                    "proc.is_exe_from_memfd" => bools((0..n).map(|i| node(i)?.exe_from_memfd)),
                    "proc.is_exe_upper_layer" => bools((0..n).map(|i| node(i)?.exe_written)),
                    cap => {
                        let k = match cap {
                            "thread.cap_effective" => 0,
                            "thread.cap_permitted" => 1,
                            _ => 2,
                        };
                        strs((0..n).map(|i| node(i)?.caps[k].map(cap_names)))
                    }
                }
            }
            "proc.cmdline" | "proc.args" | "proc.cwd" | "proc.duration" => {
                let pids = self.int_at("pid");
                let times = self.int_at("time");
                let tree = &state.tree;
                let node = |i: usize| tree.get(pids[i]? as u32);
                // A successful exec row speaks for itself: the tree holds the process's state
                // after the whole batch, which a second exec in the same batch has replaced.
                let own = self.own_exec();
                match field.name.as_str() {
                    "proc.cmdline" => strs((0..n).map(|i| match &own[i] {
                        Some(e) => Some(e.cmdline()),
                        None => node(i)?.cmdline(),
                    })),
                    "proc.args" => strs((0..n).map(|i| match &own[i] {
                        Some(e) => Some(e.args.clone()),
                        None => node(i)?.args.as_deref().map(str::to_owned),
                    })),
                    "proc.cwd" => strs((0..n).map(|i| match &own[i] {
                        Some(e) => e.cwd.clone(),
                        None => node(i)?.cwd.as_deref().map(str::to_owned),
                    })),
                    _ => ints((0..n).map(|i| Some(times[i]? - node(i)?.start_ns?))),
                }
            }
            "proc.pname" | "proc.pexe" | "proc.pexepath" | "proc.pcmdline" => {
                let ppids = self.int_at("ppid");
                let tree = &state.tree;
                let parent = |i: usize| tree.get(ppids[i]? as u32);
                match field.name.as_str() {
                    "proc.pname" => strs((0..n).map(|i| parent(i)?.comm.clone())),
                    "proc.pcmdline" => strs((0..n).map(|i| parent(i)?.cmdline())),
                    _ => strs((0..n).map(|i| parent(i)?.exe.clone())),
                }
            }
            "proc.aname" | "proc.aexe" | "proc.aexepath" => self.ancestors(field, state),
            _ => self.resolve_table_field(field, state),
        }
    }

    /// Per row: what a successful exec row of `process_events` says of the new program.
    fn own_exec(&self) -> Vec<Option<OwnExec>> {
        let n = self.rows();
        if self.table != Table::ProcessEvents {
            return vec![None; n];
        }
        let events = self.str_at("event");
        let ret = self.int_at("ret");
        let comm = self.str_at("comm");
        let cwd = self.str_at("cwd");
        let argv = self
            .raw("argv")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>());
        (0..n)
            .map(|i| {
                if !matches!(events[i], Some("execve" | "execveat")) || ret[i] != Some(0) {
                    return None;
                }
                let args = argv
                    .filter(|a| a.is_valid(i))
                    .map(|a| {
                        let v = a.value(i);
                        let v = v.as_string::<i32>();
                        (1..v.len())
                            .filter(|j| v.is_valid(*j))
                            .map(|j| v.value(j))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                Some(OwnExec {
                    comm: comm[i].unwrap_or_default().to_owned(),
                    args,
                    cwd: cwd[i].map(str::to_owned),
                })
            })
            .collect()
    }

    fn float_col(&self, name: &str) -> Col {
        self.raw(name).map_or(Col::Null, |c| Col::Float(c.clone()))
    }

    fn ancestors(&self, field: &FieldRef, state: &EngineState) -> Col {
        let n = self.rows();
        let name_of = |node: &crate::engine::tree::ProcNode| -> Option<Arc<str>> {
            if field.name == "proc.aname" {
                node.comm.clone()
            } else {
                node.exe.clone()
            }
        };
        let own = if field.name == "proc.aname" {
            self.str_at("comm")
        } else {
            self.str_at("exe")
        };
        let ppids = self.int_at("ppid");
        let tree = &state.tree;
        match field
            .index
            .as_deref()
            .map(|i| i.parse::<u32>().unwrap_or(0))
        {
            Some(0) => strs(own.iter().copied()),
            Some(k) => strs((0..n).map(|i| {
                tree.ancestor(ppids[i].map(|p| p as u32), k)
                    .and_then(name_of)
            })),
            // Every ancestor from the parent up, as Falco's `proc.aname` without an argument.
            None => Col::Multi(Arc::new(
                (0..n)
                    .map(|i| {
                        let mut out = Vec::new();
                        let mut next = ppids[i].map(|p| p as u32);
                        while let Some(p) = next {
                            let Some(node) = tree.get(p) else { break };
                            if let Some(v) = name_of(node) {
                                out.push(v);
                            }
                            if out.len() >= 32 || node.ppid == Some(p) {
                                break;
                            }
                            next = node.ppid;
                        }
                        out
                    })
                    .collect(),
            )),
        }
    }

    /// Fields whose meaning depends on the table.
    fn resolve_table_field(&self, field: &FieldRef, state: &EngineState) -> Col {
        let n = self.rows();
        match (self.table, field.name.as_str()) {
            // Files.
            (Table::FileEvents, "evt.is_open_read" | "evt.is_open_write" | "evt.is_open_exec") => {
                let events = self.str_at("event");
                let flags = self.int_at("flags");
                let mode = self.int_at("mode");
                let which = field.name.as_str();
                bools((0..n).map(|i| {
                    let ev = events[i]?;
                    if !OPEN_FAMILY.contains(&ev) {
                        return Some(false);
                    }
                    if ev == "creat" {
                        return Some(match which {
                            "evt.is_open_write" => true,
                            "evt.is_open_exec" => mode[i].is_some_and(|m| m & 0o111 != 0),
                            _ => false,
                        });
                    }
                    let f = flags[i].unwrap_or(0);
                    let acc = f & 0o3;
                    Some(match which {
                        "evt.is_open_read" => acc == 0 || acc == 2,
                        "evt.is_open_write" => acc == 1 || acc == 2,
                        _ => f & 0o100 != 0 && mode[i].is_some_and(|m| m & 0o111 != 0),
                    })
                }))
            }
            (_, "evt.is_open_read" | "evt.is_open_write" | "evt.is_open_exec") => {
                bools((0..n).map(|_| Some(false)))
            }
            (Table::FileEvents, "evt.arg.flags") => self.str_col("flags_text"),
            (Table::FileEvents, "evt.arg.mode") => self.int_col("mode"),
            (
                Table::FileEvents,
                "evt.arg.name" | "evt.arg.path" | "evt.arg.oldpath" | "evt.arg.target" | "fd.name"
                | "fd.nameraw",
            ) => self.str_col("path"),
            (Table::FileEvents, "evt.arg.newpath" | "evt.arg.linkpath") => self.str_col("path2"),
            (Table::FileEvents, "evt.arg.uid") => self.id_args_of(&self.int_at("owner_uid"), state),
            (Table::FileEvents, "fd.directory" | "fd.filename") => {
                let paths = self.str_at("path");
                let dir = field.name == "fd.directory";
                strs(paths.iter().map(|p| {
                    let p = (*p)?;
                    let cut = p.rfind('/')?;
                    Some(if dir {
                        if cut == 0 { "/" } else { &p[..cut] }
                    } else {
                        &p[cut + 1..]
                    })
                }))
            }
            (Table::FileEvents, "fd.typechar") => strs((0..n).map(|_| Some("f"))),
            (Table::FileEvents, "fd.type") => strs((0..n).map(|_| Some("file"))),
            (Table::FileEvents, "fd.num") => {
                let (events, ret) = (self.str_at("event"), self.int_at("ret"));
                ints((0..n).map(|i| {
                    let ev = events[i]?;
                    (OPEN_FAMILY.contains(&ev) && ret[i]? >= 0).then_some(ret[i]?)
                }))
            }
            // Processes.
            (Table::ProcessEvents, "evt.arg.filename") => self.str_col("filename"),
            (Table::ProcessEvents, "evt.arg.uid") => self.id_args(state),
            (Table::ProcessEvents, "evt.arg.request") => {
                let req = self.int_at("ptrace_request");
                strs(req.iter().map(|r| r.map(ptrace_name)))
            }
            // Syscalls.
            (Table::SyscallEvents, "evt.arg.cmd") => {
                let events = self.str_at("event");
                let args = self
                    .raw("args")
                    .and_then(|c| c.as_any().downcast_ref::<ListArray>());
                strs((0..n).map(|i| {
                    if events[i]? != "bpf" {
                        return None;
                    }
                    let a = args?;
                    if !a.is_valid(i) {
                        return None;
                    }
                    let v = a.value(i);
                    let v = v.as_primitive::<UInt64Type>();
                    (!v.is_empty()).then(|| bpf_cmd_name(v.value(0)))
                }))
            }
            // Network.
            (Table::NetworkEvents, _) => self.network_field(field),
            _ => Col::Null,
        }
    }

    /// `evt.arg.uid` of chown rows: the uid, by number and by name.
    fn id_args_of(&self, uids: &[Option<i64>], state: &EngineState) -> Col {
        Col::Multi(Arc::new(
            uids.iter()
                .map(|u| u.map(|u| uid_values(u, state)).unwrap_or_default())
                .collect(),
        ))
    }

    /// `evt.arg.uid` of the setuid family: every uid argument (setresuid(-1, 0, -1) asks for
    /// root as much as setuid(0) does), each by number and by name (Falco shows a name).
    fn id_args(&self, state: &EngineState) -> Col {
        let Some(list) = self
            .raw("id_args")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
        else {
            return Col::Null;
        };
        Col::Multi(Arc::new(
            (0..self.rows())
                .map(|i| {
                    if !list.is_valid(i) {
                        return Vec::new();
                    }
                    let v = list.value(i);
                    let v = v.as_primitive::<Int64Type>();
                    v.iter()
                        .flatten()
                        // -1 means "unchanged".
                        .filter(|x| *x != -1 && *x != u32::MAX as i64)
                        .flat_map(|x| uid_values(x, state))
                        .collect()
                })
                .collect(),
        ))
    }

    fn network_field(&self, field: &FieldRef) -> Col {
        let n = self.rows();
        let events = self.str_at("event");
        let ret = self.int_at("ret");
        let family = self.str_at("family");
        let saddr = self.str_at("saddr");
        let daddr = self.str_at("daddr");
        let sport = self.int_at("sport");
        let dport = self.int_at("dport");
        // (local, remote) sides of row i: accept rows hold the client in saddr.
        let side = |i: usize, local: bool| -> (Option<&str>, Option<i64>) {
            match events[i] {
                Some("accept" | "accept4") => {
                    if local {
                        (daddr[i], dport[i])
                    } else {
                        (saddr[i], sport[i])
                    }
                }
                Some("bind" | "listen") => {
                    if local {
                        (saddr[i], sport[i])
                    } else {
                        (None, None)
                    }
                }
                _ => {
                    if local {
                        (saddr[i], sport[i])
                    } else {
                        (daddr[i], dport[i])
                    }
                }
            }
        };
        let addr_text = |a: Option<&str>| a.map(str::to_owned);
        match field.name.as_str() {
            "evt.arg.domain" => strs(family.iter().map(|f| f.map(af_name))),
            "evt.arg.fd" | "fd.num" => self.int_col("fd"),
            "fd.l4proto" => self.dict_col("protocol"),
            "fd.typechar" | "fd.type" => {
                let char_form = field.name == "fd.typechar";
                strs(family.iter().map(|f| {
                    Some(match (f.as_deref()?, char_form) {
                        ("inet", true) => "4",
                        ("inet6", true) => "6",
                        ("unix", true) => "u",
                        ("inet", false) => "ipv4",
                        ("inet6", false) => "ipv6",
                        ("unix", false) => "unix",
                        _ => return None,
                    })
                }))
            }
            "fd.sockfamily" => strs(family.iter().map(|f| match f.as_deref()? {
                "inet" | "inet6" => Some("ip"),
                "unix" => Some("unix"),
                _ => None,
            })),
            "fd.name" | "fd.nameraw" => strs((0..n).map(|i| {
                let (s, d) = (saddr[i], daddr[i]);
                if s.is_none() && d.is_none() {
                    return None;
                }
                let part = |a: Option<&str>, p: Option<i64>| match (a, p) {
                    (Some(a), Some(p)) if a.contains(':') => format!("[{a}]:{p}"),
                    (Some(a), Some(p)) => format!("{a}:{p}"),
                    (Some(a), None) => a.to_owned(),
                    (None, _) => String::new(),
                };
                Some(format!("{}->{}", part(s, sport[i]), part(d, dport[i])))
            })),
            "fd.sip" | "fd.snet" => strs(daddr.iter().map(|a| addr_text(*a))),
            "fd.sport" => self.int_col("dport"),
            "fd.cip" | "fd.cnet" => strs(saddr.iter().map(|a| addr_text(*a))),
            "fd.cport" => self.int_col("sport"),
            "fd.lip" | "fd.lnet" => strs((0..n).map(|i| addr_text(side(i, true).0))),
            "fd.rip" | "fd.rnet" => strs((0..n).map(|i| addr_text(side(i, false).0))),
            "fd.lport" => ints((0..n).map(|i| side(i, true).1)),
            "fd.rport" => ints((0..n).map(|i| side(i, false).1)),
            "fd.ip" | "fd.net" => Col::Multi(Arc::new(
                (0..n)
                    .map(|i| {
                        [saddr[i], daddr[i]]
                            .into_iter()
                            .flatten()
                            .map(Arc::from)
                            .collect()
                    })
                    .collect(),
            )),
            "fd.port" => Col::Multi(Arc::new(
                (0..n)
                    .map(|i| {
                        [sport[i], dport[i]]
                            .into_iter()
                            .flatten()
                            .map(|p| Arc::from(p.to_string()))
                            .collect()
                    })
                    .collect(),
            )),
            // A datagram sent to a named destination gives the socket a new tuple.
            "fd.name_changed" => {
                bools((0..n).map(|i| {
                    Some(matches!(events[i]?, "sendto" | "sendmsg") && daddr[i].is_some())
                }))
            }
            "fd.connected" => bools((0..n).map(|i| {
                let r = ret[i]?;
                Some(match events[i]? {
                    // EINPROGRESS: a non-blocking connect under way.
                    "connect" => r == 0 || r == -115,
                    "accept" | "accept4" => r >= 0,
                    "sendto" | "sendmsg" => r >= 0 && daddr[i].is_none(),
                    _ => false,
                })
            })),
            _ => Col::Null,
        }
    }
}

/// A capability mask as Falco shows it: the names of its bits, space-separated.
fn cap_names(mask: u64) -> String {
    const NAMES: [&str; 41] = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ];
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| {
            NAMES
                .get(b)
                .map_or_else(|| format!("CAP_{b}"), |n| (*n).to_owned())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `evt.res`: SUCCESS, or the errno's name.
pub fn errno_name(ret: i64) -> String {
    if ret >= 0 {
        return "SUCCESS".into();
    }
    let code = i32::try_from(-ret).unwrap_or(0);
    let e = nix::errno::Errno::from_raw(code);
    if e == nix::errno::Errno::UnknownErrno {
        format!("E{code}")
    } else {
        format!("{e:?}")
    }
}

fn af_name(family: &str) -> String {
    match family {
        "inet" => "AF_INET",
        "inet6" => "AF_INET6",
        "unix" => "AF_UNIX",
        "packet" => "AF_PACKET",
        "netlink" => "AF_NETLINK",
        "vsock" => "AF_VSOCK",
        "unspec" => "AF_UNSPEC",
        _ => return format!("AF_{}", family.to_ascii_uppercase()),
    }
    .to_owned()
}

fn ptrace_name(req: i64) -> String {
    match req {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        3 => "PTRACE_PEEKUSR",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSR",
        7 => "PTRACE_CONT",
        8 => "PTRACE_KILL",
        9 => "PTRACE_SINGLESTEP",
        12 => "PTRACE_GETREGS",
        13 => "PTRACE_SETREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        24 => "PTRACE_SYSCALL",
        0x4200 => "PTRACE_SETOPTIONS",
        0x4206 => "PTRACE_SEIZE",
        0x4207 => "PTRACE_INTERRUPT",
        0x4208 => "PTRACE_LISTEN",
        other => return other.to_string(),
    }
    .to_owned()
}

fn bpf_cmd_name(cmd: u64) -> String {
    const NAMES: [&str; 37] = [
        "BPF_MAP_CREATE",
        "BPF_MAP_LOOKUP_ELEM",
        "BPF_MAP_UPDATE_ELEM",
        "BPF_MAP_DELETE_ELEM",
        "BPF_MAP_GET_NEXT_KEY",
        "BPF_PROG_LOAD",
        "BPF_OBJ_PIN",
        "BPF_OBJ_GET",
        "BPF_PROG_ATTACH",
        "BPF_PROG_DETACH",
        "BPF_PROG_TEST_RUN",
        "BPF_PROG_GET_NEXT_ID",
        "BPF_MAP_GET_NEXT_ID",
        "BPF_PROG_GET_FD_BY_ID",
        "BPF_MAP_GET_FD_BY_ID",
        "BPF_OBJ_GET_INFO_BY_FD",
        "BPF_PROG_QUERY",
        "BPF_RAW_TRACEPOINT_OPEN",
        "BPF_BTF_LOAD",
        "BPF_BTF_GET_FD_BY_ID",
        "BPF_TASK_FD_QUERY",
        "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
        "BPF_MAP_FREEZE",
        "BPF_BTF_GET_NEXT_ID",
        "BPF_MAP_LOOKUP_BATCH",
        "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
        "BPF_MAP_UPDATE_BATCH",
        "BPF_MAP_DELETE_BATCH",
        "BPF_LINK_CREATE",
        "BPF_LINK_UPDATE",
        "BPF_LINK_GET_FD_BY_ID",
        "BPF_LINK_GET_NEXT_ID",
        "BPF_ENABLE_STATS",
        "BPF_ITER_CREATE",
        "BPF_LINK_DETACH",
        "BPF_PROG_BIND_MAP",
        "BPF_TOKEN_CREATE",
    ];
    usize::try_from(cmd)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| cmd.to_string(), |s| (*s).to_owned())
}

/// A uid argument as the job gave it (its own namespace's id), and the name that id has.
fn uid_values(uid: i64, state: &EngineState) -> Vec<Arc<str>> {
    let mut v = vec![Arc::from(uid.to_string())];
    if let Ok(u) = u32::try_from(uid)
        && let Some(name) = state.users.get(&u)
    {
        v.push(Arc::from(name.as_str()));
    }
    v
}

/// `user.name`: a sandbox's ids are mapped to host ids from [`BASE_UID`]; the name is the one
/// the sandbox sees for its own id (its /etc is the host's, read-only).
fn user_name(state: &EngineState, uid: u32) -> Option<String> {
    let id = if (BASE_UID..BASE_UID + UID_RANGE).contains(&uid) {
        uid - BASE_UID
    } else {
        uid
    };
    state.users.get(&id).cloned()
}
