//! Every way a request can fail, and the one place that turns a failure into Graph's error
//! JSON with the right status. Messages speak in the caller's terms and never carry secrets.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::credential::TokenError;
use crate::identity::AuthError;
use crate::route::RouteError;
use crate::schema::SchemaError;

/// Why the gateway did not forward (or could not complete) a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No usable caller identity.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The path is no known operation, or is malformed.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// Query parameters are not part of any action.
    #[error("query parameters are not accepted on this operation (only 'dry-run')")]
    QueryNotAllowed,
    /// The policy does not allow this request; the message is for the caller.
    #[error("{0}")]
    Forbidden(String),
    /// The body is larger than the limit.
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("the request body must be sent as 'Content-Type: application/json'")]
    UnsupportedMediaType,
    /// The body could not be read (client went away, or bad framing).
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    /// The body did not arrive in time.
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// An unusable `Idempotency-Key`.
    #[error("{0}")]
    BadIdempotencyKey(&'static str),
    /// An idempotency key reused for a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// Too many requests in flight: shed before doing any work.
    #[error("graphgate is at its in-flight request limit; retry shortly")]
    Overloaded,
    /// The body does not match the action's schema.
    #[error(transparent)]
    BadBody(#[from] SchemaError),
    /// A simplified-API body that cannot be mapped to Graph's.
    #[error(transparent)]
    BadSimpleBody(#[from] crate::simple::SimpleError),
    /// The person or reason stated is unusable, or the allowing rule requires one not stated.
    #[error(transparent)]
    Context(#[from] crate::identity::context::ContextError),
    /// A rate limit or the tenant pacing refused the request for now.
    #[error("rate limit reached ({scope}); retry after {retry_after_secs} s")]
    RateLimited {
        /// Which budget ran out: the caller's, the rule's, or the tenant's write pacing.
        scope: &'static str,
        /// When to retry.
        retry_after_secs: u64,
    },
    /// No usable token could be obtained from Entra.
    #[error("graphgate could not obtain a token from Microsoft Entra: {0}")]
    Token(Arc<TokenError>),
    /// Graph could not be reached; nothing was sent.
    #[error("Microsoft Graph could not be reached; the request was not sent: {0}")]
    UpstreamUnavailable(String),
    /// The request may have reached Graph, but no answer came back.
    #[error(
        "the request was sent to Microsoft Graph but no complete answer came back; the action may or may not have run, check the device: {0}"
    )]
    OutcomeUnknown(String),
    /// Graph took longer than the upstream timeout; the action may have run.
    #[error(
        "Microsoft Graph did not answer within {0} s; the action may or may not have run, check the device"
    )]
    UpstreamTimeout(u64),
    /// Graph itself answered 504: its back end may or may not have run the action.
    #[error(
        "Microsoft Graph answered 504 Gateway Timeout; the action may or may not have run, check the device ({0})"
    )]
    GraphTimedOut(String),
    /// The audit log could not record the intent; nothing was sent (fail closed).
    #[error("the audit log is unavailable, so graphgate did not send the request")]
    AuditUnavailable(#[source] crate::audit::WriteError),
}

impl From<Arc<TokenError>> for GatewayError {
    fn from(e: Arc<TokenError>) -> Self {
        GatewayError::Token(e)
    }
}

