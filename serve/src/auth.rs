//! Who may call: the control plane's API keys (`--api-key-file`, one `e2b_<hex>` key per line) and
//! each sandbox's own envd access token.
//!
//! Keys are compared in constant time against every key of the file (no early exit, so the time
//! says nothing about which key or how much of it matched). Nothing outside this module sees a
//! key: the rest of the daemon, the audit log and the logs know a caller by its [`KeyId`], the
//! first 16 hex digits of the key's SHA-256.

use std::{fmt, path::Path};

use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

/// Shortest hex part a key may have: E2B's keys have 40 digits; fewer is guessable.
const MIN_KEY_HEX: usize = 32;

/// A caller's identity as the daemon records it: a fingerprint of its key, never the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The identity of a key.
    pub fn of(key: &str) -> Self {
        let digest = sha2::Sha256::digest(key.as_bytes());
        Self(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
    }

    /// The caller on the daemon's own unix socket (root on this host).
    pub fn local() -> Self {
        Self("local".into())
    }

    /// Every caller when the daemon runs with `--insecure-no-auth`.
    pub fn anonymous() -> Self {
        Self("no-auth".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not an API key (expected e2b_ followed by at least {MIN_KEY_HEX} hex digits, one key per line; # starts a comment)")]
    BadKey { path: String, line: usize },
    #[error("{path}: no API key in the file (one e2b_<hex> key per line)")]
    Empty { path: String },
}

struct Key {
    secret: Vec<u8>,
    id: KeyId,
}

/// The keys the control plane accepts.
pub struct ApiKeys {
    keys: Vec<Key>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

impl ApiKeys {
    /// Reads a key file. Returns the keys and warnings for the operator (a file others can read).
    pub fn load(path: &Path) -> Result<(Self, Vec<String>), KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let keys = Self::parse(&text, &shown)?;
        let mut warnings = Vec::new();
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o077 != 0 {
                warnings.push(format!(
                    "{shown} can be read by other users (mode {:o}); chmod 600 it",
                    meta.permissions().mode() & 0o777
                ));
            }
        }
        Ok((keys, warnings))
    }

    /// Parses a key file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, KeyFileError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let valid = line.strip_prefix("e2b_").is_some_and(|hex| {
                hex.len() >= MIN_KEY_HEX && hex.bytes().all(|b| b.is_ascii_hexdigit())
            });
            if !valid {
                return Err(KeyFileError::BadKey {
                    path: path.to_owned(),
                    line: i + 1,
                });
            }
            keys.push(Key {
                secret: line.as_bytes().to_vec(),
                id: KeyId::of(line),
            });
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self { keys })
    }

    /// The identity behind a presented key, compared in constant time with every key.
    pub fn check(&self, presented: &str) -> Option<KeyId> {
        let presented = presented.trim().as_bytes();
        let mut found = None;
        for k in &self.keys {
            // `ct_eq` on slices of different lengths is false without looking at the bytes: the
            // length of a key is not a secret (they all have the same form).
            if bool::from(k.secret.ct_eq(presented)) {
                found = Some(k.id.clone());
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A fresh secret for a sandbox's envd (`envdAccessToken`): 32 random bytes as hex.
pub fn new_access_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `presented` is the sandbox's token, in constant time.
pub fn token_matches(token: &str, presented: &str) -> bool {
    bool::from(token.as_bytes().ct_eq(presented.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "e2b_0123456789abcdef0123456789abcdef01234567";
    const B: &str = "e2b_fedcba9876543210fedcba9876543210fedcba98";

    #[test]
    fn keys_parse_with_comments_and_are_checked() {
        let keys = ApiKeys::parse(&format!("# team a\n{A}\n\n{B}  # team b\n"), "keys").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.check(A), Some(KeyId::of(A)));
        assert_eq!(keys.check(&format!(" {B}\n")), Some(KeyId::of(B)));
        assert_eq!(keys.check(&A[..A.len() - 1]), None);
        assert_eq!(keys.check(""), None);
        assert_ne!(KeyId::of(A), KeyId::of(B));
        assert_eq!(KeyId::of(A).as_str().len(), 16);
        assert!(!format!("{keys:?}").contains(&A[4..]), "Debug never shows a key");
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = ApiKeys::parse(&format!("{A}\ne2b_short\n"), "/etc/sandwatch/keys")
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with("/etc/sandwatch/keys:2: not an API key"),
            "{e}"
        );
        let e = ApiKeys::parse("# nothing\n", "k").err().unwrap();
        assert!(matches!(e, KeyFileError::Empty { .. }), "{e}");
        let e = ApiKeys::parse(&format!("{A}g\n"), "k").err().unwrap();
        assert!(matches!(e, KeyFileError::BadKey { line: 1, .. }), "{e}");
    }

    #[test]
    fn tokens_are_fresh_and_compared_whole() {
        let t = new_access_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_access_token());
        assert!(token_matches(&t, &t));
        assert!(!token_matches(&t, &t[..63]));
        assert!(!token_matches(&t, ""));
    }
}
