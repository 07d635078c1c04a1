//! Prometheus metrics, one process-wide registry, names `graphgate_<noun>_<unit>`. Labels
//! are bounded by construction: catalog operation names, decision and result labels,
//! status classes; never paths, ids or caller-supplied strings.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};

use crate::state::metrics::Register as _;

/// Labels of `graphgate_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    decision: &'static str,
    status_class: &'static str,
}

/// A label with one `result` (`ok` / `error`; reloads also `unchanged`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// A label with one `operation`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// How an accepted token's signature was vouched for (`signature`: checked now;
/// `cached`: checked before, with the keys its issuer still has).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

/// A label with one `reason` (why audit records were left out, why a connection closed).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

struct Metrics {
    registry: Registry,
    /// Every sample name the registry can show (see [`exported_names`]).
    names: Vec<String>,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<OperationLabel, Histogram>,
    upstream_duration: Histogram,
    token_duration: Histogram,
    token_fetches: Family<ResultLabel, Counter>,
    token_cache_hits: Counter,
    audit_write_duration: Histogram,
    audit_records: Counter,
    audit_failures: Counter,
    audit_lost: Counter,
    audit_suppressed: Family<ReasonLabel, Counter>,
    log_suppressed: Family<ReasonLabel, Counter>,
    policy_reloads: Family<ResultLabel, Counter>,
    errors: Family<CodeLabel, Counter>,
    permissions: Family<StateLabel, Gauge>,
    connections_closed: Family<ReasonLabel, Counter>,
    connections_parked: Gauge,
    memory_trims: Counter,
    jwt_refusals: Family<ReasonLabel, Counter>,
    jwt_key_fetches: Family<ResultLabel, Counter>,
    jwt_accepted: Family<CheckLabel, Counter>,
    context_refusals: Family<ReasonLabel, Counter>,
    audit_trust: AuditTrust,
    webhooks: Webhooks,
}

/// Approval notifications: deliveries by result, the queues' depth, drops.
#[derive(Default)]
struct Webhooks {
    deliveries: Family<ResultLabel, Counter>,
    queued: Gauge,
    dropped: Counter,
}

/// The audit's off-host trust: checkpoints, their push, shipping, outcome reconciliation.
#[derive(Default)]
struct AuditTrust {
    checkpoints: Family<ResultLabel, Counter>,
    checkpoint_pushes: Family<ResultLabel, Counter>,
    shipped: Counter,
    ship_failures: Counter,
    ship_lag: Gauge,
    reconcile_actions: Family<StateLabel, Gauge>,
    reconcile_completions: Family<StateLabel, Counter>,
    reconcile_polls: Family<ResultLabel, Counter>,
    witness_submissions: Family<ResultLabel, Counter>,
    witness_quorum_age: Gauge,
}

