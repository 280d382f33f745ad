//! [`AccessToken`]: the shared secret the SQL servers may require of every caller.
//!
//! One token, read from a file, for both servers: `authorization: Bearer <token>` on every call,
//! or HTTP Basic auth with the user `sandwatch` and the token as password (what Flight SQL clients
//! send to `Handshake`, and what JDBC clients such as DBeaver send from their user and password
//! fields).

use std::{fmt, path::Path, sync::Arc};

use base64::{Engine as _, engine::general_purpose::STANDARD_PAD_INDIFFERENT};

use crate::AnalyticsError;

/// The user name Basic auth must carry beside the token.
pub const BASIC_USER: &str = "sandwatch";

/// A secret every call must present. Its `Debug` does not show it.
#[derive(Clone)]
pub struct AccessToken(Arc<str>);

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// Why a call was refused; the text tells the caller what to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "this server needs its access token: send `authorization: Bearer <token>` (or Basic auth {BASIC_USER}:<token>)"
    )]
    Missing,
    #[error("wrong access token")]
    Wrong,
    #[error("unsupported authorization scheme: send `authorization: Bearer <token>`")]
    Scheme,
}

impl AccessToken {
    /// A token must be usable as a header value as it is: printable ASCII without spaces.
    pub fn new(token: &str) -> Result<Self, AnalyticsError> {
        Self::validate(token).map_err(|why| AnalyticsError::AccessToken(why.into()))?;
        Ok(Self(token.into()))
    }

    /// The token in `path`: the file's text without surrounding whitespace (a trailing newline).
    pub fn from_file(path: &Path) -> Result<Self, AnalyticsError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AnalyticsError::AccessToken(format!("cannot read {}: {e}", path.display()))
        })?;
        let token = text.trim();
        Self::validate(token)
            .map_err(|why| AnalyticsError::AccessToken(format!("{}: {why}", path.display())))?;
        Ok(Self(token.into()))
    }

    fn validate(token: &str) -> Result<(), &'static str> {
        if token.is_empty() {
            return Err("it is empty");
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("it must be printable ASCII without spaces (e.g. `openssl rand -hex 32`)");
        }
        Ok(())
    }

    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Checks an `authorization` header value: `Bearer <token>` or `Basic base64(sandwatch:<token>)`.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), Refused> {
        let value = authorization.ok_or(Refused::Missing)?.trim();
        let (scheme, credentials) = value.split_once(' ').ok_or(Refused::Scheme)?;
        let credentials = credentials.trim();
        let presented = if scheme.eq_ignore_ascii_case("bearer") {
            credentials.as_bytes().to_vec()
        } else if scheme.eq_ignore_ascii_case("basic") {
            // With or without `=` padding: Go's Flight client (under the ADBC driver) sends none.
            let decoded = STANDARD_PAD_INDIFFERENT
                .decode(credentials)
                .map_err(|_| Refused::Wrong)?;
            match decoded.iter().position(|b| *b == b':') {
                Some(colon) if &decoded[..colon] == BASIC_USER.as_bytes() => {
                    decoded[colon + 1..].to_vec()
                }
                _ => return Err(Refused::Wrong),
            }
        } else {
            return Err(Refused::Scheme);
        };
        if same_bytes(&presented, self.0.as_bytes()) {
            Ok(())
        } else {
            Err(Refused::Wrong)
        }
    }
}

/// Equality whose time does not depend on where the first difference is, so a caller cannot
/// learn the token byte by byte from response times.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic() {
        let t = AccessToken::new("s3cret").unwrap();
        assert_eq!(t.check(Some("Bearer s3cret")), Ok(()));
        assert_eq!(t.check(Some("bearer s3cret")), Ok(()));
        assert_eq!(t.check(Some("Bearer s3cre")), Err(Refused::Wrong));
        assert_eq!(t.check(None), Err(Refused::Missing));
        assert_eq!(t.check(Some("s3cret")), Err(Refused::Scheme));
        let basic = |s: &str| format!("Basic {}", STANDARD_PAD_INDIFFERENT.encode(s));
        assert_eq!(t.check(Some(&basic("sandwatch:s3cret"))), Ok(()));
        // Unpadded, as Go's Flight client sends it.
        assert_eq!(t.check(Some("Basic c2FuZHdhdGNoOnMzY3JldA")), Ok(()));
        assert_eq!(
            t.check(Some(&basic("admin:s3cret"))),
            Err(Refused::Wrong),
            "the user must be sandwatch"
        );
        assert_eq!(t.check(Some(&basic("sandwatch:x"))), Err(Refused::Wrong));
    }

    #[test]
    fn tokens_must_fit_a_header() {
        assert!(AccessToken::new("").is_err());
        assert!(AccessToken::new("two words").is_err());
        assert!(AccessToken::new("é").is_err());
        assert!(format!("{:?}", AccessToken::new("abc").unwrap()).contains(".."));
    }
}
