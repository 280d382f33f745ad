//! The rule engine: compiled rules evaluated on whole Arrow batches of sandwatch's tables.
//!
//! Per batch, the rows are grouped once by event type; a rule runs only on the rows of the
//! types its condition can match (Falco's event-type index), through a predicate tree whose
//! leaves each filter a selection vector (ascending row numbers) with one tight loop over one
//! column. Columns are resolved once per batch per field ([`columns`]), zero-copy where the
//! table has the field as it is. Tree fields read the [`tree::ProcessTree`] the engine keeps
//! from `process_events`; thresholds keep per-key windows ([`window`]).
//!
//! The engine owns no I/O: matches come back as [`Match`]es for the caller to act on.

pub mod columns;
pub mod compile;
pub mod tree;
pub mod window;

use std::collections::HashMap;

use arrow_array::{
    Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt32Array, cast::AsArray,
};
use sandwatch_schema::Table;

use crate::ruleset::{EventSource, Rule, RuleSet, Status};
use columns::{BatchColumns, Col};
use compile::{CompileError, Pred, RuleCompiler, event_types, filter, minus, union};
use tree::ProcessTree;
use window::WindowState;

pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
/// Row numbers of a batch, ascending.
pub type Selection = Vec<u32>;

/// What the engine knows of a sandbox from its `created` row.
#[derive(Clone, Debug)]
pub struct SandboxInfo {
    pub profile: Option<String>,
    pub policy_hash: String,
}

/// State shared by every rule: process tree, sandboxes, user names.
#[derive(Default)]
pub struct EngineState {
    pub tree: ProcessTree,
    pub sandboxes: FastMap<String, SandboxInfo>,
    /// uid → name, from /etc/passwd at start.
    pub users: FastMap<u32, String>,
}

/// A rule as the engine runs it.
pub struct CompiledRule {
    pub rule: Rule,
    pred: Pred,
    /// `None`: every event type.
    types: Option<FastSet<String>>,
    /// Output template pieces: literal text and field slots.
    output: Vec<OutputPiece>,
    threshold: Option<(Vec<usize>, Option<usize>)>,
}

enum OutputPiece {
    Text(String),
    Field(usize),
}

/// A rule that matched a row.
#[derive(Clone, Debug)]
pub struct Match {
    /// Index of the rule in [`Engine::rules`].
    pub rule: usize,
    pub table: Table,
    pub row: usize,
    pub time_ns: i64,
    pub sandbox_id: Option<String>,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub event: Option<String>,
    /// The rule's output with its `%field`s filled in.
    pub output: String,
    /// Each output field's value (`<NA>` omitted).
    pub fields: Vec<(String, String)>,
}

pub struct Engine {
    rules: Vec<CompiledRule>,
    slots: Vec<compile::FieldSlot>,
    state: EngineState,
    windows: Vec<WindowState>,
    events_seen: u64,
}

