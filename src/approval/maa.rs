//! Intune's Multi Admin Approval (MAA), handled for callers. Since 2026 Intune holds app-only
//! writes in tenants with access policies: Graph answers a 4xx (400, 403 `ApprovalRequired`
//! or 412 have been seen; 409 to a repeat while one is pending) carrying an
//! `x-msft-approval-code` header, and the write did not run. graphgate recognises the hold by
//! that header, never by the status, and makes it an approval in state
//! `external_approval_pending` (a new one, or the four-eyes approval that ran it); it then
//! reads Intune's `operationApprovalRequest` with backoff, and when a person approves it in
//! Intune sends the byte-identical request once more with the code: that send is the
//! execution, claimed by one replica through the store as any approved run is. Rejected,
//! cancelled and expired end it; nothing is sent. This module owns the handshake's facts
//! (headers, the request document, the justification) and the approval's steps for it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// The header of a held write's answer naming Intune's approval request (and of the
/// approved re-send).
pub const CODE_HEADER: HeaderName = HeaderName::from_static("x-msft-approval-code");
/// The header carrying the requester's justification, base64.
pub const JUSTIFICATION_HEADER: HeaderName =
    HeaderName::from_static("x-msft-approval-justification");
/// Longest justification Intune takes, in characters once decoded.
pub const MAX_JUSTIFICATION_CHARS: usize = 1024;
/// The permissions that read Intune's approval requests (either one).
pub const READ_PERMISSIONS: [&str; 2] = [
    "DeviceManagementRBAC.Read.All",
    "DeviceManagementConfiguration.Read.All",
];
/// The writes MAA can hold among device actions, justified by default.
pub const DEFAULT_JUSTIFIED: [&str; 3] = [
    "managedDevices.wipe",
    "managedDevices.retire",
    "managedDevices.delete",
];
/// Intune's requests expire after 3 days (not configurable): graphgate waits no longer.
pub const INTUNE_EXPIRY: Duration = Duration::from_secs(72 * 3_600);
/// Largest approval-request document read (a real one is under 2 KiB).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Longest one read of an approval request may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How MAA is handled (`--maa-handling`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The operations (catalog names) whose writes carry a justification.
    pub justify: Vec<String>,
    /// First wait before reading a held request, doubled after each read...
    pub first_poll: Duration,
    /// ...up to this.
    pub max_poll: Duration,
    /// Most approval requests one replica reads per sweep (once a second): with the
    /// backoff, far inside Intune's 2,000 requests per 20 s for the tenant.
    pub polls_per_sweep: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            justify: DEFAULT_JUSTIFIED.iter().map(|s| (*s).to_owned()).collect(),
            first_poll: Duration::from_secs(30),
            max_poll: Duration::from_secs(15 * 60),
            polls_per_sweep: 10,
        }
    }
}

impl Settings {
    /// Whether a write of operation `op` carries a justification.
    pub fn justifies(&self, op: &str) -> bool {
        self.justify.iter().any(|o| o == op)
    }
}

/// Intune's hold, as the approval resource shows it (`maa`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maa {
    /// The approval code (the `operationApprovalRequest`'s id).
    pub code: String,
    /// Intune's status as last read: `needsApproval`, `approved`, `rejected`, `cancelled`,
    /// `completed`, `expired`.
    pub status: String,
    /// When Intune's request expires (RFC 3339), once read (else 3 days after the hold).
    pub expires: String,
    /// The status Graph answered the held write with.
    pub held_status: u16,
    /// Graph answered 409: the request joined the hold already pending in Intune.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attached: bool,
    /// Reads of Intune's request so far.
    pub polls: u32,
    /// Why the last read failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The approved request was sent again (once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resent: bool,
}

/// When the hold is read next (what the replicas share through the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polling {
    /// Unix ms: the next read is due.
    pub next_ms: u64,
    /// The wait after that one.
    pub backoff_ms: u64,
    /// Who took the current read (one replica per due time).
    pub token: Option<String>,
}

/// A hold Graph answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The approval code.
    pub code: String,
    /// Graph's status.
    pub status: u16,
}

/// What a Graph answer's `x-msft-approval-code` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// No header: not a hold.
    Absent,
    /// A well-formed code (a GUID, lower-cased).
    Valid(String),
    /// Something else (shown clipped, for the audit): not taken for a hold.
    Garbage(String),
}

/// The approval code of Graph's answer `headers`: one value, a GUID, or garbage.
pub fn code_of(headers: &HeaderMap) -> Code {
    let mut values = headers.get_all(&CODE_HEADER).iter();
    let Some(value) = values.next() else {
        return Code::Absent;
    };
    let shown = || {
        String::from_utf8_lossy(value.as_bytes())
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect::<String>()
    };
    if values.next().is_some() {
        return Code::Garbage(format!("{} (sent more than once)", shown()));
    }
    match value.to_str() {
        Ok(v) if crate::operation::route::is_guid(v.trim()) => {
            Code::Valid(v.trim().to_ascii_lowercase())
        }
        _ => Code::Garbage(shown()),
    }
}

/// Intune's status of an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntuneStatus {
    /// Waiting for a person.
    NeedsApproval,
    /// A person approved it: send it again with the code.
    Approved,
    /// A person rejected it.
    Rejected,
    /// The requester withdrew it.
    Cancelled,
    /// Completed (says nothing about whether the action worked).
    Completed,
    /// Nobody decided within 3 days.
    Expired,
}

impl IntuneStatus {
    const ALL: [IntuneStatus; 6] = [
        IntuneStatus::NeedsApproval,
        IntuneStatus::Approved,
        IntuneStatus::Rejected,
        IntuneStatus::Cancelled,
        IntuneStatus::Completed,
        IntuneStatus::Expired,
    ];

