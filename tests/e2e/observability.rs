//! Traces and redaction: an in-test OTLP/HTTP receiver decodes the exported spans and checks
//! their attributes and the continued trace id (also from the real binary, configured by the
//! `OTEL_*` variables); recognisable secrets sent through every path appear in no log line,
//! span, metric or audit record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use graphgate::telemetry::{self, OtlpConfig};
use graphgate_emulator::Secret;
use graphgate_emulator::{AppRegistration, EmulatorConfig};
use http_body_util::Full;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use common::otlp::{Spans, otlp_receiver};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs (JSON, debug level, everything) into a buffer and spans to a fresh receiver, for
/// this test's thread only.
struct Observed {
    logs: Buffer,
    spans: Spans,
    provider: Option<SdkTracerProvider>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Drop for Observed {
    /// The provider's shutdown blocks until its export task (on this test's runtime) answers,
    /// so it must not run on the runtime's own thread.
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            std::thread::spawn(move || drop(provider));
        }
    }
}

async fn observe() -> Observed {
    observe_at(tracing_subscriber::filter::LevelFilter::DEBUG).await
}

/// As [`observe`], with logs kept from `level` up.
async fn observe_at(level: tracing_subscriber::filter::LevelFilter) -> Observed {
    // All end-to-end tests share this process, and tracing caches each callsite's interest
    // process-wide: a callsite first met on a thread with no subscriber would stay "never"
    // for this test's thread-local subscriber too. A global subscriber that wants everything
    // (and writes nowhere) keeps every callsite's interest at "always".
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    let common::otlp::Receiver { addr, spans, .. } = otlp_receiver().await;
    let provider = telemetry::tracer_provider(&OtlpConfig {
        traces_endpoint: Some(format!("http://{addr}/v1/traces")),
        service_name: "graphgate-test".into(),
        tls: Default::default(),
    })
    .unwrap();
    let logs = Buffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_writer(move || writer.clone())
                .with_filter(level),
        )
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("graphgate"))
                .with_filter(telemetry::span_filter()),
        );
    let _guard = tracing::subscriber::set_default(subscriber);
    Observed {
        logs,
        spans,
        provider: Some(provider),
        _guard,
    }
}

impl Observed {
    /// Shuts the exporter down off the runtime's thread, while the runtime still runs its
    /// export task: otherwise the last tracer reference, dropped with the subscriber on this
    /// thread, would block on a shutdown the (then blocked) runtime can never serve.
    async fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }

    async fn flush(&self) -> Vec<Span> {
        let provider = self.provider.clone().unwrap();
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .unwrap()
            .unwrap();
        self.spans.lock().unwrap().clone()
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let kv = span.attributes.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        AnyValue::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn request_spans_carry_semantic_attributes_and_continue_the_callers_trace() {
    let mut obs = observe().await;
    let h = start().await;
    let req = h
        .request(ACTION_PATH)
        .header("authorization", format!("Bearer {ROTATOR_KEY}"))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .body(Full::new(Bytes::from(body())))
        .unwrap();
    assert_eq!(h.send(req).await.status, 204);
    let spans = obs.flush().await;
    obs.shutdown().await;
    let span = spans
        .iter()
        .find(|s| s.name == "request")
        .unwrap_or_else(|| panic!("no request span in {spans:?}"));
    let hex = |b: &[u8]| graphgate::policy::hex(b);
    assert_eq!(
        hex(&span.trace_id),
        TRACE_ID,
        "the caller's trace continues"
    );
    assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
    let want = [
        ("http.request.method", "POST"),
        (
            "http.route",
            "/{version}/deviceManagement/managedDevices/{managedDeviceId}/{action}",
        ),
        ("http.response.status_code", "204"),
        ("server.address", "graph.microsoft.com"),
        ("caller.name", "rooms-rotator"),
        (
            "graph.operation",
            "managedDevices.updateWindowsDeviceAccount",
        ),
        ("policy.rule", "rotator-updates-room-accounts"),
        ("policy.decision", "allowed"),
    ];
    for (key, value) in want {
        if key == "http.route" {
            assert!(
                attr(span, key).is_some_and(|r| r.contains("managedDevices")),
                "{key}: {span:?}"
            );
            continue;
        }
        assert_eq!(attr(span, key).as_deref(), Some(value), "{key}: {span:?}");
    }
    assert!(attr(span, "graph.request_id").is_some(), "{span:?}");
    // And on to Graph.
    let graph = h.emulator.graph_requests();
    let sent = graph[0]
        .headers
        .get("traceparent")
        .expect("traceparent sent to Graph");
    assert!(sent.starts_with(&format!("00-{TRACE_ID}-")), "{sent}");
}

const CLIENT_SECRET: &str = "Sentinel-Client-Secret-5d2e";
const WRONG_SECRET: &str = "Sentinel-Wrong-Secret-a77c";
const UNKNOWN_KEY: &str = "Sentinel-Unknown-Key-19fe";

fn emulator(roles: Vec<String>) -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    config.apps = vec![AppRegistration {
        client_id: config.apps[0].client_id.clone(),
        client_secret: Secret::new(CLIENT_SECRET),
        roles,
    }];
    config
}

