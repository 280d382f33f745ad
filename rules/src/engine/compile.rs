//! [`RuleCompiler`]: a rule's expanded condition into a predicate over a batch's columns. Values
//! are parsed once here (numbers, CIDR ranges, globs, regexes, value sets), so that evaluation
//! is a loop per leaf over the rows still selected, never a walk of the AST per event.

use std::{
    net::IpAddr,
    sync::{Arc, RwLock},
};

use arrow_array::{Array, cast::AsArray, types::Float64Type};
use memchr::memmem;
use regex::Regex;
use thiserror::Error;

use crate::ast::{CmpOp, Expr, FieldRef, SetOp};
use crate::engine::columns::{Col, Dict, Kind, kind};
use crate::engine::{FastSet, Selection};

#[derive(Debug, Error)]
#[error("rule {rule:?}: {message}")]
pub struct CompileError {
    pub rule: String,
    pub message: String,
}

/// One field a compiled rule reads: its slot in the engine's per-batch column cache.
#[derive(Debug, Clone)]
pub struct FieldSlot {
    pub field: FieldRef,
    pub key: String,
}

#[derive(Debug)]
pub enum Pred {
    Const(bool),
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Not(Box<Pred>),
    /// `key`: the leaf's condition text, which decides its test (leaves are shared by it).
    Leaf {
        slot: usize,
        key: String,
        test: Test,
    },
}

#[derive(Debug)]
pub enum Test {
    Exists,
    Str(StrTest),
    Int(NumOp, i64),
    IntIn(FastSet<i64>),
    Float(NumOp, f64),
    Bool(bool),
    /// The address is in one of the ranges.
    Cidr(Vec<(IpAddr, u8)>),
    /// The address is in none of the ranges (`fd.net != "10.0.0.0/8"`; no address: false).
    NotCidr(Vec<(IpAddr, u8)>),
    /// The address is one that the names resolve to (Falco's `fd.sip.name`: the names in the
    /// rule are resolved, not the addresses in the events).
    Resolved(Arc<ResolvedNames>),
}

/// Host names resolved in the background (so that loading rules never waits on DNS) and again
/// every [`RESOLVE_EVERY`]; until the first answer, nothing matches.
#[derive(Debug)]
pub struct ResolvedNames {
    names: Vec<String>,
    addrs: RwLock<FastSet<IpAddr>>,
}

const RESOLVE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

impl ResolvedNames {
    fn start(names: Vec<String>) -> Arc<Self> {
        let me = Arc::new(Self {
            names,
            addrs: RwLock::new(FastSet::default()),
        });
        let weak = Arc::downgrade(&me);
        let spawned = std::thread::Builder::new()
            .name("rules-dns".into())
            .spawn(move || {
                while let Some(me) = weak.upgrade() {
                    let mut found = FastSet::default();
                    for n in &me.names {
                        if let Ok(addrs) =
                            std::net::ToSocketAddrs::to_socket_addrs(&(n.as_str(), 0))
                        {
                            found.extend(addrs.map(|a| a.ip()));
                        }
                    }
                    *me.addrs.write().expect("resolver lock") = found;
                    drop(me);
                    std::thread::sleep(RESOLVE_EVERY);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the resolver for fd.*.name rules: {e}");
        }
        me
    }

    fn contains(&self, text: &str) -> bool {
        text.parse::<IpAddr>()
            .is_ok_and(|ip| self.addrs.read().expect("resolver lock").contains(&ip))
    }
}

#[derive(Debug, Clone, Copy)]
pub enum NumOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl NumOp {
    fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            NumOp::Eq => a == b,
            NumOp::Ne => a != b,
            NumOp::Lt => a < b,
            NumOp::Le => a <= b,
            NumOp::Gt => a > b,
            NumOp::Ge => a >= b,
        }
    }
}

