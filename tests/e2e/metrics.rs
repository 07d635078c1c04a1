//! Metric values, exactly: a `graphgate serve` process of its own (its own registry, unlike
//! the in-process tests, which share one) answers one request of each kind, and `/metrics`
//! on its admin listener must count each once, under its own labels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::metrics::{OP, errors, requests, value};
use common::*;
use graphgate::operation::catalog::PRIV_OPS;
use graphgate_emulator::{EmulatorConfig, Fault, Faults};

const EXTRA_ROLE: &str = "DeviceManagementConfiguration.ReadWrite.All";

#[tokio::test]
async fn each_request_is_counted_once_under_its_own_labels() {
    let mut config = EmulatorConfig::default();
    config.apps[0].roles = vec![PRIV_OPS.to_owned(), EXTRA_ROLE.to_owned()];
    let backend = served::backend(config).await;
    let gw = backend.serve(backend.serve_command()).await;
    // Ready: the first token is fetched and the least-privilege report made.
    let ready = gw.admin("/readyz").await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    let before = gw.metrics().await;

    assert_eq!(gw.post(ACTION_PATH, ROTATOR_KEY, &body()).await.status, 204);
    gw.post(ACTION_PATH, OTHER_KEY, &body())
        .await
        .assert_graph_error(403, "accessDenied");
    gw.post(ACTION_PATH, ROTATOR_KEY, r#"{"nope":1}"#)
        .await
        .assert_graph_error(400, "invalidRequest");
    gw.post(ACTION_PATH, "not-a-key", &body())
        .await
        .assert_graph_error(401, "InvalidAuthenticationToken");
    backend
        .emulator
        .set_faults(Faults::default().with_graph(Fault::reset().times(1)));
    gw.post(ACTION_PATH, ROTATOR_KEY, &body())
        .await
        .assert_graph_error(502, "upstreamOutcomeUnknown");

    // The outcome records are queued behind the intents: wait until all six are durable.
    let audit = "graphgate_audit_records_total";
    let after = eventually(
        "six audit records counted",
        Duration::from_secs(30),
        async || {
            let text = gw.metrics().await;
            (value(&text, audit) - value(&before, audit) >= 6.0).then_some(text)
        },
    )
    .await;
    let delta = |series: &str| value(&after, series) - value(&before, series);
    let expected = [
        (requests(OP, "allowed", "2xx"), 1.0),
        (requests(OP, "denied", "4xx"), 1.0),
        (requests(OP, "invalid", "4xx"), 1.0),
        (requests("none", "none", "4xx"), 1.0),
        (requests(OP, "outcome_unknown", "5xx"), 1.0),
        (requests(OP, "other", "5xx"), 0.0),
        (requests(OP, "failed", "5xx"), 0.0),
        (errors("accessDenied"), 1.0),
        (errors("invalidRequest"), 1.0),
        (errors("InvalidAuthenticationToken"), 1.0),
        (errors("upstreamOutcomeUnknown"), 1.0),
        (
            format!("graphgate_request_duration_seconds_count{{operation=\"{OP}\"}}"),
            4.0,
        ),
        (
            "graphgate_request_duration_seconds_count{operation=\"none\"}".into(),
            1.0,
        ),
        // Two requests reached Graph, each with the cached token.
        ("graphgate_upstream_duration_seconds_count".into(), 2.0),
        (
            "graphgate_token_acquisition_duration_seconds_count".into(),
            2.0,
        ),
        ("graphgate_token_cache_hits_total".into(), 2.0),
        ("graphgate_token_fetches_total{result=\"ok\"}".into(), 0.0),
        // Intent + outcome for the two forwarded calls, one record per refusal past
        // recognition (denied, invalid), none for the unauthenticated request.
        (audit.into(), 6.0),
        ("graphgate_audit_failures_total".into(), 0.0),
    ];
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(series, want)| delta(series) != *want)
        .map(|(series, want)| format!("{series}: +{} (expected +{want})", delta(series)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\n{after}");
    // Absolute values.
    assert_eq!(
        value(&after, "graphgate_token_fetches_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        value(&after, "graphgate_app_permissions{state=\"missing\"}"),
        0.0
    );
    assert_eq!(
        value(&after, "graphgate_app_permissions{state=\"excess\"}"),
        1.0
    );
    assert!(
        after.contains("graphgate_app_permissions{state=\"missing\"} 0"),
        "the gauge is rendered: {after}"
    );

    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
}