/// Every path a request can take, each carrying the password (and keys where they fit).
async fn drive_every_path() -> Vec<String> {
    let mut audit_logs = Vec::new();
    let all_roles = vec![graphgate::operation::catalog::PRIV_OPS.to_owned()];
    let h = start_with(Options {
        emulator: emulator(all_roles.clone()),
        ..Options::default()
    })
    .await;
    assert_eq!(h.call().await.status, 204); // success
    h.post(ACTION_PATH, Some(OTHER_KEY), &body())
        .await
        .assert_graph_error(403, "accessDenied");
    h.post(ACTION_PATH, Some(UNKNOWN_KEY), &body())
        .await
        .assert_graph_error(401, "InvalidAuthenticationToken");
    h.post(ACTION_PATH, None, &body())
        .await
        .assert_graph_error(401, "InvalidAuthenticationToken");
    h.post(
        &format!("{ACTION_PATH}?p={PASSWORD}"),
        Some(ROTATOR_KEY),
        &body(),
    )
    .await
    .assert_graph_error(400, "invalidRequest");
    let bad = body().replace(
        "\"calendarSyncEnabled\":true",
        &format!("\"calendarSyncEnabled\":\"{PASSWORD}\""),
    );
    h.post(ACTION_PATH, Some(ROTATOR_KEY), &bad)
        .await
        .assert_graph_error(400, "invalidRequest");
    h.post(
        ACTION_PATH,
        Some(ROTATOR_KEY),
        &format!("{{\"x\":\"{PASSWORD}\""),
    )
    .await
    .assert_graph_error(400, "invalidRequest");
    let big = format!("{{\"p\":\"{PASSWORD}{}\"}}", "x".repeat(70_000));
    h.post(ACTION_PATH, Some(ROTATOR_KEY), &big)
        .await
        .assert_graph_error(413, "requestEntityTooLarge");
    let other_device = ACTION_PATH.replace(DEVICE, "99999999-9999-4999-8999-999999999999");
    let r = h.post(&other_device, Some(ROTATOR_KEY), &body()).await; // Graph's own error
    assert!(r.status.is_client_error(), "{:?}", r.body);
    audit_logs.push(h.audit_path.clone().unwrap());
    h.audit.flush().await.unwrap();

    // Graph refuses: the app lacks the permission.
    let h2 = start_with(Options {
        emulator: emulator(vec![]),
        ..Options::default()
    })
    .await;
    assert_eq!(h2.call().await.status, 403);
    h2.audit.flush().await.unwrap();
    audit_logs.push(h2.audit_path.clone().unwrap());

    // Entra refuses the gateway's secret.
    let h3 = start_with(Options {
        emulator: emulator(all_roles),
        client_secret_override: Some(WRONG_SECRET),
        ..Options::default()
    })
    .await;
    h3.call()
        .await
        .assert_graph_error(503, "tokenAcquisitionFailed");
    h3.audit.flush().await.unwrap();
    audit_logs.push(h3.audit_path.clone().unwrap());
    audit_logs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[tokio::test]
async fn no_secret_reaches_logs_spans_metrics_or_audit() {
    let mut obs = observe().await;
    let audits = drive_every_path().await;
    let spans = obs.flush().await;
    obs.shutdown().await;
    let logs = String::from_utf8(obs.logs.0.lock().unwrap().clone()).unwrap();
    let spans_text = format!("{spans:?}");
    let metrics = graphgate::metrics::encode();
    assert!(logs.contains("request done"), "logs were captured");
    assert!(spans.len() >= 10, "spans were exported: {}", spans.len());
    assert!(
        audits
            .iter()
            .all(|a| a.contains("\"kind\":\"request\"") || a.contains("\"kind\":\"outcome\""))
    );
    let secrets = [
        PASSWORD,
        ROTATOR_KEY,
        OTHER_KEY,
        UNKNOWN_KEY,
        CLIENT_SECRET,
        WRONG_SECRET,
    ];
    for (name, text) in [
        ("logs", &logs),
        ("spans", &spans_text),
        ("metrics", &metrics),
    ]
    .into_iter()
    .chain(audits.iter().map(|a| ("audit", a)))
    {
        for secret in secrets {
            if let Some(i) = text.find(secret) {
                panic!(
                    "{secret} found in {name}: ...{}...",
                    &text[i.saturating_sub(40)..(i + 300).min(text.len())]
                );
            }
        }
        assert!(
            !text.contains("eyJ"),
            "a bearer token (JWT) found in {name}"
        );
    }
    // The failures are in the audit, as refusals with their codes.
    assert!(
        audits[2].contains("\"error_code\":\"tokenAcquisitionFailed\""),
        "{}",
        audits[2]
    );
    assert!(
        audits[1].contains("\"upstream_status\":403"),
        "{}",
        audits[1]
    );
}

/// What an operator sets: the standard `OTEL_*` variables, read by the real binary's
/// `telemetry::init` (the tests above build their own tracer provider).
#[tokio::test]
async fn otel_variables_turn_on_the_export_of_the_real_binary() {
    let otlp = otlp_receiver().await;
    let backend = served::backend(EmulatorConfig::default()).await;
    let mut cmd = backend.serve_command();
    cmd.env(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://{}", otlp.addr),
    )
    .env("OTEL_SERVICE_NAME", "graphgate-otlp-e2e");
    let gw = backend.serve(cmd).await;
    let req = http::Request::post(format!("http://{}{ACTION_PATH}", gw.addr))
        .header("authorization", format!("Bearer {ROTATOR_KEY}"))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .body(Full::new(Bytes::from(body())))
        .unwrap();
    assert_eq!(send_to(req).await.status, 204);
    // A clean stop exports what is buffered.
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
    let mut arrived = otlp.arrived.clone();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        arrived.wait_for(|n| *n >= 1),
    )
    .await
    .expect("no span reached the OTLP endpoint")
    .unwrap();
    let spans = otlp.spans.lock().unwrap().clone();
    let span = spans
        .iter()
        .find(|s| s.name == "request")
        .unwrap_or_else(|| panic!("no request span in {spans:?}"));
    assert_eq!(graphgate::policy::hex(&span.trace_id), TRACE_ID);
    assert_eq!(attr(span, "caller.name").as_deref(), Some("rooms-rotator"));
    assert_eq!(
        attr(span, "http.response.status_code").as_deref(),
        Some("204")
    );
    let services = otlp.services.lock().unwrap().clone();
    assert!(
        !services.is_empty() && services.iter().all(|s| s == "graphgate-otlp-e2e"),
        "OTEL_SERVICE_NAME names the service: {services:?}"
    );
}

