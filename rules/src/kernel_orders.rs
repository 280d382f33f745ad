//! Which kill rules the kernel can decide, and what it is told for them.
//!
//! The probes can kill a process before it sees a syscall's result in two places: at the entry of
//! a syscall (a syscall order: every call of it dies) and at the exit of a file syscall whose path
//! matches a pattern (a path order: `startswith`, `=`, a directory's entries). A kill rule's
//! condition is read as a disjunction of terms, each a set of event types and at most one path
//! test; a term the kernel can check becomes an order, anything else is left to user space.
//!
//! Sound by construction: every order implies the rule's condition (a term is one side of an
//! `or`, and within an `and` every part is kept: a part the kernel cannot check drops the whole
//! term), so the kernel never kills where the rule would not. What it does not decide, user
//! space still does: the rule stays in the engine, which kills the sandbox when its row arrives.
//! Path tests are on the path as the process gave it, which is what `fd.name` is in user space
//! (`engine/columns.rs`); the probes also try the path an open's new descriptor names, which
//! catches more (relative paths, symlinks, `..`) than user space does.

use std::collections::BTreeSet;

use crate::{
    ast::{CmpOp, Expr, FieldRef, SetOp},
    engine::Engine,
    ruleset::Action,
};

/// Fields that are, on a file event, the path the syscall names (its first).
const PATH_FIELDS: [&str; 3] = ["fd.name", "evt.arg.path", "fd.nameraw"];

/// Conjunctions past this many alternatives are left to user space (a product of two long `in`
/// lists would make the kernel map large for little).
const MAX_TERMS: usize = 4096;

/// A test of a file syscall's path the kernel can make.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathTest {
    /// The path starts with this (`startswith`; `pmatch` below a directory).
    Prefix(String),
    /// The path is this (`=`, `in`; `pmatch` of the directory itself).
    Exact(String),
    /// The path is an entry of this directory (`fd.directory =`, `fd.directory in`): the
    /// directory, a `/` (none more for `/`), then a name without `/`.
    InDirectory(String),
}

/// A path order: the file syscalls among `syscalls` (None: every one) whose path passes `test`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PathKill {
    pub test: PathTest,
    pub syscalls: Option<Vec<String>>,
}

/// What the kernel can decide of one condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelOrders {
    /// Syscalls that match whatever their arguments: killed at entry.
    pub syscalls: Vec<String>,
    /// Path tests of file syscalls: killed at exit.
    pub paths: Vec<PathKill>,
    /// What is left to user space, each with why; empty: the orders are the whole condition.
    pub undecided: Vec<String>,
}

impl KernelOrders {
    /// Whether there is anything for the kernel.
    pub fn is_empty(&self) -> bool {
        self.syscalls.is_empty() && self.paths.is_empty()
    }
}

/// A kill rule of an engine with what the kernel can decide of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelKillRule {
    /// Index in [`Engine::rules`].
    pub rule: usize,
    pub orders: KernelOrders,
}

impl Engine {
    /// The rules the kernel can decide, at least in part: a `kill` action, no threshold (the
    /// kernel keeps no counts), and a condition with terms the probes check ([`orders`]).
    pub fn kernel_kill_rules(&self) -> Vec<KernelKillRule> {
        self.rules()
            .enumerate()
            .filter(|(_, r)| r.actions.contains(&Action::Kill) && r.threshold.is_none())
            .filter_map(|(rule, r)| {
                let orders = orders(&r.condition);
                (!orders.is_empty()).then_some(KernelKillRule { rule, orders })
            })
            .collect()
    }
}

/// What the kernel can decide of `condition` (an expanded rule condition).
pub fn orders(condition: &Expr) -> KernelOrders {
    let Terms { terms, undecided } = terms(condition);
    let mut syscalls = BTreeSet::new();
    let mut paths = BTreeSet::new();
    for t in terms {
        match (t.path, t.types) {
            (Some(test), types) => {
                paths.insert(PathKill {
                    test,
                    syscalls: types.map(|s| s.into_iter().collect()),
                });
            }
            (None, Some(types)) => syscalls.extend(types),
            // Every atom sets one of the two.
            (None, None) => {}
        }
    }
    let mut seen = BTreeSet::new();
    KernelOrders {
        syscalls: syscalls.into_iter().collect(),
        paths: paths.into_iter().collect(),
        undecided: undecided
            .into_iter()
            .filter(|r| seen.insert(r.clone()))
            .collect(),
    }
}

/// One alternative of a condition the kernel can check: an event in `types` (None: any) whose
/// path passes `path` (None: any).
#[derive(Clone, Debug)]
struct Term {
    types: Option<BTreeSet<String>>,
    path: Option<PathTest>,
}

