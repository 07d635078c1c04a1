//! Graph's error JSON, `{"error":{"code","message","innerError":{"date","request-id",
//! "client-request-id"}}}`, so Graph SDKs surface gateway and emulator errors like Graph's own.

use bytes::Bytes;
use serde::Serialize;

#[derive(Serialize)]
struct Envelope<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(rename = "innerError")]
    inner_error: InnerError<'a>,
}

#[derive(Serialize)]
struct InnerError<'a> {
    date: String,
    #[serde(rename = "request-id")]
    request_id: &'a str,
    #[serde(rename = "client-request-id")]
    client_request_id: &'a str,
}

/// Serialises one Graph-shaped error body.
pub fn body(code: &str, message: &str, request_id: &str, client_request_id: &str) -> Bytes {
    let envelope = Envelope {
        error: Inner {
            code,
            message,
            inner_error: InnerError {
                // Graph writes the date without a zone suffix: 2020-12-03T20:03:18
                date: crate::clock::utc_now()
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string(),
                request_id,
                client_request_id,
            },
        },
    };
    // Serialising plain strings cannot fail; keep a valid body even if it somehow did.
    serde_json::to_vec(&envelope)
        .map(Bytes::from)
        .unwrap_or_else(|_| {
            Bytes::from_static(br#"{"error":{"code":"generalException","message":"error"}}"#)
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape_matches_graph() {
        let b = super::body("accessDenied", "no", "rid", "crid");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["code"], "accessDenied");
        assert_eq!(v["error"]["message"], "no");
        assert_eq!(v["error"]["innerError"]["request-id"], "rid");
        assert_eq!(v["error"]["innerError"]["client-request-id"], "crid");
        assert_eq!(v["error"]["innerError"]["date"].as_str().unwrap().len(), 19);
    }
}
