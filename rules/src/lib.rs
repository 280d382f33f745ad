//! Falco-style rules for sandwatch: the condition language ([`parse`] into [`ast`]), rules files
//! ([`ruleset`]: lists, macros, rules, exceptions, append/override) and the catalogue of fields
//! sandwatch's tables can provide ([`fields`]), which decides whether a rule is evaluable.
//! Evaluating compiled conditions on Arrow batches builds on [`ruleset::RuleSet`].

pub mod ast;
pub mod fields;
pub mod parse;
pub mod ruleset;

pub use ruleset::{Action, LoadError, Priority, Rule, RuleSet, Source, Status};

use std::path::Path;

/// Loads rules files in order into one rule set; with errors, the rules that did load are
/// still returned.
pub fn load_files<P: AsRef<Path>>(paths: &[P]) -> (RuleSet, Vec<LoadError>) {
    let mut loader = ruleset::Loader::default();
    for p in paths {
        loader.add_file(p.as_ref());
    }
    loader.finish()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Falco's public rulesets live outside the project (they are not ours to copy):
    /// `../shared/falco-rules` from the workspace root.
    fn falco_dir() -> Option<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        [
            root.join("../shared/falco-rules"),
            PathBuf::from("/work/shared/falco-rules"),
        ]
        .into_iter()
        .find(|d| d.join("falco_rules.yaml").is_file())
    }

    const FILES: [&str; 3] = [
        "falco_rules.yaml",
        "falco-incubating_rules.yaml",
        "falco-sandbox_rules.yaml",
    ];

    #[test]
    fn falco_public_rulesets_load() {
        let Some(dir) = falco_dir() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "../shared/falco-rules is missing: CI must have Falco's rules files"
            );
            eprintln!("!!! SKIPPED: ../shared/falco-rules (Falco's rules files) not found !!!");
            return;
        };
        let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
        let (set, errors) = load_files(&paths);
        for e in &errors {
            eprintln!("{e}");
        }
        assert!(errors.is_empty(), "{} load errors", errors.len());
        // Counted independently: each file's top-level `- rule:` items.
        let expected: usize = paths
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .filter(|l| l.starts_with("- rule:"))
                    .count()
            })
            .sum();
        assert_eq!(set.rules.len(), expected);
        assert_eq!(set.rules.len(), 93);
        let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
        let mut counts = Vec::new();
        for f in FILES {
            let rules: Vec<&Rule> = set
                .rules
                .iter()
                .filter(|r| r.source.file.ends_with(f))
                .collect();
            let evaluable = rules
                .iter()
                .filter(|r| r.status == Status::Evaluable)
                .count();
            eprintln!("{f}: {} rules, {evaluable} evaluable", rules.len());
            counts.push((rules.len(), evaluable));
            for r in &rules {
                if let Status::Disabled { reason } = &r.status {
                    eprintln!("  disabled: {}: {reason}", r.name);
                    *reasons.entry(reason.clone()).or_default() += 1;
                }
            }
        }
        for (r, n) in &reasons {
            eprintln!("{n:3} {r}");
        }
        // Pinned so that a change in the field catalogue shows here; the target is 25
        // of falco_rules.yaml and 80% of all (see the README's Rules section for the gap).
        assert_eq!(counts, [(25, 11), (31, 18), (37, 22)]);
    }
}
