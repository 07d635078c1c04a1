//! Hostile tokens and statements: `alg: none`, HS256 signed with the issuer's public key,
//! a valid token for another audience, a token of another issuer with a trusted kid,
//! expired and not-yet-valid tokens, an oversized token, a token and an API key together,
//! and an initiator or reason carrying CR/LF, other controls or 10 KB of text. Each gets a
//! Graph-shaped 401 or 400, nothing is forwarded, and the refusal is counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::common;

use common::jwt::*;
use common::metrics::Snapshot;
use common::*;
use graphgate_emulator::service_account_claims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn claims() -> Value {
    service_account_claims(NAMESPACE, SERVICE_ACCOUNT, &[AUDIENCE], 3600)
}

/// Sends `token`, asserts the 401 (message part, refusal label counted), nothing forwarded.
async fn refused(j: &JwtHarness, token: &str, message: &str, label: &str) {
    let h = &j.h;
    let before = h.graph_count();
    let metrics = Snapshot::now();
    let reply = h.post_token(token, &[]).await;
    assert_token_refused(&reply, message);
    assert_eq!(h.graph_count(), before, "{label}: nothing forwarded");
    let series = format!("graphgate_jwt_refusals_total{{reason=\"{label}\"}}");
    assert!(
        metrics.delta(&Snapshot::now(), &series) >= 1.0,
        "{series} counted"
    );
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let j = start_jwt(60, "").await;
    let h = &j.h;
    let k8s = h.emulator.kubernetes();
    let good = sa_token(h);
    assert_eq!(h.post_token(&good, &[]).await.status, 204);
    let kid = emu::jwt_part(&good, 0)["kid"].as_str().unwrap().to_owned();

    // Unsigned.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": kid})),
        b64(&claims())
    );
    refused(&j, &none, "algorithm is not accepted", "algorithm").await;
    // HS256 with the issuer's published public key as the HMAC secret.
    let public = k8s.jwks().unwrap()["keys"][0].to_string();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.clone());
    let key = EncodingKey::from_secret(public.as_bytes()).unwrap();
    let hs256 = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
    refused(&j, &hs256, "algorithm is not accepted", "algorithm").await;
    // Another issuer's key, under a kid the trusted issuer publishes: the cluster gets an
    // ES256 key, and the SPIFFE domain's key signs a token naming that kid and the cluster.
    let es_kid = k8s.rotate(Algorithm::ES256, false).unwrap();
    let es_good = sa_token(h);
    assert_eq!(
        h.post_token(&es_good, &[]).await.status,
        204,
        "the cluster's ES256 key works"
    );
    let impostor = h
        .emulator
        .spiffe()
        .mint_with_kid(&claims(), &es_kid)
        .unwrap();
    refused(&j, &impostor, "signature is not valid", "signature").await;
    // The same token body under an issuer graphgate does not trust.
    let mut foreign = claims();
    foreign["iss"] = json!("https://kubernetes.attacker.example");
    let foreign = k8s.mint(&foreign).unwrap();
    refused(
        &j,
        &foreign,
        "issuer is not one graphgate trusts",
        "untrusted_issuer",
    )
    .await;
    // A signature cut short, and a header that is not JSON.
    let truncated = &good[..good.len() - 8];
    refused(&j, truncated, "signature is not valid", "signature").await;
    let garbage = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode("not json"),
        b64(&claims())
    );
    refused(&j, &garbage, "not a well-formed JWT", "malformed").await;
}

#[tokio::test]
async fn tokens_outside_their_lifetime_audience_or_size_are_refused() {
    let j = start_jwt(60, "").await;
    let k8s = j.h.emulator.kubernetes();
    let mut expired = claims();
    expired["exp"] = json!(expired["iat"].as_i64().unwrap() - 31);
    refused(&j, &k8s.mint(&expired).unwrap(), "has expired", "expired").await;
    let mut early = claims();
    early["nbf"] = json!(early["iat"].as_i64().unwrap() + 3600);
    refused(
        &j,
        &k8s.mint(&early).unwrap(),
        "not valid yet",
        "not_yet_valid",
    )
    .await;
    let mut future = claims();
    future["iat"] = json!(future["iat"].as_i64().unwrap() + 3600);
    refused(
        &j,
        &k8s.mint(&future).unwrap(),
        "issued in the future",
        "issued_in_future",
    )
    .await;
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    refused(
        &j,
        &k8s.mint(&no_exp).unwrap(),
        "has expired (or has no 'exp')",
        "expired",
    )
    .await;
    // Within the 30 s leeway, a token that just expired is still accepted.
    let mut just = claims();
    just["exp"] = json!(just["iat"].as_i64().unwrap() - 5);
    assert_eq!(
        j.h.post_token(&k8s.mint(&just).unwrap(), &[]).await.status,
        204
    );

    let other = service_account_claims(NAMESPACE, SERVICE_ACCOUNT, &["vault"], 3600);
    refused(
        &j,
        &k8s.mint(&other).unwrap(),
        "not for graphgate",
        "audience",
    )
    .await;
    let mut big = claims();
    big["padding"] = json!("x".repeat(20 * 1024));
    refused(
        &j,
        &k8s.mint(&big).unwrap(),
        "longer than 16 KiB",
        "too_large",
    )
    .await;
    // A valid token of a trusted issuer whose subject is no caller.
    let stranger =
        j.h.emulator
            .service_account_token("rooms", "someone-else", &[AUDIENCE], 3600)
            .unwrap();
    refused(&j, &stranger, "names no caller", "no_caller").await;
}

