//! Loading Falco rules files into a [`RuleSet`]: items `list`, `macro`, `rule` (with `append: true`
//! and `override:`), `required_engine_version` and `required_plugin_versions` (accepted,
//! ignored), and sandwatch's `actions`. Files load in order into one set of names, as Falco
//! loads its rules files, so a later file can append to or override an earlier one's items.
//!
//! Once everything is read, each rule's condition is parsed, its macros and list references are
//! expanded (cycles are errors), its exceptions are added as Falco does
//! (`(condition) and not (exception or ...)`) and it is marked evaluable or disabled by
//! [`crate::fields::availability`].
//!
//! Positions: `serde_yaml_ng` gives positions only for syntax errors, so the items' lines come
//! from the source text: every top-level `- ` line starts the next item of the sequence, and an
//! item's keys are the lines at its mapping's indentation. A condition's text is mapped back to
//! the source by rebuilding its scalar from those lines (plain, or `>`/`|` block) and checking
//! the rebuilt text equals what the YAML parser read; when it does, an error at offset `k` of
//! the condition has its exact line and column. When it does not (quoted scalars spanning
//! lines, blank lines inside a folded block), the error points at the start of the value.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};
use thiserror::Error;

use crate::ast::{CmpOp, Expr, FieldRef, SetOp};
use crate::fields::{availability, availability_in};
use crate::parse::{parse_condition, parse_field};

/// A rules file that could not be read or an item in it that does not load.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
        /// The rule that failed to load, when the error belongs to one.
        rule: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

impl Priority {
    /// Falco's names, case-insensitive; `info` is Falco's short form of `informational`.
    fn parse(s: &str) -> Option<Priority> {
        Some(match s.to_ascii_lowercase().as_str() {
            "emergency" => Priority::Emergency,
            "alert" => Priority::Alert,
            "critical" => Priority::Critical,
            "error" => Priority::Error,
            "warning" => Priority::Warning,
            "notice" => Priority::Notice,
            "informational" | "info" => Priority::Informational,
            "debug" => Priority::Debug,
            _ => return None,
        })
    }
}

/// What sandwatch does when a rule matches (a sandwatch extension to Falco's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Alert,
    Kill,
    Freeze,
}

/// Which stream a rule watches: Falco's `source:` key. sandwatch records syscalls (Falco's
/// `syscall` source, the default) and per-sandbox metric samples (`sandbox_metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    Syscall,
    SandboxMetrics,
}

/// A sandwatch extension: the rule fires when its condition matched more than `count` times
/// (or on more than `count` distinct values of `distinct`) within `window`, per value of `by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    pub count: u64,
    pub window: std::time::Duration,
    /// Fields whose values form the key; default `container.id` (per sandbox).
    pub by: Vec<FieldRef>,
    pub distinct: Option<FieldRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Evaluable,
    /// The condition needs data sandwatch does not record; `reason` names the first such field.
    Disabled {
        reason: String,
    },
}

/// Where an item was defined first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub desc: String,
    /// Macros, lists and exceptions expanded.
    pub condition: Expr,
    pub output: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    /// The file's `enabled:`; independent of `status`.
    pub enabled: bool,
    pub actions: Vec<Action>,
    pub status: Status,
    pub source: Source,
    pub event_source: EventSource,
    pub threshold: Option<Threshold>,
}

#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// Reads rules files in order; [`Loader::finish`] compiles what was read.
#[derive(Default)]
pub struct Loader {
    files: Vec<PathBuf>,
    lists: HashMap<String, ListDef>,
    macros: HashMap<String, MacroDef>,
    rules: Vec<RuleDef>,
    errors: Vec<LoadError>,
}

/// A piece of condition text and where its characters come from.
#[derive(Debug, Clone)]
struct Located {
    text: String,
    file: usize,
    /// Byte offset in `text` where a run of characters starts, and that run's line and column.
    segs: Vec<(usize, usize, usize)>,
    /// False when the text could not be mapped back to the source: every offset then reports
    /// the start of the value.
    exact: bool,
}

impl Located {
    fn position(&self, offset: usize) -> (usize, usize) {
        let &(start, line, col) = self
            .segs
            .iter()
            .rev()
            .find(|(s, _, _)| *s <= offset)
            .unwrap_or(&(0, 1, 1));
        if !self.exact {
            return (line, col);
        }
        let end = offset.min(self.text.len());
        let chars = self.text.get(start..end).map_or(0, |s| s.chars().count());
        (line, col + chars)
    }
}

/// A condition as appended together: pieces joined by one space, as Falco joins them.
#[derive(Debug, Clone, Default)]
struct CondText(Vec<Located>);

impl CondText {
    fn text(&self) -> String {
        let parts: Vec<&str> = self.0.iter().map(|l| l.text.as_str()).collect();
        parts.join(" ")
    }

    /// The file, line and column of a byte offset in [`CondText::text`].
    fn position(&self, mut offset: usize) -> (usize, usize, usize) {
        for piece in &self.0 {
            if offset <= piece.text.len() {
                let (line, col) = piece.position(offset);
                return (piece.file, line, col);
            }
            offset -= piece.text.len() + 1;
        }
        let last = self.0.last().expect("a condition has at least one piece");
        let (line, col) = last.position(last.text.len());
        (last.file, line, col)
    }
}

struct ListDef {
    items: Vec<String>,
}

struct MacroDef {
    condition: CondText,
}

struct ExceptionDef {
    name: String,
    fields: Value,
    comps: Option<Value>,
    values: Vec<Value>,
    file: usize,
    line: usize,
}

struct RuleDef {
    name: String,
    desc: Option<String>,
    condition: Option<CondText>,
    output: Option<String>,
    priority: Option<Priority>,
    tags: Vec<String>,
    enabled: bool,
    actions: Vec<Action>,
    exceptions: Vec<ExceptionDef>,
    /// Falco's `source:` as written (`syscall` when absent).
    event_source: String,
    threshold: Option<Threshold>,
    file: usize,
    line: usize,
}

/// One top-level item of a file and its lines, for positions.
struct Item<'a> {
    map: &'a Mapping,
    lines: &'a [&'a str],
    /// 0-based index of the item's `- ` line; `end` is one past its last line.
    start: usize,
    end: usize,
    /// Column (0-based) of the item mapping's keys.
    indent: usize,
    file: usize,
}

