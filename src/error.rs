//! Why a request was not forwarded (or could not be completed), and the one place that
//! turns a failure into what the caller sees: status, Graph error code, message and headers
//! ([`GatewayError::answer`]). Each stage has its own error type; this module sits above them
//! all. Callers get fixed words for internal and upstream failures; the detail (the error's
//! chain, see [`chain`]) goes to the log, with the request id.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::audit::WriteError;
use crate::credential::TokenError;
use crate::forward::UpstreamError;
use crate::identity::AuthError;
use crate::identity::context::ContextError;
use crate::inbound::InboundError;
use crate::operation::route::RouteError;

/// Why the gateway did not forward (or could not complete) a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No usable caller identity.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The request could not be admitted: unknown path, bad query, header or body.
    #[error(transparent)]
    Inbound(#[from] InboundError),
    /// The person or reason stated is unusable, or the allowing rule requires one not stated.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The policy does not allow this request; the message is for the caller.
    #[error("{0}")]
    Forbidden(String),
    /// A rate limit, the tenant pacing or the caller's in-flight bound refused it for now.
    #[error("rate limit reached ({scope}); retry after {retry_after_secs} s")]
    RateLimited {
        /// Which budget ran out: the caller's, the rule's, or the tenant's write pacing.
        scope: &'static str,
        /// When to retry.
        retry_after_secs: u64,
    },
    /// A bulk request lists more devices than a rate limit allows in one window: it would
    /// never be admitted as it is (rate limits count devices, like budgets).
    #[error(
        "the request lists {devices} devices, but the {scope}'s rate limit allows at most {count} per {window_secs} s: send at most {count} devices per request"
    )]
    OverRate {
        /// `caller` or `rule`.
        scope: &'static str,
        /// Devices listed.
        devices: u32,
        /// The rate's count.
        count: u32,
        /// Its window.
        window_secs: u64,
    },
    /// Too many requests in flight: shed before doing any work.
    #[error("graphgate is at its in-flight request limit; retry shortly")]
    Overloaded,
    /// An idempotency key reused for a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// The first request with this idempotency key is still running (past the wait bound).
    #[error(
        "a request with this Idempotency-Key is still in progress; retry later to get its answer"
    )]
    IdempotencyInFlight,
    /// A daily or hourly budget has no room for the request (see `ratelimit`).
    #[error(
        "the budget {budget} ({limit}) is used up; it renews in {retry_after_secs} s, when its next UTC window starts"
    )]
    BudgetExhausted {
        /// `caller:<name>`, `rule:<name>` or `tenant:<operation>`.
        budget: String,
        /// Its limit, as the policy writes it.
        limit: String,
        /// Seconds until the next window.
        retry_after_secs: u64,
    },
    /// The gateway is shutting down: the request was not sent (another replica takes it).
    #[error(
        "graphgate is shutting down and did not send the request; retry (another replica will take it)"
    )]
    ShuttingDown,
    /// The state store (idempotency, limits, budgets) did not answer: nothing was sent.
    #[error("graphgate's state store did not answer ({}), so the request was not sent; retry shortly", .0.kind().as_str())]
    StateUnavailable(#[source] crate::state::StoreError),
    /// No usable token could be obtained from Entra; nothing was sent.
    #[error("graphgate could not obtain a token from Microsoft Entra")]
    Token(#[from] Arc<TokenError>),
    /// The audit log could not record the intent; nothing was sent (fail closed).
    #[error("the audit log is unavailable, so graphgate did not send the request")]
    AuditUnavailable(#[from] WriteError),
    /// Graph gave no usable answer.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// Everything a caller is told about one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The Graph-style error code: stable, for clients and the audit to branch on.
    pub code: &'static str,
    /// The message, in the caller's terms; never a secret, never an internal error chain.
    pub message: Cow<'static, str>,
    /// The one header the failure calls for, if any (`WWW-Authenticate`, `Allow`,
    /// `Retry-After`); `Content-Type` is always set.
    pub header: Option<(HeaderName, HeaderValue)>,
}

impl Answer {
    fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Answer {
            status,
            code,
            message: message.into(),
            header: None,
        }
    }

    fn with(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.header = Some((name, value));
        self
    }

    fn retry_after(self, secs: u64) -> Self {
        self.with(RETRY_AFTER, HeaderValue::from(secs))
    }

    /// The Graph-shaped error body.
    pub fn body(&self, request_id: &str, client_request_id: &str) -> Bytes {
        crate::graph_error::body(self.code, &self.message, request_id, client_request_id)
    }

    /// The response carrying `body` (see [`Answer::body`]).
    pub fn response(&self, body: Bytes) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some((name, value)) = &self.header {
            h.insert(name, value.clone());
        }
        resp
    }
}

