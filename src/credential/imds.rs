//! Managed identity through the Azure Instance Metadata Service (graph-facts §2d):
//! `GET {endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=...`
//! with `Metadata: true`, over plain HTTP on a client of its own (the shared client is
//! HTTPS-only). IMDS takes a `resource`, not a scope, and sends `expires_in` as a string.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::{CredentialError, IssuedToken, MAX_TOKEN_RESPONSE_BYTES, TokenError};
use crate::secret::Secret;

/// Where IMDS lives on every Azure VM and node.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// The IMDS token API version graphgate speaks.
pub const IMDS_API_VERSION: &str = "2018-02-01";
/// IMDS answers locally; a slow connect means there is no IMDS here.
const IMDS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest IMDS exchange.
const IMDS_TIMEOUT: Duration = Duration::from_secs(10);

/// A plain-HTTP client for IMDS only.
pub(super) struct ImdsClient {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

#[derive(Deserialize)]
struct ImdsToken {
    access_token: String,
    /// A string in IMDS's answers ("3599"); a number is accepted too.
    expires_in: StringOrNumber,
}

#[derive(Deserialize)]
struct ImdsError {
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    Number(u64),
    Text(String),
}

impl StringOrNumber {
    fn secs(&self) -> Option<u64> {
        match self {
            StringOrNumber::Number(n) => Some(*n),
            StringOrNumber::Text(s) => s.trim().parse().ok(),
        }
    }
}

impl ImdsClient {
    /// A client for IMDS at `endpoint` (`http://host[:port]`).
    pub(super) fn new(endpoint: &str) -> Result<Self, CredentialError> {
        let base = endpoint.trim().trim_end_matches('/').to_owned();
        let uri: http::Uri = base.parse().map_err(|_| {
            CredentialError::Invalid(format!("IMDS endpoint {base:?} is not a URL"))
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(CredentialError::Invalid(format!(
                "IMDS endpoint {base:?} must be http://host[:port] (IMDS is plain HTTP)"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(IMDS_CONNECT_TIMEOUT));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(ImdsClient { base, http })
    }

    /// The request URL for `resource` and an optional user-assigned identity.
    pub(super) fn url(&self, resource: &str, client_id: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("api-version", IMDS_API_VERSION);
        query.append_pair("resource", resource);
        if let Some(id) = client_id {
            query.append_pair("client_id", id);
        }
        format!(
            "{}/metadata/identity/oauth2/token?{}",
            self.base,
            query.finish()
        )
    }

    /// Asks IMDS for a token for `resource`.
    pub(super) async fn request_token(
        &self,
        resource: &str,
        client_id: Option<&str>,
    ) -> Result<IssuedToken, TokenError> {
        let req = http::Request::get(self.url(resource, client_id))
            .header("Metadata", "true")
            .body(Full::new(Bytes::new()))
            .map_err(|e| TokenError::Unavailable(e.to_string()))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| TokenError::Unavailable(format!("IMDS: {e}")))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_TOKEN_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| TokenError::Unavailable(format!("IMDS: {e}")))?
                .to_bytes();
            Ok::<_, TokenError>((status, body))
        };
        let (status, body) = tokio::time::timeout(IMDS_TIMEOUT, exchange)
            .await
            .map_err(|_| TokenError::Unavailable("IMDS timed out".into()))??;
        if !status.is_success() {
            let error = serde_json::from_slice::<ImdsError>(&body)
                .ok()
                .and_then(|e| e.error)
                .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            return Err(TokenError::Refused {
                error: format!("IMDS: {error}"),
                aadsts: None,
                trace_id: None,
                correlation_id: None,
            });
        }
        parse(&body)
    }
}

fn parse(body: &[u8]) -> Result<IssuedToken, TokenError> {
    // serde_json's messages can quote values; report only where parsing stopped.
    let token: ImdsToken = serde_json::from_slice(body).map_err(|e| {
        TokenError::Unavailable(format!(
            "unreadable IMDS response (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let secs = token
        .expires_in
        .secs()
        .ok_or_else(|| TokenError::Unavailable("IMDS expires_in is not a number".into()))?;
    // MSAL's rule for managed identity: refresh at half-life for long-lived tokens.
    let refresh_in = (secs >= 7200).then(|| Duration::from_secs(secs / 2));
    Ok(IssuedToken {
        access_token: Secret::new(token.access_token),
        expires_in: Duration::from_secs(secs),
        refresh_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_may_be_a_string_or_a_number() {
        let t = parse(br#"{"access_token":"a","expires_in":"3599","resource":"r","token_type":"Bearer","refresh_token":""}"#).unwrap();
        assert_eq!(t.expires_in.as_secs(), 3599);
        assert!(t.refresh_in.is_none());
        let t = parse(br#"{"access_token":"a","expires_in":86400}"#).unwrap();
        assert_eq!(t.refresh_in, Some(Duration::from_secs(43200)));
        assert!(parse(br#"{"access_token":"a","expires_in":"soon"}"#).is_err());
    }

    #[test]
    fn url_has_resource_and_user_assigned_id() {
        let c = ImdsClient::new("http://169.254.169.254/").unwrap();
        assert_eq!(
            c.url("https://graph.microsoft.us", Some("abc")),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fgraph.microsoft.us&client_id=abc"
        );
        assert!(ImdsClient::new("https://169.254.169.254").is_err());
        assert!(ImdsClient::new("not a url").is_err());
    }
}
