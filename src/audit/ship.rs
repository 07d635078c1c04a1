//! Shipping: audit records exported as OpenTelemetry log records over the same OTLP/HTTP
//! configuration as traces (TLS to the collector included, see [`crate::otlp`]), so a
//! collector can fan them out (SIEM, Kafka, object storage).
//! The local log stays the source of truth: a task follows it from a persisted cursor
//! (`<log>.ship-cursor`, the last record the collector acknowledged), exports only durable
//! records, and moves the cursor only after an export succeeded. So delivery is at least
//! once, a restart resumes where the collector last said yes, and a collector that is down
//! only makes the task retry (with backoff): requests never wait for it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use opentelemetry::InstrumentationScope;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLoggerProvider};
use tokio::sync::watch;

use super::store::follow::{Follower, Line};
use super::store::ship_cursor;

/// Records per export.
const BATCH: usize = 2048;
/// Longest one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest wait before retrying a failed export.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// The scope (and event name) of the exported records.
const SCOPE: &str = "graphgate.audit";

/// Where and as whom records are shipped.
#[derive(Debug, Clone)]
pub struct ShipConfig {
    /// Full URL of the logs endpoint (`.../v1/logs`); `None` lets the exporter read
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (and append `/v1/logs`) itself.
    pub logs_endpoint: Option<String>,
    /// `service.name`.
    pub service_name: String,
    /// TLS to the collector (an `https://` endpoint): its CAs and a client certificate.
    pub tls: crate::otlp::OtlpTls,
}

/// Whether OTLP export is configured in an environment (`var` reads it): the variables the
/// OpenTelemetry exporters read, so that traces are exported and records shipped.
pub fn otlp_configured(var: impl Fn(&str) -> Option<String>) -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    ]
    .iter()
    .any(|name| var(name).is_some_and(|v| !v.is_empty()))
}

/// Starts shipping the log at `log`, following `durable` (the writer's durable head). Call
/// within a Tokio runtime.
pub fn spawn(
    log: &Path,
    durable: watch::Receiver<u64>,
    config: &ShipConfig,
) -> Result<tokio::task::JoinHandle<()>, crate::otlp::ExportSetupError> {
    let client = crate::otlp::http_client(&config.tls, EXPORT_TIMEOUT)?;
    let mut builder = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(endpoint) = &config.logs_endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let mut exporter = builder.build()?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    exporter.set_resource(&resource);
    let (acked, acked_rx) = watch::channel(ship_cursor::read(log));
    tokio::spawn(report_lag(durable.clone(), acked_rx));
    let shipper = Shipper {
        log: log.to_owned(),
        exporter,
        provider: SdkLoggerProvider::builder().with_resource(resource).build(),
        scope: InstrumentationScope::builder(SCOPE).build(),
        acked,
    };
    Ok(tokio::spawn(shipper.run(durable)))
}

/// Keeps `graphgate_audit_ship_lag_records` at the durable head minus the last record the
/// collector acknowledged, whenever either moves: so the gauge grows with every record
/// written while the collector is down (the shipper is then stuck retrying one batch) and
/// falls back to 0 once it has taken them. Ends with the shipper or the log.
async fn report_lag(mut durable: watch::Receiver<u64>, mut acked: watch::Receiver<u64>) {
    loop {
        let head = *durable.borrow_and_update();
        let shipped = *acked.borrow_and_update();
        crate::metrics::audit_ship_lag(head.saturating_sub(shipped));
        tokio::select! {
            changed = durable.changed() => if changed.is_err() { return },
            changed = acked.changed() => if changed.is_err() { return },
        }
    }
}

struct Shipper {
    log: PathBuf,
    exporter: opentelemetry_otlp::LogExporter,
    /// Makes log records (nothing is emitted through it: the batches go to `exporter`).
    provider: SdkLoggerProvider,
    scope: InstrumentationScope,
    /// The last record the collector acknowledged (for [`report_lag`]).
    acked: watch::Sender<u64>,
}

