//! Sending an admitted request to Graph: one canonical HTTPS request with headers built
//! from scratch, Graph's answer bounded and filtered, and the only retries that are safe for
//! non-idempotent actions (a refused token once; 429, and 503 with Retry-After, within a
//! bounded wait). Anything after which the action may have run is never retried.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use crate::admit::{Admitted, CLIENT_REQUEST_ID, REQUEST_ID, RequestIds};
use crate::audit::{AuditTrail, DurableIntent};
use crate::cloud::Cloud;
use crate::credential::TokenError;
use crate::token::{CachedToken, TokenBroker};
use crate::upstream::HttpClient;
use crate::{clock, metrics, telemetry};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why Graph gave no usable answer. Each variant says whether the action may have run; the
/// detail (the transport's error chain) is for the log, never for the caller.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Graph could not be reached, or the request could not be built: nothing was sent.
    #[error("Microsoft Graph could not be reached; the request was not sent")]
    Unreachable(#[source] BoxError),
    /// The request may have reached Graph, but no complete answer came back.
    #[error("the request was sent to Microsoft Graph but no complete answer came back")]
    Lost(#[source] BoxError),
    /// Graph itself answered 502: its back end may or may not have run the action.
    #[error("Microsoft Graph answered 502 Bad Gateway (Graph request-id {graph_request_id})")]
    GraphBadGateway {
        /// Graph's `request-id`, or `none`.
        graph_request_id: String,
    },
    /// No complete answer within the upstream timeout; the action may have run.
    #[error("Microsoft Graph did not answer within {0} s")]
    Timeout(u64),
    /// Graph itself answered 504: its back end may or may not have run the action.
    #[error("Microsoft Graph answered 504 Gateway Timeout (Graph request-id {graph_request_id})")]
    GraphTimedOut {
        /// Graph's `request-id`, or `none`.
        graph_request_id: String,
    },
    /// Graph refused the token, and no new one could be obtained: nothing ran.
    #[error(transparent)]
    Token(Arc<TokenError>),
}

impl UpstreamError {
    /// Whether the request may have reached Graph and run: such failures are never retried,
    /// and a duplicate gets the same answer.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            UpstreamError::Lost(_)
            | UpstreamError::GraphBadGateway { .. }
            | UpstreamError::Timeout(_)
            | UpstreamError::GraphTimedOut { .. } => true,
            UpstreamError::Unreachable(_) | UpstreamError::Token(_) => false,
        }
    }
}

/// Graph response headers a caller gets back; all others are dropped.
const RETURNED_HEADERS: [HeaderName; 4] =
    [REQUEST_ID, CLIENT_REQUEST_ID, RETRY_AFTER, CONTENT_TYPE];
/// Intune's Multi Admin Approval code on a held write's answer: kept apart (not returned
/// to the caller as it is; the gateway makes the hold an approval).
pub const APPROVAL_CODE: HeaderName = HeaderName::from_static("x-msft-approval-code");
/// Largest Graph response body relayed.
const MAX_UPSTREAM_BODY_BYTES: usize = crate::upstream::MAX_ANSWER_BYTES;

