//! One request's audit trail: created when the request arrives, filled in as pipeline steps
//! pass, written as an intent (durable, before Graph is called) and finished once. What a
//! refusal may write is bounded: each parameter is capped at [`MAX_PARAM_BYTES`], and
//! refusals (and failed authentications) are sampled (see [`super::sampler`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::clock::Instant;

use serde_json::{Map, Value, json};

use super::record::{AuditDecision, Entry, Kind, now_rfc3339};
use super::sampler::{Sample, SampleKey, Sampled};
use super::{Audit, WriteError};
use crate::operation::route::Recognised;
use crate::operation::schema::{ParamValue, Params};

/// Longest string parameter recorded as it is; a longer one is recorded as its first bytes,
/// its length and its fingerprint.
pub const MAX_PARAM_BYTES: usize = 256;

/// The record of one request under construction.
pub struct AuditTrail {
    audit: Audit,
    entry: Entry,
    source_ip: Option<IpAddr>,
    started: Instant,
    recognised: bool,
    intent_written: bool,
}

/// Proof that a request's intent record is durable: only [`AuditTrail::intent`] makes one,
/// and sending to Graph takes one, so nothing is sent before its intent is on disk.
#[derive(Debug)]
pub struct DurableIntent {
    _proof: (),
}

/// Where a request came from and what it is called, known before any step runs.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    /// The gateway's request id.
    pub audit_id: &'a str,
    /// The client-request-id sent to Graph.
    pub client_request_id: &'a str,
    /// The caller's address.
    pub source: Option<SocketAddr>,
    /// The national cloud.
    pub cloud: String,
    /// The tenant the gateway acts in.
    pub tenant: &'a str,
}

impl AuditTrail {
    /// Starts the trail of one request.
    pub fn begin(audit: &Audit, origin: Origin<'_>) -> Self {
        let entry = Entry {
            audit_id: origin.audit_id.to_owned(),
            client_request_id: Some(origin.client_request_id.to_owned()),
            source: origin.source.map(|s| s.to_string()),
            cloud: Some(origin.cloud),
            tenant: Some(origin.tenant.to_owned()),
            ..Entry::default()
        };
        AuditTrail {
            audit: audit.clone(),
            entry,
            source_ip: origin.source.map(|s| s.ip()),
            started: Instant::now(),
            recognised: false,
            intent_written: false,
        }
    }

    /// The caller is known.
    pub fn caller(&mut self, name: &str, auth_method: &str, policy_version: &str) {
        self.entry.caller = Some(name.to_owned());
        self.entry.auth_method = Some(auth_method.to_owned());
        self.entry.policy_version = Some(policy_version.to_owned());
    }

    /// The caller's name, once known.
    pub fn caller_name(&self) -> Option<&str> {
        self.entry.caller.as_deref()
    }

    /// The caller's verified token: its issuer, subject and fingerprint (never the token).
    pub fn token(&mut self, token: &crate::identity::Verified) {
        self.entry.caller_issuer = Some(token.issuer.clone());
        self.entry.caller_subject.clone_from(&token.subject);
        self.entry.caller_token_sha256 = Some(token.fingerprint.clone());
    }

    /// The person and reason the request states (already checked).
    pub fn stated(&mut self, stated: &crate::identity::stated::Stated) {
        self.entry.initiator = stated.initiator().map(str::to_owned);
        self.entry.initiator_oid = stated.person().and_then(|who| who.oid.clone());
        self.entry.initiator_source = stated
            .initiator
            .as_ref()
            .map(|(_, source)| source.as_str().to_owned());
        self.entry.reason.clone_from(&stated.reason);
    }

    /// The operation is recognised: from here on, the request is audited.
    pub fn recognised(&mut self, op: &Recognised) {
        self.recognised = true;
        self.entry.operation = Some(op.op.name.to_owned());
        self.entry.api_version = Some(op.version.as_str().to_owned());
        self.entry.tier = Some(op.op.tier.as_str().to_owned());
        // Operations bound to a user or to the collection name no one device.
        self.entry.device_id = Some(op.device_id.clone()).filter(|d| !d.is_empty());
        self.entry.user_id.clone_from(&op.user_id);
        self.entry.detected_app_id.clone_from(&op.detected_app_id);
    }

    /// The validated parameters; secrets become keyed fingerprints.
    pub fn params(&mut self, params: &Params) {
        let mut map = Map::new();
        for (path, value) in &params.0 {
            map.insert(path.clone(), self.param_json(value));
        }
        self.entry.params = Some(std::sync::Arc::new(Value::Object(map)));
    }

