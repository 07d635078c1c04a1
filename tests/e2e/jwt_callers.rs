//! Callers that prove who they are with a token from an issuer the policy trusts, each kind
//! against the emulator's issuers: Entra access tokens (v1 and v2, from every cloud's
//! authority), a delegated user token, Kubernetes service-account tokens and SPIFFE
//! JWT-SVIDs. The audit names the issuer, the subject and the token's fingerprint; keys
//! rotate without a restart; a failing key endpoint keeps the keys graphgate has.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::common;

use common::jwt::*;
use common::metrics::{self, Snapshot};
use common::served;
use common::*;
use graphgate_emulator::{DEMO_USER_OID, DEMO_USER_UPN, JwksFault, JwksMode, KUBERNETES_ISSUER};
use http::Method;
use jsonwebtoken::Algorithm;

#[tokio::test]
async fn entra_app_tokens_of_every_cloud_and_both_versions_are_their_callers() {
    let j = start_jwt(60, "").await;
    let h = &j.h;
    for cloud in ENTRA_CLOUDS {
        for (version, api) in [(1, graphgate_emulator::DEMO_API_URI), (2, API_V2_URI)] {
            let token = h.client_credentials(cloud, api).await;
            let claims = emu::jwt_part(&token, 1);
            let issuer = graphgate_emulator::entra_issuer(
                common::ms_cloud(cloud),
                graphgate_emulator::DEMO_TENANT_ID,
                version,
            );
            assert_eq!(claims["iss"], issuer.as_str());
            let before = h.graph_count();
            let reply = h.post_token(&token, &[]).await;
            assert_eq!(reply.status, 204, "{cloud:?} v{version}: {:?}", reply.body);
            assert_eq!(h.graph_count(), before + 1, "forwarded once");
            let record = h.last_record().await;
            assert_eq!(record["kind"], "outcome");
            assert_eq!(record["caller"], entra_caller(cloud, version));
            assert_eq!(record["auth_method"], "jwt");
            assert_eq!(record["caller_issuer"], issuer.as_str());
            assert_eq!(record["caller_subject"], claims["sub"]);
            assert_eq!(record["caller_token_sha256"], sha256_hex(&token));
            let line = serde_json::to_string(&record).unwrap();
            assert!(!line.contains(&token), "the token itself is never recorded");
        }
    }
    // Graph received graphgate's own app-only token, never the caller's.
    for request in h.emulator.graph_requests() {
        let claims = request.token_claims.unwrap();
        assert_eq!(claims["appid"], graphgate_emulator::DEMO_CLIENT_ID);
        assert_eq!(claims["aud"], "https://graph.microsoft.com");
    }
}

#[tokio::test]
async fn a_delegated_user_token_states_its_user_as_the_initiator() {
    let j = start_jwt(60, "").await;
    let h = &j.h;
    let body = serde_json::json!({"client_id": HELPDESK_APP, "upn": DEMO_USER_UPN, "scp": "Devices.Manage", "cloud": "global"});
    let reply = h
        .to_emulator(
            "login.microsoftonline.com",
            Method::POST,
            "/_emulator/entra/user-token",
            &[],
            &body.to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();
    let claims = emu::jwt_part(&token, 1);
    assert_eq!(
        (claims["scp"].as_str(), claims["oid"].as_str()),
        (Some("Devices.Manage"), Some(DEMO_USER_OID))
    );
    let reply = h.post_token(&token, &[]).await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let record = h.last_record().await;
    assert_eq!(record["caller"], "helpdesk-portal");
    assert_eq!(record["initiator"], DEMO_USER_UPN);
    assert_eq!(record["initiator_source"], "token");
    // Naming the same user (by UPN in any case, or by object id) is fine...
    for same in [DEMO_USER_UPN.to_uppercase(), DEMO_USER_OID.to_owned()] {
        let reply = h
            .post_token(&token, &[("x-graphgate-initiator", &same)])
            .await;
        assert_eq!(reply.status, 204, "{same}: {:?}", reply.body);
    }
    // ...naming anyone else is refused before anything is sent.
    let before = h.graph_count();
    let metrics = Snapshot::now();
    let reply = h
        .post_token(&token, &[("x-graphgate-initiator", "mallory@contoso.com")])
        .await;
    reply.assert_graph_error(400, "invalidRequest");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("someone other than the signed-in user")
    );
    assert_eq!(h.graph_count(), before);
    let series = "graphgate_context_refusals_total{reason=\"not_the_token_user\"}";
    assert!(metrics.delta(&Snapshot::now(), series) >= 1.0);
}