/// An error inside an item: message and 1-based line and column.
struct ItemError {
    line: usize,
    column: usize,
    message: String,
}

impl<'a> Item<'a> {
    fn err(&self, key: Option<&str>, message: impl Into<String>) -> ItemError {
        let (line, column) = key
            .and_then(|k| self.key_pos(k))
            .unwrap_or((self.start + 1, self.indent + 1));
        ItemError {
            line,
            column,
            message: message.into(),
        }
    }

    /// 1-based line and column of `key:` in this item.
    fn key_pos(&self, key: &str) -> Option<(usize, usize)> {
        (self.start..self.end).find_map(|i| {
            let l = self.lines[i];
            let head = if i == self.start {
                l.get(..self.indent)?.replace('-', " ")
            } else {
                l.get(..self.indent)?.to_string()
            };
            let rest = &l[self.indent..];
            (head.trim().is_empty() && rest.starts_with(key) && rest[key.len()..].starts_with(':'))
                .then_some((i + 1, self.indent + 1))
        })
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn string(&self, key: &str) -> Result<Option<String>, ItemError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => scalar(v)
                .map(Some)
                .ok_or_else(|| self.err(Some(key), format!("{key} must be a string"))),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, ItemError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Sequence(s)) => s
                .iter()
                .map(|v| {
                    scalar(v).ok_or_else(|| {
                        self.err(Some(key), format!("{key} must be a list of strings"))
                    })
                })
                .collect(),
            Some(_) => Err(self.err(Some(key), format!("{key} must be a list"))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ItemError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(Some(key), format!("{key} must be true or false"))),
        }
    }

    /// The condition's text with each character's source position (see the module doc).
    fn located(&self, key: &str, text: &str) -> Located {
        let fallback = |line: usize, col: usize| Located {
            text: text.to_string(),
            file: self.file,
            segs: vec![(0, line, col)],
            exact: false,
        };
        let Some((line, _)) = self.key_pos(key) else {
            return fallback(self.start + 1, self.indent + 1);
        };
        let l = self.lines[line - 1];
        let after = self.indent + key.len() + 1;
        let rest = &l[after..];
        let trimmed = rest.trim_start();
        let value_col = l[..after + rest.len() - trimmed.len()].chars().count() + 1;
        let mut rebuilt = String::new();
        let mut segs = Vec::new();
        let mut push = |rebuilt: &mut String, sep: &str, piece: &str, line: usize, col: usize| {
            if !rebuilt.is_empty() {
                rebuilt.push_str(sep);
            }
            segs.push((rebuilt.len(), line, col));
            rebuilt.push_str(piece);
        };
        let continuation = (line..self.end)
            .take_while(|&i| {
                let t = self.lines[i];
                t.trim().is_empty() || t.len() - t.trim_start().len() > self.indent
            })
            .filter(|&i| !self.lines[i].trim().is_empty());
        let sep = if trimmed.starts_with('|') { "\n" } else { " " };
        if trimmed.starts_with('>') || trimmed.starts_with('|') {
            for i in continuation {
                let t = self.lines[i];
                let ind = t.len() - t.trim_start().len();
                push(&mut rebuilt, sep, t.trim(), i + 1, ind + 1);
            }
        } else if trimmed.starts_with('"') || trimmed.starts_with('\'') {
            let inner = trimmed.trim_end();
            if inner.len() >= 2 && inner.ends_with(&trimmed[..1]) {
                push(
                    &mut rebuilt,
                    " ",
                    &inner[1..inner.len() - 1],
                    line,
                    value_col + 1,
                );
            }
        } else {
            push(&mut rebuilt, " ", trimmed.trim_end(), line, value_col);
            for i in continuation {
                let t = self.lines[i];
                let ind = t.len() - t.trim_start().len();
                push(&mut rebuilt, " ", t.trim(), i + 1, ind + 1);
            }
        }
        if rebuilt.trim_end() == text.trim_end() {
            Located {
                text: text.to_string(),
                file: self.file,
                segs,
                exact: true,
            }
        } else {
            fallback(line, value_col)
        }
    }
}

/// A YAML scalar as text (Falco list items may be numbers).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// How an item changes an existing one of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Define,
    Append,
    Replace,
}

const RULE_KEYS: &[&str] = &[
    "rule",
    "desc",
    "condition",
    "output",
    "priority",
    "tags",
    "enabled",
    "exceptions",
    "actions",
    "threshold",
    "source",
    "append",
    "override",
    // Falco keys with no meaning for sandwatch, accepted so that Falco's files load.
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
];

