//! The start-up scan: accepted device actions in the log that have no final completion
//! record yet, so a restart loses none.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::Action;
use crate::audit::records::record::Kind;
use crate::audit::store::follow::Follower;

/// The light view of a record the start-up scan reads.
#[derive(Deserialize)]
struct Scanned {
    kind: Option<Kind>,
    audit_id: String,
    time: String,
    caller: Option<String>,
    operation: Option<String>,
    device_id: Option<String>,
    upstream_status: Option<u16>,
    completion: Option<String>,
    #[serde(default)]
    approval_id: Option<String>,
}

/// Accepted device actions of the log (up to `head`) within `horizon` that have no final
/// completion record yet, oldest first.
pub(super) fn unfinished(log: &Path, head: u64, horizon: chrono::Duration) -> Vec<Action> {
    let since = crate::clock::utc_now() - horizon;
    let mut open: Vec<Action> = Vec::new();
    let mut follower = Follower::new(log, 1);
    loop {
        let lines = match follower.read(head, 8192) {
            Ok(lines) if !lines.is_empty() => lines,
            _ => break,
        };
        for line in lines {
            let Ok(r) = serde_json::from_slice::<Scanned>(&line.bytes) else {
                continue;
            };
            note(&mut open, r, since);
        }
    }
    open
}

fn note(open: &mut Vec<Action>, r: Scanned, since: DateTime<Utc>) {
    match r.kind {
        Some(Kind::Outcome) => {
            let action = Action::from_parts(
                Kind::Outcome,
                r.upstream_status.unwrap_or(0),
                r.operation.as_deref().unwrap_or(""),
                r.device_id.as_deref().unwrap_or(""),
                &r.audit_id,
                &r.time,
            );
            if let Some(a) = action.filter(|a| a.accepted >= since) {
                open.push(Action {
                    caller: r.caller,
                    approval_id: r.approval_id,
                    ..a
                });
            }
        }
        Some(Kind::Completion) => {
            let Some(i) = open.iter().position(|a| a.audit_id == r.audit_id) else {
                return;
            };
            match r.completion.as_deref() {
                Some("pending_past_deadline") => open[i].overdue = true,
                _ => {
                    open.remove(i);
                }
            }
        }
        _ => {}
    }
}
