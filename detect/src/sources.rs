//! Which rules files a detector runs, in order, and turning them into an engine.
//!
//! This module owns the list of sources ([`RuleSources`]) and what "the files changed" means
//! ([`SourcesStamp`]: each file's modification time and length). It reads files and nothing else:
//! the CLI builds the sources from `--rules`, checks them with [`RuleSources::engine`] before it
//! records anything, and hands them to the detector, which alone calls them again to reload.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use sandwatch_rules::{Engine, LoadError, RuleSet, engine::compile::CompileError, ruleset::Loader};

/// The word that names the embedded default ruleset among `--rules` paths.
pub const BUILTIN: &str = "builtin";

/// Which rules files, in order; empty means the built-in ruleset. [`BUILTIN`] among them names
/// the built-in ruleset at that place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSources(Vec<PathBuf>);

/// Why rules do not make an engine: every error, each naming file, line and column (a load
/// error) or the rule (a compile error).
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{}", join(.0))]
    Load(Vec<LoadError>),
    #[error("{}", join(.0))]
    Compile(Vec<CompileError>),
}

fn join<E: ToString>(errors: &[E]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the rules files were like when last looked at; two stamps differ when a file was
/// written, replaced, created or removed in between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcesStamp(Vec<Option<(SystemTime, u64)>>);

impl RuleSources {
    /// Rules files in load order (`builtin` allowed among them); none: the built-in ruleset.
    pub fn new<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> Self {
        Self(paths.into_iter().map(Into::into).collect())
    }

    /// The built-in ruleset alone.
    pub fn builtin() -> Self {
        Self(Vec::new())
    }

    /// The paths as given (empty: the built-in ruleset).
    pub fn paths(&self) -> &[PathBuf] {
        &self.0
    }

    /// The files on disk among the sources (not [`BUILTIN`]).
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.0.iter().filter(|p| p.as_os_str() != BUILTIN)
    }

    /// Loads every source in order, as Falco loads its rules files; with errors, the rules that
    /// did load are still returned.
    pub fn load(&self) -> (RuleSet, Vec<LoadError>) {
        let builtin = [PathBuf::from(BUILTIN)];
        let sources = if self.0.is_empty() {
            &builtin[..]
        } else {
            &self.0
        };
        let mut loader = Loader::default();
        for p in sources {
            if p.as_os_str() == BUILTIN {
                loader.add_source(
                    Path::new(sandwatch_rules::DEFAULT_RULES_NAME),
                    sandwatch_rules::DEFAULT_RULES,
                );
            } else {
                loader.add_file(p);
            }
        }
        loader.finish()
    }

    /// An engine over the sources' rules, or every error.
    pub fn engine(&self) -> Result<Engine, RulesError> {
        let (set, errors) = self.load();
        if !errors.is_empty() {
            return Err(RulesError::Load(errors));
        }
        Engine::new(&set).map_err(RulesError::Compile)
    }

    /// The files' state now, to compare with a later one.
    pub fn stamp(&self) -> SourcesStamp {
        SourcesStamp(
            self.files()
                .map(|p| {
                    let m = std::fs::metadata(p).ok()?;
                    Some((m.modified().ok()?, m.len()))
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_path_is_the_builtin_ruleset_and_builtin_names_it_among_files() {
        let (set, errors) = RuleSources::builtin().load();
        assert!(errors.is_empty(), "{errors:?}");
        let builtin = set.rules.len();
        assert!(builtin > 20);
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("mine.yaml");
        std::fs::write(
            &mine,
            "- rule: mine\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: INFO\n",
        )
        .unwrap();
        let both = RuleSources::new([PathBuf::from(BUILTIN), mine.clone()]);
        assert_eq!(both.files().collect::<Vec<_>>(), [&mine]);
        let (set, errors) = both.load();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(set.rules.len(), builtin + 1);
        assert!(both.engine().is_ok());
    }

    #[test]
    fn errors_name_file_line_and_column_and_the_stamp_sees_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, "- rule: broken\n  condition: (evt.type = open\n").unwrap();
        let sources = RuleSources::new([&file]);
        let before = sources.stamp();
        let e = sources.engine().err().expect("a bad file");
        assert!(matches!(e, RulesError::Load(_)), "{e:?}");
        assert!(e.to_string().contains("bad.yaml:1:3"), "{e}");
        std::fs::write(
            &file,
            "- rule: ok\n  desc: d\n  condition: evt.type = open\n",
        )
        .unwrap();
        assert_ne!(sources.stamp(), before, "a longer file is a change");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(sources.stamp(), SourcesStamp(vec![None]));
    }
}
