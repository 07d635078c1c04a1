//! Intune's Multi Admin Approval (MAA), as the emulated tenant plays it when configured
//! (`--maa wipe,retire,delete`, `--maa-status 400|403|412`), from Microsoft's documentation
//! and field reports (not the gateway's code):
//! - a held write must carry `x-msft-approval-justification` (base64 text, at most 1,024
//!   characters decoded): without it, 400 saying the header is required;
//! - a held write is answered with the chosen status and an `x-msft-approval-code` header,
//!   and an `operationApprovalRequest` in `needsApproval` is kept; a repeat while it is
//!   pending gets 409 "active Approval Request already exists" (with the code);
//! - `GET /beta/deviceManagement/operationApprovalRequests/{code}` reads it (needs
//!   `DeviceManagementRBAC.Read.All` or `DeviceManagementConfiguration.Read.All`);
//! - a person approves, rejects or lets it expire in the portal: here the control endpoint
//!   `POST /_emulator/maa/{code}/{approve|reject|expire}` (`GET /_emulator/maa` lists the
//!   requests and the violations seen);
//! - the approved request is sent again with `x-msft-approval-code` and the identical body,
//!   once: it then runs and the request is `completed`. A re-send with another body, before
//!   approval, or a second one is refused and recorded as a violation, which tests assert is
//!   absent.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use super::csdl::{Csdl, Kind};
use super::graph_reply::{GraphError, Success};
use super::microsoft::ApiVersion;
use super::wire::{Body, Request, json as json_reply};

/// The header carrying the approval code (Graph's answer, and the approved re-send).
pub const CODE_HEADER: &str = super::graph_reply::APPROVAL_CODE_HEADER;
/// The header carrying the requester's justification (base64).
pub const JUSTIFICATION_HEADER: &str = "x-msft-approval-justification";
/// Longest justification, in characters once decoded.
pub const MAX_JUSTIFICATION_CHARS: usize = 1024;
/// How long a request waits for a person (not configurable in Intune).
pub const EXPIRY_DAYS: i64 = 3;
/// The roles that may read `operationApprovalRequests`.
pub const READ_ROLES: [&str; 2] = [
    "DeviceManagementRBAC.Read.All",
    "DeviceManagementConfiguration.Read.All",
];
/// Most requests kept (oldest decided ones dropped first).
const MAX_REQUESTS: usize = 10_000;

/// Which writes MAA holds, and how a hold is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaaConfig {
    /// Operation names held: `wipe`, `retire`, `delete` (the DELETE of a device), or any
    /// other action's name.
    pub operations: Vec<String>,
    /// The status a hold is answered with: 400, 403 (`ApprovalRequired`) or 412.
    pub status: u16,
}

impl MaaConfig {
    /// The statuses a hold has been seen with.
    pub const STATUSES: [u16; 3] = [400, 403, 412];

    /// Whether it holds operation `name`.
    pub fn holds(&self, name: &str) -> bool {
        self.operations.iter().any(|o| o.eq_ignore_ascii_case(name))
    }

    /// The operation names a hold can name: `delete` and every action of the CSDL excerpts
    /// (v1.0 and beta), sorted.
    pub fn holdable() -> Vec<String> {
        let mut names = vec!["delete".to_owned()];
        for version in [ApiVersion::V1, ApiVersion::Beta] {
            if let Ok(csdl) = Csdl::of(version) {
                names.extend(
                    csdl.operations
                        .iter()
                        .filter(|(_, op)| op.kind == Kind::Action)
                        .map(|(name, _)| name.clone()),
                );
            }
        }
        names.sort_unstable_by_key(|n| n.to_ascii_lowercase());
        names.dedup();
        names
    }

    /// `name` (as `--maa` gives it) if a hold can name it, else why not, with the names that
    /// can be held: a name nothing is called never holds anything.
    pub fn operation(name: &str) -> Result<String, String> {
        let names = Self::holdable();
        match names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            true => Ok(name.to_owned()),
            false => Err(format!(
                "'{name}' is no action of Graph's device CSDL nor delete; the operations a hold can name: {}",
                names.join(", ")
            )),
        }
    }
}

/// One `operationApprovalRequest` and what the emulator knows about its request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    /// The approval code.
    pub id: String,
    /// `needsApproval`, `approved`, `rejected`, `cancelled`, `completed`, `expired`.
    pub status: String,
    /// The held request's method.
    pub method: String,
    /// The held request's path.
    pub path: String,
    /// Its body, as received.
    pub body: String,
    /// The justification, decoded.
    pub request_justification: String,
    /// The approver's justification, once decided.
    pub approval_justification: Option<String>,
    /// When it was requested.
    #[serde(serialize_with = "rfc3339")]
    pub request_date_time: DateTime<Utc>,
    /// When it expires.
    #[serde(serialize_with = "rfc3339")]
    pub expiration_date_time: DateTime<Utc>,
    /// Times the approved request was sent again (1 at most, or a violation is recorded).
    pub resends: u32,
    /// Times a repeat got 409.
    pub repeats: u32,
}