fn latency() -> Histogram {
    // 0.5 ms .. ~65 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// The process registry being built, noting each metric's sample names as it takes it: a
/// family without a sample yet is left out of `/metrics`, so this list, not the text, says
/// what the gateway can export.
#[derive(Default)]
struct Registrar {
    registry: Registry,
    names: Vec<String>,
}

impl crate::state::metrics::Register for Registrar {
    /// Registers `metric` as `name` (a counter's samples are `<name>_total`, a histogram's
    /// `<name>_bucket`, `_sum` and `_count`).
    fn register<M: Metric + TypedMetric>(&mut self, name: &str, help: &str, metric: M) {
        let suffixes: &[&str] = match M::TYPE {
            MetricType::Counter => &["_total"],
            MetricType::Histogram => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        self.names
            .extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
        self.registry.register(name, help, metric);
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registrar = Registrar::default();
    let requests = Family::<RequestLabels, Counter>::default();
    let request_duration =
        Family::<OperationLabel, Histogram>::new_with_constructor(latency as fn() -> Histogram);
    let m = Metrics {
        requests,
        request_duration,
        upstream_duration: latency(),
        token_duration: latency(),
        token_fetches: Family::default(),
        token_cache_hits: Counter::default(),
        audit_write_duration: latency(),
        audit_records: Counter::default(),
        audit_failures: Counter::default(),
        audit_lost: Counter::default(),
        audit_suppressed: Family::default(),
        log_suppressed: Family::default(),
        policy_reloads: Family::default(),
        errors: Family::default(),
        permissions: Family::default(),
        connections_closed: Family::default(),
        connections_parked: Gauge::default(),
        memory_trims: Counter::default(),
        jwt_refusals: Family::default(),
        jwt_key_fetches: Family::default(),
        jwt_accepted: Family::default(),
        context_refusals: Family::default(),
        audit_trust: AuditTrust::default(),
        webhooks: Webhooks::default(),
        registry: Registry::default(),
        names: Vec::new(),
    };
    let r = &mut registrar;
    r.register(
        "graphgate_requests",
        "Requests answered, by operation, decision and status class",
        m.requests.clone(),
    );
    r.register(
        "graphgate_request_duration_seconds",
        "Whole-request latency",
        m.request_duration.clone(),
    );
    r.register(
        "graphgate_upstream_duration_seconds",
        "Time waiting for Microsoft Graph",
        m.upstream_duration.clone(),
    );
    r.register(
        "graphgate_token_acquisition_duration_seconds",
        "Time to obtain a usable Entra token (cached or fetched)",
        m.token_duration.clone(),
    );
    r.register(
        "graphgate_token_fetches",
        "Token requests sent to Entra, by result",
        m.token_fetches.clone(),
    );
    r.register(
        "graphgate_token_cache_hits",
        "Tokens served from the cache",
        m.token_cache_hits.clone(),
    );
    r.register(
        "graphgate_audit_write_duration_seconds",
        "Time to write and fsync one group of audit records",
        m.audit_write_duration.clone(),
    );
    r.register(
        "graphgate_audit_records",
        "Audit records made durable",
        m.audit_records.clone(),
    );
    r.register(
        "graphgate_audit_failures",
        "Audit write or fsync failures",
        m.audit_failures.clone(),
    );
    r.register(
        "graphgate_audit_records_lost",
        "Audit records that could not be written and that nobody waited for (outcomes, refusals); each one's audit id is logged",
        m.audit_lost.clone(),
    );
    r.register(
        "graphgate_audit_suppressed",
        "Records left out under the audit sampling limits, by reason (refusal, dry_run: per caller; unauthenticated: per source); the log records their counts",
        m.audit_suppressed.clone(),
    );
    r.register(
        "graphgate_log_suppressed",
        "Log lines of refused requests left out under --log-refusals-per-sec, by reason (refusal: per caller; unauthenticated: per source); the next line written for the same caller or source carries their count",
        m.log_suppressed.clone(),
    );
    r.register(
        "graphgate_policy_reloads",
        "Policy reloads, by result",
        m.policy_reloads.clone(),
    );
    r.register(
        "graphgate_errors",
        "Requests the gateway refused or could not complete, by error code (e.g. tokenAcquisitionFailed: identity provider; upstreamUnavailable: Graph)",
        m.errors.clone(),
    );
    r.register(
        "graphgate_app_permissions",
        "Application permissions of the gateway's own token against what the policy needs: missing (readiness fails) and excess (more privilege than used)",
        m.permissions.clone(),
    );
    r.register(
        "graphgate_connections_closed",
        "Client connections the server closed or refused, by reason (a deadline, a TLS handshake that failed or outlived its deadline, an HTTP/2 control-frame flood, a connection cap)",
        m.connections_closed.clone(),
    );
    r.register(
        "graphgate_connections_parked",
        "HTTP/1.1 keep-alive connections at rest, held outside the HTTP engine (socket and TLS session only) until their next request",
        m.connections_parked.clone(),
    );
    r.register(
        "graphgate_memory_trims",
        "Times the allocator was asked to return its free memory, once the gateway was quiet",
        m.memory_trims.clone(),
    );
    r.register(
        "graphgate_jwt_refusals",
        "Bearer tokens refused (401), by reason (expired, signature, audience, unknown_key, keys_unavailable, ...)",
        m.jwt_refusals.clone(),
    );
    r.register(
        "graphgate_jwt_key_fetches",
        "Fetches of token issuers' keys (discovery, JWKS or file), by result; a failed one keeps the cached keys",
        m.jwt_key_fetches.clone(),
    );
    r.register(
        "graphgate_jwt_accepted",
        "Bearer tokens accepted, by how their signature was vouched for: checked now (signature) or by an earlier check with the keys the issuer still has (cached); time, audience and caller are checked on every request",
        m.jwt_accepted.clone(),
    );
    r.register(
        "graphgate_context_refusals",
        "Requests refused (400) over the person or reason they state, by reason (missing, bad_initiator, bad_reason, not_the_token_user, ...)",
        m.context_refusals.clone(),
    );
    crate::state::metrics::register(r);
    register_audit_trust(r, &m.audit_trust);
    register_webhooks(r, &m.webhooks);
    Metrics {
        registry: registrar.registry,
        names: registrar.names,
        ..m
    }
});

fn register_audit_trust(r: &mut Registrar, t: &AuditTrust) {
    r.register(
        "graphgate_audit_checkpoints",
        "Signed audit checkpoints written, by result",
        t.checkpoints.clone(),
    );
    r.register(
        "graphgate_audit_checkpoint_pushes",
        "Checkpoint pushes to --audit-checkpoint-url, by result (ok, error: retried, dropped: the queue was full)",
        t.checkpoint_pushes.clone(),
    );
    r.register(
        "graphgate_audit_shipped_records",
        "Audit records exported as OTLP log records (at least once: a retried batch counts again)",
        t.shipped.clone(),
    );
    r.register(
        "graphgate_audit_ship_failures",
        "Failed OTLP exports of audit records (retried from the persisted cursor)",
        t.ship_failures.clone(),
    );
    r.register(
        "graphgate_audit_ship_lag_records",
        "Durable audit records not yet shipped",
        t.ship_lag.clone(),
    );
    r.register(
        "graphgate_reconcile_actions",
        "Device actions whose outcome is being reconciled: pending (polling) and overdue (still pending past the deadline)",
        t.reconcile_actions.clone(),
    );
    r.register(
        "graphgate_reconcile_completions",
        "Completion records written, by state (done, failed, not_supported, canceled, pending_past_deadline)",
        t.reconcile_completions.clone(),
    );
    r.register(
        "graphgate_reconcile_polls",
        "Reads of deviceActionResults, by result",
        t.reconcile_polls.clone(),
    );
    r.register(
        "graphgate_audit_witness_submissions",
        "Checkpoints submitted to witnesses, by result (ok, conflict: the witness had another size, rollback, inconsistent, refused, error)",
        t.witness_submissions.clone(),
    );
    r.register(
        "graphgate_audit_witness_quorum_age_seconds",
        "How long the newest signed audit checkpoint has waited for a quorum of witnesses to cosign it (0 while it is cosigned, or when none is signed yet)",
        t.witness_quorum_age.clone(),
    );
}

/// A checkpoint submission to a witness ended with `result`.
pub fn audit_witness_submission(result: &'static str) {
    METRICS
        .audit_trust
        .witness_submissions
        .get_or_create(&ResultLabel { result })
        .inc();
}

/// The newest quorum-cosigned checkpoint is `age_secs` old.
pub fn audit_witness_quorum_age(age_secs: u64) {
    METRICS
        .audit_trust
        .witness_quorum_age
        .set(i64::try_from(age_secs).unwrap_or(i64::MAX));
}

fn register_webhooks(r: &mut Registrar, w: &Webhooks) {
    r.register(
        "graphgate_webhook_deliveries",
        "Attempts to deliver approval notifications to webhooks, by result (ok; retried: timeout, connect, status; final: gave_up, refused (a 4xx other than 408/429), no_secret)",
        w.deliveries.clone(),
    );
    r.register(
        "graphgate_webhook_queue_depth",
        "Approval notifications waiting in the webhooks' queues",
        w.queued.clone(),
    );
    r.register(
        "graphgate_webhook_dropped",
        "Approval notifications dropped unsent: a webhook's queue was full (the oldest goes), the notifier fell behind the events, or the webhook left the policy",
        w.dropped.clone(),
    );
}

/// Status class label for an HTTP status.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Maps an operation name onto the catalog's static names (anything else is `other`).
fn operation(name: &str) -> &'static str {
    match name {
        "none" => "none",
        n => crate::operation::catalog::by_name(n).map_or("other", |o| o.name),
    }
}

/// Maps a decision label onto the known ones: every audit decision (see
/// `AuditDecision::as_str`; a unit test keeps the two in step) and `none`.
fn decision(label: &str) -> &'static str {
    const KNOWN: [&str; 11] = [
        "allowed",
        "denied",
        "shadow_denied",
        "dry_run",
        "rate_limited",
        "invalid",
        "failed",
        "outcome_unknown",
        "unauthenticated",
        "held",
        "none",
    ];
    KNOWN.into_iter().find(|k| *k == label).unwrap_or("other")
}

