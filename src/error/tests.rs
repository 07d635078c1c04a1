//! Every failure as the caller sees it: status, code, message and the one extra header.

use std::time::Duration;

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
    let denied = Forbidden::DeniedBy { rule: "r".into() };
    let (status, code, message, h) = seen(GatewayError::Forbidden(denied));
    assert_eq!(
        (status, code.as_str(), message.as_str(), h),
        (403, "accessDenied", "denied by policy rule 'r'", None)
    );
    let limited = LimitRefusal::RateLimited {
        scope: "caller",
        retry: crate::ratelimit::RetryAfter(Duration::from_millis(6_500)),
    };
    let (status, code, message, h) = seen(limited);
    assert_eq!(
        (status, code.as_str(), h),
        (429, "activityLimitReached", header("retry-after", "7"))
    );
    assert_eq!(message, "rate limit reached (caller); retry after 7 s");
    let (status, _, message, h) = seen(GatewayError::CallerInFlight);
    assert_eq!((status, h), (429, header("retry-after", "1")));
    assert!(
        message.contains("the caller's requests in flight"),
        "{message}"
    );
    let (status, _, message, h) = seen(GatewayError::BulkInFlight);
    assert_eq!((status, h), (429, header("retry-after", "1")));
    assert!(message.contains("bulk requests in flight"), "{message}");
    // A bulk request past a rate's burst: split it (retry once a window has passed).
    let over = LimitRefusal::OverRate {
        scope: "caller",
        devices: 11,
        rate: crate::policy::Rate {
            count: 10,
            per: Duration::from_secs(60),
        },
    };
    let (status, code, message, h) = seen(over);
    assert_eq!(
        (status, code.as_str(), h),
        (429, "activityLimitReached", header("retry-after", "60"))
    );
    assert!(
        message.contains("lists 11 devices") && message.contains("send at most 10 devices"),
        "{message}"
    );
    let (status, code, _, h) = seen(GatewayError::ShuttingDown);
    assert_eq!(
        (status, code.as_str(), h),
        (503, "serviceNotAvailable", header("retry-after", "1"))
    );
    let paced = LimitRefusal::Paced(crate::ratelimit::RetryAfter(Duration::from_secs(2)));
    let (status, _, message, _) = seen(paced);
    assert_eq!(status, 429);
    assert!(message.contains("(tenant write pacing)"), "{message}");
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
    let (status, code, message, h) = seen(LimitRefusal::OverBudget {
        budget: "caller:ops".into(),
        limit: crate::policy::Budget {
            limit: 5,
            window: crate::policy::BudgetWindow::Day,
        },
        retry: crate::ratelimit::RetryAfter(Duration::from_secs(3600)),
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
    let (status, code, message, h) = seen(LimitRefusal::Store(e));
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
        !UpstreamError::Token(Arc::new(TokenError::Unavailable(String::new()))).outcome_unknown()
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
    let unreachable = UpstreamError::Unreachable(transport(secret_detail));
    assert!(!unreachable.outcome_unknown());
    let unreachable = GatewayError::from(unreachable);
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
        assert!(e.outcome_unknown(), "{e}");
        let e = GatewayError::from(e);
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
fn an_internal_error_says_nothing_but_the_requests_own_ids() {
    let ids = RequestIds {
        request_id: "rid-1".into(),
        client_request_id: "crid-1".into(),
    };
    let resp = internal_error_response(&ids);
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bytes = rt
        .block_on(http_body_util::BodyExt::collect(resp.into_body()))
        .unwrap()
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["error"]["code"], "generalException");
    assert_eq!(json["error"]["innerError"]["request-id"], "rid-1");
    assert_eq!(json["error"]["innerError"]["client-request-id"], "crid-1");
}