impl ApprovalRequest {
    /// Graph's `operationApprovalRequest` document.
    fn document(&self) -> Value {
        json!({
            "@odata.context": "https://graph.microsoft.com/beta/$metadata#deviceManagement/operationApprovalRequests/$entity",
            "id": self.id,
            "requestDateTime": self.request_date_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "expirationDateTime": self.expiration_date_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastModifiedDateTime": self.request_date_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "requestor": {"application": {"displayName": "graphgate"}},
            "approver": if self.status == "needsApproval" { Value::Null } else { json!({"user": {"displayName": "Intune Admin"}}) },
            "status": self.status,
            "requestJustification": self.request_justification,
            "approvalJustification": self.approval_justification,
            "requiredOperationApprovalPolicyTypes": "deviceAction",
        })
    }
}

/// The tenant's MAA book: its requests and the violations seen.
#[derive(Default)]
pub(crate) struct Book {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<String, ApprovalRequest>,
    violations: Vec<String>,
    /// A hostile Graph (tests): holds carry this code header instead of theirs...
    code_override: Option<String>,
    /// ...and requests are read as this document.
    document_override: Option<Value>,
}

impl Book {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every request, oldest first.
    pub(crate) fn requests(&self) -> Vec<ApprovalRequest> {
        let mut all: Vec<_> = self.lock().requests.values().cloned().collect();
        all.sort_by_key(|r| r.request_date_time);
        all
    }

    /// The violations seen (a second re-send, a changed body, a re-send before approval).
    pub(crate) fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Test hook: holds answer with `code` as their `x-msft-approval-code` (garbage, say);
    /// `None` restores their own.
    pub(crate) fn set_code_override(&self, code: Option<String>) {
        self.lock().code_override = code;
    }

    /// Test hook: every read of a request answers `doc` (huge, malformed, another id);
    /// `None` restores the requests' own.
    pub(crate) fn set_document_override(&self, doc: Option<Value>) {
        self.lock().document_override = doc;
    }

    /// A person's decision in the portal: `approve`, `reject` or `expire`.
    pub(crate) fn decide(&self, code: &str, decision: &str) -> Result<ApprovalRequest, String> {
        let mut inner = self.lock();
        let r = inner
            .requests
            .get_mut(&code.to_ascii_lowercase())
            .ok_or_else(|| format!("no approval request '{code}'"))?;
        expire_if_due(r, now());
        if r.status != "needsApproval" {
            return Err(format!("approval request '{code}' is {}", r.status));
        }
        r.status = match decision {
            "approve" => "approved",
            "reject" => "rejected",
            "expire" => "expired",
            "cancel" => "cancelled",
            other => return Err(format!("'{other}': approve, reject, expire or cancel")),
        }
        .to_owned();
        r.approval_justification = Some(format!("{decision}d in the emulated Intune portal"));
        Ok(r.clone())
    }

    /// The gate before a held operation runs: `Ok` lets it run (an approved re-send, once).
    pub(crate) fn gate(
        &self,
        config: &MaaConfig,
        req: &Request,
        name: &str,
    ) -> Result<(), GraphError> {
        let justification = justification(req)?;
        let mut inner = self.lock();
        let path = req.uri.path().to_owned();
        if let Some(code) = req.header(CODE_HEADER) {
            return inner.resend(req, code.trim());
        }
        let at = now();
        for r in inner.requests.values_mut() {
            expire_if_due(r, at);
        }
        let pending = inner.requests.values_mut().find(|r| {
            r.status == "needsApproval" && r.method == req.method.as_str() && r.path == path
        });
        if let Some(r) = pending {
            r.repeats += 1;
            let mut e = GraphError::new(
                StatusCode::CONFLICT,
                "Conflict",
                "An active Approval Request already exists for this operation.",
            );
            e.approval_code = Some(r.id.clone());
            return Err(e);
        }
        if inner.requests.len() >= MAX_REQUESTS
            && let Some(old) = inner
                .requests
                .values()
                .filter(|r| r.status != "needsApproval" && r.status != "approved")
                .min_by_key(|r| r.request_date_time)
                .map(|r| r.id.clone())
        {
            inner.requests.remove(&old);
        }
        let code = uuid::Uuid::new_v4().to_string();
        inner.requests.insert(
            code.clone(),
            ApprovalRequest {
                id: code.clone(),
                status: "needsApproval".into(),
                method: req.method.to_string(),
                path,
                body: String::from_utf8_lossy(&req.body).into_owned(),
                request_justification: justification,
                approval_justification: None,
                request_date_time: at,
                expiration_date_time: at + Duration::days(EXPIRY_DAYS),
                resends: 0,
                repeats: 0,
            },
        );
        let (status, code_name, message) = match config.status {
            400 => (
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "This operation requires approval by another administrator (Multi Admin Approval).",
            ),
            412 => (
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "The operation is pending approval (Multi Admin Approval).",
            ),
            _ => (
                StatusCode::FORBIDDEN,
                "ApprovalRequired",
                "This operation requires approval by another administrator.",
            ),
        };
        let mut e = GraphError::new(status, code_name, format!("{message} ({name})"));
        e.approval_code = Some(inner.code_override.clone().unwrap_or(code));
        Err(e)
    }
}

