//! Entra's token-endpoint errors (graph-facts §2): the AADSTS catalogue the emulator uses
//! and the JSON shape (`error`, `error_description`, `error_codes`, `timestamp`, `trace_id`,
//! `correlation_id`, `error_uri`). Descriptions never contain a secret.

use http::{Response, StatusCode};

use super::wire::{Body, json, set_header};

/// Longest client-supplied value echoed into a description.
const MAX_ECHO: usize = 200;

/// One token-endpoint refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntraError {
    pub(crate) status: StatusCode,
    /// OAuth 2.0 `error`.
    pub(crate) error: &'static str,
    /// The AADSTS number.
    pub(crate) code: u32,
    /// The description, without the AADSTS prefix and trace lines.
    message: String,
}

fn echo(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ECHO)
        .collect()
}

impl EntraError {
    fn new(status: StatusCode, error: &'static str, code: u32, message: String) -> Self {
        EntraError {
            status,
            error,
            code,
            message,
        }
    }

    pub(crate) fn post_only(method: &str) -> Self {
        let m = format!(
            "The endpoint only accepts POST requests. Received a {} request.",
            echo(method)
        );
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", 900561, m)
    }

    pub(crate) fn tenant_not_found(tenant: &str) -> Self {
        let m = format!(
            "Tenant '{}' not found. Check to make sure you have the correct tenant ID and are signing \
             into the correct cloud. Check with your subscription administrator, this may happen if \
             there are no active subscriptions for the tenant.",
            echo(tenant)
        );
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", 90002, m)
    }

    pub(crate) fn duplicated(param: &str) -> Self {
        let m = format!(
            "The request is not properly formatted. The parameter '{}' is duplicated.",
            echo(param)
        );
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", 9000411, m)
    }

    pub(crate) fn missing(param: &'static str) -> Self {
        let m = format!("The request body must contain the following parameter: '{param}'.");
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", 900144, m)
    }

    pub(crate) fn unsupported_grant(grant: &str) -> Self {
        let m = format!(
            "The app requested an unsupported grant type '{}'.",
            echo(grant)
        );
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", 70003, m)
    }

    pub(crate) fn app_not_found(client_id: &str, tenant: &str) -> Self {
        let m = format!(
            "Application with identifier '{}' was not found in the directory '{}'. This can happen if \
             the application has not been installed by the administrator of the tenant or consented to \
             by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            echo(client_id),
            echo(tenant)
        );
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", 700016, m)
    }

    pub(crate) fn no_credential() -> Self {
        let m = "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.";
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            7000218,
            m.to_owned(),
        )
    }

    pub(crate) fn bad_secret(client_id: &str) -> Self {
        let m = format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the client \
             secret value, not the client secret ID, for a secret added to app '{}'.",
            echo(client_id)
        );
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", 7000215, m)
    }

    pub(crate) fn bad_assertion_type(kind: &str) -> Self {
        let m = format!(
            "The client_assertion_type '{}' is not supported: use urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            echo(kind)
        );
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", 70002, m)
    }

    /// AADSTS700027: the assertion's key is unknown or its signature does not verify.
    pub(crate) fn assertion_signature(detail: &str) -> Self {
        let m = format!(
            "Client assertion failed signature validation. {}",
            echo(detail)
        );
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", 700027, m)
    }

    /// AADSTS50012: the assertion is well signed but its claims are wrong.
    pub(crate) fn assertion_invalid(detail: &str) -> Self {
        let m = format!("Authentication failed. {}", echo(detail));
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", 50012, m)
    }

    /// AADSTS500133: the assertion is outside its validity window.
    pub(crate) fn assertion_time(detail: &str) -> Self {
        let m = format!(
            "Assertion is not within its valid time range. {}",
            echo(detail)
        );
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", 500133, m)
    }

    /// AADSTS700211: no federated identity credential for the assertion's issuer.
    pub(crate) fn no_federated_issuer(issuer: &str) -> Self {
        let m = format!(
            "No matching federated identity record found for presented assertion issuer '{}'.",
            echo(issuer)
        );
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", 700211, m)
    }

    /// AADSTS700213: the issuer is known but not for this subject.
    pub(crate) fn no_federated_subject(subject: &str) -> Self {
        let m = format!(
            "No matching federated identity record found for presented assertion subject '{}'.",
            echo(subject)
        );
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", 700213, m)
    }

    /// AADSTS90033: Entra's transient failure, HTTP 503 `temporarily_unavailable` (as seen
    /// in Azure/azure-sdk-for-python#14241).
    pub(crate) fn temporarily_unavailable() -> Self {
        let m = "A transient error has occurred. Please try again.".to_owned();
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            m,
        )
    }

    /// AADSTS50000: a failure of the sign-in service itself, with `status` (5xx), OAuth
    /// `server_error`.
    pub(crate) fn server_error(status: StatusCode) -> Self {
        let m = "There was an error issuing a token or an issue with our sign-in service.";
        Self::new(status, "server_error", 50000, m.to_owned())
    }

    pub(crate) fn invalid_scope(scope: &str) -> Self {
        let m = format!(
            "The provided request must include a 'scope' input parameter. The provided value for the \
             input parameter 'scope' is not valid. The scope {} is not valid.",
            echo(scope)
        );
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", 70011, m)
    }

    /// Entra's error response; `correlation_id` is the client's `client-request-id` if sent.
    pub(crate) fn response(
        &self,
        login_host: &str,
        correlation_id: Option<&str>,
    ) -> Response<Body> {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = correlation_id
            .filter(|c| crate::microsoft::is_guid(c))
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_ascii_lowercase);
        let timestamp = crate::clock::utc_now()
            .format("%Y-%m-%d %H:%M:%SZ")
            .to_string();
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
            self.code, self.message
        );
        let body = serde_json::json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://{login_host}/error?code={}", self.code),
        });
        let mut resp = json(self.status, &body);
        set_header(&mut resp, "cache-control", "no-store, no-cache");
        set_header(&mut resp, "pragma", "no-cache");
        set_header(&mut resp, "x-ms-request-id", &trace_id);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_matches_entra() {
        let resp =
            EntraError::tenant_not_found("nope").response("login.microsoftonline.com", Some("X"));
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body = futures_body(resp);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "invalid_request");
        assert_eq!(v["error_codes"][0], 90002);
        let d = v["error_description"].as_str().unwrap();
        assert!(
            d.starts_with("AADSTS90002: Tenant 'nope' not found."),
            "{d}"
        );
        assert!(
            d.contains("\r\nTrace ID: ")
                && d.contains("\r\nCorrelation ID: ")
                && d.contains("\r\nTimestamp: ")
        );
        assert_eq!(
            v["error_uri"],
            "https://login.microsoftonline.com/error?code=90002"
        );
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    fn futures_body(resp: Response<Body>) -> bytes::Bytes {
        use http_body_util::BodyExt;
        let fut = resp.into_body().collect();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn echoed_values_are_bounded_and_printable() {
        let e = EntraError::invalid_scope(&format!("a\r\nb{}", "x".repeat(500)));
        assert!(!e.message.contains('\n'));
        assert!(e.message.len() < 400);
    }
}