/// One request answered.
pub fn request_done(op: &str, decision_label: &str, status: u16, took: Duration) {
    let operation = operation(op);
    METRICS
        .requests
        .get_or_create(&RequestLabels {
            operation,
            decision: decision(decision_label),
            status_class: status_class(status),
        })
        .inc();
    METRICS
        .request_duration
        .get_or_create(&OperationLabel { operation })
        .observe(took.as_secs_f64());
}

/// One exchange with Graph finished (answered or not).
pub fn upstream(took: Duration) {
    METRICS.upstream_duration.observe(took.as_secs_f64());
}

/// A caller waited `took` for a token.
pub fn token_acquired(took: Duration) {
    METRICS.token_duration.observe(took.as_secs_f64());
}

/// A token was requested from Entra.
pub fn token_fetch(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    METRICS
        .token_fetches
        .get_or_create(&ResultLabel { result })
        .inc();
}

/// A token came from the cache.
pub fn token_cache_hit() {
    METRICS.token_cache_hits.inc();
}

/// One group commit of `records` audit records.
pub fn audit_write(took: Duration, records: usize, ok: bool) {
    METRICS.audit_write_duration.observe(took.as_secs_f64());
    if ok {
        METRICS.audit_records.inc_by(records as u64);
    } else {
        METRICS.audit_failures.inc();
    }
}

