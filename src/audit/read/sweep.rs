//! `audit verify` at the speed of the disk: the files are read and checked in parallel, one
//! file per core at a time. A record checks out when the SHA-256 of its line without the
//! `hash` member is that hash (a line the gateway sealed is its canonical form with the member
//! inserted, so a match means the content is exactly what was sealed), and it chains to the
//! record before; each record's Merkle leaf hash is taken on the way. Anything else (a line
//! that is not canonical, a break) sends the caller to [`super::verify`]'s precise walk,
//! which names the problem.

use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use memchr::memmem;

use sha2::{Digest, Sha256};

use super::chain::GENESIS;
use super::files::{self, Link};
use super::report::{Position, Report};
use super::tree::{self, Hash};

/// `"hash":"` + 64 hex digits + `",`.
const MEMBER: &[u8] = b"\"hash\":\"";
const MEMBER_LEN: usize = MEMBER.len() + 64 + 2;

/// What one file held, when every record in it checked out.
struct FileResult {
    /// Where the file is in chain order.
    order: usize,
    records: u64,
    first: Option<Link>,
    last: Option<(u64, [u8; 32])>,
    watched: Vec<Link>,
    torn: Option<Position>,
    leaves: Vec<Hash>,
}

/// The records of `files`, verified, with their Merkle leaf hashes in seq order (when
/// `leaves`); `None` when anything is amiss (the caller then walks the files precisely).
pub fn sweep(
    files: &[PathBuf],
    watch: &[u64],
    leaves: bool,
) -> std::io::Result<Option<(Report, Vec<Hash>)>> {
    let ordered = order(files)?;
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<std::io::Result<Option<FileResult>>>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(ordered.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                // One buffer per worker, reused from file to file (fewer page faults).
                let mut buf = Vec::new();
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(file) = ordered.get(i) else {
                        return;
                    };
                    let result = check_file(file, &mut buf, i, watch, leaves);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(result);
                }
            });
        }
    });
    let mut done = Vec::new();
    for r in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        match r? {
            Some(f) => done.push(f),
            None => return Ok(None),
        }
    }
    done.sort_by_key(|f| f.order);
    Ok(join(done))
}

/// Joins the files' results in chain order: each file must start where the one before ended.
fn join(done: Vec<FileResult>) -> Option<(Report, Vec<Hash>)> {
    let mut report = Report::default();
    let mut leaves = Vec::new();
    let mut prev: Option<(u64, [u8; 32])> = None;
    for f in done {
        // A torn line is only a crash remnant at the end of a file.
        if let Some(torn) = f.torn {
            report.torn.push(torn);
        }
        if let Some(first) = &f.first {
            let joined = match prev {
                None => first.seq > 1 || first.prev_hash == GENESIS,
                Some((seq, hash)) => {
                    first.seq == seq + 1 && first.prev_hash == super::chain::hex(&hash)
                }
            };
            if !joined {
                return None;
            }
            if report.first.is_none() {
                report.first = Some(first.clone());
            }
        }
        if let Some(last) = f.last {
            let from = report.seq_range.map_or(f.first.as_ref()?.seq, |(a, _)| a);
            report.seq_range = Some((from, last.0));
            prev = Some(last);
        }
        report.records += f.records;
        report.watched.extend(f.watched);
        leaves.extend(f.leaves);
    }
    Some((report, leaves))
}

fn check_file(
    file: &Path,
    buf: &mut Vec<u8>,
    order: usize,
    watch: &[u64],
    want_leaves: bool,
) -> std::io::Result<Option<FileResult>> {
    buf.clear();
    std::io::Read::read_to_end(
        &mut std::fs::File::open(file)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?,
        buf,
    )?;
    let text = &buf[..];
    let torn = !text.is_empty() && !text.ends_with(b"\n");
    let mut lines: Vec<&[u8]> = Vec::with_capacity(text.len() / 512);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', text) {
        lines.push(&text[start..end]);
        start = end + 1;
    }
    lines.push(&text[start..]);
    let torn_pos = match torn {
        true => {
            lines.pop();
            Some(Position {
                file: file.to_owned(),
                line: lines.len() + 1,
                seq: None,
            })
        }
        false => {
            lines.pop();
            None
        }
    };
    let mut out = FileResult {
        order,
        records: 0,
        first: None,
        last: None,
        watched: Vec::new(),
        torn: torn_pos,
        leaves: Vec::with_capacity(if want_leaves { lines.len() } else { 0 }),
    };
    for line in lines {
        let Some((link, hash)) = check_line(line) else {
            return Ok(None);
        };
        if let Some((seq, prev)) = out.last
            && (link.seq != seq + 1 || !hex_eq(link.prev_hash.as_bytes(), &prev))
        {
            return Ok(None);
        }
        if want_leaves {
            out.leaves.push(tree::leaf_hash(line));
        }
        if out.first.is_none() || watch.binary_search(&link.seq).is_ok() {
            let owned = Link {
                seq: link.seq,
                prev_hash: link.prev_hash.to_owned(),
                hash: super::chain::hex(&hash),
            };
            if watch.binary_search(&link.seq).is_ok() {
                out.watched.push(owned.clone());
            }
            if out.first.is_none() {
                out.first = Some(owned);
            }
        }
        out.last = Some((link.seq, hash));
        out.records += 1;
    }
    Ok(Some(out))
}