impl GatewayError {
    /// What the caller sees for this failure: the one place failures are mapped.
    pub fn answer(&self) -> Answer {
        use GatewayError as E;
        match self {
            E::Unauthenticated(e) => Answer::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                e.to_string(),
            )
            .with(WWW_AUTHENTICATE, HeaderValue::from_static(e.challenge())),
            E::Inbound(e) => inbound(e),
            E::Context(e) => Answer::new(StatusCode::BAD_REQUEST, "invalidRequest", e.to_string()),
            E::Forbidden(message) => {
                Answer::new(StatusCode::FORBIDDEN, "accessDenied", message.clone())
            }
            E::RateLimited {
                retry_after_secs, ..
            } => Answer::new(
                StatusCode::TOO_MANY_REQUESTS,
                "activityLimitReached",
                self.to_string(),
            )
            .retry_after(*retry_after_secs),
            // Waiting does not help: the request must be split. The window is when a split
            // request's first part certainly fits.
            E::OverRate { window_secs, .. } => Answer::new(
                StatusCode::TOO_MANY_REQUESTS,
                "activityLimitReached",
                self.to_string(),
            )
            .retry_after((*window_secs).max(1)),
            E::Overloaded => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                self.to_string(),
            )
            .retry_after(1),
            E::IdempotencyKeyReused => Answer::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotencyKeyReused",
                self.to_string(),
            ),
            E::IdempotencyInFlight => Answer::new(
                StatusCode::CONFLICT,
                "idempotencyKeyInFlight",
                self.to_string(),
            )
            .retry_after(5),
            E::BudgetExhausted {
                retry_after_secs, ..
            } => Answer::new(
                StatusCode::TOO_MANY_REQUESTS,
                "budgetExhausted",
                self.to_string(),
            )
            .retry_after(*retry_after_secs),
            E::ShuttingDown => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                self.to_string(),
            )
            .retry_after(1),
            // The kind only (timeout, connection, ...): the store's address stays in the log.
            E::StateUnavailable(_) => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stateStoreUnavailable",
                self.to_string(),
            )
            .retry_after(2),
            E::Token(e) => token(e),
            E::AuditUnavailable(_) => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "auditUnavailable",
                self.to_string(),
            )
            .retry_after(5),
            E::Upstream(e) => upstream(e),
        }
    }

    /// Whether the request may have reached Graph and run: such failures are never retried,
    /// and a duplicate gets the same answer.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, GatewayError::Upstream(e) if e.outcome_unknown())
    }
}

