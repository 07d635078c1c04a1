//! One presented token, read and checked without I/O: its shape and size, its header (the
//! algorithm and key id), its claims, its signature against a key, and the issuer's rules
//! on audience and time. Nothing here trusts a claim before the signature has been checked,
//! except `iss`/`sub` to pick the issuer whose keys must verify it.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jwks::VerifyingKey;
use crate::policy::JwtIssuer;
use crate::policy::jwt::normalise_claim;

/// Largest token read (an Entra token with 200 group ids is about 11 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. Each has a metric label; messages never repeat the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is longer than 16 KiB")]
    TooLarge,
    /// Not three base64url parts, or a header or payload that is not a JSON object.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// `alg` is not one the issuer accepts, or does not fit the key it names.
    #[error(
        "the token's algorithm is not accepted: RS256, PS256 or ES256 as the issuer allows, matching its key (never 'none' or HMAC)"
    )]
    Algorithm,
    /// The header names extensions (`crit`) or encryption graphgate does not implement.
    #[error(
        "the token's header asks for extensions graphgate does not implement ('crit', 'enc', 'zip')"
    )]
    Unsupported,
    /// No issuer in the policy vouches for it.
    #[error("the token's issuer is not one graphgate trusts")]
    UntrustedIssuer,
    /// No `kid`, or none of the issuer's keys has it (after a refresh, if one was allowed).
    #[error("no signing key of the token's issuer has the token's key id ('kid')")]
    UnknownKey,
    /// The issuer's keys could not be obtained and none are cached.
    #[error("the keys of the token's issuer are not available; try again shortly")]
    KeysUnavailable,
    /// The signature does not verify.
    #[error("the token's signature is not valid")]
    Signature,
    /// No `aud` the issuer accepts.
    #[error("the token is not for graphgate: its audience is not accepted")]
    Audience,
    /// `exp` has passed (beyond the leeway), or there is no `exp`.
    #[error("the token has expired (or has no 'exp')")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("the token is not valid yet ('nbf')")]
    NotYetValid,
    /// `iat` is ahead (beyond the leeway).
    #[error("the token claims to be issued in the future ('iat')")]
    IssuedInFuture,
    /// A JWT-SVID whose `sub` is not a SPIFFE id of the trust domain.
    #[error("the token's subject is not a SPIFFE id of its trust domain")]
    Subject,
    /// A delegated (user) token (`scp`, or `idtyp: user`) that names no user by a GUID
    /// `oid`, or also says it is an app's (`idtyp: app`).
    #[error(
        "the token is a delegated (user) token without the user's object id ('oid'); it is not taken as an app's"
    )]
    DelegatedWithoutUser,
    /// Valid, but no policy caller is its subject.
    #[error("the token is valid but names no caller in the policy")]
    NoCaller,
}

impl TokenRefusal {
    /// The bounded label for metrics and audit notes.
    pub fn label(self) -> &'static str {
        use TokenRefusal as R;
        match self {
            R::TooLarge => "too_large",
            R::Malformed => "malformed",
            R::Algorithm => "algorithm",
            R::Unsupported => "unsupported",
            R::UntrustedIssuer => "untrusted_issuer",
            R::UnknownKey => "unknown_key",
            R::KeysUnavailable => "keys_unavailable",
            R::Signature => "signature",
            R::Audience => "audience",
            R::Expired => "expired",
            R::NotYetValid => "not_yet_valid",
            R::IssuedInFuture => "issued_in_future",
            R::Subject => "subject",
            R::DelegatedWithoutUser => "delegated_without_user",
            R::NoCaller => "no_caller",
        }
    }
}

/// Whether a bearer value is shaped like a JWS compact token: three base64url parts, the
/// first two not empty (an unsigned `alg: none` token has an empty third part, and is
/// refused as a token rather than looked up as a key). API keys made by
/// `openssl rand -base64` (or hex) never are.
pub fn looks_like_jwt(value: &str) -> bool {
    let mut parts = 0;
    for part in value.split('.') {
        parts += 1;
        if (part.is_empty() && parts < 3) || !part.bytes().all(is_base64url) {
            return false;
        }
    }
    parts == 3
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The header fields graphgate reads. Unknown fields are ignored, as RFC 7515 asks,
/// except those that change how the token must be processed.
#[derive(Debug, Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
    #[serde(default)]
    enc: Option<Value>,
    #[serde(default)]
    zip: Option<Value>,
}

/// A token split and decoded, not yet trusted.
#[derive(Debug)]
pub struct Parsed<'t> {
    alg: String,
    kid: Option<String>,
    /// The payload's claims.
    pub claims: Map<String, Value>,
    signing_input: &'t str,
    signature: &'t str,
}

