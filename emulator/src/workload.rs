//! The emulated workload issuers graphgate's callers get tokens from: a Kubernetes cluster's
//! service-account issuer (`https://kubernetes.default.svc.cluster.local`, serving OIDC
//! discovery and its JWKS as the API server does) and a SPIFFE trust domain (JWT-SVIDs,
//! and its trust bundle). Tests mint tokens, rotate keys and break the key endpoints through
//! the Rust API below or the `/_emulator/` control endpoints (`idp_control`).

use http::{Response, StatusCode};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::idp::{self, Idp, JwksFault, JwksMode};
use super::wire::{Body, Dropped, Outcome, Request, json, respond, text};
use super::{Emulator, EmulatorError};

/// The emulated cluster's API server host (and so its issuer's).
pub const KUBERNETES_HOST: &str = "kubernetes.default.svc.cluster.local";
/// The emulated cluster's service-account token issuer (`--service-account-issuer`).
pub const KUBERNETES_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Where the emulated cluster publishes its keys (as kube-apiserver does).
pub const KUBERNETES_JWKS_URL: &str = "https://kubernetes.default.svc.cluster.local/openid/v1/jwks";
/// The emulated SPIFFE trust domain.
pub const SPIFFE_TRUST_DOMAIN: &str = "corp.example";

/// The two workload issuers.
pub(crate) struct Workloads {
    pub(crate) kubernetes: Idp,
    pub(crate) spiffe: Idp,
}

impl Default for Workloads {
    fn default() -> Self {
        Workloads {
            // Clusters sign with RSA keys unless told otherwise; SPIRE with P-256.
            kubernetes: Idp::new(KUBERNETES_ISSUER.into(), Algorithm::RS256),
            spiffe: Idp::new(format!("spiffe://{SPIFFE_TRUST_DOMAIN}"), Algorithm::ES256),
        }
    }
}

/// Requests to the emulated API server: its discovery document and its keys.
pub(crate) async fn kubernetes(idp: &Idp, req: &Request) -> Outcome {
    match req.uri.path() {
        "/.well-known/openid-configuration" => {
            serve_keys(idp, || {
                Ok(json!({
                    "issuer": KUBERNETES_ISSUER,
                    "jwks_uri": KUBERNETES_JWKS_URL,
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                }))
            })
            .await
        }
        "/openid/v1/jwks" => serve_keys(idp, || idp.jwks()).await,
        _ => Ok(text(
            StatusCode::NOT_FOUND,
            "the emulated API server serves /.well-known/openid-configuration and /openid/v1/jwks",
        )),
    }
}

/// Serves one of an issuer's key documents, counting the fetch and applying its fault.
pub(crate) async fn serve_keys(
    idp: &Idp,
    document: impl FnOnce() -> Result<Value, String>,
) -> Outcome {
    let fault = idp.fetched();
    if let Some(f) = fault.as_ref().filter(|f| f.mode == JwksMode::Slow) {
        tokio::time::sleep(f.delay()).await;
    }
    match fault.map(|f| (f.mode, f.status)) {
        Some((JwksMode::Down, _)) => Err(Dropped),
        Some((JwksMode::Garbage, _)) => {
            Ok(respond(StatusCode::OK, "application/json", idp::GARBAGE))
        }
        Some((JwksMode::Huge, _)) => Ok(respond(
            StatusCode::OK,
            "application/json",
            idp::huge_document(),
        )),
        Some((JwksMode::Status, status)) => {
            let status = status.and_then(|s| StatusCode::from_u16(s).ok());
            Ok(text(
                status.unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "key endpoint failing (injected)",
            ))
        }
        _ => Ok(match document() {
            Ok(doc) => json(StatusCode::OK, &doc),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e),
        }),
    }
}

/// The claims of a projected service-account token, as kube-apiserver writes them.
pub fn service_account_claims(
    namespace: &str,
    name: &str,
    audiences: &[&str],
    lifetime_secs: i64,
) -> Value {
    let now = idp::now();
    json!({
        "aud": audiences,
        "exp": now + lifetime_secs,
        "iat": now,
        "nbf": now,
        "iss": KUBERNETES_ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": uuid::Uuid::new_v4().to_string()},
        },
    })
}

/// The claims of a JWT-SVID (SPIRE writes no `iss` unless configured to).
pub fn svid_claims(spiffe_id: &str, audiences: &[&str], lifetime_secs: i64) -> Value {
    let now = idp::now();
    json!({"sub": spiffe_id, "aud": audiences, "exp": now + lifetime_secs, "iat": now})
}

