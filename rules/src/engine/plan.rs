//! Every rule's predicate in one graph, evaluated once per batch for all rules together.
//!
//! Falco's rules are built from shared macros: `open_read`, `open_write`, `spawned_process`,
//! `container`, ... expand to the same leaves in dozens of rules. [`Plan`] hash-conses the
//! predicates at compile time, so that identical leaves and identical sub-trees (an `and`
//! chain's prefix from one macro included) are one node. [`Run`] then evaluates a node on a
//! selection at most once per batch: results are memoized by (node, selection), and a filter
//! that keeps every row hands back its input's identity, so that rules which start from the
//! same event-type selection share every step of their common prefix.

use crate::engine::{
    EngineState, FastMap, Selection,
    columns::{BatchColumns, Col, Dict},
    compile::{
        FieldSlot, Pred, StrSet, StrTest, Test, Verdicts, filter, filter_dict, keep, minus,
        text_holds, union,
    },
};

/// A node of the plan's graph.
pub type NodeId = u32;
/// A selection of the current batch, interned in [`Run`].
pub type SelId = u32;
/// An interned set of event types.
pub type TypeSetId = u32;

enum Node {
    Const(bool),
    Leaf { slot: usize, test: Test },
    And(Vec<NodeId>),
    Or(Vec<NodeId>),
    Not(NodeId),
}

/// What makes two nodes the same: a leaf's condition text (field, operator and values decide
/// its test), a branch's children.
#[derive(PartialEq, Eq, Hash)]
enum Key {
    Const(bool),
    Leaf(String),
    And(Vec<NodeId>),
    Or(Vec<NodeId>),
    Not(NodeId),
}

/// The predicates of every rule of an engine, shared where they are the same.
#[derive(Default)]
pub struct Plan {
    nodes: Vec<Node>,
    index: FastMap<Key, NodeId>,
    /// Each distinct set of event types a rule is limited to, as a test of `evt.type`.
    type_sets: Vec<Test>,
    type_index: FastMap<Vec<String>, TypeSetId>,
}

impl Plan {
    /// Adds a rule's predicate; the node that decides it.
    pub fn add(&mut self, pred: Pred) -> NodeId {
        match pred {
            Pred::Const(b) => self.intern(Key::Const(b), Node::Const(b)),
            Pred::Leaf { slot, key, test } => {
                self.intern(Key::Leaf(key), Node::Leaf { slot, test })
            }
            Pred::And(parts) => {
                let ids: Vec<NodeId> = parts.into_iter().map(|p| self.add(p)).collect();
                self.intern(Key::And(ids.clone()), Node::And(ids))
            }
            Pred::Or(parts) => {
                let ids: Vec<NodeId> = parts.into_iter().map(|p| self.add(p)).collect();
                self.intern(Key::Or(ids.clone()), Node::Or(ids))
            }
            Pred::Not(p) => {
                let id = self.add(*p);
                self.intern(Key::Not(id), Node::Not(id))
            }
        }
    }

    fn intern(&mut self, key: Key, node: Node) -> NodeId {
        if let Some(id) = self.index.get(&key) {
            return *id;
        }
        let id = NodeId::try_from(self.nodes.len()).expect("fewer than 2^32 nodes");
        self.nodes.push(node);
        self.index.insert(key, id);
        id
    }

    /// The id of a rule's event-type set (rules limited to the same types share its selection).
    pub fn type_set<'a>(&mut self, types: impl IntoIterator<Item = &'a String>) -> TypeSetId {
        let mut v: Vec<String> = types.into_iter().cloned().collect();
        v.sort();
        if let Some(id) = self.type_index.get(&v) {
            return *id;
        }
        let id = TypeSetId::try_from(self.type_sets.len()).expect("fewer than 2^32 type sets");
        self.type_sets
            .push(Test::Str(StrTest::In(StrSet::new(v.clone()))));
        self.type_index.insert(v, id);
        id
    }

    /// Distinct nodes (for tests of the sharing).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// A slot's values are forgotten past this many (a field of attacker-chosen text must not grow
