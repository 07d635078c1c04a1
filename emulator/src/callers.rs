//! The emulated Entra as the issuer of graphgate's callers' tokens: the API graphgate
//! exposes (its app id URI, and whether Entra issues v1 or v2 tokens for it), client-
//! credentials tokens for registered caller apps with that API as audience, delegated-style
//! tokens for a test user, and the OpenID discovery documents (v1 and v2) of every cloud.

use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::state::State;
use super::wire::{Body, Request, json};
use super::{AppRegistration, claims};
use crate::microsoft::Cloud;

/// The API graphgate exposes in the emulated tenant (an app registration's "Expose an
/// API"): the audience of its callers' tokens.
#[derive(Debug, Clone)]
pub struct ExposedApi {
    /// Application id URI, e.g. `api://graphgate`: a v1 token's `aud`.
    pub app_id_uri: String,
    /// The API app's client id: a v2 token's `aud`.
    pub client_id: String,
    /// The access-token version Entra issues for it (`accessTokenAcceptedVersion`): 1
    /// (Entra's default) or 2.
    pub token_version: u8,
}

/// A user of the emulated tenant, for delegated tokens.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Object id.
    pub oid: String,
    /// User principal name.
    pub upn: String,
    /// Display name.
    pub name: String,
}

/// graphgate's API in the demo tenant.
pub const DEMO_API_URI: &str = "api://graphgate";
/// The demo test user's object id.
pub const DEMO_USER_OID: &str = "9d2f7c1a-4b3e-4f5a-8c6d-1e2f3a4b5c6d";
/// The demo test user's UPN.
pub const DEMO_USER_UPN: &str = "adele.vance@contoso.com";

/// The `iss` Entra writes in access tokens of `version` (1 or 2) for `tenant` in `cloud`.
/// v2: `https://{login host}/{tenant}/v2.0`. v1: `https://sts.windows.net/{tenant}/` in the
/// global cloud, `https://sts.chinacloudapi.cn/{tenant}/` in China (Microsoft's docs, issue
/// azure-docs#123050), and the login host in the US Government clouds (not confirmed by
/// Microsoft's docs: configure the value your tokens carry).
pub fn entra_issuer(cloud: Cloud, tenant: &str, version: u8) -> String {
    let v1_host = match cloud {
        Cloud::Global => "sts.windows.net",
        Cloud::China => "sts.chinacloudapi.cn",
        Cloud::UsGov | Cloud::UsDod => cloud.endpoints().login_host,
    };
    match version {
        1 => format!("https://{v1_host}/{tenant}/"),
        _ => format!("https://{}/{tenant}/v2.0", cloud.endpoints().login_host),
    }
}

/// The object id of `client_id`'s service principal in `tenant`: a caller token's `oid`.
pub fn service_principal_id(tenant: &str, client_id: &str) -> String {
    claims::object_id(tenant, client_id)
}

/// The exposed API a client-credentials `scope` asks for (`{app id URI or client id}/.default`).
pub(crate) fn api_for_scope<'s>(state: &'s State, scope: &str) -> Option<&'s ExposedApi> {
    let resource = scope.strip_suffix("/.default")?;
    state
        .config
        .exposed_apis
        .iter()
        .find(|api| api.app_id_uri == resource || api.client_id.eq_ignore_ascii_case(resource))
}

/// Claims of a token for graphgate's API.
#[derive(Debug, Serialize)]
struct CallerClaims<'a> {
    aud: &'a str,
    iss: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    tid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    appid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    appidacr: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    azp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    azpacr: Option<&'static str>,
    oid: String,
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    idtyp: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    ver: &'static str,
    uti: String,
}

/// Who a caller token is about: the client app, and the signed-in user of a delegated one.
pub(crate) struct Subject<'a> {
    pub(crate) app: &'a AppRegistration,
    pub(crate) user: Option<(&'a TestUser, &'a str)>,
}

/// Mints a token for `api` in `cloud`, issued now, living the configured token lifetime.
pub(crate) fn mint(
    state: &State,
    api: &ExposedApi,
    cloud: Cloud,
    who: &Subject<'_>,
) -> Result<String, String> {
    let tenant = state.config.tenant_id.as_str();
    let now = crate::clock::utc_now().timestamp();
    let lifetime = i64::try_from(state.config.token_lifetime.as_secs()).unwrap_or(3599);
    let v1 = api.token_version == 1;
    let client = who.app.client_id.as_str();
    let (oid, scp, user) = match who.user {
        Some((user, scp)) => (user.oid.clone(), Some(scp), Some(user)),
        None => (claims::object_id(tenant, client), None, None),
    };
    let token = CallerClaims {
        aud: if v1 { &api.app_id_uri } else { &api.client_id },
        iss: entra_issuer(cloud, tenant, api.token_version),
        iat: now,
        nbf: now - 300,
        exp: now + lifetime,
        tid: tenant,
        appid: v1.then_some(client),
        appidacr: v1.then_some("1"),
        azp: (!v1).then_some(client),
        azpacr: (!v1).then_some("1"),
        // A delegated token's subject is pairwise (per app and user); an app's is its oid.
        sub: user.map_or_else(|| oid.clone(), |u| claims::object_id(&u.oid, client)),
        oid,
        idtyp: user.is_none().then_some("app"),
        scp,
        upn: user.filter(|_| v1).map(|u| u.upn.as_str()),
        preferred_username: user.filter(|_| !v1).map(|u| u.upn.as_str()),
        name: user.map(|u| u.name.as_str()),
        ver: if v1 { "1.0" } else { "2.0" },
        uti: uuid::Uuid::new_v4().simple().to_string(),
    };
    state.key.sign(&token)
}