impl Engine {
    /// Compiles every evaluable, enabled rule of `set`; the others are left out (their status
    /// says why). A rule whose values do not fit its fields is an error.
    pub fn new(set: &RuleSet) -> Result<Self, Vec<CompileError>> {
        let mut compiler = RuleCompiler::default();
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for rule in &set.rules {
            if !rule.enabled || rule.status != Status::Evaluable {
                continue;
            }
            match compile_rule(&mut compiler, rule) {
                Ok(r) => rules.push(r),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let windows = rules.iter().map(|_| WindowState::default()).collect();
        Ok(Self {
            rules,
            slots: compiler.slots,
            state: EngineState {
                users: read_users(),
                ..EngineState::default()
            },
            windows,
            events_seen: 0,
        })
    }

    /// An engine with no rules (a placeholder while one is swapped for another).
    pub fn empty() -> Self {
        Self {
            rules: Vec::new(),
            slots: Vec::new(),
            state: EngineState::default(),
            windows: Vec::new(),
            events_seen: 0,
        }
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| &r.rule)
    }

    pub fn rule(&self, i: usize) -> &Rule {
        &self.rules[i].rule
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Carries the learned state (process tree, sandboxes, windows of rules kept by name) over
    /// from an engine being replaced, for a reload without a gap.
    pub fn take_state_from(&mut self, old: Engine) {
        self.state.tree = old.state.tree;
        self.state.sandboxes = old.state.sandboxes;
        self.events_seen = old.events_seen;
        let mut old_windows: FastMap<String, WindowState> = old
            .rules
            .into_iter()
            .zip(old.windows)
            .map(|(r, w)| (r.rule.name, w))
            .collect();
        for (r, w) in self.rules.iter().zip(self.windows.iter_mut()) {
            if let Some(prev) = old_windows.remove(&r.rule.name) {
                *w = prev;
            }
        }
    }

    /// Evaluates every rule on one batch of `table`; matches in row order per rule.
    pub fn evaluate(&mut self, table: Table, batch: &RecordBatch) -> Vec<Match> {
        let n = batch.num_rows();
        match table {
            Table::Sandboxes => {
                self.learn_sandboxes(batch);
                return Vec::new();
            }
            Table::ProcessEvents => self.state.tree.update(batch),
            Table::FileEvents | Table::NetworkEvents | Table::SyscallEvents => {}
            Table::SandboxMetrics => {}
            _ => return Vec::new(),
        }
        if n == 0 {
            return Vec::new();
        }
        let source = if table == Table::SandboxMetrics {
            EventSource::SandboxMetrics
        } else {
            EventSource::Syscall
        };
        let first_num = self.events_seen + 1;
        if source == EventSource::Syscall {
            self.events_seen += n as u64;
        }
        let mut cols = BatchColumns::new(table, batch, first_num);
        let groups = group_by_event(batch);
        let all: Selection = (0..n as u32).collect();
        let mut out = Vec::new();
        for ri in 0..self.rules.len() {
            let rule = &self.rules[ri];
            if rule.rule.event_source != source {
                continue;
            }
            let sel = match (&rule.types, &groups) {
                (None, _) | (_, None) => all.clone(),
                (Some(types), Some(groups)) => {
                    let mut sel: Selection = Vec::new();
                    for t in types {
                        if let Some(rows) = groups.get(t.as_str()) {
                            sel = if sel.is_empty() {
                                rows.clone()
                            } else {
                                union(&sel, rows)
                            };
                        }
                    }
                    sel
                }
            };
            if sel.is_empty() {
                continue;
            }
            let hits = eval(&rule.pred, &sel, &mut cols, &self.slots, &self.state);
            if hits.is_empty() {
                continue;
            }
            let hits = match &rule.threshold {
                None => hits,
                Some((by, distinct)) => {
                    let t = rule.rule.threshold.as_ref().expect("compiled from one");
                    let (count, window) = (t.count, t.window);
                    let (by, distinct) = (by.clone(), *distinct);
                    self.windows[ri].admit(
                        &hits,
                        count,
                        window,
                        &by,
                        distinct,
                        &mut cols,
                        &self.slots,
                        &self.state,
                    )
                }
            };
            for row in hits {
                out.push(self.render(ri, row as usize, &mut cols));
            }
        }
        if table == Table::ProcessEvents {
            self.state.tree.reap();
        }
        out
    }

    fn render(&self, ri: usize, row: usize, cols: &mut BatchColumns<'_>) -> Match {
        let rule = &self.rules[ri];
        let mut output = String::new();
        let mut fields = Vec::new();
        for piece in &rule.output {
            match piece {
                OutputPiece::Text(t) => output.push_str(t),
                OutputPiece::Field(slot) => {
                    let s = &self.slots[*slot];
                    let v = cols.get(&s.field, &s.key, &self.state).display(row);
                    match v {
                        Some(v) => {
                            output.push_str(&v);
                            fields.push((s.key.clone(), v));
                        }
                        None => output.push_str("<NA>"),
                    }
                }
            }
        }
        let batch = cols.batch;
        let str_at = |name: &str| -> Option<String> {
            let a = batch.column_by_name(name)?.as_string_opt::<i32>()?;
            a.is_valid(row).then(|| a.value(row).to_owned())
        };
        let u32_at = |name: &str| -> Option<u32> {
            let a = batch
                .column_by_name(name)?
                .as_any()
                .downcast_ref::<UInt32Array>()?;
            a.is_valid(row).then(|| a.value(row))
        };
        let time_ns = batch
            .column_by_name("time")
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
            .map_or(0, |t| t.value(row));
        Match {
            rule: ri,
            table: cols.table,
            row,
            time_ns,
            sandbox_id: str_at("sandbox_id"),
            pid: u32_at("pid"),
            tid: u32_at("tid"),
            event: str_at("event"),
            output,
            fields,
        }
    }

    fn learn_sandboxes(&mut self, batch: &RecordBatch) {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
        };
        let (Some(ids), Some(events), Some(hashes)) =
            (col("sandbox_id"), col("event"), col("policy_hash"))
        else {
            return;
        };
        let profiles: Option<&StringArray> = col("profile");
        for i in 0..batch.num_rows() {
            if events.value(i) != "created" {
                continue;
            }
            self.state.sandboxes.insert(
                ids.value(i).to_owned(),
                SandboxInfo {
                    profile: profiles.and_then(|p| p.is_valid(i).then(|| p.value(i).to_owned())),
                    policy_hash: hashes.value(i).to_owned(),
                },
            );
        }
    }

    /// The index of the rule named `name`.
    pub fn rule_index(&self, name: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.rule.name == name)
    }

    /// Processes the tree currently knows (for tests and metrics).
    pub fn tree_len(&self) -> usize {
        self.state.tree.len()
    }
}

/// `pred` without its top-level `evt.type = x` / `evt.type in (...)` tests.
fn strip_type_tests(pred: Pred, type_slot: usize) -> Pred {
    use compile::{StrTest, Test};
    let is_type_test = |p: &Pred| matches!(p, Pred::Leaf { slot, test: Test::Str(StrTest::In(_) | StrTest::Cmp(compile::NumOp::Eq, _)) } if *slot == type_slot);
    match pred {
        Pred::And(parts) => {
            let rest: Vec<Pred> = parts.into_iter().filter(|p| !is_type_test(p)).collect();
            match rest.len() {
                0 => Pred::Const(true),
                1 => rest.into_iter().next().expect("one"),
                _ => Pred::And(rest),
            }
        }
        p if is_type_test(&p) => Pred::Const(true),
        p => p,
    }
}

