//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys: the signer and
//! verifier key encodings (`PRIVATE+KEY+<name>+<id>+<base64>` and `<name>+<id>+<base64>`),
//! the key ID, signing a note text and opening a signed note with one trusted key. Unknown
//! signatures are ignored, as the specification asks; a known key's bad signature refuses
//! the note. Witnesses' keys are C2SP `tlog-cosignature` Ed25519 keys (type 0x04): their
//! signature is a timestamp and an Ed25519 signature of `cosignature/v1`, `time <T>` and the
//! checkpoint text.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

/// Signature type byte of Ed25519 in the key ID and key encodings.
const ALG_ED25519: u8 = 0x01;
/// Signature type byte of an Ed25519 `cosignature/v1` key (a witness's).
const ALG_COSIGNATURE_V1: u8 = 0x04;
/// The em dash (U+2014) and space opening each signature line.
const SIG_PREFIX: &str = "\u{2014} ";
/// Most signature lines read from one note (the specification asks for at least 16).
const MAX_SIGNATURES: usize = 100;
/// The prefix of an encoded signer (private) key.
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

/// A note or key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not a signed note at all (syntax).
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A key string is not a valid key.
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    /// No signature line is from the trusted key (wrong key, or an unsigned/forged note).
    #[error("no signature by the key {0} (signed by another key, or forged)")]
    NotSignedByKey(String),
    /// The trusted key's signature does not verify: the text or signature was altered.
    #[error(
        "the signature by {0} does not verify: the checkpoint was altered or forged after signing"
    )]
    BadSignature(String),
    /// A key of the other kind (a log's key where a witness's is needed, or the reverse).
    #[error("{0}")]
    WrongKind(&'static str),
}

/// A key name: non-empty, no Unicode spaces, no `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The key ID of an Ed25519 note key: the first four bytes of SHA-256(name || `\n` || 0x01
/// || public key).
pub fn key_id(name: &str, public_key: &[u8]) -> u32 {
    key_id_of(name, ALG_ED25519, public_key)
}

/// The key ID of a key of type `alg`.
fn key_id_of(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Splits `<name>+<8 hex>+<base64(type || key)>` into its name, id, type and key bytes.
fn split_key(text: &str) -> Result<(&str, u32, u8, Vec<u8>), NoteError> {
    // Names hold no '+', base64 may: split from the left.
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("expected <name>+<key id>+<key data>"));
    };
    if !valid_name(name) {
        return Err(NoteError::BadKey(
            "the key name is empty or has a space or '+'",
        ));
    }
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::BadKey("the key id is not 8 hex digits"));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| NoteError::BadKey("bad key id"))?;
    let data = B64
        .decode(data)
        .map_err(|_| NoteError::BadKey("the key data is not base64"))?;
    match data.split_first() {
        Some((&alg, key)) if key.len() == 32 && matches!(alg, ALG_ED25519 | ALG_COSIGNATURE_V1) => {
            Ok((name, id, alg, key.to_vec()))
        }
        Some((&(ALG_ED25519 | ALG_COSIGNATURE_V1), _)) => {
            Err(NoteError::BadKey("an Ed25519 key is 32 bytes"))
        }
        _ => Err(NoteError::BadKey(
            "not an Ed25519 key (type 0x01) or an Ed25519 cosignature key (type 0x04)",
        )),
    }
}

/// Signs note texts with an Ed25519 key. Its `Debug` never shows the key.
pub struct NoteSigner {
    name: String,
    id: u32,
    alg: u8,
    pair: Ed25519KeyPair,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NoteSigner({}+{:08x}, <redacted key>)",
            self.name, self.id
        )
    }
}

impl NoteSigner {
    /// Parses an encoded signer key `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`; the id
    /// must be the one the key gives.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .trim_end_matches(['\n', '\r'])
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or(NoteError::BadKey("a signer key starts with PRIVATE+KEY+"))?;
        let (name, id, alg, seed) = split_key(rest)?;
        let signer = Self::from_seed_of(name, alg, &seed)?;
        if signer.id != id {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        Ok(signer)
    }