/// `n` audit records nobody waited for could not be written.
pub fn audit_records_lost(n: usize) {
    METRICS.audit_lost.inc_by(n as u64);
}

/// One refused request's log lines were left out under the log sampling limit.
pub fn log_suppressed(reason: &'static str) {
    METRICS
        .log_suppressed
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// One refusal record was left out under an audit sampling limit.
pub fn audit_suppressed(reason: &'static str) {
    METRICS
        .audit_suppressed
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// A policy reload was attempted (for the hot-reload watcher to call).
pub fn policy_reload(ok: bool) {
    policy_reload_result(if ok { "ok" } else { "error" });
}

/// A reload was asked for (signal or file event) but the file's content had not changed, so
/// nothing was compiled (`result="unchanged"`).
pub fn policy_reload_unchanged() {
    policy_reload_result("unchanged");
}

fn policy_reload_result(result: &'static str) {
    METRICS
        .policy_reloads
        .get_or_create(&ResultLabel { result })
        .inc();
}

/// The gateway answered with one of its own error codes (a static, bounded set).
pub fn error(code: &'static str) {
    METRICS.errors.get_or_create(&CodeLabel { code }).inc();
}

/// The server closed or refused a connection; `reason` is one of a static, bounded set.
pub fn connection_closed(reason: &'static str) {
    METRICS
        .connections_closed
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// An HTTP/1.1 connection was parked (`+1`) or left its park (`-1`).
pub fn connections_parked(delta: i64) {
    METRICS.connections_parked.inc_by(delta);
}

/// The allocator was asked to return its free memory (the gateway had gone quiet).
pub fn memory_trim() {
    METRICS.memory_trims.inc();
}

/// A bearer token was refused; `reason` is a [`crate::identity::TokenRefusal`] label.
pub fn jwt_refusal(reason: &'static str) {
    METRICS
        .jwt_refusals
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// A bearer token was accepted; `cached`: its signature was checked by an earlier request.
pub fn jwt_accepted(cached: bool) {
    let check = if cached { "cached" } else { "signature" };
    METRICS
        .jwt_accepted
        .get_or_create(&CheckLabel { check })
        .inc();
}

/// A token issuer's keys were fetched (or the fetch failed).
pub fn jwt_key_fetch(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    METRICS
        .jwt_key_fetches
        .get_or_create(&ResultLabel { result })
        .inc();
}

/// A request was refused over its stated person or reason; `reason` is a
/// [`crate::identity::stated::ContextError`] label.
pub fn context_refusal(reason: &'static str) {
    METRICS
        .context_refusals
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// The latest least-privilege comparison.
pub fn permissions(missing: usize, excess: usize) {
    let set = |state, n: usize| {
        METRICS
            .permissions
            .get_or_create(&StateLabel { state })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    };
    set("missing", missing);
    set("excess", excess);
}

/// A checkpoint was written (or failed).
pub fn audit_checkpoint(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    let t = &METRICS.audit_trust;
    t.checkpoints.get_or_create(&ResultLabel { result }).inc();
}

/// A checkpoint push ended: `ok`, `error` (retried) or `dropped`.
pub fn audit_checkpoint_push(result: &'static str) {
    let t = &METRICS.audit_trust;
    t.checkpoint_pushes
        .get_or_create(&ResultLabel { result })
        .inc();
}

/// `n` audit records were exported (or the export failed).
pub fn audit_shipped(n: usize, ok: bool) {
    let t = &METRICS.audit_trust;
    match ok {
        true => t.shipped.inc_by(n as u64),
        false => t.ship_failures.inc(),
    };
}

/// Durable records not yet shipped.
pub fn audit_ship_lag(records: u64) {
    let lag = i64::try_from(records).unwrap_or(i64::MAX);
    METRICS.audit_trust.ship_lag.set(lag);
}

/// Device actions being reconciled changed: `pending` (still polling) and `overdue` (past
/// the deadline) move by these amounts (deltas, so the gauges sum over reconcilers).
pub fn reconcile_actions(pending: i64, overdue: i64) {
    let t = &METRICS.audit_trust;
    let gauge = |state| t.reconcile_actions.get_or_create(&StateLabel { state });
    gauge("pending").inc_by(pending);
    gauge("overdue").inc_by(overdue);
}

/// A completion record was written with this state.
pub fn reconcile_completion(state: &'static str) {
    let t = &METRICS.audit_trust;
    t.reconcile_completions
        .get_or_create(&StateLabel { state })
        .inc();
}

/// A deviceActionResults read ended: `ok` or `error`.
pub fn reconcile_poll(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    let t = &METRICS.audit_trust;
    t.reconcile_polls
        .get_or_create(&ResultLabel { result })
        .inc();
}

/// One attempt to deliver an approval notification ended with `result` (a static set).
pub fn webhook_delivery(result: &'static str) {
    METRICS
        .webhooks
        .deliveries
        .get_or_create(&ResultLabel { result })
        .inc();
}

/// `n` notifications were queued (positive) or left a queue (negative).
pub fn webhook_queued(n: i64) {
    METRICS.webhooks.queued.inc_by(n);
}

/// `n` notifications were dropped unsent.
pub fn webhook_dropped(n: u64) {
    METRICS.webhooks.dropped.inc_by(n);
}

/// Every metric in the Prometheus/OpenMetrics text format.
pub fn encode() -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    out
}

/// Every sample name `/metrics` can show (`graphgate_requests_total`,
/// `graphgate_request_duration_seconds_bucket`, `graphgate_audit_ship_lag_records`, ...),
/// whether or not it has a sample yet: what dashboards and alert rules may select.
pub fn exported_names() -> &'static [String] {
    &METRICS.names
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_labels_collapse_and_names_follow_the_scheme() {
        request_done("no-such-op", "made-up", 204, Duration::from_millis(3));
        policy_reload(true);
        let text = encode();
        assert!(text.contains(
            r#"graphgate_requests_total{operation="other",decision="other",status_class="2xx"}"#
        ));
        assert!(text.contains(r#"graphgate_policy_reloads_total{result="ok"}"#));
        assert!(text.contains("graphgate_request_duration_seconds_bucket"));
        assert!(!text.contains("no-such-op"));
    }

    #[test]
    fn exported_names_list_every_sample_name_before_its_first_sample() {
        let names = exported_names();
        for name in [
            "graphgate_requests_total",
            "graphgate_request_duration_seconds_bucket",
            "graphgate_request_duration_seconds_count",
            "graphgate_audit_ship_lag_records",
            "graphgate_reconcile_actions",
            "graphgate_state_store_errors_total",
            "graphgate_budget_limit",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
        }
        request_done("none", "none", 401, Duration::from_millis(1));
        reconcile_actions(0, 0);
        crate::state::metrics::budget("caller:exported-names-test", 0, 1);
        for line in encode().lines().filter(|l| !l.starts_with('#')) {
            let sample = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(names.iter().any(|n| n == sample), "{sample} is not listed");
        }
    }

    #[test]
    fn every_audit_decision_is_a_decision_label_of_its_own() {
        use crate::audit::AuditDecision as D;
        let all = [
            D::Allowed,
            D::Denied,
            D::ShadowDenied,
            D::DryRun,
            D::RateLimited,
            D::Invalid,
            D::Failed,
            D::OutcomeUnknown,
            D::Unauthenticated,
            D::Held,
        ];
        for d in all {
            // Exhaustive on purpose: a new decision does not compile here until it is listed
            // above, and then this test asks for its label.
            match d {
                D::Allowed
                | D::Denied
                | D::ShadowDenied
                | D::DryRun
                | D::RateLimited
                | D::Invalid
                | D::Failed
                | D::OutcomeUnknown
                | D::Unauthenticated
                | D::Held => {}
            }
            assert_eq!(
                decision(d.as_str()),
                d.as_str(),
                "{d:?} is counted as 'other'"
            );
        }
    }
}
