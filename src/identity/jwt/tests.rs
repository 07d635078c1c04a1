//! The verified-token cache against the emulated cluster's real signatures: a repeated
//! token skips only its signature check (time and caller are checked on every use), a
//! changed token or key set goes through the full check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use graphgate_emulator::{Emulator, EmulatorConfig, KUBERNETES_ISSUER};
use jsonwebtoken::Algorithm;

use super::*;
use crate::upstream::BoxFuture;

/// Serves whatever keys the emulated cluster publishes at the time of the fetch.
struct Cluster(Arc<Emulator>);

impl fetch::KeyLoader for Cluster {
    fn load<'a>(
        &'a self,
        _: &'a JwtIssuer,
    ) -> BoxFuture<'a, Result<jwks::KeyMap, fetch::FetchError>> {
        let published = self.0.kubernetes().jwks().unwrap().to_string();
        let keys = jwks::parse(published.as_bytes()).unwrap();
        Box::pin(async move { Ok(keys) })
    }
}

/// An emulator, a policy trusting its cluster (no leeway) with one caller, and the
/// policy's key stores, warm.
async fn cluster() -> (Arc<Emulator>, Policy, TokenIssuers) {
    let emulator = Emulator::new(EmulatorConfig::default()).unwrap();
    let text = format!(
        "version: 1\njwt_issuers:\n  - issuer: {KUBERNETES_ISSUER}\n    audiences: [graphgate]\n    keys: {{ jwks_url: {KUBERNETES_ISSUER}/openid/v1/jwks }}\n    leeway_secs: 0\n    unknown_kid_refresh_secs: 1\ncallers:\n  - name: k8s\n    jwt: {{ issuer: {KUBERNETES_ISSUER}, subject: \"system:serviceaccount:rooms:rotator\" }}\n"
    );
    let policy = Policy::from_yaml(&text, "test").unwrap();
    let registry = IssuerRegistry::new(Arc::new(Cluster(Arc::clone(&emulator))));
    let issuers = registry.for_policy(&policy);
    issuers.store(0).unwrap().warm().await;
    (emulator, policy, issuers)
}

fn token(emulator: &Emulator) -> String {
    emulator
        .service_account_token("rooms", "rotator", &["graphgate"], 3600)
        .unwrap()
}

fn cached(issuers: &TokenIssuers, token: &str) -> bool {
    issuers.verified.get(&digest(token).unwrap()).is_some()
}

#[tokio::test]
async fn a_repeated_token_skips_its_signature_check_but_never_its_lifetime() {
    let (emulator, policy, issuers) = cluster().await;
    let token = token(&emulator);
    let now = unix_now();
    let first = authenticate(&policy, &issuers, &token, now).await.unwrap();
    assert!(cached(&issuers, &token), "a verified token is remembered");
    let again = authenticate(&policy, &issuers, &token, now).await.unwrap();
    assert_eq!(
        again, first,
        "the same caller, issuer, subject and fingerprint"
    );
    assert_eq!(first.fingerprint, verify::fingerprint(&token));
    // Still remembered an hour on, but refused: its exp is checked on every use.
    assert_eq!(
        authenticate(&policy, &issuers, &token, now + 3601).await,
        Err(TokenRefusal::Expired)
    );
    assert_eq!(
        authenticate_cached(&policy, &issuers, &token, now + 3601),
        Err(TokenRefusal::Expired)
    );
    // The same claims with another signature are another token: checked, and refused.
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{signed}.{flipped}{}", &signature[1..]);
    assert_eq!(
        authenticate(&policy, &issuers, &forged, now).await,
        Err(TokenRefusal::Signature)
    );
    assert!(!cached(&issuers, &forged));
}

#[tokio::test]
async fn a_token_verified_with_keys_since_replaced_is_checked_again() {
    let (emulator, policy, issuers) = cluster().await;
    let old = token(&emulator);
    authenticate(&policy, &issuers, &old, unix_now())
        .await
        .unwrap();
    assert!(cached(&issuers, &old));
    // The cluster rotates its key and stops publishing the old one; a token naming the new
    // key makes graphgate fetch the keys again.
    emulator
        .kubernetes()
        .rotate(Algorithm::RS256, true)
        .unwrap();
    let new = token(&emulator);
    authenticate(&policy, &issuers, &new, unix_now())
        .await
        .unwrap();
    // The remembered token was verified with the old key set: it is checked again, and its
    // key is gone.
    assert_eq!(
        authenticate(&policy, &issuers, &old, unix_now()).await,
        Err(TokenRefusal::UnknownKey)
    );
    assert!(!cached(&issuers, &old), "forgotten once its keys changed");
}