    /// A signer named `name` from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8]) -> Result<Self, NoteError> {
        Self::from_seed_of(name, ALG_ED25519, seed)
    }

    fn from_seed_of(name: &str, alg: u8, seed: &[u8]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(
                "the key name is empty or has a space or '+'",
            ));
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| NoteError::BadKey("not an Ed25519 seed"))?;
        let id = key_id_of(name, alg, pair.public_key().as_ref());
        Ok(NoteSigner {
            name: name.to_owned(),
            id,
            alg,
            pair,
        })
    }

    /// A new random key named `name`, with its encoded signer key (to store privately).
    pub fn generate(name: &str) -> Result<(Self, crate::secret::Secret), NoteError> {
        Self::generate_of(name, ALG_ED25519)
    }

    /// A new random witness (cosigner) key named `name`, with its encoded signer key.
    pub fn generate_cosigner(name: &str) -> Result<(Self, crate::secret::Secret), NoteError> {
        Self::generate_of(name, ALG_COSIGNATURE_V1)
    }

    fn generate_of(name: &str, alg: u8) -> Result<(Self, crate::secret::Secret), NoteError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| NoteError::BadKey("no randomness"))?;
        let signer = Self::from_seed_of(name, alg, &seed)?;
        let encoded = format!(
            "{PRIVATE_PREFIX}{}+{:08x}+{}",
            signer.name,
            signer.id,
            B64.encode([&[alg][..], &seed].concat())
        );
        Ok((signer, crate::secret::Secret::new(encoded)))
    }

    /// Whether this is a witness's (cosignature) key.
    pub fn is_cosigner(&self) -> bool {
        self.alg == ALG_COSIGNATURE_V1
    }

    /// A `cosignature/v1` signature line over the checkpoint `text` as of `timestamp` (POSIX
    /// seconds), as a witness answers it.
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<String, NoteError> {
        if !self.is_cosigner() {
            return Err(NoteError::WrongKind("a log key cannot cosign"));
        }
        check_text(text)?;
        let sig = self.pair.sign(cosigned_message(text, timestamp).as_bytes());
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(sig.as_ref());
        Ok(format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob)))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier for this key.
    pub fn verifier(&self) -> NoteVerifier {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            alg: self.alg,
            key,
        }
    }

    /// Signs `text` (which must end in a newline and hold no blank line at its end): the
    /// signed note, text, blank line and signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if self.is_cosigner() {
            return Err(NoteError::WrongKind(
                "a witness key cosigns checkpoints; it does not sign notes",
            ));
        }
        check_text(text)?;
        let sig = self.pair.sign(text.as_bytes());
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(sig.as_ref());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// Checks a note's public key; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    alg: u8,
    key: [u8; 32],
}

impl NoteVerifier {
    /// Parses a verifier key `<name>+<id>+<base64(0x01 || public key)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let (name, id, alg, key) = split_key(text.trim())?;
        if key_id_of(name, alg, &key) != id {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&key);
        Ok(NoteVerifier {
            name: name.to_owned(),
            id,
            alg,
            key: bytes,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>+<id>`, how errors name the key.
    pub fn label(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }

    /// Opens a signed note: returns its text once the trusted key's signature verifies.
    /// Signatures by other keys are ignored.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        if self.is_cosigner() {
            return Err(NoteError::WrongKind(
                "a witness key: give the log's public key (type 0x01) to open its notes",
            ));
        }
        let (text, sigs) = split_note(note)?;
        let mut found = false;
        for (name, blob) in sigs {
            if blob.len() < 4 || name != self.name {
                continue;
            }
            let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            if id != self.id {
                continue;
            }
            found = true;
            UnparsedPublicKey::new(&ED25519, &self.key)
                .verify(text.as_bytes(), &blob[4..])
                .map_err(|_| NoteError::BadSignature(self.label()))?;
        }
        match found {
            true => Ok(text),
            false => Err(NoteError::NotSignedByKey(self.label())),
        }
    }
}

impl NoteVerifier {
    /// Whether this is a witness's (cosignature) key.
    pub fn is_cosigner(&self) -> bool {
        self.alg == ALG_COSIGNATURE_V1
    }

    /// The timestamp of this witness's valid `cosignature/v1` on the signed note `note`
    /// (any other signature is ignored). A cosignature by this key that does not verify is
    /// an error, as is none at all.
    pub fn cosigned_at(&self, note: &str) -> Result<u64, NoteError> {
        if !self.is_cosigner() {
            return Err(NoteError::WrongKind(
                "not a witness key (a cosignature key has type 0x04)",
            ));
        }
        let (text, sigs) = split_note(note)?;
        let mut newest = None;
        for (name, blob) in sigs {
            if name != self.name || blob.len() != 4 + 8 + 64 {
                continue;
            }
            if u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]) != self.id {
                continue;
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&blob[4..12]);
            let timestamp = u64::from_be_bytes(t);
            UnparsedPublicKey::new(&ED25519, &self.key)
                .verify(cosigned_message(text, timestamp).as_bytes(), &blob[12..])
                .map_err(|_| NoteError::BadSignature(self.label()))?;
            newest = newest.max(Some(timestamp));
        }
        newest.ok_or_else(|| NoteError::NotSignedByKey(self.label()))
    }
}

/// What a `cosignature/v1` signs: its header and time lines, then the checkpoint text.
fn cosigned_message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

impl fmt::Display for NoteVerifier {
    /// The verifier key encoding, `<name>+<id>+<base64(type || key)>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = B64.encode([&[self.alg][..], &self.key].concat());
        write!(f, "{}+{:08x}+{data}", self.name, self.id)
    }
}

/// A note text: valid (no controls but newline), non-empty, ending in a newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') || text.len() < 2 {
        return Err(NoteError::Malformed("the text must end with a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control characters in the text"));
    }
    if text.ends_with("\n\n") {
        return Err(NoteError::Malformed(
            "the text must not end with a blank line",
        ));
    }
    Ok(())
}

