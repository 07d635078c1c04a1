//! Reading the index's few members of a record line without a JSON parse: a scan of the
//! object's top level that borrows the members it keeps and steps over the rest (nested
//! objects and arrays by their brackets, strings by their escapes), and the record's time read
//! from the fixed RFC 3339 form the gateway writes. Anything unusual (whitespace between
//! tokens, an escape in a kept string, a member missing or repeated, nesting past a bound)
//! makes it answer `None`, and the caller parses the line with serde instead: what the scan
//! returns is always what serde would (a test holds the two to it on hostile lines).

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, Error as ValueError};

use super::record::Light;

/// Deepest nesting stepped over (serde's own limit is 128; deeper lines go to serde).
const MAX_DEPTH: usize = 32;

/// The light view of `line`: read by [`scan`] when it can, else parsed by serde; `None` when
/// the line is not an audit record.
pub(super) fn light(line: &[u8]) -> Option<Light<'_>> {
    scan(line).or_else(|| serde_json::from_slice(line).ok())
}

/// The light view of `line`, when it is a plain JSON object (see the module's note).
pub(super) fn scan(line: &[u8]) -> Option<Light<'_>> {
    // No raw control byte anywhere (so no whitespace between tokens, and none a string may
    // not hold), and UTF-8 throughout (kept strings are borrowed as `str`).
    if !printable_ascii(line) && line.iter().any(|&b| b < 0x20) {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?;
    let mut s = Scan { b: line, i: 0 };
    s.eat(b'{')?;
    let mut m = Members::default();
    if s.peek()? == b'}' {
        return None; // no seq
    }
    loop {
        let key = s.key()?;
        s.eat(b':')?;
        match key {
            b"seq" => once(&mut m.seq, s.u64()?)?,
            b"prev_hash" => once(&mut m.prev_hash, s.string(text)?)?,
            b"hash" => once(&mut m.hash, s.string(text)?)?,
            b"time" => once(&mut m.time, s.string(text)?)?,
            b"audit_id" => once(&mut m.audit_id, s.string(text)?)?,
            b"caller" => once(&mut m.caller, s.nullable(text)?)?,
            b"device_id" => once(&mut m.device_id, s.nullable(text)?)?,
            b"operation" => once(&mut m.operation, s.nullable(text)?)?,
            b"completion" => once(&mut m.completion, s.nullable(text)?)?,
            b"kind" => once(&mut m.kind, s.nullable_variant(text)?)?,
            b"decision" => once(&mut m.decision, s.nullable_variant(text)?)?,
            _ => s.skip(0)?,
        }
        match s.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    if s.i != line.len() {
        return None;
    }
    let b = Cow::Borrowed;
    Some(Light {
        seq: m.seq?,
        prev_hash: b(m.prev_hash?),
        hash: b(m.hash?),
        kind: m.kind.flatten(),
        time: b(m.time?),
        audit_id: b(m.audit_id?),
        caller: m.caller.flatten().map(b),
        device_id: m.device_id.flatten().map(b),
        operation: m.operation.flatten().map(b),
        decision: m.decision.flatten(),
        completion: m.completion.flatten().map(b),
    })
}

/// Whether every byte is printable ASCII (0x20..0x80), eight at a time.
fn printable_ascii(line: &[u8]) -> bool {
    const LOW: u64 = 0x2020_2020_2020_2020;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = line.chunks_exact(8);
    let mut bad = 0u64;
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        let x = u64::from_le_bytes(word);
        // A high bit: a byte of 0x80 or more; `x - LOW & !x`: one below 0x20 (exact for ASCII).
        bad |= x | (x.wrapping_sub(LOW) & !x);
    }
    bad & HIGH == 0
        && chunks
            .remainder()
            .iter()
            .all(|&b| (0x20..0x80).contains(&b))
}

