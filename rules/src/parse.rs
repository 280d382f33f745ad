//! The condition language's scanner and recursive-descent parser, following the grammar of
//! Falco's libsinsp filter parser: `or` binds loosest, then `and`, then `not`; a check is a
//! parenthesised expression, `field op value`, `field op (values)`, `field exists`, or a macro
//! name. Values are quoted (`'…'`, `"…"` with `\` escapes) or bare words (anything but blanks,
//! quotes, parentheses, `=` and `,`), so paths, globs and numbers need no quotes.
//!
//! List names inside `in (...)` are kept as values here: only the rule set knows the lists, so
//! [`crate::ruleset`] replaces them.

use thiserror::Error;

use crate::ast::{CmpOp, Expr, FieldRef, SetOp};

/// A syntax error at `offset` bytes into the condition.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

/// Parses a whole condition; trailing text is an error.
pub fn parse_condition(src: &str) -> Result<Expr, ParseError> {
    let mut p = Parser { src, pos: 0 };
    p.skip_blanks();
    if p.at_end() {
        return Err(p.error("empty condition"));
    }
    let e = p.or_expr()?;
    p.skip_blanks();
    if !p.at_end() {
        return Err(p.error(format!("unexpected {:?}", p.next_token_text())));
    }
    Ok(e)
}