#[derive(Debug)]
pub enum StrTest {
    Cmp(NumOp, String),
    Contains(Box<memmem::Finder<'static>>),
    /// Needle already lower-case (ASCII, as Falco's icontains).
    IContains(String),
    StartsWith(String),
    EndsWith(String),
    Glob(Glob),
    Regex(Box<Regex>),
    In(StrSet),
    Pmatch(Vec<String>),
}

/// Small sets are scanned (faster than hashing a short string); large ones are hashed.
#[derive(Debug)]
pub enum StrSet {
    Small(Vec<String>),
    Large(FastSet<String>),
}

impl StrSet {
    pub(crate) fn new(values: Vec<String>) -> Self {
        if values.len() <= 8 {
            StrSet::Small(values)
        } else {
            StrSet::Large(values.into_iter().collect())
        }
    }

    fn contains(&self, v: &str) -> bool {
        match self {
            StrSet::Small(vs) => vs.iter().any(|x| x == v),
            StrSet::Large(s) => s.contains(v),
        }
    }
}

impl StrTest {
    #[inline]
    pub(crate) fn holds(&self, v: &str) -> bool {
        match self {
            StrTest::Cmp(op, x) => op.holds(v, x.as_str()),
            StrTest::Contains(f) => f.find(v.as_bytes()).is_some(),
            StrTest::IContains(n) => contains_folded(v.as_bytes(), n.as_bytes()),
            StrTest::StartsWith(p) => v.starts_with(p.as_str()),
            StrTest::EndsWith(p) => v.ends_with(p.as_str()),
            StrTest::Glob(g) => g.matches(v),
            StrTest::Regex(r) => r.is_match(v),
            StrTest::In(set) => set.contains(v),
            StrTest::Pmatch(prefixes) => prefixes.iter().any(|p| {
                v == p
                    || (v.starts_with(p.as_str())
                        && (p.ends_with('/') || v.as_bytes().get(p.len()) == Some(&b'/')))
            }),
        }
    }
}

/// Whether `hay` lower-cased (ASCII only) contains `needle` (already lower-case), without
/// lower-casing a copy of every row.
fn contains_folded(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Falco's `glob`: `*` any run of characters (slashes included), `?` one character, `[...]` a
/// class (`[!...]` negated, ranges `a-z`).
#[derive(Debug)]
pub struct Glob {
    pattern: Vec<char>,
    fold: bool,
}

impl Glob {
    fn new(pattern: &str, fold: bool) -> Self {
        let p = if fold {
            pattern.to_lowercase()
        } else {
            pattern.to_owned()
        };
        Glob {
            pattern: p.chars().collect(),
            fold,
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        if self.fold {
            // Unicode lower-casing can change the text's length: fold it whole, as the pattern.
            glob_match(&self.pattern, &text.to_lowercase())
        } else {
            glob_match(&self.pattern, text)
        }
    }
}

/// The character at byte `i` of `t` and its width: the text is walked in place, never copied,
/// as this runs once per row.
#[inline]
fn char_at(t: &str, i: usize) -> (char, usize) {
    let b = t.as_bytes()[i];
    if b.is_ascii() {
        (char::from(b), 1)
    } else {
        let c = t[i..].chars().next().expect("a char boundary");
        (c, c.len_utf8())
    }
}

/// Iterative matcher with one backtrack point for the last `*`; `ti` is a byte offset.
fn glob_match(p: &[char], t: &str) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let (c, width) = char_at(t, ti);
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += width;
                    continue;
                }
                '[' => {
                    if let Some((true, next)) = class(p, pi, c) {
                        pi = next;
                        ti += width;
                        continue;
                    }
                }
                pc if pc == c => {
                    pi += 1;
                    ti += width;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                let next = st + char_at(t, st).1;
                pi = sp + 1;
                ti = next;
                star = Some((sp, next));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `[...]` at `p[start]` against `c`: whether it matches and where the pattern goes on.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() && (first || p[i] != ']') {
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            hit |= (p[i]..=p[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((hit != negate, i + 1))
}

/// Which event types a condition can match: `None` when it does not say (any type).
pub fn event_types(e: &Expr) -> Option<FastSet<String>> {
    match e {
        Expr::Compare {
            field,
            op: CmpOp::Eq,
            value,
        } if field.name == "evt.type" => Some(std::iter::once(value.clone()).collect()),
        Expr::In {
            field,
            op: SetOp::In,
            values,
        } if field.name == "evt.type" => Some(values.iter().cloned().collect()),
        Expr::And(a, b) => match (event_types(a), event_types(b)) {
            (Some(x), Some(y)) => Some(x.intersection(&y).cloned().collect()),
            (x, None) => x,
            (None, y) => y,
        },
        Expr::Or(a, b) => {
            let (x, y) = (event_types(a)?, event_types(b)?);
            Some(x.union(&y).cloned().collect())
        }
        _ => None,
    }
}

/// Turns conditions into predicates, sharing one column slot per distinct field across rules.
#[derive(Default)]
pub struct RuleCompiler {
    pub slots: Vec<FieldSlot>,
}

impl RuleCompiler {
    pub fn slot(&mut self, field: &FieldRef) -> usize {
        let key = field.to_string();
        if let Some(i) = self.slots.iter().position(|s| s.key == key) {
            return i;
        }
        self.slots.push(FieldSlot {
            field: field.clone(),
            key,
        });
        self.slots.len() - 1
    }

    pub fn compile(&mut self, rule: &str, e: &Expr) -> Result<Pred, CompileError> {
        let err = |message: String| CompileError {
            rule: rule.to_owned(),
            message,
        };
        Ok(match e {
            Expr::And(a, b) => {
                let mut parts = Vec::new();
                for x in [a, b] {
                    match self.compile(rule, x)? {
                        Pred::And(v) => parts.extend(v),
                        p => parts.push(p),
                    }
                }
                Pred::And(parts)
            }
            Expr::Or(a, b) => {
                let mut parts = Vec::new();
                for x in [a, b] {
                    match self.compile(rule, x)? {
                        Pred::Or(v) => parts.extend(v),
                        p => parts.push(p),
                    }
                }
                Pred::Or(parts)
            }
            Expr::Not(x) => Pred::Not(Box::new(self.compile(rule, x)?)),
            Expr::Exists(f) => Pred::Leaf {
                slot: self.slot(f),
                key: e.to_string(),
                test: Test::Exists,
            },
            Expr::Compare { field, op, value } => Pred::Leaf {
                slot: self.slot(field),
                key: e.to_string(),
                test: compare_test(field, *op, value).map_err(err)?,
            },
            Expr::In { field, op, values } => Pred::Leaf {
                slot: self.slot(field),
                key: e.to_string(),
                test: set_test(field, *op, values).map_err(err)?,
            },
            Expr::MacroRef { name, .. } => {
                return Err(err(format!("macro {name:?} was not expanded")));
            }
        })
    }
}

fn num_op(op: CmpOp) -> Option<NumOp> {
    Some(match op {
        CmpOp::Eq => NumOp::Eq,
        CmpOp::Ne => NumOp::Ne,
        CmpOp::Lt => NumOp::Lt,
        CmpOp::Le => NumOp::Le,
        CmpOp::Gt => NumOp::Gt,
        CmpOp::Ge => NumOp::Ge,
        _ => return None,
    })
}

fn parse_int(field: &FieldRef, v: &str) -> Result<i64, String> {
    let t = v.trim();
    let parsed = if let Some(h) = t.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = t.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if field.name == "evt.arg.mode" && t.len() > 1 && t.starts_with('0') {
        i64::from_str_radix(t, 8).ok()
    } else {
        t.parse().ok()
    };
    parsed.ok_or_else(|| format!("{field}: {v:?} is not a number"))
}

fn parse_cidr(field: &FieldRef, v: &str) -> Result<(IpAddr, u8), String> {
    let (addr, bits) = match v.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (v, None),
    };
    let ip: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("{field}: {v:?} is not an address or CIDR range"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("{field}: {v:?} has a bad prefix length"))?,
        None => max,
    };
    Ok((ip, bits))
}

fn in_cidr(ip: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a| in_cidr(IpAddr::V4(a), (net, bits))),
        _ => false,
    }
}

fn parse_bool(field: &FieldRef, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{field}: {v:?} is not true or false")),
    }
}