/// The chain fields of a line, borrowed.
struct LinkRef<'a> {
    seq: u64,
    prev_hash: &'a str,
}

/// The record's chain fields and hash when the line hashes to the hash it carries.
///
/// Once the hash matches, the line is exactly what the gateway sealed: canonical JSON,
/// members in key order. `prev_hash` and `seq` are then read without parsing: every member
/// after them (`reason` .. `user_id`) is a string or a number, so their keys' last
/// occurrences are theirs (inside a string a quote is escaped, and no nested object follows).
fn check_line(line: &[u8]) -> Option<(LinkRef<'_>, [u8; 32])> {
    let digest = sealed_digest(line)?;
    const PREV: &[u8] = b",\"prev_hash\":\"";
    const SEQ: &[u8] = b",\"seq\":";
    let p = memchr::memmem::rfind(line, PREV)? + PREV.len();
    let prev_hash = std::str::from_utf8(line.get(p..p + 64)?).ok()?;
    if line.get(p + 64) != Some(&b'"') {
        return None;
    }
    let s = memchr::memmem::rfind(line, SEQ)? + SEQ.len();
    let digits = line[s..].iter().take_while(|b| b.is_ascii_digit()).count();
    let seq = std::str::from_utf8(&line[s..s + digits])
        .ok()?
        .parse()
        .ok()?;
    Some((LinkRef { seq, prev_hash }, digest))
}

/// The hash of a line the gateway sealed, without parsing it: the SHA-256 of the line with
/// its (first) `hash` member cut out, when that is the hash the member carries; `None` for
/// any other line (altered, or not in canonical form: the caller then checks it precisely).
/// The console's index checks the chain with it too.
pub fn sealed_digest(line: &[u8]) -> Option<[u8; 32]> {
    static FINDER: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(MEMBER));
    let at = FINDER.find(line)?;
    let end = at + MEMBER_LEN;
    let member = line.get(at..end)?;
    if &member[MEMBER_LEN - 2..] != b"\"," {
        return None;
    }
    let claimed = decode_hex(&member[MEMBER.len()..MEMBER.len() + 64])?;
    let mut h = Sha256::new();
    h.update(&line[..at]);
    h.update(&line[end..]);
    let digest: [u8; 32] = h.finalize().into();
    (digest == claimed).then_some(digest)
}

/// 64 lower-case hex digits as the 32 bytes they spell. Without a branch per digit: hashes
/// digits are random, and a mispredicted branch per digit cost more than the SHA-256.
pub fn decode_hex(hex: &[u8]) -> Option<[u8; 32]> {
    let hex: &[u8; 64] = hex.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
        bad |= hi | lo;
        *o = hi << 4 | lo;
    }
    (bad & 0xf0 == 0).then_some(out)
}

/// Each byte's value as a lower-case hex digit; 0xff: not one.
static NIBBLES: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Whether `hex` spells `bytes` (lower case).
pub fn hex_eq(hex: &[u8], bytes: &[u8; 32]) -> bool {
    decode_hex(hex).is_some_and(|b| &b == bytes)
}

/// Files in chain order (by their first record's seq; a file without one last).
pub fn order(files: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut keyed = Vec::with_capacity(files.len());
    for f in files {
        let first = files::first_link(f)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", f.display())))?;
        keyed.push((first.map_or(u64::MAX, |l| l.seq), f.clone()));
    }
    keyed.sort_by_key(|(seq, _)| *seq);
    Ok(keyed.into_iter().map(|(_, f)| f).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::records::chain::ChainState;
    use crate::audit::records::record::Entry;

    #[test]
    fn a_sealed_line_checks_out_and_any_change_or_a_non_canonical_form_does_not() {
        let mut state = ChainState::default();
        let entry = Entry {
            audit_id: "a".into(),
            note: Some("\"hash\":\"ü".into()),
            ..Entry::default()
        };
        let line = state.seal(&entry).unwrap();
        let (link, hash) = check_line(&line).unwrap();
        assert_eq!((link.seq, link.prev_hash), (1, GENESIS));
        assert_eq!(crate::audit::records::chain::hex(&hash), state.hash);
        let mut altered = line.clone();
        let i = altered.len() - 5;
        altered[i] ^= 1;
        assert!(check_line(&altered).is_none());
        let spaced = String::from_utf8(line.clone())
            .unwrap()
            .replacen(',', ", ", 1);
        assert!(check_line(spaced.as_bytes()).is_none());
    }

    #[test]
    fn hex_decodes_only_64_lower_case_digits() {
        let hex = "0123456789abcdef".repeat(4);
        let bytes = decode_hex(hex.as_bytes()).unwrap();
        assert_eq!(crate::audit::records::chain::hex(&bytes), hex);
        for bad in [
            hex.to_uppercase(),
            hex.replacen('f', "g", 1),
            hex.replacen('0', "/", 1),
            hex[..62].to_owned(),
            format!("{hex}00"),
        ] {
            assert_eq!(decode_hex(bad.as_bytes()), None, "{bad}");
        }
        assert!(hex_eq(hex.as_bytes(), &bytes));
        assert!(!hex_eq(b"", &[0; 32]));
    }
}