    /// Intune's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            IntuneStatus::NeedsApproval => "needsApproval",
            IntuneStatus::Approved => "approved",
            IntuneStatus::Rejected => "rejected",
            IntuneStatus::Cancelled => "cancelled",
            IntuneStatus::Completed => "completed",
            IntuneStatus::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One read of Intune's approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// Its status.
    pub status: IntuneStatus,
    /// Unix ms: when it expires, if it says.
    pub expires_ms: Option<u64>,
}

/// Reads Intune's approval-request document for `code`: bounded, its `id` the code, its
/// `status` one Intune documents. Anything else is an error (the read is tried later).
pub fn read_document(code: &str, body: &[u8]) -> Result<Polled, String> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "an approval request larger than {MAX_DOCUMENT_BYTES} bytes"
        ));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc {
        id: String,
        status: String,
        #[serde(default)]
        expiration_date_time: Option<String>,
    }
    let doc: Doc =
        serde_json::from_slice(body).map_err(|e| format!("an unreadable approval request: {e}"))?;
    if !doc.id.eq_ignore_ascii_case(code) {
        return Err("an approval request with another id".into());
    }
    let status = IntuneStatus::parse(&doc.status).ok_or_else(|| {
        let shown: String = doc
            .status
            .chars()
            .filter(|c| !c.is_control())
            .take(32)
            .collect();
        format!("an approval request in unknown status '{shown}'")
    })?;
    let expires_ms = doc
        .expiration_date_time
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok());
    Ok(Polled { status, expires_ms })
}

/// What a justification names.
#[derive(Debug, Clone, Default)]
pub struct Justify<'a> {
    /// graphgate's request id (a direct call) ...
    pub request_id: &'a str,
    /// ... or the approval it runs under, and who approved it.
    pub approval: Option<(&'a str, Vec<&'a str>)>,
    /// The calling service.
    pub caller: &'a str,
    /// The person it is for.
    pub initiator: Option<&'a str>,
    /// Why.
    pub reason: Option<&'a str>,
}

/// The justification Intune's approver reads: graphgate's request or approval (with its
/// approvers), the caller, the initiator and the reason, in at most 1,024 characters.
pub fn justification_text(j: &Justify<'_>) -> String {
    let mut text = match &j.approval {
        Some((id, approvers)) if !approvers.is_empty() => format!(
            "graphgate approval {id}, approved by {}",
            approvers.join(", ")
        ),
        Some((id, _)) => format!("graphgate approval {id}"),
        None => format!("graphgate request {}", j.request_id),
    };
    text.push_str(&format!("; caller {}", j.caller));
    if let Some(who) = j.initiator {
        text.push_str(&format!("; initiator {who}"));
    }
    if let Some(why) = j.reason {
        text.push_str(&format!("; reason: {why}"));
    }
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_JUSTIFICATION_CHARS)
        .collect()
}

/// `text` as the `x-msft-approval-justification` header value (base64).
pub fn justification(text: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    // Base64 is always a valid header value.
    HeaderValue::try_from(encoded).unwrap_or(HeaderValue::from_static(""))
}

/// One read of Intune's request, by the gateway.
pub type Read<'a> = Pin<Box<dyn Future<Output = Result<Polled, String>> + Send + 'a>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_one_guid_or_garbage() {
        let mut h = HeaderMap::new();
        assert_eq!(code_of(&h), Code::Absent);
        h.insert(
            CODE_HEADER,
            HeaderValue::from_static("0B6F2F1E-1A2B-4C3D-8E9F-00112233AABB"),
        );
        assert_eq!(
            code_of(&h),
            Code::Valid("0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb".into())
        );
        h.insert(CODE_HEADER, HeaderValue::from_static("../../etc/passwd"));
        assert!(matches!(code_of(&h), Code::Garbage(_)));
        h.append(
            CODE_HEADER,
            HeaderValue::from_static("0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb"),
        );
        assert!(matches!(code_of(&h), Code::Garbage(_)));
    }

    #[test]
    fn a_document_must_be_the_code_s_with_a_known_status_and_bounded() {
        let code = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
        let doc = format!(
            r#"{{"id":"{code}","status":"approved","expirationDateTime":"2026-12-10T17:00:00Z"}}"#
        );
        let p = read_document(code, doc.as_bytes()).unwrap();
        assert_eq!(p.status, IntuneStatus::Approved);
        assert!(p.expires_ms.is_some());
        let other = doc.replace(code, "1b6f2f1e-1a2b-4c3d-8e9f-00112233aabb");
        assert!(read_document(code, other.as_bytes()).is_err());
        let odd = doc.replace("approved", "maybe");
        assert!(read_document(code, odd.as_bytes()).is_err());
        assert!(read_document(code, b"<html>").is_err());
        let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert!(read_document(code, &huge).is_err());
    }

    #[test]
    fn the_justification_names_the_approval_and_stays_within_1024_characters() {
        let j = Justify {
            request_id: "r-1",
            approval: Some(("a-1", vec!["alice", "carol"])),
            caller: "ops-bot",
            initiator: Some("adele@contoso.example"),
            reason: Some("INC-4711 stolen"),
        };
        let text = justification_text(&j);
        assert_eq!(
            text,
            "graphgate approval a-1, approved by alice, carol; caller ops-bot; initiator adele@contoso.example; reason: INC-4711 stolen"
        );
        let long = "x".repeat(5000);
        let j = Justify {
            reason: Some(&long),
            ..j
        };
        assert_eq!(
            justification_text(&j).chars().count(),
            MAX_JUSTIFICATION_CHARS
        );
        let v = justification("é ok");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(v.as_bytes())
            .unwrap();
        assert_eq!(decoded, "é ok".as_bytes());
    }
}