impl Loader {
    /// Reads one rules file; problems are kept for [`Loader::finish`].
    pub fn add_file(&mut self, path: &Path) {
        match std::fs::read_to_string(path) {
            Ok(src) => self.add_source(path, &src),
            Err(source) => self.errors.push(LoadError::Read {
                file: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Reads rules from `src`, reporting positions against `path`.
    pub fn add_source(&mut self, path: &Path, src: &str) {
        let file = self.files.len();
        self.files.push(path.to_path_buf());
        let invalid = |line, column, message: String| LoadError::Invalid {
            file: path.to_path_buf(),
            line,
            column,
            message,
            rule: None,
        };
        let doc: Value = match serde_yaml_ng::from_str(src) {
            Ok(v) => v,
            Err(e) => {
                let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                self.errors.push(invalid(line, column, e.to_string()));
                return;
            }
        };
        let items = match doc {
            Value::Null => return,
            Value::Sequence(items) => items,
            _ => {
                self.errors
                    .push(invalid(1, 1, "a rules file is a list of items".into()));
                return;
            }
        };
        let lines: Vec<&str> = src.lines().collect();
        let starts: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i] == "-" || lines[i].starts_with("- "))
            .collect();
        if starts.len() != items.len() {
            // Flow-style or indented sequences: item positions would be wrong, so say so.
            self.errors.push(invalid(
                1,
                1,
                format!(
                    "expected each item to start a line with \"- \" ({} items, {} such lines)",
                    items.len(),
                    starts.len()
                ),
            ));
            return;
        }
        for (n, value) in items.iter().enumerate() {
            let start = starts[n];
            let end = starts.get(n + 1).copied().unwrap_or(lines.len());
            let first = lines[start];
            let indent = 1 + first[1..].len() - first[1..].trim_start().len();
            let Value::Mapping(map) = value else {
                self.errors
                    .push(invalid(start + 1, 1, "an item must be a mapping".into()));
                continue;
            };
            let item = Item {
                map,
                lines: &lines,
                start,
                end,
                indent,
                file,
            };
            if let Err(e) = self.add_item(&item) {
                let rule = item.string("rule").ok().flatten();
                self.errors.push(LoadError::Invalid {
                    file: path.to_path_buf(),
                    line: e.line,
                    column: e.column,
                    message: e.message,
                    rule,
                });
            }
        }
    }

    fn add_item(&mut self, item: &Item<'_>) -> Result<(), ItemError> {
        if let Some(name) = item.string("list")? {
            self.add_list(item, name)
        } else if let Some(name) = item.string("macro")? {
            self.add_macro(item, name)
        } else if let Some(name) = item.string("rule")? {
            self.add_rule(item, name)
        } else if item.get("required_engine_version").is_some()
            || item.get("required_plugin_versions").is_some()
        {
            Ok(())
        } else {
            Err(item.err(
                None,
                "unknown item: expected rule, macro, list, required_engine_version or required_plugin_versions",
            ))
        }
    }

    fn check_keys(item: &Item<'_>, allowed: &[&str], kind: &str) -> Result<(), ItemError> {
        for k in item.map.keys() {
            let k = scalar(k).unwrap_or_default();
            if !allowed.contains(&k.as_str()) {
                return Err(item.err(Some(&k), format!("unknown key {k:?} in a {kind}")));
            }
        }
        Ok(())
    }

    /// How `key` changes an existing item: `append: true` appends the appendable keys;
    /// `override: {key: append|replace}` names each key it changes.
    fn change(item: &Item<'_>, key: &str, appendable: bool) -> Result<Change, ItemError> {
        if let Some(ov) = item.get("override") {
            let Value::Mapping(ov) = ov else {
                return Err(item.err(Some("override"), "override must be a mapping"));
            };
            return match ov.get(key).and_then(Value::as_str) {
                None => Ok(Change::Define),
                Some("append") if appendable => Ok(Change::Append),
                Some("replace") => Ok(Change::Replace),
                Some(other) => Err(item.err(
                    Some("override"),
                    format!("override of {key}: {other:?} is not valid (append is only for condition, output, desc, tags, exceptions, items)"),
                )),
            };
        }
        if item.bool("append")? == Some(true) {
            return Ok(if appendable {
                Change::Append
            } else {
                Change::Define
            });
        }
        Ok(Change::Define)
    }

    /// Whether the item modifies an existing one rather than defining it.
    fn modifies(item: &Item<'_>) -> Result<bool, ItemError> {
        if let Some(ov) = item.get("override") {
            let Value::Mapping(ov) = ov else {
                return Err(item.err(Some("override"), "override must be a mapping"));
            };
            for k in ov.keys() {
                let k = scalar(k).unwrap_or_default();
                if item.get(&k).is_none() {
                    return Err(item.err(
                        Some("override"),
                        format!("override names {k:?}, which the item does not set"),
                    ));
                }
            }
            if item.get("append").is_some() {
                return Err(item.err(Some("append"), "append and override cannot be combined"));
            }
            return Ok(true);
        }
        Ok(item.bool("append")? == Some(true))
    }

    fn add_list(&mut self, item: &Item<'_>, name: String) -> Result<(), ItemError> {
        Self::check_keys(item, &["list", "items", "append", "override"], "list")?;
        if item.get("items").is_none() {
            return Err(item.err(None, format!("list {name:?} has no items")));
        }
        let items = item.strings("items")?;
        if Self::modifies(item)? {
            let Some(list) = self.lists.get_mut(&name) else {
                return Err(item.err(None, format!("list {name:?} does not exist yet")));
            };
            match Self::change(item, "items", true)? {
                Change::Append => list.items.extend(items),
                _ => list.items = items,
            }
        } else {
            self.lists.insert(name, ListDef { items });
        }
        Ok(())
    }

    fn add_macro(&mut self, item: &Item<'_>, name: String) -> Result<(), ItemError> {
        Self::check_keys(item, &["macro", "condition", "append", "override"], "macro")?;
        let Some(text) = item.string("condition")? else {
            return Err(item.err(None, format!("macro {name:?} has no condition")));
        };
        let piece = item.located("condition", &text);
        if Self::modifies(item)? {
            let Some(m) = self.macros.get_mut(&name) else {
                return Err(item.err(None, format!("macro {name:?} does not exist yet")));
            };
            match Self::change(item, "condition", true)? {
                Change::Append => m.condition.0.push(piece),
                _ => m.condition = CondText(vec![piece]),
            }
        } else {
            self.macros.insert(
                name,
                MacroDef {
                    condition: CondText(vec![piece]),
                },
            );
        }
        Ok(())
    }

    fn exceptions(item: &Item<'_>) -> Result<Vec<ExceptionDef>, ItemError> {
        let key = Some("exceptions");
        let list = match item.get("exceptions") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Sequence(s)) => s,
            Some(_) => return Err(item.err(key, "exceptions must be a list")),
        };
        list.iter()
            .map(|e| {
                let Value::Mapping(m) = e else {
                    return Err(item.err(key, "an exception must be a mapping"));
                };
                for k in m.keys() {
                    let k = scalar(k).unwrap_or_default();
                    if !["name", "fields", "comps", "values"].contains(&k.as_str()) {
                        return Err(item.err(key, format!("unknown key {k:?} in an exception")));
                    }
                }
                let name = m
                    .get("name")
                    .and_then(scalar)
                    .ok_or_else(|| item.err(key, "an exception needs a name"))?;
                let values = match m.get("values") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Sequence(v)) => v.clone(),
                    Some(_) => {
                        return Err(
                            item.err(key, format!("exception {name:?}: values must be a list"))
                        );
                    }
                };
                Ok(ExceptionDef {
                    name,
                    fields: m.get("fields").cloned().unwrap_or(Value::Null),
                    comps: m.get("comps").cloned(),
                    values,
                    file: item.file,
                    line: item.key_pos("exceptions").map_or(item.start + 1, |p| p.0),
                })
            })
            .collect()
    }

    fn actions(item: &Item<'_>) -> Result<Vec<Action>, ItemError> {
        if item.get("actions").is_none() {
            return Ok(vec![Action::Alert]);
        }
        item.strings("actions")?
            .iter()
            .map(|a| match a.as_str() {
                "alert" => Ok(Action::Alert),
                "kill" => Ok(Action::Kill),
                "freeze" => Ok(Action::Freeze),
                other => Err(item.err(
                    Some("actions"),
                    format!("unknown action {other:?} (alert, kill, freeze)"),
                )),
            })
            .collect()
    }

    fn priority(item: &Item<'_>) -> Result<Option<Priority>, ItemError> {
        item.string("priority")?
            .map(|p| {
                Priority::parse(&p).ok_or_else(|| {
                    item.err(
                        Some("priority"),
                        format!("unknown priority {p:?} (emergency, alert, critical, error, warning, notice, informational, debug)"),
                    )
                })
            })
            .transpose()
    }

    /// `threshold: { count: N, window: DURATION, by: [FIELD...], distinct: FIELD }`.
    fn threshold(item: &Item<'_>) -> Result<Option<Threshold>, ItemError> {
        let key = Some("threshold");
        let m = match item.get("threshold") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Mapping(m)) => m,
            Some(_) => {
                return Err(item.err(
                    key,
                    "threshold must be a mapping: { count: N, window: 1m, by: [container.id], distinct: FIELD }",
                ));
            }
        };
        let (mut count, mut window, mut by, mut distinct) = (None, None, Vec::new(), None);
        for (k, v) in m {
            let field = |v: &Value| -> Result<FieldRef, ItemError> {
                let text = v
                    .as_str()
                    .ok_or_else(|| item.err(key, "threshold fields are field names"))?;
                let f = parse_field(text).map_err(|e| {
                    item.err(key, format!("threshold field {text:?}: {}", e.message))
                })?;
                availability(&f).map_err(|why| item.err(key, format!("threshold: {why}")))?;
                Ok(f)
            };
            match k.as_str() {
                Some("count") => {
                    // 0: fire on the first match, then stay quiet for the window.
                    count = Some(v.as_u64().ok_or_else(|| {
                        item.err(key, "threshold.count must be a whole number (0 or more)")
                    })?)
                }
                Some("window") => {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => format!("{n}s"),
                        _ => String::new(),
                    };
                    let d = humantime::parse_duration(&text).map_err(|e| {
                        item.err(
                            key,
                            format!("threshold.window {text:?}: {e} (e.g. 60s, 1m, 500ms)"),
                        )
                    })?;
                    if d.is_zero() {
                        return Err(item.err(key, "threshold.window must be above 0"));
                    }
                    window = Some(d);
                }
                Some("by") => {
                    by = match v {
                        Value::Sequence(s) => s.iter().map(field).collect::<Result<_, _>>()?,
                        one => vec![field(one)?],
                    }
                }
                Some("distinct") => distinct = Some(field(v)?),
                _ => {
                    return Err(item.err(
                        key,
                        format!(
                            "unknown key {:?} in threshold (count, window, by, distinct)",
                            k.as_str().unwrap_or("?")
                        ),
                    ));
                }
            }
        }
        let count = count.ok_or_else(|| item.err(key, "threshold needs count"))?;
        let window = window.ok_or_else(|| item.err(key, "threshold needs window"))?;
        if by.is_empty() {
            by.push(FieldRef {
                name: "container.id".into(),
                index: None,
            });
        }
        Ok(Some(Threshold {
            count,
            window,
            by,
            distinct,
        }))
    }

    fn add_rule(&mut self, item: &Item<'_>, name: String) -> Result<(), ItemError> {
        Self::check_keys(item, RULE_KEYS, "rule")?;
        let condition = item
            .string("condition")?
            .map(|t| item.located("condition", &t));
        let existing = self.rules.iter().position(|r| r.name == name);
        let only_enabled = item
            .map
            .keys()
            .all(|k| matches!(k.as_str(), Some("rule" | "enabled")));
        if Self::modifies(item)? || (only_enabled && item.get("enabled").is_some()) {
            let Some(i) = existing else {
                return Err(item.err(None, format!("rule {name:?} does not exist yet")));
            };
            let append_only = item.get("override").is_none();
            let rule = &mut self.rules[i];
            for key in ["desc", "output", "priority", "tags", "enabled", "actions"] {
                if item.get(key).is_none() {
                    continue;
                }
                let appendable = matches!(key, "desc" | "output" | "tags");
                let change = Self::change(item, key, appendable)?;
                if append_only && !only_enabled && change == Change::Define {
                    return Err(item.err(
                        Some(key),
                        format!("append: true adds to condition, exceptions, output, desc and tags only; use override to change {key}"),
                    ));
                }
                let append = change == Change::Append;
                match key {
                    "desc" => join(&mut rule.desc, item.string(key)?, append),
                    "output" => join(&mut rule.output, item.string(key)?, append),
                    "priority" => rule.priority = Self::priority(item)?,
                    "tags" if append => rule.tags.extend(item.strings(key)?),
                    "tags" => rule.tags = item.strings(key)?,
                    "enabled" => rule.enabled = item.bool(key)?.unwrap_or(true),
                    _ => rule.actions = Self::actions(item)?,
                }
            }
            if let Some(piece) = condition {
                match Self::change(item, "condition", true)? {
                    Change::Replace => rule.condition = Some(CondText(vec![piece])),
                    _ => match &mut rule.condition {
                        Some(c) => c.0.push(piece),
                        None => rule.condition = Some(CondText(vec![piece])),
                    },
                }
            }
            if item.get("exceptions").is_some() {
                let new = Self::exceptions(item)?;
                if Self::change(item, "exceptions", true)? == Change::Replace {
                    rule.exceptions = new;
                } else {
                    for e in new {
                        match rule.exceptions.iter_mut().find(|x| x.name == e.name) {
                            Some(x) => x.values.extend(e.values),
                            None => rule.exceptions.push(e),
                        }
                    }
                }
            }
            return Ok(());
        }
        for key in ["condition", "output", "desc", "priority"] {
            if item.get(key).is_none() {
                return Err(item.err(None, format!("rule {name:?} has no {key}")));
            }
        }
        let def = RuleDef {
            desc: item.string("desc")?,
            condition: condition.map(|c| CondText(vec![c])),
            output: item.string("output")?,
            priority: Self::priority(item)?,
            tags: item.strings("tags")?,
            enabled: item.bool("enabled")?.unwrap_or(true),
            actions: Self::actions(item)?,
            exceptions: Self::exceptions(item)?,
            event_source: item.string("source")?.unwrap_or_else(|| "syscall".into()),
            threshold: Self::threshold(item)?,
            file: item.file,
            line: item.start + 1,
            name,
        };
        // A rule defined again replaces the earlier one in its place, as in Falco.
        match existing {
            Some(i) => self.rules[i] = def,
            None => self.rules.push(def),
        }
        Ok(())
    }

    /// Compiles every rule: the rules that compile, and every error met while reading and
    /// compiling.
    pub fn finish(mut self) -> (RuleSet, Vec<LoadError>) {
        let mut errors = std::mem::take(&mut self.errors);
        // Every macro is parsed, used or not, so that a syntax error is reported once, where
        // the macro is; rules using it then fail with a pointer to that report.
        let mut names: Vec<&String> = self.macros.keys().collect();
        names.sort_by_key(|n| self.macros[*n].condition.position(0));
        let mut parsed = HashMap::new();
        for name in names {
            let m = &self.macros[name];
            match parse_condition(&m.condition.text()) {
                Ok(e) => {
                    parsed.insert(name.clone(), e);
                }
                Err(e) => errors.push(self.invalid(&m.condition, e.offset, e.message, None)),
            }
        }
        let ctx = Compiler {
            loader: &self,
            parsed: &parsed,
        };
        let mut rules = Vec::new();
        for def in &self.rules {
            match ctx.compile(def) {
                Ok(rule) => rules.push(rule),
                Err(e) => errors.push(e),
            }
        }
        (RuleSet { rules }, errors)
    }

    fn invalid(
        &self,
        cond: &CondText,
        offset: usize,
        message: String,
        rule: Option<&str>,
    ) -> LoadError {
        let (file, line, column) = cond.position(offset);
        LoadError::Invalid {
            file: self.files[file].clone(),
            line,
            column,
            message,
            rule: rule.map(str::to_string),
        }
    }
}