/// A signature line: the key name and the decoded key ID and signature.
type SigLine<'a> = (&'a str, Vec<u8>);

/// Splits a signed note at its last blank line into the text (with its final newline) and
/// the decoded signature lines.
fn split_note(note: &str) -> Result<(&str, Vec<SigLine<'_>>), NoteError> {
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control characters in the note"));
    }
    let body = note
        .strip_suffix('\n')
        .ok_or(NoteError::Malformed("a note ends with a newline"))?;
    let split = body
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, sigs) = (&note[..=split], &body[split + 2..]);
    let mut out = Vec::new();
    for line in sigs.split('\n') {
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "a signature line starts with an em dash",
        ))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "a signature line is '— <name> <signature>'",
        ))?;
        if !valid_name(name) {
            return Err(NoteError::Malformed("a bad key name in a signature line"));
        }
        let blob = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        out.push((name, blob));
    }
    if out.is_empty() || out.len() > MAX_SIGNATURES {
        return Err(NoteError::Malformed("no signature line, or too many"));
    }
    Ok((text, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors of Go's golang.org/x/mod/sumdb/note (note_test.go), the reference
    // implementation the C2SP signed-note specification was written from.
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    #[test]
    fn signing_gives_the_reference_implementations_exact_note() {
        let signer = NoteSigner::parse(PETER_SKEY).unwrap();
        assert_eq!(signer.verifier().to_string(), PETER_VKEY);
        let note = signer.sign(TEXT).unwrap();
        assert_eq!(note, format!("{TEXT}\n{PETER_SIG}"));
        assert!(format!("{signer:?}").contains("redacted"));
    }

    #[test]
    fn opening_verifies_the_known_key_and_ignores_others() {
        let peter = NoteVerifier::parse(PETER_VKEY).unwrap();
        let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        assert_eq!(peter.open(&both).unwrap(), TEXT);
        // Only another key's signature: not signed by ours.
        let enoch_only = format!("{TEXT}\n{ENOCH_SIG}");
        assert_eq!(
            peter.open(&enoch_only),
            Err(NoteError::NotSignedByKey("PeterNeumann+c74f20a3".into()))
        );
        // An altered text or signature: refused, and named so.
        let altered = format!("{}\n{PETER_SIG}", TEXT.replace("answer", "ANSWER"));
        assert!(matches!(
            peter.open(&altered),
            Err(NoteError::BadSignature(_))
        ));
        let bad_sig = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        assert!(matches!(
            peter.open(&bad_sig),
            Err(NoteError::BadSignature(_))
        ));
    }

    #[test]
    fn malformed_notes_and_keys_are_refused() {
        let peter = NoteVerifier::parse(PETER_VKEY).unwrap();
        let bad = [
            TEXT.to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!(
                "{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            ),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
            format!("{TEXT}\n{}", PETER_SIG.repeat(101)),
        ];
        for note in &bad {
            assert!(
                matches!(peter.open(note), Err(NoteError::Malformed(_))),
                "{note:?}"
            );
        }
        for key in [
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            &PETER_VKEY[1..],
            &PETER_VKEY[..PETER_VKEY.len() - 1],
        ] {
            assert!(NoteVerifier::parse(key).is_err(), "{key}");
        }
        assert!(NoteSigner::parse(&PETER_SKEY.replace("c74f20a3", "c74f20a4")).is_err());
        assert!(NoteSigner::parse(PETER_VKEY).is_err());
        let signer = NoteSigner::parse(PETER_SKEY).unwrap();
        assert!(signer.sign("no newline").is_err());
        assert!(signer.sign("blank at end\n\n").is_err());
    }

    #[test]
    fn a_witness_cosigns_with_a_timestamp_and_its_key_is_of_its_own_kind() {
        let (log, _) = NoteSigner::generate("log.example/audit").unwrap();
        let (witness, encoded) = NoteSigner::generate_cosigner("witness.example/w1").unwrap();
        let again = NoteSigner::parse(encoded.expose()).unwrap();
        assert!(again.is_cosigner());
        let vkey = witness.verifier();
        assert!(vkey.is_cosigner());
        assert_eq!(NoteVerifier::parse(&vkey.to_string()).unwrap(), vkey);
        let text =
            "log.example/audit/audit.jsonl\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let signed = log.sign(text).unwrap();
        let line = witness.cosign(text, 1_679_315_147).unwrap();
        let cosigned = format!("{signed}{line}");
        assert_eq!(vkey.cosigned_at(&cosigned).unwrap(), 1_679_315_147);
        // The log's signature still opens; the witness's key is not a log key, nor the reverse.
        assert_eq!(log.verifier().open(&cosigned).unwrap(), text);
        assert!(matches!(vkey.open(&cosigned), Err(NoteError::WrongKind(_))));
        assert!(matches!(
            log.verifier().cosigned_at(&cosigned),
            Err(NoteError::WrongKind(_))
        ));
        assert!(witness.sign(text).is_err() && log.cosign(text, 1).is_err());
        // Another time or text under the same signature does not verify.
        let later = cosigned.replace("\n3\n", "\n4\n");
        assert!(matches!(
            vkey.cosigned_at(&later),
            Err(NoteError::BadSignature(_))
        ));
        assert!(matches!(
            vkey.cosigned_at(&signed),
            Err(NoteError::NotSignedByKey(_))
        ));
        // The message signed is the specification's: header, time line, checkpoint text.
        let blob = B64
            .decode(line.trim_end().rsplit(' ').next().unwrap())
            .unwrap();
        let message = format!("cosignature/v1\ntime 1679315147\n{text}");
        let public = witness.pair.public_key().as_ref().to_vec();
        UnparsedPublicKey::new(&ED25519, &public)
            .verify(message.as_bytes(), &blob[12..])
            .unwrap();
        assert_eq!(
            &blob[..4],
            &key_id_of("witness.example/w1", 0x04, &public).to_be_bytes()
        );
    }

    #[test]
    fn a_generated_key_round_trips_through_its_encodings() {
        let (signer, encoded) = NoteSigner::generate("graphgate.example/audit").unwrap();
        let again = NoteSigner::parse(encoded.expose()).unwrap();
        assert_eq!(again.verifier(), signer.verifier());
        let vkey = signer.verifier().to_string();
        assert!(vkey.starts_with("graphgate.example/audit+"), "{vkey}");
        let verifier = NoteVerifier::parse(&vkey).unwrap();
        let note = signer.sign("a\nb\n").unwrap();
        assert_eq!(verifier.open(&note).unwrap(), "a\nb\n");
        let (other, _) = NoteSigner::generate("graphgate.example/audit").unwrap();
        assert!(matches!(
            other.verifier().open(&note),
            Err(NoteError::NotSignedByKey(_))
        ));
    }
}
