//! The condition AST: what a Falco condition means once parsed. `MacroRef` exists only between
//! parsing and [`crate::ruleset`]'s expansion; a compiled rule's condition never contains one.

use std::fmt;

/// A field with its optional argument: `proc.aname[2]` is `{ name: "proc.aname", index: Some("2") }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRef {
    pub name: String,
    pub index: Option<String>,
}

/// Binary comparison operators taking one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    IContains,
    BContains,
    StartsWith,
    BStartsWith,
    EndsWith,
    Glob,
    IGlob,
    Regex,
}

/// Operators taking a parenthesised list of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    /// The field's value equals one of the values.
    In,
    /// A multi-valued field (e.g. `proc.args`) shares a value with the list.
    Intersects,
    /// The field (a path) is one of the paths or below one of them.
    Pmatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        field: FieldRef,
        op: CmpOp,
        value: String,
    },
    /// `values` holds literals only: list names are replaced by their items at load time.
    In {
        field: FieldRef,
        op: SetOp,
        values: Vec<String>,
    },
    Exists(FieldRef),
    /// A macro name; `offset` is its byte offset in the condition text, for error positions.
    MacroRef {
        name: String,
        offset: usize,
    },
}

impl Expr {
    /// Every field the expression reads, in order of appearance.
    pub fn fields(&self) -> Vec<&FieldRef> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a FieldRef>) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect_fields(out);
                b.collect_fields(out);
            }
            Expr::Not(e) => e.collect_fields(out),
            Expr::Compare { field, .. } | Expr::In { field, .. } | Expr::Exists(field) => {
                out.push(field)
            }
            Expr::MacroRef { .. } => {}
        }
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.index {
            Some(i) => write!(f, "{}[{i}]", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Contains => "contains",
            CmpOp::IContains => "icontains",
            CmpOp::BContains => "bcontains",
            CmpOp::StartsWith => "startswith",
            CmpOp::BStartsWith => "bstartswith",
            CmpOp::EndsWith => "endswith",
            CmpOp::Glob => "glob",
            CmpOp::IGlob => "iglob",
            CmpOp::Regex => "regex",
        }
    }
}

impl SetOp {
    pub fn as_str(self) -> &'static str {
        match self {
            SetOp::In => "in",
            SetOp::Intersects => "intersects",
            SetOp::Pmatch => "pmatch",
        }
    }
}

/// Values are always quoted on output so that the text parses back to the same AST.
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(a, b) => write!(f, "({a} and {b})"),
            Expr::Or(a, b) => write!(f, "({a} or {b})"),
            Expr::Not(e) => write!(f, "not {e}"),
            Expr::Compare { field, op, value } => {
                write!(f, "{field} {} {}", op.as_str(), quote(value))
            }
            Expr::In { field, op, values } => {
                let vs: Vec<String> = values.iter().map(|v| quote(v)).collect();
                write!(f, "{field} {} ({})", op.as_str(), vs.join(", "))
            }
            Expr::Exists(field) => write!(f, "{field} exists"),
            Expr::MacroRef { name, .. } => f.write_str(name),
        }
    }
}