    fn param_json(&self, value: &ParamValue) -> Value {
        match value {
            ParamValue::Null => Value::Null,
            ParamValue::Bool(b) => Value::Bool(*b),
            ParamValue::String(s) if s.len() > MAX_PARAM_BYTES => self.capped(s),
            ParamValue::String(s) => Value::String(s.clone()),
            ParamValue::Type(t) => Value::String(format!("#{t}")),
            ParamValue::Secret(secret) => match self.audit.fingerprinter() {
                Some(fp) => json!({"redacted": true, "hmac_sha256": fp.fingerprint(secret)}),
                None => json!({"redacted": true}),
            },
        }
    }

    /// A string too long to record whole: a truncation marker, its length, its first
    /// [`MAX_PARAM_BYTES`] bytes (at a character boundary) and the full value's fingerprint.
    fn capped(&self, s: &str) -> Value {
        let mut end = MAX_PARAM_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut capped = json!({"truncated": true, "bytes": s.len(), "prefix": &s[..end]});
        if let Some(fp) = self.audit.fingerprinter() {
            capped["hmac_sha256"] = Value::String(fp.fingerprint_bytes(s.as_bytes()));
        }
        capped
    }

    /// A secret went to the caller: how many bytes (never the value).
    pub fn disclosed(&mut self, bytes: usize) {
        self.entry.disclosed_bytes = Some(bytes as u64);
    }

    /// A bulk action's devices.
    pub fn device_ids(&mut self, ids: &[String]) {
        self.entry.device_ids = Some(ids.to_vec());
    }

    /// A bulk action's outcome per device.
    pub fn device_outcomes(&mut self, outcomes: std::collections::BTreeMap<String, String>) {
        self.entry.device_outcomes = Some(outcomes);
    }

    /// What policy decided, and which rule (if any) decided it.
    pub fn decided(&mut self, decision: AuditDecision, rule: Option<&str>) {
        self.entry.decision = Some(decision);
        self.entry.rule = rule.map(str::to_owned);
    }

    /// A shadow rule that would have decided otherwise.
    pub fn shadow_rule(&mut self, rule: &str) {
        self.entry.shadow_rule = Some(rule.to_owned());
    }

    /// The approval this request concerns: held by it, redeemed by it, reviewed, or run
    /// (`event` says which; `break_glass` flags a request run at once, unreviewed).
    pub fn approval(&mut self, id: &str, request_sha256: &str, event: &str, break_glass: bool) {
        self.entry.approval_id = Some(id.to_owned());
        self.entry.request_sha256 = Some(request_sha256.to_owned());
        self.entry.approval_event = Some(event.to_owned());
        self.entry.break_glass = break_glass.then_some(true);
    }

    /// An approval API request names the approval it acts on, and what it asks
    /// (`approve`, `reject`, `cancel`, `review`): audited from here on.
    pub fn approval_request(&mut self, id: &str, action: &str) {
        self.recognised = true;
        self.entry.approval_id = Some(id.to_owned());
        self.entry.approval_event = Some(action.to_owned());
    }

    /// What an approval API request acts on: the approval's operation and devices.
    pub fn approval_target(&mut self, operation: &str, devices: &[String]) {
        self.entry.operation = Some(operation.to_owned());
        match devices {
            [one] => self.entry.device_id = Some(one.clone()),
            many => self.entry.device_ids = Some(many.to_vec()),
        }
    }

    /// A remark on how the request was answered (e.g. an idempotent replay).
    pub fn note(&mut self, text: &str) {
        self.entry.note = Some(text.to_owned());
    }

    /// A budget the request is counted on (written with its intent: with the state in
    /// memory, the day's counts are rebuilt from intents at start).
    pub fn budget(&mut self, budget: &str, window: &str, window_end: u64, devices: u32) {
        let mark = super::record::BudgetMark {
            budget: budget.to_owned(),
            devices,
            window: window.to_owned(),
            window_end,
        };
        self.entry.budgets.get_or_insert_with(Vec::new).push(mark);
    }

    /// The request was not sent after all: what it was counted on was given back.
    pub fn budgets_refunded(&mut self) {
        if self.entry.budgets.is_some() {
            self.entry.budgets_refunded = Some(true);
        }
    }

    /// The Entra token about to be used: its app id only.
    pub fn token_app_id(&mut self, app_id: Option<&str>) {
        self.entry.token_app_id = app_id.map(str::to_owned);
    }

