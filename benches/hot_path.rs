//! Micro-benchmarks of the per-request hot path: path recognition, body validation with
//! redaction, API-key lookup and policy evaluation as the policy grows, and compiling a
//! large policy (what a reload costs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use graphgate::catalog;
use graphgate::identity::{self, api_key_sha256};
use graphgate::policy::{Facts, Policy};
use graphgate::route;
use graphgate::schema;

const PATH: &str = "/v1.0/deviceManagement/managedDevices/0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb/updateWindowsDeviceAccount";
const BODY: &str = r##"{"updateWindowsDeviceAccountActionParameter":{"calendarSyncEnabled":true,"deviceAccount":{"@odata.type":"#microsoft.graph.windowsDeviceAzureADAccount","password":"P@ss","userPrincipalName":"room1@rooms.contoso.com"},"deviceAccountEmail":"room1@rooms.contoso.com","exchangeServer":"outlook.office365.com","passwordRotationEnabled":true,"sessionInitiationProtocalAddress":"sip:room1@rooms.contoso.com"}}"##;

/// A policy of `n` rules over 100 callers; the caller under test is named by every tenth
/// rule, with conditions, and only the last of its rules matches.
fn policy_of(n: usize) -> Policy {
    let mut text = String::from("version: 1\ncallers:\n");
    for c in 0..100 {
        text.push_str(&format!(
            "  - name: caller-{c}\n    api_key_sha256: \"{}\"\n",
            api_key_sha256(&format!("key-{c}"))
        ));
    }
    text.push_str("rules:\n");
    for r in 0..n {
        let caller = if r % 10 == 0 { 0 } else { 1 + r % 99 };
        let suffix = if r + 10 >= n && caller == 0 {
            "@rooms.contoso.com"
        } else {
            "@nowhere.example"
        };
        text.push_str(&format!(
            "  - name: rule-{r}\n    callers: [caller-{caller}]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - param: deviceAccountEmail\n        suffix: \"{suffix}\"\n      - param: passwordRotationEnabled\n        equals: true\n"
        ));
    }
    Policy::from_yaml(&text, "bench").unwrap()
}

/// A policy of `n` callers, each with its own API key and one rule of its own.
fn callers_policy(n: usize) -> String {
    let mut text = String::from("version: 1\ncallers:\n");
    for c in 0..n {
        text.push_str(&format!(
            "  - name: caller-{c}\n    api_key_sha256: \"{}\"\n",
            api_key_sha256(&format!("key-{c}"))
        ));
    }
    text.push_str("rules:\n");
    for r in 0..n {
        text.push_str(&format!(
            "  - name: rule-{r}\n    callers: [caller-{r}]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - param: deviceAccountEmail\n        suffix: \"@rooms-{r}.contoso.com\"\n"
        ));
    }
    text
}

fn api_key_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("identity/api_key");
    for n in [10, 1_000, 10_000] {
        let policy = Policy::from_yaml(&callers_policy(n), "bench").unwrap();
        let mut headers = http::HeaderMap::new();
        let key = format!("Bearer key-{}", n - 1);
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&key).unwrap(),
        );
        assert_eq!(
            identity::authenticate(&policy, &headers, None)
                .unwrap()
                .index,
            n - 1
        );
        group.bench_with_input(BenchmarkId::from_parameter(n), &policy, |b, p| {
            b.iter(|| identity::authenticate(p, black_box(&headers), None).unwrap())
        });
    }
    group.finish();
}

fn compilation(c: &mut Criterion) {
    let text = callers_policy(10_000);
    let mut group = c.benchmark_group("policy/compile");
    group.sample_size(10);
    group.bench_function("10000_callers_and_rules", |b| {
        b.iter(|| Policy::from_yaml(black_box(&text), "bench").unwrap())
    });
    group.finish();
}

fn recognition(c: &mut Criterion) {
    c.bench_function("route/recognise", |b| {
        b.iter(|| route::recognise(&http::Method::POST, black_box(PATH)).unwrap())
    });
}

fn validation(c: &mut Criterion) {
    let op = catalog::by_name("managedDevices.updateWindowsDeviceAccount").unwrap();
    c.bench_function("schema/parse_and_validate_with_redaction", |b| {
        b.iter(|| {
            let v = schema::parse_strict(black_box(BODY.as_bytes())).unwrap();
            schema::validate(&v, op.params, op.wrapper).unwrap()
        })
    });
}

fn evaluation(c: &mut Criterion) {
    let op = catalog::by_name("managedDevices.updateWindowsDeviceAccount").unwrap();
    let target = route::recognise(&http::Method::POST, PATH).unwrap();
    let params = schema::validate(
        &schema::parse_strict(BODY.as_bytes()).unwrap(),
        op.params,
        op.wrapper,
    )
    .unwrap();
    let mut group = c.benchmark_group("policy/decide");
    for n in [10, 1_000, 10_000] {
        let policy = policy_of(n);
        let facts = Facts {
            caller: 0,
            op,
            version: target.version,
            device: &target.device_id,
            params: &params,
            initiator: None,
        };
        assert!(
            policy.decide(&facts).allowed,
            "the benchmark must exercise a full walk to an allow"
        );
        group.bench_with_input(BenchmarkId::from_parameter(n), &policy, |b, p| {
            b.iter(|| p.decide(black_box(&facts)).allowed)
        });
    }
    group.finish();
}

fn audit_sealing(c: &mut Criterion) {
    let entry = graphgate::audit::Entry {
        time: "2026-11-28T16:00:00.000000Z".into(),
        audit_id: "5a6b7c8d-1111-2222-3333-444455556666".into(),
        caller: Some("rooms-rotator".into()),
        auth_method: Some("api_key".into()),
        operation: Some("managedDevices.updateWindowsDeviceAccount".into()),
        device_id: Some("0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb".into()),
        params: Some(std::sync::Arc::new(
            serde_json::json!({"deviceAccountEmail": "room1@rooms.contoso.com", "deviceAccount.password": {"redacted": true, "hmac_sha256": "ab".repeat(32)}, "passwordRotationEnabled": true}),
        )),
        policy_version: Some("cd".repeat(32)),
        rule: Some("rotator-updates-room-accounts".into()),
        ..graphgate::audit::Entry::default()
    };
    let mut chain = graphgate::audit::chain::ChainState::default();
    c.bench_function("audit/seal_record_with_hash_chain", |b| {
        b.iter(|| chain.seal(black_box(&entry)).unwrap())
    });
}

criterion_group!(
    benches,
    recognition,
    validation,
    api_key_lookup,
    evaluation,
    compilation,
    audit_sealing
);
criterion_main!(benches);