/// The SPIFFE trust bundle (JWKS with `use: jwt-svid`, plus an X.509 authority entry that a
/// JWT validator must skip).
pub(crate) fn spiffe_bundle(idp: &Idp) -> Result<Value, String> {
    let mut keys: Vec<Value> = idp
        .jwks()?
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for key in &mut keys {
        key["use"] = Value::String("jwt-svid".into());
        if let Some(map) = key.as_object_mut() {
            map.remove("alg");
        }
    }
    keys.push(json!({
        "use": "x509-svid", "kty": "EC", "crv": "P-256", "kid": "x509-authority",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        "x5c": ["MIIBxTCCAWugAwIBAgIJAJZvH3Ui+wUTMAoGCCqGSM49BAMCMB4xCzAJBgNVBAYTAlVTMQ8wDQYDVQQKDAZTUElGRkU="],
    }));
    Ok(json!({"keys": keys, "spiffe_sequence": 1, "spiffe_refresh_hint": 300}))
}

/// One of the emulator's workload issuers, for tests: mint tokens, rotate keys, break the
/// key endpoints, count their fetches.
pub struct WorkloadIssuer<'a> {
    idp: &'a Idp,
}

fn key_error(e: String) -> EmulatorError {
    EmulatorError::Key(e)
}

impl WorkloadIssuer<'_> {
    /// Its `iss` (`spiffe://<domain>` for the trust domain).
    pub fn issuer(&self) -> &str {
        &self.idp.issuer
    }

    /// Signs `claims` as they are, with the current key.
    pub fn mint(&self, claims: &Value) -> Result<String, EmulatorError> {
        self.idp.sign(claims, None).map_err(key_error)
    }

    /// Signs `claims` with the current key but names `kid` in the header.
    pub fn mint_with_kid(&self, claims: &Value, kid: &str) -> Result<String, EmulatorError> {
        self.idp.sign(claims, Some(kid)).map_err(key_error)
    }

    /// A new signing key with a new kid; `retire_previous` removes the others from the
    /// published keys. Returns the new kid.
    pub fn rotate(&self, alg: Algorithm, retire_previous: bool) -> Result<String, EmulatorError> {
        self.idp.rotate(alg, retire_previous).map_err(key_error)
    }

    /// The key ids published now.
    pub fn kids(&self) -> Result<Vec<String>, EmulatorError> {
        self.idp.kids().map_err(key_error)
    }

    /// The published keys (a JWKS).
    pub fn jwks(&self) -> Result<Value, EmulatorError> {
        self.idp.jwks().map_err(key_error)
    }

    /// Breaks (or, with `None`, mends) the key endpoints.
    pub fn set_jwks_fault(&self, fault: Option<JwksFault>) {
        self.idp.set_fault(fault);
    }

    /// Fetches of the key endpoints (discovery, JWKS or bundle) so far.
    pub fn key_fetches(&self) -> u64 {
        self.idp.fetch_count()
    }
}

impl Emulator {
    /// The emulated Kubernetes service-account issuer.
    pub fn kubernetes(&self) -> WorkloadIssuer<'_> {
        WorkloadIssuer {
            idp: &self.state.workloads.kubernetes,
        }
    }

    /// The emulated SPIFFE trust domain.
    pub fn spiffe(&self) -> WorkloadIssuer<'_> {
        WorkloadIssuer {
            idp: &self.state.workloads.spiffe,
        }
    }

    /// A projected service-account token for `namespace`/`name` with these audiences.
    pub fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[&str],
        lifetime_secs: i64,
    ) -> Result<String, EmulatorError> {
        self.kubernetes().mint(&service_account_claims(
            namespace,
            name,
            audiences,
            lifetime_secs,
        ))
    }

    /// A JWT-SVID for `spiffe_id`.
    pub fn jwt_svid(
        &self,
        spiffe_id: &str,
        audiences: &[&str],
        lifetime_secs: i64,
    ) -> Result<String, EmulatorError> {
        self.spiffe()
            .mint(&svid_claims(spiffe_id, audiences, lifetime_secs))
    }

    /// The trust domain's bundle, as a SPIRE server exports it (what graphgate's `file` key
    /// source reads).
    pub fn spiffe_bundle(&self) -> Result<Value, EmulatorError> {
        spiffe_bundle(&self.state.workloads.spiffe).map_err(key_error)
    }
}

/// A response for a bundle request (counted and faulted like the other key endpoints).
pub(crate) async fn bundle(idp: &Idp) -> Result<Response<Body>, Dropped> {
    serve_keys(idp, || spiffe_bundle(idp)).await
}
