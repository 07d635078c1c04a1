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

use crate::admit::{InboundError, RequestIds};
use crate::approval::ApprovalError;
use crate::audit::WriteError;
use crate::credential::TokenError;
use crate::forward::UpstreamError;
use crate::identity::AuthError;
use crate::identity::stated::ContextError;
use crate::operation::route::RouteError;
use crate::policy::Forbidden;
use crate::ratelimit::LimitRefusal;

/// Why the gateway did not forward (or could not complete) a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No usable caller identity.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The request could not be admitted: unknown path, bad query, header or body.
    #[error(transparent)]
    Inbound(InboundError),
    /// The person or reason stated is unusable, or the allowing rule requires one not stated.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The policy does not allow this request.
    #[error(transparent)]
    Forbidden(Forbidden),
    /// The caller's bound on requests in flight refused it for now.
    #[error("rate limit reached (the caller's requests in flight); retry after 1 s")]
    CallerInFlight,
    /// The bound on bulk requests in flight (all callers together) refused it for now.
    #[error("rate limit reached (bulk requests in flight); retry after 1 s")]
    BulkInFlight,
    /// A rate limit, a budget or the tenant pacing refused it for now (or the state store
    /// that keeps them could not answer).
    #[error(transparent)]
    Limit(#[from] LimitRefusal),
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
    /// The gateway is shutting down: the request was not sent (another replica takes it).
    #[error(
        "graphgate is shutting down and did not send the request; retry (another replica will take it)"
    )]
    ShuttingDown,
    /// No usable token could be obtained from Entra; nothing was sent.
    #[error("graphgate could not obtain a token from Microsoft Entra")]
    Token(#[from] Arc<TokenError>),
    /// The audit log could not record the intent; nothing was sent (fail closed).
    #[error("the audit log is unavailable, so graphgate did not send the request")]
    AuditUnavailable(#[from] WriteError),
    /// Graph gave no usable answer.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// An approval step was refused (or its store did not answer).
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    /// Graph answered that Intune's Multi Admin Approval holds the write: it did not run.
    /// (A direct call becomes an approval instead; this answers what cannot, e.g. a break
    /// glass.)
    #[error("Intune's Multi Admin Approval holds this request (approval code {}); it did not run", .0.code)]
    IntuneHold(crate::approval::maa::Hold),
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
            E::Forbidden(refusal) => {
                Answer::new(StatusCode::FORBIDDEN, "accessDenied", refusal.to_string())
            }
            E::CallerInFlight => Answer::new(
                StatusCode::TOO_MANY_REQUESTS,
                "activityLimitReached",
                self.to_string(),
            )
            .retry_after(1),
            E::BulkInFlight => Answer::new(
                StatusCode::TOO_MANY_REQUESTS,
                "activityLimitReached",
                self.to_string(),
            )
            .retry_after(1),
            E::Limit(e) => limit(e),
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
            E::ShuttingDown => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                self.to_string(),
            )
            .retry_after(1),
            E::Token(e) => token(e),
            E::AuditUnavailable(_) => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "auditUnavailable",
                self.to_string(),
            )
            .retry_after(5),
            E::Upstream(e) => upstream_answer(e),
            E::Approval(e) => approval(e),
            E::IntuneHold(_) => Answer::new(
                StatusCode::CONFLICT,
                "intuneApprovalPending",
                self.to_string(),
            ),
        }
    }

    /// Whether the request may have reached Graph and run: such failures are never retried,
    /// and a duplicate gets the same answer.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, GatewayError::Upstream(e) if e.outcome_unknown())
    }
}

/// A request that could not be admitted; what a simplified-API body states is judged like
/// what the headers state.
impl From<InboundError> for GatewayError {
    fn from(e: InboundError) -> Self {
        match e {
            InboundError::Context(e) => GatewayError::Context(e),
            e => GatewayError::Inbound(e),
        }
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
        I::Context(_)
        | I::Route(_)
        | I::QueryNotAllowed
        | I::BadIdempotencyKey(_)
        | I::BodyRead(_)
        | I::BadBody(_)
        | I::BadSimpleBody(_)
        | I::UnexpectedBody(_)
        | I::BadBulk(_) => says(StatusCode::BAD_REQUEST, "invalidRequest"),
    }
}

