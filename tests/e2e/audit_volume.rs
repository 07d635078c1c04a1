//! What one hostile caller can make the audit write: each parameter is recorded capped (with
//! the full value's fingerprint), refusals are sampled per caller and failed authentications
//! per source, and every refusal left out is counted, in a metric and in the log itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Instant;

use common::*;
use graphgate::secret::Secret;
use serde_json::{Value, json};

/// The value of the metric sample `name` (with its labels), 0 if not yet rendered.
fn metric(name: &str) -> f64 {
    graphgate::metrics::encode()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Every record in the log file as it is on disk (after the writer has stopped).
fn read_log(h: &Harness) -> Vec<Value> {
    std::fs::read_to_string(h.audit_path.as_ref().unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn suppressed(r: &Value) -> u64 {
    r["suppressed"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_huge_parameter_is_recorded_capped_with_its_fingerprint() {
    // The other service may run the action only towards one Exchange server, so its request
    // is read in full and refused by a condition (a caller no rule names is refused before
    // its body is read, and its record carries no parameters at all).
    let policy = TestPolicy::standard()
        .rule(
            Rule::allow("other-to-one-exchange")
                .callers(&["other-service"])
                .operations(&["managedDevices.updateWindowsDeviceAccount"])
                .set(
                    "when",
                    json!([{"param": "exchangeServer", "equals": "exchange.contoso.com"}]),
                ),
        )
        .yaml();
    let h = start_with(Options {
        policy: Some(policy),
        ..Options::default()
    })
    .await;
    // The SIP address has no length rule of its own (an email parameter would be refused
    // as an address before policy), so it carries the huge value.
    let long = format!("sip:{}@rooms.contoso.com", "a".repeat(60_000));
    let huge = body().replace(
        r#""sessionInitiationProtocalAddress":"sip:room1@contoso.com""#,
        &format!(r#""sessionInitiationProtocalAddress":"{long}""#),
    );
    assert!(huge.len() > 60_000);
    h.post(ACTION_PATH, Some(OTHER_KEY), &huge)
        .await
        .assert_graph_error(403, "accessDenied");
    let records = h.audit_records().await;
    let log = std::fs::read_to_string(h.audit_path.as_ref().unwrap()).unwrap();
    assert!(
        log.len() < 4096,
        "one refusal wrote {} bytes of audit",
        log.len()
    );
    let record = records.iter().find(|r| r["kind"] == "request").unwrap();
    let sip = &record["params"]["sessionInitiationProtocalAddress"];
    assert_eq!(sip["truncated"], true, "{sip}");
    assert_eq!(sip["bytes"], long.len(), "{sip}");
    assert_eq!(sip["prefix"], &long[..256], "{sip}");
    let full = fingerprinter().fingerprint(&Secret::new(long.as_str()));
    assert_eq!(sip["hmac_sha256"], full, "the full value's fingerprint");
    // Short values are recorded as they are.
    assert_eq!(record["params"]["exchangeServer"], "outlook.office365.com");
}

#[tokio::test]
async fn a_flood_of_refusals_from_one_caller_is_sampled_and_every_one_counted() {
    let h = start().await;
    let before = metric(r#"graphgate_audit_suppressed_total{reason="refusal"}"#);
    let n = 300;
    let started = Instant::now();
    for _ in 0..n {
        h.post(ACTION_PATH, Some(OTHER_KEY), &body())
            .await
            .assert_graph_error(403, "accessDenied");
    }
    let took = started.elapsed().as_secs_f64();
    let records = h.audit_records().await;
    let written: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "request" && r["caller"] == "other-service")
        .collect();
    // The default: 20 refusal records per caller per second, in bursts of up to 20.
    let bound = 20.0 + 20.0 * took.ceil();
    assert!(
        !written.is_empty() && written.len() as f64 <= bound,
        "{} refusal records in {took:.2} s (at most {bound})",
        written.len()
    );
    // An allowed call is never sampled away.
    assert_eq!(h.call().await.status, 204);

    // Closing writes what is still only counted; then every refusal is in the log, as a
    // record or in a `suppressed` count.
    h.audit.shutdown().await.unwrap();
    let records = read_log(&h);
    let written = records
        .iter()
        .filter(|r| r["kind"] == "request" && r["caller"] == "other-service")
        .count() as u64;
    let counted: u64 = records
        .iter()
        .filter(|r| r["caller"] == "other-service")
        .map(suppressed)
        .sum();
    assert_eq!(
        written + counted,
        n,
        "written {written}, suppressed {counted}"
    );
    let summaries: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "suppressed")
        .collect();
    assert!(
        summaries
            .iter()
            .all(|s| s["caller"] == "other-service" && suppressed(s) > 0),
        "{summaries:?}"
    );
    let after = metric(r#"graphgate_audit_suppressed_total{reason="refusal"}"#);
    assert!(
        after - before >= counted as f64,
        "metric went {before} -> {after}, the log counts {counted}"
    );
    let intents = records.iter().filter(|r| r["kind"] == "intent").count();
    assert_eq!(intents, 1);
}

#[tokio::test]
async fn failed_authentications_are_sampled_into_the_audit_per_source() {
    let h = start().await;
    let before = metric(r#"graphgate_audit_suppressed_total{reason="unauthenticated"}"#);
    let n = 200;
    let started = Instant::now();
    for _ in 0..n {
        h.post(ACTION_PATH, Some("wrong-key"), &body())
            .await
            .assert_graph_error(401, "InvalidAuthenticationToken");
    }
    let took = started.elapsed().as_secs_f64();
    let records = h.audit_records().await;
    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| r["decision"] == "unauthenticated")
        .collect();
    // The default: 5 records per source address per second, in bursts of up to 5.
    let bound = 5.0 + 5.0 * took.ceil();
    assert!(
        !failed.is_empty() && failed.len() as f64 <= bound,
        "{} failed-authentication records in {took:.2} s (at most {bound})",
        failed.len()
    );
    let first = failed[0];
    assert_eq!(first["kind"], "request");
    assert_eq!(first["status"], 401);
    assert_eq!(first["error_code"], "InvalidAuthenticationToken");
    assert!(
        first["source"].as_str().unwrap().starts_with("127.0.0.1"),
        "{first}"
    );
    assert!(
        first["caller"].is_null() && first["params"].is_null(),
        "{first}"
    );

    h.audit.shutdown().await.unwrap();
    let records = read_log(&h);
    let written = records
        .iter()
        .filter(|r| r["kind"] == "request" && r["decision"] == "unauthenticated")
        .count() as u64;
    let counted: u64 = records
        .iter()
        .filter(|r| r["decision"] == "unauthenticated" || r["kind"] == "suppressed")
        .map(suppressed)
        .sum();
    assert_eq!(
        written + counted,
        n,
        "written {written}, suppressed {counted}"
    );
    let after = metric(r#"graphgate_audit_suppressed_total{reason="unauthenticated"}"#);
    assert!(
        after - before >= counted as f64,
        "{before} -> {after}, log {counted}"
    );
    let log = std::fs::read_to_string(h.audit_path.as_ref().unwrap()).unwrap();
    assert!(!log.contains("wrong-key"));
}

/// Dry runs are bounded like refusals: each caller may make `--dry-runs-per-sec` of them
/// (429 with Retry-After past it), and their records are sampled per caller with the count
/// of the rest carried by the next one written. On Tokio's paused clock: exact.
#[tokio::test]
async fn dry_runs_are_rate_limited_per_caller_and_their_records_sampled() {
    use common::clock::{FrozenClock, within_real_time};
    use graphgate::audit::records::sampler::SamplingLimits;
    use graphgate::audit::{Audit, AuditConfig};
    use std::time::Duration;

    let path = temp_dir("dry-runs").join("audit.jsonl");
    let config = AuditConfig {
        sampling: SamplingLimits {
            refusals_per_sec: 2,
            auth_failures_per_sec: 5,
        },
        ..AuditConfig::default()
    };
    let audit = Audit::open_with(&path, &config, fingerprinter()).unwrap();
    let h = start_with(Options {
        audit: AuditMode::Custom(audit.clone()),
        limits: graphgate::gateway::Limits {
            dry_runs_per_sec: 5,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let clock = FrozenClock::freeze();
    let dry_run = || async {
        let req = h
            .request(ACTION_PATH)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {ROTATOR_KEY}"))
            .header("prefer", "dry-run")
            .body(http_body_util::Full::new(bytes::Bytes::from(body())))
            .unwrap();
        h.send(req).await
    };
    within_real_time("the dry-run test", Duration::from_secs(60), async {
        for i in 0..5 {
            let reply = dry_run().await;
            assert_eq!(reply.status, 200, "dry run {i}: {:?}", reply.body);
            assert_eq!(reply.json()["dryRun"], true);
        }
        let over = dry_run().await;
        over.assert_graph_error(429, "activityLimitReached");
        assert_eq!(over.headers["retry-after"], "1");
        assert!(
            over.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("dry runs"),
            "{:?}",
            over.body
        );
        // A fifth of a second later one more is allowed: the rate refills, it is not a ban.
        clock.advance(Duration::from_millis(200)).await;
        assert_eq!(dry_run().await.status, 200);
        assert!(
            h.emulator.graph_requests().is_empty(),
            "a dry run sends nothing"
        );
    })
    .await;
    audit.shutdown().await.unwrap();
    let records: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dry: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "request" && r["decision"] == "dry_run")
        .collect();
    // Six dry runs answered 200: two written at once, three suppressed, and the one after
    // the refill (a fifth of a second: 0.4 of a record at 2 a second) suppressed too; so two
    // records, and every other dry run counted in the closing `suppressed` record.
    assert_eq!(dry.len(), 2, "{dry:?}");
    let counted: u64 = records
        .iter()
        .filter(|r| r["kind"] == "suppressed" && r["decision"] == "dry_run")
        .map(suppressed)
        .sum::<u64>()
        + dry.iter().map(|r| suppressed(r)).sum::<u64>();
    assert_eq!(counted, 4, "{records:?}");
    let limited = records
        .iter()
        .filter(|r| r["decision"] == "rate_limited" && r["caller"] == "rooms-rotator")
        .count();
    assert_eq!(
        limited, 1,
        "the refused dry run is a rate-limited refusal record"
    );
}