#[tokio::test]
async fn kubernetes_service_account_tokens_are_callers_with_their_audience_pinned() {
    let j = start_jwt(60, "").await;
    let h = &j.h;
    let token = h.service_account_token(&[AUDIENCE]).await;
    let reply = h.post_token(&token, &[]).await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let record = h.last_record().await;
    assert_eq!(record["caller"], "k8s-rotator");
    assert_eq!(record["caller_issuer"], KUBERNETES_ISSUER);
    assert_eq!(
        record["caller_subject"],
        format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}")
    );
    // A valid token of the same cluster for another audience (the cluster's own API) is not
    // a token for graphgate.
    let before = h.graph_count();
    let metrics = Snapshot::now();
    let other = h
        .service_account_token(&["https://kubernetes.default.svc"])
        .await;
    assert_token_refused(&h.post_token(&other, &[]).await, "not for graphgate");
    assert_eq!(h.graph_count(), before, "nothing forwarded");
    assert!(
        metrics.delta(
            &Snapshot::now(),
            "graphgate_jwt_refusals_total{reason=\"audience\"}"
        ) >= 1.0
    );
    let record = h.audit_records().await.pop().unwrap();
    assert_eq!(record["decision"], "unauthenticated");
    assert_eq!(record["note"], "token refused: audience");
}

