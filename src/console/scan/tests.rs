//! The scan against serde: on sealed records with hostile strings, and on those lines mutated
//! byte by byte, whatever the scan returns is what serde returns (seeded, so a failure
//! repeats); and the gateway's own time form read by hand as chrono reads it.

use std::sync::Arc;

use super::*;
use crate::audit::records::chain::ChainState;
use crate::audit::records::record::{AuditDecision, Entry, Kind};

/// Strings a caller could put in a record (a reason, a parameter, an id).
const HOSTILE: &[&str] = &[
    "plain",
    "",
    r#"","device_id":"11111111-2222-4333-8444-555555555555"#,
    r#"\"seq\":7,\"caller\":\"x\""#,
    "back\\slash\\",
    "quote\"in\"side",
    "ünïcödé ✓ 𝄞",
    "\u{1}\u{1f}\t\n control",
    "\\u0022 \\ud800",
    r#"{"hash":"00"}"#,
    "}]},{[",
    "null",
];

fn pick<'a>(rng: &mut fastrand::Rng, from: &[&'a str]) -> &'a str {
    from[rng.usize(..from.len())]
}

/// One of the hostile strings, or none.
fn maybe(rng: &mut fastrand::Rng) -> Option<String> {
    rng.bool().then(|| pick(rng, HOSTILE).to_owned())
}

/// A record with hostile strings in kept and skipped members, and nested parameters that
/// reuse the kept members' names.
fn record(rng: &mut fastrand::Rng) -> Entry {
    let h = |rng: &mut fastrand::Rng| pick(rng, HOSTILE).to_owned();
    let mut nested = serde_json::json!({
        "device_id": h(rng),
        "seq": rng.u64(..),
        "caller": {"seq": [1, -2.5e3, null, true, false, {"hash": h(rng)}], "kind": "intent"},
        "deep": [[[{"time": h(rng)}]]],
    });
    nested[h(rng)] = h(rng).into();
    let kinds = [Kind::Intent, Kind::Outcome, Kind::Request, Kind::Completion];
    Entry {
        kind: rng.bool().then(|| kinds[rng.usize(..kinds.len())]),
        time: match rng.u8(..3) {
            0 => "2026-11-28T10:00:00.000000Z".to_owned(),
            1 => h(rng),
            _ => "2024-02-29T23:59:59+01:00".to_owned(),
        },
        audit_id: match rng.bool() {
            true => uuid::Uuid::from_u128(rng.u128(..)).to_string(),
            false => h(rng),
        },
        caller: maybe(rng),
        device_id: maybe(rng),
        operation: rng.bool().then(|| "managedDevices.wipe".to_owned()),
        decision: rng.bool().then_some(AuditDecision::Denied),
        completion: maybe(rng),
        reason: maybe(rng),
        note: maybe(rng),
        device_ids: rng.bool().then(|| vec![h(rng), h(rng)]),
        params: rng.bool().then(|| Arc::new(nested)),
        status: rng.bool().then(|| rng.u16(..)),
        ..Entry::default()
    }
}

fn serde_view(line: &[u8]) -> Option<Light<'_>> {
    serde_json::from_slice(line).ok()
}

/// What the scan returns, serde returns: the property every case below checks.
fn agrees(line: &[u8]) -> bool {
    match scan(line) {
        None => true,
        Some(scanned) => serde_view(line).as_ref() == Some(&scanned),
    }
}

/// Whether the kept strings of a record need no escape (the scan reads those itself).
fn plain(e: &Entry) -> bool {
    let kept = [
        Some(&e.time),
        Some(&e.audit_id),
        e.caller.as_ref(),
        e.device_id.as_ref(),
        e.operation.as_ref(),
        e.completion.as_ref(),
    ];
    kept.into_iter()
        .flatten()
        .all(|s| !s.contains(['"', '\\']) && !s.chars().any(char::is_control))
}

#[test]
fn the_scan_reads_what_serde_reads_from_sealed_records_with_hostile_strings() {
    let mut rng = fastrand::Rng::with_seed(25);
    let mut state = ChainState::default();
    let mut scanned = 0;
    for _ in 0..3000 {
        let entry = record(&mut rng);
        let line = state.seal(&entry).unwrap();
        let text = String::from_utf8_lossy(&line).into_owned();
        let by_serde = serde_view(&line).expect("a sealed record parses");
        match scan(&line) {
            Some(by_scan) => {
                assert_eq!(by_scan, by_serde, "{text}");
                scanned += 1;
            }
            // Only a kept string with an escape goes to serde.
            None => assert!(!plain(&entry), "a plain record was not scanned: {text}"),
        }
    }
    assert!(scanned > 300, "the scan read {scanned} records itself");
}

