//! Keyed fingerprints of redacted values: HMAC-SHA256 under a key from a file, so ops can
//! tell "same password as before" without the log revealing it. The same key authenticates
//! the log's anchor (under its own domain label). Key files are checked like an SSH key:
//! private to their owner, and random enough.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// How to make a good key file, for error messages.
pub const KEY_RECIPE: &str =
    "make one with: (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > FILE)";

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
        Self::keyed(&bytes)
    }

    fn keyed(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the key must be at least {MIN_KEY_BYTES} bytes (64 hex characters)"
            ));
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(Fingerprinter { mac })
    }

    /// Reads the key from `path`, refusing a file that group or others may read or write,
    /// and a key that is short or visibly not random (a passphrase, a repeated pattern).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let fail = |reason: String| KeyError {
            path: path.display().to_string(),
            reason,
        };
        check_private(path).map_err(fail)?;
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let key = key_material(&bytes).map_err(|e| fail(format!("{e}; {KEY_RECIPE}")))?;
        Self::keyed(&key).map_err(fail)
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
        self.fingerprint_bytes(secret.expose().as_bytes())
    }

    /// The fingerprint of any value (a parameter recorded only in part): hex HMAC-SHA256,
    /// the same as [`Fingerprinter::fingerprint`] of the same text.
    pub fn fingerprint_bytes(&self, value: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(value);
        crate::policy::hex(&mac.finalize().into_bytes())
    }

    /// A MAC of `message` under this key for `domain`, so that no fingerprint of a
    /// parameter value can ever stand in for it (the domain and a NUL come first).
    pub fn authenticate(&self, domain: &str, message: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(message);
        crate::policy::hex(&mac.finalize().into_bytes())
    }

    /// Whether `tag` is [`Fingerprinter::authenticate`]'s MAC of `message`, compared in
    /// constant time.
    pub fn is_authentic(&self, domain: &str, message: &[u8], tag: &str) -> bool {
        use subtle::ConstantTimeEq;
        let want = self.authenticate(domain, message);
        want.len() == tag.len() && bool::from(want.as_bytes().ct_eq(tag.as_bytes()))
    }
}

/// Refuses a key file that anyone but its owner may read or write, with one exception
/// PostgreSQL makes for its TLS key too: a file owned by root may also be readable by its
/// group. That is how the kubelet mounts a Secret for a non-root pod (owner root, group the
/// pod's `fsGroup`, mode 0440), and only root could have given the group that access.
pub(crate) fn check_private(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let mode = meta.permissions().mode();
        let allowed_group = if meta.uid() == 0 { 0o040 } else { 0 };
        if mode & 0o077 & !allowed_group != 0 {
            return Err(format!(
                "the key file is open to {} (mode {:04o}); it must be private to graphgate's user: chmod 600 {}",
                if allowed_group == 0 {
                    "its group or others"
                } else {
                    "others, or writable by its group"
                },
                mode & 0o7777,
                path.display()
            ));
        }
    }
    Ok(())
}

/// The key bytes a file holds: hex or base64 text is decoded, binary is taken as it is, and
/// other text (a passphrase) is refused. The key must hold at least [`MIN_KEY_BYTES`] bytes
/// that look random.
fn key_material(file: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let text = std::str::from_utf8(file).map(str::trim).unwrap_or("");
    let printable = !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    let key = match decode_hex(text) {
        Some(bytes) if printable => bytes,
        _ if printable => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| {
                "the key file holds text that is neither hex nor base64 (a passphrase is not a key)"
                    .to_owned()
            })?,
        _ => file.to_vec(),
    };
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "the key holds {} bytes; at least {MIN_KEY_BYTES} random bytes are needed",
            key.len()
        ));
    }
    looks_random(&key)
}

