//! Callers that present a JWT: an Entra access token, a Kubernetes service-account token or
//! a SPIFFE JWT-SVID. The token's issuer must be one the policy trusts; its signature is
//! checked with that issuer's keys only ([`store`], fetched by [`fetch`], read by [`jwks`]);
//! then audience and time ([`verify`]); then its claims must name exactly one policy caller.
//! A token seen before skips only its signature check (its `cache` module).

mod cache;
pub mod fetch;
pub mod jwks;
pub mod store;
pub mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::policy::{JwtIssuer, Person, Policy};
use cache::{Trusted, VerifiedTokens};
use store::{KeyMiss, KeySet, KeyStore};
pub use verify::{MAX_TOKEN_BYTES, TokenRefusal, fingerprint, looks_like_jwt};

/// A token that verified, and whose caller it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Index into [`Policy::callers`].
    pub caller: usize,
    /// The issuer that vouched for it (as the policy writes it).
    pub issuer: String,
    /// Its `sub`.
    pub subject: Option<String>,
    /// Hex SHA-256 of the token.
    pub fingerprint: String,
    /// The signed-in user, for a delegated token.
    pub user: Option<TokenUser>,
}

/// The user of a delegated token (one with `scp` and the user's `oid`): the person the
/// caller acts for, known by its object id and, when the token has one, its `upn`.
/// `preferred_username` is never taken: the user may change it, and Microsoft says it is
/// not for authorisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUser {
    /// The user's object id (lower case).
    pub oid: String,
    /// The user's principal name (`upn`), if the token has one that is an address.
    pub upn: Option<String>,
}

impl TokenUser {
    /// The initiator recorded for this user: the UPN, else the object id.
    pub fn initiator(&self) -> &str {
        self.upn.as_deref().unwrap_or(&self.oid)
    }

    /// The person, by both ids where the token names both.
    pub fn person(&self) -> Person {
        Person {
            upn: self.upn.clone(),
            oid: Some(self.oid.clone()),
        }
    }

    /// Whether a stated initiator (UPN or object id) names this user.
    pub fn is(&self, stated: &str) -> bool {
        stated.eq_ignore_ascii_case(&self.oid)
            || self
                .upn
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(stated))
    }

    /// The user of a token: `None` for an app-only token. A token that says it is delegated
    /// (it has `scp`, or `idtyp: user`) must name its user by a GUID `oid` and must not also
    /// say it is an app's: one that does not is refused, never taken as app-only.
    fn of(claims: &serde_json::Map<String, Value>) -> Result<Option<TokenUser>, TokenRefusal> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let idtyp = claims.get("idtyp");
        let delegated = claims.contains_key("scp") || idtyp.is_some_and(|t| t == "user");
        if !delegated {
            return Ok(None);
        }
        let oid = text("oid").filter(|o| crate::operation::route::is_guid(o));
        let (Some(oid), false) = (oid, idtyp.is_some_and(|t| t == "app")) else {
            return Err(TokenRefusal::DelegatedWithoutUser);
        };
        let upn = text("upn").filter(|u| crate::operation::schema::screen::is_address(u));
        Ok(Some(TokenUser {
            oid: oid.to_ascii_lowercase(),
            upn: upn.map(str::to_owned),
        }))
    }
}

/// The key stores of one policy's issuers, in the order of [`Policy::jwt_issuers`], and the
/// tokens verified under that policy.
#[derive(Debug, Default, Clone)]
pub struct TokenIssuers {
    stores: Vec<Arc<KeyStore>>,
    verified: VerifiedTokens,
}

impl TokenIssuers {
    /// The store of issuer `index`.
    pub fn store(&self, index: usize) -> Option<&Arc<KeyStore>> {
        self.stores.get(index)
    }

    /// Loads every issuer's keys that are not cached yet, in the background (when a tokio
    /// runtime is running), so the first token does not wait for them.
    pub fn warm(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for store in &self.stores {
            if store.cached().is_none() {
                let store = Arc::clone(store);
                runtime.spawn(async move { store.warm().await });
            }
        }
    }
}

/// Key stores that outlive policy reloads: an issuer whose settings are unchanged keeps
/// its store (and so its cached keys).
pub struct IssuerRegistry {
    loader: Arc<dyn fetch::KeyLoader>,
    stores: Mutex<HashMap<JwtIssuer, Weak<KeyStore>>>,
}

impl IssuerRegistry {
    /// A registry fetching keys through `loader`.
    pub fn new(loader: Arc<dyn fetch::KeyLoader>) -> Self {
        IssuerRegistry {
            loader,
            stores: Mutex::new(HashMap::new()),
        }
    }

    /// The stores for `policy`'s issuers: existing ones where the settings match.
    pub fn for_policy(&self, policy: &Policy) -> TokenIssuers {
        let mut stores = self
            .stores
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        stores.retain(|_, store| store.strong_count() > 0);
        let list = policy
            .jwt_issuers
            .iter()
            .map(|issuer| {
                if let Some(store) = stores.get(issuer).and_then(Weak::upgrade) {
                    return store;
                }
                let store = KeyStore::new(issuer.clone(), Arc::clone(&self.loader));
                stores.insert(issuer.clone(), Arc::downgrade(&store));
                store
            })
            .collect();
        TokenIssuers {
            stores: list,
            verified: VerifiedTokens::default(),
        }
    }
}