/// `fd.sip.name` and its kin: the address field they name.
pub fn resolved_field(field: &FieldRef) -> Option<&'static str> {
    Some(match field.name.as_str() {
        "fd.sip.name" => "fd.sip",
        "fd.cip.name" => "fd.cip",
        "fd.rip.name" => "fd.rip",
        "fd.lip.name" => "fd.lip",
        _ => return None,
    })
}

fn compare_test(field: &FieldRef, op: CmpOp, value: &str) -> Result<Test, String> {
    if resolved_field(field).is_some() {
        return match op {
            CmpOp::Eq => Ok(Test::Resolved(ResolvedNames::start(vec![value.to_owned()]))),
            _ => Err(format!("{field}: only = and in compare host names")),
        };
    }
    let k = kind(field);
    match (k, num_op(op)) {
        (Kind::Int, Some(n)) => return Ok(Test::Int(n, parse_int(field, value)?)),
        (Kind::Float, Some(n)) => {
            let f = value
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("{field}: {value:?} is not a number"))?;
            return Ok(Test::Float(n, f));
        }
        (Kind::Bool, Some(NumOp::Eq)) => return Ok(Test::Bool(parse_bool(field, value)?)),
        (Kind::Bool, Some(NumOp::Ne)) => return Ok(Test::Bool(!parse_bool(field, value)?)),
        (Kind::Net, Some(NumOp::Eq)) => return Ok(Test::Cidr(vec![parse_cidr(field, value)?])),
        (Kind::Net, Some(NumOp::Ne)) => {
            return Ok(Test::NotCidr(vec![parse_cidr(field, value)?]));
        }
        (Kind::Int | Kind::Float | Kind::Bool, _) if matches!(op, CmpOp::Regex) => {
            return Err(format!("{field}: regex applies to text fields"));
        }
        _ => {}
    }
    Ok(Test::Str(match op {
        CmpOp::Eq | CmpOp::Ne | CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => {
            StrTest::Cmp(num_op(op).expect("comparison"), value.to_owned())
        }
        CmpOp::Contains | CmpOp::BContains => {
            StrTest::Contains(Box::new(memmem::Finder::new(value.as_bytes()).into_owned()))
        }
        CmpOp::IContains => StrTest::IContains(value.to_ascii_lowercase()),
        CmpOp::StartsWith | CmpOp::BStartsWith => StrTest::StartsWith(value.to_owned()),
        CmpOp::EndsWith => StrTest::EndsWith(value.to_owned()),
        CmpOp::Glob => StrTest::Glob(Glob::new(value, false)),
        CmpOp::IGlob => StrTest::Glob(Glob::new(value, true)),
        CmpOp::Regex => StrTest::Regex(Box::new(
            Regex::new(value).map_err(|e| format!("{field}: bad regex {value:?}: {e}"))?,
        )),
    }))
}