/// the engine without bound); its leaves' verdicts go with them.
const RECALL_MAX: usize = 1 << 16;
/// The value number of null.
const NULL_VALUE: u32 = u32::MAX;

/// Verdicts on text values kept from batch to batch: paths, programs and command lines recur,
/// so a leaf's test runs once per distinct value the engine has seen rather than once per value
/// and batch. Per slot, its values are numbered; per leaf, a verdict per number.
#[derive(Default)]
pub struct Recall {
    values: Vec<FastMap<Box<str>, u32>>,
    /// Per slot: bumped when its values are forgotten.
    generation: Vec<u32>,
    /// Per leaf: its slot's generation when filled, and per value number 0 undecided, 1 false,
    /// 2 true.
    verdicts: Vec<(u32, Vec<u8>)>,
}

impl Recall {
    pub fn new(plan: &Plan, slots: usize) -> Self {
        Self {
            values: vec![FastMap::default(); slots],
            generation: vec![0; slots],
            verdicts: vec![(0, Vec::new()); plan.nodes.len()],
        }
    }

    /// The numbers of a batch dictionary's values in `slot`.
    fn number(&mut self, slot: usize, dict: &Dict) -> Vec<u32> {
        let known = &mut self.values[slot];
        if known.len() + dict.len() > RECALL_MAX {
            known.clear();
            self.generation[slot] += 1;
        }
        (0..dict.len())
            .map(|c| match dict.value(c) {
                None => NULL_VALUE,
                Some(v) => match known.get(v) {
                    Some(n) => *n,
                    None => {
                        let n = u32::try_from(known.len()).expect("fewer than 2^32 values");
                        known.insert(v.into(), n);
                        n
                    }
                },
            })
            .collect()
    }
}

/// The empty selection's id in every [`Run`].
pub const EMPTY: SelId = 0;

/// What a [`Run`] keeps per batch, kept from batch to batch with its allocations: a small batch
/// (the live path seals one every millisecond) must not pay for allocating it all again.
#[derive(Default)]
pub struct Scratch {
    /// Per slot read as a dictionary: the [`Recall`] numbers of its values in this batch.
    numbers: Vec<Option<Vec<u32>>>,
    /// The column of each slot, once resolved (no lookup by field name per leaf).
    by_slot: Vec<Option<Col>>,
    sels: Vec<Selection>,
    memo: FastMap<(NodeId, SelId), SelId>,
    /// Per leaf on a dictionary column: its verdict on each distinct value decided so far.
    verdicts: Vec<Verdicts>,
    all: Option<SelId>,
    /// Per event-type code of the batch: its rows.
    groups: Option<Vec<SelId>>,
    /// The rows of several event types together, by their codes.
    unions: FastMap<Vec<u32>, SelId>,
    of_types: Vec<Option<SelId>>,
    /// Where a leaf writes the rows it keeps.
    out: Selection,
}

impl Scratch {
    /// Empty for a new batch of `plan` over `slots` slots.
    fn reset(&mut self, plan: &Plan, slots: usize) {
        fn fill<T: Clone>(v: &mut Vec<Option<T>>, n: usize) {
            v.clear();
            v.resize(n, None);
        }
        fill(&mut self.numbers, slots);
        fill(&mut self.by_slot, slots);
        fill(&mut self.of_types, plan.type_sets.len());
        self.sels.clear();
        self.sels.push(Vec::new());
        self.memo.clear();
        self.verdicts
            .resize_with(plan.nodes.len(), Verdicts::default);
        self.verdicts.iter_mut().for_each(Verdicts::reset);
        self.all = None;
        self.groups = None;
        self.unions.clear();
    }
}

/// One batch's evaluation of a [`Plan`]: its columns, the selections made so far and what each
/// node gave on each of them.
pub struct Run<'p, 'b> {
    plan: &'p Plan,
    slots: &'p [FieldSlot],
    state: &'p EngineState,
    recall: &'p mut Recall,
    s: &'p mut Scratch,
    pub cols: BatchColumns<'b>,
    /// The slot of `evt.type`, if any rule reads it.
    type_slot: Option<usize>,
}

