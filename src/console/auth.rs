//! The admin token: on an admin listener off loopback, the console and `/metrics` answer
//! only requests carrying the token from `--admin-token-file`, as `Authorization: Bearer
//! <token>` (Prometheus, curl) or as the password of HTTP Basic (a browser's own prompt).
//! Compared in constant time, by digest; the token itself is never kept or printed.

use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token accepted.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The admin token's digest.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The token file is unusable.
#[derive(Debug, thiserror::Error)]
#[error("admin token file {path}: {reason}")]
pub struct TokenError {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl AdminToken {
    /// A token from its text (surrounding whitespace ignored).
    pub fn new(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_BYTES || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the token must be at least {MIN_TOKEN_BYTES} printable characters without spaces"
            ));
        }
        Ok(AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Reads the token from `path`, which must be private to graphgate's user.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let fail = |reason: String| TokenError {
            path: path.display().to_string(),
            reason,
        };
        crate::audit::records::fingerprint::check_private(path).map_err(fail)?;
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Self::new(&text).map_err(fail)
    }

    /// Whether an `Authorization` header value carries the token.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(presented) = authorization.and_then(presented) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(digest.ct_eq(&self.digest))
    }
}

/// The token in `Bearer <token>` or `Basic base64(<any user>:<token>)`.
fn presented(header: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let pair = String::from_utf8(decoded).ok()?;
        return pair.split_once(':').map(|(_, pw)| pw.to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_carry_the_token_and_nothing_else_does() {
        let token = AdminToken::new("s3cret-admin-token-0123\n").unwrap();
        assert!(token.admits(Some(b"Bearer s3cret-admin-token-0123")));
        let basic = base64::engine::general_purpose::STANDARD.encode("ops:s3cret-admin-token-0123");
        assert!(token.admits(Some(format!("Basic {basic}").as_bytes())));
        for bad in [
            None,
            Some(&b"Bearer s3cret-admin-token-0124"[..]),
            Some(b"s3cret-admin-token-0123"),
            Some(b"Basic !!!"),
            Some(b"Bearer "),
        ] {
            assert!(!token.admits(bad), "{bad:?}");
        }
        assert!(AdminToken::new("short").is_err());
        assert!(AdminToken::new("has a space in it, long enough").is_err());
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