impl GatewayError {
    /// Whether the request may have reached Graph and run: such failures are never retried,
    /// and a duplicate gets the same answer.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            GatewayError::OutcomeUnknown(_)
                | GatewayError::UpstreamTimeout(_)
                | GatewayError::GraphTimedOut(_)
        )
    }

    /// The HTTP status for this failure.
    pub fn status(&self) -> StatusCode {
        use GatewayError as E;
        match self {
            E::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            E::Route(RouteError::NotFound) => StatusCode::NOT_FOUND,
            E::Route(RouteError::MethodNotAllowed) => StatusCode::METHOD_NOT_ALLOWED,
            E::Route(RouteError::TooLong) => StatusCode::URI_TOO_LONG,
            E::Route(_)
            | E::QueryNotAllowed
            | E::BadBody(_)
            | E::BadSimpleBody(_)
            | E::Context(_)
            | E::BodyRead(_) => StatusCode::BAD_REQUEST,
            E::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            E::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            E::BadIdempotencyKey(_) => StatusCode::BAD_REQUEST,
            E::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            E::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            E::Token(_) | E::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            E::UpstreamUnavailable(_) | E::OutcomeUnknown(_) => StatusCode::BAD_GATEWAY,
            E::UpstreamTimeout(_) | E::GraphTimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The Graph-style error code; stable, for clients and the audit to branch on.
    pub fn code(&self) -> &'static str {
        use GatewayError as E;
        match self {
            E::Unauthenticated(_) => "InvalidAuthenticationToken",
            E::Route(RouteError::NotFound) => "resourceNotFound",
            E::Route(RouteError::MethodNotAllowed) => "methodNotAllowed",
            E::Route(RouteError::TooLong) => "requestUriTooLong",
            E::Route(_) | E::QueryNotAllowed | E::BodyRead(_) => "invalidRequest",
            E::BadBody(_) | E::BadSimpleBody(_) | E::Context(_) => "invalidRequest",
            E::RateLimited { .. } => "activityLimitReached",
            E::BodyTimeout(_) => "requestTimeout",
            E::BadIdempotencyKey(_) => "invalidRequest",
            E::IdempotencyKeyReused => "idempotencyKeyReused",
            E::Overloaded => "serviceNotAvailable",
            E::Forbidden(_) => "accessDenied",
            E::BodyTooLarge { .. } => "requestEntityTooLarge",
            E::UnsupportedMediaType => "unsupportedMediaType",
            E::Token(_) => "tokenAcquisitionFailed",
            E::AuditUnavailable(_) => "auditUnavailable",
            E::UpstreamUnavailable(_) => "upstreamUnavailable",
            E::OutcomeUnknown(_) | E::UpstreamTimeout(_) | E::GraphTimedOut(_) => {
                "upstreamOutcomeUnknown"
            }
        }
    }

    /// The Graph-shaped response for this failure.
    pub fn to_response(&self, request_id: &str, client_request_id: &str) -> Response<Full<Bytes>> {
        let body = crate::graph_error::body(
            self.code(),
            &self.to_string(),
            request_id,
            client_request_id,
        );
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            GatewayError::Unauthenticated(e) => {
                h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(e.challenge()));
            }
            GatewayError::Route(RouteError::MethodNotAllowed) => {
                h.insert(http::header::ALLOW, HeaderValue::from_static("POST"));
            }
            GatewayError::Token(_) | GatewayError::AuditUnavailable(_) => {
                h.insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            GatewayError::Overloaded => {
                h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            GatewayError::RateLimited {
                retry_after_secs, ..
            } => {
                h.insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        resp
    }
}

/// The answer when something unexpected went wrong: no detail for the client (it is logged).
pub fn internal_error_response() -> Response<Full<Bytes>> {
    let id = uuid::Uuid::new_v4().to_string();
    let body = crate::graph_error::body(
        "generalException",
        "something went wrong; the gateway logged the details",
        &id,
        &id,
    );
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(resp: &Response<Full<Bytes>>) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt
            .block_on(http_body_util::BodyExt::collect(resp.body().clone()))
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn statuses_codes_and_headers() {
        let r = GatewayError::Unauthenticated(AuthError::Missing).to_response("rid", "crid");
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], r#"Bearer realm="graphgate""#);
        let t =
            GatewayError::Unauthenticated(AuthError::Token(crate::identity::TokenRefusal::Expired))
                .to_response("rid", "crid");
        assert_eq!(
            t.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="graphgate", error="invalid_token""#
        );
        assert_eq!(
            json(&t)["error"]["message"],
            "the token has expired (or has no 'exp')"
        );
        assert_eq!(json(&r)["error"]["code"], "InvalidAuthenticationToken");
        assert_eq!(json(&r)["error"]["innerError"]["client-request-id"], "crid");

        assert_eq!(GatewayError::Route(RouteError::NotFound).status(), 404);
        assert_eq!(GatewayError::Forbidden("x".into()).status(), 403);
        assert_eq!(GatewayError::BodyTooLarge { limit: 1 }.status(), 413);
        assert_eq!(GatewayError::UnsupportedMediaType.status(), 415);
        assert_eq!(
            GatewayError::Route(RouteError::BadId("managedDeviceId")).status(),
            400
        );
        let t = GatewayError::Token(Arc::new(TokenError::Unavailable("down".into())));
        assert_eq!(
            (t.status(), t.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "tokenAcquisitionFailed")
        );
        assert_ne!(
            GatewayError::UpstreamUnavailable(String::new()).code(),
            GatewayError::OutcomeUnknown(String::new()).code()
        );
    }
}
