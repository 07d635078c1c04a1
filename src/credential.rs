//! The gateway's own Entra credential, chosen from the Azure SDK's environment variables,
//! and how each kind obtains an app-only token. Client secret today; certificate, workload
//! identity and managed identity slot in as further `Credential` variants.

use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponseType, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, ExtraTokenFields, HttpRequest, HttpResponse,
    Scope, StandardErrorResponse, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::cloud::Cloud;
use crate::secret::Secret;
use crate::upstream::HttpClient;

/// Longest token-endpoint exchange before it counts as failed.
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest token-endpoint response read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// An app registration's credential.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `AZURE_CLIENT_SECRET`.
    ClientSecret {
        /// `AZURE_TENANT_ID`
        tenant_id: String,
        /// `AZURE_CLIENT_ID`
        client_id: String,
        /// `AZURE_CLIENT_SECRET`
        secret: Secret,
    },
}

/// A required variable is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A variable the chosen credential needs is unset.
    #[error(
        "{0} is not set: graphgate needs AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or run `graphgate serve --emulator` to try it locally)"
    )]
    Missing(&'static str),
    /// `AZURE_AUTHORITY_HOST` names a host of another cloud.
    #[error(
        "AZURE_AUTHORITY_HOST {given:?} is not an authority of the {cloud} cloud (expected {expected})"
    )]
    WrongAuthority {
        /// What was set.
        given: String,
        /// The deployment's cloud.
        cloud: Cloud,
        /// The cloud's authority host.
        expected: &'static str,
    },
}

impl Credential {
    /// Chooses the credential from environment variables, read through `var`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Credential, CredentialError> {
        let get = |name: &'static str| {
            var(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(CredentialError::Missing(name))
        };
        Ok(Credential::ClientSecret {
            tenant_id: get("AZURE_TENANT_ID")?,
            client_id: get("AZURE_CLIENT_ID")?,
            secret: Secret::new(get("AZURE_CLIENT_SECRET")?),
        })
    }

    /// The kind, for start-up logs (never the secret).
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ClientSecret { .. } => "client_secret",
        }
    }

    /// The tenant the app lives in.
    pub fn tenant_id(&self) -> &str {
        match self {
            Credential::ClientSecret { tenant_id, .. } => tenant_id,
        }
    }

    /// The app's client id.
    pub fn client_id(&self) -> &str {
        match self {
            Credential::ClientSecret { client_id, .. } => client_id,
        }
    }
}

/// The authority host to use: `AZURE_AUTHORITY_HOST` if set (it must belong to `cloud`),
/// otherwise the cloud's own.
pub fn authority_host(cloud: Cloud, configured: Option<&str>) -> Result<String, CredentialError> {
    let Some(given) = configured.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(cloud.endpoints().login_host.to_owned());
    };
    let host = given
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_ascii_lowercase();
    if Cloud::by_login_host(&host).any(|c| c == cloud) {
        Ok(host)
    } else {
        Err(CredentialError::WrongAuthority {
            given: given.to_owned(),
            cloud,
            expected: cloud.endpoints().login_host,
        })
    }
}

/// A token as Entra issued it.
#[derive(Debug)]
pub struct IssuedToken {
    /// The bearer token.
    pub access_token: Secret,
    /// Lifetime from issue.
    pub expires_in: Duration,
    /// Entra's hint for when to refresh, when it sends one.
    pub refresh_in: Option<Duration>,
}

/// Entra refused, or could not be reached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// Entra answered with an OAuth error.
    #[error("Entra refused the token request: {error}{}{}", .aadsts.map(|c| format!(" (AADSTS{c})")).unwrap_or_default(), .trace_id.as_ref().map(|t| format!(", trace id {t}")).unwrap_or_default())]
    Refused {
        /// OAuth `error`.
        error: String,
        /// The first AADSTS code.
        aadsts: Option<u32>,
        /// Entra's trace id.
        trace_id: Option<String>,
        /// Entra's correlation id.
        correlation_id: Option<String>,
    },
    /// No usable answer: unreachable, timed out, or not a token response.
    #[error("the token endpoint is unavailable: {0}")]
    Unavailable(String),
    /// A token whose lifetime is shorter than the expiry margin is useless.
    #[error(
        "Entra issued a token living {lifetime_secs} s, inside the {margin_secs} s expiry margin"
    )]
    TooShortLived {
        /// Its lifetime.
        lifetime_secs: u64,
        /// The margin.
        margin_secs: u64,
    },
}

/// Entra's extra error fields (graph-facts §2).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EntraErrorFields {
    #[serde(default)]
    error_codes: Vec<u32>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
}

/// Entra's extra token fields (`refresh_in`; `ext_expires_in` is ignored).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EntraTokenFields {
    #[serde(default)]
    refresh_in: Option<u64>,
}
impl ExtraTokenFields for EntraTokenFields {}

type EntraError = StandardErrorResponse<BasicErrorResponseType>;
type EntraTokenResponse = StandardTokenResponse<EntraTokenFields, BasicTokenType>;
type EntraClient = oauth2::Client<
    EntraError,
    EntraTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
>;

