//! One audit record: what the gateway writes per request (or per request phase), as it
//! appears on one JSON line. Holds no secret type: parameters arrive already redacted.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use serde_json::Value;

/// Which phase of a request a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The gateway started writing to this log.
    Start,
    /// Durable before an allowed privileged call is sent to Graph.
    Intent,
    /// What came of a call that had an intent record.
    Outcome,
    /// A request that was answered without calling Graph (denied, invalid, failed early).
    Request,
    /// Refusals left out under the audit's sampling limit, counted (`suppressed`) once the
    /// caller or source has gone quiet, or when the log is closed.
    Suppressed,
    /// What became of a device action Graph accepted (its `deviceActionResults` state), or
    /// that it was still pending at the reconciliation deadline; same `audit_id` as its intent.
    Completion,
    /// An approval changed state (`approval_event`, `approval_state`), whatever moved it: a
    /// request, a review, a deadline, a run.
    Approval,
}

impl Kind {
    /// The label used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Intent => "intent",
            Kind::Outcome => "outcome",
            Kind::Request => "request",
            Kind::Suppressed => "suppressed",
            Kind::Completion => "completion",
            Kind::Approval => "approval",
        }
    }
}

/// What was decided about a request, as the audit reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    /// Allowed by policy and sent to Graph (whatever Graph answered).
    Allowed,
    /// Refused by policy.
    Denied,
    /// A policy in shadow mode would have refused it; it was allowed.
    ShadowDenied,
    /// Allowed, but not sent: dry-run.
    DryRun,
    /// Refused by a rate limit.
    RateLimited,
    /// Refused before policy: malformed body, query string, media type.
    Invalid,
    /// Allowed, but the gateway could not complete it (token, audit or upstream failure).
    Failed,
    /// Allowed and sent, but no complete answer came back (502/504, timeout, connection lost
    /// after sending): the action may or may not have run; check the device.
    OutcomeUnknown,
    /// No valid caller identity (401); sampled per source address.
    Unauthenticated,
    /// Allowed by a rule that needs others' approval: held (202), nothing sent.
    Held,
}

impl AuditDecision {
    /// The label used in records, metrics and query filters.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allowed => "allowed",
            AuditDecision::Denied => "denied",
            AuditDecision::ShadowDenied => "shadow_denied",
            AuditDecision::DryRun => "dry_run",
            AuditDecision::RateLimited => "rate_limited",
            AuditDecision::Invalid => "invalid",
            AuditDecision::Failed => "failed",
            AuditDecision::OutcomeUnknown => "outcome_unknown",
            AuditDecision::Unauthenticated => "unauthenticated",
            AuditDecision::Held => "held",
        }
    }

    /// Every decision, in the order docs/audit.md lists them.
    pub const ALL: [AuditDecision; 10] = [
        AuditDecision::Allowed,
        AuditDecision::Denied,
        AuditDecision::ShadowDenied,
        AuditDecision::DryRun,
        AuditDecision::RateLimited,
        AuditDecision::Invalid,
        AuditDecision::Failed,
        AuditDecision::OutcomeUnknown,
        AuditDecision::Unauthenticated,
        AuditDecision::Held,
    ];

    /// A refusal the audit samples rather than records every time (see `sampler`).
    pub fn is_sampled_refusal(self) -> bool {
        matches!(
            self,
            AuditDecision::Denied
                | AuditDecision::Invalid
                | AuditDecision::RateLimited
                | AuditDecision::Unauthenticated
        )
    }
}