fn set_test(field: &FieldRef, op: SetOp, values: &[String]) -> Result<Test, String> {
    if resolved_field(field).is_some() {
        return match op {
            SetOp::In | SetOp::Intersects => {
                Ok(Test::Resolved(ResolvedNames::start(values.to_vec())))
            }
            SetOp::Pmatch => Err(format!("{field}: only = and in compare host names")),
        };
    }
    match (kind(field), op) {
        (Kind::Int, SetOp::In | SetOp::Intersects) => Ok(Test::IntIn(
            values
                .iter()
                .map(|v| parse_int(field, v))
                .collect::<Result<_, _>>()?,
        )),
        (Kind::Net, SetOp::In | SetOp::Intersects) => Ok(Test::Cidr(
            values
                .iter()
                .map(|v| parse_cidr(field, v))
                .collect::<Result<_, _>>()?,
        )),
        (Kind::Bool | Kind::Float, _) => Err(format!(
            "{field}: {} applies to text and number fields",
            op.as_str()
        )),
        (_, SetOp::Pmatch) => Ok(Test::Str(StrTest::Pmatch(values.to_vec()))),
        (_, SetOp::In | SetOp::Intersects) => {
            Ok(Test::Str(StrTest::In(StrSet::new(values.to_vec()))))
        }
    }
}

