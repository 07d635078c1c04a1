//! Client assertions at the emulated token endpoint (graph-facts §2b, §2c): a certificate
//! assertion (PS256 + `x5t#S256` or RS256 + `x5t`) signed by a certificate registered on the
//! app, or a federated token from a registered issuer about a registered subject. Refusals
//! carry Entra's codes: 700027 (key or signature), 50012 (claims), 500133 (time window),
//! 700211 / 700213 (federated issuer / subject).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use sha2::{Digest, Sha256};

use super::AppRegistration;
use super::entra_error::EntraError;
use super::state::State;

/// RFC 7523's client-assertion type.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew tolerated on `nbf`/`exp`.
const LEEWAY_SECS: u64 = 30;

/// Checks `assertion` for `app`; on success, how the client authenticated (for the record).
pub(crate) fn check(
    state: &State,
    app: &AppRegistration,
    assertion: &str,
    audience: &str,
) -> Result<String, EntraError> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| EntraError::assertion_invalid("The client assertion is not a valid JWT."))?;
    let iss = unverified_claim(assertion, "iss").unwrap_or_default();
    if iss.eq_ignore_ascii_case(&app.client_id) {
        certificate(state, app, &header, assertion, audience)
    } else {
        federated(state, app, &header, assertion, &iss)
    }
}

fn unverified_claim(jwt: &str, name: &str) -> Option<String> {
    let payload = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1)?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    claims.get(name)?.as_str().map(str::to_owned)
}

fn certificate(
    state: &State,
    app: &AppRegistration,
    header: &Header,
    assertion: &str,
    audience: &str,
) -> Result<String, EntraError> {
    if !matches!(header.alg, Algorithm::PS256 | Algorithm::RS256) {
        return Err(EntraError::assertion_signature(
            "The assertion must be signed with PS256 or RS256.",
        ));
    }
    if header.alg == Algorithm::PS256 && state.faults().config().reject_ps256_assertions {
        return Err(EntraError::assertion_signature(
            "PS256 assertions are not accepted.",
        ));
    }
    let (label, wanted) = match (&header.x5t_s256, &header.x5t) {
        (Some(t), _) => ("x5t#S256", t.as_str()),
        (None, Some(t)) => ("x5t", t.as_str()),
        (None, None) => {
            return Err(EntraError::assertion_signature(
                "The assertion names no certificate (x5t#S256 or x5t).",
            ));
        }
    };
    let thumbprint = |der: &[u8]| match label {
        "x5t#S256" => URL_SAFE_NO_PAD.encode(Sha256::digest(der)),
        _ => URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der)),
    };
    let cert = state
        .config
        .certificates
        .iter()
        .filter(|c| c.client_id.eq_ignore_ascii_case(&app.client_id))
        .find(|c| thumbprint(&c.certificate_der) == wanted)
        .ok_or_else(|| {
            EntraError::assertion_signature(&format!(
                "The key was not found: no certificate with {label} '{wanted}' is registered on the app."
            ))
        })?;
    let key = certificate_key(&cert.certificate_der)
        .ok_or_else(|| EntraError::assertion_signature("The registered certificate is not RSA."))?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_audience(&[audience]);
    validation.set_issuer(&[app.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
    let claims = verify(assertion, &key, &validation)?;
    if claims["sub"].as_str() != Some(app.client_id.as_str()) {
        return Err(EntraError::assertion_invalid(
            "The assertion's sub must be the client id.",
        ));
    }
    if claims["jti"].as_str().is_none_or(str::is_empty) {
        return Err(EntraError::assertion_invalid("The assertion has no jti."));
    }
    let chain = if header.x5c.is_some() { " x5c" } else { "" };
    Ok(format!(
        "certificate {:?} {label}={wanted}{chain}",
        header.alg
    ))
}

/// The RSA public key of a DER certificate.
fn certificate_key(der: &[u8]) -> Option<DecodingKey> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let cert = rustls_pki_types::CertificateDer::from(der);
    let parsed = webpki::EndEntityCert::try_from(&cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let public = rsa::PublicKey::from_public_key_der(spki.as_ref()).ok()?;
    Some(DecodingKey::from_rsa_raw_components(
        &public.n_bytes(),
        &public.e_bytes(),
    ))
}

fn federated(
    state: &State,
    app: &AppRegistration,
    header: &Header,
    assertion: &str,
    iss: &str,
) -> Result<String, EntraError> {
    let for_issuer: Vec<_> = state
        .config
        .federated_credentials
        .iter()
        .filter(|f| f.client_id.eq_ignore_ascii_case(&app.client_id) && f.issuer == iss)
        .collect();
    if for_issuer.is_empty() {
        return Err(EntraError::no_federated_issuer(iss));
    }
    let sub = unverified_claim(assertion, "sub").unwrap_or_default();
    let fic = for_issuer
        .iter()
        .find(|f| f.subject == sub)
        .ok_or_else(|| EntraError::no_federated_subject(&sub))?;
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256
    ) {
        return Err(EntraError::assertion_signature(
            "The federated token's algorithm is not accepted.",
        ));
    }
    let jwk = header
        .kid
        .as_deref()
        .and_then(|kid| fic.jwks.find(kid))
        .ok_or_else(|| {
            EntraError::assertion_signature(
                "The federated token's key is not in the issuer's JWKS.",
            )
        })?;
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|_| EntraError::assertion_signature("The issuer's key is unusable."))?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_audience(&[fic.audience.as_str()]);
    validation.set_issuer(&[fic.issuer.as_str()]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    verify(assertion, &key, &validation)?;
    Ok(format!("federated {} {}", fic.issuer, fic.subject))
}

fn verify(
    jwt: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<serde_json::Value, EntraError> {
    jsonwebtoken::decode::<serde_json::Value>(jwt, key, validation)
        .map(|d| d.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) => {
                EntraError::assertion_signature("The signature does not verify.")
            }
            ErrorKind::ExpiredSignature => EntraError::assertion_time("The assertion has expired."),
            ErrorKind::ImmatureSignature => {
                EntraError::assertion_time("The assertion is not valid yet.")
            }
            ErrorKind::InvalidAudience => EntraError::assertion_invalid(
                "The assertion's audience is not this token endpoint.",
            ),
            ErrorKind::InvalidIssuer => {
                EntraError::assertion_invalid("The assertion's issuer is wrong.")
            }
            ErrorKind::MissingRequiredClaim(c) => {
                EntraError::assertion_invalid(&format!("The assertion has no {c} claim."))
            }
            _ => EntraError::assertion_invalid("The client assertion is malformed."),
        })
}
