//! Forged OpenID discovery documents for a trusted Entra issuer: one naming another issuer
//! is refused (OpenID Connect Discovery §4.3), and one sending key fetches to another host
//! is refused while the issuer's JWKS host is pinned (the default for Entra); with
//! `pin_jwks_host: false` the keys are fetched where it says. Tokens are refused (401) while
//! no trustworthy keys are had, nothing is forwarded, and the issuer's own documents bring
//! them back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use crate::common;

use common::jwt::*;
use graphgate::cloud::Cloud;
use graphgate::policy::Policy;
use graphgate_emulator::KUBERNETES_JWKS_URL;

/// `text` with every Entra issuer given the settings of `extra` (a map): new settings, new
/// key stores, so their keys are fetched again (through whatever the discovery documents
/// now say).
fn entra_issuers_with(text: &str, extra: serde_json::Value) -> String {
    let mut changed = 0;
    let policy = common::TestPolicy::parse(text).with_each("jwt_issuers", |issuer| {
        let is_entra = issuer["issuer"]
            .as_str()
            .is_some_and(graphgate::policy::jwt::is_entra_issuer);
        if is_entra {
            issuer.extend(extra.as_object().unwrap().clone());
            changed += 1;
        }
    });
    assert!(changed > 0, "no Entra issuer in {text}");
    policy.yaml()
}

async fn refused_unsent(h: &common::Harness, token: &str) {
    let before = h.graph_count();
    let reply = h.post_token(token, &[]).await;
    assert_token_refused(&reply, "");
    assert_eq!(h.graph_count(), before, "nothing forwarded");
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_gives_no_keys() {
    let j = start_jwt(60, "").await;
    let h = &j.h;
    let token = h.client_credentials(Cloud::Global, API_V2_URI).await;
    assert_eq!(h.post_token(&token, &[]).await.status, 204);
    let other = "https://login.microsoftonline.com/00000000-0000-4000-8000-000000000bad/v2.0";
    h.emulator
        .set_entra_discovery_override(Some(json!({ "issuer": other })));
    let policy = entra_issuers_with(&j.policy(60, ""), json!({"fetch_timeout_ms": 4000}));
    h.gw.set_policy(Policy::from_yaml(&policy, "forged").unwrap());
    refused_unsent(h, &token).await;
    let record = h.last_record().await;
    assert_eq!(record["decision"], "unauthenticated");
    assert_eq!(record["note"], "token refused: keys_unavailable");
    // The issuer's own document again: its keys, and the token is taken.
    h.emulator.set_entra_discovery_override(None);
    let policy = entra_issuers_with(&j.policy(60, ""), json!({"fetch_timeout_ms": 4500}));
    h.gw.set_policy(Policy::from_yaml(&policy, "true").unwrap());
    assert_eq!(h.post_token(&token, &[]).await.status, 204);
}

#[tokio::test]
async fn a_discovery_document_sending_key_fetches_elsewhere_is_not_followed_while_pinned() {
    let j = start_jwt(60, "").await;
    let h = &j.h;
    // The Kubernetes issuer's keys are loaded; its key endpoint stands for "another host".
    assert_eq!(h.post_token(&sa_token(h), &[]).await.status, 204);
    let elsewhere = || h.emulator.kubernetes().key_fetches();
    let token = h.client_credentials(Cloud::Global, API_V2_URI).await;
    h.emulator
        .set_entra_discovery_override(Some(json!({ "jwks_uri": KUBERNETES_JWKS_URL })));
    // Pinned (the default for Entra): the other host is never asked.
    let before = elsewhere();
    let pinned = entra_issuers_with(&j.policy(60, ""), json!({"fetch_timeout_ms": 4000}));
    h.gw.set_policy(Policy::from_yaml(&pinned, "pinned").unwrap());
    refused_unsent(h, &token).await;
    assert_eq!(elsewhere(), before, "no key fetch from another host");
    // Unpinned on purpose: the keys are fetched where the document says (and the Entra
    // token's key is not among them).
    let unpinned = entra_issuers_with(
        &j.policy(60, ""),
        json!({"fetch_timeout_ms": 4000, "pin_jwks_host": false}),
    );
    h.gw.set_policy(Policy::from_yaml(&unpinned, "unpinned").unwrap());
    refused_unsent(h, &token).await;
    assert!(elsewhere() > before, "fetched from the other host");
}
