//! Where each field's values come from in a batch of one of sandwatch's tables (the catalogue in
//! [`crate::fields`] says it in prose): a column as it is, or one derived from the batch's
//! columns, the process tree or the sandboxes seen, built once per batch and shared by every
//! rule that reads it. Text whose values repeat (event types, programs, paths) or follow from a
//! small key per row (a return code, a process) is a [`Dict`], its values computed once per
//! distinct key; integers are widened once, so leaves read plain vectors.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float64Array, ListArray, RecordBatch, StringArray,
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
    /// Integers of any width, widened once per batch: a leaf reads them with no per-row
    /// check of the array's type or null bitmap.
    Int(Arc<Vec<Option<i64>>>),
    Float(ArrayRef),
    Bool(Arc<Vec<Option<bool>>>),
    /// Several values per row (`proc.aname` without an index: every ancestor; `fd.ip`: either
    /// side): a test holds when it holds for one of them.
    Multi(Arc<Vec<Vec<Arc<str>>>>),
    /// A text column as codes into its distinct values: a test runs at most once per distinct
    /// value and leaf, rows look their code up (event types, programs, paths and whatever is
    /// derived from a small key per row, such as a return code or a process).
    Dict(Arc<Dict>),
}

#[derive(Debug, Default)]
pub struct Dict {
    /// Per row: the code of its value (shared by the columns derived value by value).
    pub codes: Arc<Vec<u32>>,
    /// The distinct values, one after the other: one allocation per column, not per value.
    text: String,
    /// Per code: its value's byte range in `text`; `None` is null.
    spans: Vec<Option<(u32, u32)>>,
}

impl Dict {
    /// A dictionary of `values` (by code) over rows of `codes`.
    pub fn new<S: AsRef<str>>(
        codes: Vec<u32>,
        values: impl IntoIterator<Item = Option<S>>,
    ) -> Self {
        let mut d = Dict {
            codes: Arc::new(codes),
            ..Dict::default()
        };
        for v in values {
            d.push(v);
        }
        d
    }

    /// Adds a value; its code.
    fn push(&mut self, v: Option<impl AsRef<str>>) -> u32 {
        let span = v.map(|v| {
            let start = self.text.len();
            self.text.push_str(v.as_ref());
            let at = |n: usize| u32::try_from(n).expect("a dictionary's text is under 4 GiB");
            (at(start), at(self.text.len()))
        });
        self.spans.push(span);
        u32::try_from(self.spans.len() - 1).expect("fewer than 2^32 values")
    }

    /// How many distinct values.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The value of `code` (`None`: null).
    pub fn value(&self, code: usize) -> Option<&str> {
        self.spans[code].map(|(a, b)| &self.text[a as usize..b as usize])
    }

    /// The value at `row`.
    pub fn at(&self, row: usize) -> Option<&str> {
        self.value(self.codes[row] as usize)
    }

    /// The same rows, each value mapped through `f` (computed once per distinct value).
    fn map<S: AsRef<str>>(&self, mut f: impl FnMut(&str) -> Option<S>) -> Dict {
        let mut d = Dict {
            codes: self.codes.clone(),
            ..Dict::default()
        };
        for c in 0..self.len() {
            d.push(self.value(c).and_then(&mut f));
        }
        d
    }
}

/// A text column whose value follows from a small key per row (a return code, a process, a
/// path): `value` runs once per distinct key, rows keep the key's code. A row without a key is
/// null.
fn keyed<K: std::hash::Hash + Eq + Copy, S: AsRef<str>>(
    rows: usize,
    key: impl Fn(usize) -> Option<K>,
    mut value: impl FnMut(K) -> Option<S>,
) -> Col {
    let mut index: FastMap<K, u32> = FastMap::default();
    let mut dict = Dict::default();
    let mut codes = Vec::with_capacity(rows);
    let mut null_code = None;
    let mut last: Option<(K, u32)> = None;
    for i in 0..rows {
        let Some(k) = key(i) else {
            let c = *null_code.get_or_insert_with(|| dict.push(None::<&str>));
            codes.push(c);
            continue;
        };
        // Runs of one key are common (a job's burst of opens): skip the hash lookup.
        if let Some((prev, c)) = last
            && prev == k
        {
            codes.push(c);
            continue;
        }
        let c = match index.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => *e.get(),
            std::collections::hash_map::Entry::Vacant(e) => *e.insert(dict.push(value(k))),
        };
        last = Some((k, c));
        codes.push(c);
    }
    dict.codes = Arc::new(codes);
    Col::Dict(Arc::new(dict))
}

