//! A generated audit log as the gateway leaves it on disk: intents and outcomes of allowed
//! calls and some refusals, hash-chained, rotated at a given size. Shared by the console's
//! end-to-end test (a small log) and `benches/audit_trust.rs` (1,000,000 records), which
//! include this file with `#[path]`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use graphgate::audit::records::chain::ChainState;
use graphgate::audit::{AuditDecision, Entry, Kind};

/// A device seen once, in the log's second record (a filter on it scans every row).
pub const RARE_DEVICE: &str = "99999999-0000-4000-8000-000000000001";

/// The device of call `call`: 10,000 devices in turn.
pub fn device(call: u64) -> String {
    format!("{:08x}-1a2b-4c3d-8e9f-00112233aabb", call % 10_000)
}

/// Record `i`: every tenth a refusal (`other-service`, 403), the others an allowed call's
/// intent (even `i`) or outcome (odd `i`), call number `i / 2`.
fn entry(i: u64, params: &Arc<serde_json::Value>) -> Entry {
    let allowed = i % 10 != 9;
    let kind = match (allowed, i % 2) {
        (false, _) => Kind::Request,
        (true, 0) => Kind::Intent,
        (true, _) => Kind::Outcome,
    };
    let call = i / 2;
    let (caller, decision) = match allowed {
        true => ("rooms-rotator", AuditDecision::Allowed),
        false => ("other-service", AuditDecision::Denied),
    };
    Entry {
        kind: Some(kind),
        time: format!(
            "2026-11-{:02}T{:02}:{:02}:{:02}.000000Z",
            1 + call / 86_400 % 28,
            call / 3600 % 24,
            call / 60 % 60,
            call % 60
        ),
        audit_id: format!("{call:08x}-0000-4000-8000-000000000000"),
        caller: Some(caller.into()),
        operation: Some("managedDevices.updateWindowsDeviceAccount".into()),
        device_id: Some(match i {
            1 => RARE_DEVICE.to_owned(),
            _ => device(call),
        }),
        decision: Some(decision),
        status: (kind != Kind::Intent).then_some(if allowed { 204 } else { 403 }),
        upstream_status: (kind == Kind::Outcome).then_some(204),
        params: Some(Arc::clone(params)),
        policy_version: Some("c0ffee".repeat(10)),
        ..Entry::default()
    }
}

/// Writes `records` records to the log at `log`, rotated (as the gateway names rotated
/// files) whenever a file reaches `file_bytes`.
pub fn generate(log: &Path, records: u64, file_bytes: usize) {
    let mut state = ChainState::default();
    let mut file_no = 0;
    let mut out = Vec::with_capacity(file_bytes + 4096);
    let params = Arc::new(serde_json::json!({
        "deviceAccountEmail": "room1@rooms.contoso.com",
        "deviceAccount.password": {"redacted": true, "hmac_sha256": "ab".repeat(32)},
        "exchangeServer": "outlook.office365.com", "calendarSyncEnabled": true,
    }));
    for i in 0..records {
        state.seal_into(&entry(i, &params), &mut out).unwrap();
        out.push(b'\n');
        if out.len() >= file_bytes {
            file_no += 1;
            std::fs::write(
                graphgate::audit::store::files::rotated_name(log, file_no),
                &out,
            )
            .unwrap();
            out.clear();
        }
    }
    std::fs::File::create(log).unwrap().write_all(&out).unwrap();
}