impl<'p, 'b> Run<'p, 'b> {
    pub fn new(
        plan: &'p Plan,
        slots: &'p [FieldSlot],
        state: &'p EngineState,
        recall: &'p mut Recall,
        scratch: &'p mut Scratch,
        cols: BatchColumns<'b>,
        type_slot: Option<usize>,
    ) -> Self {
        scratch.reset(plan, slots.len());
        Self {
            plan,
            slots,
            state,
            recall,
            s: scratch,
            cols,
            type_slot,
        }
    }

    pub fn rows(&self, id: SelId) -> &Selection {
        &self.s.sels[id as usize]
    }

    fn col(&mut self, slot: usize) -> Col {
        if let Some(c) = &self.s.by_slot[slot] {
            return c.clone();
        }
        let s = &self.slots[slot];
        let c = self.cols.get(&s.field, &s.key, self.state);
        self.s.by_slot[slot] = Some(c.clone());
        c
    }

    /// `rows`, a subset of `within`, as a selection: an empty one is [`EMPTY`] and one that
    /// kept every row is `within` itself, so that what follows is shared with every rule that
    /// reached `within`.
    fn intern(&mut self, rows: Selection, within: SelId) -> SelId {
        self.known(rows.len(), within)
            .unwrap_or_else(|| self.push(rows))
    }

    /// [`Run::intern`] of rows in a buffer, copied only when they make a new selection.
    fn adopt(&mut self, rows: &Selection, within: SelId) -> SelId {
        self.known(rows.len(), within)
            .unwrap_or_else(|| self.push(rows.clone()))
    }

    /// The selection `n` rows of `within` are when it is one already.
    fn known(&self, n: usize, within: SelId) -> Option<SelId> {
        if n == 0 {
            Some(EMPTY)
        } else if n == self.s.sels[within as usize].len() {
            Some(within)
        } else {
            None
        }
    }

    fn push(&mut self, rows: Selection) -> SelId {
        self.s.sels.push(rows);
        SelId::try_from(self.s.sels.len() - 1).expect("fewer than 2^32 selections")
    }

    /// Every row of the batch.
    fn all(&mut self) -> SelId {
        if let Some(id) = self.s.all {
            return id;
        }
        let n = u32::try_from(self.cols.rows()).expect("a batch has fewer than 2^32 rows");
        let id = self.push((0..n).collect());
        self.s.all = Some(id);
        id
    }

    /// The rows a rule limited to `types` (or to none) starts from: the rows of those event
    /// types, one pass over the batch's event codes per type set and batch.
    pub fn start(&mut self, types: Option<TypeSetId>) -> SelId {
        let Some(ts) = types else {
            return self.all();
        };
        if let Some(id) = self.s.of_types[ts as usize] {
            return id;
        }
        let test = &self.plan.type_sets[ts as usize];
        let id = match self.type_slot.map(|s| self.col(s)) {
            Some(Col::Dict(d)) => {
                let groups = self.groups(&d);
                let present: Vec<u32> = (0..d.len())
                    .filter(|&c| {
                        groups[c] != EMPTY && d.value(c).is_some_and(|v| text_holds(test, v))
                    })
                    .map(|c| c as u32)
                    .collect();
                // Type sets that meet on the same types present (one type, usually) get the
                // same selection, and share what follows from it.
                match present.as_slice() {
                    [] => EMPTY,
                    [one] => groups[*one as usize],
                    _ => match self.s.unions.get(&present) {
                        Some(id) => *id,
                        None => {
                            let mut member = vec![false; d.len()];
                            for c in &present {
                                member[*c as usize] = true;
                            }
                            let all = self.all();
                            let mut rows = Vec::new();
                            keep(&mut rows, &self.s.sels[all as usize], |i| {
                                member[d.codes[i] as usize]
                            });
                            let id = self.push(rows);
                            self.s.unions.insert(present, id);
                            id
                        }
                    },
                }
            }
            // No event column (the event type is always a dictionary): nothing to narrow by.
            _ => self.all(),
        };
        self.s.of_types[ts as usize] = Some(id);
        id
    }