/// Parses a field name with its optional argument (exceptions name fields outside conditions).
pub fn parse_field(src: &str) -> Result<FieldRef, ParseError> {
    let mut p = Parser { src, pos: 0 };
    if !p.peek().is_some_and(is_ident_start) {
        return Err(p.error(format!("{src:?} is not a field name")));
    }
    let field = p.field()?;
    if !p.at_end() || !field.name.contains('.') {
        return Err(p.error(format!("{src:?} is not a field name")));
    }
    Ok(field)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

/// Comparison operators, longest spelling first so that `<=` is not read as `<`.
const SYMBOL_OPS: [(&str, CmpOp); 7] = [
    ("<=", CmpOp::Le),
    ("<", CmpOp::Lt),
    (">=", CmpOp::Ge),
    (">", CmpOp::Gt),
    ("==", CmpOp::Eq),
    ("=", CmpOp::Eq),
    ("!=", CmpOp::Ne),
];

const WORD_OPS: [(&str, CmpOp); 9] = [
    ("contains", CmpOp::Contains),
    ("icontains", CmpOp::IContains),
    ("bcontains", CmpOp::BContains),
    ("startswith", CmpOp::StartsWith),
    ("bstartswith", CmpOp::BStartsWith),
    ("endswith", CmpOp::EndsWith),
    ("glob", CmpOp::Glob),
    ("iglob", CmpOp::IGlob),
    ("regex", CmpOp::Regex),
];

const SET_OPS: [(&str, SetOp); 3] = [
    ("in", SetOp::In),
    ("intersects", SetOp::Intersects),
    ("pmatch", SetOp::Pmatch),
];

fn is_bare_char(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, '(' | ')' | '"' | '\'' | '=' | ','))
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            offset: self.pos,
            message: message.into(),
        }
    }

    /// The text of the next token, for messages.
    fn next_token_text(&self) -> String {
        let r = self.rest();
        let end = r
            .char_indices()
            .find(|&(i, c)| c.is_whitespace() || (i > 0 && matches!(c, '(' | ')')))
            .map_or(r.len(), |(i, _)| i.max(1));
        r[..end].to_string()
    }

    fn skip_blanks(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    /// Consumes the keyword `kw` if it is next and is a whole word: `notice` is not `not ice`,
    /// but `not(` and `exists)` are keywords.
    fn keyword(&mut self, kw: &str) -> bool {
        let Some(after) = self.rest().strip_prefix(kw) else {
            return false;
        };
        let whole = after
            .chars()
            .next()
            .is_none_or(|c| !(is_ident_char(c) || c == '.'));
        if whole {
            self.pos += kw.len();
        }
        whole
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and_expr()?;
        loop {
            self.skip_blanks();
            if !self.keyword("or") {
                return Ok(left);
            }
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not_expr()?;
        loop {
            self.skip_blanks();
            if !self.keyword("and") {
                return Ok(left);
            }
            let right = self.not_expr()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
    }

    fn not_expr(&mut self) -> Result<Expr, ParseError> {
        self.skip_blanks();
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        self.check()
    }

    fn check(&mut self) -> Result<Expr, ParseError> {
        self.skip_blanks();
        match self.peek() {
            None => return Err(self.error("expected a condition, found the end")),
            Some('(') => {
                let open = self.pos;
                self.pos += 1;
                let e = self.or_expr()?;
                self.skip_blanks();
                if self.peek() != Some(')') {
                    return Err(if self.at_end() {
                        ParseError {
                            offset: open,
                            message: "unclosed '('".into(),
                        }
                    } else {
                        self.error(format!("expected ')', found {:?}", self.next_token_text()))
                    });
                }
                self.pos += 1;
                return Ok(e);
            }
            Some(c) if is_ident_start(c) => {}
            Some(_) => {
                return Err(self.error(format!(
                    "expected a field, a macro or '(', found {:?}",
                    self.next_token_text()
                )));
            }
        }
        let start = self.pos;
        let ident = self.identifier();
        if self.peek() != Some('.') {
            // `and`/`or`/`not` here mean an operand is missing: `a and or b`.
            if matches!(ident, "and" | "or") {
                return Err(ParseError {
                    offset: start,
                    message: format!("expected a condition before {ident:?}"),
                });
            }
            return Ok(Expr::MacroRef {
                name: ident.to_string(),
                offset: start,
            });
        }
        self.pos = start;
        let field = self.field()?;
        self.operation(field)
    }

    fn identifier(&mut self) -> &'a str {
        let r = self.rest();
        let end = r.find(|c: char| !is_ident_char(c)).unwrap_or(r.len());
        self.pos += end;
        &r[..end]
    }

    /// `name(.name)+` with an optional `[arg]`.
    fn field(&mut self) -> Result<FieldRef, ParseError> {
        let start = self.pos;
        self.identifier();
        while self.peek() == Some('.') {
            self.pos += 1;
            if !self.peek().is_some_and(is_ident_start) {
                return Err(self.error("a field name part must start with a letter"));
            }
            self.identifier();
        }
        let name = self.src[start..self.pos].to_string();
        let index = if self.peek() == Some('[') {
            self.pos += 1;
            let arg = match self.peek() {
                Some('"' | '\'') => self.quoted()?,
                _ => {
                    let r = self.rest();
                    let end = r
                        .find(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | '"' | '\''))
                        .unwrap_or(r.len());
                    self.pos += end;
                    r[..end].to_string()
                }
            };
            if arg.is_empty() {
                return Err(self.error(format!("empty argument for field {name}")));
            }
            if self.peek() != Some(']') {
                return Err(self.error(format!("expected ']' after the argument of {name}")));
            }
            self.pos += 1;
            Some(arg)
        } else {
            None
        };
        Ok(FieldRef { name, index })
    }

    fn operation(&mut self, field: FieldRef) -> Result<Expr, ParseError> {
        self.skip_blanks();
        for (sym, op) in SYMBOL_OPS {
            if self.rest().starts_with(sym) {
                self.pos += sym.len();
                let value = self.value()?;
                return Ok(Expr::Compare { field, op, value });
            }
        }
        if self.keyword("exists") {
            return Ok(Expr::Exists(field));
        }
        for (word, op) in SET_OPS {
            if self.keyword(word) {
                let values = self.value_list(word)?;
                return Ok(Expr::In { field, op, values });
            }
        }
        for (word, op) in WORD_OPS {
            if self.keyword(word) {
                let value = self.value()?;
                return Ok(Expr::Compare { field, op, value });
            }
        }
        Err(if self.at_end() {
            self.error(format!("expected an operator after {field}, found the end"))
        } else {
            self.error(format!(
                "expected an operator after {field}, found {:?}",
                self.next_token_text()
            ))
        })
    }

    fn value(&mut self) -> Result<String, ParseError> {
        self.skip_blanks();
        match self.peek() {
            Some('"' | '\'') => self.quoted(),
            Some(c) if is_bare_char(c) => Ok(self.bare()),
            Some('(') => Err(self.error("a list of values needs in, intersects or pmatch")),
            Some(_) => Err(self.error(format!(
                "expected a value, found {:?}",
                self.next_token_text()
            ))),
            None => Err(self.error("expected a value, found the end")),
        }
    }

    fn bare(&mut self) -> String {
        let r = self.rest();
        let end = r.find(|c: char| !is_bare_char(c)).unwrap_or(r.len());
        self.pos += end;
        r[..end].to_string()
    }

    /// A quoted string; `\` escapes the next character (so `\"` and `\\`).
    fn quoted(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let quote = self.peek().unwrap_or('"');
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err(ParseError {
            offset: start,
            message: "unterminated string".into(),
        })
    }

    /// `( [value (, value)*] )`: the empty list is valid (Falco's empty lists).
    fn value_list(&mut self, op: &str) -> Result<Vec<String>, ParseError> {
        self.skip_blanks();
        if self.peek() != Some('(') {
            return Err(self.error(format!("{op} needs a parenthesised list of values")));
        }
        let open = self.pos;
        self.pos += 1;
        let mut values = Vec::new();
        self.skip_blanks();
        if self.peek() == Some(')') {
            self.pos += 1;
            return Ok(values);
        }
        loop {
            self.skip_blanks();
            if self.at_end() {
                return Err(ParseError {
                    offset: open,
                    message: "unclosed '(' in a list of values".into(),
                });
            }
            values.push(self.value()?);
            self.skip_blanks();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    return Ok(values);
                }
                None => continue,
                Some(_) => {
                    return Err(self.error(format!(
                        "expected ',' or ')' in a list of values, found {:?}",
                        self.next_token_text()
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Expr {
        parse_condition(s).unwrap_or_else(|e| panic!("{s:?}: {} at {}", e.message, e.offset))
    }

    fn err(s: &str) -> ParseError {
        parse_condition(s).expect_err(s)
    }

    #[test]
    fn precedence_not_and_or() {
        // or < and < not, left-associative.
        assert_eq!(p("a or b and not c").to_string(), "(a or (b and not c))");
        assert_eq!(p("a and b or c").to_string(), "((a and b) or c)");
        assert_eq!(p("not a and b").to_string(), "(not a and b)");
        assert_eq!(p("not not a").to_string(), "not not a");
        assert_eq!(p("(a or b) and c").to_string(), "((a or b) and c)");
        assert_eq!(p("a and b and c").to_string(), "((a and b) and c)");
        assert_eq!(p("not(a)").to_string(), "not a");
        // Keywords are whole words only.
        assert_eq!(p("notice and order").to_string(), "(notice and order)");
    }

    #[test]
    fn every_operator() {
        for (op, want) in [
            ("=", CmpOp::Eq),
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<", CmpOp::Lt),
            ("<=", CmpOp::Le),
            (">", CmpOp::Gt),
            (">=", CmpOp::Ge),
            ("contains", CmpOp::Contains),
            ("icontains", CmpOp::IContains),
            ("bcontains", CmpOp::BContains),
            ("startswith", CmpOp::StartsWith),
            ("bstartswith", CmpOp::BStartsWith),
            ("endswith", CmpOp::EndsWith),
            ("glob", CmpOp::Glob),
            ("iglob", CmpOp::IGlob),
            ("regex", CmpOp::Regex),
        ] {
            let e = p(&format!("evt.rawres {op} 5"));
            assert_eq!(
                e,
                Expr::Compare {
                    field: FieldRef {
                        name: "evt.rawres".into(),
                        index: None
                    },
                    op: want,
                    value: "5".into()
                },
                "{op}"
            );
        }
        for (op, want) in [
            ("in", SetOp::In),
            ("intersects", SetOp::Intersects),
            ("pmatch", SetOp::Pmatch),
        ] {
            let Expr::In {
                op: got, values, ..
            } = p(&format!("proc.args {op} (a, \"b c\",d)"))
            else {
                panic!("{op}");
            };
            assert_eq!(
                (got, values),
                (want, vec!["a".into(), "b c".into(), "d".into()])
            );
        }
        assert_eq!(
            p("container.id exists)".trim_end_matches(')')),
            Expr::Exists(FieldRef {
                name: "container.id".into(),
                index: None
            })
        );
        assert!(matches!(p("(fd.name exists)"), Expr::Exists(_)));
    }

    #[test]
    fn values_bare_quoted_and_lists() {
        // No blanks needed around symbols; bare words carry / . - * and <.
        let Expr::Compare { value, .. } = p("fd.name=/etc/shadow") else {
            panic!()
        };
        assert_eq!(value, "/etc/shadow");
        let Expr::Compare { value, .. } = p("evt.dir=<") else {
            panic!()
        };
        assert_eq!(value, "<");
        let Expr::Compare { value, .. } = p("fd.name glob '/home/*/.ssh/*'") else {
            panic!()
        };
        assert_eq!(value, "/home/*/.ssh/*");
        let Expr::Compare { value, .. } = p(r#"proc.cmdline contains "say \"hi\"""#) else {
            panic!()
        };
        assert_eq!(value, r#"say "hi""#);
        let Expr::Compare { value, .. } = p("proc.args = \"\"") else {
            panic!()
        };
        assert_eq!(value, "");
        let Expr::In { values, .. } = p("proc.name in ()") else {
            panic!()
        };
        assert!(values.is_empty());
        // A list name stays a value until the rule set expands it.
        let Expr::In { values, .. } = p("proc.name in (shell_binaries, sh)") else {
            panic!()
        };
        assert_eq!(values, ["shell_binaries", "sh"]);
        let Expr::Compare { value, .. } = p("fd.sport >= -1") else {
            panic!()
        };
        assert_eq!(value, "-1");
    }

    #[test]
    fn field_index() {
        let Expr::In { field, .. } = p("proc.aname[2] in (sshd)") else {
            panic!()
        };
        assert_eq!(
            field,
            FieldRef {
                name: "proc.aname".into(),
                index: Some("2".into())
            }
        );
        let Expr::Compare { field, .. } = p("evt.arg[0]=x") else {
            panic!()
        };
        assert_eq!(field.to_string(), "evt.arg[0]");
        let Expr::Exists(field) = p("container.mount.dest[/var/run/docker.sock] exists") else {
            panic!()
        };
        assert_eq!(field.index.as_deref(), Some("/var/run/docker.sock"));
        assert_eq!(
            parse_field("proc.aname[3]").unwrap().index.as_deref(),
            Some("3")
        );
        assert!(parse_field("shell_procs").is_err());
    }

    #[test]
    fn macros_are_bare_identifiers() {
        assert_eq!(
            p("spawned_process and not proc.name in (a)").to_string(),
            "(spawned_process and not proc.name in (\"a\"))"
        );
        let Expr::MacroRef { name, offset } = p("  open_write") else {
            panic!()
        };
        assert_eq!((name.as_str(), offset), ("open_write", 2));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "a and not (proc.name in (x, 'y z') or fd.name startswith /tmp)",
            "proc.aname[2] = sshd and evt.rawres < 0",
            r#"proc.cmdline contains "a'b\"c\\""#,
        ] {
            let text = p(s).to_string();
            assert_eq!(p(&text).to_string(), text);
        }
    }

    #[test]
    fn error_offsets() {
        let e = err("proc.name = ");
        assert_eq!(
            (e.offset, e.message.as_str()),
            (12, "expected a value, found the end")
        );
        assert_eq!(err("proc.name bogus x").offset, 10);
        assert_eq!(err("(a and b").offset, 0);
        assert_eq!(err("a and (b or c)) x").offset, 14);
        assert_eq!(err("proc.name in (a, b").offset, 13);
        assert_eq!(err("proc.name in a").offset, 13);
        assert_eq!(err("fd.name = 'abc").offset, 10);
        assert_eq!(err("a and or b").offset, 6);
        assert_eq!(err("a and").offset, 5);
        assert_eq!(err("").message, "empty condition");
        assert_eq!(err("proc.name = (a)").offset, 12);
        assert_eq!(err("proc.aname[] = x").offset, 11);
        assert_eq!(err("a b").offset, 2);
    }
}
