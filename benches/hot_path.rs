//! Micro-benchmarks of the per-request hot path: path recognition, body validation with
//! redaction, caller identity (an API key as the policy grows; a JWT of each kind with its
//! issuer's keys cached) and policy evaluation as the policy grows, and compiling a large
//! policy (what a reload costs). Across the whole catalog: recognising and validating every
//! operation in every version it exists in, and admitting and deciding a 100-device bulk
//! `executeAction`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use graphgate::gateway::explain;
use graphgate::identity::{self, api_key_sha256};
use graphgate::operation::catalog::{self, ApiVersion, Binding, Invocation, Operation};
use graphgate::operation::route;
use graphgate::operation::schema::{self, Prop, Ty};
use graphgate::policy::{Facts, Policy};

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

/// Polls a future that must not wait (an API key; a token whose issuer's keys are cached)
/// to completion: what the gateway's authentication step costs, without a runtime's own.
fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("authentication waited"),
    }
}

fn bearer(value: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&format!("Bearer {value}")).unwrap(),
    );
    headers
}

fn api_key_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("identity/api_key");
    for n in [10, 1_000, 10_000] {
        let policy = Policy::from_yaml(&callers_policy(n), "bench").unwrap();
        let headers = bearer(&format!("key-{}", n - 1));
        let none = identity::TokenIssuers::default();
        let found = ready(identity::authenticate(&policy, &none, &headers, None));
        assert_eq!(found.unwrap().id.index, n - 1);
        group.bench_with_input(BenchmarkId::from_parameter(n), &policy, |b, p| {
            b.iter(|| ready(identity::authenticate(p, &none, black_box(&headers), None)).unwrap())
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
        let facts = Facts::of(0, &target, &params, None);
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
    let mut chain = graphgate::audit::records::chain::ChainState::default();
    c.bench_function("audit/seal_record_with_hash_chain", |b| {
        b.iter(|| chain.seal(black_box(&entry)).unwrap())
    });
}

/// A JSON value of `ty` that the schema accepts (an address where one is expected).
fn example_of(prop: &Prop) -> serde_json::Value {
    use serde_json::Value;
    match prop.ty {
        Ty::Bool => Value::Bool(true),
        Ty::String if prop.address => Value::from("room1@rooms.contoso.com"),
        Ty::String => Value::from("bench value"),
        Ty::Enum(members) => Value::from(members[0]),
        Ty::StringList => Value::from(vec!["0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb"]),
        Ty::Complex(t) => every_param(t.props),
    }
}

/// A body giving every parameter (the most validation work an operation can take).
fn every_param(props: &[Prop]) -> serde_json::Value {
    serde_json::Value::Object(
        props
            .iter()
            .map(|p| (p.name.to_owned(), example_of(p)))
            .collect(),
    )
}

/// Every catalog operation in every version it exists in: (method, path, body).
fn whole_catalog() -> Vec<(
    &'static Operation,
    ApiVersion,
    http::Method,
    String,
    Vec<u8>,
)> {
    let mut out = Vec::new();
    for op in catalog::CATALOG {
        for &version in op.versions {
            let v = version.as_str();
            let tail = match op.invocation {
                Invocation::Action => format!("/{}", op.action),
                Invocation::Function => format!("/{}()", op.action),
                Invocation::Delete => String::new(),
            };
            let path = match op.binding {
                Binding::Device => format!("/{v}/deviceManagement/managedDevices/{DEVICE}{tail}"),
                Binding::User => format!("/{v}/users/room1@rooms.contoso.com{tail}"),
                Binding::Devices => format!("/{v}/deviceManagement/managedDevices{tail}"),
            };
            let body = match op.takes_body() {
                true => serde_json::to_vec(&every_param(op.params_for(version))).unwrap(),
                false => Vec::new(),
            };
            out.push((op, version, op.invocation.method(), path, body));
        }
    }
    out
}

const DEVICE: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";

/// Recognition, then body validation, of every operation; time per iteration / operations
/// = the cost per operation.
fn whole_catalog_benches(c: &mut Criterion) {
    let all = whole_catalog();
    for (op, version, method, path, body) in &all {
        let found = route::recognise(method, path).unwrap();
        assert_eq!(
            (found.op.name, found.version),
            (op.name, *version),
            "{path}"
        );
        if op.takes_body() {
            let v = schema::parse_strict(body).unwrap();
            schema::validate(&v, op.params_for(*version), op.wrapper)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }
    let bodies: Vec<_> = all.iter().filter(|e| e.0.takes_body()).collect();
    let mut group = c.benchmark_group("catalog");
    group.throughput(Throughput::Elements(all.len() as u64));
    group.bench_function(format!("recognise_every_operation_{}", all.len()), |b| {
        b.iter(|| {
            for (_, _, method, path, _) in &all {
                black_box(route::recognise(method, black_box(path)).unwrap());
            }
        })
    });
    group.throughput(Throughput::Elements(bodies.len() as u64));
    group.bench_function(format!("validate_every_body_{}", bodies.len()), |b| {
        b.iter(|| {
            for (op, version, _, _, body) in &bodies {
                let v = schema::parse_strict(black_box(body)).unwrap();
                black_box(schema::validate(&v, op.params_for(*version), op.wrapper).unwrap());
            }
        })
    });
    group.finish();
}

/// A bulk wipe of 100 devices, admitted and decided as the gateway does it (the same path
/// `policy explain` takes): recognition, strict body checks, the per-device plan, and the
/// policy asked about every device (a rule listing the 100 devices, with a condition).
fn bulk_admission(c: &mut Criterion) {
    let devices: Vec<String> = (0..100)
        .map(|n| format!("0b6f2f1e-1a2b-4c3d-8e9f-{n:012}"))
        .collect();
    let policy = Policy::from_yaml(
        &format!(
            "version: 1\ncallers:\n  - name: ops\n    api_key_sha256: \"{}\"\nrules:\n  - name: wipe-keeping-user-data\n    callers: [ops]\n    operations: [managedDevices.wipe]\n    devices: {}\n    when:\n      - {{ param: keepUserData, equals: true }}\n",
            api_key_sha256("k"),
            serde_json::to_string(&devices).unwrap()
        ),
        "bench",
    )
    .unwrap();
    let body = serde_json::to_vec(
        &serde_json::json!({"actionName": "wipe", "keepUserData": true, "deviceIds": devices}),
    )
    .unwrap();
    let request = "POST /beta/deviceManagement/managedDevices/executeAction";
    let (eval, _) =
        explain::evaluate(&policy, "ops", request, Some(&body), Default::default()).unwrap();
    assert!(
        eval.judgement.decision.allowed,
        "every device walks to an allow"
    );
    c.bench_function("bulk/admit_and_decide_100_devices", |b| {
        b.iter(|| {
            let (eval, _) = explain::evaluate(
                &policy,
                "ops",
                request,
                Some(black_box(&body)),
                Default::default(),
            )
            .unwrap();
            eval.judgement.decision.allowed
        })
    });
}

/// Admission and decision of one wipe (as the gateway and `policy explain` run them, the
/// approval question included) under a rule without approval: in a policy with no
/// approval at all, and in one where another rule needs approval (so the question is
/// asked). Neither may cost more than the policy without approvals did before them.
fn approval_question(c: &mut Criterion) {
    let policy_with = |approval: &str| {
        Policy::from_yaml(
            &format!(
                "version: 1\ncallers:\n  - name: ops\n    api_key_sha256: \"{}\"\n  - name: lead\n    api_key_sha256: \"{}\"\nrules:\n  - name: wipes\n    callers: [ops]\n    operations: [managedDevices.wipe]\n  - name: retires\n    callers: [ops]\n    operations: [managedDevices.retire]\n{approval}",
                api_key_sha256("k"),
                api_key_sha256("l")
            ),
            "bench",
        )
        .unwrap()
    };
    let held_elsewhere =
        "    approval:\n      groups:\n        - { approvers: [lead], required: 1 }\n";
    let request =
        "POST /v1.0/deviceManagement/managedDevices/0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb/wipe";
    let body = br#"{"keepUserData":true}"#;
    let mut group = c.benchmark_group("approval/admit_and_decide_one_wipe");
    for (name, policy) in [
        ("no_approval_rules", policy_with("")),
        ("approval_on_another_rule", policy_with(held_elsewhere)),
    ] {
        let (eval, _) =
            explain::evaluate(&policy, "ops", request, Some(body), Default::default()).unwrap();
        assert!(eval.allowed() && eval.approval.is_none(), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| {
                let (eval, _) = explain::evaluate(
                    &policy,
                    "ops",
                    request,
                    Some(black_box(body)),
                    Default::default(),
                )
                .unwrap();
                eval.allowed()
            })
        });
    }
    group.finish();
}

/// A key loader serving the emulator's published keys (no I/O in the measurement).
struct Published(serde_json::Value);

impl graphgate::identity::jwt::fetch::KeyLoader for Published {
    fn load<'a>(
        &'a self,
        _: &'a graphgate::policy::JwtIssuer,
    ) -> graphgate::upstream::BoxFuture<
        'a,
        Result<graphgate::identity::jwt::jwks::KeyMap, graphgate::identity::jwt::fetch::FetchError>,
    > {
        let keys = graphgate::identity::jwt::jwks::parse(self.0.to_string().as_bytes()).unwrap();
        Box::pin(async move { Ok(keys) })
    }
}