impl Test {
    /// Whether the answer on a value never changes (a host name's addresses do), so that it
    /// can be kept from batch to batch.
    pub fn is_pure(&self) -> bool {
        !matches!(self, Test::Resolved(_))
    }
}

/// Whether a text value passes `test`: one answer for every text column, so that a column read
/// as a dictionary in one batch and as plain text in the next decides alike.
pub(crate) fn text_holds(test: &Test, v: &str) -> bool {
    match test {
        Test::Exists => true,
        Test::Str(t) => t.holds(v),
        Test::Resolved(names) => names.contains(v),
        Test::Cidr(nets) => v
            .parse::<IpAddr>()
            .is_ok_and(|ip| nets.iter().any(|n| in_cidr(ip, *n))),
        Test::NotCidr(nets) => v
            .parse::<IpAddr>()
            .is_ok_and(|ip| !nets.iter().any(|n| in_cidr(ip, *n))),
        Test::Int(op, n) => v.parse::<i64>().is_ok_and(|x| op.holds(x, *n)),
        Test::IntIn(set) => v.parse::<i64>().is_ok_and(|x| set.contains(&x)),
        Test::Float(..) | Test::Bool(_) => false,
    }
}

/// The rows of `sel` for which `f` holds. Generic, so that each test's loop is compiled with
/// its test inlined; the row is written before it is judged, which keeps the loop free of a
/// branch on the answer.
#[inline]
pub fn keep(out: &mut Selection, sel: &Selection, mut f: impl FnMut(usize) -> bool) {
    out.clear();
    out.resize(sel.len(), 0);
    let mut n = 0;
    for &i in sel {
        out[n] = i;
        n += usize::from(f(i as usize));
    }
    out.truncate(n);
}

/// [`keep`] over a nullable column: null rows never pass.
#[inline]
fn keep_valid<A: Array + ?Sized>(
    out: &mut Selection,
    sel: &Selection,
    a: &A,
    f: impl Fn(usize) -> bool,
) {
    if a.null_count() == 0 {
        keep(out, sel, f)
    } else {
        keep(out, sel, |i| a.is_valid(i) && f(i))
    }
}