#[test]
fn on_a_mutated_line_the_scan_agrees_with_serde_or_leaves_it_to_serde() {
    let mut rng = fastrand::Rng::with_seed(2025);
    let mut state = ChainState::default();
    const TOKENS: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b" ",
        b"0",
        b"-",
        b"e",
        b".",
        b"null",
        b"\\u00e9",
        b"\\ud83d",
        b"\"seq\":1,",
        b"\"caller\":\"x\",",
        b"\"kind\":\"bogus\",",
        b"\"kind\":null,",
        b"\xff",
        b"\x01",
    ];
    let mut accepted = 0;
    for _ in 0..4000 {
        let mut line = state.seal(&record(&mut rng)).unwrap();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..=line.len());
            match rng.u8(..4) {
                0 if at < line.len() => {
                    line.remove(at);
                }
                1 if at < line.len() => line[at] = rng.u8(0x20..0x7f),
                _ => {
                    let t = TOKENS[rng.usize(..TOKENS.len())];
                    line.splice(at..at, t.iter().copied());
                }
            }
        }
        assert!(agrees(&line), "{}", String::from_utf8_lossy(&line));
        accepted += usize::from(scan(&line).is_some());
    }
    assert!(accepted > 50, "the scan accepted {accepted} mutated lines");
}

#[test]
fn the_scan_refuses_what_serde_refuses_and_leaves_the_unusual_to_it() {
    let ok = br#"{"audit_id":"a","caller":null,"hash":"h","kind":"intent","prev_hash":"p","seq":12,"time":"t"}"#;
    let light = scan(ok).unwrap();
    assert_eq!(
        (light.seq, &light.caller, light.kind),
        (12, &None, Some(Kind::Intent))
    );
    assert_eq!(Some(light), serde_view(ok));
    let cases: &[&[u8]] = &[
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":1,"seq":2,"time":"t"}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":01,"time":"t"}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":1.0,"time":"t"}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":-1,"time":"t"}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":18446744073709551616,"time":"t"}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","time":"t"}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":1,"time":"t"} "#,
        br#"{"audit_id":"a", "hash":"h","prev_hash":"p","seq":1,"time":"t"}"#,
        br#"{"audit_id":"a\"b","hash":"h","prev_hash":"p","seq":1,"time":"t"}"#,
        br#"{"audit_\u0069d":"a","hash":"h","prev_hash":"p","seq":1,"time":"t"}"#,
        br#"{"audit_id":"a","hash":"h","kind":"bogus","prev_hash":"p","seq":1,"time":"t"}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":1,"time":"t","x":01}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":1,"time":"t","x":"\q"}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":1,"time":"t","x":[1,]}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":1,"time":"t","x":{"a"}}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":1,"time":"t","x":tru}"#,
        br#"{"audit_id":"a","hash":"h","prev_hash":"p","seq":1,"time":"t"}{}"#,
        br#"[1,"p","h",null,"t","a"]"#,
    ];
    for case in cases {
        assert!(scan(case).is_none(), "{}", String::from_utf8_lossy(case));
    }
    let deep = format!(
        r#"{{"audit_id":"a","hash":"h","prev_hash":"p","seq":1,"time":"t","x":{}1{}}}"#,
        "[".repeat(MAX_DEPTH + 1),
        "]".repeat(MAX_DEPTH + 1)
    );
    assert!(scan(deep.as_bytes()).is_none());
}

#[test]
fn the_gateways_time_form_is_read_as_chrono_reads_it() {
    let mut rng = fastrand::Rng::with_seed(7);
    let chrono_secs = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.timestamp())
    };
    let mut read = 0;
    for _ in 0..20_000 {
        let t = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}Z",
            rng.i64(1..10_000),
            rng.u8(0..14),
            rng.u8(0..33),
            rng.u8(0..25),
            rng.u8(0..61),
            rng.u8(0..61),
            [".000000", "", ".5", ".1234567891", "."][rng.usize(..5)]
        );
        if let Some(secs) = utc_seconds(&t) {
            assert_eq!(Some(secs), chrono_secs(&t), "{t}");
            read += 1;
        }
    }
    assert!(read > 5000);
    for t in [
        "2026-11-28T10:00:00.000000Z",
        "1970-01-01T00:00:00Z",
        "2000-02-29T23:59:59.999999999Z",
    ] {
        assert_eq!(utc_seconds(t), chrono_secs(t), "{t}");
        assert!(utc_seconds(t).is_some());
    }
    for other in [
        "2026-11-28T10:00:00+01:00",
        "2026-11-28t10:00:00Z",
        "2026-11-28 10:00:00Z",
        "2026-02-29T10:00:00Z",
        "2026-11-28T10:00:60Z",
        "2026-11-28T10:00:00,5Z",
    ] {
        assert_eq!(utc_seconds(other), None, "{other}");
    }
}