impl Shipper {
    async fn run(self, mut durable: watch::Receiver<u64>) {
        let mut follower = Some(Follower::new(&self.log, ship_cursor::read(&self.log) + 1));
        loop {
            let until = *durable.borrow_and_update();
            let Some(f) = follower.take() else { return };
            let Ok((f, lines)) = tokio::task::spawn_blocking(move || {
                let mut f = f;
                let lines = f.read(until, BATCH);
                (f, lines)
            })
            .await
            else {
                return;
            };
            follower = Some(f);
            let lines = match lines {
                Ok(lines) if !lines.is_empty() => lines,
                Ok(_) => {
                    if durable.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audit shipping could not read the log; retrying");
                    tokio::time::sleep(BACKOFF.1).await;
                    continue;
                }
            };
            self.ship(&lines).await;
        }
    }

    /// Exports `lines` until the collector takes them, then moves the cursor past them.
    async fn ship(&self, lines: &[Line]) {
        let logger = self.provider.logger(SCOPE);
        let records: Vec<SdkLogRecord> = lines
            .iter()
            .map(|l| record(logger.create_log_record(), l))
            .collect();
        let batch: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            records.iter().map(|r| (r, &self.scope)).collect();
        let mut backoff = BACKOFF.0;
        loop {
            match self.exporter.export(LogBatch::new(&batch)).await {
                Ok(()) => break,
                Err(e) => {
                    crate::metrics::audit_shipped(lines.len(), false);
                    tracing::warn!(error = %e, records = lines.len(), retry_in_ms = backoff.as_millis() as u64, "could not ship audit records; retrying (the log keeps them)");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
        crate::metrics::audit_shipped(lines.len(), true);
        let last = lines.last().map_or(0, |l| l.seq);
        if let Err(e) = ship_cursor::write(&self.log, last) {
            tracing::warn!(error = %e, "could not save the audit shipping cursor (records may be shipped again after a restart)");
        }
        self.acked.send_replace(last);
    }
}

/// The fields of a record that become attributes, read without building a JSON tree.
#[derive(Default, serde::Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    time: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    audit_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    hash: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    caller: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    operation: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    device_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    decision: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    completion: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    initiator: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    reason: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    approval_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    approval_state: Option<std::borrow::Cow<'a, str>>,
}

/// One audit record as a log record: the record's JSON line as the body (its `hash` lets a
/// SIEM check it), the fields to search by as attributes.
fn record(mut rec: SdkLogRecord, line: &Line) -> SdkLogRecord {
    let f: Fields<'_> = serde_json::from_slice(&line.bytes).unwrap_or_default();
    let time = f
        .time
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(crate::clock::system_now, SystemTime::from);
    rec.set_event_name(SCOPE);
    rec.set_timestamp(time);
    rec.set_observed_timestamp(crate::clock::system_now());
    let refused = matches!(
        f.decision.as_deref(),
        Some(
            "denied"
                | "invalid"
                | "rate_limited"
                | "unauthenticated"
                | "failed"
                | "outcome_unknown"
        )
    );
    let (severity, label) = match refused {
        true => (Severity::Warn, "WARN"),
        false => (Severity::Info, "INFO"),
    };
    rec.set_severity_number(severity);
    rec.set_severity_text(label);
    rec.add_attribute(
        "graphgate.audit.seq",
        i64::try_from(line.seq).unwrap_or(i64::MAX),
    );
    let attrs = [
        ("graphgate.audit.kind", &f.kind),
        ("graphgate.audit.audit_id", &f.audit_id),
        ("graphgate.audit.hash", &f.hash),
        ("graphgate.audit.caller", &f.caller),
        ("graphgate.audit.operation", &f.operation),
        ("graphgate.audit.device_id", &f.device_id),
        ("graphgate.audit.decision", &f.decision),
        ("graphgate.audit.completion", &f.completion),
        ("graphgate.audit.initiator", &f.initiator),
        ("graphgate.audit.reason", &f.reason),
        ("graphgate.audit.approval_id", &f.approval_id),
        ("graphgate.audit.approval_state", &f.approval_state),
    ];
    for (key, value) in attrs {
        if let Some(v) = value {
            rec.add_attribute(key, v.to_string());
        }
    }
    let text = String::from_utf8_lossy(&line.bytes).into_owned();
    rec.set_body(AnyValue::String(text.into()));
    rec
}