/// A JWT caller's whole authentication step with its issuer's keys cached (parse, issuer,
/// signature, audience and time, caller lookup, fingerprint), for an RS256 Kubernetes
/// service-account token and an ES256 SPIFFE JWT-SVID, beside an API key's: on a token's
/// first use (`..._first_use`) and on its repeated use, whose signature was checked before.
fn jwt_callers(c: &mut Criterion) {
    use graphgate_emulator::{Emulator, EmulatorConfig, KUBERNETES_ISSUER};
    let emulator = Emulator::new(EmulatorConfig::default()).unwrap();
    let k8s = emulator
        .service_account_token("rooms", "rotator", &["graphgate"], 3600)
        .unwrap();
    let svid = emulator
        .jwt_svid(
            "spiffe://corp.example/ns/rooms/sa/rotator",
            &["graphgate"],
            3600,
        )
        .unwrap();
    let mut text = format!(
        "version: 1\njwt_issuers:\n  - issuer: {KUBERNETES_ISSUER}\n    audiences: [graphgate]\n    keys: {{ jwks_url: {KUBERNETES_ISSUER}/openid/v1/jwks }}\n  - issuer: spiffe://corp.example\n    audiences: [graphgate]\n    keys: {{ file: /bundle.json }}\ncallers:\n  - name: k8s\n    jwt: {{ issuer: {KUBERNETES_ISSUER}, subject: \"system:serviceaccount:rooms:rotator\" }}\n  - name: svid\n    jwt: {{ issuer: spiffe://corp.example, subject: spiffe://corp.example/ns/rooms/sa/rotator }}\n"
    );
    for i in 0..1_000 {
        text.push_str(&format!(
            "  - name: sa-{i}\n    jwt: {{ issuer: {KUBERNETES_ISSUER}, subject: \"system:serviceaccount:other:sa-{i}\" }}\n"
        ));
    }
    let policy = Policy::from_yaml(&text, "bench").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stores = [
        emulator.kubernetes().jwks().unwrap(),
        emulator.spiffe_bundle().unwrap(),
    ];
    let issuers: Vec<_> = stores
        .into_iter()
        .map(|keys| {
            graphgate::identity::jwt::IssuerRegistry::new(std::sync::Arc::new(Published(keys)))
        })
        .collect();
    let mut group = c.benchmark_group("identity/jwt");
    for (name, token, registry, caller) in [
        ("rs256_kubernetes", &k8s, &issuers[0], 0),
        ("es256_spiffe", &svid, &issuers[1], 1),
    ] {
        let tokens = registry.for_policy(&policy);
        runtime.block_on(async {
            for i in 0..policy.jwt_issuers.len() {
                tokens.store(i).unwrap().warm().await;
            }
        });
        let headers = bearer(token);
        let found = ready(identity::authenticate(&policy, &tokens, &headers, None)).unwrap();
        assert_eq!(found.id.index, caller);
        // A token seen for the first time: the signature is checked (each iteration under
        // a policy of its own, whose verified-token cache is empty; its keys are warm).
        group.bench_function(format!("{name}_first_use"), |b| {
            b.iter_batched(
                || {
                    let fresh = registry.for_policy(&policy);
                    assert!(fresh.store(caller).unwrap().cached().is_some());
                    fresh
                },
                |fresh| {
                    ready(identity::authenticate(
                        &policy,
                        &fresh,
                        black_box(&headers),
                        None,
                    ))
                    .unwrap()
                },
                criterion::BatchSize::SmallInput,
            )
        });
        // The same token again: its signature was checked by the first use.
        group.bench_function(name, |b| {
            b.iter(|| {
                ready(identity::authenticate(
                    &policy,
                    &tokens,
                    black_box(&headers),
                    None,
                ))
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    recognition,
    validation,
    whole_catalog_benches,
    bulk_admission,
    approval_question,
    api_key_lookup,
    jwt_callers,
    evaluation,
    compilation,
    audit_sealing
);
criterion_main!(benches);