/// One value for every row.
fn constant(rows: usize, v: &str) -> Col {
    keyed(rows, |_| Some(()), |()| Some(v))
}

/// An integer column of the batch, widened (absent: every row null).
struct Ints(Option<Arc<Vec<Option<i64>>>>);

impl Ints {
    #[inline]
    fn get(&self, i: usize) -> Option<i64> {
        self.0.as_ref().and_then(|v| v[i])
    }
}

/// An integer array of any width as Int64 values (a u64 beyond i64 saturates).
fn widen(c: &ArrayRef) -> Option<Arc<Vec<Option<i64>>>> {
    fn each<T: arrow_array::ArrowPrimitiveType>(
        c: &ArrayRef,
        f: impl Fn(T::Native) -> i64,
    ) -> Vec<Option<i64>> {
        let a = c.as_primitive::<T>();
        let v = a.values();
        if a.null_count() == 0 {
            v.iter().map(|x| Some(f(*x))).collect()
        } else {
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| f(v[i])))
                .collect()
        }
    }
    use arrow_array::types::{Int32Type, TimestampNanosecondType};
    use arrow_schema::DataType as D;
    Some(Arc::new(match c.data_type() {
        D::Int64 => each::<Int64Type>(c, |x| x),
        D::UInt32 => each::<UInt32Type>(c, i64::from),
        D::UInt16 => each::<UInt16Type>(c, i64::from),
        D::UInt64 => each::<UInt64Type>(c, |x| i64::try_from(x).unwrap_or(i64::MAX)),
        D::Int32 => each::<Int32Type>(c, i64::from),
        D::Timestamp(..) => each::<TimestampNanosecondType>(c, |x| x),
        _ => return None,
    }))
}

/// A text column, read in place.
#[derive(Clone, Copy)]
struct Strs<'a>(Option<&'a StringArray>);

impl<'a> Strs<'a> {
    #[inline]
    fn get(&self, i: usize) -> Option<&'a str> {
        self.0.and_then(|a| a.is_valid(i).then(|| a.value(i)))
    }
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
            Col::Int(v) => v[row].map(|x| x.to_string()),
            Col::Float(a) => {
                let a = a.as_primitive::<Float64Type>();
                a.is_valid(row).then(|| format!("{:.1}", a.value(row)))
            }
            Col::Bool(v) => v[row].map(|b| b.to_string()),
            Col::Multi(v) => {
                let vals = &v[row];
                (!vals.is_empty()).then(|| vals.join(","))
            }
            Col::Dict(d) => d.at(row).map(str::to_owned),
        }
    }
}

/// Whose process fields a row shows: its own exec's, or its process's in the tree.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Row(usize),
    Pid(u32),
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
    /// The batch's text columns read as dictionaries, by column name: a field derived from one
    /// (`fd.directory` from `path`) maps its distinct values and shares its codes.
    dicts: std::cell::RefCell<FastMap<&'static str, Col>>,
    /// The batch's integer columns, widened, by column name.
    ints: std::cell::RefCell<FastMap<&'static str, Col>>,
}

const BASE_UID: u32 = 1_000_000_000;
const UID_RANGE: u32 = 65536;

fn ints<I: IntoIterator<Item = Option<i64>>>(it: I) -> Col {
    Col::Int(Arc::new(it.into_iter().collect()))
}

fn strs<I: IntoIterator<Item = Option<S>>, S: AsRef<str>>(it: I) -> Col {
    let mut b = StringBuilder::new();
    for v in it {
        b.append_option(v);
    }
    Col::Str(Arc::new(b.finish()))
}