/// Splits and decodes `token`.
pub fn parse(token: &str) -> Result<Parsed<'_>, TokenRefusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenRefusal::TooLarge);
    }
    if !looks_like_jwt(token) {
        return Err(TokenRefusal::Malformed);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenRefusal::Malformed)?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(TokenRefusal::Malformed)?;
    let header: RawHeader = decode_json(header)?;
    if header.crit.is_some() || header.enc.is_some() || header.zip.is_some() {
        return Err(TokenRefusal::Unsupported);
    }
    Ok(Parsed {
        alg: header.alg,
        kid: header.kid,
        claims: decode_json(payload)?,
        signing_input,
        signature,
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenRefusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenRefusal::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenRefusal::Malformed)
}

impl Parsed<'_> {
    /// A string claim.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A claim as callers are matched on it (see [`caller_claim`]).
    pub fn caller_claim(&self, name: &str) -> Option<Cow<'_, str>> {
        caller_claim(&self.claims, name)
    }

    /// The token's length in bytes.
    pub fn token_len(&self) -> usize {
        self.signing_input.len() + 1 + self.signature.len()
    }

    /// The key id.
    pub fn kid(&self) -> Result<&str, TokenRefusal> {
        self.kid.as_deref().ok_or(TokenRefusal::UnknownKey)
    }

    /// The header's algorithm, if the issuer accepts it.
    pub fn algorithm(&self, accepted: &[Algorithm]) -> Result<Algorithm, TokenRefusal> {
        self.alg
            .parse::<Algorithm>()
            .ok()
            .filter(|a| accepted.contains(a))
            .ok_or(TokenRefusal::Algorithm)
    }

    /// Checks the signature with the first of `keys` that fits `alg`.
    pub fn verify(&self, keys: &[VerifyingKey], alg: Algorithm) -> Result<(), TokenRefusal> {
        let key = keys
            .iter()
            .find(|k| k.accepts(alg))
            .ok_or(TokenRefusal::Algorithm)?;
        match jsonwebtoken::crypto::verify(
            self.signature,
            self.signing_input.as_bytes(),
            key.decoding(),
            alg,
        ) {
            Ok(true) => Ok(()),
            _ => Err(TokenRefusal::Signature),
        }
    }
}

/// A claim as callers are matched on it: a string, GUIDs in lower case; `azp` and `appid`
/// stand for each other (Entra's v2 and v1 names for the client app).
pub fn caller_claim<'c>(claims: &'c Map<String, Value>, name: &str) -> Option<Cow<'c, str>> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let value = text(name).or_else(|| match name {
        "azp" => text("appid"),
        "appid" => text("azp"),
        _ => None,
    })?;
    Some(normalise_claim(value))
}

/// The issuer's rules on a token whose signature verified: audience, time (with the
/// issuer's leeway, `now` in Unix seconds) and, for a JWT-SVID, its subject.
pub fn check_claims(
    claims: &Map<String, Value>,
    issuer: &JwtIssuer,
    now: i64,
) -> Result<(), TokenRefusal> {
    let accepted = |aud: &str| issuer.audiences.iter().any(|a| a == aud);
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => accepted(aud),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(accepted),
        _ => false,
    };
    if !audience_ok {
        return Err(TokenRefusal::Audience);
    }
    let leeway = i64::try_from(issuer.leeway.as_secs()).unwrap_or(i64::MAX / 4);
    let time = |name: &str| -> Result<Option<i64>, TokenRefusal> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.floor() as i64)
                })
                .map(Some)
                .ok_or(TokenRefusal::Malformed),
            Some(_) => Err(TokenRefusal::Malformed),
        }
    };
    match time("exp")? {
        Some(exp) if now <= exp.saturating_add(leeway) => {}
        _ => return Err(TokenRefusal::Expired),
    }
    if time("nbf")?.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(TokenRefusal::NotYetValid);
    }
    if time("iat")?.is_some_and(|iat| now.saturating_add(leeway) < iat) {
        return Err(TokenRefusal::IssuedInFuture);
    }
    if let Some(domain) = issuer.spiffe_trust_domain() {
        let in_domain = claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(|s| s.strip_prefix("spiffe://"))
            .and_then(|s| s.strip_prefix(domain))
            .is_some_and(|path| path.starts_with('/') && path.len() > 1);
        if !in_domain {
            return Err(TokenRefusal::Subject);
        }
    }
    Ok(())
}