    /// Writes the intent record and waits until it is durable. Graph must not be called
    /// unless this succeeds: the forwarder asks for the [`DurableIntent`] it returns.
    pub async fn intent(&mut self) -> Result<DurableIntent, WriteError> {
        let mut entry = self.entry.clone();
        entry.kind = Some(Kind::Intent);
        entry.time = now_rfc3339();
        self.audit.write_durable(entry).await?;
        self.intent_written = true;
        Ok(DurableIntent { _proof: () })
    }

    /// Graph answered.
    pub fn upstream(&mut self, status: u16, graph_request_id: Option<&str>, took: Duration) {
        self.entry.upstream_status = Some(status);
        self.entry.graph_request_id = graph_request_id.map(str::to_owned);
        self.entry.upstream_latency_us = Some(micros(took));
    }

    /// The operation name, for metric labels (bounded: catalog names only).
    pub fn operation_label(&self) -> &str {
        self.entry.operation.as_deref().unwrap_or("none")
    }

    /// The decision, for metric labels and spans.
    pub fn decision_label(&self) -> &'static str {
        self.entry.decision.map_or("none", AuditDecision::as_str)
    }

    /// Records the answer, queued behind the intent (it shares the next group commit; the
    /// caller does not wait for the disk twice). Requests never recognised leave no record,
    /// except failed authentications, which are sampled per source. Refusals are sampled per
    /// caller. A crash between intent and outcome leaves an intent alone: "check the device".
    pub async fn finish(&mut self, status: u16, error_code: Option<&'static str>) {
        if !self.recognised {
            if error_code == Some(UNAUTHENTICATED) {
                self.unauthenticated(status).await;
            }
            return;
        }
        let entry = &mut self.entry;
        entry.status = Some(status);
        entry.error_code = error_code.map(str::to_owned);
        entry.latency_us = Some(micros(self.started.elapsed()));
        entry.time = now_rfc3339();
        entry.decision = Some(match entry.decision {
            None => AuditDecision::Invalid,
            Some(AuditDecision::Allowed | AuditDecision::ShadowDenied)
                if error_code == Some("upstreamOutcomeUnknown") =>
            {
                AuditDecision::OutcomeUnknown
            }
            Some(AuditDecision::Allowed) if error_code.is_some() => AuditDecision::Failed,
            Some(d) => d,
        });
        entry.kind = Some(if self.intent_written {
            Kind::Outcome
        } else {
            Kind::Request
        });
        // Refusals and dry runs (neither sends anything) are sampled per caller.
        let sampled = match entry.decision {
            _ if self.intent_written => None,
            Some(AuditDecision::DryRun) => Some(Sampled::DryRun),
            Some(d) if d.is_sampled_refusal() => Some(Sampled::Refusal),
            _ => None,
        };
        if let Some(what) = sampled {
            let key = match (&entry.caller, self.source_ip) {
                (Some(name), _) => SampleKey::Caller(name.as_str().into()),
                (None, Some(ip)) => SampleKey::source(ip),
                (None, None) => SampleKey::Others,
            };
            match self.audit.sample(key, what) {
                Sample::Write { suppressed } => {
                    entry.suppressed = (suppressed > 0).then_some(suppressed)
                }
                Sample::Suppress => return,
            }
        }
        let entry = entry.clone();
        if entry.kind == Some(Kind::Outcome) {
            // Graph accepted a device action? Follow it up to its final state.
            self.audit.reconcile(&entry);
        }
        self.write(entry).await;
    }

    /// A request refused for want of a valid identity: recorded (sampled per source) with
    /// what is known before identity, never what was presented.
    async fn unauthenticated(&mut self, status: u16) {
        let key = self.source_ip.map_or(SampleKey::Others, SampleKey::source);
        let suppressed = match self.audit.sample(key, Sampled::Unauthenticated) {
            Sample::Write { suppressed } => (suppressed > 0).then_some(suppressed),
            Sample::Suppress => return,
        };
        let entry = Entry {
            kind: Some(Kind::Request),
            time: now_rfc3339(),
            decision: Some(AuditDecision::Unauthenticated),
            error_code: Some(UNAUTHENTICATED.to_owned()),
            status: Some(status),
            latency_us: Some(micros(self.started.elapsed())),
            suppressed,
            ..self.entry.clone()
        };
        self.write(entry).await;
    }

    async fn write(&self, entry: Entry) {
        let audit_id = entry.audit_id.clone();
        if let Err(e) = self.audit.write(entry).await {
            crate::metrics::audit_records_lost(1);
            tracing::error!(error = %e, %audit_id, "audit record lost");
        }
    }
}

/// The error code of a request without a valid identity.
const UNAUTHENTICATED: &str = "InvalidAuthenticationToken";

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
