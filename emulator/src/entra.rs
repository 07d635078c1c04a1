//! The emulated Entra v2.0 token endpoint (client credentials with a secret, in the body or
//! HTTP Basic, or a client assertion: see `entra_assertion`) and its JWKS. Checks run in Entra's order; every attempt is recorded.
//! Armed token faults (see `faults`) come first, or change the token issued.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Method, Response, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppRegistration;
use super::claims;
use super::entra_error::EntraError;
use super::faults::{self, Fault, FaultKind, Target};
use super::records::TokenRequestRecord;
use super::signing_key;
use super::state::State;
use super::wire::{
    Body, Dropped, Outcome, Request, html_page, json, misdirected, set_header, text,
};
use crate::microsoft::Cloud;
use crate::secret::Secret;

/// The form parameters of one token request; the secret is kept only as long as the check.
#[derive(Default)]
struct Form {
    params: BTreeMap<String, String>,
    basic: Option<(String, String)>,
}

impl Form {
    fn parse(req: &Request) -> Result<Form, EntraError> {
        let mut params = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(&req.body) {
            if params
                .insert(k.clone().into_owned(), v.into_owned())
                .is_some()
            {
                return Err(EntraError::duplicated(&k));
            }
        }
        let basic = req
            .header(http::header::AUTHORIZATION)
            .and_then(basic_credentials);
        Ok(Form { params, basic })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// HTTP Basic wins over the body (RFC 6749 §2.3.1 lets a client use either).
    fn client_id(&self) -> Option<&str> {
        self.basic
            .as_ref()
            .map(|(id, _)| id.as_str())
            .or_else(|| self.get("client_id"))
    }

    fn client_secret(&self) -> Option<&str> {
        self.basic
            .as_ref()
            .map(|(_, s)| s.as_str())
            .or_else(|| self.get("client_secret"))
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, as RFC 6749 §2.3.1 has it.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// The app's own secret, then its additional ones.
fn app_secrets<'a>(state: &'a State, app: &'a AppRegistration) -> impl Iterator<Item = &'a Secret> {
    std::iter::once(&app.client_secret).chain(
        state
            .config
            .additional_secrets
            .iter()
            .filter(|s| s.client_id.eq_ignore_ascii_case(&app.client_id))
            .map(|s| &s.secret),
    )
}

/// Compares secrets in constant time (over their digests, so lengths leak nothing either).
fn secret_matches(secret: &Secret, presented: &str) -> bool {
    let want = Sha256::digest(secret.expose().as_bytes());
    let got = Sha256::digest(presented.as_bytes());
    bool::from(want.as_slice().ct_eq(got.as_slice()))
}

/// `POST /{tenant}/oauth2/v2.0/token` on any host (an unknown host is refused and recorded).
/// An armed token fault (see `faults`) applies to requests for a login host.
pub(crate) async fn token(state: &State, req: &Request, tenant: &str) -> Outcome {
    let mut record = TokenRequestRecord {
        host: req.host.clone(),
        sni: req.sni.clone(),
        tenant: tenant.to_owned(),
        client_id: None,
        scope: None,
        grant_type: None,
        status: 0,
        error_code: None,
        credential: None,
    };
    let clouds: Vec<Cloud> = Cloud::by_login_host(&req.host_name()).collect();
    let fault = if clouds.is_empty() {
        None
    } else {
        state.take_fault(Target::Token)
    };
    faults::wait(fault.as_ref()).await;
    let kind = fault.as_ref().map(|f| f.kind);
    let resp = match &fault {
        _ if clouds.is_empty() => Some(misdirected(req)),
        Some(f)
            if matches!(
                f.kind,
                FaultKind::Reset | FaultKind::Status | FaultKind::TemporarilyUnavailable
            ) =>
        {
            if let Ok(form) = Form::parse(req) {
                record.client_id = form.client_id().map(str::to_owned);
                record.scope = form.get("scope").map(str::to_owned);
                record.grant_type = form.get("grant_type").map(str::to_owned);
            }
            fault_reply(req, f, &mut record)
        }
        _ => Some(
            match issue(state, req, tenant, &clouds, &mut record, kind) {
                Ok(resp) => resp,
                Err(err) => {
                    record.error_code = Some(err.code);
                    err.response(&req.host_name(), req.header("client-request-id"))
                }
            },
        ),
    };
    record.status = resp.as_ref().map_or(0, |r| r.status().as_u16());
    tracing::debug!(host = %req.host, status = record.status, "emulator token request");
    state.record_token(record);
    resp.ok_or(Dropped)
}

/// The answer of a fault that replaces the token endpoint's work (`None`: drop the
/// connection).
fn fault_reply(
    req: &Request,
    fault: &Fault,
    record: &mut TokenRequestRecord,
) -> Option<Response<Body>> {
    let status = fault
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let resp = match fault.kind {
        FaultKind::Reset => return None,
        FaultKind::Status if fault.html => html_page(status),
        _ => {
            let err = if fault.kind == FaultKind::TemporarilyUnavailable
                || status == StatusCode::SERVICE_UNAVAILABLE
            {
                EntraError::temporarily_unavailable()
            } else {
                EntraError::server_error(status)
            };
            record.error_code = Some(err.code);
            err.response(&req.host_name(), req.header("client-request-id"))
        }
    };
    Some(faults::with_retry_after(resp, fault))
}

fn issue(
    state: &State,
    req: &Request,
    tenant: &str,
    clouds: &[Cloud],
    record: &mut TokenRequestRecord,
    fault: Option<FaultKind>,
) -> Result<Response<Body>, EntraError> {
    if req.method != Method::POST {
        return Err(EntraError::post_only(req.method.as_str()));
    }
    if !tenant.eq_ignore_ascii_case(&state.config.tenant_id) {
        return Err(EntraError::tenant_not_found(tenant));
    }
    let form = Form::parse(req)?;
    record.client_id = form.client_id().map(str::to_owned);
    record.scope = form.get("scope").map(str::to_owned);
    record.grant_type = form.get("grant_type").map(str::to_owned);

    let grant = form
        .get("grant_type")
        .ok_or(EntraError::missing("grant_type"))?;
    if grant != "client_credentials" {
        return Err(EntraError::unsupported_grant(grant));
    }
    let client_id = form.client_id().ok_or(EntraError::missing("client_id"))?;
    let app = state
        .config
        .apps
        .iter()
        .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
        .ok_or_else(|| EntraError::app_not_found(client_id, tenant))?;
    record.credential = Some(match form.get("client_assertion_type") {
        Some(kind) => {
            if kind != super::entra_assertion::JWT_BEARER {
                return Err(EntraError::bad_assertion_type(kind));
            }
            let assertion = form
                .get("client_assertion")
                .ok_or(EntraError::missing("client_assertion"))?;
            let audience = format!("https://{}/{tenant}/oauth2/v2.0/token", req.host_name());
            super::entra_assertion::check(state, app, assertion, &audience)?
        }
        None => {
            let secret = form.client_secret().ok_or_else(EntraError::no_credential)?;
            let index = app_secrets(state, app)
                .position(|s| secret_matches(s, secret))
                .ok_or_else(|| EntraError::bad_secret(&app.client_id))?;
            format!("client_secret#{index}")
        }
    });
    let scope = form.get("scope").ok_or(EntraError::missing("scope"))?;
    if let (Some(api), Some(&cloud)) = (super::callers::api_for_scope(state, scope), clouds.first())
    {
        // A caller app asking for a token for graphgate's own API.
        return Ok(super::callers::token_response(state, app, api, cloud));
    }
    let cloud = clouds
        .iter()
        .copied()
        .find(|c| c.endpoints().scope == scope)
        .ok_or_else(|| EntraError::invalid_scope(scope))?;
    Ok(success(state, app, cloud, fault))
}

/// The token response. Faults: `ExpiredToken` back-dates the token so `exp` has passed
/// (`expires_in` still says the full lifetime); `BadSignatureToken` signs it with another key.
fn success(
    state: &State,
    app: &AppRegistration,
    cloud: Cloud,
    fault: Option<FaultKind>,
) -> Response<Body> {
    let lifetime = i64::try_from(state.config.token_lifetime.as_secs()).unwrap_or(i64::MAX / 4);
    let mut issued = crate::clock::utc_now().timestamp();
    let key = match fault {
        Some(FaultKind::BadSignatureToken) => signing_key::impostor_key(),
        Some(FaultKind::ExpiredToken) => {
            issued -= lifetime + 60;
            Ok(state.key)
        }
        _ => Ok(state.key),
    };
    let minted = key
        .and_then(|key| claims::mint(key, &state.config.tenant_id, app, cloud, issued, lifetime));
    match minted {
        Ok(token) => {
            let body = serde_json::json!({
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            });
            let mut resp = json(StatusCode::OK, &body);
            set_header(&mut resp, "cache-control", "no-store, no-cache");
            set_header(&mut resp, "pragma", "no-cache");
            set_header(
                &mut resp,
                "x-ms-request-id",
                &uuid::Uuid::new_v4().to_string(),
            );
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "emulator could not sign a token");
            text(StatusCode::INTERNAL_SERVER_ERROR, "something went wrong")
        }
    }
}

/// `GET /{tenant}/discovery/v2.0/keys`: the signing key as a JWKS.
pub(crate) fn keys(state: &State, req: &Request, tenant: &str) -> Response<Body> {
    if Cloud::by_login_host(&req.host_name()).next().is_none() {
        return misdirected(req);
    }
    if !tenant.eq_ignore_ascii_case(&state.config.tenant_id) {
        return EntraError::tenant_not_found(tenant).response(&req.host_name(), None);
    }
    json(StatusCode::OK, &state.key.jwks())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_url_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20id:p%40ss%3Aword"));
        assert_eq!(
            basic_credentials(&header),
            Some(("my id".into(), "p@ss:word".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn secrets_compare_exactly() {
        let secret = Secret::new("s3cret");
        assert!(secret_matches(&secret, "s3cret"));
        assert!(!secret_matches(&secret, "s3cre"));
        assert!(!secret_matches(&secret, "S3CRET"));
    }
}