fn unquote(item: &str) -> String {
    let t = item.trim();
    for q in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return t[1..t.len() - 1].to_owned();
        }
    }
    item.to_owned()
}

fn join(target: &mut Option<String>, new: Option<String>, append: bool) {
    match (target.as_mut(), new) {
        (Some(t), Some(n)) if append => {
            t.push(' ');
            t.push_str(&n);
        }
        (_, n @ Some(_)) => *target = n,
        (_, None) => {}
    }
}

/// Expands macros, lists and exceptions of one rule.
struct Compiler<'a> {
    loader: &'a Loader,
    parsed: &'a HashMap<String, Expr>,
}

impl Compiler<'_> {
    fn compile(&self, def: &RuleDef) -> Result<Rule, LoadError> {
        let l = self.loader;
        let rule_err = |message: String| LoadError::Invalid {
            file: l.files[def.file].clone(),
            line: def.line,
            column: 1,
            message,
            rule: Some(def.name.clone()),
        };
        let cond = def
            .condition
            .as_ref()
            .ok_or_else(|| rule_err("the rule has no condition".into()))?;
        let expr = parse_condition(&cond.text())
            .map_err(|e| l.invalid(cond, e.offset, e.message, Some(&def.name)))?;
        let mut stack = Vec::new();
        let mut expr = self
            .expand(expr, cond, &mut stack)
            .map_err(|(c, offset, message)| l.invalid(c, offset, message, Some(&def.name)))?;
        let mut excepted = None::<Expr>;
        for e in &def.exceptions {
            let clause = self.exception(e).map_err(|message| LoadError::Invalid {
                file: l.files[e.file].clone(),
                line: e.line,
                column: 1,
                message: format!("exception {:?}: {message}", e.name),
                rule: Some(def.name.clone()),
            })?;
            if let Some(c) = clause {
                excepted = Some(match excepted {
                    None => c,
                    Some(prev) => Expr::Or(Box::new(prev), Box::new(c)),
                });
            }
        }
        if let Some(x) = excepted {
            expr = Expr::And(Box::new(expr), Box::new(Expr::Not(Box::new(x))));
        }
        let event_source = match def.event_source.as_str() {
            "syscall" => Some(EventSource::Syscall),
            "sandbox_metrics" => Some(EventSource::SandboxMetrics),
            _ => None,
        };
        let status = match event_source {
            None => Status::Disabled {
                reason: format!(
                    "source {:?}: sandwatch records syscalls and sandbox_metrics only",
                    def.event_source
                ),
            },
            Some(src) => match expr
                .fields()
                .into_iter()
                .find_map(|f| availability_in(f, src).err())
            {
                None => Status::Evaluable,
                Some(reason) => Status::Disabled { reason },
            },
        };
        Ok(Rule {
            name: def.name.clone(),
            desc: def.desc.clone().unwrap_or_default(),
            condition: expr,
            output: def.output.clone().unwrap_or_default(),
            priority: def.priority.unwrap_or(Priority::Debug),
            tags: def.tags.clone(),
            enabled: def.enabled,
            actions: def.actions.clone(),
            status,
            source: Source {
                file: l.files[def.file].clone(),
                line: def.line,
            },
            event_source: event_source.unwrap_or(EventSource::Syscall),
            threshold: def.threshold.clone(),
        })
    }

    /// Replaces macro references by their (expanded) conditions and list names inside value
    /// lists by their items. `cond` is the text `expr` was parsed from, for positions.
    fn expand<'c>(
        &'c self,
        expr: Expr,
        cond: &'c CondText,
        stack: &mut Vec<String>,
    ) -> Result<Expr, (&'c CondText, usize, String)> {
        Ok(match expr {
            Expr::And(a, b) => Expr::And(
                Box::new(self.expand(*a, cond, stack)?),
                Box::new(self.expand(*b, cond, stack)?),
            ),
            Expr::Or(a, b) => Expr::Or(
                Box::new(self.expand(*a, cond, stack)?),
                Box::new(self.expand(*b, cond, stack)?),
            ),
            Expr::Not(e) => Expr::Not(Box::new(self.expand(*e, cond, stack)?)),
            Expr::In { field, op, values } => Expr::In {
                field,
                op,
                values: self.expand_values(values).map_err(|m| (cond, 0, m))?,
            },
            Expr::MacroRef { name, offset } => {
                let Some(def) = self.loader.macros.get(&name) else {
                    return Err((cond, offset, format!("undefined macro {name:?}")));
                };
                if stack.contains(&name) {
                    stack.push(name);
                    return Err((cond, offset, format!("macro cycle: {}", stack.join(" -> "))));
                }
                let parsed = match self.parsed.get(&name) {
                    Some(e) => e.clone(),
                    None => {
                        return Err((
                            cond,
                            offset,
                            format!("macro {name:?} does not parse (reported where it is defined)"),
                        ));
                    }
                };
                stack.push(name);
                let e = self.expand(parsed, &def.condition, stack)?;
                stack.pop();
                e
            }
            e @ (Expr::Compare { .. } | Expr::Exists(_)) => e,
        })
    }

    /// List names among `values` replaced by their items, recursively (lists may name lists).
    fn expand_values(&self, values: Vec<String>) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for v in values {
            self.push_value(v, &mut out, &mut seen)?;
        }
        Ok(out)
    }

    fn push_value(
        &self,
        v: String,
        out: &mut Vec<String>,
        seen: &mut HashSet<String>,
    ) -> Result<(), String> {
        match self.loader.lists.get(&v) {
            None => out.push(v),
            Some(list) => {
                if !seen.insert(v.clone()) {
                    return Err(format!("list {v:?} contains itself"));
                }
                for item in &list.items {
                    // Falco pastes list items into the condition's text, so an item written
                    // with quotes ('"10.0.0.0/8"') is a quoted value there.
                    self.push_value(unquote(item), out, seen)?;
                }
                seen.remove(&v);
            }
        }
        Ok(())
    }

    /// Falco's exception semantics: with `fields` a list, each value is a tuple and matches
    /// when every `field comp value` holds (comps default to `=`); with `fields` one field, the
    /// values are one list compared with `comps` (default `in`). No values: no clause.
    fn exception(&self, e: &ExceptionDef) -> Result<Option<Expr>, String> {
        if e.values.is_empty() {
            return Ok(None);
        }
        let field = |v: &Value| {
            scalar(v)
                .ok_or_else(|| "fields must be field names".to_string())
                .and_then(|s| parse_field(&s).map_err(|err| err.message))
        };
        let mut clauses = Vec::new();
        match &e.fields {
            Value::Sequence(fields) => {
                let fields: Vec<FieldRef> = fields.iter().map(field).collect::<Result<_, _>>()?;
                let comps: Vec<String> = match &e.comps {
                    None => vec!["=".to_string(); fields.len()],
                    Some(Value::Sequence(c)) => c
                        .iter()
                        .map(|v| scalar(v).ok_or_else(|| "comps must be operators".to_string()))
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err("comps must be a list when fields is".into()),
                };
                if comps.len() != fields.len() {
                    return Err(format!("{} fields but {} comps", fields.len(), comps.len()));
                }
                for tuple in &e.values {
                    let Value::Sequence(tuple) = tuple else {
                        return Err("each value must be a list with one item per field".into());
                    };
                    if tuple.len() != fields.len() {
                        return Err(format!(
                            "a value has {} items for {} fields",
                            tuple.len(),
                            fields.len()
                        ));
                    }
                    let mut all = None::<Expr>;
                    for ((f, c), v) in fields.iter().zip(&comps).zip(tuple) {
                        let check = self.check(f.clone(), c, v)?;
                        all = Some(match all {
                            None => check,
                            Some(prev) => Expr::And(Box::new(prev), Box::new(check)),
                        });
                    }
                    clauses.extend(all);
                }
            }
            single => {
                let f = field(single)?;
                let comp = match &e.comps {
                    None => "in".to_string(),
                    Some(c) => {
                        scalar(c).ok_or("comps must be an operator when fields is one field")?
                    }
                };
                clauses.push(self.check(f, &comp, &Value::Sequence(e.values.clone()))?);
            }
        }
        Ok(clauses
            .into_iter()
            .reduce(|a, b| Expr::Or(Box::new(a), Box::new(b))))
    }

    fn check(&self, field: FieldRef, comp: &str, value: &Value) -> Result<Expr, String> {
        let set = match comp {
            "in" => Some(SetOp::In),
            "intersects" => Some(SetOp::Intersects),
            "pmatch" => Some(SetOp::Pmatch),
            _ => None,
        };
        if let Some(op) = set {
            let values = match value {
                Value::Sequence(s) => s
                    .iter()
                    .map(|v| scalar(v).ok_or_else(|| "values must be strings".to_string()))
                    .collect::<Result<Vec<_>, _>>()?,
                v => vec![scalar(v).ok_or("values must be strings")?],
            };
            return Ok(Expr::In {
                field,
                op,
                values: self.expand_values(values)?,
            });
        }
        let op = match comp {
            "=" | "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "contains" => CmpOp::Contains,
            "icontains" => CmpOp::IContains,
            "bcontains" => CmpOp::BContains,
            "startswith" => CmpOp::StartsWith,
            "bstartswith" => CmpOp::BStartsWith,
            "endswith" => CmpOp::EndsWith,
            "glob" => CmpOp::Glob,
            "iglob" => CmpOp::IGlob,
            "regex" => CmpOp::Regex,
            other => return Err(format!("unknown comparison {other:?}")),
        };
        let value = scalar(value).ok_or("a value compared with one operator must be a string")?;
        Ok(Expr::Compare { field, op, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `files` (name, text) in order.
    fn load(files: &[(&str, &str)]) -> (RuleSet, Vec<LoadError>) {
        let mut l = Loader::default();
        for (name, src) in files {
            l.add_source(Path::new(name), src);
        }
        l.finish()
    }

    fn ok(src: &str) -> RuleSet {
        let (set, errors) = load(&[("r.yaml", src)]);
        assert!(errors.is_empty(), "{errors:?}");
        set
    }

    fn cond(set: &RuleSet, name: &str) -> String {
        set.rules
            .iter()
            .find(|r| r.name == name)
            .unwrap()
            .condition
            .to_string()
    }

    fn errors(src: &str) -> Vec<String> {
        load(&[("r.yaml", src)])
            .1
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    const RULE: &str = "  desc: d\n  output: o %proc.name\n  priority: WARNING\n";

    #[test]
    fn macros_and_lists_expand() {
        let set = ok(&format!(
            "- required_engine_version: 0.57.0\n\
             - required_plugin_versions:\n    - name: container\n      version: 0.4.0\n\
             - list: shells\n  items: [sh, bash]\n\
             - list: all\n  items: [shells, zsh, 7]\n\
             - macro: spawned\n  condition: evt.type = execve\n\
             - macro: shell\n  condition: spawned and proc.name in (all)\n\
             - rule: R\n  condition: shell and not proc.pname in (shells)\n{RULE}"
        ));
        assert_eq!(
            cond(&set, "R"),
            "((evt.type = \"execve\" and proc.name in (\"sh\", \"bash\", \"zsh\", \"7\")) and not proc.pname in (\"sh\", \"bash\"))"
        );
        let r = &set.rules[0];
        assert_eq!(
            (r.priority, r.enabled, r.status.clone()),
            (Priority::Warning, true, Status::Evaluable)
        );
        assert_eq!(r.actions, [Action::Alert]);
        assert_eq!(
            r.source,
            Source {
                file: "r.yaml".into(),
                line: 13
            }
        );
    }

    #[test]
    fn list_append_and_override() {
        let base = "- list: l\n  items: [a]\n";
        let rule = format!("- rule: R\n  condition: proc.name in (l)\n{RULE}");
        let old = ok(&format!(
            "{base}- list: l\n  items: [b]\n  append: true\n{rule}"
        ));
        assert_eq!(cond(&old, "R"), "proc.name in (\"a\", \"b\")");
        let app = ok(&format!(
            "{base}- list: l\n  items: [c]\n  override:\n    items: append\n{rule}"
        ));
        assert_eq!(cond(&app, "R"), "proc.name in (\"a\", \"c\")");
        let rep = ok(&format!(
            "{base}- list: l\n  items: [d]\n  override:\n    items: replace\n{rule}"
        ));
        assert_eq!(cond(&rep, "R"), "proc.name in (\"d\")");
        let redefined = ok(&format!("{base}- list: l\n  items: [e]\n{rule}"));
        assert_eq!(cond(&redefined, "R"), "proc.name in (\"e\")");
        assert_eq!(
            errors("- list: nope\n  items: [x]\n  append: true\n"),
            ["r.yaml:1:3: list \"nope\" does not exist yet"]
        );
    }

    #[test]
    fn macro_append_and_override_across_files() {
        let first = format!(
            "- macro: m\n  condition: proc.name = a\n- rule: R\n  condition: evt.type = open and m\n{RULE}"
        );
        let (set, e) = load(&[
            ("a.yaml", &first),
            (
                "b.yaml",
                "- macro: m\n  condition: or proc.name = b\n  append: true\n",
            ),
        ]);
        assert!(e.is_empty(), "{e:?}");
        // Appending is textual, as in Falco: `proc.name = a or proc.name = b`.
        assert_eq!(
            cond(&set, "R"),
            "(evt.type = \"open\" and (proc.name = \"a\" or proc.name = \"b\"))"
        );
        let (set, e) = load(&[
            ("a.yaml", &first),
            (
                "b.yaml",
                "- macro: m\n  condition: proc.name = c\n  override:\n    condition: replace\n",
            ),
        ]);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            cond(&set, "R"),
            "(evt.type = \"open\" and proc.name = \"c\")"
        );
    }

    #[test]
    fn rule_append_override_and_enabled() {
        let base = format!("- rule: R\n  condition: evt.type = open\n{RULE}  tags: [a]\n");
        let set = ok(&format!(
            "{base}- rule: R\n  condition: and fd.name = /x\n  append: true\n\
             - rule: R\n  output: more\n  tags: [b]\n  priority: error\n  override:\n    output: append\n    tags: append\n    priority: replace\n\
             - rule: R\n  enabled: false\n"
        ));
        let r = &set.rules[0];
        assert_eq!(
            r.condition.to_string(),
            "(evt.type = \"open\" and fd.name = \"/x\")"
        );
        assert_eq!(
            (r.output.as_str(), r.tags.clone()),
            ("o %proc.name more", vec!["a".into(), "b".into()])
        );
        assert_eq!((r.priority, r.enabled), (Priority::Error, false));
        let set = ok(&format!(
            "{base}- rule: R\n  condition: fd.name = /y\n  override:\n    condition: replace\n"
        ));
        assert_eq!(cond(&set, "R"), "fd.name = \"/y\"");
        // append: true cannot replace other keys, and override must name keys the item sets.
        assert_eq!(
            errors(&format!(
                "{base}- rule: R\n  priority: debug\n  append: true\n"
            )),
            [
                "r.yaml:8:3: append: true adds to condition, exceptions, output, desc and tags only; use override to change priority"
            ]
        );
        assert_eq!(
            errors(&format!(
                "{base}- rule: R\n  output: x\n  override:\n    desc: replace\n"
            )),
            ["r.yaml:9:3: override names \"desc\", which the item does not set"]
        );
        assert_eq!(
            errors("- rule: Q\n  enabled: false\n"),
            ["r.yaml:1:3: rule \"Q\" does not exist yet"]
        );
    }

    #[test]
    fn exceptions_compile_like_falco() {
        let set = ok(&format!(
            "- list: trusted\n  items: [cron, sshd]\n\
             - rule: R\n  condition: evt.type = open\n{RULE}  exceptions:\n\
             \x20   - name: tuple\n      fields: [proc.name, fd.name]\n      comps: [=, startswith]\n      values:\n        - [ls, /etc]\n        - [cat, /tmp]\n\
             \x20   - name: one\n      fields: proc.pname\n      values: [trusted, bash]\n\
             \x20   - name: unused\n      fields: [proc.name]\n\
             - rule: R\n  exceptions:\n    - name: one\n      values: [zsh]\n    - name: set\n      fields: ['proc.aname[2]', fd.directory]\n      comps: [in, pmatch]\n      values:\n        - [[a, b], [/usr]]\n  append: true\n"
        ));
        assert_eq!(
            cond(&set, "R"),
            "(evt.type = \"open\" and not ((((proc.name = \"ls\" and fd.name startswith \"/etc\") or \
             (proc.name = \"cat\" and fd.name startswith \"/tmp\")) or \
             proc.pname in (\"cron\", \"sshd\", \"bash\", \"zsh\")) or \
             (proc.aname[2] in (\"a\", \"b\") and fd.directory pmatch (\"/usr\"))))"
        );
        let e = errors(&format!(
            "- rule: R\n  condition: evt.type = open\n{RULE}  exceptions:\n    - name: x\n      fields: [proc.name, fd.name]\n      values: [[a]]\n"
        ));
        assert_eq!(
            e,
            ["r.yaml:6:1: exception \"x\": a value has 1 items for 2 fields"]
        );
    }

    #[test]
    fn condition_errors_point_into_the_source() {
        // Folded block: line and column of the offending token, two lines down.
        let e = errors(&format!(
            "- rule: R\n  condition: >\n    evt.type = open\n    and proc.name in (a,\n    b c)\n{RULE}"
        ));
        assert_eq!(
            e,
            ["r.yaml:5:7: expected ',' or ')' in a list of values, found \"c\""]
        );
        // A more-indented line keeps its newline in a folded block: the text cannot be mapped
        // back exactly, so the error points at the value's start.
        let e = errors(&format!(
            "- rule: R\n  condition: >\n    evt.type = open\n      and and\n{RULE}"
        ));
        assert_eq!(e, ["r.yaml:2:14: expected a condition before \"and\""]);
        // Plain scalar on the key's line.
        let e = errors(&format!(
            "- rule: R\n  condition: evt.type = open and and\n{RULE}"
        ));
        assert_eq!(e, ["r.yaml:2:34: expected a condition before \"and\""]);
        // A quoted value: the column accounts for the quote.
        let e = errors(&format!(
            "- rule: R\n  condition: \"proc.name ~ x\"\n{RULE}"
        ));
        assert_eq!(
            e,
            ["r.yaml:2:25: expected an operator after proc.name, found \"~\""]
        );
        // An appended piece reports in its own file.
        let (_, e) = load(&[
            (
                "a.yaml",
                &format!("- rule: R\n  condition: evt.type = open\n{RULE}"),
            ),
            (
                "b.yaml",
                "# comment\n- rule: R\n  condition: and (x\n  append: true\n",
            ),
        ]);
        let e: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(e, ["b.yaml:3:18: unclosed '('"]);
        // Undefined and cyclic macros point at the reference.
        let e = errors(&format!(
            "- rule: R\n  condition: evt.type = open and nope\n{RULE}"
        ));
        assert_eq!(e, ["r.yaml:2:34: undefined macro \"nope\""]);
        let e = errors(&format!(
            "- macro: a\n  condition: b\n- macro: b\n  condition: evt.type = x or a\n- rule: R\n  condition: a\n{RULE}"
        ));
        assert_eq!(e, ["r.yaml:4:30: macro cycle: a -> b -> a"]);
        // A macro's syntax error is reported where it is, once, used or not.
        let e = errors("- macro: m\n  condition: proc.name in (\n");
        assert_eq!(e, ["r.yaml:2:27: unclosed '(' in a list of values"]);
        // YAML errors carry the parser's position.
        let e = errors("- rule: R\n  condition: [a\n");
        assert!(e[0].starts_with("r.yaml:3:1: "), "{e:?}");
    }

    #[test]
    fn item_errors() {
        assert_eq!(
            errors(
                "- rule: R\n  condition: evt.type = open\n  output: o\n  priority: loud\n  desc: d\n"
            ),
            [
                "r.yaml:4:3: unknown priority \"loud\" (emergency, alert, critical, error, warning, notice, informational, debug)"
            ]
        );
        assert_eq!(
            errors("- rule: R\n  condition: evt.type = open\n  desc: d\n  priority: info\n"),
            ["r.yaml:1:3: rule \"R\" has no output"]
        );
        assert_eq!(
            errors("- rule: R\n  enable: false\n"),
            ["r.yaml:2:3: unknown key \"enable\" in a rule"]
        );
        assert_eq!(
            errors("- thing: x\n")[0]
                .split(':')
                .take(3)
                .collect::<Vec<_>>(),
            ["r.yaml", "1", "3"]
        );
        assert_eq!(
            errors(&format!(
                "- rule: R\n  condition: evt.type = open\n{RULE}  actions: [alert, explode]\n"
            )),
            ["r.yaml:6:3: unknown action \"explode\" (alert, kill, freeze)"]
        );
    }

    #[test]
    fn status_names_the_first_missing_field() {
        let set = ok(&format!(
            "- macro: m\n  condition: container.image.repository = x\n\
             - rule: A\n  condition: evt.type = open and (proc.env contains X or m)\n{RULE}\
             - rule: B\n  condition: evt.type = open and proc.aname[3] = sshd and sandbox.profile = strict\n{RULE}  actions: [kill, freeze]\n\
             - rule: C\n  condition: proc.aname[x] = y\n{RULE}"
        ));
        let reason = |i: usize| match &set.rules[i].status {
            Status::Disabled { reason } => reason.clone(),
            Status::Evaluable => "evaluable".into(),
        };
        assert_eq!(
            reason(0),
            "field proc.env: the probes do not record the environment"
        );
        assert_eq!(reason(1), "evaluable");
        assert_eq!(set.rules[1].actions, [Action::Kill, Action::Freeze]);
        assert_eq!(
            reason(2),
            "field proc.aname[x]: \"x\" is not an ancestor number"
        );
    }
}
