//! No double execution, as callers see it: a request carrying an `Idempotency-Key` (or a
//! GUID `client-request-id`) that repeats one seen within the window gets the first
//! request's answer instead of running the privileged action again. This module reads the
//! key, fingerprints what the request asks for, and holds the stored answer; the claims
//! themselves live in the state store ([`crate::state`]), in one process or shared by every
//! replica.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest idempotency key accepted.
pub const MAX_KEY_BYTES: usize = 255;
/// Longest stored answer as [`StoredResponse::encode`] writes it: Graph's largest answer in
/// base64, with room for the status and the few headers kept. A shared store holding a
/// longer one is not read (see `state`).
pub const MAX_STORED_BYTES: usize = crate::upstream::MAX_ANSWER_BYTES / 3 * 4 + 64 * 1024;

/// A stored answer, replayed for duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// A stored answer as the shared store keeps it (JSON; the body in base64).
#[derive(Serialize, Deserialize)]
struct Wire {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl StoredResponse {
    /// Keeps `resp` (its body is already in memory).
    pub fn of(resp: &Response<Full<Bytes>>, body: Bytes) -> Self {
        StoredResponse {
            status: resp.status(),
            headers: resp.headers().clone(),
            body,
        }
    }

    /// Keeps an answer given as its parts (a body is reference-counted: not copied).
    pub fn new(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        StoredResponse {
            status,
            headers,
            body,
        }
    }

    /// The status replayed.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The replayed answer, marked as such.
    pub fn replay(&self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(self.body.clone()));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers.clone();
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        resp
    }

    /// The answer as bytes for a shared store. The headers are the few a caller gets back
    /// (Graph's ids, `Retry-After`, `Content-Type`), all visible ASCII; one that is not would
    /// be left out rather than stored altered.
    pub fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            status: self.status.as_u16(),
            headers: self
                .headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body: base64::engine::general_purpose::STANDARD.encode(&self.body),
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// An answer [`StoredResponse::encode`] wrote; `None` if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<StoredResponse> {
        let wire: Wire = serde_json::from_slice(bytes).ok()?;
        let mut headers = HeaderMap::new();
        for (name, value) in wire.headers {
            headers.append(
                HeaderName::try_from(name).ok()?,
                HeaderValue::try_from(value).ok()?,
            );
        }
        Some(StoredResponse {
            status: StatusCode::from_u16(wire.status).ok()?,
            headers,
            body: base64::engine::general_purpose::STANDARD
                .decode(wire.body)
                .ok()?
                .into(),
        })
    }
}

/// The request's idempotency key: `Idempotency-Key`, else a GUID `client-request-id`.
pub fn key_of(headers: &HeaderMap) -> Option<Result<String, &'static str>> {
    if let Some(v) = headers.get("idempotency-key") {
        return Some(match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_KEY_BYTES => Ok(k.to_owned()),
            _ => Err("Idempotency-Key must be 1 to 255 visible ASCII characters"),
        });
    }
    headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| crate::operation::route::is_guid(v))
        .map(|v| Ok(format!("crid:{}", v.to_ascii_lowercase())))
}

/// What a keyed request asks for: its canonical target and body.
pub fn fingerprint(canonical_path: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(canonical_path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_header_or_a_guid_client_request_id() {
        let mut h = HeaderMap::new();
        assert!(key_of(&h).is_none());
        h.insert("client-request-id", HeaderValue::from_static("not-a-guid"));
        assert!(key_of(&h).is_none());
        h.insert(
            "client-request-id",
            HeaderValue::from_static("5A6B7C8D-1111-2222-3333-444455556666"),
        );
        assert_eq!(
            key_of(&h).unwrap().unwrap(),
            "crid:5a6b7c8d-1111-2222-3333-444455556666"
        );
        h.insert("idempotency-key", HeaderValue::from_static("order-42"));
        assert_eq!(key_of(&h).unwrap().unwrap(), "order-42");
        h.insert(
            "idempotency-key",
            HeaderValue::from_str(&"x".repeat(300)).unwrap(),
        );
        assert!(key_of(&h).unwrap().is_err());
    }

    #[test]
    fn a_stored_answer_survives_the_shared_store_byte_for_byte() {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        let h = resp.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("request-id", HeaderValue::from_static("r-1"));
        h.append("retry-after", HeaderValue::from_static("5"));
        let body = Bytes::from_static(b"{\"error\":{\"code\":\"x\"}}\n\x00\xff");
        let stored = StoredResponse::of(&resp, body);
        let back = StoredResponse::decode(&stored.encode()).unwrap();
        assert_eq!(back, stored);
        assert_eq!(back.replay().headers()["idempotent-replayed"], "true");
        assert!(StoredResponse::decode(b"{\"status\":999}").is_none());
        assert!(StoredResponse::decode(b"garbage").is_none());
    }
}