/// Asks Entra for an app-only token for `scope` with `credential`.
pub async fn request_token(
    http: &HttpClient,
    credential: &Credential,
    authority_host: &str,
    scope: &str,
) -> Result<IssuedToken, TokenError> {
    let Credential::ClientSecret {
        tenant_id,
        client_id,
        secret,
    } = credential;
    let token_url = format!("https://{authority_host}/{tenant_id}/oauth2/v2.0/token");
    let client = EntraClient::new(ClientId::new(client_id.clone()))
        .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(
            TokenUrl::new(token_url).map_err(|e| TokenError::Unavailable(e.to_string()))?,
        );
    let send = |req: HttpRequest| send_token_request(http.clone(), req);
    let response = client
        .exchange_client_credentials()
        .add_scope(Scope::new(scope.to_owned()))
        .request_async(&send)
        .await
        .map_err(classify)?;
    Ok(IssuedToken {
        access_token: Secret::new(response.access_token().secret().as_str()),
        expires_in: response.expires_in().unwrap_or(Duration::from_secs(3599)),
        refresh_in: response.extra_fields().refresh_in.map(Duration::from_secs),
    })
}

/// oauth2's transport: the shared hyper client, bounded in time and size.
async fn send_token_request(
    http: HttpClient,
    req: HttpRequest,
) -> Result<HttpResponse, TransportError> {
    use http_body_util::{BodyExt, Full, Limited};
    let (parts, body) = req.into_parts();
    let req = http::Request::from_parts(parts, Full::new(bytes::Bytes::from(body)));
    let response = tokio::time::timeout(TOKEN_REQUEST_TIMEOUT, http.request(req))
        .await
        .map_err(|_| TransportError("timed out".into()))?
        .map_err(|e| TransportError(e.to_string()))?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_TOKEN_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| TransportError(e.to_string()))?
        .to_bytes();
    Ok(http::Response::from_parts(parts, body.to_vec()))
}

/// The token endpoint could not be reached or read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(String);

fn classify(err: oauth2::RequestTokenError<TransportError, EntraError>) -> TokenError {
    use oauth2::RequestTokenError as E;
    match err {
        E::ServerResponse(resp) => {
            let fields = extra_error_fields(&resp);
            TokenError::Refused {
                error: resp.error().as_ref().to_owned(),
                aadsts: fields.error_codes.first().copied(),
                trace_id: fields.trace_id,
                correlation_id: fields.correlation_id,
            }
        }
        E::Request(e) => TokenError::Unavailable(e.to_string()),
        // The body may be an HTML error page; never echo it.
        E::Parse(e, _) => {
            TokenError::Unavailable(format!("unreadable token response: {}", e.path()))
        }
        E::Other(m) => TokenError::Unavailable(m),
    }
}

/// oauth2's standard error type drops unknown fields; Entra's AADSTS code and trace id are
/// also in `error_description`, so read them from there.
fn extra_error_fields(resp: &EntraError) -> EntraErrorFields {
    let desc = resp.error_description().map(String::as_str).unwrap_or("");
    let after = |label: &str| {
        desc.split(label)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    };
    let aadsts = desc
        .strip_prefix("AADSTS")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok());
    EntraErrorFields {
        error_codes: aadsts.into_iter().collect(),
        trace_id: after("Trace ID:"),
        correlation_id: after("Correlation ID:"),
    }
}

/// Entra as the broker's token source: the deployment's credential, authority and scope.
pub struct EntraSource {
    /// The shared outbound client.
    pub http: HttpClient,
    /// The app's credential.
    pub credential: Credential,
    /// The authority host.
    pub authority_host: String,
    /// The cloud's `.default` scope.
    pub scope: String,
}

impl crate::token::TokenSource for EntraSource {
    fn fetch(&self) -> crate::upstream::BoxFuture<'_, Result<IssuedToken, TokenError>> {
        Box::pin(request_token(
            &self.http,
            &self.credential,
            &self.authority_host,
            &self.scope,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variables_are_named_and_suggest_the_emulator() {
        let env = |name: &str| (name == "AZURE_TENANT_ID").then(|| "t".to_owned());
        let err = Credential::from_env(env).unwrap_err().to_string();
        assert!(err.starts_with("AZURE_CLIENT_ID is not set"), "{err}");
        assert!(err.contains("--emulator"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let env = |name: &str| Some(format!("value-of-{name}"));
        let cred = Credential::from_env(env).unwrap();
        let shown = format!("{cred:?}");
        assert!(!shown.contains("value-of-AZURE_CLIENT_SECRET"), "{shown}");
        assert_eq!(cred.kind(), "client_secret");
    }

    #[test]
    fn authority_host_must_belong_to_the_cloud() {
        assert_eq!(
            authority_host(Cloud::China, None).unwrap(),
            "login.partner.microsoftonline.cn"
        );
        assert_eq!(
            authority_host(Cloud::China, Some("https://login.chinacloudapi.cn/")).unwrap(),
            "login.chinacloudapi.cn"
        );
        assert_eq!(
            authority_host(Cloud::UsDod, Some("login.microsoftonline.us")).unwrap(),
            "login.microsoftonline.us"
        );
        assert!(authority_host(Cloud::UsGov, Some("https://login.microsoftonline.com/")).is_err());
    }

    #[test]
    fn aadsts_code_and_trace_id_come_from_the_description() {
        let resp: EntraError = serde_json::from_str(r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 0a1b\r\nCorrelation ID: 2c3d\r\nTimestamp: 2026-01-01 00:00:00Z","error_codes":[7000215]}"#).unwrap();
        let f = extra_error_fields(&resp);
        assert_eq!(f.error_codes, vec![7000215]);
        assert_eq!(f.trace_id.as_deref(), Some("0a1b"));
        assert_eq!(f.correlation_id.as_deref(), Some("2c3d"));
    }
}