/// The members kept, as found (`Some(None)`: present as `null`).
#[derive(Default)]
struct Members<'a> {
    seq: Option<u64>,
    prev_hash: Option<&'a str>,
    hash: Option<&'a str>,
    time: Option<&'a str>,
    audit_id: Option<&'a str>,
    caller: Option<Option<&'a str>>,
    device_id: Option<Option<&'a str>>,
    operation: Option<Option<&'a str>>,
    completion: Option<Option<&'a str>>,
    kind: Option<Option<crate::audit::records::record::Kind>>,
    decision: Option<Option<crate::audit::records::record::AuditDecision>>,
}

/// Sets a member seen for the first time (serde refuses a repeated one).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// A unit enum's variant by its serde name.
fn variant<'de, T: Deserialize<'de>>(name: &'de str) -> Option<T> {
    T::deserialize(BorrowedStrDeserializer::<ValueError>::new(name)).ok()
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn eat_all(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A member name without escapes, as bytes.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        // Names and kept values are short: a plain loop beats a vector search's set-up.
        let end = start
            + self.b[start..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\')?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        Some(&self.b[start..end])
    }

    /// A string value without escapes, borrowed from `text` (the same bytes).
    fn string(&mut self, text: &'a str) -> Option<&'a str> {
        let key = self.key()?;
        let start = self.i - 1 - key.len();
        text.get(start..self.i - 1)
    }

    /// A string value or `null`.
    fn nullable(&mut self, text: &'a str) -> Option<Option<&'a str>> {
        match self.peek()? {
            b'n' => self.eat_all(b"null").map(|()| None),
            _ => self.string(text).map(Some),
        }
    }

    /// A unit enum's variant by its serde name, or `null`.
    fn nullable_variant<T: Deserialize<'a>>(&mut self, text: &'a str) -> Option<Option<T>> {
        match self.nullable(text)? {
            None => Some(None),
            Some(name) => variant(name).map(Some),
        }
    }

    /// An unsigned integer as serde reads one into a `u64` (no sign, fraction, exponent or
    /// leading zero).
    fn u64(&mut self) -> Option<u64> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        let leading_zero = digits > 1 && self.b[start] == b'0';
        let more = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        (digits > 0 && !leading_zero && !more).then_some(n)
    }

    /// Steps over one JSON value (strictly: anything serde would refuse is refused).
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.i += 1;
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip_string()?;
                    self.eat(b':')?;
                    self.skip(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.eat_all(b"true"),
            b'f' => self.eat_all(b"false"),
            b'n' => self.eat_all(b"null"),
            _ => self.skip_number(),
        }
    }

    /// A string, any escapes checked as serde checks them (a `\u` escape of a surrogate is
    /// left to serde).
    fn skip_string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            let at = self.i + memchr::memchr2(b'"', b'\\', &self.b[self.i..])?;
            self.i = at + 1;
            if self.b[at] == b'"' {
                return Some(());
            }
            match self.next()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                b'u' => {
                    let hex = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
                    if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                        return None;
                    }
                    let unit = u16::from_str_radix(hex, 16).ok()?;
                    if (0xd800..0xe000).contains(&unit) {
                        return None;
                    }
                    self.i += 4;
                }
                _ => return None,
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn skip_number(&mut self) -> Option<()> {
        let digits = |s: &mut Self| {
            let start = s.i;
            while s.peek().is_some_and(|c| c.is_ascii_digit()) {
                s.i += 1;
            }
            s.i - start
        };
        if self.peek()? == b'-' {
            self.i += 1;
        }
        let first = self.peek()?;
        let n = digits(self);
        if n == 0 || (first == b'0' && n > 1) {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        Some(())
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time in the gateway's form
/// (`2026-11-28T10:00:00.000000Z`: UTC, `T`, `Z`, up to nine fraction digits); `None` for
/// any other form (the caller asks chrono) or a date that does not exist.
pub(super) fn utc_seconds(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b.last() != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(at, c)| b[at] != c) {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    match frac {
        [] => {}
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
        }
        _ => return None,
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