/// A limit that refused a request for now: 429 and when to retry; a state store that could
/// not answer for the limits is the store's 503.
fn limit(e: &LimitRefusal) -> Answer {
    let (code, message, retry) = match e {
        LimitRefusal::RateLimited { scope, retry } => (
            "activityLimitReached",
            format!(
                "rate limit reached ({scope}); retry after {} s",
                retry.secs()
            ),
            retry.secs(),
        ),
        // Waiting does not help: the request must be split. The window is when a split
        // request's first part certainly fits.
        LimitRefusal::OverRate {
            scope,
            devices,
            rate,
        } => (
            "activityLimitReached",
            format!(
                "the request lists {devices} devices, but the {scope}'s rate limit allows at most {count} per {window} s: send at most {count} devices per request",
                count = rate.count,
                window = rate.per.as_secs(),
            ),
            rate.per.as_secs().max(1),
        ),
        LimitRefusal::Paced(retry) => (
            "activityLimitReached",
            format!(
                "rate limit reached (tenant write pacing); retry after {} s",
                retry.secs()
            ),
            retry.secs(),
        ),
        LimitRefusal::OverBudget {
            budget,
            limit,
            retry,
        } => (
            "budgetExhausted",
            format!(
                "the budget {budget} ({limit}) is used up; it renews in {} s, when its next UTC window starts",
                retry.secs()
            ),
            retry.secs(),
        ),
        LimitRefusal::Store(e) => return state_unavailable(e),
    };
    Answer::new(StatusCode::TOO_MANY_REQUESTS, code, message).retry_after(retry)
}

/// An approval step refused: 404 for what the caller may not see, 403 for who may not do
/// it, 409 for a request or an approval not in a state to take it, 429 past the pending
/// bound; the store's 503.
fn approval(e: &ApprovalError) -> Answer {
    use ApprovalError as A;
    let says = |status, code| Answer::new(status, code, e.to_string());
    match e {
        A::NotFound(_) => says(StatusCode::NOT_FOUND, "resourceNotFound"),
        A::NotAnApprover(_) | A::OwnRequest(_) | A::NotTheRequester(_) | A::NoBreakGlass(_) => {
            says(StatusCode::FORBIDDEN, "accessDenied")
        }
        A::AlreadyReviewed(_) => says(StatusCode::CONFLICT, "approvalAlreadyReviewed"),
        A::NotNow { .. } => says(StatusCode::CONFLICT, "approvalNotInThatState"),
        A::HashMismatch(_) | A::NotThisRequest(_) => {
            says(StatusCode::CONFLICT, "approvalRequestMismatch")
        }
        A::Duplicate(_) => says(StatusCode::CONFLICT, "approvalAlreadyPending"),
        A::BreakGlassUnreviewed(_) => says(StatusCode::CONFLICT, "breakGlassUnreviewed"),
        A::TooManyPending(_) => {
            says(StatusCode::TOO_MANY_REQUESTS, "tooManyPendingApprovals").retry_after(60)
        }
        A::KeyReused(_) => says(StatusCode::UNPROCESSABLE_ENTITY, "idempotencyKeyReused"),
        A::BreakGlassBulk | A::NothingToRedeem | A::BadInput(_) => {
            says(StatusCode::BAD_REQUEST, "invalidRequest")
        }
        A::Store(e) => state_unavailable(e),
        A::Damaged(_) => Answer::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            "something went wrong; the gateway logged the details",
        ),
    }
}

/// The state store did not answer: the kind only (timeout, connection, ...); the store's
/// address stays in the log.
fn state_unavailable(e: &crate::state::StoreError) -> Answer {
    Answer::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "stateStoreUnavailable",
        format!(
            "graphgate's state store did not answer ({}), so the request was not sent; retry shortly",
            e.kind().as_str()
        ),
    )
    .retry_after(2)
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
pub fn upstream_answer(e: &UpstreamError) -> Answer {
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

/// The answer when something unexpected went wrong with the request `ids` name: no detail
/// for the client (it is logged, with the same request id).
pub fn internal_error_response(ids: &RequestIds) -> Response<Full<Bytes>> {
    let answer = Answer::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "generalException",
        "something went wrong; the gateway logged the details",
    );
    answer.response(answer.body(&ids.request_id, &ids.client_request_id))
}

#[cfg(test)]
mod tests;
