//! Which learned baseline scores a sandbox: the latest model of its profile, from the models
//! directory (`--baselines`, default `<data>/baselines`).
//!
//! Reads the model store only; the caller builds the `BaselineScorer` it gives the detector
//! (one scorer can hold the models of many profiles) and tells a person which model it uses.

use std::path::Path;

use sandwatch_analytics::baseline::{BaselineModel, store::ModelStore};

use crate::DetectError;

/// The latest model of `profile` in `models` (None: the audit log's own `<data>/baselines`),
/// if there is one. A model that does not load is an error: the caller should stop before
/// anything is recorded rather than score against nothing.
pub fn latest_model(
    models: Option<&Path>,
    data: &Path,
    profile: &str,
) -> Result<Option<BaselineModel>, DetectError> {
    let store = match models {
        Some(dir) => ModelStore::new(dir),
        None => ModelStore::for_audit_log(data),
    };
    Ok(store.latest(profile)?)
}
