//! The client-credentials exchange with Entra's v2.0 token endpoint, through the oauth2
//! crate over the shared hyper client: with a client secret or a client assertion (a signed
//! certificate assertion or a federated token), and Entra's errors read back into codes.

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
use std::time::Duration;

use super::{IssuedToken, MAX_TOKEN_RESPONSE_BYTES, TOKEN_REQUEST_TIMEOUT, TokenError};
use crate::secret::Secret;
use crate::upstream::HttpClient;

/// RFC 7523's client-assertion type, the only one Entra accepts.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the app proves itself to Entra.
pub enum ClientAuth {
    /// `client_secret`.
    Secret(Secret),
    /// `client_assertion` (jwt-bearer): a certificate assertion or a federated token.
    Assertion(Secret),
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

/// Asks Entra at `token_url` for an app-only token for `scope`.
pub async fn request_token(
    http: &HttpClient,
    client_id: &str,
    token_url: &str,
    scope: &str,
    auth: ClientAuth,
) -> Result<IssuedToken, TokenError> {
    let mut client = EntraClient::new(ClientId::new(client_id.to_owned()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(
            TokenUrl::new(token_url.to_owned())
                .map_err(|e| TokenError::Unavailable(e.to_string()))?,
        );
    let assertion = match auth {
        ClientAuth::Secret(secret) => {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
            None
        }
        ClientAuth::Assertion(jwt) => Some(jwt),
    };
    let send = |req: HttpRequest| send_token_request(http.clone(), req);
    let mut request = client
        .exchange_client_credentials()
        .add_scope(Scope::new(scope.to_owned()));
    if let Some(jwt) = &assertion {
        // Without a client secret oauth2 puts client_id in the body, as Entra wants.
        request = request
            .add_extra_param("client_assertion_type", JWT_BEARER)
            .add_extra_param("client_assertion", jwt.expose());
    }
    let response = request.request_async(&send).await.map_err(classify)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aadsts_code_and_trace_id_come_from_the_description() {
        let resp: EntraError = serde_json::from_str(r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 0a1b\r\nCorrelation ID: 2c3d\r\nTimestamp: 2026-01-01 00:00:00Z","error_codes":[7000215]}"#).unwrap();
        let f = extra_error_fields(&resp);
        assert_eq!(f.error_codes, vec![7000215]);
        assert_eq!(f.trace_id.as_deref(), Some("0a1b"));
        assert_eq!(f.correlation_id.as_deref(), Some("2c3d"));
    }
}
