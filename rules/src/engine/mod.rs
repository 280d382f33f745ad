//! The rule engine: compiled rules evaluated on whole Arrow batches of sandwatch's tables.
//!
//! Every rule's predicate is one graph ([`plan::Plan`]): identical leaves and sub-trees, such
//! as those of Falco's shared macros, are one node. Per batch, a rule starts from the rows of the
//! event types its condition can match (Falco's event-type index) and each node runs at most
//! once per selection ([`plan::Run`]), filtering a selection vector (ascending row numbers) with
//! one tight loop over one column. Columns are resolved once per batch per field ([`columns`]),
//! text as dictionaries whose distinct values a leaf decides once. Tree fields read the
//! [`tree::ProcessTree`] the engine keeps from `process_events`; thresholds keep per-key
//! windows ([`window`]).
//!
//! The engine owns no I/O: matches come back as [`Match`]es for the caller to act on.

pub mod columns;
pub mod compile;
pub mod plan;
pub mod tree;
pub mod window;

use std::collections::HashMap;

use arrow_array::{
    Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt32Array, cast::AsArray,
};
use sandwatch_schema::Table;

use crate::ruleset::{EventSource, Rule, RuleSet, Status};
use columns::BatchColumns;
use compile::{CompileError, Pred, RuleCompiler, event_types};
use plan::{NodeId, Plan, Recall, Run, Scratch, TypeSetId};
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
    /// The rule's predicate in the engine's [`Plan`].
    root: NodeId,
    /// `None`: every event type.
    types: Option<TypeSetId>,
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
    plan: Plan,
    recall: Recall,
    scratch: Scratch,
    slots: Vec<compile::FieldSlot>,
    /// The slot of `evt.type`, by which rules are limited to their event types.
    type_slot: Option<usize>,
    state: EngineState,
    windows: Vec<WindowState>,
    events_seen: u64,
}

impl Engine {
    /// Compiles every evaluable, enabled rule of `set`; the others are left out (their status
    /// says why). A rule whose values do not fit its fields is an error.
    pub fn new(set: &RuleSet) -> Result<Self, Vec<CompileError>> {
        let mut compiler = RuleCompiler::default();
        let mut plan = Plan::default();
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for rule in &set.rules {
            if !rule.enabled || rule.status != Status::Evaluable {
                continue;
            }
            match compile_rule(&mut compiler, &mut plan, rule) {
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
            recall: Recall::new(&plan, compiler.slots.len()),
            scratch: Scratch::default(),
            plan,
            type_slot: type_slot(&compiler),
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
            plan: Plan::default(),
            recall: Recall::default(),
            scratch: Scratch::default(),
            slots: Vec::new(),
            type_slot: None,
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
        let cols = BatchColumns::new(table, batch, first_num);
        let mut run = Run::new(
            &self.plan,
            &self.slots,
            &self.state,
            &mut self.recall,
            &mut self.scratch,
            cols,
            self.type_slot,
        );
        let mut out = Vec::new();
        for (ri, rule) in self.rules.iter().enumerate() {
            if rule.rule.event_source != source {
                continue;
            }
            let start = run.start(rule.types);
            let hits = run.eval(rule.root, start);
            if hits == plan::EMPTY {
                continue;
            }
            let hits = run.rows(hits).clone();
            let hits = match &rule.threshold {
                None => hits,
                Some((by, distinct)) => {
                    let t = rule.rule.threshold.as_ref().expect("compiled from one");
                    self.windows[ri].admit(
                        &hits,
                        t.count,
                        t.window,
                        by,
                        *distinct,
                        &mut run.cols,
                        &self.slots,
                        &self.state,
                    )
                }
            };
            for row in hits {
                out.push(render(
                    rule,
                    &self.slots,
                    &self.state,
                    row as usize,
                    &mut run.cols,
                    ri,
                ));
            }
        }
        if table == Table::ProcessEvents {
            self.state.tree.reap();
        }
        out
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
    let is_type_test = |p: &Pred| matches!(p, Pred::Leaf { slot, test: Test::Str(StrTest::In(_) | StrTest::Cmp(compile::NumOp::Eq, _)), .. } if *slot == type_slot);
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

fn render(
    rule: &CompiledRule,
    slots: &[compile::FieldSlot],
    state: &EngineState,
    row: usize,
    cols: &mut BatchColumns<'_>,
    ri: usize,
) -> Match {
    let mut output = String::new();
    let mut fields = Vec::new();
    for piece in &rule.output {
        match piece {
            OutputPiece::Text(t) => output.push_str(t),
            OutputPiece::Field(slot) => {
                let s = &slots[*slot];
                let v = cols.get(&s.field, &s.key, state).display(row);
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

/// The slot of `evt.type`, if any rule reads it.
fn type_slot(compiler: &RuleCompiler) -> Option<usize> {
    compiler.slots.iter().position(|s| s.key == "evt.type")
}

fn compile_rule(
    compiler: &mut RuleCompiler,
    plan: &mut Plan,
    rule: &Rule,
) -> Result<CompiledRule, CompileError> {
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
    let pred = match (&types, type_slot(compiler)) {
        (Some(_), Some(slot)) => strip_type_tests(pred, slot),
        _ => pred,
    };
    Ok(CompiledRule {
        types: types.map(|t| plan.type_set(&t)),
        rule: rule.clone(),
        root: plan.add(pred),
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