/// Refuses keys whose bytes, or steps between bytes, take few distinct values: a repeated
/// pattern or a counting sequence. Random keys of 32 bytes have about 30 distinct values;
/// fewer than half of what is possible is astronomically unlikely by chance.
fn looks_random(key: &[u8]) -> Result<Vec<u8>, String> {
    let distinct = |values: &mut dyn Iterator<Item = u8>| {
        let mut seen = [false; 256];
        values.for_each(|v| seen[usize::from(v)] = true);
        seen.iter().filter(|s| **s).count()
    };
    let need = key.len().min(256) / 2;
    let bytes = distinct(&mut key.iter().copied());
    let steps = distinct(&mut key.windows(2).map(|w| w[1].wrapping_sub(w[0])));
    if bytes < need || steps < need {
        return Err(format!(
            "the key does not look random ({bytes} distinct byte values in {} bytes)",
            key.len()
        ));
    }
    Ok(key.to_vec())
}

pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
        let msg = b"head 42";
        let tag = a.authenticate("anchor", msg);
        assert!(a.is_authentic("anchor", msg, &tag));
        assert!(!a.is_authentic("anchor", b"head 43", &tag));
        assert!(!b.is_authentic("anchor", msg, &tag));
        assert!(!a.is_authentic("other", msg, &tag));
        assert_ne!(tag, a.fingerprint_bytes(msg));
        assert_eq!(a.fingerprint_bytes(b"x"), a.fingerprint(&Secret::new("x")));
    }

    fn key_file(name: &str, content: &[u8], mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("graphgate-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn random_hex() -> String {
        let bytes = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
        crate::policy::hex(&[*bytes[0].as_bytes(), *bytes[1].as_bytes()].concat())
    }

    #[test]
    fn a_private_random_key_file_is_accepted_in_hex_base64_or_binary() {
        use base64::Engine;
        let hex = random_hex();
        assert!(Fingerprinter::from_file(&key_file("k", hex.as_bytes(), 0o600)).is_ok());
        let with_newline = format!("{hex}\n");
        assert!(Fingerprinter::from_file(&key_file("k", with_newline.as_bytes(), 0o400)).is_ok());
        let raw = decode_hex(&hex).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert!(Fingerprinter::from_file(&key_file("k", b64.as_bytes(), 0o600)).is_ok());
        assert!(Fingerprinter::from_file(&key_file("k", &raw, 0o600)).is_ok());
        // The same key, however written, gives the same fingerprints.
        let from_hex = Fingerprinter::from_file(&key_file("k", hex.as_bytes(), 0o600)).unwrap();
        let from_b64 = Fingerprinter::from_file(&key_file("k", b64.as_bytes(), 0o600)).unwrap();
        assert_eq!(
            from_hex.fingerprint_bytes(b"v"),
            from_b64.fingerprint_bytes(b"v")
        );
    }

    #[test]
    fn a_key_file_open_to_others_or_weak_is_refused_saying_how_to_make_one() {
        let hex = random_hex();
        for mode in [0o604, 0o644, 0o660, 0o602, 0o620] {
            let err = Fingerprinter::from_file(&key_file("k", hex.as_bytes(), mode)).unwrap_err();
            assert!(err.reason.contains("chmod 600"), "{mode:o}: {err}");
        }
        // Group-readable is refused unless root owns the file (as for a Kubernetes Secret).
        let path = key_file("k", hex.as_bytes(), 0o440);
        let owned_by_root =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&path).unwrap()) == 0;
        let group_readable = Fingerprinter::from_file(&path);
        assert_eq!(
            group_readable.is_ok(),
            owned_by_root,
            "{:?}",
            group_readable.err()
        );
        let weak: [(&str, &[u8]); 5] = [
            ("short hex", b"00112233445566778899aabbccddeeff"),
            ("repeated", &[b'a'; 64]),
            (
                "pattern",
                b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
            (
                "counting",
                b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            ),
            (
                "passphrase",
                b"correct horse battery staple, but longer than 32",
            ),
        ];
        for (what, content) in weak {
            let err = Fingerprinter::from_file(&key_file("k", content, 0o600)).unwrap_err();
            assert!(
                err.reason.contains("head -c 32 /dev/urandom"),
                "{what}: {err}"
            );
        }
    }
}
