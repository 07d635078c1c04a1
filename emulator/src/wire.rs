//! HTTP plumbing shared by the emulated services: the buffered request each handler sees
//! (host, SNI, bounded body) and small response builders.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};

/// Largest request body read; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The response body type of every emulated endpoint.
pub(crate) type Body = Full<Bytes>;

/// A handler's decision to close the connection without answering (an injected fault);
/// hyper then drops the connection (HTTP/1.1) or resets the stream (h2).
#[derive(Debug, thiserror::Error)]
#[error("connection dropped without an answer (injected fault)")]
pub(crate) struct Dropped;

/// What a handler does with a request: answer it, or drop the connection.
pub(crate) type Outcome = Result<Response<Body>, Dropped>;

/// A fully read request, with what the connection knew about it.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// The `Host` header, or HTTP/2 `:authority`, as sent ("" if neither).
    pub(crate) host: String,
    /// The TLS server name of the connection.
    pub(crate) sni: Option<String>,
}

impl Request {
    /// Reads the body (at most [`MAX_BODY_BYTES`]); `Err` is the response to send instead.
    pub(crate) async fn read<B>(
        req: http::Request<B>,
        sni: Option<String>,
    ) -> Result<Self, Response<Body>>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return Err(text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large or unreadable",
                ));
            }
        };
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        Ok(Request {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            host,
            sni,
        })
    }

    /// The host name without a port, lower-cased.
    pub(crate) fn host_name(&self) -> String {
        strip_port(&self.host).to_ascii_lowercase()
    }

    /// A header's value as text, if present and visible ASCII.
    pub(crate) fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the body is declared as `media_type` (parameters such as charset allowed).
    pub(crate) fn content_type_is(&self, media_type: &str) -> bool {
        self.header(CONTENT_TYPE)
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|mt| mt.trim().eq_ignore_ascii_case(media_type))
    }

    /// Headers for a record: lower-case names, repeated headers joined, `authorization` left out.
    pub(crate) fn recorded_headers(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &self.headers {
            if name == http::header::AUTHORIZATION || name == http::header::PROXY_AUTHORIZATION {
                continue;
            }
            let value = String::from_utf8_lossy(value.as_bytes());
            out.entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        out
    }
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && !name.ends_with(':') =>
        {
            name
        }
        _ => host,
    }
}

/// A response with a body and content type; falls back to a bare 500 if the parts are invalid.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    respond(
        status,
        "application/json; charset=utf-8",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, message: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

/// An HTML error page, as a front door in front of the service would send.
pub(crate) fn html_page(status: StatusCode) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    respond(
        status,
        "text/html; charset=utf-8",
        format!(
            "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head>\n<body><h1>{reason}</h1><p>The service is unavailable. Please try again later.</p></body></html>\n"
        ),
    )
}

/// Sets a header if `value` is a valid header value (it always is for what we send).
pub(crate) fn set_header(resp: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// The `Date` header value for now.
pub(crate) fn http_date() -> String {
    httpdate::fmt_http_date(crate::clock::system_now())
}

/// A request for a host the emulator does not play.
pub(crate) fn misdirected(req: &Request) -> Response<Body> {
    let msg = format!(
        "the emulator does not serve host '{}' for this path",
        req.host.escape_debug()
    );
    text(StatusCode::MISDIRECTED_REQUEST, &msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_port_handles_names_and_ipv6() {
        assert_eq!(strip_port("graph.microsoft.com"), "graph.microsoft.com");
        assert_eq!(strip_port("graph.microsoft.com:443"), "graph.microsoft.com");
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