/// An upstream failure reaches the caller in fixed words, never the transport's error chain;
/// the chain goes to the log, on the line that carries the request's id.
#[tokio::test]
async fn an_upstream_failure_is_told_in_fixed_words_and_logged_in_full() {
    let mut obs = observe().await;
    // A loopback port nothing listens on: the connection is refused at once.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let h = start_with(Options {
        graph_addr: Some(closed),
        ..Options::default()
    })
    .await;
    let r = h.call().await;
    r.assert_graph_error(502, "upstreamUnavailable");
    assert_eq!(
        r.json()["error"]["message"],
        "Microsoft Graph could not be reached; the request was not sent"
    );
    let request_id = r.headers["x-graphgate-request-id"].to_str().unwrap();
    obs.shutdown().await;
    let logs = String::from_utf8(obs.logs.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("request refused or failed") && l.contains(request_id))
        .unwrap_or_else(|| panic!("no failure line with request id {request_id}:\n{logs}"));
    let logged: serde_json::Value = serde_json::from_str(line).unwrap();
    let chain = logged["fields"]["error"].as_str().unwrap();
    assert!(
        chain.starts_with("Microsoft Graph could not be reached; the request was not sent: ")
            && chain.to_lowercase().contains("connect"),
        "the log carries the transport's chain: {chain}"
    );
    assert_eq!(logged["fields"]["request_id"], request_id);
}