/// The token's fingerprint as recorded: hex SHA-256 of the token's bytes (what
/// `printf '%s' "$TOKEN" | sha256sum` prints), never the token.
pub fn fingerprint(token: &str) -> String {
    crate::policy::hex(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn shapes_and_headers() {
        assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
        assert!(!looks_like_jwt("eyJh.eyJi"));
        assert!(!looks_like_jwt("eyJh..c2ln"));
        assert!(looks_like_jwt("eyJh.eyJi."), "unsigned");
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("abc+/=.b.c"));
        let token = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"none"}"#),
            b64(r#"{"iss":"x"}"#)
        );
        let parsed = parse(&token).unwrap();
        assert_eq!(
            parsed.algorithm(&[Algorithm::RS256]),
            Err(TokenRefusal::Algorithm)
        );
        assert_eq!(parsed.kid(), Err(TokenRefusal::UnknownKey));
        let crit = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256","crit":["b64"],"b64":false}"#),
            b64("{}")
        );
        assert_eq!(parse(&crit).unwrap_err(), TokenRefusal::Unsupported);
        let array = format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64("[1]"));
        assert_eq!(parse(&array).unwrap_err(), TokenRefusal::Malformed);
        let big = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256"}"#),
            "A".repeat(MAX_TOKEN_BYTES)
        );
        assert_eq!(parse(&big).unwrap_err(), TokenRefusal::TooLarge);
    }

    #[test]
    fn client_app_claims_stand_for_each_other_and_guids_compare_in_lower_case() {
        let v1 = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"appid":"6C1F2F1E-1A2B-4C3D-8E9F-00112233AABB","sub":"Mixed"}"#)
        );
        let p = parse(&v1).unwrap();
        assert_eq!(
            p.caller_claim("azp").unwrap(),
            "6c1f2f1e-1a2b-4c3d-8e9f-00112233aabb"
        );
        assert_eq!(p.caller_claim("sub").unwrap(), "Mixed");
        assert_eq!(p.caller_claim("oid"), None);
    }

    fn issuer(leeway: u64) -> JwtIssuer {
        JwtIssuer {
            issuer: "https://issuer.example".into(),
            audiences: vec!["api://graphgate".into(), "graphgate".into()],
            keys: crate::policy::KeySource::JwksUrl("https://issuer.example/keys".into()),
            algorithms: vec![Algorithm::RS256],
            leeway: std::time::Duration::from_secs(leeway),
            refresh: std::time::Duration::from_secs(3600),
            unknown_kid_refresh: std::time::Duration::from_secs(60),
            fetch_timeout: std::time::Duration::from_secs(5),
            pin_jwks_host: false,
        }
    }

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn audience_and_time_with_leeway() {
        let i = issuer(30);
        let now = 1_000_000;
        let ok = |j: &str| check_claims(&claims(j), &i, now);
        assert_eq!(ok(r#"{"aud":"graphgate","exp":1000000}"#), Ok(()));
        assert_eq!(
            ok(r#"{"aud":["other","api://graphgate"],"exp":1000030}"#),
            Ok(())
        );
        assert_eq!(
            ok(r#"{"aud":"graphgate","exp":999970}"#),
            Ok(()),
            "within the leeway"
        );
        assert_eq!(
            ok(r#"{"aud":"graphgate","exp":999969}"#),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(
            ok(r#"{"aud":"graphgate"}"#),
            Err(TokenRefusal::Expired),
            "exp is required"
        );
        assert_eq!(
            ok(r#"{"aud":"Graphgate","exp":1000100}"#),
            Err(TokenRefusal::Audience),
            "exact"
        );
        assert_eq!(ok(r#"{"exp":1000100}"#), Err(TokenRefusal::Audience));
        assert_eq!(
            ok(r#"{"aud":"graphgate","exp":1000100,"nbf":1000030}"#),
            Ok(())
        );
        assert_eq!(
            ok(r#"{"aud":"graphgate","exp":1000100,"nbf":1000031}"#),
            Err(TokenRefusal::NotYetValid)
        );
        assert_eq!(
            ok(r#"{"aud":"graphgate","exp":1000100,"iat":1000031}"#),
            Err(TokenRefusal::IssuedInFuture)
        );
        assert_eq!(
            ok(r#"{"aud":"graphgate","exp":"soon"}"#),
            Err(TokenRefusal::Malformed)
        );
        assert_eq!(
            ok(r#"{"aud":"graphgate","exp":1000000.9}"#),
            Ok(()),
            "a fractional NumericDate"
        );
    }

    #[test]
    fn a_jwt_svid_subject_must_be_in_its_trust_domain() {
        let mut i = issuer(0);
        i.issuer = "spiffe://corp.example".into();
        let ok = |j: &str| check_claims(&claims(j), &i, 0);
        assert_eq!(
            ok(r#"{"aud":"graphgate","exp":10,"sub":"spiffe://corp.example/ns/a"}"#),
            Ok(())
        );
        for sub in [
            "spiffe://corp.example",
            "spiffe://corp.example/",
            "spiffe://corp.example.evil/x",
            "spiffe://other/x",
        ] {
            let j = format!(r#"{{"aud":"graphgate","exp":10,"sub":"{sub}"}}"#);
            assert_eq!(ok(&j), Err(TokenRefusal::Subject), "{sub}");
        }
    }

    #[test]
    fn the_fingerprint_is_sha256_hex_of_the_token() {
        assert_eq!(
            fingerprint("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