/// The rows of `sel` for which the test holds on `col` (null: never), into `out` (a buffer
/// kept by the caller: most answers are no row or every row, which need no new selection).
pub fn filter(col: &Col, test: &Test, sel: &Selection, out: &mut Selection) {
    match (col, test) {
        (Col::Null, _) => out.clear(),
        (Col::Multi(v), Test::Exists) => keep(out, sel, |i| !v[i].is_empty()),
        (Col::Multi(v), t) => keep(out, sel, |i| v[i].iter().any(|x| text_holds(t, x))),
        (Col::Dict(d), t) => {
            // The test once per distinct value, then a lookup per row.
            let hits: Vec<bool> = (0..d.len())
                .map(|c| d.value(c).is_some_and(|v| text_holds(t, v)))
                .collect();
            if !hits.iter().any(|h| *h) {
                return out.clear();
            }
            if hits.iter().all(|h| *h) {
                return out.clone_from(sel);
            }
            keep(out, sel, |i| hits[d.codes[i] as usize])
        }
        (Col::Int(v), Test::Exists) => keep(out, sel, |i| v[i].is_some()),
        (Col::Bool(v), Test::Exists) => keep(out, sel, |i| v[i].is_some()),
        (Col::Str(a) | Col::Float(a), Test::Exists) => keep_valid(out, sel, a, |_| true),
        (Col::Str(a), t) => {
            let a = a.as_string::<i32>();
            match t {
                Test::Str(t) => keep_valid(out, sel, a, |i| t.holds(a.value(i))),
                t => keep_valid(out, sel, a, |i| text_holds(t, a.value(i))),
            }
        }
        (Col::Int(v), Test::Int(op, n)) => {
            keep(out, sel, |i| v[i].is_some_and(|x| op.holds(x, *n)))
        }
        (Col::Int(v), Test::IntIn(set)) => {
            keep(out, sel, |i| v[i].is_some_and(|x| set.contains(&x)))
        }
        (Col::Int(v), Test::Str(t)) => {
            keep(out, sel, |i| v[i].is_some_and(|x| t.holds(&x.to_string())))
        }
        (Col::Float(a), Test::Float(op, x)) => {
            let a = a.as_primitive::<Float64Type>();
            let v = a.values();
            keep_valid(out, sel, a, |i| op.holds(v[i], *x))
        }
        (Col::Float(a), Test::Int(op, x)) => {
            let a = a.as_primitive::<Float64Type>();
            let v = a.values();
            keep_valid(out, sel, a, |i| op.holds(v[i], *x as f64))
        }
        (Col::Bool(v), Test::Bool(b)) => keep(out, sel, |i| v[i] == Some(*b)),
        (Col::Bool(v), Test::Str(t)) => keep(out, sel, |i| {
            v[i].is_some_and(|x| t.holds(if x { "true" } else { "false" }))
        }),
        _ => out.clear(),
    }
}

/// What one leaf said of a dictionary column's distinct values so far in the batch.
#[derive(Clone, Default)]
pub struct Verdicts {
    /// Per value: 0 undecided, 1 false, 2 true.
    of: Vec<u8>,
    /// Every value decided, and how many true.
    all: Option<usize>,
}

impl Verdicts {
    /// Nothing decided (for a new batch), its memory kept.
    pub fn reset(&mut self) {
        self.of.clear();
        self.all = None;
    }
}

/// The rows of `sel` whose dictionary code passes `holds`, deciding each distinct value at most
/// once per batch however many selections the leaf sees. When the batch has no more distinct
/// values than `sel` has rows, all are decided first: a leaf that no value passes (the usual
/// answer of a rule's own test) then costs no pass over the rows at all.
pub fn filter_dict(
    d: &Dict,
    mut holds: impl FnMut(usize) -> bool,
    sel: &Selection,
    verdicts: &mut Verdicts,
    out: &mut Selection,
) {
    let n = d.len();
    if verdicts.of.len() != n {
        verdicts.reset();
        verdicts.of.resize(n, 0);
    }
    let mut decide = |of: &mut [u8], c: usize| {
        if of[c] == 0 {
            of[c] = 1 + u8::from(holds(c));
        }
        of[c] == 2
    };
    if verdicts.all.is_none() && n <= sel.len() {
        let trues = (0..n).filter(|&c| decide(&mut verdicts.of, c)).count();
        verdicts.all = Some(trues);
    }
    match verdicts.all {
        Some(0) => out.clear(),
        Some(t) if t == n => out.clone_from(sel),
        _ => keep(out, sel, |i| decide(&mut verdicts.of, d.codes[i] as usize)),
    }
}

/// `a` minus `b`, both ascending.
pub fn minus(a: &Selection, b: &Selection) -> Selection {
    let mut out = Vec::with_capacity(a.len().saturating_sub(b.len()));
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

/// The union of two ascending selections.
pub fn union(a: &Selection, b: &Selection) -> Selection {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}