/// Alternatives that each imply the expression, and what of it they leave out.
#[derive(Default)]
struct Terms {
    terms: Vec<Term>,
    undecided: Vec<String>,
}

impl Terms {
    fn of(terms: Vec<Term>) -> Self {
        Self {
            terms,
            undecided: Vec::new(),
        }
    }

    fn left(why: String) -> Self {
        Self {
            terms: Vec::new(),
            undecided: vec![why],
        }
    }

    fn types<'a>(values: impl IntoIterator<Item = &'a String>) -> Self {
        Self::of(vec![Term {
            types: Some(values.into_iter().cloned().collect()),
            path: None,
        }])
    }

    fn paths(tests: Vec<PathTest>) -> Self {
        Self::of(
            tests
                .into_iter()
                .map(|t| Term {
                    types: None,
                    path: Some(t),
                })
                .collect(),
        )
    }
}

fn plain(field: &FieldRef, name: &str) -> bool {
    field.index.is_none() && field.name == name
}

fn is_path(field: &FieldRef) -> bool {
    PATH_FIELDS.iter().any(|f| plain(field, f))
}

/// The kernel cannot hold an empty pattern (it would match every path, user space none of the
/// rows without one), so it is left to user space.
fn pattern(
    value: &str,
    e: &Expr,
    test: impl FnOnce(String) -> PathTest,
) -> Result<PathTest, String> {
    if value.is_empty() {
        return Err(format!("{e}: an empty path pattern"));
    }
    Ok(test(value.to_owned()))
}

/// `fd.name pmatch (p)`: the path is p or below it (user space: `StrTest::Pmatch`).
fn pmatch(p: &str) -> Vec<PathTest> {
    if p.ends_with('/') {
        vec![PathTest::Prefix(p.to_owned())]
    } else {
        vec![
            PathTest::Exact(p.to_owned()),
            PathTest::Prefix(format!("{p}/")),
        ]
    }
}

fn terms(e: &Expr) -> Terms {
    match e {
        Expr::Compare {
            field,
            op: CmpOp::Eq,
            value,
        } if plain(field, "evt.type") => Terms::types([value]),
        Expr::In {
            field,
            op: SetOp::In,
            values,
        } if plain(field, "evt.type") => Terms::types(values),
        Expr::Compare { field, op, value } if is_path(field) => {
            let test = match op {
                CmpOp::StartsWith => pattern(value, e, PathTest::Prefix),
                CmpOp::Eq => pattern(value, e, PathTest::Exact),
                _ => Err(format!(
                    "{e}: the kernel tests paths with startswith, =, in and pmatch only"
                )),
            };
            match test {
                Ok(t) => Terms::paths(vec![t]),
                Err(why) => Terms::left(why),
            }
        }
        Expr::Compare {
            field,
            op: CmpOp::Eq,
            value,
        } if plain(field, "fd.directory") => match pattern(value, e, PathTest::InDirectory) {
            Ok(t) => Terms::paths(vec![t]),
            Err(why) => Terms::left(why),
        },
        Expr::In { field, op, values }
            if is_path(field) || (plain(field, "fd.directory") && *op == SetOp::In) =>
        {
            let mut tests = Vec::new();
            for v in values {
                let one = match op {
                    SetOp::In if is_path(field) => pattern(v, e, PathTest::Exact).map(|t| vec![t]),
                    SetOp::In => pattern(v, e, PathTest::InDirectory).map(|t| vec![t]),
                    SetOp::Pmatch => pattern(v, e, PathTest::Prefix).map(|_| pmatch(v)),
                    SetOp::Intersects => Err(format!("{e}: a path has one value")),
                };
                match one {
                    Ok(t) => tests.extend(t),
                    Err(why) => return Terms::left(why),
                }
            }
            Terms::paths(tests)
        }
        Expr::Or(a, b) => {
            let (mut a, b) = (terms(a), terms(b));
            a.terms.extend(b.terms);
            a.undecided.extend(b.undecided);
            a
        }
        Expr::And(a, b) => and(e, terms(a), terms(b)),
        Expr::Not(_) => Terms::left(format!("{e}: the kernel does not decide a negation")),
        Expr::Compare { field, .. } | Expr::In { field, .. } | Expr::Exists(field) => Terms::left(
            format!("{e}: the kernel decides event types and file paths, not {field}"),
        ),
        Expr::MacroRef { name, .. } => Terms::left(format!("{name}: an unexpanded macro")),
    }
}