impl Inner {
    /// An approved request sent again with its code: once, identical.
    fn resend(&mut self, req: &Request, code: &str) -> Result<(), GraphError> {
        let refuse =
            |status, code_name, message: String| Err(GraphError::new(status, code_name, message));
        let Some(r) = self.requests.get_mut(&code.to_ascii_lowercase()) else {
            let shown: String = code.chars().filter(|c| !c.is_control()).take(64).collect();
            self.violations.push(format!(
                "a re-send names an unknown approval code '{shown}'"
            ));
            return refuse(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "The approval code is not valid.".into(),
            );
        };
        let problem = if r.resends > 0 {
            Some(format!("approval {} re-sent a second time", r.id))
        } else if r.status != "approved" {
            Some(format!("approval {} re-sent while {}", r.id, r.status))
        } else if r.method != req.method.as_str() || r.path != req.uri.path() {
            Some(format!(
                "approval {} re-sent as {} {}",
                r.id,
                req.method,
                req.uri.path()
            ))
        } else if r.body.as_bytes() != req.body.as_ref() {
            Some(format!("approval {} re-sent with another body", r.id))
        } else {
            None
        };
        r.resends += 1;
        if let Some(problem) = problem {
            let status = r.status.clone();
            self.violations.push(problem.clone());
            return refuse(
                StatusCode::CONFLICT,
                "Conflict",
                format!("The approval request is {status}: {problem}."),
            );
        }
        r.status = "completed".into();
        Ok(())
    }
}

/// The justification header, decoded: required, base64 of at most 1,024 characters.
fn justification(req: &Request) -> Result<String, GraphError> {
    let required = || {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "The header '{JUSTIFICATION_HEADER}' is required for this operation (Multi Admin Approval)."
            ),
        )
    };
    let value = req.header(JUSTIFICATION_HEADER).ok_or_else(required)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("The header '{JUSTIFICATION_HEADER}' must be base64-encoded text."),
            )
        })?;
    if decoded.trim().is_empty() || decoded.chars().count() > MAX_JUSTIFICATION_CHARS {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("The justification must be 1 to {MAX_JUSTIFICATION_CHARS} characters."),
        ));
    }
    Ok(decoded)
}

fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn now() -> DateTime<Utc> {
    crate::clock::utc_now()
}

fn expire_if_due(r: &mut ApprovalRequest, at: DateTime<Utc>) {
    if r.status == "needsApproval" && at >= r.expiration_date_time {
        r.status = "expired".into();
    }
}

/// The approval code addressed by `path`, if it is
/// `/beta/deviceManagement/operationApprovalRequests/{id}`.
pub(crate) fn request_path(path: &str) -> Option<&str> {
    let mut segs = path.trim_start_matches('/').split('/');
    let ok = segs.next().is_some_and(|s| s.eq_ignore_ascii_case("beta"))
        && segs
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("deviceManagement"))
        && segs
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("operationApprovalRequests"));
    let id = segs.next()?;
    (ok && segs.next().is_none()).then_some(id)
}

impl Book {
    /// `GET .../operationApprovalRequests/{id}`.
    pub(crate) fn read(&self, req: &Request, id: &str) -> Result<Success, GraphError> {
        if req.method != Method::GET {
            let mut e = GraphError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "BadRequest",
                "The emulator serves operationApprovalRequests for GET only.",
            );
            e.allow = Some("GET");
            return Err(e);
        }
        let mut inner = self.lock();
        if let Some(doc) = &inner.document_override {
            return Ok(Success::Json(StatusCode::OK, doc.clone()));
        }
        let found = inner.requests.get_mut(&id.to_ascii_lowercase());
        match found {
            Some(r) => {
                expire_if_due(r, now());
                Ok(Success::Json(StatusCode::OK, r.document()))
            }
            None => Err(GraphError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!("Resource not found for the segment '{}'.", clip(id)),
            )),
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// `/_emulator/maa` (GET: requests and violations) and `/_emulator/maa/{code}/{decision}`
/// (POST), for `rest` after `/_emulator/`.
pub(crate) fn control(book: &Book, req: &Request, rest: &str) -> Option<http::Response<Body>> {
    let segs: Vec<&str> = rest.split('/').collect();
    match (segs.as_slice(), &req.method) {
        (["maa"], &Method::GET) => Some(json_reply(
            StatusCode::OK,
            &json!({"requests": book.requests(), "violations": book.violations()}),
        )),
        (["maa", code, decision], &Method::POST) => Some(match book.decide(code, decision) {
            Ok(r) => json_reply(StatusCode::OK, &r.document()),
            Err(e) if e.starts_with("no approval request") => {
                json_reply(StatusCode::NOT_FOUND, &json!({"errors": [e]}))
            }
            Err(e) => json_reply(StatusCode::CONFLICT, &json!({"errors": [e]})),
        }),
        (["maa", ..], _) => Some(json_reply(
            StatusCode::NOT_FOUND,
            &json!({"errors": ["GET /_emulator/maa, or POST /_emulator/maa/{code}/approve|reject|expire|cancel"]}),
        )),
        _ => None,
    }
}