/// The content of a record, before the writer gives it a place in the chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Which phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// RFC 3339 UTC, microseconds.
    pub time: String,
    /// The gateway's request id (also `x-graphgate-request-id`); shared by intent and outcome.
    pub audit_id: String,
    /// The caller's name from the policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// How the caller authenticated (`api_key`, `mtls`, `jwt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    /// A JWT caller's token issuer (as the policy names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_issuer: Option<String>,
    /// A JWT caller's token subject (`sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_subject: Option<String>,
    /// A JWT caller's token fingerprint: hex SHA-256 of the token, never the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_token_sha256: Option<String>,
    /// The person the request was made for (a UPN or an object id), as stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    /// The person's object id, when it is known: stated as the initiator, or the user of a
    /// delegated token (whose `initiator` is then its UPN, when the token has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator_oid: Option<String>,
    /// Where the initiator came from: `header`, `body` or `token` (a delegated token's user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator_source: Option<String>,
    /// Why, as the caller stated it (at most 1,024 characters, no control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The caller's network address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Catalog operation name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// `v1.0` or `beta`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// National cloud.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// Entra tenant the gateway acts in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Target managed device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Target user, where the path has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Detected app, where the path has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected_app_id: Option<String>,
    /// Parameters; secrets as `{"redacted": true, "hmac_sha256": ...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Arc<Value>>,
    /// SHA-256 of the loaded policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// The rule that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// A shadow rule that would have decided otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_rule: Option<String>,
    /// The decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<AuditDecision>,
    /// The gateway's error code when it refused or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Status the gateway answered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Refusal records of the same caller (or source) left out under the sampling limit
    /// since the last record written for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
    /// Status Graph answered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// The caller's (or generated) client-request-id, as sent to Graph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// Graph's `request-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_request_id: Option<String>,
    /// Whole-request latency, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// Time spent waiting for Graph, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_latency_us: Option<u64>,
    /// App id (`appid`) of the Entra token used; never the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_app_id: Option<String>,
    /// Free text for `start` records (version, reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The operation's risk tier (`destructive`, `disclosure`, `disruptive`, `routine`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// A secret-returning read answered: the size in bytes of Graph's answer that went to
    /// the caller (never its value or a fingerprint of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disclosed_bytes: Option<u64>,
    /// A bulk action's devices, as the request listed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ids: Option<Vec<String>>,
    /// A bulk action's outcome per device, from Graph's answer: `{id: "successful" |
    /// "failed" | "notFound" | "notSupported"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_outcomes: Option<std::collections::BTreeMap<String, String>>,
    /// `completion` records: the action's final state (`done`, `failed`, `not_supported`,
    /// `canceled`, or `pending_past_deadline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion: Option<String>,
    /// The approval a record is about (a held request, a review, a run, a transition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// That approval's `request_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sha256: Option<String>,
    /// `approval` records: the approval's state after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_state: Option<String>,
    /// `approval` records and approval API requests: what happened (`requested`,
    /// `review_counted`, `approved`, `rejected`, `canceled`, `expired`, `started`,
    /// `settled`, `lease_lost`, `reviewed`, `break_glass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_event: Option<String>,
    /// Who moved the approval: the reviewing (or canceling) caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
    /// The request ran at once under break glass, unreviewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<bool>,
    /// The budgets the request was counted on (from its intent on): with the state in
    /// memory, the day's counts are rebuilt from these at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets: Option<Vec<BudgetMark>>,
    /// The request was not sent after all: its counts on `budgets` were given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets_refunded: Option<bool>,
}

/// One budget a request was counted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetMark {
    /// The budget: `caller:<name>`, `rule:<name>` or `tenant:<operation>`.
    pub budget: String,
    /// The devices counted.
    pub devices: u32,
    /// `hour` or `day`.
    pub window: String,
    /// When the window counted in ends (Unix seconds).
    pub window_end: u64,
}

/// A record as stored: the entry plus its place in the hash chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the chain, from 1, continuing across rotated files.
    pub seq: u64,
    /// `hash` of the record before (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 (hex) of the canonical record without this field.
    #[serde(default)]
    pub hash: String,
    /// The content.
    #[serde(flatten)]
    pub entry: Entry,
}

/// The current time as recorded.
pub fn now_rfc3339() -> String {
    crate::clock::utc_now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
