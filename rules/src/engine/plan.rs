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
    columns::{BatchColumns, Col},
    compile::{
        FieldSlot, Pred, StrSet, StrTest, Test, Verdicts, filter, filter_dict, minus, text_holds,
        union,
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

/// The empty selection's id in every [`Run`].
pub const EMPTY: SelId = 0;

/// One batch's evaluation of a [`Plan`]: its columns, the selections made so far and what each
/// node gave on each of them.
pub struct Run<'p, 'b> {
    plan: &'p Plan,
    slots: &'p [FieldSlot],
    state: &'p EngineState,
    pub cols: BatchColumns<'b>,
    /// The column of each slot, once resolved (no lookup by field name per leaf).
    by_slot: Vec<Option<Col>>,
    sels: Vec<Selection>,
    memo: FastMap<(NodeId, SelId), SelId>,
    /// Per leaf on a dictionary column: its verdict on each distinct value decided so far.
    verdicts: Vec<Verdicts>,
    all: Option<SelId>,
    of_types: Vec<Option<SelId>>,
    /// The slot of `evt.type`, if any rule reads it.
    type_slot: Option<usize>,
}

impl<'p, 'b> Run<'p, 'b> {
    pub fn new(
        plan: &'p Plan,
        slots: &'p [FieldSlot],
        state: &'p EngineState,
        cols: BatchColumns<'b>,
        type_slot: Option<usize>,
    ) -> Self {
        Self {
            plan,
            slots,
            state,
            cols,
            by_slot: vec![None; slots.len()],
            sels: vec![Vec::new()],
            memo: FastMap::default(),
            verdicts: vec![Verdicts::default(); plan.nodes.len()],
            all: None,
            of_types: vec![None; plan.type_sets.len()],
            type_slot,
        }
    }

    pub fn rows(&self, id: SelId) -> &Selection {
        &self.sels[id as usize]
    }

    fn col(&mut self, slot: usize) -> Col {
        if let Some(c) = &self.by_slot[slot] {
            return c.clone();
        }
        let s = &self.slots[slot];
        let c = self.cols.get(&s.field, &s.key, self.state);
        self.by_slot[slot] = Some(c.clone());
        c
    }

    /// `rows`, a subset of `within`, as a selection: an empty one is [`EMPTY`] and one that
    /// kept every row is `within` itself, so that what follows is shared with every rule that
    /// reached `within`.
    fn intern(&mut self, rows: Selection, within: SelId) -> SelId {
        if rows.is_empty() {
            EMPTY
        } else if rows.len() == self.sels[within as usize].len() {
            within
        } else {
            self.push(rows)
        }
    }

    fn push(&mut self, rows: Selection) -> SelId {
        self.sels.push(rows);
        SelId::try_from(self.sels.len() - 1).expect("fewer than 2^32 selections")
    }

    /// Every row of the batch.
    fn all(&mut self) -> SelId {
        if let Some(id) = self.all {
            return id;
        }
        let n = u32::try_from(self.cols.rows()).expect("a batch has fewer than 2^32 rows");
        let id = self.push((0..n).collect());
        self.all = Some(id);
        id
    }

    /// The rows a rule limited to `types` (or to none) starts from: the rows of those event
    /// types, one pass over the batch's event codes per type set and batch.
    pub fn start(&mut self, types: Option<TypeSetId>) -> SelId {
        let Some(ts) = types else {
            return self.all();
        };
        if let Some(id) = self.of_types[ts as usize] {
            return id;
        }
        let all = self.all();
        let plan = self.plan;
        let id = match self.type_slot.map(|s| self.col(s)) {
            // No event column: nothing to narrow by.
            None | Some(Col::Null) => all,
            Some(col) => {
                let rows = filter(&col, &plan.type_sets[ts as usize], &self.sels[all as usize]);
                self.intern(rows, all)
            }
        };
        self.of_types[ts as usize] = Some(id);
        id
    }

    /// The rows of `sel` for which `node` holds.
    pub fn eval(&mut self, node: NodeId, sel: SelId) -> SelId {
        if sel == EMPTY {
            return EMPTY;
        }
        if let Some(r) = self.memo.get(&(node, sel)) {
            return *r;
        }
        let plan = self.plan;
        let r = match &plan.nodes[node as usize] {
            Node::Const(true) => sel,
            Node::Const(false) => EMPTY,
            Node::Leaf { slot, test } => {
                let col = self.col(*slot);
                let rows = match &col {
                    Col::Dict(d) => filter_dict(
                        d,
                        |v| v.is_some_and(|v| text_holds(test, v)),
                        &self.sels[sel as usize],
                        &mut self.verdicts[node as usize],
                    ),
                    _ => filter(&col, test, &self.sels[sel as usize]),
                };
                self.intern(rows, sel)
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
                        let u = union(&self.sels[matched as usize], &self.sels[m as usize]);
                        self.intern(u, sel)
                    };
                    if m == rest {
                        break;
                    }
                    let left = minus(&self.sels[rest as usize], &self.sels[m as usize]);
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
                    let rows = minus(&self.sels[sel as usize], &self.sels[m as usize]);
                    self.intern(rows, sel)
                }
            }
        };
        self.memo.insert((node, sel), r);
        r
    }
}