/// The token endpoint's answer for a caller app asking for graphgate's API.
pub(crate) fn token_response(
    state: &State,
    app: &AppRegistration,
    api: &ExposedApi,
    cloud: Cloud,
) -> Response<Body> {
    let who = Subject { app, user: None };
    match mint(state, api, cloud, &who) {
        Ok(token) => json(
            StatusCode::OK,
            &json!({
                "token_type": "Bearer",
                "expires_in": state.config.token_lifetime.as_secs(),
                "ext_expires_in": state.config.token_lifetime.as_secs(),
                "access_token": token,
            }),
        ),
        Err(e) => {
            tracing::error!(error = %e, "emulator could not sign a caller token");
            super::wire::text(StatusCode::INTERNAL_SERVER_ERROR, "something went wrong")
        }
    }
}

/// `GET /{tenant}/.well-known/openid-configuration` (v1) or
/// `/{tenant}/v2.0/.well-known/openid-configuration` (v2) on a login host.
pub(crate) fn discovery(state: &State, req: &Request, tenant: &str, version: u8) -> Response<Body> {
    let host = req.host_name();
    let Some(cloud) = Cloud::by_login_host(&host).next() else {
        return super::wire::misdirected(req);
    };
    if !tenant.eq_ignore_ascii_case(&state.config.tenant_id) {
        return super::entra_error::EntraError::tenant_not_found(tenant).response(&host, None);
    }
    let tenant = &state.config.tenant_id;
    let (keys, token) = match version {
        1 => ("discovery/keys", "oauth2/token"),
        _ => ("discovery/v2.0/keys", "oauth2/v2.0/token"),
    };
    let mut doc = json!({
        "issuer": entra_issuer(cloud, tenant, version),
        "jwks_uri": format!("https://{host}/{tenant}/{keys}"),
        "token_endpoint": format!("https://{host}/{tenant}/{token}"),
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "tenant_region_scope": "NA",
        "cloud_instance_name": cloud.endpoints().login_host,
    });
    if let (Some(forged), Some(members)) = (state.discovery_override(), doc.as_object_mut()) {
        for (name, value) in forged.as_object().into_iter().flatten() {
            members.insert(name.clone(), value.clone());
        }
    }
    json(StatusCode::OK, &doc)
}

fn exposed_api<'s>(state: &'s State, api: Option<&str>) -> Result<&'s ExposedApi, String> {
    let apis = &state.config.exposed_apis;
    match api {
        None => apis.first(),
        Some(uri) => apis.iter().find(|a| a.app_id_uri == uri),
    }
    .ok_or_else(|| format!("no exposed API {api:?}"))
}

fn app<'s>(state: &'s State, client_id: &str) -> Result<&'s AppRegistration, String> {
    state
        .config
        .apps
        .iter()
        .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
        .ok_or_else(|| format!("no app registration '{client_id}'"))
}

/// A delegated token for graphgate's API: test user `upn` signed in to `client_id`, which
/// holds the delegated permissions `scp`.
pub(crate) fn mint_user_token(
    state: &State,
    client_id: &str,
    upn: &str,
    scp: &str,
    api: Option<&str>,
    cloud: Cloud,
) -> Result<String, String> {
    let user = state
        .config
        .users
        .iter()
        .find(|u| u.upn.eq_ignore_ascii_case(upn))
        .ok_or_else(|| format!("no test user '{upn}'"))?;
    let who = Subject {
        app: app(state, client_id)?,
        user: Some((user, scp)),
    };
    mint(state, exposed_api(state, api)?, cloud, &who)
}

impl super::Emulator {
    /// An app-only token for graphgate's API (`api`: its app id URI; `None`: the first
    /// exposed API), as the token endpoint issues it to `client_id` in `cloud`.
    pub fn caller_token(
        &self,
        client_id: &str,
        api: Option<&str>,
        cloud: Cloud,
    ) -> Result<String, super::EmulatorError> {
        let state = &self.state;
        let who = Subject {
            app: app(state, client_id).map_err(super::EmulatorError::Config)?,
            user: None,
        };
        let api = exposed_api(state, api).map_err(super::EmulatorError::Config)?;
        mint(state, api, cloud, &who).map_err(super::EmulatorError::Key)
    }

    /// A delegated token for graphgate's API: test user `upn` signed in to `client_id`,
    /// which holds the delegated permissions `scp` (see [`ExposedApi`] for `api`).
    pub fn user_token(
        &self,
        client_id: &str,
        upn: &str,
        scp: &str,
        api: Option<&str>,
        cloud: Cloud,
    ) -> Result<String, super::EmulatorError> {
        mint_user_token(&self.state, client_id, upn, scp, api, cloud)
            .map_err(super::EmulatorError::Config)
    }

    /// Test hook: `claims` as they are, signed with Entra's token-signing key (tokens Entra
    /// would never issue, to show what graphgate makes of them). Records nothing.
    pub fn sign_entra_claims(
        &self,
        claims: &serde_json::Value,
    ) -> Result<String, super::EmulatorError> {
        self.state
            .key
            .sign(claims)
            .map_err(super::EmulatorError::Key)
    }
}