/// The terms of `a and b`: each pair of their terms that the kernel can check together.
fn and(e: &Expr, a: Terms, b: Terms) -> Terms {
    let mut undecided = a.undecided;
    undecided.extend(b.undecided);
    if a.terms.len().saturating_mul(b.terms.len()) > MAX_TERMS {
        undecided.push(format!("{e}: more than {MAX_TERMS} alternatives"));
        return Terms {
            terms: Vec::new(),
            undecided,
        };
    }
    let mut terms = Vec::new();
    let mut two_paths = false;
    for x in &a.terms {
        for y in &b.terms {
            let path = match (&x.path, &y.path) {
                (Some(_), Some(_)) => {
                    two_paths = true;
                    continue;
                }
                (p, None) | (None, p) => p.clone(),
            };
            let types = match (&x.types, &y.types) {
                (Some(s), Some(t)) => {
                    let both: BTreeSet<String> = s.intersection(t).cloned().collect();
                    if both.is_empty() {
                        // No event is of two types: nothing to decide, here or in user space.
                        continue;
                    }
                    Some(both)
                }
                (s, None) | (None, s) => s.clone(),
            };
            terms.push(Term { types, path });
        }
    }
    if two_paths {
        undecided.push(format!(
            "{e}: the kernel tests one path pattern per alternative"
        ));
    }
    Terms { terms, undecided }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ruleset::{Loader, RuleSet};

    fn rules(yaml: &str) -> RuleSet {
        let mut l = Loader::default();
        l.add_source(Path::new("test.yaml"), yaml);
        let (set, errors) = l.finish();
        assert!(errors.is_empty(), "{errors:?}");
        set
    }

    /// The orders of one condition, through the loader (macros and lists expanded).
    fn of(condition: &str) -> KernelOrders {
        let set = rules(&format!(
            "- list: secrets\n  items: [/etc/shadow, /etc/gshadow]\n\
             - macro: opens\n  condition: evt.type in (open, openat)\n\
             - rule: r\n  desc: d\n  condition: {condition}\n  output: o\n  priority: WARNING\n"
        ));
        orders(&set.rules[0].condition)
    }

    fn prefix(p: &str, syscalls: Option<&[&str]>) -> PathKill {
        PathKill {
            test: PathTest::Prefix(p.into()),
            syscalls: syscalls.map(|s| s.iter().map(|x| (*x).to_owned()).collect()),
        }
    }

    fn exact(p: &str, syscalls: Option<&[&str]>) -> PathKill {
        PathKill {
            test: PathTest::Exact(p.into()),
            ..prefix(p, syscalls)
        }
    }

    const OPENS: Option<&[&str]> = Some(&["open", "openat"]);

    #[test]
    fn kill_rules_without_thresholds_are_the_kernels() {
        let set = rules(
            r#"
- rule: kill on keyctl
  desc: d
  condition: evt.type in (keyctl, add_key) or evt.type = request_key
  output: o %proc.name
  priority: CRITICAL
  actions: [alert, kill]
- rule: alert only
  desc: d
  condition: evt.type = keyctl
  output: o
  priority: WARNING
- rule: kill with a process condition
  desc: d
  condition: evt.type = ptrace and proc.name = gdb
  output: o
  priority: WARNING
  actions: [kill]
- rule: kill on a path
  desc: d
  condition: evt.type = openat and fd.name startswith /etc/
  output: o
  priority: WARNING
  actions: [kill]
- rule: kill on a path, counted
  desc: d
  condition: fd.name startswith /etc/
  output: o
  priority: WARNING
  threshold: { count: 3, window: 1m }
  actions: [kill]
"#,
        );
        let engine = Engine::new(&set).unwrap();
        let rules = engine.kernel_kill_rules();
        assert_eq!(rules.len(), 2, "{rules:#?}");
        assert_eq!(rules[0].rule, 0);
        assert_eq!(
            rules[0].orders,
            KernelOrders {
                syscalls: vec!["add_key".into(), "keyctl".into(), "request_key".into()],
                ..KernelOrders::default()
            }
        );
        assert_eq!(engine.rule(rules[1].rule).name, "kill on a path");
        assert_eq!(rules[1].orders.paths, [prefix("/etc/", Some(&["openat"]))]);
        assert!(rules[1].orders.undecided.is_empty());
    }

    /// The path tests user space has (`fd.name`, `evt.arg.path`, `fd.nameraw`), each as the
    /// kernel's pattern: `startswith` a prefix, `=` and `in` whole paths, `pmatch` the path or
    /// what is below it.
    #[test]
    fn path_tests_become_patterns() {
        assert_eq!(
            of("fd.name startswith /etc/ssh/"),
            KernelOrders {
                paths: vec![prefix("/etc/ssh/", None)],
                ..KernelOrders::default()
            }
        );
        assert_eq!(
            of("evt.arg.path = /etc/shadow").paths,
            [exact("/etc/shadow", None)]
        );
        assert_eq!(
            of("fd.nameraw in (secrets)").paths,
            [exact("/etc/gshadow", None), exact("/etc/shadow", None)]
        );
        // pmatch: the directory itself or below it; with a trailing slash, below it only.
        assert_eq!(
            of("fd.name pmatch (/root, /home/)").paths,
            [
                prefix("/home/", None),
                prefix("/root/", None),
                exact("/root", None)
            ]
        );
        let dirs = of("fd.directory in (/etc, /)").paths;
        let tests: Vec<&PathTest> = dirs.iter().map(|p| &p.test).collect();
        assert_eq!(
            tests,
            [
                &PathTest::InDirectory("/".into()),
                &PathTest::InDirectory("/etc".into())
            ]
        );
        assert!(of("fd.directory = /etc").undecided.is_empty());
    }

    /// Event types restrict a path test to those syscalls, through macros and on either side of
    /// the `and`; types that cannot hold together leave nothing.
    #[test]
    fn event_types_restrict_path_tests() {
        let o = of("opens and fd.name in (secrets)");
        assert_eq!(
            o.paths,
            [exact("/etc/gshadow", OPENS), exact("/etc/shadow", OPENS)]
        );
        assert!(o.syscalls.is_empty() && o.undecided.is_empty());
        assert_eq!(
            of("fd.name startswith /x and evt.type in (openat, unlink)").paths,
            [prefix("/x", Some(&["openat", "unlink"]))]
        );
        assert_eq!(
            of("opens and evt.type in (openat, mkdir) and fd.name startswith /x").paths,
            [prefix("/x", Some(&["openat"]))]
        );
        assert!(of("evt.type = open and evt.type = mkdir and fd.name = /x").is_empty());
        // `and` distributes over `or`.
        assert_eq!(
            of("opens and (fd.name startswith /a or fd.name = /b)").paths,
            [prefix("/a", OPENS), exact("/b", OPENS)]
        );
    }

    /// Alternatives the kernel checks are ordered, the others are left to user space with the
    /// reason; a syscall alternative is a syscall order (killed at entry).
    #[test]
    fn each_alternative_is_decided_on_its_own() {
        let o = of("evt.type = ptrace or fd.name startswith /proc/kcore or proc.name = gdb");
        assert_eq!(o.syscalls, ["ptrace"]);
        assert_eq!(o.paths, [prefix("/proc/kcore", None)]);
        assert_eq!(o.undecided.len(), 1, "{o:?}");
        assert!(o.undecided[0].contains("not proc.name"), "{o:?}");
    }

    /// What stays in user space, and why: anything but event types and path tests, in an `and`
    /// it drops the whole alternative (the kernel cannot tell whether it holds); negations
    /// (exceptions among them); other string operators; two path tests in one alternative.
    #[test]
    fn what_the_kernel_cannot_decide_is_left_with_the_reason() {
        let cases: [(&str, &str); 9] = [
            (
                "opens and fd.name startswith /etc and proc.name = cat",
                "not proc.name",
            ),
            (
                "opens and evt.is_open_write = true and fd.name = /x",
                "not evt.is_open_write",
            ),
            (
                "fd.name startswith /etc and not fd.name startswith /etc/ssl",
                "negation",
            ),
            ("fd.name endswith .pem", "startswith, =, in and pmatch only"),
            (
                "fd.name contains shadow",
                "startswith, =, in and pmatch only",
            ),
            ("fd.name glob '/etc/*'", "startswith, =, in and pmatch only"),
            (
                "fd.name startswith /etc and fd.name startswith /etc/s",
                "one path pattern",
            ),
            ("fd.name = ''", "an empty path pattern"),
            ("fd.filename = shadow", "not fd.filename"),
        ];
        for (condition, why) in cases {
            let o = of(condition);
            assert!(o.is_empty(), "{condition}: {o:?}");
            assert!(
                o.undecided.iter().any(|r| r.contains(why)),
                "{condition}: {:?} does not say {why:?}",
                o.undecided
            );
        }
        // Indexed fields are other fields.
        assert!(of("proc.aname[2] = sh").is_empty());
        assert!(of("fd.name exists").is_empty());
    }

    #[test]
    fn too_many_alternatives_are_left_to_user_space() {
        let many: Vec<String> = (0..100).map(|i| format!("/p{i}")).collect();
        let list = many.join(", ");
        let o = of(&format!(
            "evt.type in ({}) and fd.name in ({list})",
            (0..100)
                .map(|i| format!("s{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        // 100 types are one alternative: 100 patterns, within bounds.
        assert_eq!(o.paths.len(), 100);
        let o = of(&format!(
            "(fd.name in ({list}) or evt.type in ({list})) and (fd.name in ({list}) or evt.type in ({list}))"
        ));
        assert!(o.is_empty(), "{o:?}");
        assert!(o.undecided.iter().any(|r| r.contains("alternatives")));
    }
}