#[tokio::test]
async fn spiffe_jwt_svids_are_checked_against_the_trust_bundle_file() {
    let j = start_jwt(60, "").await;
    let h = &j.h;
    let body = serde_json::json!({"spiffe_id": SVID, "audience": [AUDIENCE], "lifetime_secs": 300});
    let reply = h
        .to_emulator(
            "login.microsoftonline.com",
            Method::POST,
            "/_emulator/spiffe/svid",
            &[],
            &body.to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let svid = reply.json()["token"].as_str().unwrap().to_owned();
    assert!(
        emu::jwt_part(&svid, 1).get("iss").is_none(),
        "a JWT-SVID need not carry iss"
    );
    assert_eq!(emu::jwt_part(&svid, 0)["alg"], "ES256");
    let reply = h.post_token(&svid, &[]).await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let record = h.last_record().await;
    assert_eq!(record["caller"], "svid-rotator");
    assert_eq!(record["caller_issuer"], "spiffe://corp.example");
    assert_eq!(record["caller_subject"], SVID);
    // Another workload of the trust domain is not a caller; one of another domain is not trusted.
    let other = h
        .emulator
        .jwt_svid("spiffe://corp.example/ns/rooms/sa/other", &[AUDIENCE], 300)
        .unwrap();
    assert_token_refused(&h.post_token(&other, &[]).await, "names no caller");
    let foreign = h
        .emulator
        .jwt_svid(
            "spiffe://other.example/ns/rooms/sa/rotator",
            &[AUDIENCE],
            300,
        )
        .unwrap();
    assert_token_refused(
        &h.post_token(&foreign, &[]).await,
        "issuer is not one graphgate trusts",
    );
    // A new bundle with a new key is read again when a token names the new kid.
    let kid = h.emulator.spiffe().rotate(Algorithm::ES256, true).unwrap();
    write_bundle(h, &j.bundle);
    let rotated = h.emulator.jwt_svid(SVID, &[AUDIENCE], 300).unwrap();
    assert_eq!(emu::jwt_part(&rotated, 0)["kid"], kid.as_str());
    let reply = h.post_token(&rotated, &[]).await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_a_restart_and_a_removed_one_is_refused() {
    let j = start_jwt(60, "").await;
    let h = &j.h;
    let k8s = h.emulator.kubernetes();
    let first = sa_token(h);
    assert_eq!(h.post_token(&first, &[]).await.status, 204);
    let fetches = k8s.key_fetches();
    // The cluster rotates its signing key and stops publishing the old one.
    let new_kid = k8s.rotate(Algorithm::RS256, true).unwrap();
    let second = sa_token(h);
    assert_eq!(emu::jwt_part(&second, 0)["kid"], new_kid.as_str());
    let reply = h.post_token(&second, &[]).await;
    assert_eq!(
        reply.status, 204,
        "the new kid is fetched at once: {:?}",
        reply.body
    );
    assert_eq!(
        k8s.key_fetches(),
        fetches + 2,
        "one refresh: discovery and JWKS"
    );
    // A token signed by the removed key: valid signature, unexpired, but its key is gone.
    let before = h.graph_count();
    assert_token_refused(&h.post_token(&first, &[]).await, "no signing key");
    assert_eq!(h.graph_count(), before);
    assert_eq!(
        k8s.key_fetches(),
        fetches + 2,
        "no second refresh within the interval"
    );
}

/// A caller presents the same token until it renews it: its signature is checked once,
/// and the token is still refused as soon as its key is no longer published. Counted by a
/// `graphgate serve` process of the test's own, so the figures are exact.
#[tokio::test]
async fn a_repeated_token_is_verified_once_and_refused_once_its_key_is_gone() {
    let backend = served::backend(emulator_config()).await;
    std::fs::write(backend.dir.join("policy.yaml"), policy(None, 1, "")).unwrap();
    let gw = backend.serve(backend.serve_command()).await;
    let mint = || {
        backend
            .emulator
            .service_account_token(NAMESPACE, SERVICE_ACCOUNT, &[AUDIENCE], 3600)
            .unwrap()
    };
    let accepted = |text: &str, check: &str| {
        metrics::value(
            text,
            &format!("graphgate_jwt_accepted_total{{check=\"{check}\"}}"),
        )
    };
    let token = mint();
    for _ in 0..20 {
        assert_eq!(gw.post(ACTION_PATH, &token, &body()).await.status, 204);
    }
    let m = gw.metrics().await;
    assert_eq!(accepted(&m, "signature"), 1.0, "one signature check");
    assert_eq!(accepted(&m, "cached"), 19.0);
    // The cluster rotates its key and stops publishing the old one; a new token makes
    // graphgate fetch the keys again.
    backend
        .emulator
        .kubernetes()
        .rotate(Algorithm::RS256, true)
        .unwrap();
    assert_eq!(gw.post(ACTION_PATH, &mint(), &body()).await.status, 204);
    let forwarded = backend.emulator.graph_requests().len();
    assert_token_refused(
        &gw.post(ACTION_PATH, &token, &body()).await,
        "no signing key",
    );
    assert_eq!(backend.emulator.graph_requests().len(), forwarded);
    let m = gw.metrics().await;
    assert_eq!(accepted(&m, "signature"), 2.0, "only the new token's");
    assert_eq!(accepted(&m, "cached"), 19.0);
    assert_eq!(
        metrics::value(&m, "graphgate_jwt_refusals_total{reason=\"unknown_key\"}"),
        1.0
    );
}

#[tokio::test]
async fn a_flood_of_unknown_kids_refreshes_the_keys_at_most_once_per_interval() {
    let j = start_jwt(60, "").await;
    let h = &j.h;
    let k8s = h.emulator.kubernetes();
    let good = sa_token(h);
    assert_eq!(h.post_token(&good, &[]).await.status, 204);
    let fetches = k8s.key_fetches();
    let metrics = Snapshot::now();
    let claims =
        graphgate_emulator::service_account_claims(NAMESPACE, SERVICE_ACCOUNT, &[AUDIENCE], 3600);
    let flood: Vec<_> = (0..40)
        .map(|i| {
            let token = k8s
                .mint_with_kid(&claims, &format!("invented-{i}"))
                .unwrap();
            let gateway = h.gateway;
            tokio::spawn(async move {
                let req = http::Request::post(format!("http://{gateway}{}", ACTION_PATH))
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {token}"))
                    .body(http_body_util::Full::new(bytes::Bytes::from(body())))
                    .unwrap();
                send_to(req).await
            })
        })
        .collect();
    for reply in flood {
        assert_token_refused(&reply.await.unwrap(), "no signing key");
    }
    assert_eq!(
        k8s.key_fetches(),
        fetches + 2,
        "exactly one refresh (discovery + JWKS) for 40 unknown kids"
    );
    let refused = metrics.delta(
        &Snapshot::now(),
        "graphgate_jwt_refusals_total{reason=\"unknown_key\"}",
    );
    assert!(refused >= 40.0, "{refused}");
    assert_eq!(
        h.post_token(&good, &[]).await.status,
        204,
        "the known key still works"
    );
}

/// A gateway that installs a new Kubernetes issuer (its settings changed, so its key store
/// starts empty) only after `fault` is set on the issuer's key endpoints: its first key
/// fetch meets the fault.
async fn cold_with_fault(fault: JwksFault) -> (JwtHarness, String) {
    let j = start_jwt(1, "").await;
    j.h.emulator.kubernetes().set_jwks_fault(Some(fault));
    let changed = j
        .policy(1, "")
        .replace("leeway_secs: 30", "leeway_secs: 31");
    j.h.gw
        .set_policy(graphgate::policy::Policy::from_yaml(&changed, "changed").unwrap());
    let token = sa_token(&j.h);
    (j, token)
}

#[tokio::test]
async fn with_no_keys_a_down_garbage_or_huge_key_endpoint_fails_closed_then_recovers() {
    for mode in [
        JwksMode::Down,
        JwksMode::Garbage,
        JwksMode::Huge,
        JwksMode::Status,
    ] {
        let (j, token) = cold_with_fault(JwksFault::new(mode)).await;
        let h = &j.h;
        let metrics = Snapshot::now();
        let before = h.graph_count();
        assert_token_refused(
            &h.post_token(&token, &[]).await,
            "keys of the token's issuer are not available",
        );
        assert_eq!(h.graph_count(), before, "{mode:?}: nothing forwarded");
        let later = Snapshot::now();
        assert!(
            metrics.delta(
                &later,
                "graphgate_jwt_refusals_total{reason=\"keys_unavailable\"}"
            ) >= 1.0
        );
        assert!(later.get("graphgate_jwt_key_fetches_total{result=\"error\"}") >= 1.0);
        // The endpoint mends: within the one-second back-off the next token is accepted.
        h.emulator.kubernetes().set_jwks_fault(None);
        let what = format!("{mode:?}: recovery");
        eventually(&what, Duration::from_secs(15), async || {
            (h.post_token(&token, &[]).await.status == 204).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_slow_key_endpoint_is_given_up_on_within_the_fetch_timeout() {
    let mut fault = JwksFault::new(JwksMode::Slow);
    fault.delay_ms = 10_000;
    let (j, token) = cold_with_fault(fault).await;
    let started = std::time::Instant::now();
    assert_token_refused(&j.h.post_token(&token, &[]).await, "not available");
    // Both the warm-up fetch and this request's waited at most the 2 s fetch timeout (the endpoint takes 10 s).
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_key_endpoint_that_goes_down_slow_or_bad_keeps_the_cached_keys_in_use() {
    let mut slow = JwksFault::new(JwksMode::Slow);
    slow.delay_ms = 10_000;
    let faults = [
        JwksFault::new(JwksMode::Down),
        JwksFault::new(JwksMode::Garbage),
        JwksFault::new(JwksMode::Huge),
        JwksFault::new(JwksMode::Status),
        slow,
    ];
    for fault in faults {
        let mode = fault.mode;
        let j = start_jwt(60, "").await;
        let h = &j.h;
        let k8s = h.emulator.kubernetes();
        let token = sa_token(h);
        assert_eq!(h.post_token(&token, &[]).await.status, 204, "{mode:?}");
        k8s.set_jwks_fault(Some(fault));
        // A rotation graphgate cannot fetch: the new kid is refused (401, not allowed, and
        // within the fetch timeout), the old keys keep working.
        let fetches = k8s.key_fetches();
        k8s.rotate(Algorithm::RS256, false).unwrap();
        let rotated = sa_token(h);
        let before = h.graph_count();
        let started = std::time::Instant::now();
        assert_token_refused(&h.post_token(&rotated, &[]).await, "no signing key");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{mode:?}: waited {:?} (fetch timeout 2 s)",
            started.elapsed()
        );
        assert_eq!(
            k8s.key_fetches(),
            fetches + 1,
            "{mode:?}: it tried (the discovery fetch failed)"
        );
        assert_token_refused(&h.post_token(&rotated, &[]).await, "no signing key");
        assert_eq!(
            k8s.key_fetches(),
            fetches + 1,
            "{mode:?}: no second try within the interval"
        );
        assert_eq!(h.graph_count(), before, "{mode:?}: nothing forwarded");
        let old_key = h.emulator.kubernetes().mint_with_kid(
            &graphgate_emulator::service_account_claims(
                NAMESPACE,
                SERVICE_ACCOUNT,
                &[AUDIENCE],
                3600,
            ),
            emu::jwt_part(&token, 0)["kid"].as_str().unwrap(),
        );
        // (That token is signed by the new key under the old kid: a forgery, refused.)
        assert_token_refused(&h.post_token(&old_key.unwrap(), &[]).await, "signature");
        let reply = h.post_token(&token, &[]).await;
        assert_eq!(
            reply.status, 204,
            "{mode:?}: the cached key still verifies: {:?}",
            reply.body
        );
    }
}

/// Key fetches (discovery + JWKS documents served by the emulated cluster) while `n`
/// requests, made by `token_for(i)`, are answered with `status` (dry runs: the policy's
/// answer, nothing sent).
async fn fetches_over(
    h: &Harness,
    n: usize,
    status: u16,
    token_for: impl Fn(usize) -> String,
) -> u64 {
    let k8s = h.emulator.kubernetes();
    let before = k8s.key_fetches();
    for i in 0..n {
        let reply = h.post_token(&token_for(i), &[("prefer", "dry-run")]).await;
        assert_eq!(reply.status, status, "request {i}: {:?}", reply.body);
    }
    k8s.key_fetches() - before
}

/// The JWKS cache's behaviour, per 1,000 requests: a warm cache fetches nothing; a key
/// rotation costs one refresh (2 documents: discovery and JWKS); 1,000 tokens with invented
/// key ids cost one refresh, not 1,000. The figures are printed (`--nocapture`).
#[tokio::test]
async fn key_fetches_per_thousand_requests_warm_rotated_and_flooded() {
    // Thousands of dry runs from one caller: its dry-run rate raised out of the way.
    let fast_dry_runs = || Options {
        limits: graphgate::gateway::Limits {
            dry_runs_per_sec: 1_000_000,
            ..Default::default()
        },
        ..Options::default()
    };
    let j = start_jwt_with(60, "", fast_dry_runs()).await;
    let h = &j.h;
    let k8s = h.emulator.kubernetes();
    let mint = || sa_token(h);
    let token = mint();
    // Cold start: the policy's warm-up (or the first token) loads the keys once.
    fetches_over(h, 1, 200, |_| token.clone()).await;
    let cold = k8s.key_fetches();
    assert_eq!(cold, 2, "discovery and JWKS, once");
    let warm = fetches_over(h, 1_000, 200, |_| token.clone()).await;
    assert_eq!(warm, 0, "a warm cache fetches nothing");
    // The cluster rotates its signing key (the old one stays published); new tokens name it.
    k8s.rotate(Algorithm::RS256, false).unwrap();
    let rotated = mint();
    let rotation = fetches_over(h, 1_000, 200, |_| rotated.clone()).await;
    assert_eq!(rotation, 2, "one refresh: discovery and JWKS");
    // A flood of invented key ids, once the unknown-kid interval has passed (a fresh
    // gateway, so the rotation's refresh does not hide it).
    let f = start_jwt_with(60, "", fast_dry_runs()).await;
    let good =
        f.h.emulator
            .service_account_token(NAMESPACE, SERVICE_ACCOUNT, &[AUDIENCE], 3600);
    let good = good.unwrap();
    fetches_over(&f.h, 1, 200, |_| good.clone()).await;
    let claims =
        graphgate_emulator::service_account_claims(NAMESPACE, SERVICE_ACCOUNT, &[AUDIENCE], 3600);
    let fk8s = f.h.emulator.kubernetes();
    let flood = fetches_over(&f.h, 1_000, 401, |i| {
        fk8s.mint_with_kid(&claims, &format!("invented-{i}"))
            .unwrap()
    })
    .await;
    assert_eq!(flood, 2, "exactly one refresh for 1,000 unknown kids");
    let figures = format!(
        "JWKS key-document fetches: cold start {cold} (discovery + JWKS), then per 1,000 requests: warm cache {warm}, after a key rotation {rotation}, 1,000 invented kids {flood}\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), figures.as_bytes());
}
