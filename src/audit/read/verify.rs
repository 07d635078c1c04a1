//! `audit verify`: walks the hash chain across files and reports the first record that was
//! altered, removed, reordered or inserted. A torn last line (a crash mid-write) is reported
//! as such, not as tampering. [`super::ends`] then checks both ends against the anchor.

use std::path::PathBuf;

use serde_json::Value;

use super::chain::{GENESIS, hash_of};
use super::report::{Position, Problem, Report};

struct Line {
    pos: Position,
    value: Option<Value>,
}

/// Verifies `files` as one chain. Files are taken in chain order (by their first record's
/// sequence number), so a shell glob's order does not matter.
pub fn verify(files: &[PathBuf]) -> std::io::Result<Report> {
    verify_watching(files, &[])
}

/// [`verify`], also noting the chain fields of the records numbered `watch` (the anchor's
/// ends) in [`Report::watched`]. Intact files are checked in parallel ([`super::sweep`]);
/// anything amiss is then walked record by record to name it.
pub fn verify_watching(files: &[PathBuf], watch: &[u64]) -> std::io::Result<Report> {
    Ok(verify_with_leaves(files, watch, false)?.0)
}

/// [`verify_watching`], also returning the records' Merkle leaf hashes in seq order (when
/// `leaves` is asked for and the files are intact).
pub fn verify_with_leaves(
    files: &[PathBuf],
    watch: &[u64],
    leaves: bool,
) -> std::io::Result<(Report, Vec<super::tree::Hash>)> {
    let mut sorted = watch.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if let Some(done) = super::sweep::sweep(files, &sorted, leaves)? {
        return Ok(done);
    }
    Ok((walk_precisely(files, &sorted)?, Vec::new()))
}

/// The record-by-record walk that names the first problem.
fn walk_precisely(files: &[PathBuf], watch: &[u64]) -> std::io::Result<Report> {
    let mut report = Report::default();
    let mut lines = Vec::new();
    for file in order(files)? {
        let text = super::files::read(&file)?;
        let torn = !text.is_empty() && !text.ends_with(b"\n");
        let mut parts: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        if !torn {
            parts.pop();
        }
        let count = parts.len();
        for (i, raw) in parts.into_iter().enumerate() {
            let pos = Position {
                file: file.clone(),
                line: i + 1,
                seq: None,
            };
            let value = serde_json::from_slice::<Value>(raw).ok();
            if torn && i + 1 == count {
                report.torn.push(pos);
                continue;
            }
            lines.push(Line { pos, value });
        }
    }
    // Sorted, so each record is looked up in it by binary search (checkpoints can be many).
    let mut watch = watch.to_vec();
    watch.sort_unstable();
    watch.dedup();
    walk(&lines, &watch, &mut report);
    Ok(report)
}

fn order(files: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    super::sweep::order(files)
}

fn seq(v: &Value) -> Option<u64> {
    v["seq"].as_u64()
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Walks the parsed lines in order, stopping at the first problem.
fn walk(lines: &[Line], watch: &[u64], report: &mut Report) {
    // (expected next seq, hash of the last good record, hash of the one before it)
    let mut expected: Option<u64> = None;
    let mut prev = String::new();
    let mut prev2 = String::new();
    for (i, line) in lines.iter().enumerate() {
        let mut pos = line.pos.clone();
        let Some(v) = &line.value else {
            report.problem = Some((pos, Problem::Malformed));
            return;
        };
        pos.seq = seq(v);
        let (Some(s), true) = (seq(v), v["hash"].is_string()) else {
            report.problem = Some((pos, Problem::Malformed));
            return;
        };
        if hash_of(v) != text(v, "hash") {
            report.problem = Some((pos, Problem::Altered));
            return;
        }
        let want = expected.unwrap_or(s);
        let chained = match expected {
            None => s > 1 || text(v, "prev_hash") == GENESIS,
            Some(_) => text(v, "prev_hash") == prev && s == want,
        };
        if !chained {
            let next = lines.get(i + 1).and_then(|l| l.value.as_ref());
            let (at, problem) = classify(v, s, want, &prev, &prev2, next);
            let mut at_pos = if at == 0 {
                pos
            } else {
                lines[i - 1].pos.clone()
            };
            if at != 0 {
                at_pos.seq = lines[i - 1].value.as_ref().and_then(seq);
            }
            report.problem = Some((at_pos, problem));
            return;
        }
        note_link(report, watch, v, s);
        prev2 = std::mem::replace(&mut prev, text(v, "hash").to_owned());
        expected = Some(s + 1);
        report.records += 1;
        let first = report.seq_range.map_or(s, |(f, _)| f);
        report.seq_range = Some((first, s));
    }
}

/// Notes the chain fields of verified record `v` (seq `s`) if it is the first or watched.
fn note_link(report: &mut Report, watch: &[u64], v: &Value, s: u64) {
    let link = || super::files::Link {
        seq: s,
        prev_hash: text(v, "prev_hash").to_owned(),
        hash: text(v, "hash").to_owned(),
    };
    if report.first.is_none() {
        report.first = Some(link());
    }
    if watch.binary_search(&s).is_ok() {
        report.watched.push(link());
    }
}

/// Names a chain break at record `v` (seq `s`, `want` expected). Returns 0 if the problem
/// is at this record, 1 if it is at the one before.
fn classify(
    v: &Value,
    s: u64,
    want: u64,
    prev: &str,
    prev2: &str,
    next: Option<&Value>,
) -> (usize, Problem) {
    let prev_hash = text(v, "prev_hash");
    let next_seq = next.and_then(seq);
    let next_prev = next.map_or("", |n| text(n, "prev_hash"));
    if s == want + 1 && next_seq == Some(want) {
        (0, Problem::Reordered)
    } else if next_seq == Some(want) && next_prev == prev {
        (0, Problem::Inserted)
    } else if s + 1 == want && prev_hash == prev2 {
        (1, Problem::Inserted)
    } else if s == want && prev_hash != prev {
        (1, Problem::Rehashed)
    } else if s > want {
        (0, Problem::Removed { count: s - want })
    } else {
        (0, Problem::Broken)
    }
}