#[tokio::test]
async fn a_token_and_an_api_key_in_one_request_are_refused() {
    let j = start_jwt(60, "").await;
    let h = &j.h;
    let token = sa_token(h);
    let before = h.graph_count();
    let metrics = Snapshot::now();
    for (first, second) in [(token.as_str(), ROTATOR_KEY), (ROTATOR_KEY, token.as_str())] {
        let req = h
            .request(ACTION_PATH)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {first}"))
            .header("authorization", format!("Bearer {second}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(body())))
            .unwrap();
        let reply = h.send(req).await;
        reply.assert_graph_error(401, "InvalidAuthenticationToken");
        assert_eq!(
            reply.headers["www-authenticate"],
            r#"Bearer realm="graphgate""#
        );
        assert!(
            reply.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("single 'Bearer")
        );
    }
    // Both in one header value is neither a key nor a token.
    let both = format!("{token} {ROTATOR_KEY}");
    let reply = h.post_token(&both, &[]).await;
    reply.assert_graph_error(401, "InvalidAuthenticationToken");
    assert_eq!(h.graph_count(), before, "nothing forwarded");
    let delta = metrics.delta(
        &Snapshot::now(),
        &metrics::errors("InvalidAuthenticationToken"),
    );
    assert!(delta >= 3.0, "{delta}");
}

/// Sends the API-key call with `headers`, asserts the Graph-shaped 400 and that nothing was
/// forwarded, and returns the error message.
async fn bad_statement(h: &Harness, headers: &[(&str, &[u8])], label: &str) -> String {
    let before = h.graph_count();
    let metrics = Snapshot::now();
    let mut req = h
        .request(ACTION_PATH)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ROTATOR_KEY}"));
    for (name, value) in headers {
        req = req.header(*name, http::HeaderValue::from_bytes(value).unwrap());
    }
    let reply = h
        .send(
            req.body(http_body_util::Full::new(bytes::Bytes::from(body())))
                .unwrap(),
        )
        .await;
    reply.assert_graph_error(400, "invalidRequest");
    assert_eq!(h.graph_count(), before, "nothing forwarded");
    let series = format!("graphgate_context_refusals_total{{reason=\"{label}\"}}");
    assert!(metrics.delta(&Snapshot::now(), &series) >= 1.0, "{series}");
    let record = h.audit_records().await.pop().unwrap();
    assert_eq!(
        (record["status"].as_u64(), record["decision"].as_str()),
        (Some(400), Some("invalid"))
    );
    assert!(
        record.get("initiator").is_none() && record.get("reason").is_none(),
        "{record}"
    );
    reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn initiators_and_reasons_with_controls_or_too_much_text_are_refused() {
    let h = start().await;
    let big = "a".repeat(10 * 1024);
    let ten_kb_upn = format!("{}@contoso.com", "a".repeat(10 * 1024));
    for (name, value, label) in [
        (
            "x-graphgate-initiator",
            ten_kb_upn.as_bytes(),
            "bad_initiator",
        ),
        (
            "x-graphgate-initiator",
            b"alice@contoso.com\tbob@contoso.com".as_slice(),
            "bad_initiator",
        ),
        (
            "x-graphgate-initiator",
            "alice@contoso.com\u{2028}".as_bytes(),
            "bad_initiator",
        ),
        ("x-graphgate-reason", big.as_bytes(), "bad_reason"),
        (
            "x-graphgate-reason",
            "CHG-1\u{85}X-Injected: 1".as_bytes(),
            "bad_reason",
        ),
        (
            "x-graphgate-reason",
            "CHG-1\u{202e}1-GHC".as_bytes(),
            "bad_reason",
        ),
    ] {
        let message = bad_statement(&h, &[(name, value)], label).await;
        assert!(
            !message.contains("bob@") && !message.contains("aaaa"),
            "never echoed: {message}"
        );
    }
    let twice = bad_statement(
        &h,
        &[("x-graphgate-reason", b"a"), ("x-graphgate-reason", b"b")],
        "repeated",
    )
    .await;
    assert!(twice.contains("sent more than once"), "{twice}");
    // CR and LF cannot even reach graphgate in a header: HTTP/1.1 framing refuses them
    // (hyper answers 400 before any handler runs). In a simplified-API body they arrive
    // JSON-escaped, and are refused there.
    let before = h.graph_count();
    let simple = format!("/api/v1/managedDevices/{DEVICE}/updateWindowsDeviceAccount");
    let flat = r#"{"deviceAccountEmail":"room1@contoso.com","password":"p","initiator":"alice@contoso.com\r\nX-Evil: 1"}"#;
    let reply = h.post(&simple, Some(ROTATOR_KEY), flat).await;
    reply.assert_graph_error(400, "invalidRequest");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the 'initiator' field")
    );
    let mut raw = tokio::net::TcpStream::connect(h.gateway).await.unwrap();
    let request = format!(
        "POST {ACTION_PATH} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {ROTATOR_KEY}\r\nContent-Type: application/json\r\nX-Graphgate-Initiator: alice@contoso.com\r\n X-Evil: folded\r\nContent-Length: {}\r\n\r\n{}",
        body().len(),
        body()
    );
    tokio::io::AsyncWriteExt::write_all(&mut raw, request.as_bytes())
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut raw, std::time::Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(closed);
    assert_eq!(h.graph_count(), before, "nothing forwarded");
}
