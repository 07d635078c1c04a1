//! Keyed fingerprints of redacted values: HMAC-SHA256 under a key from a file, so ops can
//! tell "same password as before" without the log revealing it.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// Computes fingerprints; the key never leaves it.
#[derive(Clone)]
pub struct Fingerprinter {
    /// HMAC state already keyed; cloned per value.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprinter(<redacted key>)")
    }
}

/// The key file is unusable.
#[derive(Debug, thiserror::Error)]
#[error("audit HMAC key {path}: {reason}")]
pub struct KeyError {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl Fingerprinter {
    /// A fingerprinter keyed with `key` (hex, at least [`MIN_KEY_BYTES`] bytes once decoded,
    /// or raw bytes of that length).
    pub fn new(key: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(key).map(str::trim).unwrap_or("");
        let bytes = decode_hex(text)
            .filter(|b| b.len() >= MIN_KEY_BYTES)
            .unwrap_or_else(|| key.to_vec());
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the key must be at least {MIN_KEY_BYTES} bytes (64 hex characters)"
            ));
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(Fingerprinter { mac })
    }

    /// Reads the key from `path`.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let fail = |reason: String| KeyError {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        Self::new(&bytes).map_err(fail)
    }

    /// Reads the key from `path`, creating it with a random key first if it does not exist.
    /// Returns whether it was created.
    pub fn from_file_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        let fail = |reason: String| KeyError {
            path: path.display().to_string(),
            reason,
        };
        if path.exists() {
            return Self::from_file(path).map(|f| (f, false));
        }
        let mut key = [0u8; MIN_KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| fail(e.to_string()))?;
        let text = crate::policy::hex(&key);
        write_private(path, text.as_bytes()).map_err(|e| fail(e.to_string()))?;
        Self::new(text.as_bytes()).map(|f| (f, true)).map_err(fail)
    }

    /// The fingerprint of `secret`: hex HMAC-SHA256.
    pub fn fingerprint(&self, secret: &Secret) -> String {
        let mut mac = self.mac.clone();
        mac.update(secret.expose().as_bytes());
        crate::policy::hex(&mac.finalize().into_bytes())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_same_fingerprint_and_key_matters() {
        let a = Fingerprinter::new(&[7u8; 32]).unwrap();
        let b = Fingerprinter::new(&[8u8; 32]).unwrap();
        let s = Secret::new("Sentinel-Passw0rd");
        assert_eq!(a.fingerprint(&s), a.fingerprint(&s.clone()));
        assert_ne!(a.fingerprint(&s), b.fingerprint(&s));
        assert_ne!(a.fingerprint(&s), a.fingerprint(&Secret::new("other")));
        assert_eq!(a.fingerprint(&s).len(), 64);
        assert!(!format!("{a:?}").contains("0707"));
        assert!(Fingerprinter::new(b"short").is_err());
    }
}