/// A request that could not be admitted: the caller's to fix, so its message is shown.
fn inbound(e: &InboundError) -> Answer {
    use InboundError as I;
    let says = |status, code| Answer::new(status, code, e.to_string());
    match e {
        I::Route(RouteError::NotFound) => says(StatusCode::NOT_FOUND, "resourceNotFound"),
        I::Route(RouteError::MethodNotAllowed(allow)) => {
            says(StatusCode::METHOD_NOT_ALLOWED, "methodNotAllowed")
                .with(ALLOW, HeaderValue::from_static(allow))
        }
        I::Route(RouteError::TooLong) => says(StatusCode::URI_TOO_LONG, "requestUriTooLong"),
        I::BodyTooLarge { .. } => says(StatusCode::PAYLOAD_TOO_LARGE, "requestEntityTooLarge"),
        I::UnsupportedMediaType => says(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupportedMediaType"),
        I::BodyTimeout(_) => says(StatusCode::REQUEST_TIMEOUT, "requestTimeout"),
        I::Route(_)
        | I::QueryNotAllowed
        | I::BadIdempotencyKey(_)
        | I::BodyRead(_)
        | I::BadBody(_)
        | I::BadSimpleBody(_)
        | I::UnexpectedBody(_)
        | I::BadBulk(_) => says(StatusCode::BAD_REQUEST, "invalidRequest"),
    }
}

/// No token: the caller is told so and when to retry. Entra's own error code and trace id
/// are passed on (the caller may quote them to whoever runs the app registration); any
/// other detail (transport errors, file paths) stays in the log.
fn token(e: &TokenError) -> Answer {
    let message = match e {
        TokenError::Refused { .. } => {
            format!("graphgate could not obtain a token from Microsoft Entra: {e}").into()
        }
        _ => Cow::Borrowed("graphgate could not obtain a token from Microsoft Entra"),
    };
    Answer::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "tokenAcquisitionFailed",
        message,
    )
    .retry_after(5)
}

/// Graph gave no usable answer: fixed words saying whether the action may have run (and
/// Graph's request id when Graph answered); the transport's error chain stays in the log.
fn upstream(e: &UpstreamError) -> Answer {
    const MAY_HAVE_RUN: &str = "the action may or may not have run, check the device";
    let unknown =
        |message: String| Answer::new(StatusCode::BAD_GATEWAY, "upstreamOutcomeUnknown", message);
    match e {
        UpstreamError::Unreachable(_) => Answer::new(
            StatusCode::BAD_GATEWAY,
            "upstreamUnavailable",
            "Microsoft Graph could not be reached; the request was not sent",
        ),
        UpstreamError::Lost(_) => unknown(format!(
            "the request was sent to Microsoft Graph but no complete answer came back; {MAY_HAVE_RUN}"
        )),
        UpstreamError::GraphBadGateway { graph_request_id } => unknown(format!(
            "Microsoft Graph answered 502 Bad Gateway; {MAY_HAVE_RUN} (Graph request-id {graph_request_id})"
        )),
        UpstreamError::Timeout(secs) => Answer {
            status: StatusCode::GATEWAY_TIMEOUT,
            ..unknown(format!(
                "Microsoft Graph did not answer within {secs} s; {MAY_HAVE_RUN}"
            ))
        },
        UpstreamError::GraphTimedOut { graph_request_id } => Answer {
            status: StatusCode::GATEWAY_TIMEOUT,
            ..unknown(format!(
                "Microsoft Graph answered 504 Gateway Timeout; {MAY_HAVE_RUN} (Graph request-id {graph_request_id})"
            ))
        },
        UpstreamError::Token(e) => token(e),
    }
}