fn compile_rule(compiler: &mut RuleCompiler, rule: &Rule) -> Result<CompiledRule, CompileError> {
    let pred = compiler.compile(&rule.name, &rule.condition)?;
    let output = parse_output(rule.output.trim_end())
        .into_iter()
        .map(|p| match p {
            RawPiece::Text(t) => OutputPiece::Text(t),
            RawPiece::Field(f) => OutputPiece::Field(compiler.slot(&f)),
        })
        .collect();
    let threshold = rule.threshold.as_ref().map(|t| {
        (
            t.by.iter().map(|f| compiler.slot(f)).collect(),
            t.distinct.as_ref().map(|f| compiler.slot(f)),
        )
    });
    let types = event_types(&rule.condition);
    // The rule runs only on rows of `types`, which every top-level event-type test admits.
    let pred = match (
        &types,
        compiler.slots.iter().position(|s| s.key == "evt.type"),
    ) {
        (Some(_), Some(slot)) => strip_type_tests(pred, slot),
        _ => pred,
    };
    Ok(CompiledRule {
        types,
        rule: rule.clone(),
        pred,
        output,
        threshold,
    })
}

enum RawPiece {
    Text(String),
    Field(crate::ast::FieldRef),
}

/// Falco's output: `%field` (and `%field[arg]`) among text; a `%` not followed by a field name
/// is text.
fn parse_output(template: &str) -> Vec<RawPiece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let b = template.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'.' | b'_')) {
                j += 1;
            }
            // Trailing dots are punctuation ("%fd.name.").
            while j > start && b[j - 1] == b'.' {
                j -= 1;
            }
            if j < b.len()
                && b[j] == b'['
                && let Some(close) = template[j..].find(']')
            {
                j += close + 1;
            }
            if j > start
                && template[start..j].contains('.')
                && let Ok(f) = crate::parse::parse_field(&template[start..j])
            {
                if !text.is_empty() {
                    out.push(RawPiece::Text(std::mem::take(&mut text)));
                }
                out.push(RawPiece::Field(f));
                i = j;
                continue;
            }
        }
        let ch = template[i..].chars().next().expect("in bounds");
        text.push(ch);
        i += ch.len_utf8();
    }
    if !text.is_empty() {
        out.push(RawPiece::Text(text));
    }
    out
}

/// Row numbers per event type, or `None` when the batch has no `event` column.
fn group_by_event(batch: &RecordBatch) -> Option<FastMap<&str, Selection>> {
    let events = batch.column_by_name("event")?.as_string_opt::<i32>()?;
    let mut groups: FastMap<&str, Selection> = FastMap::default();
    let mut last: Option<(&str, usize)> = None;
    for i in 0..events.len() {
        if !events.is_valid(i) {
            continue;
        }
        let e = events.value(i);
        // Runs of one type are common (a job's burst of opens): skip the hash lookup.
        if let Some((prev, _)) = last
            && prev == e
        {
            groups.get_mut(e).expect("seen").push(i as u32);
            continue;
        }
        groups.entry(e).or_default().push(i as u32);
        last = Some((e, i));
    }
    Some(groups)
}

fn eval(
    pred: &Pred,
    sel: &Selection,
    cols: &mut BatchColumns<'_>,
    slots: &[compile::FieldSlot],
    state: &EngineState,
) -> Selection {
    if sel.is_empty() {
        return Vec::new();
    }
    match pred {
        Pred::Const(true) => sel.clone(),
        Pred::Const(false) => Vec::new(),
        Pred::Leaf { slot, test } => {
            let s = &slots[*slot];
            let col: Col = cols.get(&s.field, &s.key, state);
            filter(&col, test, sel)
        }
        Pred::And(parts) => {
            let mut cur = sel.clone();
            for p in parts {
                cur = eval(p, &cur, cols, slots, state);
                if cur.is_empty() {
                    break;
                }
            }
            cur
        }
        Pred::Or(parts) => {
            let mut matched: Selection = Vec::new();
            let mut rest = sel.clone();
            for p in parts {
                let m = eval(p, &rest, cols, slots, state);
                if m.is_empty() {
                    continue;
                }
                rest = minus(&rest, &m);
                matched = union(&matched, &m);
                if rest.is_empty() {
                    break;
                }
            }
            matched
        }
        Pred::Not(p) => {
            let m = eval(p, sel, cols, slots, state);
            minus(sel, &m)
        }
    }
}

/// uid → user name from /etc/passwd (best effort: none when unreadable).
fn read_users() -> FastMap<u32, String> {
    let Ok(text) = std::fs::read_to_string("/etc/passwd") else {
        return FastMap::default();
    };
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split(':');
            let name = parts.next()?;
            let uid = parts.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