/// When Graph may be asked again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Most attempts per request (throttling retries included).
    pub max_attempts: u32,
    /// Most total time spent waiting between attempts.
    pub max_total_wait: Duration,
    /// Wait after a 429 without `Retry-After` (doubled on each further attempt).
    pub default_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            max_total_wait: Duration::from_secs(10),
            default_retry_after: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retrying after `status`, if the action certainly did not run.
    fn delay(&self, status: StatusCode, headers: &HeaderMap, attempt: u32) -> Option<Duration> {
        let given = retry_after(headers);
        match status {
            // Throttled: rejected before running.
            StatusCode::TOO_MANY_REQUESTS => Some(given.unwrap_or_else(|| self.backoff(attempt))),
            // Graph documents 503 with Retry-After as retryable.
            StatusCode::SERVICE_UNAVAILABLE => given,
            _ => None,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.default_retry_after
            .saturating_mul(1 << attempt.saturating_sub(1).min(6))
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(clock::system_now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Graph's answer, filtered to what callers get.
#[derive(Debug, Clone)]
pub struct UpstreamReply {
    /// Graph's status.
    pub status: StatusCode,
    /// Only `request-id`, `client-request-id`, `Retry-After`, `Content-Type`.
    pub headers: HeaderMap,
    /// Graph's body, passed through unparsed.
    pub body: Bytes,
    /// How many requests reached Graph for this call.
    pub attempts: u32,
    /// Graph's `x-msft-approval-code` values, if any (Intune's Multi Admin Approval).
    pub approval_code: HeaderMap,
}

impl UpstreamReply {
    /// As a response for the caller.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(self.body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }

    /// Whether the action may have run (so a duplicate must not run it again).
    pub fn may_have_run(&self) -> bool {
        !matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::UNAUTHORIZED
        )
    }
}

/// Sends admitted requests to the deployment's Graph.
pub(crate) struct Forwarder {
    /// The shared outbound client.
    pub http: HttpClient,
    /// The deployment's cloud.
    pub cloud: Cloud,
    /// Retry rules.
    pub retry: RetryPolicy,
    /// Longest wait for one complete Graph answer.
    pub timeout: Duration,
}

impl Forwarder {
    /// Sends the request under `token`, once its audit intent is durable (`intent` is the
    /// proof: only [`AuditTrail::intent`] makes one), retrying only where the action
    /// certainly did not run. Every Graph answer goes into the trail.
    ///
    /// A refused token is the one retry that needs the broker: Graph refused before running
    /// anything, so the same request goes again, once, with a new token. The intent stands
    /// for the request, not the token: it was written once, before the first attempt, and
    /// is not written again; the outcome record names the token actually used.
    pub(crate) async fn send(
        &self,
        ids: &RequestIds,
        request: &Admitted,
        mut token: Arc<CachedToken>,
        _intent: &DurableIntent,
        broker: &TokenBroker,
        trail: &mut AuditTrail,
    ) -> Result<UpstreamReply, UpstreamError> {
        let mut token_refreshed = false;
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut reply = self.timed_once(ids, request, &token, trail).await?;
            reply.attempts = attempt;
            if reply.status == StatusCode::UNAUTHORIZED && !token_refreshed {
                tracing::warn!(
                    "Graph refused the cached token; fetching a new one and retrying once"
                );
                broker.forget(&token).await;
                token = acquire_token(broker).await.map_err(UpstreamError::Token)?;
                trail.token_app_id(token.claims.appid.as_deref());
                token_refreshed = true;
                continue;
            }
            match self.retry.delay(reply.status, &reply.headers, attempt) {
                Some(delay)
                    if attempt < self.retry.max_attempts
                        && waited + delay <= self.retry.max_total_wait =>
                {
                    tracing::warn!(
                        status = reply.status.as_u16(),
                        retry_in_ms = delay.as_millis() as u64,
                        attempt,
                        "Graph throttled or unavailable; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    waited += delay;
                }
                Some(delay) => return Ok(with_retry_after(reply, delay)),
                None => return outcome(reply),
            }
        }
    }

    /// One attempt, timed, recorded in the trail, the span and the metrics.
    async fn timed_once(
        &self,
        ids: &RequestIds,
        request: &Admitted,
        token: &CachedToken,
        trail: &mut AuditTrail,
    ) -> Result<UpstreamReply, UpstreamError> {
        let started = clock::Instant::now();
        let result = self.once(ids, request, token).await;
        metrics::upstream(started.elapsed());
        if let Ok(reply) = &result {
            let graph_request_id = reply.headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok());
            if let Some(id) = graph_request_id {
                tracing::Span::current().record("graph.request_id", id);
            }
            trail.upstream(reply.status.as_u16(), graph_request_id, started.elapsed());
        }
        result
    }

    async fn once(
        &self,
        ids: &RequestIds,
        request: &Admitted,
        token: &CachedToken,
    ) -> Result<UpstreamReply, UpstreamError> {
        let (target, body, maa) = (&request.target, &request.body, &request.maa);
        let uri = format!(
            "https://{}{}",
            self.cloud.endpoints().graph_host,
            target.canonical_path
        );
        let mut bearer = HeaderValue::try_from(format!("Bearer {}", token.token.expose()))
            .map_err(|_| {
                UpstreamError::Unreachable("the token is not a valid header value".into())
            })?;
        bearer.set_sensitive(true);
        // Headers are built from scratch: nothing the caller sent is copied but the body.
        let mut builder = Request::builder()
            .method(target.op.invocation.method())
            .uri(uri)
            .header(AUTHORIZATION, bearer)
            .header(CLIENT_REQUEST_ID, ids.client_request_id.as_str())
            .header(USER_AGENT, concat!("graphgate/", env!("CARGO_PKG_VERSION")));
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        if let Some(justification) = &maa.justification {
            builder = builder.header(&crate::approval::maa::JUSTIFICATION_HEADER, justification);
        }
        if let Some(code) = &maa.code {
            builder = builder.header(&APPROVAL_CODE, code);
        }
        let mut req = builder
            .body(Full::new(body.clone()))
            .map_err(|e| UpstreamError::Unreachable(Box::new(e)))?;
        // The trace continues to Graph (W3C traceparent).
        telemetry::inject_current(req.headers_mut());
        let exchange = async {
            // Only a failed connect is sure to have sent nothing.
            let resp = self.http.request(req).await.map_err(|e| {
                if e.is_connect() {
                    UpstreamError::Unreachable(Box::new(e))
                } else {
                    UpstreamError::Lost(Box::new(e))
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_UPSTREAM_BODY_BYTES)
                .collect()
                .await
                .map_err(UpstreamError::Lost)?
                .to_bytes();
            Ok::<_, UpstreamError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout.as_secs()))??;
        let mut headers = HeaderMap::new();
        for name in RETURNED_HEADERS {
            if let Some(v) = parts.headers.get(&name) {
                headers.insert(name, v.clone());
            }
        }
        let mut approval_code = HeaderMap::new();
        for v in parts.headers.get_all(&APPROVAL_CODE).iter().take(4) {
            approval_code.append(APPROVAL_CODE, v.clone());
        }
        Ok(UpstreamReply {
            status: parts.status,
            headers,
            body,
            attempts: 1,
            approval_code,
        })
    }
}

/// A usable token, timed for the token-acquisition histogram.
pub async fn acquire_token(broker: &TokenBroker) -> Result<Arc<CachedToken>, Arc<TokenError>> {
    let started = clock::Instant::now();
    let token = broker.token().await;
    metrics::token_acquired(started.elapsed());
    token
}

/// Graph's own 502 and 504 say its back end may or may not have run the action: the caller
/// gets graphgate's distinct "outcome unknown" answer (never retried), naming Graph's request id.
fn outcome(reply: UpstreamReply) -> Result<UpstreamReply, UpstreamError> {
    let graph_request_id = || {
        reply
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned()
    };
    match reply.status {
        StatusCode::BAD_GATEWAY => Err(UpstreamError::GraphBadGateway {
            graph_request_id: graph_request_id(),
        }),
        StatusCode::GATEWAY_TIMEOUT => Err(UpstreamError::GraphTimedOut {
            graph_request_id: graph_request_id(),
        }),
        _ => Ok(reply),
    }
}

/// A throttled answer tells the caller when to come back, even when Graph did not.
fn with_retry_after(mut reply: UpstreamReply, delay: Duration) -> UpstreamReply {
    if !reply.headers.contains_key(RETRY_AFTER) {
        reply
            .headers
            .insert(RETRY_AFTER, HeaderValue::from(delay.as_secs().max(1)));
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_throttling_is_retried() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(StatusCode::TOO_MANY_REQUESTS, &headers(Some("3")), 1),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            p.delay(StatusCode::TOO_MANY_REQUESTS, &headers(None), 1),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.delay(StatusCode::TOO_MANY_REQUESTS, &headers(None), 2),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            p.delay(StatusCode::SERVICE_UNAVAILABLE, &headers(Some("1")), 1),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            p.delay(StatusCode::SERVICE_UNAVAILABLE, &headers(None), 1),
            None,
            "503 without Retry-After is not documented as retryable"
        );
        for status in [502, 504, 500, 400, 204] {
            assert_eq!(
                p.delay(
                    StatusCode::from_u16(status).unwrap(),
                    &headers(Some("1")),
                    1
                ),
                None,
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(
            retry_after(&headers(Some("7"))),
            Some(Duration::from_secs(7))
        );
        let later = httpdate::fmt_http_date(clock::system_now() + Duration::from_secs(120));
        let d = retry_after(&headers(Some(&later))).unwrap();
        assert!((118..=120).contains(&d.as_secs()), "{d:?}");
        assert_eq!(retry_after(&headers(Some("soon"))), None);
    }
}