fn bools<I: IntoIterator<Item = Option<bool>>>(it: I) -> Col {
    Col::Bool(Arc::new(it.into_iter().collect()))
}

fn floats<I: IntoIterator<Item = Option<f64>>>(it: I) -> Col {
    Col::Float(Arc::new(Float64Array::from_iter(it)))
}

/// How an event type opens a file, for `evt.is_open_*` and `fd.num`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    No,
    /// `creat`: for writing, by its nature.
    Creat,
    /// The open family: as its flags say.
    Flags,
}

fn open_kind(event: &str) -> Open {
    match event {
        "creat" => Open::Creat,
        "open" | "openat" | "openat2" => Open::Flags,
        _ => Open::No,
    }
}

impl<'a> BatchColumns<'a> {
    pub fn new(table: Table, batch: &'a RecordBatch, first_num: u64) -> Self {
        Self {
            table,
            batch,
            first_num,
            cache: FastMap::default(),
            dicts: Default::default(),
            ints: Default::default(),
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

    /// A text column as a [`Dict`]: hashing every row once per batch is cheap beside the rules'
    /// tests, which then run once per distinct value.
    fn dict_col(&self, name: &'static str) -> Col {
        if let Some(c) = self.dicts.borrow().get(name) {
            return c.clone();
        }
        let c = match self.raw_str(name) {
            Some(a) if a.null_count() == 0 => keyed(a.len(), |i| Some(a.value(i)), Some),
            Some(a) => keyed(a.len(), |i| a.is_valid(i).then(|| a.value(i)), Some),
            None => Col::Null,
        };
        self.dicts.borrow_mut().insert(name, c.clone());
        c
    }

    /// The dictionary column `name` with each value mapped through `f`.
    fn dict_map<S: AsRef<str>>(&self, name: &'static str, f: impl FnMut(&str) -> Option<S>) -> Col {
        match self.dict_col(name) {
            Col::Dict(d) => Col::Dict(Arc::new(d.map(f))),
            other => other,
        }
    }

    /// Per row, what `f` says of its event type (null when the row has none); `f` runs once per
    /// distinct type.
    fn by_event<T: Copy>(&self, f: impl Fn(&str) -> T) -> impl Fn(usize) -> Option<T> {
        let per: Option<(Arc<Dict>, Vec<Option<T>>)> = match self.dict_col("event") {
            Col::Dict(d) => {
                let per = (0..d.len()).map(|c| d.value(c).map(&f)).collect();
                Some((d, per))
            }
            _ => None,
        };
        move |i| {
            let (d, per) = per.as_ref()?;
            per[d.codes[i] as usize]
        }
    }

    /// An integer column of any width, as Int64 (once per batch and column).
    fn int_col(&self, name: &'static str) -> Col {
        if let Some(c) = self.ints.borrow().get(name) {
            return c.clone();
        }
        let c = self.raw(name).and_then(widen).map_or(Col::Null, Col::Int);
        self.ints.borrow_mut().insert(name, c.clone());
        c
    }

    fn int_at(&self, name: &'static str) -> Ints {
        match self.int_col(name) {
            Col::Int(v) => Ints(Some(v)),
            _ => Ints(None),
        }
    }

    fn str_at(&self, name: &str) -> Strs<'a> {
        Strs(self.raw_str(name))
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
                keyed(
                    n,
                    |i| ids.get(i),
                    |id| {
                        let info = state.sandboxes.get(id)?;
                        if profile {
                            info.profile.clone()
                        } else {
                            Some(info.policy_hash.clone())
                        }
                    },
                )
            }
            "container.privileged" => {
                // sandwatch never runs a sandbox privileged; a watched cgroup that is not one
                // of the runner's sandboxes is unknown.
                let ids = self.str_at("sandbox_id");
                bools((0..n).map(|i| {
                    ids.get(i)
                        .and_then(|id| state.sandboxes.get(id))
                        .map(|_| false)
                }))
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
            "evt.res" => {
                let ret = self.int_at("ret");
                keyed(n, |i| ret.get(i), |r| Some(errno_name(r)))
            }
            "evt.rawres" => self.int_col("ret"),
            "evt.failed" => {
                let ret = self.int_at("ret");
                bools((0..n).map(|i| ret.get(i).map(|r| r < 0)))
            }
            "evt.time" | "evt.rawtime" => self.int_col("time"),
            "evt.hostname" => self.dict_col("host"),
            "evt.dir" => constant(n, "<"),
            "evt.num" => ints((0..n).map(|i| Some((self.first_num + i as u64) as i64))),
            "evt.refused" => match self.raw("refused") {
                Some(c) => bools(c.as_boolean().iter()),
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
                keyed(n, |i| uids.get(i), |u| user_name(state, u as u32))
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
                let node = |i: usize| tree.get(pids.get(i)? as u32);
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
                        keyed(
                            n,
                            |i| pids.get(i),
                            |pid| tree.get(pid as u32)?.caps[k].map(cap_names),
                        )
                    }
                }
            }
            "proc.cmdline" | "proc.args" | "proc.cwd" => {
                let pids = self.int_at("pid");
                let tree = &state.tree;
                // A successful exec row speaks for itself: the tree holds the process's state
                // after the whole batch, which a second exec in the same batch has replaced.
                let own = self.own_exec();
                let which = field.name.as_str();
                keyed(
                    n,
                    |i| match own.get(i) {
                        Some(Some(_)) => Some(Who::Row(i)),
                        _ => pids.get(i).map(|p| Who::Pid(p as u32)),
                    },
                    |who| match who {
                        Who::Row(i) => {
                            let e = own[i].as_ref().expect("keyed by its exec");
                            match which {
                                "proc.cmdline" => Some(e.cmdline()),
                                "proc.args" => Some(e.args.clone()),
                                _ => e.cwd.clone(),
                            }
                        }
                        Who::Pid(pid) => {
                            let node = tree.get(pid)?;
                            match which {
                                "proc.cmdline" => node.cmdline(),
                                "proc.args" => node.args.as_deref().map(str::to_owned),
                                _ => node.cwd.as_deref().map(str::to_owned),
                            }
                        }
                    },
                )
            }
            "proc.duration" => {
                let (pids, times) = (self.int_at("pid"), self.int_at("time"));
                let tree = &state.tree;
                ints((0..n).map(|i| Some(times.get(i)? - tree.get(pids.get(i)? as u32)?.start_ns?)))
            }
            "proc.pname" | "proc.pexe" | "proc.pexepath" | "proc.pcmdline" => {
                let ppids = self.int_at("ppid");
                let tree = &state.tree;
                let which = field.name.as_str();
                keyed(
                    n,
                    |i| ppids.get(i),
                    |ppid| {
                        let parent = tree.get(ppid as u32)?;
                        match which {
                            "proc.pname" => parent.comm.as_deref().map(str::to_owned),
                            "proc.pcmdline" => parent.cmdline(),
                            _ => parent.exe.as_deref().map(str::to_owned),
                        }
                    },
                )
            }
            "proc.aname" | "proc.aexe" | "proc.aexepath" => self.ancestors(field, state),
            _ => self.resolve_table_field(field, state),
        }
    }

    /// Per row: what a successful exec row of `process_events` says of the new program (no
    /// row of another table is one).
    fn own_exec(&self) -> Vec<Option<OwnExec>> {
        let n = self.rows();
        if self.table != Table::ProcessEvents {
            return Vec::new();
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
                if !matches!(events.get(i), Some("execve" | "execveat")) || ret.get(i) != Some(0) {
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
                    comm: comm.get(i).unwrap_or_default().to_owned(),
                    args,
                    cwd: cwd.get(i).map(str::to_owned),
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
            "comm"
        } else {
            "exe"
        };
        let ppids = self.int_at("ppid");
        let tree = &state.tree;
        match field
            .index
            .as_deref()
            .map(|i| i.parse::<u32>().unwrap_or(0))
        {
            Some(0) => self.dict_col(own),
            Some(k) => keyed(
                n,
                |i| ppids.get(i),
                |ppid| {
                    tree.ancestor(Some(ppid as u32), k)
                        .and_then(name_of)
                        .map(|v| v.to_string())
                },
            ),
            // Every ancestor from the parent up, as Falco's `proc.aname` without an argument.
            None => Col::Multi(Arc::new(
                (0..n)
                    .map(|i| {
                        let mut out = Vec::new();
                        let mut next = ppids.get(i).map(|p| p as u32);
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
                let open = self.by_event(open_kind);
                let flags = self.int_at("flags");
                let mode = self.int_at("mode");
                let which = field.name.as_str();
                bools((0..n).map(|i| {
                    Some(match open(i)? {
                        Open::No => false,
                        Open::Creat => match which {
                            "evt.is_open_write" => true,
                            "evt.is_open_exec" => mode.get(i).is_some_and(|m| m & 0o111 != 0),
                            _ => false,
                        },
                        Open::Flags => {
                            let f = flags.get(i).unwrap_or(0);
                            let acc = f & 0o3;
                            match which {
                                "evt.is_open_read" => acc == 0 || acc == 2,
                                "evt.is_open_write" => acc == 1 || acc == 2,
                                _ => f & 0o100 != 0 && mode.get(i).is_some_and(|m| m & 0o111 != 0),
                            }
                        }
                    })
                }))
            }
            (_, "evt.is_open_read" | "evt.is_open_write" | "evt.is_open_exec") => {
                bools((0..n).map(|_| Some(false)))
            }
            (Table::FileEvents, "evt.arg.flags") => self.dict_col("flags_text"),
            (Table::FileEvents, "evt.arg.mode") => self.int_col("mode"),
            (
                Table::FileEvents,
                "evt.arg.name" | "evt.arg.path" | "evt.arg.oldpath" | "evt.arg.target" | "fd.name"
                | "fd.nameraw",
            ) => self.dict_col("path"),
            (Table::FileEvents, "evt.arg.newpath" | "evt.arg.linkpath") => self.dict_col("path2"),
            (Table::FileEvents, "evt.arg.uid") => self.id_args_of(&self.int_at("owner_uid"), state),
            (Table::FileEvents, "fd.directory" | "fd.filename") => {
                let dir = field.name == "fd.directory";
                self.dict_map("path", |p| {
                    let cut = p.rfind('/')?;
                    let part = if dir {
                        if cut == 0 { "/" } else { &p[..cut] }
                    } else {
                        &p[cut + 1..]
                    };
                    Some(part.to_owned())
                })
            }
            (Table::FileEvents, "fd.typechar") => constant(n, "f"),
            (Table::FileEvents, "fd.type") => constant(n, "file"),
            (Table::FileEvents, "fd.num") => {
                let open = self.by_event(open_kind);
                let ret = self.int_at("ret");
                ints((0..n).map(|i| {
                    let is_open = open(i)? != Open::No;
                    (is_open && ret.get(i)? >= 0).then_some(ret.get(i)?)
                }))
            }
            // Processes.
            (Table::ProcessEvents, "evt.arg.filename") => self.dict_col("filename"),
            (Table::ProcessEvents, "evt.arg.uid") => self.id_args(state),
            (Table::ProcessEvents, "evt.arg.request") => {
                let req = self.int_at("ptrace_request");
                keyed(n, |i| req.get(i), |r| Some(ptrace_name(r)))
            }
            // Syscalls.
            (Table::SyscallEvents, "evt.arg.cmd") => {
                let bpf = self.by_event(|e| e == "bpf");
                let args = self
                    .raw("args")
                    .and_then(|c| c.as_any().downcast_ref::<ListArray>());
                strs((0..n).map(|i| {
                    if !bpf(i)? {
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
    fn id_args_of(&self, uids: &Ints, state: &EngineState) -> Col {
        Col::Multi(Arc::new(
            (0..self.rows())
                .map(|i| {
                    uids.get(i)
                        .map(|u| uid_values(u, state))
                        .unwrap_or_default()
                })
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
        let saddr = self.str_at("saddr");
        let daddr = self.str_at("daddr");
        let sport = self.int_at("sport");
        let dport = self.int_at("dport");
        // (local, remote) sides of row i: accept rows hold the client in saddr.
        let side = |i: usize, local: bool| -> (Option<&str>, Option<i64>) {
            match events.get(i) {
                Some("accept" | "accept4") => {
                    if local {
                        (daddr.get(i), dport.get(i))
                    } else {
                        (saddr.get(i), sport.get(i))
                    }
                }
                Some("bind" | "listen") => {
                    if local {
                        (saddr.get(i), sport.get(i))
                    } else {
                        (None, None)
                    }
                }
                _ => {
                    if local {
                        (saddr.get(i), sport.get(i))
                    } else {
                        (daddr.get(i), dport.get(i))
                    }
                }
            }
        };
        match field.name.as_str() {
            "evt.arg.domain" => self.dict_map("family", |f| Some(af_name(f))),
            "evt.arg.fd" | "fd.num" => self.int_col("fd"),
            "fd.l4proto" => self.dict_col("protocol"),
            "fd.typechar" | "fd.type" => {
                let char_form = field.name == "fd.typechar";
                self.dict_map("family", |f| {
                    let name = match (f, char_form) {
                        ("inet", true) => "4",
                        ("inet6", true) => "6",
                        ("unix", true) => "u",
                        ("inet", false) => "ipv4",
                        ("inet6", false) => "ipv6",
                        ("unix", false) => "unix",
                        _ => return None,
                    };
                    Some(name.to_owned())
                })
            }
            "fd.sockfamily" => self.dict_map("family", |f| match f {
                "inet" | "inet6" => Some("ip".to_owned()),
                "unix" => Some("unix".to_owned()),
                _ => None,
            }),
            "fd.name" | "fd.nameraw" => keyed(
                n,
                |i| {
                    let (s, d) = (saddr.get(i), daddr.get(i));
                    (s.is_some() || d.is_some()).then(|| (s, sport.get(i), d, dport.get(i)))
                },
                |(s, sp, d, dp)| {
                    let part = |a: Option<&str>, p: Option<i64>| match (a, p) {
                        (Some(a), Some(p)) if a.contains(':') => format!("[{a}]:{p}"),
                        (Some(a), Some(p)) => format!("{a}:{p}"),
                        (Some(a), None) => a.to_owned(),
                        (None, _) => String::new(),
                    };
                    Some(format!("{}->{}", part(s, sp), part(d, dp)))
                },
            ),
            "fd.sip" | "fd.snet" => self.dict_col("daddr"),
            "fd.sport" => self.int_col("dport"),
            "fd.cip" | "fd.cnet" => self.dict_col("saddr"),
            "fd.cport" => self.int_col("sport"),
            "fd.lip" | "fd.lnet" => keyed(n, |i| side(i, true).0, |a| Some(a.to_owned())),
            "fd.rip" | "fd.rnet" => keyed(n, |i| side(i, false).0, |a| Some(a.to_owned())),
            "fd.lport" => ints((0..n).map(|i| side(i, true).1)),
            "fd.rport" => ints((0..n).map(|i| side(i, false).1)),
            "fd.ip" | "fd.net" => Col::Multi(Arc::new(
                (0..n)
                    .map(|i| {
                        [saddr.get(i), daddr.get(i)]
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
                        [sport.get(i), dport.get(i)]
                            .into_iter()
                            .flatten()
                            .map(|p| Arc::from(p.to_string()))
                            .collect()
                    })
                    .collect(),
            )),
            // A datagram sent to a named destination gives the socket a new tuple.
            "fd.name_changed" => bools((0..n).map(|i| {
                Some(matches!(events.get(i)?, "sendto" | "sendmsg") && daddr.get(i).is_some())
            })),
            "fd.connected" => bools((0..n).map(|i| {
                let r = ret.get(i)?;
                Some(match events.get(i)? {
                    // EINPROGRESS: a non-blocking connect under way.
                    "connect" => r == 0 || r == -115,
                    "accept" | "accept4" => r >= 0,
                    "sendto" | "sendmsg" => r >= 0 && daddr.get(i).is_none(),
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