/// Verifies `token` and finds its caller; `now` is the Unix time. Fetches the issuer's
/// keys when the cache lacks the token's key id and a fetch is allowed (see [`store`]).
/// A token whose signature verified before, with the keys the issuer has now, is not
/// verified again; everything else is checked on every call.
pub async fn authenticate(
    policy: &Policy,
    issuers: &TokenIssuers,
    token: &str,
    now: i64,
) -> Result<Verified, TokenRefusal> {
    let digest = digest(token)?;
    if let Some(known) = recall(policy, issuers, &digest, now) {
        return known;
    }
    let prepared = prepare(policy, token)?;
    let kid = prepared.parsed.kid()?;
    let store = issuers
        .store(prepared.issuer)
        .ok_or(TokenRefusal::KeysUnavailable)?;
    let keys = store.keys_for(kid).await.map_err(|miss| match miss {
        KeyMiss::UnknownKey => TokenRefusal::UnknownKey,
        KeyMiss::Unavailable => TokenRefusal::KeysUnavailable,
    })?;
    verify_new(policy, issuers, prepared, &keys, &digest, now)
}

/// [`authenticate`] with the cached keys only, never fetching: the hot path of a caller
/// whose issuer's keys are warm.
pub fn authenticate_cached(
    policy: &Policy,
    issuers: &TokenIssuers,
    token: &str,
    now: i64,
) -> Result<Verified, TokenRefusal> {
    let digest = digest(token)?;
    if let Some(known) = recall(policy, issuers, &digest, now) {
        return known;
    }
    let prepared = prepare(policy, token)?;
    let keys = issuers
        .store(prepared.issuer)
        .and_then(|s| s.cached())
        .ok_or(TokenRefusal::KeysUnavailable)?;
    verify_new(policy, issuers, prepared, &keys, &digest, now)
}

/// The token's SHA-256 (what the cache is keyed by and the audit's fingerprint), for a
/// token no longer than [`MAX_TOKEN_BYTES`].
fn digest(token: &str) -> Result<[u8; 32], TokenRefusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenRefusal::TooLarge);
    }
    Ok(Sha256::digest(token.as_bytes()).into())
}

/// A token verified before: its caller, if its issuer still holds the key set that verified
/// it (a background refresh is started as on any use of stale keys). `None` sends the token
/// through the full check.
fn recall(
    policy: &Policy,
    issuers: &TokenIssuers,
    digest: &[u8; 32],
    now: i64,
) -> Option<Result<Verified, TokenRefusal>> {
    let trusted = issuers.verified.get(digest)?;
    let store = issuers.store(trusted.issuer)?;
    match store.cached() {
        Some(keys) if trusted.verified_with(&keys) => store.refresh_if_stale(&keys),
        _ => {
            issuers.verified.remove(digest);
            return None;
        }
    }
    let verified = accept(policy, trusted.issuer, &trusted.claims, digest, now);
    if verified.is_ok() {
        crate::metrics::jwt_accepted(true);
    }
    Some(verified)
}

/// A token read, its issuer picked and its algorithm accepted by that issuer.
struct Prepared<'t> {
    parsed: verify::Parsed<'t>,
    /// Index into the policy's `jwt_issuers`.
    issuer: usize,
    alg: jsonwebtoken::Algorithm,
}

/// Reads the token, picks its issuer, and checks its algorithm is one that issuer accepts.
fn prepare<'t>(policy: &Policy, token: &'t str) -> Result<Prepared<'t>, TokenRefusal> {
    let parsed = verify::parse(token)?;
    let index = policy
        .jwt_issuer_for(parsed.str_claim("iss"), parsed.str_claim("sub"))
        .ok_or(TokenRefusal::UntrustedIssuer)?;
    let issuer = policy
        .jwt_issuers
        .get(index)
        .ok_or(TokenRefusal::UntrustedIssuer)?;
    let alg = parsed.algorithm(&issuer.algorithms)?;
    Ok(Prepared {
        parsed,
        issuer: index,
        alg,
    })
}

/// Signature, then the rest ([`accept`]); a token that passes is remembered.
fn verify_new(
    policy: &Policy,
    issuers: &TokenIssuers,
    Prepared {
        parsed,
        issuer: index,
        alg,
    }: Prepared<'_>,
    keys: &Arc<KeySet>,
    digest: &[u8; 32],
    now: i64,
) -> Result<Verified, TokenRefusal> {
    let candidates = keys.get(parsed.kid()?);
    if candidates.is_empty() {
        return Err(TokenRefusal::UnknownKey);
    }
    parsed.verify(candidates, alg)?;
    let verified = accept(policy, index, &parsed.claims, digest, now)?;
    crate::metrics::jwt_accepted(false);
    let bytes = parsed.token_len();
    if let Some(trusted) = Trusted::new(index, keys, parsed.claims, bytes, now) {
        issuers.verified.insert(*digest, trusted);
    }
    Ok(verified)
}

/// What follows a good signature, on every use of a token: the issuer's claim rules
/// (audience, time), the user of a delegated token, and the one caller the claims name.
fn accept(
    policy: &Policy,
    index: usize,
    claims: &Map<String, Value>,
    digest: &[u8; 32],
    now: i64,
) -> Result<Verified, TokenRefusal> {
    let issuer = policy
        .jwt_issuers
        .get(index)
        .ok_or(TokenRefusal::UntrustedIssuer)?;
    verify::check_claims(claims, issuer, now)?;
    let user = TokenUser::of(claims)?;
    let caller = policy
        .jwt_caller(index, |name| verify::caller_claim(claims, name))
        .ok_or(TokenRefusal::NoCaller)?;
    Ok(Verified {
        caller,
        issuer: issuer.issuer.clone(),
        subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
        fingerprint: crate::policy::hex(digest),
        user,
    })
}

/// The current Unix time, in seconds, for token validation.
pub fn unix_now() -> i64 {
    crate::clock::utc_now().timestamp()
}

#[cfg(test)]
mod tests;
