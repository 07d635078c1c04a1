//! The `/_emulator/` control endpoints of the emulated caller-token issuers (any host; JSON):
//!
//! - `GET /_emulator/kubernetes` (or `/spiffe`): issuer, published kids, key fetches so far;
//! - `POST /_emulator/kubernetes/serviceaccounts/{namespace}/{name}/token` with a
//!   TokenRequest body (`{"spec": {"audiences": [...], "expirationSeconds": N}}`): a projected
//!   service-account token, answered as kube-apiserver does (`status.token`);
//! - `POST /_emulator/spiffe/svid` (`{"spiffe_id", "audience": [...], "lifetime_secs"}`) and
//!   `GET /_emulator/spiffe/bundle` (the trust bundle; counted and faulted as a key fetch);
//! - `POST /_emulator/{kubernetes|spiffe}/keys` (`{"alg": "RS256"|"ES256",
//!   "retire_previous": bool}`): key rotation, answering the new `kid`;
//! - `PUT /_emulator/{kubernetes|spiffe}/jwks-fault` (a `JwksFault`), `DELETE` to clear it;
//! - `POST /_emulator/entra/user-token` (`{"client_id", "upn", "scp", "api", "cloud"}`): a
//!   delegated token for a test user.

use http::{Method, Response, StatusCode};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Value, json};

use super::idp::{Idp, JwksFault};
use super::state::State;
use super::wire::{Body, Outcome, Request, json, text};
use super::workload;
use crate::microsoft::Cloud;

/// Handles `rest` (the path after `/_emulator/`) if it is one of these endpoints.
pub(crate) async fn handle(state: &State, req: &Request, rest: &str) -> Option<Outcome> {
    let segs: Vec<&str> = rest.split('/').collect();
    let w = &state.workloads;
    Some(match (req.method.clone(), segs.as_slice()) {
        (Method::GET, ["spiffe", "bundle"]) => workload::bundle(&w.spiffe).await,
        (m, ["kubernetes", "serviceaccounts", ns, name, "token"]) if m == Method::POST => {
            Ok(service_account_token(&w.kubernetes, req, ns, name))
        }
        (m, ["spiffe", "svid"]) if m == Method::POST => Ok(svid(&w.spiffe, req)),
        (m, ["entra", "user-token"]) if m == Method::POST => Ok(user_token(state, req)),
        (m, [issuer, tail @ ..]) => {
            let idp = match *issuer {
                "kubernetes" => &w.kubernetes,
                "spiffe" => &w.spiffe,
                _ => return None,
            };
            Ok(issuer_control(idp, &m, tail, req))
        }
        _ => return None,
    })
}

/// What can be done to one issuer: look, rotate keys, break or mend its key endpoints.
fn issuer_control(idp: &Idp, method: &Method, tail: &[&str], req: &Request) -> Response<Body> {
    let result = match (method.clone(), tail) {
        (Method::GET, []) => idp.kids().map(
            |kids| json!({"issuer": idp.issuer, "kids": kids, "key_fetches": idp.fetch_count()}),
        ),
        (Method::POST, ["keys"]) => rotate(idp, &req.body),
        (Method::PUT, ["jwks-fault"]) => match serde_json::from_slice::<JwksFault>(&req.body) {
            Ok(fault) => {
                idp.set_fault(Some(fault.clone()));
                Ok(json!({ "fault": fault }))
            }
            Err(e) => return bad(&format!("not a JwksFault: {e}")),
        },
        (Method::DELETE, ["jwks-fault"]) => {
            idp.set_fault(None);
            Ok(json!({ "fault": null }))
        }
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "try GET, POST keys, PUT or DELETE jwks-fault (see the emulator's idp_control docs)",
            );
        }
    };
    answer(result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotation {
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    retire_previous: bool,
}

fn rotate(idp: &Idp, body: &[u8]) -> Result<Value, String> {
    let r: Rotation = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let alg = match r.alg.as_deref() {
        None | Some("RS256") => Algorithm::RS256,
        Some("ES256") => Algorithm::ES256,
        Some(other) => return Err(format!("alg {other:?}: use RS256 or ES256")),
    };
    let kid = idp.rotate(alg, r.retire_previous)?;
    Ok(json!({ "kid": kid }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequestSpec {
    audiences: Vec<String>,
    #[serde(default)]
    expiration_seconds: Option<i64>,
}

#[derive(Deserialize)]
struct TokenRequest {
    spec: TokenRequestSpec,
}

/// A TokenRequest, answered with the token in `status.token`.
fn service_account_token(idp: &Idp, req: &Request, ns: &str, name: &str) -> Response<Body> {
    let spec = match serde_json::from_slice::<TokenRequest>(&req.body) {
        Ok(r) => r.spec,
        Err(e) => return bad(&format!("not a TokenRequest: {e}")),
    };
    let audiences: Vec<&str> = spec.audiences.iter().map(String::as_str).collect();
    let lifetime = spec.expiration_seconds.unwrap_or(3600);
    let claims = workload::service_account_claims(ns, name, &audiences, lifetime);
    let exp = claims["exp"].as_i64().unwrap_or_default();
    answer(idp.sign(&claims, None).map(|token| {
        json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "spec": {"audiences": audiences, "expirationSeconds": lifetime},
            "status": {"token": token, "expirationTimestamp": rfc3339(exp)},
        })
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SvidRequest {
    spiffe_id: String,
    audience: Vec<String>,
    #[serde(default)]
    lifetime_secs: Option<i64>,
}

/// A JWT-SVID, answered as `{"token": ...}`.
fn svid(idp: &Idp, req: &Request) -> Response<Body> {
    let r = match serde_json::from_slice::<SvidRequest>(&req.body) {
        Ok(r) => r,
        Err(e) => return bad(&format!("not an SVID request: {e}")),
    };
    let audiences: Vec<&str> = r.audience.iter().map(String::as_str).collect();
    let claims = workload::svid_claims(&r.spiffe_id, &audiences, r.lifetime_secs.unwrap_or(300));
    answer(
        idp.sign(&claims, None)
            .map(|token| json!({ "token": token })),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserTokenRequest {
    client_id: String,
    upn: String,
    scp: String,
    #[serde(default)]
    api: Option<String>,
    #[serde(default)]
    cloud: Option<String>,
}

/// A delegated token for a test user, answered as `{"access_token": ...}`.
fn user_token(state: &State, req: &Request) -> Response<Body> {
    let r = match serde_json::from_slice::<UserTokenRequest>(&req.body) {
        Ok(r) => r,
        Err(e) => return bad(&format!("not a user-token request: {e}")),
    };
    let cloud = match r.cloud.as_deref().map(str::parse::<Cloud>).transpose() {
        Ok(c) => c.unwrap_or(Cloud::Global),
        Err(e) => return bad(&e.to_string()),
    };
    let minted = super::callers::mint_user_token(
        state,
        &r.client_id,
        &r.upn,
        &r.scp,
        r.api.as_deref(),
        cloud,
    );
    answer(minted.map(|token| json!({ "access_token": token, "token_type": "Bearer" })))
}

fn answer(result: Result<Value, String>) -> Response<Body> {
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => bad(&e),
    }
}

fn bad(message: &str) -> Response<Body> {
    json(StatusCode::BAD_REQUEST, &json!({ "errors": [message] }))
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