/// The secret-returning reads: each secret reaches its caller, and appears in no log line
/// (every crate, trace level), no exported span, no metric (the admin listener's
/// `/metrics`) and no audit record, on the Graph path and on the simplified API alike.
#[tokio::test]
async fn a_secret_read_reaches_its_caller_and_nowhere_else() {
    use crate::catalog;
    let mut obs = observe_at(tracing_subscriber::filter::LevelFilter::TRACE).await;
    // A canary: events of every level, trace included, are kept.
    tracing::trace!("trace-level canary");
    let h = catalog::start().await;
    let mut secrets: Vec<String> = Vec::new();
    for function in [
        "getFileVaultKey",
        "retrieveRecoveryLockPasscode",
        "retrieveDeviceLocalAdminAccountDetail",
    ] {
        let device = catalog::device_for(function);
        let kept = h.emulator.device_secrets(&device).unwrap();
        let (secret, shown) = match function {
            "getFileVaultKey" => (kept.file_vault_key.expose().to_owned(), None),
            "retrieveRecoveryLockPasscode" => {
                (kept.recovery_lock_passcode.expose().to_owned(), None)
            }
            _ => {
                use base64::Engine as _;
                let password = kept.local_admin_password.expose().to_owned();
                let b64 = base64::engine::general_purpose::STANDARD.encode(&password);
                (password, Some(b64))
            }
        };
        for path in [
            format!("/beta/deviceManagement/managedDevices/{device}/{function}()"),
            format!("/api/v1/managedDevices/{device}/{function}"),
        ] {
            let reply = catalog::send(&h, http::Method::GET, &path, "").await;
            assert_eq!(reply.status, 200, "{path}: {:?}", reply.body);
            assert_eq!(reply.headers["cache-control"], "no-store", "{path}");
            let body = String::from_utf8(reply.body.to_vec()).unwrap();
            let expected = shown.as_deref().unwrap_or(&secret);
            assert!(
                body.contains(expected),
                "{path}: the caller gets the secret: {body}"
            );
        }
        // The secret whole, its random core (e.g. a lower-cased copy), and as Graph sent it.
        let core = secret
            .split_once('-')
            .map_or(secret.clone(), |(_, c)| c.to_owned());
        secrets.extend([secret, core.to_ascii_lowercase(), core]);
        secrets.extend(shown);
    }
    let scrape = http::Request::get("/metrics")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = graphgate::admin::handle(&h.gw, &scrape).await;
    assert_eq!(resp.status(), 200);
    let metrics = String::from_utf8(
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let audit = serde_json::to_string(&h.audit_records().await).unwrap();
    h.shut_down().await;
    let spans = obs.flush().await;
    obs.shutdown().await;
    let logs = String::from_utf8(obs.logs.0.lock().unwrap().clone()).unwrap();
    let spans_text = format!("{spans:?}");
    // What is searched was captured: the reads are in each of them.
    let read = "managedDevices.getFileVaultKey";
    assert!(
        logs.contains("trace-level canary"),
        "trace-level logs were captured"
    );
    assert!(logs.contains(read), "the requests' logs were captured");
    assert!(
        spans
            .iter()
            .any(|s| attr(s, "graph.operation").as_deref() == Some(read)),
        "the requests' spans were exported"
    );
    assert!(
        metrics.contains(read),
        "the requests are counted in /metrics"
    );
    assert!(
        audit.contains("\"disclosed_bytes\""),
        "the disclosures are audited"
    );
    for (name, text) in [
        ("logs", &logs),
        ("spans", &spans_text),
        ("metrics", &metrics),
        ("audit", &audit),
    ] {
        for secret in &secrets {
            if let Some(i) = text.find(secret.as_str()) {
                panic!(
                    "a secret ({secret}) found in {name}: ...{}...",
                    &text[i.saturating_sub(80)..(i + 200).min(text.len())]
                );
            }
        }
    }
}

/// A JWT caller's request span names the caller, the token's issuer, subject and
/// fingerprint (never the token), and the person by both ids.
#[tokio::test]
async fn a_jwt_callers_span_carries_its_issuer_subject_fingerprint_and_person() {
    use common::jwt::{HELPDESK_APP, sha256_hex, start_jwt};
    use graphgate_emulator::{DEMO_USER_OID, DEMO_USER_UPN};
    let mut obs = observe().await;
    let j = start_jwt(60, "").await;
    let h = &j.h;
    let token = h
        .emulator
        .user_token(
            HELPDESK_APP,
            DEMO_USER_UPN,
            "Devices.Manage",
            None,
            graphgate_emulator::Cloud::Global,
        )
        .unwrap();
    assert_eq!(h.post_token(&token, &[]).await.status, 204);
    let spans = obs.flush().await;
    obs.shutdown().await;
    let span = spans
        .iter()
        .find(|s| {
            s.name == "request" && attr(s, "caller.name").as_deref() == Some("helpdesk-portal")
        })
        .unwrap_or_else(|| panic!("no request span of the token's caller in {spans:?}"));
    let claims = common::emu::jwt_part(&token, 1);
    assert_eq!(
        attr(span, "caller.issuer").as_deref(),
        claims["iss"].as_str()
    );
    assert_eq!(
        attr(span, "caller.subject").as_deref(),
        claims["sub"].as_str()
    );
    assert_eq!(attr(span, "caller.token_sha256"), Some(sha256_hex(&token)));
    assert_eq!(
        attr(span, "caller.initiator").as_deref(),
        Some(DEMO_USER_UPN)
    );
    assert_eq!(
        attr(span, "caller.initiator_oid").as_deref(),
        Some(DEMO_USER_OID)
    );
    assert_eq!(
        attr(span, "http.response.status_code").as_deref(),
        Some("204")
    );
    for kv in &span.attributes {
        assert!(
            !format!("{:?}", kv.value).contains(&token),
            "{} holds the token",
            kv.key
        );
    }
}