/// An error and its sources, `: `-separated: what the log gets.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The answer when something unexpected went wrong: no detail for the client (it is logged).
pub fn internal_error_response() -> Response<Full<Bytes>> {
    let id = uuid::Uuid::new_v4().to_string();
    let answer = Answer::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "generalException",
        "something went wrong; the gateway logged the details",
    );
    answer.response(answer.body(&id, &id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::schema::SchemaError;
    use crate::operation::simple::SimpleError;

    /// What a caller sees: status, code, message, the extra header, and the body's JSON.
    fn seen(err: impl Into<GatewayError>) -> (u16, String, String, Header) {
        let err = err.into();
        let answer = err.answer();
        let resp = answer.response(answer.body("rid", "crid"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt
            .block_on(http_body_util::BodyExt::collect(resp.body().clone()))
            .unwrap()
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(json["error"]["innerError"]["request-id"], "rid");
        assert_eq!(json["error"]["innerError"]["client-request-id"], "crid");
        assert_eq!(json["error"]["code"], answer.code, "body and answer agree");
        assert_eq!(json["error"]["message"], answer.message.as_ref());
        let header = answer.header.as_ref().map(|(name, value)| {
            assert_eq!(resp.headers()[name], value, "the header is on the response");
            (name.to_string(), value.to_str().unwrap().to_owned())
        });
        assert_eq!(resp.headers().len(), 1 + usize::from(header.is_some()));
        (
            resp.status().as_u16(),
            answer.code.to_owned(),
            answer.message.into_owned(),
            header,
        )
    }

    /// The extra header a failure carries, as (name, value).
    type Header = Option<(String, String)>;

    fn header(name: &str, value: &str) -> Header {
        Some((name.to_owned(), value.to_owned()))
    }

    /// A transport error chain with details no caller may see.
    fn transport(detail: &str) -> Box<dyn std::error::Error + Send + Sync> {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, detail.to_owned());
        Box::new(std::io::Error::other(inner))
    }

    #[test]
    fn identity_failures_are_401_with_a_bearer_challenge() {
        for e in [
            AuthError::Missing,
            AuthError::Malformed,
            AuthError::UnknownKey,
            AuthError::UnknownCertificate,
            AuthError::SeveralCommonNames,
            AuthError::Ambiguous,
        ] {
            let (status, code, message, h) = seen(e);
            assert_eq!((status, code.as_str()), (401, "InvalidAuthenticationToken"));
            assert_eq!(message, e.to_string());
            assert_eq!(h, header("www-authenticate", r#"Bearer realm="graphgate""#));
        }
        // A token presented and refused: RFC 6750's invalid_token, and why.
        let refused = AuthError::Token(crate::identity::TokenRefusal::Expired);
        let (status, code, message, h) = seen(refused);
        assert_eq!((status, code.as_str()), (401, "InvalidAuthenticationToken"));
        assert_eq!(message, "the token has expired (or has no 'exp')");
        assert_eq!(
            h,
            header(
                "www-authenticate",
                r#"Bearer realm="graphgate", error="invalid_token""#
            )
        );
    }

    #[test]
    fn an_unusable_person_or_reason_is_the_callers_to_fix() {
        let (status, code, message, h) = seen(ContextError::BadReason("X-Graphgate-Reason"));
        assert_eq!((status, code.as_str(), h), (400, "invalidRequest", None));
        assert!(
            message.starts_with("X-Graphgate-Reason must be visible text"),
            "{message}"
        );
    }

    #[test]
    fn admission_failures_are_the_callers_to_fix_and_say_why() {
        use InboundError as I;
        let cases: Vec<(InboundError, u16, &str, Header)> = vec![
            (
                I::Route(RouteError::NotFound),
                404,
                "resourceNotFound",
                None,
            ),
            (
                I::Route(RouteError::MethodNotAllowed("POST")),
                405,
                "methodNotAllowed",
                header("allow", "POST"),
            ),
            (
                I::Route(RouteError::MethodNotAllowed("GET")),
                405,
                "methodNotAllowed",
                header("allow", "GET"),
            ),
            (
                I::Route(RouteError::NotInVersion {
                    op: "managedDevices.enableLostMode",
                    version: "v1.0",
                }),
                400,
                "invalidRequest",
                None,
            ),
            (I::UnexpectedBody("GET"), 400, "invalidRequest", None),
            (
                I::BadBulk(crate::bulk::BulkError::NoDevices),
                400,
                "invalidRequest",
                None,
            ),
            (
                I::Route(RouteError::TooLong),
                414,
                "requestUriTooLong",
                None,
            ),
            (
                I::Route(RouteError::BadId("managedDeviceId")),
                400,
                "invalidRequest",
                None,
            ),
            (
                I::Route(RouteError::Malformed("x")),
                400,
                "invalidRequest",
                None,
            ),
            (I::QueryNotAllowed, 400, "invalidRequest", None),
            (I::BadIdempotencyKey("bad key"), 400, "invalidRequest", None),
            (I::UnsupportedMediaType, 415, "unsupportedMediaType", None),
            (
                I::BodyTooLarge { limit: 10 },
                413,
                "requestEntityTooLarge",
                None,
            ),
            (I::BodyTimeout(10), 408, "requestTimeout", None),
            (
                I::BadBody(SchemaError::UnknownProperty("x".into())),
                400,
                "invalidRequest",
                None,
            ),
            (
                I::BadSimpleBody(SimpleError::Unknown(vec!["x".into()])),
                400,
                "invalidRequest",
                None,
            ),
        ];
        for (e, status, code, h) in cases {
            let display = e.to_string();
            let got = seen(e);
            assert_eq!(got, (status, code.to_owned(), display, h));
        }
        // The client's own broken body: said so, without the transport's words.
        let (status, code, message, _) = seen(I::BodyRead(transport("peer 10.9.8.7 reset")));
        assert_eq!((status, code.as_str()), (400, "invalidRequest"));
        assert_eq!(message, "the request body could not be read");
    }

    #[test]
    fn the_gateways_own_refusals_say_when_to_retry() {
        let (status, code, message, h) =
            seen(GatewayError::Forbidden("denied by policy rule 'r'".into()));
        assert_eq!(
            (status, code.as_str(), message.as_str(), h),
            (403, "accessDenied", "denied by policy rule 'r'", None)
        );
        let limited = GatewayError::RateLimited {
            scope: "caller",
            retry_after_secs: 7,
        };
        let (status, code, _, h) = seen(limited);
        assert_eq!(
            (status, code.as_str(), h),
            (429, "activityLimitReached", header("retry-after", "7"))
        );
        let (status, code, _, h) = seen(GatewayError::Overloaded);
        assert_eq!(
            (status, code.as_str(), h),
            (503, "serviceNotAvailable", header("retry-after", "1"))
        );
        let (status, code, _, h) = seen(GatewayError::IdempotencyKeyReused);
        assert_eq!(
            (status, code.as_str(), h),
            (422, "idempotencyKeyReused", None)
        );
        let (status, code, _, h) = seen(GatewayError::IdempotencyInFlight);
        assert_eq!(
            (status, code.as_str(), h),
            (409, "idempotencyKeyInFlight", header("retry-after", "5"))
        );
        let (status, code, message, h) = seen(GatewayError::BudgetExhausted {
            budget: "caller:ops".into(),
            limit: "5 per day".into(),
            retry_after_secs: 3600,
        });
        assert_eq!(
            (status, code.as_str(), h),
            (429, "budgetExhausted", header("retry-after", "3600"))
        );
        assert!(message.contains("caller:ops (5 per day)"), "{message}");
    }

    #[test]
    fn a_state_store_that_does_not_answer_is_503_naming_only_the_kind() {
        use crate::state::{StoreError, StoreErrorKind};
        let e = StoreError::new(StoreErrorKind::Connection, "refused by cache.internal:6380");
        let (status, code, message, h) = seen(GatewayError::StateUnavailable(e));
        assert_eq!(
            (status, code.as_str(), h),
            (503, "stateStoreUnavailable", header("retry-after", "2"))
        );
        assert!(message.contains("(connection)"), "{message}");
        assert!(!message.contains("cache.internal"), "{message}");
    }

    #[test]
    fn token_failures_are_503_passing_on_only_entras_code_and_trace_id() {
        let refused = TokenError::Refused {
            error: "invalid_client".into(),
            aadsts: Some(7_000_215),
            trace_id: Some("trace-1".into()),
            correlation_id: Some("corr-1".into()),
        };
        let (status, code, message, h) = seen(Arc::new(refused.clone()));
        assert_eq!(
            (status, code.as_str(), h),
            (503, "tokenAcquisitionFailed", header("retry-after", "5"))
        );
        assert!(
            message.contains("AADSTS7000215") && message.contains("trace-1"),
            "{message}"
        );
        for detail in [
            TokenError::Unavailable("tcp connect error: 10.1.2.3:443".into()),
            TokenError::Credential("/var/run/secrets/azure/token: cannot read".into()),
        ] {
            let (status, code, message, h) = seen(Arc::new(detail));
            assert_eq!(
                (status, code.as_str(), h),
                (503, "tokenAcquisitionFailed", header("retry-after", "5"))
            );
            assert_eq!(
                message,
                "graphgate could not obtain a token from Microsoft Entra"
            );
        }
        // A refreshed token that could not be had, inside the upstream stage: the same answer.
        let inside = seen(UpstreamError::Token(Arc::new(refused)));
        assert_eq!(inside.0, 503);
        assert_eq!(inside.1, "tokenAcquisitionFailed");
        assert!(
            !GatewayError::from(UpstreamError::Token(Arc::new(TokenError::Unavailable(
                String::new()
            ))))
            .outcome_unknown()
        );
    }

    #[test]
    fn an_unwritable_audit_log_is_503_and_nothing_was_sent() {
        let (status, code, message, h) = seen(WriteError::Io("disk full at /var/log/x".into()));
        assert_eq!(
            (status, code.as_str(), h),
            (503, "auditUnavailable", header("retry-after", "5"))
        );
        assert_eq!(
            message,
            "the audit log is unavailable, so graphgate did not send the request"
        );
    }

    #[test]
    fn upstream_failures_get_fixed_words_and_the_chain_goes_to_the_log() {
        let secret_detail = "tcp connect error: Connection refused (os error 111) 10.1.2.3:443";
        let unreachable = GatewayError::from(UpstreamError::Unreachable(transport(secret_detail)));
        assert!(!unreachable.outcome_unknown());
        assert!(
            chain(&unreachable).contains(secret_detail),
            "the log has it"
        );
        let (status, code, message, h) = seen(unreachable);
        assert_eq!(
            (status, code.as_str(), message.as_str(), h),
            (
                502,
                "upstreamUnavailable",
                "Microsoft Graph could not be reached; the request was not sent",
                None
            )
        );
        let unknown: Vec<(UpstreamError, u16, &str)> = vec![
            (
                UpstreamError::Lost(transport(secret_detail)),
                502,
                "no complete answer came back",
            ),
            (
                UpstreamError::GraphBadGateway {
                    graph_request_id: "g-1".into(),
                },
                502,
                "502 Bad Gateway",
            ),
            (
                UpstreamError::Timeout(30),
                504,
                "did not answer within 30 s",
            ),
            (
                UpstreamError::GraphTimedOut {
                    graph_request_id: "g-2".into(),
                },
                504,
                "504 Gateway Timeout",
            ),
        ];
        for (e, want_status, says) in unknown {
            let e = GatewayError::from(e);
            assert!(e.outcome_unknown(), "{e}");
            let (status, code, message, h) = seen(e);
            assert_eq!(
                (status, code.as_str(), h),
                (want_status, "upstreamOutcomeUnknown", None)
            );
            assert!(
                message.contains(says) && message.contains("may or may not have run"),
                "{message}"
            );
            assert!(!message.contains("os error"), "{message}");
        }
        let (_, _, message, _) = seen(UpstreamError::GraphBadGateway {
            graph_request_id: "g-1".into(),
        });
        assert!(message.contains("Graph request-id g-1"), "{message}");
    }

    #[test]
    fn an_internal_error_says_nothing_but_where_to_look() {
        let resp = internal_error_response();
        assert_eq!(resp.status(), 500);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    }
}