    /// The rows of each event type of the batch, by the type's code.
    fn groups(&mut self, events: &Dict) -> Vec<SelId> {
        if let Some(g) = &self.s.groups {
            return g.clone();
        }
        let mut rows: Vec<Selection> = vec![Vec::new(); events.len()];
        for (i, c) in events.codes.iter().enumerate() {
            rows[*c as usize].push(u32::try_from(i).expect("a batch has fewer than 2^32 rows"));
        }
        let groups: Vec<SelId> = rows
            .into_iter()
            .map(|r| if r.is_empty() { EMPTY } else { self.push(r) })
            .collect();
        self.s.groups = Some(groups.clone());
        groups
    }

    /// A leaf on a dictionary column: its verdict on each of the batch's values, recalled from
    /// earlier batches when its answers never change.
    fn leaf_on_dict(
        &mut self,
        node: NodeId,
        slot: usize,
        test: &Test,
        d: &Dict,
        sel: SelId,
        out: &mut Selection,
    ) {
        let holds = |c: usize| d.value(c).is_some_and(|v| text_holds(test, v));
        let rows = &self.s.sels[sel as usize];
        let batch = &mut self.s.verdicts[node as usize];
        if !test.is_pure() {
            return filter_dict(d, holds, rows, batch, out);
        }
        let recall = &mut *self.recall;
        let numbers = self.s.numbers[slot].get_or_insert_with(|| recall.number(slot, d));
        let generation = recall.generation[slot];
        let (filled, known) = &mut recall.verdicts[node as usize];
        if *filled != generation {
            known.clear();
            *filled = generation;
        }
        let recalled = |c: usize| {
            let n = numbers[c];
            if n == NULL_VALUE {
                return false;
            }
            let n = n as usize;
            if known.len() <= n {
                known.resize(n + 1, 0);
            }
            if known[n] == 0 {
                known[n] = 1 + u8::from(holds(c));
            }
            known[n] == 2
        };
        filter_dict(d, recalled, rows, batch, out)
    }

    /// The rows of `sel` for which `node` holds.
    pub fn eval(&mut self, node: NodeId, sel: SelId) -> SelId {
        if sel == EMPTY {
            return EMPTY;
        }
        if let Some(r) = self.s.memo.get(&(node, sel)) {
            return *r;
        }
        let plan = self.plan;
        let r = match &plan.nodes[node as usize] {
            Node::Const(true) => sel,
            Node::Const(false) => EMPTY,
            Node::Leaf { slot, test } => {
                let mut out = std::mem::take(&mut self.s.out);
                match self.col(*slot) {
                    Col::Dict(d) => self.leaf_on_dict(node, *slot, test, &d, sel, &mut out),
                    col => filter(&col, test, &self.s.sels[sel as usize], &mut out),
                }
                let id = self.adopt(&out, sel);
                self.s.out = out;
                id
            }
            Node::And(parts) => {
                let mut cur = sel;
                for p in parts {
                    cur = self.eval(*p, cur);
                    if cur == EMPTY {
                        break;
                    }
                }
                cur
            }
            Node::Or(parts) => {
                // Later branches only see the rows earlier ones left.
                let mut matched = EMPTY;
                let mut rest = sel;
                for p in parts {
                    let m = self.eval(*p, rest);
                    if m == EMPTY {
                        continue;
                    }
                    matched = if matched == EMPTY {
                        m
                    } else {
                        let u = union(&self.s.sels[matched as usize], &self.s.sels[m as usize]);
                        self.intern(u, sel)
                    };
                    if m == rest {
                        break;
                    }
                    let left = minus(&self.s.sels[rest as usize], &self.s.sels[m as usize]);
                    rest = self.intern(left, rest);
                }
                matched
            }
            Node::Not(p) => {
                let m = self.eval(*p, sel);
                if m == EMPTY {
                    sel
                } else if m == sel {
                    EMPTY
                } else {
                    let rows = minus(&self.s.sels[sel as usize], &self.s.sels[m as usize]);
                    self.intern(rows, sel)
                }
            }
        };
        self.s.memo.insert((node, sel), r);
        r
    }
}
