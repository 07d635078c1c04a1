//! OTLP export over TLS, from the real binary configured by the OpenTelemetry variables:
//! traces and shipped audit records reach an `https://` collector whose certificate chains
//! to `OTEL_EXPORTER_OTLP_CERTIFICATE`; with mutual TLS the gateway presents
//! `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`/`_CLIENT_KEY` (here by the per-signal names).
//! A collector the gateway cannot verify gets nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use graphgate_emulator::EmulatorConfig;
use rustls::server::WebPkiClientVerifier;

use crate::common::otlp::{Receiver, log_attr, otlp_receiver_tls};
use crate::common::pki::Ca;
use crate::common::served;

/// The collector's TLS: its certificate from `ca`, client certificates from `clients` required.
fn collector_tls(ca: &Ca, clients: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let leaf = ca.server();
    let builder = rustls::ServerConfig::builder_with_provider(graphgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(client_ca.der.clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                graphgate::tls::provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(builder.with_single_cert(leaf.chain, leaf.key).unwrap())
}

/// Waits (bounded) until the collector holds an outcome record and returns its attributes'
/// decision.
async fn outcome_arrives(rx: &Receiver) -> String {
    let mut arrived = rx.logs_arrived.clone();
    let outcome = || {
        rx.logs
            .lock()
            .unwrap()
            .iter()
            .find(|r| log_attr(r, "graphgate.audit.kind").as_deref() == Some("outcome"))
            .and_then(|r| log_attr(r, "graphgate.audit.decision"))
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(decision) = outcome() {
                return decision;
            }
            arrived.changed().await.unwrap();
        }
    })
    .await
    .expect("an outcome record reached the collector")
}

/// A call through `gw`, its audit records and spans at the collector `rx` (spans are
/// exported at the clean stop), and no refused handshake.
async fn exports_arrive(gw: served::Served, rx: &Receiver) {
    assert_eq!(gw.call().await.status, 204);
    assert_eq!(outcome_arrives(rx).await, "allowed");
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
    spans_arrive(rx).await;
    assert_eq!(*rx.handshake_failures.borrow(), 0);
}

/// A call through `gw`, then a clean stop (which exports the spans held); returns its log.
async fn call_and_stop(gw: served::Served) -> String {
    assert_eq!(gw.call().await.status, 204);
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
    out
}

async fn spans_arrive(rx: &Receiver) {
    let mut arrived = rx.arrived.clone();
    tokio::time::timeout(Duration::from_secs(30), arrived.wait_for(|n| *n >= 1))
        .await
        .expect("a span reached the collector")
        .unwrap();
    let spans = rx.spans.lock().unwrap().clone();
    assert!(spans.iter().any(|s| s.name == "request"), "{spans:?}");
}

#[tokio::test]
async fn traces_and_audit_records_reach_an_https_collector_checked_against_its_ca() {
    let ca = Ca::new("collector CA");
    let rx = otlp_receiver_tls(Some(collector_tls(&ca, None))).await;
    let backend = served::backend(EmulatorConfig::default()).await;
    let ca_file = backend.dir.join("collector-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let endpoint = format!("https://localhost:{}", rx.addr.port());
    let mut cmd = backend.serve_command();
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca_file);
    exports_arrive(backend.serve(cmd).await, &rx).await;

    // Without the collector's CA, its certificate is not trusted: nothing is exported to it.
    let untrusting = otlp_receiver_tls(Some(collector_tls(&ca, None))).await;
    let mut cmd = backend.replica_command("untrusting");
    let endpoint = format!("https://localhost:{}", untrusting.addr.port());
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    let out = call_and_stop(backend.serve(cmd).await).await;
    let mut failed = untrusting.handshake_failures.clone();
    tokio::time::timeout(Duration::from_secs(30), failed.wait_for(|n| *n >= 1))
        .await
        .unwrap_or_else(|_| panic!("no handshake was refused:\n{out}"))
        .unwrap();
    assert!(untrusting.logs.lock().unwrap().is_empty());
    assert!(untrusting.spans.lock().unwrap().is_empty());
}

#[tokio::test]
async fn with_mutual_tls_the_gateway_presents_its_client_certificate_per_signal() {
    let ca = Ca::new("collector CA");
    let client_ca = Ca::new("collector clients");
    let rx = otlp_receiver_tls(Some(collector_tls(&ca, Some(&client_ca)))).await;
    let backend = served::backend(EmulatorConfig::default()).await;
    let d = &backend.dir;
    let client = client_ca.client(None, "graphgate");
    for (name, text) in [
        ("collector-ca.pem", &ca.pem),
        ("client.pem", &client.cert_pem),
        ("client.key", &client.key_pem),
    ] {
        std::fs::write(d.join(name), text).unwrap();
    }
    let endpoint = format!("https://localhost:{}", rx.addr.port());
    let mut cmd = backend.serve_command();
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    for signal in ["TRACES", "LOGS"] {
        cmd.env(
            format!("OTEL_EXPORTER_OTLP_{signal}_CERTIFICATE"),
            d.join("collector-ca.pem"),
        )
        .env(
            format!("OTEL_EXPORTER_OTLP_{signal}_CLIENT_CERTIFICATE"),
            d.join("client.pem"),
        )
        .env(
            format!("OTEL_EXPORTER_OTLP_{signal}_CLIENT_KEY"),
            d.join("client.key"),
        );
    }
    exports_arrive(backend.serve(cmd).await, &rx).await;

    // Trusting the collector but without a client certificate: the collector refuses it.
    let strict = otlp_receiver_tls(Some(collector_tls(&ca, Some(&client_ca)))).await;
    let mut cmd = backend.replica_command("anonymous");
    cmd.env(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("https://localhost:{}", strict.addr.port()),
    )
    .env("OTEL_EXPORTER_OTLP_CERTIFICATE", d.join("collector-ca.pem"));
    let out = call_and_stop(backend.serve(cmd).await).await;
    let mut failed = strict.handshake_failures.clone();
    tokio::time::timeout(Duration::from_secs(30), failed.wait_for(|n| *n >= 1))
        .await
        .unwrap_or_else(|_| panic!("no handshake was refused:\n{out}"))
        .unwrap();
    assert!(strict.logs.lock().unwrap().is_empty());

    // Half a client identity is a start-up error, not an export without it.
    let mut cmd = backend.replica_command("half");
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint).env(
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        d.join("client.pem"),
    );
    let (status, _out, err) = crate::common::process::run_async(cmd, served::START_STOP).await;
    assert!(!status.success());
    assert!(err.contains("OTEL_EXPORTER_OTLP_CLIENT_KEY"), "{err}");
}
