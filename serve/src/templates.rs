//! Templates: what E2B's `templateID` names here. A template is a sandbox policy: one of the
//! built-in presets (`strict`, `default`, `permissive`), or `<templates dir>/<id>.yaml`, a policy
//! file (which may `extends:` a preset). `base`, the template E2B's SDKs use when none is given,
//! is the `default` preset unless the templates directory has a `base.yaml`.
//!
//! A create request can only narrow what its template allows: `allow_internet_access: false` takes
//! a host-network template to a private loopback; `network.allowOut`/`denyOut` need the
//! allow-list network mode, which this build does not have, and are refused rather than ignored.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use sandwatch_runner::policy::{NetworkMode, PolicyError, SandboxPolicy};

/// The template E2B's SDKs ask for when the caller names none.
pub const SDK_DEFAULT_TEMPLATE: &str = "base";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "template {0:?} not found: use a preset (strict, default, permissive) or a policy file <templates dir>/{0}.yaml"
    )]
    NotFound(String),
    #[error("template {0:?}: use letters, digits, '.', '-' and '_' (at most 64)")]
    BadName(String),
    #[error("template {id:?} does not load: {source}")]
    Policy {
        id: String,
        #[source]
        source: PolicyError,
    },
    #[error(
        "network.allowOut and network.denyOut need the allow-list network mode, which this sandwatch does not have yet; use a template whose policy says network.mode none or host"
    )]
    NetworkListsUnsupported,
}

/// What a create request asks of the network, beyond its template.
#[derive(Clone, Debug, Default)]
pub struct NetworkRequest {
    /// E2B's `allow_internet_access`.
    pub allow_internet_access: Option<bool>,
    pub allow_out: Vec<String>,
    pub deny_out: Vec<String>,
}

/// Resolves template ids to policies; files are read again when they change.
pub struct Templates {
    dir: Option<PathBuf>,
    cache: Mutex<HashMap<String, (Option<SystemTime>, SandboxPolicy)>>,
}

impl Templates {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The policy a template names, as it is now.
    pub fn policy(&self, id: &str) -> Result<SandboxPolicy, TemplateError> {
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            || id.starts_with('.')
        {
            return Err(TemplateError::BadName(id.to_owned()));
        }
        if let Some(file) = self.dir.as_ref().map(|d| d.join(format!("{id}.yaml")))
            && let Ok(meta) = std::fs::metadata(&file)
        {
            let mtime = meta.modified().ok();
            if let Some((seen, p)) = self.cache.lock().expect("templates lock").get(id)
                && *seen == mtime
                && mtime.is_some()
            {
                return Ok(p.clone());
            }
            let policy = SandboxPolicy::load(&file.to_string_lossy()).map_err(|source| {
                TemplateError::Policy {
                    id: id.to_owned(),
                    source,
                }
            })?;
            self.cache
                .lock()
                .expect("templates lock")
                .insert(id.to_owned(), (mtime, policy.clone()));
            return Ok(policy);
        }
        let preset = if id == SDK_DEFAULT_TEMPLATE {
            "default"
        } else {
            id
        };
        SandboxPolicy::preset(preset).ok_or_else(|| TemplateError::NotFound(id.to_owned()))
    }

    /// The policy for a create request: the template's, narrowed by what the request asks.
    pub fn for_request(
        &self,
        id: &str,
        network: &NetworkRequest,
    ) -> Result<SandboxPolicy, TemplateError> {
        let mut policy = self.policy(id)?;
        narrow(&mut policy, network)?;
        Ok(policy)
    }
}

/// Applies a request's network wishes to a template's policy: only ever narrower.
pub fn narrow(policy: &mut SandboxPolicy, network: &NetworkRequest) -> Result<(), TemplateError> {
    if !network.allow_out.is_empty() || !network.deny_out.is_empty() {
        return Err(TemplateError::NetworkListsUnsupported);
    }
    if network.allow_internet_access == Some(false) {
        policy.network.mode = NetworkMode::None;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_files_and_the_sdk_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("agents.yaml"),
            "extends: strict\npids: { max: 32 }\n",
        )
        .unwrap();
        let t = Templates::new(Some(dir.path().to_owned()));
        assert_eq!(t.policy("agents").unwrap().pids.max, Some(32));
        assert_eq!(
            t.policy("base").unwrap(),
            SandboxPolicy::preset("default").unwrap()
        );
        assert_eq!(
            t.policy("strict").unwrap(),
            SandboxPolicy::preset("strict").unwrap()
        );
        assert!(matches!(t.policy("nope"), Err(TemplateError::NotFound(_))));
        for bad in ["../etc/passwd", ".hidden", "a/b", ""] {
            assert!(
                matches!(t.policy(bad), Err(TemplateError::BadName(_))),
                "{bad}"
            );
        }
        std::fs::write(dir.path().join("broken.yaml"), "pids: { maxx: 3 }\n").unwrap();
        let e = t.policy("broken").unwrap_err();
        assert!(e.to_string().contains("broken.yaml"), "{e}");
    }

    #[test]
    fn a_request_narrows_its_template_only() {
        let t = Templates::new(None);
        let closed = NetworkRequest {
            allow_internet_access: Some(false),
            ..NetworkRequest::default()
        };
        let p = t.for_request("permissive", &closed).unwrap();
        assert_eq!(p.network.mode, NetworkMode::None);
        let open = NetworkRequest {
            allow_internet_access: Some(true),
            ..NetworkRequest::default()
        };
        assert_eq!(
            t.for_request("strict", &open).unwrap().network.mode,
            NetworkMode::None,
            "a request never widens its template"
        );
        let lists = NetworkRequest {
            allow_out: vec!["pypi.org".into()],
            ..NetworkRequest::default()
        };
        assert!(matches!(
            t.for_request("default", &lists),
            Err(TemplateError::NetworkListsUnsupported)
        ));
    }
}
