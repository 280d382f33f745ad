//! [`ModelStore`]: baseline models as versioned files, `<dir>/<profile>/v<N>.json`. A new
//! training never overwrites an older model; the highest version is the one in use. Each file
//! says what data it learned from (see [`super::DataRange`]).

use std::path::{Path, PathBuf};

use super::BaselineModel;
use crate::AnalyticsError;

pub struct ModelStore {
    dir: PathBuf,
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> AnalyticsError + 'a {
    move |source| AnalyticsError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// A profile name as a directory name: no separators, no `..`, nothing hidden.
fn check_profile(profile: &str) -> Result<(), AnalyticsError> {
    let ok = !profile.is_empty()
        && !profile.starts_with('.')
        && profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(AnalyticsError::Baseline(format!(
            "profile {profile:?}: use letters, digits, '-', '_' and '.' (not first)"
        )))
    }
}

impl ModelStore {
    /// The store under `dir` (created when a model is saved).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where a log's models live by default: `<data>/baselines`.
    pub fn for_audit_log(data: &Path) -> Self {
        Self::new(data.join("baselines"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn versions(&self, profile: &str) -> Result<Vec<(u32, PathBuf)>, AnalyticsError> {
        check_profile(profile)?;
        let dir = self.dir.join(profile);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let v = name
                    .strip_prefix('v')?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()?;
                Some((v, e.path()))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Saves `model` as the profile's next version and returns its path; the version is set.
    pub fn save(&self, model: &mut BaselineModel) -> Result<PathBuf, AnalyticsError> {
        let next = self
            .versions(&model.profile)?
            .last()
            .map_or(1, |(v, _)| v + 1);
        model.version = next;
        let dir = self.dir.join(&model.profile);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let path = dir.join(format!("v{next}.json"));
        let tmp = dir.join(format!(".v{next}.json.tmp"));
        let text = serde_json::to_vec_pretty(model)
            .map_err(|e| AnalyticsError::Baseline(format!("encoding the model: {e}")))?;
        std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename into place", &path))?;
        Ok(path)
    }

    /// The profile's newest model, if it has one.
    pub fn latest(&self, profile: &str) -> Result<Option<BaselineModel>, AnalyticsError> {
        match self.versions(profile)?.last() {
            None => Ok(None),
            Some((_, path)) => Self::read(path).map(Some),
        }
    }

    /// One version of a profile's model.
    pub fn version(&self, profile: &str, version: u32) -> Result<BaselineModel, AnalyticsError> {
        let path = self.dir.join(profile).join(format!("v{version}.json"));
        check_profile(profile)?;
        Self::read(&path)
    }

    pub fn read(path: &Path) -> Result<BaselineModel, AnalyticsError> {
        let text = std::fs::read(path).map_err(io("read", path))?;
        let model: BaselineModel = serde_json::from_slice(&text).map_err(|e| {
            AnalyticsError::Baseline(format!("{}: not a baseline model: {e}", path.display()))
        })?;
        if model.format != super::MODEL_FORMAT {
            return Err(AnalyticsError::Baseline(format!(
                "{}: model format {} (this build reads {})",
                path.display(),
                model.format,
                super::MODEL_FORMAT
            )));
        }
        Ok(model)
    }

    /// Profiles with at least one model.
    pub fn profiles(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|p| check_profile(p).is_ok())
            .collect();
        out.sort();
        out
    }
}
